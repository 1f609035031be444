"""Atomic file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import fcntl
import os

from lvsdr.errors import LvsdrError

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

if TYPE_CHECKING:
    from pathlib import Path


def write_atomic(path: str | Path, data: str | bytes, mode: int = 0o644) -> bool:
    """Write ``data`` to ``path`` via a temp file + fsync + rename in the same
    directory. Returns False (and writes nothing) when the file already holds
    exactly ``data`` with ``mode``."""
    from pathlib import Path

    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        st = p.stat()
        if (st.st_mode & 0o7777) == mode and p.read_bytes() == raw:
            return False
    except OSError:
        pass
    import contextlib  # not at the top: node_lock is on the notify path (contextlib ~2 ms, tempfile ~8 ms)
    import tempfile

    directory = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise LvsdrError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
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


class node_lock:  # noqa: N801 -- used as `with node_lock(dir):`; a class because contextlib costs ~2 ms on notify's path
    """One lvsdr change at a time on a node (keepalived may run several notify
    scripts at once; an operator may run apply meanwhile): an flock on lvsdr's
    state directory, so no lock file is left behind."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = state_dir
        self.fd = -1

    def __enter__(self) -> None:
        os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
        self.fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

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
