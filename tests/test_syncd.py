"""The sync daemon facts a VRRP switchover reads (hooks/syncd.py): ipvsadm's
listing of the kernel's sync daemons, and the wait for the connections held."""

from __future__ import annotations

import ipaddress

from lvsdr.hooks.syncd import SETTLED, KernelSyncDaemon, parse_daemons, settle

from helpers import DATA

VIP = ipaddress.ip_address("192.0.2.130")


def test_ipvsadm_daemon_listing_parses_to_the_daemons_it_names() -> None:
    """`ipvsadm -L --daemon` as captured in the VM on a MASTER (keepalived runs the master daemon there) parses
    to it; a backup daemon's line, ipvsadm's older short form and no daemon parse too."""
    got = parse_daemons((DATA / "facts" / "ipvsadm-L-daemon.txt").read_text())
    assert got == (KernelSyncDaemon("master", "eth0", 63),)
    assert parse_daemons("backup sync daemon (mcast=eth0, syncid=63, maxlen=1472, group=224.0.0.81, port=8848)\n"
                         ) == (KernelSyncDaemon("backup", "eth0", 63),)
    assert parse_daemons("master sync daemon (mcast=eth1, syncid=7)\n") == (KernelSyncDaemon("master", "eth1", 7),)
    assert parse_daemons("") == ()


def test_settle_waits_for_the_connections_held_at_its_start_only() -> None:
    """The wait covers each connection present at the start until it has been there SETTLED s or ended; one
    that opens during the wait does not extend it (a request loop would make it endless)."""
    clock = [0.0]
    readings = {0.0: {"a", "b"}}

    def read(_vips: object) -> set[str]:
        if clock[0] < 1.0:
            return readings[0.0]
        return {"a", "c"} if clock[0] < SETTLED + 5 else set()  # b ended, c is new

    def sleep(s: float) -> None:
        clock[0] += s

    assert settle({VIP}, read, clock=lambda: clock[0], sleep=sleep) == 2
    assert SETTLED <= clock[0] < SETTLED + 0.6
    clock[0] = 0.0
    assert settle({VIP}, lambda _v: set(), clock=lambda: clock[0], sleep=sleep) == 0 and clock[0] == 0.0
