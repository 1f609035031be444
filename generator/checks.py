"""Health checks, one catalog: every check type once, with its keepalived
block, whether it connects to a port, and its keys, each with the keepalived
directive it becomes, how the cluster file gives it and keepalived's own
default. The loader's rules (which key a type takes, how it is read), the
renderer's (block names, connect_port) and the template's (one line per key,
by the key's form), the importer's inverse (directive -> key) and the docs'
table all derive from it: a check type made of such keys is one entry here.
Its keys are ``keys.Key``, as every key of the cluster file is.

Forms (``Key.form``): ``int`` (lo..hi), ``text`` (a pattern, token-guarded
when rendered), ``hex`` (a pattern of hex bytes and blanks), ``choice``,
``flag`` (a boolean written as the bare directive; none for a flag another
key writes), and the few keys that keepalived spells its own way: ``urls``
(url blocks), ``script`` (misc_path, a quoted command with its ``args``, a
``part``), ``track_file`` (a file named by its track_file block), ``weight``
(``weight N [reverse]``), ``reply`` (``require_reply [HEX]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .keys import HOST_RE, Key

HOST = HOST_RE
HEX = re.compile(r"[0-9A-Fa-f]{1,2}(?: ?[0-9A-Fa-f]{1,2})*")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
DNS_TYPES = ("A", "AAAA", "NS", "CNAME", "MX", "TXT", "SOA")


@dataclass(frozen=True)
class CheckType:
    name: str
    block: str  # keepalived's checker block
    connects: bool  # opens a connection to a port: connect_port (``port``) and connect_timeout apply
    keys: tuple[Key, ...]  # its own keys, in the order keepalived.conf gets them
    timeout: bool = False  # takes connect_timeout without connecting (ping)
    retries: bool = True  # takes retry and delay_before_retry


def _int(name: str, directive: str, lo: int, hi: int, default: str, meaning: str, field: str = "") -> Key:
    return Key(name, directive, "int", default, meaning, field, lo=lo, hi=hi)


def _text(name: str, directive: str, pattern: re.Pattern[str], what: str, default: str, meaning: str) -> Key:
    return Key(name, directive, "text", default, meaning, pattern=pattern, what=what)


# the keys every connecting type takes (and ping the timeout, every type but file the retries);
# written after the type's own keys
PORT = _int("port", "connect_port", 1, 65535, "the service port", "`connect_port`")
CONNECT_TIMEOUT = _int("connect_timeout", "connect_timeout", 1, 3600, "5 s", "seconds")
RETRY = _int("retry", "retry", 0, 100, "1 (dns 3, misc 0)",
             "failures before a backend is taken out (never the deprecated `nb_get_retry`)")
DELAY = _int("delay_before_retry", "delay_before_retry", 0, 3600, "1 s (http, https 3 s; dns the delay_loop)",
             "seconds")

_HTTP = (
    Key("urls", "url", "urls", "one URL, `/`", "several URLs, each `{ path, status_code, digest, virtualhost }`; "
        "all must pass (or give `path`, `status_code`, `digest` on the check itself for one)"),
    _text("virtualhost", "virtualhost", HOST, "a host name", "none", "Host header for every URL without its own"),
)
TYPES: dict[str, CheckType] = {t.name: t for t in (
    CheckType("tcp", "TCP_CHECK", True, ()),
    CheckType("http", "HTTP_GET", True, _HTTP),
    CheckType("https", "SSL_GET", True, (*_HTTP, Key("sni", "enable_sni", "flag", "`false`",
                                                     "send the virtualhost as TLS SNI (`enable_sni`); needs a "
                                                     "virtualhost"))),
    CheckType("misc", "MISC_CHECK", False, (
        Key("script", "misc_path", "script", "required",
            "absolute path of the check program (run as root: keep it root-owned)"),
        Key("args", "misc_path", "part", "none", "its arguments (letters, digits and `._/:=@%+,-`)"),
        _int("timeout", "misc_timeout", 1, 3600, "none", "`misc_timeout` seconds", field="misc_timeout"),
        Key("dynamic", "misc_dynamic", "flag", "`false`", "`misc_dynamic`: an exit code of 2..255 sets the weight to "
            "code - 2"),
        _text("user", "user", USER, "a user name", "root", "run the program as this user. keepalived 2.2.7 "
              "(Debian 12) cannot validate such a file: `keepalived -t` dies with exit 143 (fixed in 2.2.8), so "
              "`render --check` and `watch` refuse it there"),
    )),
    CheckType("dns", "DNS_CHECK", True, (
        Key("query_type", "type", "choice", "`SOA`", " ".join(DNS_TYPES), choices=DNS_TYPES),
        _text("query", "name", HOST, "a host name", '`"."`', "the name to resolve"),
    )),
    CheckType("udp", "UDP_CHECK", True, (
        Key("payload", "payload", "hex", "random bytes", 'hex bytes to send (`"0a1b 2c"`)', pattern=HEX,
            what='hex bytes ("0a1b 2c")'),
        Key("require_reply", "require_reply", "reply", "`false`", "`true`: a reply is needed (not only no ICMP "
            "error); a hex string: the reply must start with it"),
    )),
    CheckType("ping", "PING_CHECK", False, (), timeout=True),
    CheckType("smtp", "SMTP_CHECK", True, (
        _text("helo_name", "helo_name", HOST, "a host name", "the host name", "the HELO name"),
    )),
    CheckType("file", "FILE_CHECK", False, (
        Key("file", "track_file", "track_file", "required", "a file holding a number (lvsdr names its "
            "`track_file` block)"),
        Key("weight", "weight", "weight", "none", "multiplier of the number (negative lowers the weight)",
            lo=-2147483647, hi=2147483647),
        Key("reverse", "", "flag", "`false`", "a higher number lowers the weight (written on the weight line)"),
    ), retries=False),
)}
NAMES = (*TYPES, "none")  # `none`: no checker


def common(t: CheckType) -> tuple[Key, ...]:
    """The shared keys a type takes, in the order keepalived.conf gets them."""
    return ((PORT,) if t.connects else ()) + ((CONNECT_TIMEOUT,) if t.connects or t.timeout else ()) \
        + ((RETRY, DELAY) if t.retries else ())


def keys_of(t: CheckType) -> tuple[Key, ...]:
    return t.keys + common(t)


# the cluster file's check keys (but `type`, and the one-URL keys that stand for `urls`) -> the types taking each
def _key_types() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for t in TYPES.values():
        for k in keys_of(t):
            out[k.name] = (*out.get(k.name, ()), t.name)
    return {**out, **{one: out["urls"] for one in ("path", "status_code", "digest")}}


KEY_TYPES = _key_types()
BLOCKS = {t.name: t.block for t in TYPES.values()}
CONNECTING = tuple(t.name for t in TYPES.values() if t.connects)
BY_BLOCK = {t.block: t.name for t in TYPES.values()}  # the importer's inverse


def docs_table() -> str:
    """The check keys' table of docs/cluster-file.md, made from the catalog (a test keeps the page equal to it)."""
    rows = ["| key | types | keepalived's default | meaning |", "| --- | --- | --- | --- |",
            "| `type` | | `\"tcp\"` (lvsdr's) | " + ", ".join(f"`{t.name}` {t.block}" for t in TYPES.values())
            + ", `none` |"]
    seen: set[str] = set()
    for t in TYPES.values():
        for k in keys_of(t):
            if k.name in seen:
                continue
            seen.add(k.name)
            types = " ".join(KEY_TYPES[k.name])
            rows.append(f"| `{k.name}` | {types} | {k.default} | {k.meaning} |")
            if k.form == "urls":  # the one-URL keys stand for urls
                rows += [f"| `{one}` | {types} | {default} | {meaning} |" for one, default, meaning in (
                    ("path", '`"/"`', "URL path (one URL; or give `urls`)"),
                    ("status_code", "200-299", 'a code or a list of codes and ranges: `[200, "300-399"]`'),
                    ("digest", "none", "MD5 of the body, as keepalived's `genhash` prints it"))]
    return "\n".join(rows) + "\n"
