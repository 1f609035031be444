"""The lab itself: up/down hygiene, the ARP problem made visible, failover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lvsdr.lab import probes
from lvsdr.lab.netns import LabError, run
from lvsdr.lab.topology import addresses_of

from helpers import (
    EXAMPLES,
    MEASURED,
    PREFIX,
    make_lab,
    needs_root,
    our_namespaces,
    poll,
    processes_in_labs,
    write_cluster,
)

pytestmark = [needs_root, pytest.mark.lab]


@pytest.mark.long
def test_up_down_ten_times_leaves_nothing(tmp_path: Path) -> None:
    """Bringing the lab up and down ten times leaves no namespace, process or file behind."""
    path = write_cluster(tmp_path)
    for _ in range(10):
        lab = make_lab(path, tmp_path)
        lab.up(wait_master=0)
        assert len(our_namespaces()) == 6  # switch, client, 2 directors, 2 real servers
        lab.down()
        assert our_namespaces() == []
        assert processes_in_labs() == []
        assert not lab.state_dir.exists()


def test_failure_inside_the_lab_still_tears_down(tmp_path: Path) -> None:
    """An exception inside the lab still tears everything down."""
    lab = make_lab(write_cluster(tmp_path), tmp_path)
    with pytest.raises(RuntimeError, match="on purpose"), lab:
        assert our_namespaces()
        raise RuntimeError("fails on purpose")
    assert our_namespaces() == [] and processes_in_labs() == []
    assert not lab.state_dir.exists()


def test_failed_up_tears_down(tmp_path: Path) -> None:
    """A lab that fails to come up tears down what it made."""
    lab = make_lab(write_cluster(tmp_path), tmp_path)
    with pytest.raises(LabError, match="no director took the VIPs"):
        lab.up(wait_master=0.01)  # too short for any VRRP election
    assert our_namespaces() == [] and processes_in_labs() == []


def test_refuses_a_foreign_namespace(tmp_path: Path) -> None:
    """The lab refuses to take over a namespace it did not make."""
    lab = make_lab(write_cluster(tmp_path), tmp_path)
    foreign = f"{PREFIX}-web-lb2"
    run(["ip", "netns", "add", foreign])
    try:
        with pytest.raises(LabError, match=f"{foreign} exists and is not this lab's"):
            lab.up()
        assert our_namespaces() == [foreign]  # not touched, not deleted
    finally:
        run(["ip", "netns", "del", foreign])


def test_without_suppression_real_servers_answer_arp(tmp_path: Path) -> None:
    """The problem lvsdr solves, on the wire: the VIP has several owners."""
    with make_lab(write_cluster(tmp_path), tmp_path, suppression="none") as lab:
        seen = probes.arp_responders(lab, "192.0.2.100")
        owners = {probes.mac_owner(lab, m) for m in seen}
        print(f"ARP responders without suppression: {sorted(owners)}")
        assert len(seen) > 1
        assert {"web1", "web2"} <= owners


def test_failover_moves_arp_and_http_to_the_backup(tmp_path: Path) -> None:
    """Killing the MASTER moves the client's ARP entry and its HTTP answers to the BACKUP."""
    path = write_cluster(tmp_path)
    with make_lab(path, tmp_path) as lab:
        assert lab.wait_for_master(10).name == "lb1"
        # a second lab of the same name is refused, and its down() leaves this one alone
        second = make_lab(path, tmp_path)
        with pytest.raises(LabError, match="is already up"):
            second.up()
        second.down()
        assert len(our_namespaces()) == 6 and lab.state_dir.exists()
        before = probes.arp_responders(lab, "192.0.2.100")
        assert [probes.mac_owner(lab, m) for m in before] == ["lb1"]
        assert probes.http_get(lab, "192.0.2.100") in ("web1", "web2")
        fo = probes.failover(lab)
        MEASURED.append(f"failover lb1 -> {fo.new_master} (advert_int {lab.cluster.advert_int}): client ARP "
                        f"entry moved after {fo.arp_seconds:.2f} s, HTTP answered after {fo.seconds:.2f} s")
        assert fo.new_master == "lb2"
        assert fo.http_answer in ("web1", "web2")
        # no less than the adverts a dead MASTER cannot send (a faster takeover means it resigned in order);
        # how fast is measured (MEASURED, and the solo run's advert 0.1 bound), not asserted among five workers
        assert 2 * lab.cluster.advert_int <= fo.seconds
        after = probes.arp_responders(lab, "192.0.2.100")
        assert [probes.mac_owner(lab, m) for m in after] == ["lb2"]


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def _signal_state(pid: int) -> str:
    """The signal lines of /proc/PID/status for the process and each of its threads (pending, blocked, ignored,
    caught; SIGINT is bit 1)."""
    lines = []
    for task in sorted(os.listdir(f"/proc/{pid}/task")) if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        except OSError:
            continue
        fields = [ln for ln in status.splitlines() if ln.startswith(("Name", "SigQ", "SigPnd", "ShdPnd", "SigBlk",
                                                                      "SigIgn", "SigCgt"))]
        lines.append(f"task {task}: " + "; ".join(f.replace("\t", " ") for f in fields))
    return "\n".join(lines)


def test_demo_interrupted_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C during `lvsdr lab demo`, with its real servers and a director running, tears down everything it
    started and exits 130.

    Also when the suite runs with SIGINT ignored (started as a background job: the shell ignores SIGINT for it,
    and Python keeps an ignored SIGINT ignored): the demo, which inherited that, went on to its end and exited 0
    in fresh-clone runs started in the background, until `lvsdr lab` took SIGINT back."""
    path = write_cluster(tmp_path, name="ctrlc")
    # started with SIGINT ignored, as a background job is, whatever this suite was started with
    p = subprocess.Popen(["bash", "-c", 'trap "" INT; exec "$@"', "demo", sys.executable, "-m", "lvsdr.cli", "lab",
                          "demo", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    assert p.stdout is not None
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if "director lb2: keepalived" in line:
                break
        running = p.poll() is None
        p.send_signal(signal.SIGINT)
        signals = _signal_state(p.pid)  # what the demo does with it, should it go on regardless
        out = "".join(seen) + p.communicate(timeout=60)[0]
    finally:
        if p.poll() is None:  # the test failed with the demo still running: it must not outlive the test
            p.kill()
            p.wait()
    assert running, f"the demo had ended before it could be interrupted:\n{out}"
    assert p.returncode == 130, f"{out}\nthe demo's signal state right after SIGINT was sent:\n{signals}"
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "lvsdr-ctrlc" not in left
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, "lvsdr-ctrlc")]
    assert not Path("/run/lvsdr-lab/lvsdr-ctrlc").exists()
    assert not Path("/run/lvsdr-lab").exists() or any(Path("/run/lvsdr-lab").iterdir())


def test_demo_bundled_example(tmp_path: Path) -> None:
    """The README's main command, end to end."""
    p = subprocess.run([sys.executable, "-m", "lvsdr.cli", "lab", "demo", str(write_cluster(tmp_path, name="demo"))],
                       capture_output=True, text=True, cwd="/", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "exactly one responder: 02:1d:00:00:00:10 (lb1" in p.stdout
    assert "exactly one responder: 02:1d:00:00:00:11 (lb2" in p.stdout
    assert "took over" in p.stdout
    print(p.stdout)


@pytest.mark.parametrize("example", ["ecmp.toml", "ecmp6.toml"])
def test_demo_ecmp_examples(example: str) -> None:
    """`lvsdr lab demo` of the ECMP examples (IPv4 and IPv6): one next hop per director at the router, nobody
    answering ARP/NDP for the VIP, a killed director out of the route (BFD), and exit 0. Here without IPVS; the
    IPVS tier runs the IPv6 one with its downloads (tests/ipvs/test_ipvs_demo.py)."""
    p = subprocess.run([sys.executable, "-m", "lvsdr.cli", "lab", "demo", str(EXAMPLES / example)],
                       capture_output=True, text=True, cwd="/", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    vip = "2001:db8::150" if "6" in example else "192.0.2.150"
    assert f"    {vip}: lb1, lb2, lb3\n" in p.stdout and f"    {vip}: nobody\n" in p.stdout, p.stdout
    assert f"    {vip}: lb2, lb3\n" in p.stdout and "left the router's route after" in p.stdout, p.stdout
    print(p.stdout)


# frames on the client's segment for ~`seconds`: how many were VRRP in clear (IP
# protocol 112) and how many IPsec AH (51); AF_PACKET sees them without joining 224.0.0.18
_COUNT_VRRP = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.settimeout(0.2)
seen = {112: 0, 51: 0}
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        frame = s.recv(2048)
    except TimeoutError:
        continue
    if len(frame) > 23 and frame[23] in seen:
        seen[frame[23]] += 1
print(seen[112], seen[51])
"""


def test_ah_authentication_elects_one_master(tmp_path: Path) -> None:
    """auth_type AH: the adverts on the wire carry an IPsec AH header, and the
    BACKUP accepts them (one MASTER; a BACKUP that rejected them would take
    over too)."""
    path = write_cluster(tmp_path)
    path.write_text(path.read_text().replace('auth_pass = "s3cret"\n', 'auth_pass = "s3cret"\nauth_type = "AH"\n'))
    with make_lab(path, tmp_path) as lab:
        assert lab.wait_for_master(10).name == "lb1"
        p = run(["ip", "netns", "exec", lab.state.client.ns, sys.executable, "-c", _COUNT_VRRP,
                 str(4 * lab.cluster.advert_int)])
        clear, ah = map(int, p.stdout.split())
        holders = [d.name for d in lab.state.directors if "192.0.2.100" in addresses_of(d, d.ifname)]
        MEASURED.append(f"VRRP with auth_type AH: {ah} AH adverts and {clear} in clear over "
                        f"{4 * lab.cluster.advert_int} s; VIP held by {holders}")
        assert ah >= 3 and clear == 0
        assert holders == ["lb1"]
        assert [probes.mac_owner(lab, m) for m in probes.arp_responders(lab, "192.0.2.100")] == ["lb1"]


def test_read_net_reads_the_namespace_not_the_host(tmp_path: Path) -> None:
    """read_net (the IPVS probes' in-process read) sees a namespace's own
    /proc/net, not the host's, and names a namespace it cannot enter."""
    from lvsdr.lab.netns import read_net

    ns = f"{PREFIX}-readnet"
    run(["ip", "netns", "add", ns])
    try:
        run(["ip", "-n", ns, "link", "add", "rn0", "type", "veth", "peer", "name", "rn1"])
        devices = {line.split(":")[0].strip() for line in read_net(ns, "dev").splitlines()[2:]}
        assert devices == {"lo", "rn0", "rn1"}
        with pytest.raises(LabError, match=f"{PREFIX}-nosuch: cannot read /proc/net/dev"):
            read_net(f"{PREFIX}-nosuch", "dev")
    finally:
        run(["ip", "netns", "del", ns])


def test_streams_and_requests_run_in_process_with_curls_outcomes(tmp_path: Path) -> None:
    """The in-process client (probes.http_get, probes.Stream) gets what curl
    got: the server's name; a stream's lines as they come and exit code 0;
    7 where nothing listens (a request says "refused"); a stream whose server
    dies mid-way cut short."""
    with make_lab(write_cluster(tmp_path), tmp_path) as lab:
        lab.wait_for_master(15)
        assert probes.http_get(lab, "192.0.2.100") in {"web1", "web2"}
        assert probes.http_request(lab, "192.0.2.100", port=9, timeout=1) == (None, "refused")
        runs = probes.start_streams(lab, "192.0.2.100", 3, 2, 41000, tmp_path)
        codes, lines = probes.end_streams(runs, 2)
        assert (codes, lines) == ([0, 0, 0], [8, 8, 8])
        assert {r.body.read_text().split()[0] for r in runs} <= {"web1", "web2"}
        refused = probes.Stream(lab.state.client.ns, "192.0.2.100", 9, "/", 41010, tmp_path / "refused", 5)
        assert refused.wait(10) == 7
        cut = probes.Stream(lab.state.client.ns, "192.0.2.100", 80, "/stream?seconds=20", 41011, tmp_path / "cut", 60)
        poll(lambda: (tmp_path / "cut").exists() and (tmp_path / "cut").stat().st_size > 0, "the stream started", 10)
        lab.app_down((tmp_path / "cut").read_text().split()[0])
        assert cut.wait(30) in (18, 56) and len((tmp_path / "cut").read_text().split()) < 80
