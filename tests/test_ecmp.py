"""ECMP clusters ([bgp]) without a lab: the rules that refuse what cannot
work, bird.conf goldens that BIRD itself parses, the director's plan as
typed changes, and the readers of what keepalived and the kernel say."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lvsdr.errors import ValidationError
from lvsdr.generator.bird import render_bird
from lvsdr.generator.bundle import DRAIN_DROPIN, node_trees
from lvsdr.generator.changes import (
    AddAddress,
    AddRoute,
    LoadNftTable,
    RemoveRoute,
    SetSysctl,
    WriteRecord,
)
from lvsdr.generator.director import (
    ECMP_SYSCTLS,
    director_spec,
    ipvs_services,
    parse_route_messages,
    plan_ecmp,
    virtual_server_name,
    vs_name,
)
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.node import Facts
from lvsdr.hooks.drain import parse_ip_vs_conn
from lvsdr.hooks.notify_fifo import parse_event, parse_quorum_event

from helpers import DATA, DELETE, EXAMPLES, GOLDEN, REPO
from helpers import patched as patched_base

ECMP = tomllib.loads((EXAMPLES / "ecmp.toml").read_text())
VIP = ipaddress.ip_address("192.0.2.150")


def patched(**changes: Any) -> dict[str, Any]:
    """A copy of examples/ecmp.toml with dotted paths set (DELETE removes a key)."""
    return patched_base(ECMP, changes)


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as e:
        parse_cluster(data)
    return e.value.errors


# -- the rules ------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "line"), [
    ({"services.0.scheduler": "wlc"}, "services[0].scheduler: wlc: in an ECMP cluster every director must pick the "
     "same real server for a flow; use mh (Maglev hashing) or sh"),
    ({"cluster.subnet": DELETE}, "cluster.subnet: required in an ECMP cluster: the one L2 segment of the directors "
     "and the real servers (direct routing needs it; tunnel mode is out of scope)"),
    ({"real_servers.0.address": "198.51.100.11"}, "real_servers[0].address: 198.51.100.11 is outside "
     "cluster.subnet 192.0.2.0/24: direct routing reaches a real server on the directors' segment only"),
    ({"cluster.virtual_router_id": 51}, "cluster.virtual_router_id: a VRRP setting; an ECMP cluster ([bgp]) has no "
     "VRRP instance"),
    ({"directors.0.priority": 100}, "directors[0].priority: a VRRP setting; in an ECMP cluster ([bgp]) every "
     "director is active"),
    ({"cluster.hook": "notify"}, "cluster.hook: notify: an ECMP cluster needs lvsdr's agent on the FIFO (fifo): "
     "keepalived's quorum events reach it there"),
    ({"bgp.peers.0.address": "192.0.2.31"}, "bgp.peers[0].address: 192.0.2.31 is directors[0]; a peer is a router"),
    ({"bgp.peers.0.asn": 65001}, "bgp.peers[0].asn: 65001 is the directors' own ASN; lvsdr speaks eBGP to its "
     "routers (iBGP would need the routers to reflect, and ECMP across iBGP paths)"),
    ({"bgp.peers.0.password": 'x";\nprotocol'}, 'bgp.peers[0].password: "x\\";\\nprotocol" is not 1..80 '
     "characters of [A-Za-z0-9._~@%+=:,-]"),
    ({"bgp.communities": ["65001:70000"]}, 'bgp.communities[0]: "65001:70000" is not a community ("65000:100")'),
    ({"bgp.table": 254}, "bgp.table: 254 is the kernel's own (default, main or local) table; the announced VIPs "
     "need a table of their own"),
    ({"bgp.peers": []}, "bgp.peers: at least one peer (a router) is required"),
    ({"bgp.asn": 0}, "bgp.asn: 0 is outside 1..4294967295"),
    ({"directors.0.arp_method": "iptables"}, "directors[0].arp_method: iptables redirects instead of holding the "
     "VIPs on lo, which an ECMP director needs (use sysctl, arptables, nftables)"),
    ({"services.0.backends": ["web1", "lb2"]}, "services[0].backends[1]: lb2 is a director; in an ECMP cluster the "
     "directors are not backends (each holds every VIP and would balance the flow again)"),
    ({"directors.0.router_id": "2001:db8::1"}, 'directors[0].router_id: "2001:db8::1" is not an IPv4 address '
     "(BGP router ids are)"),
])
def test_what_cannot_work_is_refused_naming_the_field(changes: dict[str, Any], line: str) -> None:
    """Each rule of an ECMP cluster refuses with its one line, naming the field."""
    assert line in errors(patched(**changes))


def test_a_vrrp_table_in_an_ecmp_cluster_is_named() -> None:
    """[[instances]] (or any VRRP table) in an ECMP cluster is refused as VRRP, not as an unknown key."""
    data = patched()
    data["instances"] = [{"name": "x", "virtual_router_id": 9, "vips": ["192.0.2.150"]}]
    assert "instances: VRRP; an ECMP cluster ([bgp]) has no VRRP instance (its VIPs are the services')" \
        in errors(data)


def test_every_director_runs_the_same_table_whatever_its_checks_saw() -> None:
    """The loader makes every service of an ECMP cluster keep failed backends at
    weight 0 (inhibit_on_failure) with the scheduler's fallback, and hash the
    source port unless it is persistent."""
    c = parse_cluster(patched())
    svc = c.services[0]
    assert svc.scheduler_flags == ("mh-fallback", "mh-port")
    assert all(b.inhibit_on_failure for b in svc.backends)
    persistent = parse_cluster(patched(**{"services.0.persistence_timeout": 300})).services[0]
    assert persistent.scheduler_flags == ("mh-fallback",)
    sh = parse_cluster(patched(**{"services.0.scheduler": "sh"})).services[0]
    assert sh.scheduler_flags == ("sh-fallback", "sh-port")


def test_the_router_id_defaults_to_the_directors_address() -> None:
    """Without router_id, BIRD's router id is the director's IPv4 address."""
    c = parse_cluster(patched(**{"directors.1.router_id": "198.51.100.2"}))
    assert [str(d.router_id) for d in c.directors] == ["192.0.2.31", "198.51.100.2", "192.0.2.33"]


# -- rendering ------------------------------------------------------------------
@pytest.mark.parametrize("node", ["lb1", "lb2", "lb3"])
def test_bird_conf_golden(node: str) -> None:
    """Each director's bird.conf renders byte for byte as its golden file."""
    text = render_bird(parse_cluster(patched()), node, "examples/ecmp.toml")
    golden = GOLDEN / f"ecmp.{node}.bird.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs; UPDATE_GOLDEN=1 if intended"


def test_ipv6_bird_conf_golden() -> None:
    """examples/ecmp6.toml's lb1 (IPv6 sessions, an IPv4 router id) renders byte for byte as its golden file."""
    text = render_bird(parse_cluster(tomllib.loads((EXAMPLES / "ecmp6.toml").read_text())), "lb1",
                       "examples/ecmp6.toml")
    assert "router id 198.51.100.31;" in text and "ipv6 {" in text
    golden = GOLDEN / "ecmp6.lb1.bird.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs; UPDATE_GOLDEN=1 if intended"


@pytest.mark.skipif(not Path("/usr/sbin/bird").exists(), reason="bird2 is not installed (scripts/setup installs it)")
def test_bird_parses_every_golden_and_a_password() -> None:
    """`bird -p` accepts each golden bird.conf (IPv4 and IPv6), and one with a password and no BFD."""
    from lvsdr.hooks.bird import check_text

    for golden in sorted(GOLDEN.glob("ecmp*.bird.conf")):
        check_text(golden.read_text())
    c = parse_cluster(patched(**{"bgp.peers.0.password": "s3cret:x", "bgp.peers.0.bfd": False}))
    text = render_bird(c, "lb1", "x")
    assert 'password "s3cret:x";' in text and "protocol bfd" not in text
    check_text(text)


@pytest.mark.skipif(not Path("/usr/sbin/bird").exists(), reason="bird2 is not installed (scripts/setup installs it)")
def test_a_directors_bgp_attributes_and_a_multihop_peer_render_as_bird_takes_them() -> None:
    """lb1 with a MED, two prepends and a large community (beside the cluster's), a multi-hop peer with BFD: the
    export filter sets them, the peer says multihop, BFD gets a multihop block; `bird -p` accepts it; lb2's filter
    has none of lb1's."""
    from lvsdr.hooks.bird import check_text

    c = parse_cluster(patched(**{"directors.0.bgp_med": 50, "directors.0.bgp_prepend": 2,
                                 "directors.0.bgp_large_communities": ["65001:1:2"],
                                 "bgp.large_communities": ["65001:0:1"], "bgp.peers.0.multihop": 2}))
    text = render_bird(c, "lb1", "x")
    filt = text[text.index("filter lvsdr_export"):text.index("reject;")]
    assert filt.count("bgp_path.prepend(65001);") == 2 and "bgp_med = 50;" in filt
    assert "bgp_large_community.add((65001, 0, 1));" in filt and "bgp_large_community.add((65001, 1, 2));" in filt
    assert "    multihop 2;\n" in text and "    multihop {\n" in text
    check_text(text)
    other = render_bird(c, "lb2", "x")
    assert "bgp_med" not in other and "prepend" not in other and "(65001, 1, 2)" not in other


@pytest.mark.parametrize(("patch", "error"), [
    ({"directors.0.bgp_prepend": 9}, "directors[0].bgp_prepend: 9 is outside 0..8"),
    ({"directors.0.bgp_med": -1}, "directors[0].bgp_med: -1 is outside 0..4294967295"),
    ({"directors.0.bgp_large_communities": ["65001:1"]},
     'directors[0].bgp_large_communities[0]: "65001:1" is not a large community ("65001:1:2")'),
    ({"bgp.large_communities": ["1:2:4294967296"]},
     'bgp.large_communities[0]: "1:2:4294967296" is not a large community ("65001:1:2")'),
    ({"bgp.peers.0.multihop": 0}, "bgp.peers[0].multihop: 0 is outside 1..255"),
    ({"directors.0.bgp_vips": {"192.0.2.9": {}}},
     'directors[0].bgp_vips."192.0.2.9": 192.0.2.9 is not a VIP of this cluster\'s services'),
    ({"directors.0.bgp_vips": {"nope": {}}}, 'directors[0].bgp_vips.nope: "nope" is not an IP address'),
    ({"directors.0.bgp_vips": {"192.0.2.150": {"prepend": 9}}},
     'directors[0].bgp_vips."192.0.2.150".prepend: 9 is outside 0..8'),
    ({"directors.0.bgp_vips": {"192.0.2.150": {"med": -1}}},
     'directors[0].bgp_vips."192.0.2.150".med: -1 is outside 0..4294967295'),
    ({"directors.0.bgp_vips": {"192.0.2.150": {"weight": 1}}},
     'directors[0].bgp_vips."192.0.2.150".weight: unknown key'),
    ({"directors.0.bgp_vips": {"192.0.2.150": 3}}, 'directors[0].bgp_vips."192.0.2.150": expected table, got integer'),
    ({"directors.0.bgp_vips": {"192.0.2.150": {"large_communities": ["a"]}}},
     'directors[0].bgp_vips."192.0.2.150".large_communities[0]: "a" is not a large community ("65001:1:2")'),
])
def test_bgp_attributes_are_validated(patch: dict[str, object], error: str) -> None:
    """Each BGP attribute out of range or malformed is one line naming it."""
    assert errors(patched(**patch)) == [error]


def test_a_vips_own_attributes_replace_the_directors_for_it_alone() -> None:
    """lb1 with a MED of 50 and a prepend of 2, and for the VIP its own MED 10, no prepend and a large community:
    the VIP's branch (first in the filter) has MED 10, no prepend, the director's and the VIP's large communities;
    the branch for every VIP keeps the director's; `bird -p` accepts it."""
    from lvsdr.hooks.bird import check_text

    c = parse_cluster(patched(**{"directors.0.bgp_med": 50, "directors.0.bgp_prepend": 2,
                                 "directors.0.bgp_large_communities": ["65001:1:2"],
                                 "directors.0.bgp_vips": {"192.0.2.150": {"med": 10, "prepend": 0,
                                                                          "large_communities": ["65001:150:1"]}}}))
    text = render_bird(c, "lb1", "x")
    filt = text[text.index("filter lvsdr_export"):text.index("    reject;")]
    vip, every = filt.split("    if net ~ ")
    assert "if net = 192.0.2.150/32 then" in vip and "bgp_med = 10;" in vip and "prepend" not in vip
    assert "(65001, 1, 2)" in vip and "(65001, 150, 1)" in vip
    assert "bgp_med = 50;" in every and every.count("bgp_path.prepend(65001);") == 2 and "(65001, 150, 1)" not in every
    check_text(text)


def test_a_vrrp_cluster_refuses_bgp_attributes() -> None:
    """`bgp_prepend` on a VRRP cluster's director: one line, an ECMP setting."""
    import tomllib

    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    data["directors"][0]["bgp_prepend"] = 1
    assert errors(data) == ["directors[0].bgp_prepend: an ECMP setting: only a cluster with [bgp] announces by BGP"]


def test_bird_check_reports_the_line() -> None:
    """A config BIRD refuses is a CheckError with BIRD's own message."""
    from lvsdr.errors import CheckError
    from lvsdr.hooks.bird import check_text

    if not Path("/usr/sbin/bird").exists():
        pytest.skip("bird2 is not installed")
    with pytest.raises(CheckError, match="bird -p: exit 1"):
        check_text("protocol nonsense {\n")


def test_keepalived_conf_has_no_vrrp_instance_and_quorum_events_on_the_fifo() -> None:
    """An ECMP director's keepalived.conf has no vrrp_instance and no notify,
    and writes its quorum events to the FIFO the agent reads."""
    text = render_keepalived(parse_cluster(patched()), "lb1", "x")
    fifo = "    lvs_notify_fifo /run/lvsdr/notify.fifo\n"
    assert fifo in text
    assert "vrrp_instance" not in text and "notify" not in text.replace(fifo, "")
    assert "    mh-fallback\n    mh-port\n" in text and text.count("inhibit_on_failure") == 3


def test_render_all_gives_bird_conf_and_the_drain_drop_in() -> None:
    """`render --all` gives each ECMP director bird.conf and keepalived's drain drop-in."""
    raw = (EXAMPLES / "ecmp.toml").read_bytes()
    trees = node_trees(parse_cluster(patched()), raw)
    lb1 = trees["lb1"]
    assert "etc/bird/bird.conf" in lb1 and DRAIN_DROPIN in lb1
    dropin = lb1[DRAIN_DROPIN][0].decode()
    assert "ExecStop=/usr/bin/lvsdr drain /etc/lvsdr/cluster.toml --node lb1 --unit\n" in dropin
    assert "ExecStartPost=/usr/bin/lvsdr drain /etc/lvsdr/cluster.toml --node lb1 --undo --unit\n" in dropin
    assert "TimeoutStopSec=90\n" in dropin
    assert "bird.conf" not in " ".join(trees["web1"])


# -- the director's plan ------------------------------------------------------------
def spec(node: str = "lb1") -> Any:
    return director_spec(parse_cluster(patched()), node)


def test_a_bare_director_gets_suppression_the_vips_on_lo_then_its_announcements() -> None:
    """From nothing: ARP suppression and the VIP on lo first, IPVS's sysctls
    (where ip_vs is loaded), the announcement last."""
    s = spec()
    facts = Facts(sysctls={k: "0" if v == "1" else "1" for k, v in ECMP_SYSCTLS})
    got = [c for c in plan_ecmp(s, frozenset({VIP}), facts) if not isinstance(c, WriteRecord)]
    kinds = [type(c).__name__ for c in got]
    assert kinds == ["LoadNftTable", "AddAddress", *["SetSysctl"] * len(ECMP_SYSCTLS), "AddRoute"], kinds
    assert isinstance(got[0], LoadNftTable) and got[0].table.key == "arp lvsdr"
    assert got[1] == AddAddress("lo", ipaddress.ip_interface("192.0.2.150/32"), "lo:lvsdr")
    assert [c.key for c in got if isinstance(c, SetSysctl)] == [k for k, _ in ECMP_SYSCTLS]
    assert got[-1] == AddRoute(4242, ipaddress.ip_interface("192.0.2.150/32"))


def test_withdrawing_comes_first_and_keeps_the_vip_on_lo() -> None:
    """Nothing healthy: the route goes first; the VIP stays on lo with its suppression."""
    s = spec()
    applied = _apply(s, frozenset({VIP}))
    got = plan_ecmp(s, frozenset(), applied)
    assert got == [RemoveRoute(4242, ipaddress.ip_interface("192.0.2.150/32"))]


def test_a_plan_after_apply_is_empty() -> None:
    """Applying the plan on a simulated node leaves nothing to do, announced or not."""
    s = spec()
    for announce in (frozenset({VIP}), frozenset()):
        assert plan_ecmp(s, announce, _apply(s, announce)) == []


def _apply(s: Any, announce: frozenset[Any]) -> Facts:
    from test_plan_properties import Node

    node = Node(Facts())
    for c in plan_ecmp(s, announce, node.f):
        node.apply(c)
    return node.f


def test_keepalived_names_virtual_servers_as_its_fifo_lines_do() -> None:
    """The name of each virtual server is keepalived's (FMT_VS): address, fwmark or group."""
    c = parse_cluster(patched())
    svc = c.services[0]
    assert virtual_server_name(svc) == "[192.0.2.150]:tcp:80"
    assert virtual_server_name(dataclasses.replace(svc, fwmark=5)) == "FWM 5"
    assert vs_name("[web]:0") == "[web]" and vs_name("[192.0.2.150]:tcp:80") == "[192.0.2.150]:tcp:80"


def test_quorum_lines_are_read_and_everything_else_is_not() -> None:
    """`VS ... UP|DOWN` lines become events; RS lines, VRRP lines and noise do not."""
    assert parse_quorum_event("VS [192.0.2.150]:tcp:80 DOWN") is not None
    e = parse_quorum_event("VS FWM 5 UP")
    assert e is not None and (e.name, e.state) == ("FWM 5", "UP")
    for line in ("RS [192.0.2.11]:tcp:80 [192.0.2.150]:tcp:80 DOWN", 'INSTANCE "VI_x" MASTER 100', "VS  UP",
                 "VS [x]:tcp:80 MAYBE", "VS \x1b[31m DOWN"):
        assert parse_quorum_event(line) is None, line
    assert parse_event("VS [192.0.2.150]:tcp:80 DOWN") is None


def test_healthy_vips_follow_every_virtual_server() -> None:
    """A VIP is announced while any of its virtual servers has quorum."""
    e = spec().ecmp
    assert e.healthy(set()) == frozenset({VIP})
    assert e.healthy({"[192.0.2.150]:tcp:80"}) == frozenset()


def test_a_vip_is_announced_only_once_ipvs_has_its_services() -> None:
    """keepalived says nothing when it starts and builds its IPVS table a
    moment later: a healthy VIP whose service IPVS lacks (or has without a
    real server) is held back, withdrawn if announced; no IPVS table (ip_vs
    not loaded) holds nothing back."""
    s = spec()
    assert s.ecmp.ipvs_services == (("[192.0.2.150]:tcp:80", ("TCP 192.0.2.150:80",)),)
    whole = frozenset({"TCP 192.0.2.150:80"})
    for table, announced in ((whole, {VIP}), (frozenset(), set()), (frozenset({"TCP 192.0.2.150:8080"}), set()),
                             (None, {VIP})):
        assert s.ecmp.in_ipvs(frozenset({VIP}), table) == announced, table
    bare = Facts(sysctls=dict(ECMP_SYSCTLS))
    assert not [c for c in plan_ecmp(s, frozenset({VIP}), dataclasses.replace(bare, ipvs=frozenset()))
                if isinstance(c, AddRoute)]
    announced_facts = dataclasses.replace(_apply(s, frozenset({VIP})), ipvs=frozenset())
    assert [c for c in plan_ecmp(s, frozenset({VIP}), announced_facts) if isinstance(c, RemoveRoute)] == [
        RemoveRoute(4242, ipaddress.ip_interface("192.0.2.150/32"))]
    assert plan_ecmp(s, frozenset({VIP}), dataclasses.replace(_apply(s, frozenset({VIP})), ipvs=whole)) == []


def test_ipvs_services_are_named_as_the_proc_table_names_them(tmp_path: Path) -> None:
    """The services read from /proc/net/ip_vs (a capture from the VM's
    kernel) are named as the cluster's are: a service without a real server
    does not count; no file is no IPVS (None)."""
    from lvsdr.hooks.facts import read_ipvs_services

    capture = DATA / "facts" / "proc-net-ip_vs.ecmp.txt"
    assert read_ipvs_services(str(capture)) == frozenset({"TCP 192.0.2.150:80"})
    empty = tmp_path / "ip_vs"
    empty.write_text("\n".join(capture.read_text().splitlines()[:4]) + "\n")
    assert read_ipvs_services(str(empty)) == frozenset()
    assert read_ipvs_services(str(tmp_path / "absent")) is None
    svc = parse_cluster(patched()).services[0]
    assert ipvs_services(dataclasses.replace(svc, fwmark=5)) == ("FWM 5",)


# -- facts ------------------------------------------------------------------------
def test_routes_are_read_from_netlink_messages() -> None:
    """A dump of lvsdr's table gives its host routes; a wider route, another table's or a bad one is not lvsdr's."""
    msgs: list[dict[str, object]] = [
        {"dst": "192.0.2.150", "dst_len": 32, "table": 4242},
        {"dst": "198.51.100.0", "dst_len": 24, "table": 4242},
        {"dst": "192.0.2.151", "dst_len": 32, "table": 254},
        {"dst": None, "dst_len": 0, "table": 4242},
    ]
    assert parse_route_messages(msgs, 4242, 4) == (ipaddress.ip_interface("192.0.2.150/32"),)
    assert parse_route_messages(msgs, 4242, 6) == ()


def test_live_connections_are_counted_from_ip_vs_conn() -> None:
    """/proc/net/ip_vs_conn in the kernel's format (ip_vs_conn.c's seq_printf,
    its header as the IPVS tier shows it; there drain read 60 entries of a
    drained director): the TCP connections to the VIPs that have not ended,
    with the seconds until each expires."""
    text = (DATA / "facts" / "ip_vs_conn.format.txt").read_text()
    conns = parse_ip_vs_conn(text, {VIP})
    assert sorted(conns.values()) == [98, 612, 899]  # not TIME_WAIT, not UDP, not another VIP
    assert list(parse_ip_vs_conn(text, {ipaddress.ip_address("192.0.2.151")}).values()) == [899]


def test_a_connection_carries_packets_while_its_expiry_is_pushed_back() -> None:
    """Between two readings, new connections and those whose expiry went up carry packets; the rest count down."""
    from lvsdr.hooks.drain import carrying

    a, b, c = ("TCP", "C00002FA", "A028", "C0000296", "0050"), ("TCP", "C00002FA", "A029", "C0000296", "0050"), \
        ("TCP", "C00002FA", "A02A", "C0000296", "0050")
    assert carrying({a: 899, b: 899}, {a: 900, b: 898, c: 900}) == 2


def test_the_example_is_in_the_repository() -> None:
    """examples/ecmp.toml is what the docs and the lab use."""
    assert (REPO / "docs" / "ecmp.md").exists()


def test_notify_refuses_an_ecmp_cluster(tmp_path: Path) -> None:
    """keepalived never calls notify for an ECMP director (no vrrp_instance);
    a hand-made call says so, exit 2, before touching the node."""
    from lvsdr.cli import main

    path = tmp_path / "ecmp.toml"
    text = (EXAMPLES / "ecmp.toml").read_text().replace('hook = "fifo"\n', f'hook = "fifo"\nstate_dir = "{tmp_path}"\n')
    path.write_text(text)
    assert main(["notify", str(path), "--node", "lb1", "INSTANCE", "VI_x", "MASTER", "100"]) == 2


# -- hostile input ------------------------------------------------------------------
def _bird_skeleton(text: str) -> list[tuple[int, int, int]]:
    """Each line's block depth, brace balance and statement ends as BIRD reads
    them (outside double quotes, # comments and /* */ comments)."""
    out, depth, comment = [], 0, False
    for line in text.split("\n"):
        body, quoted, i = [], False, 0
        while i < len(line):
            c = line[i]
            if comment:
                if line[i:i + 2] == "*/":
                    comment, i = False, i + 2
                    continue
            elif c == '"':
                quoted = not quoted
            elif not quoted and c == "#":
                break
            elif not quoted and line[i:i + 2] == "/*":
                comment, i = True, i + 2
                continue
            elif not quoted:
                body.append(c)
            i += 1
        delta = body.count("{") - body.count("}")
        out.append((depth, delta, body.count(";")))
        depth += delta
    return out


def test_injection_payloads_on_every_string_never_leave_their_place_in_bird_conf() -> None:
    """A payload at either end of any string of examples/ecmp.toml is refused,
    or bird.conf renders with every line in the block and statement the model
    put it in (the same lines, depths, braces and semicolons)."""
    from test_hostile import PAYLOADS, _strings, accepted

    payloads = [*PAYLOADS, ";", '"; protocol static { ', "/*", "*/", "}; protocol x {"]
    with_password = {"bgp.peers.0.password": "s3cret"}  # a string that takes some payloads as legitimate text
    base = {d: render_bird(parse_cluster(patched(**with_password)), d, "x") for d in ("lb1", "lb2", "lb3")}
    data = patched(**with_password)
    strings = _strings(data)
    tried = 2 * len(strings) * len(payloads)  # mutations' variants: each payload at either end of each string
    rendered = 0
    for path, mutated, c in accepted(data, strings, payloads):
        rendered += 1
        for name in base:
            if c.director(name) is None:
                continue
            text = render_bird(c, name, "x")
            assert _bird_skeleton(text) == _bird_skeleton(base[name]), (path, mutated)
    assert tried > 500 and rendered > 0, (tried, rendered)


def test_ipvs_order_and_bird_sessions_are_read_from_their_listings() -> None:
    """/proc/net/ip_vs (captured in the IPVS tier: newest destination first)
    and `birdc show protocols` give what doctor compares."""
    from lvsdr.hooks.doctor import bird_sessions, ipvs_order

    text = (DATA / "facts" / "proc-net-ip_vs.ecmp.txt").read_text()
    assert ipvs_order(text) == {"TCP 192.0.2.150:80": ["192.0.2.13", "192.0.2.12", "192.0.2.11"]}
    shown = ("BIRD 2.0.12 ready.\n"
             "Name       Proto      Table      State  Since         Info\n"
             "device1    Device     ---        up     22:50:56.448  \n"
             "peer1      BGP        ---        up     22:50:57.023  Established   \n"
             "peer2      BGP        ---        start  22:50:56.448  Active        Socket: Connection refused\n")
    assert bird_sessions(shown) == {"peer1": "Established", "peer2": "Active Socket: Connection refused"}


# -- keepalived.service's start step (drain --undo --unit) -------------------------
def _ecmp_file(tmp_path: Path, state: Path) -> Path:
    text = (EXAMPLES / "ecmp.toml").read_text().replace("[cluster]\n", f'[cluster]\nstate_dir = "{state}"\n', 1)
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_undo_unit_without_a_state_directory_is_a_no_op(tmp_path: Path) -> None:
    """After boot /run is empty: keepalived's start step exits 0 and makes nothing."""
    from lvsdr.cli import main

    state = tmp_path / "run" / "lvsdr"
    assert main(["drain", str(_ecmp_file(tmp_path, state)), "--node", "lb1", "--undo", "--unit"]) == 0
    assert not state.exists()


def test_undo_unit_with_a_file_saved_mid_edit_still_undoes_the_units_drain(tmp_path: Path) -> None:
    """A cluster file that does not validate now does not fail keepalived's start: the unit's own
    drain is found by the file's plain [cluster] name and undone; an operator's is left."""
    from lvsdr.cli import main
    from lvsdr.hooks.drain import UNIT_MARK

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = _ecmp_file(tmp_path, state)
    path.write_text(path.read_text() + "\n[[services]]\nname = \n")  # half-written
    marker = state / "drain-anycast-lb1"
    marker.write_text(UNIT_MARK)
    marker.chmod(0o600)
    assert main(["drain", str(path), "--node", "lb1", "--undo", "--unit"]) == 0
    assert not marker.exists()
    marker.write_text("drained by `lvsdr drain`\n")
    marker.chmod(0o600)
    assert main(["drain", str(path), "--node", "lb1", "--undo", "--unit"]) == 0
    assert marker.exists()


def test_undo_unit_with_an_unreadable_file_exits_0_with_one_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """No cluster name can be told at all: one line on stderr, exit 0, nothing touched."""
    from lvsdr.cli import main

    path = tmp_path / "cluster.toml"
    path.write_bytes(b"\xff\xfe garbage")
    assert main(["drain", str(path), "--node", "lb1", "--undo", "--unit"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no drain undone" in err[0]


@pytest.mark.parametrize(("changes", "line"), [
    ({"bgp.bird_conf": "/etc/keepalived/keepalived.conf"}, "bgp.bird_conf: /etc/keepalived/keepalived.conf collides "
     "with keepalived.conf (/etc/keepalived/keepalived.conf)"),
    ({"bgp.bird_conf": "/run/bird/bird.ctl"}, "bgp.bird_socket: /run/bird/bird.ctl collides with bgp.bird_conf "
     "(/run/bird/bird.ctl)"),
    ({"bgp.bird_socket": "/etc/lvsdr/cluster.toml"}, "bgp.bird_socket: /etc/lvsdr/cluster.toml collides with "
     "cluster.config_path (/etc/lvsdr/cluster.toml)"),
    ({"bgp.bird_conf": "/etc/keepalived/keepalived.conf/bird.conf"}, "bgp.bird_conf: "
     "/etc/keepalived/keepalived.conf/bird.conf collides with keepalived.conf (/etc/keepalived/keepalived.conf)"),
])
def test_bird_paths_colliding_with_another_file_are_refused(changes: dict[str, Any], line: str) -> None:
    """bird.conf and BIRD's socket cannot be keepalived.conf, the cluster file or each other (render --all dropped
    one file silently; watch would write both into one)."""
    assert line in errors(patched(**changes))


def test_watch_refuses_a_bird_conf_that_is_its_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`watch -o X --bird-conf X`: one line, exit 2, nothing written."""
    from lvsdr.cli import main

    out = tmp_path / "k.conf"
    assert main(["watch", str(EXAMPLES / "ecmp.toml"), "--node", "lb1", "-o", str(out), "--bird-conf", str(out),
                 "--once"]) == 2
    assert "--bird-conf" in capsys.readouterr().err and not out.exists()
