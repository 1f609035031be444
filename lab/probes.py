"""What the lab observes on the wire, from the client (shared by tests and demo)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from .netns import ip_json, kill_in_ns, ns_run
from .topology import Lab, Node

_ARP_REPLY = re.compile(r"bytes from ([0-9a-f:]{17}) \(([^)]+)\)")


def arp_responders(lab: Lab, ip: str, count: int = 3, interval: float = 0.2) -> dict[str, int]:
    """Send ``count`` ARP requests for ``ip`` from the client; return every MAC
    that answered with how many replies it sent."""
    client = lab.state.client
    p = ns_run(client.ns, ["arping", "-c", str(count), "-W", str(interval), "-i", client.ifname, ip],
               check=False, timeout=10 + count * interval)
    seen: dict[str, int] = {}
    for mac, addr in _ARP_REPLY.findall(p.stdout):
        if addr == ip:
            seen[mac] = seen.get(mac, 0) + 1
    return seen


def ndp_responders(lab: Lab, ip: str, count: int = 3, interval: float = 0.2) -> dict[str, int]:
    """IPv6: every MAC that answered the client's neighbour solicitations for ``ip``."""
    import sys

    client = lab.state.client
    p = ns_run(client.ns, [sys.executable, "-m", "lvsdr.lab.ndp", ip, client.ifname, str(count), str(interval)],
               check=False, timeout=10 + count * interval)
    seen: dict[str, int] = {}
    for line in p.stdout.splitlines():
        mac = line.split()[0]
        seen[mac] = seen.get(mac, 0) + 1
    return seen


def responders(lab: Lab, ip: str, count: int = 3) -> dict[str, int]:
    """Who answers address resolution for ``ip``: ARP for IPv4, NDP for IPv6."""
    return ndp_responders(lab, ip, count) if ":" in ip else arp_responders(lab, ip, count)


def http_get(lab: Lab, ip: str, port: int = 80, timeout: float = 2.0) -> str | None:
    """Body of GET http://ip:port/ from the client (the answering server's name), or None."""
    host = f"[{ip}]" if ":" in ip else ip
    p = ns_run(lab.state.client.ns, ["curl", "-s", "--max-time", str(timeout), f"http://{host}:{port}/"],
               check=False, timeout=timeout + 5)
    return p.stdout.strip() or None if p.returncode == 0 else None


def neighbour(lab: Lab, ip: str) -> tuple[str | None, str | None]:
    """The client's neighbour entry for ``ip``: (MAC, state)."""
    entries = ip_json(lab.state.client.ns, "neigh", "show", "to", ip)
    for e in entries:
        if e.get("dst") == ip:
            return e.get("lladdr"), (e.get("state") or ["?"])[0]
    return None, None


def mac_owner(lab: Lab, mac: str | None) -> str:
    for n in lab.state.nodes:
        if n.mac == mac:
            return n.name
    return mac or "nobody"


@dataclass
class Failover:
    old_master: str
    new_master: str
    seconds: float  # link down -> client's neighbour entry is new MASTER's and HTTP answers
    arp_seconds: float  # link down -> client's neighbour entry is new MASTER's
    http_answer: str | None


def kill_director(lab: Lab, node: Node) -> None:
    """The director dies as a machine does: keepalived is SIGKILLed (it cannot
    clean up, so its VIPs stay on the interface) and its link goes down."""
    kill_in_ns(node.ns, "keepalived")
    ns_run(node.ns, ["ip", "link", "set", node.ifname, "down"])


def failover(lab: Lab, port: int = 80, timeout: float = 20.0) -> Failover:
    """Kill the MASTER and time the takeover, as the client sees it."""
    old = lab.wait_for_master(10)
    vip = str(lab.cluster.vips[0])
    # the client has talked to the VIP: its neighbour entry points at the old MASTER
    http_get(lab, vip, port)
    t0 = time.monotonic()
    kill_director(lab, old)
    arp_at = None
    answer = None
    new = None
    while time.monotonic() - t0 < timeout:
        mac, _state = neighbour(lab, vip)
        owner = mac_owner(lab, mac)
        if arp_at is None and mac and owner != old.name and any(d.name == owner for d in lab.state.directors):
            arp_at = time.monotonic() - t0
            new = owner
        if arp_at is not None:
            answer = http_get(lab, vip, port, timeout=0.5)
            if answer:
                return Failover(old.name, new or "?", time.monotonic() - t0, arp_at, answer)
        else:
            # keep traffic flowing, as real clients do: that is what makes the
            # client re-resolve a stale entry
            http_get(lab, vip, port, timeout=0.2)
        time.sleep(0.05)
    raise TimeoutError(f"no takeover within {timeout:.0f} s (client neighbour entry for {vip}: "
                       f"{mac_owner(lab, neighbour(lab, vip)[0])})")
