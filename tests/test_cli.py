"""The lvsdr command as operators use it: exit codes, one-line errors, safe writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lvsdr.cli import main

from helpers import EXAMPLES, REPO, lvsdr_in, needs_root


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """validate says ok with the cluster's counts for a good file."""
    assert main(["validate", str(EXAMPLES / "web.toml")]) == 0
    assert "ok: cluster web, 2 directors, 2 real servers, 1 services" in capsys.readouterr().out


def test_validate_bad_file_lists_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate lists every problem of a bad file, one line each, exit 2."""
    bad = tmp_path / "bad.toml"
    bad.write_text((EXAMPLES / "web.toml").read_text()
                   .replace("virtual_router_id = 51", "virtual_router_id = 300")
                   .replace('backends = ["web1", "web2"]', 'backends = ["web1", "web9"]'))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["cluster.virtual_router_id: 300 is outside 1..255",
                   'services[0].backends[1]: unknown server "web9"']


def test_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing cluster file is one line, exit 2."""
    assert main(["validate", "/nonexistent/c.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nonexistent/c.toml: cannot read" in err


def test_bad_flag_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown flag is one line, exit 2."""
    assert main(["render", str(EXAMPLES / "web.toml")]) == 2  # --node missing
    assert capsys.readouterr().err == ("lvsdr: render: give --node NAME (one director) or --all --output-dir DIR "
                                       "(every node)\n")
    assert main(["notify", str(EXAMPLES / "web.toml"), "--node"]) == 2  # not keepalived's form: argparse says why
    assert capsys.readouterr().err == "lvsdr: notify: argument --node: expected one argument\n"


def test_unknown_command_says_lvsdr_once(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is one line that names lvsdr once."""
    assert main(["rendr"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lvsdr: argument command: invalid choice: 'rendr'") and err.count("lvsdr:") == 1


def test_unknown_node_lists_every_node_by_role(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --node lists every node of the file by role."""
    assert main(["render", str(EXAMPLES / "web.toml"), "--node", "web1"]) == 2
    assert capsys.readouterr().err == (
        'lvsdr: --node: "web1" is not a director (directors: lb1, lb2; real servers: web1, web2)\n')
    assert main(["doctor", str(EXAMPLES / "web.toml"), "--node", "web9"]) == 2
    assert capsys.readouterr().err == (
        'lvsdr: --node: "web9" is not a node of this cluster (directors: lb1, lb2; real servers: web1, web2)\n')


def test_json_null_is_named_null(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON null is named null in its error line."""
    p = tmp_path / "c.json"
    p.write_text('{"cluster": {"name": null}}')
    assert main(["validate", str(p)]) == 2
    assert "cluster.name: expected string, got null" in capsys.readouterr().err


def test_render_writes_atomically_with_private_mode(tmp_path: Path) -> None:
    """render -o writes atomically, 0600 when the file holds a VRRP password."""
    out = tmp_path / "keepalived.conf"
    assert main(["render", str(EXAMPLES / "web.toml"), "--node", "lb1", "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # holds auth_pass
    assert "auth_pass s3cret" in out.read_text()
    assert os.listdir(tmp_path) == ["keepalived.conf"]  # no temp file left


def test_render_without_password_is_0644(tmp_path: Path) -> None:
    """render -o writes 0644 when there is no password."""
    out = tmp_path / "k.conf"
    assert main(["render", str(EXAMPLES / "ipv6.toml"), "--node", "lb1", "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_bad_input_leaves_existing_file_alone(tmp_path: Path) -> None:
    """A bad cluster file leaves the existing output file untouched."""
    out = tmp_path / "keepalived.conf"
    out.write_text("previous good config\n")
    bad = tmp_path / "bad.toml"
    bad.write_text((EXAMPLES / "web.toml").read_text().replace('"192.0.2.100"', '"192.0.2.1000"'))
    assert main(["render", str(bad), "--node", "lb1", "-o", str(out)]) == 2
    assert out.read_text() == "previous good config\n"


def test_flags_override_notify_wiring(capsys: pytest.CaptureFixture[str]) -> None:
    """The wiring flags override the file's lvsdr_path, config_path and notify_fifo in the notify line."""
    assert main(["render", str(EXAMPLES / "web.toml"), "--node", "lb2", "--lvsdr-path", "/opt/lvsdr/bin/lvsdr",
                 "--config-path", "/etc/lvsdr/web.toml", "--hook", "notify"]) == 0
    out = capsys.readouterr().out
    assert 'notify "/opt/lvsdr/bin/lvsdr notify /etc/lvsdr/web.toml --node lb2"' in out
    assert "vrrp_notify_fifo" not in out


@pytest.mark.parametrize("command", ["render", "doctor", "watch"])
def test_flag_cannot_inject(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A wiring flag holding blanks or quotes is refused: it cannot inject into keepalived.conf."""
    extra = ["-o", "/nonexistent/k.conf"] if command == "watch" else []
    assert main([command, str(EXAMPLES / "web.toml"), "--node", "lb1", *extra,
                 "--lvsdr-path", '/x"\nvrrp_script']) == 2
    assert capsys.readouterr().err == (
        'lvsdr: --lvsdr-path: "/x\\"\\nvrrp_script" is not an absolute path without blanks or quotes\n')


@needs_root
@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived not installed")
def test_check_passes_and_writes(tmp_path: Path, scratch_netns: str) -> None:
    """render --check writes a config keepalived -t accepts."""
    out = tmp_path / "k.conf"
    r = lvsdr_in(scratch_netns, "render", str(EXAMPLES / "full.toml"), "--node", "lb-a", "--check",
                  "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.exists()


@needs_root
@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived not installed")
def test_check_rejection_writes_nothing(tmp_path: Path, scratch_netns: str) -> None:
    """render --check writes nothing when keepalived -t refuses the config."""
    cluster = tmp_path / "c.toml"
    cluster.write_text((EXAMPLES / "web.toml").read_text().replace('interface = "eth0"',
                                                                  'interface = "bond7"'))
    out = tmp_path / "k.conf"
    out.write_text("last good\n")
    r = lvsdr_in(scratch_netns, "render", str(cluster), "--node", "lb1", "--check", "-o", str(out),
                  cwd=tmp_path)
    assert r.returncode == 1
    assert "keepalived -t: exit 5 (configuration errors)" in r.stderr
    assert "bond7" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
    assert out.read_text() == "last good\n"


def test_installed_console_script_renders(tmp_path: Path) -> None:
    """The console script works from anywhere (templates come from the package)."""
    exe = Path(sys.executable).parent / "lvsdr"
    if not exe.exists():
        pytest.skip("lvsdr console script not installed next to this python")
    r = subprocess.run([str(exe), "render", str(EXAMPLES / "web.toml"), "--node", "lb1"],
                       capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode == 0 and "lb_kind DR" in r.stdout
    assert str(REPO) not in r.stdout.replace(str(EXAMPLES / "web.toml"), "")


@pytest.mark.parametrize(("code", "words"), [
    (4, "exit 4 (fatal error)"),
    (5, "exit 5 (configuration errors)"),
    (6, "exit 6 (script security is not enabled)"),
    (143, "exit 143 (inconclusive: keepalived 2.2.7 dies with 143"),
    (99, "exit 99 (unexpected exit code)"),
])
def test_keepalived_exit_codes_are_explained(code: int, words: str) -> None:
    """Each keepalived -t exit code is explained in words."""
    from lvsdr.hooks.keepalived import CheckResult

    r = CheckResult(code, "line one\nline one\nline two\n")
    assert not r.ok
    msg = r.message()
    assert msg.startswith(f"keepalived -t: {words}")
    assert msg.endswith(": line one; line two")  # keepalived's lines, once each, on one line


@pytest.mark.parametrize("argv", [
    ["watch", "{web}", "--node", "web1", "-o", "/tmp/x.conf"],          # a real server, not a director
    ["watch", "{web}", "--node", "lb1"],                                # -o missing
    ["watch", "{web}", "--node", "lb1", "-o", "/tmp/x", "--lvsdr-path", "rel/path"],
    ["notify", "{web}", "--node", "web9", "INSTANCE", "VI_web", "MASTER", "150"],
    ["agent", "{web}", "--node", "lb1"],                                # --fifo missing
    ["doctor", "{web}", "--node", "nobody"],
    ["realserver", "apply", "{web}", "--node", "lb1"],                  # a director
    ["lab", "demo", "/nonexistent.toml"],
])
def test_bad_input_is_exit_2_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    """Every command's bad input is one line, exit 2."""
    argv = [a.replace("{web}", str(EXAMPLES / "web.toml")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not Path("/tmp/x.conf").exists()


# -- refusals of the changing commands, run in a scratch namespace (never the host's) --
@needs_root
def test_missing_tool_is_named_with_its_package(tmp_path: Path, scratch_netns: str) -> None:
    """A missing tool is named with the package that provides it."""
    path = tmp_path / "c.toml"
    path.write_text((EXAMPLES / "web.toml").read_text().replace('arp_method = "sysctl"', 'arp_method = "arptables"'))
    r = lvsdr_in(scratch_netns, "realserver", "apply", str(path), "--node", "web1", "--state-dir", str(tmp_path / "s"),
                 env={"PATH": str(tmp_path)})  # no arptables anywhere
    assert (r.returncode, r.stderr) == (
        1, "lvsdr: arptables: not found; install Debian package arptables, RHEL package iptables-nft\n")
    assert not (tmp_path / "s").exists()


@needs_root
def test_missing_interface_is_refused_before_any_change(tmp_path: Path, scratch_netns: str) -> None:
    """realserver apply refuses a node without the named interface before changing anything."""
    path = tmp_path / "c.toml"
    path.write_text((EXAMPLES / "web.toml").read_text().replace(
        'address = "192.0.2.11"', 'address = "192.0.2.11"\ninterface = "nosuch0"'))
    r = lvsdr_in(scratch_netns, "realserver", "apply", str(path), "--node", "web1", "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 1
    assert "interface nosuch0 of real server web1 does not exist on this node" in r.stderr
    assert not (tmp_path / "s").exists()


@needs_root
def test_wrong_node_changes_nothing(tmp_path: Path, scratch_netns: str) -> None:
    """A namespace that is not web1 (it lacks web1's address): refused before
    any change, even before the lock directory is made."""
    before = subprocess.run(["ip", "netns", "exec", scratch_netns, "nft", "list", "ruleset"], capture_output=True,
                            text=True).stdout
    r = lvsdr_in(scratch_netns, "realserver", "apply", str(EXAMPLES / "web.toml"), "--node", "web1",
                 "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 1
    assert "this node does not have web1's address 192.0.2.11; refusing to change it" in r.stderr
    assert not (tmp_path / "s").exists()
    assert subprocess.run(["ip", "netns", "exec", scratch_netns, "nft", "list", "ruleset"], capture_output=True,
                          text=True).stdout == before


@needs_root
def test_notify_on_the_wrong_node_changes_nothing(tmp_path: Path, scratch_netns: str) -> None:
    """notify run on a node that lacks the director's address changes nothing."""
    import json
    import tomllib

    data = tomllib.loads((EXAMPLES / "pair.toml").read_text())
    data["cluster"]["state_dir"] = str(tmp_path / "s")
    path = tmp_path / "pair.json"
    path.write_text(json.dumps(data))
    r = lvsdr_in(scratch_netns, "notify", str(path), "--node", "node1", "INSTANCE", "VI_pair", "MASTER", "200",
                 env={"LVSDR_LOG": "stderr"})
    assert r.returncode == 1
    assert "this node does not have node1's address 192.0.2.21" in r.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv", [
    ["validate", "c.toml"],
    ["render", "c.toml", "--node", "lb1", "-o", "out.conf", "--check", "--hook", "fifo"],
    ["import", "a.conf", "b.conf", "--arp-method", "sysctl", "--diff"],
    ["realserver", "apply", "c.toml", "--node", "web1", "--dry-run"],
    ["agent", "c.toml", "--node", "lb1", "--fifo", "/run/f", "--interval", "5"],
    ["lab", "demo", "--no-suppression"],
    ["render", "c.toml", "--all", "--output-dir", "out"],
    ["watch", "c.toml", "--node", "lb1", "-o", "k.conf", "--pidfile", "/run/k.pid", "--once"],
    ["notify", "c.toml", "--node", "lb1", "INSTANCE", "VI_web", "MASTER", "150"],
    ["audit", "c.toml", "--json"],
    ["doctor", "c.toml", "--node", "lb1", "--keepalived-conf", "/etc/k.conf"],
    ["realserver", "render", "c.toml", "--node", "web1", "--output-dir", "out"],
])
def test_a_command_parses_the_same_with_only_its_own_parser(argv: list[str]) -> None:
    """main builds only the named command's arguments (all of them cost ~10 ms
    of every run): what it parses is what the whole parser parses."""
    from lvsdr.cli import build_parser

    assert vars(build_parser(argv[0]).parse_args(argv)) == vars(build_parser().parse_args(argv))


KEEPALIVED_FORMS = [
    ["notify", "/etc/lvsdr/cluster.toml", "--node", "lb1", "INSTANCE", "VI_web", "MASTER", "150"],
    ["notify", "/etc/lvsdr/cluster.toml", "--node", "lb1", "INSTANCE", "VI_web", "BACKUP", "100"],
    ["notify", "/etc/lvsdr/cluster.toml", "--node", "lb-a.example", "GROUP", "VG_web", "FAULT"],
    ["notify", "c.toml", "--node", "n", "INSTANCE", "VI_x", "STOP", "0"],
]


@pytest.mark.parametrize("argv", KEEPALIVED_FORMS)
def test_notifys_hand_written_reader_parses_as_argparse_does(argv: list[str]) -> None:
    """keepalived's notify call is read without argparse (it is on the failover
    path): for every form keepalived uses, it reads what argparse reads."""
    from lvsdr.cli import _keepalived_notify, build_parser

    fast = _keepalived_notify(argv)
    assert fast is not None
    full = vars(build_parser().parse_args(argv))
    assert full.pop("command") == "notify"  # the subcommand's name: nothing reads it
    assert vars(fast) == full


@pytest.mark.parametrize("argv", [
    ["notify", "c.toml", "--node", "n", "INSTANCE", "VI_x", "MASTER", "-1"],
    ["notify", "--node", "n", "c.toml", "INSTANCE", "VI_x", "MASTER", "1"],
    ["notify", "c.toml", "--node", "n", "INSTANCE", "VI_x"],
    ["agent", "c.toml", "--node", "n", "INSTANCE", "VI_x", "MASTER"],
])
def test_anything_but_keepalived_s_form_goes_through_argparse(argv: list[str]) -> None:
    """Another shape (a flag elsewhere, missing words, another command) is left to argparse."""
    from lvsdr.cli import _keepalived_notify

    assert _keepalived_notify(argv) is None


@pytest.mark.parametrize("instant", [1764444800.0, 1764444800.25, 1764444800.5])
def test_notifys_log_line_is_the_line_structlog_writes(instant: float, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """notify's success line, written by hand, is byte for byte the line
    structlog's pipeline (as hooks/fast/log.py configures it) renders for the
    same event at the same instant, a whole second included."""
    import datetime
    import time
    import types

    import structlog

    from lvsdr.hooks.fast import log

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(instant, tz)

    monkeypatch.setattr(time, "time", lambda: instant)
    monkeypatch.setattr(structlog.processors, "datetime", types.SimpleNamespace(
        datetime=Frozen, timezone=datetime.timezone))
    monkeypatch.setenv("LVSDR_LOG", "stderr")
    fields = {"node": "lb1", "event_source": "notify", "observed_role": "MASTER", "changes": ["x \u00e9\n"],
              "ms": 1.5, "replayed": True, "priority": "150"}
    log.quick_info("vrrp transition", **fields)
    line = capsys.readouterr().err.rstrip("\n")
    ed: Any = {**fields, "event": "vrrp transition"}
    for proc in (structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)):
        ed = proc(None, "info", ed)
    assert line == structlog.processors.JSONRenderer(sort_keys=True)(None, "info", ed)


def test_the_command_table_lists_every_command() -> None:
    """Each command the parser knows has its own entry in the command table, so that `lvsdr COMMAND` builds only its
    own part of the parser (metrics and plan hid under watch's, and built every command's)."""
    import argparse

    from lvsdr.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(COMMANDS)
    for name in COMMANDS:
        part = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        assert list(part.choices) == [name]
