"""`lvsdr doctor` on live lab nodes: all ok, then each tampering named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lvsdr.lab.netns import kill_in_ns
from lvsdr.lab.topology import Lab

from helpers import EXAMPLES, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]


def doctor(lab: Lab, node: str, *extra: str) -> subprocess.CompletedProcess[str]:
    n = lab.state.node(node)
    pidfile = ["--pidfile", str(lab.pidfile(n))] if n in lab.state.directors else []
    return subprocess.run(["ip", "netns", "exec", n.ns, lab._console(), "doctor", lab.cluster_path, "--node", node,
                           *pidfile, *extra], capture_output=True, text=True, timeout=60)


def test_doctor_passes_then_names_what_drifted(tmp_path: Path) -> None:
    """doctor passes on live lab nodes, then names each piece of drift put in by hand."""
    path = tmp_path / "pair.toml"
    path.write_text((EXAMPLES / "pair.toml").read_text())
    with make_lab(path, tmp_path) as lab:
        assert lab.wait_for_master(10).name == "node1"
        sd = lab.state_dir
        director = ["--keepalived-conf", str(sd / "keepalived-node1.conf"), "--hook", "both",
                    "--lvsdr-path", lab._console(), "--config-path", lab.cluster_path,
                    "--notify-fifo", str(sd / "node1.fifo")]
        # the hook follows the election
        poll(lambda: doctor(lab, "node1", *director).returncode == 0, "doctor passes on node1", 10, interval=0.2,
             explain=lambda: doctor(lab, "node1", *director).stdout)
        r = doctor(lab, "node1", *director)
        assert "ok    VRRP role observed: MASTER" in r.stdout
        assert "ok    arp 192.0.2.120: one owner: node1" in r.stdout
        # keepalived started it as BACKUP, then it became MASTER: notify recorded both for its fast path
        assert "ok    notify's fast path: both roles' states recorded for this cluster file" in r.stdout
        assert doctor(lab, "web1").returncode == 0
        # drift: the MASTER lost its mark rules, web1 its VIP on lo, node1's config was edited by hand;
        # node1's agent is stopped first, or it heals the rules within its 2 s interval (a race under load)
        n1, w1 = lab.state.node("node1"), lab.state.node("web1")
        assert kill_in_ns(n1.ns, "lvsdr")
        subprocess.run(["ip", "netns", "exec", n1.ns, "nft", "delete", "table", "inet", "lvsdr_fwmark"], check=True)
        subprocess.run(["ip", "-n", w1.ns, "addr", "del", "192.0.2.120/32", "dev", "lo"], check=True)
        conf = sd / "keepalived-node1.conf"
        conf.write_text(conf.read_text() + "# hand edit\n")
        r = doctor(lab, "node1", *director)
        assert r.returncode == 1
        assert "differs from `lvsdr render` for node1" in r.stdout
        assert "nftables: mark VIP traffic for the fwmark services (1 rules)" in r.stdout
        # the audit's network checks, run by doctor on a director: web1 no longer accepts the VIP
        assert "FAIL  path http/web1: tcp 192.0.2.120:80 got no answer at web1" in r.stdout
        r = doctor(lab, "web1")
        assert r.returncode == 1 and "add VIP 192.0.2.120/32 on lo" in r.stdout
        # and the wrong node is named as such
        wrong = subprocess.run(["ip", "netns", "exec", w1.ns, lab._console(), "doctor", lab.cluster_path,
                                "--node", "node2"], capture_output=True, text=True)
        assert wrong.returncode == 1 and "does not have node2's address 192.0.2.22" in wrong.stdout
