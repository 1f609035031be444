"""`lvsdr audit`: the whole cluster checked on the wire, from one host with a
leg in the directors' segment. Read-only. One line per check (``--json`` for
monitoring, ``--textfile`` for node_exporter); exit 1 when a fault is found.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from lvsdr.errors import InputError
from lvsdr.generator.audit import Result, evaluate, textfile
from lvsdr.generator.model import Cluster, IPAddress
from lvsdr.generator.node import NodeAddress

if TYPE_CHECKING:
    from lvsdr.generator.audit import Observation

    from .wire import Source

LISTEN_ADVERTS = 2  # advert intervals to listen for VRRP: a MASTER sends one per interval, so 2 or more are seen


def choose_interface(cluster: Cluster, addresses: tuple[NodeAddress, ...], ifname: str | None) -> Source:
    """The interface in the directors' segment (the one holding an address in
    the first director's network, or ``ifname``) and our address of each family there."""
    from .wire import Source

    first = cluster.directors[0].address
    if ifname is None:
        ifname = next((a.ifname for a in addresses if a.ifname != "lo" and first in a.address.network), None)
        if ifname is None:
            raise InputError(f"--interface: no interface here is in the directors' segment (none holds an address "
                             f"in the network of {first}); name one")
    mine = [a.address for a in addresses if a.ifname == ifname]
    if not mine:
        raise InputError(f"--interface: {ifname} has no address here")
    v4 = next((ipaddress.IPv4Address(int(a.ip)) for a in mine if a.version == 4), None)
    v6s = [ipaddress.IPv6Address(int(a.ip)) for a in mine if a.version == 6]
    v6 = next((a for a in v6s if not a.is_link_local), v6s[0] if v6s else None)
    return Source(ifname, v4, v6)


def local_results(cluster: Cluster, node: str) -> tuple[Result, ...]:
    """On a director: its hooks' state matches its role (the facts doctor reads)."""
    from lvsdr.generator.director import director_spec, observed_role, plan_role

    from .facts import read_director_facts

    spec = director_spec(cluster, node)
    facts = read_director_facts(spec, Path(cluster.state_dir))
    role = observed_role(spec, facts.addresses)
    pending = [c.description for c in plan_role(spec, role, facts)]
    if not pending:
        return (Result("director", f"{node} hooks", True, f"{role}: marks and ARP suppression as the role needs"),)
    return (Result("director", f"{node} hooks", False, f"{role}, but {len(pending)} changes pending: "
                   + "; ".join(pending) + " (the failover hook did not run: is lvsdr-agent running?)", (node,)),)


def probe(cluster: Cluster, ifname: str | None, hooks: bool = True) -> tuple[Source, Observation]:
    """Run the probes from this host (audit's, and doctor's on a director);
    on a director, with its hooks' results too unless ``hooks`` is False."""
    from .facts import read_addresses
    from .wire import run_probes

    addresses = read_addresses()
    src = choose_interface(cluster, addresses, ifname)
    local: set[IPAddress] = {a.address.ip for a in addresses if a.ifname == src.ifname}
    held = {a.address.ip for a in addresses}
    director = next((d.name for d in cluster.directors if d.address in held), None)
    listen = LISTEN_ADVERTS * float(cluster.advert_int) + 0.3
    obs = run_probes(cluster, src, local, director is not None, listen)
    obs.networks = tuple(a.address.network for a in addresses if a.ifname == src.ifname)
    if director is not None and hooks:
        obs.local = local_results(cluster, director)
    return src, obs


def audit(cluster: Cluster, ifname: str | None, as_json: bool, textfile_path: str | None) -> int:
    started = time.monotonic()
    src, obs = probe(cluster, ifname)
    results = evaluate(cluster, obs)
    took = time.monotonic() - started
    faults = sum(not r.ok for r in results)
    if as_json:
        me = src.v4 or src.v6
        print(json.dumps({"cluster": cluster.name, "from": str(me), "interface": src.ifname, "seconds": round(took, 2),
                          "faults": faults, "checks": [asdict(r) for r in results]}, indent=1))
    else:
        for r in results:
            print(r.line())
        print(f"{cluster.name}: {'no fault' if not faults else f'{faults} faults'} "
              f"(from {src.v4 or src.v6} on {src.ifname}, {took:.1f} s)")
    if textfile_path:
        from .fast.files import write_output

        write_output(Path(textfile_path), textfile(results), 0o644)
    return 1 if faults else 0
