"""The directors' sides (importer.py) -> one cluster file: ``merge`` reconciles
them section by section, with a ``# NOTE:`` comment for every choice it made;
``to_toml`` writes the cluster file (a test reads it back with tomllib and
finds the same data); ``import_files`` is the whole import of a set of files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lvsdr.errors import InputError

from .importer import CheckTable, Instance, Side, Tables, Unmapped, read_side
from .kaconf import Directive
from .keys import keys_of
from .model import DEFAULT_INTERFACE, Cluster

CLUSTER_KEYS = keys_of(Cluster)  # what of an instance's simple settings [cluster] takes (the rest: the directors')
KEEPALIVED_PRIORITY = 100  # keepalived.conf(5): a vrrp_instance's priority when the file gives none

_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


# -- several directors -> one cluster ----------------------------------------

@dataclass
class Imported:
    data: Tables  # the cluster file's tables
    comments: list[str]  # choices made, for the file's header
    unmapped: list[Unmapped]


def _server_name(address: str) -> str:
    return "rs-" + re.sub(r"[^0-9A-Za-z]+", "-", address).strip("-")


def _cluster_name(instance: str) -> str:
    """VI_WEB -> web; VI_1 -> vi_1 (a cluster name: [a-z0-9][a-z0-9_-]{0,30})."""
    name = re.sub(r"[^a-z0-9_-]+", "-", instance.lower()).strip("-_")
    short = re.sub(r"^vi[_-]", "", name)
    if short[:1].isalpha():
        name = short
    return name[:31] if name[:1].isalnum() else "imported"


def merge(sides: list[Side], arp_method: str, addresses: dict[str, str], name: str | None = None) -> Imported:
    """The cluster of these directors' sides, section by section. ``addresses``
    names directors' addresses the files do not hold (multicast VRRP without
    mcast_src_ip)."""
    comments: list[str] = list(sides[0].comments)
    unmapped = [u for s in sides for u in s.unmapped]
    first = sides[0]
    if not first.instances:
        dropped = [u.where for u in first.unmapped if u.what.startswith("vrrp_instance")]
        raise InputError(f"{dropped[0]}: its vrrp_instance has no virtual_router_id (keepalived drops it), and no "
                         "other is left to build a cluster around" if dropped else
                         f"{first.file}: no vrrp_instance: nothing to build a cluster around")
    main = first.instances[0]
    directors = _directors(sides, main, addresses, comments)
    cluster = _cluster(first, main, name, comments, unmapped)
    data: Tables = {"cluster": cluster, "directors": directors}
    data["real_servers"], data["services"] = _services(first, arp_method, directors, comments, unmapped)
    if not data["real_servers"]:
        del data["real_servers"]
    vips = _vips(first, data["services"], cluster["interface"])
    if vips:
        data["vips"] = vips
    instances = _instances(sides, directors, cluster["interface"], unmapped)
    if instances:
        data["instances"] = instances
    data.update(_health(first, main, unmapped))
    extra = [{"block": block, "lines": lines} for block, lines in sorted(first.extra.items())]
    if extra:
        data["keepalived_extra"] = extra
    for s in sides[1:]:
        comments += _differences(first, s)
    return Imported(data, comments, unmapped)


def _same_instance(side: Side, inst: Instance) -> Instance | None:
    """This side's instance of the same virtual_router_id (None when it has none)."""
    return next((i for i in side.instances if i.virtual_router_id == inst.virtual_router_id), None)


def _priority(side: Side, inst: Instance) -> int:
    """A director's priority in ``inst``: its file's, keepalived's default where it gives none."""
    same = _same_instance(side, inst)
    return same.priority if same is not None and same.priority is not None else KEEPALIVED_PRIORITY


def _peer_name(name: str, i: int) -> str:
    """The name of the i-th director inferred from a single file's unicast peers (--address NAME=IP names it)."""
    return f"{name}-peer" if i == 0 else f"{name}-peer{i + 1}"


def _directors(sides: list[Side], main: Instance, addresses: dict[str, str], comments: list[str]) -> list[Tables]:
    """[[directors]]: one per file, their priority in the main instance (keepalived's
    default where the file has none); with one file, its peer inferred."""
    directors: list[Tables] = [{"name": s.name, "address": addresses.get(s.name) or s.address,
                                "priority": _priority(s, main)} for s in sides]
    if len(sides) == 1:  # one director per unicast_peer (at least one), each priority below the file's
        peers = main.peers or []
        prio = directors[0]["priority"]
        for i, peer in enumerate(peers or [None]):
            other = max(1, prio - 50 - i) if prio > 1 else 2 + i
            peer_name = _peer_name(sides[0].name, i)
            directors.append({"name": peer_name, "address": addresses.get(peer_name) or peer, "priority": other})
            comments.append(f"one keepalived.conf given: director {peer_name} is inferred (priority {other}, "
                            f"address {'from unicast_peer' if peers else 'from --address'}); check it")
    missing = [d["name"] for d in directors if not d["address"]]
    if missing:
        raise InputError(f"--address: the address of director {', '.join(missing)} is not in the file (no "
                         f"unicast_src_ip, mcast_src_ip or unicast_peer); give --address NAME=IP")
    if len(directors) > 1 and len({d["priority"] for d in directors}) < len(directors):
        comments.append("the directors had equal priorities; VRRP elects by address then")
    return directors


def _cluster(first: Side, main: Instance, name: str | None, comments: list[str],
             unmapped: list[Unmapped]) -> Tables:
    """[cluster]: the main instance's VRRP settings, the operator's notify scripts, sync."""
    cluster: Tables = {"name": name or _cluster_name(main.name), "interface": main.interface or DEFAULT_INTERFACE,
                       "virtual_router_id": main.virtual_router_id}
    if main.advert_int is not None:
        cluster["advert_int"] = main.advert_int
    cluster.update({k: v for k, v in main.simple.items() if k in CLUSTER_KEYS})  # by the catalog
    if main.version == 3:
        cluster["vrrp_version"] = 3
    if main.auth_pass:
        cluster["auth_pass"] = main.auth_pass
        if main.auth_type == "AH":
            cluster["auth_type"] = "AH"
    if main.unicast:
        cluster["unicast"] = True
    if main.mcast_src_ip is not None:
        cluster["mcast_src_ip"] = True
    if any(i.state == "MASTER" for i in first.instances) and not main.nopreempt:
        comments.append("state MASTER in the file: lvsdr starts every director as BACKUP and lets priority "
                        "decide (initial_state = \"MASTER\" keeps it)")
    cluster.update(main.notify)
    if first.sync_daemon is not None:
        sync = {k: v for k, v in (("interface", first.sync_daemon.interface), ("id", first.sync_daemon.id),
                                  ("port", first.sync_daemon.port))
                if v is not None and not (k == "interface" and v == cluster["interface"])}
        cluster["sync_daemon"] = sync or True
        if "preempt_delay" not in cluster and not main.nopreempt:
            unmapped.append(Unmapped(main.where, f"vrrp_instance {main.name}", "no preempt_delay: with "
                                     "sync_daemon lvsdr renders preempt_delay 60 (a returning director waits for "
                                     "the sync before it takes the VIPs back; set preempt_delay to change it)"))
    if first.sync_group and len(first.instances) > 1:
        cluster["sync_group"] = True
    return cluster


def _own(directors: list[Tables]) -> dict[object, Tables]:
    """The directors by their address (parsed: one address, one key, however it is spelled)."""
    import ipaddress

    out: dict[object, Tables] = {}
    for d in directors:
        try:
            out[ipaddress.ip_address(d["address"])] = d
        except ValueError:
            continue
    return out


def _director_at(address: str, own: dict[object, Tables]) -> str | None:
    """The director whose own address a backend's is (a director serving as a backend), None when none is."""
    import ipaddress

    try:
        d = own.get(ipaddress.ip_address(address))
    except ValueError:
        return None
    return str(d["name"]) if d is not None else None


def _services(first: Side, arp_method: str, directors: list[Tables], comments: list[str],
              unmapped: list[Unmapped]) -> tuple[list[Tables], list[Tables]]:
    """([[real_servers]], [[services]]): each backend address a real server, or the director whose own address it
    is (a two-node cluster: each director also a backend); the checks every backend shares on the service, else on
    each backend."""
    from . import methods

    own = _own(directors)
    serving: set[str] = set()
    servers: dict[str, Tables] = {}
    services = []
    names: set[str] = set()
    for svc in first.services:
        base = svc.name if _NAME_OK.fullmatch(svc.name) else "service"
        n, i = base, 1
        while n in names:
            i += 1
            n = f"{base}-{i}"
        names.add(n)
        out: Tables = {"name": n, **svc.settings()}
        directing = [_director_at(b.address, own) for b in svc.backends]
        server_names = [at or _server_name(b.address) for at, b in zip(directing, svc.backends, strict=True)]
        for at, server, b in zip(directing, server_names, svc.backends, strict=True):
            if at is None:
                servers.setdefault(server, {"name": server, "address": b.address, "arp_method": arp_method})
        serving.update(at for at in directing if at is not None)
        if any(directing):
            what = (f"virtual_server {svc.vip} {svc.port}" if isinstance(svc.vip, str)
                    else f"virtual_server group {svc.name}")
            unmapped.append(Unmapped(svc.where, what, "a director among its real servers: "
                                     "lvsdr renders it as a fwmark virtual_server (the MASTER marks the VIP's "
                                     "traffic; a BACKUP that is a backend then serves it instead of forwarding it "
                                     "again)"))
        shared = _shared_checks([b.checks for b in svc.backends])
        if shared is not None:
            out.update(_check_keys(shared))
        backends = []
        for server, b in zip(server_names, svc.backends, strict=True):
            entry: Tables = {"server": server, **b.settings()}
            if shared is None:
                entry.update(_check_keys(b.checks))
            backends.append(entry if len(entry) > 1 else entry["server"])
        out["backends"] = backends
        services.append(out)
    for d in directors:
        if d["name"] not in serving:
            continue
        if arp_method in methods.DIRECTOR_BACKEND:
            d["arp_method"] = arp_method
            how = f"arp_method {arp_method}"
        else:
            how = (f"arp_method {methods.DEFAULT} (a director holds the VIPs itself when MASTER: {arp_method} "
                   "redirects instead)")
        comments.append(f"a real_server at director {d['name']}'s own address {d['address']}: imported as that "
                        f"director serving as a backend ({how}; lvsdr switches its ARP suppression with its role)")
    return sorted(servers.values(), key=lambda r: r["name"]), services


def _vips(first: Side, services: list[Tables], interface: str) -> list[Tables]:
    """[[vips]]: VRRP-only VIPs, and any VIP with its own device or label."""
    svc_vips: set[str] = set()
    for svc in services:
        vip = svc.get("vip")
        svc_vips.update(vip if isinstance(vip, list) else [vip] if isinstance(vip, str) else [])
    return [{k: val for k, val in v.table().items() if not (k == "device" and val == interface)}
            for inst in first.instances for v in inst.addresses
            if v.address not in svc_vips or v.device or v.label]


def _instances(sides: list[Side], directors: list[Tables], interface: str, unmapped: list[Unmapped]) -> list[Tables]:
    """[[instances]]: every instance of the first file but its first, with each director's priority."""
    first = sides[0]
    out = []
    for inst in first.instances[1:]:
        prios = {s.name: _priority(s, inst) for s in sides}
        if len(sides) == 1:
            prios[directors[1]["name"]] = max(1, prios[first.name] - 50)
        entry: Tables = {"name": _cluster_name(inst.name), "virtual_router_id": inst.virtual_router_id,
                         "vips": [v.address for v in inst.addresses], "priorities": prios}
        if (inst.interface or interface) != interface:  # a two-armed director: this instance on its own segment
            entry["interface"] = inst.interface
        addresses = _instance_addresses(sides, directors, inst, unmapped)
        if addresses:
            entry["addresses"] = addresses
        out.append(entry)
    return out


def _instance_addresses(sides: list[Side], directors: list[Tables], inst: Instance,
                        unmapped: list[Unmapped]) -> dict[str, str] | None:
    """Each director's advert source in a further instance, when one differs from the director's address (its
    own segment, or the other family): the file's unicast_src_ip/mcast_src_ip, a single file's peer from its one
    unicast_peer. None when every source is the director's address, or one is not known (named)."""
    srcs: dict[str, str | None] = {}
    for s in sides:
        same = _same_instance(s, inst)
        srcs[s.name] = same.src if same is not None else None
    if len(sides) == 1:
        peers = inst.peers or []
        inferred = directors[1:]
        for i, d in enumerate(inferred):
            srcs[d["name"]] = peers[i] if len(peers) == len(inferred) else None
    known = {d["name"]: d["address"] for d in directors}
    if all(a in (None, known[n]) for n, a in srcs.items()):
        return None
    if any(a is None for a in srcs.values()):
        unmapped.append(Unmapped(inst.where, f"vrrp_instance {inst.name} unicast_src_ip/mcast_src_ip",
                                 "not every director's address on this instance's segment is in the files: not "
                                 "imported (give [[instances]].addresses)"))
        return None
    return {n: str(a) for n, a in srcs.items()}


def _health(first: Side, main: Instance, unmapped: list[Unmapped]) -> Tables:
    """The directors' own health: [[track_scripts]] (those the main instance tracks: keepalived runs no other, and
    lvsdr tracks every one it is given), [[track_interfaces]], [[track_files]]."""
    out: Tables = {}
    tracked = set(main.track_scripts or [])
    for t in first.track_scripts:
        if t.name in tracked:
            continue
        by = [i.name for i in first.instances if t.name in (i.track_scripts or [])]
        why = (f"tracked by {', '.join(by)} only, not by {main.name}: lvsdr's [[track_scripts]] apply to every "
               "instance, so it is not imported" if by else
               "no vrrp_instance tracks it: keepalived does not run it, and it is not imported")
        unmapped.append(Unmapped(t.where, f"vrrp_script {t.name}", why))
    if any(t.name in tracked for t in first.track_scripts):
        out["track_scripts"] = [t.table() for t in first.track_scripts if t.name in tracked]
    if main.track_interfaces:
        out["track_interfaces"] = [{"name": t.name, "weight": t.weight} for t in main.track_interfaces]
    if main.track_files:
        out["track_files"] = [{"name": f.name, "file": first.files.get(f.name, ""), "weight": f.weight}
                              for f in main.track_files]
    return out


def _check_keys(checks: list[CheckTable]) -> Tables:
    """A service's or backend's checkers as the cluster file writes them."""
    if len(checks) == 1:
        return {"check": checks[0]}
    return {"checks": checks} if checks else {"check": {"type": "none"}}


def _shared_checks(checks: list[list[CheckTable]]) -> list[CheckTable] | None:
    """The checks every backend has alike (the service's), or None."""
    if not checks:
        return []
    return checks[0] if all(c == checks[0] for c in checks) else None


def _differences(a: Side, b: Side) -> list[str]:
    """How director b's file differs from a's beyond what directors differ in."""
    out = []
    sa, sb = _service_keys(a), _service_keys(b)
    differ = sorted(n for n in set(sa) | set(sb) if sa.get(n) != sb.get(n))
    if differ:
        out.append(f"{b.file} differs from {a.file} in the virtual servers {', '.join(differ)} ({a.file}'s "
                   "were taken)")
    va = {v.address for i in a.instances for v in i.addresses}
    vb = {v.address for i in b.instances for v in i.addresses}
    if va != vb:
        out.append(f"{b.file} carries other VIPs than {a.file} ({a.file} was taken): {sorted(va ^ vb)}")
    return out


def _service_keys(s: Side) -> dict[str, str]:
    """Each service's name -> what it says (without where it was said)."""
    return {svc.name: json.dumps({**svc.settings(), "backends": [
        {"address": b.address, **b.settings(), "checks": b.checks} for b in svc.backends]}, sort_keys=True)
        for svc in s.services}


# -- writing the cluster file ------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def to_toml(imp: Imported, sources: list[str], diffable: bool = True) -> str:
    out = [f"# Imported by `lvsdr import` from {', '.join(sources)}.",
           "# Check every line; `lvsdr import --diff` compares what this renders with the originals." if diffable
           else "# Check every line, and the NOTEs: the source has no VRRP and no keepalived.conf to compare with."]
    out += [f"# NOTE: {c}" for c in imp.comments]
    for table, value in imp.data.items():
        if isinstance(value, dict):
            out += ["", f"[{table}]", *[f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]]
        else:
            for item in value:
                out += ["", f"[[{table}]]", *[f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]]
    return "\n".join(out) + "\n"


# -- the whole job, I/O given ------------------------------------------------

@dataclass
class Job:
    imported: Imported
    text: str  # the cluster file
    cluster: Cluster  # that file, validated (what `--diff` renders: it is not read back again)
    trees: dict[str, tuple[Directive, ...]]  # director name -> its keepalived.conf as read
    notes: list[str]  # what the reader skipped


SOURCES = ("keepalived", "ipvsadm", "ldirectord")


def import_files(paths: list[str], read: Any, arp_method: str, addresses: dict[str, str],
                 name: str | None = None, config_id: str | None = None, source: str = "keepalived") -> Job:
    """``read(path) -> text``, called once per file (an included file too,
    however often it is included). Raises InputError for what is not a
    keepalived.conf, or holds what lvsdr refuses. ``source`` ipvsadm: one
    ``ipvsadm-save -n`` dump; ldirectord: one ldirectord.cf; the directors
    from ``addresses`` (import_lvs.py)."""
    from .kaconf import Notes, looks_like_keepalived, read_keepalived

    if source != "keepalived":
        return _import_lvs(paths, read, arp_method, addresses, name, source)
    sides: list[Side] = []
    trees: dict[str, tuple[Directive, ...]] = {}
    notes = Notes()
    texts: dict[str, str] = {}

    def once(path: str) -> str:
        if path not in texts:
            texts[path] = read(path)
        return texts[path]

    for path in paths:
        try:
            text = once(path)
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
        if not looks_like_keepalived(text):
            raise InputError(f"{path}: does not look like a keepalived.conf (no global_defs, vrrp_instance or "
                             "virtual_server block first)")
        tree = read_keepalived(path, once, config_id, notes)
        side = read_side(tree, path)
        if side.name in trees:
            side.name = f"{side.name}-{len(trees) + 1}"
        sides.append(side)
        trees[side.name] = tree
    if not sides[0].services:
        found = [u for u in sides[0].unmapped if u.what.split(" ", 1)[0] == "virtual_server"]
        raise InputError(f"{paths[0]}: no direct-routing virtual_server to import (lvsdr builds LVS-DR clusters): "
                         + ("; ".join(f"{u.where}: {u.what}: {u.reason}" for u in found[:3])
                            + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
                            if found else "the file has no virtual_server block"))
    imp = merge(sides, arp_method, addresses, name)
    text = to_toml(imp, paths)
    cluster = _validated(imp, text, "the files hold")
    return Job(imp, text, cluster, trees, [f"{w}: {t}" for w, t in notes.skipped])


def _import_lvs(paths: list[str], read: Any, arp_method: str, addresses: dict[str, str], name: str | None,
                source: str) -> Job:
    from .import_lvs import read_ipvsadm, read_ldirectord, sides_of

    if len(paths) != 1:
        raise InputError(f"--from {source}: one file (the directors come from --address), not {len(paths)}")
    path = paths[0]
    try:
        text = read(path)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    got = read_ipvsadm(text, path) if source == "ipvsadm" else read_ldirectord(text, path)
    if not got.services:
        found = "; ".join(f"{u.where}: {u.reason}" for u in got.unmapped[:3])
        raise InputError(f"{path}: no direct-routing service to import (lvsdr builds LVS-DR clusters)"
                         + (f": {found}" if found else ""))
    sides = sides_of(got, path, addresses, name)
    imp = merge(sides, arp_method, {}, name)
    text = to_toml(imp, paths, diffable=False)
    cluster = _validated(imp, text, f"the {source} file holds")
    return Job(imp, text, cluster, {}, [])


def _validated(imp: Imported, text: str, holder: str) -> Cluster:
    """The imported cluster file, validated: else one line with the model's reasons, after a hint where the
    directors' addresses are of another family than every VIP (IPv4 --address for a native_ipv6 instance)."""
    from lvsdr.errors import ValidationError

    from .load import parse_cluster
    from .schema import parse_text

    try:
        return parse_cluster(parse_text(text, "(imported).toml"))
    except ValidationError as e:
        raise InputError(f"{_family_hint(imp.data)}the imported cluster does not validate ("
                         + "; ".join(e.errors) + f"): {holder} what lvsdr refuses") from None


def _family_hint(data: Tables) -> str:
    """What to say first when every director's address is of one family and no VIP is of it."""
    import ipaddress

    def family(a: object) -> int | None:
        try:
            return ipaddress.ip_interface(str(a)).version
        except ValueError:
            return None

    vips = [v for svc in data.get("services", []) for v in (svc["vip"] if isinstance(svc["vip"], list)
                                                              else [svc["vip"]])]
    vips += [v["address"] for v in data.get("vips", [])] + [v for i in data.get("instances", [])
                                                           for v in i.get("vips", [])]
    ours = {family(d["address"]) for d in data.get("directors", [])}
    theirs = {family(v) for v in vips}
    if len(ours) != 1 or not theirs or ours & theirs:
        return ""
    mine, other = ours.pop(), theirs.pop()
    return (f"the directors' addresses are IPv{mine} and every VIP is IPv{other}: keepalived speaks VRRP in the "
            f"VIPs' family (give the directors' IPv{other} addresses, --address NAME=IP); ")
