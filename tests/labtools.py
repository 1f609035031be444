"""Helpers for lab tests: unique names, a cluster-file writer, node snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from lvsdr.generator.load import load_cluster
from lvsdr.lab.topology import Lab

from conftest import EXAMPLES

PREFIX = f"lt{os.getpid()}"


def write_cluster(tmp: Path, **changes: Any) -> Path:
    """examples/web.toml with top-level edits, e.g. method="nftables"."""
    text = (EXAMPLES / "web.toml").read_text()
    if "method" in changes:
        text = text.replace('arp_method = "sysctl"', f'arp_method = "{changes["method"]}"')
    if "name" in changes:
        text = text.replace('name = "web"', f'name = "{changes["name"]}"', 1)
    tomllib.loads(text)
    p = tmp / "cluster.toml"
    p.write_text(text)
    return p


def make_lab(path: Path, tmp: Path, suppression: str = "product") -> Lab:
    return Lab(load_cluster(path), path, prefix=PREFIX, suppression=suppression, state_root=tmp / "labstate")


def lvsdr_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "lvsdr.cli", *args],
                          capture_output=True, text=True, check=False, cwd="/", timeout=120)


def snapshot(ns: str) -> dict[str, str]:
    """Everything ARP suppression may touch on a node, as text."""
    def out(*cmd: str) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                              check=False).stdout

    sysctls = out("sh", "-c", "grep -r . /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce")
    return {
        "addresses": out("ip", "-o", "addr", "show"),
        "sysctls": sysctls,
        "nft": out("nft", "-s", "list", "ruleset"),  # -s: without counters
        "arptables": out("arptables", "-S"),
        "iptables": out("iptables", "-t", "nat", "-S"),
        "ip6tables": out("ip6tables", "-t", "nat", "-S"),
    }


def our_namespaces() -> list[str]:
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.startswith(PREFIX)]


def processes_in_labs() -> list[str]:
    """Processes whose command line names a test lab (keepalived, httpd, stand-in)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if PREFIX in cmd or "lvsdr.lab.httpd" in cmd and PREFIX in cmd:
            found.append(f"{pid}: {cmd}")
    return found
