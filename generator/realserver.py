"""Real servers: what ARP suppression each method needs, and the plan to get there.

Pure: ``desired(cluster, node)`` gives the target state, ``plan(spec, facts)``
compares it with what was read from the node and returns the changes, in an
order that never lets the node answer ARP for a VIP: suppression is in force
before a VIP appears, and a VIP is gone before its suppression is lifted.
A plan computed right after applying it is empty.

The five methods (corrected from the Red Hat guide, see docs/realserver.md):

- sysctl:    VIP/32 (/128) on lo; arp_ignore=1, arp_announce=2 on all + iface.
- arptables: VIP on the interface; in lvsdr's own chains LVSDR_IN/LVSDR_OUT
             (jumped to from INPUT/OUTPUT, the current chain names, not IN/OUT):
             drop ARP for the VIP, mangle outgoing ARP from the VIP to the real IP.
- nftables:  the same two rules in lvsdr's own `table arp lvsdr`, replaced
             atomically; IPv6 VIPs go on lo (NDP is not ARP).
- iptables:  no VIP on the host; `-t nat` chain LVSDR (from PREROUTING, not the
             guide's PREROUTE): REDIRECT VIP:port locally (ip6tables for IPv6).
- firewalld: no VIP on the host; a forward-port without toaddr (a local
             redirect) for each VIP's port, runtime and permanent, in the zone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lvsdr.errors import InputError

from .model import Cluster, Director, IPAddress, RealServer, addr_key

LABEL = "lvsdr"  # IPv4 address label suffix: lo:lvsdr, eth0:lvsdr
NFT_TABLE = "lvsdr"
ARP_CHAINS = ("LVSDR_IN", "LVSDR_OUT")
NAT_CHAIN = "LVSDR"

SYSCTL_VALUES = {"arp_ignore": "1", "arp_announce": "2"}

# program -> (Debian package, RHEL package)
TOOLS = {
    "arptables": ("arptables", "iptables-nft"),
    "nft": ("nftables", "nftables"),
    "iptables": ("iptables", "iptables-nft"),
    "ip6tables": ("iptables", "iptables-nft"),
    "firewall-cmd": ("firewalld", "firewalld"),
}


@dataclass(frozen=True)
class Redirect:
    vip: IPAddress
    protocol: str
    port: int
    listen_port: int | None = None


@dataclass(frozen=True)
class Spec:
    """The desired ARP-suppression state of one real server."""

    cluster: str
    node: str
    method: str
    interface: str
    address: IPAddress
    vips: tuple[IPAddress, ...]
    redirects: tuple[Redirect, ...] = ()
    zone: str = "public"
    # a director that is also a backend: VIPs on lo (keepalived owns the
    # interface's copy), and arp rules only while it is BACKUP
    vips_on_lo: bool = False
    suppress: bool = True

    # -- desired pieces of node state ---------------------------------------
    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(ifname, prefix) lvsdr puts on the host."""
        out = []
        for v in self.vips:
            pfx = f"{v}/{32 if v.version == 4 else 128}"
            if self.vips_on_lo or self.method == "sysctl" or (self.method == "nftables" and v.version == 6):
                out.append(("lo", pfx))
            elif self.method in ("arptables", "nftables"):
                out.append((self.interface, pfx))
        return tuple(out)

    def sysctls(self) -> dict[str, str]:
        if self.method != "sysctl" or not any(v.version == 4 for v in self.vips):
            return {}
        out = {}
        for dev in ("all", self.interface):
            for k, val in SYSCTL_VALUES.items():
                out[f"net.ipv4.conf.{dev}.{k}"] = val
        return out

    def arptables_rules(self) -> tuple[str, ...]:
        """As `arptables -S` prints them (arptables-nft 1.8)."""
        if self.method != "arptables" or not self.suppress:
            return ()
        out = []
        for v in self.vips:
            out.append(f"-A LVSDR_IN -j DROP -d {v}")
        for v in self.vips:
            out.append(f"-A LVSDR_OUT -j mangle -s {v} --mangle-ip-s {self.address}")
        return tuple(out)

    def nft_rules(self) -> dict[str, tuple[str, ...]]:
        """Rules per chain of `table arp lvsdr`, as `nft list` prints them."""
        v4 = [v for v in self.vips if v.version == 4]
        if self.method != "nftables" or not v4 or not self.suppress:
            return {}
        return {
            "input": tuple(f"arp daddr ip {v} drop" for v in v4),
            "output": tuple(f"arp saddr ip {v} arp saddr ip set {self.address}" for v in v4),
        }

    def iptables_rules(self, family: int) -> tuple[str, ...]:
        """As `iptables -t nat -S LVSDR` prints them."""
        if self.method != "iptables":
            return ()
        out = []
        for r in self.redirects:
            if r.vip.version != family:
                continue
            plen = 32 if family == 4 else 128
            to = f" --to-ports {r.listen_port}" if r.listen_port else ""
            out.append(f"-A LVSDR -d {r.vip}/{plen} -p {r.protocol} -m {r.protocol} --dport {r.port} "
                       f"-j REDIRECT{to}")
        return tuple(out)

    def forward_ports(self) -> tuple[str, ...]:
        """firewalld forward-ports (no toaddr: a local redirect; see docs)."""
        if self.method != "firewalld":
            return ()
        return tuple(sorted({f"port={r.port}:proto={r.protocol}:toport={r.listen_port or r.port}"
                             for r in self.redirects}))

    def tables(self) -> tuple[str, ...]:
        """nftables tables the method's xtables-nft commands create if absent."""
        if self.method == "arptables":
            return ("arp filter",)
        if self.method == "iptables":
            return ("ip nat",) + (("ip6 nat",) if any(v.version == 6 for v in self.vips) else ())
        return ()

    def tools(self) -> tuple[str, ...]:
        return {
            "arptables": ("arptables",),
            "nftables": ("nft",),
            "iptables": ("iptables",) + (("ip6tables",) if any(v.version == 6 for v in self.vips) else ()),
            "firewalld": ("firewall-cmd",),
        }.get(self.method, ())


def desired(cluster: Cluster, node: str) -> Spec:
    rs = cluster.real_server(node)
    if rs is None:
        if cluster.director(node) is not None:
            raise InputError(f"--node: {node!r} is a director; its ARP role follows VRRP and is "
                             "switched by the failover hook, not by `realserver`")
        names = ", ".join(sorted(r.name for r in cluster.real_servers)) or "none"
        raise InputError(f"--node: {json.dumps(node)} is not a real server (real servers: {names})")
    return backend_spec(cluster, rs)


def backend_spec(cluster: Cluster, server: RealServer | Director, **kw: Any) -> Spec:
    """The real-server side of ``server`` (a real server, or a director that is
    also a backend: then with vips_on_lo=True and suppress per VRRP role)."""
    node = server.name
    services = cluster.services_of(node)
    vips = tuple(sorted({s.vip for s in services}, key=addr_key))
    redirects = tuple(sorted(
        {Redirect(s.vip, s.protocol, s.port, b.listen_port)
         for s in services for b in s.backends if b.server == node},
        key=lambda r: (addr_key(r.vip), r.protocol, r.port),
    ))
    zone = server.firewalld_zone if isinstance(server, RealServer) else "public"
    return Spec(cluster.name, node, server.arp_method, server.interface, server.address, vips, redirects,
                zone, **kw)


# -- observed state ------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    """What was read from the node (hooks/facts.py reads it; tests write it by hand)."""

    addresses: tuple[tuple[str, str, str], ...] = ()  # (ifname, prefix, label)
    sysctls: dict[str, str] = field(default_factory=dict)
    arptables: tuple[str, ...] | None = None  # our chains' -S lines; None: chains absent
    arptables_jumps: tuple[str, ...] = ()  # "INPUT", "OUTPUT" that jump to our chains
    nft: dict[str, tuple[str, ...]] | None = None  # None: table absent
    iptables: dict[int, tuple[str, ...] | None] = field(default_factory=dict)  # family -> lines
    iptables_jump: dict[int, bool] = field(default_factory=dict)
    forward_ports: dict[str, tuple[str, ...]] = field(default_factory=dict)  # runtime/permanent
    nft_tables: dict[str, int] = field(default_factory=dict)  # "family name" -> rule count
    fwmark: tuple[str, ...] | None = None  # directors: rules of `table inet lvsdr_fwmark`; None: absent
    record: dict[str, Any] | None = None


@dataclass(frozen=True)
class Change:
    """One step of a plan: what the gateway does, and what an operator reads."""

    kind: str  # sysctl | addr-add | addr-del | cmd | nft | record | record-del
    description: str
    args: tuple[Any, ...] = ()


def _ours(facts: Facts) -> set[tuple[str, str]]:
    """Addresses on the node that lvsdr put there: labelled, or in its record."""
    recorded = {tuple(a) for a in (facts.record or {}).get("addresses", [])}
    out = set()
    for ifname, pfx, label in facts.addresses:
        if label.endswith(":" + LABEL) or (ifname, pfx) in recorded:
            out.add((ifname, pfx))
    return out


def _cmd(prog: str, *args: str, desc: str) -> Change:
    return Change("cmd", desc, (prog, *args))


# Each method's rules come in two phases: `add` (before the VIPs appear: create
# what is missing) and `prune` (after stale VIPs are gone: delete what is not
# wanted). `want` is the spec's rules for apply, and nothing for remove.
def _arptables_add(want: tuple[str, ...], facts: Facts) -> list[Change]:
    if not want:
        return []
    have = facts.arptables or ()
    out: list[Change] = []
    if facts.arptables is None:
        out += [_cmd("arptables", "-N", c, desc=f"arptables: create chain {c}") for c in ARP_CHAINS]
    out += [_cmd("arptables", *_arp_argv("-A", r), desc=f"arptables: {_arp_human(r)}")
            for r in want if r not in have]
    out += [_cmd("arptables", "-A", hook, "-j", chain, desc=f"arptables: jump from {hook} to {chain}")
            for hook, chain in (("INPUT", "LVSDR_IN"), ("OUTPUT", "LVSDR_OUT"))
            if hook not in facts.arptables_jumps]
    return out


def _arptables_prune(want: tuple[str, ...], facts: Facts) -> list[Change]:
    out = [_cmd("arptables", *_arp_argv("-D", r), desc=f"arptables: remove {_arp_human(r)}")
           for r in facts.arptables or () if r not in want]
    if not want:
        out += [_cmd("arptables", "-D", hook, "-j", chain, desc=f"arptables: remove jump from {hook} to {chain}")
                for hook, chain in (("INPUT", "LVSDR_IN"), ("OUTPUT", "LVSDR_OUT"))
                if hook in facts.arptables_jumps]
        if facts.arptables is not None:
            out += [_cmd("arptables", "-X", c, desc=f"arptables: delete chain {c}") for c in ARP_CHAINS]
    return out


def _arp_argv(op: str, rule: str) -> list[str]:
    """`arptables -S` form ("-A LVSDR_IN -j DROP -d VIP") -> argv for `op`."""
    parts = rule.split()
    chain, rest = parts[1], parts[2:]
    j = rest.index("-j")
    target, after = rest[j + 1], rest[j + 2:]
    match, opts = rest[:j], []
    while after:
        if after[0].startswith("--mangle"):
            opts += after[:2]
        else:
            match += after[:2]
        after = after[2:]
    return [op, chain, *match, "-j", target, *opts]


def _arp_human(rule: str) -> str:
    p = rule.split()
    if "DROP" in p:
        return f"drop ARP for {p[p.index('-d') + 1]} (INPUT)"
    return f"rewrite ARP from {p[p.index('-s') + 1]} to {p[p.index('--mangle-ip-s') + 1]} (OUTPUT)"


def nft_script(rules: dict[str, tuple[str, ...]]) -> str:
    """Atomically replace (or, with no rules, delete) lvsdr's own arp table."""
    lines = [f"table arp {NFT_TABLE}", f"delete table arp {NFT_TABLE}"]
    if rules:
        lines.append(f"table arp {NFT_TABLE} {{")
        for chain in ("input", "output"):
            lines.append(f"    chain {chain} {{")
            lines.append(f"        type filter hook {chain} priority filter; policy accept;")
            lines += [f"        {r}" for r in rules.get(chain, ())]
            lines.append("    }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _nft_add(want: dict[str, tuple[str, ...]], facts: Facts) -> list[Change]:
    if not want or facts.nft == want:
        return []
    n = sum(len(v) for v in want.values())
    return [Change("nft", f"nftables: load table arp {NFT_TABLE} ({n} rules, atomically)", (nft_script(want),))]


def _nft_prune(want: dict[str, tuple[str, ...]], facts: Facts) -> list[Change]:
    if want or facts.nft is None:
        return []
    return [Change("nft", f"nftables: delete table arp {NFT_TABLE}", (nft_script({}),))]


IPT = ((4, "iptables"), (6, "ip6tables"))


def _iptables_add(spec: Spec | None, facts: Facts) -> list[Change]:
    out: list[Change] = []
    for family, prog in IPT:
        want = spec.iptables_rules(family) if spec else ()
        if not want:
            continue
        have = facts.iptables.get(family)
        if have is None:
            out.append(_cmd(prog, "-t", "nat", "-N", NAT_CHAIN, desc=f"{prog}: create nat chain {NAT_CHAIN}"))
        out += [_cmd(prog, "-t", "nat", *_ipt_argv("-A", r), desc=f"{prog}: redirect {_ipt_human(r)} locally")
                for r in want if r not in (have or ())]
        if not facts.iptables_jump.get(family):
            out.append(_cmd(prog, "-t", "nat", "-A", "PREROUTING", "-j", NAT_CHAIN,
                            desc=f"{prog}: jump from nat PREROUTING to {NAT_CHAIN}"))
    return out


def _iptables_prune(spec: Spec | None, facts: Facts) -> list[Change]:
    out: list[Change] = []
    for family, prog in IPT:
        want = spec.iptables_rules(family) if spec else ()
        have = facts.iptables.get(family)
        out += [_cmd(prog, "-t", "nat", *_ipt_argv("-D", r), desc=f"{prog}: remove redirect {_ipt_human(r)}")
                for r in have or () if r not in want]
        if not want:
            if facts.iptables_jump.get(family):
                out.append(_cmd(prog, "-t", "nat", "-D", "PREROUTING", "-j", NAT_CHAIN,
                                desc=f"{prog}: remove jump from nat PREROUTING to {NAT_CHAIN}"))
            if have is not None:
                out.append(_cmd(prog, "-t", "nat", "-X", NAT_CHAIN, desc=f"{prog}: delete nat chain {NAT_CHAIN}"))
    return out


def _ipt_argv(op: str, rule: str) -> list[str]:
    return [op, *rule.split()[1:]]


def _ipt_human(rule: str) -> str:
    p = rule.split()
    s = f"{p[p.index('-p') + 1]} {p[p.index('-d') + 1].rsplit('/', 1)[0]}:{p[p.index('--dport') + 1]}"
    if "--to-ports" in p:
        s += f" to port {p[p.index('--to-ports') + 1]}"
    return s


def _firewalld(spec: Spec, want: tuple[str, ...], facts: Facts, phase: str) -> list[Change]:
    out: list[Change] = []
    recorded = set((facts.record or {}).get("forward_ports", []))
    for where in ("runtime", "permanent"):
        have = facts.forward_ports.get(where, ())
        extra = ("--permanent",) if where == "permanent" else ()
        if phase == "add":
            out += [_cmd("firewall-cmd", *extra, f"--zone={spec.zone}", f"--add-forward-port={fp}",
                         desc=f"firewalld ({where}, zone {spec.zone}): forward-port {fp}")
                    for fp in want if fp not in have]
        else:  # only forward-ports lvsdr added (recorded), never an operator's own
            out += [_cmd("firewall-cmd", *extra, f"--zone={spec.zone}", f"--remove-forward-port={fp}",
                         desc=f"firewalld ({where}, zone {spec.zone}): remove forward-port {fp}")
                    for fp in have if fp not in want and fp in recorded]
    return out


def _ours_in_table(table: str, facts: Facts) -> int:
    """How many rules of ``table`` are lvsdr's (chains' rules and jumps)."""
    if table == "arp filter":
        return len(facts.arptables or ()) + len(facts.arptables_jumps)
    fam = 4 if table == "ip nat" else 6
    return len(facts.iptables.get(fam) or ()) + int(bool(facts.iptables_jump.get(fam)))


def _tables_prune(keep: tuple[str, ...], facts: Facts) -> list[Change]:
    """Delete the xtables tables lvsdr's first apply created, once nothing but
    lvsdr's rules is in them (so remove leaves the node as it found it)."""
    out = []
    for table in (facts.record or {}).get("created_tables", []):
        if table in keep or table not in facts.nft_tables:
            continue
        if facts.nft_tables[table] == _ours_in_table(table, facts):
            out.append(_cmd("nft", "delete", "table", *table.split(),
                            desc=f"nftables: delete table {table} (created by lvsdr, now empty)"))
    return out


def _sysctl_changes(want: dict[str, str], facts: Facts) -> list[Change]:
    return [Change("sysctl", f"sysctl {k} = {v} (was {facts.sysctls.get(k, '?')})", (k, v))
            for k, v in sorted(want.items()) if facts.sysctls.get(k) != v]


def _restore_sysctls(facts: Facts, keep: set[str]) -> list[Change]:
    originals = (facts.record or {}).get("sysctl_originals", {})
    return [Change("sysctl", f"sysctl {k} = {v} (restore; now {facts.sysctls.get(k, '?')})", (k, v))
            for k, v in sorted(originals.items()) if k not in keep and facts.sysctls.get(k) != v]


def _record_data(spec: Spec, facts: Facts, addresses: set[tuple[str, str]], keep_all: bool) -> dict[str, Any]:
    """lvsdr's record on the node: the sysctl values it found (restored on
    remove), the addresses it added (IPv6 addresses carry no label) and the
    firewalld forward-ports it added."""
    old = facts.record or {}
    originals = dict(old.get("sysctl_originals", {}))
    for k in spec.sysctls():
        originals.setdefault(k, facts.sysctls.get(k, "0"))
    if not keep_all:
        originals = {k: v for k, v in originals.items() if k in spec.sysctls()}
    fps = set(spec.forward_ports()) | (set(old.get("forward_ports", [])) if keep_all else set())
    created = set(old.get("created_tables", [])) | {t for t in spec.tables() if t not in facts.nft_tables}
    if not keep_all:
        created &= set(spec.tables())
    return {
        "cluster": spec.cluster, "node": spec.node, "method": spec.method,
        "sysctl_originals": dict(sorted(originals.items())),
        "addresses": sorted([list(a) for a in addresses]),
        "forward_ports": sorted(fps),
        "created_tables": sorted(created),
    }


def _record_change(data: dict[str, Any]) -> Change:
    return Change("record", "record lvsdr's changes on this node (to undo them exactly)",
                  (json.dumps(data, sort_keys=True),))


def plan(spec: Spec, facts: Facts) -> list[Change]:
    """Changes that take the node from ``facts`` to ``spec``, safe in order:
    record, suppression, VIPs and redirects; then stale VIPs, then stale
    suppression; then the final record."""
    want_addrs = set(spec.addresses())
    ours = _ours(facts)
    present = {(i, p) for i, p, _ in facts.addresses}
    first = _record_data(spec, facts, want_addrs | ours, keep_all=True)
    final = _record_data(spec, facts, want_addrs, keep_all=False)
    changes: list[Change] = []
    if first != (facts.record or {}):
        changes.append(_record_change(first))  # 1. remember, before changing anything
    changes += _sysctl_changes(spec.sysctls(), facts)  # 2. suppression
    changes += _arptables_add(spec.arptables_rules(), facts)
    changes += _nft_add(spec.nft_rules(), facts)
    for ifname, pfx in sorted(want_addrs - present):  # 3. VIPs, redirects
        label = f"{ifname}:{LABEL}" if ":" not in pfx else ""
        changes.append(Change("addr-add", f"add VIP {pfx} on {ifname}", (ifname, pfx, label)))
    changes += _iptables_add(spec, facts)
    changes += _firewalld(spec, spec.forward_ports(), facts, "add")
    for ifname, pfx in sorted(ours - want_addrs):  # 4. stale VIPs, then their suppression
        changes.append(Change("addr-del", f"remove VIP {pfx} from {ifname}", (ifname, pfx)))
    changes += _iptables_prune(spec, facts)
    changes += _firewalld(spec, spec.forward_ports(), facts, "prune")
    changes += _arptables_prune(spec.arptables_rules(), facts)
    changes += _nft_prune(spec.nft_rules(), facts)
    changes += _tables_prune(spec.tables(), facts)
    changes += _restore_sysctls(facts, keep=set(spec.sysctls()))
    if final != first:
        changes.append(_record_change(final))  # 5. the record as the node now is
    return changes


def plan_remove(spec: Spec, facts: Facts) -> list[Change]:
    """Undo everything lvsdr did on this node: VIPs first, then redirects and
    suppression, restoring the sysctl values it found; last, forget the record."""
    changes: list[Change] = []
    for ifname, pfx in sorted(_ours(facts)):
        changes.append(Change("addr-del", f"remove VIP {pfx} from {ifname}", (ifname, pfx)))
    changes += _iptables_prune(None, facts)
    changes += _firewalld(spec, (), facts, "prune")
    changes += _arptables_prune((), facts)
    changes += _nft_prune({}, facts)
    changes += _tables_prune((), facts)
    changes += _restore_sysctls(facts, keep=set())
    if facts.record is not None:
        changes.append(Change("record-del", "forget lvsdr's record of this node"))
    return changes
