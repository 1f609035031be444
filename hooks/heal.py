"""`lvsdr realserver watch`: a real server kept as the cluster file says.

Resident (the lvsdr-realserver-watch@ unit, which the node package enables
beside the boot unit), it applies at start and again whenever the node may
have drifted, driven by events:

- netlink (an address or a link changed: `ip addr del VIP dev lo`, `ifdown lo`);
- `nft monitor` (a ruleset changed: `nft flush ruleset`, `iptables -F` and
  `arptables -F` through their nft backends, `firewall-cmd --reload`);
- firewalld's `Reloaded` signal on D-Bus (`dbus-monitor`), for the firewalld method;
- the cluster file's directory (inotify: a new file is taken, a bad one refused once);
- a timer: the method's sysctls read every ``interval`` (sysctl changes send
  no event), and the whole plan every ``FULL_EVERY`` seconds (legacy x_tables
  send none either).

A pass reads the facts, plans (generator/realserver.py) and applies through
the gateway under the node lock, as `lvsdr realserver apply` does. It never
fights `lvsdr realserver remove`: remove forgets lvsdr's record of the node
(under the same lock), and the watcher heals nothing while there is none
(but at its own start, which applies); `apply` writes it again.
SIGTERM and SIGINT end it cleanly (between passes). It counts its passes and
what it healed in a record that `lvsdr metrics --node` reads on a real
server.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from lvsdr.errors import LvsdrError
from lvsdr.generator.realserver import desired, plan
from lvsdr.source import Follower, Source

FULL_EVERY = 30.0  # s: the whole plan at least this often (what no event tells)
SETTLE = 0.02  # s: a burst of events (a ruleset reloaded) is one pass
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100


def heal_record_path(state_dir: Path, cluster: str, node: str) -> Path:
    return state_dir / f"realserver-watch-{cluster}-{node}.json"


class Healer:
    def __init__(self, source: Source, interval: float, state_dir: Path | None) -> None:
        from .fast.log import get_logger
        from .inotify import DirWatch

        self.log = get_logger(node=source.node, event_source="realserver-watch")
        self.follower = Follower(source, lambda s: desired(s.cluster, s.node), self.log)
        self.interval = interval
        self.state_override = state_dir
        self.files = DirWatch(os.path.dirname(os.path.abspath(source.path)))
        self.stop = False
        self.passes = self.healed = self.changes = self.failures = 0
        self.last_full = 0.0
        self.holding = False  # removed: logged once
        self.netlink = self._netlink()
        self.monitors: list[subprocess.Popen[bytes]] = []
        self.sources: list[str] = []  # the monitors' programs, for the log

    @property
    def state(self) -> Path:
        return self.state_override or Path(self.follower.source.cluster.state_dir)

    # -- event sources --------------------------------------------------------------------------------------------
    @staticmethod
    def _netlink() -> socket.socket | None:
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
            s.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            return s
        except OSError:
            return None

    def _start_monitors(self, method: str) -> None:
        for p in self.monitors:
            p.kill()
            p.wait()
        self.monitors, self.sources = [], []
        cmds = [["nft", "monitor"]] if shutil.which("nft") else []
        if method == "firewalld" and shutil.which("dbus-monitor"):
            cmds.append(["dbus-monitor", "--system",
                         "type='signal',interface='org.fedoraproject.FirewallD1',member='Reloaded'"])
        for cmd in cmds:
            try:
                self.monitors.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                                      stdin=subprocess.DEVNULL))
                self.sources.append(cmd[0])
            except OSError as e:
                self.log.warning("an event source is unavailable; the timer covers it", command=cmd[0],
                                 error=str(e))
        for p in self.monitors:
            assert p.stdout is not None
            os.set_blocking(p.stdout.fileno(), False)

    def _fds(self) -> list[int]:
        fds = [p.stdout.fileno() for p in self.monitors if p.stdout is not None and p.poll() is None]
        if self.netlink is not None:
            fds.append(self.netlink.fileno())
        if self.files.fd is not None:
            fds.append(self.files.fd)
        return fds

    def _drain(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            for _ in range(256):
                if not os.read(fd, 65536):
                    break

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> int:
        def stop(_sig: int, _frame: Any) -> None:
            self.stop = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        spec = desired(self.follower.source.cluster, self.follower.source.node)
        self._start_monitors(spec.method)
        self.log.info("watching the node", method=spec.method, interval=self.interval,
                      events=["netlink"] * (self.netlink is not None) + self.sources)
        self.heal("started")
        try:
            while not self.stop:
                try:
                    ready = select.select(self._fds(), [], [], self.interval)[0]
                except InterruptedError:
                    continue
                if self.stop:
                    break
                self.step(ready)
        finally:
            for p in self.monitors:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2)
            self.log.info("stopped", passes=self.passes, healed=self.healed)
        return 0

    def step(self, ready: list[int]) -> None:
        why = ""
        node_events = [fd for fd in ready if fd != self.files.fd]
        if node_events:
            time.sleep(SETTLE)  # the rest of the burst
            for fd in self._fds():
                if fd != self.files.fd and (fd in ready or select.select([fd], [], [], 0)[0]):
                    self._drain(fd)
            why = "event"
        if self.files.fd is not None and self.files.fd in ready:  # only a new cluster file counts here
            self.files.drain()
            if self.follower.poll():
                spec = desired(self.follower.source.cluster, self.follower.source.node)
                self._start_monitors(spec.method)
                why = "cluster file changed"
        if why:
            pass
        elif time.monotonic() - self.last_full >= FULL_EVERY:
            why = "interval"
        elif self.sysctls_drifted():
            why = "sysctl changed"
        if any(p.poll() is not None for p in self.monitors):  # a monitor died: start them again
            self._start_monitors(desired(self.follower.source.cluster, self.follower.source.node).method)
        if why:
            self.heal(why)

    def sysctls_drifted(self) -> bool:
        """The method's sysctls against /proc (a few reads: cheap enough for every ``interval``)."""
        from lvsdr.generator.methods import method_of

        from .facts import read_sysctls

        spec = desired(self.follower.source.cluster, self.follower.source.node)
        want = method_of(spec).sysctls(spec)
        return bool(want) and read_sysctls(sorted(want)) != {k: v for k, v in want.items()
                                                             if Path("/proc/sys", *k.split(".")).exists()}

    def heal(self, why: str) -> None:
        """One pass: facts, plan, apply (under the node lock); logged when it changed something."""
        from .facts import read_facts, record_path
        from .fast.files import node_lock
        from .gateway import Gateway

        self.last_full = time.monotonic()
        cluster, node = self.follower.source.cluster, self.follower.source.node
        started = time.monotonic()
        try:
            spec = desired(cluster, node)
            with node_lock(self.state, node):
                if why != "started" and not record_path(self.state, spec).exists():  # removed (remove forgets it)
                    if not self.holding:
                        self.log.info("removed by `lvsdr realserver remove`: healing nothing until "
                                      "`lvsdr realserver apply`")
                    self.holding = True
                    return
                self.holding = False
                changes = plan(spec, read_facts(spec, self.state))
                if changes:
                    Gateway(record_path(self.state, spec)).apply(changes)
        except Exception as e:  # never the watcher's end: the next event or the interval tries again
            self.failures += 1
            if isinstance(e, LvsdrError):
                self.log.error("heal failed", why=why, error=str(e))
            else:
                self.log.exception("heal failed", why=why)
            self.save()
            return
        self.passes += 1
        if changes:
            self.healed += 1
            self.changes += len(changes)
            self.log.warning("node drifted; healed" if why != "started" else "applied at start", why=why,
                             changes=[c.description for c in changes],
                             ms=round((time.monotonic() - started) * 1000, 1))
        self.save(bool(changes) or why == "started")

    def save(self, changed: bool = True) -> None:
        """The counts (root's, 0600), when they changed something worth a write."""
        if not changed and self.passes % 20:
            return
        import json

        from .fast.files import write_atomic

        cluster = self.follower.source.cluster
        path = heal_record_path(self.state, cluster.name, self.follower.source.node)
        with contextlib.suppress(OSError, LvsdrError):
            write_atomic(path, json.dumps({"passes": self.passes, "healed": self.healed, "changes": self.changes,
                                           "failures": self.failures, "at": time.time()}) + "\n", 0o600)


def watch(source: Source, interval: float, state_dir: Path | None) -> int:
    """Resident until SIGTERM (see the module's docstring)."""
    return Healer(source, interval, state_dir).run()
