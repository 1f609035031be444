"""The IPVS connection sync daemons of this director's kernel, as a planned
switchover needs them (`lvsdr drain` on a VRRP director with sync_daemon).

keepalived starts the kernel's master sync daemon on a MASTER (and the
backup one on every director): the master sends each connection to the
peers when it becomes established (at its sync_threshold-th packet, 3 by
default, then every sync_period-th, 50) and flushes its send buffer at
least every two seconds (IPVS_SYNC_FLUSH_TIME). lvsdr cannot read the peer's
table from here; what it can tell is that this kernel runs the master daemon
(else the peer has none of these connections) and wait out the flush for
every connection it carries, which is what the peer's table then holds.

The fact is `ipvsadm -L --daemon` and a pure parser of its output."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from lvsdr.generator.model import IPAddress

SYNC_FLUSH = 2.0  # s: the kernel's master sync daemon sends what it buffered at least this often
SETTLED = SYNC_FLUSH + 1.0  # s a connection has been seen here before the peer is taken to hold it

_DAEMON = re.compile(r"^(master|backup) sync daemon \((?:mcast=)?(\S+?)(?:, syncid=(\d+))?[,)]")


@dataclass(frozen=True)
class KernelSyncDaemon:
    """One of the kernel's IPVS sync daemons as ipvsadm lists it (the cluster file's is model.SyncDaemon)."""

    role: str  # "master" or "backup"
    interface: str
    syncid: int


def parse_daemons(text: str) -> tuple[KernelSyncDaemon, ...]:
    """`ipvsadm -L --daemon` -> the sync daemons it lists (none: empty output).
    Lines as ipvsadm 1.31 prints them: ``master sync daemon (mcast=eth0,
    syncid=63, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)``; older ones
    stop after the syncid."""
    out = []
    for line in text.splitlines():
        m = _DAEMON.match(line.strip())
        if m:
            out.append(KernelSyncDaemon(m.group(1), m.group(2), int(m.group(3) or 0)))
    return tuple(out)


def read_daemons() -> tuple[KernelSyncDaemon, ...]:
    from .run import run

    ran = run(["ipvsadm", "-L", "--daemon"], timeout=10)
    if ran.code != 0:
        raise OSError(f"ipvsadm -L --daemon: {(ran.err or ran.out).strip() or f'exit {ran.code}'}")
    return parse_daemons(ran.out)


def settle(vips: Collection[IPAddress], read: Callable[[Collection[IPAddress]], Collection[object]],
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until every connection to ``vips`` that ``read`` lists now has been here SETTLED s (from the first
    reading: its age before it is not known) or has ended. -> how many were waited for. Connections opened during
    the wait or after are the sync hold rules' (generator/director.py: their segments are dropped, not reset, on
    the new MASTER until the sync brings them), not waited for: a request loop would keep the wait going."""
    started = clock()
    waiting = set(read(vips))
    n = len(waiting)
    while waiting and (left := SETTLED - (clock() - started)) > 0:
        sleep(min(0.5, left))
        waiting &= set(read(vips))
    return n
