"""The director's firewall on a live lab (examples/web.toml, real keepalived): both directors behind a
default-drop input chain split VRRP (each hears no advert and takes the VIP); with lvsdr's rules
(`lvsdr render --firewall nftables`) included in that chain, one MASTER again, the clients served through the
VIP, and a failover as fast as without a firewall."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE, Lab

from helpers import EXAMPLES, MEASURED, lvsdr_in, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.lab]
VIP = "192.0.2.100"


def holders(lab: Lab) -> list[str]:
    """The directors holding the VIP on their interface."""
    return sorted(d.name for d in lab.state.directors
                  if f"{VIP}/" in ns_run(d.ns, ["ip", "-o", "addr", "show", "dev", d.ifname]).stdout)


def default_drop(lab: Lab, rules: dict[str, Path] | None) -> None:
    """Each director's input chain drops by default (loopback aside), with lvsdr's rules included when given."""
    for d in lab.state.directors:
        include = f'    include "{rules[d.name]}"\n' if rules else ""
        ns_run(d.ns, ["nft", "delete", "table", "inet", "lvsdrtest_dflt"], check=False)
        ns_run(d.ns, ["nft", "-f", "-"], input="table inet lvsdrtest_dflt {\n  chain input {\n    type filter hook "
               f"input priority 0; policy drop;\n    iif lo accept\n{include}  }}\n}}\n")


def test_default_drop_splits_vrrp_and_lvsdrs_rules_make_one_master(tmp_path: Path) -> None:
    """Default-drop on both directors: within three adverts (and a margin) both hold the VIP, `lvsdr audit` from
    the client names the split brain and `lvsdr doctor` the chain that drops VRRP. lvsdr's rules included: one
    holder again, the client answered through the VIP, doctor content with it; the MASTER killed: the other takes
    over within the same bound as without a firewall."""
    with make_lab(EXAMPLES / "web.toml", tmp_path) as lab:
        lab.wait_for_master(30 * TIME_SCALE)
        default_drop(lab, None)
        split = poll(lambda: holders(lab) == ["lb1", "lb2"], "both directors hold the VIP (a split)",
                     20 * TIME_SCALE, interval=0.2)
        lb1 = lab.state.node("lb1")

        def doctor() -> str:
            return ns_run(lb1.ns, [lab._console(), "doctor", lab.cluster_path, "--node", "lb1", "--pidfile",
                                   str(lab.pidfile(lb1))], check=False).stdout

        assert "FAIL  the input chain inet lvsdrtest_dflt input drops VRRP adverts (protocol 112)" in doctor()
        seen = ns_run(lab.state.client.ns, [lab._console(), "audit", lab.cluster_path], check=False)
        assert seen.returncode == 1 and "split brain: lb1 and lb2 both advertise as MASTER" in seen.stdout, seen
        rules = {}
        for d in lab.state.directors:
            r = lvsdr_in(d.ns, "render", lab.cluster_path, "--node", d.name, "--firewall", "nftables")
            assert r.returncode == 0, r.stderr
            rules[d.name] = tmp_path / f"firewall-{d.name}.nft"
            rules[d.name].write_text(r.stdout)
        default_drop(lab, rules)
        one = poll(lambda: len(holders(lab)) == 1, "one holder again", 20 * TIME_SCALE, interval=0.2)
        time.sleep(3)  # three adverts: it stays one
        assert len(holders(lab)) == 1, holders(lab)
        # the client's ARP entry for the VIP is whichever director announced last during the split: the remaining
        # MASTER re-announces only if it hears the other's lower-priority advert before that one yields (a race;
        # seen once with the audit above), else the entry stays on the loser until it ages out (`cluster.
        # garp_master_refresh` bounds that in production). Resolved afresh here: the test is of the rules.
        ns_run(lab.state.client.ns, ["ip", "neigh", "flush", "to", VIP], check=False)
        assert probes.http_get(lab, VIP, timeout=3) in ("web1", "web2")
        assert "ok    the input chains let in what this director needs" in doctor(), doctor()
        f = probes.failover(lab)
        MEASURED.append(f"firewall: default-drop on both directors split VRRP in {split:.1f} s; with lvsdr's nft "
                        f"rules one holder {one:.1f} s after; failover behind them: the client's ARP entry moved "
                        f"after {f.arp_seconds:.2f} s, HTTP answered after {f.seconds:.2f} s")
        assert f.http_answer in ("web1", "web2") and f.seconds < 10 * TIME_SCALE, f
