"""`lvsdr import`: hand-written keepalived.conf files become a cluster file.
Each test set round-trips (the import rendered again says what the original
said), every difference is a directive the import named on stderr, and what
lvsdr renders passes keepalived -t."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from lvsdr.cli import main
from lvsdr.errors import InputError
from lvsdr.generator.import_merge import import_files
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import parse_cluster
from lvsdr.hooks.keepalived import check_text

from helpers import REPO, read_path, unexplained

DATA = REPO / "tests" / "data" / "import"
SETS = {
    "classic": ([DATA / "classic" / "lb1.conf", DATA / "classic" / "lb2.conf"], "sysctl"),
    "unicast": ([DATA / "unicast" / "lb-a.conf", DATA / "unicast" / "lb-b.conf"], "nftables"),
}
# keepalived's own samples, as Debian's keepalived package installs them (scripts/setup installs it)
SAMPLES = Path("/usr/share/doc/keepalived/samples")


@pytest.mark.parametrize("name", sorted(SETS))
def test_every_difference_is_named(name: str) -> None:
    """Every difference between an original and its import rendered again is a directive the import named."""
    paths, arp = SETS[name]
    assert unexplained(paths, arp) == []


@pytest.mark.parametrize("name", sorted(SETS))
def test_import_renders_what_keepalived_accepts(name: str, tmp_path: Path, scratch_netns: str) -> None:
    """What lvsdr renders from an import passes keepalived -t."""
    paths, arp = SETS[name]
    out = tmp_path / "cluster.toml"
    assert main(["import", *map(str, paths), "--arp-method", arp, "-o", str(out)]) == 0
    cluster = parse_cluster(tomllib.loads(out.read_text()))
    for d in cluster.directors:
        result = check_text(render_keepalived(cluster, d.name, "import"), netns=scratch_netns)
        assert result.ok, result.message()


def test_diff_says_what_differs_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """import --diff names what differs and exits 1."""
    paths, arp = SETS["classic"]
    assert main(["import", *map(str, paths), "--arp-method", arp, "--diff"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["lb1: 1 differences", "  virtual_server 192.0.2.100 80 nat_mask: only in the original",
                                "lb2: 1 differences", "  virtual_server 192.0.2.100 80 nat_mask: only in the original"]
    assert f"{paths[0]}:34: nat_mask 255.255.255.0: obsolete keepalived keyword" in err
    assert "lb1@example.com" in err  # kept through [[keepalived_extra]], and said so


def test_diff_exits_0_when_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """import --diff exits 0 when lvsdr renders the same semantics."""
    paths, arp = SETS["classic"]
    for i, p in enumerate(paths):
        (tmp_path / f"{i}.conf").write_text(p.read_text().replace("    nat_mask 255.255.255.0\n", ""))
    assert main(["import", str(tmp_path / "0.conf"), str(tmp_path / "1.conf"), "--arp-method", arp, "--diff"]) == 0
    assert capsys.readouterr().out.splitlines() == ["lb1: the same", "lb2: the same"]


def test_the_cluster_file_says_what_it_chose() -> None:
    """The imported cluster file carries a NOTE for each choice the import made."""
    paths, arp = SETS["unicast"]
    job = import_files([str(p) for p in paths], read_path, arp, {})
    data = tomllib.loads(job.text)
    assert [(d["name"], d["address"], d["priority"]) for d in data["directors"]] == [
        ("lb-a", "198.51.100.2", 200), ("lb-b", "198.51.100.3", 100)]
    assert data["cluster"]["name"] == "web" and data["cluster"]["unicast"] is True
    assert data["cluster"]["sync_daemon"] == {"id": 7}
    assert {r["arp_method"] for r in data["real_servers"]} == {"nftables"}
    shop = next(s for s in data["services"] if s["name"] == "shop")
    assert (shop["vip"], shop["port"]) == (["198.51.100.110", "198.51.100.111"], [80, 443])
    nat = [u.line() for u in job.imported.unmapped if "lb_kind NAT" in u.line()]
    assert len(nat) == 2 and all("services.conf:96: virtual_server 198.51.100.130 3306" in n for n in nat)


def test_one_file_infers_the_other_director_and_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """From one file the import infers the peer director and says so."""
    one = str(SETS["classic"][0][0])
    assert main(["import", one, "--arp-method", "sysctl"]) == 2
    assert capsys.readouterr().err.strip() == (
        "lvsdr: --address: the address of director lb1-peer is not in the file (no unicast_src_ip, mcast_src_ip "
        "or unicast_peer); give --address NAME=IP")
    out = tmp_path / "c.toml"
    assert main(["import", one, "--arp-method", "sysctl", "--address", "lb1-peer=192.0.2.3", "-o", str(out)]) == 0
    text = out.read_text()
    assert "# NOTE: one keepalived.conf given: director lb1-peer is inferred (priority 100" in text
    data = tomllib.loads(text)
    assert [(d["name"], d["priority"]) for d in data["directors"]] == [("lb1", 150), ("lb1-peer", 100)]


@pytest.mark.parametrize(("args", "expected"), [
    (["import", "{cluster}", "--arp-method", "sysctl"],
     "does not look like a keepalived.conf (no global_defs, vrrp_instance or virtual_server block first)"),
    (["import", "{lb1}", "--arp-method", "arp"], "--arp-method: 'arp' is not one of sysctl, arptables, nftables, "
                                                 "iptables, firewalld"),
    (["import", "{lb1}", "--arp-method", "sysctl", "--address", "lb1"], "--address: 'lb1' is not NAME=IP"),
    (["import", "/nonexistent.conf", "--arp-method", "sysctl"], "/nonexistent.conf: cannot read"),
    (["validate", "{lb1}"], "this is a keepalived.conf, not a cluster file; `lvsdr import"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A file import cannot read is one line, exit 2."""
    paths = {"cluster": str(REPO / "examples" / "web.toml"), "lb1": str(SETS["classic"][0][0])}
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_conditional_lines_follow_the_config_id(tmp_path: Path) -> None:
    """@ID lines are taken only for the matching --config-id."""
    src = tmp_path / "k.conf"
    src.write_text("vrrp_instance VI_0 {\n  interface eth0\n  virtual_router_id 1\n@high  priority 170\n"
                   "@low  priority 85\n  unicast_src_ip 192.0.2.2\n  unicast_peer {\n    192.0.2.3\n  }\n"
                   "  virtual_ipaddress {\n    192.0.2.100\n  }\n}\n"
                   "virtual_server 192.0.2.100 80 {\n  lb_kind DR\n  protocol TCP\n  real_server 192.0.2.11 80 {\n"
                   "  }\n}\n")
    for cid, prio in (("high", 170), ("low", 85)):
        job = import_files([str(src)], read_path, "sysctl", {}, config_id=cid)
        assert tomllib.loads(job.text)["directors"][0]["priority"] == prio
    job = import_files([str(src)], read_path, "sysctl", {})
    assert any("conditional line for config id 'high' skipped" in n for n in job.notes)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="keepalived's samples are not installed")
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("keepalived.conf.*")) if SAMPLES.is_dir()
                         else ["none"])
def test_keepalived_samples_import_or_say_why(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    """keepalived's own samples (most are NAT, or LVS without VRRP): each is
    imported with every difference named, or refused in one line."""
    path = SAMPLES / sample
    text = path.read_text()
    router = re.search(r"router_id\s+(\S+)", text)
    me = router.group(1) if router else sample
    args = ["--address", f"{me}=192.0.2.5", "--address", f"{me}-peer=192.0.2.6", "--config-id", "high"]
    rc = main(["import", str(path), "--arp-method", "sysctl", *args])
    err = capsys.readouterr().err
    if rc == 2:
        assert len([ln for ln in err.splitlines() if ln.startswith("lvsdr: ")]) == 1
        return
    assert rc == 0
    addresses = {me: "192.0.2.5", f"{me}-peer": "192.0.2.6"}
    try:
        assert unexplained([path], "sysctl", addresses) == []
    except Exception as e:  # the import validated for main(); unexplained() must too
        raise AssertionError(f"{sample}: {e}") from e


_VRRP = """vrrp_instance VI_X {
  interface eth0
  virtual_router_id 77
  priority 150
  unicast_src_ip 192.0.2.5
  unicast_peer {
    192.0.2.6
  }
  virtual_ipaddress {
    %s
  }
}
"""


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="keepalived's samples are not installed")
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("keepalived.conf.*")) if SAMPLES.is_dir()
                         else ["none"])
def test_keepalived_samples_as_dr(sample: str, tmp_path: Path) -> None:
    """keepalived's samples with lb_kind DR (and a vrrp_instance where they
    have none): the breadth of keepalived's own syntax and checkers, each
    imported with every difference named, or refused in one line."""
    text = re.sub(r"lb_kind\s+(NAT|TUN)", "lb_kind DR", (SAMPLES / sample).read_text())
    if "vrrp_instance" not in text:
        vip = re.search(r"virtual_server\s+([0-9.]+)\s", text)
        text += _VRRP % (vip.group(1) if vip else "192.0.2.100")
    path = tmp_path / sample
    path.write_text(text)
    try:
        left = unexplained([path], "sysctl", {"LVS_DEVEL-peer": "192.0.2.6", f"{sample}-peer": "192.0.2.6"})
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert left == []


@pytest.mark.parametrize("name", sorted(SETS))
def test_the_toml_writer_round_trips(name: str) -> None:
    """What import writes reads back with tomllib as exactly the data it wrote
    (the writer is hand-made: comments, key order, inline tables)."""
    from lvsdr.generator.import_merge import to_toml

    files, method = SETS[name]
    job = import_files([str(p) for p in files], read_path, method, {})
    assert tomllib.loads(to_toml(job.imported, [str(p) for p in files])) == job.imported.data


ONE_FILE = """global_defs {
    router_id lb1
}
vrrp_sync_group VG_1 {
    group {
        VI_1
    }
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress {
        192.0.2.100
    }
}
virtual_server 192.0.2.100 80 {
    lvs_sched rr
    lvs_method DR
    protocol TCP
    real_server 192.0.2.11 80 {
        weight 1
        TCP_CHECK {
            nb_get_retry 3
        }
    }
}
"""


def test_what_keepalived_truncates_or_ignores_imports_as_it_runs() -> None:
    """An auth_pass over 8 characters imports as keepalived's first 8; a VIP label equal to its device and a
    track_interface on the VRRP interface itself import as keepalived runs them (without), each named."""
    text = ONE_FILE.replace("    priority 150\n", "    priority 150\n    authentication {\n        auth_type PASS\n"
                            "        auth_pass longsecret42\n    }\n    track_interface {\n        eth0 weight 5\n"
                            "        eth1\n    }\n")
    text = text.replace("        192.0.2.100\n", "        192.0.2.100 label eth0\n")
    job = import_files(["lb1.conf"], {"lb1.conf": text}.__getitem__, "sysctl",
                       {"lb1": "192.0.2.2", "lb1-peer": "192.0.2.3"})
    lines = [u.line() for u in job.imported.unmapped]
    assert any(": auth_pass: 12 characters; keepalived uses the first 8: imported as those" in line for line in lines)
    assert any(": 192.0.2.100 label eth0: a label equal to its device's name" in line for line in lines)
    assert any(": track_interface eth0: the VRRP interface itself" in line and "weight 5 is not imported" in line
               for line in lines)
    data = tomllib.loads(job.text)
    assert data["cluster"]["auth_pass"] == "longsecr"
    assert [t["name"] for t in data["track_interfaces"]] == ["eth1"]
    assert "vips" not in data or all("label" not in v for v in data["vips"])
    cluster = parse_cluster(data)  # what the import wrote validates, and renders
    assert "auth_pass longsecr" in render_keepalived(cluster, "lb1", "import")


def test_old_spellings_and_a_one_instance_sync_group_are_named() -> None:
    """lvs_sched, lvs_method and nb_get_retry (in HTTP_GET; ignored in TCP_CHECK, as keepalived does) are imported
    and each named; a sync group of one instance (which
    keepalived ignores) is named, not silently dropped."""
    job = import_files(["lb1.conf"], {"lb1.conf": ONE_FILE}.__getitem__, "sysctl",
                       {"lb1": "192.0.2.2", "lb1-peer": "192.0.2.3"})
    lines = [u.line() for u in job.imported.unmapped]
    assert "lb1.conf:19: lvs_sched rr: the old spelling of lb_algo: imported as scheduler" in lines
    assert "lb1.conf:20: lvs_method DR: the old spelling of lb_kind: imported as lb_kind" in lines
    # keepalived 2.2.7 knows nb_get_retry in HTTP_GET and SSL_GET only ("Unknown keyword" in a TCP_CHECK)
    assert ("lb1.conf:25: nb_get_retry 3: keepalived 2.2 knows nb_get_retry in HTTP_GET and SSL_GET only: it "
            "ignores it in TCP_CHECK, and so does the import") in lines
    http = import_files(["lb1.conf"], {"lb1.conf": ONE_FILE.replace("TCP_CHECK {", "HTTP_GET {\n            url {\n"
                                                                  "                path /\n            }")}.__getitem__,
                        "sysctl", {"lb1": "192.0.2.2", "lb1-peer": "192.0.2.3"})
    assert any(u.line().endswith("nb_get_retry 3: the old spelling of retry: imported as retry")
               for u in http.imported.unmapped)
    assert tomllib.loads(http.text)["services"][0]["check"]["retry"] == 3
    assert any(line.startswith("lb1.conf:4: vrrp_sync_group VG_1: a sync group of 1 instance") for line in lines)
    data = tomllib.loads(job.text)
    assert data["services"][0]["scheduler"] == "rr" and "sync_group" not in data.get("cluster", {})


def test_each_file_is_read_once_and_the_import_validated_once(tmp_path: Path) -> None:
    """import reads each keepalived.conf once (an included file too, however often it is included) and carries the
    cluster it validated (`--diff` renders it; it parsed its own output and threw it away, then --diff again)."""
    from lvsdr.generator.model import Cluster

    files, method = SETS["classic"]
    texts = {str(p): p.read_text() for p in files}
    inc = tmp_path / "inc.conf"
    inc.write_text("! an included comment\n")
    first = str(files[0])
    texts[first] = f"include {inc}\ninclude {inc}\n" + texts[first]
    texts[str(inc)] = inc.read_text()
    reads: list[str] = []

    def read(p: str) -> str:
        reads.append(p)
        return texts[p]

    job = import_files(list(texts)[:2], read, method, {})
    assert sorted(reads) == sorted([first, str(files[1]), str(inc)])
    assert isinstance(job.cluster, Cluster) and job.cluster.name == tomllib.loads(job.text)["cluster"]["name"]


def test_a_file_without_a_dr_service_is_refused_naming_what_it_has() -> None:
    """A file whose only virtual_server is a fwmark one is refused in one line naming it and why; a file with no
    virtual_server at all says that (the refusal once pointed "above" at nothing)."""
    fwmark = ("virtual_server fwmark 5 {\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n"
              "    real_server 192.0.2.11 80 {\n        TCP_CHECK {\n            connect_timeout 3\n        }\n"
              "    }\n}\n")
    with pytest.raises(InputError) as e:
        import_files(["lb1.conf"], {"lb1.conf": fwmark}.__getitem__, "sysctl", {})
    assert str(e.value).startswith("lb1.conf: no direct-routing virtual_server to import (lvsdr builds LVS-DR "
                                   "clusters): lb1.conf:1: virtual_server fwmark 5: a fwmark virtual_server")
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="the file has no virtual_server block$"):
        import_files(["lb1.conf"], {"lb1.conf": "global_defs {\n    router_id x\n}\n"}.__getitem__, "sysctl", {})
