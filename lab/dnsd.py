"""The lab's UDP application: a DNS responder that answers every query for an
A record with the server's own address (so the client sees who answered).

    python -m lvsdr.lab.dnsd ADDRESS PORT [PORT...]

Listens on all addresses (IPv4 and IPv6), like the lab's httpd, and answers
from the address each query came to (a VIP on lo). Test scaffolding.
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


IP_PKTINFO = 8  # Linux's (Python names IPV6_RECVPKTINFO and IPV6_PKTINFO, not this one)


def serve(sock: socket.socket, address: ipaddress.IPv4Address) -> None:
    """Answer each query from the address it was sent to, as a DNS server behind direct routing must (a VIP on lo:
    an answer from the server's own address is not the one the client asked)."""
    v6 = sock.family == socket.AF_INET6
    level, kind = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO) if v6 else (socket.IPPROTO_IP, IP_PKTINFO)
    while True:
        data, ancillary, _, peer = sock.recvmsg(4096, 256)
        reply = answer(data, address)
        if reply is None:
            continue
        cmsgs = []
        for lvl, typ, info in ancillary:
            if (lvl, typ) == (level, kind):  # in6_pktinfo: addr, ifindex; in_pktinfo: ifindex, spec_dst, addr
                cmsgs = [(level, kind, info[:16] + bytes(4) if v6 else bytes(4) + info[8:12] + bytes(4))]
        sock.sendmsg([reply], cmsgs, 0, peer)


def main(argv: list[str]) -> int:
    address = ipaddress.IPv4Address(argv[0])
    socks = []
    for port in (int(p) for p in argv[1:]):
        for family in (socket.AF_INET, socket.AF_INET6):
            s = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            try:
                s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
            except OSError:  # no IPv6 in this namespace
                s.close()
                continue
            socks.append(s)
    for s in socks[1:]:
        threading.Thread(target=serve, args=(s, address), daemon=True).start()
    print(f"dnsd {address}: listening on udp {', '.join(argv[1:])}", flush=True)
    serve(socks[0], address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
