"""`lvsdr realserver render`: golden files per method, and each file loads in its tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lvsdr.cli import main

from helpers import EXAMPLES, GOLDEN, REPO, needs_root

NODES = ["app1", "app2", "app3", "app4", "app5"]  # sysctl arptables nftables iptables firewalld


def render(node: str, out: Path) -> dict[str, str]:
    assert main(["realserver", "render", str((EXAMPLES / "full.toml").relative_to(REPO)), "--node", node,
                 "--output-dir", str(out)]) == 0
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("node", NODES)
def test_golden(node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """realserver render gives each method's golden files byte for byte."""
    monkeypatch.chdir(REPO)
    got = render(node, tmp_path)
    golden = GOLDEN / "realserver" / node
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in got.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
    want = {str(p.relative_to(golden)): p.read_text() for p in sorted(golden.rglob("*")) if p.is_file()}
    assert got == want


def test_files_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Two processes with different hash seeds (set order) write the same bytes."""
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-m", "lvsdr.cli", "realserver", "render", "examples/full.toml", "--node",
                        "app5", "--output-dir", str(tmp_path / seed)], cwd=REPO, check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    files = [{str(p.relative_to(tmp_path / s)): p.read_bytes() for p in (tmp_path / s).rglob("*") if p.is_file()}
             for s in ("1", "2")]
    assert files[0] == files[1] and len(files[0]) == 4


def test_one_nodes_render_is_render_alls(tmp_path: Path) -> None:
    """`realserver render` for one node writes, wherever the cluster file is given from, the bytes `render --all`
    writes for that node (the README names the cluster's config_path, not the path it was read from)."""
    outs = []
    for i, given in enumerate((str(EXAMPLES / "full.toml"), "examples/full.toml")):
        out = tmp_path / f"one{i}"
        subprocess.run([sys.executable, "-m", "lvsdr.cli", "realserver", "render", given, "--node", "app2",
                        "--output-dir", str(out)], cwd=REPO, check=True, capture_output=True)
        outs.append({str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert main(["render", str(EXAMPLES / "full.toml"), "--all", "--output-dir", str(tmp_path / "all")]) == 0
    every = {str(p.relative_to(tmp_path / "all" / "app2")): p.read_bytes()
             for p in (tmp_path / "all" / "app2").rglob("*") if p.is_file()}
    readme = "usr/share/doc/lvsdr-app2/README.txt"  # render --all's place for the top-level README.txt
    assert outs[0] == outs[1] and all(every[readme if rel == "README.txt" else rel] == data
                                      for rel, data in outs[0].items())
    assert b"from /etc/lvsdr/edge.toml" in outs[0]["README.txt"]


def test_unit_uses_the_cluster_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The boot unit runs lvsdr_path on config_path."""
    monkeypatch.chdir(REPO)
    unit = render("app1", tmp_path)["etc/systemd/system/lvsdr-realserver@.service"]
    assert "ExecStart=/usr/bin/lvsdr realserver apply /etc/lvsdr/edge.toml --node %i" in unit
    assert "Before=network-pre.target" in unit


@needs_root
def test_rendered_rules_load_in_their_tools(tmp_path: Path, scratch_netns: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule files realserver render writes load in their tools."""
    monkeypatch.chdir(REPO)

    def ok(cmd: list[str], stdin: str) -> None:
        p = subprocess.run(["ip", "netns", "exec", scratch_netns, *cmd], input=stdin, capture_output=True,
                           text=True, check=False)
        assert p.returncode == 0, f"{cmd}: {p.stderr}"

    ok(["nft", "-c", "-f", "-"], render("app3", tmp_path / "n")["etc/nftables.d/lvsdr.nft"])
    ok(["iptables-restore", "--test", "--noflush"], render("app4", tmp_path / "i")["etc/iptables/lvsdr.rules.v4"])
    sysctl = render("app1", tmp_path / "s")["etc/sysctl.d/90-lvsdr-arp.conf"]
    assert "net.ipv4.conf.all.arp_ignore = 1" in sysctl and "net.ipv4.conf.eth0.arp_announce = 2" in sysctl


def test_firewalld_commands_never_use_toaddr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The firewalld commands never use toaddr, which breaks DR."""
    monkeypatch.chdir(REPO)
    cmds = render("app5", tmp_path)["etc/lvsdr/firewalld-commands.txt"]
    assert "toaddr" not in cmds
    assert "firewall-cmd --zone=internal --add-forward-port=port=8080:proto=tcp:toport=8080" in cmds
    assert "firewall-cmd --permanent --zone=internal --add-forward-port=port=8080:proto=tcp:toport=8080" in cmds
