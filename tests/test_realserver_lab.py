"""Each ARP-suppression method, for real, in the lab: one ARP responder, DR
traffic served, idempotent, reconciled, and removed without a trace."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from lvsdr.lab import probes

from helpers import FirewalldInNetns, lvsdr_in, make_lab, needs_root, snapshot, write_cluster

pytestmark = [needs_root, pytest.mark.lab]

METHODS = ["sysctl", "arptables", "nftables", "iptables", "firewalld"]

EXTRA_SERVICE = '''
[[services]]
name = "alt"
vip = "192.0.2.101"
port = 80
backends = ["web1", "web2"]
'''


class Server:
    """A real server as the test drives it: lvsdr and snapshots run where the
    node's tools (and, for firewalld, its private D-Bus) are."""

    def __init__(self, ns: str, name: str, fw: FirewalldInNetns | None = None) -> None:
        self.ns, self.name, self.fw = ns, name, fw

    def lvsdr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.fw.lvsdr(*args) if self.fw else lvsdr_in(self.ns, *args)

    def snapshot(self) -> dict[str, str]:
        return snapshot(self.ns, self.fw.prefix if self.fw else None)

    def apply(self, path: Path, state: Path, *extra: str) -> str:
        r = self.lvsdr("realserver", "apply", str(path), "--node", self.name, "--state-dir", str(state), *extra)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout


@pytest.mark.long
@pytest.mark.parametrize("method", METHODS)
def test_method_on_the_wire(method: str, tmp_path: Path) -> None:
    """Each ARP method applied on real servers keeps them from answering ARP for the VIP while they serve DR
    traffic, and remove leaves the node as it was."""
    path = write_cluster(tmp_path, method=method)
    state = tmp_path / "records"
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(make_lab(path, tmp_path, suppression="skip"))
        servers: list[Server] = []
        for n in lab.state.real_servers:
            fw = None
            if method == "firewalld":
                fw = FirewalldInNetns(n.ns, tmp_path / n.name.replace("/", "_"))
                stack.callback(fw.stop)
            servers.append(Server(n.ns, n.name, fw))
        before = {srv.name: srv.snapshot() for srv in servers}
        # a dry run prints the plan and changes nothing, not even lvsdr's state directory
        dry = servers[0].lvsdr("realserver", "apply", str(path), "--node", "web1", "--state-dir", str(state),
                               "--dry-run")
        assert dry.returncode == 0 and dry.stdout.startswith(f"apply (dry run) on web1 (arp_method {method}")
        assert servers[0].snapshot() == before["web1"] and not state.exists()
        for srv in servers:
            assert f"arp_method {method}" in srv.apply(path, state)
        master = lab.wait_for_master(10)
        # exactly one MAC answers ARP for the VIP: the MASTER's
        seen = probes.arp_responders(lab, "192.0.2.100", count=4)
        assert [probes.mac_owner(lab, m) for m in seen] == [master.name], seen
        # DR traffic reaches both real servers and they answer the client directly
        # 24 requests: the stand-in hashes source ports, so one server 24 times has p < 1e-7
        answers = {probes.http_get(lab, "192.0.2.100") for _ in range(24)}
        assert answers == {"web1", "web2"}, answers
        # the director's health checks reach every real server at its own address (firewalld
        # rejected them until lvsdr opened the port: found on real IPVS, tests/ipvs)
        for srv in servers:
            rip = lab.state.node(srv.name).addresses[0].split("/")[0]
            p = subprocess.run(["ip", "netns", "exec", master.ns, "curl", "-s", "-m", "3", f"http://{rip}/"],
                               capture_output=True, text=True, check=False)
            assert p.stdout.strip() == srv.name, (srv.name, p.returncode)
        # a second apply plans nothing
        for srv in servers:
            r = srv.lvsdr("realserver", "plan", str(path), "--node", srv.name, "--state-dir", str(state))
            assert "nothing to do" in r.stdout, r.stdout + r.stderr
        applied = {srv.name: srv.snapshot() for srv in servers}
        # reconcile: a VIP added to the file appears, and goes when removed again
        bigger = tmp_path / "bigger.toml"
        bigger.write_text(path.read_text() + EXTRA_SERVICE)
        web1 = servers[0]
        web1.apply(bigger, state)
        # firewalld redirects by port: the same forward-port serves both VIPs, and no VIP is on the host
        by_port = method == "firewalld"
        assert ("192.0.2.101" in "".join(web1.snapshot().values())) is not by_port
        assert web1.snapshot() == applied["web1"] if by_port else web1.snapshot() != applied["web1"]
        out = web1.apply(path, state)
        assert ("192.0.2.101" in out) is not by_port
        assert web1.snapshot() == applied["web1"]
        # remove leaves the node exactly as it was
        for srv in servers:
            dry = srv.lvsdr("realserver", "remove", str(path), "--node", srv.name, "--state-dir", str(state),
                          "--dry-run")
            assert "remove (dry run)" in dry.stdout
            assert srv.snapshot() == applied[srv.name]  # dry run changed nothing
            r = srv.lvsdr("realserver", "remove", str(path), "--node", srv.name, "--state-dir", str(state))
            assert r.returncode == 0, r.stdout + r.stderr
            assert srv.snapshot() == before[srv.name]
        # only the nodes' locks stay (a lock file unlinked while another process waits on it locks nothing)
        assert all(p.name.endswith(".lock") for p in state.iterdir())


def test_firewalld_guide_form_with_toaddr_does_not_serve_dr(tmp_path: Path) -> None:
    """Why lvsdr drops the guide's toaddr=<VIP>: it DNATs to an address the real
    server does not have, and DR traffic gets no answer. The same forward-port
    without toaddr (a local redirect, what lvsdr applies) is served."""
    path = write_cluster(tmp_path, method="firewalld")
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(make_lab(path, tmp_path, suppression="skip"))
        fws = []
        for n in lab.state.real_servers:
            fw = FirewalldInNetns(n.ns, tmp_path / n.name)
            stack.callback(fw.stop)
            fws.append(fw)
        guide = "--add-forward-port=port=80:proto=tcp:toport=80:toaddr=192.0.2.100"
        for fw in fws:
            subprocess.run([*fw.prefix, "firewall-cmd", "--zone=public", guide], check=True, capture_output=True)
        assert probes.http_get(lab, "192.0.2.100", timeout=1.0) is None
        for fw, n in zip(fws, lab.state.real_servers, strict=True):
            subprocess.run([*fw.prefix, "firewall-cmd", "--zone=public", guide.replace("--add", "--remove")],
                           check=True, capture_output=True)
            r = fw.lvsdr("realserver", "apply", str(path), "--node", n.name, "--state-dir", str(tmp_path / "s"))
            assert r.returncode == 0, r.stderr
        assert probes.http_get(lab, "192.0.2.100") in ("web1", "web2")
