"""The cluster file's keys, each declared once (as VyOS declares each leaf of
its configuration: its type, its range, its default and its help).

A key is declared on the model's field it fills (``leaf``), or in the check
catalog (checks.py) for a health check's: its name in the file, its form,
what it accepts, keepalived's directive, its default as the docs state it,
and its meaning. From the declarations come the loader's reading of every
simple key (``schema.Table.key``: an integer in a range, a boolean, one of
some choices, a text of a pattern), the tables of docs/cluster-file.md
(``docs_table``, kept equal to the page by a test), and the importer's map
from keepalived's directives back to keys (``by_directive``). A key the
loader reads its own way (an address, a command, a table) is declared all
the same, form ``custom``: its row and its directive come from here too.
A new key rendered into keepalived.conf touches the model (its leaf) and the
template.

Forms: ``int`` (lo..hi), ``bool``, ``choice``, ``text`` (a pattern,
token-guarded when rendered), ``custom``; the check catalog has its own few
besides (checks.py)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

# what a name, an interface, a path, a host or a script argument may hold:
# nothing keepalived's parser treats specially (no blanks, quotes, braces,
# comment starters # ! or control characters)
CLUSTER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
ZONE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,16}")
# and no empty, "." or ".." segment: a path names one file, wherever it is used
PATH_RE = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._+-]+)+")
URL_PATH_RE = re.compile(r"/[A-Za-z0-9._~/%?&=+:@,;-]*")
HOST_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")
AUTH_RE = re.compile(r"[A-Za-z0-9._~@%+=:,-]{1,8}")
ARG_RE = re.compile(r"[A-Za-z0-9._/:=@%+,-]+")
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}:[A-Za-z0-9_-]+")

class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a key without a default


@dataclasses.dataclass(frozen=True)
class Key:
    """One key: ``name`` in the cluster file, ``field`` on the model,
    ``directive`` in keepalived's block; ``default`` as the docs state it
    (``value``: the model's own default, ``REQUIRED`` for none)."""

    name: str
    directive: str
    form: str
    default: str
    meaning: str
    field: str = ""
    lo: int = 0
    hi: int = 0
    pattern: re.Pattern[str] | None = None
    what: str = ""  # what the pattern accepts, for its error line
    choices: tuple[str, ...] = ()
    type: str = ""  # the docs' type column, where the form does not say it
    value: Any = REQUIRED
    label: str = ""  # the docs' key column, where the key is spelt otherwise in the file (`check` / `checks`)

    @property
    def attr(self) -> str:
        return self.field or self.name

    @property
    def kind(self) -> str:
        """The docs' type column."""
        if self.type:
            return self.type
        return {"int": "integer", "bool": "boolean", "text": "string"}.get(self.form) or (
            ", ".join(f'`"{c}"`' for c in self.choices) if self.form == "choice" else self.form)


def declare(default: Any = REQUIRED, *, form: str, meaning: str, directive: str = "", lo: int = 0, hi: int = 0,
            pattern: re.Pattern[str] | None = None, what: str = "", choices: tuple[str, ...] = (), shown: str = "",
            type: str = "", label: str = "") -> dict[str, Key]:
    """A key's declaration, as a model field's metadata: ``dataclasses.field(metadata=declare(...))`` for a field
    without a default on the model (``default``: the file's default, if it has one); ``leaf`` for one with a
    default. ``shown``: the default as the docs state it, when the value does not say it well."""
    return {"key": Key("", directive, form, shown or _shown(default, form), meaning, lo=lo, hi=hi, pattern=pattern,
                       what=what, choices=choices, type=type, value=default, label=label)}


def leaf(default: Any, *, form: str, meaning: str, directive: str = "", lo: int = 0, hi: int = 0,
         pattern: re.Pattern[str] | None = None, what: str = "", choices: tuple[str, ...] = (), shown: str = "",
         type: str = "", label: str = "") -> Any:
    """A model field with a default that is a key of the cluster file (see ``declare``)."""
    return dataclasses.field(default=default, metadata=declare(
        default, form=form, meaning=meaning, directive=directive, lo=lo, hi=hi, pattern=pattern, what=what,
        choices=choices, shown=shown, type=type, label=label))


def _shown(default: Any, form: str) -> str:
    if default is REQUIRED:
        return "required"
    if default is None:
        return "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, str):
        return f'`"{default}"`'
    return f"`{default}`"


def keys_of(cls: type) -> dict[str, Key]:
    """The keys a model class declares, by name, in the order of its fields."""
    out = {}
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key")
        if key is not None:
            out[f.name] = dataclasses.replace(key, name=f.name, field=f.name)
    return out


def by_directive(cls: type) -> dict[str, Key]:
    """keepalived's directive -> the key of ``cls`` it comes from (the importer's map)."""
    return {k.directive: k for k in keys_of(cls).values() if k.directive}


def docs_table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """A table of docs/cluster-file.md, made from the declarations (a test keeps the page equal to it)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| {k.label or f'`{k.name}`'} | {k.kind} | {k.default} | {k.meaning} |"
             for k in keys_of(cls).values() if k.name not in skip]
    return "\n".join(rows) + "\n"
