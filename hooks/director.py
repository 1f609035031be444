"""`lvsdr notify` (keepalived's notify callback) and `lvsdr agent` (resident
on keepalived's notify FIFO): reconcile a director to the role observed on
the node. Both end in ``reconcile``; neither trusts the event's STATE."""

from __future__ import annotations

import argparse
import os
import stat
import time
from pathlib import Path
from typing import Any

from lvsdr.generator.director import DirectorSpec, director_spec, observed_role, plan_role, role_spec
from lvsdr.generator.model import Cluster

from .facts import read_addresses, read_director_facts, record_path, require_identity
from .files import node_lock


def reconcile(spec: DirectorSpec, state_dir: Path) -> tuple[str, list[str]]:
    """Read the node, plan for the observed role, apply. Returns (role, change descriptions)."""
    from .gateway import Gateway

    require_identity(spec.node, spec.address, read_addresses())  # before anything, even the lock
    with node_lock(state_dir):
        backend = spec.backend
        facts = read_director_facts(backend, state_dir)
        role = observed_role(spec, facts.addresses)
        changes = plan_role(spec, role, facts)
        if changes:
            rs = role_spec(spec, role)
            rec = record_path(state_dir, rs) if rs else state_dir / f"director-{spec.cluster}-{spec.node}.json"
            Gateway(rec).apply(changes)
        return role, [c.description for c in changes]


def cmd_notify(args: argparse.Namespace, cluster: Cluster) -> int:
    """keepalived: `notify "lvsdr notify CLUSTER --node NAME"` + TYPE NAME STATE PRIORITY."""
    started = time.monotonic()
    spec = director_spec(cluster, args.node)
    event = {"type": args.type, "name": args.name, "state": args.state, "priority": args.priority}
    try:
        role, done = reconcile(spec, Path(cluster.state_dir))
    except Exception as e:
        from .log import get_logger

        get_logger(node=args.node, event_source="notify").error("reconcile failed", error=str(e), **event)
        raise
    from .log import get_logger

    get_logger(node=args.node, event_source="notify").info(
        "vrrp transition", observed_role=role, changes=done, ms=round((time.monotonic() - started) * 1000, 1),
        **event)
    return 0


def _open_fifo(path: Path) -> int:
    try:
        st = path.stat()
        if not stat.S_ISFIFO(st.st_mode):
            from lvsdr.errors import InputError

            raise InputError(f"--fifo: {path} exists and is not a FIFO")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        os.mkfifo(path, 0o600)
    # O_RDWR: the FIFO never reports EOF when keepalived closes or restarts
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def parse_event(line: str) -> dict[str, Any] | None:
    """`INSTANCE "VI_web" MASTER 150` -> fields; None for anything else."""
    parts = line.split()
    if len(parts) < 3:
        return None
    return {"type": parts[0], "name": parts[1].strip('"'), "state": parts[2],
            "priority": parts[3] if len(parts) > 3 else ""}


def cmd_agent(args: argparse.Namespace, cluster: Cluster) -> int:
    """Resident: reconcile once at start, then after every burst of FIFO events."""
    import select

    from .log import get_logger

    spec = director_spec(cluster, args.node)
    state_dir = Path(cluster.state_dir)
    log = get_logger(node=args.node, event_source="agent")
    fd = _open_fifo(Path(args.fifo))
    role, done = reconcile(spec, state_dir)
    log.info("agent started", fifo=args.fifo, observed_role=role, changes=done)
    buf = b""
    interval = float(getattr(args, "interval", 30.0))
    with os.fdopen(fd, "rb", buffering=0) as fifo:
        while True:
            if not select.select([fifo], [], [], interval)[0]:
                # no event for a while: heal anything left half-applied (or changed by hand)
                try:
                    role, done = reconcile(spec, state_dir)
                    if done:
                        log.warning("node drifted from its role; reconciled", observed_role=role, changes=done)
                except Exception as e:
                    log.error("reconcile failed", error=str(e))
                continue
            buf += os.read(fd, 65536)
            # drain what is already queued: one reconcile per burst, to the latest state
            while select.select([fifo], [], [], 0)[0]:
                buf += os.read(fd, 65536)
            *lines, buf = buf.split(b"\n")
            events = [e for e in (parse_event(ln.decode(errors="replace")) for ln in lines) if e]
            if not events:
                continue
            started = time.monotonic()
            try:
                role, done = reconcile(spec, state_dir)
            except Exception as e:  # keep running: the next event retries
                log.error("reconcile failed", error=str(e), events=events)
                continue
            log.info("vrrp transition", events=events, observed_role=role, changes=done,
                     ms=round((time.monotonic() - started) * 1000, 1))
