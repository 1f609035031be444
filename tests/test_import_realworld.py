"""`lvsdr import` on the project's collection of real-world LVS-DR
keepalived.conf files (tests/data/import/realworld, sources in its README):
keepalived 2.2.7 runs each; each with a DR service and a VRRP instance
imports with every difference named, and renders what keepalived accepts;
the others are refused in one line naming the file and line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from lvsdr.cli import main
from lvsdr.generator.import_merge import import_files
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import parse_cluster
from lvsdr.hooks.keepalived import check_file, check_text

from helpers import REPO, unexplained

DATA = REPO / "tests" / "data" / "import" / "realworld"
PEER = "198.51.100.3"
# file -> (the director's name when the file holds no address of it (None: it does), a NOTE the import must make)
IMPORTS = {
    "auth-pass-dot.conf": ("LVS_DEVEL", "keepalived uses the first 8"),
    "dns-unicast-slave.conf": (None, "state SLAVE: keepalived knows MASTER and BACKUP"),
    "extra-brace.conf": ("LVS_MASTER", "nb_get_retry 3: the old spelling of retry"),
    "inline-comments.conf": ("LVS_01", "it ignores it in TCP_CHECK"),
    "k8s-apiserver-ssl.conf": ("LVS_DEVEL", "lb_algo loadbalance: no IPVS scheduler: keepalived ignores it and uses "
                                            "wlc"),
    "label-eth0.conf": ("web-lb-01", "a label equal to its device's name"),
    "mcast-src-group.conf": ("LVS_DEVEL", "mcast_src_ip 224.0.0.18: a multicast group, not an address"),
    "mysql-dual-master.conf": ("MySQL-ha", "it ignores it in TCP_CHECK"),
    "named-by-address.conf": ("named-by-address", "track_interface eth0: the VRRP interface itself"),
    "netology-track-own.conf": ("netology-track-own", "lvs_sync_daemon_interface eth1: the old spelling of "
                                                      "global_defs lvs_sync_daemon"),
    "one-member-sync.conf": ("lvs-a", "a sync group of 1 instance"),
    "placeholder-notify.conf": ("LB01", "smtp_server 127.0.0.1: global setting lvsdr does not model"),
    "sorry-server-wrr.conf": ("ka1", "192.0.2.200/24: lvsdr adds a VIP as a host address"),
    "two-armed-sync.conf": ("two-armed-sync", None),
    "sync-group-placeholders.conf": (None, "script is not an absolute path: keepalived looks it up in PATH"),
    "two-node-self-backend.conf": (None, "a director among its real servers: lvsdr renders it as a fwmark"),
    "udp-misc-check.conf": ("dns-lb1", None),
    "unicast-v4-v6.conf": (None, None),
    "vmac-bond.conf": (None, "use_vmac: vrrp_instance option lvsdr does not model (kept in [[keepalived_extra]])"),
    "seq-real-servers.conf": ("seq-lb", None),
    "lst-real-servers.conf": ("lst-lb", None),
    "ipv6-dr.conf": ("v6-lb", "native_ipv6: vrrp_instance option lvsdr does not model"),
    "sh-persistence-granularity.conf": ("sh-lb", None),
    "track-interface-weight.conf": ("track-lb", "its weight -50 is not imported"),
    "garp-settings.conf": ("garp-lb", "vrrp_garp_master_refresh 60: global setting lvsdr does not model"),
    "notify-fifo-global.conf": ("fifo-lb", "a notify script of its own: lvsdr's hook takes this place"),
    "thresholds-drained.conf": ("thr-lb", "uthreshold 1000: real_server option lvsdr does not model"),
    "udp-ops.conf": ("ops-lb", None),
    "http-status-ranges.conf": ("http-lb", "http_protocol 1.1: HTTP_GET option lvsdr does not model"),
    "fwmark-and-plain.conf": ("mixed-lb", "a fwmark virtual_server marks traffic by rules lvsdr does not see"),
    "three-unicast-peers.conf": (None, None),
    "vip-excluded.conf": ("excl-lb", "imported as [[vips]], which lvsdr renders in virtual_ipaddress"),
    "vrrp-strict-v3.conf": ("strict-lb", "vrrp_strict: global setting lvsdr does not model"),
    "conditional-conf.conf": ("cond-lb", "conditional line for config id 'main' skipped"),
    "dns-ping-checks.conf": ("dns-lb", None),
    "inhibit-per-server.conf": ("inhibit-lb", None),
    "lvs-syncd-global.conf": ("syncd-lb", "with sync_daemon lvsdr renders preempt_delay 60"),
    "quorum-hysteresis.conf": ("quorum-lb", None),
    "smtp-check.conf": ("smtp-lb", None),
    "ssl-digest.conf": ("ssl-lb", "virtualhost www.example.org: virtual_server option lvsdr does not model"),
    "virtual-server-group.conf": ("vsg-lb", "DR forwards each to its own port"),
}
# the directors' addresses where the file's VRRP is not IPv4 (a native_ipv6 instance)
FAMILY = {"ipv6-dr.conf": ("2001:db8::2", "2001:db8::3")}
REFUSED = {
    "five-instances-one-vip.conf": ("five-instances-one-vip.conf:23: 192.0.2.80 is also a VIP of vrrp_instance VI_10 "
                                    f"({DATA}/five-instances-one-vip.conf:12)"),
    "salt-pillar.conf": "salt-pillar.conf: no direct-routing virtual_server to import",
}
# what keepalived -t says of a script missing on this host (the collection's scripts are the sources' own)
HOST_ONLY = re.compile(r"Disabling track script \S+ since not found/accessible")


def _addresses(name: str) -> dict[str, str]:
    director = IMPORTS[name][0]
    own, peer = FAMILY.get(name, ("198.51.100.2", PEER))
    return {director: own, f"{director}-peer": peer} if director else {}


def test_the_collection_is_what_the_readme_lists() -> None:
    """Every file of the collection is either imported or refused here, and named in its README with a source."""
    files = sorted(p.name for p in DATA.glob("*.conf"))
    assert files == sorted([*IMPORTS, *REFUSED])
    readme = (DATA / "README.md").read_text()
    assert all(f"| {f} |" in readme for f in files)


@pytest.mark.parametrize("name", sorted([*IMPORTS, *REFUSED]))
def test_keepalived_runs_each_file(name: str, scratch_netns: str) -> None:
    """keepalived 2.2.7 runs every file of the collection (its -t warns, as users' files make it, but finds nothing
    fatal)."""
    result = check_file(str(DATA / name), netns=scratch_netns)
    assert result.returncode in (0, 5), result.message()


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_each_dr_file_imports_and_every_difference_is_named(name: str) -> None:
    """A file with a DR service and a VRRP instance imports, with the NOTE its quirk calls for, and every difference
    between it and the import rendered again is a directive the import named."""
    job = import_files([str(DATA / name)], lambda p: Path(p).read_text(), "nftables", _addresses(name))
    note = IMPORTS[name][1]
    if note:
        named = [u.line() for u in job.imported.unmapped] + job.notes
        assert any(note in line for line in named), named
    parse_cluster(tomllib.loads(job.text))
    assert unexplained([DATA / name], "nftables", _addresses(name)) == []


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_each_import_renders_what_keepalived_accepts(name: str, tmp_path: Path, scratch_netns: str) -> None:
    """What lvsdr renders from each import passes keepalived -t, for every director."""
    out = tmp_path / "cluster.toml"
    args = [a for k, v in _addresses(name).items() for a in ("--address", f"{k}={v}")]
    assert main(["import", str(DATA / name), "--arp-method", "nftables", "-o", str(out), *args]) == 0
    cluster = parse_cluster(tomllib.loads(out.read_text()))
    for d in cluster.directors:
        result = check_text(render_keepalived(cluster, d.name, "import"), netns=scratch_netns)
        assert result.ok or all(HOST_ONLY.fullmatch(line) for line in result.output.strip().splitlines()), \
            result.message()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_lvsdr_cannot_build_is_refused_in_one_line(name: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A file lvsdr cannot build (no DR service; one VIP in several instances) is refused in one line naming the
    file and line, exit 2, and writes nothing."""
    out = tmp_path / "cluster.toml"
    assert main(["import", str(DATA / name), "--arp-method", "nftables", "--address", f"x={PEER}",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert REFUSED[name] in err[-1] and err[-1].startswith("lvsdr: ")
    assert not out.exists()


def test_a_file_with_three_unicast_peers_imports_three_directors() -> None:
    """One file naming two unicast peers is a cluster of three: each peer an inferred director below the file's
    priority, each named in a NOTE (the second was lost without a word)."""
    job = import_files([str(DATA / "three-unicast-peers.conf")], lambda p: Path(p).read_text(), "nftables", {})
    data = tomllib.loads(job.text)
    assert [(d["name"], d["address"], d["priority"]) for d in data["directors"]] == [
        ("lb-a", "198.51.100.11", 150), ("lb-a-peer", "198.51.100.12", 100), ("lb-a-peer2", "198.51.100.13", 99)]
    assert "director lb-a-peer2 is inferred" in job.text


def test_seq_and_lst_make_the_real_servers_keepalived_makes() -> None:
    """~SEQ (with a step and a $NAME port) and ~LST (two variables, a missing value blank) repeat their line as
    keepalived 2.2.7 does: the real servers and weights it runs."""
    for name, want in (("seq-real-servers.conf", [("192.0.2.11", 1), ("192.0.2.13", 1), ("192.0.2.15", 1)]),
                       ("lst-real-servers.conf", [("192.0.2.21", 30), ("192.0.2.22", 10), ("192.0.2.23", 0)])):
        data = tomllib.loads(import_files([str(DATA / name)], lambda p: Path(p).read_text(), "nftables",
                                          _addresses(name)).text)
        servers = {r["name"]: r["address"] for r in data["real_servers"]}
        assert [(servers[b["server"]], b["weight"]) for b in data["services"][0]["backends"]] == want


def test_the_two_armed_director_imports_on_its_two_interfaces() -> None:
    """Two instances on eth0 and eth1 with the same virtual_router_id import as written: the second on its own
    interface, in a sync group; the IPv6 instance beside an IPv4 one keeps its own unicast source and peer."""
    job = import_files([str(DATA / "two-armed-sync.conf")], lambda p: Path(p).read_text(), "nftables",
                       _addresses("two-armed-sync.conf"))
    data = tomllib.loads(job.text)
    assert data["cluster"]["interface"] == "eth0" and data["cluster"]["sync_group"] is True
    assert [(i["interface"], i["virtual_router_id"], i["vips"]) for i in data["instances"]] == [
        ("eth1", 51, ["198.51.100.254"])]
    cluster = parse_cluster(data)
    assert "198.51.100.254/32 dev eth1" in render_keepalived(cluster, "two-armed-sync", "import")
    v6 = tomllib.loads(import_files([str(DATA / "unicast-v4-v6.conf")], lambda p: Path(p).read_text(), "nftables",
                                    {}).text)
    assert v6["instances"][0]["addresses"] == {"proxy-master": "2001:db8:47::102",
                                                "proxy-master-peer": "2001:db8:47::101"}


def test_ipv4_directors_for_ipv6_vrrp_are_refused_saying_so(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A native_ipv6 instance given the directors' IPv4 addresses: one line that says the families differ and
    what to give, before the model's reasons; exit 2, nothing written."""
    out = tmp_path / "cluster.toml"
    assert main(["import", str(DATA / "ipv6-dr.conf"), "--arp-method", "nftables", "--address", "v6-lb=198.51.100.2",
                 "--address", f"v6-lb-peer={PEER}", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lvsdr: the directors' addresses are IPv4 and every VIP is IPv6: keepalived speaks "
                              "VRRP in the VIPs' family (give the directors' IPv6 addresses")
    assert not out.exists()
