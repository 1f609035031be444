"""structlog for the hooks: JSON lines to syslog (journald) when not on a
terminal (keepalived runs notify scripts with stdio on /dev/null), readable
lines on a terminal, JSON lines on stderr with LVSDR_LOG=stderr. Imported
only when there is something to log."""

from __future__ import annotations

import sys
from typing import Any


class _Syslog:
    """A structlog logger that hands each rendered line to syslog."""

    def __init__(self) -> None:
        import syslog

        self._syslog = syslog
        syslog.openlog("lvsdr", syslog.LOG_PID, syslog.LOG_DAEMON)

    def _emit(self, priority: int, message: str) -> None:
        self._syslog.syslog(priority, message)

    def msg(self, message: str) -> None:
        self._emit(self._syslog.LOG_INFO, message)

    info = debug = msg

    def warning(self, message: str) -> None:
        self._emit(self._syslog.LOG_WARNING, message)

    def error(self, message: str) -> None:
        self._emit(self._syslog.LOG_ERR, message)

    critical = exception = error


def get_logger(**bind: Any) -> Any:
    import os

    import structlog

    tty = sys.stderr.isatty()
    to_stderr = tty or os.environ.get("LVSDR_LOG") == "stderr"  # e.g. under a supervisor that keeps stderr
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False) if tty
            else structlog.processors.JSONRenderer(sort_keys=True),
        ],
        logger_factory=(structlog.PrintLoggerFactory(sys.stderr) if to_stderr else lambda *a: _Syslog()),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(**bind)
