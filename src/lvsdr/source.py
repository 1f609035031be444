"""The cluster file as one value: its path, its bytes (read once), the key of
those bytes for notify's records, and the cluster parsed from them on demand.
Every command reads the file once into a ``Source`` and works from it:
notify's fast path uses the bytes and never parses; the full path parses the
same bytes, so both act on one reading of the file. A resident process (the
agent, `watch`, `metrics --listen`) follows the file with one ``Follower``:
the last good reading kept, a new one taken when its bytes change and it is
good. Standard library only at import: notify's fast path reads with it."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing costs ~6 ms to import; notify's path (mypy reads it as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from lvsdr.generator.model import Cluster


def source_key(cluster_bytes: bytes, node: str, code: str) -> str:
    """The key of notify's records: these cluster file bytes, this node, this build of lvsdr (fingerprint.py)."""
    try:
        from _sha256 import sha256  # CPython's own, without hashlib's OpenSSL (~3 ms to import)
    except ImportError:
        from hashlib import sha256
    return str(sha256(b"\0".join((cluster_bytes, node.encode(), code.encode()))).hexdigest())


class Source:
    """One reading of a cluster file, for one node."""

    __slots__ = ("path", "raw", "node", "_cluster", "_key")

    def __init__(self, path: str, raw: bytes, node: str) -> None:
        self.path = path
        self.raw = raw
        self.node = node
        self._cluster: Cluster | None = None
        self._key: str | None = None

    @classmethod
    def read(cls, path: str, node: str) -> Source:
        """Read ``path`` (a regular file, size-capped: ``InputError`` otherwise)."""
        from lvsdr.inputs import read_regular

        return cls(path, read_regular(path), node)

    @property
    def key(self) -> str:
        """The key of notify's records: these bytes, this node, this build of lvsdr."""
        if self._key is None:
            from lvsdr.fingerprint import code_fingerprint

            self._key = source_key(self.raw, self.node, code_fingerprint())
        return self._key

    @property
    def cluster(self) -> Cluster:
        """The validated cluster (``InputError``/``ValidationError`` for a bad file)."""
        if self._cluster is None:
            from lvsdr.generator.load import load_cluster_bytes

            self._cluster = load_cluster_bytes(self.raw, self.path)
        return self._cluster


def _identity(path: str) -> tuple[int, ...] | None:
    """What changes when a file is written or replaced (None: not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Follower:
    """A cluster file followed by a resident process: ``source`` is the last
    good reading. ``poll`` takes a new one when the file's bytes changed and
    ``accept`` (the follower's own test of it, say the director's spec built
    from it) raises no ``LvsdrError``; a file that is unreadable or rejected
    is logged once per content, and the last good one kept (as `lvsdr watch`
    keeps the last good keepalived.conf). A stat() decides whether to read at
    all, so polling is cheap."""

    def __init__(self, first: Source, accept: Callable[[Source], object] | None = None, log: Any = None) -> None:
        self.source = first
        self.accept = accept or (lambda s: s.cluster)
        self.log = log
        self._seen = _identity(first.path)
        self._refused: bytes | None = None
        self.error: str | None = None  # why the file on disk is not the one in use (None: it is)

    def poll(self) -> bool:
        """Whether a new, good cluster file was taken."""
        from lvsdr.errors import LvsdrError

        seen = _identity(self.source.path)
        if seen is not None and seen == self._seen:
            return False
        self._seen = seen
        try:
            fresh = Source.read(self.source.path, self.source.node)
        except LvsdrError as e:
            self._refuse(b"", "cluster file unreadable; keeping the last good one", str(e))
            return False
        if fresh.raw == self.source.raw:
            self.error = None
            return False
        if fresh.raw == self._refused:
            return False
        try:
            self.accept(fresh)
        except LvsdrError as e:
            self._refuse(fresh.raw, "cluster file rejected; keeping the last good one", str(e))
            return False
        except Exception:  # a reading lvsdr got wrong must not stop a resident process: the last good file stays
            if self.log is not None:
                self.log.exception("cluster file not read (a fault of lvsdr's); keeping the last good one")
            self._refused, self.error = fresh.raw, "not read (a fault of lvsdr's)"
            return False
        self.source, self._refused, self.error = fresh, None, None
        return True

    def _refuse(self, raw: bytes, what: str, error: str) -> None:
        if self.log is not None and (raw != self._refused or error != self.error):
            self.log.warning(what, error=error)
        self._refused, self.error = raw, error
