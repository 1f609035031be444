"""Pure real-server plans: spec + observed facts -> changes (fixtures in data/)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lvsdr.errors import InputError
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.realserver import Change, Facts, Spec, desired, plan, plan_remove

from conftest import EXAMPLES

CASES = json.loads((Path(__file__).parent / "data" / "realserver_plans.json").read_text())["cases"]


def spec_for(method: str, node: str = "web1") -> Spec:
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    for rs in data["real_servers"]:
        rs["arp_method"] = method
    return desired(parse_cluster(data), node)


def facts_from(raw: dict[str, Any]) -> Facts:
    kw = dict(raw)
    kw["addresses"] = tuple(tuple(a) for a in kw.get("addresses", ()))
    if "arptables" in kw:
        kw["arptables"] = tuple(kw["arptables"])
    kw["arptables_jumps"] = tuple(kw.get("arptables_jumps", ()))
    if "nft" in kw:
        kw["nft"] = {k: tuple(v) for k, v in kw["nft"].items()}
    kw["iptables"] = {int(k): tuple(v) for k, v in kw.get("iptables", {}).items()}
    kw["iptables_jump"] = {int(k): v for k, v in kw.get("iptables_jump", {}).items()}
    kw["forward_ports"] = {k: tuple(v) for k, v in kw.get("forward_ports", {}).items()}
    return Facts(**kw)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_plan_fixture(case: dict[str, Any]) -> None:
    spec = spec_for(case["method"])
    facts = facts_from(case["facts"])
    changes = (plan_remove if case.get("remove") else plan)(spec, facts)
    assert [c.description for c in changes] == case["expected"]
    assert_safe_order(changes)


def assert_safe_order(changes: list[Change]) -> None:
    """Never a moment with a VIP on the host and no suppression: every
    suppression step comes before the first VIP is added, and every VIP
    removal before the first suppression step is undone."""
    kinds = [(c.kind, c.description) for c in changes]
    adds = [i for i, (k, _) in enumerate(kinds) if k == "addr-add"]
    dels = [i for i, (k, _) in enumerate(kinds) if k == "addr-del"]
    suppress = [i for i, (k, d) in enumerate(kinds)
                if (k == "sysctl" and "restore" not in d) or (k in ("cmd", "nft") and "remove" not in d
                                                               and "delete" not in d and "arp" in d.lower())]
    unsuppress = [i for i, (k, d) in enumerate(kinds)
                  if (k == "sysctl" and "restore" in d) or (k in ("cmd", "nft") and "arp" in d.lower()
                                                           and ("remove" in d or "delete" in d))]
    if adds and suppress:
        assert max(suppress) < min(adds)
    if dels and unsuppress:
        assert max(dels) < min(unsuppress)


def test_director_is_not_a_real_server() -> None:
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    with pytest.raises(InputError, match="is a director; its ARP role follows VRRP"):
        desired(parse_cluster(data), "lb1")


def test_unknown_node_names_the_real_servers() -> None:
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    with pytest.raises(InputError, match=r'"web9" is not a real server \(real servers: web1, web2\)'):
        desired(parse_cluster(data), "web9")


def test_ipv6_vip_goes_on_lo_for_nftables() -> None:
    data = tomllib.loads((EXAMPLES / "ipv6.toml").read_text())
    spec = desired(parse_cluster(data), "web2")
    assert spec.addresses() == (("lo", "2001:db8::100/128"),)
    assert spec.nft_rules() == {}  # NDP is not ARP: no arp rules for an IPv6 VIP


def test_iptables_listen_port_redirects_to_it() -> None:
    data = tomllib.loads((EXAMPLES / "full.toml").read_text())
    spec = desired(parse_cluster(data), "app4")
    assert spec.iptables_rules(4) == (
        "-A LVSDR -d 198.51.100.101/32 -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 18080",)
    assert spec.addresses() == ()


def test_missing_tool_is_named_with_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from lvsdr.cli import main

    data = (EXAMPLES / "web.toml").read_text().replace('arp_method = "sysctl"', 'arp_method = "arptables"')
    path = tmp_path / "c.toml"
    path.write_text(data)
    monkeypatch.setenv("PATH", str(tmp_path))  # no arptables anywhere
    assert main(["realserver", "apply", str(path), "--node", "web1", "--state-dir", str(tmp_path / "s")]) == 1
    assert capsys.readouterr().err == (
        "lvsdr: arptables: not found; install Debian package arptables, RHEL package iptables-nft\n")
    assert not (tmp_path / "s").exists()


def test_missing_interface_is_refused_before_any_change(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from lvsdr.cli import main

    path = tmp_path / "c.toml"
    path.write_text((EXAMPLES / "web.toml").read_text().replace(
        'address = "192.0.2.11"', 'address = "192.0.2.11"\ninterface = "nosuch0"'))
    assert main(["realserver", "apply", str(path), "--node", "web1", "--state-dir", str(tmp_path / "s")]) == 1
    assert "interface nosuch0 of real server web1 does not exist on this node" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_wrong_node_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run on a host that is not web1 (this test's own namespace): refused
    before any change, even before the lock directory is made."""
    from lvsdr.cli import main

    assert main(["realserver", "apply", str(EXAMPLES / "web.toml"), "--node", "web1",
                 "--state-dir", str(tmp_path / "s")]) == 1
    assert "this node does not have web1's address 192.0.2.11; refusing to change it" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_notify_on_the_wrong_node_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from lvsdr.cli import main

    data = tomllib.loads((EXAMPLES / "pair.toml").read_text())
    data["cluster"]["state_dir"] = str(tmp_path / "s")
    path = tmp_path / "pair.json"
    path.write_text(json.dumps(data))
    assert main(["notify", str(path), "--node", "node1", "INSTANCE", "VI_pair", "MASTER", "200"]) == 1
    assert "this node does not have node1's address 192.0.2.21" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
