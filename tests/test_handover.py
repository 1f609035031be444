"""VRRP that follows service health, the pure part (generator/handover.py):
the weight each instance tracks, the files, the refusal of priorities that
leave no room, and what keepalived.conf carries."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from lvsdr.errors import ValidationError
from lvsdr.generator.handover import handover, room
from lvsdr.generator.keepalived import Wiring, render_keepalived
from lvsdr.generator.load import parse_cluster

from helpers import EXAMPLES


def data(example: str = "web.toml") -> dict[str, Any]:
    return tomllib.loads((EXAMPLES / example).read_text())


def test_a_director_without_quorum_ranks_below_every_director_with_it_and_all_without_keep_their_order() -> None:
    """The weight is the priority gap + 1: the highest without quorum drops under the lowest with it; every
    director without quorum keeps the highest highest (keepalived's floor of 1 only orders the lower ones)."""
    for prios in ([150, 100], [200, 100], [254, 3], [200, 150, 100], [101, 100]):
        d = data()
        d["directors"] = [{"name": f"lb{i}", "address": f"192.0.2.{i + 2}", "priority": p}
                          for i, p in enumerate(prios)]
        c = parse_cluster(d)
        h = handover(c, "lb0")
        assert h is not None
        k = h.instances[0].weight
        top, low = max(prios), min(prios)
        assert top - k < low  # handed over
        after = sorted((max(1, p - k) for p in prios), reverse=True)
        assert after[0] == low - 1 and after[0] > after[1]  # all without quorum: the highest stays highest alone


def test_priorities_without_room_are_refused_and_the_key_turns_it_off() -> None:
    """`quorum_handover = true` with a lowest priority under 3 is one line naming the key; left at its default there,
    the hand-over is off (the priorities stand as they are), as with `false`; the key in an ECMP cluster is refused
    as a VRRP setting."""
    d = data()
    d["directors"][1]["priority"] = 2
    d["cluster"]["quorum_handover"] = True
    with pytest.raises(ValidationError) as e:
        parse_cluster(d)
    assert str(e.value).count("\n") == 0 and "cluster.quorum_handover: VI_web: lowest priority 2" in str(e.value)
    for setting in (False, None):
        if setting is None:
            del d["cluster"]["quorum_handover"]
        else:
            d["cluster"]["quorum_handover"] = setting
        c = parse_cluster(d)
        assert not c.quorum_handover and handover(c, "lb1") is None and room(c)
        assert "lvsdr_handover" not in render_keepalived(c, "lb1", "x")
    e2 = data("ecmp.toml")
    e2["cluster"]["quorum_handover"] = True
    with pytest.raises(ValidationError, match="quorum_handover"):
        parse_cluster(e2)


def test_each_instance_tracks_the_virtual_servers_carrying_its_vips() -> None:
    """active-active: each instance's file says 1 only for a virtual server of its own VIPs; the files are per
    director; keepalived.conf tracks each with minus its weight, and reads quorum events on the agent's FIFO."""
    c = parse_cluster(data("active-active.toml"))
    h = handover(c, "lb1")
    assert h is not None
    files = {i.instance: i.file for i in h.instances}
    assert files == {"VI_aa": "/run/lvsdr/handover-aa-lb1-VI_aa", "VI_aa_shop": "/run/lvsdr/handover-aa-lb1-VI_aa_shop"}
    assert h.values({"[192.0.2.101]:tcp:80"}) == {files["VI_aa"]: False, files["VI_aa_shop"]: True}
    # the hold by rank: lb1 is the highest in VI_aa (5 s), the lower in VI_aa_shop (10 s), lb2 the other way round
    h2 = handover(c, "lb2")
    assert h2 is not None
    assert [(i.instance, i.hold) for i in h.instances] == [("VI_aa", 5.0), ("VI_aa_shop", 10.0)]
    assert [(i.instance, i.hold) for i in h2.instances] == [("VI_aa", 10.0), ("VI_aa_shop", 5.0)]
    text = render_keepalived(c, "lb1", "x")
    assert "    lvs_notify_fifo /run/lvsdr/notify.fifo\n" in text
    assert 'track_file lvsdr_handover_aa {\n    file "/run/lvsdr/handover-aa-lb1-VI_aa"\n}' in text
    inst = text[text.index("vrrp_instance VI_aa {"):]
    assert "    track_file {\n        lvsdr_handover_aa weight -51\n    }" in inst[:inst.index("\n}\n")]


def test_without_the_agent_nothing_is_tracked() -> None:
    """`hook = "notify"` (no agent reads the FIFO, nobody writes the files): no hand-over, no LVS FIFO."""
    c = parse_cluster(data())
    text = render_keepalived(c, "lb1", "x", Wiring.from_cluster(c, hook="notify"))
    assert "lvsdr_handover" not in text and "lvs_notify_fifo" not in text
