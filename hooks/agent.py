"""`lvsdr agent`: resident on keepalived's notify FIFO, it keeps a director
true to its role. One event loop (``Agent``: the FIFO, inotify on the
cluster file's directory, a pidfd on keepalived, a timer) drives the
director's mode: a VRRP director's role (``VrrpRole``: MASTER's or BACKUP's
state, replayed when it can) or an ECMP director's announcement
(``EcmpAnnouncement``: the VIPs whose virtual servers keepalived reports
with quorum, held back while IPVS lacks their services, none while
drained). It reconciles
- once at start;
- after every burst of FIFO events;
- at once when the cluster file's bytes change (the new file taken through
  the Follower; one that does not validate is logged once and the last good
  one kept);
- at once when keepalived is gone without a clean stop (the pidfd on the
  process of its pidfile): the node steps back;
- after ``interval`` quiet seconds (the full reconcile: it heals what the
  replay does not look at).
A failed reconcile is logged and retried."""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError
from lvsdr.generator.director import DirectorSpec, director_spec
from lvsdr.generator.model import IPAddress
from lvsdr.source import Follower, Source

from .director import drain_marker, reconcile, reconcile_ecmp
from .notify_fifo import MAX_LINE, Event, open_fifo, parse_event, parse_quorum_event, split_lines


def agent(source: Source, fifo_path: Path, interval: float, pidfile: str) -> int:
    """Resident until killed (see the module's docstring)."""
    return Agent(source, fifo_path, interval, pidfile).run()


class Agent:
    """The loop and what every mode shares: the cluster file followed, the
    director's spec, keepalived's process, the FIFO and its unfinished
    line, the counts `lvsdr metrics` reads."""

    def __init__(self, source: Source, fifo_path: Path, interval: float, pidfile: str) -> None:
        from lvsdr.generator.metrics import Counters  # not on notify's path

        from .fast.log import get_logger
        from .inotify import DirWatch
        from .processes import ProcessWatch

        self.log = get_logger(node=source.node, event_source="agent")
        self.follower = Follower(source, lambda s: director_spec(s.cluster, s.node), self.log)
        self.spec = director_spec(source.cluster, source.node)
        self.procs = ProcessWatch(pidfile)
        self.files = DirWatch(os.path.dirname(os.path.abspath(source.path)))
        self.fd = open_fifo(fifo_path)
        self.interval = interval
        self.buf, self.skipping = b"", False
        self.last = time.monotonic()
        self.counters = Counters(started=time.time())
        self.mode: Mode = mode_for(self)
        from .drpath import DrProbe

        self.dr = DrProbe(source.cluster, source.node, self.log)

    @property
    def source(self) -> Source:
        return self.follower.source

    @property
    def state_dir(self) -> Path:
        return Path(self.source.cluster.state_dir)

    def take_file(self) -> bool:
        """Whether a new, good cluster file was taken (and the mode with it, when the edit changed it)."""
        if not self.follower.poll():
            return False
        ecmp = self.spec.ecmp is not None
        self.spec = director_spec(self.source.cluster, self.source.node)
        if (self.spec.ecmp is not None) != ecmp:
            self.mode = mode_for(self)
        try:
            self.dr.configure(self.source.cluster, self.source.node)
        except Exception:
            self.log.exception("DR-path checks could not take the new cluster file")
        return True

    def counted(self, counters: Any) -> None:
        """Keep the new counts and rewrite their record (root's, 0600); a write
        that fails is logged, the agent goes on."""
        from .fast.files import write_atomic
        from .metrics import counters_path

        self.counters = counters
        try:
            write_atomic(counters_path(str(self.state_dir), self.spec.cluster, self.spec.node), counters.to_json(),
                         0o600)
        except (OSError, LvsdrError) as e:
            self.log.warning("cannot record the agent's counts", error=str(e))

    def run(self) -> int:
        self.full("agent started")
        with os.fdopen(self.fd, "rb", buffering=0):
            while True:
                files = [self.files.fd] if self.files.fd is not None else []
                dr = self.dr.fileno()
                probes = [dr] if dr is not None else []
                ready = select.select([self.fd, *self.procs.filenos(), *files, *probes], [], [],
                                      min(self.mode.wait(self), self.dr.wait()))[0]
                self.probe(dr is not None and dr in ready)
                self.mode.tick(self)
                if self.files.fd is None or self.files.fd in ready:
                    self.files.drain()
                    if self.take_file():
                        self.full("cluster file changed; reconciled")
                if any(p in ready for p in self.procs.filenos()) and not self.procs.refresh():
                    self.full(self.mode.gone)
                for why in self.mode.due(self):  # one at a time: each reconcile changes what the next one sees
                    self.full(why)
                if self.fd in ready:
                    self.on_events(self.read_events())
                elif why := self.mode.idle(self):
                    self.full(why)
                elif time.monotonic() - self.last >= self.interval:
                    self.full("interval")  # no event for a while: heal anything left half-applied (or changed by hand)

    def probe(self, readable: bool) -> None:
        """The DR-path checks' turn: the answers read, a round when due. Never the agent's end: an error is
        logged with its traceback and the next turn goes on."""
        try:
            if readable:
                self.dr.on_readable()
            self.dr.tick()
        except Exception:
            self.log.exception("DR-path checks failed a turn")

    def full(self, why: str, events: list[Event] | None = None) -> None:
        """The full reconcile (stepping back when keepalived does not run), logged when it changed something."""
        started = self.last = time.monotonic()
        watched = bool(self.procs.fds)
        running = self.procs.refresh()
        if watched and not running and why == "interval":
            # keepalived died as the quiet interval ended: this reconcile is the one its pidfd would have started
            why = self.mode.gone
        try:
            done, fields = self.mode.reconcile(self, running)
        except Exception:
            self.log.exception("reconcile failed", why=why)
            self.counted(self.counters.failed())
            self.mode.failed()
            return
        self.counted(self.counters.reconciled(time.time(), fast=False, changes=len(done), drift=why == "interval"))
        fields.update({"changes": done, "keepalived": running, "ms": round((time.monotonic() - started) * 1000, 1),
                       **({"events": [e.fields() for e in events]} if events else {})})
        if why != "interval":
            self.log.info(why, **fields)
        elif done:
            self.log.warning("node drifted from its role; reconciled", **fields)

    def read_events(self) -> list[Event]:
        """keepalived's events queued on the FIFO (all of a burst: one reconcile, to the latest state)."""
        lines: list[bytes] = []
        while True:
            more, self.buf, self.skipping = split_lines(self.buf + os.read(self.fd, 65536), self.skipping)
            lines += more
            if self.skipping:
                self.log.warning("a FIFO line longer than the limit was dropped", limit=MAX_LINE)
            if not select.select([self.fd], [], [], 0)[0]:
                break
        return [e for e in (self.mode.parse(ln.decode(errors="replace")) for ln in lines) if e]

    def on_events(self, events: list[Event]) -> None:
        if not events:
            return
        self.last = time.monotonic()
        if self.take_file():
            self.full("cluster file changed; reconciled", events)
            return
        self.mode.on_events(self, events)


class Mode:
    """What a director's mode decides: how it reconciles, which FIFO lines it
    reads, and what else it looks at between events."""

    gone = "keepalived is gone"

    @staticmethod
    def parse(line: str) -> Event | None:
        raise NotImplementedError

    def wait(self, agent: Agent) -> float:
        """How long the loop may wait for an event."""
        return agent.interval if agent.files.fd is not None else min(agent.interval, 1.0)

    def due(self, agent: Agent) -> Any:
        """Reasons to reconcile now besides events, one at a time (an iterator)."""
        return iter(())

    def idle(self, agent: Agent) -> str | None:
        """A reason to reconcile when no event came."""
        return None

    def failed(self) -> None:
        """A reconcile failed (the interval retries)."""

    def tick(self, agent: Agent) -> None:
        """Every turn of the loop: what is due by time alone."""

    def reconcile(self, agent: Agent, running: bool) -> tuple[list[str], dict[str, Any]]:
        raise NotImplementedError

    def on_events(self, agent: Agent, events: list[Event]) -> None:
        raise NotImplementedError


def mode_for(agent: Agent) -> Mode:
    return EcmpAnnouncement(agent.state_dir, agent.spec) if agent.spec.ecmp is not None else VrrpRole(agent)


def parse_vrrp_or_quorum(line: str) -> Event | None:
    return parse_event(line) or parse_quorum_event(line)


class VrrpRole(Mode):
    """A VRRP director: the role observed on the node (MASTER while keepalived
    has a VIP on its device), its state made, replayed from notify's record
    when it can (hooks/fast/replay.py); and its instances handed over while
    its virtual servers lack quorum (``HandoverFiles``)."""

    gone = "keepalived is gone; the node stepped back"
    parse = staticmethod(parse_vrrp_or_quorum)

    def __init__(self, agent: Agent) -> None:
        self.handover = HandoverFiles(agent)

    def wait(self, agent: Agent) -> float:
        return min(super().wait(agent), self.handover.wait(), 1.0)

    def tick(self, agent: Agent) -> None:
        if self.handover.marker(agent).exists() != self.handover.drained:
            self.handover.sync(agent)  # drained, or the drain undone
        self.handover.tick(agent)

    def reconcile(self, agent: Agent, running: bool) -> tuple[list[str], dict[str, Any]]:
        role, done = reconcile(agent.spec, agent.state_dir, agent.source.key, stopped=not running)
        self.handover.sync(agent)
        return done, {"observed_role": role}

    def on_events(self, agent: Agent, events: list[Event]) -> None:
        quorum = [e for e in events if e.type == "VS"]
        if quorum:
            agent.procs.refresh()
            self.handover.update(agent, quorum)
        events = [e for e in events if e.type != "VS"]
        if events:
            self.transition(agent, events)

    def transition(self, agent: Agent, events: list[Event]) -> None:
        started = time.monotonic()
        try:
            fast = self.replayed(agent)
            role, done = fast if fast is not None else reconcile(agent.spec, agent.state_dir, agent.source.key)
        except Exception:  # keep running: the next event (or the interval) retries
            agent.log.exception("reconcile failed", events=[e.fields() for e in events])
            agent.counted(agent.counters.failed())
            return
        took = time.monotonic() - started
        counters = agent.counters.reconciled(time.time(), fast=fast is not None, changes=len(done))
        for e in events:
            if e.type == "INSTANCE":
                counters = counters.transition(e.name, e.state, took)
        agent.counted(counters)
        agent.log.info("vrrp transition", events=[e.fields() for e in events], observed_role=role, changes=done,
                       ms=round((time.monotonic() - started) * 1000, 1))
        agent.procs.refresh()  # keepalived (re)started: watch its process (after the transition: off its clock)

    @staticmethod
    def replayed(agent: Agent) -> tuple[str, list[str]] | None:
        """The recorded role state put back (notify's fast path, nft in this
        process) from the very bytes the agent holds; None: take the full path."""
        return resident_replay(agent.source, agent.log)


def resident_replay(source: Source, log: Any = None) -> tuple[str, list[str]] | None:
    """notify's fast path in a resident process (nft through libnftables)."""
    from lvsdr.fingerprint import code_fingerprint

    from .fast.replay import replay

    fast = replay(source.path, source.node, code_fingerprint(), source.raw, resident=True)
    if isinstance(fast, str):
        if log is not None:
            log.warning("fast path declined", reason=fast)
        return None
    return fast


class EcmpAnnouncement(Mode):
    """An ECMP director: every director is active; it announces (a route in
    lvsdr's table, which BIRD exports) the VIPs of the virtual servers that
    keepalived has not reported without quorum, none while drained or while
    keepalived does not run, and a healthy VIP only once IPVS has its
    services (keepalived builds its table a moment after it starts)."""

    gone = "keepalived is gone; every VIP withdrawn"
    parse = staticmethod(parse_quorum_event)

    def __init__(self, state_dir: Path, spec: DirectorSpec) -> None:
        self.quorum = Quorum(state_dir, spec)
        self.drained = False
        self.waiting: frozenset[IPAddress] = frozenset()  # healthy VIPs held back: their services not in IPVS yet

    def wait(self, agent: Agent) -> float:
        # the drain marker is looked at every second (`lvsdr drain --undo` takes effect); IPVS 4 times a second
        # while a VIP waits on it (keepalived is building its table)
        return min(agent.interval, 0.25 if self.waiting else 1.0)

    def due(self, agent: Agent) -> Any:
        if drain_marker(agent.state_dir, agent.spec).exists() != self.drained:
            yield "drain marker changed"
        if not agent.procs.fds and agent.procs.refresh():
            yield "keepalived started; its virtual servers have quorum"  # it says nothing when it starts

    def idle(self, agent: Agent) -> str | None:
        if self.waiting and self.ipvs_caught_up(agent.spec):
            return "IPVS has the services of a VIP held back; announced"
        return None

    def ipvs_caught_up(self, spec: DirectorSpec) -> bool:
        """IPVS has now the services of a VIP held back (one read of
        /proc/net/ip_vs: cheap enough to look four times a second)."""
        from .facts import read_ipvs_services

        try:
            return spec.ecmp is not None and bool(spec.ecmp.in_ipvs(self.waiting, read_ipvs_services()))
        except LvsdrError:  # unreadable now: the interval's reconcile tries again
            return False

    def failed(self) -> None:
        self.waiting = frozenset()  # the interval retries

    def reconcile(self, agent: Agent, running: bool) -> tuple[list[str], dict[str, Any]]:
        spec = agent.spec
        assert spec.ecmp is not None
        self.drained = drain_marker(agent.state_dir, spec).exists()
        healthy = spec.ecmp.healthy(self.quorum.down(agent.procs.pids())) if running else frozenset()
        announced, done = reconcile_ecmp(spec, agent.state_dir, healthy)
        self.waiting = frozenset() if self.drained else frozenset(v for v in healthy if str(v) not in announced)
        return done, {"announced": announced, "drained": self.drained,
                      **({"waiting_for_ipvs": sorted(map(str, self.waiting))} if self.waiting else {})}

    def on_events(self, agent: Agent, events: list[Event]) -> None:
        agent.procs.refresh()
        self.quorum.update(agent.procs.pids(), events)
        agent.full("quorum changed", events)


class Quorum:
    """Which of keepalived's virtual servers it reported without quorum here.
    keepalived starts every virtual server with quorum (its checker says so
    only when that changes), so the set is empty for a new keepalived. It is
    kept in the state dir with the pids it belongs to: a restarted agent
    takes it back while the same keepalived runs."""

    def __init__(self, state_dir: Path, spec: DirectorSpec) -> None:
        self.path = state_dir / f"quorum-{spec.cluster}-{spec.node}.json"
        self.pids: list[int] = []
        self.down_set: set[str] = set()
        self._load()

    def _load(self) -> None:
        from lvsdr.generator.node import record_json

        from .fast.files import read_trusted

        try:
            data = record_json(read_trusted(self.path, 1 << 20).decode("utf-8", errors="replace"))
            pids, down = data["keepalived"], data["down"]
            if all(isinstance(p, int) for p in pids) and all(isinstance(d, str) for d in down):
                self.pids, self.down_set = sorted(pids), set(down)
        except (OSError, LvsdrError, ValueError, KeyError, TypeError):
            pass  # none, or not one lvsdr wrote: every virtual server counts as up

    def down(self, pids: list[int]) -> set[str]:
        if pids != self.pids:  # another keepalived (or none): it starts with quorum everywhere
            self.pids, self.down_set = pids, set()
        return self.down_set

    def update(self, pids: list[int], events: list[Event]) -> None:
        import json

        from .fast.files import state_dir, write_atomic

        down = self.down(pids)
        for e in events:
            if e.state == "DOWN":
                down.add(e.name)
            else:
                down.discard(e.name)
        state_dir(self.path.parent)
        write_atomic(self.path, json.dumps({"keepalived": pids, "down": sorted(down)}) + "\n", 0o600)


class HandoverFiles:
    """A VRRP director's hand-over files (generator/handover.py): 1 at once while a virtual server of the instance
    is without quorum here, 0 again after quorum has held for ``HOLD`` seconds."""

    def __init__(self, agent: Agent) -> None:
        self.quorum = Quorum(agent.state_dir, agent.spec)
        self.clear_at: dict[str, float] = {}  # file -> when it may say 0 again
        self.said: dict[str, bool] = {}  # file -> what this agent wrote last (True: 1)
        self.drained = False  # `lvsdr drain` holds the files at 1 (its marker is looked at every second)

    def wait(self) -> float:
        return max(0.0, min(self.clear_at.values()) - time.monotonic()) if self.clear_at else 3600.0

    def plan(self, agent: Agent) -> tuple[Any, dict[str, bool]]:
        """(The hand-over, each file's value: 1 while quorum is lost here, or while `lvsdr drain` holds it.)"""
        from lvsdr.generator.handover import handover

        follow = handover(agent.source.cluster, agent.source.node)
        down = self.quorum.down(agent.procs.pids())
        self.drained = self.marker(agent).exists()
        if follow is None:
            return None, {}
        return follow, {i.file: True for i in follow.instances} if self.drained else follow.values(down)

    @staticmethod
    def marker(agent: Agent) -> Path:
        from .director import drain_path

        return drain_path(agent.state_dir, agent.source.cluster.name, agent.source.node)

    def update(self, agent: Agent, events: list[Event]) -> None:
        self.quorum.update(agent.procs.pids(), events)
        agent.log.info("quorum changed", events=[e.fields() for e in events],
                       without_quorum=sorted(self.quorum.down_set))
        self.sync(agent)

    def sync(self, agent: Agent) -> None:
        """Every file as the quorum says (a 0 waits out the hold); the files of instances gone removed."""
        follow, want = self.plan(agent)
        now = time.monotonic()
        for path, lost in want.items():
            if lost:
                self.clear_at.pop(path, None)
                if self.said.get(path) is not True:
                    self.write(agent, path, True)
                    names = [i for i in follow.instances if i.file == path] if follow is not None else []
                    agent.log.warning("drained: the VRRP instance hands over" if self.drained else
                                      "virtual servers without quorum here: the VRRP instance hands over",
                                      instance=names[0].instance if names else path,
                                      without_quorum=sorted(self.quorum.down_set), weight=-names[0].weight
                                      if names else 0)
            elif self.said.get(path) is None:
                self.write(agent, path, False)  # a start: nothing was said yet (a file left at 1 is not trusted)
            elif self.said[path] and path not in self.clear_at:
                hold = next((i.hold for i in follow.instances if i.file == path), 0.0) if follow is not None else 0.0
                self.clear_at[path] = now + hold
        for path in [p for p in self.said if p not in want]:
            self.said.pop(path)
            self.clear_at.pop(path, None)
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.tick(agent)

    def tick(self, agent: Agent) -> None:
        now = time.monotonic()
        for path, at in sorted(self.clear_at.items()):
            if at <= now:
                del self.clear_at[path]
                self.write(agent, path, False)
                agent.log.info("quorum held: the VRRP instance's priority restored", file=path)

    def write(self, agent: Agent, path: str, lost: bool) -> None:
        from .fast.files import write_atomic

        try:
            write_atomic(path, "1\n" if lost else "0\n", 0o644)
            self.said[path] = lost
        except (OSError, LvsdrError) as e:
            agent.log.error("cannot write a hand-over file", file=path, error=str(e))
