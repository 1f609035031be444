"""The steps of a plan: one small frozen type per kind of change.

A plan is a list of ``Change`` values; ``description`` is what an operator
reads (`--dry-run`, doctor), the fields are what the gateway
(hooks/gateway.py) acts on, with a ``match`` that mypy proves exhaustive.
Tests compare changes, never descriptions. The changes a reload makes to
IPVS and the VIPs (generator/ipvs.py, `lvsdr plan`) speak the same
vocabulary: frozen types, a ``description`` property, ``as_dict`` for JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .node import IPInterface, NftTable, Record, Rule


@dataclass(frozen=True)
class SetSysctl:
    """Set a sysctl for ARP suppression (``was``: the value found)."""

    key: str
    value: str
    was: str | None = None

    @property
    def description(self) -> str:
        return f"sysctl {self.key} = {self.value} (was {self.was if self.was is not None else '?'})"


@dataclass(frozen=True)
class RestoreSysctl:
    """Put back a sysctl value lvsdr found before it changed it."""

    key: str
    value: str
    now: str | None = None

    @property
    def description(self) -> str:
        return f"sysctl {self.key} = {self.value} (restore; now {self.now if self.now is not None else '?'})"


@dataclass(frozen=True)
class AddAddress:
    ifname: str
    address: IPInterface
    label: str = ""  # IPv4 only: "lo:lvsdr"

    @property
    def description(self) -> str:
        return f"add VIP {self.address} on {self.ifname}"


@dataclass(frozen=True)
class RemoveAddress:
    ifname: str
    address: IPInterface

    @property
    def description(self) -> str:
        return f"remove VIP {self.address} from {self.ifname}"


@dataclass(frozen=True)
class AddRoute:
    """An ECMP director announces a VIP: its route (via lo) in lvsdr's kernel table, which BIRD learns."""

    table: int
    address: IPInterface

    @property
    def description(self) -> str:
        return f"announce VIP {self.address} (route in table {self.table})"


@dataclass(frozen=True)
class RemoveRoute:
    """An ECMP director withdraws a VIP."""

    table: int
    address: IPInterface

    @property
    def description(self) -> str:
        return f"withdraw VIP {self.address} (route in table {self.table})"


@dataclass(frozen=True)
class AddRule:
    """Add a rule (or create a chain) with its tool."""

    rule: Rule

    @property
    def description(self) -> str:
        return self.rule.describe("add")


@dataclass(frozen=True)
class DeleteRule:
    rule: Rule

    @property
    def description(self) -> str:
        return self.rule.describe("delete")


@dataclass(frozen=True)
class LoadNftTable:
    """Replace one of lvsdr's own nftables tables atomically (`nft -f -`)."""

    table: NftTable
    purpose: str = ""

    @property
    def description(self) -> str:
        if self.purpose:
            return f"nftables: {self.purpose} ({self.table.rule_count} rules)"
        return f"nftables: load table {self.table.key} ({self.table.rule_count} rules, atomically)"


@dataclass(frozen=True)
class DeleteNftTable:
    """Delete one of lvsdr's own nftables tables, or an xtables-nft table
    lvsdr's first apply created (``created``) once only lvsdr's rules are in it."""

    key: str  # "family name"
    reason: str = ""

    @property
    def description(self) -> str:
        return f"nftables: delete table {self.key}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class WriteRecord:
    record: Record

    @property
    def description(self) -> str:
        return "record lvsdr's changes on this node (to undo them exactly)"


@dataclass(frozen=True)
class ForgetRecord:
    @property
    def description(self) -> str:
        return "forget lvsdr's record of this node"


Change = (SetSysctl | RestoreSysctl | AddAddress | RemoveAddress | AddRoute | RemoveRoute | AddRule | DeleteRule
          | LoadNftTable | DeleteNftTable | WriteRecord | ForgetRecord)


def as_dict(change: object) -> dict[str, object]:
    """Any change (of either family) as JSON reads it: its kind, then its
    fields (what JSON has no type for, as text)."""
    out: dict[str, object] = {"change": type(change).__name__}
    for f in fields(change):  # type: ignore[arg-type]
        v = getattr(change, f.name)
        out[f.name] = v if v is None or isinstance(v, bool | int | float | str) else str(v)
    return out
