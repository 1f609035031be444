"""Shared fixtures. Namespace fixtures clean up after themselves, also on failure."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from helpers import MEASURED, our_namespaces


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked long first (a stable sort): the workers start them at once
    instead of finishing on them one by one at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_configure(config: pytest.Config) -> None:
    """The lab's groups (one fixture, one worker: scripts/test runs --dist loadgroup) hold, or the run does not
    start: pytest 9.2 with pytest-xdist 3.8 silently ignores xdist_group (pytest-dev/pytest-xdist#1386: the
    group rides in the node id, which pytest 9.2 no longer lets a plugin change), and every worker then built
    every group's lab. pyproject.toml pins pytest below 9.2 for it."""
    if config.getvalue("dist") != "loadgroup":
        return
    import xdist
    from packaging.version import Version

    if Version(pytest.__version__) >= Version("9.2") and Version(xdist.__version__) < Version("3.9"):
        raise pytest.UsageError(f"--dist loadgroup does not group with pytest {pytest.__version__} and "
                                f"pytest-xdist {xdist.__version__} (pytest-dev/pytest-xdist#1386): install "
                                "pytest<9.2 (pyproject.toml's test extra)")


@pytest.fixture(autouse=True)
def host_is_never_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test changes the machine it runs on: in this process the gateway
    refuses every change. Effects are tested in namespaces, in subprocesses."""
    from lvsdr.hooks import gateway

    def refuse(*args: object, **kw: object) -> bool:
        raise AssertionError("a test tried to apply changes in the test process (the host's own namespace)")

    monkeypatch.setattr(gateway.Gateway, "apply", refuse)
    monkeypatch.setattr(gateway, "nft_transaction", refuse)  # notify's fast path: the same door


@pytest.fixture(autouse=True)
def ipvs_tier_needs_ipvs(request: pytest.FixtureRequest) -> None:
    """Tests marked ipvs need a kernel with IPVS (scripts/ipvs-vm boots one):
    where there is none they fail, never skip silently."""
    if request.node.get_closest_marker("ipvs") and not os.path.exists("/proc/net/ip_vs"):
        pytest.fail("this kernel has no IPVS: run the IPVS tier in a VM (scripts/ipvs-vm, see docs/lab.md)")


@pytest.fixture(scope="session")
def scratch_netns() -> Iterator[str]:
    """A namespace with eth0/eth1 so keepalived -t sees the interfaces a
    rendered config names, and commands run without touching the host."""
    if os.geteuid() != 0:
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
    for ns in our_namespaces():
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test's measurements travel in its report: with pytest-xdist the
    tests run in worker processes and only reports reach the summary."""
    outcome = yield
    if MEASURED:
        report = outcome.get_result()  # type: ignore[attr-defined]
        report.user_properties = [*report.user_properties, *(("measured", line) for line in MEASURED)]
        MEASURED.clear()


REPORTED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    REPORTED.extend(str(v) for k, v in report.user_properties if k == "measured")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("lab measurements")
        for line in REPORTED:
            terminalreporter.write_line(line)
