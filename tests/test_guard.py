"""Guarded apply (hooks/guard.py): what counts as a regression, and on a live
lab, an edit that splits VRRP (a new virtual_router_id reaching one
director) rolled back by that director's `lvsdr watch`, not installed again
until the file changes, and a good edit kept."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from lvsdr.hooks.guard import View, regressions
from lvsdr.lab import probes
from lvsdr.lab.topology import TIME_SCALE, Lab, Node

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll


def test_only_what_the_reload_broke_counts() -> None:
    """A DR path failing before (or new in the file: its check keeps it out), a split or an unowned VIP already
    there, are not the edit's; a path that passed and fails now, a new split, a VIP nobody holds now, are."""
    before = View(frozenset({("http", "web2")}), frozenset({("http", "web1")}), {"192.0.2.100": ["lb1"]},
                  frozenset())
    now = View(frozenset({("http", "web2"), ("http", "web1"), ("alt", "web1")}), frozenset(),
               {"192.0.2.100": ["lb1"], "192.0.2.101": ["lb1"]}, frozenset({"192.0.2.102"}))
    assert regressions(before, now) == ["DR path of web1 (http) fails since the reload",
                                        "VRRP split: 192.0.2.101 answered by lb1 as well", "nobody holds 192.0.2.102"]
    assert regressions(now, before) == []


def test_ecmp_announcements_sessions_and_the_plan_count_as_the_edits() -> None:
    """ECMP: a VIP announced before and still wanted, not announced now, is a regression at every look; one the
    edit removed (or a drain) is not. A BGP session Established before and not again, and a plan that is not
    empty, count at the final look only (BIRD restarts a changed peer's session after its start delay)."""
    vips = frozenset({"192.0.2.150", "192.0.2.151"})
    before = View(announced=vips, wanted=vips, sessions=frozenset({"192.0.2.1", "192.0.2.9"}))
    now = View(announced=frozenset({"192.0.2.150"}), wanted=vips, sessions=frozenset({"192.0.2.9"}),
               unrealized=("add TCP 192.0.2.150:80",))
    assert regressions(before, now) == ["192.0.2.151 no longer announced"]
    assert regressions(before, now, final=True) == ["192.0.2.151 no longer announced",
                                                    "BGP session to 192.0.2.1 not Established again",
                                                    "plan not empty: add TCP 192.0.2.150:80"]
    removed = View(announced=frozenset({"192.0.2.150"}), wanted=frozenset({"192.0.2.150"}), sessions=before.sessions)
    drained = View(announced=frozenset(), wanted=frozenset(), sessions=before.sessions)
    assert regressions(before, removed, final=True) == regressions(before, drained, final=True) == []


def test_birds_protocol_list_gives_each_neighbours_state() -> None:
    """`birdc show protocols all` (BIRD 2's layout) read as {neighbour: state}; other protocols ignored."""
    from lvsdr.hooks.bird import bird_neighbours

    text = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     10:00:00.000
kernel1    Kernel     master4    up     10:00:00.000
  Channel ipv4
    State:          UP
peer1      BGP        ---        up     10:00:01.000  Established
  BGP state:          Established
    Neighbor address: 192.0.2.1
    Neighbor AS:      65000
  Channel ipv4
    State:          UP
peer2      BGP        ---        start  10:00:01.000  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 2001:db8::1
    Neighbor AS:      65000
"""
    assert bird_neighbours(text) == {"192.0.2.1": "Established", "2001:db8::1": "Active"}


def start_watch(lab: Lab, node: Node) -> subprocess.Popen[bytes]:
    log = open(lab.state_dir / f"watch-{node.name}.log", "w")  # noqa: SIM115 - handed to the child
    p = subprocess.Popen(
        ["ip", "netns", "exec", node.ns, *lab.sandboxed("lvsdr-watch@.service"), lab._console(), "watch",
         lab.cluster_path, "--node", node.name, "-o", str(lab.state_dir / f"keepalived-{node.name}.conf"),
         "--pidfile", str(lab.pidfile(node)), "--hook", "both", "--lvsdr-path", lab._console(), "--config-path",
         lab.cluster_path, "--notify-fifo", lab.fifo(node)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LVSDR_LOG="stderr"))
    log.close()
    return p


def events(lab: Lab, node: str) -> list[dict[str, object]]:
    out = []
    for line in (lab.state_dir / f"watch-{node}.log").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def owners(lab: Lab, vip: str) -> list[str]:
    return sorted(probes.mac_owner(lab, m) for m in probes.arp_responders(lab, vip, count=3))


@needs_root
@pytest.mark.lab
def test_an_edit_that_splits_vrrp_is_rolled_back(tmp_path: Path) -> None:
    """`lvsdr watch` on lb2 alone: a new virtual_router_id makes lb2 a second MASTER; within the guard's window
    lb2's watch puts the last working config back (one line, counted), one ARP owner again; the same file is not
    installed again; the next edit, which adds a backend without the VIP, is installed and kept (its DR path keeps
    the backend out: not a regression)."""
    path = tmp_path / "web.toml"
    # web2 backs nothing yet: it holds no VIP (the good edit below adds it, and its DR path keeps it out)
    path.write_text((EXAMPLES / "web.toml").read_text().replace("[cluster]\n", "[cluster]\nguard_window = 8\n", 1)
                    .replace('backends = ["web1", "web2"]', 'backends = ["web1"]'))
    with make_lab(path, tmp_path) as lab:
        lb1 = lab.wait_for_master(30 * TIME_SCALE)
        lb2 = lab.state.node("lb2")
        assert lb1.name == "lb1"
        w = start_watch(lab, lb2)
        try:
            poll(lambda: any(e.get("event") == "watching" for e in events(lab, "lb2")), "watch started",
                 20 * TIME_SCALE, explain=lambda: (lab.state_dir / "watch-lb2.log").read_text())
            data = json.loads(Path(lab.cluster_path).read_text())
            data["cluster"]["virtual_router_id"] = 77
            split = lab.state_dir / "split.json"
            split.write_text(json.dumps(data))
            os.replace(split, lab.cluster_path)

            def said(event: str) -> dict[str, object] | None:
                return next((e for e in events(lab, "lb2") if str(e.get("event", "")).startswith(event)), None)

            took = poll(lambda: said("rolled back") is not None, "lb2 rolled back", 40 * TIME_SCALE, interval=0.1,
                        explain=lambda: (lab.state_dir / "watch-lb2.log").read_text()[-4000:]
                        + (lab.state_dir / "agent-lb2.log").read_text()[-3000:])
            line = said("rolled back")
            assert line is not None and "VRRP split: 192.0.2.100 answered by lb1 as well" in str(line["why"]), line
            assert "virtual_router_id 51" in (lab.state_dir / "keepalived-lb2.conf").read_text()
            settled = poll(lambda: owners(lab, "192.0.2.100") == ["lb1"], "one ARP owner again", 30 * TIME_SCALE,
                           interval=0.3) + took
            record = json.loads((lab.state_dir / "watch-web-lb2.json").read_text())
            assert record["rollbacks"] == 1
            # the same bytes again (a touch): not installed
            os.utime(lab.cluster_path)
            time.sleep(2)
            assert "virtual_router_id 51" in (lab.state_dir / "keepalived-lb2.conf").read_text()
            # a good edit that adds a backend without the VIP (web2): installed, web2 kept out by its DR path (the
            # check doing its work, not a regression), and the guard keeps the edit
            data["cluster"]["virtual_router_id"] = 51
            data["services"][0]["backends"] = ["web1", "web2"]
            split.write_text(json.dumps(data))
            os.replace(split, lab.cluster_path)
            poll(lambda: said("guard: the new config holds") is not None, "the good edit kept", 40 * TIME_SCALE,
                 interval=0.2, explain=lambda: (lab.state_dir / "watch-lb2.log").read_text()[-4000:])
            assert "real_server 192.0.2.12 80" in (lab.state_dir / "keepalived-lb2.conf").read_text()
            assert (lab.state_dir / "dr-web-lb2-http-web2").read_text() == "1\n"
            assert json.loads((lab.state_dir / "watch-web-lb2.json").read_text())["rollbacks"] == 1
            MEASURED.append(f"guarded apply: a virtual_router_id edit reaching lb2 alone split VRRP; rolled back "
                            f"{took:.1f} s after the save (window 8 s), one ARP owner again {settled:.1f} s after it; "
                            "the next edit (a backend without the VIP, kept out by its DR path) kept")
        finally:
            w.terminate()
            w.wait(timeout=10)


def test_a_new_edit_ends_the_window() -> None:
    """The guard of one reload ends when the cluster file changes again (the next reload is guarded in turn), and
    at once when told so by hand; a regression needs two looks in a row, the final look's (the plan) too."""
    import tempfile
    from types import SimpleNamespace

    from lvsdr.hooks.guard import Guard, hand_path

    with tempfile.TemporaryDirectory() as state:
        cluster = SimpleNamespace(state_dir=state, name="web", ecmp=True, directors=(), vips=(), bgp=None)
        log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
        g = Guard(cluster, "lb1", log)  # type: ignore[arg-type]
        t0 = time.monotonic()
        assert g.verify(View(), 30, lambda: True) is None and time.monotonic() - t0 < 1
        hand_path(state, "web", "lb1", "abort").write_text("x")
        looks = iter([View(), View(frozenset({("http", "web1")}))])
        g.look = lambda final=False: next(looks, View())  # type: ignore[method-assign]
        # the abort file is cleared at the window's start: a stale one does not abort a later window
        assert g.verify(View(passing=frozenset({("http", "web1")})), 1.2) is None
        looks = iter([View(frozenset({("http", "web1")}))] * 3)
        assert g.verify(View(passing=frozenset({("http", "web1")})), 5) == \
            "DR path of web1 (http) fails since the reload"
        # the window's end: a plan not empty twice in a row rolls back; once (keepalived mid-update) does not
        looks = iter([View(), View(unrealized=("add TCP 192.0.2.100:80",)), View()])
        assert g.verify(View(), 0.1) is None
        looks = iter([View()] + [View(unrealized=("add TCP 192.0.2.100:80",))] * 3)
        assert g.verify(View(), 0.1) == "plan not empty: add TCP 192.0.2.100:80"


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"rollbacks": NaN}', '{"rollbacks": -1}', "[]", "x"])
def test_a_watch_record_lvsdr_did_not_write_is_one_error(tmp_path: Path, text: str) -> None:
    """The watch's record of rollbacks (read by metrics, and by the guard when it counts one more): deep nesting,
    NaN, a negative count or garbage is one FactError naming the file, never a traceback; the guard counts afresh."""
    from types import SimpleNamespace

    from lvsdr.generator.node import FactError
    from lvsdr.hooks.guard import Guard, rollbacks

    path = tmp_path / "watch-web-lb1.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(FactError, match="not `lvsdr watch`'s record"):
        rollbacks(path)
    g = Guard(SimpleNamespace(state_dir=str(tmp_path), name="web", bgp=None), "lb1",  # type: ignore[arg-type]
              SimpleNamespace(error=lambda *a, **k: None))
    g.count("why", "key")
    assert rollbacks(path) == 1


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"passes": NaN, "healed": 0, "changes": 0, "failures": 0}',
                                  '{"passes": 1}', "[]"])
def test_a_healer_record_lvsdr_did_not_write_is_one_error(tmp_path: Path, text: str) -> None:
    """A real server's `realserver watch` record read by metrics: anything it never writes is one FactError."""
    from lvsdr.generator.node import FactError
    from lvsdr.hooks.metrics import healer_families

    path = tmp_path / "realserver-watch-web-web1.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(FactError, match="not `lvsdr realserver watch`'s record"):
        healer_families(path)
