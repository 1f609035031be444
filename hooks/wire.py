"""Probes on the wire for `lvsdr audit`: ARP for every VIP and node, VRRP
adverts, and a TCP SYN (or a DNS query) to each VIP:port addressed to each
backend's MAC, as IPVS delivers it; in an ECMP cluster, the same crafted
flows to each director, to see which real server each picks. Raw frames from one AF_PACKET socket,
sent and read in one loop; the frames are built and parsed by
generator/frames.py (pure, tested on bytes), as the agent's DR-path checks'
are. Nothing here changes a node: an ARP request, a SYN the
kernel answers with RST, a DNS question.
"""

from __future__ import annotations

import ipaddress
import os
import random
import select
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lvsdr.generator.audit import Advert, Observation, Target, targets
from lvsdr.generator.frames import (
    ETH_P_ALL,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    arp_request,
    dns_query,
    mac_text,
    neighbour_solicitation,
    parse_arp_reply,
    parse_neighbour_advert,
    parse_reply,
    tcp_rst,
    tcp_syn,
)
from lvsdr.generator.model import Cluster, IPAddress


def parse_vrrp(frame: bytes) -> Advert | None:
    """A VRRP advertisement (v2 or v3, IPv4 or IPv6, in clear or under AH)."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00" and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        source: IPAddress = ipaddress.IPv4Address(frame[26:30])
        body = frame[14 + ihl:]
        if proto == 51 and len(body) >= 12 and body[0] == 112:  # AH, then VRRP
            body = body[(body[1] + 2) * 4:]
        elif proto != 112:
            return None
        size = 4
    elif ethertype == b"\x86\xdd" and len(frame) >= 54 and frame[20] == 112:
        source = ipaddress.IPv6Address(frame[22:38])
        body = frame[54:]
        size = 16
    else:
        return None
    if len(body) < 8 or body[0] & 0x0F != 1:
        return None
    count = body[3]
    raw = body[8:8 + count * size]
    addrs = tuple(ipaddress.ip_address(raw[i:i + size]) for i in range(0, len(raw) - size + 1, size))
    return Advert(body[1], source, body[2], addrs, mac_text(frame[6:12]))


# -- the probe run (raw sockets, root) -----------------------------------------

@dataclass(frozen=True)
class Source:
    """Where the probes leave from: the interface, its MAC, our address of each family there."""

    ifname: str
    v4: ipaddress.IPv4Address | None
    v6: ipaddress.IPv6Address | None

    def of(self, family: int) -> IPAddress | None:
        return self.v4 if family == 4 else self.v6


def run_probes(cluster: Cluster, src: Source, local: set[IPAddress], on_director: bool,
               listen: float) -> Observation:
    """Probe the segment from ``src`` (``local``: every address this host holds
    there) for ``listen`` seconds."""
    ifname = src.ifname
    from pathlib import Path

    mac = bytes.fromhex(Path(f"/sys/class/net/{ifname}/address").read_text().strip().replace(":", ""))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.bind((ifname, 0))
        return _loop(cluster, s, mac, src, local, on_director, listen)
    finally:
        s.close()


def _ask(s: socket.socket, mac: bytes, src: Source, a: IPAddress) -> None:
    """Who has ``a``: ARP for IPv4, a neighbour solicitation for IPv6."""
    if isinstance(a, ipaddress.IPv4Address) and src.v4 is not None:
        s.send(arp_request(mac, src.v4, a))
    elif isinstance(a, ipaddress.IPv6Address) and src.v6 is not None:
        s.send(neighbour_solicitation(mac, src.v6, a))


def _take(frame: bytes, mac: bytes, owners: dict[IPAddress, set[str]], adverts: list[Advert],
          pending: dict[tuple[str, int, int], tuple[str, str]], obs: Observation) -> None:
    """One frame heard: an ARP or NDP answer to us (who owns an address), a
    VRRP advert, or a probe's answer (a DR path answered or refused)."""
    arp: tuple[IPAddress, str] | None = parse_arp_reply(frame) or parse_neighbour_advert(frame)
    if arp is not None and frame[0:6] == mac and arp[0] in owners:
        owners[arp[0]].add(arp[1])
        return
    adv = parse_vrrp(frame)
    if adv is not None:
        adverts.append(adv)
        return
    rep = parse_reply(frame)
    hit = pending.get((str(rep.src), rep.sport, rep.dport)) if rep is not None and frame[0:6] == mac else None
    if rep is not None and hit is not None:
        if rep.udp or rep.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
            obs.paths[hit] = "answered"
        elif rep.flags & TCP_RST:
            obs.paths[hit] = "refused"


def _loop(cluster: Cluster, s: socket.socket, mac: bytes, me: Source, local: set[IPAddress],
          on_director: bool, listen: float) -> Observation:
    obs = Observation(adverts_seen=not cluster.unicast or on_director)
    nodes: dict[str, IPAddress] = {d.name: d.address for d in cluster.directors}
    nodes.update({r.name: r.address for r in cluster.real_servers})
    ask = sorted({a for a in (*nodes.values(), *cluster.vips) if me.of(a.version) is not None},
                 key=lambda a: (a.version, int(a)))
    for v in cluster.vips:
        if me.of(v.version) is None:
            obs.skipped_vips[v] = f"this host has no IPv{v.version} address on {me.ifname}"
    owners: dict[IPAddress, set[str]] = {a: set() for a in ask}
    for a in ask:
        if a in local:
            owners[a].add(mac_text(mac))
    probes = targets(cluster)
    pending: dict[tuple[str, int, int], tuple[str, str]] = {}  # (vip, vport, our port) -> (service, server)
    adverts: list[Advert] = []
    checks = {s_.name: next((c for c in s_.checks if c.type == "dns"), None) for s_ in cluster.services}
    t0 = time.monotonic()
    arp_rounds = [0.0, 0.15, 0.3]
    syn_rounds = [0.45, 1.0]
    arp_done = syn_done = 0
    while True:
        now = time.monotonic() - t0
        if arp_done < len(arp_rounds) and now >= arp_rounds[arp_done]:
            for a in ask:  # our own addresses too: another host answering for them is what we look for
                _ask(s, mac, me, a)
            arp_done += 1
        if syn_done < len(syn_rounds) and now >= syn_rounds[syn_done]:
            macs = _node_macs(nodes, owners)
            for t in probes:
                key = (t.service, t.server)
                if obs.paths.get(key) in ("answered", "refused"):
                    continue
                _send_probe(s, obs, t, macs, mac, me, local, nodes, checks, pending)
            syn_done += 1
        end = max(listen, syn_rounds[-1] + 0.6)
        if now >= end:
            break
        wait = min([r for r in arp_rounds[arp_done:] + syn_rounds[syn_done:]] + [end]) - now
        if select.select([s], [], [], max(0.0, wait))[0]:
            _take(s.recv(4096), mac, owners, adverts, pending, obs)
    macs = _node_macs(nodes, owners)
    obs.macs = macs
    obs.owners = {v: tuple(sorted(owners.get(v, ()))) for v in cluster.vips if v not in obs.skipped_vips}
    obs.adverts = tuple(adverts)
    for t in probes:
        obs.paths.setdefault((t.service, t.server), "silent")
    if cluster.ecmp:
        obs.flows = _ecmp_flows(cluster, s, mac, me, macs, local)
    return obs


FLOWS = 32  # crafted flows per director and ECMP service in `lvsdr audit`


def flow_picks(s: socket.socket, own_mac: bytes, director_mac: bytes, me: IPAddress, vip: IPAddress, port: int,
               ports: range, timeout: float, batch: int = 100) -> dict[int, str]:
    """{source port: MAC of the real server that answered} for one SYN per
    port of ``ports`` to ``vip``:``port``, addressed at one director's MAC
    (in direct routing the real server answers us itself; our kernel then
    resets each half-open connection, and so do we, through the director).
    ``s``: a raw socket bound to the
    segment's interface. ``batch`` SYNs in flight at once. A SYN-ACK counts
    only if it acknowledges this call's own SYN: a real server that another
    director's probe of the same port reached retransmits its own."""
    got: dict[int, str] = {}
    salt = random.getrandbits(32)
    for start in range(ports.start, ports.stop, batch):
        chunk = range(start, min(start + batch, ports.stop))
        for sport in chunk:
            s.send(tcp_syn(own_mac, director_mac, me, vip, sport, port, (sport * 7919 + salt) & 0xFFFFFFFF))
        deadline = time.monotonic() + timeout
        while any(p not in got for p in chunk):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], min(left, 0.2))[0]:
                if left <= 0:
                    break
                continue
            frame = s.recv(4096)
            rep = parse_reply(frame)
            if (rep is not None and frame[0:6] == own_mac and rep.src == vip and rep.sport == port and not rep.udp
                    and rep.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK and rep.dport in chunk
                    and rep.ack == (rep.dport * 7919 + salt + 1) & 0xFFFFFFFF):
                got[rep.dport] = mac_text(frame[6:12])
                # reset it through the same director (which has its entry), so that the real server forgets the
                # half-open connection: the RST our kernel sends goes by our route, where no director may have one
                s.send(tcp_rst(own_mac, director_mac, me, vip, rep.dport, port, rep.ack))
    return got


def _ecmp_flows(cluster: Cluster, s: socket.socket, mac: bytes, me: Source, macs: dict[str, str],
                local: set[IPAddress]) -> dict[str, dict[str, dict[int, str]]]:
    """An ECMP cluster: for each plain TCP service, the same FLOWS crafted
    flows sent to each other director -> {service: {director: {port: real
    server MAC}}} (a frame to our own MAC would not come back to us)."""
    base = 32768 + random.getrandbits(14)
    ports = range(base, base + FLOWS)
    out: dict[str, dict[str, dict[int, str]]] = {}
    for svc in cluster.services:
        src = me.of(svc.vip.version)
        if svc.protocol != "tcp" or svc.fwmark or svc.is_group or src is None:
            continue
        out[svc.name] = {d.name: flow_picks(s, mac, bytes.fromhex(macs[d.name].replace(":", "")), src, svc.vip,
                                            svc.port, ports, 1.0)
                         for d in cluster.directors if d.name in macs and d.address not in local}
    return out


def _node_macs(nodes: dict[str, IPAddress], owners: dict[IPAddress, set[str]]) -> dict[str, str]:
    return {name: sorted(owners[a])[0] for name, a in nodes.items() if owners.get(a)}


def _send_probe(s: socket.socket, obs: Observation, t: Target, macs: dict[str, str], mac: bytes,
                src: Source, local: set[IPAddress], nodes: dict[str, IPAddress],
                checks: Mapping[str, object], pending: dict[tuple[str, int, int], tuple[str, str]]) -> None:
    key = (t.service, t.server)
    me = src.of(t.vip.version)
    if me is None:
        obs.paths[key] = f"skipped: this host has no IPv{t.vip.version} address on {src.ifname}"
        return
    if nodes.get(t.server) in local:
        obs.paths[key] = "skipped: this host"
        return
    dst = macs.get(t.server)
    if dst is None:
        obs.paths[key] = "skipped: the backend does not answer ARP (NDP) for its address"
        return
    sport = 32768 + random.getrandbits(14)
    vip = t.vip
    if t.protocol == "tcp":
        frame = tcp_syn(mac, bytes.fromhex(dst.replace(":", "")), me, vip, sport, t.port, random.getrandbits(32))
    elif t.protocol == "udp" and (t.port == 53 or checks.get(t.service) is not None):
        check = checks.get(t.service)
        name = getattr(check, "query", None) or "."
        frame = dns_query(mac, bytes.fromhex(dst.replace(":", "")), me, vip, sport, t.port, os.getpid() & 0xFFFF,
                          name)
    else:
        obs.paths[key] = f"skipped: no probe for {t.protocol}/{t.port}"
        return
    obs.paths.pop(key, None)
    pending[(str(vip), t.port, sport)] = key
    s.send(frame)


def arp_owners(ifname: str, src: Source, vips: tuple[IPAddress, ...], listen: float = 0.3) -> dict[IPAddress, set[str]]:
    """The MACs that answer ARP (NDP for IPv6) for each of ``vips`` on ``ifname`` within ``listen`` s of one
    question each (this host's own answers are not seen: the caller knows what it holds)."""
    from pathlib import Path

    mac = bytes.fromhex(Path(f"/sys/class/net/{ifname}/address").read_text().strip().replace(":", ""))
    owners: dict[IPAddress, set[str]] = {v: set() for v in vips}
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((ifname, 0))
        for v in vips:
            _ask(s, mac, src, v)
        end = time.monotonic() + listen
        while (left := end - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            frame = s.recv(4096)
            got = parse_arp_reply(frame) or parse_neighbour_advert(frame)
            if got is not None and got[0] in owners and got[1] != mac_text(mac):
                owners[got[0]].add(got[1])
    return owners
