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
from .model import Cluster, DrCheck, IPAddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .metrics import Family

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
    the real servers of every TCP service. Not covered: UDP and SCTP paths (an answer needs the application's own
    payload), and directors that are backends too: the MASTER's share is its own stack's (a probe sent to it goes
    through its IPVS, which may hand it back to the prober), and a BACKUP's VIP on lo is the failover hook's, made
    again at every transition."""
    if cluster.dr_check is None:
        return {}
    return {(s.name, b.server): (dr_file(cluster.state_dir, cluster.name, s.name, b.server),
                                 f"{DR_PREFIX}{s.name}_{b.server}")
            for s in cluster.services if s.protocol == "tcp" for b in s.backends if not b.is_director}


def targets(cluster: Cluster, node: str) -> tuple[Target, ...]:
    """What director ``node`` probes: every VIP:port of every covered backend."""
    covered = dr_files(cluster)
    return tuple(Target(s.name, b.server, b.address, vip, port)
                 for s in cluster.services for b in s.backends if (s.name, b.server) in covered
                 for vip, port in s.endpoints)


# -- the capture filter (classic BPF: the kernel hands the agent only what it reads) ---------------------------

def bpf_program(port: int) -> list[tuple[int, int, int, int]]:
    """ARP replies, NDP neighbour advertisements, and TCP segments (IPv4 unfragmented, IPv6 without extension
    headers) to ``port``, the probes' own source port: (code, jt, jf, k) per instruction."""
    ld_h, ld_b, jeq, jset, ret, ldx_msh, ld_ind_h = 0x28, 0x30, 0x15, 0x45, 0x06, 0xB1, 0x48
    prog: list[tuple[int, str, str, int] | str] = [
        (ld_h, "", "", 12),
        (jeq, "", "ip4", ETH_P_ARP),
        (ld_h, "", "", 20), (jeq, "yes", "no", 2),
        "ip4",
        (jeq, "", "ip6", ETH_P_IP),
        (ld_b, "", "", 23), (jeq, "", "no", 6),
        (ld_h, "", "", 20), (jset, "no", "", 0x1FFF),
        (ldx_msh, "", "", 14), (ld_ind_h, "", "", 16), (jeq, "yes", "no", port),
        "ip6",
        (jeq, "", "no", ETH_P_IPV6),
        (ld_b, "", "", 20), (jeq, "tcp6", "", 6), (jeq, "", "no", 58),
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

    def round(self, outcomes: dict[tuple[str, str], str | None]) -> list[tuple[tuple[str, str], Verdict]]:
        """``outcomes``: per pair, "" (every path answered), why one did not, or None (not probed this round: its
        MAC is being resolved; the verdict stands)."""
        self.pairs = {k: self.pairs.get(k, Verdict()) for k in outcomes}
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
        Family("lvsdr_dr_path_up", "gauge", "1 while the backend's DR path passes (a SYN to VIP:port at its MAC is "
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
