"""The fast netlink address reader agrees with iproute2."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import needs_root


@needs_root
def test_addresses_match_ip(scratch_netns: str) -> None:
    """The one netlink dump reads the same addresses as ip addr."""
    ns = scratch_netns
    subprocess.run(["ip", "-n", ns, "addr", "add", "192.0.2.7/24", "dev", "eth0", "label", "eth0:lvsdr"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", "2001:db8::7/128", "dev", "eth1", "nodad"], check=True)
    try:
        got = json.loads(subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             "import json; from lvsdr.hooks.fast.netlink import addresses; "
             "print(json.dumps([[a.ifname, str(a.address), a.label] for a in addresses()]))"],
            capture_output=True, text=True, check=True).stdout)
        ip = json.loads(subprocess.run(["ip", "-n", ns, "-j", "addr"], capture_output=True, text=True,
                                       check=True).stdout)
        want = sorted([link["ifname"], f"{a['local']}/{a['prefixlen']}", a.get("label", "")]
                      for link in ip for a in link.get("addr_info", []))
        assert sorted(got) == want
        assert ["eth0", "192.0.2.7/24", "eth0:lvsdr"] in got
    finally:
        subprocess.run(["ip", "-n", ns, "addr", "del", "192.0.2.7/24", "dev", "eth0"], check=False)
        subprocess.run(["ip", "-n", ns, "addr", "del", "2001:db8::7/128", "dev", "eth1"], check=False)
