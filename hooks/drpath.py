"""The agent's DR-path checks and ARP ownership watch, on the wire
(generator/drpath.py holds the pure part and says why).

One packet socket on the director's interface, with a kernel filter that
hands it only ARP replies and TCP segments to the probes' own port (a TCP
port bound, never listening, so nothing else on the node takes it). Every
``interval`` seconds a round: the last round's outcomes concluded (a probe
not answered by now failed), the verdicts updated and their files written,
then a SYN to every VIP:port at every backend's MAC and, for every IPv4 VIP
this director holds (every VIP in an ECMP cluster), an ARP request. A
SYN-ACK is reset at once (the backend keeps no half-open connection).

Cost per round: one netlink dump (the neighbour table), one SYN and one RST
per path, one ARP request per VIP held; bench/drpath.py measures it.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError
from lvsdr.generator.drpath import (
    DrRecord,
    HttpAsk,
    Target,
    UdpAsk,
    Verdicts,
    bpf_program,
    dr_files,
    dr_record_path,
    targets,
)
from lvsdr.generator.frames import (
    ETH_P_ALL,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Reply,
    arp_announce,
    arp_request,
    mac_text,
    neighbour_solicitation,
    parse_arp_reply,
    parse_neighbour_advert,
    parse_reply,
    tcp_data,
    tcp_rst,
    tcp_syn,
    udp_datagram,
)
from lvsdr.generator.model import Cluster, IPAddress

SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
MAX_FRAMES = 4096  # read per wake-up at most: a flood cannot hold the agent's loop
ASK_PER_ROUND = 32  # ARP/NDP questions per round at most: more VIPs are asked in turn
PATHS_PER_PAIR = 4  # VIP:ports probed per backend of a service per round at most: a group's are probed in turn
UDP_QUIET = 4  # rounds between UDP probes of a backend that did not answer (its ICMP budget is keepalived's too)


MASK = 0xFFFFFFFF


@dataclass
class Flow:
    """A probe's handshake completed with the service's HTTP request: its answer awaited."""

    target: Target
    mac: bytes
    src: IPAddress
    rcv: int  # the sequence number the answer's first byte has
    nxt: int  # ours after the request (its RST's)


@dataclass
class Round:
    """One round in flight: the probe of each sequence number, and what the pairs got."""

    probes: dict[int, tuple[Target, bytes, IPAddress]] = field(default_factory=dict)  # seq -> (path, MAC, from)
    flows: dict[int, Flow] = field(default_factory=dict)  # our next sequence number -> an HTTP request answered
    datagrams: dict[tuple[bytes, IPAddress, int], Target] = field(default_factory=dict)  # (MAC, VIP, port) -> path
    outcomes: dict[tuple[str, str], str | None] = field(default_factory=dict)  # "" passed, why not, None unknown
    offenders: dict[tuple[str, bytes], str] = field(default_factory=dict)  # (VIP, MAC) -> who
    void: str = ""  # why this round says nothing of the backends (this director's own link failed)

    def fail(self, t: Target, why: str) -> None:
        pair = (t.service, t.backend)
        if not self.outcomes.get(pair):
            self.outcomes[pair] = why

    def unknown(self, t: Target) -> None:
        """Not probed this round (its MAC is being resolved): the pair's verdict stands, unless another path of
        it failed."""
        pair = (t.service, t.backend)
        if self.outcomes.get(pair) == "":
            self.outcomes[pair] = None


class DrProbe:
    """The probes of one director (``configure`` takes a new cluster file); its socket sits in the agent's select."""

    def __init__(self, cluster: Cluster, node: str, log: Any) -> None:
        self.log = log
        self.sock: socket.socket | None = None
        self.port_sock: socket.socket | None = None
        self.udp_sock: socket.socket | None = None
        self.local: frozenset[IPAddress] = frozenset()  # the VIPs that are this director's own addresses now
        self.ifname = ""
        self.rnd: Round | None = None
        self.void = ""  # the last round was void (why)
        self.dirty = False  # an offender appeared since the record was written
        self.due = 0.0
        self.counts = {"rounds": 0, "offenders": 0, "downs": 0, "ups": 0}  # what the record carries
        self.offenders: dict[tuple[str, bytes], float] = {}  # named when last seen (logged once per appearance)
        self.by_mac: dict[bytes, str] = {}
        self.ipr: Any = None  # pyroute2's IPRoute, opened at the first round
        self.watching: frozenset[IPAddress] = frozenset()
        self.cursor = 0  # where the next round's questions start, with more VIPs than ASK_PER_ROUND
        self.rounds_started = 0
        self.udp_quiet: dict[IPAddress, int] = {}  # backends whose UDP probes wait this many rounds (no answer)
        self.files: dict[tuple[str, str], tuple[str, str]] = {}
        self.verdicts: Verdicts | None = None
        self.configured = False  # configure() ran: a later one is an edit of the cluster file
        self.cluster, self.node = cluster, node
        self.configure(cluster, node)

    # -- set-up --------------------------------------------------------------------------------------------------
    def configure(self, cluster: Cluster, node: str) -> None:
        self.cluster, self.node = cluster, node
        check = cluster.dr_check
        me = cluster.find_director(node)
        self.targets = targets(cluster, node) if check is not None else ()
        self.by_pair: dict[tuple[str, str], list[Target]] = {}
        for t in self.targets:
            self.by_pair.setdefault((t.service, t.backend), []).append(t)
        first, self.configured = not self.configured, True
        before = set(self.files)
        self.files = dr_files(cluster, node)
        # verdicts survive an edit (a backend held out stays out); a backend the edit added starts out, until its
        # first round passes: keepalived adds it as the reload lands, and a path that never worked takes no request
        known = self.verdicts.pairs if not first and self.verdicts is not None else {}
        self.verdicts = Verdicts(check, {k: v for k, v in known.items() if k in self.files}) \
            if check is not None else None
        if self.verdicts is not None and not first:
            from lvsdr.generator.drpath import Verdict

            for pair in set(self.files) - before:
                self.verdicts.pairs[pair] = Verdict(up=False, new=True, why="new: its first round has not passed")
        self.interval = check.interval if check is not None else 0.0
        self.vips = cluster.vips
        self.ecmp = cluster.ecmp
        self.me = me
        if check is None:
            self.close()
            self.clear_files()
            return
        if self.sock is None or self.ifname != me.interface:
            self.close()
            self.open(me.interface)
        self.write_all()

    def open(self, ifname: str) -> None:
        """The packet socket on ``ifname`` and the probes' port; a failure is logged and the checks stay off."""
        try:
            port_sock, udp_sock = reserve_port()
        except OSError as e:
            self.log.error("DR-path checks off: cannot reserve a port for the probes", error=str(e))
            return
        self.port = port_sock.getsockname()[1]
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            prog = bpf_program(self.port)
            code = b"".join(struct.pack("HBBI", *ins) for ins in prog)
            import ctypes

            buf = ctypes.create_string_buffer(code)
            fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.bind((ifname, 0))
            sock.setblocking(False)
            with open(f"/sys/class/net/{ifname}/address") as f:
                self.mac = bytes.fromhex(f.read().strip().replace(":", ""))
            self.ifindex = socket.if_nametoindex(ifname)
        except OSError as e:
            port_sock.close()
            udp_sock.close()
            self.log.error("DR-path checks off: cannot open a packet socket", interface=ifname, error=str(e))
            return
        # drain what arrived before the filter took effect
        with contextlib.suppress(OSError):
            for _ in range(MAX_FRAMES):
                sock.recv(65535)
        self.sock, self.port_sock, self.udp_sock, self.ifname = sock, port_sock, udp_sock, ifname
        self.due = time.monotonic()
        self.log.info("DR-path checks on", interface=ifname, paths=len(self.targets), interval=self.interval,
                      port=self.port)

    def close(self) -> None:
        self.close_ipr()
        for s in (self.sock, self.port_sock, self.udp_sock):
            if s is not None:
                s.close()
        self.sock = self.port_sock = self.udp_sock = None
        self.rnd = None

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def wait(self) -> float:
        """Seconds until the next round is due (the agent's select waits no longer)."""
        return max(0.0, self.due - time.monotonic()) if self.sock is not None else 3600.0

    # -- the files keepalived reads -------------------------------------------------------------------------------
    def write_all(self) -> None:
        """Every covered pair's file as its verdict stands (0 for a new pair); files of pairs gone removed."""
        if self.verdicts is None:
            return
        for pair, (path, _) in self.files.items():
            v = self.verdicts.pairs.get(pair)
            self.write(path, v is None or v.up)
        self.clear_files(keep={path for path, _ in self.files.values()})

    def write(self, path: str, up: bool) -> None:
        from .fast.files import write_atomic

        try:
            write_atomic(path, "0\n" if up else "1\n", 0o644)
        except (OSError, LvsdrError) as e:
            self.log.error("cannot write a DR-path verdict", file=path, error=str(e))

    def clear_files(self, keep: set[str] | None = None) -> None:
        """Remove this director's verdict files but ``keep`` (a file left behind would hold a backend out)."""
        prefix = f"dr-{self.cluster.name}-{self.node}-"
        others = tuple(f"dr-{self.cluster.name}-{d.name}-" for d in self.cluster.directors if d.name != self.node)
        with contextlib.suppress(OSError):
            for name in os.listdir(self.cluster.state_dir):
                path = f"{self.cluster.state_dir}/{name}"
                mine = name.startswith(prefix) and not name.startswith(others)  # lb1's, not lb1-b's
                if mine and path not in (keep or set()):
                    with contextlib.suppress(OSError):
                        os.unlink(path)

    # -- rounds ---------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Conclude the round in flight and start the next one, when due."""
        now = time.monotonic()
        if self.sock is None or now < self.due:
            return
        if self.rnd is not None:
            self.conclude(self.rnd)
        self.due = max(self.due + self.interval, now + self.interval * 0.5)
        self.rnd = Round()
        self.start(self.rnd)

    def this_round(self) -> list[Target]:
        """The paths probed this round: every one of a pair up to PATHS_PER_PAIR, else the next PATHS_PER_PAIR of
        its VIP:ports in turn (a group of 700 VIPs is 700 paths to each backend)."""
        self.rounds_started += 1
        out: list[Target] = []
        for paths in self.by_pair.values():
            if len(paths) <= PATHS_PER_PAIR:
                out += paths
            else:
                start = (self.rounds_started * PATHS_PER_PAIR) % len(paths)
                out += (paths + paths)[start:start + PATHS_PER_PAIR]
        return out

    def start(self, rnd: Round) -> None:
        neigh = self.neighbours()
        src = self.sources()
        self.udp_quiet = {a: n - 1 for a, n in self.udp_quiet.items() if n > 1}
        for t in self.this_round():
            pair = (t.service, t.backend)
            rnd.outcomes.setdefault(pair, "")
            mac = neigh.get(t.address)
            if mac is None:  # being resolved (a new backend, a flushed table): keepalived's own check sees a dead one
                rnd.unknown(t)
                self.resolve(t.address)
                continue
            s = src.get(t.vip.version)
            if s is None:
                rnd.fail(t, f"this director has no IPv{t.vip.version} address to probe from")
                continue
            if isinstance(t.ask, UdpAsk):
                if self.udp_quiet.get(t.address, 0) > 0:  # it did not answer: leave its ICMP budget to keepalived
                    rnd.unknown(t)
                    continue
                rnd.datagrams[mac, t.vip, t.port] = t
                self.send(udp_datagram(self.mac, mac, s, t.vip, self.port, t.port, t.ask.payload))
                continue
            seq = random.getrandbits(32)
            while seq in rnd.probes:
                seq = random.getrandbits(32)
            rnd.probes[seq] = (t, mac, s)
            self.send(tcp_syn(self.mac, mac, s, t.vip, self.port, t.port, seq))
        self.by_mac = {mac: name for name, mac in self.node_macs(neigh).items()}
        for d in self.cluster.directors:  # the other directors by MAC too: an offender may be one (a split)
            if d.name != self.node and d.address not in neigh and d.address.version in src:
                self.resolve(d.address)
        self.watching, self.local = self.held_vips()
        for vip in self.asked(sorted(self.watching, key=lambda v: (v.version, int(v)))):
            me = src.get(vip.version)
            if isinstance(vip, ipaddress.IPv4Address) and isinstance(me, ipaddress.IPv4Address):
                self.send(arp_request(self.mac, me, vip))
            elif isinstance(vip, ipaddress.IPv6Address) and isinstance(me, ipaddress.IPv6Address):
                self.send(neighbour_solicitation(self.mac, me, vip))

    def conclude(self, rnd: Round) -> None:
        if rnd.void:  # the director's own link, not the backends': no verdict changes on it
            if not self.void:
                self.log.warning("DR-path checks paused: this director's link failed", interface=self.ifname,
                                 error=rnd.void)
            self.void = rnd.void
            return
        if self.void:
            self.log.info("DR-path checks resumed", interface=self.ifname)
            self.void = ""
        for t in [t for t, _, _ in rnd.probes.values()] + list(rnd.datagrams.values()):
            rnd.fail(t, f"no answer from {t.vip}:{t.port} at its MAC (the VIP is not on the backend, or the path "
                        "to it is cut)")
        for t in rnd.datagrams.values():
            # a closed UDP port answers with ICMP, which the backend's kernel sends about once a second to each
            # director: probing it every round would leave none for keepalived's own UDP_CHECK of the backend (it
            # waited 16 s for one in the IPVS tier); a backend that did not answer is asked every UDP_QUIET rounds
            self.udp_quiet[t.address] = UDP_QUIET
        for flow in rnd.flows.values():  # the handshake passed; an answer slower than a round is keepalived's to judge
            self.send(tcp_rst(self.mac, flow.mac, flow.src, flow.target.vip, self.port, flow.target.port, flow.nxt))
        self.counts["rounds"] += 1
        for (vip, _mac), who in rnd.offenders.items():
            for t in self.targets:
                if t.backend == who and str(t.vip) == vip:
                    rnd.fail(t, f"answers ARP for {vip}")
        assert self.verdicts is not None
        before = len(self.offenders)
        # a round in flight at an edit may hold pairs the edit removed: not counted (nor written)
        changed = self.verdicts.round({k: v for k, v in rnd.outcomes.items() if k in self.files})
        for pair, v in changed:
            path = self.files[pair][0]
            self.write(path, v.up)
            self.counts["ups" if v.up else "downs"] += 1
            if v.up:
                self.log.info("DR path back: backend returns to IPVS", service=pair[0], backend=pair[1])
            else:
                self.log.warning("DR path failed: backend out of IPVS", service=pair[0], backend=pair[1],
                                 why=v.why)
        now = time.monotonic()
        for (vip, mac), seen in list(self.offenders.items()):
            cycle = -(-len(self.watching) // ASK_PER_ROUND)  # rounds until its VIP is asked again
            if now - seen >= (cycle + 3) * self.interval:  # no answer to the last questions: it stopped
                del self.offenders[vip, mac]
                self.log.info("ARP for the VIP answered by its holder alone again", vip=vip,
                              node=self.by_mac.get(mac, mac_text(mac)))
        self.save(bool(changed) or len(self.offenders) != before or self.dirty)
        self.dirty = False

    def on_readable(self) -> None:
        """Take the frames queued on the socket (at most MAX_FRAMES)."""
        if self.sock is None:
            return
        for _ in range(MAX_FRAMES):
            try:
                frame, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as e:  # the link went down (ENETDOWN, once): the socket stays bound, the round is void
                if self.rnd is not None:
                    self.rnd.void = str(e)
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            reply = parse_reply(frame)
            if reply is not None:
                if reply.udp:
                    self.on_udp(reply)
                else:
                    self.on_tcp(reply)
                continue
            arp = parse_arp_reply(frame) or parse_neighbour_advert(frame)
            if arp is not None:
                self.on_arp(arp[0], bytes.fromhex(arp[1].replace(":", "")))

    def on_tcp(self, r: Reply) -> None:
        if self.rnd is None or r.dport != self.port:
            return
        flow = self.rnd.flows.get(r.ack)
        if flow is not None and r.src == flow.target.vip and r.sport == flow.target.port:
            self.on_answer(flow, r)
            return
        seq = (r.ack - 1) & MASK
        probe = self.rnd.probes.get(seq)
        if probe is None or r.src != probe[0].vip or r.sport != probe[0].port:
            return
        t, mac, me = self.rnd.probes.pop(seq)
        if r.flags & TCP_SYN and r.flags & TCP_ACK:
            if isinstance(t.ask, HttpAsk) and t.vip in self.local:  # a holder's kernel drops the answers unseen
                flow = Flow(t, mac, me, (r.seq + 1) & MASK, (r.ack + len(t.ask.request)) & MASK)
                self.rnd.flows[flow.nxt] = flow
                self.send(tcp_data(self.mac, mac, me, t.vip, self.port, t.port, r.ack, flow.rcv, t.ask.request))
            else:
                self.send(tcp_rst(self.mac, mac, me, t.vip, self.port, t.port, r.ack))
        elif r.flags & TCP_RST:
            self.rnd.fail(t, f"{t.vip}:{t.port} reset: the backend holds the VIP, nothing listens on the port")
        else:
            self.rnd.fail(t, f"{t.vip}:{t.port} answered with flags {r.flags:#x}")

    def on_answer(self, flow: Flow, r: Reply) -> None:
        """A segment of the answer to a probe's HTTP request: its first data judged, the connection reset."""
        assert self.rnd is not None and isinstance(flow.target.ask, HttpAsk)
        t, ask = flow.target, flow.target.ask
        if r.flags & TCP_RST:
            why = f"{ask.what} through the VIP: the connection was reset"
        elif r.payload and r.seq == flow.rcv:
            why = ask.judge(r.payload)
        elif r.flags & TCP_FIN:
            why = f"{ask.what} through the VIP: closed without an answer"
        else:
            return  # the request's acknowledgement, or a segment out of order
        del self.rnd.flows[flow.nxt]
        if not r.flags & TCP_RST:
            self.send(tcp_rst(self.mac, flow.mac, flow.src, t.vip, self.port, t.port, flow.nxt))
        if why:
            self.rnd.fail(t, why)

    def on_udp(self, r: Reply) -> None:
        if self.rnd is None or r.dport != self.port:
            return
        t = self.rnd.datagrams.pop((r.src_mac, r.src, r.sport), None)
        if t is not None and isinstance(t.ask, UdpAsk):
            why = t.ask.judge(r.payload)
            if why:
                self.rnd.fail(t, why)

    def on_arp(self, sender: IPAddress, mac: bytes) -> None:
        if mac == self.mac or sender not in self.watching:
            return
        key = (str(sender), mac)
        who = self.by_mac.get(mac, mac_text(mac))
        if self.rnd is not None:
            self.rnd.offenders[key] = who
        if key not in self.offenders:
            self.counts["offenders"] += 1
            self.dirty = True
            self.log.warning("a node other than the VIP's holder answers ARP for it: its traffic is stolen",
                             vip=str(sender), mac=mac_text(mac), node=who, holder=None if self.ecmp else self.me.name)
            if not self.ecmp and isinstance(sender, ipaddress.IPv4Address):  # the clients back: a gratuitous ARP
                self.send(arp_announce(self.mac, sender))
        self.offenders[key] = time.monotonic()

    # -- facts ----------------------------------------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.send(frame)
        except OSError as e:  # a downed link or a full queue: not the backends' fault, the round says nothing
            if self.rnd is not None:
                self.rnd.void = str(e)

    def neighbours(self) -> dict[IPAddress, bytes]:
        """The interface's neighbour entries that carry a MAC (one netlink dump)."""
        from pyroute2 import IPRoute

        out: dict[IPAddress, bytes] = {}
        nud_failed, nud_incomplete = 0x20, 0x01
        try:
            if self.ipr is None:  # one netlink socket for the agent's life: a new one per round costs more
                self.ipr = IPRoute()
            for msg in self.ipr.get_neighbours(ifindex=self.ifindex):
                dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
                if dst and mac and not msg["state"] & (nud_failed | nud_incomplete):
                    out[ipaddress.ip_address(dst)] = bytes.fromhex(mac.replace(":", ""))
        except Exception as e:  # pyroute2 raises its own errors: a round without MACs (none counted), said
            self.log.error("cannot read the neighbour table", error=str(e))
            self.close_ipr()
        return out

    def close_ipr(self) -> None:
        if self.ipr is not None:
            with contextlib.suppress(Exception):
                self.ipr.close()
        self.ipr = None

    def resolve(self, address: IPAddress) -> None:
        """Have the kernel resolve ``address`` (a datagram to its discard port; the next round finds the MAC)."""
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(b"", (str(address), 9))

    def sources(self) -> dict[int, IPAddress]:
        """The director's own address of each family to probe from: its `address`, else a global one on its
        interface that is not a VIP."""
        from .fast.netlink import addresses

        out: dict[int, IPAddress] = {self.me.address.version: self.me.address}
        vips = set(self.cluster.vips)
        for a in addresses():
            ip = a.address.ip
            if a.ifname == self.ifname and ip not in vips and not ip.is_link_local and ip.version not in out:
                out[ip.version] = ip
        return out

    def asked(self, vips: list[IPAddress]) -> list[IPAddress]:
        """The VIPs asked about this round: all of them up to ASK_PER_ROUND, else the next ASK_PER_ROUND in turn (a
        question is a broadcast every host of the segment takes: 700 VIPs every 0.5 s made a lab's VRRP miss its
        adverts)."""
        if len(vips) <= ASK_PER_ROUND:
            return vips
        start = self.cursor % len(vips)
        self.cursor = start + ASK_PER_ROUND
        return (vips + vips)[start:start + ASK_PER_ROUND]

    def held_vips(self) -> tuple[frozenset[IPAddress], frozenset[IPAddress]]:
        """(The VIPs whose ARP (NDP) answers this director watches: those it holds on its interface (VRRP), every
        one (ECMP: nobody should answer); the VIPs that are its own addresses on any interface, lo too: a packet
        from one of them is dropped by its kernel unseen, so a probe may complete a handshake there)."""
        from .fast.netlink import raw_addresses

        on_if, anywhere = set(), set()
        for ifname, cidr, _ in raw_addresses():
            a = cidr.split("/")[0]
            anywhere.add(a)
            if ifname != "lo":
                on_if.add(a)
        watched = self.vips if self.ecmp else tuple(v for v in self.vips if str(v) in on_if)
        return frozenset(watched), frozenset(v for v in self.vips if str(v) in anywhere)

    def node_macs(self, neigh: dict[IPAddress, bytes]) -> dict[str, bytes]:
        """The cluster's nodes by MAC, as the neighbour table knows them (to name an offender)."""
        nodes = [(n.name, n.address) for n in self.cluster.directors]
        nodes += [(n.name, n.address) for n in self.cluster.real_servers]
        return {name: neigh[a] for name, a in nodes if a in neigh}

    def record(self) -> DrRecord:
        """What `lvsdr metrics` reads: the verdicts, the offenders, the counts."""
        pairs = self.verdicts.pairs if self.verdicts is not None else {}
        return DrRecord(tuple((s, b, v.up) for (s, b), v in sorted(pairs.items())),
                        tuple(sorted((vip, mac_text(mac), self.by_mac.get(mac, mac_text(mac)))
                                     for vip, mac in self.offenders)),
                        self.counts["rounds"], self.counts["downs"], self.counts["ups"], self.counts["offenders"])

    def save(self, changed: bool) -> None:
        """The record rewritten when a verdict or an offender changed, and every 20 rounds (the counts)."""
        if not changed and self.counts["rounds"] % 20:
            return
        from .fast.files import write_atomic

        path = dr_record_path(self.cluster.state_dir, self.cluster.name, self.node)
        try:
            write_atomic(path, self.record().to_json(), 0o600)
        except (OSError, LvsdrError) as e:
            self.log.error("cannot write the DR-path record", file=path, error=str(e))


def hold_new_backends(cluster: Cluster, node: str) -> list[str]:
    """Before `watch` reloads keepalived with an edit: the verdict file of each backend new to the DR-path checks
    written 1 (out), when this director's agent is probing (its record written within the last 30 s): keepalived
    then adds the backend held out, and the agent lets it in at its first passing round. Without an agent nothing
    is written (a file left at 1 by nobody would hold a backend out for good). The files written."""
    if cluster.dr_check is None:
        return []
    record = Path(dr_record_path(cluster.state_dir, cluster.name, node))
    try:
        fresh = time.time() - record.stat().st_mtime < max(30.0, 40 * cluster.dr_check.interval)
    except OSError:
        return []
    if not fresh:
        return []
    from .fast.files import write_atomic

    out = []
    for path, _ in dr_files(cluster, node).values():
        if not os.path.lexists(path):
            with contextlib.suppress(OSError, LvsdrError):
                write_atomic(path, "1\n", 0o644)
                out.append(path)
    return out


def reserve_port() -> tuple[socket.socket, socket.socket]:
    """A port for the probes, TCP and UDP alike: a TCP socket bound, never listening, and a UDP one on the same
    number (nothing else on the node takes it; an answer the kernel would deliver to the UDP socket, on a director
    not holding the VIP, lands in a receive buffer kept at the kernel's minimum and is never read)."""
    for _ in range(20):
        socks: list[socket.socket] = []
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                try:
                    s = socket.socket(socket.AF_INET6, kind)
                    socks.append(s)
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                    s.bind(("::", socks[0].getsockname()[1] if len(socks) == 2 else 0))
                except OSError as e:
                    if e.errno == errno.EADDRINUSE:
                        raise
                    # no IPv6 here: an IPv4 port (IPv6 paths cannot exist then)
                    socks.pop().close()
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("0.0.0.0", socks[0].getsockname()[1] if len(socks) == 2 else 0))
            socks[1].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            return socks[0], socks[1]
        except OSError as e:
            for s in socks:
                s.close()
            if e.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, "no port free for TCP and UDP alike")


def read_dr_record(path: Path) -> DrRecord | None:
    """The agent's record of its DR-path checks; None when no agent has written one."""
    from .fast.files import read_trusted

    try:
        return DrRecord.from_json(read_trusted(path, 16 << 20).decode("utf-8", errors="replace"), str(path))
    except FileNotFoundError:
        return None
