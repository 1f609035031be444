"""TEST SCAFFOLDING, not part of the product: the lab's stand-in for IPVS.

This kernel has no IPVS, so keepalived runs VRRP only (``-P``). To still
show DR on the wire, this follower watches every director namespace
(``ip monitor address``) and, on the director that holds a VIP, installs an
nftables netdev ingress rule that does what IPVS-DR does with a frame for the
VIP: set the destination MAC to a real server's (chosen by a hash of the
client's address and port), set the source MAC to the director's own, and
send the frame back out of the same interface. The real server then answers
the client directly. On directors that do not hold the VIP the table is
removed.

    python -m lvsdr.lab.standin STATE_DIR
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TABLE = "lvsdr_lab_ipvs"


def ruleset(director: Any, held: set[str], services: list[Any], macs: dict[str, str],
            directors: frozenset[str] = frozenset()) -> str:
    """nft script for one director: the table with a rule per service whose VIP
    it holds, or no table at all when it holds none."""
    lines = [f"table netdev {TABLE}", f"delete table netdev {TABLE}"]
    rules = []
    for svc in services:
        if not held & {str(v) for v in svc.all_vips}:
            continue
        # real servers first; directors that are also backends only when no real
        # server backs the service, and never the director itself (a frame sent
        # back out to its own MAC would not come back). The stand-in has no
        # health checks: keepalived's checkers do not run without IPVS.
        live = [b for b in svc.backends if b.server in macs and b.weight > 0]
        chosen = [b for b in live if b.server not in directors] or [b for b in live if b.server != director.name]
        targets = [macs[b.server] for b in chosen]
        if not targets:
            continue
        fam = "ip" if svc.vip.version == 4 else "ip6"
        proto = svc.protocol
        if len(targets) == 1:
            dst = targets[0]
        else:
            key = f"{fam} saddr . {proto} sport" if proto in ("tcp", "udp") else f"{fam} saddr"
            mapping = ", ".join(f"{i} : {m}" for i, m in enumerate(targets))
            dst = f"jhash {key} mod {len(targets)} map {{ {mapping} }}"
        rules += [
            f"        ether daddr {director.mac} {fam} daddr {vip} {proto} dport {port} "
            f"ether saddr set {director.mac} ether daddr set {dst} fwd to \"{director.ifname}\""
            for vip, port in svc.endpoints if str(vip) in held]
    if rules:
        lines += [
            f"table netdev {TABLE} {{",
            "    chain ingress {",
            f"        type filter hook ingress device \"{director.ifname}\" priority 0; policy accept;",
            *rules,
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def held_vips(ns: str, ifname: str) -> set[str]:
    """Addresses on the director's VRRP interface (not lo, where a director
    that is also a backend keeps the VIPs while BACKUP)."""
    import json

    p = subprocess.run(["ip", "-n", ns, "-j", "addr", "show", "dev", ifname], capture_output=True, text=True,
                       check=False)
    try:
        links = json.loads(p.stdout or "[]")
    except ValueError:
        return set()
    return {a.get("local", "") for link in links for a in link.get("addr_info", [])}


def main(argv: list[str]) -> int:
    from lvsdr.generator.load import load_cluster

    from .topology import Lab

    state_dir = Path(argv[0])
    state = Lab.load_state(state_dir)
    if state is None:
        print(f"standin: no lab state in {state_dir}", file=sys.stderr)
        return 1
    cluster = load_cluster(state.cluster_path)
    macs = {n.name: n.mac for n in state.real_servers + state.directors}
    director_names = frozenset(n.name for n in state.directors)
    services = list(cluster.services)
    applied: dict[str, str] = {}

    def reconcile() -> None:
        for d in state.directors:
            text = ruleset(d, held_vips(d.ns, d.ifname), services, macs, director_names)
            if applied.get(d.name) == text:
                continue
            p = subprocess.run(["ip", "netns", "exec", d.ns, "nft", "-f", "-"], input=text, text=True,
                               capture_output=True, check=False)
            applied[d.name] = text
            n = text.count("fwd to")
            print(f"{time.strftime('%H:%M:%S')} {d.name}: stand-in {'on' if n else 'off'} "
                  f"({n} services){' ERROR ' + p.stderr.strip() if p.returncode else ''}", flush=True)

    sel = selectors.DefaultSelector()
    monitors = []
    for d in state.directors:
        m = subprocess.Popen(["ip", "-n", d.ns, "monitor", "address"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        monitors.append(m)
        assert m.stdout is not None
        sel.register(m.stdout, selectors.EVENT_READ, data=m.stdout)
    reconcile()
    try:
        while True:
            events = sel.select(timeout=1.0)
            for key, _ in events:
                stream = key.data  # the monitor's stdout, registered below
                if not stream.readline():
                    sel.unregister(key.fileobj)  # the namespace went away
            reconcile()
            if not sel.get_map():
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for m in monitors:
            m.terminate()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main(sys.argv[1:]))
