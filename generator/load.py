"""Cluster file (TOML or JSON) -> validated ``Cluster``, with every error at once.

Errors are one line each, ``<field path>: <what is wrong>``, for example
``services[2].backends[0]: unknown server "web9"``. ``parse_cluster`` collects
all of them and raises one ``ValidationError``; it never raises anything else
for any input (hypothesis tests hold it to that).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvsdr import defaults
from lvsdr.defaults import SYNC_MIN_PREEMPT_DELAY, SYNC_PREEMPT_DELAY
from lvsdr.errors import ValidationError

from . import methods
from .keys import AUTH_RE, CLUSTER_NAME_RE, IFNAME_RE, LABEL_RE, NAME_RE, PATH_RE, keys_of
from .load_bgp import (
    ECMP_DIRECTOR_KEYS,
    bgp_vips,
    check_ecmp,
    ecmp_services,
    is_ecmp,
    large_communities,
    read_bgp,
    read_router_id,
    refuse_ecmp,
    refuse_vrrp,
)
from .load_services import assign_fwmarks, read_services
from .model import (
    DEFAULT_ADVERT_INT,
    DEFAULT_INTERFACE,
    Cluster,
    Director,
    DrCheck,
    Extra,
    Instance,
    IPAddress,
    IPNetwork,
    RealServer,
    Service,
    SyncDaemon,
    TrackFile,
    TrackInterface,
    TrackScript,
    Vip,
    addr_key,
)
from .rules import command, extra_line, link, script_args
from .schema import (
    MISSING,
    Errors,
    Table,
    decode,
    defaults_of,
    parse_address,
    parse_text,
    quote,
    read_simple,
    typename,
)

CLUSTER = defaults_of(Cluster)  # each default stated once, on the model; the services' are in load_services.py
REAL_SERVER = defaults_of(RealServer)
KEYS = keys_of(Cluster)  # the keys of [cluster], each declared once on the model (keys.py)

DIRECTOR_KEYS = keys_of(Director)
REAL_SERVER_KEYS = keys_of(RealServer)


def load_cluster(path: str | Path) -> Cluster:
    """Read and validate a cluster file (``.json`` is JSON, anything else TOML): a
    regular file, size-capped (``lvsdr.inputs.read_regular``, the one reader of
    what an operator names). A command reads it once, as a ``lvsdr.source.Source``."""
    from lvsdr.inputs import read_regular

    return load_cluster_bytes(read_regular(path), path)


def load_cluster_bytes(raw: bytes, path: str | Path) -> Cluster:
    """Validate a cluster file's bytes already read (``path`` names it in errors and picks the format)."""
    return parse_cluster(parse_text(decode(raw, str(path)), str(path)))


def parse_cluster(data: Any) -> Cluster:
    """Validate parsed data; raises ``ValidationError`` listing every problem."""
    errors = Errors()
    if not isinstance(data, dict):
        raise ValidationError([f"(top level): expected table, got {typename(data)}"])
    top = Table(data, "", errors)
    ecmp = is_ecmp(data)
    if ecmp:
        refuse_vrrp(data, errors)
    else:
        refuse_ecmp(data, errors)
    c = top.table("cluster")
    if c is None and "cluster" not in data:
        errors.add("cluster", "required table is missing")
    directors = _directors(top, c, errors, ecmp)
    real_servers = _real_servers(top, errors)
    cluster_kw = _cluster_keys(c, directors, errors, ecmp) if c else {}
    services = read_services(top, directors, real_servers, errors)
    bgp = read_bgp(top)
    if bgp is not None and c is not None:
        check_ecmp(bgp, [d for d in directors if d], [r for r in real_servers if r], services, cluster_kw, errors)
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
    live = assign_fwmarks(services)
    cluster = Cluster(
        directors=tuple(d for d in directors if d is not None),
        real_servers=tuple(r for r in real_servers if r is not None),
        services=tuple(ecmp_services(live) if bgp is not None else live),
        bgp=bgp,
        **tracking,
        **cluster_kw,
    )
    if cluster.quorum_handover and not cluster.ecmp:
        from .handover import room

        no_room = room(cluster)
        if no_room and c is not None and "quorum_handover" in c.data:  # asked for: the priorities must allow it
            raise ValidationError([f"cluster.quorum_handover: {why}" for why in no_room])
        if no_room:  # the default, where the priorities leave no room: off
            from dataclasses import replace

            cluster = replace(cluster, quorum_handover=False)
    return cluster


def _cluster_keys(c: Table, directors: list[Director | None], errors: Errors, ecmp: bool = False) -> dict[str, Any]:
    """[cluster]: the VRRP settings (``_vrrp_keys``), then the hooks, paths and the rest."""
    live = [d for d in directors if d is not None]
    kw = _vrrp_keys(c, live, errors, ecmp)
    for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop"):
        kw[key] = command(c, key)
    sync = c.get("sync_daemon", (bool, dict), None)
    if sync is True:
        kw["sync_daemon"] = SyncDaemon()
    elif isinstance(sync, dict):
        st = Table(sync, c.path("sync_daemon"), errors)
        kw["sync_daemon"] = SyncDaemon(link(st, "interface", None),
                                       st.int_in("id", 0, 255, None), st.int_in("port", 1, 65535, None))
        st.done()
    kw["dr_check"] = _dr_check(c)
    kw["subnet"] = _subnet(c, live)
    if kw["nopreempt"] and kw["initial_state"] == "MASTER":
        errors.add(c.path("nopreempt"), "needs initial_state BACKUP")
    _sync_failback(c, kw, errors)
    c.done()
    return kw


def _dr_check(c: Table) -> DrCheck | None:
    """dr_check: `false` (none), `true` (the defaults) or a table of interval, fall and rise."""
    v = c.get("dr_check", (bool, dict), True)
    if v is None or v is True:
        return DrCheck()
    if v is False:
        return None
    t = Table(v, c.path("dr_check"), c.errors)
    interval = t.get("interval", (int, float), defaults.DR_CHECK_INTERVAL)
    if interval is not None and not 0.1 <= interval <= 10:
        c.errors.add(t.path("interval"), f"{quote(interval)} is outside 0.1..10 seconds")
        interval = None
    fall, rise = t.int_in("fall", 1, 10, defaults.DR_CHECK_FALL), t.int_in("rise", 1, 10, defaults.DR_CHECK_RISE)
    t.done()
    return DrCheck(float(interval if interval is not None else defaults.DR_CHECK_INTERVAL),
                   fall or defaults.DR_CHECK_FALL, rise or defaults.DR_CHECK_RISE)


def _sync_failback(c: Table, kw: dict[str, Any], errors: Errors) -> None:
    """With sync_daemon, a MASTER that comes back must not take the VIPs
    before the connections carried meanwhile have synced to it: a
    preempt_delay (derived when the file gives none; keepalived honours it
    only from state BACKUP), or nopreempt."""
    if kw.get("sync_daemon") is None or kw["nopreempt"]:
        return
    why = "a MASTER that comes back would take the VIPs before the connections have synced to it"
    if kw["initial_state"] == "MASTER":
        errors.add(c.path("initial_state"), f"MASTER with sync_daemon: {why} (keepalived waits preempt_delay only "
                   "from BACKUP); use BACKUP, or nopreempt = true")
    elif kw["preempt_delay"] is None:
        kw["preempt_delay"] = SYNC_PREEMPT_DELAY
    elif kw["preempt_delay"] < SYNC_MIN_PREEMPT_DELAY:
        errors.add(c.path("preempt_delay"), f"{kw['preempt_delay']} s with sync_daemon: {why}; "
                   f"{SYNC_MIN_PREEMPT_DELAY} or more (default {SYNC_PREEMPT_DELAY} with sync_daemon), or "
                   "nopreempt = true")


def _vrrp_keys(c: Table, live: list[Director], errors: Errors, ecmp: bool = False) -> dict[str, Any]:
    """[cluster]'s VRRP settings: router id, version, advert interval, authentication, unicast, preemption, GARP
    (in an ECMP cluster each is refused by ``refuse_vrrp`` and left at its default: no vrrp_instance is rendered)."""
    kw: dict[str, Any] = read_simple(c, KEYS, but=("virtual_router_id",))  # every simple key, by its declaration
    kw["interface"] = link(c, "interface", DEFAULT_INTERFACE)
    kw["virtual_router_id"] = c.key(KEYS["virtual_router_id"], 0 if ecmp else MISSING)
    v6 = bool(live) and live[0].address.version == 6
    version = c.get("vrrp_version", int, None)
    if version is not None and version not in (2, 3):
        errors.add(c.path("vrrp_version"), f"{quote(version)} is not 2 or 3")
        version = None
    kw["vrrp_version"] = version or (3 if v6 else 2)
    if v6 and kw["vrrp_version"] != 3:
        errors.add(c.path("vrrp_version"), "IPv6 directors need VRRP version 3")
    kw["advert_int"] = _advert_int(c, kw["vrrp_version"], errors)
    auth = c.raw("auth_pass", None)
    if isinstance(auth, str) and len(auth) > 8:
        errors.add(c.path("auth_pass"), f"{len(auth)} characters; VRRP PASS allows at most 8")
        auth = None
    else:
        auth = c.text("auth_pass", AUTH_RE, "1..8 characters of [A-Za-z0-9._~@%+=:,-]", None)
    if auth is not None and kw["vrrp_version"] == 3:
        errors.add(c.path("auth_pass"), "VRRP version 3 has no authentication; remove auth_pass")
    kw["auth_pass"] = auth
    if "auth_type" in c.data and auth is None and "auth_pass" not in c.data:
        errors.add(c.path("auth_type"), "needs auth_pass (the shared secret)")
    if kw["unicast"] and len(live) == 1:
        errors.add(c.path("unicast"), "needs at least two directors (a unicast peer)")
    if kw["mcast_src_ip"] and kw["unicast"]:
        errors.add(c.path("mcast_src_ip"), "applies to multicast adverts; this cluster is unicast")
    return kw


VRRP3_MAX_ADVERT = 40.95  # s: VRRPv3's interval field is 12 bits of centiseconds (RFC 5798)
FASTEST_ADVERT = 0.05  # s: the fastest advert_int lvsdr takes (its VRRP process then runs at realtime priority)


def _advert_int(c: Table, version: int, errors: Errors) -> int | float:
    """advert_int: whole seconds for VRRPv2, hundredths for v3 (the default when it is not usable)."""
    adv = c.get("advert_int", (int, float), DEFAULT_ADVERT_INT)
    if adv is None:
        return DEFAULT_ADVERT_INT
    if not 0 < adv <= 255:
        errors.add(c.path("advert_int"), f"{quote(adv)} is outside 0..255 seconds")
    elif version == 2 and adv != int(adv):
        errors.add(c.path("advert_int"), f"{adv} is fractional; VRRP version 2 needs whole seconds")
    elif version == 3 and abs(round(adv * 100) - adv * 100) > 1e-6:  # 40.95 * 100 is 4095.0000000000005
        errors.add(c.path("advert_int"), f"{quote(adv)} is finer than VRRPv3's 0.01 s")
    elif adv < FASTEST_ADVERT - 1e-9:
        errors.add(c.path("advert_int"), f"{quote(adv)} s: lvsdr goes down to {FASTEST_ADVERT} s (a host's "
                   "scheduling and the agent's hooks make faster adverts a false failover, not a faster one)")
    elif version == 3 and adv > VRRP3_MAX_ADVERT:
        errors.add(c.path("advert_int"), f"{quote(adv)} s: VRRPv3 carries at most {VRRP3_MAX_ADVERT} s "
                   "(4095 hundredths; keepalived refuses more)")
    else:
        return int(adv) if adv == int(adv) else float(adv)
    return DEFAULT_ADVERT_INT


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


def _directors(top: Table, c: Table | None, errors: Errors, ecmp: bool = False) -> list[Director | None]:
    """One entry per table, None where it had errors (keeps indexes for messages)."""
    default_if = DEFAULT_INTERFACE
    if c is not None and isinstance(c.data.get("interface"), str):
        default_if = c.data["interface"]
    out: list[Director | None] = []
    tables = top.tables("directors")
    if not tables and "directors" in top.data and isinstance(top.data["directors"], list):
        errors.add("directors", "at least one director is required")
    for t in tables:
        name = t.key(DIRECTOR_KEYS["name"])
        addr = t.address("address")
        if ecmp:
            t.seen.add("priority")  # refused by refuse_vrrp, with its reason
        prio = 0 if ecmp else t.key(DIRECTOR_KEYS["priority"])
        iface = link(t, "interface", default_if)
        method = t.choice("arp_method", methods.NAMES, methods.DEFAULT)
        router_id = read_router_id(t) if ecmp else None
        bgp: dict[str, Any] = {}
        if ecmp:
            bgp = {"bgp_med": t.key(DIRECTOR_KEYS["bgp_med"], None),
                   "bgp_prepend": t.key(DIRECTOR_KEYS["bgp_prepend"], 0),
                   "bgp_large_communities": large_communities(t, "bgp_large_communities"),
                   "bgp_vips": bgp_vips(t)}
        else:
            t.seen.update(ECMP_DIRECTOR_KEYS)  # refused by refuse_ecmp, with its reason
        t.done()
        if name is None or addr is None or prio is None or iface is None or method is None or (
                ecmp and (bgp["bgp_prepend"] is None or ("bgp_med" in t.data and bgp["bgp_med"] is None))):
            out.append(None)
        else:
            out.append(Director(name, addr, prio, iface, method,
                                router_id or (addr if ecmp and addr.version == 4 else None), **bgp))
    for i, d in enumerate(out):
        if d is None:
            continue
        for j, e in enumerate(out[:i]):
            if e is None:
                continue
            if e.priority == d.priority and not ecmp:
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
        name = t.key(REAL_SERVER_KEYS["name"])
        addr = t.address("address")
        iface = link(t, "interface", REAL_SERVER["interface"])
        method = t.choice("arp_method", methods.NAMES, methods.DEFAULT)
        zone = t.key(REAL_SERVER_KEYS["firewalld_zone"])
        t.done()
        if name is None or addr is None or iface is None or method is None or zone is None:
            out.append(None)
        else:
            out.append(RealServer(name, addr, iface, method, zone))
    return out


TRACK_SCRIPT = defaults_of(TrackScript)

TRACK_WEIGHT = (-253, 253)

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
    family = live[0].address.version if live else 4
    # a virtual_router_id is one router per interface and family (keepalived: VRRP over IPv4 and IPv6 are apart)
    vrids: dict[tuple[Any, str | None, int], str] = {
        (kw.get("virtual_router_id"), None, family): "cluster.virtual_router_id"}
    names: dict[str, int] = {}
    for i, t in enumerate(tables):
        name = t.text("name", CLUSTER_NAME_RE, "an instance name ([a-z0-9][a-z0-9_-]{0,30})")
        vrid = t.int_in("virtual_router_id", 1, 255)
        iface = link(t, "interface", None)
        raw = t.get("vips", list)
        prio_t = t.table("priorities")
        addresses = _instance_addresses(t, t.table("addresses"), live, errors)
        t.done()
        inst_family = addresses[0][1].version if addresses else family
        other_iface = None if iface in (None, *(d.interface for d in live)) else iface  # not the directors' own
        if kw.get("unicast") and not addresses and other_iface:
            errors.add(t.path("addresses"), f"required with unicast on interface {iface}: each director's address "
                       "there (its unicast_src_ip and its peers' unicast_peer)")
        if name is not None:
            if name in names:
                errors.add(t.path("name"), f"duplicate name (also instances[{names[name]}].name)")
            names.setdefault(name, i)
        if vrid is not None:
            key = (vrid, other_iface, inst_family)
            if key in vrids:
                errors.add(t.path("virtual_router_id"), f"{vrid} is also {vrids[key]} (on the same interface)")
            vrids.setdefault(key, f"instances[{i}].virtual_router_id")
        vips = _instance_vips(t, i, raw, known, claimed, errors)
        prios = _instance_priorities(t, prio_t, live, errors)
        if name is None or vrid is None or not vips or len(prios) != len(live):
            continue
        if live and not any(v.version == inst_family for v in vips):
            errors.add(t.path("vips"), f"no IPv{inst_family} VIP; a vrrp_instance needs one of its "
                       "addresses' family")
        out.append(Instance(name, vrid, tuple(sorted(vips, key=addr_key)), tuple(prios), iface, addresses))
    if out and known and known <= set(claimed):
        errors.add("instances", "every VIP is in [[instances]]; the cluster's own instance would carry none")
    _instances_fit(top, bool(tables), services, kw, errors)
    return tuple(out)


def _instance_vips(t: Table, i: int, raw: list[Any] | None, known: set[IPAddress], claimed: dict[IPAddress, str],
                   errors: Errors) -> list[IPAddress]:
    """An instance's VIPs: each a service's or [[vips]]', and in one instance only."""
    vips: list[IPAddress] = []
    for j, item in enumerate(raw or []):
        where = f"{t.path('vips')}[{j}]"
        a = parse_address(item, where, errors) if isinstance(item, str) else None
        if not isinstance(item, str):
            errors.add(where, f"expected string, got {typename(item)}")
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
    return vips


def _instance_addresses(t: Table, at: Table | None, live: list[Director],
                        errors: Errors) -> tuple[tuple[str, IPAddress], ...]:
    """Each director's address on an instance's segment (every director, one family, no address twice)."""
    if at is None:
        return ()
    out: list[tuple[str, IPAddress]] = []
    for d in live:
        a = at.address(d.name)
        if a is not None:
            out.append((d.name, a))
    at.done()
    if len(out) != len(live):
        return ()
    if len({a.version for _n, a in out}) > 1:
        errors.add(t.path("addresses"), "mixes IPv4 and IPv6; an instance's adverts are of one family")
        return ()
    seen: dict[IPAddress, str] = {}
    for dname, a in out:
        if a in seen:
            errors.add(at.path(dname), f"{a} is also {seen[a]}'s")
        seen.setdefault(a, dname)
    return tuple(out)


def _instance_priorities(t: Table, prio_t: Table | None, live: list[Director],
                         errors: Errors) -> list[tuple[str, int]]:
    """Each director's priority in an instance, distinct."""
    prios: list[tuple[str, int]] = []
    if prio_t is None:
        if "priorities" not in t.data:
            errors.add(t.path("priorities"), "required key is missing")
        return prios
    for d in live:
        p = prio_t.int_in(d.name, 1, 254)
        if p is not None:
            prios.append((d.name, p))
    prio_t.done()
    seen: dict[int, str] = {}
    for dname, p in prios:
        if p in seen:
            errors.add(f"{prio_t.path(dname)}", f"same priority {p} as {seen[p]}; VRRP then elects by address")
        seen.setdefault(p, dname)
    return prios


def _instances_fit(top: Table, several: bool, services: list[Service | None], kw: dict[str, Any],
                   errors: Errors) -> None:
    """What several instances cannot go with: a director-backend, a MASTER start, weighted tracking in a sync group."""
    tables = several
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


def _tracking(top: Table, errors: Errors) -> dict[str, Any]:
    """Director self-health: [[track_scripts]], [[track_interfaces]], [[track_files]]."""
    scripts: list[TrackScript] = []
    ifaces: list[TrackInterface] = []
    files: list[TrackFile] = []
    for t in top.tables("track_scripts", required=False):
        name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
        script = t.text("script", PATH_RE, "an absolute path without blanks or quotes")
        args = script_args(t, "args", t.get("args", list, []) or [])
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
