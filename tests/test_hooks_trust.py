"""What root reads back on a node (records, the lock, the FIFO, the cluster
file's fast reading) is trusted only when root alone could have written it,
and every wait and buffer is bounded: a local user can neither steer nor
stall the hooks."""

from __future__ import annotations

import fcntl
import marshal
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsdr.cli import main
from lvsdr.errors import LvsdrError
from lvsdr.generator.node import FactError, Record, valid_sysctl_key
from lvsdr.hooks.facts import read_record, sysctl_path
from lvsdr.hooks.fast.files import UntrustedError, node_lock, state_dir
from lvsdr.hooks.fast.replay import FORMAT, BadRecord, check_record, load_record, locate, replay
from lvsdr.hooks.notify_fifo import MAX_LINE, open_fifo, parse_event, split_lines

NOBODY = 65534

LISTING = "table arp lvsdr {\n\tchain input {\n\t\tarp daddr ip 192.0.2.120 drop\n\t}\n\n\tchain output {\n\t}\n}\n"


def record(state: Path, **changes: Any) -> dict[str, Any]:
    """A record in the shape notify's full path writes, with ``changes``."""
    rec: dict[str, Any] = {
        "format": FORMAT, "key": "k", "address": "192.0.2.21", "devices": [["eth0", "192.0.2.120"]],
        "keys": ["arp lvsdr", "inet lvsdr_fwmark"], "sysctls": ["/proc/sys/net/ipv4/conf/all/arp_ignore"],
        "record": str(state / "realserver-pair-node1.json"),
        "roles": {"BACKUP": {"tables": {"arp lvsdr": LISTING}, "sysctls": {}, "record": None,
                             "addresses": [["lo", "192.0.2.120/32"]]}},
    }
    rec.update(changes)
    return rec


# -- the lock ---------------------------------------------------------------

def test_a_new_state_dir_is_0700_and_its_lock_file_0600(tmp_path: Path) -> None:
    """The state directory is made root-only, and the lock is a root-only file in it."""
    d = tmp_path / "state"
    with node_lock(d, "n1"):
        pass
    assert (d.stat().st_mode & 0o777, (d / "n1.lock").stat().st_mode & 0o777) == (0o700, 0o600)


def test_another_node_sharing_the_state_dir_does_not_wait(tmp_path: Path) -> None:
    """Nodes sharing a state directory (the lab's do) each have their own lock."""
    d = tmp_path / "state"
    with node_lock(d, "n1"), node_lock(d, "n2", wait=0.2):
        pass


def test_a_lock_held_elsewhere_is_waited_for_a_bounded_time(tmp_path: Path) -> None:
    """A lock nobody releases makes the hook give up with one line, not hang."""
    d = tmp_path / "state"
    with node_lock(d, "n1"):
        fd = os.open(d / "n1.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process, as far as flock is concerned: another open file
    try:
        started = time.monotonic()
        with pytest.raises(LvsdrError, match="held lvsdr's node lock for 0.3 s"), node_lock(d, "n1", wait=0.3):
            pass
        assert time.monotonic() - started >= 0.3  # it waited its time, then gave up (not hung: it returned)
    finally:
        os.close(fd)


def test_a_user_holding_the_directory_no_longer_stalls_the_hooks(tmp_path: Path) -> None:
    """The old lock was an flock on the state directory, which anyone can open: it no longer counts."""
    d = Path(state_dir(tmp_path / "state"))
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with node_lock(d, "n1", wait=0.5):
            pass
    finally:
        os.close(fd)


@pytest.mark.parametrize(("owner", "mode"), [(NOBODY, 0o700), (0, 0o777), (0, 0o770), (0, 0o1777)])
def test_a_state_dir_others_can_write_is_refused(tmp_path: Path, owner: int, mode: int) -> None:
    """An existing state directory must be root's and writable by root alone."""
    d = tmp_path / "state"
    d.mkdir()
    os.chown(d, owner, 0)
    os.chmod(d, mode)
    with pytest.raises(UntrustedError, match="refusing to trust it"), node_lock(d, "n1"):
        pass


def test_a_symlinked_state_dir_is_refused(tmp_path: Path) -> None:
    """/run/lvsdr as a symlink (to /dev/shm, say) is not followed."""
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UntrustedError, match="not a directory"), node_lock(tmp_path / "state", "n1"):
        pass


# -- notify's record --------------------------------------------------------

def write_record(path: Path, data: Any, mode: int = 0o600, owner: int = 0) -> None:
    path.write_bytes(marshal.dumps(data))
    os.chmod(path, mode)
    os.chown(path, owner, 0)


def test_a_record_root_wrote_in_its_shape_loads(tmp_path: Path) -> None:
    """The shape the full path writes passes the checks (the checks are not a wall)."""
    d = Path(state_dir(tmp_path / "state"))
    write_record(d / "r.roles", record(d))
    assert load_record(str(d / "r.roles"))["key"] == "k"


@pytest.mark.parametrize(("mode", "owner", "error"), [
    (0o666, 0, "writable by group or others"), (0o620, 0, "writable by group or others"),
    (0o600, NOBODY, "owned by uid 65534"),
])
def test_a_record_others_could_write_is_not_trusted(tmp_path: Path, mode: int, owner: int, error: str) -> None:
    """A record not root's own, or writable by others, is never read."""
    d = Path(state_dir(tmp_path / "state"))
    write_record(d / "r.roles", record(d), mode, owner)
    with pytest.raises(UntrustedError, match=error):
        load_record(str(d / "r.roles"))


def test_a_symlinked_record_is_not_followed(tmp_path: Path) -> None:
    """O_NOFOLLOW: a record that is a symlink (to a planted file) is not opened."""
    d = Path(state_dir(tmp_path / "state"))
    write_record(tmp_path / "planted", record(d))
    (d / "r.roles").symlink_to(tmp_path / "planted")
    with pytest.raises(OSError):
        load_record(str(d / "r.roles"))


@pytest.mark.parametrize(("changes", "error"), [
    ({"format": 1}, "not a record of this format"),
    ({"keys": "arp lvsdr"}, "wrong type"),
    ({"devices": [["eth0"]]}, "wrong type"),
    ({"keys": ["arp lvsdr; flush ruleset"]}, "not lvsdr's"),
    ({"sysctls": ["/proc/sys/net/../../etc/shadow"]}, "not under /proc/sys/net"),
    ({"sysctls": ["/etc/shadow"]}, "not under /proc/sys/net"),
    ({"record": "/etc/shadow"}, "not in the state directory"),
    ({"roles": {"MASTER": {"tables": {"arp lvsdr": "flush ruleset\n"}, "sysctls": {}, "record": None,
                           "addresses": []}}}, "not one nft table"),
    ({"roles": {"MASTER": {"tables": {"arp lvsdr": "table arp lvsdr {\n}\nflush ruleset\n}\n"}, "sysctls": {},
                           "record": None, "addresses": []}}}, "not one nft table"),
    ({"roles": {"MASTER": {"tables": {"arp lvsdr": "table arp lvsdr {\n\t}; flush ruleset; table arp x {\n}\n"},
                           "sysctls": {}, "record": None, "addresses": []}}}, "not one nft table"),
    ({"roles": {"MASTER": {"tables": {"inet other": LISTING}, "sysctls": {}, "record": None, "addresses": []}}},
     "not one nft table"),
    ({"roles": {"LEADER": {}}}, "unknown role"),
    ({"roles": {"MASTER": {"tables": {}}}}, "wrong type"),
])
def test_a_record_of_the_wrong_shape_is_refused(tmp_path: Path, changes: dict[str, Any], error: str) -> None:
    """Only a record in the shape the full path writes is used: lvsdr's own
    tables, one table per listing, sysctls under /proc/sys/net."""
    with pytest.raises(BadRecord, match=error):
        check_record(record(tmp_path, **changes), str(tmp_path))


def test_replay_declines_with_a_reason_for_a_record_it_does_not_trust(tmp_path: Path) -> None:
    """The fast path never crashes on a bad record: it says why and the full path runs."""
    d = Path(state_dir(tmp_path / "state"))
    cluster = tmp_path / "c.toml"
    cluster.write_text(f'[cluster]\nname = "pair"\nstate_dir = "{d}"\n')
    write_record(d / "director-pair-node1.roles", {"format": FORMAT, "key": 5})
    why = replay(str(cluster), "node1", "0", cluster.read_bytes())
    assert isinstance(why, str) and "wrong type" in why
    os.chmod(d / "director-pair-node1.roles", 0o644)
    os.chown(d / "director-pair-node1.roles", NOBODY, 0)
    why = replay(str(cluster), "node1", "0", cluster.read_bytes())
    assert isinstance(why, str) and "owned by uid 65534" in why


# -- the real-server record -------------------------------------------------

@pytest.mark.parametrize("key", ["net.ipv4.conf.../../../../etc/x.y", "kernel.core_pattern", "net.ipv4.conf.a/b.c",
                                 "net.ipv4.conf.eth0.arp_ignore/../../x", "net/../x"])
def test_a_sysctl_key_outside_proc_sys_net_is_refused(key: str) -> None:
    """A record's sysctl keys become paths root writes on remove: only network sysctls pass."""
    assert not valid_sysctl_key(key)
    with pytest.raises(FactError):
        sysctl_path(key)
    with pytest.raises(LvsdrError, match="not a network sysctl"):
        Record.from_json(f'{{"cluster": "c", "node": "n", "method": "sysctl", "sysctl_originals": {{"{key}": "0"}}}}',
                         "r.json")


def test_the_sysctls_lvsdr_writes_are_valid_keys() -> None:
    """The keys the methods really write pass the same check (it is not a wall)."""
    for key in ("net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.100.arp_announce", "net.ipv4.vs.conntrack",
                "net.ipv6.conf.eth0.accept_dad"):
        assert valid_sysctl_key(key), key
    assert str(sysctl_path("net.ipv4.conf.eth0.100.arp_ignore")) == "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"


def test_a_realserver_record_others_could_write_is_refused(tmp_path: Path) -> None:
    """`realserver remove` reads its record only when root alone could have written it."""
    d = Path(state_dir(tmp_path / "state"))
    p = d / "realserver-c-n.json"
    p.write_text('{"cluster": "c", "node": "n", "method": "sysctl"}')
    os.chmod(p, 0o666)
    with pytest.raises(UntrustedError):
        read_record(p)


# -- the fast reading of the cluster file ------------------------------------

def test_a_comment_cannot_hide_a_state_dir_from_tomllib() -> None:
    """Line separators TOML allows in comments (U+2028, U+0085, \\x0c...) do
    not start a line for the fast path: it finds what tomllib finds, or declines."""
    for sep in ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"):
        text = f'[cluster]\nname = "pair" # x{sep}state_dir = "/dev/shm"\n'
        try:
            parsed = tomllib.loads(text)["cluster"]
        except tomllib.TOMLDecodeError:
            parsed = None
        found = locate(text.encode(), "c.toml")
        assert found is None or (parsed is not None and found == (parsed["name"], parsed.get("state_dir"))), sep


FRAGMENTS = [
    "[cluster]", "[[directors]]", "[directors]", "[ cluster ]", '["cluster"]', "[cluster.sub]", "[[cluster]]",
    "[x]", 'name = "pair"', 'name = "other"', "name = 'pair'", 'name = "pa\\u0069r"', 'state_dir = "/srv/a"',
    'state_dir = "/srv/b" # c', "state_dir = '/srv/l'", 'cluster.name = "dot"', 'cluster.state_dir = "/dev/shm"',
    '"name" = "quoted"', 'name.x = "y"', '# name = "comment"', '# [cluster]\u2028state_dir = "/dev/shm"',
    '# x\x85name = "nel"', 'x = """\nname = "inside"\n"""', "x = '''\n[cluster]\n'''", 'v = [\n"a",\n[1, 2],\n]',
    'v = [\n  "[cluster]",\n]', 'v = [ # [cluster]\n1]', 'interface = "eth0"', "port = 80", 'a = "b # c"',
    'a = "x\\"]"', "", "   ", "\t# tab comment", 'cluster = { name = "inline" }', 'state_dir = "/run/../x"',
    'name = "UPPER"', 'name = "-lead"',
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=8), st.sampled_from(["\n", "\r\n"]),
       st.booleans())
def test_the_line_reader_finds_what_tomllib_finds_or_declines(parts: list[str], eol: str, bom: bool) -> None:
    """For every file tomllib accepts (line breaks, CRLF, a BOM, comments,
    literal and multi-line strings, dotted and quoted keys, arrays over
    several lines), the fast path's reader finds the same name and state_dir,
    or finds nothing (and the full path runs)."""
    text = ("\ufeff" if bom else "") + eol.join(parts) + eol
    found = locate(text.encode(), "c.toml")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # no record is ever written for bytes the full path refuses: nothing to match
    cluster = data.get("cluster")
    if found is not None:
        assert isinstance(cluster, dict)
        assert found == (cluster["name"], cluster.get("state_dir")), text


# -- the agent ----------------------------------------------------------------

@pytest.mark.parametrize(("line", "event"), [
    ('INSTANCE "VI_pair" MASTER 200', ("INSTANCE", "VI_pair", "MASTER", "200")),
    ('INSTANCE "VI_pair" BACKUP 100', ("INSTANCE", "VI_pair", "BACKUP", "100")),
    ('GROUP "VG_pair" FAULT', ("GROUP", "VG_pair", "FAULT", "")),
    ('INSTANCE "VI_pair" MASTER_RX_LOWER_PRI 200', ("INSTANCE", "VI_pair", "MASTER_RX_LOWER_PRI", "200")),
])
def test_keepalived_fifo_lines_are_events(line: str, event: tuple[str, str, str, str]) -> None:
    """keepalived's VRRP lines on the notify FIFO are read as events."""
    e = parse_event(line)
    assert e is not None and (e.type, e.name, e.state, e.priority) == event


@pytest.mark.parametrize("line", [
    "a b c", "INSTANCE VI_pair MASTER 200", 'INSTANCE "VI_pair" LEADER 1', 'VS "x" UP', 'INSTANCE "a b" MASTER',
    'INSTANCE "VI_pair" MASTER 200 extra', 'INSTANCE "VI_pair" MASTER ２００', 'INSTANCE  "VI_pair" MASTER 200',
    "INSTANCE \"VI\x00\" MASTER", "",
])
def test_anything_else_on_the_fifo_is_not_an_event(line: str) -> None:
    """Only keepalived's event grammar counts: three words are not enough."""
    assert parse_event(line) is None


def test_a_fifo_line_without_end_is_dropped_not_kept() -> None:
    """A writer that never sends a newline cannot grow the agent's buffer past one line's limit."""
    lines, rest, skipping = split_lines(b"x" * (MAX_LINE + 1), False)
    assert (lines, rest, skipping) == ([], b"", True)
    lines, rest, skipping = split_lines(b"y" * 10_000, skipping)
    assert (lines, rest, skipping) == ([], b"", True)
    lines, rest, skipping = split_lines(b'tail\nINSTANCE "VI_a" MASTER 1\npart', skipping)
    assert (lines, rest, skipping) == ([b'INSTANCE "VI_a" MASTER 1'], b"part", False)


@pytest.mark.parametrize("value", ["1e10", "inf", "nan", "0", "-1", "0.01"])
def test_an_unusable_agent_interval_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--interval past a day (select's timer), infinite, NaN or below 0.1 s is exit 2 before anything starts."""
    assert main(["agent", "/nonexistent.toml", "--node", "lb1", "--fifo", "/nonexistent", "--interval", value]) == 2
    assert "--interval" in capsys.readouterr().err


@pytest.mark.parametrize(("mode", "owner", "error"), [(0o666, 0, "writable by group or others"),
                                                      (0o600, NOBODY, "owned by uid 65534")])
def test_an_existing_fifo_others_could_write_is_refused(tmp_path: Path, mode: int, owner: int, error: str) -> None:
    """The FIFO is checked as the records are: events from it make root change the node."""
    d = Path(state_dir(tmp_path / "run"))
    os.mkfifo(d / "notify.fifo", mode)
    os.chmod(d / "notify.fifo", mode)
    os.chown(d / "notify.fifo", owner, 0)
    with pytest.raises(UntrustedError, match=error):
        open_fifo(d / "notify.fifo")


def test_a_symlinked_fifo_is_refused(tmp_path: Path) -> None:
    """A symlink in the FIFO's place is not followed."""
    d = Path(state_dir(tmp_path / "run"))
    os.mkfifo(tmp_path / "other", 0o600)
    (d / "notify.fifo").symlink_to(tmp_path / "other")
    with pytest.raises(LvsdrError, match="not a FIFO"):
        open_fifo(d / "notify.fifo")


def test_a_new_fifo_is_made_0600_in_a_0700_directory(tmp_path: Path) -> None:
    """A missing FIFO (and its directory) is made root-only."""
    fd = open_fifo(tmp_path / "run" / "notify.fifo")
    os.close(fd)
    assert ((tmp_path / "run").stat().st_mode & 0o777, (tmp_path / "run/notify.fifo").stat().st_mode & 0o777) == (
        0o700, 0o600)


# -- doctor ---------------------------------------------------------------------

def test_doctor_warns_when_anyone_but_root_can_steer_the_hooks(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """doctor names a cluster file, state directory, FIFO or record that someone but root could write."""
    from lvsdr.generator.keepalived import Wiring
    from lvsdr.generator.load import load_cluster
    from lvsdr.hooks.doctor import Report, _security

    from helpers import EXAMPLES

    d = Path(state_dir(tmp_path / "state"))
    cluster = tmp_path / "pair.toml"
    cluster.write_text((EXAMPLES / "pair.toml").read_text().replace("[cluster]\n", f'[cluster]\nstate_dir = "{d}"\n'))
    fifo = d / "notify.fifo"
    os.mkfifo(fifo, 0o600)
    c = load_cluster(cluster)
    wiring = Wiring.from_cluster(c, notify_fifo=str(fifo), hook="both")
    r = Report()
    _security(c, str(cluster), wiring, r)
    assert "writable by root alone" in capsys.readouterr().out
    os.chmod(cluster, 0o666)
    os.chmod(fifo, 0o622)
    (d / "planted.roles").write_bytes(b"x")
    os.chown(d / "planted.roles", NOBODY, 0)
    _security(c, str(cluster), wiring, r)
    out = capsys.readouterr().out
    assert f"the cluster file: {cluster} is writable by group or others (mode 666)" in out
    assert f"the notify FIFO: {fifo} is writable by group or others (mode 622)" in out
    assert "planted.roles: file owned by uid 65534" in out
    os.chmod(d, 0o777)
    _security(c, str(cluster), wiring, r)
    assert "the state directory" in capsys.readouterr().out


# -- corrupt JSON records ------------------------------------------------------
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text", [DEEP, '{"a": ' * 50_000 + "1" + "}" * 50_000, "NaN", "[Infinity]"])
def test_every_json_record_reader_refuses_deep_nesting_and_non_numbers(text: str) -> None:
    """A corrupt record nested deeply enough to exhaust the parser, or holding NaN/Infinity, is each reader's own
    one-line error (the real server's record, the agent's counts, the leaving real servers), never RecursionError."""
    from lvsdr.generator.metrics import Counters
    from lvsdr.hooks.reload import parse_leaving

    with pytest.raises(LvsdrError):
        Record.from_json(text, "rec")
    with pytest.raises(FactError):
        Counters.from_json(text, "counts")
    with pytest.raises(FactError):
        parse_leaving(text, "leaving")


def test_a_leaving_record_since_infinity_or_far_ahead_is_refused() -> None:
    """`since: Infinity` (or 1e300) would keep a removed real server in keepalived.conf for ever: refused."""
    from lvsdr.hooks.reload import parse_leaving

    item = '[{"key": ["TCP", "192.0.2.100", 80], "dest": ["192.0.2.11", 80], "since": %s, "scheduler": "rr"}]'
    assert parse_leaving(item % "1000.5", "x")[0].since == 1000.5
    for since in ("Infinity", "-Infinity", "1e300", "-1"):
        with pytest.raises(FactError, match="not a record of leaving real servers"):
            parse_leaving(item % since, "x")


def test_a_leaving_real_server_whose_since_is_ahead_of_the_clock_counts_from_now() -> None:
    """A record written before the clock was set back does not stretch drain_timeout: its since counts as now."""
    from lvsdr.generator import ipvs

    key, dest = ipvs.Key("TCP", "192.0.2.100", 80), ipvs.Dest("192.0.2.11", 80)
    previous = {key: ipvs.Service("rr", {dest: ipvs.Live(1, 0, 0)})}
    live = {key: ipvs.Service("rr", {dest: ipvs.Live(1, 3, 0)})}
    known = [ipvs.Leaving(key, dest, 10_000.0, "rr")]
    (kept,) = ipvs.leaving(previous, {}, live, known, now=100.0, timeout=60)
    assert kept.since == 100.0
    assert ipvs.leaving(previous, {}, live, [kept], now=161.0, timeout=60) == ()


def test_the_agents_quorum_record_nested_deeply_is_ignored_not_fatal(tmp_path: Path) -> None:
    """The agent starts with a corrupt quorum record: every virtual server counts as up, no RecursionError."""
    from lvsdr.generator.director import director_spec
    from lvsdr.generator.load import load_cluster
    from lvsdr.hooks.agent import Quorum

    from helpers import EXAMPLES

    spec = director_spec(load_cluster(EXAMPLES / "ecmp.toml"), "lb1")
    state = Path(state_dir(tmp_path / "state"))
    path = state / f"quorum-{spec.cluster}-{spec.node}.json"
    path.write_text(DEEP)
    path.chmod(0o600)
    q = Quorum(state, spec)
    assert (q.pids, q.down_set) == ([], set())


# -- what counts as keepalived ----------------------------------------------------
def _named_keepalived(tmp_path: Path, uid: int | None = None) -> Any:
    """A process named keepalived that is not keepalived: a copy of sleep, run as ``uid``."""
    import shutil
    import subprocess

    fake = tmp_path / "keepalived"
    shutil.copy("/bin/sleep", fake)
    fake.chmod(0o755)
    tmp_path.chmod(0o755)
    pre = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] if uid is not None else []
    proc = subprocess.Popen([*pre, str(fake), "60"])
    poll_until = time.monotonic() + 10
    while time.monotonic() < poll_until:  # until it runs the copy (after setpriv's exec)
        try:
            if Path(f"/proc/{proc.pid}/comm").read_text().strip() == "keepalived":
                break
        except OSError:
            pass
        time.sleep(0.02)
    return proc


def _pidfile(tmp_path: Path, pid: int) -> Path:
    d = Path(state_dir(tmp_path / "run"))
    p = d / "keepalived.pid"
    p.write_text(f"{pid}\n")
    p.chmod(0o644)
    return p


@pytest.mark.parametrize("uid", [NOBODY, None])
def test_a_process_named_keepalived_that_is_not_roots_keepalived_does_not_count(tmp_path: Path,
                                                                                 uid: int | None) -> None:
    """Another user's process named keepalived, or root's running another binary under that name, is not
    keepalived, even with its pid in the pidfile: the agent would forget keepalived's quorum reports for it."""
    from lvsdr.hooks.processes import ProcessWatch, pid_from

    proc = _named_keepalived(tmp_path, uid)
    try:
        pidfile = _pidfile(tmp_path, proc.pid)
        assert pid_from(pidfile) is None
        assert ProcessWatch(pidfile).refresh() is False
    finally:
        proc.kill()
        proc.wait()


def test_the_pidfile_is_trusted_as_records_are(tmp_path: Path) -> None:
    """A pidfile in a directory others can write is refused (one line naming it), a stale pid is no keepalived,
    and a missing pidfile means keepalived does not run."""
    from lvsdr.hooks.processes import pid_from

    assert pid_from(tmp_path / "none.pid") is None
    pidfile = _pidfile(tmp_path, 2**22 + 7)  # above pid_max's default: no such process
    assert pid_from(pidfile) is None
    os.chmod(pidfile.parent, 0o777)
    with pytest.raises(UntrustedError, match="writable by group or others"):
        pid_from(pidfile)


def test_the_agent_refuses_an_untrusted_pidfile_before_it_starts(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`lvsdr agent --pidfile` in a world-writable directory: one line, and nothing started."""
    from helpers import EXAMPLES

    pidfile = _pidfile(tmp_path, 1)
    os.chmod(pidfile.parent, 0o777)
    rc = main(["agent", str(EXAMPLES / "pair.toml"), "--node", "node1", "--fifo", str(tmp_path / "fifo"),
               "--pidfile", str(pidfile)])
    assert rc == 1 and not (tmp_path / "fifo").exists()
    assert capsys.readouterr().err.count("\n") == 1
