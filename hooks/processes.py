"""keepalived's process, found from its pidfile and watched through a pidfd:
the agent learns at once that keepalived is gone (crashed, SIGKILLed whole,
OOM-killed), which keepalived itself cannot say, and the FIFO (opened
read-write) does not show.

What counts as keepalived is what root can trust: the pid in keepalived's
own pidfile (root's, in a directory nobody else can write: a local user
cannot point it anywhere), and that pid only while it is a live process of
root's named keepalived (running keepalived's binary, where its executable
can be read). Any user can start a process named ``keepalived``; none of
them counts. Other processes (BIRD, the agent itself) are looked up by
name for doctor, which only reports."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def same_netns(pid: int | str) -> bool:
    """Whether process ``pid`` is in this process's network namespace."""
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


def parse_uids(status: str) -> tuple[int, ...]:
    """The real, effective, saved and filesystem uids of a /proc/PID/status text (() when absent)."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            try:
                return tuple(int(u) for u in line.split()[1:])
            except ValueError:
                return ()
    return ()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def live(pid: int, comm: str) -> bool:
    """``pid`` is a live process (not a zombie) named ``comm``."""
    try:
        name, state = parse_stat(_read(f"/proc/{pid}/stat"))
    except OSError:
        return False
    return name == comm and state not in ("Z", "X", "x")


def is_keepalived(pid: int) -> bool:
    """``pid`` is a live keepalived of this process's owner (root): its name,
    all four of its uids, and its executable where that can be read (a
    sandboxed agent may not read another root process's, its uids are proof
    enough: only root makes a process of root's). An upgraded binary reads
    ``/usr/sbin/keepalived (deleted)``."""
    if not live(pid, "keepalived"):
        return False
    try:
        uids = parse_uids(_read(f"/proc/{pid}/status"))
    except OSError:
        return False
    me = os.geteuid()
    if len(uids) != 4 or any(u != me for u in uids):
        return False
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:  # EACCES without CAP_SYS_PTRACE; ENOENT when it exited meanwhile (then not live next time)
        return True
    return exe in _binaries()


def _binaries() -> set[str]:
    """Where keepalived's binary is (its path as found, and that path resolved)."""
    import shutil

    found = shutil.which("keepalived") or "/usr/sbin/keepalived"
    return {found, os.path.realpath(found), "/usr/sbin/keepalived", "/sbin/keepalived"}


def pid_from(pidfile: str | Path) -> int | None:
    """The pid in keepalived's pidfile (root's, trusted as lvsdr's records
    are: ``UntrustedError`` otherwise), when it is a live keepalived of
    root's; None when there is no pidfile (keepalived does not run: it
    removes it when it stops) or it names anything else (a stale pid)."""
    from .fast.files import read_trusted

    try:
        words = read_trusted(pidfile, 64).split()
    except FileNotFoundError:
        return None
    if not words or not words[0].isdigit():
        return None
    pid = int(words[0])
    return pid if is_keepalived(pid) else None


def pids_of(comm: str) -> set[int]:
    """Live processes named ``comm`` in this network namespace, whoever's
    (doctor's report on BIRD and the agent; never a thing root acts on)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and live(int(entry), comm) and same_netns(entry):
            out.add(int(entry))
    return out


class ProcessWatch:
    """A pidfd on keepalived's main process, from its pidfile; the pidfd
    becomes readable when that process exits (keepalived's children follow
    their parent: a keepalived without it is gone)."""

    def __init__(self, pidfile: str | Path) -> None:
        self.pidfile = pidfile
        self.fds: dict[int, int] = {}

    def refresh(self) -> bool:
        """Watch what runs now; whether keepalived does."""
        from lvsdr.errors import LvsdrError

        try:
            pid = pid_from(self.pidfile)
        except LvsdrError:  # made untrusted while running (the start refused it): keep what is watched
            return bool(self.fds)
        pids = {pid} if pid is not None else set()
        for gone in set(self.fds) - pids:
            os.close(self.fds.pop(gone))
        for new in pids - set(self.fds):
            try:
                self.fds[new] = os.pidfd_open(new)
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
