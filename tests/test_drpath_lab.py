"""DR-path checks and the ARP ownership watch on a live lab (examples/web.toml,
real keepalived, the agent on each director): a backend that loses the VIP
on lo, or starts answering ARP for it, is out within the defaults' bound
and back once whole; the offender is named. (The native kernel has no IPVS:
what keepalived does with the verdict is proven in tests/ipvs.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE, Lab

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]
VIP = "192.0.2.100"


def verdict(lab: Lab, backend: str, director: str) -> str:
    """Director ``director``'s verdict of ``backend`` of service http ("absent" before its agent wrote one)."""
    path = lab.state_dir / f"dr-web-{director}-http-{backend}"
    return path.read_text().strip() if path.exists() else "absent"


def agent_lines(lab: Lab, node: str, event: str) -> list[dict[str, object]]:
    path = lab.state_dir / f"agent-{node}.log"
    out = []
    for line in path.read_text().splitlines():
        if event in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def metrics(lab: Lab, node: str) -> str:
    """What `lvsdr metrics` prints on director ``node``."""
    r = ns_run(lab.state.node(node).ns, [lab._console(), "metrics", lab.cluster_path, "--node", node], check=False)
    return r.stdout + r.stderr


def logs(lab: Lab) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(lab.state_dir.glob("agent-*.log")))


def test_a_backend_without_the_vip_leaves_and_returns(tmp_path: Path) -> None:
    """web1's VIP deleted from lo (its own checks still pass): both directors' agents fail its DR path and write
    its verdict 1 (out of IPVS) with the reason; the VIP back, 0 again."""
    with make_lab(EXAMPLES / "web.toml", tmp_path) as lab:
        poll(lambda: verdict(lab, "web1", "lb1") == verdict(lab, "web1", "lb2") == "0", "web1's verdicts written",
             10 * TIME_SCALE, explain=lambda: logs(lab))
        web1 = lab.state.node("web1")
        t0 = time.monotonic()
        ns_run(web1.ns, ["ip", "addr", "del", f"{VIP}/32", "dev", "lo"])
        out = poll(lambda: verdict(lab, "web1", "lb1") == verdict(lab, "web1", "lb2") == "1", "web1 out",
                   10 * TIME_SCALE, interval=0.02, explain=lambda: logs(lab))
        for d in ("lb1", "lb2"):
            poll(lambda d=d: bool(agent_lines(lab, d, "DR path failed")), f"{d} says web1's path failed",  # type: ignore[misc]
                 5 * TIME_SCALE, explain=lambda: logs(lab))
            line = agent_lines(lab, d, "DR path failed")[0]
            assert line["backend"] == "web1" and "no answer from 192.0.2.100:80" in str(line["why"]), line
        assert verdict(lab, "web2", "lb1") == verdict(lab, "web2", "lb2") == "0"
        poll(lambda: 'lvsdr_dr_path_up{backend="web1",service="http"} 0.0' in metrics(lab, "lb1"),
             "lvsdr metrics says web1's path is down", 10 * TIME_SCALE, explain=lambda: metrics(lab, "lb1"))
        assert 'lvsdr_dr_path_up{backend="web2",service="http"} 1.0' in metrics(lab, "lb1")
        lb1 = lab.state.node("lb1")
        doc = ns_run(lb1.ns, [lab._console(), "doctor", lab.cluster_path, "--node", "lb1", "--pidfile",
                              str(lab.pidfile(lb1))], check=False).stdout
        assert "FAIL  DR-path checks: web1 of http fail (out of IPVS; the agent's log says why)" in doc, doc
        ns_run(web1.ns, ["ip", "addr", "add", f"{VIP}/32", "dev", "lo", "label", "lo:lvsdr"])
        t1 = time.monotonic()
        back = poll(lambda: verdict(lab, "web1", "lb1") == verdict(lab, "web1", "lb2") == "0", "web1 back",
                    10 * TIME_SCALE, interval=0.02, explain=lambda: logs(lab))
        MEASURED.append(f"DR-path check (interval 0.5 s, fall 2, rise 3): web1 without the VIP out {out:.2f} s after "
                        f"the delete (bound 1.5 s + a round), back {back:.2f} s after the VIP returned "
                        f"({t1 - t0:.1f} s out)")


def test_a_backend_answering_arp_for_the_vip_is_named_and_taken_out(tmp_path: Path) -> None:
    """web2's ARP suppression lost (arp_ignore 0): the MASTER's agent names web2 as answering ARP for the VIP
    (one line), takes it out of IPVS, and wins the client back with a gratuitous ARP; suppression restored, web2
    comes back."""
    with make_lab(EXAMPLES / "web.toml", tmp_path) as lab:
        master = lab.wait_for_master(30 * TIME_SCALE)
        poll(lambda: verdict(lab, "web2", master.name) == "0", "web2's verdict written", 10 * TIME_SCALE,
             explain=lambda: logs(lab))
        web2 = lab.state.node("web2")
        keys = ["net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.arp_ignore"]
        ns_run(web2.ns, ["sysctl", "-qw", *(f"{k}=0" for k in keys)])
        named = poll(lambda: bool(agent_lines(lab, master.name, "answers ARP for it")), "web2 named",
                     10 * TIME_SCALE, interval=0.02, explain=lambda: logs(lab))
        line = agent_lines(lab, master.name, "answers ARP for it")[0]
        assert line["node"] == "web2" and line["vip"] == VIP and line["holder"] == master.name, line
        out = poll(lambda: verdict(lab, "web2", master.name) == "1", "web2 out", 10 * TIME_SCALE, interval=0.02,
                   explain=lambda: logs(lab))
        poll(lambda: 'lvsdr_arp_offender{mac="02:1d:00:00:01:01",node="web2",vip="192.0.2.100"} 1.0'
             in metrics(lab, master.name), "lvsdr metrics names the offender", 10 * TIME_SCALE,
             explain=lambda: metrics(lab, master.name))
        poll(lambda: bool(agent_lines(lab, master.name, "DR path failed")), "the agent's DR path failed line",
             5 * TIME_SCALE, explain=lambda: logs(lab))  # logged just after the verdict file is written
        failed = agent_lines(lab, master.name, "DR path failed")
        assert failed and failed[0]["backend"] == "web2" and failed[0]["why"] == f"answers ARP for {VIP}", failed
        ns_run(web2.ns, ["sysctl", "-qw", *(f"{k}=1" for k in keys)])
        poll(lambda: verdict(lab, "web2", master.name) == "0", "web2 back", 15 * TIME_SCALE, interval=0.1,
             explain=lambda: logs(lab))
        poll(lambda: bool(agent_lines(lab, master.name, "answered by its holder alone again")), "the end said",
             10 * TIME_SCALE, interval=0.1, explain=lambda: logs(lab))
        # the client's entry for the VIP is the MASTER's (its gratuitous ARP came after web2's answers)
        probes.http_get(lab, VIP, timeout=2)
        mac, _ = probes.neighbour(lab, VIP)
        assert probes.mac_owner(lab, mac) == master.name, mac
        MEASURED.append(f"ARP ownership: web2 answering ARP for the VIP named {named:.2f} s after its suppression "
                        f"went (bound 2 s), out of IPVS {out:.2f} s after")


def test_ipv6_paths_and_ndp_ownership(tmp_path: Path) -> None:
    """IPv6 (examples/ipv6.toml): web1 without its VIP on lo fails its DR path over IPv6 (NDP for its MAC) and
    comes back; web2 with the VIP put on its eth0 answers NDP for it, and the MASTER's agent names it."""
    vip6 = "2001:db8::100"
    with make_lab(EXAMPLES / "ipv6.toml", tmp_path) as lab:
        master = lab.wait_for_master(30 * TIME_SCALE)

        def v6(backend: str) -> str:
            path = lab.state_dir / f"dr-v6-{master.name}-http6-{backend}"
            return path.read_text().strip() if path.exists() else "absent"

        poll(lambda: v6("web1") == "0", "web1's verdict written", 10 * TIME_SCALE, explain=lambda: logs(lab))
        web1, web2 = lab.state.node("web1"), lab.state.node("web2")
        ns_run(web1.ns, ["ip", "addr", "del", f"{vip6}/128", "dev", "lo"])
        out = poll(lambda: v6("web1") == "1", "web1 out over IPv6", 10 * TIME_SCALE, interval=0.02,
                   explain=lambda: logs(lab))
        ns_run(web1.ns, ["ip", "addr", "add", f"{vip6}/128", "dev", "lo"])
        poll(lambda: v6("web1") == "0", "web1 back", 10 * TIME_SCALE, interval=0.05, explain=lambda: logs(lab))
        ns_run(web2.ns, ["ip", "addr", "add", f"{vip6}/128", "dev", "eth0", "nodad"])
        named = poll(lambda: any(line.get("node") == "web2" and line.get("vip") == vip6
                                 for line in agent_lines(lab, master.name, "answers ARP for it")),
                     "web2 named for answering NDP", 10 * TIME_SCALE, interval=0.02, explain=lambda: logs(lab))
        ns_run(web2.ns, ["ip", "addr", "del", f"{vip6}/128", "dev", "eth0"])
        poll(lambda: bool(agent_lines(lab, master.name, "answered by its holder alone again")), "the end said",
             10 * TIME_SCALE, interval=0.1, explain=lambda: logs(lab))
        MEASURED.append(f"DR-path check over IPv6: web1 without the VIP out {out:.2f} s after the delete; web2 "
                        f"answering NDP for {vip6} named {named:.2f} s after")


DNS_SERVICE = """
[[services]]
name = "dns"
vip = "192.0.2.101"
port = 53
protocol = "udp"
backends = ["web1", "web2"]

[services.check]
type = "dns"
query = "www.example.org"
query_type = "A"
"""


def test_the_services_own_check_goes_through_the_vip(tmp_path: Path) -> None:
    """HTTP: web1 answering 503 on the VIP alone (200 on its own address, where keepalived's HTTP_GET asks): the
    MASTER's agent, which holds the VIP and so completes a handshake its kernel never sees, sends the check's GET
    through the VIP and takes web1 out naming the status; the BACKUP, whose kernel would reset that connection,
    keeps the bare handshake and web1 in. DNS: a UDP service's backend without its VIP fails its DNS question
    through the VIP on both directors and returns with the VIP."""
    path = tmp_path / "web-dns.toml"
    path.write_text((EXAMPLES / "web.toml").read_text() + DNS_SERVICE)
    with make_lab(path, tmp_path) as lab:
        master = lab.wait_for_master(30 * TIME_SCALE)
        backup = next(d for d in lab.state.directors if d.name != master.name)

        def dns(backend: str, director: str) -> str:
            p = lab.state_dir / f"dr-web-{director}-dns-{backend}"
            return p.read_text().strip() if p.exists() else "absent"

        poll(lambda: {verdict(lab, b, d.name) for b in ("web1", "web2") for d in lab.state.directors}
             | {dns(b, d.name) for b in ("web1", "web2") for d in lab.state.directors} == {"0"},
             "every verdict written", 15 * TIME_SCALE, explain=lambda: logs(lab))
        (lab.state_dir / "health-down-web1").write_text(f"{VIP}\n")
        try:
            took = poll(lambda: verdict(lab, "web1", master.name) == "1", "web1 out on the MASTER",
                        10 * TIME_SCALE, interval=0.02, explain=lambda: logs(lab))
            # the agent writes the verdict file, then logs it: the line may follow the file by a moment
            poll(lambda: bool(agent_lines(lab, master.name, "DR path failed")), "the agent's DR path failed line",
                 5 * TIME_SCALE, explain=lambda: logs(lab))
            line = agent_lines(lab, master.name, "DR path failed")[0]
            assert line["backend"] == "web1" and line["why"] == ("GET / through the VIP answered 503 (the check "
                                                                 "wants 200)"), line
            time.sleep(2)  # four rounds: the BACKUP's handshake keeps passing
            assert verdict(lab, "web1", backup.name) == "0" and verdict(lab, "web2", master.name) == "0"
            served = (lab.state_dir / "httpd-web1.log").read_text()
            mine = master.addresses[0].split("/")[0]
            assert f'{mine} "GET / HTTP/1.0" 503' in served, served[-2000:]  # the MASTER's, to the VIP
        finally:
            (lab.state_dir / "health-down-web1").unlink()
        poll(lambda: verdict(lab, "web1", master.name) == "0", "web1 back", 10 * TIME_SCALE, interval=0.05,
             explain=lambda: logs(lab))
        web2 = lab.state.node("web2")
        ns_run(web2.ns, ["ip", "addr", "del", "192.0.2.101/32", "dev", "lo"])
        dns_out = poll(lambda: dns("web2", master.name) == dns("web2", backup.name) == "1", "web2 out of dns",
                       10 * TIME_SCALE, interval=0.02, explain=lambda: logs(lab))
        assert dns("web1", master.name) == "0" and verdict(lab, "web2", master.name) == "0"
        ns_run(web2.ns, ["ip", "addr", "add", "192.0.2.101/32", "dev", "lo", "label", "lo:lvsdr"])
        poll(lambda: dns("web2", master.name) == dns("web2", backup.name) == "0", "web2 back in dns",
             10 * TIME_SCALE, interval=0.05, explain=lambda: logs(lab))
        MEASURED.append(f"DR-path check, the service's own: web1's GET / through the VIP answering 503 out on the "
                        f"MASTER {took:.2f} s after; a DNS backend without its VIP out {dns_out:.2f} s after")
