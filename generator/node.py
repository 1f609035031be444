"""What lvsdr sees on a node and puts there, as typed values (pure).

- ``NodeAddress``: one address of the node (netlink's view).
- ``Rule`` and ``Chain``: structured firewall objects lvsdr owns, each with
  one rendering to an argument list (``argv``) and one to the line its tool
  lists (``listing``). Fact parsers turn listings into these values; nothing
  else parses tool output.
- ``NftTable``: one of lvsdr's own nftables tables, replaced atomically.
- ``Record``: lvsdr's record on the node (what to restore on remove).
- ``Facts``: everything a plan is computed from.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lvsdr.errors import LvsdrError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Op = Literal["add", "delete"]
LABEL = "lvsdr"  # IPv4 address label suffix: lo:lvsdr, eth0:lvsdr


def host_interface(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> IPInterface:
    """A VIP as a host address: /32 or /128."""
    return ipaddress.ip_interface(f"{address}/{address.max_prefixlen}")


def address_key(item: tuple[str, IPInterface]) -> tuple[str, int, int, int]:
    """Sort key for (ifname, address) pairs of mixed families."""
    ifname, a = item
    return (ifname, a.version, int(a.ip), a.network.prefixlen)


@dataclass(frozen=True)
class NodeAddress:
    ifname: str
    address: IPInterface
    label: str = ""

    @property
    def labelled_ours(self) -> bool:
        return self.label.endswith(":" + LABEL)


@dataclass(frozen=True)
class Rule:
    """A firewall object lvsdr owns. Subclasses (one per kind of rule, in the
    module of the ARP method that owns it) say how to add and delete it, how
    its tool lists it, which nftables table it lives in, and whether it is ARP
    suppression (the safe-order property needs to know)."""

    def argv(self, op: Op) -> tuple[str, ...]:
        raise NotImplementedError

    def listing(self) -> str:
        raise NotImplementedError

    def describe(self, op: Op) -> str:
        raise NotImplementedError

    @property
    def nft_table(self) -> str | None:
        """The nftables table ("family name") the rule lives in (xtables-nft)."""
        return None

    @property
    def suppresses_arp(self) -> bool:
        return False


@dataclass(frozen=True)
class Chain(Rule):
    """A chain of an xtables tool (created before its rules, deleted after)."""


@dataclass(frozen=True)
class NftRule:
    """One rule of one of lvsdr's nftables tables, as `nft list` prints it."""

    def listing(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class RawNftRule(NftRule):
    """A rule lvsdr did not write (or does not know): kept as listed, so the
    table differs from the wanted one and is replaced."""

    text: str

    def listing(self) -> str:
        return self.text


@dataclass(frozen=True)
class NftChain:
    name: str
    hook: str
    priority: str
    rules: tuple[NftRule, ...] = ()


@dataclass(frozen=True)
class NftTable:
    """One of lvsdr's own tables. ``script()`` replaces it atomically (the
    `table X` line makes `delete table X` safe when it does not exist yet)."""

    family: str
    name: str
    chains: tuple[NftChain, ...] = ()
    # set declarations (``set NAME { ... }``), loaded before the chains; not compared (the fact parser reads
    # chains only): a rule that names a set cannot be in the kernel without it
    sets: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.family} {self.name}"

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains)

    def script(self) -> str:
        lines = [f"table {self.key}", f"delete table {self.key}"]
        if self.chains:
            lines.append(f"table {self.key} {{")
            lines += [f"    {d}" for d in self.sets]
            for c in self.chains:
                lines.append(f"    chain {c.name} {{")
                lines.append(f"        type filter hook {c.hook} priority {c.priority}; policy accept;")
                lines += [f"        {r.listing()}" for r in c.rules]
                lines.append("    }")
            lines.append("}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def delete_script(key: str) -> str:
        return f"table {key}\ndelete table {key}\n"


@dataclass(frozen=True)
class Record:
    """lvsdr's record on a node, kept as JSON in its state directory: the
    sysctl values it found (restored on remove), the addresses it added (IPv6
    addresses carry no label), the firewalld forward-ports it added and the
    xtables tables its first apply created."""

    cluster: str
    node: str
    method: str
    sysctl_originals: tuple[tuple[str, str], ...] = ()
    addresses: tuple[tuple[str, IPInterface], ...] = ()
    forward_ports: tuple[str, ...] = ()
    created_tables: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({
            "cluster": self.cluster, "node": self.node, "method": self.method,
            "sysctl_originals": dict(self.sysctl_originals),
            "addresses": [[i, str(a)] for i, a in self.addresses],
            "forward_ports": list(self.forward_ports),
            "created_tables": list(self.created_tables),
        }, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> Record:
        """Parse a record file; anything else than what ``to_json`` writes is
        an error naming the file (an operator's to fix or remove)."""
        try:
            data: Any = record_json(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            originals = data.get("sysctl_originals", {})
            if not isinstance(originals, dict):
                raise ValueError("sysctl_originals is not an object")
            bad = [k for k, v in originals.items() if not valid_sysctl_key(k) or not _SYSCTL_VALUE.fullmatch(str(v))]
            if bad:
                raise ValueError(f"sysctl {bad[0]!r} is not a network sysctl with a number")
            return cls(
                cluster=str(data.get("cluster", "")),
                node=str(data.get("node", "")),
                method=str(data.get("method", "")),
                sysctl_originals=tuple(sorted((str(k), str(v)) for k, v in originals.items())),
                addresses=tuple(sorted(((str(i), ipaddress.ip_interface(a)) for i, a in data.get("addresses", [])),
                                      key=address_key)),
                forward_ports=tuple(sorted(str(f) for f in data.get("forward_ports", []))),
                created_tables=tuple(sorted(str(t) for t in data.get("created_tables", []))),
            )
        except (ValueError, TypeError) as e:
            raise LvsdrError(f"{where}: unreadable lvsdr record ({e}); fix or remove it") from None


_SYSCTL_KEY = re.compile(r"net\.ipv[46]\.(?:conf\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}\.[a-z_]+"
                         r"|[a-z0-9_]+(?:\.[a-z0-9_]+)*)")
_SYSCTL_VALUE = re.compile(r"-?[0-9]{1,10}")


def valid_sysctl_key(key: str) -> bool:
    """A network sysctl as lvsdr writes them (net.ipv4.conf.DEV.NAME and the
    like): nothing that could name a file outside /proc/sys/net."""
    return bool(_SYSCTL_KEY.fullmatch(key)) and ".." not in key


@dataclass(frozen=True)
class Facts:
    """What was read from the node (hooks/facts.py reads it with the method
    modules' parsers; tests write it by hand or parse captured outputs).
    Readers give "absent" as an empty value, and raise ``FactError`` when
    something could not be read."""

    addresses: tuple[NodeAddress, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    chains: tuple[Chain, ...] = ()  # lvsdr's xtables chains that exist
    rules: tuple[Rule, ...] = ()  # lvsdr's rules present, as listed (and firewalld's forward-ports)
    nft: Mapping[str, NftTable] = field(default_factory=dict)  # lvsdr's own nftables tables present
    nft_tables: Mapping[str, int] = field(default_factory=dict)  # every table ("family name") -> rule count
    record: Record | None = None
    routes: tuple[IPInterface, ...] = ()  # an ECMP director: the routes of lvsdr's table (the announced VIPs)
    # an ECMP director: the IPVS services that have a real server ("TCP 192.0.2.150:80"), None without IPVS
    ipvs: frozenset[str] | None = None


def record_json(text: str) -> Any:
    """The one reader of lvsdr's JSON records (the real server's, the agent's
    counts and quorum, the leaving real servers): ``ValueError`` for anything
    lvsdr never writes that the JSON parser would take: NaN and Infinity (a
    leaving real server ``since: Infinity`` would be kept for ever), and
    nesting deep enough to exhaust the parser (RecursionError)."""

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number lvsdr writes")

    try:
        return json.loads(text, parse_constant=constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class FactError(LvsdrError):
    """A fact could not be read (a tool failed): nothing is planned from a guess."""


def parse_nft_table(text: str, family: str, name: str,
                    rule: Callable[[str], NftRule | None]) -> NftTable | None:
    """`nft -s list table FAMILY NAME` -> the table, its chains and typed rules
    (``rule`` types a line; a line it does not know stays ``RawNftRule``).
    Empty text (absent) -> None."""
    if not text.strip():
        return None
    chains: list[NftChain] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        s = line.strip()
        m = _NFT_CHAIN.match(s)
        if m:
            current = {"name": m.group(1), "hook": "", "priority": "", "rules": []}
            continue
        if current is None or not s:
            continue
        if s == "}":
            chains.append(NftChain(current["name"], current["hook"], current["priority"], tuple(current["rules"])))
            current = None
            continue
        t = _NFT_TYPE.match(s)
        if t:
            current["hook"], current["priority"] = t.group(1), t.group(2)
            continue
        current["rules"].append(rule(s) or RawNftRule(s))
    return NftTable(family, name, tuple(chains))


_NFT_CHAIN = re.compile(r"chain (\S+) \{$")
_NFT_TYPE = re.compile(r"type \S+ hook (\S+)(?: device \S+)? priority ([^;]+); policy \S+;$")
