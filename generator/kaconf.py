"""Reading keepalived.conf as keepalived 2.2.7 does (pure but for the ``read``
function it is given): lines end at \\n only, comments start at # or !
anywhere outside quotes (``\\#`` and ``\\!`` are the signs themselves), blocks,
quoted strings, ``include`` (globs, relative to the including file), ``@ID``
conditional lines, ``$NAME=value`` definitions and the ``~SEQ``/``~LST``
line repeaters (``~SEQ(i, 1, 3) real_server 192.0.2.$i 80 {...}``: the rest of
the line once per value, ``$i`` defined each time; ``~SEQx`` in hex;
``~LST(i, a, b)`` or ``~LST({i, j}, {a, b}, {c, d})`` over values). A trailing
backslash continues a line only in a ``$NAME=`` definition (keepalived's
multi-line definitions, which expand into several lines): those are refused
in one line. The result is a tree of directives, each with its file and line, for
``importer.py``.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lvsdr.errors import InputError


@dataclass(frozen=True)
class Directive:
    """One keepalived directive: its words (keyword first, quotes removed)
    and, for a block, its children."""

    words: tuple[str, ...]
    file: str
    line: int
    children: tuple[Directive, ...] | None = None
    quoted: tuple[bool, ...] = ()  # per word: was it a quoted string

    @property
    def key(self) -> str:
        return self.words[0]

    @property
    def args(self) -> tuple[str, ...]:
        return self.words[1:]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def block(self) -> tuple[Directive, ...]:
        return self.children or ()


@dataclass
class Notes:
    """What the reader could not take as keepalived would: (where, text)."""

    skipped: list[tuple[str, str]] = field(default_factory=list)


_VAR_DEF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_VAR_USE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?: +[0-9]+)*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# keepalived 2.2.7's standard definitions (set_std_definitions()): _HASH and _BANG are the signs (never a
# comment), _INSTANCE the config id (-i); _PWD (its working directory) and _RANDOM [MIN MAX] (a new number at
# each use) have no value an import could know
BUILTINS = {"_HASH": "\\#", "_BANG": "\\!"}
UNKNOWABLE = {"_PWD": "keepalived's working directory", "_RANDOM": "a random number keepalived draws at each use"}
MAX_INCLUDE_DEPTH = 8
MAX_LOADS = 1000  # files read in all, an included file counted each time: eight files of eight includes are 8**7
MAX_NESTED = 8  # ~SEQ/~LST on one line, each inside the one before
MAX_REPEATS = 100_000  # lines ~SEQ and ~LST make in all (keepalived has no bound; a typo can make billions)
MAX_TEXT = 64 << 20  # characters of all lines read, after $NAME substitution (a 1 MB variable used 3,000 times)
BLOCK_KEYWORDS = ("global_defs", "vrrp_instance", "virtual_server", "vrrp_script", "vrrp_sync_group",
                  "virtual_server_group", "static_ipaddress", "static_routes", "vrrp_track_file", "track_file",
                  "linkbeat_interfaces", "static_rules", "garp_group", "bfd_instance")


def looks_like_keepalived(text: str) -> bool:
    """Does ``text`` open a keepalived block (in its first 50 directives)?"""
    seen = 0
    for raw in text.split("\n"):
        words = raw.split("\0", 1)[0].split()
        if not words or words[0][0] in "#!":
            continue
        if words[0].startswith("@") and len(words) > 1:
            words = words[1:]
        if words[0] in BLOCK_KEYWORDS or words[0] == "include":
            return True
        seen += 1
        if seen >= 50:
            break
    return False


WHITESPACE = " \t\n\v\f\r"  # C's isspace() in keepalived's locale (Python's str.isspace() takes more)
MAX_DEPTH = 64  # nested blocks; keepalived's own grammar goes five deep


def _tokens(line: str) -> list[tuple[str, bool]]:
    """Words of one line as keepalived 2.2.7 reads them: quoted strings are
    one word, a # or ! outside quotes begins a comment (also inside a word:
    `51#7` is 51) unless a backslash escapes it (`\\#` is a #: keepalived's
    decomment()), braces are words of their own, blanks are C's."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in WHITESPACE:
            i += 1
        elif c in "#!":
            break
        elif c == '"':
            j = line.find('"', i + 1)
            if j < 0:
                j = n  # keepalived takes an unterminated quote to the end of the line
            out.append((line[i + 1:j], True))
            i = j + 1
        elif c in "{}":
            out.append((c, False))
            i += 1
        else:
            j, word = i, []
            while j < n and line[j] not in WHITESPACE and line[j] not in '{}"#!':
                if line[j] == "\\" and j + 1 < n and line[j + 1] in "#!":
                    j += 1  # an escaped comment sign: the sign itself, in the word
                word.append(line[j])
                j += 1
            out.append(("".join(word), False))
            i = j
    return out


def read_keepalived(path: str, read: Callable[[str], str], config_id: str | None = None,
                    notes: Notes | None = None) -> tuple[Directive, ...]:
    """The directive tree of ``path`` and what it includes. ``read(path)``
    returns a file's text (raising OSError); ``config_id`` is keepalived's
    ``-i``: lines ``@ID ...`` apply only when it matches, ``@^ID ...`` unless it
    does. Raises InputError for what keepalived would not read at all."""
    notes = notes if notes is not None else Notes()
    reading = _Reading(read, config_id, notes,
                       dict(BUILTINS) | ({"_INSTANCE": config_id} if config_id is not None else {}))
    _load(reading, path, 0)
    lines = reading.lines
    pos = 0

    def block(depth: int) -> tuple[Directive, ...]:
        nonlocal pos
        out: list[Directive] = []
        if depth > MAX_DEPTH:
            file, lineno, _text = lines[pos - 1]
            raise InputError(f"{file}:{lineno}: blocks nested deeper than {MAX_DEPTH}")
        while pos < len(lines):
            file, lineno, text = lines[pos]
            toks = _tokens(text)
            pos += 1
            while toks:
                if toks[0][0] == "}" and not toks[0][1]:
                    if depth == 0:  # keepalived warns and goes on
                        notes.skipped.append((f"{file}:{lineno}", "'}' closes a block that was not opened "
                                              "(keepalived ignores it, and so does lvsdr)"))
                        toks = toks[1:]
                        continue
                    rest = toks[1:]
                    if rest:  # "} something" on one line: keep the rest for the parent
                        pos -= 1
                        lines[pos] = (file, lineno, " ".join(f'"{w}"' if q else w for w, q in rest))
                    return tuple(out)
                if "{" in [w for w, q in toks if not q]:
                    k = next(i for i, (w, q) in enumerate(toks) if w == "{" and not q)
                    head, tail = toks[:k], toks[k + 1:]
                    if not head:
                        raise InputError(f"{file}:{lineno}: a block without a keyword")
                    if tail:  # "{ a b }" on one line: the rest is the block's first lines
                        lines.insert(pos, (file, lineno, " ".join(f'"{w}"' if q else w for w, q in tail)))
                    children = block(depth + 1)
                    out.append(Directive(tuple(w for w, _q in head), file, lineno, children,
                                         tuple(q for _w, q in head)))
                    toks = []
                else:
                    k = next((i for i, (w, q) in enumerate(toks) if w == "}" and not q), len(toks))
                    out.append(Directive(tuple(w for w, _q in toks[:k]), file, lineno, None,
                                         tuple(q for _w, q in toks[:k])))
                    toks = toks[k:]
        if depth:
            raise InputError(f"{lines[-1][0]}: end of file inside a block (a '}}' is missing)")
        return tuple(out)

    return block(0)


@dataclass
class _Reading:
    """One reading of a file and what it includes: its inputs, the definitions so far, the lines taken,
    and what it has spent of each cap."""

    read: Callable[[str], str]
    config_id: str | None
    notes: Notes
    variables: dict[str, str]
    lines: list[tuple[str, int, str]] = field(default_factory=list)
    loads: int = 0  # files read (MAX_LOADS)
    chars: int = 0  # characters taken, after $NAME substitution (MAX_TEXT)
    repeats: int = 0  # lines ~SEQ and ~LST made (MAX_REPEATS)


def _load(r: _Reading, path: str, depth: int) -> None:
    """Read ``path`` into ``r.lines``."""
    if depth > MAX_INCLUDE_DEPTH:
        raise InputError(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
    r.loads += 1
    if r.loads > MAX_LOADS:
        raise InputError(f"{path}: the includes read more than {MAX_LOADS} files in all; keepalived.conf "
                         "that large is not imported")
    try:
        text = r.read(path)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    # keepalived reads lines ending at \n only, as C strings (a NUL ends one),
    # with no continuation but in a $NAME= definition: a backslash at the end is a character like another
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.split("\0", 1)[0].strip(WHITESPACE)
        if line.startswith("@"):
            cond, _, rest = line[1:].partition(" ")
            negate = cond.startswith("^")
            name = cond[1:] if negate else cond
            if r.config_id is None and not negate:
                r.notes.skipped.append((f"{path}:{lineno}", f"conditional line for config id {name!r} skipped "
                                        "(give --config-id to take it)"))
                continue
            if (name == r.config_id) == negate:
                continue
            line = rest.strip(WHITESPACE)
        _line(r, line, path, lineno, depth)


def _line(r: _Reading, line: str, path: str, lineno: int, depth: int, nested: int = 0) -> None:
    """One line of ``path`` (its conditional taken off): a comment, a definition, a repeater (each line
    it makes taken in turn, as keepalived does; ``nested`` repeaters around it), an include, or a line
    of configuration."""
    where = f"{path}:{lineno}"
    if not line or line[0] in "#!":
        return
    m = _VAR_DEF.fullmatch(line)
    if m:
        if m.group(2).rstrip(WHITESPACE).endswith("\\"):
            raise InputError(f"{where}: ${m.group(1)} is a multi-line definition (its line ends in a "
                             "backslash): keepalived expands it into several lines; lvsdr's import does not "
                             "read those (write its lines out where it is used)")
        r.variables[m.group(1)] = m.group(2).strip()
        return
    if line.startswith(("~SEQ", "~LST")):
        if nested >= MAX_NESTED:
            raise InputError(f"{where}: more than {MAX_NESTED} ~SEQ/~LST nested on one line; not imported")
        got = _seq(line, r.variables, where) if line[1] == "S" else _lst(line)
        if got is None:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise InputError(f"{where}: invalid {line[:4]} specification {shown!r} (keepalived refuses it too)")
        names, value_sets, text = got
        for values in value_sets:
            r.repeats += 1
            if r.repeats > MAX_REPEATS:
                raise InputError(f"{where}: ~SEQ and ~LST make more than {MAX_REPEATS} lines in all; not imported")
            r.variables.update(zip(names, values, strict=True))
            _line(r, text, path, lineno, depth, nested + 1)
        return
    if "$" in line:
        line = _expand(line, r.variables, MAX_TEXT - r.chars, where)
    r.chars += len(line)
    if r.chars > MAX_TEXT:
        raise InputError(f"{where}: more than {MAX_TEXT >> 20} MiB of configuration in all (with "
                         "$NAME substituted); not imported")
    words = _tokens(line)
    if words and words[0][0] == "include" and len(words) >= 2:
        pattern = words[1][0]
        if not os.path.isabs(pattern):
            pattern = os.path.join(os.path.dirname(path), pattern)
        found = sorted(glob.glob(pattern))
        if not found:
            r.notes.skipped.append((where, f"include {words[1][0]} matches no file"))
        for inc in found:
            try:
                _load(r, inc, depth + 1)
            except InputError as e:
                if str(e).startswith(f"{inc}:"):  # the included file itself: say where it was included
                    raise InputError(f"{where}: include {words[1][0]}: {e}") from None
                raise
        return
    r.lines.append((path, lineno, line))


_SEQ = re.compile(r"~SEQ(x?)[ \t]*\([ \t]*([^ \t,)]+)[ \t]*,([^)]*)\)[ \t]*(.*)", re.S)
_NUMBER = re.compile(r"[ \t]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)[ \t]*")


Repeat = tuple[tuple[str, ...], list[tuple[str, ...]], str]  # a repeater's names, its values per line, its text


def _seq(line: str, variables: dict[str, str], where: str) -> Repeat | None:
    """``~SEQ[x](var, [start,] [step,] end) text`` as keepalived 2.2.7's add_seq() reads it (its numbers
    through $NAME first, then strtol's bases: 0x hex, 0 octal); None where keepalived refuses it."""
    m = _SEQ.fullmatch(line)
    if not m:
        return None
    hexa, var, params, text = m.groups()
    params = _VAR_USE.sub(lambda v: _value(v, variables, where), params)
    numbers = []
    for part in params.split(","):
        n = _NUMBER.fullmatch(part)
        if not n:
            return None
        digits = n.group(2)
        value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if digits[0] == "0" else int(digits)
        numbers.append(-value if n.group(1) == "-" else value)
    if len(numbers) == 1:
        end = numbers[0]
        start, step = (-1 if end < 0 else 1), (-1 if end < 1 else 1)
    elif len(numbers) == 2:
        start, end = numbers
        step = 1 if start <= end else -1
    elif len(numbers) == 3:
        start, step, end = numbers
        if not step or (start < end and step < 0) or (start > end and step > 0):
            return None
    else:
        return None
    if hexa and (start < 0 or end < 0):
        return None
    count = max(0, (end - start) // step + 1)
    if count > MAX_REPEATS:
        count = MAX_REPEATS + 1  # refused by the caller's count, without building billions of values
    values = [start + i * step for i in range(count)]
    return (var,), [(f"{v:x}" if hexa else str(v),) for v in values], text


def _lst(line: str) -> Repeat | None:
    """``~LST(var, a, b) text`` or ``~LST({v1, v2}, {a1, a2}, {b1, b2}) text`` as keepalived 2.2.7's add_lst()
    reads it (a missing value blank); None where keepalived refuses it."""
    p = line[4:].lstrip(" \t")
    if not p.startswith("("):
        return None
    p = p[1:].lstrip(" \t")

    def group(p: str) -> tuple[list[str], str] | None:
        """Words separated by commas: one (then ``p`` is at , or ``)``), or a {braced} list."""
        if not p.startswith("{"):
            word = re.match(r"[^ \t,})]*", p)
            assert word is not None
            return [word.group(0)], p[word.end():].lstrip(" \t")
        if "}" not in p:
            return None
        inner, rest = p[1:].split("}", 1)
        return [w.strip(" \t") for w in inner.split(",")], rest.lstrip(" \t")

    got = group(p)
    if got is None or not got[0][0] or not got[1].startswith(","):
        return None
    names, p = got[0], got[1][1:].lstrip(" \t")
    sets: list[tuple[str, ...]] = []
    while True:
        got = group(p)
        if got is None or len(got[0]) > len(names):
            return None
        values, p = got
        sets.append(tuple(values) + ("",) * (len(names) - len(values)))
        if p.startswith(")"):
            break
        if not p.startswith(","):
            return None
        p = p[1:].lstrip(" \t")
    return tuple(names), sets, p[1:].lstrip(" \t")


def _expand(line: str, variables: dict[str, str], room: int, where: str) -> str:
    """``line`` with its $NAME and ${NAME} replaced, refused (InputError
    naming ``where``) as soon as it would be longer than ``room``: the size is
    counted before anything is built."""
    size, last = 0, 0
    for m in _VAR_USE.finditer(line):
        value = _value(m, variables, where)
        size += m.start() - last + len(value)
        last = m.end()
        if size > room:
            raise InputError(f"{where}: more than {MAX_TEXT >> 20} MiB of configuration in all (with $NAME "
                             "substituted); not imported")
    return _VAR_USE.sub(lambda v: _value(v, variables, where), line)


def _value(m: re.Match[str], variables: dict[str, str], where: str) -> str:
    """What keepalived puts for one $NAME, ${NAME} or ${_RANDOM MIN MAX}: the definition's value, the text
    itself when nothing is defined so (or a user definition is given parameters), refused where the value is
    one only keepalived knows."""
    name = m.group(1) or m.group(3)
    if name in UNKNOWABLE or (name == "_INSTANCE" and name not in variables):
        why = UNKNOWABLE.get(name, "the config id, keepalived's -i, else the host's name (give --config-id)")
        raise InputError(f"{where}: {m.group(0)} is {why}: lvsdr's import cannot know its value (write it out)")
    if m.group(2):  # parameters: only _RANDOM takes them
        return m.group(0)
    return variables.get(name, m.group(0))
