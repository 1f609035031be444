"""A director's metrics: the pure families (generator/metrics.py), the agent's
record of counts, the exposition text prometheus_client writes (checked by
promtool when it is installed), and `lvsdr metrics` on a live lab pair,
whose gauges and counters follow a killed MASTER."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lvsdr.cli import main
from lvsdr.generator.ipvs import Dest, Key, Leaving, Live, Service
from lvsdr.generator.metrics import Counters, Family, backend_labels, director_metrics
from lvsdr.generator.node import FactError
from lvsdr.hooks.metrics import Collector

from helpers import EXAMPLES, MEASURED, PREFIX, make_lab, needs_root, poll

HTTP, MARK = Key("TCP", "192.0.2.150", 80), Key("FWM", "", 7)
WEB1, WEB2, WEB3 = Dest("192.0.2.11", 80), Dest("192.0.2.12", 80), Dest("192.0.2.13", 80)


def by_name(families: list[Family]) -> dict[str, dict[tuple[tuple[str, str], ...], object]]:
    return {f.name: dict(f.samples) for f in families}


def test_backend_gauges_say_configured_up_and_leaving() -> None:
    """A real server is up when IPVS has it in service, down when its check took it out or inhibited it to 0,
    leaving (and not up) while it drains; its configured weight is the file's."""
    configured = {HTTP: Service("rr", {WEB1: Live(2), WEB2: Live(1), WEB3: Live(1)})}
    live = {HTTP: Service("rr", {WEB1: Live(2), WEB3: Live(0), Dest("192.0.2.14", 80): Live(0)})}
    gone = Dest("192.0.2.14", 80)
    m = by_name(director_metrics({"VI_a": frozenset({"192.0.2.150"})}, frozenset({"192.0.2.150"}), configured, live,
                                 (Leaving(HTTP, gone, 1.0),), None, True))
    assert m["lvsdr_vrrp_master"] == {(("vrrp_instance", "VI_a"),): 1.0}
    up = {dict(k)["remote_address"]: v for k, v in m["lvsdr_backend_up"].items()}
    assert up == {"192.0.2.11": 1.0, "192.0.2.12": 0.0, "192.0.2.13": 0.0, "192.0.2.14": 0.0}
    assert m["lvsdr_backend_leaving"][backend_labels(HTTP, gone)] == 1.0
    assert m["lvsdr_backend_configured_weight"][backend_labels(HTTP, WEB1)] == 2.0
    assert "lvsdr_reconciles" not in m  # no agent record: no agent families


def test_labels_are_node_exporters() -> None:
    """The backend labels are node_exporter's IPVS collector's, a fwmark service's with local_mark set."""
    assert dict(backend_labels(HTTP, WEB1)) == {"local_address": "192.0.2.150", "local_port": "80", "local_mark": "",
                                                "proto": "TCP", "remote_address": "192.0.2.11", "remote_port": "80"}
    assert dict(backend_labels(MARK, Dest("192.0.2.11", 0)))["local_mark"] == "7"


def test_counters_count_and_round_trip() -> None:
    """The agent's counts add up by path, failures, drift and transitions, and read back as written."""
    c = Counters(started=10.0).reconciled(11.0, fast=False, changes=3)
    c = c.reconciled(12.0, fast=True, changes=2).transition("VI_a", "MASTER", 0.25)
    c = c.reconciled(13.0, fast=False, changes=1, drift=True).reconciled(14.0, fast=False, changes=0, drift=True)
    c = c.failed().transition("VI_a", "MASTER", 0.75).transition("VI_a", "BACKUP", 0.5)
    assert (c.fast, c.full, c.failures, c.drift_healed, c.changes, c.last) == (1, 3, 1, 1, 6, 14.0)
    assert c.transitions == (("VI_a", "BACKUP", 1), ("VI_a", "MASTER", 2))
    assert c.durations == (("VI_a", 1.5, 3),)
    assert Counters.from_json(c.to_json(), "r") == c


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["started", "fast", "full", "failures", "drift_healed", "changes", "last",
                                         "transitions", "durations"]) | st.text(max_size=6), inner, max_size=9),
                    max_leaves=24))
@example(value={"started": 0, "last": 0, "fast": float("inf"), "full": 0, "failures": 0, "drift_healed": 0,
                "changes": 0, "transitions": [], "durations": []})  # int(inf) raises OverflowError
@example(value={"started": float("nan"), "last": 0, "fast": 0, "full": 0, "failures": 0, "drift_healed": 0,
                "changes": 0, "transitions": [], "durations": []})
def test_any_counts_record_is_read_or_refused(value: object) -> None:
    """Whatever JSON the agent's record holds, it is read or refused with a FactError, never a traceback (and what
    is read is finite: no NaN or infinity reaches the exposition)."""
    with contextlib.suppress(FactError):
        c = Counters.from_json(json.dumps(value), "r")
        assert all(math.isfinite(x) for x in (c.started, c.last, *(t for _i, t, _n in c.durations)))


def exposition(families: list[Family]) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(lambda: families))
    return generate_latest(reg).decode()


def test_the_exposition_passes_promtool() -> None:
    """Every family, agent counts included, is valid exposition text that `promtool check metrics` accepts."""
    c = Counters(started=10.0).reconciled(12.0, fast=True, changes=2).transition("VI_a", "MASTER", 0.25)
    configured = {HTTP: Service("rr", {WEB1: Live(1)}), MARK: Service("wlc", {Dest("192.0.2.11", 0): Live(1)})}
    text = exposition(director_metrics({"VI_a": frozenset({"192.0.2.150"})}, frozenset(), configured, configured,
                                       (), c, True))
    assert 'lvsdr_reconciles_total{path="fast"} 1.0' in text
    assert 'lvsdr_vrrp_transition_seconds_count{vrrp_instance="VI_a"} 1.0' in text
    assert 'lvsdr_vrrp_transitions_total{state="MASTER",vrrp_instance="VI_a"} 1.0' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/setup installs it)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def test_the_example_alert_rules_pass_promtool() -> None:
    """examples/prometheus-rules.yml (docs/metrics.md's alert rules) is valid for `promtool check rules`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/setup installs it)")
    r = subprocess.run([promtool, "check", "rules", str(EXAMPLES / "prometheus-rules.yml")], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and "SUCCESS: 16 rules found" in r.stdout, r.stdout + r.stderr


def test_bad_flags_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --listen or --interval is one line naming the flag, exit 2."""
    web = str(EXAMPLES / "web.toml")
    assert main(["metrics", web, "--node", "lb1", "--listen", "nowhere"]) == 2
    assert main(["metrics", web, "--node", "lb1", "--serve", "--interval", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["lvsdr: --listen: 'nowhere' is not PORT or ADDRESS:PORT",
                   "lvsdr: --interval: 0.0 is outside 1..3600 seconds"]


@needs_root
@pytest.mark.lab
def test_the_gauges_follow_a_killed_master(tmp_path: Path) -> None:
    """On a live lab pair with its agents: the MASTER's vrrp_master gauge is 1 and the BACKUP's 0; kill the MASTER
    and the other's gauge flips to 1 and its agent's transition counter counts MASTER."""
    from lvsdr.lab import probes
    from lvsdr.lab.netns import ns_run
    from lvsdr.lab.topology import Lab, Node

    text = (EXAMPLES / "web.toml").read_text()
    path = tmp_path / "web.toml"
    path.write_text(text)

    def metrics(lab: Lab, node: Node) -> str:
        r = ns_run(node.ns, [lab._console(), "metrics", lab.cluster_path, "--node", node.name], check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    with make_lab(path, tmp_path, hook="fifo") as lab:
        master = lab.wait_for_master(30)
        backup = next(d for d in lab.state.directors if d.name != master.name)
        poll(lambda: "lvsdr_reconciles_total" in metrics(lab, backup), "the BACKUP's agent counted", 20)
        assert 'lvsdr_vrrp_master{vrrp_instance="VI_web"} 1.0' in metrics(lab, master)
        assert 'lvsdr_vrrp_master{vrrp_instance="VI_web"} 0.0' in metrics(lab, backup)
        probes.kill_director(lab, master)
        took = poll(lambda: 'lvsdr_vrrp_master{vrrp_instance="VI_web"} 1.0' in metrics(lab, backup),
                    "the BACKUP's gauge flipped", 20)
        counted = poll(lambda: 'lvsdr_vrrp_transitions_total{state="MASTER",vrrp_instance="VI_web"} 1.0'
                       in metrics(lab, backup), "the transition counted", 20)
        MEASURED.append(f"metrics: the BACKUP's lvsdr_vrrp_master flipped to 1 {took:.1f} s after the MASTER's kill "
                        f"(as read by `lvsdr metrics`), its transition counted {counted:.1f} s later")


# -- metrics --listen: loopback by default, bounded work, the last good file kept ----------------------------
def _listening(ns: str, port: int) -> list[str]:
    """The local addresses of the TCP listeners on ``port`` in ``ns`` (from /proc/net/tcp and tcp6, in hex)."""
    out = []
    for table in ("tcp", "tcp6"):
        r = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/proc/net/{table}"], capture_output=True, text=True,
                           check=True)
        for line in r.stdout.splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                out.append(local.rsplit(":", 1)[0])
    return out


def _get(ns: str, url: str) -> tuple[int, str]:
    code = ("import sys, urllib.request, urllib.error\n"
            "try:\n r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n")
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, url], capture_output=True, text=True,
                       check=True, timeout=60)
    status, _, body = r.stdout.partition("\n")
    return int(status), body


@needs_root
def test_listen_serves_loopback_only_keeps_the_last_good_file_and_bounds_its_work(tmp_path: Path) -> None:
    """`metrics --listen PORT` binds 127.0.0.1 only (a director's addresses include its VIPs); a cluster file saved
    broken keeps the last good one (one log line, still 200, no traceback); fifty scrapes at once are served by
    one thread, the node read at most once a second."""
    ns = f"{PREFIX}-metrics"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        path = tmp_path / "web.toml"
        path.write_text((EXAMPLES / "web.toml").read_text())
        log = tmp_path / "metrics.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, "env", "LVSDR_LOG=stderr", sys.executable, "-m",
                                     "lvsdr.cli", "metrics", str(path), "--node", "lb1", "--listen", "9842"],
                                    stdout=out, stderr=subprocess.STDOUT)
        poll(lambda: bool(_listening(ns, 9842)), "metrics listening", 30)
        assert _listening(ns, 9842) == ["0100007F"]  # 127.0.0.1, nothing else
        status, body = _get(ns, "http://127.0.0.1:9842/metrics")
        assert status == 200 and "lvsdr_backend_configured_weight" in body
        path.write_text(path.read_text() + "\n[[services]]\nname = \n")  # saved mid-edit
        time.sleep(1.1)  # past the shared reading's second
        status, again = _get(ns, "http://127.0.0.1:9842/metrics")
        assert status == 200 and "lvsdr_backend_configured_weight" in again
        code = ("import threading, urllib.request\n"
                "ok = []\n"
                "def get():\n ok.append(urllib.request.urlopen('http://127.0.0.1:9842/metrics', timeout=30).status)\n"
                "ts = [threading.Thread(target=get) for _ in range(50)]\n"
                "[t.start() for t in ts]; [t.join() for t in ts]\n"
                "print(ok.count(200))\n")
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=120)
        assert r.stdout.strip() == "50"
        assert _threads(proc.pid) == 2  # the main one (the textfile's) and the one serving HTTP, one scrape at a time
        assert _get(ns, "http://127.0.0.1:9842/other")[0] == 404
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    lines = log.read_text().splitlines()
    assert sum("cluster file rejected" in ln for ln in lines) == 1, lines
    assert not any("Traceback" in ln for ln in lines), lines


def _threads(pid: int) -> int:
    """Threads of the lvsdr process under `ip netns exec` (pid is ip's, which execs it: the same process)."""
    return len(os.listdir(f"/proc/{pid}/task"))


def test_listen_takes_an_address_or_a_port_on_loopback() -> None:
    """--listen PORT is loopback's; ADDRESS:PORT and [V6]:PORT name the address; a name is refused."""
    from lvsdr.hooks.metrics import parse_listen

    assert parse_listen("9842") == ("127.0.0.1", 9842)
    assert parse_listen("0.0.0.0:9842") == ("0.0.0.0", 9842)
    assert parse_listen("[::1]:9842") == ("::1", 9842)
    with pytest.raises(FactError, match="not an IP address"):
        parse_listen("localhost:9842")
