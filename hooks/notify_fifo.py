"""keepalived's notify FIFO: the file (root's, trusted before it is read)
and its lines: a VRRP event (``INSTANCE "VI_web" MASTER 150``, what `lvsdr
notify` gets as arguments too) and a virtual server's quorum (``VS
[192.0.2.150]:tcp:80 DOWN``), each read strictly, with every line and buffer
bounded."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lvsdr.errors import InputError
from lvsdr.generator.director import vs_name


@dataclass(frozen=True)
class Event:
    """One line of keepalived's notify FIFO, or a notify call's arguments."""

    type: str
    name: str
    state: str
    priority: str = ""

    def fields(self) -> dict[str, str]:
        return {"type": self.type, "name": self.name, "state": self.state, "priority": self.priority}


MAX_LINE = 4096  # bytes of one FIFO line; keepalived's are under 200


def open_fifo(path: Path) -> int:
    """keepalived's notify FIFO, made 0600 in a 0700 directory when missing; an
    existing one must be root's, not writable by others, and not a symlink
    (files.UntrustedError otherwise): events from it make root change the node."""
    from .fast.files import UntrustedError, _trusted, state_dir

    state_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        st = os.lstat(path)
    if not stat.S_ISFIFO(st.st_mode):
        raise InputError(f"--fifo: {path} exists and is not a FIFO")
    _trusted(st, "FIFO", path)
    # O_RDWR: the FIFO never reports EOF when keepalived closes or restarts
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) != (st.st_ino, st.st_dev):
        os.close(fd)
        raise UntrustedError(f"{path}: replaced while being opened; refusing to trust it")
    return fd


_EVENT_TYPES = ("INSTANCE", "GROUP")
_EVENT_STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "MASTER_RX_LOWER_PRI", "DELETED")


def parse_event(line: str) -> Event | None:
    """A VRRP line of keepalived's notify FIFO, ``INSTANCE "VI_web" MASTER 150``
    or ``GROUP "VG_web" BACKUP``, as an Event; None for anything else (its
    virtual-server lines, noise from another writer)."""
    parts = line.split(" ")
    if not 3 <= len(parts) <= 4 or parts[0] not in _EVENT_TYPES or parts[2] not in _EVENT_STATES:
        return None
    name = parts[1]
    if len(name) < 3 or name[0] != '"' or name[-1] != '"' or not name[1:-1].isprintable() or '"' in name[1:-1] \
            or " " in name:
        return None
    priority = parts[3] if len(parts) == 4 else ""
    if priority and not (priority.isascii() and priority.isdigit() and len(priority) <= 3):
        return None
    return Event(parts[0], name[1:-1], parts[2], priority)


def split_lines(buf: bytes, skipping: bool) -> tuple[list[bytes], bytes, bool]:
    """(complete lines, the unfinished rest, whether the rest is being
    skipped): a line longer than ``MAX_LINE`` is dropped up to its newline,
    so a writer that never ends a line cannot grow the buffer without bound."""
    *lines, rest = buf.split(b"\n")
    if skipping and lines:
        lines, skipping = lines[1:], False
    elif skipping:
        return [], b"", True
    lines = [ln for ln in lines if len(ln) <= MAX_LINE]
    if len(rest) > MAX_LINE:
        return lines, b"", True
    return lines, rest, False



def parse_quorum_event(line: str) -> Event | None:
    """A virtual-server line of keepalived's LVS notify FIFO, ``VS
    [192.0.2.150]:tcp:80 DOWN`` (also ``VS FWM 5 UP``, ``VS [GROUP]:0 UP``),
    as an Event named as ``Ecmp`` keys it; None for anything else (its
    real-server lines, noise)."""
    if not line.startswith("VS ") or not (line.endswith(" UP") or line.endswith(" DOWN")):
        return None
    raw, state = line[3:].rsplit(" ", 1)
    if not raw or not raw.isprintable() or len(raw) > 300:
        return None
    return Event("VS", vs_name(raw), state)
