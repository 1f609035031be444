"""keepalived's processes in this network namespace, watched through pidfds:
the agent learns at once that keepalived is gone (crashed, SIGKILLed whole,
OOM-killed), which keepalived itself cannot say, and the FIFO (opened
read-write) does not show."""

from __future__ import annotations

import os


def _same_netns(pid: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def parse_stat(text: str) -> tuple[str, str]:
    """(comm, state) of a /proc/PID/stat line (comm may hold blanks and parentheses)."""
    left, right = text.find("("), text.rfind(")")
    if left < 0 or right < left:
        return "", ""
    return text[left + 1:right], right + 2 < len(text) and text[right + 2] or ""


def pids_of(comm: str) -> set[int]:
    """Live processes (not zombies) named ``comm`` in this network namespace."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                name, state = parse_stat(f.read())
        except OSError:
            continue
        if name == comm and state not in ("Z", "X", "x") and _same_netns(entry):
            out.add(int(entry))
    return out


class ProcessWatch:
    """pidfds of every live process named ``comm`` here; a pidfd becomes
    readable when its process exits."""

    def __init__(self, comm: str = "keepalived") -> None:
        self.comm = comm
        self.fds: dict[int, int] = {}

    def refresh(self) -> bool:
        """Watch what runs now; whether anything does."""
        pids = pids_of(self.comm)
        for pid in set(self.fds) - pids:
            os.close(self.fds.pop(pid))
        for pid in pids - set(self.fds):
            try:
                self.fds[pid] = os.pidfd_open(pid)
            except OSError:  # gone meanwhile
                continue
        return bool(self.fds)

    def pids(self) -> list[int]:
        return sorted(self.fds)

    def filenos(self) -> list[int]:
        return list(self.fds.values())

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
