"""`lvsdr watch` on a live director: a good change reloads keepalived, a bad
one (invalid file, or a config keepalived rejects) keeps the last good config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lvsdr.lab.topology import addresses_of

from helpers import lvsdr_in, make_lab, needs_root, poll, write_cluster

pytestmark = [needs_root, pytest.mark.lab]


def replace_file(path: Path, text: str) -> None:
    """As editors and config management do: write aside, rename over."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def wait(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    poll(cond, what, timeout, interval=0.1)


def test_watch_reloads_good_changes_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    """watch reloads keepalived on a good change and keeps the last good config on a bad one."""
    with make_lab(write_cluster(tmp_path), tmp_path) as lab:
        master = lab.wait_for_master(10)
        conf = lab.state_dir / f"keepalived-{master.name}.conf"
        pidfile = lab.state_dir / f"keepalived-{master.name}.pid"
        cluster = Path(lab.cluster_path)
        original = cluster.read_text()
        log = open(tmp_path / "watch.log", "w")  # noqa: SIM115
        watch = subprocess.Popen(
            ["ip", "netns", "exec", master.ns, *lab.sandboxed("lvsdr-watch@.service"), lab._console(), "watch",
             str(cluster), "--node", master.name,
             "-o", str(conf), "--pidfile", str(pidfile), "--hook", "both", "--lvsdr-path", lab._console(),
             "--config-path", str(cluster), "--notify-fifo", str(lab.state_dir / f"{master.name}.fifo")],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LVSDR_LOG="stderr"))
        try:
            wait(lambda: "watching" in (tmp_path / "watch.log").read_text(), "watcher started")
            good = conf.read_text()
            pid = int(pidfile.read_text())
            # 1. a new service: rendered, checked, written, keepalived reloaded -> the new VIP is up
            data = json.loads(original)
            data["services"].append({"name": "alt", "vip": "192.0.2.101", "port": 80, "backends": ["web1"]})
            replace_file(cluster, json.dumps(data))
            wait(lambda: "192.0.2.101" in addresses_of(master, master.ifname), "new VIP on the MASTER")
            reloaded = conf.read_text()
            assert "192.0.2.101/32 dev eth0" in reloaded
            # 2. a file that does not validate: nothing changes
            replace_file(cluster, original.replace('"virtual_router_id": 51', '"virtual_router_id": 999'))
            wait(lambda: "cluster file rejected" in (tmp_path / "watch.log").read_text(), "rejection logged")
            assert conf.read_text() == reloaded
            # 3. a file keepalived rejects (no such interface here): nothing changes
            bad = json.loads(original)
            bad["cluster"]["interface"] = "bond9"
            replace_file(cluster, json.dumps(bad))
            wait(lambda: "keepalived -t rejected" in (tmp_path / "watch.log").read_text(), "keepalived -t logged")
            assert conf.read_text() == reloaded
            assert int(pidfile.read_text()) == pid and "192.0.2.101" in addresses_of(master, master.ifname)
            # 4. back to the original: the extra VIP goes
            replace_file(cluster, original)
            wait(lambda: "192.0.2.101" not in addresses_of(master, master.ifname), "extra VIP removed")
            assert conf.read_text() == good
        finally:
            watch.terminate()
            assert watch.wait(timeout=10) == 0
            log.close()


def test_watch_survives_transient_failures(tmp_path: Path, scratch_netns: str) -> None:
    """A write error and a keepalived whose pid is gone are logged; the watcher
    goes on and installs the next good save."""
    cluster = write_cluster(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    conf = out_dir / "keepalived.conf"
    pidfile = tmp_path / "keepalived.pid"
    pidfile.write_text("999999\n")  # no such process
    logpath = tmp_path / "watch.log"
    with open(logpath, "w") as log:
        watch = subprocess.Popen(
            ["ip", "netns", "exec", scratch_netns, sys.executable, "-m", "lvsdr.cli", "watch", str(cluster),
             "--node", "lb1", "-o", str(conf), "--pidfile", str(pidfile)],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LVSDR_LOG="stderr"))
        try:
            wait(lambda: "watching" in logpath.read_text(), "watcher started")
            assert "keepalived is not running" in logpath.read_text() and conf.exists()
            out_dir.rename(tmp_path / "gone")  # the config's directory vanishes: writes fail
            replace_file(cluster, cluster.read_text().replace("advert_int = 1", "advert_int = 2"))
            wait(lambda: "cannot write the config" in logpath.read_text(), "write error logged")
            assert watch.poll() is None
            (tmp_path / "gone").rename(out_dir)
            replace_file(cluster, cluster.read_text().replace("advert_int = 2", "advert_int = 3"))
            wait(lambda: "advert_int 3" in conf.read_text(), "the next good save installed")
            assert watch.poll() is None
        finally:
            watch.terminate()
            assert watch.wait(timeout=10) == 0


def test_watch_once_says_what_it_did(tmp_path: Path, scratch_netns: str) -> None:
    """watch --once says whether it wrote and reloaded."""
    cluster = write_cluster(tmp_path)
    conf = tmp_path / "keepalived.conf"
    args = ["watch", str(cluster), "--node", "lb1", "-o", str(conf), "--once", "--pidfile", str(tmp_path / "none")]
    first = lvsdr_in(scratch_netns, *args)
    assert first.returncode == 0
    assert first.stderr.splitlines()[-1] == (
        f"lvsdr watch: {conf}: written; keepalived not running (no live pid in {tmp_path / 'none'})")
    again = lvsdr_in(scratch_netns, *args)
    assert (again.returncode, again.stderr.splitlines()[-1]) == (0, f"lvsdr watch: {conf}: unchanged")
    cluster.write_text(cluster.read_text().replace('interface = "eth0"', 'interface = "bond9"'))
    bad = lvsdr_in(scratch_netns, *args)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1].startswith(f"lvsdr watch: {conf}: rejected by keepalived -t")
