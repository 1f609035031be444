"""The IPVS table (generator/ipvs.py) and the next reload (hooks/reload.py):
the kernel's table read from captured /proc/net/ip_vs, keepalived.conf's
table, what a reload changes, and removed real servers leaving at weight 0."""

from __future__ import annotations

import contextlib
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvsdr.generator import ipvs
from lvsdr.generator.ipvs import (
    AddDest,
    AddService,
    AddVip,
    Dest,
    Key,
    Leaving,
    Live,
    RemoveDest,
    RemoveService,
    RemoveVip,
    Service,
    SetScheduler,
    SetWeight,
)
from lvsdr.generator.kaconf import read_keepalived
from lvsdr.generator.keepalived import render_keepalived, service_key
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.node import FactError
from lvsdr.hooks import facts, reload
from lvsdr.hooks.reload import WatchTarget

from helpers import DATA, EXAMPLES, patched

HTTP = Key("TCP", "192.0.2.150", 80)
WEB1, WEB2, WEB3 = Dest("192.0.2.11", 80), Dest("192.0.2.12", 80), Dest("192.0.2.13", 80)


def table(text: str) -> dict[Key, Service]:
    return ipvs.config_table(read_keepalived("k.conf", lambda _p: text))


def svc(scheduler: str = "rr", **dests: tuple[Dest, int] | tuple[Dest, int, int] | tuple[Dest, int, int, int]
        ) -> Service:
    return Service(scheduler, {v[0]: Live(*v[1:]) for v in dests.values()})


def test_the_kernel_table_is_read_from_captured_proc() -> None:
    """/proc/net/ip_vs as Debian 12's kernel prints it (IPv4, IPv6, UDP, fwmark) reads as services and weights."""
    t = ipvs.parse_proc((DATA / "facts" / "proc-net-ip_vs.mixed.txt").read_text())
    v6 = Key("TCP", "2001:db8::96", 80)
    assert set(t) == {HTTP, Key("UDP", "192.0.2.150", 53), v6, Key("FWM", "", 5), Key("FWM", "", 6)}
    assert t[v6].scheduler == "rr"
    assert t[v6].dests == {Dest("2001:db8::11", 80): Live(3), Dest("2001:db8::12", 80): Live(0)}
    assert t[Key("FWM", "", 5)].dests == {Dest("192.0.2.11", 0): Live(2)}
    assert t[Key("UDP", "192.0.2.150", 53)].scheduler == "sh"
    ecmp = ipvs.parse_proc((DATA / "facts" / "proc-net-ip_vs.ecmp.txt").read_text())
    assert list(ecmp[HTTP].dests) == [Dest("192.0.2.13", 80), Dest("192.0.2.12", 80), Dest("192.0.2.11", 80)]
    assert ipvs.parse_proc("") == {}


def test_a_line_the_parser_does_not_know_is_named() -> None:
    """A line of /proc/net/ip_vs that is neither a service nor a real server is a FactError naming its number."""
    text = (DATA / "facts" / "proc-net-ip_vs.mixed.txt").read_text() + "garbage here\n"
    with pytest.raises(FactError, match=r"line 14 is not an IPVS service or real server: .garbage"):
        ipvs.parse_proc(text)


@pytest.mark.parametrize("line", ["->", "  -> ", "-> RemoteAddress", "TCP", "FWM"])
def test_a_short_line_is_the_readers_own_error(line: str) -> None:
    """A line of one or two words (an arrow alone, a service without its scheduler) is a FactError, not IndexError."""
    with pytest.raises(FactError, match="line 2 is not an IPVS service"):
        ipvs.parse_proc("IP Virtual Server version 1.2.1 (size=4096)\n" + line + "\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["->", " ", "\n", "TCP", "FWM", "1", "C0000296:0050", "rr", "x"]), max_size=40)
       .map("".join))
def test_any_proc_words_are_a_table_or_a_fact_error(text: str) -> None:
    """Lines made of /proc/net/ip_vs's own words in any order: a table or a FactError, never another exception."""
    with contextlib.suppress(FactError):
        ipvs.parse_proc(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_proc_text_is_a_table_or_a_fact_error(text: str) -> None:
    """Whatever /proc/net/ip_vs holds, the parser returns a table or says which line it could not read."""
    with contextlib.suppress(FactError):
        ipvs.parse_proc(text)


def test_the_rendered_config_asks_for_every_service_of_the_file() -> None:
    """keepalived.conf's table has each plain service of the file with its scheduler and weights (one reading)."""
    cluster = parse_cluster(tomllib.loads((EXAMPLES / "full.toml").read_text()))
    t = table(render_keepalived(cluster, "lb-a", source="full.toml"))
    for s in cluster.services:
        key = service_key(s)
        if key is None:
            continue
        assert t[key].scheduler == s.scheduler
        assert {d.address: v.weight for d, v in t[key].dests.items()} == {str(b.address): b.weight for b in s.backends}
    marked = [s for s in cluster.services if s.fwmark]
    assert marked and all(Key("FWM", "", s.fwmark) in t for s in marked if s.fwmark)
    assert all(d.port == 0 for s in marked if s.fwmark for d in t[Key("FWM", "", s.fwmark)].dests)


def test_an_unchanged_config_plans_nothing() -> None:
    """Reloading the config keepalived runs, over the table it made, changes nothing."""
    t = {HTTP: svc(a=(WEB1, 1), b=(WEB2, 2))}
    assert ipvs.plan(t, t, t) == []


def test_each_edit_is_one_typed_change_with_the_connections_it_touches() -> None:
    """Added, removed and reweighted real servers, a new scheduler, added and removed services: one change each."""
    other = Key("UDP", "192.0.2.150", 53)
    new = Key("TCP", "192.0.2.151", 80)
    previous = {HTTP: svc(a=(WEB1, 1), b=(WEB2, 1)), other: svc(a=(Dest("192.0.2.11", 53), 1))}
    live = {HTTP: svc(a=(WEB1, 1, 4, 2), b=(WEB2, 1, 7, 1)), other: svc(a=(Dest("192.0.2.11", 53), 1, 0, 9))}
    next_ = {HTTP: svc("wrr", a=(WEB1, 3), c=(WEB3, 1)), new: svc(a=(WEB1, 1))}
    changes = ipvs.plan(previous, next_, live)
    assert changes == [RemoveService(other), SetScheduler(HTTP, "rr", "wrr"), SetWeight(HTTP, WEB1, 1, 3),
                       RemoveDest(HTTP, WEB2), AddDest(HTTP, WEB3, 1), AddService(new, "rr"),
                       AddDest(new, WEB1, 1)]
    removed = changes[3]
    assert isinstance(removed, RemoveDest) and (removed.active, removed.inactive) == (7, 1)
    assert "cuts 7 active and 1 inactive connections" in removed.description
    assert changes[0].description == "remove virtual service UDP 192.0.2.150:53: cuts 0 active and 9 inactive " \
                                       "connections"


def test_what_keepalived_does_not_own_or_a_check_holds_out_is_not_a_change() -> None:
    """A real server down by its check stays out, a checker's weight stays, and others' services stay."""
    ipvsadm = Key("TCP", "192.0.2.160", 22)
    previous = {HTTP: svc(a=(WEB1, 1), b=(WEB2, 1), c=(WEB3, 2))}
    live = {HTTP: svc(a=(WEB1, 1), c=(WEB3, 0)), ipvsadm: svc(a=(WEB1, 1))}  # web2 down; web3 inhibited to 0
    assert ipvs.plan(previous, previous, live) == []
    reweighted = {HTTP: svc(a=(WEB1, 4), b=(WEB2, 5), c=(WEB3, 2))}
    assert ipvs.plan(previous, reweighted, live) == [SetWeight(HTTP, WEB1, 1, 4)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([HTTP, Key("UDP", "192.0.2.150", 53)]),
                          st.sampled_from([WEB1, WEB2, WEB3]), st.integers(0, 3), st.integers(0, 3),
                          st.integers(0, 3), st.booleans()), max_size=12))
def test_a_plan_after_the_reload_is_empty(rows: list[tuple[Key, Dest, int, int, int, bool]]) -> None:
    """Whatever the configs and live table: once keepalived made the predicted table, the same config plans nothing."""
    previous: dict[Key, dict[Dest, Live]] = {}
    next_: dict[Key, dict[Dest, Live]] = {}
    live: dict[Key, dict[Dest, Live]] = {}
    for key, dest, p, n, lv, up in rows:
        if p:
            previous.setdefault(key, {})[dest] = Live(p)
        if n:
            next_.setdefault(key, {})[dest] = Live(n)
        if up:
            live.setdefault(key, {})[dest] = Live(lv)

    def tab(d: dict[Key, dict[Dest, Live]]) -> dict[Key, Service]:
        return {k: Service("rr", v) for k, v in d.items()}

    after = ipvs.predict(tab(previous), tab(next_), tab(live))
    assert ipvs.plan(tab(next_), tab(next_), after) == []
    assert ipvs.delta(tab(live), after) == ipvs.plan(tab(previous), tab(next_), tab(live))


def test_vips_on_lo_say_nothing_of_the_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """A director that is also a backend holds the VIPs on lo in either role: only addresses off lo count."""
    import ipaddress

    from lvsdr.generator.node import NodeAddress

    monkeypatch.setattr(facts, "read_addresses", lambda: (
        NodeAddress("lo", ipaddress.ip_interface("192.0.2.150/32"), "lo:lvsdr"),
        NodeAddress("eth0", ipaddress.ip_interface("192.0.2.21/24"), "eth0")))
    assert facts.held_addresses() == frozenset({"192.0.2.21"})


def test_vips_move_only_on_the_master() -> None:
    """A VIP added to or removed from an instance changes this director only when it is that instance's MASTER."""
    previous = {"VI_a": frozenset({"192.0.2.150", "192.0.2.151"})}
    next_ = {"VI_a": frozenset({"192.0.2.150", "192.0.2.152"})}
    assert ipvs.plan_vips(previous, next_, frozenset({"192.0.2.150", "192.0.2.151"})) == [
        AddVip("VI_a", "192.0.2.152"), RemoveVip("VI_a", "192.0.2.151")]
    assert ipvs.plan_vips(previous, next_, frozenset()) == []


def test_a_removed_real_server_leaves_while_it_has_active_connections() -> None:
    """Removed from the file, a real server stays (weight 0) while the kernel counts active connections through it,
    keeps the time it left, and goes when they end or drain_timeout has passed; UDP counts its inactive flows."""
    dns = Key("UDP", "192.0.2.150", 53)
    d53 = Dest("192.0.2.12", 53)
    previous = {HTTP: svc(a=(WEB1, 1), b=(WEB2, 1)), dns: svc(a=(d53, 1))}
    next_ = {HTTP: svc(a=(WEB1, 1))}
    live = {HTTP: svc(a=(WEB1, 1, 3), b=(WEB2, 1, 2, 5)), dns: svc(a=(d53, 1, 0, 4))}
    left = ipvs.leaving(previous, next_, live, (), now=100.0, timeout=60)
    assert left == (Leaving(HTTP, WEB2, 100.0), Leaving(dns, d53, 100.0))
    assert ipvs.leaving(previous, next_, live, left, now=150.0, timeout=60) == left  # since kept
    assert ipvs.leaving(previous, next_, live, left, now=161.0, timeout=60) == ()  # timed out
    idle = {HTTP: svc(a=(WEB1, 1, 3), b=(WEB2, 0, 0, 5)), dns: svc(a=(d53, 0, 0, 0))}
    assert ipvs.leaving(previous, next_, idle, left, now=120.0, timeout=60) == ()  # their connections ended


def test_group_and_fwmark_services_are_not_kept() -> None:
    """A real server removed from a virtual_server_group or a fwmark service goes at once, connections or not."""
    conf = """virtual_server_group g {
    192.0.2.150 80
    192.0.2.151 80
}
virtual_server group g {
    lb_algo rr
    real_server 192.0.2.11 {
    }
    real_server 192.0.2.12 {
    }
}
virtual_server fwmark 7 {
    lb_algo rr
    real_server 192.0.2.11 {
    }
    real_server 192.0.2.12 {
    }
}
"""
    previous = table(conf)
    assert previous[HTTP].group and set(previous) == {HTTP, Key("TCP", "192.0.2.151", 80), Key("FWM", "", 7)}
    assert previous[HTTP].dests == {WEB1: Live(1), WEB2: Live(1)}
    next_ = table(conf.replace("    real_server 192.0.2.12 {\n    }\n", ""))
    live = {k: Service("rr", {d: Live(1, 5) for d in s.dests}) for k, s in previous.items()}
    assert ipvs.leaving(previous, next_, live, (), now=1.0, timeout=60) == ()


def test_leaving_real_servers_render_at_weight_0_without_a_checker() -> None:
    """A leaving real server is rendered back into its service at weight 0 without a checker; a leaving service
    comes back whole, its VIP still on the instance; the table read back says so."""
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    cluster = parse_cluster(data)
    s = next(s for s in cluster.services if service_key(s) is not None)
    key = service_key(s)
    assert key is not None
    gone_dest = Dest("192.0.2.99", s.port)
    gone_key = Key("TCP", "192.0.2.199", 8080)
    left = (Leaving(key, gone_dest, 1.0, s.scheduler), Leaving(gone_key, Dest("192.0.2.98", 8080), 1.0, "wrr"))
    text = render_keepalived(cluster, cluster.directors[0].name, source="web.toml", leaving=left)
    t = table(text)
    assert t[key].dests[gone_dest] == Live(0)
    assert t[gone_key] == Service("wrr", {Dest("192.0.2.98", 8080): Live(0)})
    block = text[text.index("real_server 192.0.2.99"):]
    assert block.index("}") < block.index("weight 0") + 20 and "_CHECK" not in block[:block.index("}")]
    tree = read_keepalived("k.conf", lambda _p: text)
    assert any("192.0.2.199" in vips for vips in ipvs.config_vips(tree).values())
    assert render_keepalived(cluster, cluster.directors[0].name, source="web.toml", leaving=()) == \
        render_keepalived(cluster, cluster.directors[0].name, source="web.toml")


def test_the_leaving_record_round_trips_and_refuses_anything_else(tmp_path: Path) -> None:
    """The record of leaving real servers reads back as written; anything else is a FactError naming the file."""
    left = (Leaving(HTTP, WEB2, 12.5, "rr"), Leaving(Key("TCP", "2001:db8::96", 80), Dest("2001:db8::11", 80), 1.0))
    assert reload.parse_leaving(reload.dump_leaving(left), "r") == left
    for bad in ("{}", "[1]", '[{"key": ["FWM", "", 5], "dest": ["192.0.2.1", 0], "since": 1, "scheduler": "rr"}]',
                '[{"key": ["TCP", "not-an-ip", 80], "dest": ["192.0.2.1", 0], "since": 1, "scheduler": "rr"}]'):
        with pytest.raises(FactError, match="^r: not a record"):
            reload.parse_leaving(bad, "r")


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=20))
def test_any_record_json_is_read_or_refused(value: object) -> None:
    """Whatever JSON the leaving record holds, it is read or refused with a FactError, never a traceback."""
    with contextlib.suppress(FactError):
        reload.parse_leaving(json.dumps(value), "r")


def _target(tmp_path: Path, output: Path) -> WatchTarget:
    data = patched(tomllib.loads((EXAMPLES / "web.toml").read_text()), {"cluster.state_dir": str(tmp_path / "st")})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    name = data["directors"][0]["name"]
    return WatchTarget(path, name, output, lvsdr_path="/usr/bin/lvsdr", config_path="/etc/lvsdr/c.toml")


def test_plan_and_watch_agree_on_a_removed_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a removed backend still carrying connections, the plan says weight 0 and when it goes, and the record
    keeps its start; once they end, the next pass removes it and forgets the record."""
    output = tmp_path / "keepalived.conf"
    t = _target(tmp_path, output)
    data = json.loads(t.cluster.read_text())
    first = reload.prepare(t, now=1000.0)
    output.write_text(first.text)
    output.chmod(0o644)
    installed = table(first.text)
    key, service = next((k, s) for k, s in installed.items() if k.protocol == "TCP" and len(s.dests) > 1)
    dropped = sorted(service.dests)[-1]
    live = {k: Service(s.scheduler, {d: Live(v.weight, 2 if d == dropped else 0) for d, v in s.dests.items()})
            for k, s in installed.items()}
    monkeypatch.setattr(facts, "read_ipvs", lambda: live)
    monkeypatch.setattr(facts, "held_addresses", lambda: frozenset())
    svc_data = next(s for s in data["services"] if len(s["backends"]) > 1 and "fwmark" not in s)
    address_of = {r["name"]: r["address"] for r in data["real_servers"]}
    svc_data["backends"] = [b for b in svc_data["backends"]
                            if address_of[b if isinstance(b, str) else b["server"]] != dropped.address]
    t.cluster.write_text(json.dumps(data))
    n = reload.prepare(t, now=1010.0)
    assert n.leaving == (Leaving(key, dropped, 1010.0),)
    assert [c for c in n.changes if isinstance(c, SetWeight)] == [SetWeight(key, dropped, service.dests[dropped].weight,
                                                                            0)]
    assert any("kept at weight 0 while its 2 active connections end" in note and "60 s from now" in note
               for note in n.notes)
    reload.save_leaving(n)
    assert (n.record.stat().st_mode & 0o777) == 0o600
    output.write_text(n.text)
    assert reload.prepare(t, now=1030.0).leaving == (Leaving(key, dropped, 1010.0),)
    live[key] = Service(service.scheduler, {d: Live(0 if d == dropped else v.weight) for d, v in service.dests.items()})
    done = reload.prepare(t, now=1040.0)
    assert done.leaving == () and [c for c in done.changes if isinstance(c, RemoveDest)] == [RemoveDest(key, dropped)]
    reload.save_leaving(done)
    assert not n.record.exists()


def test_plan_and_watch_dry_run_print_the_same_and_change_nothing(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`lvsdr plan` and `lvsdr watch --dry-run` print the same plan and write nothing; bad input is exit 2."""
    from lvsdr.cli import main

    web, conf = str(EXAMPLES / "web.toml"), tmp_path / "keepalived.conf"
    assert main(["plan", web, "--node", "lb1", "-o", str(conf)]) == 0
    planned = capsys.readouterr().out
    assert main(["watch", web, "--node", "lb1", "-o", str(conf), "--dry-run"]) == 0
    assert capsys.readouterr().out == planned
    assert "add virtual service TCP 192.0.2.100:80 (scheduler wlc)" in planned and not conf.exists()
    assert main(["plan", web, "--node", "lb1", "-o", str(conf), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["changes"][0] == {"change": "AddService", "key": "TCP 192.0.2.100:80", "scheduler": "wlc"}
    assert main(["plan", web, "--node", "web1"]) == 2
    assert "is not a director" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_watch_keeps_the_config_when_a_fact_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live table or record that cannot be read is a transient failure (the watcher passes again soon), not a
    rejected cluster file; the installed config is left as it is."""
    from lvsdr.hooks import watch

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def error(self, event: str, **kw: object) -> None:
            self.lines.append(event)

    output = tmp_path / "keepalived.conf"
    output.write_text("installed\n")
    t = _target(tmp_path, output)

    def unreadable() -> dict[Key, Service]:
        raise FactError("/proc/net/ip_vs: line 3 is not an IPVS service or real server: 'x'")

    monkeypatch.setattr(facts, "read_ipvs", unreadable)
    log = Log()
    r = watch.sync_once(t, log)
    assert (r.outcome, r.again) == ("failed", True) and "line 3" in r.detail
    assert log.lines == ["cannot read the node; keeping the last good config"]
    assert output.read_text() == "installed\n"


# -- one reading of the cluster file ---------------------------------------------------------------------------
def _count_reads(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[str]:
    """Every read of ``path`` through the one reader of what an operator names (lvsdr.inputs.read_regular)."""
    import lvsdr.inputs

    reads: list[str] = []
    real = lvsdr.inputs.read_regular

    def counting(p: object, limit: int = lvsdr.inputs.MAX_INPUT) -> bytes:
        if str(p) == str(path):
            reads.append(str(p))
        return real(p, limit)  # type: ignore[arg-type]

    monkeypatch.setattr(lvsdr.inputs, "read_regular", counting)
    return reads


def test_plan_reads_the_cluster_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`lvsdr plan` validates, renders and plans from one reading of the cluster file (it loaded it twice, and
    rendered and parsed keepalived.conf twice)."""
    from lvsdr.cli import main

    cluster = tmp_path / "web.toml"
    cluster.write_text((EXAMPLES / "web.toml").read_text())
    reads = _count_reads(monkeypatch, cluster)
    assert main(["plan", str(cluster), "--node", "lb1", "-o", str(tmp_path / "keepalived.conf")]) == 0
    assert len(reads) == 1 and "add virtual service" in capsys.readouterr().out


def test_a_watch_pass_reads_the_cluster_file_once_for_both_configs(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An ECMP director's watch pass renders keepalived.conf and bird.conf from one reading (it parsed the file
    twice per pass); a resident watcher's pass without a change to the file does not read it at all."""
    from lvsdr.hooks import bird, keepalived, watch
    from lvsdr.source import Follower, Source

    data = patched(tomllib.loads((EXAMPLES / "ecmp.toml").read_text()), {"cluster.state_dir": str(tmp_path / "st")})
    cluster = tmp_path / "c.json"
    cluster.write_text(json.dumps(data))
    monkeypatch.setattr(keepalived, "check_text", lambda text, netns=None: keepalived.CheckResult(0, ""))
    monkeypatch.setattr(bird, "check_text", lambda text, timeout=30: None)
    monkeypatch.setattr(bird, "configure", lambda socket, timeout=30: (True, "Reconfigured"))
    t = WatchTarget(cluster, "lb1", tmp_path / "keepalived.conf", tmp_path / "none.pid",
                    bird_conf=tmp_path / "bird.conf")
    reads = _count_reads(monkeypatch, cluster)

    class Log:
        def __getattr__(self, name: str) -> object:
            return lambda *a, **kw: None

    r = watch.sync_once(t, Log())
    assert len(reads) == 1 and r.outcome == "written", r
    assert (tmp_path / "keepalived.conf").exists() and (tmp_path / "bird.conf").exists()
    follower = Follower(Source.read(str(cluster), "lb1"), lambda s: s.cluster.find_director("lb1"))
    del reads[:]
    assert follower.poll() is False and watch.sync_once(t, Log(), follower.source).outcome == "unchanged"
    assert reads == []
    cluster.write_text(json.dumps(patched(data, {"bgp.communities": ["65001:100", "65001:300"]})))
    assert follower.poll() is True and len(reads) == 1


# `ipvsadm -Ln --persistent-conn` as ipvsadm 1.31 prints it (its layout, with the documentation's addresses)
PERSISTENT = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn
  -> RemoteAddress:Port
TCP  192.0.2.130:80 rr persistent 120
  -> 192.0.2.11:80                1         0           0          0
  -> 192.0.2.12:80                0         3           1          2
UDP  [2001:db8::100]:53 rr persistent 60
  -> [2001:db8::11]:53            1         2           0          0
FWM  5 wlc persistent 300
  -> 192.0.2.13:0                 1         1           0          0
"""


def test_persistence_templates_are_read_per_real_server() -> None:
    """Each real server's PersistConn column, keyed as the table keys it (IPv6 compressed, a fwmark's port 0);
    headers and other lines are skipped."""
    from lvsdr.generator.ipvs import Dest, Key, parse_persistent

    got = parse_persistent(PERSISTENT)
    assert got == {(Key("TCP", "192.0.2.130", 80), Dest("192.0.2.11", 80)): 0,
                   (Key("TCP", "192.0.2.130", 80), Dest("192.0.2.12", 80)): 3,
                   (Key("UDP", "2001:db8::100", 53, 6), Dest("2001:db8::11", 53)): 2,
                   (Key("FWM", "", 5), Dest("192.0.2.13", 0)): 1}
    assert parse_persistent("") == {} and parse_persistent("garbage\n  -> x y\n") == {}


def test_every_director_sets_expire_quiescent_template_as_the_file_says() -> None:
    """`expire_quiescent_template` (default true) is one of IPVS's settings a director keeps, in either mode."""
    import tomllib

    from lvsdr.generator.director import director_spec
    from lvsdr.generator.load import parse_cluster

    for example, node in (("web.toml", "lb1"), ("ecmp.toml", "lb1")):
        data = tomllib.loads((EXAMPLES / example).read_text())
        assert ("net.ipv4.vs.expire_quiescent_template", "1") in director_spec(parse_cluster(data), node).sysctls
        data["cluster"]["expire_quiescent_template"] = False
        assert ("net.ipv4.vs.expire_quiescent_template", "0") in director_spec(parse_cluster(data), node).sysctls
