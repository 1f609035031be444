"""The cluster checked on the wire (pure part): what the probes observed ->
one result per check, the faulty node named. The probes are in
``hooks/wire.py``; ``hooks/audit.py`` runs them and prints.
"""

from __future__ import annotations

import collections
import ipaddress
from dataclasses import dataclass, field

from .keepalived import MAX_ADVERTISED
from .model import Cluster, IPAddress, addr_key

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement seen on the segment."""

    vrid: int
    source: IPAddress
    priority: int
    addresses: tuple[IPAddress, ...]
    mac: str = ""  # the frame's source: VRRPv3 over IPv6 comes from a link-local address


@dataclass(frozen=True)
class Target:
    """One DR path to probe: a service's VIP:port at one backend's MAC."""

    service: str
    server: str
    vip: IPAddress
    port: int
    protocol: str


@dataclass
class Observation:
    """What the probes saw. ``macs``: node name -> the MAC answering for its
    address (absent: no answer); ``owners``: VIP -> every MAC answering for it;
    ``paths``: (service, server) -> "answered", "refused", "silent" or
    "skipped: why"; ``local``: results of the checks run on this host;
    ``flows``: an ECMP cluster's crafted flows, per service and director."""

    macs: dict[str, str] = field(default_factory=dict)
    owners: dict[IPAddress, tuple[str, ...]] = field(default_factory=dict)
    adverts: tuple[Advert, ...] = ()
    adverts_seen: bool = True  # False: VRRP could not be observed from here (unicast, not a director)
    paths: dict[tuple[str, str], str] = field(default_factory=dict)
    local: tuple[Result, ...] = ()
    skipped_vips: dict[IPAddress, str] = field(default_factory=dict)
    # ECMP: service -> director -> {crafted flow's source port: MAC of the real server that answered}
    flows: dict[str, dict[str, dict[int, str]]] = field(default_factory=dict)
    # the probing interface's networks: an instance on another segment (a two-armed director's inside arm)
    # is not judged by what was seen on this one
    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class Result:
    check: str  # arp, vrrp, path, director
    target: str
    ok: bool
    detail: str
    nodes: tuple[str, ...] = ()  # the nodes at fault

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check:<8} {self.target}: {self.detail}"


@dataclass(frozen=True)
class Audited:
    """A VRRP instance as the audit checks it: its router id, the
    directors' priorities, its VIPs, the directors' addresses in it, the
    interface it runs on, and whether that is its own (a two-armed
    director's inside arm) rather than the directors'."""

    vrid: int
    priorities: dict[str, int]
    vips: tuple[IPAddress, ...]
    addresses: tuple[IPAddress, ...]
    interface: str
    own_interface: bool = False

    @property
    def target(self) -> str:
        return f"vrid {self.vrid}" + (f" on {self.interface}" if self.own_interface else "")

    def here(self, networks: tuple[IPNetwork, ...]) -> bool:
        """Is the instance on the segment the probes ran on (``networks``:
        the probing interface's)? It is where one of its directors'
        addresses is in those networks. None known: every instance is."""
        return not networks or any(a in n for a in self.addresses for n in networks if a.version == n.version)


def instances(cluster: Cluster) -> list[Audited]:
    """Every VRRP instance, the cluster's own first."""
    out = [Audited(cluster.virtual_router_id, {d.name: d.priority for d in cluster.directors}, cluster.own_vips,
                   tuple(d.address for d in cluster.directors), cluster.interface)]
    for i in cluster.instances:
        own = i.interface is not None and any(i.device(d) != d.interface for d in cluster.directors)
        out.append(Audited(i.virtual_router_id, dict(i.priorities), i.vips,
                           tuple(i.address(d) for d in cluster.directors), i.interface or cluster.interface, own))
    return out


def elsewhere(cluster: Cluster, networks: tuple[IPNetwork, ...]) -> dict[IPAddress, str]:
    """VIPs of the instances on another segment than the probes' -> where
    that instance runs: nothing seen from here says anything about them."""
    if cluster.ecmp:
        return {}
    return {v: i.interface for i in instances(cluster) if not i.here(networks) for v in i.vips}


def targets(cluster: Cluster) -> list[Target]:
    """One probe per service and backend: the service's first VIP:port."""
    return [Target(s.name, b.server, s.vip, s.port, s.protocol) for s in cluster.services for b in s.backends]


def evaluate(cluster: Cluster, obs: Observation) -> list[Result]:
    """The audit's verdicts on what was observed, check by check: the
    directors answer for their own addresses, one MASTER per VRRP instance,
    one owner per VIP (the MASTER's MAC), an ECMP cluster's flows, every DR
    path, and what the auditing host found of its own."""
    names = {mac: name for name, mac in obs.macs.items()}
    away = elsewhere(cluster, obs.networks)
    results = _directors(cluster, obs)
    masters: dict[IPAddress, str] = {}  # VIP -> the MASTER's name, as the VRRP check saw it
    results += _vrrp(cluster, obs, names, masters)
    results += _ownership(cluster, obs, names, masters, away)
    if cluster.ecmp:
        results += _flows(cluster, obs, names)
    results += _paths(cluster, obs, away)
    return results + list(obs.local)


def _directors(cluster: Cluster, obs: Observation) -> list[Result]:
    """Each director answers ARP for its own address."""
    results = []
    for d in cluster.directors:
        mac = obs.macs.get(d.name)
        results.append(Result("director", d.name, mac is not None,
                              f"answers ARP for {d.address} ({mac})" if mac else
                              f"no answer for {d.address}: down, or not on this segment", () if mac else (d.name,)))
    return results


def _vrrp(cluster: Cluster, obs: Observation, names: dict[str, str], masters: dict[IPAddress, str]) -> list[Result]:
    """VRRP: one MASTER per instance, with the expected priority and VIPs (an
    ECMP cluster has none); ``masters`` learns each VIP's MASTER."""
    by_address = {d.address: d.name for d in cluster.directors}
    vrrp = [] if cluster.ecmp else instances(cluster)
    for inst in vrrp:  # an instance's own addresses (its adverts come from them)
        by_address.update(zip(inst.addresses, (d.name for d in cluster.directors), strict=True))
    return [_instance(inst, obs, names, by_address, masters) for inst in vrrp]


def _instance(inst: Audited, obs: Observation, names: dict[str, str], by_address: dict[IPAddress, str],
              masters: dict[IPAddress, str]) -> Result:
    vrid, prios, vips, target = inst.vrid, inst.priorities, inst.vips, inst.target
    if not inst.here(obs.networks):
        return Result("vrrp", target, True, f"not checked from here: it runs on {inst.interface}, another segment "
                      "(run the audit there, with --interface)")
    if not obs.adverts_seen:
        return Result("vrrp", target, True, "not observed: unicast adverts reach only the directors (run the audit "
                      "on a director)")
    seen = [a for a in obs.adverts if a.vrid == vrid]
    sources = sorted({a.source for a in seen}, key=addr_key)
    if not sources:
        return Result("vrrp", target, False, "no advertisement: no director is MASTER (silent cluster)",
                      tuple(sorted(prios)))
    if len(sources) > 1:
        named = [_director_of(s, seen, by_address, names, prios) or str(s) for s in sources]
        return Result("vrrp", target, False, f"split brain: {' and '.join(named)} both advertise as MASTER",
                      tuple(named))
    source = sources[0]
    name = _director_of(source, seen, by_address, names, prios)
    last = seen[-1]
    family = inst.addresses[0].version if inst.addresses else 4  # no director: nothing to judge by
    want = set(sorted((v for v in vips if v.version == family), key=addr_key)[:MAX_ADVERTISED[family]])
    problems = []
    if name is None:
        problems.append(f"{source} is not a director of this cluster")
    elif last.priority != prios.get(name):
        problems.append(f"priority {last.priority}, the file says {prios.get(name)} (tracking lowered it?)")
    if set(last.addresses) != want:
        missing = sorted(want - set(last.addresses), key=addr_key)
        unknown = sorted(set(last.addresses) - want, key=addr_key)
        problems.append("VIPs differ from the file" + (f": missing {', '.join(map(str, missing))}" if missing
                                                      else "") + (f"; extra {', '.join(map(str, unknown))}"
                                                                  if unknown else ""))
    if name:
        masters.update(dict.fromkeys(vips, name))
    return Result("vrrp", target, not problems, f"MASTER {name or source}, priority {last.priority}, "
                  f"{len(last.addresses)} VIPs" + (f": {'; '.join(problems)}" if problems else ""),
                  (name or str(source),) if problems else ())


def _ownership(cluster: Cluster, obs: Observation, names: dict[str, str], masters: dict[IPAddress, str],
               away: dict[IPAddress, str]) -> list[Result]:
    """ARP/NDP: each VIP answered by exactly one MAC, the MASTER's (an ECMP cluster's by none)."""
    def who(mac: str) -> str:
        return f"{names.get(mac, 'a host not in the cluster')} ({mac})"

    results = []
    for vip in cluster.vips:
        target = str(vip)
        owners = obs.owners.get(vip, ())
        master = masters.get(vip)
        master_mac = obs.macs.get(master) if master else None
        if vip in away:
            results.append(Result("arp", target, True, f"not checked from here: on {away[vip]}, another segment"))
        elif vip in obs.skipped_vips:
            results.append(Result("arp", target, True, f"not checked: {obs.skipped_vips[vip]}"))
        elif cluster.ecmp:  # every director holds every VIP on lo; the routers reach them by BGP, not ARP
            results.append(Result("arp", target, not owners, "nobody answers (ECMP: the routers route the VIP)"
                                  if not owners else f"{', '.join(who(m) for m in owners)} answer"
                                  f"{'s' if len(owners) == 1 else ''}: ARP suppression is not in force there",
                                  tuple(names.get(m, m) for m in owners)))
        elif not owners:
            results.append(Result("arp", target, False, "nobody answers: the VIP is not up on any director",
                                  (master,) if master else ()))
        elif len(owners) > 1:
            extra = [m for m in owners if m != master_mac]
            results.append(Result("arp", target, False, f"{len(owners)} answer: {', '.join(who(m) for m in owners)}"
                                  f"; {', '.join(who(m) for m in extra)} steal{'s' if len(extra) == 1 else ''} "
                                  "traffic", tuple(names.get(m, m) for m in extra)))
        elif master_mac is not None and owners[0] != master_mac:
            results.append(Result("arp", target, False, f"answered by {who(owners[0])}, not by the MASTER {master}",
                                  (names.get(owners[0], owners[0]),)))
        else:
            results.append(Result("arp", target, True, f"one owner: {who(owners[0])}"))
    return results


def _paths(cluster: Cluster, obs: Observation, away: dict[IPAddress, str]) -> list[Result]:
    """DR paths: every backend accepts the VIP on its port."""
    results = []
    for t in targets(cluster):
        state = obs.paths.get((t.service, t.server), "skipped: not probed")
        if t.vip in away:
            state = f"not checked from here: {t.vip} is on {away[t.vip]}, another segment"
        where = f"{t.service}/{t.server}"
        host = f"[{t.vip}]" if t.vip.version == 6 else str(t.vip)
        if state == "answered":
            results.append(Result("path", where, True, f"{t.protocol} {host}:{t.port} answered at {t.server}"))
        elif state == "refused":
            results.append(Result("path", where, False, f"{t.protocol} {host}:{t.port} refused at {t.server}: it has "
                                  "the VIP but nothing listens on the port", (t.server,)))
        elif state == "silent":
            results.append(Result("path", where, False, f"{t.protocol} {host}:{t.port} got no answer at {t.server}: it "
                                  "does not accept the VIP (not on lo?) or drops it", (t.server,)))
        else:
            results.append(Result("path", where, True, f"{t.protocol} {host}:{t.port}: {state}"))
    return results


def _flows(cluster: Cluster, obs: Observation, names: dict[str, str]) -> list[Result]:
    """ECMP: every director forwards each service's crafted flows, and sends
    each flow to the same real server as every other director (the same mh
    table everywhere, so a flow the routers move keeps its real server)."""
    results: list[Result] = []
    for svc in cluster.services:
        seen = obs.flows.get(svc.name)
        if seen is None:
            continue
        target = f"{svc.name} ({svc.vip}:{svc.port})"
        sent = max((len(p) for p in seen.values()), default=0)
        for d in cluster.directors:
            if d.name not in seen:
                continue  # no MAC for it: the director check says so
            got = len(seen[d.name])
            results.append(Result("flows", f"{target} at {d.name}", got > 0,
                                  f"{got} crafted flows answered through {d.name}" if got else
                                  f"no crafted flow answered through {d.name}: keepalived down, no real server in "
                                  "its IPVS, or the service not there", () if got else (d.name,)))
        picks: dict[int, collections.Counter[str]] = {}
        for by_port in seen.values():
            for port, mac in by_port.items():
                picks.setdefault(port, collections.Counter())[mac] += 1
        # each flow's real server by most directors; where they split evenly, every one of them is named
        majority = {port: top[0][0] for port, c in picks.items()
                    if len(top := c.most_common(2)) == 1 or top[0][1] > top[1][1]}
        odd = {d: sum(1 for port, mac in p.items() if port in majority and mac != majority[port])
               for d, p in seen.items()}
        odd = {d: n for d, n in odd.items() if n}
        ties = [port for port in picks if port not in majority]
        tied = sorted({d for d, p in seen.items() for port in ties if port in p})
        if not sent:
            continue
        faults = [f"{d} sends {n} of {len(seen[d])} flows to another real server than the others"
                  for d, n in sorted(odd.items())]
        if ties:
            faults.append(f"{', '.join(tied)} split evenly over {len(ties)} flows")
        results.append(Result(
            "flows", target, not faults,
            f"every director sends each of {len(picks)} crafted flows to the same real server" if not faults else
            "; ".join(faults) + ": an IPVS table differs (a real server missing, another weight or another order: "
            "`lvsdr doctor` on the director shows it; restarting keepalived there rebuilds it from the file)",
            tuple(sorted(set(odd) | set(tied)))))
    return results


def _director_of(source: IPAddress, seen: list[Advert], by_address: dict[IPAddress, str], names: dict[str, str],
                 prios: dict[str, int]) -> str | None:
    """The director an advert came from: by its address, or (VRRPv3 over IPv6
    comes from a link-local address) by its frame's MAC."""
    mac = next((a.mac for a in seen if a.source == source), "")
    name = names.get(mac)
    return by_address.get(source) or (name if name in prios else None)


def textfile(results: list[Result]) -> str:
    """Prometheus text format for node_exporter's textfile collector."""
    def label(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")

    lines = ["# HELP lvsdr_audit_ok 1 when the check passed, 0 when it found a fault.",
             "# TYPE lvsdr_audit_ok gauge"]
    lines += [f'lvsdr_audit_ok{{check="{label(r.check)}",target="{label(r.target)}"}} {int(r.ok)}' for r in results]
    lines += ["# HELP lvsdr_audit_faults Checks that found a fault.", "# TYPE lvsdr_audit_faults gauge",
              f"lvsdr_audit_faults {sum(not r.ok for r in results)}"]
    return "\n".join(lines) + "\n"
