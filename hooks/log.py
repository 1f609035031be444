"""structlog for lvsdr's resident and hook processes, configured once per
process: level-filtered (LVSDR_LOG_LEVEL, default info), tracebacks kept.

Where the lines go: readable lines on a terminal; JSON lines to syslog
(journald) otherwise, since keepalived runs notify scripts with stdio on
/dev/null; JSON lines on stderr with LVSDR_LOG=stderr (under a supervisor
that keeps stderr). Imported only when there is something to log: structlog
pulls in asyncio.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
_configured = False


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

    info = msg

    def debug(self, message: str) -> None:
        self._emit(self._syslog.LOG_DEBUG, message)

    def warning(self, message: str) -> None:
        self._emit(self._syslog.LOG_WARNING, message)

    def error(self, message: str) -> None:
        self._emit(self._syslog.LOG_ERR, message)

    critical = exception = error


def configure() -> None:
    """Configure structlog for this process (the first call wins)."""
    global _configured
    if _configured:
        return
    import structlog

    level = os.environ.get("LVSDR_LOG_LEVEL", "info").lower()
    tty = sys.stderr.isatty()
    to_stderr = tty or os.environ.get("LVSDR_LOG") == "stderr"
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if tty:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))  # renders exc_info itself
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(sort_keys=True)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=(structlog.PrintLoggerFactory(sys.stderr) if to_stderr else lambda *a: _Syslog()),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(**bind: Any) -> Any:
    import structlog

    configure()
    return structlog.get_logger().bind(**bind)
