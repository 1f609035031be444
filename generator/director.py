"""Directors: the role a VRRP transition asks for, as a plan (pure).

keepalived moves the VIPs (adds them and sends gratuitous ARPs on becoming
MASTER, removes them first on leaving). What it does not do, lvsdr's hook
does, reconciling to what is observed on the node (keepalived runs notify
scripts concurrently and out of order, so the event's own STATE is not
trusted):

- MASTER: the fwmark rules of `table inet lvsdr_fwmark` mark VIP traffic, so
  keepalived's fwmark virtual_servers take it; a director that is also a
  backend lifts its arp rules (it must answer ARP now; sysctl's
  arp_ignore=1 already lets it, the VIP being on its interface).
- BACKUP (or FAULT): no mark rules, so a director that is also a backend
  does not forward again what the MASTER forwarded to it (a loop); it keeps
  the VIPs on lo to serve that traffic, with its ARP suppression in force.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lvsdr.errors import InputError

from .model import Cluster, IPAddress, addr_key
from .realserver import Change, Facts, Spec, backend_spec, plan

FWMARK_TABLE = "lvsdr_fwmark"


@dataclass(frozen=True)
class Mark:
    vip: IPAddress
    protocol: str
    port: int
    mark: int

    def rule(self) -> str:
        """As `nft list` prints it."""
        fam = "ip" if self.vip.version == 4 else "ip6"
        return f"{fam} daddr {self.vip} {self.protocol} dport {self.port} meta mark set 0x{self.mark:08x}"


@dataclass(frozen=True)
class DirectorSpec:
    cluster: str
    node: str
    address: IPAddress
    interface: str
    vips: tuple[IPAddress, ...]
    marks: tuple[Mark, ...]
    backend: Spec | None  # the real-server side, when this director is also a backend


def director_spec(cluster: Cluster, node: str) -> DirectorSpec:
    d = cluster.director(node)
    if d is None:
        names = ", ".join(sorted(x.name for x in cluster.directors))
        raise InputError(f"--node: {node!r} is not a director (directors: {names})")
    marks = tuple(sorted(
        (Mark(s.vip, s.protocol, s.port, s.fwmark) for s in cluster.services if s.fwmark),
        key=lambda m: (addr_key(m.vip), m.protocol, m.port),
    ))
    backend = backend_spec(cluster, d, vips_on_lo=True) if cluster.services_of(node) else None
    return DirectorSpec(cluster.name, node, d.address, d.interface, cluster.vips, marks, backend)


def observed_role(spec: DirectorSpec, addresses: tuple[tuple[str, str, str], ...]) -> str:
    """MASTER when keepalived has put a VIP on the VRRP interface, else BACKUP."""
    vips = {str(v) for v in spec.vips}
    for ifname, pfx, _label in addresses:
        if ifname == spec.interface and pfx.split("/", 1)[0] in vips:
            return "MASTER"
    return "BACKUP"


def fwmark_script(rules: tuple[str, ...]) -> str:
    lines = [f"table inet {FWMARK_TABLE}", f"delete table inet {FWMARK_TABLE}"]
    if rules:
        lines += [
            f"table inet {FWMARK_TABLE} {{",
            "    chain prerouting {",
            "        type filter hook prerouting priority mangle; policy accept;",
            *(f"        {r}" for r in rules),
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def role_spec(spec: DirectorSpec, role: str) -> Spec | None:
    if spec.backend is None:
        return None
    return replace(spec.backend, suppress=role != "MASTER")


def plan_role(spec: DirectorSpec, role: str, facts: Facts) -> list[Change]:
    """Changes that make the node right for ``role``. BACKUP: suppression first,
    then the marks go; MASTER: the marks come, then the arp rules go."""
    backend = role_spec(spec, role)
    want = tuple(m.rule() for m in spec.marks) if role == "MASTER" else ()
    marks: list[Change] = []
    if want and facts.fwmark != want:
        marks.append(Change("nft", f"nftables: mark VIP traffic for the fwmark services ({len(want)} rules)",
                            (fwmark_script(want),)))
    elif not want and facts.fwmark is not None:
        marks.append(Change("nft", f"nftables: delete table inet {FWMARK_TABLE} (not MASTER)",
                            (fwmark_script(()),)))
    backend_changes = plan(backend, facts) if backend else []
    return marks + backend_changes if role == "MASTER" else backend_changes + marks
