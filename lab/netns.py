"""Running commands in network namespaces (argument lists, never shell strings)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError, MissingToolError

# program -> Debian package, for clear errors before anything starts
LAB_TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "keepalived": "keepalived",
    "arping": "arping",
    "curl": "curl",
}


class LabError(LvsdrError):
    """The lab could not be built, probed or torn down."""


def require_tools(tools: dict[str, str] = LAB_TOOLS) -> None:
    for prog, pkg in tools.items():
        if shutil.which(prog) is None and not os.path.exists(f"/usr/sbin/{prog}"):
            raise MissingToolError(prog, pkg)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces); run it with sudo")


def run(cmd: list[str], check: bool = True, timeout: float = 30, input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                           check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)}: no answer within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise LabError(f"{cmd[0]}: not found") from None
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def nsexec(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def ns_run(ns: str, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(nsexec(ns, cmd), **kw)


def ip_json(ns: str, *args: str) -> Any:
    p = run(["ip", "-n", ns, "-j", *args])
    return json.loads(p.stdout or "[]")


def list_netns() -> set[str]:
    p = run(["ip", "-j", "netns", "list"], check=False)
    try:
        return {entry["name"] for entry in json.loads(p.stdout or "[]")}
    except (ValueError, KeyError, TypeError):
        return set()


def ns_pids(ns: str) -> list[int]:
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def kill_in_ns(ns: str, comm: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signal the processes named ``comm`` in ``ns`` only (pkill would match
    every namespace on the machine)."""
    hit = []
    for pid in ns_pids(ns):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                os.kill(pid, sig)
                hit.append(pid)
        except (OSError, ProcessLookupError):
            pass
    return hit


def kill_ns_processes(ns: str, grace: float = 2.0) -> None:
    """SIGTERM every process in ``ns``, then SIGKILL what is left after ``grace``."""
    pids = ns_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = ns_pids(ns)
        if pids:
            time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while ns_pids(ns) and time.monotonic() < deadline:
        time.sleep(0.05)


def delete_netns(ns: str) -> None:
    kill_ns_processes(ns)
    run(["ip", "netns", "del", ns], check=False)
