"""The ARP-suppression methods, one module each; every list of methods is
derived from ``REGISTRY`` (adding a method is one module and its fixtures)."""

from __future__ import annotations

from ..model import DEFAULT_ARP_METHOD
from ..spec import Spec
from .arptables import Arptables
from .base import Method
from .firewalld import Firewalld
from .iptables import Iptables
from .nftables import Nftables
from .sysctl import Sysctl

REGISTRY: dict[str, Method] = {m.name: m for m in (Sysctl(), Arptables(), Nftables(), Iptables(), Firewalld())}

NAMES = tuple(REGISTRY)
IPV6 = tuple(n for n, m in REGISTRY.items() if m.ipv6)
REDIRECT = tuple(n for n, m in REGISTRY.items() if m.redirect)
DIRECTOR_BACKEND = tuple(n for n, m in REGISTRY.items() if m.director_backend)
DEFAULT = DEFAULT_ARP_METHOD


def method_of(spec: Spec) -> Method:
    return REGISTRY[spec.method]
