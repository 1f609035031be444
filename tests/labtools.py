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


def snapshot(ns: str, prefix: list[str] | None = None) -> dict[str, str]:
    """Everything ARP suppression may touch on a node, as text (``prefix``
    enters the node another way, e.g. where its firewalld is reachable)."""
    enter = prefix or ["ip", "netns", "exec", ns]

    def out(*cmd: str) -> str:
        return subprocess.run([*enter, *cmd], capture_output=True, text=True, check=False).stdout

    sysctls = out("sh", "-c", "grep -r . /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce")
    return {
        "addresses": out("ip", "-o", "addr", "show"),
        "sysctls": sysctls,
        "nft": out("nft", "-s", "list", "ruleset"),  # -s: without counters
        "arptables": out("arptables", "-S"),
        "iptables": out("iptables", "-t", "nat", "-S"),
        "ip6tables": out("ip6tables", "-t", "nat", "-S"),
        "firewalld": out("firewall-cmd", "--list-forward-ports") + out("firewall-cmd", "--permanent",
                                                                         "--list-forward-ports")
        if prefix else "",
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


class FirewalldInNetns:
    """Live firewalld in a lab namespace (private mount namespace and D-Bus).
    ``prefix`` runs a command where firewall-cmd reaches it."""

    def __init__(self, ns: str, tmp: Path) -> None:
        import time

        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
             sys.executable, "-m", "lvsdr.lab.firewalld", str(tmp / "etc-firewalld")],
            stdout=open(tmp / "firewalld.log", "wb"), stderr=subprocess.STDOUT, cwd="/")  # noqa: SIM115
        self.prefix = ["nsenter", "-t", str(self.proc.pid), "-m", "-n"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = subprocess.run([*self.prefix, "firewall-cmd", "--state"], capture_output=True, text=True,
                               check=False)
            if p.stdout.strip() == "running":
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"firewalld did not start: {(tmp / 'firewalld.log').read_text()[-2000:]}")

    def lvsdr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, sys.executable, "-m", "lvsdr.cli", *args], capture_output=True,
                              text=True, check=False, cwd="/", timeout=120)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
