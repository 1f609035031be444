"""The one rule a director's VRRP role is read by, off the node: MASTER
while keepalived has put one of the VIPs on that VIP's device (the VRRP
interface unless [[vips]] names another), else BACKUP. The full path
(``generator.director.observed_role``) and notify's fast path
(``hooks.fast.replay``) both ask it. Standard library only, nothing imported:
the fast path reads with it."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~6 ms to import; notify's path (mypy reads it as True)
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable


def role_of(held: Collection[tuple[str, str]], devices: Iterable[tuple[str, str]]) -> str:
    """``held``: the node's (interface, address) pairs; ``devices``: each
    VIP's (device, address), addresses written as ``str(ipaddress)`` writes them."""
    return "MASTER" if any((device, vip) in held for device, vip in devices) else "BACKUP"
