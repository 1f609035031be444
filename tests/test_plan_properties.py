"""Property tests of the pure planner against a simulated node: for any
starting state (lvsdr's leftovers from another configuration, plus junk),
applying the plan converges (a second plan is empty), never leaves a VIP on
the host without suppression, and remove leaves nothing of lvsdr's."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, assert_never

from hypothesis import given, settings
from hypothesis import strategies as st

from lvsdr.generator.changes import (
    AddAddress,
    AddRoute,
    AddRule,
    Change,
    DeleteNftTable,
    DeleteRule,
    ForgetRecord,
    LoadNftTable,
    RemoveAddress,
    RemoveRoute,
    RestoreSysctl,
    SetSysctl,
    WriteRecord,
)
from lvsdr.generator.methods import NAMES, firewalld
from lvsdr.generator.node import Chain, Facts, NodeAddress
from lvsdr.generator.realserver import plan, plan_remove
from lvsdr.generator.spec import Redirect, Spec

from helpers import safe_order

VIPS = [ipaddress.ip_address(a) for a in ("192.0.2.100", "192.0.2.101", "192.0.2.102", "2001:db8::100")]
JUNK_ADDR = NodeAddress("lo", ipaddress.ip_interface("198.51.100.9/32"), "lo:bgp")
JUNK_FP = firewalld.ForwardPort("runtime", "public", 22, "tcp", 2222)


class Node:
    """What a real server looks like to lvsdr, changed as the gateway would."""

    def __init__(self, facts: Facts) -> None:
        self.f = facts

    def _set(self, **kw: Any) -> None:
        self.f = dataclasses.replace(self.f, **kw)

    def _count(self, table: str | None, delta: int) -> None:
        if table is None:
            return
        tables = dict(self.f.nft_tables)
        tables[table] = tables.get(table, 0) + delta  # xtables-nft creates its table on first use
        self._set(nft_tables=tables)

    def apply(self, ch: Change) -> None:
        f = self.f
        match ch:
            case WriteRecord(record=record):
                self._set(record=record)
            case ForgetRecord():
                self._set(record=None)
            case SetSysctl(key=key, value=value) | RestoreSysctl(key=key, value=value):
                self._set(sysctls={**f.sysctls, key: value})
            case AddAddress(ifname=i, address=a, label=label):
                self._set(addresses=(*f.addresses, NodeAddress(i, a, label)))
            case RemoveAddress(ifname=i, address=a):
                assert any((x.ifname, x.address) == (i, a) for x in f.addresses), f"removing absent {a}"
                self._set(addresses=tuple(x for x in f.addresses if (x.ifname, x.address) != (i, a)))
            case AddRule(rule=rule) if isinstance(rule, Chain):
                assert rule not in f.chains, f"chain exists: {rule}"
                self._set(chains=(*f.chains, rule))
                self._count(rule.nft_table, 0)
            case DeleteRule(rule=rule) if isinstance(rule, Chain):
                name = rule.listing().split()[1]  # "-N NAME": no rule in it, no jump to it, may remain
                in_use = [r for r in f.rules if r.nft_table == rule.nft_table
                          and name in (r.listing().split()[1], r.listing().split()[-1])]
                assert not in_use, f"chain {name} deleted while in use: {in_use}"
                self._set(chains=tuple(c for c in f.chains if c != rule))
            case AddRule(rule=rule):
                assert rule not in f.rules, f"rule exists: {rule}"
                self._set(rules=(*f.rules, rule))
                self._count(rule.nft_table, 1)
            case DeleteRule(rule=rule):
                assert rule in f.rules, f"deleting a rule that is not there: {rule}"
                self._set(rules=tuple(r for r in f.rules if r != rule))
                self._count(rule.nft_table, -1)
            case AddRoute(address=a):
                assert a not in f.routes, f"route exists: {a}"
                self._set(routes=(*f.routes, a))
            case RemoveRoute(address=a):
                assert a in f.routes, f"removing absent route {a}"
                self._set(routes=tuple(r for r in f.routes if r != a))
            case LoadNftTable(table=table):
                self._set(nft={**f.nft, table.key: table})
            case DeleteNftTable(key=key):
                self._set(nft={k: v for k, v in f.nft.items() if k != key},
                          nft_tables={k: v for k, v in f.nft_tables.items() if k != key})
            case _:
                assert_never(ch)


methods = st.sampled_from(NAMES)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    method = draw(methods)
    pool = VIPS if method in ("sysctl", "nftables", "iptables") else VIPS[:3]
    vips = tuple(sorted(set(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))),
                        key=lambda a: (a.version, int(a))))
    redirects = tuple(Redirect(v, "tcp", 80, draw(st.sampled_from([None, 8080]))) for v in vips)
    return Spec("web", "web1", method, "eth0", ipaddress.ip_address("192.0.2.11"), vips, redirects)


def settle(spec: Spec, facts: Facts) -> Facts:
    node = Node(facts)
    for ch in plan(spec, node.f):
        node.apply(ch)
    return node.f


@st.composite
def starting_facts(draw: st.DrawFn) -> Facts:
    """A node as another lvsdr configuration left it, plus junk that is not lvsdr's."""
    base = Facts(
        addresses=(NodeAddress("eth0", ipaddress.ip_interface("192.0.2.11/24"), "eth0"),
                   NodeAddress("lo", ipaddress.ip_interface("127.0.0.1/8"), "lo"), JUNK_ADDR),
        sysctls={"net.ipv4.conf.all.arp_ignore": draw(st.sampled_from(["0", "1", "2"])),
                 "net.ipv4.conf.all.arp_announce": "0", "net.ipv4.conf.eth0.arp_ignore": "0",
                 "net.ipv4.conf.eth0.arp_announce": draw(st.sampled_from(["0", "junk"]))},
        rules=(JUNK_FP,),
        nft_tables=draw(st.sampled_from([{}, {"ip nat": 3}, {"arp filter": 1}])),
    )
    if draw(st.booleans()):
        base = settle(draw(specs()), base)  # leftovers of another configuration
    return base


@settings(max_examples=300, deadline=None)
@given(specs(), starting_facts())
def test_apply_converges_safely(spec: Spec, facts: Facts) -> None:
    """From any reachable node state, applying the plan converges in a safe order and a second plan is empty."""
    changes = plan(spec, facts)
    safe_order(changes)
    node = Node(facts)
    for ch in changes:
        node.apply(ch)
    assert plan(spec, node.f) == [], "a plan right after apply must be empty"
    # the junk that was never lvsdr's is untouched
    assert JUNK_ADDR in node.f.addresses
    assert JUNK_FP in node.f.rules


@settings(max_examples=300, deadline=None)
@given(specs(), starting_facts())
def test_remove_leaves_nothing_of_lvsdr(spec: Spec, facts: Facts) -> None:
    """remove leaves nothing of lvsdr on the node, whatever state it started in."""
    node = Node(facts)
    for ch in plan(spec, node.f):
        node.apply(ch)
    record = node.f.record
    assert record is not None
    changes = plan_remove(spec, node.f)
    safe_order(changes)
    for ch in changes:
        node.apply(ch)
    f = node.f
    assert not any(a.labelled_ours for a in f.addresses)
    assert not any(a.address.ip in VIPS for a in f.addresses)
    assert f.chains == () and f.rules == (JUNK_FP,) and f.nft == {}
    assert f.record is None
    for k, v in record.sysctl_originals:
        assert f.sysctls[k] == v
    assert not set(record.created_tables) & set(f.nft_tables), "tables lvsdr created must go with it"
    assert plan_remove(spec, f) == []
