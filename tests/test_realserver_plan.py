"""Pure real-server plans: spec + observed facts -> typed changes (fixtures in data/)."""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
import typing
from typing import Any

import pytest

from lvsdr.errors import InputError
from lvsdr.generator import changes as ch
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.methods import arptables, iptables
from lvsdr.generator.node import NftTable, Record, host_interface
from lvsdr.generator.realserver import addresses, desired, plan, plan_remove
from lvsdr.generator.spec import Spec

from helpers import (
    DATA,
    EXAMPLES,
    OTHER,
    SUPPRESS,
    UNSUPPRESS,
    VIP_ADD,
    VIP_DEL,
    classify,
    encode,
    facts_from,
    safe_order,
)

FIXTURES = DATA / "realserver_plans.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURES.read_text())["cases"]


def spec_for(method: str, node: str = "web1") -> Spec:
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    for rs in data["real_servers"]:
        rs["arp_method"] = method
    return desired(parse_cluster(data), node)


def planned(case: dict[str, Any]) -> list[ch.Change]:
    return (plan_remove if case.get("remove") else plan)(spec_for(case["method"]), facts_from(case["facts"]))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_plan_fixture(case: dict[str, Any]) -> None:
    """Each recorded fixture of facts plans exactly the recorded changes."""
    got = [encode(c) for c in planned(case)]
    if os.environ.get("UPDATE_FIXTURES"):
        case["expected"] = got
        FIXTURES.write_text(json.dumps({**json.loads(FIXTURES.read_text()), "cases": CASES}, indent=1) + "\n")
    assert got == case["expected"]
    safe_order(planned(case))


def test_fixtures_exercise_both_sides_of_the_safe_order() -> None:
    """The safe-order property is checked on plans that have something to order."""
    counts = [safe_order(planned(c)) for c in CASES]
    assert any(k[SUPPRESS] and k[VIP_ADD] for k in counts), "no fixture adds a VIP under new suppression"
    assert any(k[VIP_DEL] and k[UNSUPPRESS] for k in counts), "no fixture lifts suppression after a VIP goes"


def test_every_change_type_is_classified() -> None:
    """Every change type has a place in the safe order."""
    rule = arptables.ArpDrop(ipaddress.IPv4Address("192.0.2.100"))
    addr = host_interface(ipaddress.ip_address("192.0.2.100"))
    one_of_each: list[ch.Change] = [
        ch.SetSysctl("k", "1"), ch.RestoreSysctl("k", "0"), ch.AddAddress("lo", addr), ch.RemoveAddress("lo", addr),
        ch.AddRule(rule), ch.DeleteRule(rule), ch.LoadNftTable(NftTable("arp", "lvsdr")),
        ch.DeleteNftTable("arp lvsdr"), ch.WriteRecord(Record("c", "n", "sysctl")), ch.ForgetRecord(),
        ch.AddRoute(4242, addr), ch.RemoveRoute(4242, addr),
    ]
    assert {type(c) for c in one_of_each} == set(typing.get_args(ch.Change))
    assert [classify(c) for c in one_of_each] == [
        SUPPRESS, UNSUPPRESS, VIP_ADD, VIP_DEL, SUPPRESS, UNSUPPRESS, SUPPRESS, UNSUPPRESS, OTHER, OTHER, OTHER, OTHER]


def test_director_is_not_a_real_server() -> None:
    """realserver refuses a director's name."""
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    with pytest.raises(InputError, match="is a director; its ARP role follows VRRP"):
        desired(parse_cluster(data), "lb1")


def test_unknown_node_names_every_node_by_role() -> None:
    """An unknown node is refused naming every node by role."""
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    with pytest.raises(InputError) as e:
        desired(parse_cluster(data), "web9")
    assert str(e.value) == '--node: "web9" is not a real server (directors: lb1, lb2; real servers: web1, web2)'


def test_ipv6_vip_goes_on_lo_for_nftables() -> None:
    """With nftables an IPv6 VIP goes on lo (NDP is not ARP)."""
    data = tomllib.loads((EXAMPLES / "ipv6.toml").read_text())
    spec = desired(parse_cluster(data), "web2")
    assert addresses(spec) == (("lo", ipaddress.ip_interface("2001:db8::100/128")),)
    assert not any(isinstance(c, ch.LoadNftTable) for c in plan(spec, facts_from({})))  # NDP is not ARP


def test_iptables_listen_port_redirects_to_it() -> None:
    """With iptables a listen_port redirects the VIP's port to it."""
    data = tomllib.loads((EXAMPLES / "full.toml").read_text())
    spec = desired(parse_cluster(data), "app4")
    assert iptables.desired_rules(spec, 4) == (
        iptables.NatRedirect(ipaddress.ip_address("198.51.100.101"), "tcp", 8080, 18080),)
    assert addresses(spec) == ()
