"""The one door for side effects on a node: every change of a plan goes through here."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lvsdr.errors import ApplyError
from lvsdr.generator.realserver import Change

from .facts import sysctl_path
from .files import write_atomic


class Gateway:
    """Applies ``Change``s: pyroute2 for addresses, /proc/sys for sysctls,
    argument lists (never shell strings) for nft/arptables/iptables/firewall-cmd,
    atomic writes for files."""

    def __init__(self, record_path: Path, echo: Callable[[str], None] | None = None) -> None:
        self.record_path = record_path
        self.echo = echo or (lambda s: None)
        self._ipr: Any = None

    def apply(self, changes: Iterable[Change]) -> int:
        """Apply in order; stop at the first failure (the order keeps the node
        safe, and the next apply completes the rest)."""
        n = 0
        try:
            for ch in changes:
                self.echo(f"  {ch.description}")
                try:
                    self._one(ch)
                except ApplyError:
                    raise
                except Exception as e:  # a failed effect, reported in one line
                    raise ApplyError(f"{ch.description}: {e}") from None
                n += 1
        finally:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
        return n

    def _one(self, ch: Change) -> None:
        if ch.kind == "sysctl":
            key, value = ch.args
            sysctl_path(key).write_text(f"{value}\n")
        elif ch.kind in ("addr-add", "addr-del"):
            self._addr(ch)
        elif ch.kind == "cmd":
            self._run(list(ch.args))
        elif ch.kind == "nft":
            self._run(["nft", "-f", "-"], stdin=ch.args[0])
        elif ch.kind == "record":
            self.record_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            write_atomic(self.record_path, ch.args[0] + "\n", 0o600)
        elif ch.kind == "record-del":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.record_path)
        else:
            raise ApplyError(f"unknown change kind {ch.kind!r}")

    def _addr(self, ch: Change) -> None:
        from pyroute2 import IPRoute

        if self._ipr is None:
            self._ipr = IPRoute()
        ipr = self._ipr
        ifname, pfx = ch.args[0], ch.args[1]
        iface = ipaddress.ip_interface(pfx)
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            raise ApplyError(f"{ch.description}: no interface {ifname}")
        kw = {"index": idx[0], "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if ch.kind == "addr-add":
            if iface.version == 4 and ch.args[2]:
                kw["label"] = ch.args[2]
            if iface.version == 6:
                kw["flags"] = 0x02  # IFA_F_NODAD: a VIP is a shared address by design
            ipr.addr("add", **kw)
        else:
            ipr.addr("del", **kw)

    @staticmethod
    def _run(argv: list[str], stdin: str | None = None) -> None:
        try:
            p = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)
        except FileNotFoundError:
            raise ApplyError(f"{argv[0]}: not found") from None
        if p.returncode != 0:
            raise ApplyError(f"{' '.join(argv)}: exit {p.returncode}: {(p.stderr or p.stdout).strip()}")
