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
    """The units render --all writes pass systemd-analyze verify, their Documentation= man pages included
    (the ones the lvsdr package installs)."""
    out = tmp_path / "out"
    assert main(["render", str(EXAMPLES / "full.toml"), "--all", "--output-dir", str(out)]) == 0
    subprocess.run([sys.executable, "-m", "lvsdr.manpages", str(tmp_path / "man")], check=True, capture_output=True)
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
                           check=False, env={**os.environ, "MANPATH": str(tmp_path / "man")})
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


MAINTAINER = "Example Ops <ops@example.org>"


def node_packages(cluster: Path, out: Path | str, cwd: Path | None = None,
                  **extra: str) -> subprocess.CompletedProcess[str]:
    """scripts/node-packages as the docs run it (a maintainer, a fixed SOURCE_DATE_EPOCH)."""
    env = {**os.environ, "LVSDR": str(Path(sys.executable).parent / "lvsdr"), "SOURCE_DATE_EPOCH": "1700000000",
           "MAINTAINER": MAINTAINER, **extra}
    return subprocess.run(["bash", str(REPO / "scripts" / "node-packages"), str(cluster), "1.0", str(out)], env=env,
                          cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The node packages of examples/web.toml and examples/ecmp.toml, built once for the tests of the
    "node-packages" group (one worker builds them)."""
    if shutil.which("dpkg-deb") is None or shutil.which("rpmbuild") is None:
        pytest.skip("no dpkg-deb or rpmbuild here")
    out = {}
    for example in ("web.toml", "ecmp.toml"):
        d = tmp_path_factory.mktemp("node-packages") / example
        p = node_packages(EXAMPLES / example, d)
        assert p.returncode == 0, p.stderr
        out[example] = d
    return out


PACKAGES = pytest.mark.xdist_group("node-packages")


def packaged(path: str, pkg: str, node: str, unitdir: str) -> str:
    """Where a package puts a file `render --all` writes: units where packages put them, the README in
    the package's doc directory (the one mapping of scripts/node-packages)."""
    if path.startswith("etc/systemd/system/"):
        return unitdir + path.removeprefix("etc/systemd/system")
    return path.replace(f"usr/share/doc/lvsdr-{node}/", f"usr/share/doc/{pkg}/")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb here")
@PACKAGES
def test_one_reproducible_package_per_node(tmp_path: Path, built: dict[str, Path]) -> None:
    """scripts/node-packages, the documented recipe (docs/packaging.md): the same bytes twice, units where
    packages put them, the copyright, changelog and overrides Debian's policy asks for."""
    digests = []
    p = node_packages(EXAMPLES / "web.toml", tmp_path / "two")
    assert p.returncode == 0, p.stderr
    for out in (built["web.toml"], tmp_path / "two"):
        debs = sorted(out.glob("*.deb"))
        assert [d.name for d in debs] == [f"lvsdr-{n}_1.0_all.deb" for n in ("lb1", "lb2", "web1", "web2")]
        rpms = sorted(out.glob("*.rpm"))
        assert [r.name for r in rpms] == [f"lvsdr-{n}-1.0-1.noarch.rpm" for n in ("lb1", "lb2", "web1", "web2")]
        digests.append([hashlib.sha256(d.read_bytes()).hexdigest() for d in debs + rpms])
    assert digests[0] == digests[1]
    listing = subprocess.run(["dpkg-deb", "-c", str(built["web.toml"] / "lvsdr-lb1_1.0_all.deb")],
                             capture_output=True, text=True, check=True).stdout
    files = [(line.split()[0], line.split()[1], line.split()[-1]) for line in listing.splitlines()
             if not line.startswith("d")]
    assert files == [
        ("-rw-------", "root/root", "./etc/keepalived/keepalived.conf"),
        ("-rw-------", "root/root", "./etc/lvsdr/cluster.toml"),
        ("-rw-r--r--", "root/root", "./lib/systemd/system/lvsdr-agent@.service"),
        ("-rw-r--r--", "root/root", "./lib/systemd/system/lvsdr-watch@.service"),
        ("-rw-r--r--", "root/root", "./usr/share/doc/lvsdr-lb1/changelog.gz"),
        ("-rw-r--r--", "root/root", "./usr/share/doc/lvsdr-lb1/copyright"),
        ("-rw-r--r--", "root/root", "./usr/share/lintian/overrides/lvsdr-lb1"),
    ]
    info = subprocess.run(["dpkg-deb", "-f", str(built["web.toml"] / "lvsdr-web1_1.0_all.deb"), "Package",
                           "Version", "Maintainer"], capture_output=True, text=True, check=True).stdout
    assert info.splitlines() == ["Package: lvsdr-web1", "Version: 1.0", f"Maintainer: {MAINTAINER}"]


LINTS = all(shutil.which(t) for t in ("lintian", "rpmlint"))


@PACKAGES
@pytest.mark.skipif(not LINTS, reason="lintian and rpmlint are not installed (scripts/setup installs them)")
def test_node_packages_pass_lintian_and_rpmlint(built: dict[str, Path]) -> None:
    """A node package of each kind passes lintian (errors, warnings, pedantic, experimental and info tags:
    none; every override used): a VRRP director (web.toml's lb1), an ECMP director and a real server
    (ecmp.toml's lb1 and web1); and every node RPM of both examples rpmlint with rpm/rpmlint.toml (0 errors,
    0 warnings)."""
    debs = [built["web.toml"] / "lvsdr-lb1_1.0_all.deb", built["ecmp.toml"] / "lvsdr-lb1_1.0_all.deb",
            built["ecmp.toml"] / "lvsdr-web1_1.0_all.deb"]
    lint = subprocess.run(["lintian", "-E", "-I", "--pedantic", "--fail-on", "error,warning,info,pedantic",
                           *map(str, debs)], capture_output=True, text=True, check=False)
    tags = [t for t in lint.stdout.splitlines() if t.strip()]
    assert lint.returncode == 0 and tags == [], tags
    rpms = sorted(f for d in built.values() for f in d.glob("*.rpm"))
    assert len(rpms) == 10
    r = subprocess.run(["rpmlint", "-c", str(REPO / "rpm" / "rpmlint.toml"), *map(str, rpms)], cwd=rpms[0].parent,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "10 packages and 0 specfiles checked; 0 errors, 0 warnings" in r.stdout, r.stdout


def tree_of(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` (but ``skip``): its mode and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mode & 0o7777, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and not str(p.relative_to(root)).startswith(skip)}


def links_of(root: Path) -> dict[str, str]:
    """Every symbolic link under ``root``: where it points."""
    return {str(p.relative_to(root)): os.readlink(p) for p in sorted(root.rglob("*")) if p.is_symlink()}


def dpkg_root(root: Path) -> list[str]:
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    return ["dpkg", f"--root={root}", "--force-depends", "--force-script-chrootless"]


PACKAGE_DOCS = ("changelog.gz", "copyright")


@PACKAGES
@pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("rpmbuild") is None, reason="no dpkg or rpmbuild")
def test_each_nodes_packages_install_its_rendered_tree(tmp_path: Path, built: dict[str, Path]) -> None:
    """Each node's Debian package (dpkg -i) and RPM (rpm -i), installed into a scratch root, put there the
    files `render --all` writes for the node, modes included (units in the packages' unit directory), and
    the package's copyright and changelog; the Debian ones depend on lvsdr, the RPMs require it."""
    for example in ("web.toml", "ecmp.toml"):
        out = built[example]
        rendered = tmp_path / f"render-{example}"
        assert main(["render", str(EXAMPLES / example), "--all", "--output-dir", str(rendered)]) == 0
        nodes = sorted(d.name for d in rendered.iterdir())
        assert sorted(d.name.split("_")[0].removeprefix("lvsdr-") for d in out.glob("*.deb")) == nodes
        for node in nodes:
            pkg = f"lvsdr-{node}"
            deb_root = tmp_path / "deb" / example / node
            deb = out / f"{pkg}_1.0_all.deb"
            # installed and configured (its conffiles in place); its postinst sees DPKG_ROOT: nothing started
            subprocess.run([*dpkg_root(deb_root), "-i", str(deb)], check=True, capture_output=True)
            want = {packaged(f, pkg, node, "lib/systemd/system"): v for f, v in tree_of(rendered / node).items()}
            got = tree_of(deb_root, ("var/",))
            assert {f: v for f, v in got.items() if not f.startswith("usr/share/lintian/overrides/")
                    and f not in [f"usr/share/doc/{pkg}/{d}" for d in PACKAGE_DOCS]} == want, deb.name
            depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True,
                                     check=True).stdout
            assert depends.split(",")[0].strip() == "lvsdr"
            rpm_root = tmp_path / "rpm" / example / node
            rpm = out / f"{pkg}-1.0-1.noarch.rpm"
            subprocess.run(["rpm", "--root", str(rpm_root), "--dbpath", "/rpmdb", "--initdb"], check=True,
                           capture_output=True)
            subprocess.run(["rpm", "--root", str(rpm_root), "--dbpath", "/rpmdb", "-i", "--nodeps", "--noscripts",
                            "--nosignature", str(rpm)], check=True, capture_output=True)
            want = {packaged(f, pkg, node, "usr/lib/systemd/system"): v for f, v in tree_of(rendered / node).items()}
            got = tree_of(rpm_root, ("rpmdb/",))
            assert {f: v for f, v in got.items() if f != f"usr/share/doc/{pkg}/copyright"} == want, rpm.name
            config = subprocess.run(["rpm", "-qpc", str(rpm)], capture_output=True, text=True, check=True).stdout
            assert sorted(config.split()) == sorted("/" + f for f in want if f.startswith("etc/"))
            requires = subprocess.run(["rpm", "-qpR", str(rpm)], capture_output=True, text=True, check=True).stdout
            assert "lvsdr" in requires.split()


@pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("deb-systemd-helper") is None,
                    reason="no dpkg or deb-systemd-helper")
@PACKAGES
def test_a_node_package_enables_its_instances_and_purging_leaves_nothing(tmp_path: Path,
                                                                        built: dict[str, Path]) -> None:
    """Through dpkg into a scratch root (Debian's deb-systemd-helper acting there): installing enables the
    node's own instances (the units' DefaultInstance); removing keeps the files under /etc and masks the
    units; purging leaves the root as it was before the installation, links, state and files."""
    for node, links in (("web1", {"multi-user.target.wants/lvsdr-realserver@web1.service":
                                  "/lib/systemd/system/lvsdr-realserver@.service",
                                  "multi-user.target.wants/lvsdr-realserver-watch@web1.service":
                                  "/lib/systemd/system/lvsdr-realserver-watch@.service"}),
                        ("lb1", {"keepalived.service.wants/lvsdr-agent@lb1.service":
                                 "/lib/systemd/system/lvsdr-agent@.service",
                                 "multi-user.target.wants/lvsdr-watch@lb1.service":
                                 "/lib/systemd/system/lvsdr-watch@.service"})):
        root = tmp_path / node
        dpkg = dpkg_root(root)
        before = tree_of(root), links_of(root)
        subprocess.run([*dpkg, "-i", str(built["web.toml"] / f"lvsdr-{node}_1.0_all.deb")], check=True,
                       capture_output=True)
        enabled = {k.removeprefix("etc/systemd/system/"): v for k, v in links_of(root).items()
                   if k.startswith("etc/systemd/system/")}
        assert enabled == links, enabled
        subprocess.run([*dpkg, "--remove", f"lvsdr-{node}"], check=True, capture_output=True)
        left = tree_of(root, ("var/",))
        assert left and all(f.startswith("etc/") for f in left), left  # the conffiles stay until purge
        masked = {k: v for k, v in links_of(root).items() if v == "/dev/null"}
        assert sorted(masked) == sorted(f"etc/systemd/system/{v.rsplit('/', 1)[1]}" for v in links.values())
        subprocess.run([*dpkg, "--purge", f"lvsdr-{node}"], check=True, capture_output=True)
        after = {f: v for f, v in tree_of(root).items() if not f.startswith("var/lib/dpkg/")}, links_of(root)
        assert after == ({f: v for f, v in before[0].items() if not f.startswith("var/lib/dpkg/")}, before[1])
        leftovers = [str(d.relative_to(root)) for d in root.rglob("*") if d.is_dir() and not any(d.iterdir())
                     and not str(d.relative_to(root)).startswith("var/lib/dpkg")]
        # what deb-systemd-helper makes in an empty root, and every systemd host has
        assert sorted(leftovers) == ["etc/systemd/system", "var/lib/systemd"], leftovers


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
@PACKAGES
def test_an_ecmp_directors_package_holds_bird_conf_and_reloads_bird(built: dict[str, Path]) -> None:
    """An ECMP director's package: bird.conf, keepalived's drain drop-in, a dependency on bird2; its postinst
    has BIRD read the bird.conf it installed, its prerm stops BIRD after the node's units on removal."""
    deb = str(built["ecmp.toml"] / "lvsdr-lb1_1.0_all.deb")
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    assert "./etc/bird/bird.conf" in listing and "./lib/systemd/system/keepalived.service.d/lvsdr-drain.conf" \
        in listing
    depends = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True, check=True).stdout
    assert depends.strip() == "lvsdr, keepalived, nftables, bird2"
    postinst = subprocess.run(["dpkg-deb", "-I", deb, "postinst"], capture_output=True, text=True,
                              check=True).stdout
    assert "deb-systemd-invoke try-reload-or-restart 'bird.service'" in postinst
    assert "deb-systemd-invoke start 'bird.service'" not in postinst  # bird2's own installation started it
    prerm = subprocess.run(["dpkg-deb", "-I", deb, "prerm"], capture_output=True, text=True, check=True).stdout
    assert prerm.index("'lvsdr-watch@lb1.service'") < prerm.index("stop 'bird.service'")  # it announces no more


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


def _node_packages(tmp_path: Path, text: str, out: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    cluster = tmp_path / "c.toml"
    cluster.write_text(text)
    return node_packages(cluster, out, cwd, **extra)


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


@pytest.mark.parametrize(("extra", "expected"), [
    ({"MAINTAINER": ""}, "MAINTAINER: who maintains these packages?"),
    ({"MAINTAINER": "lvsdr <root@localhost>"}, "is not 'Name <user@domain>'"),
    ({"MAINTAINER": "ops@example.org"}, "is not 'Name <user@domain>'"),
    ({"MAINTAINER": "", "DEBFULLNAME": "Ops", "DEBEMAIL": "x"}, "is not 'Name <user@domain>'"),
])
def test_node_packages_need_a_real_maintainer(tmp_path: Path, extra: dict[str, str], expected: str) -> None:
    """No maintainer, or one lintian calls bogus (root, localhost, no name): one line, exit 2, nothing built."""
    env = {k: v for k, v in extra.items()}
    p = _node_packages(tmp_path, (EXAMPLES / "web.toml").read_text(), str(tmp_path / "out"), tmp_path, **env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and expected in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("unshare") is None
                    or shutil.which("deb-systemd-invoke") is None, reason="no dpkg, unshare or deb-systemd-invoke")
@PACKAGES
def test_a_node_packages_scripts_start_on_install_stop_on_removal_and_leave_an_upgrade_running(
        tmp_path: Path, built: dict[str, Path]) -> None:
    """The Debian package's maintainer scripts, run as dpkg runs them where systemd runs (a private mount
    namespace: /run/systemd/system, systemd's /etc and state on tmpfs, systemctl recorded; Debian's own
    deb-systemd-helper and deb-systemd-invoke): installing starts the node's units, an upgrade neither
    starts nor stops one, removal stops them (a real server's healer first: its stop removes the VIPs, then
    the suppression) and reloads systemd."""
    stub = tmp_path / "bin" / "systemctl"
    stub.parent.mkdir()
    calls = tmp_path / "calls"
    # systemctl as deb-systemd-invoke asks it: every unit enabled and active
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\ncase "$*" in *is-enabled*) echo enabled ;; esac\n')
    stub.chmod(0o755)
    for pkg, units in (("web1", ["lvsdr-realserver-watch@web1.service", "lvsdr-realserver@web1.service"]),
                       ("lb1", ["lvsdr-agent@lb1.service", "lvsdr-watch@lb1.service"])):
        deb = built["web.toml"] / f"lvsdr-{pkg}_1.0_all.deb"
        control, files = tmp_path / f"control-{pkg}", tmp_path / f"files-{pkg}"
        subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(files)], check=True)
        start = [f"--quiet --system start {u}" for u in units]
        for script, args, want in (
                ("postinst", "configure", ["--system daemon-reload", *start]),
                ("postinst", "configure 0.9", ["--system daemon-reload"]),
                ("prerm", "upgrade 1.1", []),
                ("prerm", "remove", [f"stop {u}" for u in units]),
                ("postrm", "remove", ["--system daemon-reload"])):
            calls.unlink(missing_ok=True)
            run = ("mount -t tmpfs none /run && mkdir -p /run/systemd/system && "
                   "mount -t tmpfs none /etc/systemd/system && mkdir -p /var/lib/systemd && "
                   "mount -t tmpfs none /var/lib/systemd && "
                   f"cp {files}/lib/systemd/system/*.service /etc/systemd/system/ && "
                   f"PATH={stub.parent}:$PATH sh -e {control / script} {args}")
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", run],
                               capture_output=True, text=True, check=False, env={k: v for k, v in os.environ.items()
                                                                                if k != "DPKG_ROOT"})
            assert r.returncode == 0, r.stderr
            got = [c for c in (calls.read_text().splitlines() if calls.exists() else [])
                   if "is-enabled" not in c and "is-active" not in c]
            assert got == want, (pkg, script, args, got)


def scriptlets(rpm: Path) -> dict[str, str]:
    """An RPM's scriptlets (`rpm -qp --scripts`): {"postinstall": text, "preuninstall": ..., ...}."""
    out: dict[str, str] = {}
    name = ""
    text = subprocess.run(["rpm", "-qp", "--scripts", str(rpm)], capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        if line.endswith("scriptlet (using /bin/sh):"):
            name = line.split()[0]
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


@PACKAGES
@pytest.mark.skipif(shutil.which("rpm") is None or shutil.which("unshare") is None, reason="no rpm or unshare")
def test_a_node_rpms_scriptlets_start_on_install_stop_on_erase_and_leave_an_upgrade_running(
        tmp_path: Path, built: dict[str, Path]) -> None:
    """The node RPMs' scriptlets, run as rpm runs them ($1: installed instances after the operation) where
    systemd runs (a private mount namespace with /run/systemd/system, systemctl recorded): the first
    installation enables and starts the node's units, an upgrade neither starts nor stops one, erasing
    stops and disables them, then reloads systemd."""
    stub = tmp_path / "bin" / "systemctl"
    stub.parent.mkdir()
    calls = tmp_path / "calls"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    for pkg, units in (("web1", "lvsdr-realserver-watch@web1.service lvsdr-realserver@web1.service"),
                       ("lb1", "lvsdr-agent@lb1.service lvsdr-watch@lb1.service")):
        scripts = scriptlets(built["web.toml"] / f"lvsdr-{pkg}-1.0-1.noarch.rpm")
        for script, arg, want in (("postinstall", 1, ["daemon-reload", f"enable --now {units}"]),
                                  ("postinstall", 2, []), ("preuninstall", 1, []),
                                  ("preuninstall", 0, [f"disable --now {units}"]),
                                  ("postuninstall", 1, []), ("postuninstall", 0, ["daemon-reload"])):
            calls.unlink(missing_ok=True)
            body = tmp_path / f"{pkg}-{script}.sh"
            body.write_text(scripts[script])
            run = (f"mount -t tmpfs none /run && mkdir -p /run/systemd/system && PATH={stub.parent}:$PATH "
                   f"sh -e {body} {arg}")
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", run],
                               capture_output=True, text=True, check=False)
            assert r.returncode == 0, r.stderr
            got = calls.read_text().splitlines() if calls.exists() else []
            assert got == want, (pkg, script, arg, got)
