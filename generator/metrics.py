"""A director's metrics (pure): facts in, metric families out; hooks/metrics.py
reads the facts and hands the families to prometheus_client.

Names and labels sit beside node_exporter's IPVS collector without repeating
it: node_exporter exports each real server's live weight and connections
(``node_ipvs_backend_weight``, ``node_ipvs_backend_connections_active`` and
``_inactive``); lvsdr exports what only it knows (the weight the cluster file
asks for, whether the real server is in service, whether it is leaving) with
node_exporter's labels (``local_address``, ``local_port``, ``local_mark``,
``proto``, ``remote_address``, ``remote_port``), so that one PromQL ``on(...)``
joins them. The agent's own counts come from its record (``Counters``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .ipvs import Dest, Key, Leaving, Service
from .node import FactError, record_json

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Counters:
    """The agent's counts since it started: its record on the node
    (``STATE_DIR/agent-CLUSTER-NODE.json``), rewritten after each reconcile."""

    started: float = 0.0  # unix time the agent started
    fast: int = 0  # VRRP transitions reconciled by the fast path (a replay of the recorded state)
    full: int = 0  # full reconciles (read the node, plan, apply)
    failures: int = 0  # reconciles that raised
    drift_healed: int = 0  # interval reconciles that found the node drifted and changed it back
    changes: int = 0  # changes applied, all reconciles
    last: float = 0.0  # unix time of the last reconcile that succeeded
    transitions: tuple[tuple[str, str, int], ...] = ()  # (instance, state keepalived reported, count)
    durations: tuple[tuple[str, float, int], ...] = ()  # (instance, seconds summed, transitions timed)

    def reconciled(self, now: float, fast: bool, changes: int, drift: bool = False) -> Counters:
        return replace(self, fast=self.fast + fast, full=self.full + (not fast), changes=self.changes + changes,
                       drift_healed=self.drift_healed + (drift and changes > 0), last=now)

    def failed(self) -> Counters:
        return replace(self, failures=self.failures + 1)

    def transition(self, instance: str, state: str, seconds: float) -> Counters:
        """One VRRP transition of ``instance`` into ``state``, reconciled in ``seconds``."""
        counts = {(i, s): n for i, s, n in self.transitions}
        counts[(instance, state)] = counts.get((instance, state), 0) + 1
        sums = {i: (t, n) for i, t, n in self.durations}
        t, n = sums.get(instance, (0.0, 0))
        sums[instance] = (t + seconds, n + 1)
        return replace(self, transitions=tuple(sorted((i, s, n) for (i, s), n in counts.items())),
                       durations=tuple(sorted((i, t, n) for i, (t, n) in sums.items())))

    def to_json(self) -> str:
        return json.dumps({"started": self.started, "fast": self.fast, "full": self.full, "failures": self.failures,
                           "drift_healed": self.drift_healed, "changes": self.changes, "last": self.last,
                           "transitions": [list(t) for t in self.transitions],
                           "durations": [list(d) for d in self.durations]}) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Counters:
        """The record's JSON; ``FactError`` naming ``where`` for anything lvsdr did not write."""
        try:
            raw = record_json(text)
            ints = {k: int(raw[k]) for k in ("fast", "full", "failures", "drift_healed", "changes")}
            if any(v < 0 for v in ints.values()):
                raise ValueError
            out = cls(started=float(raw["started"]), last=float(raw["last"]), **ints,
                      transitions=tuple((str(i), str(s), int(n)) for i, s, n in raw["transitions"]),
                      durations=tuple((str(i), float(t), int(n)) for i, t, n in raw["durations"]))
            if not all(math.isfinite(x) for x in (out.started, out.last, *(t for _i, t, _n in out.durations))):
                raise ValueError
            return out
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):  # int(inf): OverflowError
            raise FactError(f"{where}: not the agent's record of counts (remove it; the agent writes it again)") \
                from None


@dataclass(frozen=True)
class Family:
    """One metric: its name, type ("gauge", "counter", "summary"), help, and
    samples (labels, value; a summary's value is (sum, count))."""

    name: str
    kind: str
    help: str
    samples: tuple[tuple[Labels, float | tuple[float, int]], ...]


def backend_labels(key: Key, dest: Dest) -> Labels:
    """node_exporter's IPVS collector's labels for a real server of a virtual service."""
    fwm = key.protocol == "FWM"
    return (("local_address", "" if fwm else key.address), ("local_port", "0" if fwm else str(key.port)),
            ("local_mark", str(key.port) if fwm else ""), ("proto", key.protocol),
            ("remote_address", dest.address), ("remote_port", str(dest.port)))


def director_metrics(instances: Mapping[str, frozenset[str]], here: frozenset[str], configured: Mapping[Key, Service],
                     live: Mapping[Key, Service], leaving: Iterable[Leaving], counters: Counters | None,
                     ipvs_loaded: bool) -> list[Family]:
    """Every family of a director. ``instances``: each VRRP instance's VIPs
    (none in an ECMP cluster); ``here``: the addresses on the VRRP interface;
    ``configured``: the table the cluster file asks for; ``live``: the kernel's."""
    out = [Family("lvsdr_vrrp_master", "gauge", "1 when this director holds the instance's VIPs (MASTER), else 0.",
                  tuple(((("vrrp_instance", name),), float(bool(vips & here)))
                        for name, vips in sorted(instances.items())))]
    left = {(lv.key, lv.dest) for lv in leaving}
    weights, up, leave = [], [], []
    for key in sorted(configured.keys() | {k for k, _d in left}):
        want = configured.get(key)
        have = live.get(key)
        dests = set(want.dests if want else ()) | {d for k, d in left if k == key}
        for d in sorted(dests):
            labels = backend_labels(key, d)
            w = want.dests[d].weight if want is not None and d in want.dests else 0
            now = have.dests.get(d) if have is not None else None
            weights.append((labels, float(w)))
            up.append((labels, float(now is not None and (now.weight > 0 or w == 0) and (key, d) not in left)))
            leave.append((labels, float((key, d) in left)))
    out += [
        Family("lvsdr_backend_configured_weight", "gauge", "The weight the cluster file gives the real server "
               "(compare node_ipvs_backend_weight, the live one).", tuple(weights)),
        Family("lvsdr_backend_up", "gauge", "1 when the real server is in IPVS in service (present, and at a "
               "weight above 0 unless the file gives 0), else 0 (its check failed, or it is leaving).", tuple(up)),
        Family("lvsdr_backend_leaving", "gauge", "1 while a real server removed from the cluster file stays at "
               "weight 0 until its connections end.", tuple(leave)),
        Family("lvsdr_ipvs_loaded", "gauge", "1 when the kernel's IPVS table is readable (ip_vs loaded).",
               (((), float(ipvs_loaded)),)),
    ]
    if counters is None:
        return out
    c = counters
    out += [
        Family("lvsdr_agent_start_time_seconds", "gauge", "When the agent started (unix time).", (((), c.started),)),
        Family("lvsdr_agent_last_reconcile_timestamp_seconds", "gauge", "When the agent last reconciled the node "
               "without error (unix time).", (((), c.last),)),
        Family("lvsdr_reconciles", "counter", "Reconciles by the agent, by path: fast (a replay of the recorded "
               "state of the role) or full (read the node, plan, apply).",
               (((("path", "fast"),), float(c.fast)), ((("path", "full"),), float(c.full)))),
        Family("lvsdr_reconcile_failures", "counter", "Reconciles that failed (logged with their traceback).",
               (((), float(c.failures)),)),
        Family("lvsdr_drift_healed", "counter", "Interval reconciles that found the node drifted from its role "
               "and changed it back.", (((), float(c.drift_healed)),)),
        Family("lvsdr_changes_applied", "counter", "Changes applied to the node by the agent's reconciles.",
               (((), float(c.changes)),)),
        Family("lvsdr_vrrp_transitions", "counter", "VRRP transitions keepalived reported, by VRRP instance and state.",
               tuple(((("vrrp_instance", i), ("state", s)), float(n)) for i, s, n in c.transitions)),
        Family("lvsdr_vrrp_transition_seconds", "summary", "Time from keepalived's event to the node reconciled "
               "to it, by VRRP instance.", tuple(((("vrrp_instance", i),), (t, n)) for i, t, n in c.durations)),
    ]
    return out
