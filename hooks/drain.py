"""`lvsdr drain`: an ECMP director stops announcing its VIPs and lets its
IPVS connections end. The drain marker in the state dir keeps the agent
from announcing again until `lvsdr drain --undo` (the director's units run
both: drain before keepalived stops, undo after it starts).

A VRRP director (a planned switchover): first, another director must answer
on the segment, and with sync_daemon the kernel must run IPVS's master sync
daemon and every connection through the VIPs must have been here long
enough to be sent to the peers (hooks/syncd.py), else nothing changes. Then
the same marker makes the agent
write every hand-over file of the director 1 (generator/handover.py), so its
priority drops under its peer's and the peer takes the VIPs by VRRP's own
pre-emption; `drain` confirms the new holder on the wire. The marker holds
across keepalived's restarts (the agent writes the files again at its
start); `--undo` lets quorum decide again (the director takes its VIPs back
after its hold, as after quorum returns)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Collection
from pathlib import Path

from lvsdr.errors import InputError
from lvsdr.generator.director import director_spec
from lvsdr.generator.model import Cluster, IPAddress

from .director import drain_marker, drain_path, reconcile_ecmp

IP_VS_CONN = Path("/proc/net/ip_vs_conn")
# connections still carrying data: not closed, not waiting out TIME_WAIT
ENDED = frozenset({"CLOSE", "TIME_WAIT", "NONE", "LISTEN"})
Conn = tuple[str, str, str, str, str]  # protocol, client address and port, virtual address and port (as listed)


def parse_ip_vs_conn(text: str, vips: Collection[IPAddress]) -> dict[Conn, int]:
    """/proc/net/ip_vs_conn -> {connection: seconds until it expires} for the
    TCP and SCTP connections to ``vips`` that have not ended (UDP has no end
    but its timeout, so it is not waited for). IPv4 addresses are hex there
    (C0000296), IPv6 ones written out."""
    wanted = set(vips)
    out: dict[Conn, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 9 or parts[0] not in ("TCP", "SCTP") or parts[7] in ENDED or not parts[8].isdigit():
            continue
        try:
            vip: IPAddress = (ipaddress.IPv4Address(int(parts[3], 16)) if ":" not in parts[3]
                              else ipaddress.IPv6Address(parts[3]))
        except ValueError:
            continue
        if vip in wanted:
            out[(parts[0], parts[1], parts[2], parts[3], parts[4])] = int(parts[8])
    return out


def carrying(before: dict[Conn, int], after: dict[Conn, int]) -> int:
    """Connections that carried a packet between two readings: new ones, and
    those whose expiry was pushed back. Once a director is withdrawn, the
    routers send its flows to the other directors (which pick the same real
    servers), and its own entries only count down to their timeout."""
    return sum(1 for c, left in after.items() if c not in before or left >= before[c])


def connections(vips: Collection[IPAddress]) -> dict[Conn, int]:
    try:
        return parse_ip_vs_conn(IP_VS_CONN.read_text(), vips)
    except FileNotFoundError:  # no IPVS in this kernel (or not loaded): no connection
        return {}


UNIT_MARK = "drained by keepalived.service's stop\n"  # the marker's text when the unit drained (``unit``)


def _drained_by_operator(marker: Path) -> bool:
    """The marker is there and not the unit's (read as root reads state: trusted, small)."""
    from .fast.files import read_trusted

    try:
        return read_trusted(marker, len(UNIT_MARK) + 64) != UNIT_MARK.encode()
    except FileNotFoundError:
        return False


def undo_unit(path: str, node: str, echo: Callable[[str], None] = print) -> int:
    """keepalived.service's start step (``drain --undo --unit``), which must
    not fail: systemd would stop keepalived. It undoes the unit's own drain
    and nothing else, and an undo with nothing to undo is a no-op (exit 0):
    no state directory yet (an empty /run after boot), no marker. A cluster
    file that does not validate now (saved mid-edit) is read as the agent's
    fast path reads it (the plain ``[cluster]`` name and state_dir) to find
    the marker; when even that cannot be told, it says so and leaves the
    marker (the agent keeps announcing nothing until ``--undo``)."""
    import sys

    from lvsdr.defaults import STATE_DIR
    from lvsdr.errors import LvsdrError
    from lvsdr.source import Source

    from .fast.replay import locate

    raw = b""
    try:
        source = Source.read(path, node)
        raw = source.raw
        cluster = source.cluster
        director_spec(cluster, node)
        name, state = cluster.name, Path(cluster.state_dir)
    except LvsdrError as e:
        where = locate(raw, path) if raw else None
        if where is None:
            print(f"lvsdr drain: {node}: no drain undone: {e}", file=sys.stderr)
            return 0
        name, state = where[0], Path(where[1] or STATE_DIR)
    if not state.is_dir():
        echo(f"{node}: nothing to undo (no state directory {state} yet)")
        return 0
    try:
        return _undo(state, drain_path(state, name, node), node, unit=True, echo=echo)
    except (LvsdrError, OSError) as e:  # an untrusted state directory or marker: left alone, said
        print(f"lvsdr drain: {node}: no drain undone: {e}", file=sys.stderr)
        return 0


def _undo(state: Path, marker: Path, node: str, unit: bool, echo: Callable[[str], None]) -> int:
    from .fast.files import check_dir

    check_dir(state)
    if unit and _drained_by_operator(marker):
        echo(f"{node}: drained by an operator, not by keepalived's stop: left drained "
             f"(`lvsdr drain CLUSTER --node {node} --undo` puts it in service)")
        return 0
    if not marker.exists():
        echo(f"{node}: not drained; nothing to undo")
        return 0
    marker.unlink(missing_ok=True)
    echo(f"{node}: drain undone; the agent announces the healthy VIPs again within a second")
    return 0


def drain(cluster: Cluster, node: str, timeout: float | None, undo: bool,
          echo: Callable[[str], None] = print, unit: bool = False) -> int:
    """Withdraw (or ``undo``). ``unit``: as keepalived.service's drop-in runs
    it: its stop marks the drain as the unit's, and its start undoes only
    such a drain; an operator's drain holds across keepalived's restarts (a
    new director brought up drained stays out until `--undo`)."""
    spec = director_spec(cluster, node)
    if spec.ecmp is None or cluster.bgp is None:
        return drain_vrrp(cluster, node, timeout, undo, echo, unit)
    state = Path(cluster.state_dir)
    marker = drain_marker(state, spec)
    if undo:
        if not state.is_dir():
            echo(f"{node}: not drained; nothing to undo (no state directory {state} yet)")
            return 0
        return _undo(state, marker, node, unit, echo)
    from .facts import read_routes
    from .fast.files import state_dir, write_atomic

    state_dir(state)
    announced = read_routes(spec)  # before the marker: the agent may withdraw them first, within its second
    if not (unit and marker.exists()):  # a stop keeps an operator's drain the operator's
        write_atomic(marker, UNIT_MARK if unit else "drained by `lvsdr drain`\n", 0o600)
    reconcile_ecmp(spec, state, frozenset())
    n = len(announced)
    echo(f"{node}: {n} VIP{'s' if n != 1 else ''} withdrawn; BIRD no longer announces any (the agent keeps them "
         "withdrawn until `lvsdr drain --undo`)")
    limit = cluster.bgp.drain_timeout if timeout is None else timeout
    started = time.monotonic()
    seen = connections(cluster.vips)
    left = len(seen)
    while left and time.monotonic() - started < limit:
        time.sleep(1.0)
        now = connections(cluster.vips)
        left, seen = carrying(seen, now), now
    took = time.monotonic() - started
    if left:
        echo(f"{node}: {left} IPVS connection{'s' if left != 1 else ''} still carrying packets after the "
             f"{limit:g} s timeout")
    else:
        echo(f"{node}: drained: no IPVS connection carries packets here any more ({took:.1f} s; "
             f"{len(seen)} left to expire)")
    return 0


def drain_vrrp(cluster: Cluster, node: str, timeout: float | None, undo: bool,
               echo: Callable[[str], None] = print, unit: bool = False) -> int:
    """The switchover of a VRRP director (see the module's docstring); exit 1 when no other director took the
    VIPs within ``timeout`` (the drain stays: `--undo` ends it)."""
    from lvsdr.generator.handover import handover

    if unit:  # keepalived's stop gives a VRRP director's VIPs up by itself
        echo(f"{node}: a VRRP director: keepalived's stop hands its VIPs over; nothing to drain")
        return 0
    me = cluster.find_director(node)
    follow = handover(cluster, node)
    if len(cluster.directors) < 2:
        raise InputError(f"drain: {node} is the only director of cluster {cluster.name}: nobody to take its VIPs")
    if follow is None:
        raise InputError("drain: a VRRP director hands over by the quorum hand-over's priority drop, which is off "
                         "here (quorum_handover = false, or a lowest priority under 3)")
    if cluster.nopreempt and not undo:
        raise InputError("drain: the directors run nopreempt: the peer does not take the VIPs on a lower priority "
                         "(stop keepalived on this director instead)")
    from .facts import read_addresses, require_identity

    require_identity(node, me.address, read_addresses())  # before any change: a wrong --node changes nothing
    state = Path(cluster.state_dir)
    marker = drain_path(state, cluster.name, node)
    if undo:
        if not state.is_dir():
            echo(f"{node}: not drained; nothing to undo (no state directory {state} yet)")
            return 0
        rc = _undo(state, marker, node, unit, echo=lambda _line: None)
        hold = max(i.hold for i in follow.instances)
        echo(f"{node}: drain undone; the agent restores its priority once quorum has held {hold:g} s here, and it "
             "takes its VIPs back if it is the highest")
        return rc
    from .fast.files import state_dir, write_atomic
    from .fast.netlink import raw_addresses

    peers = _peers_answering(cluster, node)  # before any change: nobody to take the VIPs changes nothing
    if not peers:
        echo(f"{node}: no other director answers ARP/NDP on {me.interface} for its own address; nothing changed "
             "(a switchover needs a director to take the VIPs)")
        return 1
    held = {cidr.split("/")[0] for ifname, cidr, _ in raw_addresses() if ifname != "lo"}
    holding = any(str(v) in held for v in cluster.vips)  # a BACKUP drained (kept from taking over) syncs nothing
    if cluster.sync_daemon is not None and holding and not _synced(cluster, node, echo):
        return 1
    state_dir(state)
    write_atomic(marker, "drained by `lvsdr drain`\n", 0o600)
    for i in follow.instances:  # at once, as the agent would: the drop does not wait for its turn
        write_atomic(i.file, "1\n", 0o644)
    vips = tuple(cluster.vips)
    delay = cluster.preempt_delay or 0  # the peer pre-empts a lower priority only after it (60 s with sync_daemon)
    echo(f"{node}: drained: priority lowered by {max(i.weight for i in follow.instances)} in "
         f"{', '.join(i.instance for i in follow.instances)}; waiting for another director to hold the VIPs"
         + (f" (after its preempt_delay of {delay} s)" if delay else ""))
    limit = delay + max(10.0, 6 * float(cluster.advert_int)) if timeout is None else timeout
    started = time.monotonic()
    import ipaddress as ip

    from .wire import Source, arp_owners

    v4 = me.address if isinstance(me.address, ip.IPv4Address) else None
    v6 = me.address if isinstance(me.address, ip.IPv6Address) else None
    owners: dict[IPAddress, set[str]] = {}
    while True:
        held = {cidr.split("/")[0] for ifname, cidr, _ in raw_addresses() if ifname != "lo"}
        mine = [v for v in vips if str(v) in held]
        if not mine:
            try:
                owners = arp_owners(me.interface, Source(me.interface, v4, v6), vips)
            except OSError:
                owners = {}
            if owners and all(owners.values()):
                break
        if time.monotonic() - started >= limit:
            echo(f"{node}: the VIPs did not move within {limit:g} s (still held here: "
                 f"{', '.join(map(str, mine)) or 'none'}; unanswered: "
                 f"{', '.join(str(v) for v, m in owners.items() if not m) or 'none'}); the drain stays "
                 f"(`lvsdr drain {cluster.name} --node {node} --undo` ends it)")
            return 1
        time.sleep(0.2)
    took = time.monotonic() - started
    macs = sorted({mac for answered in owners.values() for mac in answered})
    names = {_mac_of(d.address, me.interface): d.name for d in cluster.directors if d.name != node}
    who = sorted({names.get(m, m) for m in macs})
    echo(f"{node}: the VIPs are held by {', '.join(who)} ({took:.1f} s); this director stays BACKUP until "
         "`--undo`")
    return 0


def _peers_answering(cluster: Cluster, node: str) -> list[str]:
    """The other directors that answer ARP (NDP) for their own address on this director's interface: up on the
    segment (a peer whose keepalived is down still answers: the VRRP side is what the hold-and-confirm checks)."""
    import ipaddress as ip

    from .wire import Source, arp_owners

    me = cluster.find_director(node)
    others = {d.address: d.name for d in cluster.directors if d.name != node and d.address.version ==
              me.address.version}
    v4 = me.address if isinstance(me.address, ip.IPv4Address) else None
    v6 = me.address if isinstance(me.address, ip.IPv6Address) else None
    try:
        owners = arp_owners(me.interface, Source(me.interface, v4, v6), tuple(others), listen=1.0)
    except OSError:
        return []
    return sorted(others[a] for a, macs in owners.items() if macs)


def _synced(cluster: Cluster, node: str, echo: Callable[[str], None]) -> bool:
    """With sync_daemon: this kernel runs IPVS's master sync daemon (else the peer's table lacks every connection
    here, and the switchover would break them all: refused, nothing changed), and every connection it carries has
    been here long enough for the daemon to have sent it (hooks/syncd.py)."""
    from .syncd import read_daemons, settle

    try:
        daemons = read_daemons()
    except OSError as e:  # ipvsadm missing (FileNotFoundError) or failing
        echo(f"{node}: cannot read IPVS's sync daemons ({e}); nothing changed")
        return False
    if not any(d.role == "master" for d in daemons):
        echo(f"{node}: sync_daemon is set but this kernel runs no IPVS master sync daemon (is keepalived running, "
             "and MASTER here?): the peer would hold none of this director's connections; nothing changed")
        return False
    held = settle(cluster.vips, connections)
    echo(f"{node}: IPVS's master sync daemon runs here; {held} connection{'s' if held != 1 else ''} through the "
         f"VIPs{' waited for until the daemon had sent them to the peers' if held else ''}")
    return True


def _mac_of(address: IPAddress, ifname: str) -> str:
    """The neighbour entry's MAC of ``address`` (to name the new holder), "" when none."""
    from .run import run

    try:
        out = run(["ip", "neigh", "show", "to", str(address), "dev", ifname], timeout=5).out.split()
    except Exception:  # naming is a courtesy: the MAC is said instead
        return ""
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""
