"""The desired ARP-suppression state of one real server (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from lvsdr import defaults

from .model import IPAddress


@dataclass(frozen=True)
class Redirect:
    """A service a redirect method serves locally: VIP:port (to listen_port)."""

    vip: IPAddress
    protocol: str
    port: int
    listen_port: int | None = None


@dataclass(frozen=True)
class Spec:
    """What one real server (or a director that is also a backend) needs."""

    cluster: str
    node: str
    method: str
    interface: str
    address: IPAddress
    vips: tuple[IPAddress, ...]
    redirects: tuple[Redirect, ...] = ()
    zone: str = defaults.FIREWALLD_ZONE
    # a director that is also a backend: VIPs on lo (keepalived owns the
    # interface's copy), and ARP rules only while it is BACKUP
    vips_on_lo: bool = False
    suppress: bool = True

    @property
    def v4(self) -> tuple[IPAddress, ...]:
        return tuple(v for v in self.vips if v.version == 4)

    @property
    def v6(self) -> tuple[IPAddress, ...]:
        return tuple(v for v in self.vips if v.version == 6)
