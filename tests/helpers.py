"""Shared test helpers (pure): paths, polling, fixtures of node facts, typed
changes as JSON, and the safe-order property of real-server plans."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lvsdr.generator.changes import (
    AddAddress,
    AddRoute,
    AddRule,
    Change,
    DeleteNftTable,
    DeleteRule,
    ForgetRecord,
    LoadNftTable,
    RemoveAddress,
    RemoveRoute,
    RestoreSysctl,
    SetSysctl,
    WriteRecord,
)
from lvsdr.generator.load import load_cluster
from lvsdr.generator.methods import arptables, firewalld, iptables, nftables
from lvsdr.generator.node import Facts, NodeAddress, Record, Rule, parse_nft_table
from lvsdr.lab.topology import TIME_SCALE, Lab, Node

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
DATA = Path(__file__).resolve().parent / "data"
PREFIX = f"lt{os.getpid()}"  # every namespace a test makes starts with this

# a small valid cluster file, as parsed data (validation and property tests mutate copies)
BASE: dict[str, Any] = {
    "cluster": {"name": "web", "interface": "eth0", "virtual_router_id": 51, "advert_int": 1},
    "directors": [
        {"name": "lb1", "address": "192.0.2.2", "priority": 150},
        {"name": "lb2", "address": "192.0.2.3", "priority": 100},
    ],
    "real_servers": [
        {"name": "web1", "address": "192.0.2.11"},
        {"name": "web2", "address": "192.0.2.12", "arp_method": "iptables"},
    ],
    "services": [
        {"name": "http", "vip": "192.0.2.100", "port": 80, "backends": ["web1", "web2"]},
        {"name": "https", "vip": "192.0.2.100", "port": 443, "backends": ["web1"]},
    ],
}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
MEASURED: list[str] = []  # lines for the end of the run (failover times, ...), printed by conftest


DELETE = object()  # as a value of ``patched``: remove the key


def patched(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted paths set, e.g. {"services.1.vip": "x"} (DELETE removes the key)."""
    import copy

    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def poll(cond: Callable[[], bool], what: str, timeout: float = 10.0, interval: float = 0.05,
         explain: Callable[[], str] = lambda: "") -> float:
    """Wait until ``cond()`` holds; returns the seconds it took, or fails naming ``what``."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s\n{explain()}")
        time.sleep(interval)


# -- the lab ------------------------------------------------------------------------
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


def make_lab(path: Path, tmp: Path, suppression: str = "product", hook: str = "both",
             held_back: tuple[str, ...] = (), quorum_checker: bool = False) -> Lab:
    return Lab(load_cluster(path), path, prefix=PREFIX, suppression=suppression, state_root=tmp / "labstate",
               hook=hook, held_back=held_back, quorum_checker=quorum_checker)


def lvsdr_in(ns: str, *args: str, env: dict[str, str] | None = None, cwd: str | Path = "/",
             sandbox: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run lvsdr inside network namespace ``ns`` (never in the host's); ``sandbox``: under a unit's
    sandbox (``Lab.sandboxed``)."""
    prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
    return subprocess.run(["ip", "netns", "exec", ns, *prefix, *(sandbox or []), sys.executable, "-m", "lvsdr.cli",
                           *args],
                          capture_output=True, text=True, check=False, cwd=cwd, timeout=120 * TIME_SCALE)


def lvsdr_forked(ns: str, *args: str, preload: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`lvsdr ARGS` in network namespace ``ns``, run by the CLI's own main()
    in a fork of this process (``preload``: modules imported here first, so
    the fork has them): the program's code path without its interpreter's
    start and imports, seconds each in the TCG guest. Only for commands that
    read the node (the fork shares this process's files and mounts)."""
    import contextlib
    import importlib
    import tempfile

    from lvsdr import cli
    from lvsdr.lab.netns import enter

    for name in preload:
        importlib.import_module(name)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            rc = 70
            try:
                enter(ns)  # the only thread of the fork: the whole process is in the namespace
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    rc = cli.main(list(args))
            except BaseException as e:  # noqa: BLE001 - reported as the CLI would, then the fork exits
                err.write(f"lvsdr_forked: {e!r}\n")
            finally:
                out.flush()
                err.flush()
                os._exit(rc)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(["lvsdr", *args], os.waitstatus_to_exitcode(status), out.read(), err.read())


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
        "firewalld": "".join(out("firewall-cmd", *where, "--list-all") for where in ((), ("--permanent",)))
                     if prefix else "",
    }


def our_namespaces() -> list[str]:
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.startswith(f"{PREFIX}-")]


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
        if f"{PREFIX}-" in cmd:  # with the dash: lt12 is not lt123 (pytest-xdist runs several at once)
            found.append(f"{pid}: {cmd}")
    return found


class FirewalldInNetns:
    """Live firewalld in a lab namespace (private mount namespace and D-Bus).
    ``prefix`` runs a command where firewall-cmd reaches it."""

    def __init__(self, ns: str, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
             sys.executable, str(Path(__file__).parent / "firewalld_ns.py"), os.readlink("/proc/self/ns/mnt"),
             str(tmp / "etc-firewalld")],
            stdout=open(tmp / "firewalld.log", "wb"), stderr=subprocess.STDOUT, cwd="/")  # noqa: SIM115
        self.prefix = ["nsenter", "-t", str(self.proc.pid), "-m", "-n"]

        def running() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"firewalld exited: {(tmp / 'firewalld.log').read_text()[-2000:]}")
            p = subprocess.run([*self.prefix, "firewall-cmd", "--state"], capture_output=True, text=True, check=False)
            return p.stdout.strip() == "running"

        try:
            poll(running, "firewalld started", 60 * TIME_SCALE, interval=0.3,
                 explain=lambda: (tmp / "firewalld.log").read_text()[-2000:])
        except BaseException:
            self.stop()
            raise

    def lvsdr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, sys.executable, "-m", "lvsdr.cli", *args], capture_output=True,
                              text=True, check=False, cwd="/", timeout=120 * TIME_SCALE)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- facts from captured tool output --------------------------------------------
def facts_from(raw: dict[str, Any]) -> Facts:
    """Facts as the fact parsers read them from tool output (keys are the
    commands: "arptables -S", "iptables -t nat -S", ...)."""
    obs = [arptables.parse_listing(raw.get("arptables -S", "")),
           iptables.parse_listing(raw.get("iptables -t nat -S", ""), 4),
           iptables.parse_listing(raw.get("ip6tables -t nat -S", ""), 6)]
    zone = raw.get("zone", "public")
    fps: tuple[Rule, ...] = tuple(fp for where in firewalld.WHERE
                for fp in firewalld.parse_listing(raw.get(f"firewall-cmd {where}", ""), where, zone))
    fps += tuple(p for where in firewalld.WHERE
                 for p in firewalld.parse_ports(raw.get(f"firewall-cmd ports {where}", ""), where, zone))
    table = parse_nft_table(raw.get("nft list table arp lvsdr", ""), nftables.FAMILY, nftables.TABLE,
                            nftables.parse_rule)
    record = raw.get("record")
    return Facts(
        addresses=tuple(NodeAddress(i, ipaddress.ip_interface(a), label) for i, a, label in raw.get("addresses", [])),
        sysctls=dict(raw.get("sysctls", {})),
        chains=tuple(c for o in obs for c in o.chains),
        rules=tuple(r for o in obs for r in o.rules) + fps,
        nft={table.key: table} if table else {},
        nft_tables=dict(raw.get("nft_tables", {})),
        record=Record.from_json(json.dumps(record), "fixture") if record is not None else None,
    )


# -- typed changes as JSON ---------------------------------------------------------
def encode(value: Any) -> Any:
    """A change (or any value in one) as plain JSON: {"type": ClassName, fields...}; the fields its equality
    compares (an nft table's set declarations are not)."""
    if isinstance(value, Record):
        return {"type": "Record", **json.loads(value.to_json())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Interface
                  | ipaddress.IPv6Interface):
        return str(value)
    return value


# -- the safe-order property, by change type -----------------------------------------
SUPPRESS, UNSUPPRESS, VIP_ADD, VIP_DEL, OTHER = "suppress", "unsuppress", "vip-add", "vip-del", "other"


def classify(ch: Change) -> str:
    """What a change does to ARP safety. Every change type is classified (a new
    one fails here until it is)."""
    match ch:
        case SetSysctl():
            return SUPPRESS
        case RestoreSysctl():
            return UNSUPPRESS
        case AddAddress():
            return VIP_ADD
        case RemoveAddress():
            return VIP_DEL
        case AddRule(rule=rule):
            return SUPPRESS if rule.suppresses_arp else OTHER
        case DeleteRule(rule=rule):
            return UNSUPPRESS if rule.suppresses_arp else OTHER
        case LoadNftTable(table=table):
            return SUPPRESS if table.family == "arp" else OTHER
        case DeleteNftTable(key=key):
            return UNSUPPRESS if key.startswith("arp ") else OTHER
        case WriteRecord() | ForgetRecord():
            return OTHER
        case AddRoute() | RemoveRoute():  # an ECMP announcement: a route in lvsdr's table, nothing answers ARP for it
            return OTHER
    raise AssertionError(f"unclassified change {ch!r}")


def safe_order(changes: list[Change]) -> dict[str, int]:
    """Assert: never a moment with a VIP on the host and no suppression. Every
    suppression step comes before the first VIP is added, and every VIP removal
    before the first suppression step is undone. Returns how many changes of
    each class the plan had, so callers can check the property was exercised."""
    kinds = [classify(c) for c in changes]
    at = {k: [i for i, x in enumerate(kinds) if x == k] for k in (SUPPRESS, UNSUPPRESS, VIP_ADD, VIP_DEL, OTHER)}
    if at[VIP_ADD] and at[SUPPRESS]:
        assert max(at[SUPPRESS]) < min(at[VIP_ADD]), changes
    if at[VIP_DEL] and at[UNSUPPRESS]:
        assert max(at[VIP_DEL]) < min(at[UNSUPPRESS]), changes
    return {k: len(v) for k, v in at.items()}


def nft(node: Node) -> str:
    """A lab node's whole nft ruleset, as `nft -s list ruleset` prints it."""
    return subprocess.run(["ip", "netns", "exec", node.ns, "nft", "-s", "list", "ruleset"], capture_output=True,
                          text=True, check=False).stdout


# -- import: what a round trip changed that nothing named ---------------------------
def read_path(path: str) -> str:
    """A file's text (the importer's reader, given by its caller)."""
    return Path(path).read_text()


def _span(tree: tuple[Any, ...], match: str) -> tuple[str, int, int] | None:
    """(file, first line, last line) of the top-level directive a difference is about."""
    kind, _, rest = match.partition(" ")
    for d in tree:
        if d.key != kind:
            continue
        if kind == "vrrp_instance":
            vrid = next((c.args[0] for c in d.block() if c.key == "virtual_router_id" and c.args), "?")
            if not rest.startswith(vrid):
                continue
        elif d.args[:1] == ("group",) and rest.startswith("group "):
            pass  # a virtual_server group: the difference names the group's entries, the file its name
        elif not rest.startswith(" ".join(d.args)):
            continue
        lines = [d.line]
        stack = list(d.block())
        while stack:
            c = stack.pop()
            if c.file == d.file:
                lines.append(c.line)
            stack += c.block()
        return d.file, min(lines), max(lines)
    return None


def unexplained(paths: list[Path], arp: str, addresses: dict[str, str] | None = None) -> list[str]:
    """Round-trip differences of an import (the original against its import
    rendered again) that no directive the import named on stderr accounts for."""
    from lvsdr.generator.import_diff import compare, semantics
    from lvsdr.generator.import_merge import import_files
    from lvsdr.generator.kaconf import read_keepalived
    from lvsdr.generator.keepalived import render_keepalived
    from lvsdr.generator.load import parse_cluster

    job = import_files([str(p) for p in paths], read_path, arp, addresses or {})
    cluster = parse_cluster(tomllib.loads(job.text))
    named = [(u.where.rsplit(":", 1)[0], int(u.where.rsplit(":", 1)[1])) for u in job.imported.unmapped]
    for note in job.notes:  # what the reader skipped (a conditional line): "file:line: text"
        where, _, line = note.split(": ", 1)[0].rpartition(":")
        if line.isdigit():
            named.append((where, int(line)))
    out = []
    for node, tree in job.trees.items():
        rendered = render_keepalived(cluster, node, "import")
        again = read_keepalived("(rendered)", {"(rendered)": rendered}.__getitem__)
        for diff in compare(semantics(tree), semantics(again)):
            if diff.startswith("virtual_server fwmark ") and diff.endswith(": only in lvsdr's rendering") and any(
                    "lvsdr renders it as a fwmark virtual_server" in u.reason for u in job.imported.unmapped):
                continue  # a service with a director among its backends, in lvsdr's form (named at its original)
            span = _span(tree, diff)
            if span is None or not any(f == span[0] and span[1] <= n <= span[2] for f, n in named):
                out.append(f"{node}: {diff}")
    return out


@dataclasses.dataclass(frozen=True)
class Switchover:
    """What ``switchover_under_load`` saw."""

    streams: int
    complete: int  # streams whose whole body arrived
    codes: tuple[int, ...]  # each stream's outcome (curl's exit codes, probes.Stream)
    requests: int
    failed: tuple[str, ...]  # why each failed request failed
    away: float  # s the drain took to return with the peer holding the VIPs
    back: float  # s from the undo to the MASTER holding them again
    at_away: int  # lines the first stream had when the drain returned, and when the VIPs were back
    at_back: int
    drained: str  # the drain's own lines
    held: int | None  # flows the new holder's sync hold rules had held back when the drain returned (None: no rules)
    # each failed request: (start, end, why), and each move of the VIP: (last seen on the old holder, first seen on
    # the new), in s from the first request
    failures: tuple[tuple[float, float, str], ...] = ()
    moves: tuple[tuple[float, float], ...] = ()

    def at_a_move(self, before: float = 0.5) -> list[tuple[float, float, str]]:
        """The failed requests whose connection may have straddled a move of the VIP: begun at most ``before`` s
        before the last sight of the old holder and no later than the first of the new. IPVS syncs a TCP
        connection at its sync_threshold-th packet (3: the request itself); one begun on the old holder an
        instant before the move is not synced, and the new holder's hold rules reset it after 5 s."""
        return [f for f in self.failures if any(lo - before <= f[0] <= hi for lo, hi in self.moves)]

    def summary(self) -> str:
        why = "; ".join(f"{w} (begun {a:.2f} s, {b - a:.1f} s long)" for a, b, w in self.failures[:3])
        why = f": {why}" if why else ""
        moves = ", ".join(f"{lo:.2f}-{hi:.2f} s" for lo, hi in self.moves)
        return (f"{self.complete} of {self.streams} downloads complete (exit codes {sorted(set(self.codes))}), "
                f"{len(self.failed)} of {self.requests} requests failed{why} (the VIP moved between {moves}); "
                f"drain returned after {self.away:.1f} s (the downloads at line {self.at_away}), the VIPs back "
                f"{self.back:.1f} s after the undo (line {self.at_back})"
                + (f"; the new holder's sync hold rules had held {self.held} flows" if self.held is not None else ""))


def switchover_under_load(lab: Lab, tmp: Path, vip: str, count: int, seconds: int, first_port: int) -> Switchover:
    """``count`` downloads of ``seconds`` s through ``vip`` and a loop of short requests (one at a time, a tenth
    of a second apart, each given 10 s: a dropped segment is retransmitted) while `lvsdr drain` hands the MASTER's
    VIPs to the other director and `lvsdr drain --undo` takes them back."""
    import threading

    from lvsdr.lab import probes

    master = lab.wait_for_master(60)
    runs = probes.start_streams(lab, vip, count, seconds, first_port, tmp)
    results: list[tuple[float, float, str]] = []
    moves: list[tuple[float, float]] = []
    stop = threading.Event()
    began = time.monotonic()
    try:
        poll(lambda: all(r.body.exists() and r.body.stat().st_size > 0 for r in runs), "every download started", 60,
             interval=0.5)

        def loop() -> None:
            while not stop.is_set():
                start = time.monotonic() - began
                body, why = probes.http_request(lab, vip, timeout=10)
                results.append((start, time.monotonic() - began, "" if body is not None else why))
                stop.wait(0.1)

        def watch() -> None:  # who holds the VIP, every 0.1 s: when it moved
            seen, last = master.name, time.monotonic() - began
            while not stop.is_set():
                now = time.monotonic() - began
                holder = getattr(lab.master(), "name", None)
                if holder not in (None, seen):
                    moves.append((last, now))
                    seen = holder
                if holder == seen:
                    last = now
                stop.wait(0.1)

        requests = threading.Thread(target=loop, daemon=True)
        watcher = threading.Thread(target=watch, daemon=True)
        requests.start()
        watcher.start()
        time.sleep(2)
        t0 = time.monotonic()
        r = lvsdr_in(master.ns, "drain", lab.cluster_path, "--node", master.name)
        away = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        assert getattr(lab.master(), "name", None) not in (None, master.name), r.stdout
        at_away = len(runs[0].body.read_text().split())
        held = _held_flows(lab.master())
        time.sleep(3)
        u = lvsdr_in(master.ns, "drain", lab.cluster_path, "--node", master.name, "--undo")
        assert u.returncode == 0, u.stdout + u.stderr
        t1 = time.monotonic()
        back = poll(lambda: getattr(lab.master(), "name", None) == master.name, "the MASTER took the VIPs back", 90,
                    interval=0.2)
        at_back = len(runs[0].body.read_text().split())
        time.sleep(3)
        assert at_back < seconds * 4 - 8, f"the switch back came too late in the downloads to tell ({at_back})"
        assert back >= 0 and t1 > t0
    finally:
        stop.set()
        codes, lines = probes.end_streams(runs, seconds)
    requests.join()
    watcher.join()
    complete = sum(1 for c, n in zip(codes, lines, strict=True) if c == 0 and n == seconds * 4)
    failures = tuple(f for f in results if f[2])
    return Switchover(count, complete, tuple(codes), len(results), tuple(f[2] for f in failures), away, back,
                      at_away, at_back, r.stdout.strip(), held, failures, tuple(moves))


def _held_flows(node: Node | None) -> int | None:
    """The flows in ``node``'s sync hold rules' "seen" sets (segments held back in the last 30 s), None without
    the rules."""
    from lvsdr.lab.netns import ns_run

    if node is None:
        return None
    got = ns_run(node.ns, ["nft", "-j", "list", "table", "inet", "lvsdr_sync"], check=False)
    if got.returncode != 0:
        return None
    return sum(len(item["set"].get("elem", [])) for item in json.loads(got.stdout)["nftables"]
               if "set" in item and item["set"]["name"].startswith("seen"))
