"""Ethernet frames of the probes lvsdr sends on the wire and of the answers it
reads (pure: bytes in, bytes out): ARP and NDP, a TCP SYN or RST, a DNS
question, addressed to a chosen MAC as IPVS delivers a packet in direct
routing. `lvsdr audit` (hooks/wire.py) and the agent's DR-path checks
(hooks/drpath.py) send them from one packet socket each."""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass

from .model import IPAddress

ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0003, 0x0800, 0x0806, 0x86DD
BROADCAST = b"\xff" * 6
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def mac_text(mac: bytes) -> str:
    return mac.hex(":")


def arp_request(src_mac: bytes, src_ip: ipaddress.IPv4Address, target: ipaddress.IPv4Address) -> bytes:
    eth = BROADCAST + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + src_mac + src_ip.packed + b"\x00" * 6 + target.packed
    return eth + arp


def arp_announce(src_mac: bytes, ip: ipaddress.IPv4Address) -> bytes:
    """A gratuitous ARP reply for ``ip`` at ``src_mac``, to everyone (what keepalived sends on taking a VIP)."""
    eth = BROADCAST + src_mac + struct.pack("!H", ETH_P_ARP)
    return eth + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 2) + src_mac + ip.packed + BROADCAST + ip.packed


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
    """A TCP RST (``seq``: the next sequence number of ours, the SYN's + 1 after a handshake), as tcp_syn frames
    it."""
    return _tcp(src_mac, dst_mac, src, dst, sport, dport, seq, TCP_RST)


def tcp_data(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int,
             seq: int, ack: int, data: bytes) -> bytes:
    """The segment completing a handshake and carrying ``data`` at once (ACK, PSH): an HTTP request."""
    return _tcp(src_mac, dst_mac, src, dst, sport, dport, seq, TCP_ACK | TCP_PSH, ack, data)


def _tcp(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int,
         seq: int, flags: int, ack: int = 0, data: bytes = b"") -> bytes:
    options = b"\x02\x04\x05\xb4" if flags == TCP_SYN else b""  # MSS 1460 on a SYN
    window = 64240 if flags & (TCP_SYN | TCP_ACK) else 0
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (5 + len(options) // 4) << 4, flags,
                      window, 0, 0) + options + data
    tcp = tcp[:16] + struct.pack("!H", _checksum(_pseudo(src, dst, 6, len(tcp)) + tcp)) + tcp[18:]
    return _frame(src_mac, dst_mac, src, dst, 6, tcp)


def _frame(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, proto: int, l4: bytes) -> bytes:
    if isinstance(src, ipaddress.IPv6Address) and isinstance(dst, ipaddress.IPv6Address):
        return dst_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + _ipv6(src, dst, proto, l4)
    assert isinstance(src, ipaddress.IPv4Address) and isinstance(dst, ipaddress.IPv4Address)
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + _ipv4(src, dst, proto, l4)


def udp_datagram(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int,
                 payload: bytes) -> bytes:
    """A UDP datagram carrying ``payload`` in an Ethernet frame, over IPv4 or IPv6."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack("!H", _checksum(_pseudo(src, dst, 17, len(udp)) + udp) or 0xFFFF) + udp[8:]
    return _frame(src_mac, dst_mac, src, dst, 17, udp)


def dns_question(qid: int, name: str, qtype: int = 1) -> bytes:
    """A DNS question for ``name`` (type ``qtype``: A by default), recursion desired."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.strip(".").split(".") if p) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


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
    return udp_datagram(src_mac, dst_mac, src, dst, sport, dport, dns_question(qid, name))


@dataclass(frozen=True)
class Reply:
    """A TCP or UDP packet addressed to us: enough to match a probe."""

    src: IPAddress
    sport: int
    dport: int
    flags: int  # TCP flags; 0 for UDP
    udp: bool
    ack: int = 0  # TCP: the acknowledgement number (a SYN-ACK's is the SYN's sequence number + 1)
    seq: int = 0  # TCP: the sequence number
    payload: bytes = b""  # TCP: the segment's data; UDP: the datagram's
    src_mac: bytes = b""


def parse_reply(frame: bytes) -> Reply | None:
    src: IPAddress
    if len(frame) >= 34 and frame[12:14] == b"\x08\x00":
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        src = ipaddress.IPv4Address(frame[26:30])
        l4 = frame[14 + ihl:14 + struct.unpack("!H", frame[16:18])[0]]  # a short frame's padding is not data
    elif len(frame) >= 54 and frame[12:14] == b"\x86\xdd":
        proto = frame[20]
        src = ipaddress.IPv6Address(frame[22:38])
        l4 = frame[54:54 + struct.unpack("!H", frame[18:20])[0]]
    else:
        return None
    if proto == 6 and len(l4) >= 14:
        sport, dport, seq, ack = struct.unpack("!HHII", l4[:12])
        offset = (l4[12] >> 4) * 4
        return Reply(src, sport, dport, l4[13], False, ack, seq, l4[offset:] if offset >= 20 else b"",
                     frame[6:12])
    if proto == 17 and len(l4) >= 8:
        sport, dport, length = struct.unpack("!HHH", l4[:6])
        return Reply(src, sport, dport, 0, True, payload=l4[8:max(8, length)], src_mac=frame[6:12])
    return None
