"""`lvsdr doctor`: check the live node against the cluster file. Read-only.

Each check prints one line, `ok` or `FAIL` (or `warn`), with what to do
about a failure; the exit code is 1 when anything failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lvsdr.defaults import KEEPALIVED_PIDFILE
from lvsdr.errors import LvsdrError
from lvsdr.generator.keepalived import Wiring
from lvsdr.generator.model import Cluster
from lvsdr.source import Source

if TYPE_CHECKING:
    from lvsdr.generator.director import DirectorSpec


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


def _processes(*match: str) -> list[int]:
    from .processes import same_netns

    """Processes in this network namespace whose command line contains every ``match``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(m in cmd for m in match) and same_netns(entry):
            out.append(int(entry))
    return out


def _identity(r: Report, node: str, address: object) -> bool:
    from .facts import has_address, read_addresses

    if has_address(read_addresses(), address):
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


def doctor_director(file: Source, conf: Path, wiring: Wiring, r: Report, bird_socket: str | None = None,
                    pidfile: str = KEEPALIVED_PIDFILE) -> None:
    from lvsdr.generator.director import director_spec, observed_role, plan_role
    from lvsdr.generator.keepalived import render_keepalived

    from .facts import read_director_facts
    from .keepalived import check_text

    cluster, node = file.cluster, file.node
    spec = director_spec(cluster, node)
    if not _identity(r, node, spec.address):
        return
    _families(cluster, r)
    _firewall(cluster, node, r)
    text = render_keepalived(cluster, node, source=file.path, wiring=wiring)
    try:
        live = conf.read_text()
    except OSError as e:
        r.fail(f"{conf}: cannot read ({e.strerror}); install it with `lvsdr render --check -o {conf}`")
    else:
        if live == text:
            r.ok(f"{conf} is what `lvsdr render` gives for {node}")
        else:
            r.fail(f"{conf} differs from `lvsdr render` for {node} (run lvsdr render, or lvsdr watch)")
    check = check_text(text)
    if check.ok:
        r.ok("keepalived -t accepts the rendered config")
    else:
        r.fail(check.message())
    from .processes import pid_from

    try:
        pid = pid_from(pidfile)  # what the agent watches, read the same way
    except LvsdrError as e:
        r.fail(str(e))
        pid = None
    if pid is not None:
        r.ok(f"keepalived is running (pid {pid}, from {pidfile})")
    else:
        r.fail(f"keepalived is not running (no live keepalived of root's in {pidfile})")
    if wiring.hook in ("fifo", "both"):
        agents = _processes(" agent ", f"--node {node}")
        if agents:
            r.ok(f"lvsdr agent is running (pid {min(agents)})")
        else:
            r.fail(f"lvsdr agent is not running (hook {wiring.hook}: start lvsdr-agent@{node}.service)")
        _dr_paths(cluster, node, r)
    if spec.ecmp is not None:
        _ecmp(spec, cluster, [] if pid is None else [pid], r, bird_socket)
        _network(cluster, r)
        return
    if wiring.hook in ("notify", "both"):
        _fast_path(spec, file, r)
    facts = read_director_facts(spec, Path(cluster.state_dir))
    role = observed_role(spec, facts.addresses)
    r.ok(f"VRRP role observed: {role} (VIPs {'on' if role == 'MASTER' else 'not on'} {spec.interface})")
    _pending(r, f"{role} role (marks, ARP suppression)", [c.description for c in plan_role(spec, role, facts)],
             "the failover hook would make them; `lvsdr notify` runs it")
    _network(cluster, r)


def _firewall(cluster: Cluster, node: str, r: Report) -> None:
    """The node's nftables input chains let in what the director needs (generator/firewall.py); firewalld's rules
    are nftables' too."""
    import json

    from lvsdr.generator.firewall import blocked, director_allows

    from .run import TimedOut, run

    try:
        out = run(["nft", "-j", "list", "ruleset"], timeout=10)
        ruleset = json.loads(out.out) if out.code == 0 else None
    except (OSError, TimedOut, ValueError):
        ruleset = None
    if ruleset is None:
        r.warn("the firewall is not read (nft -j list ruleset failed)")
        return
    found = blocked(ruleset, director_allows(cluster, node))
    for line in found:
        r.fail(f"{line}: include `lvsdr render {cluster.config_path} --node {node} --firewall nftables` in it")
    if not found:
        r.ok("the input chains let in what this director needs (VRRP or BGP and BFD, the sync, the VIPs' clients)")


def _families(cluster: Cluster, r: Report) -> None:
    """An address of the director's own in each family its services use."""
    from lvsdr.generator.director import families_without_address

    from .facts import read_addresses

    missing = families_without_address(cluster, read_addresses())
    for version, services in missing:
        r.fail(f"no IPv{version} address of this director's own (not a VIP) for {', '.join(services)}: IPVS "
               f"forwards to their real servers, and keepalived checks them, from one (without, from the VIP, "
               f"which the real servers ignore)")
    if not missing:
        r.ok("an address of this director's own in each family its services use")


def _ecmp(spec: DirectorSpec, cluster: Cluster, pids: list[int], r: Report, socket: str | None) -> None:
    """An ECMP director: BIRD and its sessions, what it announces against what
    keepalived's quorum allows, the node's state, and IPVS's real-server order."""
    from lvsdr.generator.director import plan_ecmp

    from .agent import Quorum
    from .director import drain_marker
    from .facts import read_ecmp_facts

    assert cluster.bgp is not None and spec.ecmp is not None
    _bird(cluster, r, socket or cluster.bgp.bird_socket)
    state_dir = Path(cluster.state_dir)
    drained = drain_marker(state_dir, spec).exists()
    keepalived = bool(pids)
    down = Quorum(state_dir, spec).down(pids)  # the pids the agent keys it by
    want = frozenset() if drained or not keepalived else spec.ecmp.healthy(down)
    facts = read_ecmp_facts(spec, state_dir)
    announced = sorted(str(a.ip) for a in facts.routes)
    why = "drained (`lvsdr drain --undo` to announce again)" if drained else (
        "keepalived is not running" if not keepalived else
        f"virtual servers without quorum: {', '.join(sorted(down))}" if down else "every virtual server has quorum")
    r.ok(f"announced: {', '.join(announced) or 'nothing'} ({why})")
    _pending(r, "ECMP director (VIPs on lo, ARP suppression, IPVS sysctls, announcements)",
             [c.description for c in plan_ecmp(spec, want, facts)], "`lvsdr agent` makes them")
    _ipvs_order(cluster, r)


def _bird(cluster: Cluster, r: Report, socket: str) -> None:
    """BIRD runs here, and its session to each peer is Established."""
    from .processes import pids_of
    from .run import run

    assert cluster.bgp is not None
    if pids_of("bird"):
        r.ok("BIRD is running in this network namespace")
    else:
        r.fail("BIRD is not running in this network namespace (systemctl start bird)")
    try:
        states = bird_sessions(run(["birdc", "-s", socket, "show", "protocols"], timeout=10).out)
    except (OSError, LvsdrError):
        states = {}
    for i, peer in enumerate(cluster.bgp.peers, 1):
        state = states.get(f"peer{i}")
        if state == "Established":
            r.ok(f"BGP session to {peer.name} ({peer.address}): Established")
        else:
            r.fail(f"BGP session to {peer.name} ({peer.address}): {state or 'not known to BIRD'} "
                   f"(birdc -s {socket} show protocols all peer{i})")


def _ipvs_order(cluster: Cluster, r: Report) -> None:
    """IPVS holds each service's real servers in the file's order (every ECMP director's mh table the same)."""
    try:
        order = ipvs_order(Path("/proc/net/ip_vs").read_text())
    except OSError:
        r.warn("no /proc/net/ip_vs: IPVS is not loaded (keepalived loads it)")
        return
    for s in cluster.services:
        if s.fwmark or s.is_group:
            continue
        key = f"{s.protocol.upper()} {s.vip}:{s.port}"
        # keepalived adds them in the file's order, and IPVS lists (and hashes) the newest first
        want_order = [str(b.address) for b in reversed(s.backends)]
        have = order.get(key)
        if have == want_order:
            r.ok(f"IPVS {key}: the real servers in the file's order (every director's mh table the same)")
        else:
            r.fail(f"IPVS {key}: real servers {have or 'none'} (IPVS lists the newest first), the file gives "
                   f"{want_order}; a director with another order hashes flows elsewhere (restart keepalived here to "
                   "rebuild it)")


def bird_sessions(text: str) -> dict[str, str]:
    """`birdc show protocols` -> {protocol name: BGP state} for its BGP protocols."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "BGP":
            out[parts[0]] = parts[-1] if parts[3] == "up" else " ".join(parts[5:]) or parts[3]
    return out


def ipvs_order(text: str) -> dict[str, list[str]]:
    """/proc/net/ip_vs -> {"TCP 192.0.2.150:80": [real server addresses in IPVS's order]} (parsed by ipvs.py)."""
    from lvsdr.generator.ipvs import parse_proc

    return {str(k): [d.address for d in s.dests] for k, s in parse_proc(text).items() if k.protocol != "FWM"}


def _fast_path(spec: DirectorSpec, file: Source, r: Report) -> None:
    """Whether `lvsdr notify` can replay (hooks/fast/replay.py): lvsdr's rules in
    both roles are nft tables, it finds its record from the cluster file read
    by line, and it has recorded each role's state."""
    from lvsdr.fingerprint import code_fingerprint

    from .director import replay_keys
    from .fast import replay

    node = spec.node
    if replay_keys(spec) is None:
        method = spec.backend.method if spec.backend else "?"
        r.ok(f"notify has no fast path with arp_method {method} (its rules are not nft tables): every transition "
             "takes the full path (~100 ms in a notify process; the agent reconciles in its own)")
        return
    verdict = replay.why_not(file.raw, file.path, node, code_fingerprint())
    if verdict.record is None:
        r.warn(f"notify's fast path: {verdict.reason}")
        return
    missing = [role for role in ("BACKUP", "MASTER") if role not in verdict.record.roles]
    if missing:
        r.warn(f"notify's fast path: no record yet of the {' or '.join(missing)} state for this cluster file "
               "(the first transition into it takes the full path, which records it)")
    else:
        r.ok("notify's fast path: both roles' states recorded for this cluster file")


def _network(cluster: Cluster, r: Report) -> None:
    """The audit's checks on the wire (ARP owners, VRRP, DR paths), from here."""
    if os.geteuid() != 0:
        r.warn("not root: the network checks (lvsdr audit's) need raw sockets; skipped")
        return
    from lvsdr.generator.audit import evaluate

    from .audit import probe

    _src, obs = probe(cluster, None, hooks=False)  # doctor checked the hooks itself above
    for result in evaluate(cluster, obs):
        text = f"{result.check} {result.target}: {result.detail}"
        if result.ok:
            r.ok(text)
        else:
            r.fail(text)


def _dr_paths(cluster: Cluster, node: str, r: Report) -> None:
    """The agent's DR-path verdicts and ARP offenders (docs/dr-check.md), from its record."""
    from lvsdr.generator.drpath import dr_record_path

    from .drpath import read_dr_record

    if cluster.dr_check is None:
        r.ok("DR-path checks: off (dr_check = false): keepalived's checks alone")
        return
    try:
        record = read_dr_record(Path(dr_record_path(cluster.state_dir, cluster.name, node)))
    except LvsdrError as e:
        r.fail(str(e))
        return
    if record is None:
        r.warn("DR-path checks: no record of the agent's yet (it writes one after its first rounds)")
        return
    failing = [f"{b} of {s}" for s, b, up in record.paths if not up]
    if failing:
        r.fail(f"DR-path checks: {', '.join(failing)} fail (out of IPVS; the agent's log says why)")
    else:
        r.ok(f"DR-path checks: all {len(record.paths)} backends' paths pass")
    for vip, mac, who in record.offenders:
        r.fail(f"{who} ({mac}) answers ARP for {vip}: it steals the VIP's traffic (its ARP suppression is gone)")


def doctor_realserver(cluster: Cluster, node: str, r: Report) -> None:
    from lvsdr.generator.methods import method_of
    from lvsdr.generator.realserver import desired, plan

    from .facts import read_facts

    spec = desired(cluster, node)
    if not _identity(r, node, spec.address):
        return
    facts = read_facts(spec, Path(cluster.state_dir))
    _pending(r, f"ARP suppression ({spec.method})", [c.description for c in plan(spec, facts)],
             f"run lvsdr realserver apply --node {node}")
    wanted = method_of(spec).sysctls(spec)
    if wanted:
        r.ok("sysctls: " + ", ".join(f"{k.removeprefix('net.ipv4.conf.')}={facts.sysctls.get(k, '?')}"
                                     for k in sorted(wanted)))
    present = {a.address.ip for a in facts.addresses}
    on_host = [v for v in spec.vips if v in present]
    healers = _processes(" realserver watch ", f"--node {node}")
    if healers:
        r.ok(f"lvsdr realserver watch is running (pid {min(healers)}): drift is healed as it happens")
    else:
        r.warn(f"lvsdr realserver watch is not running: drift stays until the next apply (systemctl enable --now "
               f"lvsdr-realserver-watch@{node}.service)")
    if method_of(spec).redirect and on_host:
        r.warn(f"VIPs {', '.join(map(str, on_host))} are on this host, but arp_method {spec.method} serves them "
               "without: something else put them there, and they may answer ARP")


def _writable_by_others(path: str) -> str | None:
    """Why someone but root could change ``path`` (or put another file in its
    place), or None: owner, mode, and the same for each directory above it."""
    import stat

    here = os.path.abspath(path)
    while True:
        try:
            st = os.lstat(here)
        except OSError:
            return None
        if st.st_uid != 0:
            return f"{here} is owned by uid {st.st_uid}, not root"
        sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and here != os.path.abspath(path)
        if st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode) and not sticky:
            return f"{here} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
        if here == "/":
            return None
        here = os.path.dirname(here)


def _security(cluster: Cluster, source: str, wiring: Wiring | None, r: Report) -> None:
    """Who could steer root's hooks: the cluster file, the state directory, the
    FIFO and the records must be writable by root alone (docs/hooks.md, Security)."""
    from .fast.files import UntrustedError, check_dir, open_trusted

    places = [("the cluster file", source), ("the state directory", cluster.state_dir)]
    if wiring is not None and wiring.hook in ("fifo", "both"):
        places.append(("the notify FIFO", wiring.notify_fifo))
    bad = 0
    for what, path in places:
        why = _writable_by_others(path)
        if why:
            bad += 1
            r.warn(f"{what}: {why}; anyone who can write it can make root change this node")
    try:
        check_dir(cluster.state_dir)
        for name in sorted(os.listdir(cluster.state_dir)):
            if not name.endswith((".roles", ".json", ".lock")):
                continue  # the FIFO (checked above), a write in progress
            try:
                os.close(open_trusted(os.path.join(cluster.state_dir, name)))
            except UntrustedError as e:
                bad += 1
                r.warn(f"lvsdr's records: {e} (the hooks ignore it)")
            except OSError:
                pass  # the FIFO, or gone meanwhile
    except UntrustedError as e:
        bad += 1
        r.warn(f"the state directory: {e} (the hooks refuse to run with it)")
    except OSError:
        pass  # no state directory yet: the first hook makes it 0700
    if not bad:
        r.ok("the cluster file, the state directory" + (", the FIFO" if len(places) > 2 else "")
             + " and the records are writable by root alone")


def doctor(file: Source, keepalived_conf: Path, wiring: Wiring, bird_socket: str | None = None,
           pidfile: str = KEEPALIVED_PIDFILE) -> int:
    """Check this node (``file.node``) against the cluster file (read once:
    ``file``): one line per check; exit 1 if any failed."""
    cluster, node, source = file.cluster, file.node, file.path
    r = Report()
    if os.geteuid() != 0:
        r.warn("not root: firewall rules cannot be read, results may be incomplete")
    _security(cluster, source, wiring if cluster.director(node) is not None else None, r)
    if cluster.director(node) is not None:
        doctor_director(file, keepalived_conf, wiring, r, bird_socket, pidfile)
    else:
        doctor_realserver(cluster, node, r)
    print(f"{node}: {'all checks passed' if not r.failed else f'{r.failed} checks failed'}")
    return 1 if r.failed else 0
