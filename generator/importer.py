"""keepalived.conf (one per director) -> a cluster file (pure).

``read_side`` maps one director's directive tree (``kaconf.py``) into the
cluster file's shape and names every directive it cannot map; ``merge``
reconciles the directors' sides into one cluster; ``to_toml`` writes it with
a comment where a choice was made. ``semantics`` reduces a keepalived.conf
to what the round trip compares: VRRP instances, VIPs, virtual servers, real
servers, weights, checks and timings.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

from lvsdr.errors import InputError

from . import checks
from .kaconf import Directive

# -- what one director's file says -------------------------------------------

CHECKERS = checks.BY_BLOCK  # keepalived's checker blocks -> lvsdr's check types (the catalog's inverse)
# keepalived keeps these for us (lvsdr renders its own): not the operator's to import
OWN_GLOBALS = {"router_id", "enable_script_security", "script_user", "vrrp_notify_fifo", "notify_fifo",
               "lvs_sync_daemon"}
SYNC_OPTIONS = ("inst", "id", "maxlen", "port", "ttl", "group")
# keywords of older keepalived that 2.2 no longer knows (keepalived -t refuses the file): named, never kept
OBSOLETE = {"nat_mask", "net_mask", "lvs_id", "lb_kind_old"}
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass
class Unmapped:
    where: str
    what: str
    reason: str
    kept: bool = False  # kept through [[keepalived_extra]]

    def line(self) -> str:
        return f"{self.where}: {self.what}: {self.reason}" + (" (kept in [[keepalived_extra]])" if self.kept else "")


@dataclass
class Side:
    """One director's keepalived.conf, in the cluster file's terms."""

    file: str
    name: str
    address: str | None = None
    instances: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    track_scripts: list[dict[str, Any]] = field(default_factory=list)
    track_files: list[dict[str, Any]] = field(default_factory=list)
    sync_daemon: dict[str, Any] | None = None
    sync_group: bool = False
    extra: dict[str, list[str]] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # track_file name -> path
    comments: list[str] = field(default_factory=list)  # choices made, for the cluster file's header

    def skip(self, d: Directive, reason: str) -> None:
        self.unmapped.append(Unmapped(d.where, " ".join(d.words), reason))

    def keep(self, d: Directive, block: str, reason: str) -> None:
        """An unmapped directive kept through the escape hatch (its words as
        keepalived read them, a block with its children)."""
        if d.key in OBSOLETE:
            self.skip(d, "obsolete keepalived keyword (keepalived 2.2 refuses it): not imported")
            return
        from .rules import extra_line

        why = next((w for w in (extra_line(line)[1] for line in _lines(d)) if w), None)
        if why:
            self.skip(d, f"not something [[keepalived_extra]] can carry ({why}): not imported")
            return
        self.extra.setdefault(block, []).extend(_lines(d))
        self.unmapped.append(Unmapped(d.where, " ".join(d.words), reason, kept=True))


def _quote(word: str) -> str:
    return f'"{word}"' if (not word or any(c.isspace() or c in "{}#!" for c in word)) else word


def _lines(d: Directive) -> list[str]:
    head = " ".join(_quote(w) for w in d.words)
    if d.children is None:
        return [head]
    return [head + " {", *[line for c in d.children for line in _lines(c)], "}"]


def number(word: str) -> int | None:
    """A whole number as keepalived reads one: ASCII digits (an optional
    minus), nothing else (Python's int() also takes ``³``, ``1_0`` and blanks)."""
    digits = word[1:] if word.startswith("-") else word
    if not digits or len(digits) > 18 or not (digits.isascii() and digits.isdigit()):
        return None
    return int(word)


def _int(d: Directive, i: int = 1) -> int | None:
    return number(d.words[i]) if i < len(d.words) else None


def _num(d: Directive, i: int = 1) -> int | float | None:
    """A decimal number (advert_int 0.5): finite, ASCII, at most 18 characters."""
    word = d.words[i] if i < len(d.words) else ""
    if not word or len(word) > 18 or not all(c in "0123456789.-" for c in word):
        return None
    try:
        v = float(word)
    except ValueError:
        return None
    return int(v) if v == int(v) else v


def _command(d: Directive) -> list[str] | None:
    """A script given as one quoted string or as words: [path, args...]."""
    parts = " ".join(d.args).split()
    return parts or None


def read_side(tree: tuple[Directive, ...], file: str, name: str | None = None) -> Side:
    router_id = None
    for d in tree:
        if d.key == "global_defs":
            router_id = next((c.args[0] for c in d.block() if c.key == "router_id" and c.args), None)
    side = Side(file, name or router_id or re.sub(r"[^A-Za-z0-9_.-]", "-", file.rsplit("/", 1)[-1]) or "lb")
    groups: dict[str, list[tuple[str, int | None]]] = {}
    for d in tree:  # groups first: virtual servers refer to them
        if d.key == "virtual_server_group" and d.args:
            groups[d.args[0]] = _group(side, d)
    for d in tree:
        match d.key:
            case "global_defs":
                _globals(side, d)
            case "vrrp_instance":
                inst = _instance(side, d)
                if "virtual_router_id" in inst:
                    side.instances.append(inst)
                else:
                    side.skip(d, "no virtual_router_id (keepalived drops such an instance): not imported")
            case "vrrp_script":
                _script(side, d)
            case "vrrp_track_file" | "track_file":
                path = next((c.args[0] for c in d.block() if c.key == "file" and c.args), None)
                if d.args and path:
                    side.files[d.args[0]] = path
                    side.track_files.append({"name": d.args[0], "file": path})
                for c in d.block():
                    if c.key != "file":
                        side.skip(c, "track_file option lvsdr does not model")
            case "vrrp_sync_group":
                side.sync_group = True
                for c in d.block():
                    if c.key != "group":
                        side.skip(c, "sync group option lvsdr does not model")
            case "virtual_server":
                svc = _virtual_server(side, d, groups)
                if svc is not None:
                    side.services.append(svc)
            case "virtual_server_group":
                pass
            case _ if not re.fullmatch(r"[a-z0-9_]+", d.key):
                side.skip(d, "not a keyword keepalived knows (a byte-order mark, a stray character?): keepalived "
                             "skips it, and so does lvsdr")
            case _:
                side.skip(d, "top-level block lvsdr does not model")
    return side


def _globals(side: Side, d: Directive) -> None:
    for c in d.block():
        if c.key == "lvs_sync_daemon" and c.args:
            sync: dict[str, Any] = {"interface": c.args[0]}
            words = list(c.args[1:])
            if words and words[0] not in SYNC_OPTIONS:
                words.pop(0)  # the instance's name (lvsdr names its own)
            while words:
                k = words.pop(0)
                if k in ("id", "port") and words and number(words[0]) is not None:
                    sync[k] = number(words.pop(0))
                elif k == "inst" and words:
                    words.pop(0)
                else:
                    side.skip(c, f"lvs_sync_daemon option {k} lvsdr does not model (not imported)")
                    if words and words[0] not in SYNC_OPTIONS:
                        words.pop(0)
            side.sync_daemon = sync
        elif c.key in OWN_GLOBALS:
            continue
        else:
            side.keep(c, "global_defs", "global setting lvsdr does not model")


def _script(side: Side, d: Directive) -> None:
    if not d.args:
        side.skip(d, "vrrp_script without a name")
        return
    t: dict[str, Any] = {"name": d.args[0]}
    for c in d.block():
        if c.key == "script" and c.args:
            cmd = _command(c) or []
            t["script"] = cmd[0]
            if cmd[1:]:
                t["args"] = cmd[1:]
        elif c.key in ("interval", "timeout", "weight", "rise", "fall") and _int(c) is not None:
            t[c.key] = _int(c)
        else:
            side.skip(c, "vrrp_script option lvsdr does not model")
    if "script" in t:
        side.track_scripts.append(t)
    else:
        side.skip(d, "vrrp_script without a script")


def _addresses(side: Side, d: Directive) -> list[dict[str, str]]:
    out = []
    for c in d.block():
        addr = c.words[0].split("/")[0]
        v: dict[str, str] = {"address": addr}
        words = list(c.words[1:])
        while words:
            k = words.pop(0)
            if k in ("dev", "label") and words:
                v["device" if k == "dev" else "label"] = words.pop(0)
            elif k in ("brd", "scope") and words:
                words.pop(0)
                side.skip(c, f"VIP option {k} lvsdr does not model")
            else:
                side.skip(c, f"VIP option {k} lvsdr does not model")
        out.append(v)
    return out


def _instance(side: Side, d: Directive) -> dict[str, Any]:
    inst: dict[str, Any] = {"name": d.args[0] if d.args else "VI", "where": d.where, "vips": [], "excluded": []}
    for c in d.block():
        k = c.key
        if k in ("state", "interface") and c.args:
            inst[k] = c.args[0]
        elif k in ("virtual_router_id", "priority", "preempt_delay", "garp_master_delay", "garp_master_refresh",
                   "version") and _int(c) is not None:
            inst[k] = _int(c)
        elif k == "advert_int" and _num(c) is not None:
            inst[k] = _num(c)
        elif k == "nopreempt":
            inst[k] = True
        elif k == "mcast_src_ip" and c.args:
            inst[k] = c.args[0]
            side.address = side.address or c.args[0]
        elif k == "unicast_src_ip" and c.args:
            side.address = c.args[0]
            inst["unicast"] = True
        elif k == "unicast_peer":
            inst["peers"] = [p.words[0] for p in c.block()]
            inst["unicast"] = True
        elif k == "authentication":
            for a in c.block():
                if a.key == "auth_type" and a.args:
                    inst["auth_type"] = a.args[0].upper()
                elif a.key == "auth_pass" and a.args:
                    inst["auth_pass"] = a.args[0]
        elif k == "virtual_ipaddress":
            inst["vips"] = _addresses(side, c)
        elif k == "virtual_ipaddress_excluded":
            inst["excluded"] = _addresses(side, c)
        elif k == "track_script":
            inst["track_scripts"] = [t.words[0] for t in c.block()]
        elif k == "track_interface":
            inst["track_interfaces"] = [{"name": t.words[0], "weight": _int(t, 2) or 0} for t in c.block()]
        elif k == "track_file":
            inst["track_files"] = [{"name": t.words[0], "weight": _int(t, 2) or 0} for t in c.block()]
        elif k in ("notify_master", "notify_backup", "notify_fault", "notify_stop") and c.args:
            inst[k] = _command(c)
        elif k == "notify":
            side.skip(c, "a notify script of its own: lvsdr's hook takes this place (use notify_master/"
                         "notify_backup for yours)")
        else:
            side.keep(c, "vrrp_instance", "vrrp_instance option lvsdr does not model")
    return inst


def _port(side: Side, d: Directive, word: str) -> int | None:
    """A virtual_server's port: a number, or a service name keepalived looks
    up in /etc/services (said in a note); None, with a note, for anything else."""
    port = number(word)
    if port is not None:
        return port
    import socket

    proto = next((c.args[0].lower() for c in d.block() if c.key == "protocol" and c.args), "tcp")
    try:
        port = socket.getservbyname(word, proto if proto in ("tcp", "udp") else "tcp")
    except OSError:
        side.skip(d, f"port {word!r} is neither a number nor a service in /etc/services: not imported")
        return None
    side.unmapped.append(Unmapped(d.where, " ".join(d.words), f"port {word} is {port} in /etc/services, as "
                                  "keepalived reads it: imported as that number"))
    return port


def _group(side: Side, d: Directive) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for c in d.block():
        if c.key == "fwmark":
            side.skip(c, "a fwmark in a virtual_server_group (lvsdr: a service's own fwmark)")
            continue
        port = _int(c, 1)
        out.append((c.words[0], port))
    return out


def _ports_and_vips(entries: list[tuple[str, int | None]]) -> tuple[list[str], list[int]] | None:
    """A group's entries as lvsdr's vip and port lists, when they are a full
    cross product (every VIP on every port), else None."""
    vips = list(dict.fromkeys(v for v, _p in entries))
    ports = list(dict.fromkeys(p for _v, p in entries if p is not None))
    if {(v, p) for v, p in entries} != {(v, p) for v in vips for p in ports}:
        return None
    return vips, ports


def _virtual_server(side: Side, d: Directive, groups: dict[str, list[tuple[str, int | None]]]
                    ) -> dict[str, Any] | None:
    svc: dict[str, Any] = {"where": d.where}
    if d.args[:1] == ("fwmark",):
        side.skip(d, "a fwmark virtual_server marks traffic by rules lvsdr does not see; lvsdr makes its own marks "
                     "from a service's vip and port (add the service by hand): not imported")
        return None
    elif d.args[:1] == ("group",) and len(d.args) > 1:
        entries = groups.get(d.args[1])
        vp = _ports_and_vips(entries or [])
        if not entries or vp is None:
            side.skip(d, f"virtual_server_group {d.args[1]} is missing or not every VIP on every port")
            return None
        svc["vip"], svc["port"] = vp
        svc["name"] = d.args[1]
    elif len(d.args) >= 2:
        port = _port(side, d, d.args[1])
        if port is None:
            return None
        svc["vip"], svc["port"] = d.args[0], port
        svc["name"] = f"{d.args[0]}-{d.args[1]}".replace(":", "-")
    else:
        side.skip(d, "virtual_server without a port (lvsdr needs VIP and port, a group or a fwmark)")
        return None
    kind = "NAT"
    if "fwmark" not in svc and not any(c.key == "protocol" for c in d.block()):
        svc["protocol"] = "udp"
        side.comments.append(f"{d.where}: virtual_server {' '.join(d.args)} names no protocol: keepalived 2.2 "
                             "then uses UDP (and warns); imported as protocol = \"udp\"")
    backends: list[dict[str, Any]] = []
    checks_default: dict[str, Any] = {}
    for c in d.block():
        k = c.key
        if k in ("lb_kind", "lvs_method") and c.args:
            kind = c.args[0].upper()
        elif k in ("lb_algo", "lvs_sched") and c.args:
            svc["scheduler"] = c.args[0]
        elif k == "protocol" and c.args:
            svc["protocol"] = c.args[0].lower()
        elif k in ("delay_loop", "persistence_timeout", "quorum", "hysteresis") and _int(c) is not None:
            svc[k] = _int(c)
        elif k == "persistence_timeout":
            svc[k] = 360  # keepalived's default when given without a number
        elif k == "persistence_granularity" and c.args:
            svc[k] = c.args[0]
        elif k in ("alpha", "omega", "ha_suspend", "ops"):
            svc[k] = True
        elif k in ("sh-port", "sh-fallback", "mh-port", "mh-fallback"):
            svc[k.replace("-", "_")] = True
        elif k in ("quorum_up", "quorum_down") and c.args:
            svc[k] = _command(c)
        elif k == "sorry_server" and c.args:
            svc["sorry_server"] = {"address": c.args[0]}
        elif k == "ip_family":
            continue
        elif k in ("connect_timeout", "retry", "delay_before_retry") and _int(c) is not None:
            checks_default[k] = _int(c)
        elif k == "real_server":
            b = _real_server(side, c)
            vs_port = svc.get("port") if isinstance(svc.get("port"), int) else None
            if b is not None and vs_port is not None and len(c.args) > 1 and c.args[1] != str(vs_port):
                side.skip(c, f"port {c.args[1]} differs from the virtual server's {vs_port}: DR forwards to the "
                             f"same port (imported on {vs_port}; use listen_port with iptables or firewalld)")
            if b is not None:
                backends.append(b)
        else:
            side.keep(c, f"service:{svc['name']}", "virtual_server option lvsdr does not model")
    if kind != "DR":
        side.skip(d, f"lb_kind {kind}: lvsdr builds direct-routing (DR) clusters only; this virtual_server is "
                     "not imported")
        return None
    for b in backends:
        for chk in b.get("checks", []):
            for k, v in checks_default.items():
                if chk["type"] != "file":
                    chk.setdefault(k, v)
    svc["backends"] = backends
    return svc


def _real_server(side: Side, d: Directive) -> dict[str, Any] | None:
    if not d.args:
        side.skip(d, "real_server without an address")
        return None
    b: dict[str, Any] = {"address": d.args[0], "where": d.where, "checks": []}
    defaults: dict[str, Any] = {}
    for c in d.block():
        k = c.key
        if k == "weight" and _int(c) is not None:
            b["weight"] = _int(c)
        elif k == "inhibit_on_failure":
            b["inhibit_on_failure"] = not c.args or c.args[0] not in ("false", "no", "off", "0")
        elif k in ("notify_up", "notify_down") and c.args:
            b[k] = _command(c)
        elif k in CHECKERS:
            chk = _checker(side, c)
            if chk is not None:
                b["checks"].append(chk)
        elif k in ("connect_timeout", "retry", "delay_before_retry") and _int(c) is not None:
            defaults[k] = _int(c)
        elif k == "virtualhost" and c.args:
            defaults["virtualhost"] = c.args[0]
        else:
            side.skip(c, "real_server option lvsdr does not model (not imported)")
    for chk in b["checks"]:
        for k, v in defaults.items():
            if k != "virtualhost" or chk["type"] in ("http", "https"):
                chk.setdefault(k, v)
    return b


def _checker(side: Side, d: Directive) -> dict[str, Any] | None:
    """A checker block as a check table: each directive read back by its key's
    form in the catalog (checks.py), the inverse of what the template writes."""
    kind = CHECKERS[d.key]
    chk: dict[str, Any] = {"type": kind}
    by_directive = {k.directive: k for k in checks.keys_of(checks.TYPES[kind]) if k.directive and k.form != "part"}
    urls: list[dict[str, Any]] = []
    for c in d.block():
        if c.key == "nb_get_retry" and "retry" in by_directive:
            side.unmapped.append(Unmapped(c.where, " ".join(c.words), "the old spelling of retry: imported as retry"))
            key: checks.Key | None = by_directive["retry"]
        else:
            key = by_directive.get(c.key)
        value = _checker_value(side, c, key) if key is not None else None
        if key is None or value is None:
            side.skip(c, f"{d.key} option lvsdr does not model (not imported)")
        elif key.form == "urls":
            urls.append(value)
        elif key.form == "script":
            chk["script"], *args = value
            if args:
                chk["args"] = args
        else:
            chk[key.name] = value
            if key.form == "weight" and "reverse" in c.args:
                chk["reverse"] = True
    if urls:
        chk["urls"] = urls
    return chk


def _checker_value(side: Side, c: Directive, key: checks.Key) -> Any:
    """One directive's value as the cluster file gives it (None: not readable as that key)."""
    if key.form in ("int", "weight"):
        return _int(c)
    if key.form == "flag":
        return True
    if key.form == "reply":
        return " ".join(c.args) if c.args else True
    if key.form == "urls":
        url: dict[str, Any] = {}
        for u in c.block():
            if u.key == "path" and u.args:
                url["path"] = u.args[0]
            elif u.key == "digest" and u.args:
                url["digest"] = u.args[0].lower()
            elif u.key == "status_code" and u.args:
                url["status_code"] = [number(a) if number(a) is not None else a for a in u.args]
            elif u.key == "virtualhost" and u.args:
                url["virtualhost"] = u.args[0]
            else:
                side.skip(u, "url option lvsdr does not model (not imported)")
        return url
    if not c.args:
        return None
    if key.form == "script":
        return _command(c)
    if key.form == "track_file":
        return side.files.get(c.args[0], c.args[0])
    if key.form == "hex":
        return " ".join(c.args)
    if key.form == "choice":
        return c.args[0].upper()
    return c.args[0]


# -- several directors -> one cluster ----------------------------------------

@dataclass
class Imported:
    data: dict[str, Any]  # the cluster file's tables
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
    """The cluster of these directors' sides. ``addresses`` names directors'
    addresses the files do not hold (multicast VRRP without mcast_src_ip)."""
    comments: list[str] = list(sides[0].comments)
    unmapped = [u for s in sides for u in s.unmapped]
    first = sides[0]
    if not first.instances:
        dropped = [u.where for u in first.unmapped if u.what.startswith("vrrp_instance")]
        raise InputError(f"{dropped[0]}: its vrrp_instance has no virtual_router_id (keepalived drops it), and no "
                         "other is left to build a cluster around" if dropped else
                         f"{first.file}: no vrrp_instance: nothing to build a cluster around")
    main = first.instances[0]
    # directors
    directors = []
    for s in sides:
        inst = next((i for i in s.instances if i.get("virtual_router_id") == main.get("virtual_router_id")), None)
        directors.append({"name": s.name, "address": addresses.get(s.name) or s.address,
                          "priority": (inst or {}).get("priority", 100)})
    if len(sides) == 1:
        peers = main.get("peers") or []
        prio = directors[0]["priority"]
        other = max(1, prio - 50) if prio > 1 else 2
        peer_name = f"{first.name}-peer"
        directors.append({"name": peer_name, "address": addresses.get(peer_name) or (peers[0] if peers else None),
                          "priority": other})
        comments.append(f"one keepalived.conf given: director {peer_name} is inferred (priority {other}, "
                        f"address {'from unicast_peer' if peers else 'from --address'}); check it")
    missing = [d["name"] for d in directors if not d["address"]]
    if missing:
        raise InputError(f"--address: the address of director {', '.join(missing)} is not in the file (no "
                         f"unicast_src_ip, mcast_src_ip or unicast_peer); give --address NAME=IP")
    if len(directors) > 1 and len({d["priority"] for d in directors}) < len(directors):
        comments.append("the directors had equal priorities; VRRP elects by address then")
    cluster: dict[str, Any] = {"name": name or _cluster_name(main["name"]),
                               "interface": main.get("interface", "eth0"),
                               "virtual_router_id": main.get("virtual_router_id")}
    for key in ("advert_int", "nopreempt", "preempt_delay", "garp_master_delay", "garp_master_refresh"):
        if key in main:
            cluster[key] = main[key]
    if main.get("version") == 3:
        cluster["vrrp_version"] = 3
    if main.get("auth_pass"):
        cluster["auth_pass"] = main["auth_pass"]
        if main.get("auth_type") == "AH":
            cluster["auth_type"] = "AH"
    if main.get("unicast"):
        cluster["unicast"] = True
    if "mcast_src_ip" in main:
        cluster["mcast_src_ip"] = True
    if any(i.get("state") == "MASTER" for i in first.instances) and not main.get("nopreempt"):
        comments.append("state MASTER in the file: lvsdr starts every director as BACKUP and lets priority "
                        "decide (initial_state = \"MASTER\" keeps it)")
    for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop"):
        if main.get(key):
            cluster[key] = main[key]
    if first.sync_daemon is not None:
        sync = {k: v for k, v in first.sync_daemon.items() if not (k == "interface" and v == cluster["interface"])}
        cluster["sync_daemon"] = sync or True
    if first.sync_group and len(first.instances) > 1:
        cluster["sync_group"] = True
    data: dict[str, Any] = {"cluster": cluster, "directors": directors}
    # real servers and services
    servers: dict[str, dict[str, Any]] = {}
    services = []
    names: set[str] = set()
    for svc in first.services:
        out = {"name": svc["name"], **{k: v for k, v in svc.items() if k not in ("where", "backends", "name")}}
        base = out["name"] if _NAME_OK.fullmatch(out["name"]) else "service"
        n, i = base, 1
        while n in names:
            i += 1
            n = f"{base}-{i}"
        names.add(n)
        out["name"] = n
        backends = []
        for b in svc["backends"]:
            server = _server_name(b["address"])
            servers.setdefault(server, {"name": server, "address": b["address"], "arp_method": arp_method})
            entry: dict[str, Any] = {"server": server}
            for k in ("weight", "inhibit_on_failure", "notify_up", "notify_down"):
                if k in b:
                    entry[k] = b[k]
            checks = b["checks"]
            entry["_checks"] = checks
            backends.append(entry)
        shared = _shared_checks(backends)
        if shared is not None:
            out.update(_check_keys(shared))
        for entry in backends:
            checks = entry.pop("_checks")
            if shared is None:
                entry.update(_check_keys(checks))
        out["backends"] = [e if len(e) > 1 else e["server"] for e in backends]
        services.append(out)
    data["real_servers"] = sorted(servers.values(), key=lambda r: r["name"])
    data["services"] = services
    # VRRP-only VIPs and per-VIP options
    svc_vips: set[str] = set()
    for svc_out in services:
        vip = svc_out.get("vip")
        svc_vips.update(vip if isinstance(vip, list) else [vip] if isinstance(vip, str) else [])
    vips = []
    for inst in first.instances:
        for v in inst["vips"] + inst["excluded"]:
            if v["address"] not in svc_vips or len(v) > 1:
                opt = {k: val for k, val in v.items() if not (k == "device" and val == cluster["interface"])}
                vips.append(opt)
    if vips:
        data["vips"] = vips
    # further instances
    extra_instances = []
    for inst in first.instances[1:]:
        if inst.get("interface", cluster["interface"]) != cluster["interface"]:
            unmapped.append(Unmapped(inst["where"], f"vrrp_instance {inst['name']} interface {inst['interface']}",
                                     f"lvsdr's instances share cluster.interface: imported onto "
                                     f"{cluster['interface']}"))
        prios = {}
        for s in sides:
            other = next((i for i in s.instances if i.get("virtual_router_id") == inst.get("virtual_router_id")), None)
            prios[s.name] = (other or {}).get("priority", 100)
        if len(sides) == 1:
            prios[directors[1]["name"]] = max(1, prios[first.name] - 50)
        extra_instances.append({"name": _cluster_name(inst["name"]), "virtual_router_id": inst.get("virtual_router_id"),
                                "vips": [v["address"] for v in inst["vips"] + inst["excluded"]],
                                "priorities": prios})
    if extra_instances:
        data["instances"] = extra_instances
    # the directors' own health
    if first.track_scripts:
        tracked = set(main.get("track_scripts", []))
        data["track_scripts"] = [t for t in first.track_scripts if t["name"] in tracked or not tracked]
    ifaces = main.get("track_interfaces") or []
    if ifaces:
        data["track_interfaces"] = ifaces
    files = main.get("track_files") or []
    if files:
        data["track_files"] = [{"name": f["name"], "file": first.files.get(f["name"], ""), "weight": f["weight"]}
                               for f in files]
    extra = [{"block": block, "lines": lines} for block, lines in sorted(first.extra.items())]
    if extra:
        data["keepalived_extra"] = extra
    for s in sides[1:]:
        for d in _differences(first, s):
            comments.append(d)
    return Imported(data, comments, unmapped)


def _check_keys(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """A service's or backend's checkers as the cluster file writes them."""
    if len(checks) == 1:
        return {"check": checks[0]}
    return {"checks": checks} if checks else {"check": {"type": "none"}}


def _shared_checks(backends: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The checks every backend has alike (the service's), or None."""
    if not backends:
        return []
    first = backends[0]["_checks"]
    return first if all(b["_checks"] == first for b in backends) else None


def _differences(a: Side, b: Side) -> list[str]:
    """How director b's file differs from a's beyond what directors differ in."""
    out = []
    sa, sb = _service_keys(a), _service_keys(b)
    differ = sorted(n for n in set(sa) | set(sb) if sa.get(n) != sb.get(n))
    if differ:
        out.append(f"{b.file} differs from {a.file} in the virtual servers {', '.join(differ)} ({a.file}'s "
                   "were taken)")
    va = {v["address"] for i in a.instances for v in i["vips"] + i["excluded"]}
    vb = {v["address"] for i in b.instances for v in i["vips"] + i["excluded"]}
    if va != vb:
        out.append(f"{b.file} carries other VIPs than {a.file} ({a.file} was taken): {sorted(va ^ vb)}")
    return out


def _service_keys(s: Side) -> dict[str, str]:
    """Each service's name -> what it says (without where it was said)."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items() if k != "where"}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    return {svc["name"]: json.dumps(plain(svc), sort_keys=True) for svc in s.services}


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


def to_toml(imp: Imported, sources: list[str]) -> str:
    out = [f"# Imported by `lvsdr import` from {', '.join(sources)}.",
           "# Check every line; `lvsdr import --diff` compares what this renders with the originals."]
    out += [f"# NOTE: {c}" for c in imp.comments]
    for table, value in imp.data.items():
        if isinstance(value, dict):
            out += ["", f"[{table}]", *[f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]]
        else:
            for item in value:
                out += ["", f"[[{table}]]", *[f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]]
    return "\n".join(out) + "\n"


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
                    inst[c.key] = sorted(" ".join(t.words) for t in c.block())
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
        if c.key in CHECKERS:
            chk: dict[str, Any] = {"type": c.key}
            for o in c.block():
                if o.key == "url":
                    chk.setdefault("url", []).append(sorted(" ".join(u.words) for u in o.block()))
                else:
                    key = "retry" if o.key == "nb_get_retry" else o.key
                    chk[key] = " ".join(o.args)
            rs["checks"].append(chk)
        elif c.key not in ("notify_up", "notify_down"):
            rs[c.key] = " ".join(c.args)
    rs["checks"].sort(key=lambda c: json.dumps(c, sort_keys=True))
    return rs


# -- the whole job, I/O given ------------------------------------------------

@dataclass
class Job:
    imported: Imported
    text: str  # the cluster file
    trees: dict[str, tuple[Directive, ...]]  # director name -> its keepalived.conf as read
    notes: list[str]  # what the reader skipped


def import_files(paths: list[str], read: Any, arp_method: str, addresses: dict[str, str],
                 name: str | None = None, config_id: str | None = None) -> Job:
    """``read(path) -> text``. Raises InputError for what is not a keepalived.conf."""
    from .kaconf import Notes, looks_like_keepalived, read_keepalived

    sides: list[Side] = []
    trees: dict[str, tuple[Directive, ...]] = {}
    notes = Notes()
    for path in paths:
        try:
            text = read(path)
        except OSError as e:
            raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
        if not looks_like_keepalived(text):
            raise InputError(f"{path}: does not look like a keepalived.conf (no global_defs, vrrp_instance or "
                             "virtual_server block first)")
        tree = read_keepalived(path, read, config_id, notes)
        side = read_side(tree, path)
        if side.name in trees:
            side.name = f"{side.name}-{len(trees) + 1}"
        sides.append(side)
        trees[side.name] = tree
    if not sides[0].services:
        raise InputError(f"{paths[0]}: no direct-routing virtual_server to import (lvsdr builds LVS-DR clusters; "
                         "what it found instead is named above)")
    imp = merge(sides, arp_method, addresses, name)
    text = to_toml(imp, paths)
    import tomllib

    from lvsdr.errors import ValidationError

    from .load import parse_cluster

    try:
        parse_cluster(tomllib.loads(text))
    except ValidationError as e:
        raise InputError("the imported cluster does not validate (" + "; ".join(e.errors) + "): the files hold "
                         "what lvsdr refuses") from None
    return Job(imp, text, trees, [f"{w}: {t}" for w, t in notes.skipped])


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
