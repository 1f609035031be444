"""structlog for lvsdr's resident and hook processes, configured once per
process: level-filtered (LVSDR_LOG_LEVEL, default info), tracebacks kept.

Where the lines go: readable lines on a terminal; JSON lines to syslog
(journald) otherwise, since keepalived runs notify scripts with stdio on
/dev/null; JSON lines on stderr with LVSDR_LOG=stderr (under a supervisor
that keeps stderr). Imported only when there is something to log: structlog
pulls in asyncio.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

LEVELS = ("debug", "info", "warning", "error")
_configured = False

if TYPE_CHECKING:
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
    import logging

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


def quick_info(event: str, **fields: Any) -> None:
    """One info line as structlog would render it (JSON, sorted keys, ISO UTC
    time) to syslog or, with LVSDR_LOG=stderr, to stderr; on a terminal
    through structlog itself. For `lvsdr notify`'s success line only: it is on
    keepalived's failover path, and importing structlog (with asyncio) would
    cost it about 50 ms. Errors and tracebacks still go through structlog."""
    if sys.stderr.isatty():
        get_logger().info(event, **fields)
        return
    if os.environ.get("LVSDR_LOG_LEVEL", "info").lower() in LEVELS[2:]:  # warning, error: no info lines
        return
    import json
    import time

    now = time.time()  # structlog's TimeStamper(fmt="iso", utc=True), without importing datetime
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    line = json.dumps({**fields, "event": event, "level": "info", "timestamp": stamp}, sort_keys=True, default=str)
    if os.environ.get("LVSDR_LOG") == "stderr":
        print(line, file=sys.stderr, flush=True)
    else:
        _Syslog().info(line)


def get_logger(**bind: Any) -> Any:
    import structlog

    configure()
    return structlog.get_logger().bind(**bind)
