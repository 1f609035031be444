"""`lvsdr lab demo|up|down|status|failover`: the lab for people (plain terminal output)."""

from __future__ import annotations

import sys
import time
from importlib.resources import files
from pathlib import Path

from lvsdr.generator.load import load_cluster

from .netns import LabError, list_netns, require_root, require_tools
from .topology import HAS_IPVS, Lab, down_state

BUNDLED = "web.toml"


def bundled_example() -> Path:
    return Path(str(files("lvsdr.lab").joinpath(BUNDLED)))


def say(msg: str = "") -> None:
    print(msg, flush=True)


def step(msg: str) -> None:
    say(f"==> {msg}")


def _lab(cluster_path: Path | None, no_suppression: bool = False) -> Lab:
    path = cluster_path or bundled_example()
    cluster = load_cluster(path)  # bad file: exit 2 before anything is built
    return Lab(cluster, path, suppression="none" if no_suppression else "product", log=lambda m: say(f"    {m}"))


def show_arp(lab: Lab) -> bool:
    from .probes import mac_owner, responders

    ok = True
    for vip in lab.cluster.vips:
        seen = responders(lab, str(vip))
        who = ", ".join(f"{mac} ({mac_owner(lab, mac)}, {n} replies)" for mac, n in sorted(seen.items()))
        verdict = "exactly one responder" if len(seen) == 1 else f"{len(seen)} RESPONDERS"
        ok &= len(seen) == 1
        say(f"    {'ARP' if vip.version == 4 else 'NDP'} for {vip}: {verdict}: {who or 'none'}")
    return ok


def show_http(lab: Lab) -> None:
    from .probes import http_get

    for svc in lab.cluster.services:
        if svc.protocol != "tcp":
            continue
        body = http_get(lab, str(svc.vip), svc.port)
        host = f"[{svc.vip}]" if svc.vip.version == 6 else str(svc.vip)
        say(f"    GET http://{host}:{svc.port}/ ({svc.name}) -> "
            f"{('answered by real server ' + body) if body else 'NO ANSWER'}")


def show_master(lab: Lab) -> None:
    m = lab.master()
    say(f"    MASTER: {m.name} ({m.mac})" if m else "    MASTER: none")


def cmd_demo(cluster_path: Path | None, no_suppression: bool) -> int:
    require_root()
    require_tools()
    lab = _lab(cluster_path, no_suppression)
    started = time.monotonic()
    step(f"building the lab for cluster {lab.cluster.name} ({lab.cluster_path})")
    if HAS_IPVS:
        say("    data plane: IPVS (this kernel has it): full keepalived with the rendered config,")
        say("    IPVS forwards by DR, keepalived's own checkers decide which backends are alive")
    else:
        say("    data plane: the lab's IPVS stand-in. This kernel has no IPVS: keepalived runs VRRP only")
        say("    (-P), and an nftables netdev rule on the MASTER (test scaffolding) does the DR forwarding;")
        say("    scripts/ipvs-vm runs the demo in a VM whose kernel has IPVS")
    if lab.cluster.ecmp:
        return _demo_ecmp(lab, started)
    lab.up()  # cleans up after itself if it fails
    try:
        step("VRRP election")
        show_master(lab)
        step("who answers ARP for each VIP (from the client)")
        show_arp(lab)
        step("HTTP through each VIP (the real server answers the client directly)")
        show_http(lab)
        from .probes import failover

        master = lab.master()
        step(f"killing the MASTER {master.name if master else '?'} (keepalived SIGKILL, link down)")
        port = next((s.port for s in lab.cluster.services if s.protocol == "tcp"), 80)
        fo = failover(lab, port)
        say(f"    {fo.new_master} took over: client's ARP entry moved after {fo.arp_seconds:.2f} s, "
            f"HTTP answered by {fo.http_answer} after {fo.seconds:.2f} s")
        bound = 3 * lab.cluster.advert_int + 1
        say(f"    (VRRP bound: 3 x advert_int + skew = {bound:.1f} s)")
        step("after failover")
        show_master(lab)
        ok = show_arp(lab)
        show_http(lab)
    finally:
        step("tearing down")
        lab.down()
        say(f"    done in {time.monotonic() - started:.1f} s; nothing left behind")
    return 0 if ok else 1


def _demo_ecmp(lab: Lab, started: float) -> int:
    """An ECMP cluster: the router's next hops for each VIP before and after a
    director dies; on real IPVS, the downloads through the VIP that it carried
    end in full."""
    from . import probes
    from .probes import kill_director

    lab.up()
    try:
        step("the router's route to each VIP (BIRD, multipath): one next hop per healthy director")
        names = {n.addresses[0].split("/")[0]: n.name for n in lab.state.directors}
        for vip in lab.cluster.vips:
            say(f"    {vip}: {', '.join(names.get(h, h) for h in lab.next_hops(str(vip)))}")
        step("who answers ARP for each VIP (from the client): nobody, the routers route it")
        from .probes import mac_owner, responders

        silent = True
        for vip in lab.cluster.vips:
            seen = responders(lab, str(vip))
            silent &= not seen
            say(f"    {vip}: {', '.join(f'{mac_owner(lab, m)} ({n} replies)' for m, n in seen.items()) or 'nobody'}")
        victim = lab.state.directors[0]
        runs: probes.Streams = []
        first, count, seconds = 41000, 30, 16
        if HAS_IPVS:  # the data plane: long downloads through the VIP, across the director's death
            through = str(lab.cluster.vips[0])
            step(f"{count} downloads of {seconds} s through {through}, each from its own source port")
            runs = probes.start_streams(lab, through, count, seconds, first, lab.state_dir)
            deadline = time.monotonic() + 30
            while (sum(probes.carried(d, first, count) for d in lab.state.directors) < count
                   and time.monotonic() < deadline):
                time.sleep(0.3)
            load = {d.name: probes.carried(d, first, count) for d in lab.state.directors}
            say(f"    connections per director: {', '.join(f'{n} {c}' for n, c in load.items())}")
            victim = lab.state.node(max(load, key=lambda n: load[n]))
        step(f"killing director {victim.name} (keepalived SIGKILL, link down)")
        t0 = time.monotonic()
        kill_director(lab, victim)
        want = len(lab.state.directors) - 1
        while len(lab.next_hops()) != want and time.monotonic() - t0 < 20:
            time.sleep(0.01)
        took = time.monotonic() - t0
        for vip in lab.cluster.vips:
            say(f"    {vip}: {', '.join(names.get(h, h) for h in lab.next_hops(str(vip)))}")
        ok = silent and len(lab.next_hops()) == want
        say(f"    {victim.name} left the router's route after {took * 1000:.0f} ms"
            + (" (BFD)" if lab.cluster.bgp and lab.cluster.bgp.bfd else " (the BGP hold timer)"))
        if runs:
            step("the downloads, once they end")
            codes, lines = probes.end_streams(runs, seconds)
            full = sum(1 for c, n in zip(codes, lines, strict=True) if c == 0 and n == seconds * 4)
            say(f"    {full} of {count} completed in full, no reset: the others picked the same real servers (mh) "
                "and took the flows up mid-stream (sloppy_tcp), with no sync daemon")
            ok &= full == count
        else:
            say("    the flows kept on the way: scripts/ipvs-vm runs this demo, and tests/ipvs/test_ipvs_ecmp.py,")
            say("    on real IPVS")
    finally:
        step("tearing down")
        lab.down()
        say(f"    done in {time.monotonic() - started:.1f} s; nothing left behind")
    return 0 if ok else 1


def cmd_up(cluster_path: Path | None, no_suppression: bool) -> int:
    lab = _lab(cluster_path, no_suppression)
    step(f"building the lab for cluster {lab.cluster.name}")
    lab.up()
    show_master(lab)
    say(f"lab is up (state in {lab.state_dir}); `lvsdr lab down` removes it")
    return 0


def _running(cluster_path: Path | None) -> Lab:
    lab = _lab(cluster_path)
    state = Lab.load_state(lab.state_dir)
    if state is None:
        raise LabError(f"no lab {lab.lab_id} is up (lvsdr lab up starts one)")
    lab.state = state
    return lab


def cmd_down(cluster_path: Path | None, no_suppression: bool = False) -> int:
    require_root()
    lab = _lab(cluster_path, no_suppression)
    if not lab.state_dir.exists():
        stray = sorted(set(lab.namespaces()) & list_netns())
        if stray:
            raise LabError(f"no lab {lab.lab_id} is recorded in {lab.state_dir.parent}, but namespaces with its names "
                           f"exist: {', '.join(stray)}; they are not known to be the lab's, so they are left "
                           "alone (ip netns del NAME removes one)")
        say(f"no lab {lab.lab_id} was up")
        return 0
    removed = down_state(lab.state_dir)
    say(f"removed lab {lab.lab_id}: {len(removed)} namespaces and every process in them")
    return 0


def cmd_status(cluster_path: Path | None, no_suppression: bool = False) -> int:
    require_root()
    lab = _running(cluster_path)
    for n in lab.state.nodes:
        say(f"{n.role:12} {n.name:10} {n.ns:24} {n.mac} {' '.join(n.addresses)}")
    show_master(lab)
    show_arp(lab)
    return 0


def cmd_failover(cluster_path: Path | None, no_suppression: bool = False) -> int:
    require_root()
    from .probes import failover

    lab = _running(cluster_path)
    fo = failover(lab)
    say(f"{fo.old_master} -> {fo.new_master}: ARP after {fo.arp_seconds:.2f} s, HTTP after {fo.seconds:.2f} s")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM tears the lab down like Ctrl-C


def run(action: str, cluster_path: Path | None, no_suppression: bool = False) -> int:
    """`lvsdr lab ACTION [CLUSTER]`; the bundled example when no cluster is named."""
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    # and SIGINT, whatever it was started with: a shell starts a background job (`&`, a CI runner's
    # script) with SIGINT ignored, and Python keeps an ignored SIGINT ignored, so Ctrl-C (or kill -INT)
    # would leave the lab half built or running
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return {"demo": cmd_demo, "up": cmd_up, "down": cmd_down, "status": cmd_status,
                "failover": cmd_failover}[action](cluster_path, no_suppression)
    except TimeoutError as e:
        print(f"lvsdr lab: {e}", file=sys.stderr)
        return 1
