"""`lvsdr watch`: keep a director's keepalived.conf true to the cluster file.

On start and on every change of the cluster file: load and validate it,
render keepalived.conf, have `keepalived -t` accept it, replace the config
atomically (only when its bytes change) and reload keepalived (SIGHUP to the
pid in --pidfile). A file that does not validate, or a config keepalived
rejects, changes nothing: the last good config stays in place and keepalived
keeps running it; the error is logged, and the next good save is picked up.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError

DEBOUNCE = 0.3  # seconds: editors write a file in several steps


def _pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def sync_once(args: argparse.Namespace, log: Any) -> str:
    """One pass: returns "unchanged", "reloaded", "written" (no keepalived to
    reload) or "rejected" (the last good config stays)."""
    from lvsdr.generator.keepalived import Wiring, render_keepalived
    from lvsdr.generator.load import load_cluster

    from .files import write_atomic
    from .keepalived import check_text

    try:
        cluster = load_cluster(args.cluster)
        wiring = Wiring.from_cluster(cluster, lvsdr_path=args.lvsdr_path, config_path=args.config_path,
                                     notify_fifo=args.notify_fifo, hook=args.hook)
        text = render_keepalived(cluster, args.node, source=args.cluster, wiring=wiring)
    except LvsdrError as e:
        log.error("cluster file rejected; keeping the last good config", error=str(e), output=args.output)
        return "rejected"
    out = Path(args.output)
    try:
        if out.read_text() == text:
            return "unchanged"
    except OSError:
        pass
    result = check_text(text)
    if not result.ok:
        log.error("keepalived -t rejected the new config; keeping the last good one", error=result.message(),
                  output=args.output)
        return "rejected"
    write_atomic(out, text, 0o600 if cluster.auth_pass else 0o644)
    pid = _pid(Path(args.pidfile))
    if pid is None:
        log.warning("config written; keepalived is not running (no live pid in pidfile)", output=args.output,
                    pidfile=args.pidfile)
        return "written"
    os.kill(pid, signal.SIGHUP)
    log.info("config written and keepalived reloaded", output=args.output, pid=pid)
    return "reloaded"


def cmd_watch(args: argparse.Namespace) -> int:
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    from .log import get_logger

    log = get_logger(node=args.node, event_source="watch")
    target = Path(args.cluster).resolve()
    if not target.parent.is_dir():
        raise LvsdrError(f"{args.cluster}: directory does not exist")
    first = sync_once(args, log)
    if args.once:
        return 0 if first != "rejected" else 1
    changed = threading.Event()
    stop = threading.Event()

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
    log.info("watching", cluster=str(target), output=args.output)
    try:
        while not stop.is_set():
            changed.wait()
            if stop.is_set():
                break
            stop.wait(DEBOUNCE)
            changed.clear()
            sync_once(args, log)
    finally:
        observer.stop()
        observer.join(timeout=5)
    return 0
