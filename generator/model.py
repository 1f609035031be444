"""The cluster model: frozen, typed, validated on load (see ``load.py``).

Nothing here does I/O. Every object is immutable and hashable, so the same
cluster file always gives equal objects and the renderers stay pure.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, fields
from typing import Any

from lvsdr import defaults
from lvsdr.errors import InputError

from .keys import CLUSTER_NAME_RE, NAME_RE, PATH_RE, ZONE_RE, declare, leaf

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
class DrCheck:
    """DR-path checks (docs/dr-check.md): each director probes every backend of every TCP service the way IPVS
    forwards to it (a SYN to VIP:port at the backend's MAC); the agent writes the verdict to a file that a
    FILE_CHECK beside the backend's own checks reads."""

    interval: float = defaults.DR_CHECK_INTERVAL
    fall: int = defaults.DR_CHECK_FALL
    rise: int = defaults.DR_CHECK_RISE


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
    name: str = field(metadata=declare(form="text", pattern=NAME_RE, what="a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
                     directive="router_id", meaning="`[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`; unique among directors and "
                     "real servers; keepalived's `router_id`"))
    address: IPAddress = field(metadata=declare(
        form="custom", type="IP address",
        meaning="the director's own address: `unicast_src_ip`, peers of the others; all directors share one family"))
    priority: int = field(metadata=declare(
        form="int", lo=1, hi=254, directive="priority",
        meaning="1..254 (255 is reserved for an address owner); distinct per director, since a tie is broken by "
        "address, which nobody reads in a config (VRRP; 0 in an ECMP cluster: no VRRP instance)"))
    interface: str = field(metadata=declare(form="custom", type="string", shown="`cluster.interface`",
                                            directive="interface", meaning="this director's VRRP / VIP interface"))
    arp_method: str = leaf(DEFAULT_ARP_METHOD, form="custom", type="string", meaning="ARP suppression used when "
                           "this director is also a backend: `sysctl`, `arptables` or `nftables` (the redirect "
                           "methods cannot share the VIP with keepalived); switched by the failover hooks, see "
                           "[hooks.md](hooks.md)")
    router_id: ipaddress.IPv4Address | None = leaf(None, form="custom", type="IPv4 address", shown="its IPv4 "
                                                   "address", meaning="an ECMP cluster's director: BIRD's router "
                                                   "id ([bgp], [ecmp.md](ecmp.md))")
    bgp_med: int | None = leaf(None, form="int", lo=0, hi=4294967295, shown="none", meaning="an ECMP cluster's "
                               "director: the MULTI_EXIT_DISC its VIPs are announced with (lower wins at the routers: "
                               "a backup site's directors above the primary's)")
    bgp_prepend: int = leaf(0, form="int", lo=0, hi=8, meaning="an ECMP cluster's director: its AS prepended this "
                            "many times to the VIPs' path (0..8: longer paths lose at the routers, which keep this "
                            "director for when the others are gone)")
    bgp_large_communities: tuple[tuple[int, int, int], ...] = leaf(
        (), form="custom", type="list of strings", shown="none", meaning="an ECMP cluster's director: large "
        "communities (`\"65001:1:2\"`) its VIPs carry besides `[bgp] large_communities`")
    bgp_vips: tuple[BgpVip, ...] = leaf(
        (), form="custom", type="table", shown="none", meaning="an ECMP cluster's director: attributes of single "
        "VIPs, `{ \"192.0.2.151\" = { med = 100, prepend = 2, large_communities = [\"65001:2:1\"] } }` (each key "
        "optional): a VIP's `med` and `prepend` replace the director's, its large communities are added. One site's "
        "directors primary for one VIP and backup for another")


@dataclass(frozen=True)
class BgpVip:
    """One VIP's BGP attributes on one ECMP director (``Director.bgp_vips``)."""

    vip: IPAddress
    med: int | None = None  # None: the director's bgp_med
    prepend: int | None = None  # None: the director's bgp_prepend
    large_communities: tuple[tuple[int, int, int], ...] = ()  # besides the cluster's and the director's


@dataclass(frozen=True)
class BgpPeer:
    """A router the directors of an ECMP cluster announce their VIPs to (by BIRD)."""

    name: str
    address: IPAddress
    asn: int
    password: str | None = None  # TCP MD5 (BIRD's `password`)
    hold_time: int = defaults.BGP_HOLD_TIME
    bfd: bool = False
    multihop: int | None = None  # eBGP over routers between (the hops, 1..255); None: a directly connected peer


@dataclass(frozen=True)
class Bgp:
    """[bgp]: the cluster is an ECMP cluster. Every director holds every VIP
    on lo with ARP suppressed, and BIRD announces a VIP while at least one of
    its services has quorum in keepalived there (lvsdr's agent gates it)."""

    asn: int
    peers: tuple[BgpPeer, ...]
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()  # RFC 8092, on every director's VIPs
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
    name: str = field(metadata=declare(form="text", pattern=NAME_RE, what="a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
                     meaning="as for directors"))
    address: IPAddress = field(metadata=declare(form="custom", type="IP address", meaning="the address the "
                                                "directors reach it at (`real_ip` in the Red Hat guide)"))
    interface: str = leaf(DEFAULT_INTERFACE, form="custom", type="string",
                          meaning="the interface that faces the directors and clients")
    arp_method: str = leaf(DEFAULT_ARP_METHOD, form="custom", type="string",
                           meaning="`sysctl`, `arptables`, `nftables`, `iptables` or `firewalld`")
    firewalld_zone: str = leaf(defaults.FIREWALLD_ZONE, form="text", pattern=ZONE_RE, what="a firewalld zone name",
                               meaning="the zone for `arp_method = \"firewalld\"`")


@dataclass(frozen=True)
class Backend:
    """One backend of a service, resolved: a real server or a director."""

    server: str = field(metadata=declare(form="custom", type="string", meaning="a real server's or a director's name"))
    address: IPAddress = field(metadata=declare(form="custom", type="IP address", shown="the server's",
                              meaning="the server's address (not a key: it comes from the server)"))
    weight: int = leaf(1, form="int", lo=0, hi=65535, directive="weight", meaning="0..65535; 0 drains it, but not "
                       "every backend may be 0")
    listen_port: int | None = leaf(None, form="int", lo=1, hi=65535, meaning="only with `arp_method` `iptables` or "
                                   "`firewalld`, which redirect locally: the port the application really listens on")
    is_director: bool = False
    notify_up: Command | None = leaf(None, form="custom", type="command", directive="notify_up",
                                     meaning="the operator's script when its check passes")
    notify_down: Command | None = leaf(None, form="custom", type="command", directive="notify_down",
                                       meaning="the operator's script when its check fails")
    inhibit_on_failure: bool = leaf(False, form="bool", directive="inhibit_on_failure", meaning="a failed backend "
                                    "gets weight 0 and keeps its established connections instead of leaving the "
                                    "IPVS table")
    checks: tuple[Check, ...] | None = leaf(None, form="custom", type="table / list of tables", shown="the "
                                            "service's", meaning="`check` / `checks`: its own checkers instead of "
                                            "the service's")


@dataclass(frozen=True)
class SorryServer:
    address: IPAddress
    port: int


@dataclass(frozen=True)
class Service:
    name: str = field(metadata=declare(form="text", pattern=NAME_RE, what="a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})",
                     meaning="unique; a comment in keepalived.conf"))
    vip: IPAddress = field(metadata=declare(
        form="custom", type="IP address, or a list",
        meaning="the virtual IP; a /32 (/128) on the MASTER's interface. A list of addresses and ranges "
        "(`[\"192.0.2.10-19\", \"192.0.2.30\"]`, or `\"FIRST-LAST\"` with a full last address) makes a "
        "virtual_server_group, below"))
    port: int = field(metadata=declare(form="custom", type="integer, or a list",
                                       meaning="1..65535; a list (`[80, 443]`) makes a virtual_server_group"))
    protocol: str = field(metadata=declare(DEFAULT_PROTOCOL, form="choice", choices=PROTOCOLS, directive="protocol",
                         meaning="a udp "
                         "or sctp service needs an explicit `check`, on the service or on every backend (the "
                         "default tcp check cannot probe it)"))
    scheduler: str = field(metadata=declare(DEFAULT_SCHEDULER, form="choice", choices=SCHEDULERS, type="string",
                          directive="lb_algo",
                          meaning="an IPVS scheduler: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos. Each is "
                          "a kernel module (`ip_vs_NAME`); all load on Debian 12's kernel 6.1 (proven in the IPVS "
                          "tier) except `twos`, which needs Linux 6.2 or newer"))
    backends: tuple[Backend, ...] = field(metadata=declare(
        form="custom", type="list",
        meaning="server names (real servers or directors), or tables `{ server = \"web1\", weight = 2 }` (below)"))
    checks: tuple[Check, ...] = leaf((Check(),), form="custom", type="table / list of tables", label="`check` / "
                                     "`checks`", shown="`{ type = "
                                     "\"tcp\" }`", meaning="the health checker(s), below; a "
                                     "`udp` or `sctp` service must name them")  # () : no checker (type "none")
    delay_loop: int | None = leaf(None, form="int", lo=1, hi=3600, directive="delay_loop", shown="keepalived's 60",
                                  meaning="seconds between health checks")
    persistence_timeout: int | None = leaf(None, form="int", lo=1, hi=2_000_000, directive="persistence_timeout",
                                           meaning="seconds of client affinity")
    quorum: int | None = leaf(None, form="int", lo=1, hi=65535 * 256, directive="quorum", meaning="minimum total "
                              "weight of healthy backends for the service to be up; at most the backends' total "
                              "weight")
    sorry_server: SorryServer | None = leaf(None, form="custom", type="table", directive="sorry_server", meaning="`{ "
                                            "address = \"...\", port = 80 }`: the port must be the service's (its "
                                            "default; DR cannot map ports), the address not the VIP. IPVS forwards to "
                                            "it by DR like to a backend, so a sorry server that is a "
                                            "`[[real_servers]]` entry gets the VIP and ARP suppression like one "
                                            "(proven in the IPVS tier). `127.0.0.1` (`::1`) is the director itself: "
                                            "IPVS hands the connection to whatever listens on the MASTER on that "
                                            "port (proven in the IPVS tier; run the sorry application on every "
                                            "director)")
    fwmark: int | None = leaf(None, form="int", lo=1, hi=0xFFFFFFFF, meaning="build a `virtual_server fwmark N` "
                              "instead of IP+port")  # effective: explicit, or chosen when a director is a backend
    quorum_up: Command | None = leaf(None, form="custom", type="command", directive="quorum_up",
                                     meaning="the operator's script when the service gains quorum")
    quorum_down: Command | None = leaf(None, form="custom", type="command", directive="quorum_down",
                                       meaning="the operator's script when the service loses quorum")
    persistence_granularity: str | None = leaf(None, form="custom", type="string", directive="persistence_granularity",
                                               meaning="netmask grouping clients for persistence "
                                               "(`\"255.255.255.0\"`; a prefix length such as `\"64\"` for IPv6 "
                                               "VIPs)")
    ops: bool = leaf(False, form="bool", directive="ops", meaning="one-packet scheduling: each UDP datagram scheduled "
                     "on its own (udp services only)")
    hysteresis: int | None = leaf(None, form="int", lo=0, hi=65535, directive="hysteresis",
                                  meaning="quorum hysteresis (0..65535), below the quorum")
    alpha: bool = leaf(False, form="bool", directive="alpha",
                       meaning="start with every backend down until its first check passes")
    omega: bool = leaf(False, form="bool", directive="omega", meaning="run quorum_down when the service is removed")
    ha_suspend: bool = leaf(False, form="bool", directive="ha_suspend",
                            meaning="do not run the service's checkers while this director is not MASTER")
    scheduler_flags: tuple[str, ...] = leaf((), form="custom", type="boolean", label="`sh_port`, `sh_fallback`, "
                                            "`mh_port`, `mh_fallback`", shown="`false`", meaning="`sh_port`, "
                                            "`sh_fallback` (scheduler `sh` only: hash the port too; fall back to "
                                            "another backend when the chosen one is down), `mh_port`, `mh_fallback` "
                                            "(the same for scheduler `mh`)")
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


ADVERT_INT_MEANING = (
    "seconds between adverts; 0.05..255; fractions (0.01 s steps) only with `vrrp_version = 3`, which carries at "
    "most 40.95 s (keepalived refuses more). Below 1 s lvsdr runs keepalived's VRRP process at realtime priority "
    "(`vrrp_rt_priority 50`, `vrrp_no_swap`): a busy host cannot delay its adverts into a false failover. Fast "
    "detection: a MASTER's hard failure is noticed after 3 adverts plus the skew (at `0.05`, about 0.17 s); the "
    "cost is 20 adverts a second per instance at `0.05` (lab figures in docs/operations.md, "
    "tests/test_fast_vrrp_lab.py)")
PREEMPT_DELAY_MEANING = (
    "seconds (0..1000) a recovered director waits as BACKUP before it pre-empts. With `sync_daemon` and without "
    "`nopreempt`, lvsdr renders 60 when the file sets none and refuses less than 10: the returning MASTER's IPVS table "
    "is empty, and the connections the other director carried meanwhile reach it only as IPVS syncs them (on each "
    "state change and again every 50 packets a connection receives, `net.ipv4.vs.sync_threshold` 3 50); it must not "
    "take the VIPs before. keepalived waits only from state BACKUP, so `initial_state = \"MASTER\"` with "
    "`sync_daemon` is refused (use `nopreempt` to never fail back). A connection that receives fewer than 50 packets "
    "during the delay is not on the returning MASTER, and breaks when it takes over: raise the delay for slow "
    "long-lived flows")
DRAIN_TIMEOUT_MEANING = (
    "seconds (0..86400) a real server removed from the file (or every real server of a removed service) stays in "
    "IPVS at weight 0, without a checker, while the kernel counts active connections through it (UDP: any flow); "
    "`lvsdr watch` removes it when they have ended or this long after it left, whichever comes first. 0 cuts at once "
    "(keepalived's own behaviour). Fwmark services and `virtual_server_group` services are not kept. `lvsdr plan` "
    "shows each leaving real server and when it goes ([docs/watch.md](watch.md))")
NOTIFY_MEANING = (
    "the operator's own script, `[\"/absolute/path\", \"arg\", ...]`, run by keepalived on becoming MASTER "
    "**alongside** lvsdr's hook (never instead of it; proven in the lab). Each argument: letters, digits and "
    "`._/:=@%+,-` (they are quoted into keepalived.conf, which runs them as root)")
DR_CHECK_MEANING = (
    "DR-path checks ([dr-check.md](dr-check.md)): every director sends a TCP SYN to each VIP:port at each backend's "
    "MAC, as IPVS forwards, every `interval` s (0.1..10); a backend whose path fails `fall` rounds in a row (1..10: "
    "no answer, a reset, no MAC) leaves IPVS and returns after `rise` good ones (1..10), through a FILE_CHECK beside "
    "its own checks. `false`: none (keepalived's checks alone, which connect to the backend's own address and miss "
    "a lost VIP)")
SYNC_DAEMON_MEANING = (
    "IPVS connection sync between the directors (keepalived's `lvs_sync_daemon`, following the VRRP instance): the "
    "MASTER sends its connection table, the BACKUP keeps it, so established connections survive a failover and a "
    "switchover (proven in the IPVS tier: a long download through the VIP completes across a failover, and 30 "
    "across a switchover and back, with it; without it they break). Every director then also holds back, for 5 s, "
    "segments of connections the sync has not brought yet, rather than reset them (`table inet lvsdr_sync`, "
    "docs/operations.md). Table keys: `interface` (default the director's), `id` (0..255, default the "
    "`virtual_router_id`), `port` (default 8848). Fail-back: see `preempt_delay`")


@dataclass(frozen=True)
class Cluster:
    name: str = field(metadata=declare(form="text", pattern=CLUSTER_NAME_RE,
                                       what="a cluster name ([a-z0-9][a-z0-9_-]{0,30})",
                                       meaning="`[a-z0-9][a-z0-9_-]{0,30}`; the vrrp_instance is `VI_<name>`"))
    interface: str = field(metadata=declare(DEFAULT_INTERFACE, form="custom", type="string", directive="interface",
                          meaning="directors' VRRP and VIP interface (a director may override); not `lo` "
                          "(keepalived runs no VRRP there), as for every segment interface below"))
    virtual_router_id: int = field(metadata=declare(form="int", lo=1, hi=255, directive="virtual_router_id",
                                  meaning="1..255; unique per VRRP segment"))
    advert_int: float = field(metadata=declare(DEFAULT_ADVERT_INT, form="custom", type="number", directive="advert_int",
                             meaning=ADVERT_INT_MEANING))
    directors: tuple[Director, ...]
    real_servers: tuple[RealServer, ...]
    services: tuple[Service, ...]
    auth_pass: str | None = leaf(None, form="custom", type="string", meaning="VRRPv2 PASS authentication, 1..8 "
                                 "characters of `[A-Za-z0-9._~@%+=:,-]`; not with version 3. A config holding it is "
                                 "written mode 0600")
    auth_type: str = leaf("PASS", form="choice", choices=AUTH_TYPES, type="string", meaning="`PASS` (the password in "
                          "clear in each advert) or `AH` (an IPsec AH header keyed by `auth_pass`; both directors "
                          "must agree, proven in the lab); needs `auth_pass`")
    subnet: IPNetwork | None = leaf(None, form="custom", type="network", meaning="the directors' segment "
                                    "(`\"192.0.2.0/24\"`): the directors must be in it, and no VIP, sorry server or "
                                    "node may be its network or broadcast address. Without it lvsdr cannot know "
                                    "them; it always refuses 0.0.0.0/8, 240.0.0.0/4 and 255.255.255.255")
    vrrp_version: int = leaf(2, form="custom", type="2 or 3", shown="2 (3 for IPv6 directors)", directive="version",
                             meaning="VRRP version")
    unicast: bool = leaf(False, form="bool", meaning="unicast VRRP between the directors' `address`es instead of "
                         "multicast (needs two or more directors)")
    nopreempt: bool = leaf(False, form="bool", directive="nopreempt", meaning="a recovered higher-priority director "
                           "does not take the VIPs back (needs `initial_state = \"BACKUP\"`)")
    preempt_delay: int | None = leaf(None, form="int", lo=0, hi=1000, directive="preempt_delay", shown="none; 60 "
                                     "with `sync_daemon`", meaning=PREEMPT_DELAY_MEANING)
    garp_master_delay: int = leaf(5, form="int", lo=0, hi=255, directive="garp_master_delay", meaning="seconds after "
                                  "becoming MASTER to send the second round of gratuitous ARPs")
    garp_master_refresh: int | None = leaf(None, form="int", lo=1, hi=86400, directive="garp_master_refresh",
                                           meaning="repeat gratuitous ARPs every N seconds while MASTER")
    hook: str = leaf("both", form="choice", choices=HOOK_MODES, meaning="how keepalived tells lvsdr of VRRP "
                     "transitions: `vrrp_notify_fifo` (read by `lvsdr agent`), a `notify` command (`lvsdr notify`), "
                     "both, or neither. `none` is refused when a service uses a fwmark (a director among its "
                     "backends, or an explicit `fwmark`): only the hook installs the mark rule")
    notify_fifo: str = leaf(defaults.NOTIFY_FIFO, form="text", pattern=PATH_RE, what="an absolute path", type="path",
                            meaning="the FIFO keepalived writes events to")
    lvsdr_path: str = leaf(defaults.LVSDR_PATH, form="text", pattern=PATH_RE, what="an absolute path", type="path",
                           meaning="absolute path of `lvsdr` on the nodes (keepalived's `notify`, the units): where "
                           "the lvsdr Debian package (`scripts/lvsdr-deb`) installs it; set it when lvsdr is "
                           "installed elsewhere (pip into a virtualenv)")
    config_path: str = leaf(defaults.CONFIG_PATH, form="text", pattern=PATH_RE, what="an absolute path", type="path",
                            meaning="absolute path of this file on the directors (for `notify`); no empty, `.` or "
                            "`..` segment, and not a path of another file `render --all` writes")
    initial_state: str = leaf("BACKUP", form="choice", choices=("BACKUP", "MASTER"), meaning="`BACKUP` everywhere "
                              "lets priorities decide; `MASTER` puts `state MASTER` on the highest-priority director")
    state_dir: str = leaf(defaults.STATE_DIR, form="text", pattern=PATH_RE, what="an absolute path", type="path",
                          meaning="where lvsdr keeps its records on each node (what it changed, to undo it) and "
                          "takes its lock")
    drain_timeout: int = leaf(defaults.DRAIN_TIMEOUT, form="int", lo=0, hi=86400, meaning=DRAIN_TIMEOUT_MEANING)
    notify_master: Command | None = leaf(None, form="custom", type="command", directive="notify_master",
                                         meaning=NOTIFY_MEANING)
    notify_backup: Command | None = leaf(None, form="custom", type="command", directive="notify_backup",
                                         meaning="the same, on becoming BACKUP")
    notify_fault: Command | None = leaf(None, form="custom", type="command", directive="notify_fault",
                                        meaning="the same, on FAULT")
    notify_stop: Command | None = leaf(None, form="custom", type="command", directive="notify_stop",
                                       meaning="the same, when keepalived stops the instance")
    mcast_src_ip: bool = leaf(False, form="bool", meaning="multicast adverts leave from the director's own "
                              "`address` (not with `unicast`)")
    sync_daemon: SyncDaemon | None = leaf(None, form="custom", type="`true` or table", meaning=SYNC_DAEMON_MEANING)
    guard_window: int = leaf(defaults.GUARD_WINDOW, form="int", lo=0, hi=600, meaning="seconds `lvsdr watch` "
                             "verifies the wire after it installs a new keepalived.conf: one VIP owner per VRRP "
                             "instance, every DR path that passed before still passing; a regression reinstalls the "
                             "last working config ([watch.md](watch.md#guarded-apply)). 0: no guard")
    expire_quiescent_template: bool = leaf(True, form="bool", meaning="IPVS's "
                                           "`net.ipv4.vs.expire_quiescent_template` on every director: with "
                                           "`persistence_timeout`, a client pinned to a real server at weight 0 "
                                           "(drained, held out by `inhibit_on_failure`) has its template expire at "
                                           "its next connection, which goes to a server in service; its open "
                                           "connections go on. `false` (the kernel's default) keeps such clients on "
                                           "the drained server until they stay away for `persistence_timeout`, so a "
                                           "busy client never lets a drain finish. `plan` and `lvsdr metrics` count "
                                           "the templates ([operations.md](operations.md#take-a-backend-out))")
    quorum_handover: bool = leaf(True, form="bool", meaning="a director whose virtual servers lost quorum (every "
                                 "real server failing from it) hands its VRRP instances over to one that has it: "
                                 "the agent writes a file each instance tracks with weight -(highest priority - "
                                 "lowest + 1); when every director lacks quorum nothing moves. On by default where "
                                 "the lowest priority is 3 or more (`true` with a lower one is refused); `nopreempt` "
                                 "and `preempt_delay` apply "
                                 "([operations.md](operations.md#vrrp-that-follows-service-health))")
    dr_check: DrCheck | None = leaf(DrCheck(), form="custom", type="`false` or table", shown="on (`interval` "
                                    f"{defaults.DR_CHECK_INTERVAL}, `fall` {defaults.DR_CHECK_FALL}, `rise` "
                                    f"{defaults.DR_CHECK_RISE})", meaning=DR_CHECK_MEANING)
    vip_options: tuple[Vip, ...] = ()
    extra: tuple[Extra, ...] = ()
    track_scripts: tuple[TrackScript, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    track_files: tuple[TrackFile, ...] = ()
    instances: tuple[Instance, ...] = ()
    sync_group: bool = leaf(False, form="bool", meaning="one `vrrp_sync_group` over every instance: they change "
                            "state together (see `[[instances]]` below)")
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


def instance_name(cluster: Cluster, extra: Instance | None = None) -> str:
    """The vrrp_instance name of the cluster's own instance, or of one of its [[instances]]."""
    return f"VI_{cluster.name}" if extra is None else f"VI_{cluster.name}_{extra.name}"
