"""Connections through live changes, on one lab of two directors and two
backends. Edits of the cluster file on a director running `lvsdr watch`:
what `lvsdr plan` says a reload will change is what the reload changes in
the kernel's IPVS table, and edits under continuous load (add, remove,
reweight) fail no request, while a stream to a removed backend runs to its
end (the backend leaves at weight 0, then goes); a drained backend finishes
its connections. Failover: an established connection through the VIP
survives the MASTER's death and its return when the directors sync their
IPVS connection tables (lvs_sync_daemon, with the preempt_delay lvsdr
requires); with sync, 30 downloads and a request loop go through a planned
switchover (`lvsdr drain`) and back without a failure (without sync they
break: tests/ipvs/test_ipvs_handover.py counts them)."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsdr.generator.changes import as_dict
from lvsdr.generator.ipvs import Dest, Key, delta, parse_proc
from lvsdr.lab import probes
from lvsdr.lab.netns import LabError, enter, in_ns, ns_run, read_net
from lvsdr.lab.topology import TIME_SCALE, Lab, Node

from helpers import MEASURED, lvsdr_forked, lvsdr_in, make_lab, needs_root, poll, switchover_under_load

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
HERE = Path(__file__).parent
HTTP, ALT = Key("TCP", "192.0.2.130", 80), Key("TCP", "192.0.2.130", 8080)
ADDRESS = {"web1": "192.0.2.11", "web2": "192.0.2.12"}
STREAM_SECONDS = 40  # the stream to the backend removed first, longer than the first edits (the test: the longer)
DRAIN_TIMEOUT = 300  # far beyond the stream: the removed backend goes because its connection ended, not on time
ALT_SERVICE = {"name": "alt", "vip": "192.0.2.130", "port": 8080, "scheduler": "rr", "delay_loop": 2,
               "backends": ["web1", "web2"], "check": {"type": "tcp", "connect_timeout": 1}}


# with sync: the MASTER's death, its return, PREEMPT_DELAY s as BACKUP (a connection is synced again every
# 50 packets it sends, here about 4 a second), its take-over, and lines after it
# (preempt_delay 30 and a 72 s stream: the fail-back came at line 165 of 288; with 15 s and 56 s at line 106 of
# 224; lvsdr refuses less than 10 s)
PREEMPT_DELAY, FAILBACK_SECONDS = 10, 48
# the downloads across a switchover and back: the drain (its sync wait 3 s, the peer's preempt_delay), 3 s, the undo,
# the hold (5 s) and the preempt_delay again, lines after it
SWITCH_SECONDS = 60  # measured: the drain returned at line 93, the VIPs back at line 180 of 240
DRAIN_SECONDS = 32  # long enough for `watch --once` in a TCG guest (a Python start is 1-2 s there)


SERVICE, BACKENDS = "TCP 192.0.2.130:80", {"192.0.2.11", "192.0.2.12"}


def stream(lab: Lab, director: Node, body: Path, seconds: int, port: int) -> probes.Stream:
    """Once both backends are in ``director``'s IPVS table: a download through
    the VIP from client port ``port``, one line every 0.25 s for ``seconds``,
    into ``body`` as it comes (in this process, as the edits test's)."""
    poll(lambda: set(probes.ipvs_table(lab, director).get(SERVICE, {})) == BACKENDS, "both backends checked in",
         30 * TIME_SCALE, interval=0.5)
    run = probes.Stream(lab.state.client.ns, "192.0.2.130", 80, f"/stream?seconds={seconds}", port, body,
                        seconds * 3 + 30)
    try:
        poll(lambda: body.exists() and body.stat().st_size > 0, "the stream started", 10 * TIME_SCALE,
             explain=lambda: stream_state(lab, run, port))
    except BaseException:
        run.wait(0)  # cut
        raise
    return run


def stream_state(lab: Lab, run: probes.Stream, port: int) -> str:
    """What a stream that did not start had: its outcome so far, the client's
    neighbour entry for the VIP, who holds the VIP, and each director's IPVS
    table and entries for the stream's port (a stream that never started
    once failed the suite, with none of this to tell why)."""
    mac, state = probes.neighbour(lab, "192.0.2.130")
    master = lab.master()
    socks = ns_run(lab.state.client.ns, ["ss", "-tan", f"sport = :{port}"], check=False).stdout
    out = [f"stream from port {port}: {'running' if run.thread.is_alive() else f'ended, code {run.code}'}"
           f" {run.error}; body {run.body.stat().st_size if run.body.exists() else 'absent'}",
           f"the client's sockets of the port: {socks.strip()}",
           f"client's neighbour entry for the VIP: {mac} ({state}), {probes.mac_owner(lab, mac)}'s",
           f"VIP held by {master.name if master else 'nobody (or more than one)'}"]
    for d in lab.state.directors:
        conns = [line for line in read_net(d.ns, "ip_vs_conn").splitlines() if f" {port:04X} " in f" {line} "]
        out.append(f"{d.name}: IPVS {probes.ipvs_table(lab, d)}; entries for the port: {conns}")
    return "\n".join(out)


def live(node: Node) -> dict[Key, Any]:
    return parse_proc(read_net(node.ns, "ip_vs"))


def comparable(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changes without the connection counts (they move by the second)."""
    return [{k: v for k, v in c.items() if k not in ("active", "inactive")} for c in changes]


def observed(before: dict[Key, Any], node: Node) -> list[dict[str, Any]]:
    """What changed in the node's IPVS table since ``before``, as the plan says it."""
    return comparable([as_dict(c) for c in delta(before, live(node))])


def edit(data: dict[str, Any], rng: random.Random, keep_out: str = "") -> str:
    """One random edit of the file (a real server added to, removed from or reweighted in a service, a scheduler
    changed, the alt service added or removed) that leaves the http service a real server, and never brings
    ``keep_out`` back into it; what it did."""
    alt = next((s for s in data["services"] if s["name"] == "alt"), None)
    svc = rng.choice([data["services"][0], *([alt] if alt else [])])
    names = [b if isinstance(b, str) else b["server"] for b in svc["backends"]]
    addable = [n for n in ADDRESS if n not in names and not (svc is data["services"][0] and n == keep_out)]
    choices = ["reweight", "scheduler", "drop alt" if alt else "add alt"] + (["remove"] if len(names) > 1 else []) + (
        ["add"] if addable else [])
    what = rng.choice(choices)
    if what == "reweight":
        name = rng.choice(names)
        entry = svc["backends"][names.index(name)]
        current = entry.get("weight", 1) if isinstance(entry, dict) else 1
        weight = rng.choice([w for w in (1, 2, 3, 5) if w != current])
        svc["backends"] = [{"server": n, "weight": weight} if n == name else b
                           for n, b in zip(names, svc["backends"], strict=True)]
        return f"{svc['name']}: {name} weight {weight}"
    if what == "scheduler":
        svc["scheduler"] = rng.choice([s for s in ("rr", "wrr", "wlc", "lc") if s != svc.get("scheduler")])
        return f"{svc['name']}: scheduler {svc['scheduler']}"
    if what == "remove":
        name = rng.choice(names)
        svc["backends"] = [b for n, b in zip(names, svc["backends"], strict=True) if n != name]
        return f"{svc['name']}: remove {name}"
    if what == "add":
        name = rng.choice(addable)
        svc["backends"] = [*svc["backends"], name]
        return f"{svc['name']}: add {name}"
    if what == "drop alt":
        data["services"].remove(alt)
        return "remove service alt"
    data["services"].append(json.loads(json.dumps(ALT_SERVICE)))
    return "add service alt"


def backend_up_flips(lab: Lab, master: Node, tmp: Path) -> str:
    """web2 stops answering on port 80 (an nft drop on it), then answers again:
    `lvsdr metrics --listen` on the MASTER, scraped as Prometheus does, turns
    its lvsdr_backend_up to 0, then 1."""
    web2 = next(n for n in lab.state.real_servers if n.name == "web2")
    gauge = ('lvsdr_backend_up{local_address="192.0.2.130",local_mark="",local_port="80",proto="TCP",'
             'remote_address="192.0.2.12",remote_port="80"}')
    log = open(tmp / "metrics.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(["ip", "netns", "exec", master.ns, lab._console(), "metrics", lab.cluster_path,
                               "--node", master.name, "--listen", "127.0.0.1:9808"], stdout=log, stderr=log)

    def scrape() -> str:
        import urllib.request

        def get() -> str:
            with urllib.request.urlopen("http://127.0.0.1:9808/metrics", timeout=10 * TIME_SCALE) as r:
                return str(r.read().decode())

        return in_ns(master.ns, get, "scrape lvsdr metrics")

    def up() -> str:
        try:
            text = scrape()
        except (LabError, OSError):
            return "no answer"
        return next((line.split()[-1] for line in text.splitlines() if line.startswith(gauge)), "no gauge")

    try:
        poll(lambda: up() == "1.0", "web2's lvsdr_backend_up at 1 (the server up)", 30 * TIME_SCALE, interval=0.5,
             explain=lambda: (tmp / "metrics.log").read_text(errors="replace")[-2000:])
        ns_run(web2.ns, ["nft", "add table inet lvsdr_test; add chain inet lvsdr_test in { type filter hook input "
                         "priority 0; }; add rule inet lvsdr_test in tcp dport 80 drop"])
        try:
            down = poll(lambda: up() == "0.0", "web2's lvsdr_backend_up at 0", 30 * TIME_SCALE, interval=0.5)
        finally:
            ns_run(web2.ns, ["nft", "delete table inet lvsdr_test"])
        back = poll(lambda: up() == "1.0", "web2's lvsdr_backend_up back at 1", 30 * TIME_SCALE, interval=0.5)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    return f"web2 dropping port 80: lvsdr_backend_up 0 after {down:.1f} s, back at 1 {back:.1f} s after it answered"


class Watching:
    """`lvsdr watch` resident in a director's namespace, wired as the lab wires keepalived."""

    def __init__(self, lab: Lab, node: Node, tmp: Path) -> None:
        self.lab, self.node = lab, node
        self.conf = lab.state_dir / f"keepalived-{node.name}.conf"
        self.wiring = ["--node", node.name, "-o", str(self.conf), "--hook", "fifo", "--lvsdr-path", lab._console(),
                       "--config-path", lab.cluster_path, "--notify-fifo", str(lab.state_dir / f"{node.name}.fifo")]
        self.log_path = tmp / "watch.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        pidfile = str(lab.state_dir / f"keepalived-{node.name}.pid")
        self.proc = subprocess.Popen(["ip", "netns", "exec", node.ns, "env", "LVSDR_LOG=stderr",
                                      *lab.sandboxed("lvsdr-watch@.service"), lab._console(),
                                      "watch", lab.cluster_path, "--pidfile", pidfile, *self.wiring],
                                     stdout=self.log, stderr=self.log)

    def ready(self) -> None:
        """Its first pass is done (it logs "watching" after it)."""
        poll(lambda: b'"watching"' in self.log_path.read_bytes(), "watch's first pass", 60 * TIME_SCALE, interval=0.3)

    def plan(self, path: Path, forked: bool = False) -> list[dict[str, Any]]:
        """`lvsdr plan --json`'s changes: the program, or (``forked``) its main() in a fork of this process."""
        args = ("plan", str(path), *self.wiring, "--json")
        preload = ("lvsdr.hooks.reload", "lvsdr.generator.keepalived", "lvsdr.generator.load")
        r = lvsdr_forked(self.node.ns, *args, preload=preload) if forked else lvsdr_in(self.node.ns, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        return list(json.loads(r.stdout)["changes"])

    def install(self, data: dict[str, Any], tmp: Path) -> None:
        """Replace the watched file as an editor does (a rename), and wait for the new config."""
        before = self.conf.read_bytes()
        nxt = tmp / "next.json"
        nxt.write_text(json.dumps(data))
        os.replace(nxt, self.lab.cluster_path)
        poll(lambda: self.conf.read_bytes() != before, "watch installed the edit", 30 * TIME_SCALE, interval=0.2,
             explain=lambda: "watch's log:\n" + self.log_path.read_text(errors="replace")[-4000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One lab for the module (a lab's start is a minute of the guest's time):
    sync.toml without sync, an alt service, a long drain_timeout; each test
    starts from that file (``fresh``)."""
    tmp = tmp_path_factory.mktemp("edits")
    path = tmp / "edits.json"
    path.write_text(json.dumps(initial()))
    with make_lab(path, tmp, hook="fifo") as lab:
        STARTED[lab.cluster_path] = Path(lab.cluster_path).read_text()  # the lab's copy: its state_dir set
        yield lab


STARTED: dict[str, str] = {}  # each lab's cluster file as it started (what ``fresh`` puts back)


def initial() -> dict[str, Any]:
    import tomllib

    data = tomllib.loads((HERE / "sync.toml").read_text().replace("sync_daemon = true\n", ""))
    data["services"].append(ALT_SERVICE)
    data["cluster"]["drain_timeout"] = DRAIN_TIMEOUT
    return data


def weights(node: Node, key: Key) -> dict[str, int]:
    """A service's real servers and their weights in the node's IPVS ({} while it has none)."""
    svc = live(node).get(key)
    return {d.address: v.weight for d, v in svc.dests.items()} if svc is not None else {}


def fresh(lab: Lab, tmp: Path) -> tuple[Node, Watching]:
    """The MASTER with both backends of each service in IPVS, the file as the
    module started it (put back by `lvsdr watch` if a test before edited it),
    and that watch running."""
    master = lab.wait_for_master(30 * TIME_SCALE)
    w = Watching(lab, master, tmp)
    try:
        w.ready()
        if json.loads(Path(lab.cluster_path).read_text()) != json.loads(STARTED[lab.cluster_path]):
            nxt = tmp / "initial.json"
            nxt.write_text(STARTED[lab.cluster_path])  # the lab's own copy: its state_dir (initial() has the default)
            os.replace(nxt, lab.cluster_path)  # its config may render alike: waited for in IPVS, below
        both = {a: 1 for a in ADDRESS.values()}
        poll(lambda: weights(master, HTTP) == both and weights(master, ALT) == both,
             "both backends of each service in IPVS at weight 1", 30 * TIME_SCALE, interval=0.5,
             explain=lambda: "watch's log:\n" + w.log_path.read_text(errors="replace")[-4000:])
        time.sleep(2)  # a reload by the first pass (the same table) has settled
    except BaseException:
        w.stop()
        raise
    return master, w


@pytest.fixture(scope="class")
def sync_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """sync.toml as it is, with PREEMPT_DELAY. Its tests come first in the module: the lab is gone before the
    module's lab starts (the same cluster name)."""
    tmp = tmp_path_factory.mktemp("sync")
    path = tmp / "sync.toml"
    path.write_text((HERE / "sync.toml").read_text().replace(
        "sync_daemon = true\n", f"sync_daemon = true\npreempt_delay = {PREEMPT_DELAY}\n"))
    with make_lab(path, tmp, hook="fifo") as lab:
        yield lab


class TestSync:
    def test_established_connection_survives_failover_with_sync(self, sync_lab: Lab, tmp_path: Path) -> None:
        """With sync_daemon, a download through the VIP survives the MASTER's
        death and, after PREEMPT_DELAY s as BACKUP, its return and take-over.
        (The killed MASTER's kernel keeps its own entry here; a rebooted one's
        table is empty, and what the delay waits for, the sync back, is not
        isolated by this test.)"""
        failover_during_a_stream(sync_lab, tmp_path)

    def test_a_switchover_and_back_with_sync_breaks_nothing(self, sync_lab: Lab, tmp_path: Path) -> None:
        """With sync_daemon, `lvsdr drain` on the MASTER (it waits for the sync daemon's flush of the connections
        it carries) and `--undo` move the VIPs to the other director and back while 30 downloads run and a
        request loop asks: every download completes and no request fails (a segment the new MASTER's IPVS does
        not know yet is dropped, not reset, by lvsdr's sync hold rules, and its retransmission finds it) but
        one whose connection began an instant before a move: IPVS syncs a connection at its third packet (the
        request), so one born on the old holder as the VIP moved is on neither table's peer, and the hold
        rules reset it after 5 s (at most one per move; 1 of 339 in a CI run, docs/operations.md)."""
        lb1 = sync_lab.wait_for_master(60 * TIME_SCALE)
        holds = ns_run(lb1.ns, ["nft", "list", "table", "inet", "lvsdr_sync"], check=False).stdout
        assert "192.0.2.130 tcp dport 80" in holds, holds
        daemons = ns_run(lb1.ns, ["ipvsadm", "-L", "--daemon"]).stdout  # tests/data/facts/ipvsadm-L-daemon.txt
        MEASURED.append(f"`ipvsadm -L --daemon` on the MASTER lb1: {daemons!r}")
        got = switchover_under_load(sync_lab, tmp_path, "192.0.2.130", 30, SWITCH_SECONDS, 46000)
        MEASURED.append(f"IPVS switchover and back with lvs_sync_daemon: {got.summary()}; the drain said: "
                        f"{' / '.join(got.drained.splitlines())}")
        assert "sync daemon runs here" in got.drained, got.drained
        assert got.complete == got.streams and len(got.moves) == 2, got.summary()
        straddled = got.at_a_move()
        assert [f for f in got.failures if f not in straddled] == [] and len(straddled) <= len(got.moves), \
            got.summary()


def failover_during_a_stream(lab: Lab, tmp_path: Path) -> None:
    """A stream through the VIP while the MASTER is killed and comes back (sync_daemon on), measured and asserted
    as the test says."""
    seconds = FAILBACK_SECONDS
    old = lab.wait_for_master(30 * TIME_SCALE)
    body = tmp_path / "body"
    download = stream(lab, old, body, seconds, 44001)
    try:
        backup = next(d for d in lab.state.directors if d.name != old.name)
        # the BACKUP has the connection in its table before the MASTER dies
        poll(lambda: "ESTABLISHED" in read_net(backup.ns, "ip_vs_conn"),
             "the connection synced to the BACKUP", 10 * TIME_SCALE, interval=0.3)
        at_kill = len(body.read_text().split())
        probes.kill_director(lab, old)
        # the old MASTER comes back (link, keepalived): BACKUP for PREEMPT_DELAY s, then MASTER again
        poll(lambda: lab.master() == backup, "the BACKUP took over", 20 * TIME_SCALE, interval=0.2)
        ns_run(old.ns, ["ip", "link", "set", old.ifname, "up"])
        lab.start_keepalived(old)
        returned = time.monotonic()
        synced = poll(lambda: "ESTABLISHED" in read_net(old.ns, "ip_vs_conn"),
                      "the connection synced back to the old MASTER", (PREEMPT_DELAY + 30) * TIME_SCALE,
                      interval=0.5)
        back = poll(lambda: lab.master() == old, "the old MASTER back", (PREEMPT_DELAY + 60) * TIME_SCALE,
                    interval=0.2) + synced
        at_back = len(body.read_text().split())
        assert time.monotonic() - returned >= PREEMPT_DELAY - 1, "the returning MASTER did not wait"
        rc = download.wait(timeout=seconds * 3 + 60)
    finally:
        download.wait(0)  # cut, if a failure left it running
    lines = body.read_text().split() if body.exists() else []
    MEASURED.append(f"IPVS with lvs_sync_daemon: a {seconds} s stream through the VIP, the MASTER killed at line "
                    f"{at_kill}, back (preempt_delay {PREEMPT_DELAY}): the connection in its table {synced:.1f} s "
                    f"(its kernel kept the entry: keepalived died, not the box) and MASTER again {back:.1f} s "
                    f"after its return, at line {at_back}: curl exit {rc}, {len(lines)} of {seconds * 4}")
    assert at_kill < seconds * 4 - 24, "the failover came too late in the stream to tell"
    assert at_back < seconds * 4 - 16, "the fail-back came too late in the stream to tell"
    assert rc == 0 and len(lines) == seconds * 4 and len(set(lines)) == 1


def test_each_plan_is_the_delta_the_reload_makes(lab: Lab, tmp_path: Path) -> None:
    """After each edit of every kind (a weight, a scheduler, a real server removed and put back, a service removed
    and added), `lvsdr plan` (before the edit is saved) equals the change of the director's IPVS table that
    `lvsdr watch`'s reload makes (the program for the first edit, then its main() in a fork of the test: the same
    code without a Python start and its imports, seconds in the guest)."""
    master, w = fresh(lab, tmp_path)
    done: list[str] = []

    def service(data: dict[str, Any], name: str) -> dict[str, Any]:
        return next(s for s in data["services"] if s["name"] == name)

    def backends(name: str, *entries: Any) -> Callable[[dict[str, Any]], None]:
        return lambda data: service(data, name).update(backends=list(entries))

    # one of each kind, in an order where each applies (the random mix of the test below covers the rest)
    edits: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("http: web2 weight 3", backends("http", "web1", {"server": "web2", "weight": 3})),
        ("http: scheduler wrr", lambda data: service(data, "http").update(scheduler="wrr")),
        ("alt: remove web1", backends("alt", "web2")),
        ("alt: add web1 back", backends("alt", "web2", "web1")),
        ("remove service alt", lambda data: data["services"].remove(service(data, "alt"))),
        ("add service alt", lambda data: data["services"].append(json.loads(json.dumps(ALT_SERVICE)))),
        ("http: remove web2", backends("http", "web1")),
    ]
    try:
        flipped = backend_up_flips(lab, master, tmp_path)
        data = json.loads(Path(lab.cluster_path).read_text())
        for what, change in edits:
            change(data)
            nxt = tmp_path / "plan.json"
            nxt.write_text(json.dumps(data))
            before = live(master)
            asked = time.monotonic()
            planned = comparable(w.plan(nxt, forked=bool(done)))  # the program once, then its main() forked
            planning = time.monotonic() - asked
            assert planned, f"{what}: the plan is empty"
            w.install(data, tmp_path)
            took = poll(lambda: observed(before, master) == planned,  # noqa: B023 - called within the iteration
                        f"the reload's delta equal to the plan ({what})", 30 * TIME_SCALE, interval=0.3)
            time.sleep(1)
            seen = observed(before, master)
            assert seen == planned, f"{what}: planned {planned}, the reload did {seen}"
            done.append(f"{what} ({len(planned)} changes, `lvsdr plan` {planning:.1f} s, the reload's delta "
                        f"{took:.1f} s after watch installed it)")
    finally:
        w.stop()
    MEASURED.append(f"IPVS plan vs reload: {len(done)} edits, each plan equal to the reload's delta: {'; '.join(done)}")
    MEASURED.append(f"IPVS metrics: {flipped}")


class Requests:
    """Requests through a VIP from the client, ``threads`` in a row at once,
    in this process: each one's start, end and outcome ("" when answered)."""

    def __init__(self, lab: Lab, ip: str, threads: int = 2, pause: float = 0.5, timeout: float = 20.0) -> None:
        self.results: list[tuple[float, float, str]] = []
        self._stop = threading.Event()

        def client() -> None:
            while not self._stop.is_set():
                start = time.monotonic()
                body, why = probes.http_request(lab, ip, timeout=timeout)
                self.results.append((start, time.monotonic(), why if body is None else ""))
                self._stop.wait(pause)

        self._threads = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


class SchedulerSwaps:
    """A service's scheduler as the director's kernel has it, read every
    ``interval`` s in this process: each change as (the last read with the
    old one, the first with the new one; "none" between is the swap itself)."""

    def __init__(self, node: Node, key: Key, interval: float = 0.05) -> None:
        self.swaps: list[tuple[float, float, str]] = []
        self._stop = threading.Event()

        def watch() -> None:
            enter(node.ns)
            last, at = "", 0.0
            while not self._stop.is_set():
                with open("/proc/thread-self/net/ip_vs", encoding="ascii") as f:
                    svc = parse_proc(f.read()).get(key)
                now, sched = time.monotonic(), svc.scheduler if svc is not None else ""
                if sched and sched != "none":
                    if last and sched != last:
                        self.swaps.append((at, now, f"{last} -> {sched}"))
                    last, at = sched, now
                self._stop.wait(interval)

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_edits_under_load_fail_no_request(lab: Lab, tmp_path: Path) -> None:
    """20 random edits (add, remove, reweight, scheduler, a service) under continuous requests: none fails but a
    new connection that arrives while the kernel swaps a scheduler (refused, as `lvsdr plan` warns); a stream to
    the backend removed first runs to its end at weight 0, and the backend goes once it has ended; the guard
    (watch's default window) rolls none of them back."""
    master, w = fresh(lab, tmp_path)
    body = tmp_path / "stream"
    swaps = SchedulerSwaps(master, HTTP)
    # a generous timeout: in a TCG guest a slow answer is not a failed request
    load = Requests(lab, "192.0.2.130")
    stream = probes.Stream(lab.state.client.ns, "192.0.2.130", 80, f"/stream?seconds={STREAM_SECONDS}", 42000,
                           body, STREAM_SECONDS * 3 + 60)
    done: list[str] = []
    gone_after = -1.0
    try:
        poll(lambda: body.exists() and body.stat().st_size > 0, "the stream started", 10 * TIME_SCALE)
        streamed = body.read_text().split()[0]
        data = json.loads(Path(lab.cluster_path).read_text())
        http = data["services"][0]
        http["backends"] = [b for b in http["backends"] if (b if isinstance(b, str) else b["server"]) != streamed]
        w.install(data, tmp_path)
        removed_at = len(body.read_text().split())
        done.append(f"remove {streamed}")
        dest = Dest(ADDRESS[streamed], 80)
        poll(lambda: live(master)[HTTP].dests.get(dest) is not None and live(master)[HTTP].dests[dest].weight == 0,
             f"{streamed} leaving at weight 0", 20 * TIME_SCALE, interval=0.3)
        rng = random.Random(2)  # as above, the streamed backend kept out of http
        for _ in range(19):
            what = edit(data, rng, keep_out=streamed)
            w.install(data, tmp_path)
            done.append(what)
            time.sleep(0.5)
        rc = stream.wait(STREAM_SECONDS * 3 + 60)
        ended = time.monotonic()
        if streamed not in [b if isinstance(b, str) else b["server"] for b in data["services"][0]["backends"]]:
            gone_after = poll(lambda: dest not in live(master)[HTTP].dests, f"{streamed} gone after its stream",
                              30 * TIME_SCALE, interval=0.5)
        else:
            gone_after = time.monotonic() - ended
        time.sleep(1)
    finally:
        load.stop()
        swaps.stop()
        stream.wait(1)
        w.stop()
    lines = body.read_text().split()
    # a refused request explained by a swap: under way while the kernel's scheduler was none (the reads either side
    # of it, plus a read's time: the reading thread shares this process with the requests')
    slack = 0.5 * TIME_SCALE

    def in_swap(start: float, end: float) -> bool:
        return any(start <= after + slack and end >= before - slack for before, after, _ in swaps.swaps)

    at_swaps = [r for r in load.results if r[2] == "refused" and in_swap(r[0], r[1])]
    failed = [f"{r[2]} {r[0] - load.results[0][0]:.1f} s in" for r in load.results if r[2] and r not in at_swaps]
    slowest = max(end - start for start, end, _ in load.results)
    scheduled = [d for d in done if d.startswith("http: scheduler")]
    rollbacks = w.log_path.read_text(errors="replace").count("rolled back to the last working config")
    MEASURED.append(f"IPVS edits under load: 20 edits ({', '.join(done)}); {len(load.results)} requests, "
                    f"{len(failed)} failed {failed}, {len(at_swaps)} refused while the kernel swapped http's scheduler "
                    f"({len(swaps.swaps)} swaps seen for {len(scheduled)} scheduler edits; each swap's reads "
                    f"{max((a - b for b, a, _ in swaps.swaps), default=0.0):.2f} s apart at most); the slowest took "
                    f"{slowest:.1f} s; the stream to {streamed} (removed at its line {removed_at}) ended with exit "
                    f"{rc}, {len(lines)} of {STREAM_SECONDS * 4} lines; {streamed} out of IPVS {gone_after:.1f} s "
                    f"after it ended; {rollbacks} rolled back by the guard")
    assert removed_at < STREAM_SECONDS * 4 - 40, "the removal came too late in the stream to tell"
    assert rc == 0 and len(lines) == STREAM_SECONDS * 4 and set(lines) == {streamed}
    assert len(load.results) > 50 and not failed
    assert rollbacks == 0, "the guard rolled back a good edit"
    # the swaps were seen (one per edit, or fewer where keepalived took two reloads as one)
    assert 0 < len(swaps.swaps) <= len(scheduled) or not scheduled, f"swaps {swaps.swaps} for {scheduled}"


def test_a_client_reusing_the_port_of_a_removed_real_server_is_served(lab: Lab, tmp_path: Path) -> None:
    """The agent sets IPVS's conn_reuse_mode 3 and expire_nodest_conn 1 on each director; then a new connection
    that reuses the client port of one to a real server that has since left IPVS (its entry in FIN_WAIT, the last
    state a DR director sees) is served by another real server at once (with the kernel's defaults its SYNs are
    dropped until that entry expires: two minutes)."""
    wanted = {"conn_reuse_mode": "3", "expire_nodest_conn": "1"}

    def settings() -> dict[str, str]:
        return {k: Path(f"/proc/sys/net/ipv4/vs/{k}").read_text().strip() for k in wanted}

    for d in lab.state.directors:
        poll(lambda: in_ns(d.ns, settings, "IPVS's sysctls") == wanted,  # noqa: B023 - called within the iteration
             f"the agent's IPVS settings on {d.name}", 30 * TIME_SCALE, interval=0.5)
    master, w = fresh(lab, tmp_path)  # both real servers in IPVS
    w.stop()
    port = 43000

    def get() -> tuple[str | None, float]:
        """GET / through the VIP from client port ``port``: the answering server and the time it took."""

        def go() -> tuple[str | None, float]:
            started = time.monotonic()
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", port))
                s.settimeout(10 * TIME_SCALE)
                try:
                    s.connect(("192.0.2.130", 80))
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                except OSError:
                    return None, time.monotonic() - started
            return data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip() or None, time.monotonic() - started

        return in_ns(lab.state.client.ns, go, f"GET from port {port}")

    first, _ = get()
    assert first in ADDRESS, first
    entry = f" {port:04X} C0000282 0050 {int(ipaddress.ip_address(ADDRESS[first])):08X} 0050 FIN_WAIT "
    poll(lambda: entry in f" {' '.join(read_net(master.ns, 'ip_vs_conn').split())} ",
         f"the first connection's entry in FIN_WAIT ({entry.strip()})", 10 * TIME_SCALE, interval=0.2,
         explain=lambda: read_net(master.ns, "ip_vs_conn"))
    real = f"{ADDRESS[first]}:80"
    ns_run(master.ns, ["ipvsadm", "-d", "-t", "192.0.2.130:80", "-r", real])  # as keepalived removes a real server
    try:
        again, took = get()
    finally:
        ns_run(master.ns, ["ipvsadm", "-a", "-t", "192.0.2.130:80", "-r", real, "-g", "-w", "1"])  # as it was
    MEASURED.append(f"IPVS port reuse: client port {port} served by {first}, {first} then deleted from IPVS; the "
                    f"next connection from that port (its entry in FIN_WAIT) answered by {again} after {took:.2f} s")
    assert again is not None and again != first, f"the reused port got {again!r} after {took:.1f} s"


def test_an_edit_that_splits_vrrp_is_rolled_back_under_load(lab: Lab, tmp_path: Path) -> None:
    """A virtual_router_id edit that only the MASTER's watch installs: the BACKUP no longer hears it and takes
    the VIP too (a split); within the guard's window (10 s) the MASTER's watch puts the last working config back,
    one director holds the VIP again; requests through the VIP meanwhile are counted."""
    master, w = fresh(lab, tmp_path)
    load = Requests(lab, "192.0.2.130", timeout=3)
    try:
        time.sleep(1)
        data = json.loads(Path(lab.cluster_path).read_text())
        good = json.loads(json.dumps(data))
        data["cluster"]["virtual_router_id"] = 99
        working = w.conf.read_text()
        saved = time.monotonic()
        w.install(data, tmp_path)
        poll(lambda: b"rolled back to the last working config" in w.log_path.read_bytes(),
             "the MASTER's watch rolled back", 60 * TIME_SCALE, interval=0.2,
             explain=lambda: w.log_path.read_text(errors="replace")[-4000:])
        took = time.monotonic() - saved
        one = poll(lambda: lab.master() is not None, "one director holds the VIP", 60 * TIME_SCALE, interval=0.2)
        # the MASTER preempts back (the other took the instance during the split): settled before the next test
        poll(lambda: getattr(lab.master(), "name", None) == master.name, f"{master.name} the MASTER again",
             60 * TIME_SCALE, interval=0.2)
        held = time.monotonic()
        while time.monotonic() - held < 4:  # and it stays so (4 adverts)
            if getattr(lab.master(), "name", None) != master.name:
                poll(lambda: getattr(lab.master(), "name", None) == master.name, f"{master.name} the MASTER again",
                     60 * TIME_SCALE, interval=0.2)
                held = time.monotonic()
            time.sleep(0.2)
    finally:
        load.stop()
        w.stop()
        # the file as it runs again (a later test's `watch --once` would install the split edit, with no guard)
        nxt = tmp_path / "good.json"
        nxt.write_text(json.dumps(good))
        os.replace(nxt, lab.cluster_path)
    why = next(json.loads(line)["why"] for line in w.log_path.read_text(errors="replace").splitlines()
               if "rolled back to the last working config" in line)
    failed = [r for r in load.results if r[0] >= saved and r[2]]
    MEASURED.append(f"IPVS guarded apply: virtual_router_id 99 installed by the MASTER's watch alone: rolled back "
                    f"{took:.1f} s after the save ({why}), one VIP holder {one:.1f} s after that; requests "
                    f"meanwhile: {len(failed)} failed of {len([r for r in load.results if r[0] >= saved])}")
    assert "VRRP split" in why or "nobody holds" in why, why
    assert w.conf.read_text() == working


def test_an_edit_adding_a_backend_without_the_vip_keeps_it_out(lab: Lab, tmp_path: Path) -> None:
    """An edit adds a service on a new VIP whose backends are web1, which lacks the VIP (its real-server set-up
    was not run), and web2, which has it: the MASTER's watch writes web1's DR verdict 1 before the reload, so
    keepalived adds web1 held out (its own TCP check to web1's address passes); web1 is never in IPVS, no request
    through the new VIP fails, and the guard keeps the edit (a new backend failing its path is not a
    regression)."""
    extra_vip, web2 = "192.0.2.131", lab.state.node("web2")
    master, w = fresh(lab, tmp_path)
    key = Key("TCP", extra_vip, 80)
    seen: set[str] = set()
    stop = threading.Event()

    def sample() -> None:  # every real server IPVS ever held for the new service
        while not stop.is_set():
            seen.update(weights(master, key))
            stop.wait(0.1)

    ns_run(web2.ns, ["ip", "addr", "add", f"{extra_vip}/32", "dev", "lo", "label", "lo:lvsdr"])
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    load: Requests | None = None
    data = json.loads(Path(lab.cluster_path).read_text())
    good = json.loads(json.dumps(data))
    try:
        data["services"].append({"name": "extra", "vip": extra_vip, "port": 80, "scheduler": "rr", "delay_loop": 2,
                                 "backends": ["web1", "web2"], "check": {"type": "tcp", "connect_timeout": 1}})
        mark = len(w.log_path.read_bytes())  # the watch's lines from the edit on
        w.install(data, tmp_path)
        poll(lambda: weights(master, key) == {ADDRESS["web2"]: 1}, "the new service in IPVS with web2",
             30 * TIME_SCALE, interval=0.1, explain=lambda: w.log_path.read_text(errors="replace")[-4000:])
        load = Requests(lab, extra_vip, timeout=3)
        poll(lambda: b"guard: the new config holds" in w.log_path.read_bytes()[mark:], "the guard kept the edit",
             60 * TIME_SCALE, interval=0.2, explain=lambda: w.log_path.read_text(errors="replace")[-4000:])
        time.sleep(2)
        load.stop()
        path = lab.state_dir / f"dr-ipvss-{master.name}-extra-web1"
        verdict = path.read_text() if path.exists() else "absent"
    finally:
        stop.set()
        sampler.join()
        if load is not None:
            load.stop()
        w.stop()
        nxt = tmp_path / "good.json"
        nxt.write_text(json.dumps(good))
        os.replace(nxt, lab.cluster_path)
        ns_run(web2.ns, ["ip", "addr", "del", f"{extra_vip}/32", "dev", "lo"], check=False)
    failed = [r for r in load.results if r[2]]
    log = w.log_path.read_text(errors="replace")
    agent = "\n".join(line for line in (lab.state_dir / f"agent-{master.name}.log").read_text(errors="replace")
                      .splitlines() if "DR" in line or "cluster file" in line or "extra" in line)[-4000:]
    agent += "\n--- files: " + " ".join(sorted(p.name for p in lab.state_dir.glob("dr-*")))
    # whichever takes the edit first writes web1's verdict 1 before keepalived reads it: the watch (before its
    # reload) or the agent (its new pair starts out)
    by = "the watch" if "new backends held out until their DR path passes" in log else "the agent"
    MEASURED.append(f"IPVS edit adding a backend without the VIP: held out before the reload (by {by}), never in "
                    f"IPVS (IPVS held {sorted(seen)}); {len(failed)} of {len(load.results)} requests through the new "
                    "VIP failed; the guard kept the edit")
    assert ADDRESS["web1"] not in seen, (seen, log[-3000:], agent)
    assert verdict == "1\n", (verdict, agent)
    assert not failed and len(load.results) >= 4, load.results
    assert "rolled back" not in log


def test_a_drained_backend_finishes_its_connections(lab: Lab, tmp_path: Path) -> None:
    """Draining (weight 0, saved in the cluster file, applied by `lvsdr watch
    --once`): the established stream to the drained backend runs to its end,
    every new connection goes to the other backend."""
    master = lab.wait_for_master(30 * TIME_SCALE)
    body = tmp_path / "body"
    download = stream(lab, master, body, DRAIN_SECONDS, 44002)
    try:
        drained = body.read_text().split()[0]
        other = "web2" if drained == "web1" else "web1"
        drained_ip = {"web1": "192.0.2.11", "web2": "192.0.2.12"}[drained]
        data = json.loads(Path(lab.cluster_path).read_text())
        data["services"][0]["backends"] = [{"server": drained, "weight": 0}, other]
        Path(lab.cluster_path).write_text(json.dumps(data))
        started = time.monotonic()
        r = lvsdr_in(master.ns, "watch", lab.cluster_path, "--node", master.name,
                     "-o", str(lab.state_dir / f"keepalived-{master.name}.conf"),
                     "--pidfile", str(lab.state_dir / f"keepalived-{master.name}.pid"), "--hook", "fifo",
                     "--lvsdr-path", lab._console(), "--config-path", lab.cluster_path,
                     "--notify-fifo", str(lab.state_dir / f"{master.name}.fifo"), "--once")
        assert r.returncode == 0, r.stdout + r.stderr
        watched = time.monotonic() - started
        took = poll(lambda: probes.ipvs_table(lab, master).get(SERVICE, {}).get(drained_ip) == 0,
                    "the drained backend at weight 0 in IPVS", 10 * TIME_SCALE, interval=0.2)
        at_drain = len(body.read_text().split())
        fresh = [probes.http_get(lab, "192.0.2.130", timeout=5) for _ in range(10)]
        rc = download.wait(timeout=DRAIN_SECONDS * 3 + 60)
    finally:
        download.wait(0)  # cut, if a failure left it running
    lines = body.read_text().split()
    MEASURED.append(f"IPVS drain: `watch --once` took {watched:.1f} s; {drained} at weight 0 {took:.1f} s "
                    f"after it, at line {at_drain}; the stream ended with curl exit {rc}, {len(lines)} of "
                    f"{DRAIN_SECONDS * 4} lines from {sorted(set(lines))};"
                    f" 10 new requests: {sorted(set(map(str, fresh)))}")
    assert at_drain < DRAIN_SECONDS * 4 - 16, "the drain came too late in the stream to tell"
    assert rc == 0 and len(lines) == DRAIN_SECONDS * 4 and set(lines) == {drained}
    assert fresh == [other] * 10
