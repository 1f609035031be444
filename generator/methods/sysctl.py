"""sysctl: VIPs on lo; arp_ignore=1 and arp_announce=2 on all and the interface.

The host then answers ARP only for addresses of the interface the request
came in on (not for a VIP on lo), and announces only from its own address.
IPv6 VIPs go on lo too: NDP has no such switches, and a /128 on lo is not
announced.
"""

from __future__ import annotations

from ..node import IPInterface, host_interface
from ..spec import Spec
from .base import Artifacts, Method

VALUES = {"arp_ignore": "1", "arp_announce": "2"}
SYSCTL_FILE = "etc/sysctl.d/90-lvsdr-arp.conf"


class Sysctl(Method):
    name = "sysctl"
    summary = "VIPs on lo; net.ipv4.conf.{all,IFACE}.arp_ignore=1, arp_announce=2"
    nft_tables = ()  # no rules at all

    def addresses(self, spec: Spec) -> tuple[tuple[str, IPInterface], ...]:
        return tuple(("lo", host_interface(v)) for v in spec.vips)

    def sysctls(self, spec: Spec) -> dict[str, str]:
        if not spec.v4:
            return {}
        return {f"net.ipv4.conf.{dev}.{k}": v for dev in ("all", spec.interface) for k, v in VALUES.items()}

    def artifacts(self, spec: Spec) -> Artifacts:
        values = self.sysctls(spec)
        if not values:
            return Artifacts()
        body = "".join(f"{k} = {v}\n" for k, v in sorted(values.items()))
        text = f"# lvsdr: real server {spec.node} does not answer or announce ARP for its VIPs\n{body}"
        return Artifacts({SYSCTL_FILE: (text, 0o644)})
