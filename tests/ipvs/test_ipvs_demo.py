"""`lvsdr lab demo` of an ECMP cluster on real IPVS, over IPv6
(examples/ecmp6.toml): 30 downloads through the VIP, the director carrying
the most of them killed, and every download complete (the other directors
pick the same real servers and take the flows up mid-stream)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers import EXAMPLES, MEASURED, needs_root

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]


def test_ipv6_ecmp_downloads_survive_a_director_killed() -> None:
    """The demo of examples/ecmp6.toml: BGP over IPv6 puts the three directors in the router's route, 30 IPv6
    downloads spread over them, the busiest director killed leaves the route, and 30 of 30 complete (exit 0)."""
    p = subprocess.run([sys.executable, "-m", "lvsdr.cli", "lab", "demo", str(EXAMPLES / "ecmp6.toml")],
                       capture_output=True, text=True, cwd="/", timeout=600)
    out = p.stdout
    spread = re.search(r"connections per director: (.*)", out)
    left = re.search(r"(lb\d) left the router's route after (\d+) ms", out)
    full = re.search(r"(\d+) of 30 completed in full", out)
    MEASURED.append(f"IPVS, IPv6 ECMP demo: connections per director {spread.group(1) if spread else '?'}; "
                    f"{left.group(1) if left else '?'} killed, out of the route after "
                    f"{left.group(2) if left else '?'} ms; {full.group(1) if full else '?'} of 30 downloads "
                    "complete")
    assert p.returncode == 0, out + p.stderr
    assert "data plane: IPVS" in out and "2001:db8::150: lb1, lb2, lb3" in out, out
    assert full is not None and full.group(1) == "30", out
