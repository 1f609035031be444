"""arptables: the VIP on the interface; lvsdr's own chains LVSDR_IN/LVSDR_OUT,
jumped to from INPUT/OUTPUT (the current chain names; the guide's IN/OUT are
the old arptables' ones): drop ARP requests for the VIP, and rewrite the
source of outgoing ARP from the VIP to the real server's own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ..changes import Change
from ..node import Chain, Facts, IPInterface, Op, Rule, host_interface
from ..spec import Spec
from .base import Artifacts, FactCommand, Method, Observed, Tool, xtables_add, xtables_prune

PROG = "arptables"
IN, OUT = "LVSDR_IN", "LVSDR_OUT"
RULES_FILE = "etc/lvsdr/arptables.rules"
_OP = {"add": "-A", "delete": "-D"}


class _InArpFilter:
    """arptables-nft keeps lvsdr's chains and rules in nftables' `arp filter`
    table; every one of them is ARP suppression."""

    @property
    def nft_table(self) -> str:
        return "arp filter"

    @property
    def suppresses_arp(self) -> bool:
        return True


@dataclass(frozen=True)
class ArpChain(_InArpFilter, Chain):
    name: str

    def argv(self, op: Op) -> tuple[str, ...]:
        return (PROG, "-N" if op == "add" else "-X", self.name)

    def listing(self) -> str:
        return f"-N {self.name}"

    def describe(self, op: Op) -> str:
        return f"arptables: {'create' if op == 'add' else 'delete'} chain {self.name}"


@dataclass(frozen=True)
class ArpJump(_InArpFilter, Rule):
    hook: str  # INPUT | OUTPUT
    chain: str

    def argv(self, op: Op) -> tuple[str, ...]:
        return (PROG, _OP[op], self.hook, "-j", self.chain)

    def listing(self) -> str:
        return f"-A {self.hook} -j {self.chain}"

    def describe(self, op: Op) -> str:
        return f"arptables: {'' if op == 'add' else 'remove '}jump from {self.hook} to {self.chain}"


@dataclass(frozen=True)
class ArpDrop(_InArpFilter, Rule):
    """Drop incoming ARP for the VIP."""

    vip: ipaddress.IPv4Address

    def argv(self, op: Op) -> tuple[str, ...]:
        return (PROG, _OP[op], IN, "-d", str(self.vip), "-j", "DROP")

    def listing(self) -> str:  # as arptables-nft 1.8 prints it
        return f"-A {IN} -j DROP -d {self.vip}"

    def describe(self, op: Op) -> str:
        return f"arptables: {'' if op == 'add' else 'remove '}drop ARP for {self.vip} (INPUT)"


@dataclass(frozen=True)
class ArpMangle(_InArpFilter, Rule):
    """Rewrite the source of outgoing ARP from the VIP to the real address."""

    vip: ipaddress.IPv4Address
    real: ipaddress.IPv4Address

    def argv(self, op: Op) -> tuple[str, ...]:
        return (PROG, _OP[op], OUT, "-s", str(self.vip), "-j", "mangle", "--mangle-ip-s", str(self.real))

    def listing(self) -> str:
        return f"-A {OUT} -j mangle -s {self.vip} --mangle-ip-s {self.real}"

    def describe(self, op: Op) -> str:
        return (f"arptables: {'' if op == 'add' else 'remove '}rewrite ARP from {self.vip} to {self.real} "
                "(OUTPUT)")


@dataclass(frozen=True)
class ArpOther(_InArpFilter, Rule):
    """A rule in lvsdr's chains that lvsdr did not write: removed as listed."""

    line: str

    def argv(self, op: Op) -> tuple[str, ...]:
        return (PROG, _OP[op], *self.line.split()[1:])

    def listing(self) -> str:
        return self.line

    def describe(self, op: Op) -> str:
        return f"arptables: {'add' if op == 'add' else 'remove'} {self.line.split(maxsplit=1)[1]}"


CHAINS = (ArpChain(IN), ArpChain(OUT))
JUMPS = (ArpJump("INPUT", IN), ArpJump("OUTPUT", OUT))


def desired_rules(spec: Spec) -> tuple[Rule, ...]:
    if not spec.suppress:
        return ()
    v4 = [v for v in spec.vips if isinstance(v, ipaddress.IPv4Address)]
    real = spec.address
    if not isinstance(real, ipaddress.IPv4Address):
        return ()
    return (*(ArpDrop(v) for v in v4), *(ArpMangle(v, real) for v in v4))


def parse_listing(text: str) -> Observed:
    """`arptables -S` (arptables-nft 1.8) -> lvsdr's chains, jumps and rules.
    A line is typed only if it renders back exactly as listed."""
    lines = text.splitlines()
    chains = tuple(c for c in CHAINS if c.listing() in lines)
    rules: list[Rule] = [j for j in JUMPS if j.listing() in lines]
    for line in lines:
        parts = line.split()
        if parts[:1] != ["-A"] or len(parts) < 2 or parts[1] not in (IN, OUT):
            continue
        rules.append(_typed(parts) or ArpOther(line))
    return Observed(chains=chains, rules=tuple(rules))


def _typed(parts: list[str]) -> Rule | None:
    line = " ".join(parts)
    try:
        if parts[1] == IN and len(parts) == 6:
            rule: Rule = ArpDrop(ipaddress.IPv4Address(parts[5]))
        elif parts[1] == OUT and len(parts) == 8:
            rule = ArpMangle(ipaddress.IPv4Address(parts[5]), ipaddress.IPv4Address(parts[7]))
        else:
            return None
    except ValueError:
        return None
    return rule if rule.listing() == line else None


class Arptables(Method):
    name = "arptables"
    summary = "VIPs on the interface; arptables chains LVSDR_IN/LVSDR_OUT drop and rewrite ARP for them"

    def tools(self, spec: Spec) -> tuple[Tool, ...]:
        return (Tool(PROG, "arptables", "iptables-nft"),)

    def addresses(self, spec: Spec) -> tuple[tuple[str, IPInterface], ...]:
        on = "lo" if spec.vips_on_lo else spec.interface
        return tuple((on, host_interface(v)) for v in spec.vips)

    def created_tables(self, spec: Spec) -> tuple[str, ...]:
        return ("arp filter",)

    def fact_commands(self, spec: Spec, recorded: Sequence[str]) -> tuple[FactCommand, ...]:
        return (FactCommand((PROG, "-S")),)

    def parse(self, outputs: Sequence[str], spec: Spec) -> Observed:
        return parse_listing(outputs[0])

    def add(self, spec: Spec, facts: Facts) -> list[Change]:
        return xtables_add(CHAINS, desired_rules(spec), JUMPS, facts)

    def prune(self, spec: Spec, wanted: bool, facts: Facts) -> list[Change]:
        want = desired_rules(spec) if wanted else ()
        present = tuple(r for r in facts.rules if isinstance(r, ArpDrop | ArpMangle | ArpOther))
        return xtables_prune(CHAINS, want, JUMPS, present, facts)

    def artifacts(self, spec: Spec) -> Artifacts:
        lines = ["*filter", *(f":{c.name} -" for c in CHAINS), *(j.listing() for j in JUMPS),
                 *(r.listing() for r in desired_rules(spec))]
        note = (f"{RULES_FILE} is in arptables-save format (arptables-restore); on RHEL it may go to "
                "/etc/sysconfig/arptables for arptables.service. The guide's chain names IN/OUT are the old "
                "arptables' ones: today they are INPUT/OUTPUT.")
        return Artifacts({RULES_FILE: ("\n".join(lines) + "\n", 0o644)}, (note,))
