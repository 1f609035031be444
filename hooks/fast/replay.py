"""`lvsdr notify`'s fast path: put a director back into a role state the full
reconcile has already made and recorded, without importing the planner.

keepalived waits on its notify script at every VRRP transition; the full path
(load and validate the cluster file, read every method's facts, plan, apply)
costs about 100 ms in a fresh process, most of it imports. A director only
ever moves between two states, MASTER's and BACKUP's, and both are known
once the full path has reconciled each of them: after every reconcile it
records the state it left (``remember``), keyed by the cluster file's bytes,
the node and the build of lvsdr (fingerprint.py). ``replay`` finds the record without parsing
the cluster file (``locate``), then observes the node (one netlink
dump, one ``nft -s list ruleset``, a few /proc reads), and when everything
lvsdr manages there matches one of the two recorded states but for the nft
tables of the role, loads those tables in one atomic ``nft -f`` (the recorded
listings themselves: nft applies all of it or nothing). Anything else (no
record yet, a changed file, a record that does not match, an address or
sysctl off, a failed load) returns None and the full path runs. Standard
library only, on purpose; other methods' leftovers (arptables, iptables) are
the full path's to see, as the agent does every 30 s.
"""

from __future__ import annotations

import os

from lvsdr.errors import LvsdrError

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

FORMAT = 2  # 2: marshal, not JSON (json costs ~4 ms to import: it pulls in re)

if TYPE_CHECKING:
    from typing import Any


def cache_path(state_dir: str, cluster: str, node: str) -> str:
    """The record of both roles' states. marshal, the interpreter's own
    format (no import): trusted as the cluster file is, root's and 0600."""
    return os.path.join(state_dir, f"director-{cluster}-{node}.roles")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class BadRecord(ValueError):
    """A record that is not one the full path wrote: wrong owner, mode or shape."""


def _strs(v: object, n: int | None = None) -> bool:
    """A list of strings (of lists of ``n`` strings, with ``n``)."""
    if not isinstance(v, list):
        return False
    if n is None:
        return all(isinstance(x, str) for x in v)
    return all(isinstance(x, list) and len(x) == n and all(isinstance(y, str) for y in x) for x in v)


def _table_key(key: object) -> bool:
    fam, _, name = key.partition(" ") if isinstance(key, str) else ("", "", "")
    return fam in ("ip", "ip6", "inet", "arp", "bridge", "netdev") and bool(name) and set(name) <= _BARE


def _listing(key: str, text: object) -> bool:
    """One table's listing as `nft -s list ruleset` prints it: ``table KEY {``,
    indented lines, ``}``; nothing a transaction could read as another command."""
    if not isinstance(text, str):
        return False
    lines = text.split("\n")
    if not (len(lines) >= 3 and lines[0] == f"table {key} {{" and lines[-2] == "}" and lines[-1] == ""
            and all(ln.startswith("\t") or not ln for ln in lines[1:-2])
            and not _ODD.intersection(text.replace("\n", "").replace("\t", ""))):
        return False
    depth, quoted = 0, False
    for i, c in enumerate(text[:-2]):  # the table's own block closes at the last brace, not before
        if c == '"':
            quoted = not quoted
        elif not quoted and c in "{}":
            depth += 1 if c == "{" else -1
            if depth == 0 and i < len(text) - 3:
                return False
    return depth == 1 and not quoted


def check_record(data: object, state_dir: str) -> dict[str, Any]:
    """A record as ``remember`` writes it, or ``BadRecord`` saying what is off:
    its nft tables lvsdr's own (one table per listing), its sysctls under
    /proc/sys/net, its real-server record in the state directory."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadRecord("not a record of this format")
    keys: Any = data.get("keys")
    sysctls: Any = data.get("sysctls")
    roles: Any = data.get("roles")
    if not (isinstance(data.get("key"), str) and isinstance(data.get("address"), str) and _strs(keys)
            and _strs(data.get("devices"), 2) and _strs(sysctls) and isinstance(roles, dict)):
        raise BadRecord("a field of the wrong type")
    if not all(_table_key(k) for k in keys):
        raise BadRecord("an nft table that is not lvsdr's")
    for p in sysctls:
        if not p.startswith("/proc/sys/net/") or any(s in ("", ".", "..") for s in p[1:].split("/")):
            raise BadRecord(f"sysctl path {p!r} is not under /proc/sys/net")
    record = data.get("record")
    if not isinstance(record, str) or os.path.dirname(record) != state_dir.rstrip("/"):
        raise BadRecord("its real-server record is not in the state directory")
    for role, want in roles.items():
        if role not in ("MASTER", "BACKUP") or not isinstance(want, dict):
            raise BadRecord("an unknown role")
        tables = want.get("tables")
        if not (isinstance(tables, dict) and _strs(want.get("addresses"), 2)
                and isinstance(want.get("sysctls"), dict) and (want.get("record") is None
                                                               or isinstance(want.get("record"), str))):
            raise BadRecord(f"role {role}: a field of the wrong type")
        if not all(k in keys and _listing(k, v) for k, v in tables.items()):
            raise BadRecord(f"role {role}: a table listing that is not one nft table of its keys")
    return data


def load_record(path: str) -> dict[str, Any]:
    """The record at ``path``, trusted only as root's own (see
    files.open_trusted) and in the shape ``remember`` writes (``BadRecord``)."""
    import marshal

    from .files import read_trusted

    try:
        data = marshal.loads(read_trusted(path))
    except (EOFError, TypeError) as e:
        raise BadRecord(f"not marshal data ({e})") from None
    return check_record(data, os.path.dirname(path))


_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")  # a cluster name ([a-z0-9][a-z0-9_-]{0,30})
_PATH = _BARE | frozenset("./+")
# TOML allows these in comments and strings; Python's str.splitlines() breaks
# lines at them, TOML does not. Any control character but tab ends the plain form.
_ODD = frozenset(chr(c) for c in (*range(0x20), 0x7F, 0x85, 0x2028, 0x2029)) - {"\t"}


def _header(text: str) -> str | None:
    """``[name]`` or ``[[a.b]]`` in the plain form (bare keys, no blanks
    inside): the table's name; None for any other line starting with ``[``."""
    inner = text[2:-2] if text.startswith("[[") and text.endswith("]]") else text[1:-1] if text.endswith("]") else ""
    parts = inner.split(".")
    if not inner or not all(p and set(p) <= _BARE for p in parts):
        return None
    return text


def _lex(line: str, depth: int) -> int | None:
    """A line's bracket depth after it (arrays and inline tables that span
    lines), reading strings and comments as TOML does; None for a line the
    plain form does not cover (a multi-line string, an unclosed string)."""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "#":
            return depth
        if c in "\"'":
            if line.startswith(c * 3, i):
                return None  # a multi-line string: what looks like a line may be inside it
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if c == '"' and line[j] == "\\" else 1
            if j >= n:
                return None
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth < 0:
                return None
        i += 1
    return depth


def locate(raw: bytes, path: str) -> tuple[str, str | None] | None:
    """(cluster name, state_dir or None) from a cluster file, without a TOML
    parser (tomli costs ~10 ms to import): read by line as TOML reads it
    (lines end at \\n only, strings and comments lexed, arrays that span lines
    followed), for the plain form the docs and `lvsdr import` write
    (`name = "edge"` in `[cluster]`). None for anything else: any other way
    of saying it, a multi-line string, a control or line-separator character,
    a name or state_dir that is not a plain name or absolute path. The full
    path then runs. A record is used only when its key matches these bytes
    and it sits where root alone can write (see ``load_record``)."""
    if path.endswith(".json"):
        import json

        try:
            cluster = json.loads(raw)["cluster"]
            name, state = cluster["name"], cluster.get("state_dir")
        except (ValueError, KeyError, TypeError):
            return None
        ok = isinstance(name, str) and (state is None or isinstance(state, str))
        return _checked(name, state) if ok else None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    if _ODD.intersection(text.replace("\r\n", "\n").replace("\n", " ")) or text.startswith("\ufeff"):
        return None
    table, depth = "", 0
    found: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        stripped = line.strip(" \t")
        if depth == 0 and stripped.startswith("["):
            header = _header(stripped)
            if header is None:
                return None
            table = header
            continue
        if depth == 0 and stripped and not stripped.startswith("#"):
            key, eq, value = stripped.partition("=")
            key, value = key.strip(" \t"), value.strip(" \t")
            if not eq:
                return None
            if table in ("", "[cluster]") and not set(key) <= _BARE:
                return None  # a dotted or quoted key (`cluster.name = ...`): not the plain form
            if not table and key == "cluster":
                return None  # `cluster = { name = ... }`
            if table == "[cluster]" and key in ("name", "state_dir"):
                plain = len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in value[1:-1] \
                    and "\\" not in value
                if not plain or key in found:
                    return None
                found[key] = value[1:-1]
        after = _lex(line, depth)
        if after is None:
            return None
        depth = after
    if depth or "name" not in found:
        return None
    return _checked(found["name"], found.get("state_dir"))


def _checked(name: str, state: str | None) -> tuple[str, str | None] | None:
    """The name and state_dir as validation allows them, else None."""
    if not name or len(name) > 31 or not set(name) <= _NAME or name[0] in "_-":
        return None
    if state is not None and (not state.startswith("/") or not set(state) <= _PATH
                              or any(p in ("", ".", "..") for p in state[1:].split("/"))):
        return None
    return name, state


def nft_tables(keys: list[str], resident: bool = False) -> dict[str, str]:
    """The listing of each of these tables (``FAMILY NAME``) that exists, as
    `nft -s list ruleset` prints it."""
    from .spawn import nft

    code, stdout = nft("list ruleset\n", resident, ("nft", "-s", "list", "ruleset"))
    if code:
        raise OSError(f"nft list ruleset: {stdout.strip()}")
    return split_ruleset(stdout, keys)


def split_ruleset(stdout: str, keys: list[str]) -> dict[str, str]:
    """Pure: `nft -s list ruleset` output -> the listing of each table of
    ``keys`` that is in it (tests/data/facts/nft-ruleset.txt is a captured one)."""
    out: dict[str, str] = {}
    key, lines = "", list[str]()
    for line in stdout.split("\n"):
        if line.startswith("table "):
            key, lines = line.removeprefix("table ").removesuffix(" {"), [line]
        elif key:
            lines.append(line)
            if line == "}":  # a table ends at the first closing brace in column 0
                if key in keys:
                    out[key] = "\n".join(lines) + "\n"
                key = ""
    return out


def _sysctls(paths: list[str]) -> dict[str, str]:
    return {p: _read(p).strip() for p in paths}


def observe(keys: list[str], sysctls: list[str], record: str, resident: bool = False) -> dict[str, Any]:
    """What the fast path compares: lvsdr's nft tables, sysctls and record."""
    try:
        rec: str | None = _read(record)
    except FileNotFoundError:
        rec = None
    return {"tables": nft_tables(keys, resident), "sysctls": _sysctls(sysctls), "record": rec}


def record_path(raw: bytes, cluster_path: str, node: str) -> str | None:
    """Where notify looks for its record, from the cluster file's bytes (see
    ``locate``); None when it cannot tell."""
    where = locate(raw, cluster_path)
    if where is None:
        return None
    from lvsdr.defaults import STATE_DIR

    return cache_path(where[1] or STATE_DIR, where[0], node)


def current(record: dict[str, Any], raw: bytes, node: str, code: str) -> bool:
    """Whether a record was made from these cluster file bytes, for this node
    and this lvsdr."""
    from lvsdr.source import source_key

    return record.get("format") == FORMAT and record.get("key") == source_key(raw, node, code)


class RoleRecord:
    """notify's record of both roles' states for one cluster file, node and
    build of lvsdr: written (``remember``, after each full reconcile) and read
    (``load``: only root's own, validated file) by this one type (a plain
    class, since dataclasses costs ~8 ms to import on this path); ``matches``
    says whether it was made from these bytes."""

    __slots__ = ("path", "data")

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: str) -> RoleRecord:
        """``FileNotFoundError``, ``UntrustedError`` or ``BadRecord`` for anything but lvsdr's own record."""
        return cls(path, load_record(path))

    def matches(self, raw: bytes, node: str, code: str) -> bool:
        return current(self.data, raw, node, code)

    @property
    def roles(self) -> list[str]:
        return sorted(self.data.get("roles", {}))

    @staticmethod
    def remember(path: str, key: str, role: str, address: str, devices: list[list[str]], keys: list[str],
                 sysctls: list[str], record: str, addresses: list[list[str]]) -> None:
        """After a full reconcile: the state of ``role`` as it is now, beside the other role's (kept while the key
        is the same)."""
        import marshal

        from .files import write_atomic

        try:
            cache = load_record(path)
            if cache.get("key") != key:
                cache = {}
        except (OSError, ValueError, LvsdrError):
            cache = {}
        cache.update({"format": FORMAT, "key": key, "address": address, "devices": devices, "keys": keys,
                      "sysctls": sysctls, "record": record})
        cache.setdefault("roles", {})[role] = {**observe(keys, sysctls, record), "addresses": addresses}
        write_atomic(path, marshal.dumps(cache), 0o600)

    @staticmethod
    def forget(path: str) -> None:
        """No record (the role's rules are not all nft tables: notify takes the full path)."""
        import contextlib

        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class Verdict:
    """Whether notify can replay for a cluster file and node: the record when
    it can; else why not, and whether that is worth a warning (a record root
    must not trust) or the ordinary course (no record yet, an edited file)."""

    __slots__ = ("record", "reason", "alarming")

    def __init__(self, record: RoleRecord | None, reason: str = "", alarming: bool = False) -> None:
        self.record, self.reason, self.alarming = record, reason, alarming


def why_not(raw: bytes, cluster_path: str, node: str, code: str) -> Verdict:
    """The one judgement of notify's preconditions, for replay and for doctor:
    the record is found from the file read by line, trusted, in lvsdr's shape
    and made from these bytes by this build for this node."""
    if not node or not set(node) <= _BARE | {"."} or node[0] in ".-_":
        return Verdict(None, f"the node name {node!r} is not one lvsdr writes plainly")
    path = record_path(raw, cluster_path, node)
    if path is None:
        return Verdict(None, "its record cannot be found: write the cluster's name plainly in [cluster] "
                             '(name = "...", no comment on that line)')
    try:
        record = RoleRecord.load(path)
    except FileNotFoundError:
        return Verdict(None, "no record yet of the BACKUP or MASTER state for this cluster file (the first "
                             "transition into each takes the full path, which records it)")
    except (OSError, ValueError) as e:  # BadRecord is a ValueError
        return Verdict(None, f"notify's record not used: {e}", alarming=True)
    except LvsdrError as e:  # files.UntrustedError
        return Verdict(None, str(e), alarming=True)
    if not record.matches(raw, node, code):
        return Verdict(None, "its record is of another cluster file or build of lvsdr (the next transition "
                             "into each role records anew)")
    return Verdict(record)


def replay(cluster_path: str, node: str, code: str, raw: bytes,
           resident: bool = False) -> tuple[str, list[str]] | str | None:
    """(role, changes made) when the node could be put into a recorded role
    state; None when the full path must run as usual (no record yet, an edited
    file, a node not in a recorded state); a string saying why, when the full
    path must run and the reason deserves a log line (a record root must not
    trust, or not in the shape lvsdr writes). ``resident``: the caller is the
    agent, a process that stays (nft runs in process, see libnft.py).
    ``raw``: the cluster file's bytes, as the caller read them (once: the
    full path, should it run, acts on the same reading)."""
    from . import netlink
    from .files import node_lock

    verdict = why_not(raw, cluster_path, node, code)
    if verdict.record is None:
        return verdict.reason if verdict.alarming else None
    try:
        with node_lock(os.path.dirname(verdict.record.path), node):  # the record lives in the state directory
            return _replay_locked(verdict.record.data, role_of=netlink.raw_addresses, resident=resident)
    except LvsdrError as e:
        return str(e)


def _replay_locked(cache: dict[str, Any], role_of: Any, resident: bool) -> tuple[str, list[str]] | None:
    held = {(ifname, cidr.split("/")[0]) for ifname, cidr, _label in role_of()}
    if not any(ip == cache["address"] for _i, ip in held):
        return None  # not this node: the full path says so properly
    from lvsdr.roles import role_of

    role = role_of(held, [(dev, vip) for dev, vip in cache["devices"]])
    want = cache["roles"].get(role)
    if want is None or not all((ifname, cidr.split("/")[0]) in held for ifname, cidr in want["addresses"]):
        return None
    try:
        now = observe(cache["keys"], cache["sysctls"], cache["record"], resident)
    except OSError:
        return None  # nft could not list (or a sysctl is gone): the full path says what is wrong
    if now["sysctls"] != want["sysctls"] or now["record"] != want["record"]:
        return None
    script = []
    done = []
    for key in cache["keys"]:
        have, need = now["tables"].get(key), want["tables"].get(key)
        if have == need:
            continue
        script += [f"table {key}", f"delete table {key}"]
        if need is not None:
            script.append(need)
            done.append(f"nftables: load table {key} (the recorded {role} state)")
        else:
            done.append(f"nftables: delete table {key} (the recorded {role} state)")
    # one transaction, through the gateway: all of it or nothing; on failure the full path runs
    from lvsdr.hooks.gateway import nft_transaction

    if script and not nft_transaction("\n".join(script) + "\n", resident):
        return None
    return role, done
