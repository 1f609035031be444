"""VRRP that follows service health on a live lab (examples/web.toml, real
keepalived for VRRP, the agent on each director; this kernel has no IPVS, so
the quorum events come from keepalived's checker's stand-in, lab/checker.py,
which checks the backends by TCP from each director as keepalived's checker
does; the IPVS tier runs the real checker): the MASTER cut off from its real
servers hands the VIP over; both cut, nothing flaps; both restored, the
higher priority takes it back in one move."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE, Lab, Node

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]
VIP = "192.0.2.100"
CUT = "table inet lvsdrtest_cut"


def cut(node: Node) -> None:
    """The director loses its real servers (not the clients, not its peer): its packets to them dropped."""
    ns_run(node.ns, ["nft", "-f", "-"], input=f"add {CUT}\nadd chain inet lvsdrtest_cut out {{ type filter hook "
                                                   "output priority 0; }\nadd rule inet lvsdrtest_cut out ip daddr "
                                                   "{ 192.0.2.11, 192.0.2.12 } drop\n")


def mend(node: Node) -> None:
    ns_run(node.ns, ["nft", "delete", *CUT.split()], check=False)


def transitions(lab: Lab) -> int:
    return sum(p.read_text().count('"event": "vrrp transition"') for p in lab.state_dir.glob("agent-*.log"))


def logs(lab: Lab) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(lab.state_dir.glob("agent-*.log")))


def said(lab: Lab, node: Node, event: str) -> list[dict[str, object]]:
    out = []
    for line in (lab.state_dir / f"agent-{node.name}.log").read_text().splitlines():
        if line.startswith("{") and event in line:
            out.append(dict(json.loads(line)))
    return out


def last_state(lab: Lab, node: Node) -> str:
    """The state of the last VRRP transition ``node``'s agent logged ("" before any)."""
    lines = said(lab, node, '"vrrp transition"')
    events = lines[-1]["events"] if lines else []
    return str(events[0]["state"]) if isinstance(events, list) and events else ""


@pytest.mark.long
def test_the_master_cut_off_from_its_real_servers_hands_over_and_nothing_flaps(tmp_path: Path) -> None:
    """lb1 (MASTER, 150) cut off from web1 and web2: its virtual server loses quorum, its agent writes the
    hand-over file, keepalived drops it to 99 and lb2 (100) takes the VIP; one ARP owner, requests answered.
    lb2 cut too: lb1 (99) over lb2 (49) takes it back once, then nothing moves. Both mended: lb1's hold (5 s)
    ends first and it stays MASTER; lb2's (10 s) changes nothing."""
    with make_lab(EXAMPLES / "web.toml", tmp_path, quorum_checker=True) as lab:
        lb1, lb2 = lab.state.node("lb1"), lab.state.node("lb2")
        poll(lambda: getattr(lab.master(), "name", None) == "lb1", "lb1 the MASTER", 30 * TIME_SCALE)
        try:
            cut(lb1)
            took = poll(lambda: getattr(lab.master(), "name", None) == "lb2", "lb2 took the VIP", 20 * TIME_SCALE,
                        interval=0.05, explain=lambda: logs(lab))
            line = said(lab, lb1, "the VRRP instance hands over")[0]
            assert line["instance"] == "VI_web" and line["weight"] == -51, line
            assert (lab.state_dir / "handover-web-lb1-VI_web").read_text() == "1\n"
            poll(lambda: [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, VIP)] == ["lb2"],
                 "lb2 alone answers ARP for the VIP", 10 * TIME_SCALE)
            assert probes.http_get(lab, VIP, timeout=3) in ("web1", "web2")
            cut(lb2)
            poll(lambda: (lab.state_dir / "handover-web-lb2-VI_web").read_text() == "1\n"
                 if (lab.state_dir / "handover-web-lb2-VI_web").exists() else False, "lb2 without quorum too",
                 20 * TIME_SCALE, explain=lambda: logs(lab))
            poll(lambda: getattr(lab.master(), "name", None) == "lb1", "lb1 (99) over lb2 (49)", 20 * TIME_SCALE)
            # the move's own transitions logged by both agents (lb1's MASTER line comes after its VIP does)
            poll(lambda: last_state(lab, lb1) == "MASTER" and last_state(lab, lb2) == "BACKUP",
                 "both agents logged the move", 10 * TIME_SCALE, explain=lambda: logs(lab))
            settled, quiet = transitions(lab), 15.0
            time.sleep(quiet)
            flaps = transitions(lab) - settled
            assert flaps == 0 and getattr(lab.master(), "name", None) == "lb1", logs(lab)
            before = transitions(lab)
            mended = time.monotonic()
            mend(lb1)
            mend(lb2)
            poll(lambda: (lab.state_dir / "handover-web-lb2-VI_web").read_text() == "0\n", "lb2's hold ended",
                 30 * TIME_SCALE, interval=0.2, explain=lambda: logs(lab))
            back = time.monotonic() - mended
            assert (lab.state_dir / "handover-web-lb1-VI_web").read_text() == "0\n"
            time.sleep(3)
            assert transitions(lab) == before and getattr(lab.master(), "name", None) == "lb1", logs(lab)
        finally:
            mend(lb1)
            mend(lb2)
        MEASURED.append(f"VRRP following quorum (lab checker, delay_loop 1 s, advert_int 1): lb1 cut off from its "
                        f"real servers, lb2 the MASTER {took:.1f} s after the cut; both cut: {flaps} transitions "
                        f"in {quiet:.0f} s; both mended: quorum files 0 within {back:.1f} s, no transition")


def test_a_planned_switchover_moves_the_vips_and_undo_gives_them_back(tmp_path: Path) -> None:
    """`lvsdr drain web --node lb1` on the MASTER: its hand-over files say 1, lb2 takes the VIP, the command names
    lb2 as the holder on the wire (exit 0); keepalived restarted on lb1 meanwhile, lb1 stays BACKUP; `--undo`:
    after lb1's hold it takes the VIP back. A drain on the wrong node, or while no other director answers on the
    segment, changes nothing (one line, exit 1)."""
    import os
    import signal

    from helpers import lvsdr_in

    with make_lab(EXAMPLES / "web.toml", tmp_path) as lab:
        lb1, lb2 = lab.state.node("lb1"), lab.state.node("lb2")
        poll(lambda: getattr(lab.master(), "name", None) == "lb1", "lb1 the MASTER", 30 * TIME_SCALE)
        wrong = lvsdr_in(lb2.ns, "drain", lab.cluster_path, "--node", "lb1")
        assert wrong.returncode == 1 and "does not have lb1's address" in wrong.stderr, wrong
        assert not (lab.state_dir / "drain-web-lb1").exists()
        ns_run(lb2.ns, ["ip", "link", "set", lb2.ifname, "down"])  # no director to take the VIPs
        try:
            alone = lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1")
        finally:
            ns_run(lb2.ns, ["ip", "link", "set", lb2.ifname, "up"])
        assert alone.returncode == 1 and "no other director answers" in alone.stdout, alone
        assert not (lab.state_dir / "drain-web-lb1").exists()
        assert (lab.state_dir / "handover-web-lb1-VI_web").read_text() == "0\n"
        t0 = time.monotonic()
        r = lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1")
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        assert "the VIPs are held by lb2" in r.stdout, r.stdout
        assert getattr(lab.master(), "name", None) == "lb2"
        assert said(lab, lb1, "drained: the VRRP instance hands over") or \
            (lab.state_dir / "handover-web-lb1-VI_web").read_text() == "1\n"
        os.kill(int(lab.pidfile(lb1).read_text().split()[0]), signal.SIGTERM)  # keepalived restarted, drained
        poll(lambda: not lab.pidfile(lb1).exists() or not os.path.exists(
            f"/proc/{lab.pidfile(lb1).read_text().split()[0]}"), "lb1's keepalived stopped", 20 * TIME_SCALE)
        lab.start_keepalived(lb1)
        time.sleep(6)  # its start (BACKUP), and three adverts
        assert getattr(lab.master(), "name", None) == "lb2", logs(lab)
        u = lvsdr_in(lb1.ns, "drain", lab.cluster_path, "--node", "lb1", "--undo")
        assert u.returncode == 0 and "drain undone" in u.stdout, u.stdout + u.stderr
        back = poll(lambda: getattr(lab.master(), "name", None) == "lb1", "lb1 took the VIP back", 30 * TIME_SCALE,
                    interval=0.1, explain=lambda: logs(lab))
        MEASURED.append(f"VRRP planned switchover: `lvsdr drain --node lb1` returned with lb2 holding the VIP on the "
                        f"wire after {took:.1f} s (advert_int 1); held across a keepalived restart; `--undo`: lb1 "
                        f"the MASTER again {back:.1f} s after (its hold 5 s + pre-emption)")
