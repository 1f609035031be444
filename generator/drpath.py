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

from dataclasses import dataclass, field

from .frames import ETH_P_ARP, ETH_P_IP, ETH_P_IPV6
from .model import Backend, Check, Cluster, DrCheck, IPAddress, Service

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .metrics import Family

DR_PREFIX = "lvsdr_dr_"  # the track_file names (the importer knows lvsdr's own check by it)


@dataclass(frozen=True)
class HttpAsk:
    """The service's own HTTP check sent through the VIP: a GET completing the probe's handshake; the status line of
    the answer must be one of ``codes`` (inclusive ranges)."""

    request: bytes
    codes: tuple[tuple[int, int], ...]
    what: str  # "GET /health" (in the reason of a failure)

    def judge(self, data: bytes) -> str:
        """"" when ``data`` (the answer's first segment) starts with a status line of one of the codes, else why
        not."""
        line = data.split(b"\r\n", 1)[0][:80]
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return f"{self.what} through the VIP answered no HTTP status line ({line.decode('ascii', 'replace')!r})"
        code = int(parts[1])
        if any(lo <= code <= hi for lo, hi in self.codes):
            return ""
        wants = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.codes)
        return f"{self.what} through the VIP answered {code} (the check wants {wants})"


@dataclass(frozen=True)
class UdpAsk:
    """A UDP service's probe: the payload its own check sends (a DNS question, a UDP_CHECK's payload), to VIP:port at
    the backend's MAC; the path passes when the answer comes (and starts with ``reply``; a DNS answer is a response to
    the question, RCODE 0)."""

    payload: bytes
    reply: bytes = b""
    dns: bool = False
    what: str = ""

    def judge(self, data: bytes) -> str:
        if self.dns:
            if len(data) < 4 or data[:2] != self.payload[:2] or not data[2] & 0x80:
                return f"{self.what}: the answer through the VIP is not a DNS response to it"
            if data[3] & 0x0F:
                return f"{self.what}: the answer through the VIP has RCODE {data[3] & 0x0F}"
            return ""
        if not data.startswith(self.reply):
            return f"{self.what}: the answer through the VIP does not start with {self.reply.hex()}"
        return ""


@dataclass(frozen=True)
class Target:
    """One path to probe: a backend of a service, at one of the service's VIP:ports."""

    service: str
    backend: str
    address: IPAddress  # the backend's own address (its MAC is the neighbour entry of it)
    vip: IPAddress
    port: int
    ask: HttpAsk | UdpAsk | None = None  # TCP: the HTTP check sent on the handshake (by a holder of the VIP)

    @property
    def udp(self) -> bool:
        return isinstance(self.ask, UdpAsk)


DNS_QID = 0x4C56  # "LV": a DNS probe's question id (its answer is matched by the backend's MAC and the VIP:port)
DNS_TYPE_CODES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}


def _codes(texts: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    out = []
    for t in texts or ("200-299",):  # keepalived's default
        lo, _, hi = t.partition("-")
        out.append((int(lo), int(hi or lo)))
    return tuple(out)


def service_ask(checks: tuple[Check, ...], protocol: str, vip: IPAddress, port: int) -> HttpAsk | UdpAsk | None:
    """What a DR-path probe of VIP:port sends beyond a bare handshake, from the backend's own checks (the first that
    applies): TCP, an HTTP_GET checker of this port -> its first URL sent on the handshake; UDP, a DNS_CHECK or a
    UDP_CHECK that needs a reply, of this port -> its question or payload. None: a bare TCP handshake, or (UDP) no
    probe at all (silence cannot tell a backend without the VIP from a service that does not answer)."""
    for c in checks:
        if c.port not in (None, port):
            continue
        if protocol == "tcp" and c.type == "http":
            url = c.urls[0]
            host = url.virtualhost or c.virtualhost or (f"[{vip}]" if vip.version == 6 else str(vip))
            if not (url.virtualhost or c.virtualhost) and port != 80:
                host = f"{host}:{port}"
            request = (f"GET {url.path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lvsdr-dr-check\r\n"
                       "Connection: close\r\n\r\n").encode("ascii", "replace")
            return HttpAsk(request, _codes(url.status_codes), f"GET {url.path}")
        if protocol == "udp" and c.type == "dns":
            from .frames import dns_question

            qtype = c.query_type or "SOA"
            return UdpAsk(dns_question(DNS_QID, c.query or ".", DNS_TYPE_CODES[qtype]), dns=True,
                          what=f"DNS {qtype} {c.query or '.'}")
        if protocol == "udp" and c.type == "udp" and c.require_reply:
            payload = bytes.fromhex(c.payload.replace(" ", "")) if c.payload else b"lvsdr dr-path probe"
            reply = bytes.fromhex(c.reply.replace(" ", "")) if c.reply else b""
            return UdpAsk(payload, reply, what="the UDP check's payload")
    return None


def dr_file(state_dir: str, cluster: str, director: str, service: str, backend: str) -> str:
    """The file holding director ``director``'s verdict of one backend of one service (0 up, 1 down): one file
    per director, since each judges its own path (two directors sharing a state dir, as the lab's do, or a BACKUP
    that sends no HTTP request, never overwrite each other's verdict)."""
    return f"{state_dir}/dr-{cluster}-{director}-{service}-{backend}"


def _covered(cluster: Cluster) -> list[tuple[Service, Backend]]:
    """The backends the DR-path check covers: the real servers of every TCP service, and of every UDP service whose
    check sends something that is answered (DNS_CHECK, UDP_CHECK with require_reply). Not covered: other UDP and SCTP
    paths (silence cannot tell a backend without the VIP from a service that does not answer), and directors that
    are backends too: the MASTER's share is its own stack's (a probe sent to it goes through its IPVS, which may hand
    it back to the prober), and a BACKUP's VIP on lo is the failover hook's, made again at every transition."""
    out = []
    for s in cluster.services:
        for b in s.backends:
            if b.is_director:
                continue
            if s.protocol == "tcp" or (s.protocol == "udp" and all(
                    service_ask(b.checks if b.checks is not None else s.checks, s.protocol, vip, port) is not None
                    for vip, port in s.endpoints)):
                out.append((s, b))
    return out


def dr_files(cluster: Cluster, director: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(service, backend) -> (director ``director``'s verdict file, its track_file name), for every covered
    backend (``_covered``)."""
    if cluster.dr_check is None:
        return {}
    return {(s.name, b.server): (dr_file(cluster.state_dir, cluster.name, director, s.name, b.server),
                                 f"{DR_PREFIX}{s.name}_{b.server}") for s, b in _covered(cluster)}


def targets(cluster: Cluster, node: str) -> tuple[Target, ...]:
    """What director ``node`` probes: every VIP:port of every covered backend, with what its probe asks."""
    if cluster.dr_check is None:
        return ()
    return tuple(Target(s.name, b.server, b.address, vip, port,
                        service_ask(b.checks if b.checks is not None else s.checks, s.protocol, vip, port))
                 for s, b in _covered(cluster) for vip, port in s.endpoints)


# -- the capture filter (classic BPF: the kernel hands the agent only what it reads) ---------------------------

def bpf_program(port: int) -> list[tuple[int, int, int, int]]:
    """ARP replies, NDP neighbour advertisements, and TCP segments and UDP datagrams (IPv4 unfragmented, IPv6
    without extension headers) to ``port``, the probes' own source port: (code, jt, jf, k) per instruction."""
    ld_h, ld_b, jeq, jset, ret, ldx_msh, ld_ind_h = 0x28, 0x30, 0x15, 0x45, 0x06, 0xB1, 0x48
    prog: list[tuple[int, str, str, int] | str] = [
        (ld_h, "", "", 12),
        (jeq, "", "ip4", ETH_P_ARP),
        (ld_h, "", "", 20), (jeq, "yes", "no", 2),
        "ip4",
        (jeq, "", "ip6", ETH_P_IP),
        (ld_b, "", "", 23), (jeq, "l4", "", 6), (jeq, "", "no", 17),
        "l4",
        (ld_h, "", "", 20), (jset, "no", "", 0x1FFF),
        (ldx_msh, "", "", 14), (ld_ind_h, "", "", 16), (jeq, "yes", "no", port),
        "ip6",
        (jeq, "", "no", ETH_P_IPV6),
        (ld_b, "", "", 20), (jeq, "tcp6", "", 6), (jeq, "tcp6", "", 17), (jeq, "", "no", 58),
        (ld_b, "", "", 54), (jeq, "yes", "no", 136),  # an NDP neighbour advertisement (ICMPv6 136)
        "tcp6",
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
    new: bool = False  # a backend an edit added: out until its first round passes (then ``rise`` no more)

    def round(self, ok: bool, why: str, check: DrCheck) -> bool:
        """Count one round (every path of the pair passed: ``ok``); whether the verdict changed."""
        if self.new:
            if ok:
                self.up, self.new, self.streak = True, False, 0
                return True
            self.why = why
            return False
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

    def round(self, outcomes: dict[tuple[str, str], str | None]) -> list[tuple[tuple[str, str], Verdict]]:
        """``outcomes``: per pair, "" (every path answered), why one did not, or None (not probed this round: its
        MAC is being resolved; the verdict stands). A pair this round did not probe keeps its verdict (the round in
        flight when an edit added it): the agent forgets the pairs an edit removes (``DrProbe.configure``)."""
        for k in outcomes:
            self.pairs.setdefault(k, Verdict())
        changed = []
        for pair, why in sorted(outcomes.items()):
            v = self.pairs[pair]
            if why is not None and v.round(not why, why, self.check):
                changed.append((pair, v))
        return changed


# -- the agent's record (what `lvsdr metrics` reads) ---------------------------------------------------------------

@dataclass(frozen=True)
class DrRecord:
    """The DR-path checks' state on one director (``STATE_DIR/drpath-CLUSTER-NODE.json``, root's, 0600)."""

    paths: tuple[tuple[str, str, bool], ...] = ()  # (service, backend, passes)
    offenders: tuple[tuple[str, str, str], ...] = ()  # (VIP, MAC, node or MAC) answering ARP for a VIP now
    rounds: int = 0
    downs: int = 0  # verdicts turned failed
    ups: int = 0  # verdicts turned passed
    offences: int = 0  # offenders seen (each appearance once)

    def to_json(self) -> str:
        import json

        return json.dumps({"paths": [list(p) for p in self.paths], "offenders": [list(o) for o in self.offenders],
                           "rounds": self.rounds, "downs": self.downs, "ups": self.ups,
                           "offences": self.offences}) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> DrRecord:
        """``FactError`` naming ``where`` for anything the agent did not write."""
        from .node import FactError, record_json

        try:
            raw = record_json(text)
            counts = {k: int(raw[k]) for k in ("rounds", "downs", "ups", "offences")}
            if any(v < 0 for v in counts.values()):
                raise ValueError
            paths = tuple((str(s), str(b), bool(up)) for s, b, up in raw["paths"])
            offenders = tuple((str(v), str(m), str(n)) for v, m, n in raw["offenders"])
            return cls(paths, offenders, **counts)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            raise FactError(f"{where}: not the agent's record of DR-path checks (remove it; the agent writes it "
                            "again)") from None


def dr_record_path(state_dir: str, cluster: str, node: str) -> str:
    return f"{state_dir}/drpath-{cluster}-{node}.json"


def families(record: DrRecord) -> list[Family]:
    """The DR-path checks' metrics of one director."""
    from .metrics import Family  # not on the renderer's path

    return [
        Family("lvsdr_dr_path_up", "gauge", "1 while the backend's DR path passes (the probe to VIP:port at its MAC is "
               "answered), 0 while it fails and keepalived holds the backend out of IPVS.",
               tuple(((("service", s), ("backend", b)), float(up)) for s, b, up in record.paths)),
        Family("lvsdr_dr_path_transitions", "counter", "DR-path verdicts that changed, by direction.",
               (((("to", "down"),), float(record.downs)), ((("to", "up"),), float(record.ups)))),
        Family("lvsdr_dr_probe_rounds", "counter", "Rounds of DR-path probes this director concluded.",
               (((), float(record.rounds)),)),
        Family("lvsdr_arp_offender", "gauge", "1 while a node other than the VIP's holder answers ARP for the VIP "
               "(its traffic is stolen).", tuple(((("vip", v), ("mac", m), ("node", n)), 1.0)
                                                  for v, m, n in record.offenders)),
        Family("lvsdr_arp_offences", "counter", "Nodes seen answering ARP for a VIP they do not hold (each "
               "appearance once).", (((), float(record.offences)),)),
    ]
