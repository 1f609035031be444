"""`lvsdr import --from ipvsadm` and `--from ldirectord` (generator/import_lvs.py): what maps, what is named,
what is refused; the IPVS tier runs both sources and keepalived on the import (tests/ipvs/test_ipvs_adopt.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from lvsdr.cli import main
from lvsdr.errors import InputError
from lvsdr.generator.import_merge import import_files
from lvsdr.generator.keepalived import render_keepalived

from helpers import DATA

LVS = DATA / "import" / "lvs"
PAIR = {"lb1": "192.0.2.2", "lb2": "192.0.2.3"}


def imported(name: str, source: str, text: str | None = None) -> tuple[dict[str, Any], list[str]]:
    path = str(LVS / name)
    job = import_files([path], (lambda p: text) if text is not None else (lambda p: Path(p).read_text()),
                       "nftables", PAIR, source=source)
    for d in job.cluster.directors:
        render_keepalived(job.cluster, d.name, "import")  # what it imports renders
    return tomllib.loads(job.text), [u.line() for u in job.imported.unmapped]


def test_an_ipvsadm_dump_imports_its_dr_services_and_names_the_rest() -> None:
    """`ipvsadm-save -n`: each -A a service (scheduler, persistence, scheduler flags), each -a -g a backend with its
    weight; a masquerading real server and a fwmark service named and left out; no health checks (check type none,
    said); the directors from --address, the first the highest priority. (A dump written for these cases; the
    next test reads one ipvsadm printed.)"""
    data, lines = imported("ipvsadm-save.txt", "ipvsadm")
    services = {s["name"]: s for s in data["services"]}
    assert sorted(services) == ["192.0.2.100-443", "192.0.2.100-80", "192.0.2.101-53"]
    web = services["192.0.2.100-80"]
    assert (web["scheduler"], web["check"]) == ("rr", {"type": "none"})
    assert web["backends"] == [{"server": "rs-192-0-2-11", "weight": 1}, {"server": "rs-192-0-2-12", "weight": 2}]
    assert services["192.0.2.100-443"]["persistence_timeout"] == 300
    assert services["192.0.2.101-53"]["protocol"] == "udp" and services["192.0.2.101-53"]["mh_port"] is True
    assert [(d["name"], d["priority"]) for d in data["directors"]] == [("lb1", 150), ("lb2", 100)]
    assert any("-m -w 1: forwarded by -m, not direct routing" in line for line in lines)
    assert any("-A -f 5 -s rr: a fwmark service" in line for line in lines)


def test_a_captured_dump_imports_as_it_was_built() -> None:
    """`ipvsadm-save -n` as ipvsadm 1.31 printed ldirectord's table in the VM (tests/ipvs/test_ipvs_adopt.py): two
    services, wrr with persistence 300 and rr, each real server with its weight, nothing named but the missing
    checks."""
    data, lines = imported("ipvsadm-save.captured.txt", "ipvsadm")
    got = [(s["port"], s["scheduler"], s.get("persistence_timeout"), s["backends"]) for s in data["services"]]
    assert got == [(80, "wrr", 300, [{"server": "rs-192-0-2-11", "weight": 1}, {"server": "rs-192-0-2-12",
                                                                                 "weight": 2}]),
                   (8080, "rr", None, [{"server": "rs-192-0-2-11", "weight": 1}, {"server": "rs-192-0-2-12",
                                                                                  "weight": 1}])]
    assert lines == []


def test_ldirectord_maps_checks_quiescence_fallback_and_names_the_rest() -> None:
    """ldirectord.cf: negotiate with service http becomes an HTTP check of the request's path (the receive string
    named: keepalived checks the status), mysql a TCP connect check (named), a UDP virtual's connect check a UDP
    check; quiescent=yes inhibit_on_failure, fallback the sorry server, checkinterval the delay_loop, a masq real
    named and left out, ldirectord's own settings (logfile, emailalert, ...) named."""
    data, lines = imported("ldirectord.cf", "ldirectord")
    services = {s["name"]: s for s in data["services"]}
    web = services["192.0.2.100-80"]
    assert web["check"] == {"type": "http", "path": "/index.html", "virtualhost": "www.example.com",
                            "connect_timeout": 3}
    assert (web["scheduler"], web["persistence_timeout"], web["delay_loop"]) == ("rr", 600, 1)
    assert web["sorry_server"] == {"address": "127.0.0.1"}
    assert all(b["inhibit_on_failure"] for b in web["backends"])
    assert services["192.0.2.100-3306"]["check"]["type"] == "tcp"
    assert services["192.0.2.100-3306"]["backends"] == ["rs-192-0-2-11"]  # quiescent=no: not inhibited
    assert services["192.0.2.101-53"]["check"]["type"] == "udp"
    for said in ("real=192.0.2.13:80 masq: forwarded by masq", "receive=Test Page: keepalived's HTTP_GET checks "
                 "the status code", "service=mysql: keepalived has no checker", 'logfile="/var/log/ldirectord.log"',
                 'emailalert="admin@example.com"'):
        assert any(said in line for line in lines), (said, lines)


@pytest.mark.parametrize(("source", "text", "error"), [
    ("ipvsadm", "-A -t 192.0.2.100:80 -s rr\nbogus\n", "x:2: not a line of `ipvsadm-save -n`"),
    ("ipvsadm", "-a -t 192.0.2.100:80 -r 192.0.2.11:80 -g\n", "x:1: a real server of -t 192.0.2.100:80, which no "
     "earlier -A line adds"),
    ("ipvsadm", "-A -t 192.0.2.100 -s rr\n", "x:1: -t 192.0.2.100: not a service"),
    ("ipvsadm", "-A -f 1 -s rr\n", "x: no direct-routing service to import (lvsdr builds LVS-DR clusters): x:1: a "
     "fwmark service"),
    ("ldirectord", "virtual=192.0.2.100:80\n\treal 192.0.2.11:80\n", "x:2: not a KEY=VALUE line of ldirectord.cf"),
])
def test_bad_sources_are_one_line(source: str, text: str, error: str) -> None:
    """What is not such a file, or holds no DR service, is refused in one line naming file and line."""
    with pytest.raises(InputError) as e:
        import_files(["x"], lambda p: text, "nftables", PAIR, source=source)
    assert str(e.value).startswith(error) and "\n" not in str(e.value), str(e.value)


def test_the_cli_takes_from_and_wants_the_directors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--from ipvsadm` with fewer than two --address is one line, exit 2; with --diff too (nothing to compare);
    with both directors it writes the cluster file."""
    dump = str(LVS / "ipvsadm-save.txt")
    assert main(["import", "--from", "ipvsadm", "--arp-method", "nftables", "--address", "lb1=192.0.2.2", dump]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["import", "--from", "ipvsadm", "--arp-method", "nftables", "--diff", dump]) == 2
    assert "not with --from ipvsadm" in capsys.readouterr().err
    out = tmp_path / "c.toml"
    assert main(["import", "--from", "ipvsadm", "--arp-method", "nftables", "--address", "lb1=192.0.2.2",
                 "--address", "lb2=192.0.2.3", "-o", str(out), dump]) == 0
    assert tomllib.loads(out.read_text())["cluster"]["virtual_router_id"] == 51


DEBIAN_EXAMPLE = Path("/usr/share/doc/ldirectord/examples/ldirectord.cf")


@pytest.mark.skipif(not DEBIAN_EXAMPLE.exists(), reason="ldirectord is not installed (scripts/setup installs it)")
def test_debians_own_ldirectord_example_imports() -> None:
    """Debian's ldirectord.cf example (ldirectord 4.12) imports: its one active virtual with its three gate reals,
    the fallback as the sorry server, an HTTP check of index.html for www.x.y.z; its labels and receive string
    named."""
    job = import_files([str(DEBIAN_EXAMPLE)], lambda p: Path(p).read_text(), "nftables", PAIR, source="ldirectord")
    data = tomllib.loads(job.text)
    (svc,) = data["services"]
    assert (svc["vip"], svc["port"], svc["scheduler"], len(svc["backends"])) == ("192.168.6.240", 80, "rr", 3)
    assert svc["check"] == {"type": "http", "path": "/index.html", "virtualhost": "www.x.y.z", "connect_timeout": 3}
    assert svc["sorry_server"] == {"address": "127.0.0.1"}
    lines = [u.line() for u in job.imported.unmapped]
    assert any("servicename=Web Site" in line for line in lines) and any("receive=Test Page" in line for line in lines)
