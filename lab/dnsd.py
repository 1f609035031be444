"""The lab's UDP application: a DNS responder that answers every query for an
A record with the server's own address (so the client sees who answered).

    python -m lvsdr.lab.dnsd ADDRESS PORT [PORT...]

Listens on all addresses (IPv4 and IPv6), like the lab's httpd. Test scaffolding.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
import threading


def answer(query: bytes, address: ipaddress.IPv4Address) -> bytes | None:
    """The response to one DNS query (None for anything that is not one)."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack_from("!HHH", query)
    if flags & 0x8000 or qdcount != 1:
        return None
    end = 12
    while end < len(query) and query[end]:
        end += query[end] + 1
    if end + 5 > len(query):
        return None
    question = query[12:end + 5]
    qtype = struct.unpack_from("!H", query, end + 1)[0]
    records = b""
    if qtype in (1, 255):  # A, ANY
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 0, 4) + address.packed
    header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, 1 if records else 0, 0, 0)
    return header + question + records


def serve(sock: socket.socket, address: ipaddress.IPv4Address) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data, address)
        if reply is not None:
            sock.sendto(reply, peer)


def main(argv: list[str]) -> int:
    address = ipaddress.IPv4Address(argv[0])
    socks = []
    for port in (int(p) for p in argv[1:]):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        socks.append(s)
    for s in socks[1:]:
        threading.Thread(target=serve, args=(s, address), daemon=True).start()
    print(f"dnsd {address}: listening on udp {', '.join(argv[1:])}", flush=True)
    serve(socks[0], address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
