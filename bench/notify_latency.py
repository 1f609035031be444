"""Benchmark: how long keepalived's transition waits on `lvsdr notify`,
against the hook an operator writes by hand (bench/baseline-hook.sh), in the
same run, alternating.

Runs in a scratch network namespace made for the purpose (root needed):
director node1 of examples/pair.toml, a director that is also a real server
(nftables method). Each measured call starts from the other role's steady
state, with the VIP added (MASTER) or removed (BACKUP) as keepalived does
before calling the hook. Reports median wall times and peak RSS of both
hooks per event, their ratio, `lvsdr notify` with nothing to change, the
agent's in-process reconcile and resident size, and the heaviest imports.

    .venv/bin/python bench/notify_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NS = f"lvsdr-bench-{os.getpid()}"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


RECONCILE_MS: list[float] = []


def timed(cmd: list[str]) -> float:
    took, _rss = measured(cmd)
    return took


def measured(cmd: list[str]) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one run of ``cmd``."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, LVSDR_LOG="stderr"))
    assert p.stderr is not None
    err = p.stderr.read()
    _pid, status, usage = os.wait4(p.pid, 0)
    took = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {p.returncode}: {err}")
    for line in err.splitlines():  # the hook's own log: how long its reconcile took
        if line.startswith("{") and '"vrrp transition"' in line:
            RECONCILE_MS.append(json.loads(line)["ms"])
    return took, usage.ru_maxrss


def agent_over_fifo(inns: list[str], lvsdr: str, cluster: Path, fifo: Path, runs: int,
                    vip: Callable[[bool], None]) -> tuple[list[float], list[float], int]:
    """`lvsdr agent` as keepalived drives it: the VIP changed, then one event
    line written to the FIFO. Returns the agent's own figure per transition
    (FIFO read to node reconciled, its log line's ms), the wall time from the
    write to that log line here, and the agent's resident KiB."""
    vip(False)  # the agent starts on a BACKUP; each event then changes the role
    p = subprocess.Popen([*inns, lvsdr, "agent", str(cluster), "--node", "node1", "--fifo", str(fifo),
                          "--interval", "3600"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, LVSDR_LOG="stderr"))  # `ip netns exec` execs: p.pid is the agent

    def line(needle: str) -> dict[str, Any]:
        assert p.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and select.select([p.stderr], [], [], 1)[0]:
            text = p.stderr.readline()
            if needle in text:
                event: dict[str, Any] = json.loads(text)
                return event
        raise SystemExit(f"agent: no {needle} line")

    try:
        line('"agent started"')
        fd = os.open(fifo, os.O_WRONLY)
        logged, walls = [], []
        for i in range(runs):
            state = "MASTER" if i % 2 == 0 else "BACKUP"
            vip(state == "MASTER")
            t0 = time.perf_counter()
            os.write(fd, f'INSTANCE "VI_pair" {state} 200\n'.encode())
            event = line('"vrrp transition"')
            walls.append(time.perf_counter() - t0)
            if event["observed_role"] != state or not event["changes"]:
                raise SystemExit(f"agent: unexpected transition {event}")
            logged.append(event["ms"] / 1000)
        os.close(fd)
        with open(f"/proc/{p.pid}/status") as f:
            rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
        return logged, walls, rss
    finally:
        p.kill()
        p.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    lvsdr = str(Path(sys.executable).parent / "lvsdr")
    baseline = str(REPO / "bench" / "baseline-hook.sh")
    with tempfile.TemporaryDirectory() as d:
        # the cluster file as operators keep it (TOML), with lvsdr's state in the scratch directory
        text = (REPO / "examples" / "pair.toml").read_text()
        cluster = Path(d) / "pair.toml"
        cluster.write_text(text.replace("[cluster]\n", f'[cluster]\nstate_dir = "{d}"\n', 1))
        assert tomllib.loads(cluster.read_text())["cluster"]["state_dir"] == d
        sh("ip", "netns", "add", NS)
        try:
            sh("ip", "-n", NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
            for dev in ("lo", "eth0", "eth1"):
                sh("ip", "-n", NS, "link", "set", dev, "up")
            sh("ip", "-n", NS, "addr", "add", "192.0.2.21/24", "dev", "eth0")
            inns = ["ip", "netns", "exec", NS]

            def hook(kind: str, state: str) -> list[str]:
                if kind == "sh":
                    return [*inns, "sh", baseline, "INSTANCE", "VI_pair", state, "200"]
                return [*inns, lvsdr, "notify", str(cluster), "--node", "node1", "INSTANCE", "VI_pair", state, "200"]

            def vip(on: bool) -> None:  # what keepalived does before it calls the hook
                subprocess.run(["ip", "-n", NS, "addr", "add" if on else "del", "192.0.2.120/32", "dev", "eth0"],
                               capture_output=True, check=False)

            floor = [timed([*inns, sys.executable, "-c", "pass"]) for _ in range(args.runs)]
            walls: dict[tuple[str, str], list[float]] = {}
            rss: dict[str, list[int]] = {"sh": [], "lvsdr": []}
            for i in range(args.runs):
                for state in ("MASTER", "BACKUP"):
                    kinds = ("sh", "lvsdr") if i % 2 == 0 else ("lvsdr", "sh")  # alternate who goes first
                    for kind in kinds:
                        # from the other role's steady state, made by lvsdr itself (untimed)
                        vip(state == "BACKUP")
                        timed(hook("lvsdr", "BACKUP" if state == "MASTER" else "MASTER"))
                        vip(state == "MASTER")
                        took, peak = measured(hook(kind, state))
                        walls.setdefault((kind, state), []).append(took)
                        rss[kind].append(peak)
            steady = [timed(hook("lvsdr", "MASTER")) for _ in range(args.runs)]  # nothing left to change
            code = ("import time,sys,subprocess; from pathlib import Path\n"
                    "from lvsdr import __version__\n"
                    "from lvsdr.generator.load import load_cluster\n"
                    "from lvsdr.generator.director import director_spec\n"
                    "from lvsdr.hooks.director import reconcile\n"
                    "from lvsdr.hooks.agent import resident_replay\n"
                    "from lvsdr.source import Source\n"
                    f"src=Source.read({str(cluster)!r}, 'node1')\n"
                    f"c=load_cluster({str(cluster)!r}); s=director_spec(c,'node1'); reconcile(s, Path(c.state_dir))\n"
                    "ts=[]; tr=[]\n"
                    f"for i in range({args.runs}):\n"
                    "    t=time.perf_counter(); reconcile(s, Path(c.state_dir)); ts.append(time.perf_counter()-t)\n"
                    "    subprocess.run(['ip','addr','del' if i % 2 else 'add','192.0.2.120/32','dev','eth0'],"
                    "capture_output=True)\n"
                    "    t=time.perf_counter(); r=resident_replay(src)\n"
                    "    tr.append(time.perf_counter()-t)\n"
                    "    assert r is not None and r[1], r\n"
                    "ts.sort(); tr.sort(); print(ts[len(ts)//2], tr[len(tr)//2])\n"
                    "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
            out = subprocess.run([*inns, sys.executable, "-c", code], check=False, capture_output=True,
                                 text=True)
            if out.returncode:
                raise SystemExit(f"agent measurement failed: {out.stderr}")
            fields = out.stdout.split()
            agent, agent_replay, agent_rss = float(fields[0]), float(fields[1]), int(fields[2])
            fifo_ms, fifo_walls, fifo_rss = agent_over_fifo(inns, lvsdr, cluster, Path(d) / "notify.fifo", args.runs,
                                                             vip)
            # as keepalived runs it: the console script
            imports = subprocess.run([*inns, sys.executable, "-X", "importtime", lvsdr, "notify",
                                      str(cluster), "--node", "node1", "INSTANCE", "VI_pair", "MASTER", "200"],
                                     capture_output=True, text=True).stderr
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=False)
    med = statistics.median
    ms = {k: med(v) * 1000 for k, v in walls.items()}
    both = {kind: med(walls[(kind, "MASTER")] + walls[(kind, "BACKUP")]) * 1000 for kind in ("sh", "lvsdr")}
    print(f"runs: {args.runs} per hook and event, alternating, in a scratch namespace; examples/pair.toml, "
          "director node1 (nftables), a director that is also a real server")
    print(f"python -c pass (floor):                 {med(floor) * 1000:6.1f} ms")
    for kind, label in (("sh", "bench/baseline-hook.sh"), ("lvsdr", "lvsdr notify")):
        print(f"{label:<24} MASTER {ms[(kind, 'MASTER')]:6.1f} ms, BACKUP {ms[(kind, 'BACKUP')]:6.1f} ms, "
              f"median of both {both[kind]:6.1f} ms, peak RSS {max(rss[kind]) / 1024:5.1f} MiB")
    print(f"ratio lvsdr / hand-written (median over both events): {both['lvsdr'] / both['sh']:.2f} (target <= 1.0)")
    print(f"lvsdr notify, nothing to change:        {med(steady) * 1000:6.1f} ms")
    print(f"  of which the reconcile itself:        {med(RECONCILE_MS):6.1f} ms (the rest: start-up, imports, log)")
    print(f"agent: a transition (replayed in process) {agent_replay * 1000:.1f} ms, a full reconcile with nothing "
          f"to change {agent * 1000:.1f} ms (medians), resident {agent_rss / 1024:.1f} MiB")
    print(f"agent through its FIFO (keepalived's vrrp_notify_fifo): FIFO read to node reconciled "
          f"{med(fifo_ms) * 1000:.1f} ms (its log's figure, target 5 ms), write to its log line "
          f"{med(fifo_walls) * 1000:.1f} ms (medians), resident {fifo_rss / 1024:.1f} MiB")
    top = sorted(((int(ln.split("|")[1]), ln.split("|")[2].strip()) for ln in imports.splitlines()
                  if ln.startswith("import time:") and ln.split("|")[1].strip().isdigit()), reverse=True)
    print("heaviest imports on the notify path: " + ", ".join(f"{n} {us / 1000:.0f} ms" for us, n in top[:5]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
