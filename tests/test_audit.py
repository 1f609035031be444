"""The audit's pure parts: frames built and parsed as bytes, and what the
observations mean (which check fails, which node is named)."""

from __future__ import annotations

import ipaddress
import struct

from lvsdr.generator.audit import Advert, Observation, evaluate, textfile
from lvsdr.generator.frames import (
    _checksum,
    _pseudo,
    arp_request,
    neighbour_solicitation,
    parse_arp_reply,
    parse_neighbour_advert,
    parse_reply,
    tcp_rst,
    tcp_syn,
)
from lvsdr.generator.load import load_cluster
from lvsdr.generator.model import Cluster
from lvsdr.hooks.wire import parse_vrrp

from helpers import EXAMPLES

IP = ipaddress.ip_address
V4 = ipaddress.IPv4Address
LB1, LB2, WEB1, WEB2 = "02:00:00:00:00:10", "02:00:00:00:00:11", "02:00:00:00:00:21", "02:00:00:00:00:22"


def _vrrp_frame(vrid: int, prio: int, addrs: list[str], ah: bool = False) -> bytes:
    body = struct.pack("!BBBBBBH", 0x21, vrid, prio, len(addrs), 0, 1, 0) + b"".join(IP(a).packed for a in addrs)
    if ah:
        body = struct.pack("!BBHII", 112, 4, 0, 1, 7) + b"\0" * 12 + body  # AH: 24 bytes, then VRRP
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 255, 51 if ah else 112, 0,
                     IP("192.0.2.2").packed, IP("224.0.0.18").packed)
    return b"\x01\x00\x5e\x00\x00\x12" + bytes(6) + b"\x08\x00" + ip + body


def test_vrrp_adverts_in_clear_and_under_ah() -> None:
    """VRRP adverts are parsed whether sent in clear or under AH."""
    for ah in (False, True):
        adv = parse_vrrp(_vrrp_frame(51, 150, ["192.0.2.100", "192.0.2.101"], ah))
        assert adv == Advert(51, IP("192.0.2.2"), 150, (IP("192.0.2.100"), IP("192.0.2.101")), "00:00:00:00:00:00")
    assert parse_vrrp(arp_request(bytes(6), V4("192.0.2.250"), V4("192.0.2.100"))) is None


def test_arp_request_and_reply() -> None:
    """The audit's ARP request is well formed and replies parse to their sender."""
    req = arp_request(bytes.fromhex("020000000001"), V4("192.0.2.250"), V4("192.0.2.100"))
    assert len(req) == 42 and req[:6] == b"\xff" * 6 and req[38:42] == IP("192.0.2.100").packed
    reply = bytes.fromhex("020000000001") + bytes.fromhex("020000000010") + b"\x08\x06" + struct.pack(
        "!HHBBH", 1, 0x0800, 6, 4, 2) + bytes.fromhex("020000000010") + IP("192.0.2.100").packed + bytes(10)
    assert parse_arp_reply(reply) == (IP("192.0.2.100"), LB1)
    assert parse_arp_reply(req) is None  # a request is not an answer


def test_syn_checksums_hold_and_replies_parse() -> None:
    """The audit's SYN and RST frames carry correct checksums and SYN-ACK replies parse."""
    syn = tcp_syn(bytes(6), bytes(6), V4("192.0.2.250"), V4("192.0.2.100"), 40000, 80, 1)
    ip, tcp = syn[14:34], syn[34:]
    assert _checksum(ip) == 0
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    assert _checksum(pseudo + tcp) == 0
    # the same frame seen coming back (addresses swapped) is a TCP packet from the VIP
    back = syn[:26] + ip[16:20] + ip[12:16] + struct.pack("!HH", 80, 40000) + tcp[4:13] + b"\x12" + tcp[14:]
    rep = parse_reply(back)
    assert rep is not None and (rep.src, rep.sport, rep.dport, rep.flags) == (IP("192.0.2.100"), 80, 40000, 0x12)
    # a SYN-ACK's acknowledgement number is read (the crafted flows match it to their own SYN)
    back = back[:34 + 8] + struct.pack("!I", 2) + back[34 + 12:]
    assert parse_reply(back).ack == 2  # type: ignore[union-attr]
    # the RST that resets the half-open connection: 20 bytes of TCP header, checksums hold
    rst = tcp_rst(bytes(6), bytes(6), V4("192.0.2.250"), V4("192.0.2.100"), 40000, 80, 2)
    ip, tcp = rst[14:34], rst[34:]
    assert len(tcp) == 20 and tcp[13] == 0x04 and struct.unpack("!I", tcp[4:8]) == (2,)
    assert _checksum(ip) == 0 and _checksum(ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp)) + tcp) == 0


def test_ndp_and_ipv6_syn_frames() -> None:
    """The audit's neighbour solicitations and IPv6 SYNs are well formed."""
    me, vip = ipaddress.IPv6Address("2001:db8::250"), ipaddress.IPv6Address("2001:db8::100")
    ns = neighbour_solicitation(bytes.fromhex("020000000001"), me, vip)
    assert ns[:6] == bytes.fromhex("3333ff000100")  # the solicited-node group's MAC
    icmp = ns[54:]
    assert icmp[0] == 135 and icmp[8:24] == vip.packed and ns[21] == 255  # hop limit 255, as NDP requires
    assert _checksum(_pseudo(me, IP("ff02::1:ff00:100"), 58, len(icmp)) + icmp) == 0
    # an advertisement back: the target and the MAC in its target link-layer option
    na = bytearray(ns)
    na[54] = 136
    na[78:80] = b"\x02\x01"
    na[80:86] = bytes.fromhex("020000000010")
    assert parse_neighbour_advert(bytes(na)) == (vip, LB1)
    syn = tcp_syn(bytes(6), bytes(6), me, vip, 40000, 80, 1)
    tcp = syn[54:]
    assert syn[12:14] == b"\x86\xdd" and _checksum(_pseudo(me, vip, 6, len(tcp)) + tcp) == 0
    back = syn[:22] + vip.packed + me.packed + struct.pack("!HH", 80, 40000) + tcp[4:13] + b"\x12" + tcp[14:]
    rep = parse_reply(back)
    assert rep is not None and (rep.src, rep.sport, rep.dport, rep.flags) == (vip, 80, 40000, 0x12)


def _healthy() -> Observation:
    return Observation(
        macs={"lb1": LB1, "lb2": LB2, "web1": WEB1, "web2": WEB2},
        owners={IP("192.0.2.100"): (LB1,)},
        adverts=(Advert(51, IP("192.0.2.2"), 150, (IP("192.0.2.100"),)),),
        paths={("http", "web1"): "answered", ("http", "web2"): "answered"},
    )


def faults(obs: Observation) -> list[tuple[str, str, tuple[str, ...]]]:
    cluster = load_cluster(EXAMPLES / "web.toml")
    return [(r.check, r.target, r.nodes) for r in evaluate(cluster, obs) if not r.ok]


def test_healthy_observation_has_no_fault() -> None:
    """An observation of a healthy cluster yields no failed check."""
    assert faults(_healthy()) == []


def test_each_fault_names_its_node() -> None:
    """Each fault in an observation is a failed check naming the node at fault."""
    obs = _healthy()
    obs.owners = {IP("192.0.2.100"): (LB1, WEB1)}
    assert faults(obs) == [("arp", "192.0.2.100", ("web1",))]
    obs = _healthy()
    obs.owners = {IP("192.0.2.100"): (WEB2,)}
    assert faults(obs) == [("arp", "192.0.2.100", ("web2",))]
    obs = _healthy()
    obs.adverts += (Advert(51, IP("192.0.2.3"), 100, (IP("192.0.2.100"),)),)
    assert faults(obs) == [("vrrp", "vrid 51", ("lb1", "lb2"))]
    obs = _healthy()
    obs.adverts = ()
    assert faults(obs) == [("vrrp", "vrid 51", ("lb1", "lb2"))]
    obs = _healthy()
    obs.adverts = (Advert(51, IP("192.0.2.2"), 90, (IP("192.0.2.100"),)),)
    assert faults(obs) == [("vrrp", "vrid 51", ("lb1",))]
    obs = _healthy()
    obs.paths = {("http", "web1"): "refused", ("http", "web2"): "silent"}
    assert faults(obs) == [("path", "http/web1", ("web1",)), ("path", "http/web2", ("web2",))]
    obs = _healthy()
    del obs.macs["lb2"]
    assert faults(obs) == [("director", "lb2", ("lb2",))]


def _ecmp() -> tuple[Cluster, Observation]:
    cluster = load_cluster(EXAMPLES / "ecmp.toml")
    web = {"web1": "02:00:00:00:01:00", "web2": "02:00:00:00:01:01", "web3": "02:00:00:00:01:02"}
    lbs = {"lb1": "02:00:00:00:00:10", "lb2": "02:00:00:00:00:11", "lb3": "02:00:00:00:00:12"}
    picks = {port: list(web.values())[port % 3] for port in range(40000, 40032)}
    return cluster, Observation(macs={**lbs, **web}, owners={IP("192.0.2.150"): ()},
                                paths={("http", w): "answered" for w in web},
                                flows={"http": {lb: dict(picks) for lb in lbs}})


def test_ecmp_flows_pass_when_every_director_picks_alike() -> None:
    """ECMP: nobody answering ARP for the VIP and every director sending each
    crafted flow to the same real server is a healthy cluster."""
    cluster, obs = _ecmp()
    results = evaluate(cluster, obs)
    assert [r for r in results if not r.ok] == []
    assert any(r.check == "flows" and r.target == "http (192.0.2.150:80)" for r in results)


def test_ecmp_flows_name_the_director_that_picks_otherwise_or_forwards_nothing() -> None:
    """ECMP: a director whose picks differ from the others' (another IPVS
    table) is named, both when two split evenly; so is one through which no
    flow is answered."""
    cluster, obs = _ecmp()
    lb2 = obs.flows["http"]["lb2"]
    for port in list(lb2)[:5]:
        lb2[port] = "02:00:00:00:01:00" if lb2[port] != "02:00:00:00:01:00" else "02:00:00:00:01:01"
    bad = [r for r in evaluate(cluster, obs) if not r.ok]
    assert [(r.check, r.nodes) for r in bad] == [("flows", ("lb2",))]
    assert "lb2 sends 5 of 32 flows to another real server" in bad[0].detail
    cluster, obs = _ecmp()
    del obs.flows["http"]["lb3"]
    lb2 = obs.flows["http"]["lb2"]
    lb2[40001] = "02:00:00:00:01:02" if lb2[40001] != "02:00:00:00:01:02" else "02:00:00:00:01:00"
    bad = [r for r in evaluate(cluster, obs) if not r.ok]
    assert [(r.check, r.nodes) for r in bad] == [("flows", ("lb1", "lb2"))]
    assert "lb1, lb2 split evenly over 1 flows" in bad[0].detail
    cluster, obs = _ecmp()
    obs.flows["http"]["lb3"] = {}
    assert [(r.check, r.target, r.nodes) for r in evaluate(cluster, obs) if not r.ok] == [
        ("flows", "http (192.0.2.150:80) at lb3", ("lb3",))]


def test_textfile_is_prometheus_text() -> None:
    """The audit's textfile is valid Prometheus text exposition."""
    cluster = load_cluster(EXAMPLES / "web.toml")
    obs = _healthy()
    obs.paths[("http", "web2")] = "silent"
    text = textfile(evaluate(cluster, obs))
    assert 'lvsdr_audit_ok{check="path",target="http/web2"} 0' in text
    assert text.endswith("lvsdr_audit_faults 1\n") and "# TYPE lvsdr_audit_ok gauge" in text


def test_a_two_armed_cluster_is_judged_arm_by_arm() -> None:
    """examples/two-armed.toml: both instances use vrid 51, one per segment.
    From the outside segment the outside arm is judged (its adverts, its
    VIP's owner, its paths) and the inside one is said not checked; from the
    inside segment the other way round. Nothing seen on one segment faults
    the other's instance."""
    cluster = load_cluster(EXAMPLES / "two-armed.toml")
    outside, inside = IP("192.0.2.100"), IP("198.51.100.254")
    lb1 = {"lb1": LB1, "lb2": LB2, "web1": WEB1, "web2": WEB2}
    for networks, advert_from, vip, judged, skipped in (
            ("192.0.2.0/24", "192.0.2.2", outside, "vrid 51", "vrid 51 on eth1"),
            ("198.51.100.0/24", "198.51.100.2", inside, "vrid 51 on eth1", "vrid 51")):
        obs = Observation(macs=lb1, owners={vip: (LB1,)}, networks=(ipaddress.ip_network(networks),),
                          adverts=(Advert(51, IP(advert_from), 150, (vip,)),),
                          paths={("www", "web1"): "answered", ("www", "web2"): "answered"})
        results = {(r.check, r.target): r for r in evaluate(cluster, obs)}
        assert all(r.ok for r in results.values()), [r.line() for r in results.values() if not r.ok]
        assert results[("vrrp", judged)].detail.startswith("MASTER lb1"), results[("vrrp", judged)].line()
        assert results[("vrrp", skipped)].detail.startswith("not checked from here")
        other = inside if vip == outside else outside
        assert results[("arp", str(other))].detail.startswith("not checked from here")
        assert results[("arp", str(vip))].detail.startswith("one owner")
