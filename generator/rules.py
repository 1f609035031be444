"""The token and address rules shared by the loader, the renderer and the
importer: what a name, an interface, a path, a host or a script argument may
hold (nothing keepalived's parser treats specially), plain unicast addresses
(no scope id), and how keepalived reads one line of ``[[keepalived_extra]]``."""

from __future__ import annotations

import ipaddress
from typing import Any

from .keys import ARG_RE, IFNAME_RE, PATH_RE
from .model import (
    Command,
    IPAddress,
)
from .schema import Table, quote


def sorry_address(st: Table) -> IPAddress | None:
    """A sorry server's address: a host, or the director itself (127.0.0.1,
    ::1: IPVS delivers to a local address on the director that holds the VIP)."""
    v = st.data.get("address")
    if isinstance(v, str) and "%" not in v:
        try:
            if ipaddress.ip_address(v).is_loopback:
                st.seen.add("address")
                return ipaddress.ip_address(v)
        except ValueError:
            pass
    return st.address("address")


def command(t: Table, key: str) -> Command | None:
    """An operator's script: ["/absolute/path", "arg", ...], every part safe to quote into keepalived.conf."""
    v = t.get(key, list, None)
    if v is None:
        return None
    if not v:
        t.errors.add(t.path(key), "expected [path, arguments...], got an empty list")
        return None
    ok = isinstance(v[0], str) and bool(PATH_RE.fullmatch(v[0]))
    if not ok:
        t.errors.add(f"{t.path(key)}[0]", f"{quote(v[0])} is not an absolute path without blanks or quotes")
    args = script_args(t, key, v[1:], first=1)
    return (v[0], *args) if ok and len(args) == len(v) - 1 else None


def script_args(t: Table, key: str, values: list[Any], first: int = 0) -> tuple[str, ...]:
    """Script arguments lvsdr quotes into keepalived.conf: the valid ones (each bad one is an error)."""
    out = []
    for i, a in enumerate(values, first):
        if isinstance(a, str) and ARG_RE.fullmatch(a):
            out.append(a)
        else:
            t.errors.add(f"{t.path(key)}[{i}]", f"{quote(a)} is not an argument lvsdr can quote for "
                         "keepalived (letters, digits and ._/:=@%+,- only)")
    return tuple(out)


def extra_line(line: str) -> tuple[int, str | None]:
    """One [[keepalived_extra]] line as keepalived 2.2.7 reads it: what it
    adds to the block depth, or why it is refused. keepalived ends a line's
    text at a ``#`` or ``!`` outside double quotes and counts only the braces
    before it outside quotes; lvsdr refuses what it cannot read the same way
    for sure (a backslash, an unclosed quote, a control character, a brace
    or comment sign inside quotes) and the
    preprocessor (``include``, ``$NAME`` definitions and uses, ``@`` and ``~``
    line prefixes), which could bring text no check has seen."""
    if any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in line):
        return 0, "a control character; one line of plain text"
    if "\\" in line:
        return 0, "a backslash; keepalived's quoting of it is not something lvsdr passes through"
    text, quoted = [], False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif c in "#!{}" and quoted:  # whether keepalived reads these as quoted or not, the line is refused
            return 0, f"{c} inside double quotes; keepalived may read it as a comment or a brace"
        elif c in "#!":
            break
        text.append(c)
    if quoted:
        return 0, "an unclosed double quote"
    words = "".join(text).split()
    if words and (words[0] == "include" or words[0][0] in "@~"):
        return 0, f"{quote(words[0])}: keepalived's preprocessor is not available here"
    if "$" in "".join(text):
        return 0, "a $ (a keepalived definition or its use) is not available here"
    joined = "".join(text)
    return joined.count("{") - joined.count("}"), None


def link(t: Table, key: str, default: Any) -> str | None:
    """An interface on the cluster's segment (VRRP, the sync daemon, a real
    server's): a name, and not the loopback, where keepalived runs no VRRP
    and no frame of the segment arrives."""
    v = t.text(key, IFNAME_RE, "an interface name", default)
    if v == "lo" and key in t.data:
        t.errors.add(t.path(key), "lo is the loopback: give the interface on the cluster's segment")
        return None
    return v
