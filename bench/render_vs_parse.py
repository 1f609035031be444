"""Benchmark: `lvsdr render` wall time / `keepalived -t` parse time of the result.

A generated cluster of 1,000 services x 20 backends with HTTP checks, and the
breadth of keepalived in use (track scripts and interfaces, the operator's
notify scripts, inhibit_on_failure, IPVS options, connection sync, escape-hatch
lines; --plain without them). Target: a ratio of 1.0 or lower (rendering must
not be slower than keepalived reading).

    .venv/bin/python bench/render_vs_parse.py [--services 1000] [--backends 20] [--runs 5]

Runs the installed console script next to this python (so the figure includes
interpreter start-up and imports, as an operator sees it). keepalived -t needs
the config's interface (eth0) to exist: pass --netns NAME to run it elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEATURES = [  # the breadth of keepalived in use: the directors' own health, the operator's
    # scripts, connection sync, escape-hatch lines
    'sync_daemon = true', 'notify_master = ["/usr/bin/logger", "-t", "bench", "MASTER"]', "",
    "[[track_scripts]]", 'name = "uplink"', 'script = "/usr/sbin/arping"',
    'args = ["-c1", "-w1", "-I", "eth0", "192.0.2.1"]', "interval = 2", "",
    "[[track_interfaces]]", 'name = "eth1"', "weight = -10", "",
    "[[keepalived_extra]]", 'block = "global_defs"', 'lines = ["vrrp_garp_master_repeat 2"]', "",
]


def cluster_toml(services: int, backends: int, features: bool = True) -> str:
    lines = [
        '[cluster]', 'name = "bench"', 'interface = "eth0"', "virtual_router_id = 99",
        *(FEATURES if features else [""]),
        '[[directors]]', 'name = "lb1"', 'address = "192.0.2.2"', "priority = 150", "",
        '[[directors]]', 'name = "lb2"', 'address = "192.0.2.3"', "priority = 100", "",
    ]
    for b in range(backends):
        lines += ["[[real_servers]]", f'name = "rs{b}"', f'address = "198.51.100.{10 + b}"', ""]
    def backend(b: int) -> str:
        if features and b % 5 == 0:  # every fifth backend with the operator's scripts and inhibit_on_failure
            return (f'{{ server = "rs{b}", inhibit_on_failure = true, '
                    f'notify_down = ["/usr/bin/logger", "rs{b}-down"] }}')
        return f'"rs{b}"'

    names = ", ".join(backend(b) for b in range(backends))
    options = ["quorum = 2", "hysteresis = 1", "alpha = true",
               'quorum_down = ["/usr/bin/logger", "quorum-down"]'] if features else []
    for s in range(services):
        vip = f"203.0.113.{1 + s // 50}"
        lines += ["[[services]]", f'name = "svc{s}"', f'vip = "{vip}"', f"port = {8000 + s % 50}", *options,
                  f"backends = [{names}]", "[services.check]", 'type = "http"', 'path = "/healthz"', ""]
    return "\n".join(lines)


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, p


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--backends", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--netns")
    ap.add_argument("--plain", action="store_true", help="without the keepalived features beyond services and checks")
    args = ap.parse_args()
    lvsdr = str(Path(sys.executable).parent / "lvsdr")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "bench.toml"
        out = Path(d) / "keepalived.conf"
        src.write_text(cluster_toml(args.services, args.backends, features=not args.plain))
        check = ["keepalived", "-t", "-f", str(out)]
        if args.netns:
            check = ["ip", "netns", "exec", args.netns, *check]
        render_times, parse_times = [], []
        for _ in range(args.runs):
            t, p = timed([lvsdr, "render", str(src), "--node", "lb1", "-o", str(out)])
            if p.returncode:
                print(p.stderr, file=sys.stderr)
                return 1
            render_times.append(t)
            t, p = timed(check)
            if p.returncode:
                print(f"keepalived -t exit {p.returncode}: {p.stderr[:500]}", file=sys.stderr)
                return 1
            parse_times.append(t)
        r, k = statistics.median(render_times), statistics.median(parse_times)
        size = out.stat().st_size
    print(f"cluster: {args.services} services x {args.backends} backends, HTTP checks; "
          f"keepalived.conf {size / 1e6:.1f} MB")
    print(f"lvsdr render (median of {args.runs}): {r:.3f} s")
    print(f"keepalived -t (median of {args.runs}): {k:.3f} s")
    print(f"ratio render/parse: {r / k:.2f} (target <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
