"""Packaging stays proven: a wheel built from a clean copy of the tree (what
`git ls-files` holds: no stale build/ can leak into it), installed into a
throwaway venv, runs the console script; and test scaffolding does not ship."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import GOLDEN, REPO, poll

pytestmark = pytest.mark.xdist_group("packaging")  # one wheel built per module


def source_files() -> list[str]:
    p = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                       capture_output=True, check=False)
    if p.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in p.stdout.decode().split("\0") if f and os.path.lexists(REPO / f)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    for rel in source_files():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(REPO / rel):
            os.symlink(os.readlink(REPO / rel), dest)
        else:
            shutil.copy2(REPO / rel, dest)
    # an isolated build (pip's default): setuptools from the index, not from this venv
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (whl,) = (tmp / "dist").glob("lvsdr-*.whl")
    return whl


def test_wheel_holds_the_package_and_no_scaffolding(wheel: Path) -> None:
    """The wheel holds the package's modules, templates and units, and none of the tests or scripts."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("lvsdr/cli.py", "lvsdr/py.typed", "lvsdr/generator/methods/nftables.py", "lvsdr/hooks/gateway.py",
                 "lvsdr/templates/keepalived.conf.j2", "lvsdr/templates/realserver/README.txt.j2",
                 "lvsdr/systemd/lvsdr-agent@.service", "lvsdr/lab/web.toml", "lvsdr/lab/standin.py"):
        assert want in names, want
    assert not [n for n in names if "firewalld_ns" in n or n.startswith(("tests/", "generator/", "hooks/"))]
    assert "lvsdr/lab/firewalld.py" not in names


@pytest.mark.long
def test_installed_wheel_runs_the_console_script(wheel: Path, tmp_path: Path) -> None:
    """The console script of an installed wheel validates and renders."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import lvsdr; print(lvsdr.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the source tree
    r = subprocess.run([str(venv / "bin" / "lvsdr"), "render", "examples/web.toml", "--node", "lb1"],
                       capture_output=True, text=True, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (GOLDEN / "web.lb1.keepalived.conf").read_text()


def test_firewalld_scaffolding_refuses_the_hosts_mount_namespace(tmp_path: Path) -> None:
    """It mounts a tmpfs on /run: only ever inside a private mount namespace."""
    r = subprocess.run([sys.executable, str(REPO / "tests" / "firewalld_ns.py"), os.readlink("/proc/self/ns/mnt"),
                        str(tmp_path / "copy")], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "refusing to run outside a private mount namespace" in r.stderr
    assert not (tmp_path / "copy").exists()


DEBIAN_MODULES = ("jinja2", "pyroute2", "watchdog", "structlog", "prometheus_client", "tomli")


def debian_package(checkout: Path, out: Path) -> Path:
    """scripts/lvsdr-deb of ``checkout`` into ``out``: the .deb (lintian passed: the script's exit status)."""
    p = subprocess.run(["bash", str(checkout / "scripts" / "lvsdr-deb"), str(out)], capture_output=True, text=True,
                       check=False, env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert p.returncode == 0, p.stdout + p.stderr
    (deb,) = out.glob("lvsdr_*_all.deb")
    return deb


def assert_renders_as_the_checkout(packaged: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """The packaged command (with ``env``) and this checkout's write the same `render --all` tree."""
    for name in ("packaged", "checkout"):
        cmd = packaged if name == "packaged" else [str(Path(sys.executable).parent / "lvsdr")]
        r = subprocess.run([*cmd, "render", str(REPO / "examples/full.toml"), "--all", "--output-dir",
                            str(tmp_path / name)], capture_output=True, text=True, check=False,
                           env=env if name == "packaged" else None)
        assert r.returncode == 0, r.stderr
    trees = [{str(f.relative_to(tmp_path / n)): f.read_bytes() for f in sorted((tmp_path / n).rglob("*"))
              if f.is_file()} for n in ("packaged", "checkout")]
    assert trees[0] == trees[1] and trees[0]


BUILDS_DEBIAN = all(shutil.which(t) for t in ("dpkg-buildpackage", "dh", "lintian"))


@pytest.mark.long
@pytest.mark.skipif(not BUILDS_DEBIAN, reason="debhelper and lintian are not installed (scripts/setup installs them)")
def test_the_lvsdr_debian_package_runs_on_debians_modules(tmp_path: Path) -> None:
    """scripts/lvsdr-deb's package (dpkg-buildpackage, debhelper, pybuild; lintian without an error or a warning,
    pedantic tags included), built from a clone with an untracked module beside the tracked ones (not shipped: it
    builds from what git tracks), depends on Debian's Python modules and byte-compiles at install (dh_python3's
    postinst); unpacked into a scratch root it runs on Debian's python3 and those modules: `render --all` writes the
    same tree as this checkout, the resident `watch` (Debian's watchdog) installs an edit, `man lvsdr-watch` finds
    its page, and bash completes its commands."""
    missing = subprocess.run(["/usr/bin/python3", "-c", f"import {', '.join(DEBIAN_MODULES)}"], capture_output=True,
                             check=False).returncode
    if missing:
        pytest.skip("Debian's python3 modules are not installed (scripts/setup installs them)")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, capture_output=True)
    for tracked in subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                                  check=True).stdout.splitlines():  # this checkout's tracked files, as they are now
        if (REPO / tracked).is_file() and not (REPO / tracked).is_symlink():
            (clone / tracked).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / tracked, clone / tracked)
    (clone / "hooks" / "stray.py").write_text("raise SystemExit('an untracked file was shipped')\n")
    deb = debian_package(clone, tmp_path / "out")
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "lvsdr/hooks/gateway.py" in listing and "stray" not in listing
    lint = (tmp_path / "out" / "lintian.txt").read_text()
    assert not [line for line in lint.splitlines() if line[:2] in ("E:", "W:")], lint
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Depends"], capture_output=True, text=True,
                            check=True).stdout
    assert "Package: lvsdr\n" in fields and all(f"python3-{m.replace('_', '-')}" in fields for m in DEBIAN_MODULES)
    postinst = subprocess.run(f"dpkg-deb --ctrl-tarfile {deb} | tar -xO ./postinst", shell=True, capture_output=True,
                              text=True, check=True).stdout
    assert "py3compile -p lvsdr" in postinst
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    page = subprocess.run(["man", "-M", str(root / "usr/share/man"), "-w", "lvsdr-watch"], capture_output=True,
                          text=True, check=False)
    assert page.returncode == 0 and page.stdout.strip().endswith("man1/lvsdr-watch.1.gz"), page
    completion = root / "usr/share/bash-completion/completions/lvsdr"
    words = subprocess.run(["bash", "-c", f"source {completion}; COMP_WORDS=(lvsdr wa); COMP_CWORD=1; _lvsdr; "
                            "echo ${COMPREPLY[@]}"], capture_output=True, text=True, check=True).stdout.split()
    assert words == ["watch"]
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")}
    packaged = ["/usr/bin/python3", str(root / "usr/bin/lvsdr")]
    where = subprocess.run([*packaged[:1], "-c", "import lvsdr, jinja2; print(lvsdr.__file__, jinja2.__file__)"],
                           capture_output=True, text=True, check=True, env=env).stdout.split()
    assert where[0].startswith(str(root)) and where[1].startswith("/usr/lib/python3/dist-packages/"), where
    assert_renders_as_the_checkout(packaged, env, tmp_path)
    # the resident watcher on Debian's watchdog, in a namespace of the test's own with the cluster's eth0 (a veth);
    # no keepalived pid: it writes the config and reloads nothing
    ns = f"lt{os.getpid()}-pkg"
    cluster, conf = tmp_path / "c.toml", tmp_path / "keepalived.conf"
    cluster.write_text((REPO / "examples/web.toml").read_text())
    subprocess.run(["ip", "netns", "add", ns], check=True)
    watch = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"], check=True)
        watch = subprocess.Popen(["ip", "netns", "exec", ns, "env", *(f"{k}={v}" for k, v in env.items()), *packaged,
                                  "watch", str(cluster), "--node", "lb1", "-o", str(conf), "--pidfile",
                                  str(tmp_path / "none.pid")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll(lambda: conf.exists(), "the packaged watch's first config", 30)
        cluster.write_text(cluster.read_text().replace('vip = "192.0.2.100"', 'vip = "192.0.2.109"'))
        poll(lambda: "192.0.2.109" in conf.read_text(), "the packaged watch installed the edit", 30)
    finally:
        if watch is not None:
            watch.terminate()
            watch.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)


BUILDS_RPM = all(shutil.which(t) for t in ("rpmbuild", "rpmlint", "rpm"))


@pytest.mark.long
@pytest.mark.skipif(not BUILDS_RPM, reason="rpmbuild and rpmlint are not installed (scripts/setup installs them)")
def test_the_lvsdr_rpm_passes_rpmlint_and_runs(tmp_path: Path) -> None:
    """scripts/lvsdr-rpm's packages (rpm/lvsdr.spec by rpmbuild -ba from what git tracks): rpmlint finds no
    error or warning in the spec, the source and the binary RPM (rpm/rpmlint.toml's filters, each with its
    reason); the RPM requires the distribution's Python modules; installed into a scratch root it holds
    the command (interpreter /usr/bin/python3), man pages that `man` finds, bash completion, the license,
    and runs: `render --all` writes the same tree as this checkout."""
    missing = subprocess.run(["/usr/bin/python3", "-c", f"import {', '.join(DEBIAN_MODULES)}"], capture_output=True,
                             check=False).returncode
    if missing:
        pytest.skip("Debian's python3 modules are not installed (scripts/setup installs them)")
    out = tmp_path / "out"
    p = subprocess.run(["bash", str(REPO / "scripts" / "lvsdr-rpm"), str(out)], capture_output=True, text=True,
                       check=False, env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    assert p.returncode == 0, p.stdout + p.stderr
    lint = (out / "rpmlint.txt").read_text()
    assert "2 packages and 1 specfiles checked; 0 errors, 0 warnings" in lint, lint
    (rpm,) = out.glob("lvsdr-*.noarch.rpm")
    requires = subprocess.run(["rpm", "-qpR", str(rpm)], capture_output=True, text=True, check=True).stdout
    assert all(f"python3-{m}" in requires for m in DEBIAN_MODULES), requires
    root = tmp_path / "root"
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/rpmdb", "--initdb"], check=True, capture_output=True)
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/rpmdb", "-i", "--nodeps", "--noscripts",
                    "--nosignature", str(rpm)], check=True, capture_output=True)
    command = root / "usr/bin/lvsdr"
    assert command.read_text().splitlines()[0] == "#!/usr/bin/python3 -s"
    page = subprocess.run(["man", "-M", str(root / "usr/share/man"), "-w", "lvsdr-watch"], capture_output=True,
                          text=True, check=False)
    assert page.returncode == 0 and page.stdout.strip().endswith("man1/lvsdr-watch.1.gz"), page
    assert (root / "usr/share/bash-completion/completions/lvsdr").is_file()
    assert list(root.glob("usr/share/licenses/lvsdr*/LICENSE"))
    assert not [f for f in root.rglob("*") if f.is_symlink() and not f.exists()]  # examples/web.toml: a copy
    (sitelib,) = root.glob("usr/lib/python3.*/site-packages")
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(sitelib)}
    assert_renders_as_the_checkout(["/usr/bin/python3", str(command)], env, tmp_path)


def test_the_packages_carry_lvsdrs_one_version() -> None:
    """pyproject.toml, lvsdr.__version__, debian/changelog's top entry and rpm/lvsdr.spec name one version."""
    import re
    import tomllib

    import lvsdr

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    debian = re.match(r"lvsdr \(([^)]+)\)", (REPO / "debian/changelog").read_text())
    spec = re.search(r"^Version:\s*(\S+)$", (REPO / "rpm/lvsdr.spec").read_text(), re.M)
    assert debian and spec
    assert [lvsdr.__version__, debian.group(1), spec.group(1)] == [version] * 3
