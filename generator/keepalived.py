"""Cluster -> keepalived.conf for one director (pure: same input, same bytes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from ipaddress import ip_address
from types import SimpleNamespace
from typing import Any

from lvsdr import __version__
from lvsdr.errors import InputError

from . import checks
from .drpath import dr_files
from .guards import address, token
from .ipvs import Key, Leaving
from .keys import PATH_RE, keys_of
from .model import (
    HOOK_MODES,
    Backend,
    Check,
    Cluster,
    Command,
    Director,
    Instance,
    IPAddress,
    Service,
    addr_key,
    instance_name,
)
from .node import host_interface
from .schema import SIMPLE_FORMS
from .templating import render_template

MAX_ADVERTISED = {4: 255, 6: 83}  # addresses one VRRP advert carries (IPv6: at MTU 1500, as keepalived counts)

# each check type as the checker template reads it: its block and all its keys, in order
CHECK_KINDS = {t.name: SimpleNamespace(block=t.block, keys=checks.keys_of(t)) for t in checks.TYPES.values()}


@dataclass(frozen=True)
class Wiring:
    """How keepalived on the director reaches lvsdr's hooks. Every value goes
    into keepalived.conf (a notify line runs as root), so each is validated
    here, whatever it came from; an override names its flag in the error."""

    lvsdr_path: str
    config_path: str
    notify_fifo: str
    hook: str

    def __post_init__(self) -> None:
        for name in ("lvsdr_path", "config_path", "notify_fifo"):
            _check_path(name, getattr(self, name))
        if self.hook not in HOOK_MODES:
            raise InputError(f"hook: {json.dumps(self.hook)} is not one of {', '.join(HOOK_MODES)}")

    @classmethod
    def from_cluster(cls, cluster: Cluster, *, lvsdr_path: str | None = None, config_path: str | None = None,
                     notify_fifo: str | None = None, hook: str | None = None) -> Wiring:
        """The file's values, with these overrides (each checked as its --flag)."""
        for flag, value in (("--lvsdr-path", lvsdr_path), ("--config-path", config_path),
                            ("--notify-fifo", notify_fifo)):
            if value is not None:
                _check_path(flag, value)
        return cls(lvsdr_path=lvsdr_path or cluster.lvsdr_path, config_path=config_path or cluster.config_path,
                   notify_fifo=notify_fifo or cluster.notify_fifo, hook=hook or cluster.hook)


def _check_path(name: str, value: str) -> None:
    if not PATH_RE.fullmatch(value):
        raise InputError(f"{name}: {json.dumps(value)} is not an absolute path without blanks or quotes")


VRRP_RT_PRIORITY = 50  # SCHED_RR for keepalived's VRRP process at sub-second adverts: above ordinary work, below
# the kernel's own threads (99)


def _instances(cluster: Cluster, me: Director) -> list[dict[str, Any]]:
    """The cluster's own VRRP instance (every VIP no [[instances]] entry takes),
    then the others, each as the template reads it."""
    own = list(cluster.own_vips)
    master = cluster.initial_state == "MASTER" and me == cluster.master
    out = [_instance(cluster, me, instance_name(cluster), cluster.virtual_router_id, me.priority, own, master,
                     Instance("", cluster.virtual_router_id, (), ()))]
    for extra in cluster.instances:
        out.append(_instance(cluster, me, instance_name(cluster, extra), extra.virtual_router_id,
                             extra.priority(me.name), list(extra.vips), False, extra))
    return out


def _instance(cluster: Cluster, me: Director, name: str, vrid: int, priority: int, vips: list[IPAddress],
              master: bool, inst: Instance) -> dict[str, Any]:
    src = inst.address(me)
    family = src.version
    same = [_vip_line(cluster, v, me) for v in vips if v.version == family]
    return {
        "name": name, "state": "MASTER" if master else "BACKUP", "virtual_router_id": vrid, "priority": priority,
        "interface": inst.device(me), "src": src,
        "peers": sorted((inst.address(d) for d in cluster.directors if d.name != me.name), key=addr_key),
        # a VRRP advert carries at most 255 IPv4 addresses, and IPv6 ones up to
        # the MTU (keepalived counts 83 at 1500): the rest move with the instance
        # without being advertised, as virtual_ipaddress_excluded
        "vips": same[:MAX_ADVERTISED[family]],
        "vips_excluded": same[MAX_ADVERTISED[family]:] + [_vip_line(cluster, v, me) for v in vips
                                                           if v.version != family],
        "handover": None,  # (track_file name, weight): the hand-over by quorum (generator/handover.py)
    }


def _prefix(addr: Any) -> str:
    return address(host_interface(addr))


class Checks:
    """The checkers' text of each distinct (checks, port, portless): most
    services share theirs, and a jinja2 macro call costs more than a lookup."""

    def __init__(self, file_names: dict[str, str]) -> None:
        from .templating import environment

        self.macro = environment().get_template("checks.j2").module.checkers  # type: ignore[attr-defined]
        self.file_names = file_names
        self.done: dict[tuple[tuple[Check, ...], int, bool], str] = {}

    def text(self, checks: tuple[Check, ...], port: int, portless: bool) -> str:
        key = (checks, port, portless)
        text = self.done.get(key)
        if text is None:
            text = self.done[key] = str(self.macro(checks, port, portless, self.file_names, CHECK_KINDS))
        return text


SERVICE_SIMPLE = tuple(k.name for k in keys_of(Service).values() if k.form in SIMPLE_FORMS)


def _dr_text(name: str | None) -> str:
    """The DR-path check's FILE_CHECK of one backend (generator/drpath.py): down while the agent's file says 1."""
    # weight 0: a non-zero number is a fault (without it keepalived 2.2 takes the track_file's weight, 1, and only
    # raises the real server's weight: seen in the IPVS tier)
    return "" if name is None else \
        f"        FILE_CHECK {{\n            track_file {token(name)}\n            weight 0\n        }}\n"


def _service_view(svc: Service, labels: dict[str, tuple[str, str]], checks: Checks,
                  dr: dict[tuple[str, str], tuple[str, str]]) -> SimpleNamespace:
    """What the template reads of a service (an object: jinja2 reads attributes
    of objects directly, of dicts only after a failed attribute lookup)."""
    # fwmark services and groups carry no port on their real servers (DR
    # forwards each VIP:port to the same port): their checks name it
    portless = bool(svc.fwmark or svc.is_group)
    check = checks.text(svc.checks, svc.port, portless)
    return SimpleNamespace(**{
        # every simple key declared on Service (keys.py), as the file gives it: a new one needs a template line only
        **{name: getattr(svc, name) for name in SERVICE_SIMPLE},
        "vip": svc.vip,
        "port": svc.port,
        # a virtual_server_group (unless a fwmark stands for the whole service)
        "group": [f"{address(v)} {p}" for v, p in svc.endpoints] if svc.is_group and not svc.fwmark else None,
        "multi_port": bool(svc.group_ports),
        "family": "inet6" if svc.vip.version == 6 else "inet",
        "protocol": svc.protocol.upper(),
        "sorry_server": svc.sorry_server,
        "rs_port": "" if portless else f" {svc.port}",
        # tuples, not objects: the template's hottest loop (20,000 backends in
        # the benchmark) reads them by index
        "backends": [(*labels[b.server], b.weight, _backend_extra(b),
                      (check if b.checks is None else checks.text(b.checks, svc.port, portless))
                      + _dr_text(dr[svc.name, b.server][1] if (svc.name, b.server) in dr else None))
                     for b in svc.backends],
        "quorum_up": _command(svc.quorum_up),
        "quorum_down": _command(svc.quorum_down),
        "persistence_granularity": svc.persistence_granularity,
        "flags": [flag for flag, on in (("alpha", svc.alpha), ("omega", svc.omega), ("ha_suspend", svc.ha_suspend))
                  if on] + list(svc.scheduler_flags),
    })


def _vip_line(cluster: Cluster, vip: IPAddress, me: Director) -> str:
    """`ADDR/32 dev DEV [label LABEL]` for virtual_ipaddress."""
    label = cluster.vip_label(vip)
    line = f"{_prefix(vip)} dev {token(cluster.vip_device(vip, me))}"
    return f"{line} label {token(label)}" if label else line


@lru_cache(maxsize=4096)
def _command(cmd: Command | None) -> str | None:
    """An operator's script as keepalived's quoted command line (every part
    token-guarded). Cached: the same script often serves many services."""
    return None if cmd is None else '"' + " ".join(token(part) for part in cmd) + '"'


def _backend_extra(b: Backend) -> str:
    """real_server lines beyond the weight (most backends have none: the common case stays cheap)."""
    if b.notify_up is None and b.notify_down is None and not b.inhibit_on_failure:
        return ""
    return _extra_lines(b.inhibit_on_failure, b.notify_up, b.notify_down)


@lru_cache(maxsize=4096)
def _extra_lines(inhibit: bool, notify_up: Command | None, notify_down: Command | None) -> str:
    lines = []
    if inhibit:
        lines.append("        inhibit_on_failure\n")
    if notify_up is not None:
        lines.append(f"        notify_up {_command(notify_up)}\n")
    if notify_down is not None:
        lines.append(f"        notify_down {_command(notify_down)}\n")
    return "".join(lines)


def file_names(cluster: Cluster) -> dict[str, str]:
    """FILE_CHECK reads a named track_file block: one per file path, named by its place in sorted order."""
    checks = [c for s in cluster.services for c in s.checks]
    checks += [c for s in cluster.services for b in s.backends if b.checks for c in b.checks]
    paths = sorted({c.file for c in checks if c.file})
    return {p: f"lvsdr_check_file_{i}" for i, p in enumerate(paths, 1)}


def _extra_blocks(cluster: Cluster) -> dict[str, list[str]]:
    """[[keepalived_extra]] lines by block: every entry for a block, in file order."""
    out: dict[str, list[str]] = {}
    for e in cluster.extra:
        out.setdefault(e.block, []).extend(e.lines)
    return out


def service_key(svc: Service) -> Key | None:
    """The IPVS key of a plain VIP:port service (None for a fwmark or group one)."""
    if svc.fwmark or svc.is_group:
        return None
    return Key(svc.protocol.upper(), str(svc.vip), svc.port, svc.vip.version)


def with_leaving(cluster: Cluster, leaving: Sequence[Leaving]) -> Cluster:
    """``cluster`` with the real servers removed from it that are still
    leaving (``ipvs.leaving``): each back in its service at weight 0 and
    without a checker (so that no check takes it out before its connections
    end), a removed service back whole, its real servers at weight 0. Its VIP
    stays with it (the instance carries every service's VIP)."""
    if not leaving:
        return cluster
    by_key: dict[Key, list[Leaving]] = {}
    for lv in leaving:
        by_key.setdefault(lv.key, []).append(lv)

    def backends(items: list[Leaving], have: tuple[Backend, ...]) -> tuple[Backend, ...]:
        there = {str(b.address) for b in have}
        return have + tuple(Backend(server=lv.dest.address, address=ip_address(lv.dest.address), weight=0, checks=())
                            for lv in items if lv.dest.address not in there)

    services = []
    for svc in cluster.services:
        key = service_key(svc)
        items = by_key.pop(key, []) if key is not None else []
        services.append(replace(svc, backends=backends(items, svc.backends)) if items else svc)
    for key, items in sorted(by_key.items()):
        vip = ip_address(key.address)
        services.append(Service(name=f"leaving-{key.protocol}-{key.address}-{key.port}".replace(":", "."), vip=vip,
                                port=key.port, protocol=key.protocol.lower(), scheduler=items[0].scheduler,
                                backends=backends(items, ()), checks=()))
    return replace(cluster, services=tuple(services))


def render_keepalived(cluster: Cluster, node: str, source: str, wiring: Wiring | None = None,
                      leaving: Sequence[Leaving] = ()) -> str:
    """keepalived.conf text for director ``node``. ``source`` names the cluster
    file in the header (as given: no timestamp, no host facts). ``leaving``:
    removed real servers kept at weight 0 while their connections end."""
    dr = dr_files(cluster, node)  # of the file's backends: a leaving one has no checker at all
    cluster = with_leaving(cluster, leaving)
    me = cluster.find_director(node)
    wiring = wiring or Wiring.from_cluster(cluster)
    marked = [s.name for s in cluster.services if s.fwmark]
    if wiring.hook == "none" and marked:
        raise InputError(f"--hook: none leaves the fwmark services ({', '.join(marked)}) without their mark rule: "
                         "nothing would be balanced (use both, fifo or notify)")
    notify = None
    if wiring.hook in ("notify", "both") and not cluster.ecmp:
        notify = f"{wiring.lvsdr_path} notify {wiring.config_path} --node {me.name}"
    # per server, once: its comment label (token-guarded) and its address as
    # text (str(ipaddress) is slow and a server may back many services)
    servers = {b.server: b for s in cluster.services for b in s.backends}
    labels = {n: (token(n) + (" (a director)" if b.is_director else ""), address(b.address))
              for n, b in servers.items()}
    checks = Checks(file_names(cluster))
    fifo = wiring.notify_fifo if wiring.hook in ("fifo", "both") and not cluster.ecmp else None
    from .handover import handover

    # the agent writes the hand-over files from the quorum events: only where it reads the FIFO
    follow = handover(cluster, me.name) if fifo is not None else None
    instances = [] if cluster.ecmp else _instances(cluster, me)
    if follow is not None:
        by_name = {h.instance: h for h in follow.instances}
        for inst in instances:
            h = by_name.get(inst["name"])
            inst["handover"] = (h.track, -h.weight) if h is not None else None
    ctx = {
        "version": __version__,
        "source": source.replace("\n", " "),
        "cluster": cluster,
        "me": me,
        "instance": instance_name(cluster),
        # an ECMP cluster has no VRRP instance: every director is active, BIRD
        # announces the VIPs, and the agent gates them on the checker's quorum
        # events, which keepalived writes to its LVS notify FIFO
        "instances": instances,
        # ECMP: the agent announces by quorum; VRRP: it hands the instances over by it (generator/handover.py)
        "lvs_notify_fifo": wiring.notify_fifo if cluster.ecmp or follow is not None else None,
        "handover_files": [(h.file, h.track) for h in follow.instances] if follow is not None else [],
        "sync_group": f"VG_{cluster.name}" if cluster.sync_group else None,
        "extra": _extra_blocks(cluster),
        "notify": notify,
        "notify_fifo": fifo,
        "rt_priority": VRRP_RT_PRIORITY,
        "user_notify": [(key, _command(getattr(cluster, key))) for key in
                        ("notify_master", "notify_backup", "notify_fault", "notify_stop")
                        if getattr(cluster, key) is not None],
        "services": [_service_view(s, labels, checks, dr) for s in cluster.services],
        "file_names": checks.file_names,
        "dr_files": sorted(dr.values()),
    }
    return render_template("keepalived.conf.j2", **ctx)
