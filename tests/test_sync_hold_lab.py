"""The sync hold rules on a real kernel (generator/director.py, SYNC_TABLE):
two namespaces, a client and a director holding a VIP with no IPVS (this
kernel has none: every segment reaches the rules, as one IPVS did not take
would). A segment of a flow the director does not know is dropped for the
hold and reset after it; without the rules it is reset at once."""

from __future__ import annotations

import ipaddress
import select
import socket
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsdr.generator.director import HOLD_SECONDS, director_spec
from lvsdr.generator.frames import ETH_P_ALL, TCP_RST, parse_reply, tcp_data
from lvsdr.generator.load import parse_cluster
from lvsdr.lab.netns import in_ns, ns_run

from helpers import MEASURED, PREFIX, needs_root

pytestmark = [needs_root, pytest.mark.lab]
CLIENT, VIP = ipaddress.ip_address("192.0.2.50"), ipaddress.ip_address("192.0.2.130")


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """(client namespace, director namespace), a veth between them; the director holds the VIP."""
    client, director = f"{PREFIX}-holdc", f"{PREFIX}-holdd"
    try:
        for ns in (client, director):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                        "netns", director], check=True)
        for ns, address in ((client, f"{CLIENT}/24"), (director, f"{VIP}/24")):
            ns_run(ns, ["ip", "addr", "add", address, "dev", "eth0"], check=True)
            ns_run(ns, ["ip", "link", "set", "eth0", "up"], check=True)
            ns_run(ns, ["ip", "link", "set", "lo", "up"], check=True)
        yield client, director
    finally:
        for ns in (client, director):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def resets(client: str, director: str, sport: int, seconds: float, every: float = 0.25) -> list[float]:
    """A mid-connection segment (ACK, PSH, a request) to VIP:80 from ``sport``, sent from the client every
    ``every`` s for ``seconds`` s, as a retransmitting client would: when (s after the first) a reset came back."""
    mac = {ns: bytes.fromhex(ns_run(ns, ["cat", "/sys/class/net/eth0/address"]).stdout.strip().replace(":", ""))
           for ns in (client, director)}

    def probe() -> list[float]:
        frame = tcp_data(mac[client], mac[director], CLIENT, VIP, sport, 80, 1000, 2000, b"GET / HTTP/1.0\r\n\r\n")
        got: list[float] = []
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
            s.bind(("eth0", 0))
            start = next_send = time.monotonic()
            while (now := time.monotonic()) < start + seconds:
                if now >= next_send:
                    s.send(frame)
                    next_send += every
                if select.select([s], [], [], max(0.0, min(next_send, start + seconds) - now))[0]:
                    reply = parse_reply(s.recv(4096))
                    if reply and reply.src == VIP and reply.dport == sport and reply.flags & TCP_RST:
                        got.append(time.monotonic() - start)
        return got

    return in_ns(client, probe, "the client's probe")


def test_an_unknown_flow_is_held_then_reset(pair: tuple[str, str]) -> None:
    """Without the rules, a segment of a flow the director does not know is reset at once; with the rules (a
    VRRP cluster with sync_daemon), every segment of the flow is dropped for HOLD_SECONDS, then the next is
    reset (the flow is not left hanging); another flow is held anew."""
    client, director = pair
    bare = resets(client, director, 40001, 1.0)
    assert bare and bare[0] < 0.5, bare
    data = tomllib.loads((Path(__file__).parent / "ipvs" / "sync.toml").read_text())
    table = director_spec(parse_cluster(data), "lb1").sync_table()
    assert table is not None
    ns_run(director, ["nft", "-f", "-"], input=table.script(), check=True)
    held = resets(client, director, 40002, HOLD_SECONDS + 1.5)
    other = resets(client, director, 40003, 1.0)
    MEASURED.append(f"sync hold rules: an unknown flow reset after {bare[0] * 1000:.0f} ms without them; with "
                    f"them, its first reset {held[0] if held else float('nan'):.2f} s after its first segment "
                    f"(hold {HOLD_SECONDS} s)")
    assert held and HOLD_SECONDS - 0.3 <= held[0] <= HOLD_SECONDS + 1.0, held
    assert not other, other
