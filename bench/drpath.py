"""Benchmark: the agent's DR-path checks, CPU per round for 100 and 1,000
backends (docs/dr-check.md).

Runs in a scratch network namespace made for the purpose (root needed): a
director whose interface is a veth whose peer nobody reads, with a
permanent neighbour entry for every backend. Each round is what the agent
does (hooks/drpath.py): the neighbour table read, a SYN per path, an ARP
request per VIP held, the round concluded with its verdict files; then,
measured apart, the answers: a SYN-ACK per path read and reset (what a
healthy cluster sends back), fed to the prober's own reader. Then, for 1,000
backends, the detection time: one path stops answering at a random moment of
a round, rounds go on at the agent's interval on the wall clock, and the time
to its verdict is taken (``--trials`` faults).

Reports the CPU time per round (median of ``--rounds``) and what it costs at
the defaults' 0.5 s interval and at 1 s, in percent of one core.

    .venv/bin/python bench/drpath.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

NS = f"lvsdr-bench-dr-{os.getpid()}"


class Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def cluster_of(backends: int, state_dir: str) -> Any:
    """A cluster of two directors and ``backends`` paths: real servers behind 5 services (IPv4, at most 1,250)."""
    from lvsdr.generator.load import parse_cluster

    per = max(1, backends // 5)  # each real server backs the 5 services: 5 paths each
    servers = [{"name": f"rs{i}", "address": f"198.51.100.{i + 1}"} for i in range(per)]
    services = [{"name": f"s{j}", "vip": f"203.0.113.{251 + j % 4}", "port": 80 + j,
                 "backends": [s["name"] for s in servers]} for j in range(5)]
    data = {"cluster": {"name": "bench", "virtual_router_id": 9, "state_dir": state_dir, "hook": "fifo"},
            "directors": [{"name": "lb1", "address": "198.51.100.254", "priority": 100},
                          {"name": "lb2", "address": "198.51.100.253", "priority": 90}],
            "real_servers": servers, "services": services}
    return parse_cluster(data)


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def setup(c: Any) -> None:
    run("ip", "netns", "add", NS)
    run("ip", "-n", NS, "link", "add", "eth0", "type", "veth", "peer", "name", "sink")
    run("ip", "-n", NS, "link", "set", "eth0", "up")
    run("ip", "-n", NS, "link", "set", "sink", "up")
    run("ip", "-n", NS, "addr", "add", "198.51.100.254/24", "dev", "eth0")
    for j in range(4):
        run("ip", "-n", NS, "addr", "add", f"203.0.113.{251 + j}/32", "dev", "eth0")  # held: ARP watched
    batch = "".join(f"neigh replace {r.address} lladdr 02:00:00:00:{i // 256:02x}:{i % 256:02x} dev eth0 "
                    f"nud permanent\n" for i, r in enumerate(c.real_servers))
    subprocess.run(["ip", "-n", NS, "-batch", "-"], input=batch, text=True, check=True, capture_output=True)


def measure(backends: int, rounds: int, trials: int = 0) -> dict[str, float]:
    from lvsdr.generator.frames import TCP_ACK, TCP_SYN, parse_reply, tcp_syn
    from lvsdr.hooks.drpath import DrProbe

    with tempfile.TemporaryDirectory() as state:
        c = cluster_of(backends, state)
        setup(c)
        try:
            from lvsdr.lab.netns import enter

            enter(NS)  # this thread (the main one): the probes' sockets are the namespace's
            probe = DrProbe(c, "lb1", Quiet())
            paths = len(probe.targets)
            cpu, answers = [], []
            for _ in range(rounds):
                probe.due = 0.0
                t0 = time.process_time()
                probe.tick()  # concludes the last round (none answered), starts the next
                cpu.append(time.process_time() - t0)
                # a healthy cluster's answers: a SYN-ACK per path, as the socket hands them over
                assert probe.rnd is not None
                frames = []
                for seq, (t, mac, me) in probe.rnd.probes.items():
                    f = tcp_syn(mac, probe.mac, t.vip, me, t.port, probe.port, 7)
                    # a SYN-ACK acknowledging the probe's sequence number
                    tcp_at = 34
                    f = f[:tcp_at + 8] + (seq + 1).to_bytes(4, "big") + f[tcp_at + 12:tcp_at + 13] + \
                        bytes([TCP_SYN | TCP_ACK]) + f[tcp_at + 14:]
                    frames.append(f)
                t0 = time.process_time()
                for f in frames:
                    r = parse_reply(f)
                    assert r is not None
                    probe.on_tcp(r)
                answers.append(time.process_time() - t0)
                assert not probe.rnd.probes, "every probe answered"
            detect = detection(probe, trials) if trials else []
            probe.close()
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=False)
    per_round = statistics.median(cpu) + statistics.median(answers)
    return {"paths": paths, "round_ms": statistics.median(cpu) * 1000, "answers_ms": statistics.median(answers) * 1000,
            "core_at_0.5s": per_round / 0.5 * 100, "core_at_1s": per_round / 1.0 * 100,
            "detect_median": statistics.median(detect) if detect else math.nan,
            "detect_worst": max(detect) if detect else math.nan}


def answer(probe: Any, broken: Any) -> None:
    """A SYN-ACK for every probe in flight but those to ``broken`` (the fault: its answers stop)."""
    from lvsdr.generator.frames import TCP_ACK, TCP_SYN, Reply

    for seq, (t, _mac, _me) in list(probe.rnd.probes.items()):
        if t != broken:
            probe.on_tcp(Reply(t.vip, t.port, probe.port, TCP_SYN | TCP_ACK, False, seq + 1))


def detection(probe: Any, trials: int) -> list[float]:
    """Seconds from a fault (one path stops answering, at a random moment of a round) to its verdict written, on
    the agent's own clock: rounds every ``interval`` s on the wall clock, answers as a healthy backend gives them."""
    import random

    out = []
    for _ in range(trials):
        broken = random.choice(probe.targets)
        pair = (broken.service, broken.backend)
        # healthy first: three rounds answered
        for _ in range(3):
            probe.due = 0.0
            probe.tick()
            answer(probe, None)
        assert probe.verdicts.pairs[pair].up
        fault = time.monotonic() + random.uniform(0, probe.interval)
        probe.due = time.monotonic() + probe.interval
        while time.monotonic() < fault:  # the fault comes somewhere in this round, after its probes were answered
            time.sleep(0.001)
        while probe.verdicts.pairs[pair].up:
            time.sleep(max(0.0, probe.due - time.monotonic()))
            probe.tick()
            answer(probe, broken)
        out.append(time.monotonic() - fault)
        for _ in range(4):  # back up before the next trial
            probe.due = 0.0
            probe.tick()
            answer(probe, None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=20, help="faults timed for 1,000 backends (0: none)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/drpath.py: needs root (a scratch network namespace)", file=sys.stderr)
        return 2
    for backends in (100, 1000):
        m = measure(backends, args.rounds, args.trials if backends == 1000 else 0)
        print(f"{backends} backends ({m['paths']} paths): a round {m['round_ms']:.1f} ms of CPU (neighbour table, "
              f"SYNs, ARP, verdicts), the answers {m['answers_ms']:.1f} ms (SYN-ACKs read, RSTs sent): "
              f"{m['core_at_0.5s']:.2f}% of a core at the 0.5 s default, {m['core_at_1s']:.2f}% at 1 s")
        if not math.isnan(m["detect_median"]):
            print(f"  detection at the defaults (0.5 s, fall 2), {args.trials} faults at random moments: median "
                  f"{m['detect_median']:.2f} s, worst {m['detect_worst']:.2f} s (bound 1.5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
