"""`lvsdr watch`: keep a director's keepalived.conf true to the cluster file.

On start and on every change of the cluster file: load and validate it,
render keepalived.conf, have `keepalived -t` accept it, replace the config
atomically (only when its bytes change) and reload keepalived (SIGHUP to the
pid in the pidfile). A file that does not validate, or a config keepalived
rejects, changes nothing: the last good config stays in place and keepalived
keeps running it; the error is logged, and the next good save is picked up.
Transient failures (keepalived -t timing out, a write error, keepalived's
pid gone) are logged too, and the watcher goes on.

A real server removed from the file (or a whole service) is not cut: it
stays in the config at weight 0, with no checker, while IPVS counts active
connections through it, for at most the cluster's ``drain_timeout``
(hooks/reload.py); the watcher passes again every LEAVING_POLL s meanwhile,
and removes it when they have ended. It also passes again after a transient
failure, without waiting for the next change of the file.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lvsdr.errors import InputError, LvsdrError
from lvsdr.source import Source

from .reload import WatchTarget

DEBOUNCE = 0.3  # seconds: editors write a file in several steps
LEAVING_POLL = 5.0  # seconds between passes while removed real servers are leaving (their connections end)

Outcome = Literal["unchanged", "reloaded", "written", "rejected", "failed"]


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    detail: str
    leaving: bool = False  # real servers are leaving at weight 0: pass again in LEAVING_POLL s
    previous: bytes | None = None  # "reloaded": the config it replaced (the guard's way back)
    baseline: Any = None  # "reloaded" under a guard: the wire as it was before (hooks/guard.View)
    bird_previous: bytes | None = None  # bird.conf reconfigured: the one it replaced (its way back)

    @property
    def again(self) -> bool:
        """Pass again in LEAVING_POLL s without a change of the file: real
        servers are leaving, or the config could not be installed for a
        transient reason (`keepalived -t` not answering, a write error)."""
        return self.leaving or self.outcome == "failed"


def _pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


class Guarding:
    """The resident watcher's guard (hooks/guard.py): the cluster file whose config was rolled back (its bytes'
    key: not installed again until the file changes)."""

    def __init__(self) -> None:
        self.bad: str | None = None
        self.said = False


def sync_once(t: WatchTarget, log: Any, source: Source | None = None, guarding: Guarding | None = None) -> Result:
    """One pass, from ``source`` (the cluster file read once: keepalived.conf
    and bird.conf come from that one reading; read now when None). Never
    raises for what a running watcher must survive. ``guarding``: the wire as
    it is is looked at before a new config is installed (the guard's baseline)."""
    from .reload import prepare, save_leaving

    try:
        source = source or Source.read(str(t.cluster), t.node)
        if guarding is not None and guarding.bad is not None:
            from .guard import file_key

            if file_key(source.raw) == guarding.bad:
                if not guarding.said:
                    log.warning("cluster file rolled back before; not installed again until it changes",
                                output=str(t.output))
                guarding.said = True
                return Result("rejected", "rolled back before: not installed again until the file changes")
            guarding.bad, guarding.said = None, False
        n = prepare(t, source)
    except InputError as e:
        log.error("cluster file rejected; keeping the last good config", error=str(e), output=str(t.output))
        return Result("rejected", f"cluster file rejected, last good config kept: {e}")
    except LvsdrError as e:  # a fact (the live table, a record) could not be read: try again soon
        log.error("cannot read the node; keeping the last good config", error=str(e), output=str(t.output))
        return Result("failed", f"the node could not be read, last good config kept: {e}")
    look = None
    if guarding is not None and source.cluster.guard_window > 0:
        from .guard import Guard

        seen: list[Any] = []  # the wire before the first file of this pass is replaced, looked at once

        def look() -> Any:
            if not seen:
                seen.append(Guard(source.cluster, t.node, log, bird_socket=t.bird_socket).look())
            return seen[0]
    bird = _sync_bird(t, source, log, look)
    def hold() -> None:
        from .drpath import hold_new_backends

        held = hold_new_backends(source.cluster, t.node)
        if held:
            log.info("new backends held out until their DR path passes", files=held)

    r = _sync_keepalived(t, n.text, n.mode, log, look, hold)
    if r.outcome not in ("rejected", "failed"):
        try:
            save_leaving(n)
        except (LvsdrError, OSError) as e:
            log.error("cannot record the leaving real servers", error=str(e), record=str(n.record))
        for lv in n.leaving:
            log.info("real server leaving at weight 0", service=str(lv.key), real_server=str(lv.dest),
                     since=lv.since, until=lv.until(n.drain_timeout))
    r = Result(r.outcome, r.detail, bool(n.leaving), r.previous, r.baseline)
    if bird is None:
        return r
    outcome: Outcome = r.outcome if bird[0] == "unchanged" or r.outcome in ("rejected", "failed") else (
        bird[0] if r.outcome == "unchanged" else r.outcome)
    baseline = r.baseline
    if baseline is None and bird[2] is not None and look is not None:  # bird.conf alone changed: its look
        baseline = look()
    return Result(outcome, f"{r.detail}; bird.conf: {bird[1]}", r.leaving, r.previous, baseline, bird[2])


def _sync_bird(t: WatchTarget, source: Source, log: Any,
               look: Any = None) -> tuple[Outcome, str, bytes | None] | None:
    """An ECMP cluster's bird.conf, as keepalived.conf: rendered, checked by
    `bird -p`, written when it changed, and BIRD reconfigured (`birdc
    configure`: sessions whose settings did not change stay up). None for a
    VRRP cluster."""
    from lvsdr.generator.bird import render_bird

    from .bird import check_text, conf_owner, configure
    from .fast.files import read_regular_or_none, write_atomic

    try:
        cluster = source.cluster
        if cluster.bgp is None:
            return None
        text = render_bird(cluster, t.node, source=str(t.cluster))
    except LvsdrError:
        return None  # the keepalived side reports the file
    path = t.bird_conf or Path(cluster.bgp.bird_conf)
    mode, group = conf_owner(any(p.password for p in cluster.bgp.peers))
    try:
        st = path.stat()
        unchanged = (st.st_mode & 0o7777, st.st_gid) == (mode, 0 if group is None else group)
    except OSError:
        unchanged = False
    if unchanged and read_regular_or_none(path, len(text.encode())) == text.encode():
        return "unchanged", "unchanged", None
    try:
        check_text(text)
        previous = read_regular_or_none(path, 16 << 20)
        if look is not None and previous is not None:
            look()  # the guard's baseline, before BIRD sees the new file
        write_atomic(path, text, mode, group)
    except LvsdrError as e:
        log.error("bird.conf not installed; keeping the last good one", error=str(e), output=str(path))
        return "rejected", f"not installed, last good one kept: {e}", None
    ok, answer = configure(t.bird_socket or cluster.bgp.bird_socket)
    if not ok:
        log.warning("bird.conf written; birdc configure failed", output=str(path), answer=answer)
        return "written", f"written; birdc configure: {answer.splitlines()[-1] if answer else 'no answer'}", None
    log.info("bird.conf written and BIRD reconfigured", output=str(path))
    return "reloaded", "written; BIRD reconfigured", previous


def _sync_keepalived(t: WatchTarget, text: str, mode: int, log: Any, look: Any = None, hold: Any = None) -> Result:
    from .fast.files import read_regular_or_none, write_atomic
    from .keepalived import check_text

    if read_regular_or_none(t.output, len(text.encode())) == text.encode():
        return Result("unchanged", "unchanged")
    try:
        result = check_text(text)
    except LvsdrError as e:  # keepalived -t did not answer: try again at the next change
        log.error("keepalived -t failed; keeping the last good config", error=str(e), output=str(t.output))
        return Result("failed", f"not validated, last good config kept: {e}")
    if not result.ok:
        log.error("keepalived -t rejected the new config; keeping the last good one", error=result.message(),
                  output=str(t.output))
        return Result("rejected", f"rejected by keepalived -t, last good config kept: {result.message()}")
    previous = read_regular_or_none(t.output, 64 << 20)
    baseline = look() if look is not None and previous is not None else None
    if hold is not None and previous is not None:  # an edit, not a first install: new backends start out
        hold()
    try:
        write_atomic(t.output, text, mode)
    except LvsdrError as e:
        log.error("cannot write the config; keeping the last good one", error=str(e), output=str(t.output))
        return Result("failed", str(e))
    pid = _pid(t.pidfile)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pid = None
    if pid is None:
        log.warning("config written; keepalived is not running (no live pid in pidfile)", output=str(t.output),
                    pidfile=str(t.pidfile))
        return Result("written", f"written; keepalived not running (no live pid in {t.pidfile})")
    log.info("config written and keepalived reloaded", output=str(t.output), pid=pid)
    return Result("reloaded", f"written; keepalived (pid {pid}) reloaded", previous=previous, baseline=baseline)


def guard_reload(t: WatchTarget, source: Source, r: Result, guarding: Guarding, log: Any,
                 superseded: Any = None) -> None:
    """After a reload: the guard's window (hooks/guard.py); a regression puts the previous config back."""
    from .fast.files import write_atomic
    from .guard import Guard, file_key

    window = source.cluster.guard_window
    if (r.outcome != "reloaded" or (r.previous is None and r.bird_previous is None) or r.baseline is None
            or window <= 0):
        return
    guard = Guard(source.cluster, t.node, log, t.output, t.bird_socket)
    log.info("guard: verifying the wire", window=window)
    why = guard.verify(r.baseline, window, superseded)
    if why is None:
        if guard.ended == "window":  # not when a new edit ended it (its own guard says) or by hand (said)
            log.info("guard: the new config holds", window=window)
        return
    try:
        if r.previous is not None:
            write_atomic(t.output, r.previous, t.output.stat().st_mode & 0o7777)
            pid = _pid(t.pidfile)
            if pid is not None:
                os.kill(pid, signal.SIGHUP)
        if r.bird_previous is not None and source.cluster.bgp is not None:
            from .bird import configure

            bird_conf = t.bird_conf or Path(source.cluster.bgp.bird_conf)
            st = bird_conf.stat()
            write_atomic(bird_conf, r.bird_previous, st.st_mode & 0o7777, st.st_gid)
            configure(t.bird_socket or source.cluster.bgp.bird_socket)
    except (OSError, LvsdrError) as e:
        log.error("guard: cannot put the last working config back", why=why, error=str(e), output=str(t.output))
        return
    guarding.bad, guarding.said = file_key(source.raw), False
    guard.count(why, guarding.bad)
    log.error("rolled back to the last working config: the new one broke the wire", why=why, output=str(t.output))


def once(t: WatchTarget, source: Source | None = None) -> int:
    """One pass for configuration management: what it did on stderr; exit 1
    when the new config was not installed."""
    import sys

    from .fast.log import get_logger

    r = sync_once(t, get_logger(node=t.node, event_source="watch"), source)
    print(f"lvsdr watch: {t.output}: {r.detail}", file=sys.stderr)
    return 1 if r.outcome in ("rejected", "failed") else 0


def watch(t: WatchTarget, first: Source | None = None) -> int:
    """Resident: one pass now, then one after every change (debounced). The
    cluster file is followed (``lvsdr.source.Follower``): a pass reads it
    only when it changed, and a save that does not validate (or no longer
    names this director) is logged once and the last good one kept; a pass
    without a change (real servers leaving, a transient failure) plans from
    the last good reading."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    from lvsdr.source import Follower

    from .fast.log import get_logger

    log = get_logger(node=t.node, event_source="watch")
    target = t.cluster.resolve()
    if not target.parent.is_dir():
        raise LvsdrError(f"{t.cluster}: directory does not exist")
    follower = Follower(first or Source.read(str(t.cluster), t.node), lambda s: s.cluster.find_director(t.node), log)
    guarding = Guarding()
    changed = threading.Event()
    stop = threading.Event()

    def sync() -> bool:
        source = follower.source
        r = sync_once(t, log, source, guarding)
        guard_reload(t, source, r, guarding, log, lambda: stop.is_set() or (changed.is_set() and follower.poll()))
        return r.again

    again = sync()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            paths = {event.src_path, getattr(event, "dest_path", "")}
            if any(p and Path(os.fsdecode(p)).resolve() == target for p in paths):
                changed.set()

    def _stop(signum: int, frame: object) -> None:
        stop.set()
        changed.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    observer = Observer()
    # the directory, not the file: editors and config management replace files by rename
    observer.schedule(Handler(), str(target.parent), recursive=False)
    observer.start()
    log.info("watching", cluster=str(target), output=str(t.output))
    try:
        while not stop.is_set():
            changed.wait(LEAVING_POLL if again else None)
            if stop.is_set():
                break
            stop.wait(DEBOUNCE)
            changed.clear()
            try:
                follower.poll()
                again = sync()
            except Exception:  # anything unforeseen: logged with its traceback, and the watcher goes on
                log.exception("sync failed; keeping the last good config", output=str(t.output))
    finally:
        observer.stop()
        observer.join(timeout=5)
    return 0
