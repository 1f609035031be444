"""Read a node's state (read-only): each fact is a command plus a pure parser.

The commands and parsers live with what they describe (each ARP method's
module, ``generator/director.py`` for the fwmark table, ``parse_table_counts``
here); this module only runs them. Every reader says "absent" the same way
(an empty value) and raises ``FactError`` when something could not be read.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lvsdr.generator.methods import registry
from lvsdr.generator.methods.base import FactCommand
from lvsdr.generator.node import Chain, FactError, Facts, IPInterface, NftTable, NodeAddress, Record, Rule
from lvsdr.generator.spec import Spec

if TYPE_CHECKING:
    from lvsdr.generator.director import DirectorSpec
    from lvsdr.generator.ipvs import Dest, Key
    from lvsdr.generator.ipvs import Service as IpvsService

TABLES_FACT = FactCommand(("nft", "-j", "list", "ruleset"))


def record_path(state_dir: Path, spec: Spec) -> Path:
    return state_dir / f"realserver-{spec.cluster}-{spec.node}.json"


def run_fact(cmd: FactCommand) -> str:
    """The command's output; "" when its program is missing or the error says
    the thing is absent; ``FactError`` for any other failure."""
    from .run import TimedOut, run

    if shutil.which(cmd.argv[0]) is None:
        return ""
    try:
        p = run(cmd.argv, timeout=30)
    except TimedOut as e:
        raise FactError(str(e)) from None
    except FileNotFoundError:
        return ""
    if p.ok:
        return p.out
    err = p.said
    if any(s in err for s in cmd.absent):
        return ""
    for pattern, advice in cmd.hints:
        if pattern in err.lower():
            raise FactError(advice)
    raise FactError(f"{' '.join(cmd.argv)}: exit {p.code}: {err.splitlines()[0] if err else 'no output'}")


def read_addresses() -> tuple[NodeAddress, ...]:
    from .fast.netlink import addresses  # one netlink dump; no pyroute2 import on the read path

    return addresses()


def sysctl_path(key: str) -> Path:
    """The /proc/sys file of a network sysctl; ``FactError`` for any key that
    is not one (a record is read back from disk: its keys are checked here,
    where they become a path root writes)."""
    from lvsdr.generator.node import valid_sysctl_key

    if not valid_sysctl_key(key):
        raise FactError(f"{key!r} is not a network sysctl lvsdr manages")
    # net.ipv4.conf.<dev>.<name>: the device may itself contain dots (eth0.100)
    prefix = "net.ipv4.conf."
    if key.startswith(prefix):
        dev, name = key[len(prefix):].rsplit(".", 1)
        return Path("/proc/sys/net/ipv4/conf") / dev / name
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls(keys: list[str]) -> dict[str, str]:
    """Values of ``keys``; a key that does not exist (no such interface) is absent."""
    out = {}
    for k in keys:
        with contextlib.suppress(FileNotFoundError):
            out[k] = sysctl_path(k).read_text().strip()
    return out


def parse_table_counts(text: str) -> dict[str, int]:
    """`nft -j list ruleset` -> every table ("family name") with its number of rules."""
    if not text.strip():
        return {}
    try:
        items = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError):
        raise FactError("nft -j list ruleset: output is not nftables JSON") from None
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


def read_record(path: Path) -> Record | None:
    """lvsdr's record on this node, trusted only as root's own (files.open_trusted)."""
    from .fast.files import read_trusted

    try:
        text = read_trusted(path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FactError(f"{path}: cannot read lvsdr's record ({e.strerror})") from None
    return Record.from_json(text, str(path))


def held_addresses() -> frozenset[str]:
    """The addresses on this node outside lo: where keepalived puts the VIPs
    of the instances it is MASTER of (a director that is also a backend holds
    them on lo in either role, so lo says nothing of the role)."""
    return frozenset(str(a.address.ip) for a in read_addresses() if a.ifname != "lo")


def has_address(addresses: tuple[NodeAddress, ...], address: object) -> bool:
    return any(str(a.address.ip) == str(address) for a in addresses)


def require_identity(node: str, address: object, addresses: tuple[NodeAddress, ...]) -> None:
    """Act only on the node the cluster file names: its address must be here.
    (A wrong --node, or a command run on the wrong host or namespace, changes nothing.)"""
    if not has_address(addresses, address):
        raise FactError(f"this node does not have {node}'s address {address}; refusing to change it "
                        f"(wrong --node, or not run on {node}?)")


def read_facts(spec: Spec, state_dir: Path) -> Facts:
    """A real server (or a director's backend side): every method's facts, so
    a plan also cleans up what another method left. ``state_dir`` is the
    cluster file's state_dir (or --state-dir): where lvsdr's record is."""
    record = read_record(record_path(state_dir, spec))
    keys = set(registry()[spec.method].sysctls(spec)) | set(dict(record.sysctl_originals) if record else {})
    chains: list[Chain] = []
    rules: list[Rule] = []
    nft: dict[str, NftTable] = {}
    for method in registry().values():
        cmds = method.fact_commands(spec, record.forward_ports if record else ())
        if not cmds:
            continue
        seen = method.parse([run_fact(c) for c in cmds], spec)
        chains += seen.chains
        rules += seen.rules
        nft.update((t.key, t) for t in seen.nft)
    return Facts(
        addresses=read_addresses(),
        sysctls=read_sysctls(sorted(keys)),
        chains=tuple(chains),
        rules=tuple(rules),
        nft=nft,
        nft_tables=parse_table_counts(run_fact(TABLES_FACT)),
        record=record,
    )


def read_director_facts(spec: DirectorSpec, state_dir: Path) -> Facts:
    """A director: its fwmark and sync hold tables, IPVS's settings (absent until ip_vs is
    loaded), and the real-server side when it is a backend."""
    from lvsdr.generator.director import FWMARK_FACT, SYNC_FACT, parse_fwmark, parse_sync_table

    base = read_facts(spec.backend, state_dir) if spec.backend is not None else Facts(addresses=read_addresses())
    tables = [t for t in (parse_fwmark(run_fact(FWMARK_FACT)), parse_sync_table(run_fact(SYNC_FACT))) if t]
    nft: Mapping[str, NftTable] = {**base.nft, **{t.key: t for t in tables}}
    return replace(base, nft=nft, sysctls={**base.sysctls, **read_sysctls([k for k, _ in spec.sysctls])})


def read_ecmp_facts(spec: DirectorSpec, state_dir: Path) -> Facts:
    """An ECMP director: the director's facts (its VIPs on lo, their
    suppression, the fwmark table), the routes of lvsdr's table (the
    announced VIPs), and IPVS's sysctls (absent until ip_vs is loaded)."""
    assert spec.ecmp is not None
    base = read_director_facts(spec, state_dir)
    return replace(base, routes=read_routes(spec), ipvs=read_ipvs_services())


def read_ipvs(path: str | None = None) -> dict[Key, IpvsService] | None:
    """The kernel's IPVS table (/proc/net/ip_vs, read by
    ``generator.ipvs.parse_proc``); None when the kernel has none (ip_vs not
    loaded: keepalived loads it). ``FactError`` when it cannot be read."""
    from lvsdr.generator import ipvs

    where = path or ipvs.PROC
    try:
        text = Path(where).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FactError(f"{where}: {e.strerror}") from None
    return ipvs.parse_proc(text)


def read_announced(table: int) -> set[str]:
    """The VIPs an ECMP director announces: the routes of lvsdr's table ``table`` (which BIRD exports), by one
    netlink dump per family. ``FactError`` when they cannot be read."""
    import socket

    from pyroute2 import IPRoute

    out: set[str] = set()
    try:
        with IPRoute() as ipr:
            for family in (socket.AF_INET, socket.AF_INET6):
                for m in ipr.route("dump", table=table, family=family):
                    if m.get_attr("RTA_DST") is not None:
                        out.add(str(m.get_attr("RTA_DST")))
    except Exception as e:  # pyroute2 raises its own errors
        raise FactError(f"lvsdr's route table {table}: {e}") from None
    return out


def read_bgp_sessions(bird_socket: str) -> dict[str, str] | None:
    """{neighbour address: BGP state} as BIRD says it (``birdc show protocols all``); None when it does not answer."""
    from .run import TimedOut, run

    try:
        ran = run(["birdc", "-s", bird_socket, "show", "protocols", "all"], timeout=10)
    except (OSError, TimedOut):
        return None
    from .bird import bird_neighbours

    return bird_neighbours(ran.out)


def read_persistent() -> dict[tuple[Key, Dest], int] | None:
    """The persistence templates of each real server (``ipvsadm -Ln --persistent-conn``, parsed by
    ``generator.ipvs.parse_persistent``): one netlink dump, not the connection table. None where ipvsadm is not
    installed or IPVS is not loaded."""
    from lvsdr.generator import ipvs

    from .run import TimedOut, run

    if shutil.which("ipvsadm") is None or not Path(ipvs.PROC).exists():
        return None
    try:
        return ipvs.parse_persistent(run(["ipvsadm", "-Ln", "--persistent-conn"], timeout=10).out)
    except (OSError, TimedOut):
        return None


def read_ipvs_services(path: str | None = None) -> frozenset[str] | None:
    """The IPVS services that have a real server, named as /proc/net/ip_vs
    names them ("TCP 192.0.2.150:80"); None when the kernel has no table."""
    table = read_ipvs(path)
    return None if table is None else frozenset(str(k) for k, svc in table.items() if svc.dests)


def read_routes(spec: DirectorSpec) -> tuple[IPInterface, ...]:
    """The routes of lvsdr's table on an ECMP director (the VIPs it
    announces), by one netlink dump per family: no process started, so the
    agent's withdrawal does not wait for one (a second and more in a slow VM)."""
    import socket

    from pyroute2 import IPRoute

    from lvsdr.generator.director import parse_route_messages

    assert spec.ecmp is not None
    families = {4: socket.AF_INET, 6: socket.AF_INET6}
    with IPRoute() as ipr:
        dumps = {v: [{"dst": m.get_attr("RTA_DST"), "dst_len": m["dst_len"], "table": m.get_attr("RTA_TABLE")}
                     for m in ipr.route("dump", table=spec.ecmp.table, family=families[v])]
                 for v in sorted({a.version for a in spec.vips})}
    return tuple(r for v, msgs in dumps.items() for r in parse_route_messages(msgs, spec.ecmp.table, v))
