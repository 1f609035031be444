"""Talking to keepalived: ``keepalived -t`` validation (and, later, reload)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from lvsdr.errors import CheckError, MissingToolError

from .run import TimedOut, run

# keepalived -t exit codes (keepalived 2.2.7, Debian 12)
EXIT_MEANING = {
    0: "ok",
    4: "fatal error",
    5: "configuration errors",
    6: "script security is not enabled",
    143: "inconclusive: keepalived 2.2.7 dies with 143 when a script runs as a "
    "non-root user (fixed in 2.2.8)",
}


@dataclass(frozen=True)
class CheckResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def message(self) -> str:
        meaning = EXIT_MEANING.get(self.returncode, "unexpected exit code")
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        detail = "; ".join(dict.fromkeys(lines))  # de-duplicated, in order
        msg = f"keepalived -t: exit {self.returncode} ({meaning})"
        return f"{msg}: {detail}" if detail else msg


def keepalived_binary() -> str:
    exe = shutil.which("keepalived") or (
        "/usr/sbin/keepalived" if os.path.exists("/usr/sbin/keepalived") else None
    )
    if exe is None:
        raise MissingToolError("keepalived", "keepalived", "keepalived")
    return exe


def check_file(path: str, netns: str | None = None, timeout: float = 60) -> CheckResult:
    """Run ``keepalived -t -f path`` (inside ``netns`` when given)."""
    cmd = [keepalived_binary(), "-t", "-f", path]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    try:
        p = run(cmd, timeout=timeout, what="keepalived -t")
    except TimedOut as e:
        raise CheckError(str(e)) from None
    return CheckResult(p.code, p.out + p.err)


def check_text(text: str, netns: str | None = None) -> CheckResult:
    """Validate config text without touching the final location."""
    fd, tmp = tempfile.mkstemp(prefix="lvsdr-check-", suffix=".conf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return check_file(tmp, netns)
    finally:
        os.unlink(tmp)


def require_valid(text: str, netns: str | None = None) -> None:
    r = check_text(text, netns)
    if not r.ok:
        raise CheckError(r.message())
