"""Reading an input file an operator names (a cluster file, a keepalived.conf,
an included file): regular files only, with a size cap, so that a FIFO, a
device (/dev/zero) or a directory is one clear error instead of a hang or
memory exhausted. Standard library only: notify's fast path reads with it."""

from __future__ import annotations

import os

from lvsdr.errors import InputError

MAX_INPUT = 64 << 20  # bytes of a cluster file or keepalived.conf (the 1,000-service benchmark's file is ~3 MiB)


def read_regular(path: str | os.PathLike[str], limit: int = MAX_INPUT) -> bytes:
    """A regular file's bytes, at most ``limit`` of them; ``InputError`` naming the file otherwise."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise InputError(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{os.fspath(path)}: not a regular file")
        if st.st_size > limit:
            raise InputError(f"{os.fspath(path)}: {st.st_size} bytes; the limit is {limit}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise InputError(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise InputError(f"{os.fspath(path)}: more than {limit} bytes")
    return b"".join(chunks)
