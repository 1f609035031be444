"""Benchmark: how long keepalived's transition waits on `lvsdr notify` (and the agent).

Runs in a scratch network namespace made for the purpose (root needed):
director node1 of examples/pair.toml holds the VIP, so each run reconciles
the MASTER role. Reports median wall times over N runs of
  - `python -c pass` (the interpreter's own floor),
  - `lvsdr notify` when the role changes (BACKUP -> MASTER),
  - `lvsdr notify` when nothing is left to change (the common repeat),
  - the agent's in-process reconcile (no interpreter start-up),
and the imports on the notify path.

    .venv/bin/python bench/notify_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NS = f"lvsdr-bench-{os.getpid()}"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


RECONCILE_MS: list[float] = []


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ, LVSDR_LOG="stderr"))
    took = time.perf_counter() - t0
    for line in p.stderr.splitlines():  # the hook's own log: how long its reconcile took
        if line.startswith("{") and '"vrrp transition"' in line:
            RECONCILE_MS.append(json.loads(line)["ms"])
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    lvsdr = str(Path(sys.executable).parent / "lvsdr")
    with tempfile.TemporaryDirectory() as d:
        data = tomllib.loads((REPO / "examples" / "pair.toml").read_text())
        data["cluster"]["state_dir"] = d
        cluster = Path(d) / "pair.json"
        cluster.write_text(json.dumps(data))
        sh("ip", "netns", "add", NS)
        try:
            sh("ip", "-n", NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
            for dev in ("lo", "eth0", "eth1"):
                sh("ip", "-n", NS, "link", "set", dev, "up")
            sh("ip", "-n", NS, "addr", "add", "192.0.2.21/24", "dev", "eth0")
            inns = ["ip", "netns", "exec", NS]
            notify = [*inns, lvsdr, "notify", str(cluster), "--node", "node1", "INSTANCE", "VI_pair", "MASTER", "200"]
            floor = [timed([*inns, sys.executable, "-c", "pass"]) for _ in range(args.runs)]
            change: list[float] = []
            steady: list[float] = []
            for _ in range(args.runs):
                sh("ip", "-n", NS, "addr", "del", "192.0.2.120/32", "dev", "eth0") if steady else None
                timed(notify)  # settle the BACKUP role (VIP not on eth0)
                sh("ip", "-n", NS, "addr", "add", "192.0.2.120/32", "dev", "eth0")  # keepalived: MASTER
                change.append(timed(notify))
                steady.append(timed(notify))
            code = ("import time,sys; from pathlib import Path\n"
                    "from lvsdr.generator.load import load_cluster\n"
                    "from lvsdr.generator.director import director_spec\n"
                    "from lvsdr.hooks.director import reconcile\n"
                    f"c=load_cluster({str(cluster)!r}); s=director_spec(c,'node1'); reconcile(s, Path(c.state_dir))\n"
                    "ts=[]\n"
                    f"for _ in range({args.runs}):\n"
                    "    t=time.perf_counter(); reconcile(s, Path(c.state_dir)); ts.append(time.perf_counter()-t)\n"
                    "ts.sort(); print(ts[len(ts)//2])\n")
            agent = float(subprocess.run([*inns, sys.executable, "-c", code], check=True, capture_output=True,
                                         text=True).stdout)
            imports = subprocess.run([*inns, sys.executable, "-X", "importtime", "-m", "lvsdr.cli", "notify",
                                      str(cluster), "--node", "node1", "INSTANCE", "VI_pair", "MASTER", "200"],
                                     capture_output=True, text=True).stderr
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=False)
    med = statistics.median
    print(f"runs: {args.runs} each, in a scratch namespace; examples/pair.toml, director node1 (nftables)")
    print(f"python -c pass (floor):            {med(floor) * 1000:6.1f} ms")
    print(f"lvsdr notify, BACKUP -> MASTER:    {med(change) * 1000:6.1f} ms")
    print(f"lvsdr notify, nothing to change:   {med(steady) * 1000:6.1f} ms")
    print(f"  of which the reconcile itself:   {med(RECONCILE_MS):6.1f} ms (the rest: start-up, imports, log)")
    print(f"agent reconcile (in process):      {agent * 1000:6.1f} ms")
    top = sorted(((int(ln.split("|")[1]), ln.split("|")[2].strip()) for ln in imports.splitlines()
                  if ln.startswith("import time:") and ln.split("|")[1].strip().isdigit()), reverse=True)
    print("heaviest imports on the notify path: " + ", ".join(f"{n} {us / 1000:.0f} ms" for us, n in top[:5]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
