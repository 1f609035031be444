"""The lab's routers for an ECMP cluster: one namespace per BGP peer of the
cluster file, running BIRD 2 with multipath (the routes of every director
that announces a VIP merged into one ECMP route in the kernel), BFD where
the peer asks for it, and L4 hashing of flows over the next hops
(``fib_multipath_hash_policy=1``), as the routers in front of Maglev-style
directors run. The directors run lvsdr's own bird.conf."""

from __future__ import annotations

import ipaddress

from lvsdr.generator.model import BgpPeer, Cluster

from .netns import in_ns

MAIN_TABLE = 254  # the kernel's main routing table (`ip route` without a table)


def router_conf(cluster: Cluster, peer: BgpPeer, log: str) -> str:
    """bird.conf for the router that is ``peer``: a session to every director."""
    bgp = cluster.bgp
    assert bgp is not None
    v6 = peer.address.version == 6
    channel = "ipv6" if v6 else "ipv4"
    router_id = peer.address if not v6 else ipaddress.IPv4Address("198.51.100.1")
    out = [f'log "{log}" all;', f"router id {router_id};", "protocol device { scan time 1; }",
           "protocol kernel {", f"    {channel} {{ import none; export all; }};", "    merge paths on;", "}"]
    if peer.bfd:
        out += ["protocol bfd {", f'    interface "*" {{ min rx interval {bgp.bfd_interval} ms; '
                f"min tx interval {bgp.bfd_interval} ms; multiplier {bgp.bfd_multiplier}; }};", "}"]
    for d in cluster.directors:
        out += [f"protocol bgp {d.name.replace('-', '_').replace('.', '_')} {{",
                f"    local {peer.address} as {peer.asn};", f"    neighbor {d.address} as {bgp.asn};",
                f"    hold time {peer.hold_time};", "    connect retry time 1;", "    error wait time 1, 5;",
                *(["    bfd on;"] if peer.bfd else []),
                *([f'    password "{peer.password}";'] if peer.password else []),
                f"    {channel} {{ import all; export none; }};", "}"]
    return "\n".join(out) + "\n"


def next_hops(ns: str, vip: str) -> list[str]:
    """The router's next hops for ``vip`` (its /32 or /128 route in the main
    table, as `ip route show exact` has it), sorted; [] without a route. One
    netlink dump from a thread in the router's namespace: the tests poll this
    ten times a second, and an `ip` each cost a fifth of a second of the TCG
    guest's time."""

    def read() -> list[str]:
        import socket

        from pyroute2 import IPRoute

        v6 = ":" in vip
        with IPRoute() as ipr:
            msgs = ipr.route("dump", family=socket.AF_INET6 if v6 else socket.AF_INET)
        for m in msgs:
            if (m.get_attr("RTA_DST") == vip and m["dst_len"] == (128 if v6 else 32)
                    and m.get_attr("RTA_TABLE") == MAIN_TABLE):
                hops = m.get_attr("RTA_MULTIPATH")
                gateways = [h.get_attr("RTA_GATEWAY") for h in hops] if hops else [m.get_attr("RTA_GATEWAY")]
                return sorted(str(g) for g in gateways if g)
        return []

    return in_ns(ns, read, f"routes for {vip}")
