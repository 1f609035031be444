"""Guarded apply: after `lvsdr watch` installs a new keepalived.conf, it
verifies the wire for the cluster's ``guard_window`` seconds (the network
world's "commit confirmed"):

- one owner per VIP of each VRRP instance: not two (a split: a router id or
  an authentication change that reached one director first; the agent's ARP
  watch names the other director answering), not none;
- every DR path that passed before the reload still passes (the agent's
  record, docs/dr-check.md); a backend new in the file that fails its path is
  kept out by its check, and does not count;
- ECMP: every VIP this director announced before is still announced (unless
  the edit removed it or the director is drained), and every BGP session that
  was Established is Established again by the end of the window (a session
  BIRD restarts for a changed peer is down for its start delay, 5 s);
- at the end of the window, `plan` is empty: IPVS holds every virtual server
  and real server the installed config asks for (but those held out by their
  checks): keepalived built what it was given.

What was already broken before the reload does not count. A regression seen
twice in a row (0.5 s apart) reinstalls the config that was there before
(the last working one), reloads keepalived, says why in one line, counts it
(``lvsdr_rollbacks_total``) and marks the cluster file's bytes: they are not
installed again until the file changes. An operator may end the window by
hand: `lvsdr watch CLUSTER --node N --confirm` keeps the new config at once,
`--abort` rolls it back (a file in the state directory that the guard reads).
A rollback puts back both files the edit changed (keepalived.conf,
bird.conf), and reloads keepalived and BIRD.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError
from lvsdr.generator.model import Cluster, IPAddress

STEP = 0.5  # s between looks


def hand_path(state_dir: str, cluster: str, node: str, verdict: str) -> Path:
    """Where `watch --confirm` / `--abort` leaves the operator's verdict on the guard in progress."""
    return Path(state_dir) / f"guard-{cluster}-{node}.{verdict}"


def record_path(state_dir: str, cluster: str, node: str) -> Path:
    return Path(state_dir) / f"watch-{cluster}-{node}.json"


def file_key(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass
class View:
    """What the guard reads of the wire at one look."""

    failing: frozenset[tuple[str, str]] = frozenset()  # (service, backend) whose DR path fails
    passing: frozenset[tuple[str, str]] = frozenset()  # and those whose path passes
    split: dict[str, list[str]] = field(default_factory=dict)  # VIP -> the other directors that answer ARP for it
    unowned: frozenset[str] = frozenset()  # VIPs nobody holds
    announced: frozenset[str] = frozenset()  # ECMP: the VIPs this director announces (wanted: in the file, not drained)
    wanted: frozenset[str] = frozenset()  # ECMP: the VIPs it may announce now (in the file; none while drained)
    sessions: frozenset[str] = frozenset()  # ECMP: the peers (addresses) whose BGP session is Established
    unrealized: tuple[str, ...] = ()  # the final look: what `plan` still finds to change (IPVS vs the config)


def regressions(before: View, now: View, final: bool = False) -> list[str]:
    """What ``now`` has broken that ``before`` had working (pure). ``final``: the look at the end of the window, which
    also judges the BGP sessions (a restarted one needs seconds) and the plan."""
    # a backend new in the file that fails its path is kept out by its check: the edit's, not a regression
    out = [f"DR path of {b} ({s}) fails since the reload" for s, b in sorted(now.failing & before.passing)]
    out += [f"VRRP split: {vip} answered by {', '.join(who)} as well" for vip, who in sorted(now.split.items())
            if vip not in before.split]
    out += [f"nobody holds {vip}" for vip in sorted(now.unowned - before.unowned)]
    out += [f"{vip} no longer announced" for vip in sorted((before.announced & now.wanted) - now.announced)]
    if final:
        out += [f"BGP session to {peer} not Established again" for peer in sorted(before.sessions - now.sessions)]
        out += [f"plan not empty: {c}" for c in now.unrealized[:3]]
    return out


class Guard:
    """The guard of one director (its cluster's state directory, the agent's records there)."""

    def __init__(self, cluster: Cluster, node: str, log: Any, config: Path | None = None,
                 bird_socket: str | None = None) -> None:
        self.cluster, self.node, self.log = cluster, node, log
        self.state = cluster.state_dir
        self.config = config  # the installed keepalived.conf (the final look's plan)
        self.ended = ""
        self.bird_socket = bird_socket or (cluster.bgp.bird_socket if cluster.bgp is not None else "")

    def look(self, final: bool = False) -> View:
        from lvsdr.generator.drpath import dr_record_path

        from .drpath import read_dr_record

        failing: frozenset[tuple[str, str]] = frozenset()
        passing: frozenset[tuple[str, str]] = frozenset()
        split: dict[str, list[str]] = {}
        try:
            rec = read_dr_record(Path(dr_record_path(self.state, self.cluster.name, self.node)))
        except LvsdrError:
            rec = None
        directors = {d.name for d in self.cluster.directors}
        if rec is not None:
            failing = frozenset((s, b) for s, b, up in rec.paths if not up)
            passing = frozenset((s, b) for s, b, up in rec.paths if up)
            for vip, _mac, who in rec.offenders:
                if who in directors:
                    split.setdefault(vip, []).append(who)
        announced, wanted, sessions = self._ecmp()
        return View(failing, passing, split, self._unowned(), announced, wanted, sessions,
                    self._unrealized() if final else ())

    def _ecmp(self) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        """(The VIPs in lvsdr's route table, those the file lets it announce now, the peers Established.)"""
        bgp = self.cluster.bgp
        if bgp is None:
            return frozenset(), frozenset(), frozenset()
        from .director import drain_path
        from .facts import read_announced, read_bgp_sessions

        announced: set[str] = set()
        try:
            announced = read_announced(bgp.table)
        except LvsdrError as e:  # nothing known of the announcements this look
            self.log.warning("guard: cannot read the announced VIPs", error=str(e))
        drained = drain_path(self.state, self.cluster.name, self.node).exists()
        wanted = frozenset() if drained else frozenset(str(v) for v in self.cluster.vips)
        states = read_bgp_sessions(self.bird_socket) or {}
        peers = {str(p.address) for p in bgp.peers}
        sessions = frozenset(a for a, st in states.items() if st == "Established" and a in peers)
        return frozenset(announced), wanted, sessions

    def _unrealized(self) -> tuple[str, ...]:
        """What `plan` finds between the installed config and IPVS (nothing when IPVS is not loaded here)."""
        if self.config is None:
            return ()
        from lvsdr.generator import ipvs

        from . import facts
        from .fast.files import read_trusted
        from .reload import _tree

        try:
            live = facts.read_ipvs()
            if live is None:
                return ()
            table = ipvs.config_table(_tree(read_trusted(self.config).decode("utf-8", errors="replace"),
                                            str(self.config)))
        except (OSError, LvsdrError) as e:
            self.log.warning("guard: cannot read the plan", error=str(e))
            return ()
        return tuple(c.description for c in ipvs.plan(table, table, live))

    def _unowned(self) -> frozenset[str]:
        """The VRRP VIPs that neither this director holds nor anyone answers ARP/NDP for."""
        if self.cluster.ecmp:
            return frozenset()
        from .fast.netlink import raw_addresses
        from .wire import Source, arp_owners

        me = self.cluster.find_director(self.node)
        held = {cidr.split("/")[0] for ifname, cidr, _ in raw_addresses() if ifname != "lo"}
        others: tuple[IPAddress, ...] = tuple(v for v in self.cluster.vips if str(v) not in held)
        if not others:
            return frozenset()
        import ipaddress

        v4 = me.address if isinstance(me.address, ipaddress.IPv4Address) else None
        v6 = me.address if isinstance(me.address, ipaddress.IPv6Address) else None
        try:
            owners = arp_owners(me.interface, Source(me.interface, v4, v6), others)
        except OSError as e:
            self.log.warning("guard: cannot ask who holds the VIPs", error=str(e))
            return frozenset()
        return frozenset(str(v) for v, macs in owners.items() if not macs)

    def verify(self, before: View, window: float, superseded: Any = None) -> str | None:
        """Look every STEP s for ``window`` s: why to roll back (a regression seen twice in a row, or the
        operator's --abort), or None (kept: the window passed, --confirm, or ``superseded()``: a new edit of the
        cluster file, whose own reload will be guarded)."""
        self.ended = "window"  # how the last verify ended without a rollback: window, superseded or confirmed
        confirm, abort = (hand_path(self.state, self.cluster.name, self.node, v) for v in ("confirm", "abort"))
        for p in (confirm, abort):
            p.unlink(missing_ok=True)
        seen: list[str] = []
        end = time.monotonic() + window
        while time.monotonic() < end:
            if superseded is not None and superseded():
                self.log.info("guard: ended by a new edit of the cluster file (its reload is guarded in turn)")
                self.ended = "superseded"
                return None
            if confirm.exists():
                confirm.unlink(missing_ok=True)
                self.log.info("guard: the new config confirmed by hand")
                self.ended = "confirmed"
                return None
            if abort.exists():
                abort.unlink(missing_ok=True)
                return "aborted by hand (lvsdr watch --abort)"
            found = regressions(before, self.look())
            if found and seen and set(found) & set(seen):
                return "; ".join(sorted(set(found) & set(seen)))
            seen = found
            time.sleep(STEP)
        # the end of the window: the sessions and the plan too, seen twice (keepalived may be mid-update)
        for _ in range(2):
            found = regressions(before, self.look(final=True), final=True)
            if not found or (seen and set(found) & set(seen)):
                break
            seen = found
            time.sleep(STEP)
        return "; ".join(sorted(set(found) & set(seen))) or None

    def count(self, why: str, bad: str) -> None:
        """One more rollback in the watch's record (what `lvsdr metrics` reads)."""
        from .fast.files import write_atomic

        path = record_path(self.state, self.cluster.name, self.node)
        try:
            n = rollbacks(path) or 0
        except LvsdrError:  # not one lvsdr wrote: counted afresh
            n = 0
        try:
            write_atomic(path, json.dumps({"rollbacks": n + 1, "last": why, "bad_file": bad, "at": time.time()})
                         + "\n", 0o600)
        except (OSError, LvsdrError) as e:
            self.log.error("cannot record the rollback", error=str(e))


def rollbacks(path: Path) -> int | None:
    """The rollbacks counted in the watch's record; None when there is none."""
    from lvsdr.generator.node import record_json

    from .fast.files import read_trusted

    try:
        raw = record_json(read_trusted(path, 1 << 16).decode("utf-8", errors="replace"))
        n = int(raw["rollbacks"])
        if n < 0:
            raise ValueError
        return n
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError, OverflowError):
        from lvsdr.generator.node import FactError

        raise FactError(f"{path}: not `lvsdr watch`'s record (remove it; it writes it again)") from None
