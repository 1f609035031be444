"""Talking to BIRD: ``bird -p`` validation of a rendered bird.conf (as
``keepalived -t`` validates keepalived.conf), and ``birdc configure``."""

from __future__ import annotations

import os
import shutil
import tempfile

from lvsdr.errors import CheckError, MissingToolError

from .run import TimedOut, run


def _binary(name: str) -> str:
    exe = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if exe is None:
        raise MissingToolError(name, "bird2", "bird")
    return exe


BIRD_GROUP = "bird"  # Debian's bird2 runs BIRD as user bird, group bird (RHEL's too)


def conf_owner(secret: bool) -> tuple[int, int | None]:
    """(mode, group) of bird.conf: 0644 root's; with a BGP password 0640 and
    BIRD's group (where that group exists), so that BIRD, which drops root,
    reads it and nobody else does. None: root's group."""
    if not secret:
        return 0o644, None
    import grp

    try:
        return 0o640, grp.getgrnam(BIRD_GROUP).gr_gid
    except KeyError:
        return 0o640, None


def check_text(text: str, timeout: float = 30) -> None:
    """``bird -p -c FILE``: BIRD parses the config and exits; ``CheckError`` with its message when it refuses."""
    fd, tmp = tempfile.mkstemp(prefix="lvsdr-check-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            p = run([_binary("bird"), "-p", "-c", tmp], timeout=timeout, what="bird -p")
        except TimedOut as e:
            raise CheckError(str(e)) from None
    finally:
        os.unlink(tmp)
    if not p.ok:
        out = p.said.replace(tmp, "bird.conf")
        raise CheckError(f"bird -p: exit {p.code}: {out.splitlines()[0] if out else 'no output'}")


def configure(socket: str, timeout: float = 30) -> tuple[bool, str]:
    """``birdc -s SOCKET configure``: BIRD reads its config again (sessions
    whose settings did not change stay up). (ok, BIRD's answer)."""
    try:
        p = run([_binary("birdc"), "-s", socket, "configure"], timeout=timeout, what="birdc")
    except TimedOut as e:
        return False, str(e)
    out = (p.out + p.err).strip()
    return p.ok and ("Reconfigured" in out or "Reconfiguration in progress" in out), out


def bird_neighbours(text: str) -> dict[str, str]:
    """`birdc show protocols all` -> {neighbour address: BGP state} of its BGP protocols."""
    out: dict[str, str] = {}
    state, bgp = "", False
    for line in text.splitlines():
        if line[:1].strip():  # a protocol's first line
            parts = line.split()
            bgp, state = len(parts) >= 2 and parts[1] == "BGP", ""
        elif bgp and line.strip().startswith("BGP state:"):
            state = line.split(":", 1)[1].strip()
        elif bgp and line.strip().startswith("Neighbor address:"):
            out[line.split(":", 1)[1].strip()] = state
    return out
