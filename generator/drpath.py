"""DR-path checks and ARP ownership, the pure part (the agent's hooks/drpath.py
sends and reads the packets).

keepalived's checkers connect to a backend's own address; IPVS in direct
routing sends the client's packet to the **VIP** at the backend's MAC. A
backend that lost the VIP on lo (or whose redirect is gone) passes its
checks and drops its share of the traffic. A DR-path probe is the packet
IPVS would send: a TCP SYN from the director's own address to VIP:port, in
an Ethernet frame to the backend's MAC. The backend answers from the VIP
(SYN-ACK: the path works; RST: it holds the VIP but nothing listens; nothing:
it does not take the VIP) straight back to the director, which captures the
answer (a director holding the VIP drops a packet from its own address, so
the answer is read from a packet socket, before IP) and resets the half-open
connection.

The verdict of each (service, backend) reaches keepalived through a file
(``dr_file``) read by a FILE_CHECK in the backend's real_server block, beside
its own checkers: keepalived takes a real server out while any of its
checkers fails, and a FILE_CHECK follows its file by inotify at once. A
missing file reads as 0 (up): a director without the agent keeps
keepalived's checks alone, never a backend out for nobody's verdict.

ARP ownership: the director holding a VIP (every director, in an ECMP
cluster) asks who has it; any answer is from a node that should not give one
(a real server whose ARP suppression is gone steals the VIP's traffic).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from .model import Cluster, DrCheck, IPAddress

ETH_IP, ETH_IP6, ETH_ARP = 0x0800, 0x86DD, 0x0806
SYN, RST, ACK = 0x02, 0x04, 0x10
BROADCAST = b"\xff" * 6
DR_PREFIX = "lvsdr_dr_"  # the track_file names (the importer knows lvsdr's own check by it)


@dataclass(frozen=True)
class Target:
    """One path to probe: a backend of a service, at one of the service's VIP:ports."""

    service: str
    backend: str
    address: IPAddress  # the backend's own address (its MAC is the neighbour entry of it)
    vip: IPAddress
    port: int


def dr_file(state_dir: str, cluster: str, service: str, backend: str) -> str:
    """The file holding the verdict of one backend of one service (0 up, 1 down)."""
    return f"{state_dir}/dr-{cluster}-{service}-{backend}"


def dr_files(cluster: Cluster) -> dict[tuple[str, str], tuple[str, str]]:
    """(service, backend) -> (the verdict's file, its track_file name), for every backend the DR-path check covers:
    the backends of every TCP service (UDP and SCTP paths are not probed: an answer needs the application's
    own payload)."""
    if cluster.dr_check is None:
        return {}
    return {(s.name, b.server): (dr_file(cluster.state_dir, cluster.name, s.name, b.server),
                                 f"{DR_PREFIX}{s.name}_{b.server}")
            for s in cluster.services if s.protocol == "tcp" for b in s.backends}


def targets(cluster: Cluster, node: str) -> tuple[Target, ...]:
    """What director ``node`` probes: every VIP:port of every covered backend but itself (IPVS hands its own
    share to its local stack: no wire to check)."""
    covered = dr_files(cluster)
    return tuple(Target(s.name, b.server, b.address, vip, port)
                 for s in cluster.services for b in s.backends if (s.name, b.server) in covered and b.server != node
                 for vip, port in s.endpoints)


# -- packets ------------------------------------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_frame(src_mac: bytes, dst_mac: bytes, src: IPAddress, dst: IPAddress, sport: int, dport: int, seq: int,
              ack: int, flags: int) -> bytes:
    """An Ethernet frame carrying one TCP segment without payload (a SYN or a RST)."""
    window = 64240 if flags & SYN else 0
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, len(head))
        tcp = head[:16] + struct.pack("!H", _checksum(pseudo + head)) + head[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src.packed, dst.packed)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return dst_mac + src_mac + struct.pack("!H", ETH_IP) + ip + tcp
    pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(head), 6)
    tcp = head[:16] + struct.pack("!H", _checksum(pseudo + head)) + head[18:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, src.packed, dst.packed)
    return dst_mac + src_mac + struct.pack("!H", ETH_IP6) + ip6 + tcp


def arp_frame(src_mac: bytes, src: ipaddress.IPv4Address, target: ipaddress.IPv4Address, reply: bool = False,
              dst_mac: bytes = BROADCAST) -> bytes:
    """An ARP request (who has ``target``, tell ``src``) or, ``reply``, a gratuitous reply for ``src``."""
    op = 2 if reply else 1
    target_mac = dst_mac if reply else b"\0" * 6
    return dst_mac + src_mac + struct.pack("!HHHBBH6s4s6s4s", ETH_ARP, 1, ETH_IP, 6, 4, op, src_mac, src.packed,
                                          target_mac, target.packed)


@dataclass(frozen=True)
class TcpReply:
    mac: bytes  # who sent it
    src: IPAddress
    dst: IPAddress
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int


@dataclass(frozen=True)
class ArpReply:
    mac: bytes
    sender: IPAddress


def parse_frame(frame: bytes) -> TcpReply | ArpReply | None:
    """A captured frame as what the checks read: a TCP segment, an ARP reply; None for anything else or short."""
    if len(frame) < 14:
        return None
    (kind,) = struct.unpack_from("!H", frame, 12)
    mac = frame[6:12]
    try:
        if kind == ETH_ARP and len(frame) >= 42:
            op, sha, spa = struct.unpack_from("!H6s4s", frame, 20)
            return ArpReply(sha, ipaddress.IPv4Address(spa)) if op == 2 else None
        if kind == ETH_IP and len(frame) >= 34 and frame[14] >> 4 == 4 and frame[23] == 6:
            ihl = (frame[14] & 0x0F) * 4
            src, dst = ipaddress.IPv4Address(frame[26:30]), ipaddress.IPv4Address(frame[30:34])
            return _tcp(frame, 14 + ihl, mac, src, dst)
        if kind == ETH_IP6 and len(frame) >= 54 and frame[20] == 6:
            src6, dst6 = ipaddress.IPv6Address(frame[22:38]), ipaddress.IPv6Address(frame[38:54])
            return _tcp(frame, 54, mac, src6, dst6)
    except (struct.error, ValueError):
        return None
    return None


def _tcp(frame: bytes, at: int, mac: bytes, src: IPAddress, dst: IPAddress) -> TcpReply | None:
    if len(frame) < at + 14:
        return None
    sport, dport, seq, ack, _, flags = struct.unpack_from("!HHIIBB", frame, at)
    return TcpReply(mac, src, dst, sport, dport, seq, ack, flags)


# -- the capture filter (classic BPF: the kernel hands the agent only what it reads) ---------------------------

def bpf_program(port: int) -> list[tuple[int, int, int, int]]:
    """ARP replies, and TCP segments (IPv4 unfragmented, IPv6 without extension headers) to ``port``, the
    probes' own source port: (code, jt, jf, k) per instruction."""
    ld_h, ld_b, jeq, jset, ret, ldx_msh, ld_ind_h = 0x28, 0x30, 0x15, 0x45, 0x06, 0xB1, 0x48
    prog: list[tuple[int, str, str, int] | str] = [
        (ld_h, "", "", 12),
        (jeq, "", "ip4", ETH_ARP),
        (ld_h, "", "", 20), (jeq, "yes", "no", 2),
        "ip4",
        (jeq, "", "ip6", ETH_IP),
        (ld_b, "", "", 23), (jeq, "", "no", 6),
        (ld_h, "", "", 20), (jset, "no", "", 0x1FFF),
        (ldx_msh, "", "", 14), (ld_ind_h, "", "", 16), (jeq, "yes", "no", port),
        "ip6",
        (jeq, "", "no", ETH_IP6),
        (ld_b, "", "", 20), (jeq, "", "no", 6),
        (ld_h, "", "", 56), (jeq, "yes", "no", port),
        "yes", (ret, "", "", 0xFFFF),
        "no", (ret, "", "", 0),
    ]
    labels: dict[str, int] = {}
    code: list[tuple[int, str, str, int]] = []
    for ins in prog:
        if isinstance(ins, str):
            labels[ins] = len(code)
        else:
            code.append(ins)
    out = []
    for pc, (op, jt, jf, k) in enumerate(code):
        out.append((op, labels[jt] - pc - 1 if jt else 0, labels[jf] - pc - 1 if jf else 0, k))
    return out


# -- verdicts -------------------------------------------------------------------------------------------------------

@dataclass
class Verdict:
    """One (service, backend): up until ``fall`` failed rounds in a row, down until ``rise`` good ones."""

    up: bool = True
    streak: int = 0  # rounds in a row against the current verdict
    why: str = ""  # the last failure

    def round(self, ok: bool, why: str, check: DrCheck) -> bool:
        """Count one round (every path of the pair passed: ``ok``); whether the verdict changed."""
        if ok == self.up:
            self.streak = 0
            return False
        self.streak += 1
        if not ok:
            self.why = why
        if self.streak >= (check.fall if self.up else check.rise):
            self.up, self.streak = ok, 0
            return True
        return False


@dataclass
class Verdicts:
    """Every pair's verdict; a round's outcomes in, the pairs whose verdict changed out."""

    check: DrCheck
    pairs: dict[tuple[str, str], Verdict] = field(default_factory=dict)

    def round(self, outcomes: dict[tuple[str, str], str]) -> list[tuple[tuple[str, str], Verdict]]:
        """``outcomes``: per pair, "" (every path answered) or why one did not."""
        self.pairs = {k: self.pairs.get(k, Verdict()) for k in outcomes}
        changed = []
        for pair, why in sorted(outcomes.items()):
            v = self.pairs[pair]
            if v.round(not why, why, self.check):
                changed.append((pair, v))
        return changed
