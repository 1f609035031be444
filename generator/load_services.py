"""``[[services]]``: virtual servers, their backends, IPVS options and
health checks (read by the catalog, checks.py), VIP ranges and groups."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from . import checks, methods
from .keys import HOST_RE, PATH_RE, URL_PATH_RE, Key, keys_of
from .model import (
    AUTO_FWMARK_BASE,
    CHECK_FIELDS,
    Backend,
    Check,
    Director,
    IPAddress,
    RealServer,
    Service,
    SorryServer,
    Url,
)
from .rules import command, script_args, sorry_address
from .schema import MAX_INT, Errors, Memo, Table, defaults_of, parse_address, quote, read_simple, typename

CHECK = defaults_of(Check)
URL = defaults_of(Url)
URL_DEFAULT: tuple[Url, ...] = CHECK["urls"]
BACKEND = defaults_of(Backend)
SERVICE = defaults_of(Service)
KEYS = keys_of(Service)  # a service's keys, each declared once on the model (keys.py)
BACKEND_KEYS = keys_of(Backend)


SCHEDULER_FLAGS = {"sh_port": "sh", "sh_fallback": "sh", "mh_port": "mh", "mh_fallback": "mh"}


IPVS_KEYS = frozenset(("quorum_up", "quorum_down", "ops", "hysteresis", "persistence_granularity",
                       *SCHEDULER_FLAGS))
IPVS_DEFAULTS: dict[str, Any] = {k: SERVICE.get(k) for k in ("quorum_up", "quorum_down", "scheduler_flags")}


def _ipvs_options(t: Table, kw: dict[str, Any], vip: IPAddress | None) -> dict[str, Any]:
    """A service's IPVS options beyond its simple keys (``kw``, read by their declarations): the operator's quorum
    scripts, persistence granularity, the scheduler's flags, and what the simple ones must agree on."""
    if t.data.keys().isdisjoint(IPVS_KEYS):  # the common case: none given, all defaults
        return IPVS_DEFAULTS
    proto, sched = kw["protocol"], kw["scheduler"]
    out: dict[str, Any] = {"quorum_up": command(t, "quorum_up"), "quorum_down": command(t, "quorum_down")}
    if kw["ops"] and proto not in (None, "udp"):
        t.errors.add(t.path("ops"), f"one-packet scheduling is for udp services (this one is {proto})")
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
            out["persistence_granularity"] = str(net.netmask) if net.version == 4 else str(net.prefixlen)
        except ValueError:
            t.errors.add(t.path("persistence_granularity"), f"{quote(gran)} is not a netmask "
                         "(IPv4: 255.255.255.0; IPv6 VIPs: a prefix length such as \"64\")")
    flags = []
    for key, needs in SCHEDULER_FLAGS.items():
        if t.get(key, bool, False):
            if sched is not None and sched != needs:
                t.errors.add(t.path(key), f"is for scheduler {needs} (this service uses {sched})")
            flags.append(key.replace("_", "-"))
    out["scheduler_flags"] = tuple(flags)
    return out


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


def _check_key(t: Table, key: Key, kw: dict[str, Any], errors: Errors) -> None:
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
        args = script_args(t, "args", t.get("args", list, []) or [])
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
    weight = b.key(BACKEND_KEYS["weight"])
    port = b.int_in("port", 1, 65535, None)  # not the model's: it must equal the service's (DR cannot map ports)
    listen = b.key(BACKEND_KEYS["listen_port"])
    notify_up, notify_down = command(b, "notify_up"), command(b, "notify_down")
    inhibit = b.key(BACKEND_KEYS["inhibit_on_failure"])
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
            errors.add(where, f"expected server name or table, got {typename(item)}")
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


def read_services(
    top: Table, directors: list[Director | None], real_servers: list[RealServer | None], errors: Errors
) -> list[Service | None]:
    """[[services]], one entry per table (None where it had errors: indexes stay for messages)."""
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
    tables = top.tables("services")
    if not tables and isinstance(top.data.get("services"), list):
        errors.add("services", "at least one service is required")
    return [_service(t, known, plain, v4_servers, memo, errors) for t in tables]


def _service(t: Table, known: dict[str, Director | RealServer], plain: dict[str, Backend], v4_servers: set[str],
             memo: Memo, errors: Errors) -> Service | None:
    simple = read_simple(t, KEYS)  # every simple key, by its declaration
    name, proto, sched, quorum = simple["name"], simple["protocol"], simple["scheduler"], simple["quorum"]
    group_vips, group_ports = _group_vips(t), _group_ports(t)
    vip = group_vips[0] if group_vips else t.address("vip")
    port = group_ports[0] if group_ports else t.int_in("port", 1, 65535)
    if len(group_vips) == 1:
        group_vips = ()
    if len(group_ports) == 1:
        group_ports = ()
    ipvs = _ipvs_options(t, simple, vip)
    sorry = _sorry_server(t, vip, port, bool(group_ports), errors)
    checks = _checks(t, errors, memo)
    backends = _backends(t, known, plain, errors, memo)
    t.done()
    if vip is None or port is None or name is None or proto is None or sched is None:
        return None
    _service_fits(t, vip, proto, backends, checks, quorum, sorry, known, v4_servers, errors)
    return Service(
        vip=vip, port=port, backends=tuple(backends), checks=SERVICE["checks"] if checks is None else checks,
        sorry_server=sorry, **simple, **ipvs, group_vips=group_vips, group_ports=group_ports,
    )


def _sorry_server(t: Table, vip: IPAddress | None, port: int | None, multi_port: bool,
                  errors: Errors) -> SorryServer | None:
    st = t.table("sorry_server")
    if st is None:
        return None
    sa = sorry_address(st)
    sp = st.int_in("port", 1, 65535, port if isinstance(port, int) else 1)
    st.done()
    if "port" in st.data and multi_port:
        errors.add(st.path("port"), "leave it out: a group with several ports forwards each to the same port")
    if sa is None or sp is None:
        return None
    if isinstance(port, int) and sp != port and not multi_port:
        errors.add(st.path("port"), f"{sp} differs from the service port {port}; DR cannot map ports "
                   "(keepalived would reset it)")
    if sa == vip:
        errors.add(st.path("address"), f"{sa} is the service's own VIP")
    return SorryServer(sa, sp)


def _service_fits(t: Table, vip: IPAddress, proto: str, backends: list[Backend], checks: tuple[Check, ...] | None,
                  quorum: int | None, sorry: SorryServer | None, known: dict[str, Director | RealServer],
                  v4_servers: set[str], errors: Errors) -> None:
    """What a service's parts must agree on: families, methods, weights and quorum, checks and protocol."""
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
    if backends and len(backends) == len(t.data.get("backends") or []) and not any(b.weight for b in backends):
        errors.add(t.path("backends"), "every weight is 0; the service could never be up")
    elif quorum is not None and backends and quorum > sum(b.weight for b in backends):
        errors.add(t.path("quorum"), f"{quorum} is more than the backends' total weight "
                   f"{sum(b.weight for b in backends)}; the service could never be up")
    if proto in ("udp", "sctp") and checks is None and not (backends and all(b.checks is not None for b in backends)):
        kinds = "udp, dns, misc, ping, file or none" if proto == "udp" else "misc, ping, file or none"
        errors.add(t.path("check"), f"a {proto} service needs an explicit check "
                   f"({kinds}; the default tcp check cannot probe {proto})")
    for i, c in enumerate(checks or ()):
        if c.type in ("dns", "udp") and proto == "sctp":
            where = t.path("check") if "check" in t.data else f"{t.path('checks')}[{i}]"
            errors.add(f"{where}.type", f"a {c.type} check cannot probe an sctp service")


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
            t.errors.add(here, f"expected string, got {typename(item)}")
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


def assign_fwmarks(services: list[Service | None]) -> list[Service]:
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
