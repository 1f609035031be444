"""A fingerprint of the installed code that plans: notify's records are keyed
by it (with the cluster file's bytes and the node), so a record made by one
build of lvsdr is never replayed by another, whatever its version number says.

It is read off the package's Python files by name, size and modification time
(one stat each, ~0.3 ms; hashing their contents would cost notify ~5 ms on
every failover): installing any other build, even of the same version,
changes it; so does editing a file in a development tree."""

from __future__ import annotations

import os

_cached: str | None = None


def code_fingerprint() -> str:
    """Hex digest over every ``*.py`` of the installed package (the symlinked
    top-level folders of a source tree included), stable within a process."""
    global _cached
    if _cached is not None:
        return _cached
    try:
        from _sha256 import sha256  # CPython's own, without hashlib's OpenSSL (~3 ms to import)
    except ImportError:
        from hashlib import sha256
    root = os.path.dirname(os.path.abspath(__file__))
    h = sha256()
    stack = [root]
    while stack:
        here = stack.pop()
        with os.scandir(here) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name == "__pycache__" or e.name.startswith("."):
                continue
            if e.is_dir():  # follows the source tree's symlinks to generator/, hooks/, ...
                stack.append(e.path)
            elif e.name.endswith(".py"):
                st = e.stat()
                h.update(f"{os.path.relpath(e.path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    _cached = str(h.hexdigest())
    return _cached
