"""Running a program (keepalived -t, bird -p, birdc, a fact's command, a
change's tool): argument lists only, never a shell; output captured; every
wait bounded. The one place the subprocess module is used; notify's fast
path starts its programs with fast/spawn.py instead."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from lvsdr.errors import LvsdrError


class TimedOut(LvsdrError):
    """A program did not finish within its time (named, with the time)."""


@dataclass(frozen=True)
class Ran:
    """A finished program: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def said(self) -> str:
        """What it said of itself: stderr, else stdout, stripped."""
        return (self.err or self.out).strip()


def run(argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0, what: str | None = None) -> Ran:
    """Run ``argv`` to its end. ``FileNotFoundError`` when the program is not
    installed (the caller names its package); ``TimedOut`` naming ``what``
    (default: the command line) when it takes longer than ``timeout`` s."""
    try:
        p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TimedOut(f"{what or ' '.join(argv)}: no answer within {timeout:.0f} s") from None
    return Ran(p.returncode, p.stdout, p.stderr)
