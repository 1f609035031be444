"""The ARP-suppression methods, one module each. What each can do is in
``catalog`` (cheap: the loader needs it for every file); the modules load on
the first plan. Adding a method is its module, one line in the catalog and one
in ``registry()``, and its fixtures."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ..model import DEFAULT_ARP_METHOD
from .catalog import DIRECTOR_BACKEND, IPV6, NAMES, REDIRECT

if TYPE_CHECKING:
    from ..spec import Spec
    from .base import Method

DEFAULT = DEFAULT_ARP_METHOD
__all__ = ["DEFAULT", "DIRECTOR_BACKEND", "IPV6", "NAMES", "REDIRECT", "method_of", "registry"]


@lru_cache(maxsize=1)
def registry() -> dict[str, Method]:
    """Every method, in the catalog's order."""
    from .arptables import Arptables
    from .firewalld import Firewalld
    from .iptables import Iptables
    from .nftables import Nftables
    from .sysctl import Sysctl

    methods: dict[str, Method] = {m.name: m for m in (Sysctl(), Arptables(), Nftables(), Iptables(), Firewalld())}
    assert tuple(methods) == NAMES, "the catalog and the registry name the same methods"
    return methods


def method_of(spec: Spec) -> Method:
    return registry()[spec.method]
