"""`lvsdr watch` on a live director: a good change reloads keepalived, a bad
one (invalid file, or a config keepalived rejects) keeps the last good config."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from lvsdr.lab.topology import addresses_of

from conftest import needs_root
from labtools import make_lab, write_cluster

pytestmark = [needs_root, pytest.mark.lab]


def replace_file(path: Path, text: str) -> None:
    """As editors and config management do: write aside, rename over."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def wait(cond, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_watch_reloads_good_changes_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    with make_lab(write_cluster(tmp_path), tmp_path) as lab:
        master = lab.wait_for_master(10)
        conf = lab.state_dir / f"keepalived-{master.name}.conf"
        pidfile = lab.state_dir / f"keepalived-{master.name}.pid"
        cluster = Path(lab.cluster_path)
        original = cluster.read_text()
        log = open(tmp_path / "watch.log", "w")  # noqa: SIM115
        watch = subprocess.Popen(
            ["ip", "netns", "exec", master.ns, lab._console(), "watch", str(cluster), "--node", master.name,
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
