"""Pure director role plans: which changes, in which order."""

from __future__ import annotations

import tomllib

from lvsdr.generator.director import director_spec, observed_role, plan_role
from lvsdr.generator.load import parse_cluster
from lvsdr.generator.realserver import Facts

from conftest import EXAMPLES


def spec(node: str = "node1"):  # type: ignore[no-untyped-def]
    return director_spec(parse_cluster(tomllib.loads((EXAMPLES / "pair.toml").read_text())), node)


ON_LO = ("lo", "192.0.2.120/32", "lo:lvsdr")
ON_ETH = ("eth0", "192.0.2.120/32", "eth0")


def test_role_is_read_from_the_vrrp_interface_only() -> None:
    s = spec()
    assert observed_role(s, (ON_LO,)) == "BACKUP"
    assert observed_role(s, (ON_LO, ON_ETH)) == "MASTER"


def test_backup_suppresses_before_dropping_the_marks() -> None:
    s = spec()
    facts = Facts(addresses=(ON_LO,), fwmark=("ip daddr 192.0.2.120 tcp dport 80 meta mark set 0x4c560001",),
                  record={"addresses": [["lo", "192.0.2.120/32"]]})
    got = [c.description for c in plan_role(s, "BACKUP", facts)]
    assert got[0].startswith("record") or got[0].startswith("nftables: load table arp lvsdr")
    assert got.index("nftables: load table arp lvsdr (2 rules, atomically)") < got.index(
        "nftables: delete table inet lvsdr_fwmark (not MASTER)")


def test_master_marks_then_lifts_arp_rules() -> None:
    s = spec()
    facts = Facts(addresses=(ON_LO, ON_ETH), nft={"input": ("arp daddr ip 192.0.2.120 drop",),
                                                  "output": ("arp saddr ip 192.0.2.120 arp saddr ip set 192.0.2.21",)},
                  record={"addresses": [["lo", "192.0.2.120/32"]]})
    got = [c.description for c in plan_role(s, "MASTER", facts)]
    assert got[0] == "nftables: mark VIP traffic for the fwmark services (1 rules)"
    assert "nftables: delete table arp lvsdr" in got
    # keepalived's VIP on eth0 is never lvsdr's to remove
    assert not any("remove VIP" in d for d in got)


def test_director_without_backends_only_marks() -> None:
    data = tomllib.loads((EXAMPLES / "full.toml").read_text())
    s = director_spec(parse_cluster(data), "lb-a")
    assert s.backend is None
    got = [c.description for c in plan_role(s, "MASTER", Facts())]
    assert got == ["nftables: mark VIP traffic for the fwmark services (1 rules)"]
    assert plan_role(s, "BACKUP", Facts()) == []
