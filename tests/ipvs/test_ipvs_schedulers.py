"""Every IPVS scheduler lvsdr accepts has its kernel module on the kernel the
tier boots (Debian 12's), except those that need a newer kernel, which the
docs name (docs/cluster-file.md)."""

from __future__ import annotations

import os
import subprocess

import pytest

from lvsdr.generator.model import SCHEDULERS

from helpers import MEASURED, needs_root

pytestmark = [needs_root, pytest.mark.ipvs]
NEWER_KERNEL = {"twos": (6, 2)}  # scheduler -> first Linux version that has it


def test_every_scheduler_module_loads() -> None:
    """Every scheduler lvsdr accepts loads its kernel module and is what IPVS shows."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    loaded: list[str] = []
    missing: list[str] = []
    for name in SCHEDULERS:
        ok = subprocess.run(["modprobe", f"ip_vs_{name}"], capture_output=True).returncode == 0
        (loaded if ok else missing).append(name)
    MEASURED.append(f"IPVS schedulers on Linux {os.uname().release}: loaded {', '.join(loaded)}; "
                    f"missing {', '.join(missing) or 'none'}")
    assert missing == [n for n, first in NEWER_KERNEL.items() if release < first]
