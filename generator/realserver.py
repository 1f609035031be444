"""Real servers: the desired ARP-suppression state, and the plan to get there.

Pure: ``desired(cluster, node)`` gives the target (a ``Spec``), ``plan(spec,
facts)`` compares it with what was read from the node and returns typed
changes, in an order that never lets the node answer ARP for a VIP:
suppression is in force before a VIP appears, and a VIP is gone before its
suppression is lifted. A plan computed right after applying it is empty.

What each method does is in its own module under ``methods/`` (corrected
from the Red Hat guide, see docs/realserver.md); this module orders their
steps around the VIPs and keeps lvsdr's record.
"""

from __future__ import annotations

import json

from lvsdr import defaults
from lvsdr.errors import InputError

from .changes import (
    AddAddress,
    Change,
    DeleteNftTable,
    ForgetRecord,
    RemoveAddress,
    RestoreSysctl,
    SetSysctl,
    WriteRecord,
)
from .methods import method_of, registry
from .model import Cluster, Director, RealServer, addr_key
from .node import LABEL, Chain, Facts, IPInterface, Record, address_key
from .spec import Redirect, Spec

Addr = tuple[str, IPInterface]


def desired(cluster: Cluster, node: str) -> Spec:
    rs = cluster.real_server(node)
    if rs is None:
        if cluster.director(node) is not None:
            raise InputError(f"--node: {json.dumps(node)} is a director; its ARP role follows VRRP and is "
                             "switched by the failover hook, not by `realserver`")
        raise InputError(cluster.unknown_node(node, "a real server"))
    return backend_spec(cluster, rs)


def backend_spec(cluster: Cluster, server: RealServer | Director, *, vips_on_lo: bool = False,
                 suppress: bool = True) -> Spec:
    """The real-server side of ``server`` (a real server, or a director that is
    also a backend: then with vips_on_lo=True and suppress per VRRP role)."""
    node = server.name
    services = cluster.services_of(node)
    vips = tuple(sorted({v for s in services for v in s.all_vips}, key=addr_key))
    redirects = tuple(sorted(
        {Redirect(v, s.protocol, p, b.listen_port)
         for s in services for b in s.backends if b.server == node for v, p in s.endpoints}
        | {Redirect(v, s.protocol, p) for s in services
           if s.sorry_server is not None and s.sorry_server.address == server.address for v, p in s.endpoints},
        key=lambda r: (addr_key(r.vip), r.protocol, r.port),
    ))
    zone = server.firewalld_zone if isinstance(server, RealServer) else defaults.FIREWALLD_ZONE
    return Spec(cluster.name, node, server.arp_method, server.interface, server.address, vips, redirects,
                zone, vips_on_lo=vips_on_lo, suppress=suppress)


def addresses(spec: Spec) -> tuple[Addr, ...]:
    """(ifname, VIP/32|/128) lvsdr puts on the host."""
    return method_of(spec).addresses(spec)


def _ours(facts: Facts) -> set[Addr]:
    """Addresses on the node that lvsdr put there: labelled, or in its record."""
    recorded = set(facts.record.addresses if facts.record else ())
    return {(a.ifname, a.address) for a in facts.addresses
            if a.labelled_ours or (a.ifname, a.address) in recorded}


def _record(spec: Spec, facts: Facts, addrs: set[Addr], keep_all: bool) -> Record:
    """lvsdr's record as it will be: ``keep_all`` (before the changes) keeps
    what the old record knew, so an interrupted apply can still undo it."""
    impl = method_of(spec)
    old = facts.record
    want_sysctls = impl.sysctls(spec)
    originals = dict(old.sysctl_originals) if old else {}
    for k in want_sysctls:
        originals.setdefault(k, facts.sysctls.get(k, "0"))
    if not keep_all:
        originals = {k: v for k, v in originals.items() if k in want_sysctls}
    fps = set(impl.recorded(spec)) | (set(old.forward_ports) if old and keep_all else set())
    tables = impl.created_tables(spec)
    created = set(old.created_tables if old else ()) | {t for t in tables if t not in facts.nft_tables}
    if not keep_all:
        created &= set(tables)
    return Record(
        cluster=spec.cluster, node=spec.node, method=spec.method,
        sysctl_originals=tuple(sorted(originals.items())),
        addresses=tuple(sorted(addrs, key=address_key)),
        forward_ports=tuple(sorted(fps)),
        created_tables=tuple(sorted(created)),
    )


def _sysctl_changes(want: dict[str, str], facts: Facts) -> list[Change]:
    return [SetSysctl(k, v, facts.sysctls.get(k)) for k, v in sorted(want.items()) if facts.sysctls.get(k) != v]


def _restore_sysctls(facts: Facts, keep: set[str]) -> list[Change]:
    originals = facts.record.sysctl_originals if facts.record else ()
    return [RestoreSysctl(k, v, facts.sysctls.get(k)) for k, v in originals
            if k not in keep and facts.sysctls.get(k) != v]


def _tables_prune(keep: tuple[str, ...], facts: Facts) -> list[Change]:
    """Delete the xtables tables lvsdr's first apply created, once nothing but
    lvsdr's rules is in them (so remove leaves the node as it found it)."""
    out: list[Change] = []
    for table in facts.record.created_tables if facts.record else ():
        if table in keep or table not in facts.nft_tables:
            continue
        ours = sum(1 for r in facts.rules if r.nft_table == table and not isinstance(r, Chain))
        if facts.nft_tables[table] == ours:
            out.append(DeleteNftTable(table, "created by lvsdr, now empty"))
    return out


def _prune_all(spec: Spec, facts: Facts, keep_own: bool) -> list[Change]:
    """Every method prunes what it left: redirects first (no VIP depends on
    them), then ARP suppression (after the VIPs it protected are gone)."""
    methods = registry().values()
    order = [m for m in methods if m.redirect] + [m for m in methods if not m.redirect]
    out: list[Change] = []
    for m in order:
        out += m.prune(spec, keep_own and m.name == spec.method, facts)
    return out


def plan(spec: Spec, facts: Facts) -> list[Change]:
    """Changes that take the node from ``facts`` to ``spec``, safe in order:
    record, suppression, VIPs and redirects; then stale VIPs, then stale
    suppression; then the final record."""
    impl = method_of(spec)
    want_addrs = set(impl.addresses(spec))
    ours = _ours(facts)
    present = {(a.ifname, a.address) for a in facts.addresses}
    first = _record(spec, facts, want_addrs | ours, keep_all=True)
    final = _record(spec, facts, want_addrs, keep_all=False)
    changes: list[Change] = []
    if first != facts.record:
        changes.append(WriteRecord(first))  # 1. remember, before changing anything
    changes += _sysctl_changes(impl.sysctls(spec), facts)  # 2. suppression
    if not impl.redirect:
        changes += impl.add(spec, facts)
    for ifname, a in sorted(want_addrs - present, key=address_key):  # 3. VIPs, redirects
        changes.append(AddAddress(ifname, a, f"{ifname}:{LABEL}" if a.version == 4 else ""))
    if impl.redirect:
        changes += impl.add(spec, facts)
    for ifname, a in sorted(ours - want_addrs, key=address_key):  # 4. stale VIPs, then their suppression
        changes.append(RemoveAddress(ifname, a))
    changes += _prune_all(spec, facts, keep_own=True)
    changes += _tables_prune(impl.created_tables(spec), facts)
    changes += _restore_sysctls(facts, keep=set(impl.sysctls(spec)))
    if final != first:
        changes.append(WriteRecord(final))  # 5. the record as the node now is
    return changes


def plan_remove(spec: Spec, facts: Facts) -> list[Change]:
    """Undo everything lvsdr did on this node: VIPs first, then redirects and
    suppression, restoring the sysctl values it found; last, forget the record."""
    changes: list[Change] = [RemoveAddress(i, a) for i, a in sorted(_ours(facts), key=address_key)]
    changes += _prune_all(spec, facts, keep_own=False)
    changes += _tables_prune((), facts)
    changes += _restore_sysctls(facts, keep=set())
    if facts.record is not None:
        changes.append(ForgetRecord())
    return changes
