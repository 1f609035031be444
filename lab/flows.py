"""Crafted flows: which real server a director's IPVS picks for each of many
TCP flows, without opening a connection per flow.

Run inside the client's namespace (``python -m lvsdr.lab.flows``): it sends
one SYN per source port to the VIP, addressed at the MAC of one director,
and reads which MAC the SYN-ACK comes from (in direct routing the real
server answers the client itself). The client's kernel then resets each
half-open connection, as it would any unexpected SYN-ACK.

    python -m lvsdr.lab.flows IFNAME VIP PORT DIRECTOR_MAC FIRST_PORT COUNT
    -> JSON {source port: real server MAC}
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

BATCH = 100  # SYNs in flight at once (the real servers' SYN backlog, the socket's buffer)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn_frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    """An Ethernet frame holding an IPv4 TCP SYN."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), sport, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


def picks(ifname: str, vip: str, port: int, director_mac: str, first: int, count: int,
          timeout: float = 10.0) -> dict[int, str]:
    """{source port: MAC of the real server that answered} for ``count`` flows."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root): every SYN-ACK of a batch is kept
    sock.bind((ifname, 0))
    own_mac = sock.getsockname()[4]
    me = _address(ifname)
    dmac = bytes.fromhex(director_mac.replace(":", ""))
    got: dict[int, str] = {}
    vip_raw = socket.inet_aton(vip)
    for start in range(first, first + count, BATCH):
        batch = range(start, min(start + BATCH, first + count))
        for sport in batch:
            sock.send(syn_frame(own_mac, dmac, me, vip, sport, port, sport * 7919))
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while any(p not in got for p in batch) and time.monotonic() < deadline:
            try:
                frame = sock.recv(2048)
            except TimeoutError:
                continue
            ip = frame[14:]
            if len(ip) < 40 or ip[9] != socket.IPPROTO_TCP or ip[12:16] != vip_raw:
                continue
            tcp = ip[(ip[0] & 0x0F) * 4:]
            sport_back, dport_back = struct.unpack("!HH", tcp[:4])
            if sport_back == port and tcp[13] & 0x12 == 0x12 and first <= dport_back < first + count:
                got[dport_back] = frame[6:12].hex(":")
    return got


def _address(ifname: str) -> str:
    import subprocess

    out = json.loads(subprocess.run(["ip", "-4", "-j", "addr", "show", "dev", ifname], capture_output=True,
                                    text=True, check=True).stdout)
    return str(out[0]["addr_info"][0]["local"])


def main(argv: list[str]) -> int:
    ifname, vip, port, mac, first, count = argv
    print(json.dumps(picks(ifname, vip, int(port), mac, int(first), int(count))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
