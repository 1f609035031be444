"""nftables: the VIP on the interface; lvsdr's own `table arp lvsdr` drops ARP
for the VIP (input) and rewrites ARP from it to the real address (output).
The table is replaced atomically and touches no other table. IPv6 VIPs go
on lo (NDP is not ARP: a /128 on lo is not announced)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..changes import Change, DeleteNftTable, LoadNftTable
from ..node import Facts, IPInterface, NftChain, NftRule, NftTable, host_interface, parse_nft_table
from ..spec import Spec
from .base import Artifacts, FactCommand, Method, Observed, Tool

FAMILY, TABLE = "arp", "lvsdr"
KEY = f"{FAMILY} {TABLE}"
RULES_FILE = "etc/nftables.d/lvsdr.nft"


@dataclass(frozen=True)
class NftArpDrop(NftRule):
    vip: ipaddress.IPv4Address

    def listing(self) -> str:
        return f"arp daddr ip {self.vip} drop"


@dataclass(frozen=True)
class NftArpRewrite(NftRule):
    vip: ipaddress.IPv4Address
    real: ipaddress.IPv4Address

    def listing(self) -> str:
        return f"arp saddr ip {self.vip} arp saddr ip set {self.real}"


_DROP = re.compile(r"arp daddr ip (\S+) drop")
_REWRITE = re.compile(r"arp saddr ip (\S+) arp saddr ip set (\S+)")


def parse_rule(line: str) -> NftRule | None:
    try:
        if m := _DROP.fullmatch(line):
            return NftArpDrop(ipaddress.IPv4Address(m.group(1)))
        if m := _REWRITE.fullmatch(line):
            return NftArpRewrite(ipaddress.IPv4Address(m.group(1)), ipaddress.IPv4Address(m.group(2)))
    except ValueError:
        return None
    return None


def desired_table(spec: Spec) -> NftTable | None:
    v4 = [v for v in spec.vips if isinstance(v, ipaddress.IPv4Address)]
    real = spec.address
    if not v4 or not spec.suppress or not isinstance(real, ipaddress.IPv4Address):
        return None
    return NftTable(FAMILY, TABLE, (
        NftChain("input", "input", "filter", tuple(NftArpDrop(v) for v in v4)),
        NftChain("output", "output", "filter", tuple(NftArpRewrite(v, real) for v in v4)),
    ))


class Nftables(Method):
    name = "nftables"
    summary = "VIPs on the interface (IPv6 on lo); lvsdr's own `table arp lvsdr` drops and rewrites ARP"
    nft_tables = (KEY,)

    def tools(self, spec: Spec) -> tuple[Tool, ...]:
        return (Tool("nft", "nftables", "nftables"),)

    def addresses(self, spec: Spec) -> tuple[tuple[str, IPInterface], ...]:
        return tuple(("lo" if spec.vips_on_lo or v.version == 6 else spec.interface, host_interface(v))
                     for v in spec.vips)

    def fact_commands(self, spec: Spec, recorded: Sequence[str]) -> tuple[FactCommand, ...]:
        return (FactCommand(("nft", "-s", "list", "table", FAMILY, TABLE), absent=("No such file or directory",)),)

    def parse(self, outputs: Sequence[str], spec: Spec) -> Observed:
        table = parse_nft_table(outputs[0], FAMILY, TABLE, parse_rule)
        return Observed(nft=(table,) if table else ())

    def add(self, spec: Spec, facts: Facts) -> list[Change]:
        want = desired_table(spec)
        if want is None or facts.nft.get(KEY) == want:
            return []
        return [LoadNftTable(want)]

    def prune(self, spec: Spec, wanted: bool, facts: Facts) -> list[Change]:
        if (wanted and desired_table(spec) is not None) or KEY not in facts.nft:
            return []
        return [DeleteNftTable(KEY)]

    def artifacts(self, spec: Spec) -> Artifacts:
        table = desired_table(spec)
        script = table.script() if table else NftTable.delete_script(KEY)
        note = (f'add `include "/{RULES_FILE}"` to /etc/nftables.conf so the nftables service loads the table '
                "at boot; it touches no other table.")
        return Artifacts({RULES_FILE: (script, 0o644)}, (note,))
