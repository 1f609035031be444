"""A whole DR cluster in network namespaces, built from a cluster file.

One namespace per node (a client, every director, every real server), each
with the interface and addresses the file names, joined by veth pairs to a
bridge that lives in a namespace of its own (the root namespace is never
touched). keepalived really runs in each director namespace; a small HTTP
server on each real server answers with its name.

Where the kernel has no IPVS (``/proc/net/ip_vs`` absent), keepalived runs
VRRP only (``-P``) and the lab's IPVS stand-in (``standin.py``, TEST
SCAFFOLDING, not part of the product) does DR forwarding on the MASTER.

Everything the lab makes is recorded in a state directory as it is made, so
``down()`` removes it all, also after a failed or interrupted ``up()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lvsdr.generator.keepalived import Wiring, render_keepalived
from lvsdr.generator.model import Cluster
from lvsdr.generator.node import host_interface
from lvsdr.generator.schema import decode, parse_text
from lvsdr.inputs import read_regular

from .netns import (
    LabError,
    delete_netns,
    in_ns,
    ip_batch,
    ip_json,
    kill_named,
    list_netns,
    listening,
    require_root,
    require_tools,
    run,
    write_sysctls,
)

IFF_UP = 0x1  # <linux/if.h>

STATE_ROOT = Path("/run/lvsdr-lab")
HAS_IPVS = Path("/proc/net/ip_vs").exists()
# A guest under TCG (software emulation) runs about 6x slower, and starting a
# Python process there costs over a second (natively ~15 ms). scripts/ipvs-vm
# measures that cost in the guest (LVSDR_PROCESS_COST, seconds) and says which
# accelerator it used (LVSDR_VM): deadlines scale with TIME_SCALE, and waits
# that include starting a process allow PROCESS_COST for it.
TIME_SCALE = 6.0 if os.environ.get("LVSDR_VM") == "tcg" else 1.0
PROCESS_COST = float(os.environ.get("LVSDR_PROCESS_COST", "0.015"))
AGENT_INTERVAL = 2.0 * TIME_SCALE  # the lab heals drift faster than the product's 30 s default (a TCG guest: slower)
# product: `lvsdr realserver apply` on each real server; none: VIPs on lo and
# no suppression (shows the ARP problem); skip: nothing (a test applies itself)
SUPPRESSION = ("product", "none", "skip")


@dataclass
class Node:
    name: str
    role: str  # client | director | real_server
    ns: str
    ifname: str
    mac: str
    addresses: list[str]  # with prefix length, e.g. 192.0.2.2/24
    bridge: str = "br0"  # the segment its interface is on
    # a two-armed director's further interfaces: [ifname, mac, bridge, address/prefix...] each
    links: list[list[str]] = field(default_factory=list)


@dataclass
class LabState:
    lab_id: str
    cluster_path: str
    switch_ns: str
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)  # created, in order
    pids: dict[str, int] = field(default_factory=dict)  # root-namespace helpers (the stand-in)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"no lab node {name!r}")

    @property
    def directors(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "director"]

    @property
    def real_servers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "real_server"]

    @property
    def client(self) -> Node:
        return next(n for n in self.nodes if n.role == "client")

    def probe(self, bridge: str) -> Node:
        """The node that looks at segment ``bridge`` from outside the cluster (br0: the client)."""
        return next(n for n in self.nodes if n.role in ("client", "probe") and n.bridge == bridge)


def _mac(index: int) -> str:
    # locally administered, unicast, stable per node index: easy to read in output
    return f"02:1d:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


def _prefix(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return 24 if addr.version == 4 else 64


class Lab:
    """Build, run and tear down the lab for one cluster file."""

    def __init__(self, cluster: Cluster, cluster_path: str | Path, prefix: str = "lvsdr",
                 suppression: str = "product", state_root: Path = STATE_ROOT,
                 log: Any = None, hook: str = "both", held_back: tuple[str, ...] = (),
                 quorum_checker: bool = False) -> None:
        if suppression not in SUPPRESSION:
            raise ValueError(suppression)
        self.cluster = cluster
        self.cluster_path = str(Path(cluster_path).resolve())
        self.lab_id = f"{prefix}-{cluster.name}"
        self.state_dir = state_root / self.lab_id
        self.suppression = suppression
        self.hook = hook  # how keepalived reaches lvsdr's hooks: "fifo" is the agent alone (no process per event)
        # directors in the file whose processes up() does not start: an ECMP director added later (start_director)
        self.held_back = set(held_back)
        # a VRRP lab without IPVS: run the checker's stand-in (lab/checker.py) for its quorum events, which the
        # agents hand the instances over by (an ECMP lab always runs it: it announces by them)
        self.quorum_checker = quorum_checker
        self.log = log or (lambda msg: None)
        self.state = LabState(self.lab_id, self.cluster_path, f"{self.lab_id}--sw")
        self._procs: list[subprocess.Popen[bytes]] = []
        self._owner = False  # True once up() has claimed the lab's names: only then may down() remove

    # -- state ---------------------------------------------------------------
    def _save(self) -> None:
        if not self.state_dir.is_dir():
            self.state_dir.mkdir(parents=True)
            # lvsdr's records, lock and FIFO live here: root's alone, as the hooks require (whatever the umask)
            os.chmod(self.state_dir, 0o700)
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self.state), indent=1))
        tmp.replace(self.state_dir / "state.json")

    @classmethod
    def load_state(cls, state_dir: Path) -> LabState | None:
        try:
            raw = json.loads((state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        nodes = [Node(**n) for n in raw.pop("nodes", [])]
        return LabState(nodes=nodes, **raw)

    # -- plan ----------------------------------------------------------------
    def segments(self) -> dict[str, str]:
        """A two-armed cluster's further segments: instance interface -> its bridge (br1, br2, ...)."""
        own = {d.interface for d in self.cluster.directors}
        names = sorted({i.interface for i in self.cluster.instances if i.interface and i.interface not in own})
        return {name: f"br{k}" for k, name in enumerate(names, 1)}

    def _plan_nodes(self) -> list[Node]:
        c = self.cluster
        segments = self.segments()
        inside = {v for i in c.instances if i.interface in segments for v in i.vips}
        nets: dict[Any, None] = {}
        for a in [d.address for d in c.directors] + [r.address for r in c.real_servers] + list(c.vips):
            if a not in inside:
                nets[ipaddress.ip_interface(f"{a}/{_prefix(a)}").network] = None
        used = {str(d.address) for d in c.directors} | {str(r.address) for r in c.real_servers}
        used |= {str(v) for v in c.vips}
        client_addrs = []
        for net in nets:
            # the highest free host address of each lab network (250 in a /24)
            base = int(net.network_address) + (250 if net.version == 4 else 0xFA)
            for off in range(0, 200):
                cand = ipaddress.ip_address(base - off)
                if str(cand) not in used:
                    client_addrs.append(f"{cand}/{net.prefixlen}")
                    break
        nodes = [Node("client", "client", f"{self.lab_id}--client", "eth0", _mac(1), client_addrs)]
        for i, d in enumerate(c.directors):
            links = []
            for k, (ifname, bridge) in enumerate(segments.items(), 1):
                inst = next(x for x in c.instances if x.interface == ifname)
                a = inst.address(d)
                links.append([ifname, _mac(0x300 + 0x10 * k + i), bridge,
                              *([f"{a}/{_prefix(a)}"] if a != d.address else [])])
            nodes.append(Node(d.name, "director", f"{self.lab_id}-{d.name}", d.interface, _mac(0x10 + i),
                              [f"{d.address}/{_prefix(d.address)}"], links=links))
        for k, (ifname, bridge) in enumerate(segments.items(), 1):
            # a host on each further segment, to see it from there (who answers ARP for its VIP)
            inst = next(x for x in c.instances if x.interface == ifname)
            a = inst.vips[0]
            probe = ipaddress.ip_address(int(ipaddress.ip_interface(f"{a}/{_prefix(a)}").network.network_address)
                                         + 250)
            nodes.append(Node(f"probe-{ifname}", "probe", f"{self.lab_id}--{ifname}", "eth0", _mac(0x400 + k),
                              [f"{probe}/{_prefix(a)}"], bridge=bridge))
        for i, r in enumerate(c.real_servers):
            nodes.append(Node(r.name, "real_server", f"{self.lab_id}-{r.name}", r.interface,
                              _mac(0x100 + i), [f"{r.address}/{_prefix(r.address)}"]))
        for i, p in enumerate(c.bgp.peers if c.bgp else ()):  # an ECMP cluster's routers (lab/ecmp.py)
            nodes.append(Node(p.name, "router", f"{self.lab_id}-{p.name}", "eth0", _mac(0x200 + i),
                              [f"{p.address}/{_prefix(p.address)}"]))
        self.networks = [str(n) for n in nets]
        return nodes

    def namespaces(self) -> list[str]:
        """The namespace names this lab uses (whether or not it is up)."""
        return [self.state.switch_ns] + [n.ns for n in self._plan_nodes()]

    # -- up ------------------------------------------------------------------
    def up(self, wait_master: float = 15.0 * TIME_SCALE) -> LabState:
        require_root()
        require_tools()
        if self.state_dir.exists():
            raise LabError(f"lab {self.lab_id} is already up (state in {self.state_dir}); "
                           f"run `lvsdr lab down` first")
        nodes = self._plan_nodes()
        existing = list_netns()
        for ns in [self.state.switch_ns] + [n.ns for n in nodes]:
            if ns in existing:
                raise LabError(f"network namespace {ns} exists and is not this lab's; "
                               f"remove it (ip netns del {ns}) or rename the cluster")
        self._owner = True
        try:
            self._save()
            self._write_cluster_copy()
            self._build(nodes)
            self._start_real_servers()
            self._start_routers()
            self._start_directors()
            self._start_standin()
            if wait_master and self.cluster.ecmp:
                self.wait_for_next_hops(len(self.running()), wait_master + 15 * TIME_SCALE)
            elif wait_master:
                self._wait_for_settled_master(wait_master)
                if self.suppression != "skip":  # "skip": the real servers hold no VIP until a test applies
                    self.wait_serving(wait_master + 10 * TIME_SCALE)
        except BaseException:
            self.down()
            raise
        return self.state

    def _write_cluster_copy(self) -> None:
        """The lab's own copy of the cluster file (JSON, same shape), with
        ``state_dir`` pointing into the lab, so the hooks and `realserver`
        keep their records there and not in the host's /run/lvsdr."""
        src = Path(self.cluster_path)
        data = parse_text(decode(read_regular(src), str(src)), str(src))  # the product's reader of cluster files
        data.setdefault("cluster", {})["state_dir"] = str(self.state_dir)
        copy = self.state_dir / "cluster.json"
        copy.write_text(json.dumps(data, indent=1))
        # what the lab renders (keepalived.conf's DR-path files among it) reads the copy's state_dir too
        self.cluster = dataclasses.replace(self.cluster, state_dir=str(self.state_dir))
        self.cluster_path = str(copy)
        self.state.cluster_path = str(copy)
        self._save()

    def _build(self, nodes: list[Node]) -> None:
        """The namespaces, the switch's bridges and each node's links: one
        `ip -batch` for the namespaces, one per node, one for the switch's
        ports (a process per command cost the TCG guest twenty seconds a lab)."""
        sw = self.state.switch_ns
        self.log(f"creating switch namespace {sw} with bridge br0")
        namespaces = [sw, *(node.ns for node in nodes)]
        self.state.namespaces.extend(namespaces)  # recorded first: a failed start removes what it made
        self._save()
        ip_batch(None, [f"netns add {ns}" for ns in namespaces], "network namespaces")
        for ns in namespaces:
            # no duplicate address detection in the lab: link-local addresses (VRRPv3's
            # source) are usable at once instead of after a second
            with contextlib.suppress(LabError):  # no IPv6 in this kernel
                write_sysctls(ns, {f"net.ipv6.conf.{scope}.accept_dad": "0" for scope in ("all", "default")})
        ip_batch(sw, ["link set lo up", "link add br0 type bridge", "link set br0 up",
                      *(c for bridge in self.segments().values()
                        for c in (f"link add {bridge} type bridge", f"link set {bridge} up"))], "bridge")
        ports = []
        for i, node in enumerate(nodes):
            self.log(f"creating {node.role.replace('_', ' ')} {node.name}: {node.ns} "
                     f"{node.ifname} {node.mac} {' '.join(node.addresses)}")
            links = [(node.ifname, node.mac, f"p{i}", node.bridge, *node.addresses)]
            links += [(ifname, mac, f"p{i}x{k}", bridge, *addresses)
                      for k, (ifname, mac, bridge, *addresses) in enumerate(node.links, 1)]
            commands = ["link set lo up"]
            for ifname, mac, port, bridge, *addresses in links:
                commands.append(f"link add {ifname} address {mac} type veth peer name {port} netns {sw}")
                commands += [f"addr add {a} dev {ifname}{' nodad' if ':' in a else ''}" for a in addresses]
                commands.append(f"link set {ifname} up")
                ports.append(f"link set {port} master {bridge} up")
            # every lab network is on-link everywhere (one flat L2 segment), so a
            # real server can answer a client directly whatever its subnet
            commands += [f"route replace {net} dev {node.ifname}" for net in self.networks]
            ip_batch(node.ns, commands, "veth")
            self.state.nodes.append(node)
        ip_batch(sw, ports)
        self._save()

    def _spawn(self, ns: str | None, cmd: list[str], log_name: str) -> subprocess.Popen[bytes]:
        full = ["ip", "netns", "exec", ns, *cmd] if ns else cmd
        env = dict(os.environ, LVSDR_LOG="stderr")  # the agent logs into its lab log file
        logf = open(self.state_dir / log_name, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd="/", env=env)
            self._procs.append(proc)
            return proc
        finally:
            logf.close()

    def _apps(self, node: Node) -> list[tuple[str, list[str]]]:
        """(log name, argv) of what a node serves: HTTP on the TCP service ports
        (and its listen_ports), DNS on the UDP ones. Test scaffolding."""
        c = self.cluster
        tls = {k.port or s.port for s in c.services for k in s.checks if k.type == "https"}
        smtp = {k.port or s.port for s in c.services for k in s.checks if k.type == "smtp"}
        tcp = ({p for s in c.services if s.protocol == "tcp" for p in s.all_ports} | tls) - smtp
        tcp |= {b.listen_port for s in c.services for b in s.backends if b.server == node.name and b.listen_port}
        udp = sorted({p for s in c.services if s.protocol == "udp" for p in s.all_ports})
        out = []
        if tcp:
            specs = [f"{p}/tls" if p in tls else str(p) for p in sorted(tcp)]
            cert = ["--cert", str(self._tls_cert())] if tls else []
            # GET /health answers 503 while this file exists (a check with several URLs failing on one)
            health = ["--health-file", str(self.state_dir / f"health-down-{node.name}")]
            out.append((f"httpd-{node.name}.log", [sys.executable, "-m", "lvsdr.lab.httpd", node.name, *specs, *cert,
                                                   *health]))
        if smtp:
            out.append((f"smtpd-{node.name}.log", [sys.executable, "-m", "lvsdr.lab.smtpd", node.name,
                                                   *map(str, sorted(smtp))]))
        v4 = [a.split("/")[0] for a in node.addresses if ":" not in a]
        if udp and v4:
            out.append((f"dnsd-{node.name}.log", [sys.executable, "-m", "lvsdr.lab.dnsd", v4[0], *map(str, udp)]))
        return out

    def _tls_cert(self) -> Path:
        """A throwaway self-signed certificate and key (PEM) for the lab's HTTPS ports."""
        pem = self.state_dir / "lab-tls.pem"
        if not pem.exists():
            key, crt = self.state_dir / "lab-tls.key", self.state_dir / "lab-tls.crt"
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", "/CN=lvsdr-lab", "-days", "2", "-keyout", str(key), "-out", str(crt)],
                timeout=30 * TIME_SCALE)
            pem.write_text(key.read_text() + crt.read_text())
        return pem

    def app_up(self, name: str) -> None:
        """Start the node's applications (again)."""
        node = self.state.node(name)
        for log_name, argv in self._apps(node):
            self._spawn(node.ns, argv, log_name)

    def app_down(self, name: str) -> None:
        """Stop the node's applications (the backend is dead; the host is not)."""
        from .netns import ns_pids

        node = self.state.node(name)
        for pid in ns_pids(node.ns):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if any(app in cmd for app in (b"lvsdr.lab.httpd", b"lvsdr.lab.dnsd", b"lvsdr.lab.smtpd")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _start_real_servers(self) -> None:
        applies: list[subprocess.Popen[str]] = []
        ports = sorted({p for s in self.cluster.services if s.protocol == "tcp" for p in s.all_ports})
        for node in self.state.directors:  # a director that is also a backend serves too
            if self.cluster.services_of(node.name):
                self.app_up(node.name)
        for node in self.state.real_servers:
            self.app_up(node.name)
            if self.suppression == "product":
                self.log(f"real server {node.name}: lvsdr realserver apply")
                applies.append(subprocess.Popen(  # every real server at once; checked below
                    ["ip", "netns", "exec", node.ns, *self.sandboxed("lvsdr-realserver@.service"), self._console(),
                     "realserver", "apply", self.cluster_path, "--node", node.name, "--state-dir", str(self.state_dir)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/"))
            elif self.suppression == "none":
                self.log(f"real server {node.name}: VIPs on lo, NO ARP suppression (showing the problem)")
                for vip in self.cluster.vips:
                    if any(b.server == node.name for s in self.cluster.services for b in s.backends
                           if vip in s.all_vips):
                        run(["ip", "-n", node.ns, "addr", "add", str(host_interface(vip)),
                             "dev", "lo"])
        for proc in applies:
            try:
                out = proc.communicate(timeout=60 * TIME_SCALE)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                out = proc.communicate()[0]
            if proc.returncode != 0:
                raise LabError(f"realserver apply in the lab: exit {proc.returncode}: {out.strip()}")
        for node in self.state.real_servers:
            self._wait_port(node, ports[0] if ports else None)

    def _wait_port(self, node: Node, port: int | None, timeout: float = 10.0 * TIME_SCALE) -> None:
        if port is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port in listening(node.ns, ("tcp", "tcp6")):
                return
            time.sleep(0.05)
        raise LabError(f"HTTP server on {node.name} did not listen on port {port} within {timeout:.0f} s")

    def _start_routers(self) -> None:
        """An ECMP cluster's routers: BIRD with multipath and L4 flow hashing;
        the client reaches the VIPs through the first router."""
        from .ecmp import router_conf

        routers = self.routers()
        for node in routers:
            peer = next(p for p in (self.cluster.bgp.peers if self.cluster.bgp else ()) if p.name == node.name)
            # no ICMP redirects: the client is on the directors' segment, and a redirect
            # would send its later flows straight to the one director that packet's hash
            # picked, past the router and its withdrawals (a real client is routed)
            write_sysctls(node.ns, {"net.ipv4.ip_forward": "1", "net.ipv4.fib_multipath_hash_policy": "1",
                                    "net.ipv6.conf.all.forwarding": "1", "net.ipv6.fib_multipath_hash_policy": "1",
                                    "net.ipv4.conf.all.send_redirects": "0",
                                    f"net.ipv4.conf.{node.ifname}.send_redirects": "0"})
            conf = self.state_dir / f"bird-{node.name}.conf"
            conf.write_text(router_conf(self.cluster, peer, str(self.state_dir / f"bird-{node.name}.log")))
            self.log(f"router {node.name}: BIRD, AS {peer.asn}, multipath{', BFD' if peer.bfd else ''}")
            self._spawn(node.ns, ["bird", "-f", "-c", str(conf), "-s", self.bird_socket(node),
                                  "-P", str(self.state_dir / f"bird-{node.name}.pid")], f"bird-{node.name}.out")
        if routers:
            via = routers[0].addresses[0].split("/")[0]
            client = self.state.client
            write_sysctls(client.ns, {f"net.ipv{v}.conf.{scope}.accept_redirects": "0"
                                      for v in (4, 6) for scope in ("all", client.ifname)})
            ip_batch(client.ns, [f"route replace {host_interface(vip)} via {via}" for vip in self.cluster.vips])

    def bird_socket(self, node: Node) -> str:
        return str(self.state_dir / f"bird-{node.name}.ctl")

    def routers(self) -> list[Node]:
        return [n for n in self.state.nodes if n.role == "router"]

    def next_hops(self, vip: str | None = None) -> list[str]:
        """The first router's next hops for ``vip`` (default: the first VIP)."""
        from .ecmp import next_hops

        return next_hops(self.routers()[0].ns, vip or str(self.cluster.vips[0]))

    def wait_for_next_hops(self, count: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hops = self.next_hops()
            if len(hops) == count:
                return hops
            time.sleep(0.1)
        raise LabError(f"the router did not route the VIP to {count} directors within {timeout:.0f} s "
                       f"(it has {self.next_hops()})\n{self.ecmp_report()}")

    def ecmp_report(self) -> str:
        """What each director's BIRD and agent say (for an error message: the lab's logs go with it)."""
        out = []
        for node in [*self.routers(), *self.state.directors]:
            p = run(["birdc", "-s", self.bird_socket(node), "show", "protocols"], check=False)
            out.append(f"--- {node.name}: birdc show protocols\n{p.stdout.strip()}")
            for log in (f"agent-{node.name}.log", f"keepalived-{node.name}.log", f"bird-{node.name}.out"):
                path = self.state_dir / log
                if path.exists():
                    out.append(f"--- {log}\n{path.read_text()[-1500:]}")
        return "\n".join(out)

    def start_bird(self, node: Node) -> None:
        """BIRD on an ECMP director, with lvsdr's bird.conf for it."""
        from lvsdr.generator.bird import render_bird

        conf = self.state_dir / f"bird-{node.name}.conf"
        conf.write_text(render_bird(self.cluster, node.name, self.cluster_path))
        self._spawn(node.ns, ["bird", "-f", "-c", str(conf), "-s", self.bird_socket(node),
                              "-P", str(self.state_dir / f"bird-{node.name}.pid")], f"bird-{node.name}.out")

    def _start_directors(self) -> None:
        for node in self.running():
            self.start_director(node)

    def running(self) -> list[Node]:
        """The directors whose processes run (all but those held back)."""
        return [d for d in self.state.directors if d.name not in self.held_back]

    def start_director(self, node: Node) -> None:
        """A director's processes, with the keepalived.conf lvsdr renders for it
        (also a held-back director joining later)."""
        self.held_back.discard(node.name)
        conf = self.state_dir / f"keepalived-{node.name}.conf"
        # the product's hooks, both of them: keepalived runs `lvsdr notify`
        # and writes the FIFO that `lvsdr agent` reads
        wiring = Wiring.from_cluster(self.cluster, hook=self.hook, notify_fifo=self.fifo(node),
                                     lvsdr_path=self._console(), config_path=self.cluster_path)
        conf.write_text(render_keepalived(self.cluster, node.name, self.cluster_path, wiring))
        conf.chmod(0o600)
        if self.cluster.ecmp:
            self.log(f"director {node.name}: BIRD, lvsdr agent, "
                     + ("keepalived" if HAS_IPVS else "the lab's checker (no IPVS here: lab/checker.py)"))
            self.start_bird(node)
            self.start_agent(node)
            self.start_keepalived(node)
            return
        self.log(f"director {node.name}: keepalived {'-P (VRRP only) ' if not HAS_IPVS else ''}"
                 f"priority {self.cluster.find_director(node.name).priority}")
        self.start_agent(node)
        self.start_keepalived(node)

    def fifo(self, node: Node) -> str:
        return str(self.state_dir / f"{node.name}.fifo")

    def pidfile(self, node: Node, which: str = "keepalived") -> Path:
        """keepalived's pidfiles in the lab: ``keepalived`` (the parent), ``vrrp``, ``checkers``."""
        return self.state_dir / f"{which}-{node.name}.pid"

    def reap(self) -> None:
        """Collect the lab's children that have died (a killed keepalived left
        unreaped is a zombie whose pid, still in its pidfile, makes a new
        keepalived say "daemon is already running"; systemd reaps on a host)."""
        for proc in self._procs:
            proc.poll()

    def start_keepalived(self, node: Node) -> None:
        """keepalived on a director, with the config the lab (or `lvsdr watch`) wrote."""
        self.reap()
        # keepalived's checker cannot run here (lab/checker.py): its stand-in writes the quorum events
        if (self.cluster.ecmp or self.quorum_checker) and not HAS_IPVS:
            # after the agent has made the FIFO (its writer opens it, as keepalived opens its own)
            deadline = time.monotonic() + 10 * TIME_SCALE
            while not Path(self.fifo(node)).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._spawn(node.ns, [sys.executable, "-m", "lvsdr.lab.checker", self.cluster_path, node.name,
                                  self.fifo(node)], f"checker-{node.name}.log")
            # and keepalived itself, VRRP only (-P, below): with no vrrp_instance it runs its parent
            # process alone, the process of its pidfile that the agent follows
        self._clear_stale_pidfiles(node)
        cmd = ["keepalived", "-n", "-l", "-f", str(self.state_dir / f"keepalived-{node.name}.conf"),
               "-p", str(self.pidfile(node)), "-r", str(self.pidfile(node, "vrrp")),
               "-c", str(self.pidfile(node, "checkers"))]
        if not HAS_IPVS:
            cmd.insert(1, "-P")  # VRRP only: no IPVS in this kernel (see standin.py)
        self._spawn(node.ns, cmd, f"keepalived-{node.name}.log")

    def _clear_stale_pidfiles(self, node: Node) -> None:
        """Remove keepalived's pidfiles whose process is gone or a zombie: the
        children of a keepalived killed whole are orphans that this machine's
        init may reap late, and a new keepalived that finds their pids says
        "daemon is already running" and exits (systemd clears them on a host)."""
        from lvsdr.hooks.processes import parse_stat

        for which in ("keepalived", "vrrp", "checkers"):
            path = self.pidfile(node, which)
            try:
                pid = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                comm, state = parse_stat(Path(f"/proc/{pid}/stat").read_text())
            except OSError:
                comm, state = "", ""
            if comm != "keepalived" or state in ("Z", "X", "x"):
                path.unlink(missing_ok=True)

    def start_agent(self, node: Node) -> None:
        """`lvsdr agent` on a director, on keepalived's FIFO."""
        self.reap()
        self._spawn(node.ns, [*self.sandboxed("lvsdr-agent@.service"), self._console(), "agent", self.cluster_path,
                              "--node", node.name,
                              "--fifo", self.fifo(node), "--pidfile", str(self.pidfile(node)),
                              "--interval", str(AGENT_INTERVAL)], f"agent-{node.name}.log")

    def sandboxed(self, unit: str) -> list[str]:
        """The prefix that runs a command under ``unit``'s sandbox (lab/sandbox.py),
        the unit filled in as `lvsdr render --all` fills it in for this lab's
        cluster (its state directory, its copy of the cluster file)."""
        import dataclasses

        from lvsdr.generator.artifacts import unit as unit_text

        path = self.state_dir / f"sandbox-{unit.replace('@', '')}"
        if not path.exists():
            lab = dataclasses.replace(self.cluster, state_dir=str(self.state_dir), config_path=self.cluster_path,
                                      notify_fifo=str(self.state_dir / "notify.fifo"))
            path.write_text(unit_text(unit, lab))
        return [sys.executable, "-m", "lvsdr.lab.sandbox", str(path), "--"]

    @staticmethod
    def _console() -> str:
        exe = Path(sys.executable).parent / "lvsdr"
        if not exe.exists():
            raise LabError(f"{exe}: the lvsdr console script is not installed next to {sys.executable}")
        return str(exe)

    def _start_standin(self) -> None:
        if HAS_IPVS or self.cluster.ecmp:  # ECMP: the control plane only, natively
            return
        p = self._spawn(None, [sys.executable, "-m", "lvsdr.lab.standin", str(self.state_dir)],
                        "standin.log")
        self.state.pids["standin"] = p.pid
        self._save()

    # -- queries -------------------------------------------------------------
    def master(self) -> Node | None:
        """The director that holds the first VIP now (None while nobody does)."""
        vip = str(self.cluster.vips[0])
        # on the VRRP interface (a director that is also a backend keeps a copy on
        # lo), and only where that interface is up: a dead director killed before
        # keepalived could clean up still has the VIP on its downed link
        holders = [n for n in self.state.directors if _holds(n, vip)]
        return holders[0] if len(holders) == 1 else None

    def _wait_for_settled_master(self, timeout: float) -> Node:
        """The first MASTER, and then, if it is not the director VRRP settles on (the highest priority of the
        first VIP's instance: a lower one may win the start while that one's keepalived is still starting, and is
        preempted a moment later), that one, for a few adverts more (plus preempt_delay); whoever holds the VIP
        after that is returned. The tests read "the MASTER" once the lab is up."""
        first = self.wait_for_master(timeout)
        c = self.cluster
        vip = c.vips[0]
        inst = next((i for i in c.instances if vip in i.vips), None)
        alive = [d for d in c.directors if d.name not in self.held_back]
        if c.nopreempt or not alive:
            return first
        top = max(alive, key=lambda d: inst.priority(d.name) if inst else d.priority)
        if top.name == first.name:
            return first
        deadline = time.monotonic() + ((c.preempt_delay or 0) + 4 * c.advert_int + 2) * TIME_SCALE
        while time.monotonic() < deadline:
            m = self.master()
            if m is not None and m.name == top.name:
                return m
            time.sleep(0.1)
        return self.wait_for_master(timeout)

    def serving_endpoint(self) -> tuple[str, int] | None:
        """(VIP, port) of the first TCP service with a real server of the lab
        at a weight above 0: what ``wait_serving`` connects to."""
        real = {n.name for n in self.state.real_servers} | {d.name for d in self.running()}
        for svc in self.cluster.services:
            if svc.protocol == "tcp" and any(b.server in real and b.weight > 0 for b in svc.backends):
                vip, port = svc.endpoints[0]
                return str(vip), port
        return None

    def wait_serving(self, timeout: float) -> None:
        """Until a TCP connection from the client through the first service's
        VIP is answered: the MASTER holds the VIP, its data plane (IPVS, or the
        stand-in's rule, which follows the VIP a moment later) forwards, and a
        real server answers. The tests read \"the lab is up\" as that."""
        import socket

        where = self.serving_endpoint()
        if where is None:
            return
        vip, port = where

        def connect() -> str:
            try:
                with socket.create_connection((vip, port), timeout=1.0):
                    return ""
            except OSError as e:
                return str(e) or type(e).__name__

        deadline = time.monotonic() + timeout
        why = "not tried"
        while time.monotonic() < deadline:
            why = in_ns(self.state.client.ns, connect, f"connect {vip}:{port}")
            if not why:
                return
            time.sleep(0.1)
        raise LabError(f"nothing answered through {vip}:{port} within {timeout:.0f} s ({why}; "
                       f"see {self.state_dir}/*.log)")

    def wait_for_master(self, timeout: float) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.master()
            if m is not None:
                return m
            time.sleep(0.1)
        raise LabError(f"no director took the VIPs within {timeout:.0f} s "
                       f"(see {self.state_dir}/keepalived-*.log)")

    # -- down ----------------------------------------------------------------
    def down(self) -> None:
        """Remove what this lab made; a no-op for a lab that never came up
        (it must not touch another lab of the same name)."""
        if not self._owner:
            return
        self._owner = False
        for proc in self._procs:  # a session each: gone first, so that none goes on starting into a namespace
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
        down_state(self.state_dir, self.state)
        for proc in self._procs:  # reap what this process started
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
        self._procs.clear()

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


def link_up(node: Node) -> bool:
    links = ip_json(node.ns, "link", "show", "dev", node.ifname)
    return bool(links) and "UP" in links[0].get("flags", [])


def _holds(node: Node, address: str) -> bool:
    """``address`` is on the node's interface and that link is up: one
    netlink dump from a thread in the node's namespace (the lab polls this
    many times a second; an `ip` each cost a fifth of a second in the TCG
    guest)."""

    def read() -> bool:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=node.ifname)
            if not index or not ipr.get_links(index[0])[0]["flags"] & IFF_UP:
                return False
            return any((a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")) == address
                       for a in ipr.get_addr(index=index[0]))

    return in_ns(node.ns, read, f"addresses of {node.ifname}")


def addresses_of(node: Node, ifname: str | None = None) -> set[str]:
    out = set()
    for link in ip_json(node.ns, "addr", "show", *(("dev", ifname) if ifname else ())):
        for a in link.get("addr_info", []):
            out.add(a.get("local", ""))
    return out


def down_state(state_dir: Path, state: LabState | None = None) -> list[str]:
    """Remove everything a lab recorded: helpers, namespaces (and every process
    in them), the state directory. Safe to call twice, and on a partial lab."""
    state = state or Lab.load_state(state_dir)
    removed: list[str] = []
    if state is not None:
        for pid in state.pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        for pid in state.pids.values():
            _reap(pid)
        # a process spawned as the start was interrupted may not be in a namespace yet, nor recorded
        kill_named(str(state_dir), state.namespaces)
        existing = list_netns()
        # nodes first, the switch last
        removed = [ns for ns in reversed(state.namespaces) if ns in existing]
        delete_netns(removed)
    shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        state_dir.parent.rmdir()  # the state root too, once no lab is left in it
    return removed


def _reap(pid: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:  # not our child: poll for existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
