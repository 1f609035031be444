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


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The compiled templates, kept as Python keeps .pyc files (compiling
    keepalived.conf.j2 costs ~30 ms of every render), but never inside the
    installed package (the generator writes nothing of its own there): in
    jinja2's per-user cache directory under the system's temporary directory,
    which jinja2 makes 0700 and refuses when another user owns it or can
    write it. Each entry is keyed by the template's name and a checksum of its
    source, so an edited template is compiled again. None where that cannot
    be had (the render then compiles in memory)."""
    try:
        return jinja2.FileSystemBytecodeCache(pattern="lvsdr-%s.cache")
    except (OSError, RuntimeError):
        return None


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
