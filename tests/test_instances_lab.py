"""Several VRRP instances, live (examples/active-active.toml): each director is
MASTER of its own VIPs and the only ARP owner for them, both serve, and the
survivor takes every VIP when its peer dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.topology import Lab, addresses_of, link_up

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]
WWW, SHOP = "192.0.2.100", "192.0.2.101"  # instance VI_aa (lb1 first), VI_aa_shop (lb2 first)


def holders(lab: Lab, vip: str) -> list[str]:
    return sorted(d.name for d in lab.state.directors if link_up(d) and vip in addresses_of(d, d.ifname))


def test_active_active_splits_the_vips_and_one_director_takes_all(tmp_path: Path) -> None:
    """Two instances split the VIPs between the directors, and one director takes them all when the other dies."""
    with make_lab(EXAMPLES / "active-active.toml", tmp_path) as lab:
        poll(lambda: holders(lab, WWW) == ["lb1"] and holders(lab, SHOP) == ["lb2"], "each instance's MASTER",
             15, interval=0.2, explain=lambda: f"www {holders(lab, WWW)}, shop {holders(lab, SHOP)}")
        owners = {vip: [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, vip)] for vip in (WWW, SHOP)}
        served = {vip: probes.http_get(lab, vip) for vip in (WWW, SHOP)}
        assert owners == {WWW: ["lb1"], SHOP: ["lb2"]}
        assert all(answer in ("web1", "web2") for answer in served.values()), served
        lb2 = lab.state.node("lb2")
        probes.kill_director(lab, lb2)
        took = poll(lambda: holders(lab, SHOP) == ["lb1"], "lb1 takes the shop VIP", 10, interval=0.1)
        after = [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, SHOP)]
        MEASURED.append(f"active/active: ARP owners {owners}; lb2 killed, lb1 held the shop VIP after {took:.1f} s "
                        f"and answers ARP for it: {after}")
        assert holders(lab, WWW) == ["lb1"] and after == ["lb1"]
        assert probes.http_get(lab, SHOP) in ("web1", "web2")
