"""The failover hooks, for real: keepalived runs `lvsdr notify` and feeds
`lvsdr agent` through its FIFO; each director's role follows VRRP."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.topology import AGENT_INTERVAL, Lab, Node

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, nft, poll

pytestmark = [needs_root, pytest.mark.lab, pytest.mark.xdist_group("hooks_lab")]  # one shared lab per module


def wait_for(cond: Callable[[], bool], lab: Lab, what: str, timeout: float = 10.0) -> float:
    """Poll; on failure show every director's rules and agent log."""
    def explain() -> str:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(lab.state_dir.glob("agent-*.log")))
        rules = "\n".join(f"--- {d.name}\n{nft(d)}" for d in lab.state.directors)
        return f"{rules}\n{logs}"

    return poll(cond, what, timeout, interval=0.02, explain=explain)


def notify_running(node: Node) -> bool:
    """Is a `lvsdr notify` (keepalived's callback) still running on the node?"""
    for pid in subprocess.run(["ip", "netns", "pids", node.ns], capture_output=True, text=True).stdout.split():
        try:
            if b"\0notify\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def arp_rules(node: Node, method: str = "nftables") -> bool:
    """Is the director's ARP suppression by rules in force?"""
    rules = nft(node)
    if method == "arptables":
        return "chain LVSDR_IN" in rules
    if method == "nftables":
        return "table arp lvsdr" in rules
    return False  # sysctl: no rules; arp_ignore=1 serves both roles


def is_master_role(node: Node, method: str = "nftables") -> bool:
    return "table inet lvsdr_fwmark" in nft(node) and not arp_rules(node, method)


def is_backup_role(node: Node, method: str = "nftables") -> bool:
    ignore = subprocess.run(["ip", "netns", "exec", node.ns, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"],
                            capture_output=True, text=True).stdout.strip()
    suppressed = ignore == "1" if method == "sysctl" else arp_rules(node, method)
    return "table inet lvsdr_fwmark" not in nft(node) and suppressed


def pair_lab(tmp_path: Path, method: str = "nftables", extra: str = "") -> Lab:
    path = tmp_path / "pair.toml"
    path.write_text((EXAMPLES / "pair.toml").read_text().replace('arp_method = "nftables"', f'arp_method = "{method}"')
                    .replace("unicast = true", "unicast = true" + extra))
    return make_lab(path, tmp_path)


@pytest.mark.parametrize("method", ["nftables", "arptables", "sysctl"])
def test_director_roles_follow_vrrp(tmp_path: Path, method: str) -> None:
    """Each director's role (marks, ARP suppression, VIP on lo) follows VRRP, before and after failover, with
    every director-backend method."""
    with pair_lab(tmp_path, method) as lab:
        node1, node2 = lab.state.node("node1"), lab.state.node("node2")
        assert lab.wait_for_master(10).name == "node1"
        wait_for(lambda: is_master_role(node1, method) and is_backup_role(node2, method), lab, "roles after election")
        # the BACKUP keeps the VIP on lo, to serve what the MASTER forwards to it
        assert "192.0.2.120" in subprocess.run(["ip", "-n", node2.ns, "addr", "show", "dev", "lo"],
                                               capture_output=True, text=True).stdout
        assert [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, "192.0.2.120")] == ["node1"]
        assert probes.http_get(lab, "192.0.2.120") == "web1"
        # DR traffic sent to the BACKUP's MAC is served there, locally (no mark: no loop)
        client = lab.state.client
        subprocess.run(["ip", "-n", client.ns, "neigh", "replace", "192.0.2.120", "lladdr", node2.mac, "dev",
                        client.ifname, "nud", "permanent"], check=True)
        assert probes.http_get(lab, "192.0.2.120") == "node2"
        subprocess.run(["ip", "-n", client.ns, "neigh", "del", "192.0.2.120", "dev", client.ifname], check=True)
        # failover: node2 takes the MASTER role, marks and all
        probes.kill_director(lab, node1)
        t = wait_for(lambda: getattr(lab.master(), "name", None) == "node2", lab, "node2 holds the VIP")
        hook = wait_for(lambda: is_master_role(node2, method), lab, "node2 in the MASTER role")
        MEASURED.append(f"hooks ({method}): node2 took the MASTER role {t:.2f} s after node1 died; its fwmark rules "
                        f"and lifted ARP suppression followed {hook * 1000:.0f} ms after its VIP appeared")
        assert [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, "192.0.2.120")] == ["node2"]
        assert probes.http_get(lab, "192.0.2.120") == "web1"


# root-owned: keepalived runs only scripts no one else can change; one per test process
NOTIFY_DIR = Path(f"/run/lvsdr-lab-notify-{os.getpid()}")
OPERATOR_NOTIFY = f'''
notify_master = ["{NOTIFY_DIR}/record", "MASTER"]
notify_backup = ["{NOTIFY_DIR}/record", "BACKUP"]
'''


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One nftables pair lab, with the operator's own notify scripts, for the
    tests that leave it as they found it (the last one kills node1)."""
    NOTIFY_DIR.mkdir(mode=0o755)
    try:
        record = NOTIFY_DIR / "record"
        record.write_text(f'#!/bin/sh\necho "$1" >> "{NOTIFY_DIR}/events-$(ip netns identify)"\n')
        record.chmod(0o755)
        with pair_lab(tmp_path_factory.mktemp("pair"), extra=OPERATOR_NOTIFY) as lab:
            yield lab
    finally:
        shutil.rmtree(NOTIFY_DIR)


def test_notify_reconciles_to_what_it_sees_not_to_what_it_is_told(shared_pair: Lab) -> None:
    """keepalived runs notify scripts out of order: a late MASTER event on the
    BACKUP must not make it mark traffic or answer ARP."""
    lab = shared_pair
    node2 = lab.state.node("node2")
    lab.wait_for_master(10)
    wait_for(lambda: is_backup_role(node2), lab, "node2 in the BACKUP role")
    before = nft(node2)
    p = subprocess.run(["ip", "netns", "exec", node2.ns, lab._console(), "notify", lab.cluster_path, "--node",
                        "node2", "INSTANCE", "VI_pair", "MASTER", "100"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert nft(node2) == before
    assert is_backup_role(node2)


def test_agent_heals_drift_without_an_event(shared_pair: Lab) -> None:
    """A change by hand (or a half-applied reconcile) is put right by the
    agent's periodic reconcile, with no VRRP event."""
    lab = shared_pair
    node1 = lab.state.node("node1")
    lab.wait_for_master(10)
    wait_for(lambda: is_master_role(node1), lab, "node1 in the MASTER role")
    # late notify processes of the election must be done: the heal must be the agent's
    wait_for(lambda: not notify_running(node1), lab, "notify hooks of the election finished")
    subprocess.run(["ip", "netns", "exec", node1.ns, "nft", "delete", "table", "inet", "lvsdr_fwmark"], check=True)
    wait_for(lambda: is_master_role(node1), lab, "marks restored by the agent", timeout=3 * AGENT_INTERVAL)


def test_operators_notify_scripts_run_alongside_lvsdrs_hook(shared_pair: Lab) -> None:
    """The operator's notify_master/notify_backup run on each transition, and
    lvsdr's own hook still switches the director's role (the marks). Last: it
    kills node1."""
    lab = shared_pair
    node1, node2 = lab.state.node("node1"), lab.state.node("node2")

    def events(node: Node) -> list[str]:
        f = NOTIFY_DIR / f"events-{node.ns}"
        return f.read_text().split() if f.exists() else []

    wait_for(lambda: events(node1)[-1:] == ["MASTER"] and is_master_role(node1), lab, "node1: its script, lvsdr's role")
    wait_for(lambda: events(node2)[-1:] == ["BACKUP"] and is_backup_role(node2), lab, "node2: its script, lvsdr's role")
    probes.kill_director(lab, node1)
    wait_for(lambda: events(node2)[-1:] == ["MASTER"] and is_master_role(node2), lab, "node2: its script, lvsdr's role",
             timeout=15)
