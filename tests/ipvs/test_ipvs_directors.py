"""Directors that are also backends (fwmark services) on real IPVS: both
directors and the real server serve their share, the BACKUP forwards
nothing again (no loop), before and after failover."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run, read_net
from lvsdr.lab.topology import TIME_SCALE, Lab, Node

from helpers import EXAMPLES, MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
MARK = "FWM 1280704513"  # the first automatic fwmark, 0x4c560001
NODE1, NODE2, WEB1 = "192.0.2.21", "192.0.2.22", "192.0.2.11"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("pair")
    path = tmp / "pair.toml"
    path.write_text((EXAMPLES / "pair.toml").read_text().replace('port = 80\n', 'port = 80\nscheduler = "rr"\n'
                                                                 'delay_loop = 2\n'))
    with make_lab(path, tmp, hook="fifo") as lab:
        yield lab


def marks(node: Node) -> bool:
    return "lvsdr_fwmark" in ns_run(node.ns, ["nft", "list", "tables"]).stdout


def serves_vip_locally(node: Node) -> bool:
    """The BACKUP role of a director that is also a backend: the VIP on lo."""
    return "192.0.2.120" in ns_run(node.ns, ["ip", "addr", "show", "dev", "lo"]).stdout


def forwarded(node: Node) -> int:
    """Connections this director's IPVS has scheduled (its connection table)."""
    lines = read_net(node.ns, "ip_vs_conn").splitlines()
    return len([ln for ln in lines[1:] if ln.strip()])


def spread(lab: Lab, n: int) -> dict[str | None, int]:
    return dict(collections.Counter(probes.http_get(lab, "192.0.2.120", timeout=5) for _ in range(n)))


def test_both_directors_and_the_real_server_share_the_traffic(lab: Lab) -> None:
    """Directors that are also backends take their share of the traffic beside the real server, through the
    MASTER's IPVS."""
    node1, node2 = lab.state.node("node1"), lab.state.node("node2")
    assert lab.wait_for_master(30 * TIME_SCALE).name == "node1"
    # the hook's role switch must be done (in a slow guest it takes seconds): until the
    # MASTER marks VIP traffic, its fwmark service sees none and it serves every request itself
    poll(lambda: marks(node1) and not marks(node2) and serves_vip_locally(node2),
         "MASTER marks, BACKUP does not and serves the VIP from lo", 60 * TIME_SCALE, interval=0.5)
    poll(lambda: set(probes.ipvs_table(lab, node1).get(MARK, {})) == {NODE1, NODE2, WEB1},
         "every backend checked in", 30 * TIME_SCALE, interval=0.5)
    got = spread(lab, 24)
    MEASURED.append(f"IPVS fwmark, two directors and a real server as backends (rr), 24 requests: {got}")
    assert got == {"node1": 8, "node2": 8, "web1": 8}
    assert forwarded(node2) == 0, "the BACKUP forwarded what the MASTER sent it (a loop)"


def test_after_failover_the_survivors_share_it(lab: Lab) -> None:
    """After the MASTER dies, the surviving director and the real server share the traffic."""
    node1, node2 = lab.state.node("node1"), lab.state.node("node2")
    probes.kill_director(lab, node1)
    poll(lambda: getattr(lab.master(), "name", None) == "node2", "node2 took the VIP", 20 * TIME_SCALE,
         interval=0.2)
    poll(lambda: marks(node2), "node2 marks VIP traffic", 60 * TIME_SCALE, interval=0.5)
    poll(lambda: set(probes.ipvs_table(lab, node2).get(MARK, {})) == {NODE2, WEB1},
         "the dead director checked out", 30 * TIME_SCALE, interval=0.5)
    got = spread(lab, 24)
    MEASURED.append(f"IPVS fwmark after failover (node1 dead), 24 requests: {got}")
    assert got == {"node2": 12, "web1": 12}
