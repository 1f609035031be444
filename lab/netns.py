"""Running commands in network namespaces (argument lists, never shell strings)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lvsdr.errors import LvsdrError, MissingToolError

# program -> Debian package, for clear errors before anything starts
LAB_TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "keepalived": "keepalived",
    "arping": "arping",
    "curl": "curl",
}


CLONE_NEWNET = 0x40000000  # setns(2)
T = TypeVar("T")


class LabError(LvsdrError):
    """The lab could not be built, probed or torn down."""


def require_tools(tools: dict[str, str] = LAB_TOOLS) -> None:
    for prog, pkg in tools.items():
        if shutil.which(prog) is None and not os.path.exists(f"/usr/sbin/{prog}"):
            raise MissingToolError(prog, pkg)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces); run it with sudo")


def run(cmd: list[str], check: bool = True, timeout: float = 30, input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                           check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)}: no answer within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise LabError(f"{cmd[0]}: not found") from None
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def ip_batch(ns: str | None, commands: list[str], feature: str = "", force: bool = False) -> None:
    """``commands`` (`ip` arguments, one a line) in one `ip -batch` process,
    in network namespace ``ns`` (None: this one): in the TCG guest an `ip`
    costs a quarter of a second, and a lab's start ran some seventy. The
    first failing line stops it (``force``: goes on); a kernel or sandbox
    without ``feature`` gets a sentence, not ip's error."""
    if not commands:
        return
    cmd = ["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"]
    p = run(cmd, check=False, input="\n".join(commands) + "\n")
    if p.returncode == 0 or force:
        return
    err = (p.stderr or p.stdout).strip()
    if feature and any(s in err for s in ("Unknown device type", "not supported", "Operation not permitted")):
        raise LabError(f"this kernel or sandbox lacks {feature} ({' '.join(cmd)}: {err})")
    raise LabError(f"{' '.join(cmd)}: exit {p.returncode}: {err}\n" + "\n".join(commands))


def write_sysctls(ns: str, values: dict[str, str]) -> None:
    """Kernel settings of network namespace ``ns`` (``{"net.ipv4.ip_forward": "1"}``),
    written from a thread in it (/proc/sys/net is the writing thread's
    namespace's): no `ip netns exec sysctl` per setting. The file of each key
    is the product's reading of it (``hooks.facts.sysctl_path``)."""
    from lvsdr.hooks.facts import sysctl_path

    def write() -> None:
        for key, value in values.items():
            with open(sysctl_path(key), "w", encoding="ascii") as f:
                f.write(value)

    in_ns(ns, write, f"sysctl {' '.join(values)}")


# /proc/net tables and the state of a listening socket in each (TCP LISTEN, UDP bound)
LISTENING = {"tcp": "0A", "tcp6": "0A", "udp": "07", "udp6": "07"}


def listening(ns: str, tables: tuple[str, ...] = tuple(LISTENING)) -> set[int]:
    """The ports something in ``ns`` listens on (TCP) or has bound (UDP), any
    family (`ss -lntu`, read in process; ``tables`` narrows it: ("tcp", "tcp6"))."""
    ports = set()
    for table in tables:
        for line in read_net(ns, table).splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTENING[table]:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def nsexec(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def ns_run(ns: str, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(nsexec(ns, cmd), **kw)


def enter(ns: str) -> None:
    """Move the calling thread (only it: setns(2) applies to one thread) into
    network namespace ``ns``: the sockets it opens and the /proc/thread-self/net
    it reads are the namespace's. For threads made to do that and end."""
    import ctypes

    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    finally:
        os.close(fd)


def in_ns(ns: str, fn: Callable[[], T], what: str) -> T:
    """``fn()`` run in a short-lived thread inside network namespace ``ns``,
    in this process: no `ip netns exec` and no program started per probe (in
    the TCG guest a curl costs a second, `ip netns exec cat` a third of one,
    and the probes' processes competed with what they measured). Exceptions
    come back to the caller; OSError as LabError naming ``what``."""
    import threading

    out: list[T] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            enter(ns)
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            failed.append(e)

    t = threading.Thread(target=work, name=f"in_ns {ns}", daemon=True)
    t.start()
    t.join()
    if failed:
        if isinstance(failed[0], OSError):
            raise LabError(f"{ns}: {what}: {failed[0]}")
        raise failed[0]
    return out[0]


def read_net(ns: str, name: str) -> str:
    """/proc/net/``name`` as network namespace ``ns`` has it, read in process."""

    def read() -> str:
        with open(f"/proc/thread-self/net/{name}", encoding="ascii", errors="replace") as f:
            return f.read()

    return in_ns(ns, read, f"cannot read /proc/net/{name}")


def ip_json(ns: str, *args: str) -> Any:
    p = run(["ip", "-n", ns, "-j", *args])
    return json.loads(p.stdout or "[]")


def list_netns() -> set[str]:
    p = run(["ip", "-j", "netns", "list"], check=False)
    try:
        return {entry["name"] for entry in json.loads(p.stdout or "[]")}
    except (ValueError, KeyError, TypeError):
        return set()


def ns_pids(ns: str) -> list[int]:
    return pids_in([ns]).get(ns, [])


def pids_in(namespaces: list[str]) -> dict[str, list[int]]:
    """The processes in each named network namespace, from one scan of /proc
    (no `ip netns pids` per namespace and poll)."""
    inodes: dict[tuple[int, int], str] = {}
    for ns in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(f"/run/netns/{ns}")
            inodes[(st.st_dev, st.st_ino)] = ns
    out: dict[str, list[int]] = {}
    if not inodes:
        return out
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        name = inodes.get((st.st_dev, st.st_ino))
        if name is not None:
            out.setdefault(name, []).append(int(entry))
    return out


def kill_in_ns(ns: str, comm: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signal the processes named ``comm`` in ``ns`` only (pkill would match
    every namespace on the machine). For SIGKILL they are all stopped first:
    keepalived's children get SIGTERM when their parent dies, and a VRRP child
    that is still running then resigns in order (a priority-0 advert), which a
    machine that dies does not do."""
    hit = [pid for pid in ns_pids(ns) if _comm(pid) == comm]
    if sig == signal.SIGKILL:
        for pid in hit:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    for pid in hit:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return hit


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_ns_processes(namespaces: list[str], grace: float = 2.0, at_once: tuple[str, ...] = ("keepalived",)) -> None:
    """SIGTERM every process in ``namespaces`` at once (SIGKILL for the
    ``at_once`` programs: keepalived's orderly shutdown takes a second and a
    namespace about to go needs none), then SIGKILL what is left after
    ``grace``; waits until they are gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for ps in pids_in(namespaces).values() for p in ps]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if _comm(pid) in at_once else sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.02)
            pids = [p for ps in pids_in(namespaces).values() for p in ps]
        if not pids:
            return


def kill_named(state_dir: str, namespaces: list[str]) -> list[int]:
    """SIGKILL every process whose command line names the lab: an argument
    that is one of its namespaces (`ip netns exec NS ...` still starting, not
    in the namespace yet) or a path in its state directory (the stand-in, a
    sandboxed command). What a start interrupted between spawning a process
    and recording it would leave, and what the namespaces alone do not show."""
    names = set(namespaces)
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a in names or a == state_dir or a.startswith(state_dir + "/") for a in args):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed


def delete_netns(namespaces: list[str]) -> None:
    kill_ns_processes(namespaces)
    ip_batch(None, [f"netns del {ns}" for ns in namespaces], force=True)
