"""What a director's firewall must let in (generator/firewall.py, `lvsdr render --firewall`): the allowances per
mode, nft rules that nft itself accepts inside a default-drop input chain, and a firewalld service."""

from __future__ import annotations

import ipaddress
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lvsdr.generator.firewall import director_allows, render_firewalld, render_nft
from lvsdr.generator.load import load_cluster, parse_cluster

from helpers import EXAMPLES

IP = ipaddress.ip_address
DIRECTORS = [(e, d.name) for e in sorted(p.name for p in EXAMPLES.glob("*.toml"))
             for d in load_cluster(EXAMPLES / e).directors]


def test_a_vrrp_director_lets_in_its_peers_adverts_and_the_clients_of_each_vip() -> None:
    """web: VRRP (112) from the other director only, the service's VIP:port for anyone; AH instead of 112 with
    auth_type AH; the sync daemon's port from the other director."""
    c = load_cluster(EXAMPLES / "web.toml")
    allows = director_allows(c, "lb1")
    assert [(a.proto, a.ports, a.sources, a.daddr) for a in allows] == [
        ("vrrp", (), (IP("192.0.2.3"),), None), ("tcp", (80,), (), IP("192.0.2.100"))]
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    data["cluster"].update(auth_type="AH", sync_daemon={"port": 8850})
    allows = director_allows(parse_cluster(data), "lb2")
    assert [(a.proto, a.ports, a.sources) for a in allows[:2]] == [
        ("ah", (), (IP("192.0.2.2"),)), ("udp", (8850,), (IP("192.0.2.2"),))]


def test_an_ecmp_director_lets_in_bgp_and_bfd_from_its_routers_and_no_vrrp() -> None:
    """ecmp: BGP 179 and BFD 3784/4784 from the router, the VIP's clients; nothing of VRRP."""
    allows = director_allows(load_cluster(EXAMPLES / "ecmp.toml"), "lb2")
    assert [(a.proto, a.ports, a.sources) for a in allows[:2]] == [
        ("tcp", (179,), (IP("192.0.2.1"),)), ("udp", (3784, 4784), (IP("192.0.2.1"),))]
    assert not any(a.proto in ("vrrp", "ah") for a in allows)


@pytest.mark.parametrize(("example", "node"), DIRECTORS)
def test_the_nft_rules_are_valid_inside_a_default_drop_input_chain(example: str, node: str, tmp_path: Path,
                                                                   scratch_netns: str) -> None:
    """Every example's director: `nft -c` takes the rules included in a default-drop input chain."""
    rules = tmp_path / "lvsdr.nft"
    rules.write_text(render_nft(load_cluster(EXAMPLES / example), node, example))
    ruleset = tmp_path / "ruleset.nft"
    ruleset.write_text("table inet lvsdr_fw_check {\n  chain input {\n    type filter hook input priority 0; "
                       f'policy drop;\n    include "{rules}"\n  }}\n}}\n')
    r = subprocess.run(["ip", "netns", "exec", scratch_netns, "nft", "-c", "-f", str(ruleset)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr + rules.read_text()


def test_the_firewalld_service_names_each_protocol_and_port_once() -> None:
    """full: AH, the sync port, each service's ports once (a firewalld service has no sources)."""
    root = ET.fromstring(render_firewalld(load_cluster(EXAMPLES / "full.toml"), "lb-a", "full.toml"))
    assert root.tag == "service"
    assert [p.get("value") for p in root.iter("protocol")] == ["ah"]
    ports = [(p.get("protocol"), p.get("port")) for p in root.iter("port")]
    assert len(ports) == len(set(ports)) and ("udp", "8848") in ports and ("sctp", "5060") in ports


def live_ruleset(ns: str, text: str) -> dict[str, object]:
    """``text`` loaded into namespace ``ns`` (its ruleset flushed first), read back as `nft -j list ruleset` says it."""
    import json

    subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True, check=True)
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                         check=True).stdout
    subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True)
    return dict(json.loads(out))


def test_doctor_reads_what_a_live_ruleset_drops(tmp_path: Path, scratch_netns: str) -> None:
    """On `nft -j` output of real rulesets: a default-drop input chain names every allowance it drops (VRRP and the
    VIP's clients for web's lb1), with lvsdr's rules included nothing; an accept-policy chain that ends in an
    unconditional reject (firewalld's shape) counts as dropping; a jump into a chain that accepts counts as letting
    in; no input chain drops nothing."""
    from lvsdr.generator.firewall import blocked

    c = load_cluster(EXAMPLES / "web.toml")
    allows = director_allows(c, "lb1")
    rules = tmp_path / "lvsdr.nft"
    rules.write_text(render_nft(c, "lb1", "web.toml"))
    drop = "table inet f {{\n  chain input {{\n    type filter hook input priority 0; policy drop;\n{}  }}\n{}}}\n"
    bare = blocked(live_ruleset(scratch_netns, drop.format("    iif lo accept\n    ct state established accept\n",
                                                           "")), allows)
    assert bare == ["the input chain inet f input drops VRRP adverts (protocol 112) from the other directors (vrrp)",
                    "the input chain inet f input drops clients of service http (IPVS takes them after the input "
                    "chain) (tcp port 80)"], bare
    assert blocked(live_ruleset(scratch_netns, drop.format(f'    include "{rules}"\n', "")), allows) == []
    jumped = drop.format("    jump allow\n", "  chain allow {\n    meta l4proto { vrrp, ah } accept\n"
                         "    th dport 80-90 accept\n  }\n")
    assert blocked(live_ruleset(scratch_netns, jumped), allows) == []
    rejecting = ("table inet fw {\n  chain filter_INPUT {\n    type filter hook input priority 10; policy accept;\n"
                 "    tcp dport 22 accept\n    reject with icmpx admin-prohibited\n  }\n}\n")
    assert len(blocked(live_ruleset(scratch_netns, rejecting), allows)) == 2
    assert blocked(live_ruleset(scratch_netns, "table ip t {\n  chain c {\n    type filter hook output priority 0;"
                                               " policy drop;\n  }\n}\n"), allows) == []
