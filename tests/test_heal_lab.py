"""`lvsdr realserver watch` on live lab real servers, one per ARP method: it
applies at start, heals each method's own way of being undone (and a VIP
deleted from lo) driven by events, never fights `lvsdr realserver remove`,
and ends cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lvsdr.lab.topology import TIME_SCALE, Lab

from helpers import MEASURED, FirewalldInNetns, make_lab, needs_root, poll, write_cluster

pytestmark = [needs_root, pytest.mark.lab]

VIP = "192.0.2.100"
# each method's way of being undone by hand, as operators and tools do it
FAULTS = {
    "sysctl": [["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.eth0.arp_ignore=0"]],
    "arptables": [["arptables", "-F"]],
    "nftables": [["nft", "flush", "ruleset"]],
    # the nat table emptied in one commit (rules and chains), waiting for xtables' lock: as two commands (-F, then
    # -X) the healer could put its rules back, holding the lock, in between, and the -X failed (exit 4)
    "iptables": [["sh", "-c", "printf '*nat\\nCOMMIT\\n' | iptables-restore -w 10"]],
    "firewalld": [["sh", "-c", "for p in $(firewall-cmd --permanent --zone=public --list-forward-ports); do "
                   "firewall-cmd -q --permanent --zone=public --remove-forward-port=$p; done; "
                   "firewall-cmd -q --reload"]],
}
HOLDS_VIP = ("sysctl", "arptables", "nftables")  # the redirect methods hold no VIP
DEL_VIP = ["sh", "-c", f"for dev in $(ip -o addr show to {VIP} | cut -d' ' -f2); do ip addr del {VIP}/32 dev $dev; "
           "done"]


class Watcher:
    """`lvsdr realserver watch` on web1, where its tools (and firewalld's D-Bus) are."""

    def __init__(self, lab: Lab, prefix: list[str], sandbox: list[str], log: Path) -> None:
        self.lab, self.prefix, self.log = lab, prefix, log
        self.record = lab.state_dir / "realserver-watch-web-web1.json"
        self.proc = subprocess.Popen(
            [*prefix, *sandbox, sys.executable, "-m", "lvsdr.cli", "realserver", "watch", lab.cluster_path,
             "--node", "web1"], stdout=subprocess.DEVNULL, stderr=open(log, "wb"),  # noqa: SIM115
            env={**os.environ, "LVSDR_LOG": "stderr"}, cwd="/", start_new_session=True)

    def counts(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.record.read_text()))
        except (OSError, ValueError):
            return {}

    def run(self, cmd: list[str]) -> None:
        subprocess.run([*self.prefix, *cmd], check=True, capture_output=True, timeout=60 * TIME_SCALE)

    def lvsdr(self, *args: str) -> str:
        r = subprocess.run([*self.prefix, sys.executable, "-m", "lvsdr.cli", *args, self.lab.cluster_path, "--node",
                            "web1"], capture_output=True, text=True, check=False, cwd="/", timeout=120 * TIME_SCALE)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def stop(self) -> int | None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10 * TIME_SCALE)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


@pytest.mark.parametrize("method", list(FAULTS))
def test_the_watcher_heals_each_method_and_leaves_remove_alone(method: str, tmp_path: Path) -> None:
    """web1 under `realserver watch`: applied at start; each way of undoing its method by hand, and its VIP
    deleted from lo, healed within the deadline (the time recorded); after `realserver remove` nothing comes
    back; SIGTERM ends it with status 0."""
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(make_lab(write_cluster(tmp_path, method=method), tmp_path, suppression="skip"))
        web1 = lab.state.node("web1")
        prefix, sandbox = ["ip", "netns", "exec", web1.ns], lab.sandboxed("lvsdr-realserver-watch@.service")
        if method == "firewalld":  # in firewalld's private mount namespace, where its D-Bus is (no sandbox there)
            fw = FirewalldInNetns(web1.ns, tmp_path / "fw")
            stack.callback(fw.stop)
            prefix, sandbox = fw.prefix, []
        w = Watcher(lab, prefix, sandbox, tmp_path / "watch.log")
        stack.callback(w.stop)

        def explain() -> str:
            return w.log.read_text()[-3000:]

        poll(lambda: w.counts().get("passes", 0) >= 1, "applied at start", 60 * TIME_SCALE, explain=explain)
        assert "nothing to do" in w.lvsdr("realserver", "plan"), explain()
        took = {}
        for name, cmds in (("undone", FAULTS[method]),
                           *((("VIP deleted", [DEL_VIP]),) if method in HOLDS_VIP else ())):
            healed = w.counts().get("healed", 0)
            t0 = time.monotonic()
            for cmd in cmds:
                w.run(cmd)
            poll(lambda h=healed: w.counts().get("healed", 0) > h, f"{method}: healed after {name}",  # type: ignore[misc]
                 20 * TIME_SCALE, interval=0.02, explain=explain)
            took[name] = time.monotonic() - t0
            assert "nothing to do" in w.lvsdr("realserver", "plan"), explain()
        metrics = w.lvsdr("metrics")
        assert f"lvsdr_realserver_healed_total {float(w.counts()['healed'])}" in metrics, metrics
        # remove: the watcher leaves it removed
        w.lvsdr("realserver", "remove")
        time.sleep(2 * TIME_SCALE)
        assert "nothing to do" not in w.lvsdr("realserver", "plan"), explain()
        assert "removed by `lvsdr realserver remove`" in w.log.read_text(), explain()
        assert w.stop() == 0, explain()
        assert '"event": "stopped"' in w.log.read_text(), explain()
        figures = ", ".join(f"{k} in {v:.2f} s" for k, v in took.items())
        MEASURED.append(f"realserver watch ({method}): healed {figures} (target 2 s)")
