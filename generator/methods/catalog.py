"""What each ARP method can do, as plain data cheap to import: the loader
checks every cluster file against it, while the method modules (with their
rule types) load only when a plan is made. The method classes take these
flags from here (``Method.__init_subclass__``): each is stated once."""

from __future__ import annotations

# name -> what it can do: "ipv6" (serves IPv6 VIPs: NDP is not ARP), "redirect"
# (serves VIPs without having them, by a local redirect; listen_port allowed),
# "director_backend" (usable by a director that is also a backend)
CATALOG: dict[str, frozenset[str]] = {
    "sysctl": frozenset({"ipv6", "director_backend"}),
    "arptables": frozenset({"director_backend"}),
    "nftables": frozenset({"ipv6", "director_backend"}),
    "iptables": frozenset({"ipv6", "redirect"}),
    "firewalld": frozenset({"redirect"}),
}

NAMES = tuple(CATALOG)
IPV6 = tuple(n for n, can in CATALOG.items() if "ipv6" in can)
REDIRECT = tuple(n for n, can in CATALOG.items() if "redirect" in can)
DIRECTOR_BACKEND = tuple(n for n, can in CATALOG.items() if "director_backend" in can)
