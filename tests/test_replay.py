"""`lvsdr notify`'s fast path (hooks/fast/replay.py), in a scratch namespace: once
the full path has reconciled both roles, a transition replays the recorded
state, after which the full planner finds nothing to do; a changed cluster
file or a node that is not in a recorded state takes the full path."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsdr.hooks.fast.replay import locate

from helpers import DATA, EXAMPLES, PREFIX, REPO, lvsdr_in, needs_root

VIP = "192.0.2.120"


@pytest.mark.parametrize(("text", "found"), [
    ('[cluster]\nname = "edge"\ninterface = "eth0"\n', ("edge", None)),
    ('# lb\n[cluster]\n  name = "edge"\nstate_dir = "/srv/x"\n[[directors]]\nname = "lb1"\n', ("edge", "/srv/x")),
    ('[[directors]]\nname = "lb1"\n[cluster]\nname = "edge"\n', ("edge", None)),
    # anything but the plain form: None, and the full path (a real TOML parser) runs
    ('[cluster]\nname = "edge" # the edge\n', None),
    ("[cluster]\nname = 'edge'\n", None),
    ('[cluster]\nname = "ed\\u0067e"\n', None),
    ('cluster.name = "edge"\n', None),
    ('[cluster]\nname = "edge"\nname = "other"\n', None),
    ('[cluster]\ninterface = "eth0"\n', None),
])
def test_the_record_is_found_without_a_toml_parser(text: str, found: tuple[str, str | None] | None) -> None:
    """notify's fast path finds its record from the cluster file read by line
    (tomli costs ~10 ms to import); any other form takes the full path."""
    assert locate(text.encode(), "/etc/lvsdr/edge.toml") == found
    if found is not None:
        assert tomllib.loads(text)["cluster"]["name"] == found[0]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_is_in_the_plain_form(path: Path) -> None:
    """The examples (and what `lvsdr import` writes, in the same form) are
    found by the fast path, as tomllib reads them."""
    raw = path.read_bytes()
    cluster = tomllib.loads(raw.decode())["cluster"]
    assert locate(raw, str(path)) == (cluster["name"], cluster.get("state_dir"))


@pytest.fixture
def node1_ns() -> Iterator[str]:
    """A namespace of its own holding director node1's address on eth0 (the
    nft tables the tests leave stay out of the shared scratch namespace)."""
    name = f"{PREFIX}-replay"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"], check=True)
        for ifname in ("lo", "eth0", "eth1"):
            subprocess.run(["ip", "-n", name, "link", "set", ifname, "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "192.0.2.21/24", "dev", "eth0"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def pair_file(tmp_path: Path) -> Path:
    """examples/pair.toml as an operator keeps it, TOML, with the state kept in
    ``tmp_path`` (the fast path finds its record by reading the file by line)."""
    text = (EXAMPLES / "pair.toml").read_text()
    cluster = tmp_path / "pair.toml"
    cluster.write_text(text.replace("[cluster]\n", f'[cluster]\nstate_dir = "{tmp_path / "state"}"\n', 1))
    assert tomllib.loads(cluster.read_text())["cluster"]["state_dir"] == str(tmp_path / "state")
    return cluster


def notify(ns: str, cluster: Path, state: str) -> dict[str, Any]:
    r = lvsdr_in(ns, "notify", str(cluster), "--node", "node1", "INSTANCE", "VI_pair", state, "200",
                 env={"LVSDR_LOG": "stderr"})
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if '"vrrp transition"' in ln)
    event: dict[str, Any] = json.loads(line)
    return event


def vip(ns: str, on: bool) -> None:
    subprocess.run(["ip", "-n", ns, "addr", "add" if on else "del", f"{VIP}/32", "dev", "eth0"], check=True)


def planned(ns: str, cluster: Path) -> int:
    code = ("from pathlib import Path\n"
            "from lvsdr.generator.load import load_cluster\n"
            "from lvsdr.generator.director import director_spec, observed_role, plan_role\n"
            "from lvsdr.hooks.facts import read_director_facts\n"
            f"c = load_cluster({str(cluster)!r}); s = director_spec(c, 'node1')\n"
            "f = read_director_facts(s, Path(c.state_dir))\n"
            "print(len(plan_role(s, observed_role(s, f.addresses), f)))\n")
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    return int(p.stdout)


@needs_root
def test_transitions_replay_and_leave_nothing_to_plan(node1_ns: str, tmp_path: Path) -> None:
    """Once both roles are recorded, transitions replay, and the full planner then finds nothing to do."""
    ns = node1_ns
    cluster = pair_file(tmp_path)
    # the full path, once per role: it records each role's state
    first = notify(ns, cluster, "BACKUP")
    vip(ns, True)
    second = notify(ns, cluster, "MASTER")
    assert "replayed" not in first and "replayed" not in second and second["changes"]
    # from now on the transitions replay, and the full planner agrees with the result
    for on, role in ((False, "BACKUP"), (True, "MASTER"), (False, "BACKUP")):
        vip(ns, on)
        event = notify(ns, cluster, role)
        assert event.get("replayed") is True and event["observed_role"] == role and event["changes"]
        assert planned(ns, cluster) == 0
        again = notify(ns, cluster, role)
        assert again.get("replayed") is True and again["changes"] == []
    # not a recorded state (the VIP gone from lo by hand): the full path puts it back
    subprocess.run(["ip", "-n", ns, "addr", "del", f"{VIP}/32", "dev", "lo"], check=True)
    event = notify(ns, cluster, "BACKUP")
    assert "replayed" not in event and any("add VIP" in c for c in event["changes"])
    # a changed cluster file: its key no longer matches, the full path runs (and records anew)
    cluster.write_text(cluster.read_text() + "\n# changed\n")
    vip(ns, True)
    event = notify(ns, cluster, "MASTER")
    assert "replayed" not in event and event["observed_role"] == "MASTER"
    assert planned(ns, cluster) == 0


@needs_root
def test_the_agent_replays_in_process_through_libnftables(node1_ns: str, tmp_path: Path) -> None:
    """The agent (a process that stays) runs nft through libnftables: its
    listing is byte for byte what `nft -s list ruleset` prints (the recorded
    states come from the nft tool), so its transitions replay, and leave
    nothing for the full planner."""
    ns = node1_ns
    cluster = pair_file(tmp_path)
    notify(ns, cluster, "BACKUP")
    vip(ns, True)
    notify(ns, cluster, "MASTER")
    code = ("import json, subprocess\n"
            "from lvsdr.hooks.fast import libnft\n"
            "from lvsdr.hooks.agent import resident_replay\n"
            "from lvsdr.source import Source\n"
            "tool = subprocess.run(['nft', '-s', 'list', 'ruleset'], capture_output=True, text=True, check=True)\n"
            "print(json.dumps({'same': libnft.run('list ruleset\\n') == (0, tool.stdout),\n"
            f"                  'replayed': resident_replay(Source.read({str(cluster)!r}, 'node1'))}}))\n")
    for on, role in ((False, "BACKUP"), (True, "MASTER")):
        vip(ns, on)
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
        out = json.loads(p.stdout)
        assert out["same"] is True
        assert out["replayed"] is not None and out["replayed"][0] == role and out["replayed"][1]
        assert planned(ns, cluster) == 0


def test_what_import_writes_is_in_the_plain_form(tmp_path: Path) -> None:
    """What lvsdr import writes is found by notify's fast path as tomllib reads it."""
    from lvsdr.cli import main

    out = tmp_path / "imported.toml"
    confs = [str(DATA / "import" / "classic" / n) for n in ("lb1.conf", "lb2.conf")]
    assert main(["import", *confs, "--arp-method", "sysctl", "-o", str(out)]) == 0
    raw = out.read_bytes()
    assert locate(raw, str(out)) == (tomllib.loads(raw.decode())["cluster"]["name"], None)


@pytest.mark.parametrize(("edit", "said"), [
    (lambda t: t, "warn  notify's fast path: no record yet of the BACKUP or MASTER state"),
    (lambda t: t.replace('name = "pair"', 'name = "pair"  # the pair'),
     "warn  notify's fast path: its record cannot be found: write the cluster's name plainly"),
    (lambda t: t.replace('arp_method = "nftables"', 'arp_method = "arptables"'),
     "ok    notify has no fast path with arp_method arptables"),
])
def test_doctor_says_whether_notify_can_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               edit: Callable[[str], str], said: str) -> None:
    """doctor on a director names why notify would take its full path."""
    from lvsdr.generator.director import director_spec
    from lvsdr.hooks.doctor import Report, _fast_path
    from lvsdr.source import Source

    path = pair_file(tmp_path)
    path.write_text(edit(path.read_text()))
    file = Source.read(str(path), "node1")
    _fast_path(director_spec(file.cluster, "node1"), file, Report())
    assert said in capsys.readouterr().out


def test_the_notify_path_imports_nothing_heavy() -> None:
    """notify's fast path is fast because of what it does not import (each
    of these costs 1-50 ms at every failover): every module of hooks/fast/,
    the gateway's door it uses, the cluster file's Source, and the helpers it calls stay free of them."""
    fast = sorted(p.stem for p in (REPO / "hooks" / "fast").glob("*.py") if p.stem != "__init__")
    assert {"replay", "files", "log", "netlink", "libnft"} <= set(fast)
    code = ("import sys, importlib\n"
            "import lvsdr.cli, lvsdr.hooks.gateway, lvsdr.fingerprint, lvsdr.inputs, lvsdr.source, lvsdr.roles\n"
            f"for m in {fast!r}: importlib.import_module('lvsdr.hooks.fast.' + m)\n"
            "from lvsdr.hooks.fast import log, replay\n"
            f"replay.locate(open({str(EXAMPLES / 'pair.toml')!r}, 'rb').read(), 'pair.toml')\n"
            "lvsdr.source.source_key(b'cluster', 'node1', 'version')\n"
            "log.dumps({'changes': ['x'], 'ms': 1.5})\n"
            "print(' '.join(sorted(sys.modules)))\n")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    heavy = {"argparse", "asyncio", "contextlib", "ctypes", "dataclasses", "enum", "hashlib", "ipaddress", "jinja2",
             "json", "pathlib", "re", "socket", "structlog", "subprocess", "tempfile", "tomli", "typing"}
    assert heavy & loaded == set()


def test_the_listing_splitter_reads_a_captured_ruleset() -> None:
    """notify's listing splitter, on `nft -s list ruleset` captured with
    lvsdr's tables among others (a set, a brace in a comment): each of
    lvsdr's tables whole, byte for byte as `nft list table` prints it alone,
    and nothing of the others."""
    from lvsdr.hooks.fast.replay import split_ruleset

    text = (DATA / "facts" / "nft-ruleset.txt").read_text()
    got = split_ruleset(text, ["arp lvsdr", "inet lvsdr_fwmark", "inet absent"])
    assert sorted(got) == ["arp lvsdr", "inet lvsdr_fwmark"]
    alone = (DATA / "facts" / "nft-list-table-arp-lvsdr.txt").read_text()  # captured with other addresses
    assert got["arp lvsdr"] == alone.replace("192.0.2.100", "192.0.2.120").replace("192.0.2.11", "192.0.2.21")
    assert got["inet lvsdr_fwmark"].startswith("table inet lvsdr_fwmark {\n\tchain prerouting {\n")
    assert got["inet lvsdr_fwmark"].endswith("meta mark set 0x4c560001\n\t}\n}\n")
    assert split_ruleset("", ["arp lvsdr"]) == {}


def test_the_full_path_and_the_fast_path_read_the_role_by_one_rule() -> None:
    """generator.director.observed_role and notify's replay ask lvsdr.roles.role_of: a VIP on its own device is
    MASTER, on another device (lo, where a director that is also a backend keeps it) BACKUP, for every VIP."""
    import ipaddress

    from lvsdr.generator.director import director_spec, observed_role, vip_devices
    from lvsdr.generator.load import load_cluster
    from lvsdr.generator.node import NodeAddress
    from lvsdr.roles import role_of

    spec = director_spec(load_cluster(EXAMPLES / "full.toml"), "lb-a")
    for device, vip in vip_devices(spec):
        for ifname in (device, "lo"):
            held = (NodeAddress(ifname, ipaddress.ip_interface(f"{vip}/32" if ":" not in vip else f"{vip}/128")),)
            want = "MASTER" if ifname == device else "BACKUP"
            assert observed_role(spec, held) == want
            assert role_of({(ifname, vip)}, vip_devices(spec)) == want
