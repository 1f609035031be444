"""`lvsdr audit`, live: a healthy cluster passes from the client and from a
director in under 5 s and changes nothing; each fault put in on purpose is
found and the faulty node named: an extra ARP responder, a backend without
the VIP, a backend whose service is down, two MASTERs, a director whose
hooks did not run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lvsdr.lab.netns import kill_in_ns
from lvsdr.lab.topology import Lab

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll, snapshot, write_cluster

pytestmark = [needs_root, pytest.mark.lab]


def audit(lab: Lab, node: str, *extra: str) -> tuple[int, dict[str, Any], float]:
    ns = lab.state.node(node).ns
    t0 = time.monotonic()
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "lvsdr.cli", "audit", lab.cluster_path,
                        "--json", *extra], capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - t0
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout), took


def faults(report: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [(c["check"], c["target"], c["nodes"]) for c in report["checks"] if not c["ok"]]


def sh(lab: Lab, node: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", lab.state.node(node).ns, *cmd], check=True, capture_output=True)


def test_healthy_cluster_passes_and_every_fault_is_named(tmp_path: Path) -> None:
    """On the wire, a healthy lab cluster passes the audit and each fault put in on purpose is named."""
    with make_lab(write_cluster(tmp_path), tmp_path) as lab:
        lab.wait_for_master(10)
        nodes = [n.name for n in (*lab.state.directors, *lab.state.real_servers)]
        before = {n: snapshot(lab.state.node(n).ns) for n in nodes}
        rc_client, report, took_client = audit(lab, "client")
        rc_director, from_lb1, took_director = audit(lab, "lb1", "--textfile", str(tmp_path / "audit.prom"))
        assert {n: snapshot(lab.state.node(n).ns) for n in nodes} == before  # read-only
        assert (rc_client, faults(report)) == (0, [])
        assert (rc_director, faults(from_lb1)) == (0, [])
        assert {c["check"] for c in report["checks"]} == {"director", "vrrp", "arp", "path"}
        assert any(c["target"] == "lb1 hooks" and c["ok"] for c in from_lb1["checks"])
        prom = (tmp_path / "audit.prom").read_text()
        assert 'lvsdr_audit_ok{check="arp",target="192.0.2.100"} 1' in prom and "lvsdr_audit_faults 0" in prom
        MEASURED.append(f"audit of a live pair: {took_client:.1f} s from the client, {took_director:.1f} s from lb1")

        # 1. web1 answers ARP for the VIP (its suppression reset by hand)
        for key in ("all", "lo", "eth0"):
            sh(lab, "web1", "sysctl", "-qw", f"net.ipv4.conf.{key}.arp_ignore=0", f"net.ipv4.conf.{key}.arp_announce=0")
        rc, report, _ = audit(lab, "client")
        _rc, seen_from_lb1, _ = audit(lab, "lb1")
        assert rc == 1 and ("arp", "192.0.2.100", ["web1"]) in faults(report)
        assert ("arp", "192.0.2.100", ["web1"]) in faults(seen_from_lb1)
        sh(lab, "web1", sys.executable, "-m", "lvsdr.cli", "realserver", "apply", lab.cluster_path, "--node", "web1")

        # 2. web2 lost the VIP from lo; 3. web1's service is down
        sh(lab, "web2", "ip", "addr", "del", "192.0.2.100/32", "dev", "lo")
        lab.app_down("web1")
        rc, report, _ = audit(lab, "client")
        assert rc == 1 and faults(report) == [("path", "http/web1", ["web1"]), ("path", "http/web2", ["web2"])]
        details = {c["target"]: c["detail"] for c in report["checks"]}
        assert "refused at web1" in details["http/web1"] and "no answer at web2" in details["http/web2"]
        lab.app_up("web1")
        sh(lab, "web2", sys.executable, "-m", "lvsdr.cli", "realserver", "apply", lab.cluster_path, "--node", "web2")

        # 4. lb2 no longer hears lb1: two MASTERs
        sh(lab, "lb2", "nft", "add table inet audit_test")
        sh(lab, "lb2", "nft", "add chain inet audit_test in { type filter hook input priority 0; }")
        sh(lab, "lb2", "nft", "add rule inet audit_test in ip protocol 112 drop")
        poll(lambda: "192.0.2.100" in subprocess.run(
            ["ip", "-n", lab.state.node("lb2").ns, "-o", "addr", "show", "dev", "eth0"], capture_output=True,
            text=True, check=False).stdout, "lb2 takes the VIP too", 10)
        rc, report, _ = audit(lab, "client")
        sh(lab, "lb2", "nft", "delete", "table", "inet", "audit_test")
        assert rc == 1 and ("vrrp", "vrid 51", ["lb1", "lb2"]) in faults(report)
        assert any(check == "arp" and set(named) >= {"lb2"} | {"lb1"} - {"lb1"} for check, _t, named
                   in faults(report))
        MEASURED.append(f"audit: healthy from the client {took_client:.1f} s, from lb1 {took_director:.1f} s; "
                        f"split brain found: {[f for f in faults(report) if f[0] == 'vrrp']}")


def test_a_director_whose_hooks_did_not_run_is_named(tmp_path: Path) -> None:
    """examples/pair.toml (directors that are also backends): with its agent
    dead, the MASTER's mark table removed by hand is found by the audit run on it."""
    with make_lab(EXAMPLES / "pair.toml", tmp_path, hook="notify") as lab:
        master = lab.wait_for_master(10)
        poll(lambda: audit(lab, master.name)[0] == 0, "the hook has run on the MASTER", 15, interval=0.5)
        assert kill_in_ns(master.ns, "lvsdr")  # the agent: nothing heals the node now
        sh(lab, master.name, "nft", "delete", "table", "inet", "lvsdr_fwmark")
        rc, report, _ = audit(lab, master.name)
        assert rc == 1
        assert [(c, t, n) for c, t, n in faults(report) if c == "director"] == [
            ("director", f"{master.name} hooks", [master.name])]
        _rc, from_client, _ = audit(lab, "client")
        vrrp = next(c for c in from_client["checks"] if c["check"] == "vrrp")
        assert vrrp["ok"] and "not observed: unicast" in vrrp["detail"]


def test_ipv6_ndp_owners_and_paths(tmp_path: Path) -> None:
    """examples/ipv6.toml (IPv6 directors, VRRPv3, an IPv4 VIP riding along):
    NDP owners and SYNs over IPv6 pass; web2 with the VIP moved from lo to its
    interface by hand (Linux answers NDP for the receiving interface's
    addresses only) is named as a second owner."""
    with make_lab(EXAMPLES / "ipv6.toml", tmp_path) as lab:
        lab.wait_for_master(10)
        rc, report, took = audit(lab, "client")
        assert (rc, faults(report)) == (0, []), faults(report)
        checks = {(c["check"], c["target"]): c for c in report["checks"]}
        assert checks[("arp", "2001:db8::100")]["detail"].startswith("one owner: lb1")
        assert checks[("path", "http6/web1")]["detail"] == "tcp [2001:db8::100]:80 answered at web1"
        assert checks[("vrrp", "vrid 70")]["ok"] and "MASTER lb1" in checks[("vrrp", "vrid 70")]["detail"]
        sh(lab, "web2", "ip", "-6", "addr", "del", "2001:db8::100/128", "dev", "lo")
        sh(lab, "web2", "ip", "-6", "addr", "add", "2001:db8::100/128", "dev", "eth0", "nodad")
        rc, report, _ = audit(lab, "client")
        assert rc == 1 and ("arp", "2001:db8::100", ["web2"]) in faults(report)
        MEASURED.append(f"audit of the IPv6 cluster from the client: {took:.1f} s; web2 with the VIP on eth0: "
                        f"{[f for f in faults(report) if f[0] == 'arp']}")
