"""Many VIPs, live: 700 VIPs (as many as the lab's three /24 networks hold
beside its nodes) in one instance, 255 advertised and the rest in
virtual_ipaddress_excluded, all on the MASTER, all on the BACKUP after the
MASTER dies, one ARP owner each before and after."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.topology import Lab, addresses_of, link_up

from helpers import MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]
RANGES = ["198.51.100.1-249", "203.0.113.1-249", "192.0.2.20-221"]


def all_vips() -> list[str]:
    out = []
    for r in RANGES:
        first, last = r.split("-")
        base = ipaddress.ip_address(first)
        out += [str(base + i) for i in range(int(last) - int(first.rsplit(".", 1)[1]) + 1)]
    return out


def held(lab: Lab, name: str) -> int:
    node = lab.state.node(name)
    return len(set(all_vips()) & addresses_of(node, node.ifname)) if link_up(node) else 0


@pytest.mark.long
def test_700_vips_move_on_failover(tmp_path: Path) -> None:
    """700 VIPs (255 advertised) come up on the MASTER and all move on failover."""
    vips = all_vips()
    assert len(vips) == 700
    cluster = {
        "cluster": {"name": "many", "interface": "eth0", "virtual_router_id": 70, "advert_int": 1},
        "directors": [{"name": "lb1", "address": "192.0.2.2", "priority": 150},
                      {"name": "lb2", "address": "192.0.2.3", "priority": 100}],
        "real_servers": [{"name": "web1", "address": "192.0.2.11"}],
        "services": [{"name": "many", "vip": RANGES, "port": 80, "backends": ["web1"], "check": {"type": "none"}}],
    }
    path = tmp_path / "many.json"
    path.write_text(json.dumps(cluster))
    sample = [vips[0], vips[254], vips[255], vips[-1]]  # advertised, last advertised, first excluded, last
    with make_lab(path, tmp_path) as lab:
        up = poll(lambda: held(lab, "lb1") == 700, "lb1 holds every VIP", 60, interval=0.5,
                  explain=lambda: f"lb1 holds {held(lab, 'lb1')}")
        # past the BACKUP's first advert timeout: a MASTER too busy to advertise
        # (keepalived -D logging every gratuitous ARP did that) makes a split brain
        end = time.monotonic() + 6 * lab.cluster.advert_int
        while time.monotonic() < end:
            assert held(lab, "lb2") == 0, "split brain: the BACKUP took the VIPs too"
            time.sleep(0.2)
        before = {v: [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, v)] for v in sample}
        assert all(owners == ["lb1"] for owners in before.values()), before
        assert probes.http_get(lab, vips[-1]) == "web1"
        probes.kill_director(lab, lab.state.node("lb1"))
        moved = poll(lambda: held(lab, "lb2") == 700, "lb2 holds every VIP", 30, interval=0.2,
                     explain=lambda: f"lb2 holds {held(lab, 'lb2')}")
        after = {v: [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, v)] for v in sample}
        MEASURED.append(f"700 VIPs (255 advertised): on lb1 {up:.1f} s after the lab was up, none on lb2 6 s later; "
                        f"lb1 killed, all on lb2 after "
                        f"{moved:.1f} s; ARP owners of {len(sample)} sampled VIPs after: {sorted(after.values())}")
        assert all(owners == ["lb2"] for owners in after.values()), after
        assert probes.http_get(lab, vips[0]) == "web1"
