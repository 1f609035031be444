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

from helpers import GOLDEN, REPO

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
