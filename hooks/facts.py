"""Read a real server's state (read-only): addresses, sysctls, lvsdr's rules, its record."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError
from lvsdr.generator.realserver import ARP_CHAINS, NAT_CHAIN, NFT_TABLE, Facts, Spec


def record_path(state_dir: Path, spec: Spec) -> Path:
    return state_dir / f"realserver-{spec.cluster}-{spec.node}.json"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def read_addresses() -> tuple[tuple[str, str, str], ...]:
    from .netlink import addresses  # one netlink dump; no pyroute2 import on the read path

    return addresses()


def sysctl_path(key: str) -> Path:
    # net.ipv4.conf.<dev>.<name>: the device may itself contain dots (eth0.100)
    prefix = "net.ipv4.conf."
    if key.startswith(prefix):
        dev, name = key[len(prefix):].rsplit(".", 1)
        return Path("/proc/sys/net/ipv4/conf") / dev / name
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls(keys: list[str]) -> dict[str, str]:
    out = {}
    for k in keys:
        with contextlib.suppress(OSError):
            out[k] = sysctl_path(k).read_text().strip()
    return out


def read_arptables() -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    if shutil.which("arptables") is None:
        return None, ()
    p = _run(["arptables", "-S"])
    if p.returncode != 0:
        raise LvsdrError(f"arptables -S: {p.stderr.strip()}")
    lines = p.stdout.splitlines()
    exists = any(ln == f"-N {c}" for ln in lines for c in ARP_CHAINS)
    rules = tuple(ln for ln in lines if ln.split()[:2] in (["-A", "LVSDR_IN"], ["-A", "LVSDR_OUT"]))
    jumps = tuple(h for h, c in (("INPUT", "LVSDR_IN"), ("OUTPUT", "LVSDR_OUT")) if f"-A {h} -j {c}" in lines)
    return (rules if exists else None), jumps


_NFT_CHAIN = re.compile(r"^\s*chain (\S+) \{")


def read_nft(family: str = "arp", table: str = NFT_TABLE) -> dict[str, tuple[str, ...]] | None:
    """Rules per chain of one nftables table, as `nft -s list` prints them; None: no table."""
    if shutil.which("nft") is None:
        return None
    p = _run(["nft", "-s", "list", "table", family, table])
    if p.returncode != 0:
        return None  # no such table
    chains: dict[str, list[str]] = {}
    current = None
    for line in p.stdout.splitlines():
        m = _NFT_CHAIN.match(line)
        if m:
            current = m.group(1)
            chains[current] = []
            continue
        s = line.strip()
        if current and s and not s.startswith(("type ", "}", "policy")):
            chains[current].append(s)
    return {k: tuple(v) for k, v in chains.items() if v}


def read_nft_tables() -> dict[str, int]:
    """Every nftables table ("family name") with its number of rules."""
    if shutil.which("nft") is None:
        return {}
    p = _run(["nft", "-j", "list", "ruleset"])
    if p.returncode != 0:
        return {}
    try:
        items = json.loads(p.stdout).get("nftables", [])
    except (ValueError, AttributeError):
        return {}
    out: dict[str, int] = {}
    for item in items:
        if "table" in item:
            t = item["table"]
            out.setdefault(f"{t['family']} {t['name']}", 0)
        elif "rule" in item:
            r = item["rule"]
            key = f"{r['family']} {r['table']}"
            out[key] = out.get(key, 0) + 1
    return out


def read_iptables(prog: str) -> tuple[tuple[str, ...] | None, bool]:
    if shutil.which(prog) is None:
        return None, False
    p = _run([prog, "-t", "nat", "-S"])
    if p.returncode != 0:
        return None, False
    lines = p.stdout.splitlines()
    exists = f"-N {NAT_CHAIN}" in lines
    rules = tuple(ln for ln in lines if ln.startswith(f"-A {NAT_CHAIN} "))
    return (rules if exists else None), f"-A PREROUTING -j {NAT_CHAIN}" in lines


def read_forward_ports(zone: str) -> dict[str, tuple[str, ...]]:
    out = {}
    for where, extra in (("runtime", []), ("permanent", ["--permanent"])):
        p = _run(["firewall-cmd", *extra, f"--zone={zone}", "--list-forward-ports"])
        if p.returncode != 0:
            msg = (p.stderr or p.stdout).strip()
            if "not running" in msg.lower():
                raise LvsdrError("firewalld is not running (systemctl start firewalld)")
            raise LvsdrError(f"firewall-cmd --zone={zone}: {msg}")
        # firewall-cmd prints "port=80:proto=tcp:toport=80:toaddr=": an empty toaddr is none
        out[where] = tuple(sorted(fp.removesuffix(":toaddr=") for fp in p.stdout.split()))
    return out


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LvsdrError(f"{path}: unreadable lvsdr record ({e}); fix or remove it") from None
    return data if isinstance(data, dict) else None


def require_identity(node: str, address: object, addresses: tuple[tuple[str, str, str], ...]) -> None:
    """Act only on the node the cluster file names: its address must be here.
    (A wrong --node, or a command run on the wrong host or namespace, changes nothing.)"""
    if not any(pfx.split("/", 1)[0] == str(address) for _i, pfx, _l in addresses):
        raise LvsdrError(f"this node does not have {node}'s address {address}; refusing to change it "
                         f"(wrong --node, or not run on {node}?)")


def read_fwmark() -> tuple[str, ...] | None:
    from lvsdr.generator.director import FWMARK_TABLE

    chains = read_nft("inet", FWMARK_TABLE)
    return None if chains is None else chains.get("prerouting", ())


def read_director_facts(spec: Spec | None, state_dir: Path) -> Facts:
    """A director: its fwmark rules, and the real-server side when it is a backend."""
    import dataclasses

    base = read_facts(spec, state_dir) if spec is not None else Facts(addresses=read_addresses())
    return dataclasses.replace(base, fwmark=read_fwmark())


def read_facts(spec: Spec, state_dir: Path) -> Facts:
    """``state_dir`` is the cluster file's state_dir (or --state-dir): where lvsdr's record is."""
    record = read_record(record_path(state_dir, spec))
    keys = set(spec.sysctls()) | set((record or {}).get("sysctl_originals", {}))
    arp_rules, arp_jumps = read_arptables()
    ipt4, jump4 = read_iptables("iptables")
    ipt6, jump6 = read_iptables("ip6tables")
    fps: dict[str, tuple[str, ...]] = {}
    if spec.method == "firewalld" or (record or {}).get("forward_ports"):
        fps = read_forward_ports(spec.zone)
    return Facts(
        addresses=read_addresses(),
        sysctls=read_sysctls(sorted(keys)),
        arptables=arp_rules,
        arptables_jumps=arp_jumps,
        nft=read_nft(),
        iptables={4: ipt4, 6: ipt6},
        iptables_jump={4: jump4, 6: jump6},
        forward_ports=fps,
        nft_tables=read_nft_tables(),
        record=record,
    )
