"""Directors: the role a VRRP transition asks for, as a plan (pure).

keepalived moves the VIPs (adds them and sends gratuitous ARPs on becoming
MASTER, removes them first on leaving). What it does not do, lvsdr's hook
does, reconciling to what is observed on the node (keepalived runs notify
scripts concurrently and out of order, so the event's own STATE is not
trusted):

- MASTER: the fwmark rules of `table inet lvsdr_fwmark` mark VIP traffic, so
  keepalived's fwmark virtual_servers take it; a director that is also a
  backend lifts its arp rules (it must answer ARP now; sysctl's
  arp_ignore=1 already lets it, the VIP being on its interface).
- BACKUP (or FAULT): no mark rules, so a director that is also a backend
  does not forward again what the MASTER forwarded to it (a loop); it keeps
  the VIPs on lo to serve that traffic, with its ARP suppression in force.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal

from .changes import AddRoute, Change, DeleteNftTable, LoadNftTable, RemoveAddress, RemoveRoute, SetSysctl
from .guards import address
from .methods.base import FactCommand
from .model import Cluster, IPAddress, Service, addr_key
from .node import Facts, NftChain, NftRule, NftTable, NodeAddress, host_interface, parse_nft_table
from .realserver import backend_spec, plan
from .spec import Spec

Role = Literal["MASTER", "BACKUP"]
FAMILY, TABLE = "inet", "lvsdr_fwmark"
KEY = f"{FAMILY} {TABLE}"
FWMARK_FACT = FactCommand(("nft", "-s", "list", "table", FAMILY, TABLE), absent=("No such file or directory",))


@dataclass(frozen=True)
class Mark(NftRule):
    vip: IPAddress
    protocol: str
    port: int
    mark: int

    def listing(self) -> str:
        """As `nft list` prints it."""
        fam = "ip" if self.vip.version == 4 else "ip6"
        return f"{fam} daddr {address(self.vip)} {self.protocol} dport {self.port} meta mark set 0x{self.mark:08x}"


_MARK = re.compile(r"(ip6?) daddr (\S+) (\S+) dport (\d+) meta mark set 0x([0-9a-f]+)")


def parse_mark(line: str) -> NftRule | None:
    m = _MARK.fullmatch(line)
    if not m:
        return None
    try:
        rule = Mark(ipaddress.ip_address(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5), 16))
    except ValueError:
        return None
    return rule if rule.listing() == line else None


def parse_fwmark(text: str) -> NftTable | None:
    """`nft -s list table inet lvsdr_fwmark` -> the table (None: absent)."""
    return parse_nft_table(text, FAMILY, TABLE, parse_mark)


# With sync_daemon, every VRRP director (either role: the rules must be there the moment keepalived adds the VIPs)
# holds back, for HOLD_SECONDS, the TCP segments of a flow to a VIP's service that its IPVS did not take and that
# open nothing (no SYN, no RST): a connection the peer's sync has not brought here yet, at a switchover or a
# failover. Without the rules the kernel's own stack answers such a segment with a reset (the VIP is local); with
# them it is dropped, the client retransmits, and a retransmission finds the connection once the sync daemon's
# next message (within 2 s) has arrived. A flow still unknown after HOLD_SECONDS (one the peer never had: it
# started after the connection was synced, a message was lost) is reset as before, so it is not left hanging: the
# first segment puts the flow in two of the kernel's sets, "held" for HOLD_SECONDS and "seen" for SEEN_SECONDS,
# held flows are dropped, seen ones not held any more pass. The chain runs after IPVS's own input hook (priority
# 99: NF_IP_PRI_NAT_SRC - 1), so it sees only what IPVS left; a service this director also serves as a backend
# (IPVS hands those to the local stack) has no rule.
SYNC_TABLE = "lvsdr_sync"
SYNC_KEY = f"{FAMILY} {SYNC_TABLE}"
SYNC_FACT = FactCommand(("nft", "-s", "list", "table", FAMILY, SYNC_TABLE), absent=("No such file or directory",))
AFTER_IPVS = "101"
HOLD_SECONDS, SEEN_SECONDS = 5, 30


def _flow(version: int) -> tuple[str, str]:
    """(the flow's key expression, its set type) of a family."""
    return ("ip saddr . tcp sport", "ipv4_addr . inet_service") if version == 4 else \
        ("ip6 saddr . tcp sport", "ipv6_addr . inet_service")


def hold_sets(versions: set[int]) -> tuple[str, ...]:
    """The set declarations of the hold rules of these address families."""
    return tuple(f"set {name}{v} {{ type {_flow(v)[1]}; flags dynamic,timeout; timeout {t}s; }}"
                 for v in sorted(versions) for name, t in (("held", HOLD_SECONDS), ("seen", SEEN_SECONDS)))


@dataclass(frozen=True)
class Hold(NftRule):
    """One of a service endpoint's two rules: ``first`` puts a new unknown flow in the sets and drops its
    segment; the other drops the segments of a flow still held."""

    vip: IPAddress
    port: int
    first: bool

    def listing(self) -> str:
        """As `nft list` prints it."""
        fam = "ip" if self.vip.version == 4 else "ip6"
        key, v = _flow(self.vip.version)[0], self.vip.version
        match = f"{fam} daddr {address(self.vip)} tcp dport {self.port} tcp flags ! syn,rst {key}"
        if self.first:
            return f"{match} != @seen{v} add @seen{v} {{ {key} }} add @held{v} {{ {key} }} drop"
        return f"{match} @held{v} drop"


_HOLD = re.compile(r"(ip6?) daddr (\S+) tcp dport (\d+) tcp flags ! syn,rst .*drop")


def parse_hold(line: str) -> NftRule | None:
    m = _HOLD.fullmatch(line)
    if not m:
        return None
    try:
        vip, port = ipaddress.ip_address(m.group(2)), int(m.group(3))
    except ValueError:
        return None
    return next((r for r in (Hold(vip, port, False), Hold(vip, port, True)) if r.listing() == line), None)


def parse_sync_table(text: str) -> NftTable | None:
    """`nft -s list table inet lvsdr_sync` -> the table (None: absent; its sets are not read)."""
    return parse_nft_table(text, FAMILY, SYNC_TABLE, parse_hold)


def sync_holds(cluster: Cluster, node: str) -> tuple[Hold, ...]:
    """The hold rules of director ``node`` (see SYNC_TABLE): each TCP endpoint of a service it does not serve
    itself, in a VRRP cluster with sync_daemon; none otherwise."""
    if cluster.sync_daemon is None or cluster.bgp is not None:
        return ()
    own = {s.name for s in cluster.services_of(node)}
    endpoints = sorted({(v, p) for s in cluster.services if s.protocol == "tcp" and s.name not in own
                        for v, p in s.endpoints}, key=lambda e: (addr_key(e[0]), e[1]))
    return tuple(Hold(v, p, first) for v, p in endpoints for first in (False, True))


# every director's IPVS settings (docs/operations.md says why): a new
# connection that reuses the client port of one IPVS still keeps in FIN_WAIT
# (the last state a DR director sees) is scheduled afresh (conn_reuse_mode
# bit 2; by default it goes to that entry's real server, and where that one has
# left IPVS its packets are dropped until the entry expires: two minutes of a
# hung client, seen in the VM), and the entries of a destination that is gone
# expire at their next packet (expire_nodest_conn).
DIRECTOR_SYSCTLS = (("net.ipv4.vs.conn_reuse_mode", "3"), ("net.ipv4.vs.expire_nodest_conn", "1"))
# an ECMP director's besides (docs/ecmp.md says why): a flow that another
# director started gets a connection entry here (sloppy_tcp); IPVS keeps no
# conntrack entries, which asymmetric paths would make invalid.
# IPVS puts them under net.ipv4.vs for both families, and only once ip_vs is
# loaded (keepalived loads it): a key that is absent is set at the next reconcile.
ECMP_SYSCTLS = tuple(sorted((*DIRECTOR_SYSCTLS, ("net.ipv4.vs.conntrack", "0"), ("net.ipv4.vs.sloppy_tcp", "1"))))
_GROUP_VS = re.compile(r"(\[[^\]\s]+\]):\d+")


def vs_name(raw: str) -> str:
    """keepalived's name of a virtual server in its FIFO lines, as ``Ecmp``
    keys it: ``[192.0.2.150]:tcp:80``, ``FWM 5``, and ``[GROUP]`` for a
    virtual_server_group (keepalived writes ``[GROUP]:PORT``)."""
    m = _GROUP_VS.fullmatch(raw)
    return m.group(1) if m else raw


@dataclass(frozen=True)
class Ecmp:
    """An ECMP director's announcing side: which VIPs each of keepalived's
    virtual servers carries (by the name its quorum events give), and the
    kernel table whose routes BIRD learns and announces."""

    table: int
    virtual_servers: tuple[tuple[str, tuple[IPAddress, ...]], ...]
    # each virtual server's services as /proc/net/ip_vs names them ("TCP 192.0.2.150:80", "FWM 5")
    ipvs_services: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def healthy(self, down: frozenset[str] | set[str]) -> frozenset[IPAddress]:
        """The VIPs to announce: those of every virtual server keepalived has not reported without quorum."""
        return frozenset(v for name, vips in self.virtual_servers if name not in down for v in vips)

    def in_ipvs(self, announce: frozenset[IPAddress], ipvs: frozenset[str] | None) -> frozenset[IPAddress]:
        """The VIPs of ``announce`` that a virtual server carries whose
        services IPVS has, each with a real server (``ipvs``: the services in
        the table that have one). keepalived says nothing when it starts and
        builds its table after it (and a table can lose a service by hand):
        a VIP announced without its service draws flows that find none. ``ipvs``
        None (the kernel has no IPVS table: ip_vs not loaded) holds nothing
        back: there is nothing to wait on."""
        if ipvs is None:
            return announce
        services = dict(self.ipvs_services)
        served = {v for name, vips in self.virtual_servers if set(services.get(name, ("?",))) <= ipvs for v in vips}
        return announce & served


def ipvs_services(svc: Service) -> tuple[str, ...]:
    """The IPVS services keepalived makes of ``svc``, as /proc/net/ip_vs (``generator.ipvs.parse_proc``) names them."""
    from .ipvs import Key

    if svc.fwmark:
        return (str(Key("FWM", "", svc.fwmark)),)
    return tuple(str(Key(svc.protocol.upper(), str(v), p)) for v, p in svc.endpoints)


def virtual_server_name(svc: Service) -> str:
    """The name keepalived gives ``svc``'s virtual server in its FIFO lines (see ``vs_name``)."""
    if svc.fwmark:
        return f"FWM {svc.fwmark}"
    if svc.is_group:
        return f"[{svc.name}]"
    return f"[{svc.vip}]:{svc.protocol}:{svc.port}"


@dataclass(frozen=True)
class DirectorSpec:
    cluster: str
    node: str
    address: IPAddress
    interface: str
    vips: tuple[IPAddress, ...]
    marks: tuple[Mark, ...]
    backend: Spec | None  # the real-server side, when this director is also a backend
    vip_devices: tuple[tuple[IPAddress, str], ...] = ()  # VIPs that keepalived puts on another device
    ecmp: Ecmp | None = None  # an ECMP cluster's director: ``plan_ecmp`` instead of the VRRP roles
    sysctls: tuple[tuple[str, str], ...] = DIRECTOR_SYSCTLS  # IPVS's, in either role
    holds: tuple[Hold, ...] = ()  # with sync_daemon (``sync_holds``), in either role

    def fwmark_table(self) -> NftTable | None:
        if not self.marks:
            return None
        return NftTable(FAMILY, TABLE, (NftChain("prerouting", "prerouting", "mangle", self.marks),))

    def sync_table(self) -> NftTable | None:
        if not self.holds:
            return None
        return NftTable(FAMILY, SYNC_TABLE, (NftChain("hold", "input", AFTER_IPVS, self.holds),),
                        hold_sets({h.vip.version for h in self.holds}))


def families_without_address(cluster: Cluster, addresses: tuple[NodeAddress, ...]) -> list[tuple[int, list[str]]]:
    """The address families of the cluster's services for which a director
    has no address of its own (not a VIP, not on lo, not link-local), with
    the services of each: [(4, ["web4"])]. IPVS sends a DR packet to a real
    server from the director's own address of its family, and keepalived's
    checks connect from it; without one both come from the VIP, which the
    real server holds itself and ignores (seen in the VM: the service
    checked out and not forwarded). The cluster file cannot say it: a
    director's other addresses are the host's."""
    vips = set(cluster.vips)
    own = {a.address.version for a in addresses
           if a.ifname != "lo" and a.address.ip not in vips and not a.address.ip.is_link_local}
    families: dict[int, list[str]] = {}
    for svc in cluster.services:
        for version in sorted({v.version for v in svc.all_vips} - own):
            families.setdefault(version, []).append(svc.name)
    return sorted(families.items())


def director_sysctls(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    """IPVS's settings on a director of ``cluster`` (every mode's, the ECMP ones, the file's)."""
    base = ECMP_SYSCTLS if cluster.ecmp else DIRECTOR_SYSCTLS
    quiescent = ("net.ipv4.vs.expire_quiescent_template", "1" if cluster.expire_quiescent_template else "0")
    return tuple(sorted((*base, quiescent)))


def director_spec(cluster: Cluster, node: str) -> DirectorSpec:
    d = cluster.find_director(node)
    marks = tuple(sorted(
        (Mark(v, s.protocol, p, s.fwmark) for s in cluster.services if s.fwmark for v, p in s.endpoints),
        key=lambda m: (addr_key(m.vip), m.protocol, m.port),
    ))
    if cluster.bgp is not None:
        # every VIP on lo at all times (IPVS takes only local traffic), with
        # ARP suppression in force: the routers reach the VIPs by BGP, not ARP
        lo = Spec(cluster.name, node, d.arp_method, d.interface, d.address, cluster.vips, vips_on_lo=True)
        ecmp = Ecmp(cluster.bgp.table, tuple((virtual_server_name(s), s.all_vips) for s in cluster.services),
                    ipvs_services=tuple((virtual_server_name(s), ipvs_services(s)) for s in cluster.services))
        return DirectorSpec(cluster.name, node, d.address, d.interface, cluster.vips, marks, lo, ecmp=ecmp,
                            sysctls=director_sysctls(cluster))
    backend = backend_spec(cluster, d, vips_on_lo=True) if cluster.services_of(node) else None
    devices = tuple((v, cluster.vip_device(v, d)) for v in cluster.vips if cluster.vip_device(v, d) != d.interface)
    return DirectorSpec(cluster.name, node, d.address, d.interface, cluster.vips, marks, backend, devices,
                        sysctls=director_sysctls(cluster), holds=sync_holds(cluster, node))


def vip_devices(spec: DirectorSpec) -> list[tuple[str, str]]:
    """Each VIP's (device, address): where keepalived puts it on the MASTER."""
    devices = dict(spec.vip_devices)
    return [(devices.get(v, spec.interface), str(v)) for v in spec.vips]


def observed_role(spec: DirectorSpec, addresses: tuple[NodeAddress, ...]) -> Role:
    """The role the node is in (``lvsdr.roles.role_of``: the rule notify's fast path reads it by too)."""
    from lvsdr.roles import role_of

    return "MASTER" if role_of({(a.ifname, str(a.address.ip)) for a in addresses}, vip_devices(spec)) == "MASTER" \
        else "BACKUP"


def role_spec(spec: DirectorSpec, role: Role) -> Spec | None:
    if spec.backend is None:
        return None
    return replace(spec.backend, suppress=role != "MASTER")


def ipvs_sysctls(spec: DirectorSpec, facts: Facts) -> list[Change]:
    """IPVS's settings of ``spec.sysctls`` that the node has otherwise (one
    it lacks, IPVS not loaded yet, is set at a later reconcile)."""
    return [SetSysctl(k, v, facts.sysctls[k]) for k, v in spec.sysctls if facts.sysctls.get(k, v) != v]


def plan_sync_holds(spec: DirectorSpec, facts: Facts) -> list[Change]:
    """The sync hold rules (the same in either role), when the node has them otherwise."""
    want = spec.sync_table()
    if want is not None and facts.nft.get(SYNC_KEY) != want:
        return [LoadNftTable(want, "drop, not reset, segments of connections the sync daemon has not brought yet")]
    if want is None and SYNC_KEY in facts.nft:
        return [DeleteNftTable(SYNC_KEY, "no sync_daemon")]
    return []


def plan_role(spec: DirectorSpec, role: Role, facts: Facts) -> list[Change]:
    """Changes that make the node right for ``role``: IPVS's settings and the
    sync hold rules (the same in either role) first; BACKUP: suppression, then
    the marks go; MASTER: the marks come, then the arp rules go."""
    backend = role_spec(spec, role)
    want = spec.fwmark_table() if role == "MASTER" else None
    marks: list[Change] = []
    if want is not None and facts.nft.get(KEY) != want:
        marks.append(LoadNftTable(want, "mark VIP traffic for the fwmark services"))
    elif want is None and KEY in facts.nft:
        marks.append(DeleteNftTable(KEY, "not MASTER"))
    backend_changes = plan(backend, facts) if backend else []
    return ipvs_sysctls(spec, facts) + plan_sync_holds(spec, facts) + (
        marks + backend_changes if role == "MASTER" else backend_changes + marks)


def plan_stopped(spec: DirectorSpec, facts: Facts) -> list[Change]:
    """keepalived is gone without a clean stop (SIGKILLed whole, crashed): the
    node steps back to a stopped director's role. The BACKUP role's changes
    first (a director that is also a backend gets its suppression back, the
    marks go), then the VIPs keepalived left on their VRRP devices are
    removed, so no second MAC answers ARP next to the new MASTER. A clean
    stop leaves no VIP: then this is the BACKUP plan alone."""
    devices = dict(spec.vip_devices)
    vips = set(spec.vips)
    left = [RemoveAddress(a.ifname, a.address) for a in facts.addresses
            if a.address.ip in vips and a.ifname == devices.get(a.address.ip, spec.interface)]
    return plan_role(spec, "BACKUP", facts) + left


def plan_withdrawals(spec: DirectorSpec, announce: frozenset[IPAddress],
                     routes: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]) -> list[Change]:
    """The first part of ``plan_ecmp``, from the routes alone: the VIPs to
    withdraw. The agent applies it before it reads the rest of the node, so
    a director that lost quorum or keepalived leaves the routers' ECMP
    group as soon as it knows, however long the full reconcile takes."""
    assert spec.ecmp is not None
    want = {host_interface(v) for v in announce}
    return [RemoveRoute(spec.ecmp.table, a) for a in sorted(set(routes) - want, key=_iface_key)]


def plan_ecmp(spec: DirectorSpec, announce: frozenset[IPAddress], facts: Facts) -> list[Change]:
    """An ECMP director: every VIP on lo with ARP suppressed and the fwmark
    rules in force (always: every director is active), IPVS's sysctls set,
    and exactly the VIPs of ``announce`` routed in lvsdr's table, which BIRD
    exports, less those whose services IPVS does not have yet (``Ecmp.in_ipvs``).
    Withdrawals come first, announcements last (after what serves them)."""
    e = spec.ecmp
    assert e is not None and spec.backend is not None
    announce = e.in_ipvs(announce, facts.ipvs)
    want = {host_interface(v) for v in announce}
    have = set(facts.routes)
    withdraw = plan_withdrawals(spec, announce, facts.routes)
    serve: list[Change] = plan(spec.backend, facts)
    table = spec.fwmark_table()
    if table is not None and facts.nft.get(KEY) != table:
        serve.append(LoadNftTable(table, "mark VIP traffic for the fwmark services"))
    elif table is None and KEY in facts.nft:
        serve.append(DeleteNftTable(KEY, "no fwmark service"))
    serve += ipvs_sysctls(spec, facts)
    announcements: list[Change] = [AddRoute(e.table, a) for a in sorted(want - have, key=_iface_key)]
    return withdraw + serve + announcements


def _iface_key(a: object) -> tuple[int, int]:
    assert isinstance(a, (ipaddress.IPv4Interface, ipaddress.IPv6Interface))
    return (a.version, int(a.ip))


def parse_route_messages(msgs: list[dict[str, object]], table: int,
                         version: int) -> tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]:
    """Netlink route messages of lvsdr's table (``dst``, ``dst_len``,
    ``table``, as hooks/facts.py takes them from a dump) -> the host routes
    in it, the announced VIPs; anything else is not lvsdr's."""
    out = []
    for m in msgs:
        dst, length = m.get("dst"), m.get("dst_len")
        if m.get("table") != table or not isinstance(dst, str) or not isinstance(length, int):
            continue
        try:
            a = ipaddress.ip_interface(f"{dst}/{length}")
        except ValueError:
            continue
        if a.version == version and a.network.prefixlen == a.max_prefixlen:
            out.append(a)
    return tuple(sorted(out, key=_iface_key))
