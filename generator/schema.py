"""Reading a cluster file's text and walking what it parsed into, generically:
the one reader of TOML and JSON (``parse_text``), typed getters that record
one-line errors naming the field (``Table``), the quoting of a value in an
error line. The cluster's own rules are in load.py and load_services.py."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import tomli as _toml  # the same parser as the stdlib's tomllib, compiled: 3x faster on big files

from lvsdr.errors import InputError

from .keys import REQUIRED, Key
from .model import (
    IPAddress,
)

T = TypeVar("T")


def defaults_of(cls: type) -> dict[str, Any]:
    """A model class's field defaults: every default is stated once, on the model."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+").fullmatch


class _Missing:
    pass


MISSING = _Missing()


class Errors:
    """Collects one-line errors; every reader returns a usable value or None."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.lines.append(f"{where}: {msg}")


class Memo:
    """Sub-tables parsed once per distinct content (the same backend options
    or check under many services, as large clusters write them): a result is
    kept only when parsing it recorded no error, and the errors name their
    place, so every bad occurrence is still reported where it is."""

    def __init__(self, errors: Errors) -> None:
        self.errors = errors
        self.done: dict[Any, Any] = {}

    def get(self, kind: str, value: Any, parse: Callable[[], T]) -> T:
        try:
            key = (kind, repr(value))  # parsed TOML: repr tells every value and type apart (true is not 1)
        except ValueError:  # an integer too large to print: not worth keeping
            return parse()
        if key in self.done:
            return self.done[key]  # type: ignore[no-any-return]
        before = len(self.errors.lines)
        out = parse()
        if len(self.errors.lines) == before:
            self.done[key] = out
        return out


QUOTE_MAX = 80  # characters of a value echoed in an error line
MAX_INT = 2**63  # a larger integer is quoted by its size: Python cannot print one of more than 4,300 digits


def quote(v: object, limit: int = QUOTE_MAX) -> str:
    """A value as an error line shows it: JSON-quoted, on one line, cut at
    ``limit`` characters (the rest counted), whatever its type."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, int):
        text = str(v) if -MAX_INT < v < MAX_INT else f"(an integer of {v.bit_length()} bits)"
    elif isinstance(v, (str, float)) or v is None:
        text = json.dumps(v)
    else:
        text = f"(a {typename(v)})"
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def typename(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__


def parse_address(v: str, where: str, errors: Errors) -> IPAddress | None:
    """A host address of the cluster (a director's, a real server's, a VIP): one error line naming ``where`` else."""
    if "%" in v:  # ipaddress takes almost anything after % (newlines, braces, quotes) as a scope id
        errors.add(where, f"{quote(v)} has a scope id (%...); give the plain address")
        return None
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        errors.add(where, f"{quote(v)} is not an IP address")
        return None
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback or (
            addr.version == 4 and (addr.is_reserved or int(addr) >> 24 == 0)):
        errors.add(where, f"{addr} is not a unicast host address")
        return None
    if addr.version == 6 and addr.is_link_local:
        errors.add(where, f"{addr} is link-local; use a global address")
        return None
    return addr


SIMPLE_FORMS = ("int", "bool", "choice", "text")  # the forms a key is read in by its declaration alone (Table.key)


def read_simple(t: Table, keys: dict[str, Key], but: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every simple key of ``keys`` (but those of ``but``, read with more to say), by its declaration: a key
    declared on the model is read without a line of its own in the loader."""
    return {k.name: t.key(k) for k in keys.values() if k.form in SIMPLE_FORMS and k.name not in but}


class Table:
    """A TOML table being read: typed getters that record errors, unknown-key check."""

    def __init__(self, data: dict[str, Any], where: str, errors: Errors) -> None:
        self.data = data
        self.where = where
        self.errors = errors
        self.seen: set[str] = set()

    def path(self, key: str) -> str:
        if not _PLAIN_KEY(key):
            key = quote(key)  # keep the error on one line, whatever the key holds
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str, default: Any = MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is MISSING:
                self.errors.add(self.path(key), "required key is missing")
            return None if default is MISSING else default
        return self.data[key]

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any = MISSING) -> Any:
        if key not in self.data:  # the common case for optional keys: kept cheap
            return self.raw(key, default)
        self.seen.add(key)
        v = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
        if not ok:
            want = " or ".join(
                {int: "integer", str: "string", bool: "boolean", float: "number",
                 list: "list", dict: "table"}[k] for k in kinds
            )
            self.errors.add(self.path(key), f"expected {want}, got {typename(v)}")
            return None
        return v

    def int_in(self, key: str, lo: int, hi: int, default: int | None | _Missing = MISSING) -> int | None:
        v = self.get(key, int, default)
        if key not in self.data:
            return default if isinstance(default, int) else None
        if not isinstance(v, int):
            return None
        if not lo <= v <= hi:
            self.errors.add(self.path(key), f"{quote(v)} is outside {lo}..{hi}")
            return None
        return v

    def text(self, key: str, pattern: re.Pattern[str], what: str,
             default: str | None | _Missing = MISSING) -> str | None:
        v = self.get(key, str, default)
        if key not in self.data:
            return default if isinstance(default, str) else None
        if not isinstance(v, str):
            return None
        if not pattern.fullmatch(v):
            self.errors.add(self.path(key), f"{quote(v)} is not {what}")
            return None
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str | None | _Missing = MISSING) -> str | None:
        v = self.get(key, str, default)
        if key not in self.data:
            return default if isinstance(default, str) else None
        if not isinstance(v, str):
            return None
        if v not in choices:
            self.errors.add(
                self.path(key), f"unknown value {quote(v)} (expected one of {', '.join(choices)})"
            )
            return None
        return v

    def key(self, k: Key, default: Any = REQUIRED) -> Any:
        """A simple key read by its declaration (keys.py): an integer in its range, a boolean, one of its
        choices, a text of its pattern; ``default``, when given, instead of the declared one (``MISSING``:
        required here)."""
        d = k.value if default is REQUIRED else default
        d = MISSING if d is REQUIRED else d
        if k.form == "int":
            return self.int_in(k.name, k.lo, k.hi, d)
        if k.form == "bool":
            return self.get(k.name, bool, d)
        if k.form == "choice":
            return self.choice(k.name, k.choices, d)
        if k.form == "text" and k.pattern is not None:
            return self.text(k.name, k.pattern, k.what, d)
        raise ValueError(f"{k.name}: a {k.form} key is read by its own code")

    def address(self, key: str, default: None | _Missing = MISSING) -> IPAddress | None:
        v = self.get(key, str, default)
        if not isinstance(v, str) or key not in self.data:
            return None
        return parse_address(v, self.path(key), self.errors)

    def table(self, key: str) -> Table | None:
        v = self.get(key, dict, None)
        return Table(v, self.path(key), self.errors) if v is not None else None

    def tables(self, key: str, required: bool = True) -> list[Table]:
        v = self.get(key, list, MISSING if required else [])
        if v is None:
            return []
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                self.errors.add(f"{self.path(key)}[{i}]", f"expected table, got {typename(item)}")
                continue
            out.append(Table(item, f"{self.path(key)}[{i}]", self.errors))
        return out

    def done(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            self.errors.add(self.path(str(key)), "unknown key")


def decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InputError(f"key {quote(k)} is given twice in one object")
        out[k] = v
    return out


def parse_text(text: str, path: str) -> Any:
    """The one reader of a cluster file's text: JSON for ``*.json``, else TOML.
    Raises ``InputError`` (one line, naming the file) and nothing else."""
    try:
        if path.lower().endswith(".json"):
            try:
                return json.loads(text, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: JSON syntax error at line {e.lineno}: {e.msg}") from None
            except InputError as e:
                raise InputError(f"{path}: JSON: {e}") from None
        try:
            return _toml.loads(text)
        except _toml.TOMLDecodeError as e:
            from .kaconf import looks_like_keepalived

            if looks_like_keepalived(text):
                raise InputError(f"{path}: this is a keepalived.conf, not a cluster file; `lvsdr import {path} "
                                 "--arp-method METHOD` turns it into one") from None
            raise InputError(f"{path}: TOML syntax error: {e}") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None
    except ValueError as e:  # an integer of more than 4,300 digits (Python's limit on converting one)
        raise InputError(f"{path}: {str(e).split(':')[0].lower()}: an integer with too many digits") from None
