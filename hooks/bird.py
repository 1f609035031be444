"""Talking to BIRD: ``bird -p`` validation of a rendered bird.conf (as
``keepalived -t`` validates keepalived.conf), and ``birdc configure``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from lvsdr.errors import CheckError, MissingToolError


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
            p = subprocess.run([_binary("bird"), "-p", "-c", tmp], capture_output=True, text=True,
                               timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CheckError(f"bird -p: no answer within {timeout:.0f} s") from None
    finally:
        os.unlink(tmp)
    if p.returncode != 0:
        out = (p.stderr or p.stdout).strip().replace(tmp, "bird.conf")
        raise CheckError(f"bird -p: exit {p.returncode}: {out.splitlines()[0] if out else 'no output'}")


def configure(socket: str, timeout: float = 30) -> tuple[bool, str]:
    """``birdc -s SOCKET configure``: BIRD reads its config again (sessions
    whose settings did not change stay up). (ok, BIRD's answer)."""
    try:
        p = subprocess.run([_binary("birdc"), "-s", socket, "configure"], capture_output=True, text=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"birdc: no answer within {timeout:.0f} s"
    out = (p.stdout + p.stderr).strip()
    return p.returncode == 0 and ("Reconfigured" in out or "Reconfiguration in progress" in out), out
