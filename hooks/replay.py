"""`lvsdr notify`'s fast path: put a director back into a role state the full
reconcile has already made and recorded, without importing the planner.

keepalived waits on its notify script at every VRRP transition; the full path
(load and validate the cluster file, read every method's facts, plan, apply)
costs about 100 ms in a fresh process, most of it imports. A director only
ever moves between two states, MASTER's and BACKUP's, and both are known
once the full path has reconciled each of them: after every reconcile it
records the state it left (``remember``), keyed by the cluster file's bytes,
the node and lvsdr's version. ``replay`` finds the record without parsing
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


def load_record(path: str) -> dict[str, Any]:
    import marshal

    with open(path, "rb") as f:
        data = marshal.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a record")
    return data


def locate(raw: bytes, path: str) -> tuple[str, str | None] | None:
    """(cluster name, state_dir or None) from a cluster file, without a TOML
    parser (tomli costs ~10 ms to import): read by line, for the plain form
    the docs and `lvsdr import` write (`name = "edge"` in `[cluster]`).
    None for any other way of saying it; the full path then runs. Safe by
    construction: a record is used only when its key matches these bytes,
    and such a record exists only where the full path, reading these same
    bytes, put it."""
    if path.endswith(".json"):
        import json

        cluster = json.loads(raw)["cluster"]
        return cluster["name"], cluster.get("state_dir")
    table = ""
    found: dict[str, str] = {}
    for line in raw.decode().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("["):
            table = text
            continue
        key, eq, value = text.partition("=")
        key, value = key.strip(), value.strip()
        if not table and key.startswith("cluster"):
            return None  # a dotted key (`cluster.name = ...`): not the plain form
        if table == "[cluster]" and key in ("name", "state_dir"):
            plain = len(value) >= 2 and value[0] == value[-1] == '"' and '"' not in value[1:-1] and "\\" not in value
            if not plain or key in found:
                return None
            found[key] = value[1:-1]
    return (found["name"], found.get("state_dir")) if "name" in found else None


def source_key(cluster_bytes: bytes, node: str, version: str) -> str:
    try:
        from _sha256 import sha256  # CPython's own, without hashlib's OpenSSL (~3 ms to import)
    except ImportError:
        from hashlib import sha256
    return str(sha256(b"\0".join((cluster_bytes, node.encode(), version.encode()))).hexdigest())


def _run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    """(exit code, output) of a tool, stderr merged into stdout (one pipe: no
    deadlock): posix_spawnp and pipes, not the subprocess module, which costs
    ~4 ms to import on this path. ``stdin`` is small (an nft script)."""
    r_out, w_out = os.pipe()
    r_in, w_in = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, r_in, 0), (os.POSIX_SPAWN_DUP2, w_out, 1), (os.POSIX_SPAWN_DUP2, w_out, 2)]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    finally:
        os.close(r_in)
        os.close(w_out)
    with os.fdopen(w_in, "w") as f:
        f.write(stdin)
    with os.fdopen(r_out) as out:
        output = out.read()
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def _nft(argv: list[str], script: str, resident: bool) -> tuple[int, str]:
    """(exit code, output) of an nft script: in a resident process through
    libnftables (libnft.py: ~0.4 ms for a role change), else by spawning
    ``argv`` (~16 ms; cheaper than loading the library in a process that
    ends)."""
    if resident:
        from .libnft import run

        done = run(script)
        if done is not None:
            return done
    return _run(argv, script if argv[-1] == "-" else "")


def nft_tables(keys: list[str], resident: bool = False) -> dict[str, str]:
    """The listing of each of these tables (``FAMILY NAME``) that exists, as
    `nft -s list ruleset` prints it."""
    code, stdout = _nft(["nft", "-s", "list", "ruleset"], "list ruleset\n", resident)
    if code:
        raise OSError(f"nft list ruleset: {stdout.strip()}")
    out: dict[str, str] = {}
    key, lines = "", list[str]()
    for line in stdout.splitlines():
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


def remember(path: str, key: str, role: str, address: str, devices: list[list[str]], keys: list[str],
             sysctls: list[str], record: str, addresses: list[list[str]]) -> None:
    """After a full reconcile: the state of ``role`` as it is now."""
    import marshal

    from .files import write_atomic

    try:
        cache = load_record(path)
        if cache.get("key") != key or cache.get("format") != FORMAT:
            cache = {}
    except (OSError, ValueError, EOFError, TypeError):
        cache = {}
    cache.update({"format": FORMAT, "key": key, "address": address, "devices": devices, "keys": keys,
                  "sysctls": sysctls, "record": record})
    cache.setdefault("roles", {})[role] = {**observe(keys, sysctls, record), "addresses": addresses}
    write_atomic(path, marshal.dumps(cache), 0o600)


def forget(path: str) -> None:
    import contextlib

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def record_path(raw: bytes, cluster_path: str, node: str) -> str | None:
    """Where notify looks for its record, from the cluster file's bytes (see
    ``locate``); None when it cannot tell."""
    where = locate(raw, cluster_path)
    if where is None:
        return None
    from lvsdr.defaults import STATE_DIR

    return cache_path(where[1] or STATE_DIR, where[0], node)


def current(record: dict[str, Any], raw: bytes, node: str, version: str) -> bool:
    """Whether a record was made from these cluster file bytes, for this node
    and this lvsdr."""
    return record.get("format") == FORMAT and record.get("key") == source_key(raw, node, version)


def replay(cluster_path: str, node: str, version: str, resident: bool = False) -> tuple[str, list[str]] | None:
    """(role, changes made) when the node could be put into a recorded role
    state; None when the full path must run. ``resident``: the caller is the
    agent, a process that stays (nft runs in process, see libnft.py)."""
    from . import netlink
    from .files import node_lock

    try:
        with open(cluster_path, "rb") as f:
            raw = f.read()
        path = record_path(raw, cluster_path, node)
        if path is None:
            return None
        cache = load_record(path)
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError):
        return None
    if not current(cache, raw, node, version):
        return None
    with node_lock(os.path.dirname(path)):  # the record lives in the state directory, which is the lock
        held = {(ifname, cidr.split("/")[0]) for ifname, cidr, _label in netlink.raw_addresses()}
        if not any(ip == cache["address"] for _i, ip in held):
            return None  # not this node: the full path says so properly
        role = "MASTER" if any((dev, vip) in held for dev, vip in cache["devices"]) else "BACKUP"
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
        # one transaction: all of it or nothing; on failure the full path runs
        if script and _nft(["nft", "-f", "-"], "\n".join(script) + "\n", resident)[0]:
            return None
    return role, done
