"""The one door for side effects on a node: every change of a plan goes
through ``Gateway.apply``, and notify's fast path changes a node only through
``nft_transaction``. Light at import (the fast path imports it): what applying
a plan needs is imported when a plan is applied."""

from __future__ import annotations

import os

from lvsdr.errors import ApplyError

TYPE_CHECKING = False  # typing costs ~6 ms to import; notify's path imports this module (mypy reads it as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path
    from typing import Any

    from lvsdr.generator.changes import AddAddress, AddRoute, Change, RemoveAddress, RemoveRoute


def nft_transaction(script: str, resident: bool = False) -> bool:
    """The fast path's one change to a node: an nft script, applied in one
    transaction (all of it or nothing). ``resident``: in this process through
    libnftables (the agent), else by spawning nft. True when applied."""
    from .fast.spawn import nft

    return nft(script, resident)[0] == 0


IFA_F_NODAD = 0x02


class Gateway:
    """Applies ``Change``s: pyroute2 for addresses, /proc/sys for sysctls,
    argument lists (never shell strings) for nft/arptables/iptables/firewall-cmd,
    atomic writes for lvsdr's record."""

    def __init__(self, record_path: Path, echo: Callable[[str], None] | None = None) -> None:
        self.record_path = record_path
        self.echo = echo or (lambda s: None)
        self._ipr: Any = None  # pyroute2.IPRoute, imported only when an address changes

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
        import contextlib
        from typing import assert_never

        from lvsdr.generator.changes import (
            AddAddress,
            AddRoute,
            AddRule,
            DeleteNftTable,
            DeleteRule,
            ForgetRecord,
            LoadNftTable,
            RemoveAddress,
            RemoveRoute,
            RestoreSysctl,
            SetSysctl,
            WriteRecord,
        )

        from .facts import sysctl_path
        from .fast.files import state_dir, write_atomic

        match ch:
            case SetSysctl(key=key, value=value) | RestoreSysctl(key=key, value=value):
                sysctl_path(key).write_text(f"{value}\n")
            case AddAddress() | RemoveAddress():
                self._addr(ch)
            case AddRoute() | RemoveRoute():
                self._route(ch)
            case AddRule(rule=rule):
                self._run(rule.argv("add"))
            case DeleteRule(rule=rule):
                self._run(rule.argv("delete"))
            case LoadNftTable(table=table):
                self._run(("nft", "-f", "-"), stdin=table.script())
            case DeleteNftTable(key=key):
                self._run(("nft", "delete", "table", *key.split()))
            case WriteRecord(record=record):
                state_dir(self.record_path.parent)  # 0700, root's: only root writes what root reads back
                write_atomic(self.record_path, record.to_json() + "\n", 0o600)
            case ForgetRecord():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.record_path)
            case _:
                assert_never(ch)

    def _addr(self, ch: AddAddress | RemoveAddress) -> None:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        ipr = self._ipr
        idx = ipr.link_lookup(ifname=ch.ifname)
        if not idx:
            raise ApplyError(f"{ch.description}: no interface {ch.ifname}")
        kw: dict[str, Any] = {"index": idx[0], "address": str(ch.address.ip),
                              "prefixlen": ch.address.network.prefixlen}
        from lvsdr.generator.changes import AddAddress

        if isinstance(ch, AddAddress):
            if ch.address.version == 4 and ch.label:
                kw["label"] = ch.label
            if ch.address.version == 6:
                kw["flags"] = IFA_F_NODAD  # a VIP is a shared address by design
            ipr.addr("add", **kw)
        else:
            ipr.addr("del", **kw)

    def _route(self, ch: AddRoute | RemoveRoute) -> None:
        """An ECMP director's announcement: a host route via lo in lvsdr's table (netlink: no process)."""
        from lvsdr.generator.changes import AddRoute

        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        lo = self._ipr.link_lookup(ifname="lo")[0]
        # proto static (4), scope link (253): as `ip route add ... dev lo proto static` makes it
        kw: dict[str, Any] = {"dst": str(ch.address), "table": ch.table, "oif": lo, "scope": 253}
        if isinstance(ch, AddRoute):
            self._ipr.route("replace", proto=4, **kw)
        else:
            self._ipr.route("del", **kw)

    @staticmethod
    def _run(argv: tuple[str, ...], stdin: str | None = None) -> None:
        from .run import run

        try:
            p = run(argv, stdin)
        except FileNotFoundError:
            raise ApplyError(f"{argv[0]}: not found") from None
        if not p.ok:
            raise ApplyError(f"{' '.join(argv)}: exit {p.code}: {p.said}")
