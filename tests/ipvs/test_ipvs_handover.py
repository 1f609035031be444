"""VRRP that follows service health on real IPVS (keepalived's own checker
and quorum events): the MASTER cut off from its real servers only hands the
VIP over within the checks' bound plus three adverts and requests resume;
both cut, nothing flaps for 60 s; each mended, the VIP goes where quorum is
and fails back to the higher priority."""

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

from helpers import MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
HERE = Path(__file__).parent
VIP = "192.0.2.130"
QUIET = 60.0  # s both directors without quorum: no transition allowed


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("handover")
    data = (HERE / "sync.toml").read_text().replace("sync_daemon = true\n", "").replace('name = "ipvss"',
                                                                                        'name = "ipvsh"')
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
