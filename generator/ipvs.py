"""IPVS's table of virtual services (pure): what a keepalived.conf asks for,
what the kernel holds (``/proc/net/ip_vs``), what a reload will change, and
which removed backends stay at weight 0 until their connections end.

One delta serves both sides of a reload: ``plan`` is the delta from the live
table to the one keepalived will make of the next config (``predict``), and
what a reload did is the delta between the tables read before and after it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .kaconf import Directive
from .node import FactError

Dests = Mapping["Dest", "Live"]


@dataclass(frozen=True, order=True)
class Key:
    """A virtual service as IPVS names it: TCP/UDP/SCTP VIP:port, or FWM mark."""

    protocol: str  # TCP UDP SCTP FWM
    address: str  # the VIP ("" for FWM)
    port: int  # the port, or the mark
    # not compared: /proc/net/ip_vs prints no family for a mark (its real servers may say it)
    family: int = field(default=4, compare=False)

    def __str__(self) -> str:
        if self.protocol == "FWM":
            return f"FWM {self.port}" + (" (IPv6)" if self.family == 6 else "")
        return f"{self.protocol} {_hostport(self.address, self.port)}"


@dataclass(frozen=True, order=True)
class Dest:
    """A real server of a virtual service: its address and port (a fwmark
    service's: port 0; a portless one of an address service: the service's)."""

    address: str
    port: int

    def __str__(self) -> str:
        return _hostport(self.address, self.port) if self.port else self.address


@dataclass(frozen=True)
class Live:
    """A real server's weight and, in the kernel, its connections (not
    compared: they change by the second)."""

    weight: int
    active: int = field(default=0, compare=False)
    inactive: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Service:
    scheduler: str
    dests: Dests
    group: bool = field(default=False, compare=False)  # one endpoint of a virtual_server_group (the config's)

    @property
    def active(self) -> int:
        return sum(d.active for d in self.dests.values())

    @property
    def inactive(self) -> int:
        return sum(d.inactive for d in self.dests.values())


Table = Mapping[Key, Service]


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_address(text: str) -> str:
    """An address as lvsdr writes it (IPv6 compressed); ValueError if none."""
    return str(ipaddress.ip_address(text.strip("[]")))


# -- the kernel: /proc/net/ip_vs ----------------------------------------------

PROC = "/proc/net/ip_vs"


def _proc_endpoint(word: str) -> tuple[str, int]:
    """``C0000296:0050`` or ``[2001:0db8:...:0096]:0050`` -> (address, port)."""
    host, port = word.rsplit(":", 1)
    if host.startswith("["):
        return parse_address(host), int(port, 16)
    return str(ipaddress.IPv4Address(int(host, 16))), int(port, 16)


def parse_persistent(text: str) -> dict[tuple[Key, Dest], int]:
    """``ipvsadm -Ln --persistent-conn`` -> the persistence templates of each real server (the clients IPVS has
    pinned to it: their next connections go there while the template lives). Its lines:
    ``TCP  192.0.2.130:80 rr persistent 300``, then ``  -> 192.0.2.11:80   1   1   0   2`` (weight, PersistConn,
    ActiveConn, InActConn); ``FWM  5 rr``; IPv6 in brackets. A line of another shape is skipped (ipvsadm's headers,
    its version)."""
    out: dict[tuple[Key, Dest], int] = {}
    key: Key | None = None
    for line in text.splitlines():
        parts = line.split()
        try:
            if len(parts) >= 3 and parts[0] in ("TCP", "UDP", "SCTP"):
                host, port = parts[1].rsplit(":", 1)
                address = parse_address(host)
                key = Key(parts[0], address, int(port), 6 if ":" in address else 4)
            elif len(parts) >= 3 and parts[0] == "FWM":
                key = Key("FWM", "", int(parts[1]))
            elif len(parts) == 6 and parts[0] == "->" and key is not None:
                host, port = parts[1].rsplit(":", 1)
                dest = Dest(parse_address(host), int(port) or (key.port if key.protocol != "FWM" else 0))
                out[key, dest] = int(parts[3])
        except ValueError:
            continue
    return out


def parse_proc(text: str) -> dict[Key, Service]:
    """``/proc/net/ip_vs`` -> the table. "" (IPVS not loaded) is an empty
    table; a line that is neither a header, a service nor a real server is a
    ``FactError`` naming it."""
    out: dict[Key, Service] = {}
    current: tuple[Key, str, dict[Dest, Live]] | None = None

    def close() -> None:
        if current is not None:
            out[current[0]] = Service(current[1], current[2])

    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] in ("IP", "Prot") or (parts[0] == "->" and parts[1:2] == ["RemoteAddress:Port"]):
            continue
        try:
            if parts[0] in ("TCP", "UDP", "SCTP") and len(parts) >= 3:
                close()
                address, port = _proc_endpoint(parts[1])
                current = (Key(parts[0], address, port, 6 if ":" in address else 4), parts[2], {})
                continue
            if parts[0] == "FWM" and len(parts) >= 3:
                close()
                # the kernel prints no family for a mark; its real servers say it (below)
                current = (Key("FWM", "", int(parts[1], 16)), parts[2], {})
                continue
            if parts[0] == "->" and len(parts) >= 6 and current is not None:
                address, port = _proc_endpoint(parts[1])
                key = current[0]
                if key.protocol == "FWM" and ":" in address:
                    key = Key("FWM", "", key.port, 6)
                    current = (key, current[1], current[2])
                current[2][Dest(address, port or (key.port if key.protocol != "FWM" else 0))] = Live(
                    int(parts[3]), int(parts[4]), int(parts[5]))
                continue
        except ValueError:
            pass
        raise FactError(f"{PROC}: line {n} is not an IPVS service or real server: {line.strip()[:80]!r}")
    close()
    return out


# -- what a keepalived.conf asks for -----------------------------------------


def _group_keys(d: Directive) -> list[Key]:
    keys = []
    for e in d.block():
        if e.key == "fwmark" and e.args:
            keys.append(Key("FWM", "", int(e.args[0])))
        elif len(e.words) >= 2:
            first, _, last = e.words[0].partition("-")
            start = ipaddress.ip_address(first.split("/")[0])
            count = 1
            if last:  # keepalived's range: the last byte (IPv4) or hextet (IPv6)
                count = int(last, 16 if start.version == 6 else 10) - (int(start) & (0xFFFF if start.version == 6
                                                                                    else 0xFF)) + 1
            for i in range(max(count, 1)):
                keys.append(Key("TCP", str(start + i), int(e.words[1]), start.version))
    return keys


def config_table(tree: Iterable[Directive]) -> dict[Key, Service]:
    """keepalived.conf's virtual servers (a kaconf tree) as IPVS will hold
    them with every real server up. Its sorry_server is left out (keepalived
    adds it only when the quorum is lost)."""
    tree = tuple(tree)
    groups = {d.args[0]: d for d in tree if d.key == "virtual_server_group" and d.args}
    out: dict[Key, Service] = {}
    for d in tree:
        if d.key != "virtual_server" or not d.args:
            continue
        opts = {c.key: c.args for c in d.block() if c.children is None and c.args}
        protocol = opts.get("protocol", ("TCP",))[0].upper()
        family = 6 if opts.get("ip_family", ("inet",))[0] == "inet6" else 4
        if d.args[0] == "fwmark":
            keys = [Key("FWM", "", int(d.args[1]), family)]
        elif d.args[0] == "group":
            keys = [k if k.protocol == "FWM" else Key(protocol, k.address, k.port, k.family)
                    for k in _group_keys(groups[d.args[1]])] if d.args[1] in groups else []
            keys = [Key("FWM", "", k.port, family) if k.protocol == "FWM" else k for k in keys]
        else:
            address = parse_address(d.args[0])
            keys = [Key(protocol, address, int(d.args[1]), 6 if ":" in address else 4)]
        for key in keys:
            dests: dict[Dest, Live] = {}
            for rs in d.block():
                if rs.key != "real_server" or rs.children is None:
                    continue
                weight = next((int(c.args[0]) for c in rs.block() if c.key == "weight" and c.args), 1)
                port = int(rs.args[1]) if len(rs.args) > 1 else (0 if key.protocol == "FWM" else key.port)
                dests[Dest(parse_address(rs.args[0]), port)] = Live(weight)
            out[key] = Service(opts.get("lb_algo", opts.get("lvs_sched", ("wlc",)))[0], dests, d.args[0] == "group")
    return out


def config_vips(tree: Iterable[Directive]) -> dict[str, frozenset[str]]:
    """Each vrrp_instance's VIPs (advertised and excluded), as addresses."""
    out = {}
    for d in tree:
        if d.key == "vrrp_instance" and d.args:
            out[d.args[0]] = frozenset(parse_address(c.words[0].split("/")[0]) for b in d.block()
                                       if b.key in ("virtual_ipaddress", "virtual_ipaddress_excluded")
                                       for c in b.block() if c.words)
    return out


# -- changes -----------------------------------------------------------------


@dataclass(frozen=True)
class AddService:
    key: Key
    scheduler: str

    @property
    def description(self) -> str:
        return f"add virtual service {self.key} (scheduler {self.scheduler})"


@dataclass(frozen=True)
class RemoveService:
    key: Key
    active: int = field(default=0, compare=False)
    inactive: int = field(default=0, compare=False)

    @property
    def description(self) -> str:
        return f"remove virtual service {self.key}: cuts {_conns(self.active, self.inactive)}"


@dataclass(frozen=True)
class SetScheduler:
    key: Key
    old: str
    new: str

    @property
    def description(self) -> str:
        # the kernel (ip_vs_edit_service) unbinds the old scheduler and waits out an RCU grace period before
        # binding the new one: a SYN arriving then finds no scheduler and IPVS answers ICMP port unreachable
        return (f"{self.key}: scheduler {self.old} -> {self.new} (the kernel swaps it through none: a new "
                "connection arriving in that moment is refused; established ones go on)")


@dataclass(frozen=True)
class AddDest:
    key: Key
    dest: Dest
    weight: int

    @property
    def description(self) -> str:
        return f"{self.key}: add real server {self.dest} (weight {self.weight})"


@dataclass(frozen=True)
class RemoveDest:
    key: Key
    dest: Dest
    active: int = field(default=0, compare=False)
    inactive: int = field(default=0, compare=False)

    @property
    def description(self) -> str:
        return f"{self.key}: remove real server {self.dest}: cuts {_conns(self.active, self.inactive)}"


@dataclass(frozen=True)
class SetWeight:
    key: Key
    dest: Dest
    old: int
    new: int
    active: int = field(default=0, compare=False)
    inactive: int = field(default=0, compare=False)

    @property
    def description(self) -> str:
        what = ("no new connections; its " + _conns(self.active, self.inactive) + " go on") if self.new == 0 else (
            f"{_conns(self.active, self.inactive)} stay")
        return f"{self.key}: real server {self.dest} weight {self.old} -> {self.new} ({what})"


@dataclass(frozen=True)
class AddVip:
    instance: str
    vip: str

    @property
    def description(self) -> str:
        return f"{self.instance}: add VIP {self.vip} on this director (it is MASTER)"


@dataclass(frozen=True)
class RemoveVip:
    instance: str
    vip: str

    @property
    def description(self) -> str:
        return f"{self.instance}: remove VIP {self.vip} from this director (it is MASTER)"


TableChange = AddService | RemoveService | SetScheduler | AddDest | RemoveDest | SetWeight
Change = TableChange | AddVip | RemoveVip


def _conns(active: int, inactive: int) -> str:
    return f"{active} active and {inactive} inactive connections"


def delta(old: Table, new: Table) -> list[TableChange]:
    """The changes that make table ``old`` into ``new``, in a stable order;
    connection counts are ``old``'s (the ones a change touches)."""
    out: list[TableChange] = []
    for key in sorted(old.keys() - new.keys()):
        out.append(RemoveService(key, old[key].active, old[key].inactive))
    for key in sorted(new.keys()):
        n = new[key]
        o = old.get(key)
        if o is None:
            out.append(AddService(key, n.scheduler))
            out += [AddDest(key, d, n.dests[d].weight) for d in sorted(n.dests)]
            continue
        if o.scheduler != n.scheduler:
            out.append(SetScheduler(key, o.scheduler, n.scheduler))
        for d in sorted(o.dests.keys() | n.dests.keys()):
            was, will = o.dests.get(d), n.dests.get(d)
            if was is None and will is not None:
                out.append(AddDest(key, d, will.weight))
            elif will is None and was is not None:
                out.append(RemoveDest(key, d, was.active, was.inactive))
            elif was is not None and will is not None and was.weight != will.weight:
                out.append(SetWeight(key, d, was.weight, will.weight, was.active, was.inactive))
    return out


def predict(previous: Table, next_: Table, live: Table) -> dict[Key, Service]:
    """The table keepalived makes of ``next_`` on reload, from ``live`` and the
    config it runs now (``previous``; empty when none):
    - what only ``live`` has and ``previous`` did not ask for is not
      keepalived's (ipvsadm, another tool): it stays;
    - a real server both configs ask for that ``live`` lacks is held out by
      its check: it stays out; one whose live weight differs while both
      configs give the same weight has it from its checker (inhibit_on_failure,
      a dynamic MISC_CHECK): it keeps it;
    - everything else is as ``next_`` says (a new real server starts up, as
      keepalived assumes without ``alpha``)."""
    out: dict[Key, Service] = {k: s for k, s in live.items() if k not in previous and k not in next_}
    for key, n in next_.items():
        p, lv = previous.get(key), live.get(key)
        dests: dict[Dest, Live] = {}
        if lv is not None:  # others' real servers in a service keepalived runs: left alone
            dests.update((d, v) for d, v in lv.dests.items() if d not in n.dests and (p is None or d not in p.dests))
        for d, want in n.dests.items():
            was = p.dests.get(d) if p is not None else None
            now = lv.dests.get(d) if lv is not None else None
            if was is not None and lv is not None and now is None:
                continue  # held out by its check
            if was is not None and now is not None and was.weight == want.weight:
                dests[d] = Live(now.weight)
            else:
                dests[d] = Live(want.weight)
        out[key] = Service(n.scheduler, dests)
    return out


def plan(previous: Table, next_: Table, live: Table) -> list[TableChange]:
    """What reloading keepalived with ``next_`` will change in ``live``."""
    return delta(live, predict(previous, next_, live))


def plan_vips(previous: Mapping[str, frozenset[str]], next_: Mapping[str, frozenset[str]],
              here: frozenset[str]) -> list[Change]:
    """VIPs the reload adds or removes on this director: only in instances it
    is MASTER of now (it holds one of their VIPs); a BACKUP's reload moves none."""
    out: list[Change] = []
    for name in sorted(previous.keys() | next_.keys()):
        before, after = previous.get(name, frozenset()), next_.get(name, frozenset())
        if not (before & here):
            continue
        out += [AddVip(name, v) for v in sorted(after - here)]
        out += [RemoveVip(name, v) for v in sorted((before - after) & here)]
    return out


# -- removed real servers leave at weight 0 -------------------------------------


@dataclass(frozen=True, order=True)
class Leaving:
    """A real server removed from the cluster file, kept at weight 0 until its
    active connections end or ``drain_timeout`` has passed since ``since``."""

    key: Key
    dest: Dest
    since: float
    scheduler: str = field(default="", compare=False)  # for a removed service: kept as it ran

    def until(self, timeout: int) -> float:
        return self.since + timeout


def leaving(previous: Table, next_: Table, live: Table, known: Iterable[Leaving], now: float,
            timeout: int) -> tuple[Leaving, ...]:
    """The real servers to keep at weight 0 in the next config: each that
    ``previous`` has and ``next_`` does not, while the kernel still counts
    active connections through it (UDP: any, its flows are never "active")
    and ``timeout`` s have not passed since it left. ``known`` are the ones
    leaving already (their ``since``). Fwmark and group services are not kept
    (a mark rule goes with the file; a group is the file's whole)."""
    since = {(lv.key, lv.dest): lv.since for lv in known}
    out = []
    for key, p in previous.items():
        if key.protocol == "FWM" or p.group:
            continue
        n, lv = next_.get(key), live.get(key)
        for d in p.dests:
            if n is not None and d in n.dests:
                continue
            conn = lv.dests.get(d) if lv is not None else None
            if conn is None:
                continue
            busy = conn.active + (conn.inactive if key.protocol == "UDP" else 0)
            start = min(since.get((key, d), now), now)  # a record from the future (a clock set back) starts now
            if busy and now - start < timeout:
                out.append(Leaving(key, d, start, p.scheduler))
    return tuple(sorted(out))
