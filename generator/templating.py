"""The one jinja2 environment: strict, deterministic, loading from the installed package."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import jinja2

# characters keepalived's parser treats specially, and blanks
_UNSAFE = re.compile(r"[\s\"'{}#!\\]")


def token(value: Any) -> str:
    """Guard for every value put into keepalived.conf: refuse anything that could
    end a token, open a block or start a comment. Validation already refused it;
    this is the second lock on the door."""
    s = str(value)
    if not s or _UNSAFE.search(s):
        raise ValueError(f"unsafe value for keepalived.conf: {s!r}")
    return s


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    from importlib.resources import files

    root = files("lvsdr.templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["token"] = token
    return env


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
