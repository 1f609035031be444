"""ECMP clusters: how fast a dead director leaves the routers' route (BFD,
and the BGP hold timer alone), and how many flows survive a director's
loss, its addition and a drain, with lvsdr's design against one that resets
every flow whose path changed (MetalLB's documented behaviour: its nodes
share no consistent hash, so a flow that reaches another node is reset).

Root; builds the native lab of examples/ecmp.toml twice (with and without
BFD). The paths are the router's own choice: `ip route get` with the flow's
ports, under fib_multipath_hash_policy=1, for FLOWS crafted flows. A flow
whose path changes keeps its real server under lvsdr because every director
builds the same mh table (tests/ipvs/test_ipvs_ecmp.py shows it on real
IPVS, 1,000 flows) and takes a mid-stream flow up (sloppy_tcp).

    .venv/bin/python bench/ecmp_flows.py [--flows 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lvsdr.lab.topology import Lab  # noqa: E402

from helpers import make_lab  # noqa: E402

VIP = "192.0.2.150"


def paths(lab: Lab, flows: int) -> list[str]:
    """The router's next hop for each flow (client port 20000 + i to VIP:80)."""
    router, client = lab.routers()[0], lab.state.client
    src = client.addresses[0].split("/")[0]
    batch = "".join(f"route get {VIP} from {src} iif eth0 ipproto tcp sport {20000 + i} dport 80\n"
                    for i in range(flows))
    out = subprocess.run(["ip", "-n", router.ns, "-batch", "-"], input=batch, capture_output=True, text=True,
                         check=True).stdout
    return [line.split(" via ")[1].split()[0] if " via " in line else "none"
            for line in out.splitlines() if line.startswith(VIP)]


def wait_hops(lab: Lab, n: int) -> float:
    t0 = time.monotonic()
    while len(lab.next_hops()) != n:
        if time.monotonic() - t0 > 60:
            raise SystemExit(f"the router never had {n} next hops (has {lab.next_hops()})")
        time.sleep(0.01)
    return time.monotonic() - t0


def link(lab: Lab, name: str, state: str) -> None:
    node = lab.state.node(name)
    subprocess.run(["ip", "-n", node.ns, "link", "set", node.ifname, state], check=True)


def lvsdr(lab: Lab, name: str, *args: str) -> None:
    node = lab.state.node(name)
    subprocess.run(["ip", "netns", "exec", node.ns, sys.executable, "-m", "lvsdr.cli", *args], check=True,
                   capture_output=True)


def changed(a: list[str], b: list[str]) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    text = (REPO / "examples" / "ecmp.toml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        bfd_times: list[float] = []
        hold_times: list[float] = []
        for bfd, times in ((True, bfd_times), (False, hold_times)):
            path = Path(tmp) / f"ecmp-{bfd}.toml"
            path.write_text(text if bfd else text.replace("bfd = true", "bfd = false"))
            with make_lab(path, Path(tmp) / f"lab-{bfd}") as lab:
                for _ in range(args.runs if bfd else 1):
                    link(lab, "lb3", "down")
                    times.append(wait_hops(lab, 2))
                    link(lab, "lb3", "up")
                    wait_hops(lab, 3)
                if not bfd:
                    continue
                three = paths(lab, args.flows)
                lvsdr(lab, "lb3", "drain", lab.cluster_path, "--node", "lb3", "--timeout", "0")
                wait_hops(lab, 2)
                two = paths(lab, args.flows)
                lvsdr(lab, "lb3", "drain", lab.cluster_path, "--node", "lb3", "--undo")
                wait_hops(lab, 3)
                back = paths(lab, args.flows)
        loss, add = changed(three, two), changed(two, back)
        n = args.flows
        print(json.dumps({
            "withdraw_with_bfd_s": [round(t, 3) for t in bfd_times],
            "withdraw_with_hold_timer_s": [round(t, 2) for t in hold_times],
            "flows": n,
            "paths_changed_on_loss_or_drain": loss,
            "paths_changed_on_add": add,
        }))
        print(f"withdraw, a director's link down: BFD (100 ms x 3) median {statistics.median(bfd_times) * 1000:.0f} ms "
              f"over {len(bfd_times)}; hold timer alone (9 s) {hold_times[0]:.1f} s")
        for what, k in (("director lost", loss), ("drain", loss), ("director added", add)):
            print(f"{what}: {k} of {n} flows change path; flows kept: lvsdr {n} of {n} (100%), "
                  f"a design that resets a flow whose path changed {n - k} of {n} ({(n - k) / n * 100:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
