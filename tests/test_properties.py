"""Property tests: valid clusters always render configs keepalived accepts;
garbage never produces a traceback, always exit 2."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsdr.cli import main
from lvsdr.errors import ValidationError
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.model import Cluster, Director, RealServer, Service
from lvsdr.hooks.keepalived import check_text

from helpers import BASE

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    n_dir = draw(st.integers(1, 3))
    n_rs = draw(st.integers(0, 4))
    host_names = draw(st.lists(names, min_size=n_dir + n_rs, max_size=n_dir + n_rs, unique=True))
    prios = draw(st.lists(st.integers(1, 254), min_size=n_dir, max_size=n_dir, unique=True))
    directors = [
        {"name": host_names[i], "address": str(ipaddress.ip_address("192.0.2.1") + i),
         "priority": prios[i]}
        for i in range(n_dir)
    ]
    real_servers = [
        {"name": host_names[n_dir + i], "address": str(ipaddress.ip_address("192.0.2.20") + i),
         "arp_method": draw(st.sampled_from(["sysctl", "arptables", "nftables", "iptables", "firewalld"]))}
        for i in range(n_rs)
    ]
    services = []
    n_svc = draw(st.integers(1, 4))
    for i in range(n_svc):
        backends = draw(st.lists(st.sampled_from(host_names), min_size=1, max_size=4, unique=True))
        proto = draw(st.sampled_from(["tcp", "udp", "sctp"]))
        check_type = draw(st.sampled_from(
            ["none", "misc", "dns"] if proto == "udp" else ["tcp", "http", "https", "misc", "none"]))
        check: dict[str, Any] = {"type": check_type}
        if check_type == "misc":
            check["script"] = "/usr/local/bin/check"
        if check_type == "dns":
            check["query"] = "example.org"
        if check_type in ("http", "https"):
            check["path"] = draw(st.from_regex(r"/[a-z0-9/?=&._-]{0,20}", fullmatch=True))
        svc: dict[str, Any] = {
            "name": f"s{i}", "vip": str(ipaddress.ip_address("192.0.2.100") + draw(st.integers(0, 3))),
            "port": 1000 + i, "protocol": proto,
            "scheduler": draw(st.sampled_from(["rr", "wrr", "wlc", "sh", "mh"])),
            # weight 0 drains a backend; at least one must carry traffic
            "backends": [{"server": b, "weight": draw(st.integers(0 if j else 1, 100))}
                         for j, b in enumerate(backends)],
            "check": check,
        }
        if draw(st.booleans()):
            svc["persistence_timeout"] = draw(st.integers(1, 3600))
        services.append(svc)
    cluster: dict[str, Any] = {
        "name": draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)),
        "virtual_router_id": draw(st.integers(1, 255)),
        "advert_int": draw(st.integers(1, 5)),
        "unicast": n_dir > 1 and draw(st.booleans()),
        "hook": draw(st.sampled_from(["both", "fifo", "notify", "none"])),
    }
    director_names = {d["name"] for d in directors}
    if cluster["hook"] == "none" and any(b["server"] in director_names for svc in services for b in svc["backends"]):
        cluster["hook"] = "both"  # fwmark services need the hook (validation refuses none)
    if draw(st.booleans()):
        cluster["auth_pass"] = draw(st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True))
    return {"cluster": cluster, "directors": directors, "real_servers": real_servers,
            "services": services}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_valid_clusters_render_and_pass_keepalived(scratch_netns: str, data: dict[str, Any]) -> None:
    """Every valid generated cluster renders configs keepalived -t accepts."""
    c = parse_cluster(data)
    for d in c.directors:
        text = render_keepalived(c, d.name, "generated")
        result = check_text(text, netns=scratch_netns)
        assert result.ok, result.message() + "\n" + text


# every type a TOML (or JSON) file can hold: dates and times, integers too
# large to print, NaN and infinities, text with any character
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**20000).map(
        lambda n: n * (-1) ** (n % 2)) | st.floats() | st.text(max_size=20)
    | st.dates() | st.times() | st.datetimes(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_garbage_is_a_validation_error(data: Any) -> None:
    """Any parsed garbage is a ValidationError of single lines, never another exception."""
    try:
        parse_cluster(data)
    except ValidationError as e:
        assert e.errors and all("\n" not in line for line in e.errors)


def _set_key(target: dict[str, Any] | list[dict[str, Any]], index: int, key: str, value: Any) -> None:
    """Set ``key`` in a table, or in the ``index``-th table of a list (a new one past its end)."""
    if isinstance(target, list):
        if index >= len(target):
            target.append({key: value})
        else:
            target[index][key] = value
    else:
        target[key] = value


# every key the model has (and so the file may name), besides random ones
MODEL_KEYS = sorted({f.name for cls in (Cluster, Director, RealServer, Service) for f in dataclasses.fields(cls)})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["cluster", "directors", "real_servers", "services"]),
       st.integers(0, 3), st.sampled_from(MODEL_KEYS) | st.text(max_size=12), json_values)
def test_mutated_files_never_crash(section: str, index: int, key: str, value: Any) -> None:
    """A valid file with any key set to any value validates or is refused, and what validates renders."""
    data = json.loads(json.dumps(BASE))
    _set_key(data[section], index, key, value)
    try:
        c = parse_cluster(data)
    except ValidationError:
        return
    for d in c.directors:
        render_keepalived(c, d.name, "x")  # anything that validates must render


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([".toml", ".json"]))
def test_cli_garbage_exits_2_without_traceback(tmp_path_factory: Any, raw: bytes, suffix: str) -> None:
    """Random bytes as a cluster file are exit 2, never a traceback."""
    p: Path = tmp_path_factory.mktemp("g") / f"c{suffix}"
    p.write_bytes(raw)
    assert main(["validate", str(p)]) == 2


log_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.text(), log_values, max_size=6))
def test_notify_log_lines_are_the_json_structlog_writes(fields: dict[str, Any]) -> None:
    """notify's success line is written without importing json (hooks/fast/log.py
    dumps): byte for byte what json.dumps writes for structlog, so log
    collectors parse both the same."""
    from lvsdr.hooks.fast.log import dumps

    assert dumps(fields) == json.dumps(fields, sort_keys=True, default=str)
    assert json.loads(dumps(fields)) == fields


ECMP = tomllib.loads((Path(__file__).resolve().parent.parent / "examples" / "ecmp.toml").read_text())
ECMP_KEYS = sorted({"asn", "peers", "communities", "table", "bfd_interval", "bfd_multiplier", "drain_timeout",
                    "bird_conf", "bird_socket", "name", "address", "password", "hold_time", "bfd", "router_id",
                    "priority", "scheduler"})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["bgp", "bgp.peers", "directors", "services"]), st.integers(0, 2),
       st.sampled_from(ECMP_KEYS) | st.text(max_size=12), json_values)
def test_mutated_ecmp_files_never_crash(section: str, index: int, key: str, value: Any) -> None:
    """An ECMP cluster with any key of [bgp], a peer, a director or a service
    set to any TOML value validates or is refused, and what validates renders
    keepalived.conf and bird.conf."""
    from lvsdr.generator.bird import render_bird

    data = json.loads(json.dumps(ECMP))
    _set_key(data["bgp"]["peers"] if section == "bgp.peers" else data[section], index, key, value)
    try:
        c = parse_cluster(data)
    except ValidationError as e:
        assert e.errors and all("\n" not in line for line in e.errors)
        return
    for d in c.directors:
        render_keepalived(c, d.name, "x")
        render_bird(c, d.name, "x")
