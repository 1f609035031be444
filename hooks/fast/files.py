"""Atomic file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import fcntl
import os

from lvsdr.errors import LvsdrError

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

if TYPE_CHECKING:
    from pathlib import Path


def read_regular_or_none(path: str | Path, limit: int) -> bytes | None:
    """The bytes of ``path`` when it is a regular file of at most ``limit``
    bytes (a symlink to one is followed); None when it is absent, anything
    else (a FIFO, a device, a directory: never opened for a blocking read), or
    larger. For comparing what is there with what would be written: never a
    hang, never more than ``limit`` bytes read (``lvsdr.inputs.read_regular``
    reads it)."""
    from lvsdr.errors import InputError
    from lvsdr.inputs import read_regular

    try:
        return read_regular(path, limit)
    except InputError:
        return None


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def write_atomic(path: str | Path, data: str | bytes, mode: int = 0o644, group: int | None = None) -> bool:
    """Write ``data`` to ``path`` via a temp file + fsync + rename in the same
    directory (``group``: the file's group, else root's). Returns False (and
    writes nothing) when the file already holds exactly ``data`` with
    ``mode`` (and ``group``). Atomic replacement is for regular files: where
    ``path`` is (or a symlink leads to) a FIFO, a device, a socket or a
    directory, ``LvsdrError`` says so and nothing is replaced or read (see
    ``write_output`` for the paths an operator names)."""
    import stat
    from pathlib import Path

    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        st = os.stat(p)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise LvsdrError(f"{path}: is {_kind(st.st_mode)}, not a regular file; refusing to replace it")
    if (st is not None and (st.st_mode & 0o7777) == mode and (group is None or st.st_gid == group)
            and st.st_size == len(raw) and read_regular_or_none(p, len(raw)) == raw):
        return False
    import contextlib  # not at the top: node_lock is on the notify path (contextlib ~2 ms, tempfile ~8 ms)
    import tempfile

    directory = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise LvsdrError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if group is not None:
                os.fchown(f.fileno(), -1, group)
            os.fchmod(f.fileno(), mode)
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise LvsdrError(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return True


def write_output(path: str | Path, data: str | bytes, mode: int = 0o644) -> bool:
    """An output an operator names (``-o``, ``--textfile``): a regular file
    (or none yet) is replaced atomically (``write_atomic``); a character or
    block device, a FIFO or a pipe (``/dev/null``, ``/dev/stdout``) is
    written straight through, never renamed over and never read back; a
    FIFO nobody reads is refused at once rather than waited on. Anything
    else (a directory, a socket) is ``InputError``, as is a failed write."""
    import stat

    from lvsdr.errors import InputError

    raw = data.encode() if isinstance(data, str) else data
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or stat.S_ISREG(st.st_mode):
        try:
            return write_atomic(path, raw, mode)
        except LvsdrError as e:
            raise InputError(str(e)) from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise InputError(f"{path}: is {_kind(st.st_mode)}; give a file, a device or a FIFO")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        import errno

        if e.errno == errno.ENXIO:
            raise InputError(f"{path}: a FIFO that nobody reads; not waiting for a reader") from None
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        os.set_blocking(fd, True)  # a reader that is slow is waited for, as a shell's redirection would
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        os.close(fd)
    return True


LOCK_WAIT = 60.0  # seconds a hook waits for another lvsdr change on the node before it gives up


class UntrustedError(LvsdrError):
    """A state file or directory root must not trust: not root's (this
    process's owner's), writable by group or others, or a symlink."""


def _trusted(st: os.stat_result, what: str, path: str | Path) -> None:
    import stat

    if st.st_uid != os.geteuid():
        raise UntrustedError(f"{path}: {what} owned by uid {st.st_uid}, not {os.geteuid()}; refusing to trust it")
    if st.st_mode & 0o022:
        raise UntrustedError(f"{path}: {what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                             "refusing to trust it")


def check_dir(path: str | Path) -> None:
    """``path`` is a real directory (not a symlink), this process's owner's,
    and not writable by anyone else; ``UntrustedError`` says which not."""
    import stat

    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedError(f"{path}: not a directory (or a symlink); refusing to trust it")
    _trusted(st, "directory", path)


def state_dir(path: str | Path) -> str:
    """lvsdr's state directory, created 0700 when missing; an existing one
    must be root's and not writable by anyone else (``UntrustedError``)."""
    path = str(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        os.mkdir(path, 0o700)
    check_dir(path)
    return path


def open_trusted(path: str | Path, flags: int = os.O_RDONLY) -> int:
    """A file descriptor of a state file that only root could have written:
    opened without following a symlink, from a trusted directory, a regular
    file of root's not writable by others. ``FileNotFoundError`` when absent,
    ``UntrustedError`` for anything root must not read."""
    import stat

    check_dir(os.path.dirname(str(path)) or ".")
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedError(f"{path}: not a regular file; refusing to trust it")
        _trusted(st, "file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_trusted(path: str | Path, limit: int = 16 << 20) -> bytes:
    """The bytes of a state file (see ``open_trusted``), at most ``limit``."""
    fd = open_trusted(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UntrustedError(f"{path}: larger than {limit} bytes; not a record lvsdr wrote")
    return data


class node_lock:  # noqa: N801 -- used as `with node_lock(dir):`; a class because contextlib costs ~2 ms on notify's path
    """One lvsdr change at a time on a node (keepalived may run several notify
    scripts at once; an operator may run apply meanwhile): an flock on a
    root-only file of the node's in the state directory (0700), so no other
    user can take it (nodes that share a state directory, as the lab's do,
    do not wait on each other). The wait is bounded (``wait`` seconds): a
    lock held longer is an ``LvsdrError`` naming it, not a hook that hangs."""

    def __init__(self, state_dir: str | Path, node: str, wait: float = LOCK_WAIT) -> None:
        self.state_dir = state_dir
        self.node = node
        self.wait = wait
        self.fd = -1

    def __enter__(self) -> None:
        import time

        if not self.node or "/" in self.node or self.node[0] == ".":
            raise LvsdrError(f"{self.node!r} is not a node name")
        path = os.path.join(state_dir(self.state_dir), f"{self.node}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise UntrustedError(f"{path}: cannot open the node lock: {e.strerror or e}") from None
        try:
            _trusted(os.fstat(fd), "file", path)
            deadline = time.monotonic() + self.wait
            pause = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LvsdrError(f"{path}: another process has held lvsdr's node lock for {self.wait:g} s; "
                                         "gave up (`fuser -v` names it)") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the flock


def write_tree(root: Path, trees: dict[str, dict[str, tuple[bytes, int]]]) -> int:
    """Write ``root/NODE/PATH`` for every node's tree with exactly the modes
    given (not the umask's), directories 0755. ``root`` must be empty or new:
    lvsdr never mixes its tree with files it did not write. The tree is built
    in a temporary sibling and renamed into place: there is never a partial
    tree, and nothing is written outside it. Returns the count."""
    import shutil
    import tempfile
    from pathlib import Path

    from lvsdr.errors import InputError

    if root.exists() and (not root.is_dir() or root.is_symlink() or any(root.iterdir())):
        raise InputError(f"--output-dir: {root} exists and is not an empty directory")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent if str(root.parent) else "."))
    except OSError as e:
        raise InputError(f"--output-dir: {root}: cannot create it: {e.strerror or e}") from None
    count = 0
    try:
        for node, tree in trees.items():
            for rel, (data, mode) in tree.items():
                parts = rel.split("/")
                if "" in parts or "." in parts or ".." in parts or "/" in node or node in ("", ".", ".."):
                    raise InputError(f"--output-dir: {node}/{rel} is not a path inside the tree")
                path = tmp / node / rel
                for parent in reversed(path.relative_to(tmp).parents):
                    d = tmp / parent
                    if not d.exists():
                        d.mkdir()
                        os.chmod(d, 0o755)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(path, mode)
                count += 1
        os.chmod(tmp, 0o755)
        os.rename(tmp, root)  # onto an empty directory too (rename(2) replaces it)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise InputError(f"--output-dir: {root}: cannot write: {e.strerror or e}") from None
        raise
    return count
