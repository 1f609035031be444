"""iptables: no VIP on the host. In `-t nat`, lvsdr's chain LVSDR (jumped to
from PREROUTING, not the guide's PREROUTE) REDIRECTs VIP:port to a local
port: the real server accepts DR traffic without having the VIP, so it has
nothing to answer ARP for. ip6tables for IPv6 VIPs."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ..changes import Change
from ..model import IPAddress
from ..node import Chain, Facts, Op, Rule
from ..spec import Spec
from .base import Artifacts, FactCommand, Method, Observed, Tool, xtables_add, xtables_prune

CHAIN = "LVSDR"
FAMILIES = ((4, "iptables"), (6, "ip6tables"))
_OP = {"add": "-A", "delete": "-D"}


def _prog(family: int) -> str:
    return "iptables" if family == 4 else "ip6tables"


class _InNat:
    """iptables-nft keeps lvsdr's chain and rules in nftables' `ip nat` / `ip6 nat`."""

    @property
    def ip_family(self) -> int:
        raise NotImplementedError

    @property
    def nft_table(self) -> str:
        return "ip nat" if self.ip_family == 4 else "ip6 nat"


@dataclass(frozen=True)
class NatChain(_InNat, Chain):
    family: int

    @property
    def ip_family(self) -> int:
        return self.family

    def argv(self, op: Op) -> tuple[str, ...]:
        return (_prog(self.family), "-t", "nat", "-N" if op == "add" else "-X", CHAIN)

    def listing(self) -> str:
        return f"-N {CHAIN}"

    def describe(self, op: Op) -> str:
        return f"{_prog(self.family)}: {'create' if op == 'add' else 'delete'} nat chain {CHAIN}"


@dataclass(frozen=True)
class NatJump(_InNat, Rule):
    family: int

    @property
    def ip_family(self) -> int:
        return self.family

    def argv(self, op: Op) -> tuple[str, ...]:
        return (_prog(self.family), "-t", "nat", _OP[op], "PREROUTING", "-j", CHAIN)

    def listing(self) -> str:
        return f"-A PREROUTING -j {CHAIN}"

    def describe(self, op: Op) -> str:
        return f"{_prog(self.family)}: {'' if op == 'add' else 'remove '}jump from nat PREROUTING to {CHAIN}"


@dataclass(frozen=True)
class NatRedirect(_InNat, Rule):
    vip: IPAddress
    protocol: str
    port: int
    to_port: int | None = None

    @property
    def ip_family(self) -> int:
        return self.vip.version

    def argv(self, op: Op) -> tuple[str, ...]:
        return (_prog(self.vip.version), "-t", "nat", _OP[op], *self.listing().split()[1:])

    def listing(self) -> str:  # as `iptables -t nat -S` prints it
        to = f" --to-ports {self.to_port}" if self.to_port else ""
        return (f"-A {CHAIN} -d {self.vip}/{self.vip.max_prefixlen} -p {self.protocol} -m {self.protocol} "
                f"--dport {self.port} -j REDIRECT{to}")

    def describe(self, op: Op) -> str:
        to = f" to port {self.to_port}" if self.to_port else ""
        what = f"{self.protocol} {self.vip}:{self.port}{to}"
        action = f"redirect {what} locally" if op == "add" else f"remove redirect {what}"
        return f"{_prog(self.vip.version)}: {action}"


@dataclass(frozen=True)
class NatOther(_InNat, Rule):
    """A rule in lvsdr's chain that lvsdr did not write: removed as listed."""

    family: int
    line: str

    @property
    def ip_family(self) -> int:
        return self.family

    def argv(self, op: Op) -> tuple[str, ...]:
        return (_prog(self.family), "-t", "nat", _OP[op], *self.line.split()[1:])

    def listing(self) -> str:
        return self.line

    def describe(self, op: Op) -> str:
        return f"{_prog(self.family)}: {'add' if op == 'add' else 'remove'} nat {self.line.split(maxsplit=1)[1]}"


def desired_rules(spec: Spec, family: int) -> tuple[Rule, ...]:
    return tuple(NatRedirect(r.vip, r.protocol, r.port, r.listen_port)
                 for r in spec.redirects if r.vip.version == family)


def parse_listing(text: str, family: int) -> Observed:
    """`iptables -t nat -S` -> lvsdr's chain, jump and rules (typed only if the
    line renders back exactly as listed)."""
    lines = text.splitlines()
    chains = (NatChain(family),) if f"-N {CHAIN}" in lines else ()
    rules: list[Rule] = [NatJump(family)] if NatJump(family).listing() in lines else []
    for line in lines:
        if line.startswith(f"-A {CHAIN} "):
            rules.append(_typed(line, family) or NatOther(family, line))
    return Observed(chains=chains, rules=tuple(rules))


def _typed(line: str, family: int) -> Rule | None:
    p = line.split()
    try:
        vip = ipaddress.ip_interface(p[3]).ip
        rule = NatRedirect(vip, p[5], int(p[9]), int(p[13]) if len(p) > 13 else None)
    except (ValueError, IndexError):
        return None
    return rule if rule.listing() == line and vip.version == family else None


class Iptables(Method):
    name = "iptables"
    summary = "no VIP on the host; iptables -t nat chain LVSDR (from PREROUTING) redirects VIP:port locally"

    def tools(self, spec: Spec) -> tuple[Tool, ...]:
        v6 = (Tool("ip6tables", "iptables", "iptables-nft"),) if spec.v6 else ()
        return (Tool("iptables", "iptables", "iptables-nft"), *v6)

    def created_tables(self, spec: Spec) -> tuple[str, ...]:
        return ("ip nat",) + (("ip6 nat",) if spec.v6 else ())

    def fact_commands(self, spec: Spec, recorded: Sequence[str]) -> tuple[FactCommand, ...]:
        return tuple(FactCommand((prog, "-t", "nat", "-S"), absent=("Table does not exist",)) for _f, prog in FAMILIES)

    def parse(self, outputs: Sequence[str], spec: Spec) -> Observed:
        parts = [parse_listing(text, family) for text, (family, _p) in zip(outputs, FAMILIES, strict=True)]
        return Observed(chains=tuple(c for p in parts for c in p.chains),
                        rules=tuple(r for p in parts for r in p.rules))

    def add(self, spec: Spec, facts: Facts) -> list[Change]:
        out: list[Change] = []
        for family, _prog_name in FAMILIES:
            out += xtables_add((NatChain(family),), desired_rules(spec, family), (NatJump(family),), facts)
        return out

    def prune(self, spec: Spec, wanted: bool, facts: Facts) -> list[Change]:
        out: list[Change] = []
        for family, _prog_name in FAMILIES:
            want = desired_rules(spec, family) if wanted else ()
            present = tuple(r for r in facts.rules if isinstance(r, NatRedirect | NatOther)
                            and r.nft_table == NatChain(family).nft_table)
            out += xtables_prune((NatChain(family),), want, (NatJump(family),), present, facts)
        return out

    def artifacts(self, spec: Spec) -> Artifacts:
        files = {}
        for family, path in ((4, "etc/iptables/lvsdr.rules.v4"), (6, "etc/iptables/lvsdr.rules.v6")):
            rules = desired_rules(spec, family)
            if family == 4 or rules:
                lines = ["*nat", f":{CHAIN} - [0:0]", NatJump(family).listing(), *(r.listing() for r in rules),
                         "COMMIT"]
                files[path] = ("\n".join(lines) + "\n", 0o644)
        note = ("the iptables fragment is for `iptables-restore --noflush`; the chain is PREROUTING (the guide's "
                "PREROUTE does not exist), and the RHEL file is /etc/sysconfig/iptables (not /etc/syconfig).")
        return Artifacts(files, (note,))
