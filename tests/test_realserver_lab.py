"""Each ARP-suppression method, for real, in the lab: one ARP responder, DR
traffic served, idempotent, reconciled, and removed without a trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsdr.lab import probes

from conftest import needs_root
from labtools import lvsdr_in, make_lab, snapshot, write_cluster

pytestmark = [needs_root, pytest.mark.lab]

METHODS = ["sysctl", "arptables", "nftables", "iptables"]

EXTRA_SERVICE = '''
[[services]]
name = "alt"
vip = "192.0.2.101"
port = 80
backends = ["web1", "web2"]
'''


def apply(ns: str, path: Path, node: str, state: Path, *extra: str) -> str:
    r = lvsdr_in(ns, "realserver", "apply", str(path), "--node", node, "--state-dir", str(state), *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.parametrize("method", METHODS)
def test_method_on_the_wire(method: str, tmp_path: Path) -> None:
    path = write_cluster(tmp_path, method=method)
    state = tmp_path / "records"
    with make_lab(path, tmp_path, suppression="skip") as lab:
        servers = lab.state.real_servers
        before = {n.name: snapshot(n.ns) for n in servers}
        for n in servers:
            out = apply(n.ns, path, n.name, state)
            assert f"arp_method {method}" in out
        master = lab.wait_for_master(10)
        # exactly one MAC answers ARP for the VIP: the MASTER's
        seen = probes.arp_responders(lab, "192.0.2.100", count=4)
        assert [probes.mac_owner(lab, m) for m in seen] == [master.name], seen
        # DR traffic reaches both real servers and they answer the client directly
        answers = {probes.http_get(lab, "192.0.2.100") for _ in range(12)}
        assert answers == {"web1", "web2"}, answers
        # a second apply plans nothing
        for n in servers:
            r = lvsdr_in(n.ns, "realserver", "plan", str(path), "--node", n.name, "--state-dir", str(state))
            assert "nothing to do" in r.stdout, r.stdout + r.stderr
        applied = {n.name: snapshot(n.ns) for n in servers}
        # reconcile: a VIP added to the file appears, and goes when removed again
        bigger = tmp_path / "bigger.toml"
        bigger.write_text(path.read_text() + EXTRA_SERVICE)
        web1 = servers[0]
        apply(web1.ns, bigger, "web1", state)
        if method in ("iptables",):
            assert "192.0.2.101" in snapshot(web1.ns)["iptables"]
        else:
            assert "192.0.2.101" in snapshot(web1.ns)["addresses"]
        out = apply(web1.ns, path, "web1", state)
        assert "192.0.2.101" in out
        assert snapshot(web1.ns) == applied["web1"]
        # remove leaves the node exactly as it was
        for n in servers:
            dry = lvsdr_in(n.ns, "realserver", "remove", str(path), "--node", n.name, "--state-dir", str(state),
                           "--dry-run")
            assert "remove (dry run)" in dry.stdout
            assert snapshot(n.ns) == applied[n.name]  # dry run changed nothing
            r = lvsdr_in(n.ns, "realserver", "remove", str(path), "--node", n.name, "--state-dir", str(state))
            assert r.returncode == 0, r.stdout + r.stderr
            assert snapshot(n.ns) == before[n.name]
        assert list(state.iterdir()) == []


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    path = write_cluster(tmp_path)
    with make_lab(path, tmp_path, suppression="skip") as lab:
        n = lab.state.real_servers[0]
        before = snapshot(n.ns)
        r = lvsdr_in(n.ns, "realserver", "apply", str(path), "--node", n.name, "--state-dir", str(tmp_path / "s"),
                     "--dry-run")
        assert r.returncode == 0
        assert "sysctl net.ipv4.conf.all.arp_ignore = 1 (was 0)" in r.stdout
        assert "add VIP 192.0.2.100/32 on lo" in r.stdout
        assert snapshot(n.ns) == before
        assert not (tmp_path / "s").exists()
