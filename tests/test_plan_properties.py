"""Property tests of the pure planner against a simulated node: for any
starting state (lvsdr's leftovers from another configuration, plus junk),
applying the plan converges (a second plan is empty), never leaves a VIP on
the host without suppression, and remove leaves nothing of lvsdr's."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_realserver_plan import assert_safe_order

from lvsdr.generator.realserver import (
    Change,
    Facts,
    Redirect,
    Spec,
    plan,
    plan_remove,
)

VIPS = [ipaddress.ip_address(a) for a in ("192.0.2.100", "192.0.2.101", "192.0.2.102", "2001:db8::100")]


class Node:
    """What a real server looks like to lvsdr, changed as the gateway would."""

    def __init__(self, facts: Facts) -> None:
        self.f = facts

    def _set(self, **kw: Any) -> None:
        self.f = dataclasses.replace(self.f, **kw)

    def _table(self, name: str, delta: int | None) -> None:
        tables = dict(self.f.nft_tables)
        if delta is None:
            tables.pop(name, None)
        else:
            tables[name] = max(0, tables.get(name, 0) + delta)
        self._set(nft_tables=tables)

    def apply(self, ch: Change) -> None:
        f = self.f
        if ch.kind == "record":
            self._set(record=json.loads(ch.args[0]))
        elif ch.kind == "record-del":
            self._set(record=None)
        elif ch.kind == "sysctl":
            self._set(sysctls={**f.sysctls, ch.args[0]: ch.args[1]})
        elif ch.kind == "addr-add":
            self._set(addresses=(*f.addresses, (ch.args[0], ch.args[1], ch.args[2])))
        elif ch.kind == "addr-del":
            self._set(addresses=tuple(a for a in f.addresses if (a[0], a[1]) != (ch.args[0], ch.args[1])))
        elif ch.kind == "nft":
            script = ch.args[0]
            rules: dict[str, list[str]] = {}
            chain = None
            for line in script.splitlines()[2:]:
                s = line.strip()
                if s.startswith("chain "):
                    chain = s.split()[1]
                    rules[chain] = []
                elif chain and s and not s.startswith(("type ", "}", "table ")):
                    rules[chain].append(s)
            self._set(nft={k: tuple(v) for k, v in rules.items() if v} or None)
        elif ch.kind == "cmd":
            self._cmd(list(ch.args))
        else:
            raise AssertionError(ch.kind)

    def _cmd(self, argv: list[str]) -> None:
        f = self.f
        prog, args = argv[0], argv[1:]
        if prog == "arptables":
            op, chain = args[0], args[1]
            if op == "-N":
                self._set(arptables=f.arptables or ())
                self._table("arp filter", 0)
            elif op == "-X":
                self._set(arptables=None)
            elif chain in ("INPUT", "OUTPUT"):
                jumps = set(f.arptables_jumps)
                (jumps.add if op == "-A" else jumps.discard)(chain)
                self._set(arptables_jumps=tuple(sorted(jumps)))
                self._table("arp filter", 1 if op == "-A" else -1)
            else:
                rule = _arp_canonical(chain, args[2:])
                assert f.arptables is not None, "rule added to a chain that does not exist"
                if op == "-A":
                    self._set(arptables=(*f.arptables, rule))
                else:
                    assert rule in f.arptables, f"deleting a rule that is not there: {rule}"
                    self._set(arptables=tuple(r for r in f.arptables if r != rule))
                self._table("arp filter", 1 if op == "-A" else -1)
        elif prog in ("iptables", "ip6tables"):
            fam = 4 if prog == "iptables" else 6
            table = "ip nat" if fam == 4 else "ip6 nat"
            op, chain = args[2], args[3]
            have = f.iptables.get(fam)
            if op == "-N":
                self._set(iptables={**f.iptables, fam: ()})
                self._table(table, 0)
            elif op == "-X":
                self._set(iptables={**f.iptables, fam: None})
            elif chain == "PREROUTING":
                self._set(iptables_jump={**f.iptables_jump, fam: op == "-A"})
                self._table(table, 1 if op == "-A" else -1)
            else:
                rule = " ".join(["-A", *args[3:]])
                assert have is not None
                self._set(iptables={**f.iptables, fam: (*have, rule) if op == "-A"
                                    else tuple(r for r in have if r != rule)})
                self._table(table, 1 if op == "-A" else -1)
        elif prog == "nft" and args[:2] == ["delete", "table"]:
            self._table(" ".join(args[2:]), None)
        elif prog == "firewall-cmd":
            where = "permanent" if "--permanent" in args else "runtime"
            fp_arg = next(a for a in args if "forward-port=" in a)
            fp = fp_arg.split("=", 1)[1]
            have = set(f.forward_ports.get(where, ()))
            (have.add if fp_arg.startswith("--add") else have.discard)(fp)
            self._set(forward_ports={**f.forward_ports, where: tuple(sorted(have))})
        else:
            raise AssertionError(argv)


def _arp_canonical(chain: str, rest: list[str]) -> str:
    """argv after the chain -> the `arptables -S` form the planner compares."""
    j = rest.index("-j")
    match, target, opts = rest[:j], rest[j + 1], rest[j + 2:]
    return " ".join(["-A", chain, "-j", target, *match, *opts])


methods = st.sampled_from(["sysctl", "arptables", "nftables", "iptables", "firewalld"])


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
        addresses=(("eth0", "192.0.2.11/24", "eth0"), ("lo", "127.0.0.1/8", "lo"), ("lo", "198.51.100.9/32", "lo:bgp")),
        sysctls={"net.ipv4.conf.all.arp_ignore": draw(st.sampled_from(["0", "1", "2"])),
                 "net.ipv4.conf.all.arp_announce": "0", "net.ipv4.conf.eth0.arp_ignore": "0",
                 "net.ipv4.conf.eth0.arp_announce": draw(st.sampled_from(["0", "junk"]))},
        forward_ports={"runtime": ("port=22:proto=tcp:toport=2222",), "permanent": ()},
        nft_tables=draw(st.sampled_from([{}, {"ip nat": 3}, {"arp filter": 1}])),
    )
    if draw(st.booleans()):
        base = settle(draw(specs()), base)  # leftovers of another configuration
    return base


@settings(max_examples=300, deadline=None)
@given(specs(), starting_facts())
def test_apply_converges_safely(spec: Spec, facts: Facts) -> None:
    changes = plan(spec, facts)
    assert_safe_order(changes)
    node = Node(facts)
    for ch in changes:
        node.apply(ch)
    assert plan(spec, node.f) == [], "a plan right after apply must be empty"
    # the junk that was never lvsdr's is untouched
    assert ("lo", "198.51.100.9/32", "lo:bgp") in node.f.addresses
    assert "port=22:proto=tcp:toport=2222" in node.f.forward_ports.get("runtime", ())


@settings(max_examples=300, deadline=None)
@given(specs(), starting_facts())
def test_remove_leaves_nothing_of_lvsdr(spec: Spec, facts: Facts) -> None:
    node = Node(facts)
    for ch in plan(spec, node.f):
        node.apply(ch)
    original_sysctls = (node.f.record or {}).get("sysctl_originals", {})
    created = (node.f.record or {}).get("created_tables", [])
    changes = plan_remove(spec, node.f)
    assert_safe_order(changes)
    for ch in changes:
        node.apply(ch)
    f = node.f
    assert not any(label.endswith(":lvsdr") for _i, _p, label in f.addresses)
    assert not any(p.startswith(("192.0.2.10", "2001:db8::100")) for _i, p, _l in f.addresses)
    assert f.arptables is None and not f.arptables_jumps and f.nft is None
    assert all(v is None for v in f.iptables.values()) and not any(f.iptables_jump.values())
    assert f.record is None
    for k, v in original_sysctls.items():
        assert f.sysctls[k] == v
    assert not set(created) & set(f.nft_tables), "tables lvsdr created must go with it"
    assert plan_remove(spec, f) == []
