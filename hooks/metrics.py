"""`lvsdr metrics`: a director's metrics (generator/metrics.py) read from the
node and written as a Prometheus textfile (node_exporter's textfile
collector) and/or served over HTTP, with prometheus_client. Read-only."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvsdr.generator.drpath import dr_record_path
from lvsdr.generator.drpath import families as dr_families
from lvsdr.generator.metrics import Counters, Family, director_metrics
from lvsdr.generator.node import FactError
from lvsdr.hooks.guard import record_path as guard_record
from lvsdr.hooks.guard import rollbacks
from lvsdr.source import Source

from .drpath import read_dr_record

DEFAULT_INTERVAL = 15.0  # s between textfile writes when serving


def counters_path(state_dir: str, cluster: str, node: str) -> Path:
    return Path(state_dir) / f"agent-{cluster}-{node}.json"


def read_counters(path: Path) -> Counters | None:
    """The agent's record of counts; None when no agent has written one."""
    from .fast.files import read_trusted

    try:
        return Counters.from_json(read_trusted(path, 1 << 20).decode("utf-8", errors="replace"), str(path))
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Config:
    """What the cluster file asks of this director, as keepalived.conf says it
    (each VRRP instance's VIPs, the IPVS table), with where its records are:
    read from one ``Source``, and kept by a resident process until the file
    changes (rendering is most of a scrape's cost: ~2 s of CPU for 1,000
    services)."""

    vips: Any
    table: Any
    leaving: Path
    counters: Path
    drpath: Path
    healer: Path | None = None  # a real server's: `lvsdr realserver watch`'s record (nothing else is read)
    watch: Path | None = None  # a director's `lvsdr watch` record (its guard's rollbacks)
    quorum: Path | None = None  # the agent's record of the virtual servers keepalived reported without quorum
    virtual_servers: tuple[str, ...] = ()  # keepalived's names of them (its FIFO lines)
    ecmp: EcmpView | None = None  # an ECMP director's announcing side


@dataclass(frozen=True)
class EcmpView:
    """What an ECMP director's metrics read besides IPVS: lvsdr's route table, its drain marker, BIRD's sessions."""

    table: int
    vips: tuple[str, ...]
    drain: Path
    bird_socket: str
    peers: tuple[tuple[str, str], ...]  # (name, address)


def config(source: Source, node: str, bird_socket: str | None = None) -> Config:
    """``LvsdrError`` for a bad cluster file or a node that is not a director of it."""
    from lvsdr.generator import ipvs
    from lvsdr.generator.kaconf import read_keepalived
    from lvsdr.generator.keepalived import render_keepalived

    from .reload import leaving_path

    cluster = source.cluster
    if cluster.director(node) is None and cluster.real_server(node) is not None:
        from .heal import heal_record_path

        record = heal_record_path(Path(cluster.state_dir), cluster.name, node)
        return Config(None, None, record, record, record, healer=record)
    cluster.find_director(node)
    rendered = render_keepalived(cluster, node, source.path)
    tree = read_keepalived("keepalived.conf", lambda _p: rendered)
    from lvsdr.generator.director import virtual_server_name

    from .director import drain_path

    ecmp = None
    if cluster.bgp is not None:
        ecmp = EcmpView(cluster.bgp.table, tuple(str(v) for v in cluster.vips),
                        drain_path(cluster.state_dir, cluster.name, node),
                        bird_socket or cluster.bgp.bird_socket,
                        tuple((p.name, str(p.address)) for p in cluster.bgp.peers))
    return Config(ipvs.config_vips(tree), ipvs.config_table(tree), leaving_path(cluster.state_dir, cluster.name, node),
                  counters_path(cluster.state_dir, cluster.name, node),
                  Path(dr_record_path(cluster.state_dir, cluster.name, node)),
                  watch=guard_record(cluster.state_dir, cluster.name, node),
                  quorum=Path(cluster.state_dir) / f"quorum-{cluster.name}-{node}.json",
                  virtual_servers=tuple(virtual_server_name(s) for s in cluster.services), ecmp=ecmp)


def families_of(c: Config) -> list[Family]:
    """Every family: the node read now against ``c`` (``LvsdrError`` for a fact that cannot be read)."""
    from lvsdr.generator import ipvs

    from .facts import held_addresses, read_ipvs
    from .reload import read_leaving

    if c.healer is not None:
        return healer_families(c.healer)
    out = director_metrics(c.vips, held_addresses(), c.table, read_ipvs() or {}, read_leaving(c.leaving),
                           read_counters(c.counters), Path(ipvs.PROC).exists())
    record = read_dr_record(c.drpath)
    out += dr_families(record) if record is not None else []
    out += persistence_families(c)
    out += quorum_families(c)
    if c.ecmp is not None:
        out += ecmp_families(c.ecmp)
    n = rollbacks(c.watch) if c.watch is not None else None
    if n is not None:
        out.append(Family("lvsdr_rollbacks", "counter", "New keepalived.conf files `lvsdr watch` put back because "
                          "they broke the wire within the guard's window.", (((), float(n)),)))
    return out


def quorum_families(c: Config) -> list[Family]:
    """Each virtual server's quorum as keepalived last reported it to the agent (none before the agent has a record:
    keepalived starts every one with quorum and says so only when that changes)."""
    from lvsdr.generator.node import record_json

    from .fast.files import read_trusted

    if c.quorum is None or not c.virtual_servers:
        return []
    try:
        raw = record_json(read_trusted(c.quorum, 1 << 20).decode("utf-8", errors="replace"))
        down = {str(d) for d in raw["down"]}
    except FileNotFoundError:
        down = set()
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        raise FactError(f"{c.quorum}: not the agent's record of quorum (remove it; the agent writes it "
                        "again)") from None
    return [Family("lvsdr_virtual_server_quorum", "gauge", "1 while the virtual server has quorum on this director "
                   "(as keepalived's checker last reported it to the agent), 0 without.",
                   tuple(((("virtual_server", vs),), float(vs not in down)) for vs in c.virtual_servers))]


def ecmp_families(e: EcmpView) -> list[Family]:
    """An ECMP director's: each VIP announced or not (lvsdr's route table, which BIRD exports), drained, and each
    BGP session (BIRD's word; none when BIRD does not answer)."""
    from .facts import read_announced, read_bgp_sessions

    announced = read_announced(e.table)
    out = [Family("lvsdr_ecmp_vip_announced", "gauge", "1 while this director announces the VIP (a route in lvsdr's "
                  "table, which BIRD exports), 0 while it does not (quorum lost, drained, keepalived down).",
                  tuple(((("vip", v),), float(v in announced)) for v in e.vips)),
           Family("lvsdr_ecmp_drained", "gauge", "1 while `lvsdr drain` holds this director out.",
                  (((), float(e.drain.exists())),))]
    states = read_bgp_sessions(e.bird_socket)
    if states is None:
        return out
    out.append(Family("lvsdr_bgp_session_up", "gauge", "1 while BIRD's BGP session to the peer is Established.",
                      tuple(((("peer", name), ("address", addr)), float(states.get(addr) == "Established"))
                            for name, addr in e.peers)))
    return out


def persistence_families(c: Config) -> list[Family]:
    """The persistence templates of each configured real server (none where ipvsadm or IPVS is missing)."""
    from lvsdr.generator.metrics import backend_labels

    from .facts import read_persistent

    templates = read_persistent() if c.table else None
    if templates is None:
        return []
    samples = tuple((backend_labels(key, dest), float(n)) for (key, dest), n in sorted(templates.items())
                    if key in c.table and dest in c.table[key].dests)
    return [Family("lvsdr_backend_persistence_templates", "gauge", "Clients IPVS has pinned to the real server "
                   "(persistence templates): their next connections go there while the template lives, unless it "
                   "is at weight 0 and expire_quiescent_template is on.", samples)]


def healer_families(path: Path) -> list[Family]:
    """A real server's: what `lvsdr realserver watch` did (none before it has written its record)."""
    import math

    from lvsdr.generator.node import record_json

    from .fast.files import read_trusted

    try:
        raw = record_json(read_trusted(path, 1 << 16).decode("utf-8", errors="replace"))
        counts = {k: float(raw[k]) for k in ("passes", "healed", "changes", "failures")}
        if not all(math.isfinite(v) and v >= 0 for v in counts.values()):
            raise ValueError
    except FileNotFoundError:
        return []
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        raise FactError(f"{path}: not `lvsdr realserver watch`'s record (remove it; it writes it again)") from None
    return [Family("lvsdr_realserver_heal_passes", "counter", "Passes of `lvsdr realserver watch` (facts read, "
                   "plan made), at start, on events and on its timer.", (((), counts["passes"]),)),
            Family("lvsdr_realserver_healed", "counter", "Passes that found the node drifted from the cluster "
                   "file and healed it.", (((), counts["healed"]),)),
            Family("lvsdr_realserver_heal_changes", "counter", "Changes applied by those passes.",
                   (((), counts["changes"]),)),
            Family("lvsdr_realserver_heal_failures", "counter", "Passes that failed (logged).",
                   (((), counts["failures"]),))]


class Collector:
    """prometheus_client's side: each scrape (or textfile write) reads the node again."""

    def __init__(self, read: Callable[[], list[Family]], log: Any = None) -> None:
        self.read = read
        self.log = log

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import Metric

        for f in self.read():
            m = Metric(f.name, f.help, f.kind)
            for labels, value in f.samples:
                lab = dict(labels)
                if isinstance(value, tuple):
                    m.add_sample(f.name + "_sum", lab, value[0])
                    m.add_sample(f.name + "_count", lab, float(value[1]))
                else:
                    m.add_sample(f.name + ("_total" if f.kind == "counter" else ""), lab, value)
            yield m


def registry(read: Callable[[], list[Family]]) -> Any:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(read))
    return reg


def exposition(read: Callable[[], list[Family]]) -> str:
    """The exposition text (what the textfile holds) of the families ``read`` gives."""
    from prometheus_client import generate_latest

    return generate_latest(registry(read)).decode()


LOOPBACK = "127.0.0.1"  # --listen PORT: loopback only (a director's every address includes its VIPs)
MIN_AGE = 1.0  # s: scrapes within this of a reading share it (the work is bounded whatever the scrape rate)
REQUEST_TIMEOUT = 5.0  # s a client may take to send its request (one is served at a time)


def parse_listen(value: str) -> tuple[str, int]:
    """``PORT`` (loopback), ``ADDR:PORT`` or ``[V6]:PORT``; ``FactError`` otherwise (the CLI says which flag)."""
    import ipaddress

    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise FactError(f"--listen: {value!r} is not PORT or ADDRESS:PORT")
    if host.startswith("[") != host.endswith("]"):
        raise FactError(f"--listen: {value!r} is not PORT or ADDRESS:PORT")
    host = host.strip("[]") or LOOPBACK
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise FactError(f"--listen: {host!r} is not an IP address (give ADDRESS:PORT)") from None
    return host, number


class Exposition:
    """What a resident `lvsdr metrics` serves: the cluster file followed
    (its config rendered once per change, the last good one kept when a new
    one is refused), the node read at most once per ``MIN_AGE`` seconds
    whatever the scrape rate, and a node that cannot be read said in one log
    line per distinct error, not a traceback per scrape."""

    def __init__(self, source: Source, node: str, log: Any, bird_socket: str | None = None) -> None:
        import threading

        from lvsdr.source import Follower

        self.node, self.log, self.bird_socket = node, log, bird_socket
        self.follower = Follower(source, lambda s: self._take(s), log)
        self.config = config(source, node, bird_socket)
        self.lock = threading.Lock()
        self.at = -MIN_AGE
        self.body: bytes | None = None
        self.error: str | None = None

    def _take(self, source: Source) -> None:
        self.config = config(source, self.node, self.bird_socket)

    def read(self) -> tuple[bytes | None, str | None]:
        """(the exposition, None) or (None, why not)."""
        from lvsdr.errors import LvsdrError

        with self.lock:
            now = time.monotonic()
            if now - self.at < MIN_AGE:
                return self.body, self.error
            self.follower.poll()
            try:
                fams = families_of(self.config)
                self.body, error = exposition(lambda: fams).encode(), None
            except LvsdrError as e:
                self.body, error = None, str(e)
            if error is not None and error != self.error:
                self.log.error("metrics not read", error=error)
            self.error, self.at = error, time.monotonic()
            return self.body, self.error


def _server(listen: str, expo: Exposition) -> Any:
    """An HTTP server on ``listen``, serving one request at a time (GET
    /metrics or /), each client bounded by REQUEST_TIMEOUT."""
    import socket
    from http.server import BaseHTTPRequestHandler, HTTPServer

    addr, port = parse_listen(listen)

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self._send(404, b"not found: lvsdr serves /metrics\n")
                return
            body, error = expo.read()
            if body is None:
                self._send(503, f"lvsdr metrics: {error}\n".encode())
            else:
                self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")

        def _send(self, code: int, body: bytes, kind: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass  # no line per scrape

    class Server(HTTPServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        allow_reuse_address = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            expo.log.warning("metrics request failed", client=str(client_address[0]))

    return Server((addr, port), Handler)


def serve(source: Source, listen: str | None, textfile: Path | None, interval: float,
          bird_socket: str | None = None) -> int:
    """Resident: HTTP on ``listen`` (see ``Exposition``), the textfile
    rewritten every ``interval`` s; a failed read or write is logged in one
    line and retried."""
    from lvsdr.errors import LvsdrError

    from .fast.files import write_output
    from .fast.log import get_logger

    log = get_logger(node=source.node, event_source="metrics")
    expo = Exposition(source, source.node, log, bird_socket)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = None
    if listen is not None:
        server = _server(listen, expo)
        threading.Thread(target=server.serve_forever, name="metrics http", daemon=True).start()
        log.info("serving metrics", address=server.server_address[0], port=server.server_address[1])
    try:
        while not stop.is_set():
            started = time.monotonic()
            if textfile is not None:
                body, error = expo.read()
                try:
                    if body is not None:
                        write_output(textfile, body, 0o644)
                except LvsdrError as e:
                    log.error("metrics not written", textfile=str(textfile), error=str(e))
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0
