"""The one jinja2 environment: strict, deterministic, loading from the installed package."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .guards import address, token


def format_each(fmt: str, rows: list[tuple[Any, ...]]) -> str:
    """``fmt % row`` for every row, joined: a loop the template would otherwise
    run once per row (jinja2 yields on every iteration)."""
    return "".join([fmt % row for row in rows])


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import os

    # the package's own folder (importlib.resources costs ~3 ms to import, and
    # FileSystemLoader needs a real directory anyway)
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["token"] = token
    env.filters["address"] = address
    env.filters["format_each"] = format_each
    return env


CACHE_DIR_ROOT = "/var/cache/lvsdr"  # root's compiled templates (root never uses a directory under TMPDIR)


def cache_directory() -> str | None:
    """A directory for compiled templates that only this user could have
    made: root's is /var/cache/lvsdr, anyone else's ``$XDG_CACHE_HOME/lvsdr``
    (``~/.cache/lvsdr``). Created 0700 when missing; used only when it is
    a real directory (not a symlink), this user's, and nobody else's to
    write; nothing is ever chmod'ed (jinja2's own default, a fixed name under
    the shared TMPDIR, chmods whatever a symlink there leads to). None:
    compile in memory."""
    import os
    import stat

    uid = os.geteuid()
    if uid == 0:
        path = CACHE_DIR_ROOT
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        if not os.path.isabs(base):
            return None
        path = os.path.join(base, "lvsdr")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None
    return path


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The compiled templates, kept as Python keeps .pyc files (compiling
    keepalived.conf.j2 costs ~30 ms of every render), but never inside the
    installed package (the generator writes nothing of its own there): in
    ``cache_directory()``. Each entry is keyed by the template's name and a
    checksum of its source, so an edited template is compiled again. None
    where no such directory can be had (the render then compiles in memory)."""
    directory = cache_directory()
    return None if directory is None else jinja2.FileSystemBytecodeCache(directory, pattern="lvsdr-%s.cache")


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
