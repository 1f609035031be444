"""`lvsdr agent` keeps a live pair of directors (both also backends) true to
the cluster file through edits and crashes: an edit's marks, VIPs and
suppression follow at once, and whatever kills keepalived, the pair settles
back to one ARP owner with the other director serving as a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import kill_in_ns, ns_pids
from lvsdr.lab.topology import AGENT_INTERVAL, Lab, Node, addresses_of

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, nft, poll

pytestmark = [needs_root, pytest.mark.lab]
VIP = "192.0.2.120"


def pair_lab(tmp_path: Path, fast: bool = False) -> Lab:
    """examples/pair.toml; ``fast``: VRRPv3 adverts every 0.5 s (a takeover in ~1.5 s)."""
    text = (EXAMPLES / "pair.toml").read_text()
    if fast:
        text = text.replace("advert_int = 1\n", "advert_int = 0.5\nvrrp_version = 3\n")
    path = tmp_path / "pair.toml"
    path.write_text(text)
    return make_lab(path, tmp_path)


def explain(lab: Lab) -> str:
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(lab.state_dir.glob("*-node*.log")))
    return "\n".join(f"--- {d.name}\n{nft(d)}" for d in lab.state.directors) + "\n" + logs


def replace_file(path: Path, text: str) -> None:
    """As editors and config management do: write aside, rename over."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextmanager
def watching(lab: Lab) -> Iterator[None]:
    """`lvsdr watch` on every director, as docs/watch.md sets it up."""
    procs = []
    try:
        for node in lab.state.directors:
            log = open(lab.state_dir / f"watch-{node.name}.log", "w")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", node.ns, *lab.sandboxed("lvsdr-watch@.service"), lab._console(), "watch",
                 lab.cluster_path, "--node", node.name,
                 "-o", str(lab.state_dir / f"keepalived-{node.name}.conf"), "--pidfile", str(lab.pidfile(node)),
                 "--hook", "both", "--lvsdr-path", lab._console(), "--config-path", lab.cluster_path,
                 "--notify-fifo", lab.fifo(node)],
                stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, LVSDR_LOG="stderr")))
            log.close()
        for node in lab.state.directors:
            log_path = lab.state_dir / f"watch-{node.name}.log"
            poll(lambda: "watching" in log_path.read_text(), f"watch on {node.name} started", 10)  # noqa: B023
        yield
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def test_the_agent_follows_edits_of_the_cluster_file(tmp_path: Path) -> None:
    """Under `lvsdr watch`: a fwmark service added to the file is marked on the
    MASTER by the agent's reconcile of the edit (not its interval) and stays past two agent
    intervals; removed, its marks go; a VIP added to a director that is also a
    backend goes on its lo with ARP suppressed, and goes again when removed."""
    with pair_lab(tmp_path) as lab:
        node1, node2 = lab.state.node("node1"), lab.state.node("node2")
        assert lab.wait_for_master(10).name == "node1"
        poll(lambda: "table inet lvsdr_fwmark" in nft(node1), "node1 marks", 10, explain=lambda: explain(lab))
        cluster = Path(lab.cluster_path)
        original = cluster.read_text()
        conf = lab.state_dir / "keepalived-node1.conf"
        with watching(lab):
            # 1. a second fwmark service (its backends include the directors)
            data = json.loads(original)
            data["services"].append({"name": "alt", "vip": VIP, "port": 8080, "backends": ["node1", "node2", "web1"]})
            before = conf.read_text()
            edited = time.time()
            replace_file(cluster, json.dumps(data))
            reload_at = time.monotonic() + poll(lambda: conf.read_text() != before, "watch rewrote keepalived.conf",
                                                10)
            poll(lambda: "dport 8080" in nft(node1), "the new service's marks on the MASTER", 10,
                 explain=lambda: explain(lab))
            took = time.monotonic() - reload_at
            # the edit itself made them (inotify), not the agent's quiet interval healing drift
            poll(lambda: reconciled_on(lab, node1, "cluster file changed; reconciled", "mark VIP traffic", edited),
                 "node1's agent reconciled the edit", 10, explain=lambda: explain(lab))
            MEASURED.append(f"agent: a new fwmark service's marks on the MASTER {took:.2f} s after keepalived's reload")
            time.sleep(2 * AGENT_INTERVAL + 0.5)
            assert "dport 8080" in nft(node1), explain(lab)
            assert "dport 8080" not in nft(node2)  # the BACKUP marks nothing
            # 2. removed: its marks go
            replace_file(cluster, original)
            poll(lambda: "dport 8080" not in nft(node1), "the removed service's marks gone", 10,
                 explain=lambda: explain(lab))
            # 3. a VIP added to a service the directors back: on the BACKUP's lo, with ARP suppressed
            data = json.loads(original)
            data["services"].append({"name": "new", "vip": "192.0.2.121", "port": 80, "backends": ["node1", "node2"]})
            replace_file(cluster, json.dumps(data))
            poll(lambda: "192.0.2.121" in addresses_of(node2, "lo") and "192.0.2.121" in nft(node2),
                 "the new VIP on node2's lo with its ARP suppression", 10, explain=lambda: explain(lab))
            poll(lambda: "192.0.2.121" in addresses_of(node1, node1.ifname), "keepalived moved the new VIP", 10)
            assert [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, "192.0.2.121")] == ["node1"]
            # removed again: gone from lo and from the suppression
            replace_file(cluster, original)
            poll(lambda: "192.0.2.121" not in addresses_of(node2, "lo") and "192.0.2.121" not in nft(node2),
                 "the removed VIP gone from node2", 10, explain=lambda: explain(lab))
            MEASURED.append(f"agent follows the file: a new fwmark service marked {took * 1000:.0f} ms after "
                            "keepalived's reload (the agent reads the edit itself, by inotify)")


def settled(lab: Lab) -> bool:
    """One director holds the VIP, exactly one MAC answers ARP for it (the
    holder's), and the other director serves DR traffic as a real server."""
    master = lab.master()
    if master is None:
        return False
    owners = [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, VIP, count=2, interval=0.1)]
    if owners != [master.name]:
        return False
    other = next(d for d in lab.state.directors if d.name != master.name)
    client = lab.state.client
    subprocess.run(["ip", "-n", client.ns, "neigh", "replace", VIP, "lladdr", other.mac, "dev", client.ifname, "nud",
                    "permanent"], check=True)
    try:
        return probes.http_get(lab, VIP, timeout=1.0) == other.name
    finally:
        subprocess.run(["ip", "-n", client.ns, "neigh", "del", VIP, "dev", client.ifname], check=False)


def agent_pid(node: Node) -> int | None:
    for pid in ns_pids(node.ns):
        try:
            if b"\0agent\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def keepalived_runs(node: Node) -> bool:
    for pid in ns_pids(node.ns):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "keepalived":
                return True
        except OSError:
            continue
    return False


def reconciled_on(lab: Lab, node: Node, event: str, change: str, since: float) -> bool:
    """The node's agent logged ``event`` with a change holding ``change`` at or after ``since`` (time.time())."""
    import datetime

    for line in (lab.state_dir / f"agent-{node.name}.log").read_text().splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line and change in line:
            record = json.loads(line)
            if datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp() >= since:
                return True
    return False


def gone_after(lab: Lab, node: Node, since: float) -> tuple[float, float]:
    """Seconds from ``since`` (time.time()) to the start and to the end of the
    agent's reconcile that stepped the node back (keepalived not running, the
    VIP removed: at once by its pidfds, or by its interval if that came first).
    The start is when the agent noticed; the end is when the node had stepped
    back (the log line's time; its ``ms`` field is the reconcile's length)."""
    import datetime

    for line in (lab.state_dir / f"agent-{node.name}.log").read_text().splitlines():
        if line.startswith("{") and '"keepalived": false' in line and f"remove VIP {VIP}/32" in line:
            record = json.loads(line)
            at = datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
            if at >= since:
                return at - record["ms"] / 1000 - since, at - since
    raise AssertionError(f"{node.name}: the agent never stepped the node back")


FAULTS = ("keepalived SIGKILLed whole", "its VRRP child SIGKILLed", "SIGTERM", "link flap",
          "the agent SIGKILLed and restarted", "SIGHUP")


@pytest.mark.long
def test_the_pair_settles_after_every_fault(tmp_path: Path) -> None:
    """20 fault rounds on the MASTER of a pair of directors that are also
    backends (adverts every 0.5 s): after each, within 10 s, one director holds
    the VIP, one MAC answers ARP, and the other serves as a real server; also
    while keepalived is dead (the agent stepped the node back)."""
    with pair_lab(tmp_path, fast=True) as lab:
        lab.wait_for_master(10)
        poll(lambda: settled(lab), "the pair settled at start", 15, interval=0.1, explain=lambda: explain(lab))
        times: dict[str, float] = {}
        noticed: list[tuple[float, float]] = []
        for i in range(20):
            fault = FAULTS[i % len(FAULTS)]
            m = lab.wait_for_master(10)  # the last round's preemption may be under way: the holder once it is one
            t0 = time.monotonic()
            if fault == "keepalived SIGKILLed whole":
                killed_at = time.time()
                kill_in_ns(m.ns, "keepalived")
            elif fault == "its VRRP child SIGKILLed":
                os.kill(int(lab.pidfile(m, "vrrp").read_text().split()[0]), signal.SIGKILL)
            elif fault == "SIGTERM":
                os.kill(int(lab.pidfile(m).read_text().split()[0]), signal.SIGTERM)
            elif fault == "link flap":
                subprocess.run(["ip", "-n", m.ns, "link", "set", m.ifname, "down"], check=True)
                time.sleep(1.0)
                subprocess.run(["ip", "-n", m.ns, "link", "set", m.ifname, "up"], check=True)
            elif fault == "the agent SIGKILLed and restarted":
                pid = agent_pid(m)
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                lab.start_agent(m)
            elif fault == "SIGHUP":
                os.kill(int(lab.pidfile(m).read_text().split()[0]), signal.SIGHUP)
            time.sleep(0.2)
            poll(lambda: settled(lab), f"round {i + 1} ({fault}): settled", 10, interval=0.1,  # noqa: B023
                 explain=lambda: explain(lab))
            took = time.monotonic() - t0
            times[f"{i + 1}: {fault}"] = took
            if fault == "keepalived SIGKILLed whole":
                noticed.append(gone_after(lab, m, killed_at))
            if fault in ("keepalived SIGKILLed whole", "SIGTERM"):
                # back as operators bring it back; the pair settles again (the next round's start)
                poll(lambda: not keepalived_runs(m), "keepalived gone", 5)  # noqa: B023
                lab.start_keepalived(m)
                poll(lambda: settled(lab), f"round {i + 1}: settled after keepalived's restart", 10, interval=0.1,
                     explain=lambda: explain(lab))
        slowest = max(times, key=lambda k: times[k])
        # the bound is on noticing; stepping back is a reconcile after it, which 5 test workers on 2 cores
        # can slow (once in CI: stepped back 1.12 s after the kill); its bound is the settle time's
        assert noticed and max(n for n, _ in noticed) < 1.0, noticed
        MEASURED.append(f"fault rounds: 20 on a pair of directors that are also backends (advert 0.5 s), all settled "
                        f"(one VIP holder, one ARP owner, the other serving as a real server); slowest "
                        f"{times[slowest]:.2f} s (round {slowest}); keepalived SIGKILLed whole: the agent had "
                        f"noticed {max(n for n, _ in noticed) * 1000:.0f} ms and stepped the node back "
                        f"{max(d for _, d in noticed) * 1000:.0f} ms after the kill at the slowest")
