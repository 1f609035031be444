"""A director's own health and the operator's own scripts, live: a
track_script failing on the MASTER moves the VIPs to the other director, and
back when it passes again; notify_master/notify_backup run alongside lvsdr's
hook."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsdr.lab import probes

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll, write_cluster

pytestmark = [needs_root, pytest.mark.lab]
CHECKS = Path("/run/lvsdr-lab-track")  # root-owned: keepalived runs only scripts no one else can change

TRACK = f'''
[[track_scripts]]
name = "uplink"
script = "{CHECKS}/check"
interval = 1
fall = 1
rise = 1
'''


@pytest.fixture
def check_script() -> Iterator[Path]:
    """Fails on the director whose network namespace has a flag file."""
    CHECKS.mkdir(mode=0o755)
    try:
        script = CHECKS / "check"
        script.write_text(f'#!/bin/sh\n[ ! -e "{CHECKS}/fail-$(ip netns identify)" ]\n')
        script.chmod(0o755)
        yield CHECKS
    finally:
        shutil.rmtree(CHECKS)


def test_failing_track_script_moves_the_vips(tmp_path: Path, check_script: Path) -> None:
    path = write_cluster(tmp_path)
    path.write_text(path.read_text().replace("[[directors]]", TRACK + "\n[[directors]]", 1))
    with make_lab(path, tmp_path) as lab:
        lb1 = lab.wait_for_master(10)
        assert lb1.name == "lb1"
        flag = check_script / f"fail-{lb1.ns}"
        t0 = time.monotonic()
        flag.touch()
        moved = poll(lambda: getattr(lab.master(), "name", None) == "lb2", "lb2 took the VIPs", 15)
        assert [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, "192.0.2.100")] == ["lb2"]
        flag.unlink()
        back = poll(lambda: getattr(lab.master(), "name", None) == "lb1", "lb1 took them back", 15)
        MEASURED.append(f"track_script failing on the MASTER (interval 1, fall 1): VIPs on lb2 after {moved:.1f} s; "
                        f"back on lb1 {back:.1f} s after it passed again ({time.monotonic() - t0:.1f} s in all)")


NOTIFY = f'''
notify_master = ["{CHECKS}/record", "MASTER"]
notify_backup = ["{CHECKS}/record", "BACKUP"]
'''


def test_operators_notify_scripts_run_alongside_lvsdrs_hook(tmp_path: Path, check_script: Path) -> None:
    """The operator's notify_master/notify_backup run on each transition, and
    lvsdr's own hook still switches the director's role (pair: the marks)."""
    record = check_script / "record"
    record.write_text(f'#!/bin/sh\necho "$1" >> "{check_script}/events-$(ip netns identify)"\n')
    record.chmod(0o755)
    path = tmp_path / "pair.toml"
    path.write_text((EXAMPLES / "pair.toml").read_text().replace("unicast = true", "unicast = true" + NOTIFY))
    with make_lab(path, tmp_path) as lab:
        node1, node2 = lab.state.node("node1"), lab.state.node("node2")
        assert lab.wait_for_master(10).name == "node1"

        def events(ns: str) -> list[str]:
            f = check_script / f"events-{ns}"
            return f.read_text().split() if f.exists() else []

        def marks(ns: str) -> bool:
            return "lvsdr_fwmark" in subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"],
                                                    capture_output=True, text=True).stdout

        poll(lambda: events(node1.ns)[-1:] == ["MASTER"] and marks(node1.ns), "node1: its script and lvsdr's marks", 10)
        poll(lambda: events(node2.ns)[-1:] == ["BACKUP"], "node2: its BACKUP script", 10)
        probes.kill_director(lab, node1)
        poll(lambda: events(node2.ns)[-1:] == ["MASTER"] and marks(node2.ns), "node2: its script and lvsdr's marks",
             15)
