"""[bgp]: an ECMP cluster, read and checked (the rules that make one work).

Several directors are active at once: each holds every VIP on lo with ARP
suppressed, BIRD announces each VIP to the routers while keepalived has
quorum for one of its services there, and the routers spread flows over the
directors by ECMP. Any director must send a given flow to the same real
server, so every service schedules with the same consistent hash (``mh``, or
``sh``), and the real-server list must never change order on one director
only: a failed backend stays in the table at weight 0 (``inhibit_on_failure``)
and the scheduler's fallback skips it (``mh-fallback``). See docs/ecmp.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any

from . import methods
from .keys import NAME_RE, PATH_RE
from .model import Bgp, BgpPeer, BgpVip, Director, RealServer, Service, addr_key
from .schema import Errors, Table, defaults_of, parse_address, quote

BGP = defaults_of(Bgp)
PEER = defaults_of(BgpPeer)
ASN = (1, 4294967295)
PASSWORD_RE = re.compile(r"[A-Za-z0-9._~@%+=:,-]{1,80}")  # rendered in BIRD's double quotes: nothing it escapes
COMMUNITY_RE = re.compile(r"(\d{1,5}):(\d{1,5})")
LARGE_COMMUNITY_RE = re.compile(r"(\d{1,10}):(\d{1,10}):(\d{1,10})")


def large_communities(t: Table, key: str) -> tuple[tuple[int, int, int], ...]:
    """``key``: a list of large communities ("65001:1:2", each part 0..4294967295), each bad one named."""
    out = []
    for i, c in enumerate(t.get(key, list, []) or ()):
        m = LARGE_COMMUNITY_RE.fullmatch(c) if isinstance(c, str) else None
        if m is None or any(int(g) > 4294967295 for g in m.groups()):
            t.errors.add(f"{t.path(key)}[{i}]", f"{quote(c)} is not a large community (\"65001:1:2\")")
        else:
            out.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    return tuple(out)


def bgp_vips(t: Table) -> tuple[BgpVip, ...]:
    """directors[i].bgp_vips: { "VIP" = { med, prepend, large_communities } }, each bad part named (whether each
    key is one of the cluster's VIPs: ``check_ecmp``)."""
    sub = t.table("bgp_vips")
    if sub is None:
        return ()
    out = []
    for key in list(sub.data):
        one = sub.table(key)
        vip = parse_address(key, sub.path(key), t.errors)
        if one is None:
            continue
        med, prepend = one.int_in("med", 0, 4294967295, None), one.int_in("prepend", 0, 8, None)
        large = large_communities(one, "large_communities")
        one.done()
        if vip is not None:
            out.append(BgpVip(vip, med, prepend, large))
    return tuple(sorted(out, key=lambda v: addr_key(v.vip)))


SCHEDULERS = ("mh", "sh")  # the same flow -> the same real server on every director
# cluster keys that configure a VRRP instance, which an ECMP cluster does not have
VRRP_KEYS = ("virtual_router_id", "advert_int", "vrrp_version", "auth_pass", "auth_type", "unicast",
             "mcast_src_ip", "nopreempt", "preempt_delay", "garp_master_delay", "garp_master_refresh",
             "initial_state", "sync_daemon", "sync_group", "notify_master", "notify_backup", "notify_fault",
             "notify_stop", "quorum_handover")
VRRP_TABLES = ("instances", "vips", "track_scripts", "track_interfaces", "track_files")


def is_ecmp(data: Any) -> bool:
    return isinstance(data, dict) and "bgp" in data


def refuse_vrrp(data: dict[str, Any], errors: Errors) -> None:
    """The VRRP settings an ECMP cluster cannot use, each named (before the rest is read)."""
    c = data.get("cluster")
    for key in VRRP_KEYS:
        if isinstance(c, dict) and key in c:
            errors.add(f"cluster.{key}", "a VRRP setting; an ECMP cluster ([bgp]) has no VRRP instance")
    for key in VRRP_TABLES:
        if key in data:
            errors.add(key, "VRRP; an ECMP cluster ([bgp]) has no VRRP instance (its VIPs are the services')")
    directors = data.get("directors")
    for i, d in enumerate(directors if isinstance(directors, list) else ()):  # not a list: the loader names it
        if isinstance(d, dict) and "priority" in d:
            errors.add(f"directors[{i}].priority", "a VRRP setting; in an ECMP cluster ([bgp]) every director "
                       "is active")


ECMP_DIRECTOR_KEYS = ("bgp_med", "bgp_prepend", "bgp_large_communities", "bgp_vips")


def refuse_ecmp(data: dict[str, Any], errors: Errors) -> None:
    """A VRRP cluster's directors: the ECMP settings (BGP attributes) named, each."""
    directors = data.get("directors")
    for i, d in enumerate(directors if isinstance(directors, list) else ()):
        for key in ECMP_DIRECTOR_KEYS:
            if isinstance(d, dict) and key in d:
                errors.add(f"directors[{i}].{key}", "an ECMP setting: only a cluster with [bgp] announces by BGP")


def read_bgp(top: Table) -> Bgp | None:
    t = top.table("bgp")
    if t is None:
        return None
    asn = t.int_in("asn", *ASN)
    peers = [p for p in (_peer(pt) for pt in t.tables("peers")) if p is not None]
    if "peers" in t.data and isinstance(t.data["peers"], list) and not t.data["peers"]:
        t.errors.add(t.path("peers"), "at least one peer (a router) is required")
    communities = []
    raw = t.get("communities", list, [])
    for i, c in enumerate(raw or ()):
        m = COMMUNITY_RE.fullmatch(c) if isinstance(c, str) else None
        if m is None or int(m.group(1)) > 65535 or int(m.group(2)) > 65535:
            t.errors.add(f"{t.path('communities')}[{i}]", f"{quote(c)} is not a community (\"65000:100\")")
        else:
            communities.append((int(m.group(1)), int(m.group(2))))
    kw: dict[str, Any] = {
        "large_communities": large_communities(t, "large_communities"),
        "table": t.int_in("table", 1, 2**31 - 1, BGP["table"]),
        "bfd_interval": t.int_in("bfd_interval", 10, 10000, BGP["bfd_interval"]),
        "bfd_multiplier": t.int_in("bfd_multiplier", 1, 255, BGP["bfd_multiplier"]),
        "drain_timeout": t.int_in("drain_timeout", 0, 86400, BGP["drain_timeout"]),
        "bird_conf": t.text("bird_conf", PATH_RE, "an absolute path", BGP["bird_conf"]),
        "bird_socket": t.text("bird_socket", PATH_RE, "an absolute path", BGP["bird_socket"]),
    }
    if kw["table"] in (253, 254, 255):
        t.errors.add(t.path("table"), f"{kw['table']} is the kernel's own (default, main or local) table; "
                     "the announced VIPs need a table of their own")
    names = [p.name for p in peers]
    addrs = [p.address for p in peers]
    for i, p in enumerate(peers):
        if names.index(p.name) != i:
            t.errors.add(f"{t.path('peers')}[{i}].name", f"{p.name} is given twice")
        if addrs.index(p.address) != i:
            t.errors.add(f"{t.path('peers')}[{i}].address", f"{p.address} is given twice")
    t.done()
    given = t.data.get("peers")
    if asn is None or not isinstance(given, list) or len(peers) != len(given) or None in kw.values():
        return None
    return Bgp(asn, tuple(peers), tuple(communities), **kw)


def _peer(t: Table) -> BgpPeer | None:
    name = t.text("name", NAME_RE, "a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})")
    addr = t.address("address")
    asn = t.int_in("asn", *ASN)
    password = t.text("password", PASSWORD_RE, "1..80 characters of [A-Za-z0-9._~@%+=:,-]", None)
    hold = t.int_in("hold_time", 3, 65535, PEER["hold_time"])
    bfd = t.get("bfd", bool, PEER["bfd"])
    multihop = t.int_in("multihop", 1, 255, None)
    t.done()
    if name is None or addr is None or asn is None or hold is None or bfd is None:
        return None
    if ("password" in t.data and password is None) or ("multihop" in t.data and multihop is None):
        return None
    return BgpPeer(name, addr, asn, password, hold, bfd, multihop)


def read_router_id(t: Table) -> ipaddress.IPv4Address | None:
    """directors[i].router_id (ECMP only): BIRD's router id, an IPv4 address."""
    v = t.get("router_id", str, None)
    if v is None:
        return None
    try:
        return ipaddress.IPv4Address(v)
    except ValueError:
        t.errors.add(t.path("router_id"), f"{quote(v)} is not an IPv4 address (BGP router ids are)")
        return None


def check_paths(bgp: Bgp, kw: dict[str, Any], errors: Errors) -> None:
    """bird.conf and BIRD's socket each a place of their own: not keepalived.conf,
    the cluster file, the notify FIFO or each other, nor inside or around one
    of them (render --all would drop one file of the two, watch would write
    both into one)."""
    from lvsdr.defaults import KEEPALIVED_CONF

    taken = {KEEPALIVED_CONF: "keepalived.conf", kw.get("config_path"): "cluster.config_path",
             kw.get("notify_fifo"): "cluster.notify_fifo"}
    for key, path in (("bgp.bird_conf", bgp.bird_conf), ("bgp.bird_socket", bgp.bird_socket)):
        for other, name in taken.items():
            if other and (path == other or path.startswith(other + "/") or other.startswith(path + "/")):
                errors.add(key, f"{path} collides with {name} ({other})")
                break
        taken[path] = key


def check_ecmp(bgp: Bgp, directors: list[Director], real_servers: list[RealServer],
               services: list[Service | None], kw: dict[str, Any], errors: Errors) -> None:
    """What cannot work in an ECMP cluster, each with its field."""
    check_paths(bgp, kw, errors)
    family = directors[0].address.version if directors else 4
    if kw.get("hook") not in ("fifo", "both"):
        errors.add("cluster.hook", f"{kw.get('hook')}: an ECMP cluster needs lvsdr's agent on the FIFO (fifo): "
                   "keepalived's quorum events reach it there")
    net = kw.get("subnet")
    if net is None:
        errors.add("cluster.subnet", "required in an ECMP cluster: the one L2 segment of the directors and the "
                   "real servers (direct routing needs it; tunnel mode is out of scope)")
    else:
        for i, r in enumerate(real_servers):
            if r.address not in net:
                errors.add(f"real_servers[{i}].address", f"{r.address} is outside cluster.subnet {net}: "
                           "direct routing reaches a real server on the directors' segment only")
    vips = {v for s in services if s is not None for v in s.all_vips}
    for i, d in enumerate(directors):
        seen: set[object] = set()
        for attrs in d.bgp_vips:
            where = f"directors[{i}].bgp_vips.{quote(str(attrs.vip))}"
            if attrs.vip in seen:
                errors.add(where, "given twice (two spellings of one address)")
            seen.add(attrs.vip)
            if vips and attrs.vip not in vips:
                errors.add(where, f"{attrs.vip} is not a VIP of this cluster's services")
    for i, d in enumerate(directors):
        if d.router_id is None and d.address.version == 6:
            errors.add(f"directors[{i}].router_id", "required for an IPv6 director (a BGP router id is IPv4)")
    hosts = {d.address: f"directors[{i}]" for i, d in enumerate(directors)}
    hosts.update({r.address: f"real_servers[{i}]" for i, r in enumerate(real_servers)})
    for i, p in enumerate(bgp.peers):
        where = f"bgp.peers[{i}].address"
        if p.address in hosts:
            errors.add(where, f"{p.address} is {hosts[p.address]}; a peer is a router")
        if p.address.version != family:
            errors.add(where, f"IPv{p.address.version}, but the directors are IPv{family}")
        if p.asn == bgp.asn:
            errors.add(f"bgp.peers[{i}].asn", f"{p.asn} is the directors' own ASN; lvsdr speaks eBGP to its "
                       "routers (iBGP would need the routers to reflect, and ECMP across iBGP paths)")
    for i, d in enumerate(directors):
        if d.arp_method not in methods.DIRECTOR_BACKEND:
            errors.add(f"directors[{i}].arp_method", f"{d.arp_method} redirects instead of holding the VIPs on lo, "
                       f"which an ECMP director needs (use {', '.join(methods.DIRECTOR_BACKEND)})")
    directors_ = {d.name for d in directors}
    for i, s in enumerate(services):
        if s is None:
            continue
        if s.scheduler not in SCHEDULERS:
            errors.add(f"services[{i}].scheduler", f"{s.scheduler}: in an ECMP cluster every director must pick "
                       "the same real server for a flow; use mh (Maglev hashing) or sh")
        for v in s.all_vips:
            if v.version != family:
                errors.add(f"services[{i}].vip", f"IPv{v.version}, but the directors and their BGP peers are "
                           f"IPv{family}")
        for j, b in enumerate(s.backends):
            if b.server in directors_:
                errors.add(f"services[{i}].backends[{j}]", f"{b.server} is a director; in an ECMP cluster the "
                           "directors are not backends (each holds every VIP and would balance the flow again)")


def ecmp_services(services: list[Service]) -> list[Service]:
    """The services as every director of an ECMP cluster must run them: a
    failed backend stays in the table at weight 0 (``inhibit_on_failure``) and
    the scheduler's fallback passes over it, so the hash table is the same on
    every director whatever its checks saw; the source port joins the hash
    unless the service is persistent (persistence keeps a client, not a flow)."""
    out = []
    for s in services:
        flags = [f"{s.scheduler}-fallback"]
        if s.persistence_timeout is None:
            flags.append(f"{s.scheduler}-port")
        flags += [f for f in s.scheduler_flags if f not in flags]
        backends = tuple(dataclasses.replace(b, inhibit_on_failure=True) for b in s.backends)
        out.append(dataclasses.replace(s, scheduler_flags=tuple(sorted(flags)), backends=backends))
    return out
