"""TEST SCAFFOLDING: who answers IPv6 neighbour discovery for an address.

    python -m lvsdr.lab.ndp TARGET IFNAME [COUNT] [WAIT]

Sends COUNT neighbour solicitations for TARGET to its solicited-node
multicast group and prints one line per advertisement received:
`MAC TARGET`. NDP is what IPv6 uses instead of ARP (arping does not speak it).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import sys
import time
from pathlib import Path

ICMP6_NS, ICMP6_NA = 135, 136
OPT_SLLA, OPT_TLLA = 1, 2


def main(argv: list[str]) -> int:
    target = ipaddress.IPv6Address(argv[0])
    ifname = argv[1]
    count = int(argv[2]) if len(argv) > 2 else 3
    wait = float(argv[3]) if len(argv) > 3 else 0.2
    ifindex = socket.if_nametoindex(ifname)
    mac = bytes.fromhex(Path(f"/sys/class/net/{ifname}/address").read_text().strip().replace(":", ""))
    group = ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(target) & 0xFFFFFF))
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    # type, code, checksum (the kernel fills it in), reserved, target, source link-layer option
    ns = struct.pack("!BBHI", ICMP6_NS, 0, 0, 0) + target.packed + struct.pack("!BB", OPT_SLLA, 1) + mac
    for _ in range(count):
        s.sendto(ns, (str(group), 0, 0, ifindex))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data, _src = s.recvfrom(2048)
            if len(data) < 24 or data[0] != ICMP6_NA or data[8:24] != target.packed:
                continue
            opts = data[24:]
            while len(opts) >= 8 and opts[1]:
                if opts[0] == OPT_TLLA:
                    print(f"{opts[2:8].hex(':')} {target}", flush=True)
                opts = opts[opts[1] * 8:]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
