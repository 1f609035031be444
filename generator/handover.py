"""VRRP that follows service health (the pure part; the agent writes the files).

keepalived moves a VRRP instance when a director fails, not when its virtual
servers lose quorum (all their real servers failing *from this director*:
a cut cable to the real servers' side, a firewall rule, a broken route).
keepalived has no option for it (its issue 927). lvsdr closes the gap with
keepalived's own mechanism: each instance of a director tracks a file
(``vrrp_track_file``) that the agent writes from keepalived's quorum events
on the LVS notify FIFO: 1 while a virtual server carrying one of the
instance's VIPs is without quorum here, 0 otherwise. The file's weight is
minus the instance's *handover weight* K:

    K = (highest priority - lowest priority) + 1   over the instance's directors

so a director without quorum ranks below every director with it (the
highest drops to the lowest's priority - 1), and when every director lacks
quorum they all drop by K and the highest stays highest: nothing moves,
nothing flaps. keepalived clamps a priority at 1, so the lower ones may meet
there; that only orders them among themselves (by address, as VRRP does),
never above the highest. The load refuses a lowest priority under 3 (the
highest would drop to 1 and meet the others); `quorum_handover = false`
turns it off. A BACKUP with `nopreempt` does not take over (VRRP's own
rule), and `preempt_delay` delays the take-over, as for any priority
change.

Hysteresis: the agent writes 1 at once when quorum goes, and 0 only after
quorum has held for ``hold`` seconds, so a real server flapping at the edge
of quorum does not move the VIPs back and forth. The hold grows with the
director's rank in the instance (HOLD for the highest priority, twice that
for the next, ...): when quorum returns everywhere at once, the highest
priority is whole first and takes the instance back in one move, where the
other order would move it to the next director and back.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Cluster, instance_name

HOLD = 5.0  # s of quorum before a director's file says 0 again (hysteresis)
PREFIX = "lvsdr_handover_"  # the vrrp_track_file names (the importer knows lvsdr's own by it)


@dataclass(frozen=True)
class HandoverInstance:
    instance: str  # the vrrp_instance name
    track: str  # the vrrp_track_file name
    file: str  # the file this director's agent writes
    weight: int  # K (the file's weight is -K)
    virtual_servers: tuple[str, ...]  # keepalived's names (FIFO lines) of the virtual servers carrying its VIPs
    hold: float = HOLD  # s of quorum before the file says 0 again (by the director's rank in the instance)


@dataclass(frozen=True)
class Handover:
    """The instances of one director that follow its virtual servers' quorum."""

    instances: tuple[HandoverInstance, ...]

    def values(self, down: set[str] | frozenset[str]) -> dict[str, bool]:
        """file -> whether it says 1 (a virtual server of its instance is without quorum, by ``down``)."""
        return {i.file: any(vs in down for vs in i.virtual_servers) for i in self.instances}


def handover_file(state_dir: str, cluster: str, node: str, instance: str) -> str:
    return f"{state_dir}/handover-{cluster}-{node}-{instance}"


def _priorities(cluster: Cluster) -> list[tuple[str, str, dict[str, int], tuple[object, ...]]]:
    """(instance name, vrrp_track_file name, each director's priority, the instance's VIPs) per instance."""
    out: list[tuple[str, str, dict[str, int], tuple[object, ...]]] = [
        (instance_name(cluster), f"{PREFIX}{cluster.name}", {d.name: d.priority for d in cluster.directors},
         tuple(cluster.own_vips))]
    for extra in cluster.instances:
        out.append((instance_name(cluster, extra), f"{PREFIX}{cluster.name}_{extra.name}", dict(extra.priorities),
                    tuple(extra.vips)))
    return out


def weight(priorities: tuple[int, ...]) -> int:
    return max(priorities) - min(priorities) + 1


def room(cluster: Cluster) -> list[str]:
    """Why the priorities leave no room for the hand-over, per instance (empty: they do)."""
    out = []
    for name, _, by_director, _ in _priorities(cluster):
        prios = tuple(by_director.values())
        if len(prios) > 1 and min(prios) < 3:
            out.append(f"{name}: lowest priority {min(prios)} leaves no room to follow quorum (the highest, without "
                       "quorum, drops to the lowest - 1, which must stay above keepalived's floor of 1): raise it to "
                       "3 or more, or set quorum_handover = false")
    return out


def handover(cluster: Cluster, node: str) -> Handover | None:
    """Director ``node``'s instances that follow quorum (None: an ECMP cluster, or `quorum_handover = false`)."""
    if cluster.ecmp or not cluster.quorum_handover:
        return None
    from .director import virtual_server_name

    out = []
    for name, track, by_director, vips in _priorities(cluster):
        carried = set(vips)
        vss = tuple(virtual_server_name(s) for s in cluster.services if carried & set(s.all_vips))
        if vss:
            rank = sorted(by_director.values(), reverse=True).index(by_director[node])
            out.append(HandoverInstance(name, track, handover_file(cluster.state_dir, cluster.name, node, name),
                                        weight(tuple(by_director.values())), vss, HOLD * (1 + rank)))
    return Handover(tuple(out)) if out else None
