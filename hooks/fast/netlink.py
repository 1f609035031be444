"""Read-only netlink: the node's addresses in ~1 ms, without importing pyroute2.

The failover hook runs on keepalived's transition path, where pyroute2's
~125 ms import would be most of its time. Reading addresses needs one
RTM_GETADDR dump, parsed here; every change still goes through pyroute2 in
the gateway.
"""

from __future__ import annotations

import _socket as socket  # the C module: `socket` costs ~3 ms to import (enum, selectors) on notify's path
import os
import struct

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

if TYPE_CHECKING:
    from lvsdr.generator.node import NodeAddress

NETLINK_ROUTE = 0
RTM_GETADDR = 22
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            break
        out.setdefault(kind, data[offset + 4:offset + length])
        offset += _align(length)
    return out


def addresses() -> tuple[NodeAddress, ...]:
    """Every address of this network namespace, sorted."""
    import ipaddress

    from lvsdr.generator.node import NodeAddress, address_key

    out = [NodeAddress(ifname, ipaddress.ip_interface(cidr), label) for ifname, cidr, label in raw_addresses()]
    return tuple(sorted(out, key=lambda a: (*address_key((a.ifname, a.address)), a.label)))


def raw_addresses() -> list[tuple[str, str, str]]:
    """(ifname, address/prefix, label) of every address, in the kernel's order:
    the notify fast path's read (hooks/fast/replay.py), with no lvsdr types."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        seq = os.getpid() & 0xFFFF
        req = _NLMSGHDR.pack(_NLMSGHDR.size + _IFADDRMSG.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        sock.send(req + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        out: list[tuple[str, str, str]] = []
        names: dict[int, str] = {}
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size or kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    raise OSError(-errno, os.strerror(-errno))
                body = offset + _NLMSGHDR.size
                family, plen, _f, _scope, index = _IFADDRMSG.unpack_from(data, body)
                attrs = _attrs(data, body + _IFADDRMSG.size, offset + length)
                raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
                if raw and family in (socket.AF_INET, socket.AF_INET6):
                    addr = f"{socket.inet_ntop(family, raw)}/{plen}"
                    if index not in names:
                        try:
                            names[index] = socket.if_indextoname(index)
                        except OSError:
                            names[index] = "?"
                    label = attrs.get(IFA_LABEL, b"").split(b"\0", 1)[0].decode(errors="replace")
                    out.append((names[index], addr, label))
                offset += _align(length)
    finally:
        sock.close()
