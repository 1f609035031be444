"""DR-path checks, the pure part (generator/drpath.py): what is probed, the
packets, the capture filter's program, the verdicts, the rendered
FILE_CHECK and the cluster file's `dr_check`."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from lvsdr.errors import ValidationError
from lvsdr.generator.drpath import (
    Verdicts,
    bpf_program,
    dr_files,
    targets,
)
from lvsdr.generator.frames import tcp_syn, udp_datagram
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.model import Cluster, DrCheck

from helpers import EXAMPLES

ME, WEB1 = bytes.fromhex("021d00000010"), bytes.fromhex("021d00000100")


def cluster(example: str = "web.toml", **dr: object) -> Cluster:
    data = tomllib.loads((EXAMPLES / example).read_text())
    if dr:
        data["cluster"]["dr_check"] = dr.get("value", dr)
    return parse_cluster(data)


def test_each_tcp_backend_has_a_verdict_file_and_a_track_file_name() -> None:
    """Every backend of every TCP service gets its file and its track_file name; the files of a cluster do not
    collide with another cluster's, nor a director's with another director's, in one state directory."""
    c = cluster()
    assert dr_files(c, "lb1") == {("http", "web1"): ("/run/lvsdr/dr-web-lb1-http-web1", "lvsdr_dr_http_web1"),
                                  ("http", "web2"): ("/run/lvsdr/dr-web-lb1-http-web2", "lvsdr_dr_http_web2")}


def test_dr_check_false_renders_nothing_and_probes_nothing() -> None:
    """`dr_check = false`: keepalived's checks alone, no file, no probe."""
    c = cluster(value=False)
    assert c.dr_check is None and dr_files(c, "lb1") == {} and targets(c, "lb1") == ()
    assert "FILE_CHECK" not in render_keepalived(c, "lb1", "x")


def test_directors_that_are_backends_are_not_probed() -> None:
    """In a pair whose directors are backends too, only the real server is probed, by both directors (a probe to
    the MASTER goes through its IPVS, which may hand it back to the prober: the IPVS tier saw a director held out
    so); the directors' real_server blocks carry no DR-path FILE_CHECK."""
    c = cluster("pair.toml")
    for node in ("node1", "node2"):
        assert {t.backend for t in targets(c, node)} == {"web1"}
    text = render_keepalived(c, "node1", "x")
    assert "lvsdr_dr_http_web1" in text and "lvsdr_dr_http_node" not in text


def test_the_rendered_real_server_carries_the_file_check_beside_its_own() -> None:
    """The backend's real_server has its own checker and then the DR-path FILE_CHECK; its track_file names the
    verdict file."""
    text = render_keepalived(cluster(), "lb1", "x")
    assert 'track_file lvsdr_dr_http_web1 {\n    file "/run/lvsdr/dr-web-lb1-http-web1"\n}\n' in text
    rs = text[text.index("real_server 192.0.2.11 80"):]
    rs = rs[:rs.index("\n    }\n")]
    dr = "FILE_CHECK {\n            track_file lvsdr_dr_http_web1\n            weight 0\n        }"
    assert rs.index("HTTP_GET") < rs.index(dr)


@pytest.mark.parametrize("value, error", [
    ({"interval": 0.05}, "cluster.dr_check.interval: 0.05 is outside 0.1..10 seconds"),
    ({"interval": float("nan")}, "cluster.dr_check.interval: NaN is outside 0.1..10 seconds"),
    ({"fall": 0}, "cluster.dr_check.fall: 0 is outside 1..10"),
    ({"rise": 11}, "cluster.dr_check.rise: 11 is outside 1..10"),
    ({"every": 1}, "cluster.dr_check.every: unknown key"),
    (3, "cluster.dr_check: expected boolean or table, got integer"),
    ({"interval": "1"}, "cluster.dr_check.interval: expected integer or number, got string"),
])
def test_dr_check_values_are_validated(value: object, error: str) -> None:
    """Each bad value of dr_check is one line naming its key."""
    with pytest.raises(ValidationError) as e:
        cluster(value=value)
    assert error in str(e.value), str(e.value)


def test_dr_check_defaults_and_a_table() -> None:
    """Absent or `true`: the defaults (0.5 s, 2, 3); a table sets each."""
    assert cluster().dr_check == DrCheck(0.5, 2, 3) == cluster(value=True).dr_check
    assert cluster(interval=1, fall=3, rise=1).dr_check == DrCheck(1.0, 3, 1)


def test_the_capture_program_jumps_inside_itself() -> None:
    """Every jump of the filter lands on an instruction, both returns end it, and the port is compared twice
    (IPv4 and IPv6)."""
    prog = bpf_program(40000)
    for pc, (op, jt, jf, _) in enumerate(prog):
        if op & 0x07 == 0x05:  # BPF_JMP
            assert pc + 1 + jt < len(prog) and pc + 1 + jf < len(prog)
    assert [k for op, *_, k in prog if op == 0x06] == [0xFFFF, 0]
    assert sum(1 for op, *_, k in prog if op == 0x15 and k == 40000) == 2


def test_a_verdict_falls_after_fall_rounds_and_rises_after_rise() -> None:
    """Two failed rounds take a backend out, three good ones bring it back; a single lost round does nothing."""
    v = Verdicts(DrCheck(0.5, 2, 3))
    pair = ("http", "web1")
    assert v.round({pair: ""}) == []
    assert v.round({pair: "no answer"}) == []
    assert v.round({pair: ""}) == []  # one lost round
    assert v.round({pair: "no answer"}) == []
    changed = v.round({pair: "no answer"})
    assert [(p, x.up, x.why) for p, x in changed] == [(pair, False, "no answer")]
    assert v.round({pair: ""}) == [] and v.round({pair: ""}) == []
    assert [(p, x.up) for p, x in v.round({pair: ""})] == [(pair, True)]


def test_a_pair_a_round_did_not_probe_keeps_its_verdict() -> None:
    """The round in flight when an edit added a backend has no outcome for it: its verdict (out, new) stands, and
    the next round's pass lets it in (a round used to forget it, and the file it had written said 1 for good)."""
    from lvsdr.generator.drpath import Verdict

    v = Verdicts(DrCheck(), {("http", "web2"): Verdict(up=False, new=True)})
    assert v.round({("http", "web1"): ""}) == [] and not v.pairs["http", "web2"].up
    assert [(p, x.up) for p, x in v.round({("http", "web1"): "", ("http", "web2"): ""})] == [(("http", "web2"), True)]



def test_a_backend_an_edit_adds_starts_out_and_verdicts_survive_the_edit(tmp_path: Path) -> None:
    """An edit of the cluster file keeps every verdict (a backend held out stays out, its file 1); a backend the
    edit adds starts out (file 1) and is in after its first passing round, not after `rise`; the agent's start
    writes 0 for every pair (no verdict yet, keepalived's checks alone)."""
    from types import SimpleNamespace

    from lvsdr.hooks.drpath import DrProbe

    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    data["cluster"]["state_dir"] = str(tmp_path)
    data["services"][0]["backends"] = ["web1"]
    one = parse_cluster(data)
    data["services"][0]["backends"] = ["web1", "web2"]
    two = parse_cluster(data)
    log = SimpleNamespace(info=lambda *a, **k: None, error=lambda *a, **k: None, warning=lambda *a, **k: None)
    probe = DrProbe.__new__(DrProbe)
    probe.log, probe.ifname, probe.files, probe.verdicts, probe.configured = log, "eth0", {}, None, False
    probe.sock = object()  # type: ignore[assignment]  # a socket open (not opened again)
    probe.open = lambda ifname: None  # type: ignore[method-assign]
    probe.close = lambda: None  # type: ignore[method-assign]
    probe.configure(one, "lb1")
    files = {b: tmp_path / f"dr-web-lb1-http-{b}" for b in ("web1", "web2")}
    assert files["web1"].read_text() == "0\n" and not files["web2"].exists()
    assert probe.verdicts is not None
    probe.verdicts.round({("http", "web1"): "no answer"})
    probe.verdicts.round({("http", "web1"): "no answer"})  # out (fall 2)
    probe.configure(two, "lb1")
    assert files["web1"].read_text() == "1\n" and files["web2"].read_text() == "1\n"
    assert probe.verdicts.round({("http", "web1"): ""}) == []  # the round in flight at the edit: web2 not in it
    changed = probe.verdicts.round({("http", "web1"): "", ("http", "web2"): ""})
    assert [(p, v.up) for p, v in changed] == [(("http", "web2"), True)]  # in at once; web1 needs rise (3)


def test_the_holders_gratuitous_arp_reads_as_its_answer() -> None:
    """The frame that wins the clients back says: the VIP is at the holder's MAC."""
    from lvsdr.generator.frames import arp_announce, parse_arp_reply

    vip = ipaddress.IPv4Address("192.0.2.100")
    assert parse_arp_reply(arp_announce(bytes.fromhex("021d00000010"), vip)) == (vip, "02:1d:00:00:00:10")


def test_a_round_without_the_backends_mac_leaves_its_verdict() -> None:
    """A pair not probed (its MAC being resolved after a flushed neighbour table) neither falls nor rises."""
    v = Verdicts(DrCheck(0.5, 1, 1))
    pair = ("http", "web1")
    assert v.round({pair: None}) == [] and v.pairs[pair].up
    assert [x.up for _, x in v.round({pair: "no answer"})] == [False]
    assert v.round({pair: None}) == [] and not v.pairs[pair].up


def test_the_agents_record_reads_back_and_refuses_anything_else() -> None:
    """The record of verdicts, offenders and counts reads back as written; a record lvsdr did not write is one
    FactError naming the file (metrics then says so, no traceback)."""
    from lvsdr.generator.drpath import DrRecord, families
    from lvsdr.generator.node import FactError

    rec = DrRecord((("http", "web1", False),), (("192.0.2.100", "02:1d:00:00:01:01", "web2"),), 10, 1, 0, 1)
    assert DrRecord.from_json(rec.to_json(), "f") == rec
    for bad in ("[]", '{"paths": 1}', '{"paths": [], "offenders": [], "rounds": -1, "downs": 0, "ups": 0, '
                '"offences": 0}', "[" * 5000, '{"rounds": NaN}'):
        with pytest.raises(FactError, match="f: not the agent's record of DR-path checks"):
            DrRecord.from_json(bad, "f")
    up = next(f for f in families(rec) if f.name == "lvsdr_dr_path_up")
    assert up.samples == (((("service", "http"), ("backend", "web1")), 0.0),)


def run_bpf(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """Classic BPF, the opcodes bpf_program uses, as the kernel runs them (0: the frame dropped)."""
    a = x = pc = 0
    while True:
        op, jt, jf, k = prog[pc]
        pc += 1
        if op == 0x28:  # ldh [k]
            a = int.from_bytes(pkt[k:k + 2], "big") if k + 2 <= len(pkt) else -1
        elif op == 0x30:  # ldb [k]
            a = pkt[k] if k < len(pkt) else -1
        elif op == 0xB1:  # ldxb 4*([k]&0xf)
            x = 4 * (pkt[k] & 0xF)
        elif op == 0x48:  # ldh [x+k]
            a = int.from_bytes(pkt[x + k:x + k + 2], "big") if x + k + 2 <= len(pkt) else -1
        elif op == 0x15:  # jeq #k
            pc += jt if a == k else jf
        elif op == 0x45:  # jset #k
            pc += jt if a & k else jf
        elif op == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"opcode {op:#x}")
        if a == -1:
            return 0  # the kernel drops a frame read past its end


def test_the_capture_filter_passes_what_the_checks_read_and_nothing_else() -> None:
    """Run as the kernel runs it: ARP replies, NDP advertisements and TCP to the probes' port (IPv4, IPv6) pass;
    ARP requests, NDP solicitations, TCP to another port, IPv4 fragments and anything else are dropped."""
    from lvsdr.generator.frames import arp_announce, arp_request, neighbour_solicitation

    prog, port = bpf_program(40000), 40000
    v4, v6 = ipaddress.ip_address("192.0.2.100"), ipaddress.ip_address("2001:db8::100")
    me4, me6 = ipaddress.IPv4Address("192.0.2.2"), ipaddress.IPv6Address("2001:db8::2")
    mac = bytes.fromhex("021d00000100")
    syn4 = tcp_syn(mac, mac, v4, me4, 80, port, 1)
    syn6 = tcp_syn(mac, mac, v6, me6, 80, port, 1)
    ns = neighbour_solicitation(mac, me6, ipaddress.IPv6Address(v6))
    na = ns[:54] + bytes([136]) + ns[55:]  # the same frame as an advertisement
    frag = syn4[:20] + b"\x00\x01" + syn4[22:]  # a later fragment (offset 8): no TCP header in it
    udp4 = udp_datagram(mac, mac, v4, me4, 53, port, b"x")
    udp6 = udp_datagram(mac, mac, v6, me6, 53, port, b"x")
    assert all(run_bpf(prog, f) for f in (arp_announce(mac, ipaddress.IPv4Address(v4)), syn4, syn6, na, udp4, udp6))
    assert not any(run_bpf(prog, f) for f in (arp_request(mac, me4, ipaddress.IPv4Address(v4)), ns, frag,
                                              tcp_syn(mac, mac, v4, me4, 80, port + 1, 1),
                                              udp_datagram(mac, mac, v4, me4, 53, port + 1, b"x"), b"\x00" * 60))


def with_checks(example: str, service: int, checks: list[dict[str, object]], protocol: str = "tcp") -> Cluster:
    data = tomllib.loads((EXAMPLES / example).read_text())
    svc = data["services"][service]
    svc.pop("check", None)
    svc["checks"], svc["protocol"] = checks, protocol
    return parse_cluster(data)


def test_an_http_check_of_the_port_is_sent_through_the_vip() -> None:
    """A TCP service whose check is HTTP_GET sends its first URL on the probe's handshake (Host: the virtualhost,
    else the VIP); a check of another port (connect_port), or a TCP check, leaves a bare handshake."""
    from lvsdr.generator.drpath import HttpAsk

    t = targets(cluster(), "lb1")[0]
    assert isinstance(t.ask, HttpAsk) and t.ask.codes == ((200, 200),)
    assert t.ask.request == (b"GET / HTTP/1.0\r\nHost: 192.0.2.100\r\nUser-Agent: lvsdr-dr-check\r\n"
                             b"Connection: close\r\n\r\n")
    c = with_checks("web.toml", 0, [{"type": "http", "path": "/health", "virtualhost": "www.example.org",
                                     "status_code": [200, "300-399"]}])
    ask = targets(c, "lb1")[0].ask
    assert isinstance(ask, HttpAsk) and ask.codes == ((200, 200), (300, 399))
    assert ask.request.startswith(b"GET /health HTTP/1.0\r\nHost: www.example.org\r\n")
    assert ask.judge(b"HTTP/1.1 302 Found\r\n") == "" and ask.judge(b"HTTP/1.0 200 OK\r\n\r\nweb1") == ""
    assert ask.judge(b"HTTP/1.1 503 Unavailable\r\n") == ("GET /health through the VIP answered 503 (the check "
                                                           "wants 200, 300-399)")
    assert "no HTTP status line" in ask.judge(b"SSH-2.0-OpenSSH\r\n")
    assert targets(with_checks("web.toml", 0, [{"type": "http", "port": 8080}]), "lb1")[0].ask is None
    assert targets(with_checks("web.toml", 0, [{"type": "tcp"}]), "lb1")[0].ask is None


def test_a_udp_service_is_probed_when_its_check_is_answered() -> None:
    """A UDP service is covered when its check gets an answer: DNS_CHECK (its question, answered RCODE 0) or
    UDP_CHECK with require_reply (its payload; the reply's prefix); a UDP_CHECK without require_reply leaves it
    out (silence proves nothing), and its real_server has no DR-path FILE_CHECK."""
    from lvsdr.generator.drpath import DNS_QID, UdpAsk
    from lvsdr.generator.frames import dns_question

    dns = with_checks("web.toml", 0, [{"type": "dns", "query": "www.example.org", "query_type": "A"}], "udp")
    ts = targets(dns, "lb1")
    assert {t.backend for t in ts} == {"web1", "web2"} and all(t.udp for t in ts)
    ask = ts[0].ask
    assert isinstance(ask, UdpAsk) and ask.payload == dns_question(DNS_QID, "www.example.org", 1)
    answer = bytearray(ask.payload)
    answer[2] |= 0x80
    assert ask.judge(bytes(answer)) == ""
    answer[3] |= 3  # NXDOMAIN
    assert ask.judge(bytes(answer)) == "DNS A www.example.org: the answer through the VIP has RCODE 3"
    assert "not a DNS response" in ask.judge(ask.payload)
    udp = with_checks("web.toml", 0, [{"type": "udp", "payload": "0a1b", "require_reply": "ff"}], "udp")
    ask = targets(udp, "lb1")[0].ask
    assert isinstance(ask, UdpAsk) and ask.payload == b"\x0a\x1b" and ask.reply == b"\xff"
    assert ask.judge(b"\xff\x00") == "" and ask.judge(b"\x00") != ""
    silent = with_checks("web.toml", 0, [{"type": "udp", "payload": "0a1b"}], "udp")
    assert targets(silent, "lb1") == () and dr_files(silent, "lb1") == {}
    assert "lvsdr_dr_" not in render_keepalived(silent, "lb1", "x")
    assert "lvsdr_dr_http_web1" in render_keepalived(udp, "lb1", "x")


def test_http_probe_frames_carry_the_request_and_parse_back() -> None:
    """The segment completing the handshake carries the request (ACK, PSH, checksums hold); an answer's sequence
    number and data are read, and a short frame's Ethernet padding is not taken for data."""
    import struct

    from lvsdr.generator.frames import TCP_ACK, TCP_PSH, _checksum, parse_reply, tcp_data

    v4, me4 = ipaddress.IPv4Address("192.0.2.100"), ipaddress.IPv4Address("192.0.2.2")
    seg = tcp_data(ME, WEB1, me4, v4, 40000, 80, 11, 22, b"GET / HTTP/1.0\r\n\r\n")
    ip, tcp = seg[14:34], seg[34:]
    assert tcp[13] == TCP_ACK | TCP_PSH and struct.unpack("!II", tcp[4:12]) == (11, 22)
    assert _checksum(ip) == 0 and _checksum(ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp)) + tcp) == 0
    back = parse_reply(WEB1 + ME + seg[12:26] + ip[16:20] + ip[12:16] + struct.pack("!HH", 80, 40000) + tcp[4:])
    assert back is not None and back.seq == 11 and back.payload == b"GET / HTTP/1.0\r\n\r\n"
    syn = tcp_syn(ME, WEB1, me4, v4, 40000, 80, 1)
    assert len(syn) == 58 and parse_reply(syn + b"\x00" * 6).payload == b""  # type: ignore[union-attr]
    dgram = udp_datagram(ME, WEB1, me4, v4, 40000, 53, b"ab")
    back = parse_reply(dgram + b"\x00" * 20)
    assert back is not None and back.udp and back.payload == b"ab" and back.src_mac == ME


def test_many_vips_are_asked_about_in_turn() -> None:
    """Over ASK_PER_ROUND VIPs, each round asks the next ASK_PER_ROUND and every VIP comes up in turn (the
    questions are broadcasts the whole segment takes)."""
    from types import SimpleNamespace

    from lvsdr.hooks.drpath import ASK_PER_ROUND, DrProbe

    vips = [ipaddress.ip_address(f"192.0.2.{i}") for i in range(1, 101)]
    probe = SimpleNamespace(cursor=0)
    rounds = [DrProbe.asked(probe, vips) for _ in range(4)]  # type: ignore[arg-type]
    assert all(len(r) == ASK_PER_ROUND for r in rounds)
    assert set().union(*rounds) == set(vips)
    assert DrProbe.asked(SimpleNamespace(cursor=0), vips[:5]) == vips[:5]  # type: ignore[arg-type]
