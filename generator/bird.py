"""Cluster -> bird.conf for one director of an ECMP cluster (pure: same input, same bytes).

BIRD announces the VIPs present on the cluster's dummy device (``[bgp]
device``) to every peer, with the cluster's communities, and nothing else
(the export filter names the VIPs). lvsdr's agent puts a VIP on the device
while keepalived has quorum for one of its services (hooks/director.py).
"""

from __future__ import annotations

from types import SimpleNamespace

from lvsdr import __version__
from lvsdr.errors import InputError

from .guards import address
from .model import Cluster, Director
from .node import host_interface
from .templating import render_template


def render_bird(cluster: Cluster, node: str, source: str) -> str:
    """bird.conf text for director ``node`` of an ECMP cluster."""
    me = cluster.find_director(node)
    bgp = cluster.bgp
    if bgp is None:
        raise InputError(f"{cluster.name}: not an ECMP cluster (no [bgp] table): no bird.conf to render")
    router_id = me.router_id
    assert router_id is not None  # the loader sets it (or refused an IPv6 director without one)
    peers = [SimpleNamespace(symbol=f"peer{i}", name=p.name, address=p.address, asn=p.asn, hold_time=p.hold_time,
                             bfd=p.bfd, password=p.password, multihop=p.multihop) for i, p in enumerate(bgp.peers, 1)]
    return render_template(
        "bird.conf.j2", version=__version__, source=source.replace("\n", " "), cluster=cluster, me=me, bgp=bgp,
        router_id=router_id, peers=peers, channel="ipv6" if me.address.version == 6 else "ipv4",
        groups=export_groups(cluster, me),
    )


def export_groups(cluster: Cluster, me: Director) -> list[SimpleNamespace]:
    """The export filter's branches: each VIP with its own attributes (``bgp_vips``) alone, then every VIP with
    the director's. A VIP's MED and prepend replace the director's; its large communities come after the
    cluster's and the director's."""
    assert cluster.bgp is not None
    large = cluster.bgp.large_communities + me.bgp_large_communities
    groups = [SimpleNamespace(match=f"= {address(host_interface(b.vip).with_prefixlen)}",
                              med=me.bgp_med if b.med is None else b.med,
                              prepend=me.bgp_prepend if b.prepend is None else b.prepend,
                              large_communities=large + b.large_communities) for b in me.bgp_vips]
    vips = [address(host_interface(v).with_prefixlen) for v in cluster.vips]
    return [*groups, SimpleNamespace(match=f"~ [ {', '.join(vips)} ]", med=me.bgp_med, prepend=me.bgp_prepend,
                                     large_communities=large)]
