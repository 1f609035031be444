"""IPv6 DR through real IPVS (examples/ipv6.toml): VRRPv3 directors, an
IPv6 VIP whose real servers suppress NDP by two methods, an IPv4 VIP riding
along. rr shares the requests, the HTTP check takes a dead backend out and
puts it back within its bound, and the BACKUP serves after a failover."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE, Lab

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
VIP, SERVICE = "2001:db8::100", "TCP [2001:db8::100]:80"
WEB1, WEB2 = "2001:db8::11", "2001:db8::12"
# delay_loop 2, connect_timeout 1, retry 1, delay_before_retry 1 (examples/ipv6.toml)
OUT_BOUND, IN_BOUND, SLACK = 2 + (1 + 1) * 1 + 1, 2 + 1, 2.0


def reals(lab: Lab) -> set[str]:
    master = lab.master()
    return set(probes.ipvs_table(lab, master).get(SERVICE, {})) if master else set()


def test_ipv6_dr_shares_checks_and_fails_over(tmp_path: Path) -> None:
    """Through IPVS over IPv6: one NDP responder, rr gives each real server half of the requests, a dead backend
    goes out and comes back within the check's bound, and after the MASTER dies the BACKUP answers NDP and serves."""
    with make_lab(EXAMPLES / "ipv6.toml", tmp_path, hook="fifo") as lab:
        poll(lambda: reals(lab) == {WEB1, WEB2}, "both IPv6 real servers in IPVS", 30 * TIME_SCALE, interval=0.5,
             explain=lambda: str(reals(lab)))
        master = lab.master()
        assert master is not None
        assert [probes.mac_owner(lab, m) for m in probes.ndp_responders(lab, VIP, count=4)] == [master.name]
        shares = collections.Counter(probes.http_get(lab, VIP, timeout=5) for _ in range(20))
        # IPVS reaches an IPv4 real server by DR, and keepalived's check connects to it, only from an IPv4 address
        # of the director's own on the segment: without one both come from the VIP, which the real server holds
        # itself and ignores (seen here: web4 checked out, and the VIP not served in 120 s). The file's directors
        # are IPv6; a real host has its IPv4 address too (and its connected route names it as the source, where
        # the lab's own on-link route names none).
        for n, d in enumerate(lab.state.directors, 2):
            ns_run(d.ns, ["ip", "addr", "add", f"192.0.2.{n}/24", "dev", d.ifname])
            ns_run(d.ns, ["ip", "route", "replace", "192.0.2.0/24", "dev", d.ifname, "src", f"192.0.2.{n}"])
        poll(lambda: set(probes.ipvs_table(lab, master).get("TCP 192.0.2.100:80", {})) == {"192.0.2.14"},
             "the IPv4 VIP's real server in IPVS", 30 * TIME_SCALE, interval=0.5)
        v4 = poll(lambda: probes.http_get(lab, "192.0.2.100", timeout=5) == "web4", "the IPv4 VIP served",
                  20 * TIME_SCALE, interval=0.5)
        lab.app_down("web1")
        out = poll(lambda: reals(lab) == {WEB2}, "web1 out", (OUT_BOUND + SLACK) * TIME_SCALE + 5, interval=0.2,
                   explain=lambda: str(reals(lab)))
        during = [probes.http_get(lab, VIP, timeout=5) for _ in range(4)]
        lab.app_up("web1")
        back = poll(lambda: reals(lab) == {WEB1, WEB2}, "web1 back", (IN_BOUND + SLACK) * TIME_SCALE + 10,
                    interval=0.2, explain=lambda: str(reals(lab)))
        fo = probes.failover(lab, timeout=20 * TIME_SCALE)
        after = [probes.mac_owner(lab, m) for m in probes.ndp_responders(lab, VIP)]
        served = {probes.http_get(lab, VIP, timeout=5) for _ in range(6)}
        MEASURED.append(f"IPVS over IPv6: rr, 20 requests {dict(sorted(shares.items()))}; web1 out {out:.1f} s after "
                        f"its server died (bound {OUT_BOUND} s), back {back:.1f} s after it started (bound {IN_BOUND} "
                        f"s, plus its start); failover: served after {fo.seconds:.1f} s, NDP owner {after}; the "
                        f"IPv4 VIP riding along served after {v4:.1f} s")
        assert shares == {"web1": 10, "web2": 10}
        assert during == ["web2"] * 4
        assert out <= OUT_BOUND + SLACK
        assert after == [fo.new_master] and served == {"web1", "web2"}
