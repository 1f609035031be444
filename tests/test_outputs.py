"""Where lvsdr writes (``-o``, ``--textfile``, watch's configs) and what it
reads back before writing: a regular file is replaced atomically; a device,
a FIFO or a pipe an operator names is written straight through, never
renamed over and never read back; a FIFO or a device someone else put where
root writes never hangs or floods lvsdr. Tested with private device nodes
and FIFOs, never the system's."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lvsdr.cli import main
from lvsdr.errors import InputError, LvsdrError
from lvsdr.generator import templating
from lvsdr.hooks.bird import conf_owner
from lvsdr.hooks.fast.files import read_regular_or_none, write_atomic, write_output

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "web.toml"
NOBODY = 65534


def null_device(path: Path) -> Path:
    """A private character device node with /dev/null's numbers (1, 3)."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def zero_device(path: Path) -> Path:
    """A private character device node with /dev/zero's numbers (1, 5): endless to read."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    return path


def test_render_into_a_device_writes_through_and_leaves_the_device(tmp_path: Path) -> None:
    """`render -o DEVICE` writes into the device; it stays a device (a rename over it would make it a root file)."""
    dev = null_device(tmp_path / "null")
    assert main(["render", str(EXAMPLE), "--node", "lb1", "-o", str(dev)]) == 0
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["null"]  # no temporary file left beside it


def test_render_into_a_fifo_with_a_reader_streams_the_config(tmp_path: Path) -> None:
    """`render -o FIFO` hands the config to whoever reads the FIFO, and the FIFO stays one."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    deadline = time.monotonic() + 10
    rc = None
    while time.monotonic() < deadline:  # the reader opens the FIFO in its own time
        rc = main(["render", str(EXAMPLE), "--node", "lb1", "-o", str(fifo)])
        if rc == 0:
            break
        time.sleep(0.05)
    reader.join(10)
    assert rc == 0 and got and b"vrrp_instance" in got[0]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`render -o FIFO` with no reader is refused at once, not waited on."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(main(["render", str(EXAMPLE), "--node", "lb1", "-o", str(fifo)])),
                         daemon=True)
    t.start()
    t.join(60)  # a hang guard: it returns at once (waiting on a reader would never end)
    assert done == [2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody reads" in err[0]


def test_render_to_dev_stdout_in_a_pipe_does_not_hang() -> None:
    """`render -o /dev/stdout | cat` prints the config and ends (the old content was read back first)."""
    p = subprocess.run([sys.executable, "-m", "lvsdr.cli", "render", str(EXAMPLE), "--node", "lb1",
                        "-o", "/dev/stdout"], capture_output=True, timeout=60, check=False)
    assert p.returncode == 0 and b"vrrp_instance" in p.stdout


@pytest.mark.parametrize("command", ["import", "metrics"])
def test_import_and_metrics_write_through_a_device(tmp_path: Path, command: str) -> None:
    """`import -o DEVICE` and `metrics --textfile DEVICE` leave the device a device."""
    dev = null_device(tmp_path / "null")
    if command == "import":
        confs = [str(tmp_path / f"{node}.conf") for node in ("lb1", "lb2")]
        for node, conf in zip(("lb1", "lb2"), confs, strict=True):
            assert main(["render", str(EXAMPLE), "--node", node, "-o", conf]) == 0
        args = ["import", *confs, "--arp-method", "sysctl", "--address", "lb1=192.0.2.2", "--address", "lb2=192.0.2.3",
                "-o", str(dev)]
    else:
        args = ["metrics", str(EXAMPLE), "--node", "lb1", "--textfile", str(dev)]
    assert main(args) == 0
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_a_directory_or_socket_as_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o naming a directory is refused in one line naming it, exit 2."""
    assert main(["render", str(EXAMPLE), "--node", "lb1", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0]


def test_write_atomic_refuses_to_rename_over_a_device_or_fifo(tmp_path: Path) -> None:
    """A state or config file lvsdr replaces is a regular file: a device or FIFO there is an error, left as it is."""
    dev = null_device(tmp_path / "null")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(dev)
    for path in (dev, fifo, link):
        with pytest.raises(LvsdrError, match="not a regular file"):
            write_atomic(path, "x\n")
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()


def test_reading_back_never_blocks_on_a_fifo_or_reads_a_zero_device(tmp_path: Path) -> None:
    """What is compared before a write is read only from a regular file, within its size."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = zero_device(tmp_path / "zero")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    assert read_regular_or_none(fifo, 10) is None
    assert read_regular_or_none(zero, 10) is None
    assert read_regular_or_none(big, 10) is None
    assert read_regular_or_none(big, 100) == b"x" * 100
    assert read_regular_or_none(tmp_path / "absent", 10) is None


def test_watch_with_a_fifo_or_zero_device_at_its_output_does_not_hang(tmp_path: Path) -> None:
    """`watch --once` with a FIFO or a /dev/zero node where keepalived.conf goes: one failed pass, no hang, no flood."""
    for name, make in (("fifo", os.mkfifo), ("zero", zero_device)):
        out = tmp_path / name
        make(out)
        p = subprocess.run([sys.executable, "-m", "lvsdr.cli", "watch", str(EXAMPLE), "--node", "lb1", "-o", str(out),
                            "--pidfile", str(tmp_path / "none.pid"), "--once"],
                           capture_output=True, text=True, timeout=60, check=False)
        assert p.returncode == 1 and "not a regular file" in p.stderr, p.stderr
        assert not stat.S_ISREG(os.lstat(out).st_mode)


def test_bird_conf_with_a_password_is_birds_group_and_0640() -> None:
    """bird.conf holding a BGP password is 0640 in BIRD's group (where it exists), so BIRD can read it and
    others cannot; without a password 0644 root's."""
    import grp

    mode, group = conf_owner(True)
    try:
        want = grp.getgrnam("bird").gr_gid
    except KeyError:
        want = None
    assert (mode, group) == (0o640, want)
    assert conf_owner(False) == (0o644, None)


def test_write_atomic_sets_the_group_and_rewrites_a_file_whose_group_changed(tmp_path: Path) -> None:
    """The group is part of what is written: a file with the right bytes and the wrong group is rewritten."""
    path = tmp_path / "bird.conf"
    assert write_atomic(path, "x\n", 0o640, NOBODY) is True
    st = path.stat()
    assert (st.st_mode & 0o777, st.st_gid) == (0o640, NOBODY)
    assert write_atomic(path, "x\n", 0o640, NOBODY) is False
    os.chown(path, -1, 0)
    assert write_atomic(path, "x\n", 0o640, NOBODY) is True and path.stat().st_gid == NOBODY


def test_template_cache_is_never_a_directory_another_user_could_plant(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled templates' directory is used only when it is this user's own real directory, mode 0700;
    a symlink there (another user's plant) is not followed, not chmod'ed, and not used."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    planted = tmp_path / "cache"
    planted.symlink_to(victim)
    monkeypatch.setattr(templating, "CACHE_DIR_ROOT", str(planted))
    if os.geteuid() != 0:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        (tmp_path / "lvsdr").symlink_to(victim)
    assert templating.cache_directory() is None
    assert victim.stat().st_mode & 0o777 == 0o755
    others = tmp_path / "others"
    others.mkdir(mode=0o777)
    os.chmod(others, 0o777)
    monkeypatch.setattr(templating, "CACHE_DIR_ROOT", str(others))
    assert templating.cache_directory() is None and others.stat().st_mode & 0o777 == 0o777
    own = tmp_path / "own"
    monkeypatch.setattr(templating, "CACHE_DIR_ROOT", str(own))
    if os.geteuid() == 0:
        assert templating.cache_directory() == str(own) and own.stat().st_mode & 0o777 == 0o700


def test_write_output_refuses_what_is_neither_file_device_nor_fifo(tmp_path: Path) -> None:
    """A socket at an output path is an InputError naming it."""
    import socket

    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        with pytest.raises(InputError, match="a socket"):
            write_output(path, "x")
    finally:
        s.close()
