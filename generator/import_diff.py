"""What `lvsdr import --diff` compares: a keepalived.conf reduced to what the
round trip must keep (VRRP instances, VIPs, virtual servers, real servers,
weights, checks and timings), and the differences between two, one line each."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from .handover import PREFIX as HANDOVER_PREFIX
from .importer import CHECKERS, is_dr_check
from .kaconf import Directive

# -- the round trip ----------------------------------------------------------

def semantics(tree: tuple[Directive, ...]) -> dict[str, Any]:
    """What a keepalived.conf does for the round trip: VRRP instances by
    router id (interface, priority, timings, VIPs) and virtual servers by
    address (scheduler, kind, protocol, timings, real servers with weights
    and checks). Names, comments, order and lvsdr's own hooks do not count."""
    groups = {d.args[0]: sorted(" ".join(c.words) for c in d.block()) for d in tree
              if d.key == "virtual_server_group" and d.args}
    instances: dict[str, Any] = {}
    servers: dict[str, Any] = {}
    for d in tree:
        if d.key == "vrrp_instance":
            inst: dict[str, Any] = {}
            for c in d.block():
                if c.key in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
                    inst[c.key] = sorted(_norm_vip(x.words) for x in c.block())
                elif c.key in ("interface", "priority", "advert_int", "nopreempt", "preempt_delay",
                               "garp_master_delay", "garp_master_refresh", "version", "unicast_src_ip",
                               "mcast_src_ip"):
                    inst[c.key] = " ".join(c.args)
                elif c.key == "unicast_peer":
                    inst[c.key] = sorted(" ".join(p.words) for p in c.block())
                elif c.key == "authentication":
                    inst[c.key] = sorted(" ".join(a.words) for a in c.block())
                elif c.key in ("track_script", "track_interface", "track_file"):
                    # lvsdr's hand-over by quorum (generator/handover.py) is its own, like its hooks
                    tracked = sorted(" ".join(t.words) for t in c.block() if not t.key.startswith(HANDOVER_PREFIX))
                    if tracked:
                        inst[c.key] = tracked
            vrid = next((c.args[0] for c in d.block() if c.key == "virtual_router_id" and c.args), "?")
            for key, default in VRRP_DEFAULTS.items():
                if inst.get(key) == default:
                    del inst[key]
            dev = f"dev {inst.get('interface', '')}"
            for key in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
                if key in inst:
                    inst[key] = sorted(v.replace(f" {dev}", "") for v in inst[key])
            instances[vrid] = inst
        elif d.key == "virtual_server":
            key = " ".join(d.args)
            if d.args[:1] == ("group",) and len(d.args) > 1:
                key = "group " + " ".join(groups.get(d.args[1], []))
            vs: dict[str, Any] = {"real_server": {}}
            for c in d.block():
                if c.key == "real_server":
                    vs["real_server"][" ".join(c.args)] = _norm_rs(c)
                elif c.key not in ("ip_family",):
                    vs[{"lvs_sched": "lb_algo", "lvs_method": "lb_kind"}.get(c.key, c.key)] = " ".join(c.args)
            for k, default in VS_DEFAULTS.items():
                if vs.get(k, default).upper() == default.upper():
                    vs.pop(k, None)
            if "sorry_server" in vs:
                vs["sorry_server"] = (vs["sorry_server"].split() or [""])[0]
            servers[key] = vs
    return {"vrrp_instance": instances, "virtual_server": servers}


# keepalived's defaults: written or not, the same (keepalived.conf(5))
VRRP_DEFAULTS = {"advert_int": "1", "garp_master_delay": "5", "version": "2"}
VS_DEFAULTS = {"protocol": "UDP", "lb_algo": "wlc", "lb_kind": "NAT"}  # UDP: keepalived 2.2 warns


def _norm_vip(words: tuple[str, ...]) -> str:
    addr, _, prefix = words[0].partition("/")
    try:
        ip = ipaddress.ip_address(addr)
        prefix = prefix or str(ip.max_prefixlen)
    except ValueError:
        pass
    rest = list(words[1:])
    return " ".join([f"{addr}/{prefix}", *rest])


def _norm_rs(d: Directive) -> dict[str, Any]:
    rs: dict[str, Any] = {"weight": "1", "checks": []}
    for c in d.block():
        if c.key == "FILE_CHECK" and is_dr_check(c):
            continue  # lvsdr's own DR-path check, like its hooks
        if c.key in CHECKERS:
            chk: dict[str, Any] = {"type": c.key}
            for o in c.block():
                if o.key == "url":
                    chk.setdefault("url", []).append(sorted(" ".join(u.words) for u in o.block()))
                elif o.key != "nb_get_retry" or c.key in ("HTTP_GET", "SSL_GET"):  # keepalived ignores it elsewhere
                    key = "retry" if o.key == "nb_get_retry" else o.key
                    chk[key] = " ".join(o.args)
            rs["checks"].append(chk)
        elif c.key not in ("notify_up", "notify_down"):
            rs[c.key] = " ".join(c.args)
    rs["checks"].sort(key=lambda c: json.dumps(c, sort_keys=True))
    return rs



def compare(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two semantics() differ, one line each (``path: original -> rendered``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            here = f"{path} {k}".strip()
            if k not in b:
                out.append(f"{here}: only in the original")
            elif k not in a:
                out.append(f"{here}: only in lvsdr's rendering")
            else:
                out += compare(a[k], b[k], here)
        return out
    return [] if a == b else [f"{path}: {json.dumps(a)} -> {json.dumps(b)}"]
