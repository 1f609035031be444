"""Connection sync on failover (lvs_sync_daemon): an established TCP
connection through the VIP survives the MASTER's death when the directors
sync their IPVS connection tables, and does not without it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE

from helpers import MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
HERE = Path(__file__).parent
SECONDS = 16  # the stream: 64 lines, one every 0.25 s


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "no-sync"])
def test_established_connection_survives_failover_with_sync(tmp_path: Path, sync: bool) -> None:
    path = tmp_path / "sync.toml"
    text = (HERE / "sync.toml").read_text()
    path.write_text(text if sync else text.replace("sync_daemon = true\n", ""))
    with make_lab(path, tmp_path, hook="fifo") as lab:
        old = lab.wait_for_master(30 * TIME_SCALE)
        poll(lambda: set(probes.ipvs_table(lab, old).get("TCP 192.0.2.130:80", {})) == {"192.0.2.11", "192.0.2.12"},
             "both backends checked in", 30 * TIME_SCALE, interval=0.5)
        body = tmp_path / "body"
        # -N: curl writes each line as it comes (without it, the file stays empty to the end)
        curl = subprocess.Popen(["ip", "netns", "exec", lab.state.client.ns, "curl", "-s", "-N", "--max-time",
                                 str(int(SECONDS * 3 + 30)), "-o", str(body),
                                 f"http://192.0.2.130/stream?seconds={SECONDS}"])
        try:
            poll(lambda: body.exists() and body.stat().st_size > 0, "the stream started", 10 * TIME_SCALE)
            backup = next(d for d in lab.state.directors if d.name != old.name)
            if sync:  # the BACKUP has the connection in its table before the MASTER dies
                poll(lambda: "ESTABLISHED" in ns_run(backup.ns, ["cat", "/proc/net/ip_vs_conn"]).stdout,
                     "the connection synced to the BACKUP", 10 * TIME_SCALE, interval=0.3)
            else:
                time.sleep(2)
            at_kill = len(body.read_text().split())
            probes.kill_director(lab, old)
            rc = curl.wait(timeout=SECONDS * 3 + 60)
        finally:
            if curl.poll() is None:
                curl.kill()
        lines = body.read_text().split() if body.exists() else []
        MEASURED.append(f"IPVS {'with' if sync else 'without'} lvs_sync_daemon: a {SECONDS} s stream through the "
                        f"VIP, the MASTER killed at line {at_kill}: curl exit {rc}, {len(lines)} of {SECONDS * 4}")
        assert at_kill < SECONDS * 4 - 24, "the failover came too late in the stream to tell"
        if sync:
            assert rc == 0 and len(lines) == SECONDS * 4 and len(set(lines)) == 1
        else:
            assert rc != 0 and len(lines) < SECONDS * 4
