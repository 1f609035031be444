"""keepalived.conf (one per director) -> a cluster file (pure), the reading
half: ``read_side`` maps one director's directive tree (``kaconf.py``) into
the cluster file's shape and names every directive it cannot map.
import_merge.py reconciles the directors' sides into one cluster file;
import_diff.py is what `--diff` compares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lvsdr.errors import InputError

from . import checks
from .drpath import DR_PREFIX
from .handover import PREFIX as HANDOVER_PREFIX
from .kaconf import Directive
from .keys import Key, by_directive
from .model import SCHEDULERS, Backend, Cluster, Director, Service

# -- what one director's file says -------------------------------------------

CHECKERS = checks.BY_BLOCK  # keepalived's checker blocks -> lvsdr's check types (the catalog's inverse)
# keepalived keeps these for us (lvsdr renders its own): not the operator's to import
OWN_GLOBALS = {"router_id", "enable_script_security", "script_user", "vrrp_notify_fifo", "notify_fifo",
               "lvs_sync_daemon"}
SYNC_OPTIONS = ("inst", "id", "maxlen", "port", "ttl", "group")
# keywords of older keepalived that 2.2 no longer knows (keepalived -t refuses the file): named, never kept
OBSOLETE = {"nat_mask", "net_mask", "lvs_id", "lb_kind_old"}
KEEPALIVED_SCHEDULER = "wlc"  # keepalived 2.2.7's scheduler when a virtual_server names none (or a wrong one)
PERSISTENCE_MAX = 2678400  # keepalived 2.2.7's bounds of persistence_timeout (1..31 days)
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass
class Unmapped:
    where: str
    what: str
    reason: str
    kept: bool = False  # kept through [[keepalived_extra]]

    def line(self) -> str:
        return f"{self.where}: {self.what}: {self.reason}" + (" (kept in [[keepalived_extra]])" if self.kept else "")


Tables = dict[str, Any]  # what the import writes: the cluster file's tables, as to_toml writes and tomllib reads them
CheckTable = Tables  # a checker as the cluster file writes it: its keys are the catalog's (checks.py)
Command = list[str]  # a script: its path, then its arguments


@dataclass
class Address:
    """A VIP of virtual_ipaddress (or _excluded)."""

    address: str
    where: str
    device: str | None = None
    label: str | None = None

    def table(self) -> dict[str, str]:
        return {"address": self.address, **({"device": self.device} if self.device else {}),
                **({"label": self.label} if self.label else {})}


@dataclass
class Tracked:
    """A track_interface or track_file entry of an instance: its name and weight."""

    name: str
    weight: int
    where: str


@dataclass
class Script:
    """A vrrp_script: its program and the settings lvsdr models."""

    name: str
    script: str | None = None
    args: Command = field(default_factory=list)
    where: str = ""  # its vrrp_script block's file:line
    interval: int | None = None
    timeout: int | None = None
    weight: int | None = None
    rise: int | None = None
    fall: int | None = None

    def table(self) -> Tables:
        out: Tables = {"name": self.name, "script": self.script}
        if self.args:
            out["args"] = self.args
        return out | {k: getattr(self, k) for k in ("interval", "timeout", "weight", "rise", "fall")
                      if getattr(self, k) is not None}


@dataclass
class TrackFileBlock:
    name: str
    file: str


@dataclass
class SyncDaemon:
    """global_defs lvs_sync_daemon: its interface, and id and port when given."""

    interface: str
    id: int | None = None
    port: int | None = None


Simple = dict[str, int | bool]  # simple keys read by the catalog's directive map: key name -> value


@dataclass
class Instance:
    """One vrrp_instance as read. Its settings that are simple keys of the
    cluster file (``simple``) carry those keys' names: the catalog's directive
    map reads them, and the merge takes them without naming them."""

    name: str
    where: str
    state: str | None = None
    interface: str | None = None
    simple: Simple = field(default_factory=dict)
    version: int | None = None
    advert_int: int | float | None = None
    mcast_src_ip: str | None = None
    src: str | None = None  # its adverts' source: unicast_src_ip or mcast_src_ip
    unicast: bool = False
    peers: list[str] | None = None
    auth_type: str | None = None
    auth_pass: str | None = None
    vips: list[Address] = field(default_factory=list)
    excluded: list[Address] = field(default_factory=list)
    track_scripts: list[str] | None = None
    track_interfaces: list[Tracked] | None = None
    track_files: list[Tracked] | None = None
    notify: dict[str, Command] = field(default_factory=dict)  # notify_master ... notify_stop

    @property
    def addresses(self) -> list[Address]:
        return self.vips + self.excluded

    @property
    def virtual_router_id(self) -> int | None:
        return _int_of(self.simple.get("virtual_router_id"))

    @property
    def priority(self) -> int | None:
        return _int_of(self.simple.get("priority"))

    @property
    def nopreempt(self) -> bool:
        return bool(self.simple.get("nopreempt"))


def _int_of(v: int | bool | None) -> int | None:
    return None if v is None or isinstance(v, bool) else v


@dataclass
class RealServer:
    """One real_server of a virtual_server as read."""

    address: str
    where: str
    weight: int | None = None
    inhibit_on_failure: bool | None = None
    notify_up: Command | None = None
    notify_down: Command | None = None
    checks: list[CheckTable] = field(default_factory=list)

    def settings(self) -> Tables:
        """What the cluster file's backend table takes of it (but its checks)."""
        return {k: getattr(self, k) for k in ("weight", "inhibit_on_failure", "notify_up", "notify_down")
                if getattr(self, k) is not None}


@dataclass
class VirtualServer:
    """One DR virtual_server as read. Its settings carry the cluster file's
    key names (the catalog's directive map reads the simple ones)."""

    name: str
    where: str
    vip: str | list[str]
    port: int | list[int]
    protocol: str | None = None
    scheduler: str | None = None
    simple: Simple = field(default_factory=dict)  # delay_loop, quorum, alpha, ...: by the catalog's directive map
    persistence_granularity: str | None = None
    quorum_up: Command | None = None
    quorum_down: Command | None = None
    sh_port: bool = False
    sh_fallback: bool = False
    mh_port: bool = False
    mh_fallback: bool = False
    sorry_server: str | None = None  # its address (the port is the service's)
    backends: list[RealServer] = field(default_factory=list)

    def settings(self) -> Tables:
        """The service's keys as the cluster file writes them (but its name, backends and checks)."""
        out: Tables = {k: getattr(self, k) for k in ("vip", "port", "protocol", "scheduler") if getattr(self, k)}
        out.update(self.simple)
        out.update({k: getattr(self, k) for k in ("persistence_granularity", "quorum_up", "quorum_down", "sh_port",
                                                  "sh_fallback", "mh_port", "mh_fallback") if getattr(self, k)})
        if self.sorry_server is not None:
            out["sorry_server"] = {"address": self.sorry_server}
        return out


# the directives of keepalived's blocks that are simple keys of the cluster file: the catalog's inverse (keys.py)
SIMPLE = ("int", "bool")
INSTANCE_KEYS = {d: k for d, k in (by_directive(Cluster) | by_directive(Director)).items() if k.form in SIMPLE}
SERVICE_KEYS = {d: k for d, k in by_directive(Service).items() if k.form in SIMPLE}
BACKEND_KEYS = {d: k for d, k in by_directive(Backend).items() if k.form in SIMPLE}


@dataclass
class Side:
    """One director's keepalived.conf, in the cluster file's terms."""

    file: str
    name: str
    address: str | None = None
    instances: list[Instance] = field(default_factory=list)
    services: list[VirtualServer] = field(default_factory=list)
    track_scripts: list[Script] = field(default_factory=list)
    track_files: list[TrackFileBlock] = field(default_factory=list)
    sync_daemon: SyncDaemon | None = None
    sync_group: bool = False
    extra: dict[str, list[str]] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # track_file name -> path
    comments: list[str] = field(default_factory=list)  # choices made, for the cluster file's header
    claimed: dict[str, tuple[str, str]] = field(default_factory=dict)  # VIP -> (where, the instance holding it)

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


def _script_of(side: Side, d: Directive) -> Command | None:
    """The script ``d`` names; one that is empty (``notify_down ""``, which
    keepalived accepts and runs nothing for) is named, and None; so is one
    whose program is not an absolute path (``notify_master script parth``,
    a tutorial's placeholder): keepalived looks such a name up in PATH and
    disables the script when it finds none, and lvsdr takes absolute paths
    only."""
    cmd = _command(d)
    if cmd is None:
        side.skip(d, "an empty script: keepalived runs nothing (not imported)")
    elif not cmd[0].startswith("/"):
        side.skip(d, f"{cmd[0]} is not an absolute path: keepalived looks it up in PATH and disables the script "
                     "when it finds none; lvsdr takes absolute paths only (not imported: give its full path)")
        return None
    return cmd


def read_side(tree: tuple[Directive, ...], file: str, name: str | None = None) -> Side:
    router_id = None
    for d in tree:
        if d.key == "global_defs":
            router_id = next((c.args[0] for c in d.block() if c.key == "router_id" and c.args), None)
    stem = re.sub(r"\.conf$", "", file.rsplit("/", 1)[-1])  # keepalived.conf -> keepalived, lb1.conf -> lb1
    side = Side(file, name or router_id or re.sub(r"[^A-Za-z0-9_.-]", "-", stem) or "lb")
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
                if inst.virtual_router_id is not None:
                    side.instances.append(inst)
                else:
                    side.skip(d, "no virtual_router_id (keepalived drops such an instance): not imported")
            case "vrrp_script":
                _script(side, d)
            case "track_file" if d.args and d.args[0].startswith((DR_PREFIX, HANDOVER_PREFIX)):
                pass  # the file of lvsdr's own DR-path check or hand-over: `dr_check`, `quorum_handover` make it
            case "vrrp_track_file" | "track_file":
                path = next((c.args[0] for c in d.block() if c.key == "file" and c.args), None)
                if d.args and path:
                    side.files[d.args[0]] = path
                    side.track_files.append(TrackFileBlock(d.args[0], path))
                for c in d.block():
                    if c.key != "file":
                        side.skip(c, "track_file option lvsdr does not model")
            case "vrrp_sync_group":
                members = [m for c in d.block() if c.key == "group" for m in c.block()]
                if len(members) < 2:  # keepalived 2.2.7 warns and drops it: one instance has nothing to move with
                    side.skip(d, f"a sync group of {len(members)} instance: keepalived ignores it, and so does lvsdr")
                    continue
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
            sync = SyncDaemon(c.args[0])
            words = list(c.args[1:])
            if words and words[0] not in SYNC_OPTIONS:
                words.pop(0)  # the instance's name (lvsdr names its own)
            while words:
                k = words.pop(0)
                if k in ("id", "port") and words and number(words[0]) is not None:
                    setattr(sync, k, number(words.pop(0)))
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
    t = Script(d.args[0], where=d.where)
    for c in d.block():
        if c.key == "script" and c.args:
            cmd = _command(c) or []
            t.script, t.args = (cmd[0], cmd[1:]) if cmd else (None, [])
        elif c.key in ("interval", "timeout", "weight", "rise", "fall") and _int(c) is not None:
            setattr(t, c.key, _int(c))
        else:
            side.skip(c, "vrrp_script option lvsdr does not model")
    if t.script is not None:
        side.track_scripts.append(t)
    else:
        side.skip(d, "vrrp_script without a script")


def _addresses(side: Side, d: Directive) -> list[Address]:
    out = []
    for c in d.block():
        addr, _, prefix = c.words[0].partition("/")
        v = Address(addr, c.where)
        if prefix and prefix not in ("32", "128"):
            side.unmapped.append(Unmapped(c.where, c.words[0], f"lvsdr adds a VIP as a host address (/32, /128): "
                                          f"the /{prefix} (and the route to its network that keepalived adds with "
                                          "it) is not imported"))
        words = list(c.words[1:])
        while words:
            k = words.pop(0)
            if k in ("dev", "label") and words:
                if k == "dev":
                    v.device = words.pop(0)
                else:
                    v.label = words.pop(0)
            elif k in ("brd", "scope") and words:
                words.pop(0)
                side.skip(c, f"VIP option {k} lvsdr does not model")
            else:
                side.skip(c, f"VIP option {k} lvsdr does not model")
        out.append(v)
    return out


def _own_interface(side: Side, inst: Instance) -> None:
    """What names the instance's own interface again, as keepalived takes it: a VIP label equal to its device
    (the address's label is the device's name anyway) and a track_interface on the VRRP interface (keepalived
    tracks it in any case: the instance goes to FAULT when it goes down). Each dropped and named."""
    own = inst.interface
    for v in inst.addresses:
        if v.address in side.claimed and side.claimed[v.address][1] != inst.name:
            first, name = side.claimed[v.address]
            raise InputError(f"{v.where}: {v.address} is also a VIP of vrrp_instance {name} ({first}): each "
                             "instance adds and deletes it with its own state; lvsdr gives a VIP to one instance "
                             "(keep it in one, or put the instances in a vrrp_sync_group with the VIP in one)")
        side.claimed.setdefault(v.address, (v.where, inst.name))
        if v.label is not None and v.label == (v.device or own):
            side.unmapped.append(Unmapped(v.where, f"{v.address} label {v.label}", "a label equal to its "
                                          "device's name is the device's own: not imported"))
            v.label = None
    if inst.track_interfaces is None:
        return
    kept = []
    for t in inst.track_interfaces:
        if t.name == own:
            side.unmapped.append(Unmapped(t.where, f"track_interface {own}", "the VRRP interface itself (keepalived "
                                          "tracks it anyway: FAULT when it goes down)"
                                          + (f"; its weight {t.weight} is not imported" if t.weight else "")
                                          + ": not imported"))
        else:
            kept.append(t)
    inst.track_interfaces = kept


def _instance(side: Side, d: Directive) -> Instance:
    inst = Instance(d.args[0] if d.args else "VI", d.where)
    for c in d.block():
        k = c.key
        if k in INSTANCE_KEYS:  # the simple keys, by the catalog's directive map
            key = INSTANCE_KEYS[k]
            value = True if key.form == "bool" else _int(c)
            if value is not None:
                inst.simple[key.name] = value
        elif k == "state" and c.args:
            inst.state = c.args[0]
            if c.args[0] not in ("MASTER", "BACKUP"):  # keepalived 2.2.7: "unknown state 'SLAVE', defaulting to BACKUP"
                inst.state = "BACKUP"
                side.unmapped.append(Unmapped(c.where, " ".join(c.words), "keepalived knows MASTER and BACKUP (in "
                                              "capitals): it starts this instance as BACKUP, and so does the import"))
        elif k == "interface" and c.args:
            inst.interface = c.args[0]
        elif k == "version" and _int(c) is not None:
            inst.version = _int(c)
        elif k == "advert_int" and _num(c) is not None:
            inst.advert_int = _num(c)
        elif k in ("mcast_src_ip", "unicast_src_ip", "unicast_peer", "authentication"):
            _adverts(side, inst, c)
        elif k in ("virtual_ipaddress", "virtual_ipaddress_excluded", "track_script", "track_interface",
                   "track_file"):
            _instance_list(side, inst, c)
        elif k in ("notify_master", "notify_backup", "notify_fault", "notify_stop") and c.args:
            cmd = _script_of(side, c)
            if cmd is not None:
                inst.notify[k] = cmd
        elif k == "lvs_sync_daemon_interface" and c.args:  # keepalived 2.2.7: deprecated, use global lvs_sync_daemon
            side.sync_daemon = side.sync_daemon or SyncDaemon(c.args[0])
            side.unmapped.append(Unmapped(c.where, " ".join(c.words), "the old spelling of global_defs "
                                          "lvs_sync_daemon: imported as [cluster.sync_daemon]"))
        elif k == "notify":
            side.skip(c, "a notify script of its own: lvsdr's hook takes this place (use notify_master/"
                         "notify_backup for yours)")
        else:
            side.keep(c, "vrrp_instance", "vrrp_instance option lvsdr does not model")
    _own_interface(side, inst)
    return inst


def _adverts(side: Side, inst: Instance, c: Directive) -> None:
    """Where an instance's adverts go from and to (multicast from an address, unicast peers), and their
    authentication."""
    if c.key == "mcast_src_ip" and c.args and _multicast(c.args[0]):
        side.unmapped.append(Unmapped(c.where, " ".join(c.words), "a multicast group, not an address of this "
                                      "director (no host sends from one): not imported; give the director's "
                                      "address with --address if the file holds no other"))
    elif c.key == "mcast_src_ip" and c.args:
        inst.mcast_src_ip = inst.src = c.args[0]
        side.address = side.address or c.args[0]  # the first instance's: the cluster's own
    elif c.key == "unicast_src_ip" and c.args:
        inst.src = c.args[0]
        side.address = side.address or c.args[0]
        inst.unicast = True
    elif c.key == "unicast_peer":
        inst.peers = [p.words[0] for p in c.block()]
        inst.unicast = True
    elif c.key == "authentication":
        for a in c.block():
            if a.key == "auth_type" and a.args:
                inst.auth_type = a.args[0].upper()
            elif a.key == "auth_pass" and a.args:
                inst.auth_pass = a.args[0][:8]  # VRRP PASS carries 8 bytes: keepalived truncates (and warns)
                if len(a.args[0]) > 8:
                    side.unmapped.append(Unmapped(a.where, "auth_pass", f"{len(a.args[0])} characters; "
                                                  "keepalived uses the first 8: imported as those"))
    else:
        side.keep(c, "vrrp_instance", "vrrp_instance option lvsdr does not model")


def _instance_list(side: Side, inst: Instance, c: Directive) -> None:
    """An instance's blocks of entries: its VIPs, and what it tracks."""
    if c.key == "virtual_ipaddress":
        inst.vips = _addresses(side, c)
    elif c.key == "virtual_ipaddress_excluded":
        inst.excluded = _addresses(side, c)
        if inst.excluded:
            side.unmapped.append(Unmapped(c.where, "virtual_ipaddress_excluded", "imported as [[vips]], which lvsdr "
                                          "renders in virtual_ipaddress (in the adverts too; the same holder, the "
                                          "same failover)"))
    elif c.key == "track_script":
        inst.track_scripts = [t.words[0] for t in c.block()]
    elif c.key == "track_interface":
        inst.track_interfaces = [Tracked(t.words[0], _int(t, 2) or 0, t.where) for t in c.block()]
    else:
        inst.track_files = [Tracked(t.words[0], _int(t, 2) or 0, t.where) for t in c.block()
                        if not t.words[0].startswith(HANDOVER_PREFIX)]  # lvsdr's own: `quorum_handover`


def _multicast(word: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(word).is_multicast
    except ValueError:
        return False


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
                    ) -> VirtualServer | None:
    if d.args[:1] == ("fwmark",):
        side.skip(d, "a fwmark virtual_server marks traffic by rules lvsdr does not see; lvsdr makes its own marks "
                     "from a service's vip and port (add the service by hand): not imported")
        return None
    if d.args[:1] == ("group",) and len(d.args) > 1:
        entries = groups.get(d.args[1])
        vp = _ports_and_vips(entries or [])
        if not entries or vp is None:
            side.skip(d, f"virtual_server_group {d.args[1]} is missing or not every VIP on every port")
            return None
        svc = VirtualServer(d.args[1], d.where, *vp)
    elif len(d.args) >= 2:
        port = _port(side, d, d.args[1])
        if port is None:
            return None
        svc = VirtualServer(f"{d.args[0]}-{d.args[1]}".replace(":", "-"), d.where, d.args[0], port)
    else:
        side.skip(d, "virtual_server without a port (lvsdr needs VIP and port, a group or a fwmark)")
        return None
    if not any(c.key == "protocol" for c in d.block()):
        svc.protocol = "udp"
        side.comments.append(f"{d.where}: virtual_server {' '.join(d.args)} names no protocol: keepalived 2.2 "
                             "then uses UDP (and warns); imported as protocol = \"udp\"")
    kind, checks_default = _virtual_server_body(side, d, svc)
    if kind != "DR":
        side.skip(d, f"lb_kind {kind}: lvsdr builds direct-routing (DR) clusters only; this virtual_server is "
                     "not imported")
        return None
    for b in svc.backends:
        for chk in b.checks:
            for k, v in checks_default.items():
                if chk["type"] != "file":
                    chk.setdefault(k, v)
    return svc


def _virtual_server_body(side: Side, d: Directive, svc: VirtualServer) -> tuple[str, dict[str, int]]:
    """A virtual_server's directives into ``svc``: (its lb_kind, the checker
    settings it gives every real server's checks)."""
    kind = "NAT"
    checks_default: dict[str, int] = {}
    for c in d.block():
        k = c.key
        if k in ("lb_kind", "lvs_method") and c.args:
            kind = _lb_kind(side, c)
        elif k in ("lb_algo", "lvs_sched") and c.args:
            svc.scheduler = _scheduler(side, c)
        elif k == "persistence_timeout" and _int(c) is not None and not 1 <= (_int(c) or 0) <= PERSISTENCE_MAX:
            side.unmapped.append(Unmapped(c.where, " ".join(c.words), f"outside keepalived's 1..{PERSISTENCE_MAX}: "
                                          "keepalived ignores it (no persistence), and so does the import"))
        elif k == "persistence_timeout" and _int(c) is None:
            svc.simple["persistence_timeout"] = 360  # keepalived's default when given without a number
        elif k in SERVICE_KEYS:  # the simple keys, by the catalog's directive map
            key = SERVICE_KEYS[k]
            value = True if key.form == "bool" else _int(c)
            if value is not None:
                svc.simple[key.name] = value
        elif k == "protocol" and c.args:
            svc.protocol = c.args[0].lower()
        elif k == "persistence_granularity" and c.args:
            svc.persistence_granularity = c.args[0]
        elif k in ("sh-port", "sh-fallback", "mh-port", "mh-fallback"):
            setattr(svc, k.replace("-", "_"), True)
        elif k in ("quorum_up", "quorum_down") and c.args:
            setattr(svc, k, _script_of(side, c))
        elif k == "sorry_server" and c.args:
            svc.sorry_server = c.args[0]
        elif k == "ip_family":
            continue
        elif k in ("connect_timeout", "retry", "delay_before_retry") and _int(c) is not None:
            checks_default[k] = _int(c) or 0
        elif k == "real_server":
            _add_real_server(side, c, svc)
        else:
            side.keep(c, f"service:{svc.name}", "virtual_server option lvsdr does not model")
    return kind, checks_default


def _lb_kind(side: Side, c: Directive) -> str:
    kind = c.args[0]
    if c.key == "lvs_method":
        side.unmapped.append(Unmapped(c.where, " ".join(c.words), "the old spelling of lb_kind: imported as lb_kind"))
    if kind not in ("NAT", "DR", "TUN"):  # keepalived compares case and all: "unknown [dr] routing method"
        side.unmapped.append(Unmapped(c.where, " ".join(c.words), "keepalived knows NAT, DR and TUN (in capitals): "
                                      "it runs this virtual server as NAT, its default"))
        kind = "NAT"
    return kind


def _scheduler(side: Side, c: Directive) -> str:
    if c.key == "lvs_sched":
        side.unmapped.append(Unmapped(c.where, " ".join(c.words), "the old spelling of lb_algo: imported as "
                                      "scheduler"))
    if c.args[0] not in SCHEDULERS:  # keepalived: "Invalid lvs_scheduler - ignoring", then its default wlc
        side.unmapped.append(Unmapped(c.where, " ".join(c.words), f"no IPVS scheduler: keepalived ignores it and "
                                      f"uses {KEEPALIVED_SCHEDULER}: imported as that"))
        return KEEPALIVED_SCHEDULER
    return c.args[0]


def _add_real_server(side: Side, c: Directive, svc: VirtualServer) -> None:
    b = _real_server(side, c)
    vs_port = svc.port if isinstance(svc.port, int) else None
    if b is not None and vs_port is not None and len(c.args) > 1 and c.args[1] != str(vs_port):
        side.skip(c, f"port {c.args[1]} differs from the virtual server's {vs_port}: DR forwards to the same port "
                     f"(imported on {vs_port}; use listen_port with iptables or firewalld)")
    elif b is not None and vs_port is None and len(c.args) > 1 and isinstance(svc.port, list):
        side.unmapped.append(Unmapped(c.where, " ".join(c.words), f"a port in a virtual_server group of ports "
                                      f"{', '.join(map(str, svc.port))}: DR forwards each to its own port; lvsdr "
                                      "renders the real_server without one (keepalived warns of the others)"))
    if b is not None:
        svc.backends.append(b)


def _real_server(side: Side, d: Directive) -> RealServer | None:
    if not d.args:
        side.skip(d, "real_server without an address")
        return None
    b = RealServer(d.args[0], d.where)
    defaults: dict[str, Any] = {}
    for c in d.block():
        k = c.key
        if k == "inhibit_on_failure":
            b.inhibit_on_failure = not c.args or c.args[0] not in ("false", "no", "off", "0")
        elif k in BACKEND_KEYS and _int(c) is not None:  # weight, by the catalog's directive map
            setattr(b, BACKEND_KEYS[k].name, _int(c))
        elif k in ("notify_up", "notify_down") and c.args:
            setattr(b, k, _script_of(side, c))
        elif k == "FILE_CHECK" and is_dr_check(c):
            continue  # lvsdr's own DR-path check (generator/drpath.py): `dr_check` makes it again
        elif k in CHECKERS:
            chk = _checker(side, c)
            if chk is not None:
                b.checks.append(chk)
        elif k in ("connect_timeout", "retry", "delay_before_retry") and _int(c) is not None:
            defaults[k] = _int(c)
        elif k == "virtualhost" and c.args:
            defaults["virtualhost"] = c.args[0]
        else:
            side.skip(c, "real_server option lvsdr does not model (not imported)")
    for chk in b.checks:
        for k, v in defaults.items():
            if k != "virtualhost" or chk["type"] in ("http", "https"):
                chk.setdefault(k, v)
    return b


def is_dr_check(d: Directive) -> bool:
    """A FILE_CHECK lvsdr renders for its DR-path check (its track_file named ``lvsdr_dr_...``)."""
    return any(c.key == "track_file" and c.args and c.args[0].startswith(DR_PREFIX) for c in d.block())


def _checker(side: Side, d: Directive) -> CheckTable | None:
    """A checker block as a check table: each directive read back by its key's
    form in the catalog (checks.py), the inverse of what the template writes."""
    kind = CHECKERS[d.key]
    chk: CheckTable = {"type": kind}
    by_directive = {k.directive: k for k in checks.keys_of(checks.TYPES[kind]) if k.directive and k.form != "part"}
    urls: list[Tables] = []
    for c in d.block():
        if c.key == "nb_get_retry" and d.key not in ("HTTP_GET", "SSL_GET"):
            side.skip(c, f"keepalived 2.2 knows nb_get_retry in HTTP_GET and SSL_GET only: it ignores it in {d.key}, "
                         "and so does the import")
            continue
        if c.key == "nb_get_retry" and "retry" in by_directive:
            side.unmapped.append(Unmapped(c.where, " ".join(c.words), "the old spelling of retry: imported as retry"))
            key: Key | None = by_directive["retry"]
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


def _checker_value(side: Side, c: Directive, key: Key) -> Any:
    """One directive's value as the cluster file gives it (None: not readable as that key)."""
    if key.form in ("int", "weight"):
        return _int(c)
    if key.form == "flag":
        return True
    if key.form == "reply":
        return " ".join(c.args) if c.args else True
    if key.form == "urls":
        url: Tables = {}
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
