"""TEST SCAFFOLDING, not part of the product: keepalived's checker, for an
ECMP cluster on a kernel without IPVS (and a VRRP lab that asks for its quorum
events: `Lab(quorum_checker=True)`).

keepalived's checker process exits at once where the kernel has no IPVS
("IPVS: Can't initialize ipvs"), so natively an ECMP director runs
keepalived VRRP only (``-P``: with no vrrp_instance, its parent process
alone, which the agent follows by its pidfile). This stand-in does, for the
lab's control plane, the part of keepalived's checker that lvsdr's agent
sees: a process named ``keepalived`` (so that the lab's "kill keepalived"
ends it too; the agent counts only root's keepalived binary) that checks
each backend by TCP connect every ``delay_loop`` (at least 1 s), counts the live weight of each
virtual server against its ``quorum`` as keepalived does (no hysteresis),
and writes keepalived's LVS notify FIFO line on every change of quorum,
``VS [192.0.2.150]:tcp:80 DOWN``, as keepalived 2.2.7's notify_fifo_vs
writes it. The IPVS tier (scripts/ipvs-vm) runs the real keepalived instead.

    python -m lvsdr.lab.checker CLUSTER NODE FIFO
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import time

from lvsdr.generator.director import virtual_server_name
from lvsdr.generator.load import load_cluster
from lvsdr.generator.model import Service


def _name_me(name: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME: /proc/self/comm


def alive(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def weight_up(svc: Service, timeout: float) -> int:
    return sum(b.weight for b in svc.backends
               if alive(str(b.address), (svc.checks[0].port if svc.checks else None) or svc.port, timeout))


def main(argv: list[str]) -> int:
    cluster_path, _node, fifo = argv
    _name_me(b"keepalived")
    cluster = load_cluster(cluster_path)
    fd = os.open(fifo, os.O_WRONLY)
    up = {s.name: True for s in cluster.services}  # keepalived starts every virtual server with quorum
    loop = max(1, min((s.delay_loop or 1) for s in cluster.services))
    while True:
        started = time.monotonic()
        for s in cluster.services:
            timeout = float((s.checks[0].connect_timeout if s.checks else None) or 1)
            now = weight_up(s, timeout) >= (s.quorum or 1)
            if now != up[s.name]:
                up[s.name] = now
                os.write(fd, f"VS {virtual_server_name(s)} {'UP' if now else 'DOWN'}\n".encode())
        time.sleep(max(0.0, loop - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
