"""keepalived's own checkers on real IPVS: each check type (tcp, http,
https, dns, misc, udp, ping, smtp, file, and http with several URLs failing
on one) takes a dead backend out of the IPVS table and puts it back within
the bound its settings imply, traffic keeps flowing meanwhile; the sorry server takes over
when every backend is down (a host, or the director itself at 127.0.0.1);
a persistent service keeps one client on one
backend."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import PROCESS_COST, TIME_SCALE, Lab, Node

from helpers import MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
HERE = Path(__file__).parent
MISC_DIR = Path("/run/lvsdr-ipvs-test")  # root-owned, as keepalived's script security wants
MISC_DOWN = MISC_DIR / "down"
WEB1, WEB2, SORRY = "192.0.2.11", "192.0.2.12", "192.0.2.13"
SERVICES = {"tcp": "TCP 192.0.2.110:80", "http": "TCP 192.0.2.111:80", "https": "TCP 192.0.2.116:443",
            "dns": "UDP 192.0.2.112:53", "misc": "TCP 192.0.2.113:80", "udp": "UDP 192.0.2.119:53",
            "ping": "TCP 192.0.2.120:80", "smtp": "TCP 192.0.2.121:25", "file": "TCP 192.0.2.122:80",
            "urls": "TCP 192.0.2.123:80"}
FILES = {name: MISC_DIR / f"file-{name}" for name in ("web1", "web2")}  # the file check's, on the directors
# delay_loop 2, connect_timeout 1, retry 1, delay_before_retry 1 (checks.toml)
OUT_BOUND = 2 + (1 + 1) * 1 + 1 * 1  # the next check, plus every try and every wait between tries
IN_BOUND = 2 + 1  # the next check succeeds
# plus the granularity of these measurements: each reads the IPVS table with a
# process, which in a TCG guest costs a good part of PROCESS_COST; and a TCG
# guest running 14 services' checkers (keepalived's one checker process) and
# the lab's Python servers runs a check up to ~2 s late (measured: 6.1 s for a
# 3 s bound once in eight runs of 16 checks)
SLACK = 1.5 + PROCESS_COST * 1.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    MISC_DIR.mkdir(mode=0o755, exist_ok=True)
    script = MISC_DIR / "misc-check"
    script.write_text(f"#!/bin/sh\n# lvsdr's IPVS tier: fails while {MISC_DOWN} exists\n[ ! -e {MISC_DOWN} ]\n")
    script.chmod(0o755)
    for f in FILES.values():
        f.write_text("0\n")
    try:
        with make_lab(HERE / "checks.toml", tmp_path_factory.mktemp("checks"), hook="fifo") as lab:
            for d in lab.state.directors:  # for the local sorry server (127.0.0.1)
                lab.app_up(d.name)
            yield lab
    finally:
        MISC_DOWN.unlink(missing_ok=True)
        for f in FILES.values():
            f.unlink(missing_ok=True)
        script.unlink()
        MISC_DIR.rmdir()


def serving(lab: Lab, name: str) -> bool:
    """Are the node's HTTP(S), DNS and SMTP servers listening? (In a TCG guest a Python server takes over a second
    of CPU to start: a bound measured while one still starts would measure that.)"""
    return {80, 443, 53, 25} <= probes.listening(lab.state.node(name))


_MASTER: dict[str, Node] = {}


def master_of(lab: Lab) -> Node | None:
    """The MASTER, found once (nothing fails over in this module): polled ten times a second, finding it again each
    time (four `ip` processes then) loaded a TCG guest enough to delay the very checks measured."""
    if lab.lab_id not in _MASTER:
        found = lab.master()
        if found is None:
            return None
        _MASTER[lab.lab_id] = found
    return _MASTER[lab.lab_id]


def reals(lab: Lab, service: str) -> set[str]:
    master = master_of(lab)
    return set(probes.ipvs_table(lab, master).get(service, {})) if master else set()


def wait_all(lab: Lab, targets: dict[str, tuple[str, set[str]]], what: str, timeout: float) -> dict[str, float]:
    """Seconds until each service's IPVS backends are ``want``, all polled at once
    (one table read per round), so no service's time includes another's wait."""
    t0 = time.monotonic()
    done: dict[str, float] = {}
    while len(done) < len(targets):
        master = master_of(lab)
        table = probes.ipvs_table(lab, master) if master else {}
        now = time.monotonic() - t0
        for name, (service, want) in targets.items():
            if name not in done and set(table.get(service, {})) == want:
                done[name] = now
        if now > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s: {sorted(set(targets) - set(done))} "
                                 f"({ {n: sorted(table.get(s, {})) for n, (s, _w) in targets.items()} })")
        time.sleep(0.1)
    return done


def wait_reals(lab: Lab, service: str, want: set[str], what: str, timeout: float) -> float:
    return poll(lambda: reals(lab, service) == want, what, timeout, interval=0.2,
                explain=lambda: f"{service}: {sorted(reals(lab, service))}")


def test_all_backends_up(lab: Lab) -> None:
    """With every backend healthy, each check type's service has all its backends in the IPVS table."""
    for name, service in SERVICES.items():
        wait_reals(lab, service, {WEB1, WEB2}, f"{name}: both backends checked in", 30 * TIME_SCALE)
    assert reals(lab, "TCP 192.0.2.114:80") == {WEB1}  # the sorry server waits
    wait_reals(lab, "TCP 192.0.2.117:80", {WEB1, WEB2}, "quorum: both backends", 30 * TIME_SCALE)
    assert {probes.http_get(lab, "192.0.2.110", timeout=5) for _ in range(4)} == {"web1", "web2"}
    assert set(probes.dns_answers(lab, "192.0.2.112", count=4, timeout=3)) == {WEB1, WEB2}
    assert {probes.http_get(lab, "192.0.2.116", 443, timeout=5, tls=True) for _ in range(4)} == {"web1", "web2"}


def test_dead_backend_goes_out_and_comes_back(lab: Lab) -> None:
    """web1's applications die (the host stays): tcp, http, https, dns, udp and smtp checks take
    it out within the bound, the sorry server takes the sorry service, and the
    clients that keep coming are all served by web2 once it is out."""
    checked = ("tcp", "http", "https", "dns", "udp", "smtp")
    lab.app_down("web1")
    out = wait_all(lab, {n: (SERVICES[n], {WEB2}) for n in checked}, "web1 out", (OUT_BOUND + SLACK) * TIME_SCALE + 5)
    wait_reals(lab, "TCP 192.0.2.114:80", {SORRY}, "sorry server in", (OUT_BOUND + SLACK) * TIME_SCALE + 5)
    # quorum 2 with one backend of weight 1 left: the sorry server takes the service
    poll(lambda: SORRY in reals(lab, "TCP 192.0.2.117:80") and WEB1 not in reals(lab, "TCP 192.0.2.117:80"),
         "quorum lost: sorry server in", (OUT_BOUND + SLACK) * TIME_SCALE + 5, interval=0.2,
         explain=lambda: str(reals(lab, "TCP 192.0.2.117:80")))
    quorum_during = sorted(reals(lab, "TCP 192.0.2.117:80"))
    during = [probes.http_get(lab, "192.0.2.110", timeout=3) for _ in range(6)]
    dns = probes.dns_answers(lab, "192.0.2.112", count=4, timeout=3)
    sorry = [probes.http_get(lab, "192.0.2.114", timeout=3) for _ in range(3)]
    wait_reals(lab, "TCP 192.0.2.118:80", {"127.0.0.1"}, "local sorry server in", (OUT_BOUND + SLACK) * TIME_SCALE + 5)
    master = lab.master()
    local = [probes.http_get(lab, "192.0.2.118", timeout=3) for _ in range(3)]
    lab.app_up("web1")
    poll(lambda: serving(lab, "web1"), "web1's servers listening again", 30 * TIME_SCALE, interval=0.2)
    # the checks' bound starts when the servers are back
    back = wait_all(lab, {n: (SERVICES[n], {WEB1, WEB2}) for n in checked}, "web1 back",
                    (IN_BOUND + SLACK) * TIME_SCALE + 5)
    wait_reals(lab, "TCP 192.0.2.114:80", {WEB1}, "sorry server out", (IN_BOUND + SLACK) * TIME_SCALE + 5)
    wait_reals(lab, "TCP 192.0.2.117:80", {WEB1, WEB2}, "quorum back: sorry server out",
               (IN_BOUND + SLACK) * TIME_SCALE + 5)
    MEASURED.append(f"IPVS quorum 2 of 2, one backend dead: IPVS had {quorum_during} (the sorry server is {SORRY})")
    after = probes.http_get(lab, "192.0.2.114", timeout=3)
    for name in out:
        MEASURED.append(f"IPVS {name} check: web1 out {out[name]:.1f} s after its servers died (bound {OUT_BOUND} s"
                        f" + {SLACK:.1f} s slack), back {back[name]:.1f} s after they listened again (bound "
                        f"{IN_BOUND} s + {SLACK:.1f} s slack: the measurement's own granularity in this guest)")
    assert during == ["web2"] * 6 and dns == [WEB2] * 4
    MEASURED.append(f"IPVS local sorry server 127.0.0.1, web1 out: 3 requests answered by {local}")
    assert sorry == ["sorry"] * 3 and after == "web1"
    assert master is not None and local == [master.name] * 3
    for name in out:  # the bounds from the settings
        assert out[name] <= OUT_BOUND + SLACK, (name, out[name], SLACK)
        assert back[name] <= IN_BOUND + SLACK, (name, back[name], SLACK)


def test_misc_check_takes_backends_out_and_back(lab: Lab) -> None:
    """A failing MISC_CHECK script takes its backends out of IPVS and a passing one puts them back, within the
    bound of its settings."""
    t0 = time.monotonic()
    MISC_DOWN.touch()
    wait_reals(lab, SERVICES["misc"], set(), "misc: backends out", (OUT_BOUND + SLACK) * TIME_SCALE + 5)
    took = time.monotonic() - t0
    os.unlink(MISC_DOWN)
    t1 = time.monotonic()
    wait_reals(lab, SERVICES["misc"], {WEB1, WEB2}, "misc: backends back", (IN_BOUND + SLACK) * TIME_SCALE + 5)
    MEASURED.append(f"IPVS misc check: out after {took:.1f} s, back after {time.monotonic() - t1:.1f} s")
    assert took <= OUT_BOUND + 2 + SLACK + PROCESS_COST  # misc_timeout 2, and the script's own start


def test_ping_file_and_one_failing_url_take_web1_out_and_back(lab: Lab) -> None:
    """web1 stops answering pings, its number in the file check's file turns 1 and its /health answers 503: the
    ping, file and two-URL http checks take it out within their bounds (the one-URL http check keeps it), and put
    it back when each cause is gone."""
    web1 = lab.state.node("web1")
    nft = ["nft", "-f", "-"]
    drop = ("table inet lvsdr_ipvs_test {\n chain in {\n  type filter hook input priority 0;\n"
            "  icmp type echo-request drop\n }\n}\n")
    health = lab.state_dir / "health-down-web1"
    causes = ("ping", "file", "urls")
    try:
        ns_run(web1.ns, nft, input=drop)
        FILES["web1"].write_text("1\n")
        health.touch()
        out = wait_all(lab, {n: (SERVICES[n], {WEB2}) for n in causes}, "web1 out",
                       (OUT_BOUND + SLACK) * TIME_SCALE + 5)
        kept = reals(lab, SERVICES["http"])
    finally:
        ns_run(web1.ns, ["nft", "delete", "table", "inet", "lvsdr_ipvs_test"], check=False)
        FILES["web1"].write_text("0\n")
        health.unlink(missing_ok=True)
    back = wait_all(lab, {n: (SERVICES[n], {WEB1, WEB2}) for n in causes}, "web1 back",
                    (IN_BOUND + SLACK) * TIME_SCALE + 5)
    # the two-URL check comes back later than one URL (5.4-6.2 s in four VM runs, against 2.7-3.1 s): taken as a
    # failing round that runs to its end (its retry) before the next check, so its bound is a whole failing round
    # and the next check; why keepalived takes that long with two URLs is not worked out
    way_back = {"urls": OUT_BOUND}
    for name in causes:
        MEASURED.append(f"IPVS {name} check: web1 out {out[name]:.1f} s after its cause (bound {OUT_BOUND} s + "
                        f"{SLACK:.1f} s slack), back {back[name]:.1f} s after it was gone (bound "
                        f"{way_back.get(name, IN_BOUND)} s + {SLACK:.1f} s)")
    assert kept == {WEB1, WEB2}  # /health is only in the two-URL check
    for name in causes:
        assert out[name] <= OUT_BOUND + SLACK, (name, out[name], SLACK)
        assert back[name] <= way_back.get(name, IN_BOUND) + SLACK, (name, back[name], SLACK)


def test_persistence_keeps_a_client_on_one_backend(lab: Lab) -> None:
    """persistence_timeout keeps one client on one backend through IPVS."""
    wait_reals(lab, "TCP 192.0.2.115:80", {WEB1, WEB2}, "sticky: both backends", 30 * TIME_SCALE)
    answers = collections.Counter(probes.http_get(lab, "192.0.2.115", timeout=5) for _ in range(10))
    MEASURED.append(f"IPVS persistence_timeout 30, 10 requests from one client: {dict(answers)}")
    assert len(answers) == 1 and None not in answers
