"""Adopting an ldirectord site on real IPVS: Debian's ldirectord (4.12) runs an
ldirectord.cf against the lab's real servers and builds its IPVS table;
`lvsdr import --from ldirectord` of the same file, rendered and run by
keepalived on the lab's directors, builds the same table (`ipvsadm -Sn`,
modulo order); and `lvsdr import --from ipvsadm` of ldirectord's own
`ipvsadm-save -n` gives the same services again."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lvsdr.lab.netns import ns_run
from lvsdr.lab.topology import TIME_SCALE

from helpers import MEASURED, make_lab, needs_root, poll

pytestmark = [needs_root, pytest.mark.ipvs, pytest.mark.lab]
LDIRECTORD = Path("/usr/sbin/ldirectord")
# the lab's segment: lb1 192.0.2.2, lb2 192.0.2.3 (given to the import), the real servers web1 .11 and web2 .12
CF = """# in the shape of Debian's /usr/share/doc/ldirectord/examples/ldirectord.cf
checktimeout=2
checkinterval=1
quiescent=no
logfile="{log}"

virtual=192.0.2.100:80
\tservicename=Web Site
\treal=192.0.2.11:80 gate 1
\treal=192.0.2.12:80 gate 2
\tservice=http
\tscheduler=wrr
\tpersistent=300
\tprotocol=tcp
\tchecktype=negotiate
\trequest="/"

virtual=192.0.2.100:8080
\treal=192.0.2.11:8080 gate
\treal=192.0.2.12:8080 gate
\tscheduler=rr
\tprotocol=tcp
\tchecktype=connect
"""


def table(ns: str) -> list[str]:
    """`ipvsadm -Sn` in ``ns``, its lines sorted (the order of services and servers is each daemon's own)."""
    return sorted(line for line in ns_run(ns, ["ipvsadm", "-Sn"]).stdout.splitlines() if line.strip())


def complete(lines: list[str]) -> bool:
    return sum(1 for line in lines if line.startswith("-a ")) == 4


def lvsdr_import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lvsdr.cli", "import", "--arp-method", "sysctl", "--address",
                           "lb1=192.0.2.2", "--address", "lb2=192.0.2.3", *args], capture_output=True, text=True,
                          timeout=120, cwd="/")


@pytest.mark.skipif(not LDIRECTORD.exists(), reason="ldirectord is not installed (scripts/setup installs it)")
def test_an_ldirectord_site_imports_to_the_same_ipvs_table(tmp_path: Path) -> None:
    """ldirectord's table (in the client's namespace, beside the lab) and keepalived's on the MASTER running
    lvsdr's import of the same ldirectord.cf are the same lines of `ipvsadm -Sn`; ldirectord's `ipvsadm-save -n`
    imported with --from ipvsadm has the same services, schedulers, persistence and weights."""
    cf = tmp_path / "ldirectord.cf"
    cf.write_text(CF.format(log=tmp_path / "ldirectord.log"))
    imported = lvsdr_import("--from", "ldirectord", "--name", "adopt", "-o", str(tmp_path / "adopt.toml"), str(cf))
    assert imported.returncode == 0, imported.stderr
    with make_lab(tmp_path / "adopt.toml", tmp_path) as lab:
        master = lab.wait_for_master(60 * TIME_SCALE)
        client = lab.state.client.ns
        ld = subprocess.Popen(["ip", "netns", "exec", client, str(LDIRECTORD), "-d", str(cf), "start"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            theirs: list[str] = []
            ours: list[str] = []

            def both() -> bool:
                theirs[:], ours[:] = table(client), table(master.ns)
                return complete(theirs) and complete(ours)

            took = poll(both, "ldirectord's and keepalived's tables, each with its four real servers",
                        60 * TIME_SCALE, interval=1.0, explain=lambda: f"ldirectord: {theirs}\nkeepalived: {ours}")
            dump = ns_run(client, ["ipvsadm-save", "-n"]).stdout
        finally:
            ld.terminate()
            try:
                out, _ = ld.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                ld.kill()
                out, _ = ld.communicate()
            ns_run(client, ["ipvsadm", "-C"], check=False)
        (tmp_path / "ipvsadm-save.txt").write_text(dump)
        MEASURED.append(f"adopting ldirectord: its table and keepalived's on the import, {len(ours)} lines each, "
                        f"{'the same' if ours == theirs else 'DIFFERENT'} ({took:.1f} s to both); ldirectord's "
                        f"`ipvsadm-save -n`: {dump!r}")
        assert ours == theirs, f"ldirectord:\n{chr(10).join(theirs)}\nkeepalived (lvsdr's import):\n" \
                               f"{chr(10).join(ours)}\nldirectord said:\n{out[-3000:]}"
    again = lvsdr_import("--from", "ipvsadm", "--name", "adopt", str(tmp_path / "ipvsadm-save.txt"))
    assert again.returncode == 0, again.stderr
    first = tomllib.loads((tmp_path / "adopt.toml").read_text())["services"]
    second = tomllib.loads(again.stdout)["services"]
    assert served(first) == served(second), (first, second)


def served(services: list[dict[str, object]]) -> list[object]:
    """Each service's address, port, protocol, scheduler and persistence, and its backends' weights."""
    out = []
    for s in services:
        backends = s["backends"]
        assert isinstance(backends, list)
        out.append((tuple(s.get(k) for k in ("vip", "port", "protocol", "scheduler", "persistence_timeout")),
                    sorted((b["server"], b.get("weight", 1)) if isinstance(b, dict) else (b, 1) for b in backends)))
    return sorted(out, key=repr)
