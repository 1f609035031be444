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

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Literal

from .changes import Change, DeleteNftTable, LoadNftTable, RemoveAddress
from .guards import address
from .methods.base import FactCommand
from .model import Cluster, IPAddress, addr_key
from .node import Facts, NftChain, NftRule, NftTable, NodeAddress, parse_nft_table
from .realserver import backend_spec, plan
from .spec import Spec

Role = Literal["MASTER", "BACKUP"]
FAMILY, TABLE = "inet", "lvsdr_fwmark"
KEY = f"{FAMILY} {TABLE}"
FWMARK_FACT = FactCommand(("nft", "-s", "list", "table", FAMILY, TABLE), absent=("No such file or directory",))


@dataclass(frozen=True)
class Mark(NftRule):
    vip: IPAddress
    protocol: str
    port: int
    mark: int

    def listing(self) -> str:
        """As `nft list` prints it."""
        fam = "ip" if self.vip.version == 4 else "ip6"
        return f"{fam} daddr {address(self.vip)} {self.protocol} dport {self.port} meta mark set 0x{self.mark:08x}"


_MARK = re.compile(r"(ip6?) daddr (\S+) (\S+) dport (\d+) meta mark set 0x([0-9a-f]+)")


def parse_mark(line: str) -> NftRule | None:
    m = _MARK.fullmatch(line)
    if not m:
        return None
    try:
        rule = Mark(ipaddress.ip_address(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5), 16))
    except ValueError:
        return None
    return rule if rule.listing() == line else None


def parse_fwmark(text: str) -> NftTable | None:
    """`nft -s list table inet lvsdr_fwmark` -> the table (None: absent)."""
    return parse_nft_table(text, FAMILY, TABLE, parse_mark)


@dataclass(frozen=True)
class DirectorSpec:
    cluster: str
    node: str
    address: IPAddress
    interface: str
    vips: tuple[IPAddress, ...]
    marks: tuple[Mark, ...]
    backend: Spec | None  # the real-server side, when this director is also a backend
    vip_devices: tuple[tuple[IPAddress, str], ...] = ()  # VIPs that keepalived puts on another device

    def fwmark_table(self) -> NftTable | None:
        if not self.marks:
            return None
        return NftTable(FAMILY, TABLE, (NftChain("prerouting", "prerouting", "mangle", self.marks),))


def director_spec(cluster: Cluster, node: str) -> DirectorSpec:
    d = cluster.find_director(node)
    marks = tuple(sorted(
        (Mark(v, s.protocol, p, s.fwmark) for s in cluster.services if s.fwmark for v, p in s.endpoints),
        key=lambda m: (addr_key(m.vip), m.protocol, m.port),
    ))
    backend = backend_spec(cluster, d, vips_on_lo=True) if cluster.services_of(node) else None
    devices = tuple((v, cluster.vip_device(v, d)) for v in cluster.vips if cluster.vip_device(v, d) != d.interface)
    return DirectorSpec(cluster.name, node, d.address, d.interface, cluster.vips, marks, backend, devices)


def observed_role(spec: DirectorSpec, addresses: tuple[NodeAddress, ...]) -> Role:
    """MASTER when keepalived has put a VIP on its device (the VRRP interface
    unless [[vips]] says otherwise), else BACKUP."""
    devices = dict(spec.vip_devices)
    held = {(a.ifname, a.address.ip) for a in addresses}
    if any((devices.get(v, spec.interface), v) in held for v in spec.vips):
        return "MASTER"
    return "BACKUP"


def role_spec(spec: DirectorSpec, role: Role) -> Spec | None:
    if spec.backend is None:
        return None
    return replace(spec.backend, suppress=role != "MASTER")


def plan_role(spec: DirectorSpec, role: Role, facts: Facts) -> list[Change]:
    """Changes that make the node right for ``role``. BACKUP: suppression first,
    then the marks go; MASTER: the marks come, then the arp rules go."""
    backend = role_spec(spec, role)
    want = spec.fwmark_table() if role == "MASTER" else None
    marks: list[Change] = []
    if want is not None and facts.nft.get(KEY) != want:
        marks.append(LoadNftTable(want, "mark VIP traffic for the fwmark services"))
    elif want is None and KEY in facts.nft:
        marks.append(DeleteNftTable(KEY, "not MASTER"))
    backend_changes = plan(backend, facts) if backend else []
    return marks + backend_changes if role == "MASTER" else backend_changes + marks


def plan_stopped(spec: DirectorSpec, facts: Facts) -> list[Change]:
    """keepalived is gone without a clean stop (SIGKILLed whole, crashed): the
    node steps back to a stopped director's role. The BACKUP role's changes
    first (a director that is also a backend gets its suppression back, the
    marks go), then the VIPs keepalived left on their VRRP devices are
    removed, so no second MAC answers ARP next to the new MASTER. A clean
    stop leaves no VIP: then this is the BACKUP plan alone."""
    devices = dict(spec.vip_devices)
    vips = set(spec.vips)
    left = [RemoveAddress(a.ifname, a.address) for a in facts.addresses
            if a.address.ip in vips and a.ifname == devices.get(a.address.ip, spec.interface)]
    return plan_role(spec, "BACKUP", facts) + left
