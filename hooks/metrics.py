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

from lvsdr.generator.metrics import Counters, Family, director_metrics
from lvsdr.generator.node import FactError

DEFAULT_INTERVAL = 15.0  # s between textfile writes when serving


@dataclass(frozen=True)
class MetricsTarget:
    cluster: Path
    node: str


def counters_path(state_dir: str, cluster: str, node: str) -> Path:
    return Path(state_dir) / f"agent-{cluster}-{node}.json"


def read_counters(path: Path) -> Counters | None:
    """The agent's record of counts; None when no agent has written one."""
    from .fast.files import read_trusted

    try:
        return Counters.from_json(read_trusted(path, 1 << 20).decode("utf-8", errors="replace"), str(path))
    except FileNotFoundError:
        return None


def families(t: MetricsTarget) -> list[Family]:
    """Every family, read now (``LvsdrError`` for a bad cluster file or fact)."""
    from lvsdr.generator import ipvs
    from lvsdr.generator.kaconf import read_keepalived
    from lvsdr.generator.keepalived import render_keepalived
    from lvsdr.generator.load import load_cluster

    from .facts import held_addresses
    from .reload import leaving_path, read_ipvs, read_leaving

    cluster = load_cluster(t.cluster)
    rendered = render_keepalived(cluster, t.node, str(t.cluster))
    tree = read_keepalived("keepalived.conf", lambda _p: rendered)
    here = held_addresses()
    live_readable = Path(ipvs.PROC).exists()
    return director_metrics(ipvs.config_vips(tree), here, ipvs.config_table(tree), read_ipvs(),
                            read_leaving(leaving_path(cluster.state_dir, cluster.name, t.node)),
                            read_counters(counters_path(cluster.state_dir, cluster.name, t.node)), live_readable)


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


def registry(t: MetricsTarget) -> Any:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(lambda: families(t)))
    return reg


def text(t: MetricsTarget) -> str:
    """The exposition text (what the textfile holds)."""
    from prometheus_client import generate_latest

    return generate_latest(registry(t)).decode()


def write_textfile(t: MetricsTarget, path: Path) -> None:
    """Atomically, 0644 (node_exporter reads it as another user)."""
    from .fast.files import write_output

    write_output(path, text(t), 0o644)


def parse_listen(value: str) -> tuple[str, int]:
    """``PORT``, ``ADDR:PORT`` or ``[V6]:PORT``; ``FactError`` otherwise (the CLI says which flag)."""
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise FactError(f"--listen: {value!r} is not PORT or ADDRESS:PORT")
    return host.strip("[]") or "0.0.0.0", number


def serve(t: MetricsTarget, listen: str | None, textfile: Path | None, interval: float) -> int:
    """Resident: HTTP on ``listen`` (each scrape reads the node), the textfile
    rewritten every ``interval`` s; a failed read is logged and retried."""
    from prometheus_client import start_http_server

    from .fast.log import get_logger

    log = get_logger(node=t.node, event_source="metrics")
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if listen is not None:
        addr, port = parse_listen(listen)
        start_http_server(port, addr, registry(t))
        log.info("serving metrics", address=addr, port=port)
    while not stop.is_set():
        if textfile is not None:
            started = time.monotonic()
            try:
                write_textfile(t, textfile)
            except Exception:  # keep serving: the next round retries
                log.exception("metrics not written", textfile=str(textfile))
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        else:
            stop.wait(interval)
    return 0
