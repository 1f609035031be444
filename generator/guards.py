"""The guards every value passes on its way into keepalived.conf or an nft
script: the second lock on the door (validation is the first). Pure and
light (no jinja2): the director's planner uses them on the failover path."""

from __future__ import annotations

import re
from typing import Any

# characters keepalived's parser treats specially, and blanks
_UNSAFE = re.compile(r"[\s\"'{}#!\\]")


def token(value: Any) -> str:
    """Guard for every value put into keepalived.conf: refuse anything that could
    end a token, open a block or start a comment. Validation already refused it;
    this is the second lock on the door."""
    s = str(value)
    if not s or _UNSAFE.search(s):
        raise ValueError(f"unsafe value for keepalived.conf: {s!r}")
    return s


def address(value: Any) -> str:
    """Guard for every address put into keepalived.conf (or an nft script): the
    token guard, and no IPv6 scope id (``ipaddress`` accepts almost anything
    after ``%``). Validation already refused it; this is the second lock."""
    s = token(value)
    if "%" in s:
        raise ValueError(f"unsafe address for keepalived.conf: {s!r}")
    return s
