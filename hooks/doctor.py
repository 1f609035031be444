"""`lvsdr doctor`: check the live node against the cluster file. Read-only.

Each check prints one line, `ok` or `FAIL` (or `warn`), with what to do
about a failure; the exit code is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from lvsdr.generator.model import Cluster


@dataclass
class Report:
    failed: int = 0

    def ok(self, msg: str) -> None:
        print(f"ok    {msg}")

    def warn(self, msg: str) -> None:
        print(f"warn  {msg}")

    def fail(self, msg: str) -> None:
        self.failed += 1
        print(f"FAIL  {msg}")


def _same_netns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def _processes(*match: str) -> list[int]:
    """Processes in this network namespace whose command line contains every ``match``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(m in cmd for m in match) and _same_netns(int(entry)):
            out.append(int(entry))
    return out


def _identity(r: Report, node: str, address: object) -> bool:
    from .facts import read_addresses

    if any(p.split("/", 1)[0] == str(address) for _i, p, _l in read_addresses()):
        r.ok(f"this node has {node}'s address {address}")
        return True
    r.fail(f"this node does not have {node}'s address {address} (wrong --node, or not run on {node}?)")
    return False


def _pending(r: Report, what: str, changes: list[str], fix: str) -> None:
    if not changes:
        r.ok(f"{what}: as the cluster file says")
        return
    r.fail(f"{what}: {len(changes)} changes pending ({fix}):")
    for c in changes:
        print(f"        {c}")


def doctor_director(args: argparse.Namespace, cluster: Cluster, r: Report) -> None:
    from lvsdr.generator.director import director_spec, observed_role, plan_role
    from lvsdr.generator.keepalived import Wiring, render_keepalived

    from .facts import read_director_facts
    from .keepalived import check_text

    spec = director_spec(cluster, args.node)
    if not _identity(r, args.node, spec.address):
        return
    wiring = Wiring.from_cluster(cluster, lvsdr_path=args.lvsdr_path, config_path=args.config_path,
                                 notify_fifo=args.notify_fifo, hook=args.hook)
    text = render_keepalived(cluster, args.node, source=args.cluster, wiring=wiring)
    conf = Path(args.keepalived_conf)
    try:
        live = conf.read_text()
    except OSError as e:
        r.fail(f"{conf}: cannot read ({e.strerror}); install it with `lvsdr render --check -o {conf}`")
    else:
        if live == text:
            r.ok(f"{conf} is what `lvsdr render` gives for {args.node}")
        else:
            r.fail(f"{conf} differs from `lvsdr render` for {args.node} (run lvsdr render, or lvsdr watch)")
    check = check_text(text)
    if check.ok:
        r.ok("keepalived -t accepts the rendered config")
    else:
        r.fail(check.message())
    pids = [p for p in _processes("keepalived") if Path(f"/proc/{p}/comm").read_text().strip() == "keepalived"]
    if pids:
        r.ok(f"keepalived is running in this network namespace (pid {min(pids)})")
    else:
        r.fail("keepalived is not running in this network namespace")
    if wiring.hook in ("fifo", "both"):
        agents = _processes(" agent ", f"--node {args.node}")
        if agents:
            r.ok(f"lvsdr agent is running (pid {min(agents)})")
        else:
            r.fail(f"lvsdr agent is not running (hook {wiring.hook}: start lvsdr-agent@{args.node}.service)")
    facts = read_director_facts(spec.backend, Path(cluster.state_dir))
    role = observed_role(spec, facts.addresses)
    r.ok(f"VRRP role observed: {role} (VIPs {'on' if role == 'MASTER' else 'not on'} {spec.interface})")
    _pending(r, f"{role} role (marks, ARP suppression)", [c.description for c in plan_role(spec, role, facts)],
             "the failover hook would make them; `lvsdr notify` runs it")


def doctor_realserver(args: argparse.Namespace, cluster: Cluster, r: Report) -> None:
    from lvsdr.generator.realserver import desired, plan

    from .facts import read_facts, read_sysctls

    spec = desired(cluster, args.node)
    if not _identity(r, args.node, spec.address):
        return
    facts = read_facts(spec, Path(cluster.state_dir))
    _pending(r, f"ARP suppression ({spec.method})", [c.description for c in plan(spec, facts)],
             f"run lvsdr realserver apply --node {args.node}")
    if spec.method == "sysctl":
        vals = read_sysctls([f"net.ipv4.conf.{d}.{k}" for d in ("all", spec.interface)
                             for k in ("arp_ignore", "arp_announce")])
        r.ok("sysctls: " + ", ".join(f"{k.removeprefix('net.ipv4.conf.')}={v}" for k, v in sorted(vals.items())))
    present = {p.split("/", 1)[0] for _i, p, _l in facts.addresses}
    on_host = [v for v in spec.vips if str(v) in present]
    if spec.method in ("iptables", "firewalld") and on_host:
        r.warn(f"VIPs {', '.join(map(str, on_host))} are on this host, but arp_method {spec.method} serves them "
               "without: something else put them there, and they may answer ARP")


def cmd_doctor(args: argparse.Namespace, cluster: Cluster) -> int:
    r = Report()
    if os.geteuid() != 0:
        r.warn("not root: firewall rules cannot be read, results may be incomplete")
    if cluster.director(args.node) is not None:
        doctor_director(args, cluster, r)
    else:
        doctor_realserver(args, cluster, r)
    print(f"{args.node}: {'all checks passed' if not r.failed else f'{r.failed} checks failed'}")
    return 1 if r.failed else 0
