"""Fact parsers on captured real output (arptables-nft 1.8.9, nftables 1.0.6,
iptables-nft 1.8.9, firewalld 1.3, Debian 12), without root: each listing
lvsdr renders is what the tool prints, and what it prints parses back to the
same typed value."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import replace

import pytest

from lvsdr.generator.load import parse_cluster
from lvsdr.generator.methods import arptables, firewalld, iptables, nftables
from lvsdr.generator.node import FactError, NftChain, NftTable, RawNftRule, parse_nft_table
from lvsdr.generator.realserver import desired
from lvsdr.hooks.facts import parse_table_counts

from helpers import DATA, EXAMPLES

CAPTURED = DATA / "facts"
VIP = ipaddress.IPv4Address("192.0.2.100")
REAL = ipaddress.IPv4Address("192.0.2.11")


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def test_arptables_listing() -> None:
    """arptables' listing parses into lvsdr's chains and rules."""
    seen = arptables.parse_listing(captured("arptables-S.applied.txt"))
    assert seen.chains == arptables.CHAINS
    assert seen.rules == (*arptables.JUMPS, arptables.ArpDrop(VIP), arptables.ArpMangle(VIP, REAL))
    for rule in (*arptables.CHAINS, *seen.rules):
        assert rule.listing() in captured("arptables-S.applied.txt").splitlines()
    empty = arptables.parse_listing(captured("arptables-S.empty.txt"))
    assert empty.chains == () and empty.rules == ()


def test_arptables_unknown_rule_in_our_chain_is_kept_for_removal() -> None:
    """A rule lvsdr does not know inside its arptables chain is read, so a plan removes it."""
    text = captured("arptables-S.applied.txt") + "-A LVSDR_IN -j ACCEPT -d 192.0.2.7\n"
    rules = arptables.parse_listing(text).rules
    assert rules[-1] == arptables.ArpOther("-A LVSDR_IN -j ACCEPT -d 192.0.2.7")
    assert rules[-1].argv("delete") == ("arptables", "-D", "LVSDR_IN", "-j", "ACCEPT", "-d", "192.0.2.7")


def test_iptables_listings() -> None:
    """iptables' and ip6tables' nat listings parse into lvsdr's chain and rules."""
    v4 = iptables.parse_listing(captured("iptables-nat-S.applied.txt"), 4)
    assert v4.chains == (iptables.NatChain(4),)
    assert v4.rules == (iptables.NatJump(4), iptables.NatRedirect(VIP, "tcp", 80, 8080),
                        iptables.NatRedirect(ipaddress.IPv4Address("192.0.2.101"), "udp", 53, None))
    v6 = iptables.parse_listing(captured("ip6tables-nat-S.applied.txt"), 6)
    assert v6.rules == (iptables.NatJump(6), iptables.NatRedirect(ipaddress.IPv6Address("2001:db8::100"), "tcp", 80))
    for rule in v4.rules:
        assert rule.listing() in captured("iptables-nat-S.applied.txt").splitlines()
    assert iptables.parse_listing(captured("iptables-nat-S.empty.txt"), 4).rules == ()


def test_nft_arp_table_listing() -> None:
    """nft's listing of lvsdr's arp table parses into the table lvsdr renders."""
    table = parse_nft_table(captured("nft-list-table-arp-lvsdr.txt"), "arp", "lvsdr", nftables.parse_rule)
    assert table == NftTable("arp", "lvsdr", (
        NftChain("input", "input", "filter", (nftables.NftArpDrop(VIP),)),
        NftChain("output", "output", "filter", (nftables.NftArpRewrite(VIP, REAL),)),
    ))
    assert parse_nft_table("", "arp", "lvsdr", nftables.parse_rule) is None


def test_nft_rule_lvsdr_does_not_know_makes_the_table_differ() -> None:
    """A rule lvsdr does not know in its nft table makes the table differ from the desired one."""
    text = captured("nft-list-table-arp-lvsdr.txt").replace("drop", "accept")
    table = parse_nft_table(text, "arp", "lvsdr", nftables.parse_rule)
    assert table is not None
    assert table.chains[0].rules == (RawNftRule("arp daddr ip 192.0.2.100 accept"),)


def test_nft_ruleset_counts() -> None:
    """nft -j list ruleset gives every table with its number of rules."""
    counts = parse_table_counts(captured("nft-j-list-ruleset.applied.json"))
    assert counts == {"arp filter": 4, "ip nat": 3, "ip6 nat": 2, "arp lvsdr": 2, "inet lvsdr_fwmark": 2}
    assert parse_table_counts(captured("nft-j-list-ruleset.empty.json")) == {}
    assert parse_table_counts("") == {}
    with pytest.raises(FactError):
        parse_table_counts("not json")


def test_firewalld_listing() -> None:
    """firewall-cmd --list-all's forward-ports field parses into lvsdr's forward ports (rich rules, services and
    the other fields ignored)."""
    fields = firewalld.zone_fields(captured("firewall-cmd-list-all.txt"))
    assert fields["ports"] == "80/tcp 8000-8010/tcp 53/udp"
    assert fields["rich rules"].startswith('rule family="ipv4"')
    fps = firewalld.parse_listing(fields["forward-ports"], "runtime", "public")
    assert firewalld.ForwardPort("runtime", "public", 80, "tcp", 80) in fps
    assert firewalld.ForwardPort("runtime", "public", 8080, "tcp", 18080) in fps
    guide_form = [fp for fp in fps if fp.to_addr]
    assert guide_form == [firewalld.ForwardPort("runtime", "public", 443, "tcp", 443, "192.0.2.100")]
    assert len(fps) == 3


def test_firewalld_facts_from_two_listings() -> None:
    """The firewalld method reads runtime and permanent from one --list-all each: forward-ports and open ports,
    each with its side; an empty zone has none."""
    data = tomllib.loads((EXAMPLES / "full.toml").read_text())
    spec = desired(parse_cluster(data), next(r["name"] for r in data["real_servers"]
                                             if r.get("arp_method") == "firewalld"))
    text, empty = captured("firewall-cmd-list-all.txt"), captured("firewall-cmd-list-all.empty.txt")
    seen = firewalld.Firewalld().parse([text, empty], replace(spec, zone="public"))
    assert {(type(r).__name__, getattr(r, "where", "")) for r in seen.rules} == {("ForwardPort", "runtime"),
                                                                          ("OpenPort", "runtime")}
    assert firewalld.OpenPort("runtime", "public", 53, "udp") in seen.rules
    assert len(seen.rules) == 5  # three forward-ports, two single ports (the range is not lvsdr's)
    assert firewalld.Firewalld().parse([empty, empty], spec).rules == ()


def test_firewalld_ports_listing() -> None:
    """firewall-cmd's port listing parses into lvsdr's opened ports."""
    assert firewalld.parse_ports("80/tcp 53/udp 8000-8010/tcp\n", "permanent", "dmz") == (
        firewalld.OpenPort("permanent", "dmz", 53, "udp"), firewalld.OpenPort("permanent", "dmz", 80, "tcp"))
