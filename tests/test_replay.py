"""`lvsdr notify`'s fast path (hooks/replay.py), in a scratch namespace: once
the full path has reconciled both roles, a transition replays the recorded
state, after which the full planner finds nothing to do; a changed cluster
file or a node that is not in a recorded state takes the full path."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from helpers import EXAMPLES, lvsdr_in, needs_root

pytestmark = [needs_root]
VIP = "192.0.2.120"


def notify(ns: str, cluster: Path, state: str) -> dict[str, Any]:
    r = lvsdr_in(ns, "notify", str(cluster), "--node", "node1", "INSTANCE", "VI_pair", state, "200",
                 env={"LVSDR_LOG": "stderr"})
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if '"vrrp transition"' in ln)
    event: dict[str, Any] = json.loads(line)
    return event


def vip(ns: str, on: bool) -> None:
    subprocess.run(["ip", "-n", ns, "addr", "add" if on else "del", f"{VIP}/32", "dev", "eth0"], check=True)


def planned(ns: str, cluster: Path) -> int:
    code = ("from pathlib import Path\n"
            "from lvsdr.generator.load import load_cluster\n"
            "from lvsdr.generator.director import director_spec, observed_role, plan_role\n"
            "from lvsdr.hooks.facts import read_director_facts\n"
            f"c = load_cluster({str(cluster)!r}); s = director_spec(c, 'node1')\n"
            "f = read_director_facts(s.backend, Path(c.state_dir))\n"
            "print(len(plan_role(s, observed_role(s, f.addresses), f)))\n")
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    return int(p.stdout)


def test_transitions_replay_and_leave_nothing_to_plan(scratch_netns: str, tmp_path: Path) -> None:
    ns = scratch_netns
    subprocess.run(["ip", "-n", ns, "addr", "add", "192.0.2.21/24", "dev", "eth0"], check=True)
    data = tomllib.loads((EXAMPLES / "pair.toml").read_text())
    data["cluster"]["state_dir"] = str(tmp_path / "state")
    cluster = tmp_path / "pair.json"
    cluster.write_text(json.dumps(data))
    # the full path, once per role: it records each role's state
    first = notify(ns, cluster, "BACKUP")
    vip(ns, True)
    second = notify(ns, cluster, "MASTER")
    assert "replayed" not in first and "replayed" not in second and second["changes"]
    # from now on the transitions replay, and the full planner agrees with the result
    for on, role in ((False, "BACKUP"), (True, "MASTER"), (False, "BACKUP")):
        vip(ns, on)
        event = notify(ns, cluster, role)
        assert event.get("replayed") is True and event["observed_role"] == role and event["changes"]
        assert planned(ns, cluster) == 0
        again = notify(ns, cluster, role)
        assert again.get("replayed") is True and again["changes"] == []
    # not a recorded state (the VIP gone from lo by hand): the full path puts it back
    subprocess.run(["ip", "-n", ns, "addr", "del", f"{VIP}/32", "dev", "lo"], check=True)
    event = notify(ns, cluster, "BACKUP")
    assert "replayed" not in event and any("add VIP" in c for c in event["changes"])
    # a changed cluster file: its key no longer matches, the full path runs (and records anew)
    cluster.write_text(json.dumps(data, indent=2))
    vip(ns, True)
    event = notify(ns, cluster, "MASTER")
    assert "replayed" not in event and event["observed_role"] == "MASTER"
    assert planned(ns, cluster) == 0
