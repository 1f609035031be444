"""A director's own health, live: a track_script failing on the MASTER moves
the VIPs to the other director, and back when it passes again. (The
operator's own notify scripts are shown in test_hooks_lab.py.)"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsdr.lab import probes

from helpers import MEASURED, make_lab, needs_root, poll, write_cluster

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
    """A failing track script on the MASTER moves the VIPs, and they come back when it passes again."""
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

