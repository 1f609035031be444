"""`lvsdr notify`'s fast path: put a director back into a role state the full
reconcile has already made and recorded, without importing the planner.

keepalived waits on its notify script at every VRRP transition; the full path
(load and validate the cluster file, read every method's facts, plan, apply)
costs about 100 ms in a fresh process, most of it imports. A director only
ever moves between two states, MASTER's and BACKUP's, and both are known
once the full path has reconciled each of them: after every reconcile it
records the state it left (``remember``), keyed by the cluster file's bytes,
the node and lvsdr's version. ``replay`` then observes the node (one netlink
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

import contextlib
import json
import os

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

FORMAT = 1

if TYPE_CHECKING:
    from typing import Any



def cache_path(state_dir: str, cluster: str, node: str) -> str:
    return os.path.join(state_dir, f"director-{cluster}-{node}.roles.json")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


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


def nft_tables(keys: list[str]) -> dict[str, str]:
    """The listing of each of these tables (``FAMILY NAME``) that exists, as
    `nft -s list ruleset` prints it."""
    code, stdout = _run(["nft", "-s", "list", "ruleset"])
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


def observe(keys: list[str], sysctls: list[str], record: str) -> dict[str, Any]:
    """What the fast path compares: lvsdr's nft tables, sysctls and record."""
    try:
        rec: str | None = _read(record)
    except FileNotFoundError:
        rec = None
    return {"tables": nft_tables(keys), "sysctls": _sysctls(sysctls), "record": rec}


def remember(path: str, key: str, role: str, address: str, devices: list[list[str]], keys: list[str],
             sysctls: list[str], record: str, addresses: list[list[str]]) -> None:
    """After a full reconcile: the state of ``role`` as it is now."""
    from .files import write_atomic

    try:
        cache = json.loads(_read(path))
        if cache.get("key") != key or cache.get("format") != FORMAT:
            cache = {}
    except (OSError, ValueError):
        cache = {}
    cache.update({"format": FORMAT, "key": key, "address": address, "devices": devices, "keys": keys,
                  "sysctls": sysctls, "record": record})
    cache.setdefault("roles", {})[role] = {**observe(keys, sysctls, record), "addresses": addresses}
    write_atomic(path, json.dumps(cache, sort_keys=True, indent=1), 0o600)


def forget(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def replay(cluster_path: str, node: str, version: str) -> tuple[str, list[str]] | None:
    """(role, changes made) when the node could be put into a recorded role
    state; None when the full path must run."""
    from . import netlink
    from .files import node_lock

    with open(cluster_path, "rb") as f:
        raw = f.read()
    try:
        if cluster_path.endswith(".json"):
            data = json.loads(raw)
        else:
            import tomli

            data = tomli.loads(raw.decode())
        from lvsdr.defaults import STATE_DIR

        state_dir = data["cluster"].get("state_dir", STATE_DIR)
        path = cache_path(state_dir, data["cluster"]["name"], node)
        cache = json.loads(_read(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if cache.get("format") != FORMAT or cache.get("key") != source_key(raw, node, version):
        return None
    with node_lock(state_dir):
        held = {(ifname, cidr.split("/")[0]) for ifname, cidr, _label in netlink.raw_addresses()}
        if not any(ip == cache["address"] for _i, ip in held):
            return None  # not this node: the full path says so properly
        role = "MASTER" if any((dev, vip) in held for dev, vip in cache["devices"]) else "BACKUP"
        want = cache["roles"].get(role)
        if want is None or not all((ifname, cidr.split("/")[0]) in held for ifname, cidr in want["addresses"]):
            return None
        now = observe(cache["keys"], cache["sysctls"], cache["record"])
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
        if script and _run(["nft", "-f", "-"], "\n".join(script) + "\n")[0]:
            return None
    return role, done
