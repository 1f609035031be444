"""IPv6 on the wire: NDP is not ARP. VRRPv3 directors, an IPv6 VIP served by
real servers in each method that supports IPv6, and an IPv4 VIP riding along."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lvsdr.lab import probes

from helpers import EXAMPLES, MEASURED, make_lab, needs_root

pytestmark = [needs_root, pytest.mark.lab]


@pytest.mark.parametrize("method", ["sysctl", "nftables", "iptables"])
def test_ipv6_vip_one_ndp_responder_and_served(tmp_path: Path, method: str) -> None:
    """An IPv6 VIP has one NDP responder and is served through the lab, with each IPv6 method."""
    path = tmp_path / "ipv6.toml"
    path.write_text((EXAMPLES / "ipv6.toml").read_text()
                    .replace('arp_method = "nftables"', f'arp_method = "{method}"')
                    .replace('address = "2001:db8::11"\narp_method = "sysctl"',
                             f'address = "2001:db8::11"\narp_method = "{method}"'))
    with make_lab(path, tmp_path) as lab:
        master = lab.wait_for_master(10)
        seen = probes.ndp_responders(lab, "2001:db8::100", count=4)
        assert [probes.mac_owner(lab, m) for m in seen] == [master.name], seen
        # 24 requests: the stand-in hashes source ports, so one server 24 times has p < 1e-7
        answers = {probes.http_get(lab, "2001:db8::100") for _ in range(24)}
        assert answers == {"web1", "web2"}, answers
        assert [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, "192.0.2.100")] == [master.name]
        assert probes.http_get(lab, "192.0.2.100") == "web4"
        if method == "sysctl":
            # the IPv4 service on these IPv6 directors: the lab's stand-in forwards it, IPVS would not
            n = lab.state.node(master.name)
            r = subprocess.run(["ip", "netns", "exec", n.ns, lab._console(), "doctor", lab.cluster_path, "--node",
                                n.name], capture_output=True, text=True, timeout=60)
            assert "no IPv4 address of this director's own (not a VIP) for http4" in r.stdout, r.stdout
            assert r.returncode != 0
            fo = probes.failover(lab)
            MEASURED.append(f"failover, VRRPv3 over IPv6 (advert_int {lab.cluster.advert_int}): "
                            f"HTTP answered after {fo.seconds:.2f} s")
            after = probes.ndp_responders(lab, "2001:db8::100")
            assert [probes.mac_owner(lab, m) for m in after] == [fo.new_master]
