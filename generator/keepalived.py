"""Cluster -> keepalived.conf for one director (pure: same input, same bytes)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lvsdr import __version__
from lvsdr.errors import InputError

from .model import Cluster, Director, Service, addr_key
from .templating import render_template, token

CHECK_BLOCKS = {
    "tcp": "TCP_CHECK",
    "http": "HTTP_GET",
    "https": "SSL_GET",
    "misc": "MISC_CHECK",
    "dns": "DNS_CHECK",
}


@dataclass(frozen=True)
class Wiring:
    """How keepalived on the director reaches lvsdr's hooks (flags override the file)."""

    lvsdr_path: str
    config_path: str
    notify_fifo: str
    hook: str

    @classmethod
    def from_cluster(cls, cluster: Cluster, **overrides: str | None) -> Wiring:
        base = {
            "lvsdr_path": cluster.lvsdr_path,
            "config_path": cluster.config_path,
            "notify_fifo": cluster.notify_fifo,
            "hook": cluster.hook,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def instance_name(cluster: Cluster) -> str:
    return f"VI_{cluster.name}"


def find_director(cluster: Cluster, node: str) -> Director:
    d = cluster.director(node)
    if d is None:
        names = ", ".join(sorted(x.name for x in cluster.directors))
        raise InputError(f"--node: {json.dumps(node)} is not a director (directors: {names})")
    return d


def _prefix(addr: Any) -> str:
    return f"{addr}/{32 if addr.version == 4 else 128}"


def _service_view(svc: Service, labels: dict[str, tuple[str, str]]) -> dict[str, Any]:
    check = svc.check
    return {
        "name": svc.name,
        "vip": svc.vip,
        "port": svc.port,
        "fwmark": svc.fwmark,
        "family": "inet6" if svc.vip.version == 6 else "inet",
        "protocol": svc.protocol.upper(),
        "scheduler": svc.scheduler,
        "delay_loop": svc.delay_loop,
        "persistence_timeout": svc.persistence_timeout,
        "quorum": svc.quorum,
        "sorry_server": svc.sorry_server,
        "check": check,
        "check_block": CHECK_BLOCKS.get(check.type),
        # fwmark services carry no port on their real servers
        "rs_port": "" if svc.fwmark else f" {svc.port}",
        # tuples, not objects: the template's hottest loop (20,000 backends in
        # the benchmark) reads them by index
        "backends": [(*labels[b.server], b.weight) for b in svc.backends],
    }


def render_keepalived(cluster: Cluster, node: str, source: str, wiring: Wiring | None = None) -> str:
    """keepalived.conf text for director ``node``. ``source`` names the cluster
    file in the header (as given: no timestamp, no host facts)."""
    me = find_director(cluster, node)
    wiring = wiring or Wiring.from_cluster(cluster)
    family = me.address.version
    vips = cluster.vips
    peers = sorted((d.address for d in cluster.directors if d.name != me.name), key=addr_key)
    notify = None
    if wiring.hook in ("notify", "both"):
        notify = f"{wiring.lvsdr_path} notify {wiring.config_path} --node {me.name}"
    # per server, once: its comment label (token-guarded) and its address as
    # text (str(ipaddress) is slow and a server may back many services)
    servers = {b.server: b for s in cluster.services for b in s.backends}
    labels = {n: (token(n) + (" (a director)" if b.is_director else ""), str(b.address))
              for n, b in servers.items()}
    ctx = {
        "version": __version__,
        "source": source.replace("\n", " "),
        "cluster": cluster,
        "me": me,
        "instance": instance_name(cluster),
        "state": "MASTER" if (cluster.initial_state == "MASTER" and me == cluster.master)
        else "BACKUP",
        "vips": [_prefix(v) for v in vips if v.version == family],
        "vips_excluded": [_prefix(v) for v in vips if v.version != family],
        "peers": peers,
        "notify": notify,
        "notify_fifo": wiring.notify_fifo if wiring.hook in ("fifo", "both") else None,
        "services": [_service_view(s, labels) for s in cluster.services],
    }
    return render_template("keepalived.conf.j2", **ctx)
