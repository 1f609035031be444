"""What every ARP method module provides (see ``Method``), and shared helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..changes import AddRule, Change, DeleteRule
from ..node import Chain, Facts, IPInterface, NftTable, Rule, host_interface
from ..spec import Spec
from .catalog import CATALOG

Files = dict[str, tuple[str, int]]  # relative path -> (text, mode)


@dataclass(frozen=True)
class Tool:
    """A program a method runs, and the package that brings it."""

    program: str
    debian: str
    rhel: str


@dataclass(frozen=True)
class FactCommand:
    """A read-only command whose output a method's parser reads. A missing
    program, or an error matching ``absent``, means "nothing there" (an empty
    listing); any other failure could not be read (``FactError``), with
    ``hints`` turning known errors into advice."""

    argv: tuple[str, ...]
    absent: tuple[str, ...] = ()
    hints: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Observed:
    """What one method's parser found of lvsdr's on the node."""

    chains: tuple[Chain, ...] = ()
    rules: tuple[Rule, ...] = ()
    nft: tuple[NftTable, ...] = ()


@dataclass(frozen=True)
class Artifacts:
    files: Files = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Method:
    """One ARP-suppression method: its desired state, plan steps, facts,
    install files and tools. Subclasses are stateless; ``methods.registry()``
    holds one instance of each."""

    name: ClassVar[str]
    summary: ClassVar[str]
    # from the catalog (catalog.py), by name
    ipv6: ClassVar[bool]  # can serve IPv6 VIPs (NDP is not ARP)
    redirect: ClassVar[bool]  # serves VIPs without having them (local redirect; listen_port)
    director_backend: ClassVar[bool]  # usable by a director that is also a backend
    # the nft tables (``FAMILY NAME``) that hold all of the method's rules, or
    # None when its rules are something else (xtables chains, firewalld): notify's
    # fast path replays nft tables only (hooks/fast/replay.py)
    nft_tables: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        can = CATALOG[cls.name]
        cls.ipv6, cls.redirect, cls.director_backend = "ipv6" in can, "redirect" in can, "director_backend" in can

    # -- desired state ---------------------------------------------------------
    def tools(self, spec: Spec) -> tuple[Tool, ...]:
        return ()

    def addresses(self, spec: Spec) -> tuple[tuple[str, IPInterface], ...]:
        """Where the VIPs go on the host. A director that is also a backend
        keeps them on lo (keepalived owns the interface's copy)."""
        if spec.vips_on_lo:
            return tuple(("lo", host_interface(v)) for v in spec.vips)
        return ()

    def sysctls(self, spec: Spec) -> dict[str, str]:
        return {}

    def created_tables(self, spec: Spec) -> tuple[str, ...]:
        """nftables tables ("family name") the method's xtables-nft commands create if absent."""
        return ()

    def recorded(self, spec: Spec) -> tuple[str, ...]:
        """Listings of rules that are lvsdr's only because its record says so
        (firewalld's forward-ports live in a shared zone)."""
        return ()

    # -- facts -----------------------------------------------------------------
    def fact_commands(self, spec: Spec, recorded: Sequence[str]) -> tuple[FactCommand, ...]:
        return ()

    def parse(self, outputs: Sequence[str], spec: Spec) -> Observed:
        """Pure: the outputs of ``fact_commands`` -> lvsdr's objects on the node."""
        return Observed()

    # -- plan ------------------------------------------------------------------
    def add(self, spec: Spec, facts: Facts) -> list[Change]:
        """What the spec's method creates (before the VIPs appear, or after them
        for redirect methods)."""
        return []

    def prune(self, spec: Spec, wanted: bool, facts: Facts) -> list[Change]:
        """Delete what this method left that is not wanted (everything of it when
        ``wanted`` is False: the node uses another method, or lvsdr is removed)."""
        return []

    # -- files to install --------------------------------------------------------
    def artifacts(self, spec: Spec) -> Artifacts:
        return Artifacts()


def xtables_add(chains: tuple[Chain, ...], rules: tuple[Rule, ...], jumps: tuple[Rule, ...],
                facts: Facts) -> list[Change]:
    """Chains, then rules, then the jumps that put them in force."""
    if not rules:
        return []
    out: list[Change] = [AddRule(c) for c in chains if c not in facts.chains]
    out += [AddRule(r) for r in rules if r not in facts.rules]
    out += [AddRule(j) for j in jumps if j not in facts.rules]
    return out


def xtables_prune(chains: tuple[Chain, ...], rules: tuple[Rule, ...], jumps: tuple[Rule, ...],
                  present: tuple[Rule, ...], facts: Facts) -> list[Change]:
    """``present``: this method's rules on the node (in listing order, jumps
    excluded). Stale rules go; with nothing wanted, the jumps and chains too."""
    out: list[Change] = [DeleteRule(r) for r in present if r not in rules]
    if not rules:
        out += [DeleteRule(j) for j in jumps if j in facts.rules]
        out += [DeleteRule(c) for c in chains if c in facts.chains]
    return out
