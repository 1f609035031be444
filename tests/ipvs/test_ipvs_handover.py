"""VRRP that follows service health on real IPVS (keepalived's own checker
and quorum events): the MASTER cut off from its real servers only hands the
VIP over within the checks' bound plus three adverts and requests resume;
both cut, nothing flaps for 60 s; each mended, the VIP goes where quorum is
and fails back to the higher priority. And a persistent service's drain: a
client pinned to a real server at weight 0 moves at its next connection
(expire_quiescent_template on) or stays (off)."""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE, Lab, Node

from helpers import MEASURED, make_lab, needs_root, poll, switchover_under_load

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
HERE = Path(__file__).parent
VIP = "192.0.2.130"
ADDRESS = {"web1": "192.0.2.11", "web2": "192.0.2.12"}
QUIET = 60.0  # s both directors without quorum: no transition allowed
PINNED = """
[[services]]
name = "pinned"
vip = "192.0.2.130"
port = 8080
scheduler = "rr"
delay_loop = 2
persistence_timeout = 300
backends = ["web1", "web2"]
[services.check]
type = "tcp"
connect_timeout = 1
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("handover")
    data = (HERE / "sync.toml").read_text().replace("sync_daemon = true\n", "").replace('name = "ipvss"',
                                                                                        'name = "ipvsh"')
    data += PINNED
    assert "ipvsh" in data and tomllib.loads(data)["cluster"].get("quorum_handover", True)
    path = tmp / "handover.toml"
    path.write_text(data)
    with make_lab(path, tmp, hook="fifo") as lab:
        yield lab


def cut(node: Node) -> None:
    """The director's packets to the real servers dropped (IPVS's forwarding too: it leaves by the output hook)."""
    ns_run(node.ns, ["nft", "-f", "-"], input="add table inet lvsdrtest_cut\nadd chain inet lvsdrtest_cut out { type "
                                              "filter hook output priority 0; }\nadd rule inet lvsdrtest_cut out ip "
                                              "daddr { 192.0.2.11, 192.0.2.12 } drop\n")


def mend(node: Node) -> None:
    ns_run(node.ns, ["nft", "delete", "table", "inet", "lvsdrtest_cut"], check=False)


def transitions(lab: Lab) -> int:
    return sum(p.read_text().count('"event": "vrrp transition"') for p in lab.state_dir.glob("agent-*.log"))


def last_state(lab: Lab, node: Node) -> str:
    """The state of the last VRRP transition ``node``'s agent logged ("" before any)."""
    import json

    state = ""
    for line in (lab.state_dir / f"agent-{node.name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and '"vrrp transition"' in line:
            events = json.loads(line).get("events") or [{}]
            state = str(events[0].get("state", ""))
    return state


def holder(lab: Lab) -> str | None:
    return getattr(lab.master(), "name", None)


class Load:
    """Requests through the VIP from the client, one after another: (start, answered)."""

    def __init__(self, lab: Lab) -> None:
        self.results: list[tuple[float, bool]] = []
        self.stop = threading.Event()

        def loop() -> None:
            while not self.stop.is_set():
                t = time.monotonic()
                self.results.append((t, probes.http_get(lab, VIP, timeout=2) is not None))
                self.stop.wait(0.3)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join()

    def failed(self, start: float, end: float = float("inf")) -> tuple[int, int]:
        inside = [ok for t, ok in self.results if start <= t < end]
        return inside.count(False), len(inside)


def test_the_master_cut_off_from_its_real_servers_hands_the_vip_over(lab: Lab) -> None:
    """lb1 (MASTER) cut off from web1 and web2 by nft: keepalived's checker there loses quorum, the agent writes
    the hand-over file, lb2 takes the VIP within the checks' bound (delay_loop 2 + connect_timeout 1) plus three
    adverts and a margin for the guest; requests resume, one ARP owner. lb2 cut too: the VIP goes to lb1 (the
    higher priority, 99 over 49) at most once, then no transition for 60 s. lb2 mended: it has quorum, lb1 not: it
    takes the VIP after its hold; lb1 mended: it fails back (no preempt_delay)."""
    lb1, lb2 = lab.state.node("lb1"), lab.state.node("lb2")
    poll(lambda: holder(lab) == "lb1", "lb1 the MASTER", 60 * TIME_SCALE, interval=0.5)
    load = Load(lab)
    try:
        time.sleep(3)
        t0 = time.monotonic()
        cut(lb1)
        moved = poll(lambda: holder(lab) == "lb2", "lb2 took the VIP", 60 * TIME_SCALE, interval=0.2)
        poll(lambda: [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, VIP)] == ["lb2"],
             "lb2 alone answers ARP", 20 * TIME_SCALE, interval=0.5)
        time.sleep(5)
        resumed = time.monotonic()
        time.sleep(5)
        failed_after, after = load.failed(resumed, time.monotonic())
        failed_during, during = load.failed(t0, resumed)
        cut(lb2)
        poll(lambda: holder(lab) == "lb1", "lb1 (99) over lb2 (49)", 60 * TIME_SCALE, interval=0.5)
        # the move's own transitions logged by both agents (a MASTER's line comes after its VIP does)
        poll(lambda: last_state(lab, lb1) == "MASTER" and last_state(lab, lb2) == "BACKUP",
             "both agents logged the move", 30 * TIME_SCALE, interval=0.5)
        settled = transitions(lab)
        time.sleep(QUIET)
        flaps = transitions(lab) - settled
        still = holder(lab)
        mend(lb2)
        to_lb2 = poll(lambda: holder(lab) == "lb2", "lb2 (quorum back) took the VIP", 60 * TIME_SCALE, interval=0.2)
        mend(lb1)
        back = poll(lambda: holder(lab) == "lb1", "lb1 failed back", 60 * TIME_SCALE, interval=0.2)
        time.sleep(5)
        end = time.monotonic()
    finally:
        load.end()
        mend(lb1)
        mend(lb2)
    failed_end, n_end = load.failed(end - 5, end)
    MEASURED.append(
        f"IPVS VRRP following quorum (delay_loop 2, connect_timeout 1, advert_int 1): lb1 cut off from its real "
        f"servers, lb2 the MASTER {moved:.1f} s after the cut ({failed_during} of {during} requests failed "
        f"meanwhile, {failed_after} of {after} in the 5 s after); both cut: {flaps} transitions in {QUIET:.0f} s; "
        f"lb2 mended: the VIP on lb2 {to_lb2:.1f} s after (its hold 10 s); lb1 mended: back on lb1 {back:.1f} s "
        f"after (hold 5 s); {failed_end} of {n_end} failed in the last 5 s")
    # the checks' bound (delay_loop 2, a failed connect of 1 s and its retry) + three adverts + a hold-free margin
    assert moved < 15, moved
    assert failed_after == 0 and after > 0, load.results[-20:]
    assert flaps == 0 and still == "lb1", (flaps, still)
    assert failed_end == 0


def test_a_pinned_client_leaves_a_drained_backend_only_with_expire_quiescent_template(lab: Lab,
                                                                                      tmp_path: Path) -> None:
    """A persistent service (300 s): the client is pinned to one backend (every request answered by it), which
    `lvsdr metrics` counts; that backend drained (weight 0 by `watch --once`) while a stream to it is open: with
    expire_quiescent_template on (the default, set by the agent) the client's next requests go to the other and the
    stream completes; `plan` names the pinned client. Off: the client pinned to the other stays with it after its
    drain (the kernel's default behaviour, stated)."""
    import json

    from helpers import lvsdr_in

    master = lab.wait_for_master(60 * TIME_SCALE)
    conf = lab.state_dir / f"keepalived-{master.name}.conf"
    plan_wiring = ["--node", master.name, "-o", str(conf), "--hook", "fifo", "--lvsdr-path", lab._console(),
                   "--config-path", lab.cluster_path, "--notify-fifo", lab.fifo(master)]
    wiring = [*plan_wiring, "--pidfile", str(lab.pidfile(master))]
    original = Path(lab.cluster_path).read_text()
    data = json.loads(original)  # the lab's copy (JSON, its state_dir set)

    def install(weights: dict[str, int], expire: bool) -> None:
        svc = next(x for x in data["services"] if x["name"] == "pinned")
        svc["backends"] = [{"server": b, "weight": weights.get(b, 1)} for b in ("web1", "web2")]
        data["cluster"]["expire_quiescent_template"] = expire
        nxt = tmp_path / "next.json"
        nxt.write_text(json.dumps(data))
        import os

        os.replace(nxt, lab.cluster_path)
        r = lvsdr_in(master.ns, "watch", lab.cluster_path, "--once", *wiring)
        assert r.returncode == 0, r.stdout + r.stderr
        want = "1" if expire else "0"
        poll(lambda: ns_run(master.ns, ["sysctl", "-n", "net.ipv4.vs.expire_quiescent_template"]).stdout.strip()
             == want, f"the agent set expire_quiescent_template {want}", 30 * TIME_SCALE, interval=0.5)

    def who(n: int) -> list[str | None]:
        return [probes.http_get(lab, VIP, port=8080, timeout=3) for _ in range(n)]

    try:
        poll(lambda: len(probes.ipvs_table(lab, master).get("TCP 192.0.2.130:8080", {})) == 2,
             "both backends of the pinned service in IPVS", 60 * TIME_SCALE, interval=0.5)
        first = who(4)
        assert len(set(first)) == 1 and first[0] in ("web1", "web2"), first
        pinned = first[0]
        other = "web2" if pinned == "web1" else "web1"
        m = lvsdr_in(master.ns, "metrics", lab.cluster_path, "--node", master.name)
        line = next((ln for ln in m.stdout.splitlines() if ln.startswith("lvsdr_backend_persistence_templates")
                     and f'remote_address="{ADDRESS[pinned]}"' in ln and 'local_port="8080"' in ln), "")
        assert line.endswith(" 1.0"), m.stdout[-3000:]
        body = tmp_path / "stream"
        run = probes.Stream(lab.state.client.ns, VIP, 8080, "/stream?seconds=12", 43100, body, 120 * TIME_SCALE)
        poll(lambda: body.exists() and body.stat().st_size > 0, "the stream started", 20 * TIME_SCALE)
        install({pinned: 0}, expire=True)
        p = lvsdr_in(master.ns, "plan", lab.cluster_path, *plan_wiring)
        assert f"pinned to real server {ADDRESS[pinned]}:8080 at weight 0" in p.stdout, p.stdout
        after = who(4)
        code = run.wait(120 * TIME_SCALE)
        lines = body.read_text().split()
        assert after == [other] * 4, after
        assert code == 0 and set(lines) == {pinned} and len(lines) == 48, (code, len(lines))
        # off: the client is now pinned to the other; drained, it stays with it
        install({}, expire=False)
        install({other: 0}, expire=False)
        stays = who(4)
        assert stays == [other] * 4, stays
    finally:
        Path(lab.cluster_path).write_text(original)
        lvsdr_in(master.ns, "watch", lab.cluster_path, "--once", *wiring)
    MEASURED.append(f"IPVS persistence (300 s): the client pinned to {pinned}; {pinned} drained with "
                    f"expire_quiescent_template on: its next 4 requests to {after}, its open stream completed "
                    f"({len(lines)} lines); off: pinned to {other} and drained, the next 4 to {stays}")


def test_a_switchover_without_sync_says_what_it_breaks(lab: Lab, tmp_path: Path) -> None:
    """Without sync_daemon, `lvsdr drain` on the MASTER and `--undo` move the VIPs to the other director and back
    while 30 downloads run and a request loop asks: what broke is counted and printed (the other director has no
    entry for a connection it did not see: its stack resets it), not asserted away; the drain says nothing of a
    sync daemon."""
    got = switchover_under_load(lab, tmp_path, VIP, 30, 60, 47000)
    MEASURED.append(f"IPVS switchover and back WITHOUT lvs_sync_daemon: {got.summary()}")
    assert "sync daemon" not in got.drained, got.drained
