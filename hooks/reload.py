"""The next reload of a director's keepalived (read-only): the config `lvsdr
watch` would install, with the real servers removed from the cluster file
that are still leaving (weight 0 until their connections end), and what
reloading it will change in the live kernel (`lvsdr plan`, `watch --dry-run`).

Facts read here: the installed keepalived.conf (the config keepalived runs),
``/proc/net/ip_vs``, the node's addresses, and the record of leaving real
servers (``STATE_DIR/leaving-CLUSTER-NODE.json``, root's own).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lvsdr.defaults import KEEPALIVED_PIDFILE
from lvsdr.generator import ipvs
from lvsdr.generator.changes import as_dict
from lvsdr.generator.ipvs import Dest, Key, Leaving
from lvsdr.generator.node import FactError, record_json
from lvsdr.source import Source

if TYPE_CHECKING:
    from lvsdr.generator.kaconf import Directive
    from lvsdr.generator.model import Cluster


@dataclass(frozen=True)
class WatchTarget:
    """What to keep true: director ``node``'s ``output`` from ``cluster``."""

    cluster: Path
    node: str
    output: Path
    pidfile: Path = Path(KEEPALIVED_PIDFILE)
    lvsdr_path: str | None = None
    config_path: str | None = None
    notify_fifo: str | None = None
    hook: str | None = None
    bird_conf: Path | None = None  # ECMP: where bird.conf goes (default: the cluster's bgp.bird_conf)
    bird_socket: str | None = None  # ECMP: birdc's socket (default: the cluster's bgp.bird_socket)


@dataclass(frozen=True)
class Next:
    """What a reload installs (``text``, ``mode``), what stays leaving, and
    what it changes (typed changes, and notes that are not changes)."""

    text: str
    mode: int
    leaving: tuple[Leaving, ...]
    changes: tuple[ipvs.Change, ...]
    notes: tuple[str, ...]
    record: Path
    drain_timeout: int


def leaving_path(state_dir: str, cluster: str, node: str) -> Path:
    return Path(state_dir) / f"leaving-{cluster}-{node}.json"


def parse_leaving(text: str, where: str) -> tuple[Leaving, ...]:
    """The record's JSON -> leaving real servers; ``FactError`` naming the file for anything else."""
    try:
        items = record_json(text)
        if not isinstance(items, list):
            raise TypeError
        out = []
        for it in items:
            k, d = it["key"], it["dest"]
            key = Key(str(k[0]), ipvs.parse_address(k[1]) if k[1] else "", int(k[2]))
            if key.protocol not in ("TCP", "UDP", "SCTP"):
                raise ValueError(key.protocol)
            dest = Dest(ipvs.parse_address(d[0]), int(d[1]))
            since = float(it["since"])
            if not 0 <= since < 1e12:  # seconds since 1970: finite, and not 30,000 years from now
                raise ValueError(since)
            out.append(Leaving(key, dest, since, str(it["scheduler"])))
        return tuple(out)
    except (ValueError, TypeError, KeyError, IndexError):
        raise FactError(f"{where}: not a record of leaving real servers lvsdr wrote "
                        "(remove it to start over)") from None


def dump_leaving(leaving: tuple[Leaving, ...]) -> str:
    return json.dumps([{"key": [lv.key.protocol, lv.key.address, lv.key.port],
                        "dest": [lv.dest.address, lv.dest.port], "since": lv.since, "scheduler": lv.scheduler}
                       for lv in leaving], indent=1) + "\n"


def read_leaving(path: Path) -> tuple[Leaving, ...]:
    from .fast.files import read_trusted

    try:
        return parse_leaving(read_trusted(path, 1 << 20).decode("utf-8", errors="replace"), str(path))
    except FileNotFoundError:
        return ()


def _tree(text: str, name: str) -> tuple[Directive, ...]:
    from lvsdr.generator.kaconf import read_keepalived

    return read_keepalived(name, lambda _p: text)


def prepare(t: WatchTarget, source: Source | None = None, now: float | None = None) -> Next:
    """The next config and its plan, from ``source`` (the cluster file read
    once; read now when None). ``LvsdrError`` for a bad cluster file (or an
    unreadable fact): nothing is decided then."""
    from lvsdr.generator.keepalived import Wiring, render_keepalived

    from .fast.files import UntrustedError, read_trusted

    now = time.time() if now is None else now
    source = source or Source.read(str(t.cluster), t.node)
    cluster = source.cluster
    wiring = Wiring.from_cluster(cluster, lvsdr_path=t.lvsdr_path, config_path=t.config_path,
                                 notify_fifo=t.notify_fifo, hook=t.hook)
    base = render_keepalived(cluster, t.node, source=str(t.cluster), wiring=wiring)
    notes: list[str] = []
    try:
        installed = read_trusted(t.output).decode("utf-8", errors="replace")
    except FileNotFoundError:
        installed = ""
        notes.append(f"{t.output} does not exist yet: keepalived runs no config of lvsdr's")
    except (UntrustedError, OSError) as e:
        installed = ""
        notes.append(f"the installed config is not read ({e}): removed real servers are cut at once, not drained")
    prev_tree = _tree(installed, str(t.output)) if installed else ()
    previous = ipvs.config_table(prev_tree)
    from . import facts

    live = facts.read_ipvs() or {}  # empty where IPVS is not loaded (keepalived loads it)
    record = leaving_path(cluster.state_dir, cluster.name, t.node)
    known = read_leaving(record)
    base_tree = _tree(base, "next")
    left = ipvs.leaving(previous, ipvs.config_table(base_tree), live, known, now,
                        cluster.drain_timeout)
    text = render_keepalived(cluster, t.node, source=str(t.cluster), wiring=wiring, leaving=left) if left else base
    next_tree = _tree(text, "next") if left else base_tree  # read once when nothing is leaving
    changes: list[ipvs.Change] = list(ipvs.plan(previous, ipvs.config_table(next_tree), live))
    from .facts import held_addresses

    changes += ipvs.plan_vips(ipvs.config_vips(prev_tree), ipvs.config_vips(next_tree), held_addresses())
    notes += pinned(cluster, ipvs.config_table(next_tree), left)
    for lv in left:
        conn = live[lv.key].dests[lv.dest]
        notes.append(f"{lv.key}: real server {lv.dest} left the cluster file {now - lv.since:.0f} s ago: kept at "
                     f"weight 0 while its {conn.active} active connections end, removed then or "
                     f"{max(0.0, lv.until(cluster.drain_timeout) - now):.0f} s from now (drain_timeout "
                     f"{cluster.drain_timeout} s)")
    return Next(text, cluster.file_mode, left, tuple(changes), tuple(notes), record, cluster.drain_timeout)


def pinned(cluster: Cluster, table: dict[ipvs.Key, ipvs.Service], left: Sequence[ipvs.Leaving]) -> list[str]:
    """A note per real server at weight 0 (drained, or leaving) that persistence templates still pin clients to
    (read only when a service is persistent: one ipvsadm dump)."""
    if not any(s.persistence_timeout for s in cluster.services):
        return []
    from .facts import read_persistent

    templates = read_persistent() or {}
    leaving = {(lv.key, lv.dest) for lv in left}
    how = ("expire_quiescent_template is on: each leaves at its next connection" if cluster.expire_quiescent_template
           else "expire_quiescent_template is off: each stays until it is away for persistence_timeout")
    out = []
    for (key, dest), n in sorted(templates.items()):
        svc = table.get(key)
        weight = svc.dests[dest].weight if svc is not None and dest in svc.dests else None
        if n and (weight == 0 or (key, dest) in leaving):
            out.append(f"{key}: {n} client{'s' if n != 1 else ''} pinned to real server {dest.address}:{dest.port} at "
                       f"weight 0 (persistence templates); {how}")
    return out


def save_leaving(n: Next) -> None:
    """Write (or remove) the record of leaving real servers, root's own."""
    from .fast.files import state_dir, write_atomic

    if not n.leaving:
        with contextlib.suppress(FileNotFoundError):
            n.record.unlink()
        return
    state_dir(n.record.parent)
    write_atomic(n.record, dump_leaving(n.leaving), 0o600)


def describe(n: Next) -> str:
    """The plan as an operator reads it: one line per change, then the notes."""
    lines = [f"  {c.description}" for c in n.changes] or ["  no change to IPVS or the VIPs"]
    lines += [f"  note: {s}" for s in n.notes]
    return "\n".join(lines) + "\n"


def plan(t: WatchTarget, source: Source | None = None, as_json: bool = False) -> int:
    """`lvsdr plan`: print what the next reload changes; change nothing."""
    import sys

    source = source or Source.read(str(t.cluster), t.node)
    n = prepare(t, source)
    checks = guard_checks(source.cluster)
    if as_json:
        doc = {"node": t.node, "config": str(t.output), "changes": [as_dict(c) for c in n.changes],
               "leaving": [{"service": str(lv.key), "real_server": str(lv.dest), "since": lv.since,
                            "until": lv.until(n.drain_timeout)} for lv in n.leaving], "notes": list(n.notes),
               "guard": {"window": source.cluster.guard_window, "checks": checks}}
        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(f"lvsdr plan: director {t.node}, reload of {t.output}:\n" + describe(n))
        if source.cluster.guard_window > 0:
            sys.stdout.write(f"  guard (resident `lvsdr watch`): for {source.cluster.guard_window} s after the reload, "
                             f"{'; '.join(checks)}; a regression puts the last working config back\n")
        else:
            sys.stdout.write("  guard: none (guard_window = 0)\n")
    return 0


def guard_checks(cluster: Cluster) -> list[str]:
    """What the guard verifies after a reload (hooks/guard.py), as `plan` says it."""
    out = [] if cluster.ecmp else ["one owner per VIP of each VRRP instance (not two, not none)"]
    if cluster.dr_check is not None:
        out.append("every DR path that passes before the reload still passes")
    if cluster.bgp is not None:
        out.append("every VIP announced before is still announced (unless removed or drained)")
        out.append("every BGP session Established before is Established again by the window's end")
    out.append("at the window's end, the plan is empty (IPVS holds what the config asks)")
    return out
