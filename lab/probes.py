"""What the lab observes on the wire, from the client (shared by tests and demo)."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import netns
from .netns import LabError, enter, in_ns, ip_json, kill_in_ns, ns_run, read_net
from .topology import Lab, Node

_ARP_REPLY = re.compile(r"bytes from ([0-9a-f:]{17}) \(([^)]+)\)")


def arp_responders(lab: Lab, ip: str, count: int = 3, interval: float = 0.2, bridge: str = "br0") -> dict[str, int]:
    """Send ``count`` ARP requests for ``ip`` from the client (or the probe of
    segment ``bridge``); return every MAC that answered with how many replies it sent."""
    client = lab.state.probe(bridge)
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


def http_request(lab: Lab, ip: str, port: int = 80, timeout: float = 2.0, tls: bool = False) -> tuple[str | None, str]:
    """GET http[s]://ip:port/ from the client: (the body, which is the
    answering server's name, "") or (None, why): "refused" (a RST, or IPVS's ICMP
    port unreachable where a service has no real server or scheduler),
    "timeout" (one socket operation slower than ``timeout``), "cut", "empty",
    or the error. In this process, from a thread in the client's namespace (a
    curl per request cost a second in the TCG guest); TLS without verifying
    the lab's self-signed certificate, as `curl -k` did."""
    import http.client
    import ssl

    def get() -> tuple[str | None, str]:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(ip, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        try:
            conn.request("GET", "/")
            body = conn.getresponse().read().decode(errors="replace").strip()
        except ConnectionRefusedError:
            return None, "refused"
        except TimeoutError:
            return None, "timeout"
        except (ConnectionError, http.client.HTTPException):
            return None, "cut"
        except (OSError, ValueError) as e:
            return None, str(e) or type(e).__name__
        finally:
            conn.close()
        return (body, "") if body else (None, "empty")

    try:
        return in_ns(lab.state.client.ns, get, f"GET {ip}:{port}")
    except LabError as e:
        return None, str(e)


def http_get(lab: Lab, ip: str, port: int = 80, timeout: float = 2.0, tls: bool = False) -> str | None:
    """Body of GET http[s]://ip:port/ from the client (the answering
    server's name), or None: no answer, a cut connection, or one socket
    operation slower than ``timeout`` (``http_request`` says which)."""
    return http_request(lab, ip, port, timeout, tls)[0]


def neighbour(lab: Lab, ip: str) -> tuple[str | None, str | None]:
    """The client's neighbour entry for ``ip``: (MAC, state)."""
    entries = ip_json(lab.state.client.ns, "neigh", "show", "to", ip)
    for e in entries:
        if e.get("dst") == ip:
            return e.get("lladdr"), (e.get("state") or ["?"])[0]
    return None, None


def mac_owner(lab: Lab, mac: str | None) -> str:
    for n in lab.state.nodes:
        if n.mac == mac or any(link[1] == mac for link in n.links):
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


# -- IPVS (kernels that have it) -------------------------------------------------
def parse_ip_vs(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/ip_vs -> {"TCP 192.0.2.100:80" | "FWM 1280704513": {real server address: weight}}
    (generator/ipvs.py reads it)."""
    from lvsdr.generator.ipvs import parse_proc

    return {(f"FWM {k.port}" if k.protocol == "FWM" else str(k)): {d.address: v.weight for d, v in s.dests.items()}
            for k, s in parse_proc(text).items()}


def ipvs_table(lab: Lab, node: Node) -> dict[str, dict[str, int]]:
    """The IPVS table of a director, as its kernel has it now."""
    return parse_ip_vs(read_net(node.ns, "ip_vs"))


def dns_answers(lab: Lab, ip: str, port: int = 53, count: int = 1, timeout: float = 2.0) -> list[str | None]:
    """``count`` DNS queries (A example.org) from the client, each from a new
    socket: the address each answer carries (the lab's dnsd answers with its
    own), None where no answer came."""
    import json
    import sys

    code = (
        "import json, socket, struct, sys\n"
        "ip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])\n"
        "q = struct.pack('!HHHHHH', 0x1d, 0x0100, 1, 0, 0, 0)\n"
        "q += b'\\x07example\\x03org\\x00' + struct.pack('!HH', 1, 1)\n"
        "out = []\n"
        "for _ in range(count):\n"
        "    s = socket.socket(socket.AF_INET6 if ':' in ip else socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    s.settimeout(timeout)\n"
        "    try:\n"
        "        s.sendto(q, (ip, port)); r = s.recv(512)\n"
        "        out.append(socket.inet_ntoa(r[-4:]) if struct.unpack_from('!H', r, 6)[0] else None)\n"
        "    except OSError:\n"
        "        out.append(None)\n"
        "    finally:\n"
        "        s.close()\n"
        "print(json.dumps(out))\n"
    )
    p = ns_run(lab.state.client.ns, [sys.executable, "-c", code, ip, str(port), str(count), str(timeout)],
               check=False, timeout=30 + count * (timeout + 1))
    return list(json.loads(p.stdout)) if p.returncode == 0 else [None] * count


# -- long TCP streams through a VIP (the lab's httpd serves /stream?seconds=N: 4 lines a second) -------------

class Stream:
    """One download through a VIP from the client, in this process (a
    thread in the client's namespace, where 30 curls cost 30 s of the TCG
    guest's time): GET ``path`` from source port ``local_port``, the body
    written to ``body`` as it comes (what `curl -N -o` did). ``wait`` gives
    curl's exit code for the outcome: 0 the whole body, 7 no connection, 18
    cut short (the server closed early), 28 too slow (``max_time`` in all),
    56 reset or another receive error."""

    def __init__(self, ns: str, ip: str, port: int, path: str, local_port: int, body: Path, max_time: float) -> None:
        import threading

        self.ns, self.ip, self.port, self.path, self.local_port = ns, ip, port, path, local_port
        self.body, self.max_time = body, max_time
        self.code: int | None = None
        self.error = ""  # the exception that ended it, if one did (what a failed start is explained by)
        self.sock: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name=f"stream {local_port}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_time
        try:
            enter(self.ns)
            family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock, open(self.body, "wb") as out:
                self.sock = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", self.local_port))
                sock.settimeout(self.max_time)
                try:
                    sock.connect((self.ip, self.port))
                except TimeoutError as e:
                    self.code, self.error = 28, repr(e)
                    return
                except OSError as e:
                    self.code, self.error = 7, repr(e)
                    return
                host = f"[{self.ip}]" if family == socket.AF_INET6 else self.ip
                sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                self.code = self._receive(sock, out, deadline)
        except TimeoutError as e:
            self.code, self.error = 28, repr(e)
        except OSError as e:
            self.code, self.error = 56, repr(e)

    @staticmethod
    def _receive(sock: socket.socket, out: BinaryIO, deadline: float) -> int:
        head = b""
        while b"\r\n\r\n" not in head:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return 52  # curl's "empty reply from server"
            head += chunk
        header, rest = head.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")[1:]
                       if line.lower().startswith(b"content-length:")), None)
        got = len(rest)
        out.write(rest)
        out.flush()
        while length is None or got < length:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return 0 if length is None else 18
            out.write(chunk)
            out.flush()
            got += len(chunk)
        return 0

    def wait(self, timeout: float) -> int:
        """The exit code once the download has ended (28 if it has not after ``timeout``: it is cut then)."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
            self.thread.join(5)
            return 28
        return self.code if self.code is not None else 56


Streams = list[Stream]


def start_streams(lab: Lab, vip: str, count: int, seconds: int, first_port: int, into: Path) -> Streams:
    """``count`` downloads from the client through ``vip``, each from its own
    source port (so the routers spread them), into files in ``into``."""
    return [Stream(lab.state.client.ns, vip, 80, f"/stream?seconds={seconds}", port, into / f"stream-{port}",
                   seconds * 3 + 60) for port in range(first_port, first_port + count)]


def end_streams(runs: Streams, seconds: int) -> tuple[list[int], list[int]]:
    """Wait for the streams: (curl's exit codes for them, lines each got); full is ``seconds * 4``."""
    codes = [run.wait(timeout=seconds * 3 + 90) for run in runs]
    return codes, [len(run.body.read_text().split()) if run.body.exists() else 0 for run in runs]


def listening(node: Node) -> set[int]:
    """The ports a node listens on (TCP) or has bound (UDP), any family (`ss -lntu`, read in process)."""
    return netns.listening(node.ns)


def carried(node: Node, first_port: int, count: int) -> int:
    """ESTABLISHED connections in ``node``'s IPVS from the client ports of one round of streams."""
    ports = {f"{p:04X}" for p in range(first_port, first_port + count)}
    return sum(1 for line in read_net(node.ns, "ip_vs_conn").splitlines()[1:]
               if len(line.split()) > 7 and line.split()[2] in ports and line.split()[7] == "ESTABLISHED")
