"""Adopting an LVS-DR site that keepalived does not run yet (pure): an
``ipvsadm-save -n`` dump, or ldirectord's ldirectord.cf, read into the
importer's own terms (``importer.VirtualServer``), and the sides the merge
builds a cluster from: one per director named by ``--address``, each with
one VRRP instance carrying the services' VIPs (neither source has VRRP: its
virtual_router_id and interface are the import's choices, and said).

What does not map is named (``Unmapped``), as the keepalived import does."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from lvsdr.errors import InputError

from .importer import Address, CheckTable, Instance, RealServer, Side, Unmapped, VirtualServer

PROTOCOLS = {"-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp", "--sctp-service": "sctp"}
SCHEDULER_FLAGS = {"sh-port": "sh_port", "sh-fallback": "sh_fallback", "mh-port": "mh_port",
                   "mh-fallback": "mh_fallback"}
DEFAULT_VRID = 51


@dataclass
class Read:
    """What a source held: its DR services, and what did not map."""

    services: list[VirtualServer] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def _endpoint(text: str) -> tuple[str, int] | None:
    """``192.0.2.1:80`` or ``[2001:db8::1]:80`` -> (address, port); None when it is neither."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)", text)
    if m is None:
        return None
    addr, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    try:
        return str(ipaddress.ip_address(addr)), int(port)
    except ValueError:
        return None


def _service_name(vip: str, port: int) -> str:
    return f"{vip}-{port}".replace(":", "-")


# -- ipvsadm-save -n -----------------------------------------------------------------------------------------------

def read_ipvsadm(text: str, path: str) -> Read:
    """An ``ipvsadm-save -n`` (or ``ipvsadm -Sn``) dump: ``-A`` lines make services, ``-a`` lines their real
    servers; a real server not forwarded by gatewaying (``-g``, direct routing) is named and left out, so is a
    fwmark service (lvsdr makes its own marks), and each option lvsdr does not model."""
    out = Read()
    by_key: dict[tuple[str, str], VirtualServer] = {}
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
        if words[0] not in ("-A", "--add-service", "-a", "--add-server"):
            raise InputError(f"{where}: not a line of `ipvsadm-save -n` (an -A or -a command): {line[:80]!r}")
        add_service = words[0] in ("-A", "--add-service")
        if len(words) < 3:
            raise InputError(f"{where}: {words[0]} without a service")
        kind, target = words[1], words[2]
        if kind in ("-f", "--fwmark-service"):
            if add_service:
                out.unmapped.append(Unmapped(where, line.strip(), "a fwmark service marks traffic by rules lvsdr does "
                                             "not see; lvsdr makes its own marks from a service's vip and port (add "
                                             "the service by hand): not imported"))
            continue
        protocol = PROTOCOLS.get(kind)
        ep = _endpoint(target)
        if protocol is None or ep is None:
            raise InputError(f"{where}: {kind} {target}: not a service (-t, -u or --sctp-service ADDRESS:PORT)")
        key = (protocol, target)
        opts = words[3:]
        if add_service:
            if key in by_key:
                raise InputError(f"{where}: {kind} {target} is added twice")
            svc = VirtualServer(_service_name(*ep), where, ep[0], ep[1], protocol, "wlc")
            _service_options(svc, opts, where, line.strip(), out)
            if not out.services:
                out.comments.append("ipvsadm keeps no health checks: every service is imported with check type "
                                    "none (each real server stays in, as now); give each its check")
            by_key[key] = svc
            out.services.append(svc)
            continue
        svc_of = by_key.get(key)
        if svc_of is None:
            raise InputError(f"{where}: a real server of {kind} {target}, which no earlier -A line adds")
        _server_options(svc_of, opts, where, line.strip(), out)
    return out


def _service_options(svc: VirtualServer, opts: list[str], where: str, line: str, out: Read) -> None:
    i = 0
    while i < len(opts):
        o, arg = opts[i], opts[i + 1] if i + 1 < len(opts) else None
        if o in ("-s", "--scheduler") and arg:
            svc.scheduler = arg
        elif o in ("-p", "--persistent") and arg and arg.isdigit():
            svc.simple["persistence_timeout"] = int(arg)
        elif o in ("-M", "--netmask") and arg:
            if arg not in ("255.255.255.255", "128"):
                svc.persistence_granularity = arg
        elif o in ("-b", "--sched-flags") and arg:
            for flag in arg.split(","):
                if flag in SCHEDULER_FLAGS:
                    setattr(svc, SCHEDULER_FLAGS[flag], True)
                else:
                    out.unmapped.append(Unmapped(where, line, f"scheduler flag {flag}: lvsdr does not model it "
                                                 "(not imported)"))
        elif o in ("-p", "--persistent"):  # -p without a number: ipvsadm's default, 300 s
            svc.simple["persistence_timeout"] = 300
            i += 1
            continue
        else:
            out.unmapped.append(Unmapped(where, line, f"option {o}{' ' + arg if arg else ''}: lvsdr does not model "
                                         "it (not imported)"))
        i += 2


def _server_options(svc: VirtualServer, opts: list[str], where: str, line: str, out: Read) -> None:
    if len(opts) < 2 or opts[0] not in ("-r", "--real-server"):
        raise InputError(f"{where}: an -a line without -r ADDRESS:PORT")
    ep = _endpoint(opts[1])
    if ep is None:
        raise InputError(f"{where}: -r {opts[1]}: not ADDRESS:PORT")
    rs = RealServer(ep[0], where)
    method = "-g"
    i = 2
    while i < len(opts):
        o = opts[i]
        if o in ("-g", "--gatewaying", "-m", "--masquerading", "-i", "--ipip"):
            method = o
            i += 1
            continue
        arg = opts[i + 1] if i + 1 < len(opts) else None
        if o in ("-w", "--weight") and arg and arg.lstrip("-").isdigit():
            rs.weight = int(arg)
        elif o in ("-x", "--u-threshold", "-y", "--l-threshold") and arg == "0":
            pass  # no threshold
        else:
            out.unmapped.append(Unmapped(where, line, f"option {o}{' ' + arg if arg else ''}: lvsdr does not model "
                                         "it (not imported)"))
        i += 2
    if method not in ("-g", "--gatewaying"):
        out.unmapped.append(Unmapped(where, line, f"forwarded by {method}, not direct routing (-g): lvsdr builds DR "
                                     "clusters only; this real server is not imported"))
        return
    if ep[1] != svc.port:
        out.unmapped.append(Unmapped(where, line, f"port {ep[1]} differs from the service's {svc.port}: direct "
                                     "routing cannot change the port (the kernel sends to the VIP's): imported "
                                     "without it"))
    svc.backends.append(rs)


# -- ldirectord.cf -----------------------------------------------------------------------------------------------

# ldirectord's service guessed from the port when the file names none (its own table, the common part)
PORT_SERVICES = {80: "http", 443: "https", 53: "dns", 25: "smtp", 21: "ftp", 110: "pop", 143: "imap",
                 389: "ldap", 3306: "mysql", 5432: "pgsql", 119: "nntp", 5060: "sip", 1812: "radius"}
NEGOTIATED = {"http": "http", "https": "https", "dns": "dns", "smtp": "smtp"}  # ldirectord service -> lvsdr check


@dataclass
class _Virtual:
    svc: VirtualServer
    where: str
    settings: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (value, where)


def _kv(line: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"\s*([A-Za-z]+)\s*=\s*(.*?)\s*", line)
    return (m.group(1).lower(), m.group(2)) if m else None


def read_ldirectord(text: str, path: str) -> Read:
    """ldirectord.cf: global settings, then ``virtual=`` sections (their lines indented): each virtual a service,
    each ``real=`` with ``gate`` a backend (``masq``, ``ipip`` named and left out), its check from ``checktype``
    and ``service`` (negotiate: keepalived's checker of that protocol where there is one, else a TCP connect),
    ``quiescent`` as inhibit_on_failure, ``fallback`` as the sorry server, ``persistent`` and ``netmask`` as
    persistence."""
    out = Read()
    glob: dict[str, tuple[str, str]] = {}
    virtuals: list[_Virtual] = []
    current: _Virtual | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        if raw.lstrip().startswith("#"):
            continue
        line = re.sub(r'\s+#[^"]*$', "", raw).rstrip()  # a trailing comment (not inside a quoted string)
        if not line.strip():
            continue
        kv = _kv(line)
        if kv is None:
            raise InputError(f"{where}: not a KEY=VALUE line of ldirectord.cf: {raw.strip()[:80]!r}")
        key, value = kv
        indented = line[:1] in (" ", "\t")
        if key == "virtual":
            ep = _endpoint(value)
            if ep is None:
                out.unmapped.append(Unmapped(where, raw.strip(), "a virtual that is not ADDRESS:PORT (a fwmark or a "
                                             "host name): not imported"))
                current = None
                continue
            current = _Virtual(VirtualServer(_service_name(*ep), where, ep[0], ep[1], "tcp", "wrr"), where)
            virtuals.append(current)
        elif indented:
            if current is None:
                continue  # the settings of a virtual not imported (named above)
            if key == "real":
                _real(current, value, where, raw.strip(), out)
            else:
                current.settings[key] = (value, where)
        else:
            current = None
            glob[key] = (value, where)
    for v in virtuals:
        _virtual(v, glob, out)
        out.services.append(v.svc)
    for key, (value, where) in glob.items():
        if key not in GLOBAL_MAPPED:
            out.unmapped.append(Unmapped(where, f"{key}={value}", "ldirectord setting lvsdr does not model (not "
                                         "imported)"))
    return out


GLOBAL_MAPPED = {"checktimeout", "connecttimeout", "negotiatetimeout", "checkinterval", "quiescent", "fallback",
                 "checktype", "service", "scheduler", "protocol", "persistent", "netmask", "request", "receive",
                 "virtualhost", "checkport", "failurecount"}


def _real(v: _Virtual, value: str, where: str, line: str, out: Read) -> None:
    words = value.split()
    ep = _endpoint(words[0]) if words else None
    if ep is None:
        out.unmapped.append(Unmapped(where, line, "a real that is not ADDRESS:PORT (a range or a host name): not "
                                     "imported"))
        return
    method = words[1] if len(words) > 1 else "gate"
    if method != "gate":
        out.unmapped.append(Unmapped(where, line, f"forwarded by {method}, not gate (direct routing): lvsdr builds DR "
                                     "clusters only; this real server is not imported"))
        return
    rs = RealServer(ep[0], where)
    if len(words) > 2 and words[2].isdigit():
        rs.weight = int(words[2])
    if len(words) > 3:
        out.unmapped.append(Unmapped(where, line, "a real's own request and receive strings: the service's check "
                                     "applies to it (not imported)"))
    v.svc.backends.append(rs)


def _virtual(v: _Virtual, glob: dict[str, tuple[str, str]], out: Read) -> None:
    svc = v.svc

    def get(key: str, default: str | None = None) -> str | None:
        got = v.settings.get(key) or glob.get(key)
        return got[0].strip('"') if got else default

    for key, (value, where) in v.settings.items():
        if key not in VIRTUAL_MAPPED:
            out.unmapped.append(Unmapped(where, f"{key}={value}", "ldirectord setting lvsdr does not model (not "
                                         "imported)"))
    protocol = get("protocol", "tcp")
    if protocol in ("tcp", "udp", "sctp"):
        svc.protocol = protocol
    svc.scheduler = get("scheduler", "wrr") or "wrr"
    persistent = get("persistent")
    if persistent and persistent.isdigit():
        svc.simple["persistence_timeout"] = int(persistent)
        netmask = get("netmask")
        if netmask and netmask not in ("255.255.255.255", "128"):
            svc.persistence_granularity = netmask
    interval = get("checkinterval", "5")
    if interval and interval.isdigit():
        svc.simple["delay_loop"] = int(interval)
    quiescent = (get("quiescent", "yes") or "yes").lower() in ("yes", "on", "true", "1")
    for rs in svc.backends:
        rs.inhibit_on_failure = quiescent or None
    fallback = get("fallback")
    if fallback:
        words = fallback.split()
        ep = _endpoint(words[0]) if words else None
        if ep is not None and (len(words) < 2 or words[1] == "gate"):
            svc.sorry_server = ep[0]
        else:
            out.unmapped.append(Unmapped(v.where, f"fallback={fallback}", "not ADDRESS:PORT forwarded by gate: "
                                         "not imported"))
    check = _check(v, get, out)
    for rs in svc.backends:
        rs.checks = [dict(check)] if check is not None else []


VIRTUAL_MAPPED = GLOBAL_MAPPED | {"real"}


def _check(v: _Virtual, get: Callable[..., str | None], out: Read) -> CheckTable | None:
    """The checker of a virtual: ldirectord's checktype and service as keepalived's."""
    svc = v.svc
    checktype = (get("checktype", "negotiate") or "negotiate").lower()
    service = (get("service") or PORT_SERVICES.get(int(svc.port) if isinstance(svc.port, int) else 0, "none")).lower()
    timeout = get("connecttimeout") or get("negotiatetimeout") or get("checktimeout", "5")
    chk: CheckTable
    if checktype in ("off", "on"):
        out.unmapped.append(Unmapped(v.where, f"checktype={checktype}", "no check: every real server counts as up "
                                     "(imported as check type none)"))
        return {"type": "none"}
    if checktype == "ping":
        return {"type": "ping"}
    if checktype == "external":
        out.unmapped.append(Unmapped(v.where, "checktype=external", "an external check command is given the "
                                     "virtual's and real's addresses by ldirectord, by keepalived's MISC_CHECK "
                                     "nothing: imported as a TCP connect check (write a misc check by hand)"))
        checktype = "connect"
    if checktype.isdigit():
        out.unmapped.append(Unmapped(v.where, f"checktype={checktype}", "a negotiate check every Nth time, a connect "
                                     "check between: imported as a negotiate check every time"))
        checktype = "negotiate"
    if checktype == "negotiate" and service in NEGOTIATED:
        chk = {"type": NEGOTIATED[service]}
        request = get("request")
        if service in ("http", "https"):
            if request:
                chk["path"] = request if request.startswith("/") else "/" + request
            if get("receive"):
                out.unmapped.append(Unmapped(v.where, f"receive={get('receive')}", "keepalived's HTTP_GET checks "
                                             "the status code (200 here), not a text in the body: not imported"))
            host = get("virtualhost")
            if host:
                chk["virtualhost"] = host
        elif service == "dns" and request:
            chk["query"] = request.rstrip(".") or "."
    elif svc.protocol == "udp":
        if checktype == "negotiate" and service != "none":
            out.unmapped.append(Unmapped(v.where, f"service={service}", "keepalived has no checker that speaks it: "
                                         "imported as a UDP check (a port that answers no ICMP error)"))
        chk = {"type": "udp"}
    else:
        if checktype == "negotiate" and service != "none":
            out.unmapped.append(Unmapped(v.where, f"service={service}", "keepalived has no checker that speaks it: "
                                         "imported as a TCP connect check"))
        chk = {"type": "tcp"}
    failures = get("failurecount")
    if failures and failures.isdigit() and chk["type"] != "none":
        chk["retry"] = max(0, int(failures) - 1)  # ldirectord counts the failure that removes; keepalived retries
    if chk["type"] != "ping" and timeout and timeout.isdigit():
        chk["connect_timeout"] = int(timeout)
    port = get("checkport")
    if port and port.isdigit() and int(port) != svc.port:
        chk["port"] = int(port)
    return chk


# -- the sides the merge takes -------------------------------------------------------------------------------

def sides_of(read: Read, path: str, addresses: dict[str, str], name: str | None) -> list[Side]:
    """One side per director of ``addresses`` (in the order given: the first the highest priority), each with one
    VRRP instance carrying the services' VIPs. The first carries what did not map and the import's choices."""
    if len(addresses) < 2:
        raise InputError(f"--address: {path} names no director: give each (NAME=IP, one flag each; at least two, "
                         "the VRRP pair that replaces the single box)")
    vips = sorted({str(s.vip) for s in read.services}, key=lambda a: (":" in a, a))
    sides = []
    for i, (node, address) in enumerate(addresses.items()):
        inst = Instance(name or "lvs", f"{path}:1", simple={"virtual_router_id": DEFAULT_VRID,
                                                            "priority": max(1, 150 - 50 * i)},
                        vips=[Address(v, f"{path}:1") for v in vips])
        side = Side(path, node, address, instances=[inst], services=read.services)
        sides.append(side)
    first = sides[0]
    first.unmapped = list(read.unmapped)
    first.comments = [*read.comments,
                      f"no VRRP in {path}: virtual_router_id {DEFAULT_VRID} and interface eth0 chosen; check that "
                      "no other VRRP router on the segment uses that id, and set the interface",
                      "priorities 150, 100, ... in the order of --address"]
    return sides
