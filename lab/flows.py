"""Crafted flows: which real server a director's IPVS picks for each of many
TCP flows, without opening a connection per flow.

Run inside the client's namespace (``python -m lvsdr.lab.flows``): it sends
one SYN per source port to the VIP (built as `lvsdr audit` builds its probes,
hooks/wire.py), addressed at the MAC of one director,
and reads which MAC the SYN-ACK comes from (in direct routing the real
server answers the client itself). The client's kernel then resets each
half-open connection, as it would any unexpected SYN-ACK.

    python -m lvsdr.lab.flows IFNAME VIP PORT DIRECTOR_MAC FIRST_PORT COUNT
    -> JSON {source port: real server MAC}
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys

BATCH = 100  # SYNs in flight at once (the real servers' SYN backlog, the socket's buffer)


def picks(ifname: str, vip: str, port: int, director_mac: str, first: int, count: int,
          timeout: float = 10.0) -> dict[int, str]:
    """{source port: MAC of the real server that answered} for ``count`` flows."""
    from lvsdr.hooks.wire import flow_picks

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root): every SYN-ACK of a batch is kept
    sock.bind((ifname, 0))
    try:
        return flow_picks(sock, sock.getsockname()[4], bytes.fromhex(director_mac.replace(":", "")),
                          ipaddress.IPv4Address(_address(ifname)), ipaddress.IPv4Address(vip), port,
                          range(first, first + count), timeout, BATCH)
    finally:
        sock.close()


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
