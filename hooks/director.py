"""`lvsdr notify` (keepalived's notify callback) and `lvsdr agent` (resident
on keepalived's notify FIFO): reconcile a director to the role observed on
the node. Both end in ``reconcile``; neither trusts the event's STATE."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lvsdr.defaults import AGENT_INTERVAL, KEEPALIVED_PIDFILE
from lvsdr.errors import InputError, LvsdrError
from lvsdr.generator.director import (
    DirectorSpec,
    Role,
    director_spec,
    observed_role,
    plan_role,
    plan_stopped,
    role_spec,
    vs_name,
)
from lvsdr.generator.model import IPAddress, addr_key
from lvsdr.source import Source

from .facts import read_addresses, read_director_facts, record_path, require_identity
from .fast.files import node_lock

if TYPE_CHECKING:
    from lvsdr.generator.metrics import Counters


@dataclass(frozen=True)
class Event:
    """One line of keepalived's notify FIFO, or a notify call's arguments."""

    type: str
    name: str
    state: str
    priority: str = ""

    def fields(self) -> dict[str, str]:
        return {"type": self.type, "name": self.name, "state": self.state, "priority": self.priority}


def reconcile(spec: DirectorSpec, state_dir: Path, key: str | None = None,
              stopped: bool = False) -> tuple[Role, list[str]]:
    """Read the node, plan for the observed role, apply. Returns (role, change
    descriptions). With ``key`` (the cluster file's, see replay.py) the state
    the role is left in is recorded for notify's fast path. ``stopped``:
    keepalived does not run here, the node takes a stopped director's role
    (``plan_stopped``: no VIP left on the VRRP interface)."""
    require_identity(spec.node, spec.address, read_addresses())  # before anything, even the lock
    with node_lock(state_dir, spec.node):
        facts = read_director_facts(spec, state_dir)
        role: Role = "BACKUP" if stopped else observed_role(spec, facts.addresses)
        changes = plan_stopped(spec, facts) if stopped else plan_role(spec, role, facts)
        rs = role_spec(spec, role)
        rec = record_path(state_dir, rs) if rs else state_dir / f"director-{spec.cluster}-{spec.node}.json"
        if changes:
            from .gateway import Gateway

            Gateway(rec).apply(changes)
        if key is not None:
            _remember(spec, role, state_dir, key, rec, sorted(facts.sysctls))
        return role, [c.description for c in changes]


def drain_marker(state_dir: Path, spec: DirectorSpec) -> Path:
    """While this file exists (`lvsdr drain`), an ECMP director announces nothing."""
    return state_dir / f"drain-{spec.cluster}-{spec.node}"


def reconcile_ecmp(spec: DirectorSpec, state_dir: Path, announce: frozenset[IPAddress]) -> tuple[list[str], list[str]]:
    """An ECMP director: read the node, plan (``plan_ecmp``) for announcing
    exactly ``announce`` (nothing while drained; a VIP whose services IPVS
    does not have yet, not yet), apply. Returns (the VIPs announced, change
    descriptions)."""
    from lvsdr.generator.director import plan_ecmp, plan_withdrawals

    from .facts import read_ecmp_facts, read_routes
    from .gateway import Gateway

    assert spec.backend is not None and spec.ecmp is not None
    require_identity(spec.node, spec.address, read_addresses())
    with node_lock(state_dir, spec.node):
        if drain_marker(state_dir, spec).exists():
            announce = frozenset()
        gateway = Gateway(record_path(state_dir, spec.backend))
        # withdraw first, from the routes alone: the full facts take a while (a dozen tools run)
        first = plan_withdrawals(spec, announce, read_routes(spec))
        if first:
            gateway.apply(first)
        facts = read_ecmp_facts(spec, state_dir)
        announce = spec.ecmp.in_ipvs(announce, facts.ipvs)  # what plan_ecmp announces of it
        changes = plan_ecmp(spec, announce, facts)
        if changes:
            gateway.apply(changes)
        return [str(v) for v in sorted(announce, key=addr_key)], [c.description for c in first + changes]


def replay_keys(spec: DirectorSpec) -> list[str] | None:
    """The nft tables (``FAMILY NAME``) that make up lvsdr's rules on this
    director, in either role; None when the real-server method's rules are not
    nft tables (arptables, iptables, firewalld): then notify has no fast path
    (replay.py)."""
    from lvsdr.generator.director import KEY
    from lvsdr.generator.methods import method_of

    tables = method_of(spec.backend).nft_tables if spec.backend is not None else ()
    return None if tables is None else sorted({KEY, *tables})


def _remember(spec: DirectorSpec, role: Role, state_dir: Path, key: str, rec: Path, sysctls: list[str]) -> None:
    """Record the state ``role`` is in for replay.py, when everything the role
    changes is an nft table (else forget any record: the full path runs)."""
    from lvsdr.generator.realserver import addresses

    from .facts import sysctl_path
    from .fast import replay

    path = replay.cache_path(str(state_dir), spec.cluster, spec.node)
    keys = replay_keys(spec)
    if keys is None:
        replay.forget(path)
        return
    rs = role_spec(spec, role)
    devices = dict(spec.vip_devices)
    replay.remember(path, key, role, str(spec.address), [[devices.get(v, spec.interface), str(v)] for v in spec.vips],
                    keys, [str(sysctl_path(k)) for k in sysctls], str(rec),
                    [[ifname, str(a)] for ifname, a in (addresses(rs) if rs else ())])


def notify(source: Source, event: Event) -> int:
    """keepalived: `notify "lvsdr notify CLUSTER --node NAME"` + TYPE NAME STATE PRIORITY."""
    started = time.monotonic()
    spec = director_spec(source.cluster, source.node)
    if spec.ecmp is not None:
        raise InputError(f"notify: cluster {source.cluster.name} is an ECMP cluster ([bgp]): it has no VRRP "
                         "instance to notify about; `lvsdr agent` gates its announcements")
    try:
        role, done = reconcile(spec, Path(source.cluster.state_dir), source.key)
    except Exception:
        from .fast.log import get_logger

        get_logger(node=source.node, event_source="notify").exception("reconcile failed", **event.fields())
        raise
    from .fast.log import transition

    transition(source.node, role, done, started, event.fields())
    return 0


def _replay(cluster_path: str, node: str) -> tuple[Role, list[str]] | None:
    from lvsdr.fingerprint import code_fingerprint

    from .fast.replay import replay

    fast = replay(cluster_path, node, code_fingerprint(), resident=True)
    if isinstance(fast, str):
        from .fast.log import get_logger

        get_logger(node=node, event_source="agent").warning("fast path declined", reason=fast)
        return None
    return None if fast is None else ("MASTER" if fast[0] == "MASTER" else "BACKUP", fast[1])


MAX_LINE = 4096  # bytes of one FIFO line; keepalived's are under 200


def _open_fifo(path: Path) -> int:
    """keepalived's notify FIFO, made 0600 in a 0700 directory when missing; an
    existing one must be root's, not writable by others, and not a symlink
    (files.UntrustedError otherwise): events from it make root change the node."""
    from .fast.files import UntrustedError, _trusted, state_dir

    state_dir(path.parent)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        st = os.lstat(path)
    if not stat.S_ISFIFO(st.st_mode):
        raise InputError(f"--fifo: {path} exists and is not a FIFO")
    _trusted(st, "FIFO", path)
    # O_RDWR: the FIFO never reports EOF when keepalived closes or restarts
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) != (st.st_ino, st.st_dev):
        os.close(fd)
        raise UntrustedError(f"{path}: replaced while being opened; refusing to trust it")
    return fd


_EVENT_TYPES = ("INSTANCE", "GROUP")
_EVENT_STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "MASTER_RX_LOWER_PRI", "DELETED")


def parse_event(line: str) -> Event | None:
    """A VRRP line of keepalived's notify FIFO, ``INSTANCE "VI_web" MASTER 150``
    or ``GROUP "VG_web" BACKUP``, as an Event; None for anything else (its
    virtual-server lines, noise from another writer)."""
    parts = line.split(" ")
    if not 3 <= len(parts) <= 4 or parts[0] not in _EVENT_TYPES or parts[2] not in _EVENT_STATES:
        return None
    name = parts[1]
    if len(name) < 3 or name[0] != '"' or name[-1] != '"' or not name[1:-1].isprintable() or '"' in name[1:-1] \
            or " " in name:
        return None
    priority = parts[3] if len(parts) == 4 else ""
    if priority and not (priority.isascii() and priority.isdigit() and len(priority) <= 3):
        return None
    return Event(parts[0], name[1:-1], parts[2], priority)


def split_lines(buf: bytes, skipping: bool) -> tuple[list[bytes], bytes, bool]:
    """(complete lines, the unfinished rest, whether the rest is being
    skipped): a line longer than ``MAX_LINE`` is dropped up to its newline,
    so a writer that never ends a line cannot grow the buffer without bound."""
    *lines, rest = buf.split(b"\n")
    if skipping and lines:
        lines, skipping = lines[1:], False
    elif skipping:
        return [], b"", True
    lines = [ln for ln in lines if len(ln) <= MAX_LINE]
    if len(rest) > MAX_LINE:
        return lines, b"", True
    return lines, rest, False


class _Follow:
    """The cluster file as the agent last took it: its bytes, key and spec,
    taken anew when the bytes change (a file that does not validate is logged
    once and the last good one kept, as `lvsdr watch` keeps the last good
    keepalived.conf)."""

    def __init__(self, source: Source, log: Any) -> None:
        self.path = source.path
        self.node = source.node
        self.raw = source.raw
        self.key = source.key
        self.spec = director_spec(source.cluster, source.node)
        self.state_dir = Path(source.cluster.state_dir)
        self.log = log

    def changed(self) -> bool:
        """Whether a new, valid cluster file was taken."""
        try:
            fresh = Source.read(self.path, self.node)
        except LvsdrError as e:
            self.log.warning("cluster file unreadable; keeping the last good one", error=str(e))
            return False
        if fresh.raw == self.raw:
            return False
        self.raw = fresh.raw
        try:
            spec = director_spec(fresh.cluster, self.node)
        except LvsdrError as e:
            self.log.warning("cluster file rejected; keeping the last good one", error=str(e))
            return False
        except Exception:  # a reading lvsdr got wrong must not stop the agent: the last good file stays
            self.log.exception("cluster file not read (a fault of lvsdr's); keeping the last good one")
            return False
        self.spec, self.key, self.state_dir = spec, fresh.key, Path(fresh.cluster.state_dir)
        return True


def agent(source: Source, fifo_path: Path, interval: float = AGENT_INTERVAL,
          pidfile: str = KEEPALIVED_PIDFILE) -> int:
    """Resident: reconcile once at start, then
    - after every burst of FIFO events (replaying the recorded role state when
      it can, see replay.py);
    - at once when the cluster file's bytes change (inotify on its directory,
      else checked every second): the new spec is reconciled, so an added or
      removed service's marks and a director-backend's VIPs follow the edit
      without waiting for a VRRP transition;
    - at once when keepalived is gone without a clean stop (a pidfd on the
      process of its ``pidfile``): the node steps back (``plan_stopped``);
    - after ``interval`` quiet seconds (always the full reconcile: it heals
      what the replay does not look at).
    A failed reconcile is logged and retried."""
    return _Agent(source, fifo_path, interval, pidfile).run()


class _Agent:
    """The agent's state between events: the file it follows, keepalived's
    processes, the FIFO and its unfinished line; in an ECMP cluster also the
    virtual servers keepalived reported without quorum, and the drain marker."""

    def __init__(self, source: Source, fifo_path: Path, interval: float, pidfile: str) -> None:
        from .fast.log import get_logger
        from .inotify import DirWatch
        from .processes import ProcessWatch

        self.log = get_logger(node=source.node, event_source="agent")
        self.follow = _Follow(source, self.log)
        self.procs = ProcessWatch(pidfile)
        self.files = DirWatch(os.path.dirname(os.path.abspath(source.path)))
        self.fd = _open_fifo(fifo_path)
        self.interval = interval
        self.buf, self.skipping = b"", False
        self.last = time.monotonic()
        self.quorum = _Quorum(self.follow.state_dir, self.follow.spec)
        self.drained = False
        self.waiting: frozenset[IPAddress] = frozenset()  # healthy VIPs held back: their services not in IPVS yet
        from lvsdr.generator.metrics import Counters  # not on notify's path

        self.counters = Counters(started=time.time())  # `lvsdr metrics` reads them from the record

    def counted(self, counters: Counters) -> None:
        """Keep the new counts and rewrite their record (root's, 0600); a write
        that fails is logged, the agent goes on."""
        from .fast.files import write_atomic
        from .metrics import counters_path

        self.counters = counters
        f = self.follow
        try:
            write_atomic(counters_path(str(f.state_dir), f.spec.cluster, f.node), counters.to_json(), 0o600)
        except (OSError, LvsdrError) as e:
            self.log.warning("cannot record the agent's counts", error=str(e))

    @property
    def ecmp(self) -> bool:
        return self.follow.spec.ecmp is not None

    def run(self) -> int:
        import select

        self.full("agent started")
        with os.fdopen(self.fd, "rb", buffering=0):
            while True:
                # an ECMP director also looks at its drain marker every second (`lvsdr drain --undo` takes effect)
                poll = self.interval if self.files.fd is not None and not self.ecmp else min(self.interval, 1.0)
                if self.waiting:  # keepalived is building its IPVS table: look again soon
                    poll = min(poll, 0.25)
                files = [self.files.fd] if self.files.fd is not None else []
                ready = select.select([self.fd, *self.procs.filenos(), *files], [], [], poll)[0]
                if self.files.fd is None or self.files.fd in ready:
                    self.files.drain()
                    if self.follow.changed():
                        self.full("cluster file changed; reconciled")
                if any(p in ready for p in self.procs.filenos()) and not self.procs.refresh():
                    self.full(self.gone)
                if self.ecmp and drain_marker(self.follow.state_dir, self.follow.spec).exists() != self.drained:
                    self.full("drain marker changed")
                if self.ecmp and not self.procs.fds and self.procs.refresh():
                    # keepalived says nothing when it starts (its checker reports changes of quorum only)
                    self.full("keepalived started; its virtual servers have quorum")
                if self.fd in ready:
                    self.on_events(self.read_events())
                elif self.waiting and self.ipvs_caught_up():
                    self.full("IPVS has the services of a VIP held back; announced")
                elif time.monotonic() - self.last >= self.interval:
                    self.full("interval")  # no event for a while: heal anything left half-applied (or changed by hand)

    @property
    def gone(self) -> str:
        return "keepalived is gone; every VIP withdrawn" if self.ecmp else "keepalived is gone; the node stepped back"

    def ipvs_caught_up(self) -> bool:
        """IPVS has now the services of a VIP held back (one read of
        /proc/net/ip_vs: cheap enough to look four times a second)."""
        from .facts import read_ipvs_services

        ecmp = self.follow.spec.ecmp
        try:
            return ecmp is not None and bool(ecmp.in_ipvs(self.waiting, read_ipvs_services()))
        except LvsdrError:  # unreadable now: the interval's reconcile tries again
            return False

    def full(self, why: str, events: list[Event] | None = None) -> None:
        """The full reconcile (stepping back when keepalived does not run), logged when it changed something."""
        started = self.last = time.monotonic()
        watched = bool(self.procs.fds)
        running = self.procs.refresh()
        if watched and not running and why == "interval":
            # keepalived died as the quiet interval ended: this reconcile is the one its pidfds would have started
            why = self.gone
        f = self.follow
        fields: dict[str, Any]
        try:
            if f.spec.ecmp is not None:
                self.drained = drain_marker(f.state_dir, f.spec).exists()
                healthy = f.spec.ecmp.healthy(self.quorum.down(self.procs.pids())) if running else frozenset()
                announced, done = reconcile_ecmp(f.spec, f.state_dir, healthy)
                self.waiting = frozenset() if self.drained else frozenset(
                    v for v in healthy if str(v) not in announced)
                fields = {"announced": announced, "drained": self.drained,
                          **({"waiting_for_ipvs": sorted(map(str, self.waiting))} if self.waiting else {})}
            else:
                role, done = reconcile(f.spec, f.state_dir, f.key, stopped=not running)
                fields = {"observed_role": role}
        except Exception:
            self.log.exception("reconcile failed", why=why)
            self.counted(self.counters.failed())
            self.waiting = frozenset()  # the interval retries
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
        import select

        lines: list[bytes] = []
        while True:
            more, self.buf, self.skipping = split_lines(self.buf + os.read(self.fd, 65536), self.skipping)
            lines += more
            if self.skipping:
                self.log.warning("a FIFO line longer than the limit was dropped", limit=MAX_LINE)
            if not select.select([self.fd], [], [], 0)[0]:
                break
        parse = parse_quorum_event if self.ecmp else parse_event
        return [e for e in (parse(ln.decode(errors="replace")) for ln in lines) if e]

    def on_events(self, events: list[Event]) -> None:
        if not events:
            return
        started = self.last = time.monotonic()
        f = self.follow
        if f.changed():
            self.full("cluster file changed; reconciled", events)
            return
        if self.ecmp:
            self.procs.refresh()
            self.quorum.update(self.procs.pids(), events)
            self.full("quorum changed", events)
            return
        try:
            fast = _replay(f.path, f.node)
            role, done = fast if fast is not None else reconcile(f.spec, f.state_dir, f.key)
        except Exception:  # keep running: the next event (or the interval) retries
            self.log.exception("reconcile failed", events=[e.fields() for e in events])
            self.counted(self.counters.failed())
            return
        took = time.monotonic() - started
        counters = self.counters.reconciled(time.time(), fast=fast is not None, changes=len(done))
        for e in events:
            if e.type == "INSTANCE":
                counters = counters.transition(e.name, e.state, took)
        self.counted(counters)
        self.log.info("vrrp transition", events=[e.fields() for e in events], observed_role=role, changes=done,
                      ms=round((time.monotonic() - started) * 1000, 1))
        self.procs.refresh()  # keepalived (re)started: watch its processes (after the transition: off its clock)


def parse_quorum_event(line: str) -> Event | None:
    """A virtual-server line of keepalived's LVS notify FIFO, ``VS
    [192.0.2.150]:tcp:80 DOWN`` (also ``VS FWM 5 UP``, ``VS [GROUP]:0 UP``),
    as an Event named as ``Ecmp`` keys it; None for anything else (its
    real-server lines, noise)."""
    if not line.startswith("VS ") or not (line.endswith(" UP") or line.endswith(" DOWN")):
        return None
    raw, state = line[3:].rsplit(" ", 1)
    if not raw or not raw.isprintable() or len(raw) > 300:
        return None
    return Event("VS", vs_name(raw), state)


class _Quorum:
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
