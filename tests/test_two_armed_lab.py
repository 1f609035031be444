"""A two-armed director pair, live (examples/two-armed.toml): an outside
segment (eth0) and an inside one (eth1), two VRRP instances in a sync group.
The MASTER holds both VIPs, each on its own interface, and is the one ARP
owner of each on its own segment; when it dies both move together."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.topology import Lab, addresses_of, link_up

from helpers import EXAMPLES, MEASURED, lvsdr_in, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]
OUTSIDE, INSIDE = "192.0.2.100", "198.51.100.254"  # eth0 (br0), eth1 (br1)


def held(lab: Lab, name: str) -> tuple[bool, bool]:
    """(the outside VIP on eth0, the inside VIP on eth1) on director ``name``."""
    d = lab.state.node(name)
    if not link_up(d):
        return False, False
    return OUTSIDE in addresses_of(d, "eth0"), INSIDE in addresses_of(d, "eth1")


def owners(lab: Lab) -> dict[str, list[str]]:
    """Who answers ARP for each VIP, asked from its own segment."""
    return {vip: sorted(probes.mac_owner(lab, m) for m in probes.arp_responders(lab, vip, bridge=bridge))
            for vip, bridge in ((OUTSIDE, "br0"), (INSIDE, "br1"))}


def test_both_arms_move_together_each_on_its_own_segment(tmp_path: Path) -> None:
    """The MASTER holds the outside VIP on eth0 and the inside VIP on eth1 and is the one ARP owner of each on its
    segment; killed, its peer takes both together, each on its own interface."""
    with make_lab(EXAMPLES / "two-armed.toml", tmp_path) as lab:
        poll(lambda: held(lab, "lb1") == (True, True) and held(lab, "lb2") == (False, False), "lb1 holds both arms",
             15, interval=0.2, explain=lambda: f"lb1 {held(lab, 'lb1')}, lb2 {held(lab, 'lb2')}")
        before = owners(lab)
        assert before == {OUTSIDE: ["lb1"], INSIDE: ["lb1"]}, before
        assert INSIDE not in addresses_of(lab.state.node("lb1"), "eth0")
        # lvsdr audit judges each arm from its own segment, and says the other was not checked from there
        for node, extra, checked, skipped in ((lab.state.client, (), "vrid 51: MASTER lb1", "vrid 51 on eth1"),
                                              (lab.state.probe("br1"), ("--interface", lab.state.probe("br1").ifname),
                                               "vrid 51 on eth1: MASTER lb1", "vrid 51: not checked")):
            r = lvsdr_in(node.ns, "audit", lab.cluster_path, *extra)
            assert r.returncode == 0, r.stdout + r.stderr
            assert checked in r.stdout and f"{skipped}" in r.stdout and "not checked from here" in r.stdout, r.stdout
        assert probes.http_get(lab, OUTSIDE) in ("web1", "web2")
        killed = time.monotonic()
        probes.kill_director(lab, lab.state.node("lb1"))
        seen: dict[str, float] = {}

        def both() -> bool:
            now = time.monotonic() - killed
            out, inn = held(lab, "lb2")
            if out:
                seen.setdefault("outside", now)
            if inn:
                seen.setdefault("inside", now)
            return out and inn

        poll(both, "lb2 holds both arms", 15, interval=0.05, explain=lambda: f"lb2 {held(lab, 'lb2')}")
        after = owners(lab)
        apart = abs(seen["outside"] - seen["inside"])
        MEASURED.append(f"two-armed: lb1 killed; lb2 held the outside VIP (eth0) after {seen['outside']:.2f} s and the "
                        f"inside VIP (eth1) after {seen['inside']:.2f} s ({apart * 1000:.0f} ms apart); ARP owners "
                        f"before {before}, after {after}")
        assert after == {OUTSIDE: ["lb2"], INSIDE: ["lb2"]}, after
        assert apart < 1.0  # the sync group moves them in one transition (advert_int 1)
        assert probes.http_get(lab, OUTSIDE) in ("web1", "web2")
