"""Probes on the wire for `lvsdr audit`: ARP for every VIP and node, VRRP
adverts, and a TCP SYN (or a DNS query) to each VIP:port addressed to each
backend's MAC, as IPVS delivers it; in an ECMP cluster, the same crafted
flows to each director, to see which real server each picks. Raw frames from one AF_PACKET socket,
sent and read in one loop; frame building and parsing are pure functions
(tested on bytes). Nothing here changes a node: an ARP request, a SYN the
kernel answers with RST, a DNS question.
"""

from __future__ import annotations

import ipaddress
import os
import random
import select
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lvsdr.generator.audit import Advert, Observation, Target, targets
from lvsdr.generator.model import Cluster, IPAddress

ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0003, 0x0800, 0x0806, 0x86DD
BROADCAST = b"\xff" * 6
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10


# -- pure: frames -------------------------------------------------------------

def mac_text(mac: bytes) -> str:
    return mac.hex(":")


def arp_request(src_mac: bytes, src_ip: ipaddress.IPv4Address, target: ipaddress.IPv4Address) -> bytes:
    eth = BROADCAST + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + src_mac + src_ip.packed + b"\x00" * 6 + target.packed
    return eth + arp


def parse_arp_reply(frame: bytes) -> tuple[ipaddress.IPv4Address, str] | None:
    """(sender IP, sender MAC) of an ARP reply, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = struct.unpack("!H", frame[20:22])[0]
    if op != 2:
        return None
    return ipaddress.IPv4Address(frame[28:32]), mac_text(frame[22:28])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, proto: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), random.getrandbits(16), 0x4000, 64, proto, 0,
                       src.packed, dst.packed)
    return head[:10] + struct.pack("!H", _checksum(head)) + head[12:] + payload


def _ipv6(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, proto: int, payload: bytes,
          hops: int = 64) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), proto, hops) + src.packed + dst.packed + payload


def _pseudo(src: IPAddress, dst: IPAddress, proto: int, length: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def tcp_syn(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int,
            seq: int) -> bytes:
    """A TCP SYN in an Ethernet frame, over IPv4 or IPv6 (the family of ``dst``)."""
    return _tcp(src_mac, dst_mac, src, dst, sport, dport, seq, TCP_SYN)


def tcp_rst(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int,
            seq: int) -> bytes:
    """A TCP RST (``seq``: the SYN's sequence number + 1), as tcp_syn frames it."""
    return _tcp(src_mac, dst_mac, src, dst, sport, dport, seq, TCP_RST)


def _tcp(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int,
         seq: int, flags: int) -> bytes:
    options = b"\x02\x04\x05\xb4" if flags == TCP_SYN else b""  # MSS 1460 on a SYN
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(options) // 4) << 4, flags,
                      64240 if flags == TCP_SYN else 0, 0, 0) + options
    tcp = tcp[:16] + struct.pack("!H", _checksum(_pseudo(src, dst, 6, len(tcp)) + tcp)) + tcp[18:]
    if isinstance(src, ipaddress.IPv6Address) and isinstance(dst, ipaddress.IPv6Address):
        return dst_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + _ipv6(src, dst, 6, tcp)
    assert isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address)
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + _ipv4(src, dst, 6, tcp)


def solicited_node(target: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(target) & 0xFFFFFF))


def neighbour_solicitation(src_mac: bytes, src: ipaddress.IPv6Address, target: ipaddress.IPv6Address) -> bytes:
    """NDP's ARP request: to the target's solicited-node group, with our MAC."""
    group = solicited_node(target)
    icmp = struct.pack("!BBHI", 135, 0, 0, 0) + target.packed + struct.pack("!BB", 1, 1) + src_mac
    icmp = icmp[:2] + struct.pack("!H", _checksum(_pseudo(src, group, 58, len(icmp)) + icmp)) + icmp[4:]
    dst_mac = b"\x33\x33" + group.packed[-4:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + _ipv6(src, group, 58, icmp, hops=255)


def parse_neighbour_advert(frame: bytes) -> tuple[ipaddress.IPv6Address, str] | None:
    """(target, the answering MAC) of an NDP neighbour advertisement, else None."""
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 136:
        return None
    target = ipaddress.IPv6Address(frame[62:78])
    opts = frame[78:]
    while len(opts) >= 8 and opts[1]:
        if opts[0] == 2:  # target link-layer address
            return target, mac_text(opts[2:8])
        opts = opts[opts[1] * 8:]
    return target, mac_text(frame[6:12])


def dns_query(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int, qid: int,
              name: str) -> bytes:
    """A DNS question (A for ``name``) in an Ethernet frame, over IPv4 or IPv6."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p) + b"\x00"
    dns = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(dns), 0) + dns
    udp = udp[:6] + struct.pack("!H", _checksum(_pseudo(src, dst, 17, len(udp)) + udp) or 0xFFFF) + udp[8:]
    if isinstance(src, ipaddress.IPv6Address) and isinstance(dst, ipaddress.IPv6Address):
        return dst_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + _ipv6(src, dst, 17, udp)
    assert isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address)
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + _ipv4(src, dst, 17, udp)


@dataclass(frozen=True)
class Reply:
    """A TCP or UDP packet addressed to us: enough to match a probe."""

    src: IPAddress
    sport: int
    dport: int
    flags: int  # TCP flags; 0 for UDP
    udp: bool
    ack: int = 0  # TCP: the acknowledgement number (a SYN-ACK's is the SYN's sequence number + 1)


def parse_reply(frame: bytes) -> Reply | None:
    src: IPAddress
    if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        src = ipaddress.IPv4Address(frame[26:30])
        l4 = frame[14 + ihl:]
    elif len(frame) >= 54 and frame[12:14] == b"\x86\xdd":
        proto = frame[20]
        src = ipaddress.IPv6Address(frame[22:38])
        l4 = frame[54:]
    else:
        return None
    if proto == 6 and len(l4) >= 14:
        sport, dport, _, ack = struct.unpack("!HHII", l4[:12])
        return Reply(src, sport, dport, l4[13], False, ack)
    if proto == 17 and len(l4) >= 8:
        sport, dport = struct.unpack("!HH", l4[:4])
        return Reply(src, sport, dport, 0, True)
    return None


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
