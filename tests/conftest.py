"""Shared fixtures. Namespace fixtures clean up after themselves, also on failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(not is_root(), reason="needs root (network namespaces)")


@pytest.fixture(scope="session")
def scratch_netns() -> Iterator[str]:
    """A namespace with eth0/eth1 so keepalived -t sees the interfaces a
    rendered config names, without depending on (or touching) the host's."""
    if not is_root():
        pytest.skip("needs root (network namespaces)")
    name = f"lvsdrt-check-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        # no dummy driver on every kernel: a veth pair gives two interfaces
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                       check=True)
        for ifname in ("eth0", "eth1"):
            subprocess.run(["ip", "-n", name, "link", "set", ifname, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="session", autouse=True)
def no_lab_left_behind() -> Iterator[None]:
    """Safety net: whatever a lab test did, no test namespace survives the run."""
    yield
    import labtools

    for ns in labtools.our_namespaces():
        subprocess.run(["ip", "netns", "del", ns], check=False)


MEASURED: list[str] = []  # lines for the end of the run (failover times, ...)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("lab measurements")
        for line in MEASURED:
            terminalreporter.write_line(line)
