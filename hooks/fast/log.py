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


_ESCAPES = {**{i: f"\\u{i:04x}" for i in (*range(0x20), 0x7F)}, 0x22: '\\"', 0x5C: "\\\\", 0x8: "\\b", 0x9: "\\t",
            0xA: "\\n", 0xC: "\\f", 0xD: "\\r"}


def _ascii(c: str) -> str:
    n = ord(c)
    if n < 0x80:
        return c
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 | n >> 10:04x}\\u{0xDC00 | n & 0x3FF:04x}"  # a surrogate pair, as json writes it


def dumps(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, default=str)`` for what a log line
    holds (text, finite numbers, booleans, None, lists, dicts), without
    importing json (~5 ms with the re module it pulls in)."""
    if isinstance(value, str):
        text = value.translate(_ESCAPES)
        return '"' + (text if text.isascii() else "".join(map(_ascii, text))) + '"'
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(str(k))}: {dumps(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    return dumps(str(value))


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
    import time

    now = time.time()  # structlog's TimeStamper(fmt="iso", utc=True), without importing datetime
    micro = int(now % 1 * 1e6)  # datetime.isoformat() leaves out a zero fraction; so does this
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + (f".{micro:06d}Z" if micro else "Z")
    line = dumps({**fields, "event": event, "level": "info", "timestamp": stamp})
    if os.environ.get("LVSDR_LOG") == "stderr":
        print(line, file=sys.stderr, flush=True)
    else:
        _Syslog().info(line)


def transition(node: str, role: str, changes: list[str], started: float, event: dict[str, str],
               **extra: Any) -> None:
    """notify's one line per VRRP transition (``started``: time.monotonic()
    when it began; ``event``: keepalived's TYPE, NAME, STATE and PRIORITY)."""
    import time

    quick_info("vrrp transition", node=node, event_source="notify", observed_role=role, changes=changes,
               ms=round((time.monotonic() - started) * 1000, 1), **event, **extra)


def get_logger(**bind: Any) -> Any:
    import structlog

    configure()
    return structlog.get_logger().bind(**bind)
