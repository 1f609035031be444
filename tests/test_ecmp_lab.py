"""An ECMP cluster's control plane in namespaces (examples/ecmp.toml): a
router running BIRD with multipath, three directors running lvsdr's
bird.conf and `lvsdr agent`. The router's route to the VIP has one next hop
per healthy director; a director leaves it within a second when a service
loses quorum there, when keepalived dies, when its link goes (BFD), or when
it is drained, and comes back when healthy.

This kernel has no IPVS, so keepalived's checker cannot run here: each
director runs the lab's checker (lab/checker.py, TEST SCAFFOLDING) in its
place, which checks the backends by TCP and writes keepalived's own FIFO
lines. The IPVS tier (tests/ipvs/test_ipvs_ecmp.py) runs the real keepalived."""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import kill_in_ns
from lvsdr.lab.topology import Lab, Node

from helpers import EXAMPLES, MEASURED, lvsdr_in, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab, pytest.mark.xdist_group("ecmp_lab"),  # one shared lab per module
              pytest.mark.long]  # the module takes 85 s on its worker: started first, it does not end the tier last
VIP = "192.0.2.150"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("ecmp")
    with make_lab(EXAMPLES / "ecmp.toml", tmp) as lab:
        yield lab


def explain(lab: Lab) -> str:
    logs = sorted(lab.state_dir.glob("agent-*.log")) + sorted(lab.state_dir.glob("bird-*.log"))
    return f"next hops: {lab.next_hops()}\n" + "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in logs)


def hop(node: Node) -> str:
    return node.addresses[0].split("/")[0]


def everyone(lab: Lab) -> list[str]:
    return sorted(hop(d) for d in lab.state.directors)


def without(lab: Lab, node: Node) -> list[str]:
    return sorted(h for h in everyone(lab) if h != hop(node))


def logged(lab: Lab, node: Node, event: str, since: float) -> float:
    """time.time() the agent's reconcile logged as ``event`` on ``node`` after
    ``since`` began (its line comes when the whole reconcile is done, after
    the withdrawal it starts with: waited for up to 5 s)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in (lab.state_dir / f"agent-{node.name}.log").read_text().splitlines():
            if line.startswith("{") and f'"event": "{event}"' in line:
                record = json.loads(line)
                at = datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
                if at >= since:
                    return at - float(record["ms"]) / 1000
        time.sleep(0.05)
    raise AssertionError(f"{node.name}: no {event!r} in the agent's log after {since}:\n{explain(lab)}")


def back(lab: Lab, what: str, timeout: float = 20) -> None:
    poll(lambda: lab.next_hops() == everyone(lab), f"{what}: every director a next hop again", timeout,
         interval=0.1, explain=lambda: explain(lab))


def test_every_healthy_director_is_a_next_hop_and_nobody_answers_arp(lab: Lab) -> None:
    """The router's route to the VIP has the three directors as next hops, and
    no director (nor real server) answers ARP for the VIP."""
    assert lab.next_hops() == everyone(lab), explain(lab)
    assert probes.arp_responders(lab, VIP) == {}


@pytest.mark.solo  # a bound of a second: measured alone, after the parallel tier (scripts/test)
def test_a_service_losing_quorum_on_one_director_withdraws_it(lab: Lab) -> None:
    """When lb1's checks fail (its own path to the real servers cut), the
    router drops lb1 within a second of keepalived's quorum event, and takes
    it back when the checks pass again."""
    lb1 = lab.state.node("lb1")
    drop = ["nft", "add table inet lab_cut; add chain inet lab_cut out { type filter hook output priority 0; };"
            " add rule inet lab_cut out tcp dport 80 drop"]
    cut = time.time()
    subprocess.run(["ip", "netns", "exec", lb1.ns, *drop], check=True)
    try:
        poll(lambda: lab.next_hops() == without(lab, lb1), "lb1 withdrawn after losing quorum", 15, interval=0.05,
             explain=lambda: explain(lab))
        gone = time.time()
        event = logged(lab, lb1, "quorum changed", cut)
        assert gone - event < 1.0, (gone - event, explain(lab))
    finally:
        subprocess.run(["ip", "netns", "exec", lb1.ns, "nft", "delete", "table", "inet", "lab_cut"], check=True)
    back(lab, "quorum back on lb1")
    MEASURED.append(f"ECMP: lb1 lost quorum; the router dropped it {(gone - event) * 1000:.0f} ms after keepalived's "
                    f"quorum event ({gone - cut:.1f} s after its checks began to fail)")


@pytest.mark.solo  # a bound of a second: measured alone, after the parallel tier (scripts/test)
def test_keepalived_killed_withdraws_the_director(lab: Lab) -> None:
    """keepalived SIGKILLed on lb2: the agent withdraws its VIPs and the router
    drops it within a second; once keepalived runs again it comes back."""
    lb2 = lab.state.node("lb2")
    killed = time.time()
    kill_in_ns(lb2.ns, "keepalived")
    took = poll(lambda: lab.next_hops() == without(lab, lb2), "lb2 withdrawn after keepalived died", 5,
                interval=0.02, explain=lambda: explain(lab))
    assert took < 1.0, explain(lab)
    noticed = logged(lab, lb2, "keepalived is gone; every VIP withdrawn", killed) - killed
    lab.start_keepalived(lb2)
    back(lab, "keepalived running again on lb2")
    MEASURED.append(f"ECMP: keepalived SIGKILLed on lb2; the agent noticed {noticed * 1000:.0f} ms and the router "
                    f"dropped lb2 {took * 1000:.0f} ms after the kill")


@pytest.mark.solo  # a bound of a second: measured alone, after the parallel tier (scripts/test)
def test_bfd_drops_a_director_whose_link_goes_down(lab: Lab) -> None:
    """lb3's link goes down (the router's own link stays up): BFD takes lb3
    out of the router's route within a second; it comes back with the link."""
    lb3 = lab.state.node("lb3")
    subprocess.run(["ip", "-n", lb3.ns, "link", "set", lb3.ifname, "down"], check=True)
    try:
        took = poll(lambda: lab.next_hops() == without(lab, lb3), "lb3 gone from the router (BFD)", 10,
                    interval=0.02, explain=lambda: explain(lab))
    finally:
        subprocess.run(["ip", "-n", lb3.ns, "link", "set", lb3.ifname, "up"], check=True)
    assert took < 1.0, explain(lab)
    t0 = time.monotonic()
    back(lab, "lb3's link up again", 30)
    MEASURED.append(f"ECMP: lb3's link down; BFD took it out of the router's route in {took * 1000:.0f} ms "
                    f"(bfd_interval 100 ms x 3); back {time.monotonic() - t0:.1f} s after the link came up")


def test_sessions_and_bfd_stay_up_behind_default_drop_with_lvsdrs_rules(lab: Lab, tmp_path: Path) -> None:
    """lb2 behind a default-drop input chain: BFD from the router is dropped and the router takes lb2 out within a
    second; with `lvsdr render --firewall nftables` included in that chain, BFD and the BGP session come back and
    lb2 is a next hop again, the chain still dropping by default."""
    lb2 = lab.state.node("lb2")
    r = lvsdr_in(lb2.ns, "render", lab.cluster_path, "--node", "lb2", "--firewall", "nftables")
    assert r.returncode == 0, r.stderr
    rules = tmp_path / "firewall-lb2.nft"
    rules.write_text(r.stdout)

    def default_drop(include: str) -> None:
        subprocess.run(["ip", "netns", "exec", lb2.ns, "nft", "delete", "table", "inet", "lvsdrtest_dflt"],
                       capture_output=True, check=False)
        subprocess.run(["ip", "netns", "exec", lb2.ns, "nft", "-f", "-"], text=True, check=True,
                       input="table inet lvsdrtest_dflt {\n  chain input {\n    type filter hook input priority 0; "
                             f"policy drop;\n    iif lo accept\n{include}  }}\n}}\n")

    back(lab, "before the firewall")
    try:
        default_drop("")
        out = poll(lambda: lab.next_hops() == without(lab, lb2), "lb2 out behind default-drop (BFD)", 10,
                   interval=0.05, explain=lambda: explain(lab))
        default_drop(f'    include "{rules}"\n')
        t0 = time.monotonic()
        back(lab, "lb2 back behind default-drop with lvsdr's rules", 60)
        took = time.monotonic() - t0
        time.sleep(3)  # BFD's and BGP's keepalives pass the chain too: it stays
        assert lab.next_hops() == everyone(lab), explain(lab)
    finally:
        subprocess.run(["ip", "netns", "exec", lb2.ns, "nft", "delete", "table", "inet", "lvsdrtest_dflt"],
                       capture_output=True, check=False)
    back(lab, "the firewall removed")
    MEASURED.append(f"ECMP behind default-drop: lb2 out of the router's route {out:.2f} s after (BFD dropped); "
                    f"with lvsdr's rules included, a next hop again {took:.1f} s after (BFD, BGP re-established)")


def test_metrics_say_sessions_announcements_drain_and_quorum(lab: Lab) -> None:
    """`lvsdr metrics` on lb1: its BGP session to r1 up, the VIP announced, not drained, the virtual server with
    quorum; drained: the VIP not announced and drained 1; undone: as before."""
    lb1 = lab.state.node("lb1")

    def metrics() -> str:
        r = lvsdr_in(lb1.ns, "metrics", lab.cluster_path, "--node", "lb1", "--bird-socket", lab.bird_socket(lb1))
        assert r.returncode == 0, r.stderr
        return r.stdout

    healthy = ['lvsdr_bgp_session_up{address="192.0.2.1",peer="r1"} 1.0',
               'lvsdr_ecmp_vip_announced{vip="192.0.2.150"} 1.0', "lvsdr_ecmp_drained 0.0",
               'lvsdr_virtual_server_quorum{virtual_server="[192.0.2.150]:tcp:80"} 1.0']
    back(lab, "before the metrics")
    poll(lambda: all(line in metrics() for line in healthy), "the healthy figures", 20, explain=metrics)
    assert lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", "--timeout", "0").returncode == 0
    try:
        poll(lambda: 'lvsdr_ecmp_vip_announced{vip="192.0.2.150"} 0.0' in metrics()
             and "lvsdr_ecmp_drained 1.0" in metrics(), "drained in the metrics", 10, explain=metrics)
    finally:
        assert lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", "--undo").returncode == 0
    back(lab, "drain undone")
    poll(lambda: all(line in metrics() for line in healthy), "healthy again", 20, explain=metrics)


def test_drain_withdraws_until_undone(lab: Lab) -> None:
    """`lvsdr drain` on lb1 withdraws it at once and the agent keeps it out
    (past its interval, and across keepalived.service's stop and start);
    `lvsdr drain --undo` brings it back within seconds; a drain the unit's
    stop made, its start undoes."""
    lb1 = lab.state.node("lb1")
    p = lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", "--timeout", "0")
    assert p.returncode == 0, p.stderr
    assert "1 VIP withdrawn" in p.stdout, p.stdout
    assert lab.next_hops() == without(lab, lb1) or poll(lambda: lab.next_hops() == without(lab, lb1),
                                                        "lb1 drained", 2, explain=lambda: explain(lab)) < 2
    time.sleep(3)  # more than the lab agent's 2 s interval: it keeps the drained director out
    assert lab.next_hops() == without(lab, lb1), explain(lab)
    # keepalived.service's drop-in (--unit): a restart's stop and start leave an operator's drain in place
    for step in (("--unit", "--timeout", "0"), ("--undo", "--unit")):
        p = lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", *step)
        assert p.returncode == 0, p.stderr
    assert "drained by an operator" in p.stdout, p.stdout
    time.sleep(1.5)
    assert lab.next_hops() == without(lab, lb1), explain(lab)
    t0 = time.monotonic()
    p = lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", "--undo")
    assert p.returncode == 0, p.stderr
    back(lab, "drain undone")
    MEASURED.append(f"ECMP: `lvsdr drain` took lb1 out at once; `--undo` had it back in {time.monotonic() - t0:.1f} s")
    # the unit's own drain (a keepalived restart) is undone by the unit's start
    for step in (("--unit", "--timeout", "0"), ("--undo", "--unit")):
        assert lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", *step).returncode == 0
    back(lab, "the unit's drain undone by its start")


def test_drain_of_a_vrrp_director_that_cannot_hand_over_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`lvsdr drain` on a VRRP director whose peer would not take over (`nopreempt`) or without the quorum
    hand-over's priority drop (`quorum_handover = false`): one line saying why, exit 2, nothing changed (refused
    before anything is read of the node)."""
    from lvsdr.cli import main

    text = (EXAMPLES / "pair.toml").read_text()
    for extra, why in (("nopreempt = true\n", "nopreempt"), ("quorum_handover = false\n", "quorum_handover")):
        path = tmp_path / "pair.toml"
        path.write_text(text.replace("[cluster]\n", f"[cluster]\n{extra}", 1))
        assert main(["drain", str(path), "--node", "node1"]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err


def test_watch_reconfigures_bird_on_an_edit(lab: Lab) -> None:
    """An edit of the communities: `lvsdr watch --once` writes lb1's bird.conf
    (after `bird -p`) and runs `birdc configure`; the router then sees lb1's
    announcement with the new community, and the session stayed up."""
    lb1, router = lab.state.node("lb1"), lab.routers()[0]
    path = Path(lab.cluster_path)
    original = path.read_text()
    data = json.loads(original)
    data["bgp"]["communities"] = ["65001:100", "65001:200"]
    args = ["watch", lab.cluster_path, "--node", "lb1", "-o", str(lab.state_dir / "keepalived-lb1.conf"),
            "--pidfile", str(lab.pidfile(lb1)), "--bird-conf", str(lab.state_dir / "bird-lb1.conf"),
            "--bird-socket", lab.bird_socket(lb1), "--once"]

    def communities() -> str:
        return subprocess.run(["birdc", "-s", lab.bird_socket(router), "show", "route", f"{VIP}/32", "all"],
                              capture_output=True, text=True, check=False).stdout

    try:
        path.write_text(json.dumps(data))
        p = lvsdr_in(lb1.ns, *args, sandbox=lab.sandboxed("lvsdr-watch@.service"))
        assert p.returncode == 0, p.stderr
        assert "bird.conf: written; BIRD reconfigured" in p.stderr, p.stderr
        poll(lambda: "(65001,200)" in communities(), "the router sees the new community", 10,
             explain=lambda: communities())
        assert lab.next_hops() == everyone(lab)
    finally:
        path.write_text(original)
        lvsdr_in(lb1.ns, *args, sandbox=lab.sandboxed("lvsdr-watch@.service"))


def test_an_edit_that_breaks_the_bgp_session_is_rolled_back(lab: Lab) -> None:
    """Guarded apply in ECMP: the resident `lvsdr watch` on lb1 installs an edit that gives the router a wrong AS
    (bird.conf only; BIRD restarts the session, which the router now refuses). The session Established before is
    not Established again by the end of the window: the previous bird.conf is put back, BIRD reconfigured, one
    line says why, the rollback is counted; the session and lb1's next hop come back."""
    import os

    lb1, router = lab.state.node("lb1"), lab.routers()[0]
    path = Path(lab.cluster_path)
    original = path.read_text()
    data = json.loads(original)
    data["cluster"]["guard_window"] = 8
    log_path = lab.state_dir / "watch-guard-lb1.log"
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child
    w = subprocess.Popen(
        ["ip", "netns", "exec", lb1.ns, *lab.sandboxed("lvsdr-watch@.service"), lab._console(), "watch",
         lab.cluster_path, "--node", "lb1", "-o", str(lab.state_dir / "keepalived-lb1.conf"), "--pidfile",
         str(lab.pidfile(lb1)), "--bird-conf", str(lab.state_dir / "bird-lb1.conf"), "--bird-socket",
         lab.bird_socket(lb1)], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LVSDR_LOG="stderr"))
    log.close()

    def said(event: str) -> dict[str, object] | None:
        for line in log_path.read_text().splitlines():
            if line.startswith("{") and event in line:
                return dict(json.loads(line))
        return None

    def session() -> str:
        return subprocess.run(["birdc", "-s", lab.bird_socket(router), "show", "protocols"], capture_output=True,
                              text=True, check=False).stdout

    try:
        path.write_text(json.dumps(data))  # the window itself: the watch's first pass installs it
        poll(lambda: said('"watching"') is not None, "the watch started", 30, explain=lambda: log_path.read_text())
        time.sleep(2)  # its first pass (nothing of the guard's window reaches bird.conf or keepalived.conf)
        data["bgp"]["peers"][0]["asn"] = 65099
        t0 = time.monotonic()
        path.write_text(json.dumps(data))
        poll(lambda: said("rolled back to the last working config") is not None, "the edit rolled back",
             30, interval=0.2, explain=lambda: log_path.read_text()[-4000:])
        took = time.monotonic() - t0
        line = said("rolled back to the last working config")
        assert line is not None and "BGP session to 192.0.2.1 not Established again" in str(line["why"]), line
        assert "asn 65099" not in (lab.state_dir / "bird-lb1.conf").read_text()
        assert json.loads((lab.state_dir / "watch-anycast-lb1.json").read_text())["rollbacks"] == 1
        back(lab, "after the rollback", 30)
        MEASURED.append(f"guarded apply (ECMP): a wrong peer AS in bird.conf rolled back {took:.1f} s after the save "
                        "(window 8 s, BGP's start delay 5 s), lb1 a next hop again")
    finally:
        w.terminate()
        w.wait(timeout=10)
        path.write_text(original)
        back(lab, "after the test", 30)


@pytest.mark.parametrize("where", ["director", "vip"])
def test_a_prepend_moves_the_routers_best_path(lab: Lab, where: str) -> None:
    """lb1 given a prepend of 2, for all its VIPs (`bgp_prepend = 2`) or for the VIP alone (`bgp_vips`), `lvsdr
    watch --once` writing its bird.conf and reconfiguring BIRD: its path is longer, the router's multipath set
    leaves it out (the others carry the flows, lb1 kept for when they are gone); the prepend removed, lb1 a next
    hop again."""
    lb1 = lab.state.node("lb1")
    path = Path(lab.cluster_path)
    original = path.read_text()
    data = json.loads(original)
    if where == "director":
        data["directors"][0]["bgp_prepend"] = 2
    else:
        data["directors"][0]["bgp_vips"] = {VIP: {"prepend": 2, "large_communities": ["65001:150:2"]}}
    args = ["watch", lab.cluster_path, "--node", "lb1", "-o", str(lab.state_dir / "keepalived-lb1.conf"),
            "--pidfile", str(lab.pidfile(lb1)), "--bird-conf", str(lab.state_dir / "bird-lb1.conf"),
            "--bird-socket", lab.bird_socket(lb1), "--once"]
    back(lab, "before the prepend")
    try:
        path.write_text(json.dumps(data))
        p = lvsdr_in(lb1.ns, *args, sandbox=lab.sandboxed("lvsdr-watch@.service"))
        assert p.returncode == 0, p.stderr
        took = poll(lambda: lab.next_hops() == without(lab, lb1), "the router leaves lb1's longer path out", 20,
                    interval=0.1, explain=lambda: explain(lab))
    finally:
        path.write_text(original)
        lvsdr_in(lb1.ns, *args, sandbox=lab.sandboxed("lvsdr-watch@.service"))
    back(lab, "the prepend removed", 30)
    MEASURED.append(f"ECMP: a prepend of 2 on lb1 ({where}): out of the router's multipath set {took:.1f} s after "
                    "BIRD reconfigured, back once removed")


def test_doctor_checks_an_ecmp_director(lab: Lab) -> None:
    """`lvsdr doctor` on an ECMP director: BIRD runs, its session to the router
    is Established, it announces the VIP (every virtual server has quorum),
    nothing is pending."""
    lb3 = lab.state.node("lb3")
    p = lvsdr_in(lb3.ns, "doctor", lab.cluster_path, "--node", "lb3", "--keepalived-conf",
                 str(lab.state_dir / "keepalived-lb3.conf"), "--notify-fifo", lab.fifo(lb3),
                 "--bird-socket", lab.bird_socket(lb3), "--pidfile", str(lab.pidfile(lb3)))
    out = p.stdout
    assert "ok    BGP session to r1 (192.0.2.1): Established" in out, out
    assert f"ok    announced: {VIP} (every virtual server has quorum)" in out, out
    assert "ok    ECMP director (VIPs on lo, ARP suppression, IPVS sysctls, announcements): as the cluster file " \
        "says" in out, out
