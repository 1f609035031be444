"""TEST SCAFFOLDING, not part of the product: run a command as systemd would
run it under one of lvsdr's units, so that the lab proves the units'
sandbox leaves lvsdr what it needs and nothing more.

The lab has no systemd (the machine's PID 1 is not systemd, and the lab's
processes live in network namespaces it made). This wrapper reads the
unit's ``[Service]`` section, as `lvsdr render --all` fills it in for the
lab's cluster, and applies, in a mount namespace of the command's own:

- ``ProtectSystem=strict``: every mount read-only but /dev, /proc and /sys;
- ``ProtectKernelTunables=yes``: /proc/sys read-only (and /sys, below it);
- ``ReadWritePaths=``: each path writable again (``-`` prefixed: when it exists);
- ``ProtectHome=yes``: /home and /root empty and read-only;
- ``CapabilityBoundingSet=``: every other capability dropped from the bounding
  set, so that the command runs with these alone;
- ``NoNewPrivileges=yes`` and ``UMask=``;
- ``PrivateTmp=yes``: a directory of the command's own, writable, as TMPDIR
  (the lab's state lives under the test's /tmp, which stays as it is, read-only);
- ``CacheDirectory=``: /var/cache/NAME writable, where it exists.

Not emulated: PrivateDevices (the lab reads its processes' logs through
inherited descriptors), and the system call and address family filters,
which systemd-analyze rates but the lab cannot apply without seccomp.

    python -m lvsdr.lab.sandbox UNIT_FILE -- COMMAND [ARG...]
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_SLAVE = 0x20, 0x1000, 0x4000, 0x80000
CLONE_NEWNS = 0x00020000
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
CAPS = ["chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
        "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
        "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
        "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
        "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
        "checkpoint_restore"]
_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


def service(text: str) -> dict[str, list[str]]:
    """The [Service] section of a unit: each key's values, in order (a key given twice adds to it)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        key, sep, value = line.partition("=")
        if section == "[Service]" and sep:
            out.setdefault(key.strip(), []).extend(value.split())
    return out


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, flags: int) -> None:
    _check(libc.mount(source.encode() if source else None, target.encode(), None, ctypes.c_ulong(flags), None),
           f"mount {target}")


def _mounts() -> list[tuple[str, int]]:
    """(mount point, its per-mount flags) of every mount that can be reached at
    its path, from /proc/self/mountinfo (in mount order): one mounted later at
    the same place or above it covers it (the IPVS guest mounts /usr over an
    earlier /usr/lib, whose remount would fail)."""
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[parts.index("-") + 1] == "nsfs":  # a namespace's handle (/run/netns/NS), not a file system
                continue
            point = parts[4].encode().decode("unicode_escape")
            mounts.append((point, sum(_FLAGS.get(o, 0) for o in parts[5].split(","))))
    return [(point, flags) for i, (point, flags) in enumerate(mounts)
            if not any(_under(point, later) for later, _f in mounts[i + 1:])]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _read_only(libc: ctypes.CDLL, point: str, flags: int) -> None:
    with contextlib.suppress(FileNotFoundError):  # unmounted meanwhile (another lab's teardown): nothing to protect
        _mount(libc, None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | (flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)))


def confine(unit: dict[str, list[str]], private: str) -> None:
    """Apply ``unit``'s sandbox to this process (root, before it execs the
    command); ``private``: a directory for its PrivateTmp."""
    libc = _libc()
    writable = list(unit.get("ReadWritePaths", []))
    if unit.get("PrivateTmp") == ["yes"]:
        os.makedirs(private, 0o700, exist_ok=True)
        os.environ["TMPDIR"] = private
        writable.append(private)
    writable += [f"-/var/cache/{name}" for name in unit.get("CacheDirectory", [])]
    _check(libc.unshare(CLONE_NEWNS), "unshare")
    _mount(libc, None, "/", MS_REC | MS_SLAVE)  # nothing done here reaches the other processes
    if unit.get("ProtectSystem") == ["strict"]:
        for point, flags in _mounts():
            if not any(_under(point, top) for top in ("/dev", "/proc", "/sys")):
                _read_only(libc, point, flags)
    if unit.get("ProtectKernelTunables") == ["yes"]:
        for top in ("/proc/sys", "/sys"):
            _mount(libc, top, top, MS_BIND | MS_REC)
            for point, flags in _mounts():
                if _under(point, top):
                    _read_only(libc, point, flags)
    if unit.get("ProtectHome") == ["yes"]:
        for home in ("/home", "/root"):
            if os.path.isdir(home):
                _check(libc.mount(b"tmpfs", home.encode(), b"tmpfs", ctypes.c_ulong(MS_RDONLY), b"mode=0755"),
                       f"mount tmpfs on {home}")
    for raw in writable:
        path = raw.lstrip("-")
        if raw.startswith("-") and not os.path.exists(path):
            continue
        _mount(libc, path, path, MS_BIND | MS_REC)
        _mount(libc, None, path, MS_REMOUNT | MS_BIND)
    if "CapabilityBoundingSet" in unit:
        keep = {c.lower().removeprefix("cap_") for c in unit["CapabilityBoundingSet"]}
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
        for number in range(last + 1):
            name = CAPS[number] if number < len(CAPS) else str(number)
            if name not in keep:
                _check(libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0), f"drop capability {name}")
    if unit.get("NoNewPrivileges") == ["yes"]:
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if "UMask" in unit:
        os.umask(int(unit["UMask"][0], 8))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m lvsdr.lab.sandbox UNIT_FILE -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        confine(service(f.read()), os.path.join(os.path.dirname(os.path.abspath(argv[0])), f"tmp-{os.getpid()}"))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
