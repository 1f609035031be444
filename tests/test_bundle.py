"""`lvsdr render --all`: every node's files, byte-identical wherever and
however they are built; units systemd accepts; one package per node."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lvsdr.cli import main

from helpers import EXAMPLES, REPO


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """relative path -> (sha256, mode) of every file and directory under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        mode = stat.S_IMODE(p.lstat().st_mode)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (digest, mode)
    return out


def render_all(cluster: Path, out: Path, cwd: Path, umask: int, env: dict[str, str]) -> None:
    code = f"import os, sys; os.umask({umask}); from lvsdr.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, "render", str(cluster), "--all", "--output-dir", str(out)],
                       cwd=cwd, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def test_the_tree_does_not_depend_on_where_or_how_it_is_built(tmp_path: Path) -> None:
    """render --all gives the same bytes and modes whatever the working directory, umask or path of the cluster file."""
    a, b = tmp_path / "build-a" / "deep" / "dir", tmp_path / "b"
    for d in (a, b):
        d.mkdir(parents=True)
        shutil.copy(EXAMPLES / "full.toml", d / "cluster.toml")
    render_all(a / "cluster.toml", tmp_path / "out1", a, 0o077, {"LANG": "C", "TZ": "UTC"})
    render_all(Path("..") / "b" / "cluster.toml", tmp_path / "out2", tmp_path / "build-a", 0o022,
               {"LC_ALL": "C.UTF-8", "TZ": "Asia/Tokyo", "LVSDR_LOG_LEVEL": "debug"})
    render_all(b / "cluster.toml", tmp_path / "out3", b, 0o002, {})
    one = tree(tmp_path / "out1")
    assert one == tree(tmp_path / "out2") == tree(tmp_path / "out3")
    assert one["lb-a/etc/keepalived/keepalived.conf"][1] == 0o600  # it holds the VRRP password
    assert one["app1/etc/sysctl.d/90-lvsdr-arp.conf"][1] == 0o644
    conf = (tmp_path / "out1" / "lb-a" / "etc" / "keepalived" / "keepalived.conf").read_text()
    assert "from /etc/lvsdr/edge.toml" in conf and str(tmp_path) not in conf
    unit = (tmp_path / "out1" / "lb-a" / "etc" / "systemd" / "system" / "lvsdr-agent@.service").read_text()
    assert "ExecStart=/usr/bin/lvsdr agent /etc/lvsdr/edge.toml --node %i --fifo /run/lvsdr/edge.fifo" in unit
    assert "@" + "LVSDR@" not in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The units render --all writes pass systemd-analyze verify."""
    out = tmp_path / "out"
    assert main(["render", str(EXAMPLES / "full.toml"), "--all", "--output-dir", str(out)]) == 0
    for node in ("lb-a", "app1"):
        root = tmp_path / f"root-{node}"
        shutil.copytree(out / node, root)
        # the units name systemd's own (keepalived.service, network-pre.target) and lvsdr's path
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        for tool in ("lvsdr", "install"):  # lvsdr, and what the units' ExecStartPre makes the state directory with
            stub = root / "usr/bin" / tool
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
        units = [f"{p.name.split('@')[0]}@{node}.service" for p in (root / "etc/systemd/system").glob("*@.service")]
        assert units
        p = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units], capture_output=True, text=True,
                           check=False)
        assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(("node", "unit"), [("lb-a", "lvsdr-agent@.service"), ("lb-a", "lvsdr-watch@.service"),
                                            ("app1", "lvsdr-realserver@.service"),
                                            ("app1", "lvsdr-realserver-watch@.service")])
def test_each_unit_is_sandboxed_to_5_or_less(tmp_path: Path, node: str, unit: str) -> None:
    """`systemd-analyze security` rates each unit render --all writes 5.0 or less (9.5-9.6 UNSAFE before):
    capabilities, writable paths, address families and the rest limited to what lvsdr does (the lab runs them so)."""
    out = tmp_path / "out"
    assert main(["render", str(EXAMPLES / "full.toml"), "--all", "--output-dir", str(out)]) == 0
    instance = tmp_path / unit.replace("@", f"@{node}")
    shutil.copy(out / node / "etc/systemd/system" / unit, instance)
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", str(instance)], capture_output=True,
                       text=True, check=False)
    line = next(ln for ln in p.stdout.splitlines() if "Overall exposure level" in ln)
    score = float(line.split(":")[1].split()[0])
    assert score <= 5.0, p.stdout


def test_the_lab_reads_a_units_sandbox_as_systemd_does() -> None:
    """lab/sandbox.py takes each unit's [Service] keys (values split, repeated keys added), nothing of [Unit]."""
    from lvsdr.generator.artifacts import unit
    from lvsdr.generator.load import load_cluster
    from lvsdr.lab.sandbox import service

    keys = service(unit("lvsdr-agent@.service", load_cluster(EXAMPLES / "full.toml")))
    assert keys["CapabilityBoundingSet"] == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert keys["ReadWritePaths"] == ["/run", "/run/lvsdr", "/run/lvsdr", "/proc/sys/net"]
    assert keys["ProtectSystem"] == ["strict"] and "Before" not in keys


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb here")
def test_one_reproducible_package_per_node(tmp_path: Path) -> None:
    """scripts/node-packages, the documented recipe (docs/packaging.md)."""
    env = {**os.environ, "LVSDR": str(Path(sys.executable).parent / "lvsdr"), "SOURCE_DATE_EPOCH": "1700000000"}
    digests = []
    for run in ("one", "two"):
        p = subprocess.run(["bash", str(REPO / "scripts" / "node-packages"), str(EXAMPLES / "web.toml"), "1.0",
                            str(tmp_path / run)], env=env, capture_output=True, text=True, check=False)
        assert p.returncode == 0, p.stderr
        debs = sorted((tmp_path / run).glob("*.deb"))
        assert [d.name for d in debs] == [f"lvsdr-{n}_1.0_all.deb" for n in ("lb1", "lb2", "web1", "web2")]
        rpms = sorted((tmp_path / run).glob("*.rpm"))
        assert [r.name for r in rpms] == [f"lvsdr-{n}-1.0-1.noarch.rpm" for n in ("lb1", "lb2", "web1", "web2")]
        digests.append([hashlib.sha256(d.read_bytes()).hexdigest() for d in debs + rpms])
    assert digests[0] == digests[1]
    listing = subprocess.run(["dpkg-deb", "-c", str(tmp_path / "one" / "lvsdr-lb1_1.0_all.deb")],
                             capture_output=True, text=True, check=True).stdout
    files = [(line.split()[0], line.split()[1], line.split()[-1]) for line in listing.splitlines()
             if not line.startswith("d")]
    assert files == [
        ("-rw-------", "root/root", "./etc/keepalived/keepalived.conf"),
        ("-rw-------", "root/root", "./etc/lvsdr/cluster.toml"),
        ("-rw-r--r--", "root/root", "./etc/systemd/system/lvsdr-agent@.service"),
        ("-rw-r--r--", "root/root", "./etc/systemd/system/lvsdr-watch@.service"),
    ]
    info = subprocess.run(["dpkg-deb", "-f", str(tmp_path / "one" / "lvsdr-web1_1.0_all.deb"), "Package",
                           "Version"], capture_output=True, text=True, check=True).stdout
    assert info.split() == ["Package:", "lvsdr-web1", "Version:", "1.0"]


def tree_of(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` (but ``skip``): its mode and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mode & 0o7777, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)}


@pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("rpmbuild") is None, reason="no dpkg or rpmbuild")
def test_each_nodes_packages_install_its_rendered_tree(tmp_path: Path) -> None:
    """Each node's Debian package (dpkg --unpack) and RPM (rpm -i), installed into a scratch root, put there
    exactly the files `render --all` writes for the node, modes included; the Debian ones depend on lvsdr."""
    env = {**os.environ, "LVSDR": str(Path(sys.executable).parent / "lvsdr"), "SOURCE_DATE_EPOCH": "1700000000"}
    for example in ("web.toml", "ecmp.toml"):
        out = tmp_path / example
        p = subprocess.run(["bash", str(REPO / "scripts" / "node-packages"), str(EXAMPLES / example), "1.0",
                            str(out)], env=env, capture_output=True, text=True, check=False)
        assert p.returncode == 0, p.stderr
        rendered = tmp_path / f"render-{example}"
        assert main(["render", str(EXAMPLES / example), "--all", "--output-dir", str(rendered)]) == 0
        nodes = sorted(d.name for d in rendered.iterdir())
        assert sorted(d.name.split("_")[0].removeprefix("lvsdr-") for d in out.glob("*.deb")) == nodes
        for node in nodes:
            want = tree_of(rendered / node)
            deb_root = tmp_path / "deb" / example / node
            (deb_root / "var/lib/dpkg/info").mkdir(parents=True)
            (deb_root / "var/lib/dpkg/updates").mkdir()
            (deb_root / "var/lib/dpkg/status").touch()
            deb = out / f"lvsdr-{node}_1.0_all.deb"
            # installed and configured (its conffiles in place); its postinst sees DPKG_ROOT and enables nothing here
            subprocess.run(["dpkg", f"--root={deb_root}", "--force-depends", "--force-script-chrootless", "-i",
                            str(deb)], check=True, capture_output=True)
            assert tree_of(deb_root, ("var/",)) == want, f"{deb.name} installs another tree than render --all"
            depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True,
                                     check=True).stdout
            assert depends.split(",")[0].strip() == "lvsdr"
            rpm_root = tmp_path / "rpm" / example / node
            rpm = out / f"lvsdr-{node}-1.0-1.noarch.rpm"
            subprocess.run(["rpm", "--root", str(rpm_root), "--dbpath", "/rpmdb", "--initdb"], check=True,
                           capture_output=True)
            subprocess.run(["rpm", "--root", str(rpm_root), "--dbpath", "/rpmdb", "-i", "--nodeps", "--noscripts",
                            "--nosignature", str(rpm)], check=True, capture_output=True)
            assert tree_of(rpm_root, ("rpmdb/",)) == want, f"{rpm.name} installs another tree than render --all"
            config = subprocess.run(["rpm", "-qpc", str(rpm)], capture_output=True, text=True, check=True).stdout
            assert sorted(config.split()) == sorted("/" + f for f in want if f.startswith("etc/"))


@pytest.mark.parametrize(("args", "expected"), [
    (["--all"], "render: --all needs --output-dir DIR"),
    (["--all", "--node", "lb1", "--output-dir", "x"], "render: --all takes the paths from the cluster file"),
    ([], "render: give --node NAME (one director) or --all --output-dir DIR (every node)"),
    (["--node", "lb1", "--output-dir", "x"], "render: --output-dir is for --all"),
    (["--all", "--output-dir", "{full}"], "exists and is not an empty directory"),
])
def test_bad_render_all_input(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    """render --all refuses bad flags and a non-empty output directory in one line, exit 2."""
    args = [a.format(full=str(EXAMPLES)) for a in args]
    assert main(["render", str(EXAMPLES / "web.toml"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb here")
def test_an_ecmp_directors_package_holds_bird_conf_and_enables_bird(tmp_path: Path) -> None:
    """An ECMP director's package: bird.conf, keepalived's drain drop-in, a
    dependency on bird2, and its postinst enables bird.service beside the agent."""
    env = {**os.environ, "LVSDR": str(Path(sys.executable).parent / "lvsdr"), "SOURCE_DATE_EPOCH": "1700000000"}
    p = subprocess.run(["bash", str(REPO / "scripts" / "node-packages"), str(EXAMPLES / "ecmp.toml"), "1.0",
                        str(tmp_path)], env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    deb = str(tmp_path / "lvsdr-lb1_1.0_all.deb")
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    assert "./etc/bird/bird.conf" in listing and "./etc/systemd/system/keepalived.service.d/lvsdr-drain.conf" \
        in listing
    depends = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True, check=True).stdout
    assert depends.strip() == "lvsdr, keepalived, nftables, bird2"
    postinst = (tmp_path / "tree" / "lb1" / "DEBIAN" / "postinst").read_text()
    assert "bird.service" in postinst


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_drain_drop_in_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """keepalived.service with an ECMP director's drain drop-in passes systemd-analyze verify."""
    out = tmp_path / "out"
    assert main(["render", str(EXAMPLES / "ecmp.toml"), "--all", "--output-dir", str(out)]) == 0
    root = tmp_path / "root"
    shutil.copytree(out / "lb1", root)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for exe in ("usr/bin/lvsdr", "usr/sbin/keepalived", "bin/kill"):  # what keepalived.service runs
        stub = root / exe
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    p = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "keepalived.service"], capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def _node_packages(tmp_path: Path, text: str, out: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cluster = tmp_path / "c.toml"
    cluster.write_text(text)
    env = {**os.environ, "LVSDR": str(Path(sys.executable).parent / "lvsdr"), "SOURCE_DATE_EPOCH": "1700000000"}
    return subprocess.run(["bash", str(REPO / "scripts" / "node-packages"), str(cluster), "1.0", out], env=env,
                          cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("rpmbuild") is None, reason="no dpkg or rpm")
def test_a_node_named_with_capitals_and_underscores_packages_into_a_relative_outdir(tmp_path: Path) -> None:
    """Node LB_1 (a valid node name) is package lvsdr-lb-1 in both formats (dpkg-deb refused lvsdr-LB_1), and a
    relative OUTDIR works for the RPMs too (rpmbuild runs elsewhere: every RPM failed)."""
    text = (EXAMPLES / "web.toml").read_text().replace('"lb1"', '"LB_1"')
    p = _node_packages(tmp_path, text, "out", tmp_path)
    assert p.returncode == 0, p.stderr
    names = sorted(f.name for f in (tmp_path / "out").iterdir() if f.is_file())
    assert "lvsdr-lb-1_1.0_all.deb" in names and "lvsdr-lb-1-1.0-1.noarch.rpm" in names, names
    postinst = subprocess.run(["dpkg-deb", "-I", str(tmp_path / "out" / "lvsdr-lb-1_1.0_all.deb"), "postinst"],
                              capture_output=True, text=True, check=True).stdout
    assert "lvsdr-agent@LB_1.service" in postinst  # the unit's instance is the node's own name


def test_two_nodes_that_would_be_one_package_are_refused(tmp_path: Path) -> None:
    """LB_1 and lb-1 would both be lvsdr-lb-1: one line naming both, exit 2."""
    text = (EXAMPLES / "web.toml").read_text().replace('"lb1"', '"LB_1"').replace('"lb2"', '"lb-1"')
    p = _node_packages(tmp_path, text, str(tmp_path / "out"), tmp_path)
    assert p.returncode == 2 and "nodes LB_1 and lb-1 would both be package lvsdr-lb-1" in p.stderr, p.stderr


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("unshare") is None, reason="no dpkg or unshare")
def test_removing_a_node_package_stops_and_disables_its_units_an_upgrade_does_not(tmp_path: Path) -> None:
    """The Debian package's prerm, run as dpkg runs it where systemd runs (a private mount namespace with
    /run/systemd/system, systemctl recorded): `remove` stops and disables the node's units (a real server's stop
    removes its suppression), `upgrade` touches nothing; postrm reloads systemd after removal."""
    p = _node_packages(tmp_path, (EXAMPLES / "web.toml").read_text(), str(tmp_path / "out"), tmp_path)
    assert p.returncode == 0, p.stderr
    stub = tmp_path / "bin" / "systemctl"
    stub.parent.mkdir()
    calls = tmp_path / "calls"
    stub.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    stub.chmod(0o755)
    for pkg, units in (("web1", ["lvsdr-realserver-watch@web1.service", "lvsdr-realserver@web1.service"]),
                       ("lb1", ["lvsdr-agent@lb1.service", "lvsdr-watch@lb1.service"])):
        control = tmp_path / f"control-{pkg}"
        subprocess.run(["dpkg-deb", "-e", str(tmp_path / "out" / f"lvsdr-{pkg}_1.0_all.deb"), str(control)],
                       check=True)
        for script, arg, want in (("prerm", "upgrade", []), ("prerm", "remove", [f"disable --now {u}" for u in units]),
                                  ("postrm", "remove", ["daemon-reload"])):
            calls.unlink(missing_ok=True)
            run = (f"mount -t tmpfs none /run && mkdir -p /run/systemd/system && PATH={stub.parent}:$PATH "
                   f"sh {control / script} {arg}")
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", run],
                               capture_output=True, text=True, check=False, env={k: v for k, v in os.environ.items()
                                                                                if k != "DPKG_ROOT"})
            assert r.returncode == 0, r.stderr
            got = calls.read_text().splitlines() if calls.exists() else []
            assert got == want, (pkg, script, arg, got)
