"""Cluster file (TOML or JSON) -> validated ``Cluster``, with every error at once.

Errors are one line each, ``<field path>: <what is wrong>``, for example
``services[2].backends[0]: unknown server "web9"``. ``parse_cluster`` collects
all of them and raises one ``ValidationError``; it never raises anything else
for any input (hypothesis tests hold it to that).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import tomli as _toml  # the same parser as the stdlib's tomllib, compiled: 3x faster on big files

from lvsdr.errors import InputError, ValidationError
from lvsdr.inputs import MAX_INPUT, read_regular

from . import checks, methods
from .model import (
    AUTH_TYPES,
    AUTO_FWMARK_BASE,
    CHECK_FIELDS,
    DEFAULT_ADVERT_INT,
    DEFAULT_INTERFACE,
    DEFAULT_PROTOCOL,
    DEFAULT_SCHEDULER,
    HOOK_MODES,
    PROTOCOLS,
    SCHEDULERS,
    Backend,
    Check,
    Cluster,
    Command,
    Director,
    Extra,
    Instance,
    IPAddress,
    IPNetwork,
    RealServer,
    Service,
    SorryServer,
    SyncDaemon,
    TrackFile,
    TrackInterface,
    TrackScript,
    Url,
    Vip,
    addr_key,
)

CLUSTER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
ZONE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,16}")
# nothing that keepalived's parser treats specially: no blanks, quotes,
# braces, comment starters (# !) or control characters
# and no empty, "." or ".." segment: a path names one file, wherever it is used
PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._+-]+)+")
URL_PATH_RE = re.compile(r"/[A-Za-z0-9._~/%?&=+:@,;-]*")
HOST_RE = checks.HOST
AUTH_RE = re.compile(r"[A-Za-z0-9._~@%+=:,-]{1,8}")

T = TypeVar("T")


def _defaults(cls: type) -> dict[str, Any]:
    """A model class's field defaults: every default is stated once, on the model."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


CLUSTER = _defaults(Cluster)
REAL_SERVER = _defaults(RealServer)
CHECK = _defaults(Check)
URL = _defaults(Url)
URL_DEFAULT: tuple[Url, ...] = CHECK["urls"]
BACKEND = _defaults(Backend)
SERVICE = _defaults(Service)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+").fullmatch


class _Missing:
    pass


MISSING = _Missing()


class Errors:
    """Collects one-line errors; every reader returns a usable value or None."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.lines.append(f"{where}: {msg}")


class Memo:
    """Sub-tables parsed once per distinct content (the same backend options
    or check under many services, as large clusters write them): a result is
    kept only when parsing it recorded no error, and the errors name their
    place, so every bad occurrence is still reported where it is."""

    def __init__(self, errors: Errors) -> None:
        self.errors = errors
        self.done: dict[Any, Any] = {}

    def get(self, kind: str, value: Any, parse: Callable[[], T]) -> T:
        try:
            key = (kind, repr(value))  # parsed TOML: repr tells every value and type apart (true is not 1)
        except ValueError:  # an integer too large to print: not worth keeping
            return parse()
        if key in self.done:
            return self.done[key]  # type: ignore[no-any-return]
        before = len(self.errors.lines)
        out = parse()
        if len(self.errors.lines) == before:
            self.done[key] = out
        return out


QUOTE_MAX = 80  # characters of a value echoed in an error line
MAX_INT = 2**63  # a larger integer is quoted by its size: Python cannot print one of more than 4,300 digits


def read_input(path: str | Path, limit: int = MAX_INPUT) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: a FIFO, a device
    (/dev/zero) or a directory is refused at once instead of hanging or
    filling memory. Raises ``InputError`` naming the file."""
    return read_regular(path, limit)


def quote(v: object, limit: int = QUOTE_MAX) -> str:
    """A value as an error line shows it: JSON-quoted, on one line, cut at
    ``limit`` characters (the rest counted), whatever its type."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, int):
        text = str(v) if -MAX_INT < v < MAX_INT else f"(an integer of {v.bit_length()} bits)"
    elif isinstance(v, (str, float)) or v is None:
        text = json.dumps(v)
    else:
        text = f"(a {_typename(v)})"
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def _typename(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


class Table:
    """A TOML table being read: typed getters that record errors, unknown-key check."""

    def __init__(self, data: dict[str, Any], where: str, errors: Errors) -> None:
        self.data = data
        self.where = where
        self.errors = errors
        self.seen: set[str] = set()

    def path(self, key: str) -> str:
        if not _PLAIN_KEY(key):
            key = quote(key)  # keep the error on one line, whatever the key holds
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str, default: Any = MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is MISSING:
                self.errors.add(self.path(key), "required key is missing")
            return None if default is MISSING else default
        return self.data[key]

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any = MISSING) -> Any:
        if key not in self.data:  # the common case for optional keys: kept cheap
            return self.raw(key, default)
        self.seen.add(key)
        v = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
        if not ok:
            want = " or ".join(
                {int: "integer", str: "string", bool: "boolean", float: "number",
                 list: "list", dict: "table"}[k] for k in kinds
            )
            self.errors.add(self.path(key), f"expected {want}, got {_typename(v)}")
            return None
        return v

    def int_in(self, key: str, lo: int, hi: int, default: int | None | _Missing = MISSING) -> int | None:
        v = self.get(key, int, default)
        if key not in self.data:
            return default if isinstance(default, int) else None
        if not isinstance(v, int):
            return None
        if not lo <= v <= hi:
            self.errors.add(self.path(key), f"{quote(v)} is outside {lo}..{hi}")
            return None
        return v

    def text(self, key: str, pattern: re.Pattern[str], what: str,
             default: str | None | _Missing = MISSING) -> str | None:
        v = self.get(key, str, default)
        if key not in self.data:
            return default if isinstance(default, str) else None
        if not isinstance(v, str):
            return None
        if not pattern.fullmatch(v):
            self.errors.add(self.path(key), f"{quote(v)} is not {what}")
            return None
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str | None | _Missing = MISSING) -> str | None:
        v = self.get(key, str, default)
        if key not in self.data:
            return default if isinstance(default, str) else None
        if not isinstance(v, str):
            return None
        if v not in choices:
            self.errors.add(
                self.path(key), f"unknown value {quote(v)} (expected one of {', '.join(choices)})"
            )
            return None
        return v

    def address(self, key: str, default: None | _Missing = MISSING) -> IPAddress | None:
        v = self.get(key, str, default)
        if not isinstance(v, str) or key not in self.data:
            return None
        return parse_address(v, self.path(key), self.errors)

    def table(self, key: str) -> Table | None:
        v = self.get(key, dict, None)
        return Table(v, self.path(key), self.errors) if v is not None else None

    def tables(self, key: str, required: bool = True) -> list[Table]:
        v = self.get(key, list, MISSING if required else [])
        if v is None:
            return []
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                self.errors.add(f"{self.path(key)}[{i}]", f"expected table, got {_typename(item)}")
                continue
            out.append(Table(item, f"{self.path(key)}[{i}]", self.errors))
        return out

    def done(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            self.errors.add(self.path(str(key)), "unknown key")


def parse_address(v: str, where: str, errors: Errors) -> IPAddress | None:
    if "%" in v:  # ipaddress takes almost anything after % (newlines, braces, quotes) as a scope id
        errors.add(where, f"{quote(v)} has a scope id (%...); give the plain address")
        return None
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        errors.add(where, f"{quote(v)} is not an IP address")
        return None
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback or (
            addr.version == 4 and (addr.is_reserved or int(addr) >> 24 == 0)):
        errors.add(where, f"{addr} is not a unicast host address")
        return None
    if addr.version == 6 and addr.is_link_local:
        errors.add(where, f"{addr} is link-local; use a global address")
        return None
    return addr


def _sorry_address(st: Table) -> IPAddress | None:
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


def load_cluster(path: str | Path) -> Cluster:
    """Read and validate a cluster file (``.json`` is JSON, anything else TOML)."""
    return parse_cluster(parse_text(read_text(path), str(path)))


def load_cluster_bytes(raw: bytes, path: str | Path) -> Cluster:
    """Validate a cluster file's bytes already read (``path`` names it in errors and picks the format)."""
    return parse_cluster(parse_text(decode(raw, str(path)), str(path)))


def decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_text(path: str | Path) -> str:
    """A cluster file's text (see ``read_input``)."""
    return decode(read_input(path), str(path))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InputError(f"key {quote(k)} is given twice in one object")
        out[k] = v
    return out


def parse_text(text: str, path: str) -> Any:
    """The one reader of a cluster file's text: JSON for ``*.json``, else TOML.
    Raises ``InputError`` (one line, naming the file) and nothing else."""
    try:
        if path.lower().endswith(".json"):
            try:
                return json.loads(text, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: JSON syntax error at line {e.lineno}: {e.msg}") from None
            except InputError as e:
                raise InputError(f"{path}: JSON: {e}") from None
        try:
            return _toml.loads(text)
        except _toml.TOMLDecodeError as e:
            from .kaconf import looks_like_keepalived

            if looks_like_keepalived(text):
                raise InputError(f"{path}: this is a keepalived.conf, not a cluster file; `lvsdr import {path} "
                                 "--arp-method METHOD` turns it into one") from None
            raise InputError(f"{path}: TOML syntax error: {e}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None
    except ValueError as e:  # an integer of more than 4,300 digits (Python's limit on converting one)
        raise InputError(f"{path}: {str(e).split(':')[0].lower()}: an integer with too many digits") from None


def parse_cluster(data: Any) -> Cluster:
    """Validate parsed data; raises ``ValidationError`` listing every problem."""
    errors = Errors()
    if not isinstance(data, dict):
        raise ValidationError([f"(top level): expected table, got {_typename(data)}"])
    top = Table(data, "", errors)
    c = top.table("cluster")
    if c is None and "cluster" not in data:
        errors.add("cluster", "required table is missing")
    directors = _directors(top, c, errors)
    real_servers = _real_servers(top, errors)
    cluster_kw = _cluster_keys(c, directors, errors) if c else {}
    services = _services(top, directors, real_servers, errors)
    tracking = _tracking(top, errors)
    tracking["vip_options"] = _vips(top, errors)
    tracking["extra"] = _extra(top, services, errors)
    tracking["instances"] = _instances(top, directors, services, tracking["vip_options"], cluster_kw, errors)
    top.done()
    _cross_checks(directors, real_servers, services, cluster_kw, errors)
    _director_backends(directors, services, errors)
    vrrp_ifaces = {d.interface for d in directors if d is not None}
    for i, ti in enumerate(tracking["track_interfaces"]):
        if ti.name in vrrp_ifaces:
            errors.add(f"track_interfaces[{i}].name", f"{ti.name} is the VRRP interface itself (keepalived tracks "
                       "it already, and refuses it here)")
    nodes = {x.address: f"{kind}[{i}].address" for kind, group in (("directors", directors),
                                                                   ("real_servers", real_servers))
             for i, x in enumerate(group) if x is not None}
    for i, v in enumerate(tracking["vip_options"]):
        if v.address in nodes:
            errors.add(f"vips[{i}].address", f"{v.address} is also {nodes[v.address]}")
    marked = [s.name for s in services if s is not None and (s.fwmark or any(b.is_director for b in s.backends))]
    if cluster_kw.get("hook") == "none" and marked:
        errors.add("cluster.hook", f"none leaves the fwmark services ({', '.join(marked)}) without their mark rule: "
                   "nothing would be balanced (use both, fifo or notify)")
    if errors.lines:
        raise ValidationError(errors.lines)
    return Cluster(
        directors=tuple(d for d in directors if d is not None),
        real_servers=tuple(r for r in real_servers if r is not None),
        services=tuple(_assign_fwmarks(services)),
        **tracking,
        **cluster_kw,
    )


def _cluster_keys(c: Table, directors: list[Director | None], errors: Errors) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "name": c.text("name", CLUSTER_NAME_RE, "a cluster name ([a-z0-9][a-z0-9_-]{0,30})"),
        "interface": c.text("interface", IFNAME_RE, "an interface name", DEFAULT_INTERFACE),
        "virtual_router_id": c.int_in("virtual_router_id", 1, 255),
    }
    live = [d for d in directors if d is not None]
    v6 = bool(live) and live[0].address.version == 6
    version = c.get("vrrp_version", int, None)
    if version is not None and version not in (2, 3):
        errors.add(c.path("vrrp_version"), f"{quote(version)} is not 2 or 3")
        version = None
    if version is None and v6:
        version = 3
    kw["vrrp_version"] = version or 2
    if v6 and kw["vrrp_version"] != 3:
        errors.add(c.path("vrrp_version"), "IPv6 directors need VRRP version 3")
    adv = c.get("advert_int", (int, float), DEFAULT_ADVERT_INT)
    if adv is not None:
        if not 0 < adv <= 255:
            errors.add(c.path("advert_int"), f"{quote(adv)} is outside 0..255 seconds")
        elif kw["vrrp_version"] == 2 and adv != int(adv):
            errors.add(c.path("advert_int"), f"{adv} is fractional; VRRP version 2 needs whole seconds")
        elif kw["vrrp_version"] == 3 and round(adv * 100) != adv * 100:
            errors.add(c.path("advert_int"), f"{quote(adv)} is finer than VRRPv3's 0.01 s")
        else:
            kw["advert_int"] = int(adv) if adv == int(adv) else float(adv)
    kw.setdefault("advert_int", DEFAULT_ADVERT_INT)
    auth = c.raw("auth_pass", None)
    if isinstance(auth, str) and len(auth) > 8:
        errors.add(c.path("auth_pass"), f"{len(auth)} characters; VRRP PASS allows at most 8")
        auth = None
    else:
        auth = c.text("auth_pass", AUTH_RE, "1..8 characters of [A-Za-z0-9._~@%+=:,-]", None)
    if auth is not None and kw["vrrp_version"] == 3:
        errors.add(c.path("auth_pass"), "VRRP version 3 has no authentication; remove auth_pass")
    kw["auth_pass"] = auth
    kw["auth_type"] = c.choice("auth_type", AUTH_TYPES, CLUSTER["auth_type"])
    if "auth_type" in c.data and auth is None and "auth_pass" not in c.data:
        errors.add(c.path("auth_type"), "needs auth_pass (the shared secret)")
    kw["unicast"] = c.get("unicast", bool, CLUSTER["unicast"])
    if kw["unicast"] and len(live) == 1:
        errors.add(c.path("unicast"), "needs at least two directors (a unicast peer)")
    kw["nopreempt"] = c.get("nopreempt", bool, CLUSTER["nopreempt"])
    kw["preempt_delay"] = c.int_in("preempt_delay", 0, 1000, None)
    kw["garp_master_delay"] = c.int_in("garp_master_delay", 0, 255, CLUSTER["garp_master_delay"])
    kw["garp_master_refresh"] = c.int_in("garp_master_refresh", 1, 86400, None)
    kw["hook"] = c.choice("hook", HOOK_MODES, CLUSTER["hook"])
    for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop"):
        kw[key] = _command(c, key)
    kw["mcast_src_ip"] = c.get("mcast_src_ip", bool, CLUSTER["mcast_src_ip"])
    sync = c.get("sync_daemon", (bool, dict), None)
    if sync is True:
        kw["sync_daemon"] = SyncDaemon()
    elif isinstance(sync, dict):
        st = Table(sync, c.path("sync_daemon"), errors)
        kw["sync_daemon"] = SyncDaemon(st.text("interface", IFNAME_RE, "an interface name", None),
                                       st.int_in("id", 0, 255, None), st.int_in("port", 1, 65535, None))
        st.done()
    if kw["mcast_src_ip"] and kw.get("unicast"):
        errors.add(c.path("mcast_src_ip"), "applies to multicast adverts; this cluster is unicast")
    kw["notify_fifo"] = c.text("notify_fifo", PATH_RE, "an absolute path", CLUSTER["notify_fifo"])
    kw["lvsdr_path"] = c.text("lvsdr_path", PATH_RE, "an absolute path", CLUSTER["lvsdr_path"])
    kw["config_path"] = c.text("config_path", PATH_RE, "an absolute path", CLUSTER["config_path"])
    kw["initial_state"] = c.choice("initial_state", ("BACKUP", "MASTER"), CLUSTER["initial_state"])
    kw["state_dir"] = c.text("state_dir", PATH_RE, "an absolute path", CLUSTER["state_dir"])
    kw["subnet"] = _subnet(c, live)
    kw["sync_group"] = c.get("sync_group", bool, CLUSTER["sync_group"])
    if kw["nopreempt"] and kw["initial_state"] == "MASTER":
        errors.add(c.path("nopreempt"), "needs initial_state BACKUP")
    c.done()
    return kw


def _subnet(c: Table, directors: list[Director]) -> IPNetwork | None:
    """The directors' segment, when the file names it: the directors must be in it."""
    v = c.get("subnet", str, None)
    if v is None:
        return None
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        c.errors.add(c.path("subnet"), f"{quote(v)} is not a network (\"192.0.2.0/24\", host bits zero)")
        return None
    for d in directors:
        if d.address not in net:
            c.errors.add(c.path("subnet"), f"{net} does not hold director {d.name} ({d.address})")
    return net


def _directors(top: Table, c: Table | None, errors: Errors) -> list[Director | None]:
    """One entry per table, None where it had errors (keeps indexes for messages)."""
    default_if = DEFAULT_INTERFACE
    if c is not None and isinstance(c.data.get("interface"), str):
        default_if = c.data["interface"]
    out: list[Director | None] = []
    tables = top.tables("directors")
    if not tables and "directors" in top.data and isinstance(top.data["directors"], list):
        errors.add("directors", "at least one director is required")
    for t in tables:
        name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
        addr = t.address("address")
        prio = t.int_in("priority", 1, 254)
        iface = t.text("interface", IFNAME_RE, "an interface name", default_if)
        method = t.choice("arp_method", methods.NAMES, methods.DEFAULT)
        t.done()
        if name is None or addr is None or prio is None or iface is None or method is None:
            out.append(None)
        else:
            out.append(Director(name, addr, prio, iface, method))
    for i, d in enumerate(out):
        if d is None:
            continue
        for j, e in enumerate(out[:i]):
            if e is None:
                continue
            if e.priority == d.priority:
                errors.add(f"directors[{i}].priority",
                           f"same priority {d.priority} as directors[{j}] ({e.name}); "
                           "VRRP then elects by address")
            if e.address.version != d.address.version:
                errors.add(f"directors[{i}].address",
                           f"IPv{d.address.version} but directors[{j}] is IPv{e.address.version}; "
                           "directors must share one address family")
    return out


def _real_servers(top: Table, errors: Errors) -> list[RealServer | None]:
    out: list[RealServer | None] = []
    for t in top.tables("real_servers", required=False):
        name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
        addr = t.address("address")
        iface = t.text("interface", IFNAME_RE, "an interface name", REAL_SERVER["interface"])
        method = t.choice("arp_method", methods.NAMES, methods.DEFAULT)
        zone = t.text("firewalld_zone", ZONE_RE, "a firewalld zone name", REAL_SERVER["firewalld_zone"])
        t.done()
        if name is None or addr is None or iface is None or method is None or zone is None:
            out.append(None)
        else:
            out.append(RealServer(name, addr, iface, method, zone))
    return out


ARG_RE = re.compile(r"[A-Za-z0-9._/:=@%+,-]+")
TRACK_SCRIPT = _defaults(TrackScript)


def _command(t: Table, key: str) -> Command | None:
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
    args = _args(t, key, v[1:], first=1)
    return (v[0], *args) if ok and len(args) == len(v) - 1 else None


def _args(t: Table, key: str, values: list[Any], first: int = 0) -> tuple[str, ...]:
    """Script arguments lvsdr quotes into keepalived.conf: the valid ones (each bad one is an error)."""
    out = []
    for i, a in enumerate(values, first):
        if isinstance(a, str) and ARG_RE.fullmatch(a):
            out.append(a)
        else:
            t.errors.add(f"{t.path(key)}[{i}]", f"{quote(a)} is not an argument lvsdr can quote for "
                         "keepalived (letters, digits and ._/:=@%+,- only)")
    return tuple(out)
TRACK_WEIGHT = (-253, 253)


LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}:[A-Za-z0-9_-]+")
EXTRA_BLOCKS = ("global_defs", "vrrp_instance")


def _vips(top: Table, errors: Errors) -> tuple[Vip, ...]:
    """[[vips]]: VRRP-only VIPs, and per-VIP device and label."""
    out: list[Vip] = []
    seen: dict[IPAddress, int] = {}
    for i, t in enumerate(top.tables("vips", required=False)):
        addr = t.address("address")
        device = t.text("device", IFNAME_RE, "an interface name", None)
        label = t.text("label", LABEL_RE, "a label DEVICE:NAME (15 characters at most)", None)
        t.done()
        if label is not None and (len(label) > 15 or (device is not None and label.split(":")[0] != device)):
            errors.add(t.path("label"), f"{quote(label)} must start with its device and hold 15 characters "
                       "at most")
            continue
        if addr is None:
            continue
        if addr in seen:
            errors.add(t.path("address"), f"duplicate VIP (also vips[{seen[addr]}].address)")
            continue
        seen[addr] = i
        out.append(Vip(addr, device, label))
    return tuple(out)


def _instances(top: Table, directors: list[Director | None], services: list[Service | None],
               vip_options: tuple[Vip, ...], kw: dict[str, Any], errors: Errors) -> tuple[Instance, ...]:
    """[[instances]]: further VRRP instances, each with some of the VIPs."""
    tables = top.tables("instances", required=False)
    live = [d for d in directors if d is not None]
    known = {v for s in services if s is not None for v in s.all_vips} | {v.address for v in vip_options}
    out: list[Instance] = []
    claimed: dict[IPAddress, str] = {}
    vrids = {kw.get("virtual_router_id"): "cluster.virtual_router_id"}
    names: dict[str, int] = {}
    for i, t in enumerate(tables):
        name = t.text("name", CLUSTER_NAME_RE, "an instance name ([a-z0-9][a-z0-9_-]{0,30})")
        vrid = t.int_in("virtual_router_id", 1, 255)
        raw = t.get("vips", list)
        prio_t = t.table("priorities")
        t.done()
        if name is not None:
            if name in names:
                errors.add(t.path("name"), f"duplicate name (also instances[{names[name]}].name)")
            names.setdefault(name, i)
        if vrid is not None:
            if vrid in vrids:
                errors.add(t.path("virtual_router_id"), f"{vrid} is also {vrids[vrid]}")
            vrids.setdefault(vrid, f"instances[{i}].virtual_router_id")
        vips: list[IPAddress] = []
        for j, item in enumerate(raw or []):
            where = f"{t.path('vips')}[{j}]"
            a = parse_address(item, where, errors) if isinstance(item, str) else None
            if not isinstance(item, str):
                errors.add(where, f"expected string, got {_typename(item)}")
            if a is None:
                continue
            if a not in known:
                errors.add(where, f"{a} is no service's VIP and not in [[vips]]")
            elif a in claimed:
                errors.add(where, f"{a} is already {claimed[a]}")
            else:
                claimed[a] = f"in instances[{i}]"
                vips.append(a)
        if raw is not None and not raw:
            errors.add(t.path("vips"), "expected at least one VIP")
        prios: list[tuple[str, int]] = []
        if prio_t is not None:
            for d in live:
                p = prio_t.int_in(d.name, 1, 254)
                if p is not None:
                    prios.append((d.name, p))
            prio_t.done()
            seen: dict[int, str] = {}
            for dname, p in prios:
                if p in seen:
                    errors.add(f"{prio_t.path(dname)}", f"same priority {p} as {seen[p]}; VRRP then elects by "
                               "address")
                seen.setdefault(p, dname)
        elif "priorities" not in t.data:
            errors.add(t.path("priorities"), "required key is missing")
        if name is None or vrid is None or not vips or len(prios) != len(live):
            continue
        if live and not any(v.version == live[0].address.version for v in vips):
            errors.add(t.path("vips"), f"no IPv{live[0].address.version} VIP; a vrrp_instance needs one of the "
                       "directors' family")
        out.append(Instance(name, vrid, tuple(sorted(vips, key=addr_key)), tuple(prios)))
    if out and known and known <= set(claimed):
        errors.add("instances", "every VIP is in [[instances]]; the cluster's own instance would carry none")
    backing = sorted({b.server for s in services if s is not None for b in s.backends if b.is_director})
    if tables and backing:
        errors.add("instances", f"several VRRP instances with a director as a backend ({', '.join(backing)}) are "
                   "not supported: its ARP suppression follows one role")
    if tables and kw.get("initial_state") == "MASTER":
        errors.add("cluster.initial_state", "MASTER is for one instance; with [[instances]] every director starts "
                   "as BACKUP")
    if kw.get("sync_group") and not tables:
        errors.add("cluster.sync_group", "needs [[instances]] (a sync group joins several instances)")
    if kw.get("sync_group"):
        for key in ("track_scripts", "track_interfaces", "track_files"):
            for j, item in enumerate(top.data.get(key) or []):
                if isinstance(item, dict) and item.get("weight", 0) != 0:
                    errors.add(f"{key}[{j}].weight", "must be 0 in a sync group (keepalived ignores weighted "
                               "tracking there and refuses the file); 0 puts the group in FAULT")
    return tuple(out)


def _extra(top: Table, services: list[Service | None], errors: Errors) -> tuple[Extra, ...]:
    """[[keepalived_extra]]: directives the model does not cover, added to one block.
    Each line stays on its line and the braces balance, so nothing leaves its block."""
    names = {s.name for s in services if s is not None}
    out: list[Extra] = []
    for t in top.tables("keepalived_extra", required=False):
        block = t.get("block", str)
        lines = t.get("lines", list)
        t.done()
        if block is None or lines is None:
            continue
        target = block.removeprefix("service:")
        if block not in EXTRA_BLOCKS and not (block.startswith("service:") and target in names):
            errors.add(t.path("block"), f"{quote(block)} is not global_defs, vrrp_instance or service:NAME "
                       "of a service in this file")
            continue
        depth, ok = 0, True
        for i, line in enumerate(lines):
            if not isinstance(line, str) or any(c in line for c in "\n\r\0"):
                errors.add(f"{t.path('lines')}[{i}]", "expected one line of text")
                ok = False
                continue
            braces, why = extra_line(line)
            if why:
                errors.add(f"{t.path('lines')}[{i}]", why)
                ok = False
                continue
            depth += braces
            if depth < 0:
                errors.add(f"{t.path('lines')}[{i}]", "closes a block it did not open")
                ok = False
                break
        if ok and depth:
            errors.add(t.path("lines"), "opens a block it does not close")
            ok = False
        if ok:
            out.append(Extra(block, tuple(lines)))
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


def _tracking(top: Table, errors: Errors) -> dict[str, Any]:
    """Director self-health: [[track_scripts]], [[track_interfaces]], [[track_files]]."""
    scripts: list[TrackScript] = []
    ifaces: list[TrackInterface] = []
    files: list[TrackFile] = []
    for t in top.tables("track_scripts", required=False):
        name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
        script = t.text("script", PATH_RE, "an absolute path without blanks or quotes")
        args = _args(t, "args", t.get("args", list, []) or [])
        interval = t.int_in("interval", 1, 3600, TRACK_SCRIPT["interval"])
        timeout = t.int_in("timeout", 1, 3600, None)
        weight = t.int_in("weight", *TRACK_WEIGHT, TRACK_SCRIPT["weight"])
        rise = t.int_in("rise", 1, 100, TRACK_SCRIPT["rise"])
        fall = t.int_in("fall", 1, 100, TRACK_SCRIPT["fall"])
        t.done()
        if name is not None and script is not None and interval and weight is not None and rise and fall:
            scripts.append(TrackScript(name, script, args, interval, timeout, weight, rise, fall))
    for t in top.tables("track_interfaces", required=False):
        name = t.text("name", IFNAME_RE, "an interface name")
        weight = t.int_in("weight", *TRACK_WEIGHT, 0)
        t.done()
        if name is not None and weight is not None:
            ifaces.append(TrackInterface(name, weight))
    for t in top.tables("track_files", required=False):
        name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
        file = t.text("file", PATH_RE, "an absolute path without blanks or quotes")
        weight = t.int_in("weight", *TRACK_WEIGHT, 0)
        t.done()
        if name is not None and file is not None and weight is not None:
            files.append(TrackFile(name, file, weight))
    named: tuple[tuple[str, list[str]], ...] = (("track_scripts", [x.name for x in scripts]),
                                                ("track_interfaces", [x.name for x in ifaces]),
                                                ("track_files", [x.name for x in files]))
    for key, names in named:
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                errors.add(f"{key}[{i}].name", f"duplicate name (also {key}[{seen[name]}].name)")
            seen.setdefault(name, i)
    return {"track_scripts": tuple(scripts), "track_interfaces": tuple(ifaces), "track_files": tuple(files)}


SCHEDULER_FLAGS = {"sh_port": "sh", "sh_fallback": "sh", "mh_port": "mh", "mh_fallback": "mh"}


IPVS_KEYS = frozenset(("quorum_up", "quorum_down", "ops", "alpha", "omega", "ha_suspend", "hysteresis",
                       "persistence_granularity", *SCHEDULER_FLAGS))
IPVS_DEFAULTS: dict[str, Any] = {k: SERVICE.get(k) for k in ("quorum_up", "quorum_down", "ops", "alpha", "omega",
                                                                "ha_suspend", "hysteresis", "scheduler_flags")}


def _ipvs_options(t: Table, proto: str | None, sched: str | None, vip: IPAddress | None) -> dict[str, Any]:
    """A service's IPVS options beyond the scheduler (keepalived.conf(5) names)."""
    if t.data.keys().isdisjoint(IPVS_KEYS):  # the common case: none given, all defaults
        return IPVS_DEFAULTS
    kw: dict[str, Any] = {"quorum_up": _command(t, "quorum_up"), "quorum_down": _command(t, "quorum_down")}
    for key in ("ops", "alpha", "omega", "ha_suspend"):
        kw[key] = bool(t.get(key, bool, SERVICE[key]))
    if kw["ops"] and proto not in (None, "udp"):
        t.errors.add(t.path("ops"), f"one-packet scheduling is for udp services (this one is {proto})")
    kw["hysteresis"] = t.int_in("hysteresis", 0, 65535, None)
    quorum = t.data.get("quorum", 1)
    if kw["hysteresis"] is not None and isinstance(quorum, int) and kw["hysteresis"] >= quorum:
        t.errors.add(t.path("hysteresis"), f"{kw['hysteresis']} is not below the quorum {quote(quorum)} "
                     "(keepalived would set it to 0)")
    gran = t.get("persistence_granularity", str, None)
    if gran is not None:
        try:
            if vip is not None and vip.version == 6:
                net = ipaddress.ip_network(f"::/{int(gran)}")
            else:
                net = ipaddress.ip_network(f"0.0.0.0/{gran}")
            kw["persistence_granularity"] = str(net.netmask) if net.version == 4 else str(net.prefixlen)
        except ValueError:
            t.errors.add(t.path("persistence_granularity"), f"{quote(gran)} is not a netmask "
                         "(IPv4: 255.255.255.0; IPv6 VIPs: a prefix length such as \"64\")")
    flags = []
    for key, needs in SCHEDULER_FLAGS.items():
        if t.get(key, bool, False):
            if sched is not None and sched != needs:
                t.errors.add(t.path(key), f"is for scheduler {needs} (this service uses {sched})")
            flags.append(key.replace("_", "-"))
    kw["scheduler_flags"] = tuple(flags)
    return kw


def _checks(t: Table, errors: Errors, memo: Memo | None = None) -> tuple[Check, ...] | None:
    """``check = {...}`` (one checker) or ``checks = [{...}, ...]`` (several);
    None when the table names neither."""
    if memo is not None and ("check" in t.data or "checks" in t.data):
        t.seen.update(k for k in ("check", "checks") if k in t.data)
        return memo.get("checks", [t.data.get("check"), t.data.get("checks")], lambda: _checks(t, errors))
    if "check" in t.data and "checks" in t.data:
        errors.add(t.path("checks"), "give check (one checker) or checks (several), not both")
    if "checks" in t.data:
        tables = t.tables("checks")
        if not tables and isinstance(t.data["checks"], list):
            errors.add(t.path("checks"), "expected at least one check (for none, use check = { type = \"none\" })")
        out = [_check(c, errors) for c in tables]
        for c, ct in zip(out, tables, strict=True):
            if c is None and len(tables) > 1:
                errors.add(ct.path("type"), "none cannot be one of several checks")
        return tuple(c for c in out if c is not None)
    one = t.table("check")
    if one is None:
        return None
    c = _check(one, errors)
    return () if c is None else (c,)


STATUS_RE = re.compile(r"([1-5][0-9][0-9])(?:-([1-5][0-9][0-9]))?")
DIGEST_RE = re.compile(r"[0-9a-f]{32}")


def _status_codes(t: Table) -> tuple[str, ...]:
    v = t.get("status_code", (int, str, list), None)
    if v is None:
        return ()
    out = []
    for item in v if isinstance(v, list) else [v]:
        small = isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool) and abs(item) < MAX_INT)
        m = STATUS_RE.fullmatch(str(item)) if small else None
        if m is None or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            t.errors.add(t.path("status_code"), f"{quote(item)} is not a status code (200) or range "
                         "(\"200-299\")")
            continue
        out.append(m.group(0))
    return tuple(out)


def _url(t: Table) -> Url:
    path = t.text("path", URL_PATH_RE, "a URL path (/..., no blanks, quotes, # or !)", URL["path"])
    return Url(path or URL["path"], _status_codes(t), t.text("digest", DIGEST_RE, "an MD5 digest (32 lowercase hex "
                                                               "digits, as keepalived's genhash prints)", None),
               t.text("virtualhost", HOST_RE, "a host name", None))


def _urls(t: Table, errors: Errors) -> tuple[Url, ...]:
    """``urls = [{path, status_code, digest, virtualhost}, ...]``, or one URL's
    keys on the check itself."""
    if "urls" not in t.data:
        one = Table({k: v for k, v in t.data.items() if k in ("path", "status_code", "digest")}, t.where, errors)
        t.seen.update(one.data)
        return (_url(one),)
    for key in ("path", "status_code", "digest"):
        if key in t.data:
            t.seen.add(key)
            errors.add(t.path(key), "give it inside urls, or drop urls")
    urls = []
    for u in t.tables("urls"):
        urls.append(_url(u))
        u.done()
    if not urls and isinstance(t.data["urls"], list):
        errors.add(t.path("urls"), "expected at least one URL")
    return tuple(urls) or URL_DEFAULT


def _check(t: Table, errors: Errors) -> Check | None:
    """One checker, read by its type's keys in the catalog (checks.py); None for type none."""
    kind = t.choice("type", checks.NAMES, CHECK["type"]) or CHECK["type"]
    for key in list(t.data):
        kinds = checks.KEY_TYPES.get(key)
        if kinds is not None and kind not in kinds:
            t.seen.add(key)
            errors.add(t.path(key), f"does not apply to check type {kind} (it is for {', '.join(kinds)})")
    if kind == "none":
        t.done()
        return None
    kw: dict[str, Any] = {"type": kind}
    for spec in checks.keys_of(checks.TYPES[kind]):
        if spec.name in t.data or spec.form in ("urls", "script", "track_file"):
            _check_key(t, spec, kw, errors)
    if kw.get("sni") and kw.get("virtualhost") is None and not all(u.virtualhost for u in kw["urls"]):
        errors.add(t.path("sni"), "needs a virtualhost (the name sent as SNI)")
    t.done()
    options = tuple(sorted((k, v) for k, v in kw.items() if k not in CHECK_FIELDS and v is not None and v is not False))
    return Check(**{k: v for k, v in kw.items() if v is not None and k in CHECK_FIELDS}, options=options)


_PATH_WHAT = "an absolute path without blanks or quotes"


def _check_key(t: Table, key: checks.Key, kw: dict[str, Any], errors: Errors) -> None:
    """Read one key of a checker by its form into ``kw`` (the model's fields)."""
    if key.form in ("int", "weight"):
        kw[key.attr] = t.int_in(key.name, key.lo, key.hi, None)
    elif key.form in ("text", "hex"):
        assert key.pattern is not None
        kw[key.attr] = t.text(key.name, key.pattern, key.what, None)
    elif key.form == "choice":
        kw[key.attr] = t.choice(key.name, key.choices, None)
    elif key.form == "flag":
        kw[key.attr] = bool(t.get(key.name, bool, False))
    elif key.form == "urls":
        kw["urls"] = _urls(t, errors)
    elif key.form == "script":
        path = t.text("script", PATH_RE, _PATH_WHAT)
        args = _args(t, "args", t.get("args", list, []) or [])
        kw["script"] = None if path is None else (path, *args)
    elif key.form == "track_file":
        kw["file"] = t.text("file", PATH_RE, _PATH_WHAT)
    elif key.form == "reply":
        reply = t.get("require_reply", (bool, str), False)
        if isinstance(reply, str):
            kw["reply"] = t.text("require_reply", checks.HEX, "true, or the hex bytes the reply must start with", None)
        kw["require_reply"] = bool(reply)


def _backend_keys(b: Table, errors: Errors) -> tuple[Any, ...]:
    """What a backend's table says, checked: (server, weight, port,
    listen_port, notify_up, notify_down, inhibit_on_failure, checks)."""
    name = b.get("server", str)
    weight = b.int_in("weight", 0, 65535, BACKEND["weight"])
    port = b.int_in("port", 1, 65535, None)
    listen = b.int_in("listen_port", 1, 65535, None)
    notify_up, notify_down = _command(b, "notify_up"), _command(b, "notify_down")
    inhibit = b.get("inhibit_on_failure", bool, BACKEND["inhibit_on_failure"])
    own_checks = _checks(b, errors)
    b.done()
    return name, weight, port, listen, notify_up, notify_down, inhibit, own_checks


def _backends(t: Table, known: dict[str, Director | RealServer], plain: dict[str, Backend],
              errors: Errors, memo: Memo) -> list[Backend]:
    """``plain`` maps each server name to its Backend with default settings
    (frozen, so shared by every service that names it plainly)."""
    v = t.get("backends", list)
    if v is None:
        return []
    if not v:
        errors.add(t.path("backends"), "at least one backend is required")
    out: list[Backend] = []
    seen: dict[str, int] = {}

    base = t.path("backends")

    def resolve(name: str, i: int) -> Director | RealServer | None:
        if name in seen:
            errors.add(f"{base}[{i}]", f"server {quote(name)} is already backends[{seen[name]}]")
            return None
        seen[name] = i
        srv = known.get(name)
        if srv is None:
            errors.add(f"{base}[{i}]", f"unknown server {quote(name)}")
        return srv

    for i, item in enumerate(v):
        if isinstance(item, str):  # the common case, kept cheap: a name with the defaults
            if resolve(item, i) is not None:
                out.append(plain[item])
            continue
        where = f"{base}[{i}]"
        if not isinstance(item, dict):
            errors.add(where, f"expected server name or table, got {_typename(item)}")
            continue
        b = Table(item, where, errors)
        name, weight, port, listen, notify_up, notify_down, inhibit, own_checks = memo.get(
            "backend", item, lambda: _backend_keys(b, errors))  # noqa: B023 -- called at once, in this iteration
        if name is None or weight is None:
            continue
        srv = resolve(name, i)
        if srv is None:
            continue
        svc_port = t.data.get("port")
        if port is not None and isinstance(svc_port, int) and port != svc_port:
            errors.add(
                f"{where}.port",
                f"{port} differs from the service port {quote(svc_port)}; DR cannot map ports "
                f"(use listen_port with arp_method {' or '.join(methods.REDIRECT)})",
            )
        if listen is not None and srv.arp_method not in methods.REDIRECT:
            errors.add(
                f"{where}.listen_port",
                f"needs arp_method {' or '.join(methods.REDIRECT)} on {name} (it is {srv.arp_method})",
            )
        out.append(Backend(name, srv.address, weight, listen, isinstance(srv, Director), notify_up, notify_down,
                           bool(inhibit), own_checks))
    return out


def _services(
    top: Table, directors: list[Director | None], real_servers: list[RealServer | None], errors: Errors
) -> list[Service | None]:
    known: dict[str, Director | RealServer] = {}
    for d in directors:
        if d is not None:
            known.setdefault(d.name, d)
    for r in real_servers:
        if r is not None:
            known.setdefault(r.name, r)
    plain = {n: Backend(n, srv.address, 1, None, isinstance(srv, Director)) for n, srv in known.items()}
    memo = Memo(errors)
    v4_servers = {n for n, srv in known.items() if srv.address.version == 4}
    out: list[Service | None] = []
    tables = top.tables("services")
    if not tables and isinstance(top.data.get("services"), list):
        errors.add("services", "at least one service is required")
    for t in tables:
        name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
        group_vips, group_ports = _group_vips(t), _group_ports(t)
        vip = group_vips[0] if group_vips else t.address("vip")
        port = group_ports[0] if group_ports else t.int_in("port", 1, 65535)
        if len(group_vips) == 1:
            group_vips = ()
        if len(group_ports) == 1:
            group_ports = ()
        proto = t.choice("protocol", PROTOCOLS, DEFAULT_PROTOCOL)
        sched = t.choice("scheduler", SCHEDULERS, DEFAULT_SCHEDULER)
        delay = t.int_in("delay_loop", 1, 3600, None)
        persist = t.int_in("persistence_timeout", 1, 2_000_000, None)
        quorum = t.int_in("quorum", 1, 65535 * 256, None)
        fwmark = t.int_in("fwmark", 1, 0xFFFFFFFF, None)
        ipvs = _ipvs_options(t, proto, sched, vip)
        sorry = None
        st = t.table("sorry_server")
        if st is not None:
            sa = _sorry_address(st)
            sp = st.int_in("port", 1, 65535, port if isinstance(port, int) else 1)
            st.done()
            if "port" in st.data and group_ports:
                errors.add(st.path("port"), "leave it out: a group with several ports forwards each to the same port")
            if sa is not None and sp is not None:
                sorry = SorryServer(sa, sp)
                if isinstance(port, int) and sp != port and not group_ports:
                    errors.add(st.path("port"), f"{sp} differs from the service port {port}; DR cannot map ports "
                               "(keepalived would reset it)")
                if sa == vip:
                    errors.add(st.path("address"), f"{sa} is the service's own VIP")
        checks = _checks(t, errors, memo)
        backends = _backends(t, known, plain, errors, memo)
        t.done()
        if vip is None or port is None or name is None or proto is None or sched is None:
            out.append(None)
            continue
        family = v4_servers if vip.version == 4 else set()
        for i, b in enumerate(backends):
            if b.server in family:
                continue  # the common case (IPv4 everywhere), nothing to check
            if b.address.version != vip.version:
                errors.add(f"{t.path('backends')}[{i}]",
                           f"{b.server} is IPv{b.address.version} but the VIP is IPv{vip.version}")
            srv = known[b.server]
            if vip.version == 6 and srv.arp_method not in methods.IPV6:
                errors.add(f"{t.path('backends')}[{i}]",
                           f"{b.server} uses arp_method {srv.arp_method}, which cannot serve an "
                           f"IPv6 VIP (use {', '.join(methods.IPV6)})")
        if sorry is not None and sorry.address.version != vip.version:
            errors.add(f"{t.path('sorry_server')}.address",
                       f"IPv{sorry.address.version} but the VIP is IPv{vip.version}")
        if backends and len(backends) == len(t.data.get("backends") or []) and not any(
                b.weight for b in backends):
            errors.add(t.path("backends"), "every weight is 0; the service could never be up")
        elif quorum is not None and backends and quorum > sum(b.weight for b in backends):
            errors.add(t.path("quorum"), f"{quorum} is more than the backends' total weight "
                       f"{sum(b.weight for b in backends)}; the service could never be up")
        if proto in ("udp", "sctp") and checks is None:
            kinds = "udp, dns, misc, ping, file or none" if proto == "udp" else "misc, ping, file or none"
            errors.add(t.path("check"), f"a {proto} service needs an explicit check "
                       f"({kinds}; the default tcp check cannot probe {proto})")
        for i, c in enumerate(checks or ()):
            if c.type in ("dns", "udp") and proto == "sctp":
                where = t.path("check") if "check" in t.data else f"{t.path('checks')}[{i}]"
                errors.add(f"{where}.type", f"a {c.type} check cannot probe an sctp service")
        out.append(Service(
            name=name, vip=vip, port=port, protocol=proto, scheduler=sched,
            backends=tuple(backends), checks=SERVICE["checks"] if checks is None else checks, delay_loop=delay,
            persistence_timeout=persist, quorum=quorum, sorry_server=sorry, fwmark=fwmark, **ipvs,
            group_vips=group_vips, group_ports=group_ports,
        ))
    return out


MAX_GROUP = 4096  # addresses one VIP range may expand to


def _group_vips(t: Table) -> tuple[IPAddress, ...]:
    """``vip = [ADDR, "FIRST-LAST", ...]``: a virtual_server_group's VIPs, in order
    (empty when vip is one address: the caller reads it). LAST is a full address
    or the last part of FIRST (``"192.0.2.10-19"``)."""
    v = t.data.get("vip")
    if not isinstance(v, list):
        if isinstance(v, str) and "-" in v:
            v = [v]
        else:
            return ()
    t.seen.add("vip")
    where = t.path("vip")
    if not v:
        t.errors.add(where, "expected at least one VIP")
    out: list[IPAddress] = []
    for i, item in enumerate(v):
        here = f"{where}[{i}]" if isinstance(t.data["vip"], list) else where
        if not isinstance(item, str):
            t.errors.add(here, f"expected string, got {_typename(item)}")
            continue
        first_s, dash, last_s = item.partition("-")
        first = parse_address(first_s, here, t.errors)
        if first is None:
            continue
        if not dash:
            out.append(first)
            continue
        sep = "." if first.version == 4 else ":"
        full = last_s if (sep in last_s) else first_s.rsplit(sep, 1)[0] + sep + last_s
        last = parse_address(full, here, t.errors)
        if last is None:
            continue
        if last.version != first.version or int(last) < int(first):
            t.errors.add(here, f"{quote(item)} is not a range FIRST-LAST with FIRST <= LAST")
            continue
        if int(last) - int(first) >= MAX_GROUP:
            t.errors.add(here, f"{quote(item)} holds more than {MAX_GROUP} addresses")
            continue
        out += [ipaddress.ip_address(n) for n in range(int(first), int(last) + 1)]
    seen: set[IPAddress] = set()
    for a in out:
        if a.version != out[0].version:
            t.errors.add(where, f"mixes IPv{out[0].version} and IPv{a.version}; a service has one family")
            return ()
        if a in seen:
            t.errors.add(where, f"{a} is listed twice")
            return ()
        seen.add(a)
    return tuple(out)


def _group_ports(t: Table) -> tuple[int, ...]:
    """``port = [80, 443]``: a virtual_server_group's ports (empty when port is one number)."""
    v = t.data.get("port")
    if not isinstance(v, list):
        return ()
    t.seen.add("port")
    where = t.path("port")
    if not v:
        t.errors.add(where, "expected at least one port")
    out: list[int] = []
    for i, p in enumerate(v):
        if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 65535:
            t.errors.add(f"{where}[{i}]", f"{quote(p)} is not a port (1..65535)")
        elif p in out:
            t.errors.add(f"{where}[{i}]", f"{p} is listed twice")
        else:
            out.append(p)
    return tuple(out)


def _dupes(items: list[tuple[str, Any]], label: Callable[[int], str], errors: Errors,
           what: str) -> None:
    seen: dict[Any, int] = {}
    for i, (where, key) in enumerate(items):
        if key is None:
            continue
        if key in seen:
            errors.add(where, f"duplicate {what} (also {label(seen[key])})")
        else:
            seen[key] = i


def _cross_checks(directors: list[Director | None], real_servers: list[RealServer | None],
                  services: list[Service | None], kw: dict[str, Any], errors: Errors) -> None:
    nodes: list[tuple[str, Any]] = [
        (f"directors[{i}].name", d.name if d else None) for i, d in enumerate(directors)
    ] + [(f"real_servers[{i}].name", r.name if r else None) for i, r in enumerate(real_servers)]
    _dupes([(w, k) for w, k in nodes], lambda j: nodes[j][0], errors, "name")
    addrs: list[tuple[str, Any]] = [
        (f"directors[{i}].address", d.address if d else None) for i, d in enumerate(directors)
    ] + [(f"real_servers[{i}].address", r.address if r else None) for i, r in enumerate(real_servers)]
    _dupes(addrs, lambda j: addrs[j][0], errors, "address")
    svc_names = [(f"services[{i}].name", s.name if s else None) for i, s in enumerate(services)]
    _dupes(svc_names, lambda j: svc_names[j][0], errors, "service name")
    keys = [(f"services[{i}]", (v, p, s.protocol)) for i, s in enumerate(services) if s
            for v, p in s.endpoints]
    _dupes(keys, lambda j: keys[j][0], errors, "vip/port/protocol")
    marks = [(f"services[{i}].fwmark", s.fwmark if s else None) for i, s in enumerate(services)]
    _dupes(marks, lambda j: marks[j][0], errors, "fwmark")
    host_addrs = {k: w for w, k in addrs if k is not None}
    for i, s in enumerate(services):
        if s is None:
            continue
        for v in s.all_vips:
            if v in host_addrs:
                errors.add(f"services[{i}].vip", f"{v} is also {host_addrs[v]}")
    net = kw.get("subnet")
    if net is not None and net.prefixlen < net.max_prefixlen - 1:
        reserved = {net.network_address: "network", net.broadcast_address: "broadcast"}
        for i, s in enumerate(services):
            for v in s.all_vips if s else ():
                if v in reserved:
                    errors.add(f"services[{i}].vip", f"{v} is the {reserved[v]} address of cluster.subnet {net}")
            if s and s.sorry_server and s.sorry_server.address in reserved:
                errors.add(f"services[{i}].sorry_server.address", f"{s.sorry_server.address} is the "
                           f"{reserved[s.sorry_server.address]} address of cluster.subnet {net}")
        for kind, group in (("directors", directors), ("real_servers", real_servers)):
            for i, x in enumerate(group):
                if x is not None and x.address in reserved:
                    errors.add(f"{kind}[{i}].address", f"{x.address} is the {reserved[x.address]} address of "
                               f"cluster.subnet {net}")
    live = [d for d in directors if d is not None]
    vips = [s for s in services if s is not None]
    if live and vips and not any(s.vip.version == live[0].address.version for s in vips):
        fam = live[0].address.version
        errors.add("services", f"no IPv{fam} VIP, but the directors speak VRRP over IPv{fam}; "
                   "keepalived needs at least one VIP of the directors' family")


def _director_backends(directors: list[Director | None], services: list[Service | None],
                       errors: Errors) -> None:
    """A director that is also a backend keeps the VIPs on lo while BACKUP;
    the redirect methods (iptables, firewalld) cannot share the VIP with
    keepalived, so they are refused there."""
    backing = {b.server for s in services if s is not None for b in s.backends if b.is_director}
    for i, d in enumerate(directors):
        if d is not None and d.name in backing and d.arp_method not in methods.DIRECTOR_BACKEND:
            errors.add(f"directors[{i}].arp_method",
                       f"{d.arp_method} cannot be used by a director that is also a backend "
                       f"(use {', '.join(methods.DIRECTOR_BACKEND[:-1])} or {methods.DIRECTOR_BACKEND[-1]})")


def _assign_fwmarks(services: list[Service | None]) -> list[Service]:
    """A service with a director among its backends gets a fwmark (see docs):
    the first free number above AUTO_FWMARK_BASE, in file order."""
    live = [s for s in services if s is not None]
    taken = {s.fwmark for s in live if s.fwmark}
    out = []
    for s in live:
        if s.fwmark is None and any(b.is_director for b in s.backends):
            mark = AUTO_FWMARK_BASE + 1
            while mark in taken:
                mark += 1
            taken.add(mark)
            s = dataclasses.replace(s, fwmark=mark)
        out.append(s)
    return out
