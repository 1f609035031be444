"""A director reconciled: to the VRRP role observed on the node
(``reconcile``: what `lvsdr notify`, keepalived's notify callback, and
`lvsdr agent`'s VRRP mode end in; neither trusts the event's STATE), or to
the VIPs an ECMP director announces (``reconcile_ecmp``). The agent's loop
is hooks/agent.py, the FIFO's lines hooks/notify_fifo.py."""

from __future__ import annotations

import time
from pathlib import Path

from lvsdr.errors import InputError
from lvsdr.generator.director import (
    DirectorSpec,
    Role,
    director_spec,
    observed_role,
    plan_role,
    plan_stopped,
    role_spec,
)
from lvsdr.generator.model import IPAddress, addr_key
from lvsdr.source import Source

from .facts import read_addresses, read_director_facts, record_path, require_identity
from .fast.files import node_lock
from .notify_fifo import Event


def reconcile(spec: DirectorSpec, state_dir: Path, key: str | None = None,
              stopped: bool = False) -> tuple[Role, list[str]]:
    """Read the node, plan for the observed role, apply. Returns (role, change
    descriptions). With ``key`` (the cluster file's, see replay.py) the state
    the role is left in is recorded for notify's fast path. ``stopped``:
    keepalived does not run here, the node takes a stopped director's role
    (``plan_stopped``: no VIP left on the VRRP interface)."""
    require_identity(spec.node, spec.address, read_addresses())  # before anything, even the lock
    with node_lock(state_dir, spec.node):
        facts = read_director_facts(spec, state_dir)
        role: Role = "BACKUP" if stopped else observed_role(spec, facts.addresses)
        changes = plan_stopped(spec, facts) if stopped else plan_role(spec, role, facts)
        rs = role_spec(spec, role)
        rec = record_path(state_dir, rs) if rs else state_dir / f"director-{spec.cluster}-{spec.node}.json"
        if changes:
            from .gateway import Gateway

            Gateway(rec).apply(changes)
        if key is not None:
            _remember(spec, role, state_dir, key, rec, sorted(facts.sysctls))
        return role, [c.description for c in changes]


def drain_marker(state_dir: Path, spec: DirectorSpec) -> Path:
    """While this file exists (`lvsdr drain`), an ECMP director announces nothing."""
    return drain_path(state_dir, spec.cluster, spec.node)


def drain_path(state_dir: str | Path, cluster: str, node: str) -> Path:
    """The drain marker of director ``node`` (a VRRP director's holds its hand-over files at 1)."""
    return Path(state_dir) / f"drain-{cluster}-{node}"


def reconcile_ecmp(spec: DirectorSpec, state_dir: Path, announce: frozenset[IPAddress]) -> tuple[list[str], list[str]]:
    """An ECMP director: read the node, plan (``plan_ecmp``) for announcing
    exactly ``announce`` (nothing while drained; a VIP whose services IPVS
    does not have yet, not yet), apply. Returns (the VIPs announced, change
    descriptions)."""
    from lvsdr.generator.director import plan_ecmp, plan_withdrawals

    from .facts import read_ecmp_facts, read_routes
    from .gateway import Gateway

    assert spec.backend is not None and spec.ecmp is not None
    require_identity(spec.node, spec.address, read_addresses())
    with node_lock(state_dir, spec.node):
        if drain_marker(state_dir, spec).exists():
            announce = frozenset()
        gateway = Gateway(record_path(state_dir, spec.backend))
        # withdraw first, from the routes alone: the full facts take a while (a dozen tools run)
        first = plan_withdrawals(spec, announce, read_routes(spec))
        if first:
            gateway.apply(first)
        facts = read_ecmp_facts(spec, state_dir)
        announce = spec.ecmp.in_ipvs(announce, facts.ipvs)  # what plan_ecmp announces of it
        changes = plan_ecmp(spec, announce, facts)
        if changes:
            gateway.apply(changes)
        return [str(v) for v in sorted(announce, key=addr_key)], [c.description for c in first + changes]


def replay_keys(spec: DirectorSpec) -> list[str] | None:
    """The nft tables (``FAMILY NAME``) that make up lvsdr's rules on this
    director, in either role; None when the real-server method's rules are not
    nft tables (arptables, iptables, firewalld): then notify has no fast path
    (replay.py)."""
    from lvsdr.generator.director import KEY, SYNC_KEY
    from lvsdr.generator.methods import method_of

    tables = method_of(spec.backend).nft_tables if spec.backend is not None else ()
    return None if tables is None else sorted({KEY, *((SYNC_KEY,) if spec.holds else ()), *tables})


def _remember(spec: DirectorSpec, role: Role, state_dir: Path, key: str, rec: Path, sysctls: list[str]) -> None:
    """Record the state ``role`` is in for replay.py, when everything the role
    changes is an nft table (else forget any record: the full path runs)."""
    from lvsdr.generator.director import vip_devices
    from lvsdr.generator.realserver import addresses

    from .facts import sysctl_path
    from .fast.replay import RoleRecord, cache_path

    path = cache_path(str(state_dir), spec.cluster, spec.node)
    keys = replay_keys(spec)
    if keys is None:
        RoleRecord.forget(path)
        return
    rs = role_spec(spec, role)
    RoleRecord.remember(path, key, role, str(spec.address), [list(d) for d in vip_devices(spec)], keys,
                        [str(sysctl_path(k)) for k in sysctls], str(rec),
                        [[ifname, str(a)] for ifname, a in (addresses(rs) if rs else ())])


def notify(source: Source, event: Event) -> int:
    """keepalived: `notify "lvsdr notify CLUSTER --node NAME"` + TYPE NAME STATE PRIORITY."""
    started = time.monotonic()
    spec = director_spec(source.cluster, source.node)
    if spec.ecmp is not None:
        raise InputError(f"notify: cluster {source.cluster.name} is an ECMP cluster ([bgp]): it has no VRRP "
                         "instance to notify about; `lvsdr agent` gates its announcements")
    try:
        role, done = reconcile(spec, Path(source.cluster.state_dir), source.key)
    except Exception:
        from .fast.log import get_logger

        get_logger(node=source.node, event_source="notify").exception("reconcile failed", **event.fields())
        raise
    from .fast.log import transition

    transition(source.node, role, done, started, event.fields())
    return 0
