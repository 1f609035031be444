"""The cluster file as one value: its path, its bytes (read once), the key of
those bytes for notify's records, and the cluster parsed from them on demand.
notify's fast path uses the bytes and never parses; the full path parses the
same bytes, so both act on one reading of the file."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~6 ms to import; notify's path (mypy reads it as True)
if TYPE_CHECKING:
    from lvsdr.generator.model import Cluster


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

            from .replay import source_key

            self._key = source_key(self.raw, self.node, code_fingerprint())
        return self._key

    @property
    def cluster(self) -> Cluster:
        """The validated cluster (``InputError``/``ValidationError`` for a bad file)."""
        if self._cluster is None:
            from lvsdr.generator.load import load_cluster_bytes

            self._cluster = load_cluster_bytes(self.raw, self.path)
        return self._cluster
