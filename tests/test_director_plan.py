"""Pure director role plans: which changes, in which order."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import replace

from lvsdr.generator.changes import DeleteNftTable, LoadNftTable, RemoveAddress, SetSysctl, WriteRecord
from lvsdr.generator.director import (
    DIRECTOR_SYSCTLS,
    KEY,
    DirectorSpec,
    Mark,
    director_spec,
    families_without_address,
    observed_role,
    parse_fwmark,
    plan_role,
)
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.methods import nftables
from lvsdr.generator.node import NodeAddress

from helpers import EXAMPLES, facts_from

VIP = ipaddress.ip_address("192.0.2.120")
ON_LO = NodeAddress("lo", ipaddress.ip_interface("192.0.2.120/32"), "lo:lvsdr")
ON_ETH = NodeAddress("eth0", ipaddress.ip_interface("192.0.2.120/32"), "eth0")
RECORD = {"cluster": "pair", "node": "node1", "method": "nftables", "addresses": [["lo", "192.0.2.120/32"]]}


def spec(node: str = "node1") -> DirectorSpec:
    return director_spec(parse_cluster(tomllib.loads((EXAMPLES / "pair.toml").read_text())), node)


def test_role_is_read_from_the_vrrp_interface_only() -> None:
    """The role is MASTER only when a VIP is on the VRRP interface, not on lo."""
    s = spec()
    assert observed_role(s, (ON_LO,)) == "BACKUP"
    assert observed_role(s, (ON_LO, ON_ETH)) == "MASTER"


def test_backup_suppresses_before_dropping_the_marks() -> None:
    """Going BACKUP, ARP suppression comes before the marks go."""
    s = spec()
    marks = s.fwmark_table()
    assert marks is not None
    facts = facts_from({"record": RECORD})
    facts = type(facts)(addresses=(ON_LO,), nft={KEY: marks}, record=facts.record)
    assert s.backend is not None
    arp = nftables.desired_table(s.backend)
    assert arp is not None
    got = [c for c in plan_role(s, "BACKUP", facts) if not isinstance(c, WriteRecord)]
    assert got == [LoadNftTable(arp), DeleteNftTable(KEY, "not MASTER")]


def test_master_marks_then_lifts_arp_rules() -> None:
    """Going MASTER, the marks come before the ARP rules go."""
    s = spec()
    assert s.backend is not None
    arp = nftables.desired_table(s.backend)
    assert arp is not None
    base = facts_from({"record": RECORD})
    facts = type(base)(addresses=(ON_LO, ON_ETH), nft={arp.key: arp}, record=base.record)
    marks = s.fwmark_table()
    assert marks is not None
    got = plan_role(s, "MASTER", facts)
    assert got[0] == LoadNftTable(marks, "mark VIP traffic for the fwmark services")
    assert DeleteNftTable(arp.key) in got[1:]
    # keepalived's VIP on eth0 is never lvsdr's to remove
    assert not any(isinstance(c, RemoveAddress) for c in got)


def test_director_without_backends_only_marks() -> None:
    """A director that backs nothing only gets the fwmark table as MASTER (and, full.toml having sync_daemon, its
    sync holds in either role)."""
    s = director_spec(parse_cluster(tomllib.loads((EXAMPLES / "full.toml").read_text())), "lb-a")
    assert s.backend is None
    table, holds = s.fwmark_table(), s.sync_table()
    assert table is not None and table.rule_count == 1 and holds is not None
    hold = LoadNftTable(holds, "drop, not reset, segments of connections the sync daemon has not brought yet")
    assert plan_role(s, "MASTER", facts_from({})) == [hold, LoadNftTable(table, "mark VIP traffic for the fwmark "
                                                                               "services")]
    assert plan_role(s, "BACKUP", facts_from({})) == [hold]


def test_fwmark_listing_round_trips_through_the_fact_parser() -> None:
    """What `nft -s list table inet lvsdr_fwmark` printed (captured) parses to the
    marks lvsdr would load: the MASTER's plan is then empty."""
    from helpers import DATA

    table = parse_fwmark((DATA / "facts" / "nft-list-table-inet-lvsdr_fwmark.txt").read_text())
    assert table is not None
    assert table.chains[0].rules == (
        Mark(VIP, "tcp", 80, 0x4C560001), Mark(ipaddress.ip_address("2001:db8::100"), "udp", 53, 0x4C560002))
    assert parse_fwmark("") is None


def test_role_follows_a_vip_on_its_own_device() -> None:
    """A [[vips]] entry on another device: keepalived puts it there, and that is where MASTER is seen."""
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    data["services"] = [{**data["services"][0], "vip": "192.0.2.100"}]
    data["vips"] = [{"address": "192.0.2.100", "device": "eth1"}]
    s = director_spec(parse_cluster(data), "lb1")
    on_eth1 = NodeAddress("eth1", ipaddress.ip_interface("192.0.2.100/32"), "eth1")
    on_eth0 = NodeAddress("eth0", ipaddress.ip_interface("192.0.2.100/32"), "eth0")
    assert observed_role(s, (on_eth1,)) == "MASTER"
    assert observed_role(s, (on_eth0,)) == "BACKUP"



def test_each_method_declares_the_nft_tables_that_hold_its_rules() -> None:
    """A method's declared nft tables are exactly the tables its facts list
    (nftables: its table; sysctl: none); a method whose facts are not nft
    tables declares None (no fast path for notify)."""
    from lvsdr.generator.methods import registry
    from lvsdr.generator.spec import Spec

    vip = ipaddress.ip_address("192.0.2.120")
    spec = Spec("c", "n", "nftables", "eth0", ipaddress.ip_address("192.0.2.21"), (vip,))
    for name, method in registry().items():
        argvs = [c.argv for c in method.fact_commands(spec, ())]
        if not argvs:  # no facts to read: no rules at all (sysctl), or rules kept by firewalld
            assert method.nft_tables == (() if name == "sysctl" else None), name
        elif all(a[:4] == ("nft", "-s", "list", "table") for a in argvs):
            assert method.nft_tables == tuple(f"{a[4]} {a[5]}" for a in argvs), name
        else:
            assert method.nft_tables is None, name


def test_a_director_needs_an_address_of_its_own_in_each_service_family() -> None:
    """examples/ipv6.toml's IPv4 service rides on IPv6 directors: without an
    IPv4 address of the director's own (a VIP, lo or a link-local address
    does not count) it is named; with one, nothing is."""
    cluster = parse_cluster(tomllib.loads((EXAMPLES / "ipv6.toml").read_text()))

    def at(*pairs: tuple[str, str]) -> tuple[NodeAddress, ...]:
        return tuple(NodeAddress(i, ipaddress.ip_interface(a)) for i, a in pairs)

    v6 = at(("eth0", "2001:db8::2/64"), ("eth0", "192.0.2.100/32"), ("lo", "127.0.0.1/8"), ("eth0", "fe80::1/64"))
    assert families_without_address(cluster, v6) == [(4, [s.name for s in cluster.services
                                                          if s.all_vips[0].version == 4])]
    assert families_without_address(cluster, (*v6, *at(("eth0", "192.0.2.2/24")))) == []
    assert families_without_address(cluster, at(("eth0", "192.0.2.2/24")))[0][0] == 6


def test_every_director_gets_ipvs_port_reuse_settings_first_in_either_role() -> None:
    """Where ip_vs is loaded with the kernel's defaults, either role sets
    conn_reuse_mode 3 and expire_nodest_conn 1 first; where it is not loaded
    (the keys absent), nothing; where they are set, nothing."""
    s = director_spec(parse_cluster(tomllib.loads((EXAMPLES / "full.toml").read_text())), "lb-a")
    defaults = {"net.ipv4.vs.conn_reuse_mode": "1", "net.ipv4.vs.expire_nodest_conn": "0"}
    wanted = [SetSysctl("net.ipv4.vs.conn_reuse_mode", "3", "1"), SetSysctl("net.ipv4.vs.expire_nodest_conn", "1", "0")]
    for role in ("MASTER", "BACKUP"):
        assert plan_role(s, role, replace(facts_from({}), sysctls=defaults))[:2] == wanted
        assert not any(isinstance(c, SetSysctl) for c in plan_role(s, role, facts_from({})))
        assert not any(isinstance(c, SetSysctl) for c in plan_role(s, role, replace(facts_from({}),
                                                                                 sysctls=dict(DIRECTOR_SYSCTLS))))


def test_both_change_families_speak_one_vocabulary() -> None:
    """A node's changes (changes.py) and a reload's (ipvs.py) are frozen types with a description property and one
    as_dict for JSON: the operator's line and the machine's record of every change are made the same way."""
    import dataclasses
    import ipaddress
    import typing

    from lvsdr.generator import changes, ipvs
    from lvsdr.generator.changes import as_dict

    samples: list[typing.Any] = [changes.AddAddress("lo", ipaddress.ip_interface("192.0.2.100/32")),
               changes.SetSysctl("net.ipv4.conf.all.arp_ignore", "1", "0"),
               ipvs.AddService(ipvs.Key("TCP", "192.0.2.100", 80), "wlc"),
               ipvs.SetWeight(ipvs.Key("TCP", "192.0.2.100", 80), ipvs.Dest("192.0.2.11", 80), 1, 0),
               ipvs.AddVip("VI_web", "192.0.2.100")]
    for c in samples:
        assert isinstance(c.description, str) and c.description
        assert dataclasses.is_dataclass(c) and isinstance(type(c).__dict__["description"], property)
        doc = as_dict(c)
        assert doc["change"] == type(c).__name__ and all(isinstance(v, str | int | bool | None) for v in doc.values())
    for family in (typing.get_args(changes.Change), typing.get_args(ipvs.Change)):
        assert all(isinstance(t.__dict__["description"], property) for t in family)


VIP130 = ipaddress.ip_address("192.0.2.130")


def sync_cluster(director_backs: bool = False) -> DirectorSpec:
    """tests/ipvs/sync.toml (a VRRP pair with sync_daemon, one http service on 192.0.2.130:80), with a DNS service
    beside it, and lb1 a backend of the http service when ``director_backs``."""
    from pathlib import Path

    data = tomllib.loads((Path(__file__).parent / "ipvs" / "sync.toml").read_text())
    data["services"].append({"name": "dns", "vip": "192.0.2.131", "port": 53, "protocol": "udp",
                             "backends": ["web1"], "check": {"type": "dns", "query": "example.org"}})
    if director_backs:
        data["services"][0]["backends"].append("lb1")
    return director_spec(parse_cluster(data), "lb1")


def test_with_sync_every_director_holds_unsynced_segments_in_either_role() -> None:
    """With sync_daemon, a director holds back (for a while, then resets) a TCP segment to a service's VIP and port
    that IPVS did not take and that opens nothing, in either role (the rules must be there when keepalived adds the
    VIP); UDP has none, and a service the director serves itself (IPVS hands it to the local stack) has none."""
    from lvsdr.generator.director import SYNC_KEY, Hold

    s = sync_cluster()
    assert s.holds == (Hold(VIP130, 80, False), Hold(VIP130, 80, True))
    table = s.sync_table()
    assert table is not None and table.chains[0].hook == "input" and int(table.chains[0].priority) > 99
    for role in ("MASTER", "BACKUP"):
        got = plan_role(s, role, facts_from({}))
        assert LoadNftTable(table, "drop, not reset, segments of connections the sync daemon has not brought "
                                   "yet") in got
        assert not any(isinstance(c, LoadNftTable) and c.table.key == SYNC_KEY
                       for c in plan_role(s, role, replace(facts_from({}), nft={SYNC_KEY: table})))
    assert sync_cluster(director_backs=True).holds == ()
    assert spec().holds == ()  # no sync_daemon
    stale = replace(facts_from({}), nft={SYNC_KEY: table})
    assert DeleteNftTable(SYNC_KEY, "no sync_daemon") in plan_role(spec(), "BACKUP", stale)


def test_sync_hold_listing_round_trips_through_the_fact_parser() -> None:
    """What `nft -s list table inet lvsdr_sync` printed (captured from nft 1.0.6) parses to the rules lvsdr loads."""
    from lvsdr.generator.director import Hold, parse_sync_table

    from helpers import DATA

    table = parse_sync_table((DATA / "facts" / "nft-list-table-inet-lvsdr_sync.txt").read_text())
    assert table is not None and table.chains[0].priority == "101"
    v4, v6 = ipaddress.ip_address("192.0.2.130"), ipaddress.ip_address("2001:db8::130")
    assert table.chains[0].rules == tuple(Hold(a, p, first) for a, p in ((v4, 80), (v4, 443), (v6, 80))
                                          for first in (False, True))
    assert parse_sync_table("") is None
