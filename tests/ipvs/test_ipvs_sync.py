"""Connection sync on failover (lvs_sync_daemon): an established TCP
connection through the VIP survives the MASTER's death when the directors
sync their IPVS connection tables, and does not without it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.topology import TIME_SCALE

from helpers import MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
HERE = Path(__file__).parent
SECONDS = 12  # the stream: 48 lines, one every 0.25 s


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
        curl = subprocess.Popen(["ip", "netns", "exec", lab.state.client.ns, "curl", "-s", "--max-time",
                                 str(int(SECONDS * 3 + 30)), "-o", str(body),
                                 f"http://192.0.2.130/stream?seconds={SECONDS}"])
        try:
            poll(lambda: body.exists() and body.stat().st_size > 0, "the stream started", 10 * TIME_SCALE)
            time.sleep(2)  # the connection is established and synced (sync messages go out every second)
            probes.kill_director(lab, old)
            rc = curl.wait(timeout=SECONDS * 3 + 60)
        finally:
            if curl.poll() is None:
                curl.kill()
        lines = body.read_text().split() if body.exists() else []
        MEASURED.append(f"IPVS {'with' if sync else 'without'} lvs_sync_daemon: a {SECONDS} s stream through the "
                        f"VIP across a failover: curl exit {rc}, {len(lines)} of {SECONDS * 4} lines")
        if sync:
            assert rc == 0 and len(lines) == SECONDS * 4 and len(set(lines)) == 1
        else:
            assert rc != 0 and len(lines) < SECONDS * 4
