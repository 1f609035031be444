"""The cluster model: frozen, typed, validated on load (see ``load.py``).

Nothing here does I/O. Every object is immutable and hashable, so the same
cluster file always gives equal objects and the renderers stay pure.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, fields
from typing import Any

from lvsdr import defaults
from lvsdr.errors import InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_INTERFACE = "eth0"
DEFAULT_ADVERT_INT = 1
DEFAULT_ARP_METHOD = "sysctl"
DEFAULT_PROTOCOL = "tcp"
DEFAULT_SCHEDULER = "wlc"
PROTOCOLS = ("tcp", "udp", "sctp")
HOOK_MODES = ("both", "fifo", "notify", "none")
AUTH_TYPES = ("PASS", "AH")  # VRRPv2 authentication (keepalived built with VRRP_AUTH, as Debian's is)
# IPVS schedulers keepalived 2.2 knows (ipvs(8), keepalived.conf(5) lb_algo)
SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
)
# first fwmark lvsdr picks for services that need one and did not name one
AUTO_FWMARK_BASE = 0x4C56_0000


Command = tuple[str, ...]  # an operator's own script: absolute path, then arguments (validated)


@dataclass(frozen=True)
class Url:
    """One URL an HTTP_GET/SSL_GET checker fetches. ``status_codes`` are codes
    ("200") and ranges ("200-299"); empty is keepalived's default, 200-299."""

    path: str = "/"
    status_codes: tuple[str, ...] = ()
    digest: str | None = None  # MD5 of the body (keepalived's genhash)
    virtualhost: str | None = None


@dataclass(frozen=True)
class Check:
    """One health checker run against each backend of a service. A value left
    None is not written, so keepalived's own default applies (docs/cluster-file.md
    names them: keepalived.conf(5) is where they are stated)."""

    type: str = "tcp"
    port: int | None = None  # connect_port; None: the backend's port
    connect_timeout: int | None = None
    retry: int | None = None
    delay_before_retry: int | None = None
    urls: tuple[Url, ...] = (Url(),)  # http, https
    virtualhost: str | None = None  # http, https: for every URL without its own
    sni: bool = False  # https: send the virtualhost as SNI
    script: Command | None = None  # misc: the program and its arguments
    misc_timeout: int | None = None  # misc
    dynamic: bool = False  # misc: the exit code sets the weight (misc_dynamic)
    user: str | None = None  # misc: run as this user instead of root
    query: str | None = None  # dns: the name to ask for (keepalived: ".")
    query_type: str | None = None  # dns (keepalived: SOA)
    payload: str | None = None  # udp: hex bytes to send (keepalived: random)
    require_reply: bool = False  # udp: a reply is needed, not only no ICMP error
    reply: str | None = None  # udp: hex the reply must start with
    helo_name: str | None = None  # smtp
    file: str | None = None  # file: the file whose number is read
    weight: int | None = None  # file: multiplier of the number
    reverse: bool = False  # file
    # the values of catalog keys (generator/checks.py) that have no field of their own
    options: tuple[tuple[str, str | int | bool], ...] = ()

    def value(self, name: str) -> Any:
        """The value of the catalog's key ``name`` (a field, or one of ``options``)."""
        if name in CHECK_FIELDS:
            return getattr(self, name)
        return dict(self.options).get(name)


CHECK_FIELDS = frozenset(f.name for f in fields(Check))


@dataclass(frozen=True)
class TrackScript:
    """A director's own health (keepalived's vrrp_script + track_script): when
    the script fails ``fall`` times, the director's priority changes by
    ``weight``, or with weight 0 it gives up the VIPs (FAULT) until it passes
    ``rise`` times. Defaults are keepalived's."""

    name: str
    script: str
    args: tuple[str, ...] = ()
    interval: int = 1
    timeout: int | None = None
    weight: int = 0
    rise: int = 1
    fall: int = 1


@dataclass(frozen=True)
class TrackInterface:
    """An interface the director needs (track_interface): down -> FAULT (weight 0)
    or priority + weight."""

    name: str
    weight: int = 0


@dataclass(frozen=True)
class TrackFile:
    """A file whose number the director's priority follows (vrrp_track_file):
    with weight 0, a non-zero number in it means FAULT (a maintenance switch)."""

    name: str
    file: str
    weight: int = 0


@dataclass(frozen=True)
class SyncDaemon:
    """IPVS connection sync between the directors (keepalived's lvs_sync_daemon):
    the MASTER sends its connection table, the BACKUP keeps it, so established
    connections survive a failover. Defaults are keepalived's."""

    interface: str | None = None  # default: the director's interface
    id: int | None = None  # default: the virtual_router_id
    port: int | None = None  # default 8848


@dataclass(frozen=True)
class Vip:
    """A VIP the VRRP instance carries with options ([[vips]]): a service's VIP
    on another device or with a label, or a VRRP-only address (no service)."""

    address: IPAddress
    device: str | None = None  # default: the director's interface
    label: str | None = None


@dataclass(frozen=True)
class Instance:
    """A further VRRP instance ([[instances]]): its own virtual_router_id and
    per-director priorities, carrying some of the VIPs (active/active: the
    directors hold different VIPs). The cluster's own instance keeps the rest."""

    name: str
    virtual_router_id: int
    vips: tuple[IPAddress, ...]
    priorities: tuple[tuple[str, int], ...]  # (director, priority), every director
    # a two-armed director: this instance runs on its own interface (same name on every director), its VIPs there
    interface: str | None = None  # default: each director's interface
    # (director, address) on this instance's segment, every director or none: the source of its adverts (unicast
    # or mcast_src_ip) and its unicast peers; default: the directors' addresses
    addresses: tuple[tuple[str, IPAddress], ...] = ()

    def priority(self, director: str) -> int:
        return dict(self.priorities)[director]

    def address(self, director: Director) -> IPAddress:
        """``director``'s address in this instance (its advert source)."""
        return dict(self.addresses).get(director.name, director.address)

    def device(self, director: Director) -> str:
        return self.interface or director.interface


@dataclass(frozen=True)
class Extra:
    """Keepalived directives the model does not cover ([[keepalived_extra]]):
    lines added to one block, validated by keepalived -t like everything else."""

    block: str  # global_defs | vrrp_instance | service:NAME
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Director:
    name: str
    address: IPAddress
    priority: int  # VRRP; 0 in an ECMP cluster (no VRRP instance)
    interface: str
    arp_method: str = DEFAULT_ARP_METHOD  # used when the director is also a backend (ECMP: for its VIPs on lo)
    router_id: ipaddress.IPv4Address | None = None  # ECMP: BIRD's router id (default: the IPv4 address)


@dataclass(frozen=True)
class BgpPeer:
    """A router the directors of an ECMP cluster announce their VIPs to (by BIRD)."""

    name: str
    address: IPAddress
    asn: int
    password: str | None = None  # TCP MD5 (BIRD's `password`)
    hold_time: int = defaults.BGP_HOLD_TIME
    bfd: bool = False


@dataclass(frozen=True)
class Bgp:
    """[bgp]: the cluster is an ECMP cluster. Every director holds every VIP
    on lo with ARP suppressed, and BIRD announces a VIP while at least one of
    its services has quorum in keepalived there (lvsdr's agent gates it)."""

    asn: int
    peers: tuple[BgpPeer, ...]
    communities: tuple[tuple[int, int], ...] = ()
    table: int = defaults.BGP_TABLE  # the kernel routing table whose routes (the announced VIPs) BIRD exports
    bfd_interval: int = defaults.BFD_INTERVAL  # ms between BFD packets
    bfd_multiplier: int = defaults.BFD_MULTIPLIER  # packets lost before a peer is down
    drain_timeout: int = defaults.DRAIN_TIMEOUT  # s `lvsdr drain` waits for connections to end
    bird_conf: str = defaults.BIRD_CONF
    bird_socket: str = defaults.BIRD_SOCKET

    @property
    def bfd(self) -> bool:
        return any(p.bfd for p in self.peers)


@dataclass(frozen=True)
class RealServer:
    name: str
    address: IPAddress
    interface: str = DEFAULT_INTERFACE
    arp_method: str = DEFAULT_ARP_METHOD
    firewalld_zone: str = defaults.FIREWALLD_ZONE


@dataclass(frozen=True)
class Backend:
    """One backend of a service, resolved: a real server or a director."""

    server: str
    address: IPAddress
    weight: int = 1
    listen_port: int | None = None  # iptables/firewalld: local port to redirect to
    is_director: bool = False
    notify_up: Command | None = None  # the operator's own scripts, run by keepalived's checker
    notify_down: Command | None = None
    inhibit_on_failure: bool = False  # a failed backend gets weight 0 instead of leaving the table
    checks: tuple[Check, ...] | None = None  # this backend's own checkers instead of the service's


@dataclass(frozen=True)
class SorryServer:
    address: IPAddress
    port: int


@dataclass(frozen=True)
class Service:
    name: str
    vip: IPAddress
    port: int
    protocol: str
    scheduler: str
    backends: tuple[Backend, ...]
    checks: tuple[Check, ...] = (Check(),)  # () : no checker (type "none")
    delay_loop: int | None = None  # None: keepalived's 60 s
    persistence_timeout: int | None = None
    quorum: int | None = None
    sorry_server: SorryServer | None = None
    fwmark: int | None = None  # effective: explicit, or chosen when a director is a backend
    quorum_up: Command | None = None
    quorum_down: Command | None = None
    persistence_granularity: str | None = None  # a netmask
    ops: bool = False  # one-packet scheduling (udp)
    hysteresis: int | None = None
    alpha: bool = False
    omega: bool = False
    ha_suspend: bool = False
    scheduler_flags: tuple[str, ...] = ()  # sh-port, sh-fallback, mh-port, mh-fallback
    # a virtual_server_group: every VIP and port (vip and port are the first of each);
    # empty for a plain VIP:port service
    group_vips: tuple[IPAddress, ...] = ()
    group_ports: tuple[int, ...] = ()

    @property
    def family(self) -> int:
        return self.vip.version

    @property
    def all_vips(self) -> tuple[IPAddress, ...]:
        return self.group_vips or (self.vip,)

    @property
    def all_ports(self) -> tuple[int, ...]:
        return self.group_ports or (self.port,)

    @property
    def endpoints(self) -> tuple[tuple[IPAddress, int], ...]:
        """Every VIP:port the service answers on."""
        return tuple((v, p) for v in self.all_vips for p in self.all_ports)

    @property
    def is_group(self) -> bool:
        return bool(self.group_vips or self.group_ports)


@dataclass(frozen=True)
class Cluster:
    name: str
    interface: str
    virtual_router_id: int
    advert_int: float
    directors: tuple[Director, ...]
    real_servers: tuple[RealServer, ...]
    services: tuple[Service, ...]
    auth_pass: str | None = None
    auth_type: str = "PASS"
    subnet: IPNetwork | None = None  # the directors' segment, when the file names it
    vrrp_version: int = 2
    unicast: bool = False
    nopreempt: bool = False
    preempt_delay: int | None = None
    garp_master_delay: int = 5
    garp_master_refresh: int | None = None
    hook: str = "both"
    notify_fifo: str = defaults.NOTIFY_FIFO
    lvsdr_path: str = defaults.LVSDR_PATH
    config_path: str = defaults.CONFIG_PATH
    initial_state: str = "BACKUP"
    state_dir: str = defaults.STATE_DIR  # lvsdr's records on each node (and its lock)
    # s a backend or service removed from the file stays in IPVS at weight 0 while its connections end
    drain_timeout: int = defaults.DRAIN_TIMEOUT
    notify_master: Command | None = None  # the operator's own scripts, run alongside lvsdr's hook
    notify_backup: Command | None = None
    notify_fault: Command | None = None
    notify_stop: Command | None = None
    mcast_src_ip: bool = False  # multicast adverts from the director's own address
    sync_daemon: SyncDaemon | None = None
    vip_options: tuple[Vip, ...] = ()
    extra: tuple[Extra, ...] = ()
    track_scripts: tuple[TrackScript, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    track_files: tuple[TrackFile, ...] = ()
    instances: tuple[Instance, ...] = ()
    sync_group: bool = False  # one vrrp_sync_group over every instance: they change state together
    bgp: Bgp | None = None  # an ECMP cluster: no VRRP; BIRD announces the VIPs

    @property
    def ecmp(self) -> bool:
        return self.bgp is not None

    # -- lookups (pure) -------------------------------------------------
    def director(self, name: str) -> Director | None:
        return next((d for d in self.directors if d.name == name), None)

    def real_server(self, name: str) -> RealServer | None:
        return next((r for r in self.real_servers if r.name == name), None)

    def find_node(self, name: str, kind: str = "") -> Director | RealServer:
        """The node named ``name`` (of ``kind``: "director", "real server" or
        any); an unknown name is an InputError listing every node by role."""
        node: Director | RealServer | None = self.director(name) if kind != "real server" else None
        if node is None and kind != "director":
            node = self.real_server(name)
        if node is None:
            raise InputError(self.unknown_node(name, f"a {kind}" if kind else "a node of this cluster"))
        return node

    def find_director(self, name: str) -> Director:
        d = self.find_node(name, "director")
        assert isinstance(d, Director)
        return d

    def unknown_node(self, name: str, what: str) -> str:
        directors = ", ".join(sorted(d.name for d in self.directors)) or "none"
        real = ", ".join(sorted(r.name for r in self.real_servers)) or "none"
        return f"--node: {json.dumps(name)} is not {what} (directors: {directors}; real servers: {real})"

    def services_of(self, server: str) -> tuple[Service, ...]:
        """Services for which ``server`` (a real server or director) is a backend,
        or the sorry server: IPVS forwards to it by DR like to any backend, so it
        needs the VIP and ARP suppression too."""
        node = self.director(server) or self.real_server(server)
        address = node.address if node else None
        return tuple(s for s in self.services if any(b.server == server for b in s.backends)
                     or (s.sorry_server is not None and s.sorry_server.address == address))

    @property
    def file_mode(self) -> int:
        """The mode of files holding this cluster's VRRP password (the cluster
        file, keepalived.conf): 0600 when there is one, else 0644."""
        return 0o600 if self.auth_pass else 0o644

    @property
    def vips(self) -> tuple[IPAddress, ...]:
        """Every VIP the VRRP instance carries: the services' and the VRRP-only ones."""
        return tuple(sorted({v for s in self.services for v in s.all_vips} | {v.address for v in self.vip_options},
                            key=_addr_key))

    @property
    def own_vips(self) -> tuple[IPAddress, ...]:
        """The VIPs of the cluster's own VRRP instance: every VIP no [[instances]] entry takes."""
        taken = {v for i in self.instances for v in i.vips}
        return tuple(v for v in self.vips if v not in taken)

    def vip_device(self, vip: IPAddress, director: Director) -> str:
        """Where keepalived puts ``vip`` on ``director``: its [[vips]] device, else its instance's interface."""
        opt = next((v for v in self.vip_options if v.address == vip), None)
        if opt is not None and opt.device:
            return opt.device
        return next((i.device(director) for i in self.instances if vip in i.vips), director.interface)

    def vip_label(self, vip: IPAddress) -> str | None:
        return next((v.label for v in self.vip_options if v.address == vip), None)

    @property
    def master(self) -> Director:
        """The director with the highest priority."""
        return max(self.directors, key=lambda d: d.priority)


def _addr_key(a: IPAddress) -> tuple[int, int]:
    return (a.version, int(a))


def addr_key(a: IPAddress) -> tuple[int, int]:
    """Sort key for mixed IPv4/IPv6 addresses."""
    return _addr_key(a)
