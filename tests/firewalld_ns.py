"""TEST SCAFFOLDING (not shipped): a live firewalld inside one lab namespace.

firewalld needs a system D-Bus and writes /etc/firewalld. Inside a private
mount namespace this helper mounts a tmpfs on /run (a D-Bus of its own) and
binds a private copy of /etc/firewalld, starts dbus-daemon, then becomes
firewalld. Nothing of the host's /run or /etc changes.

    ip netns exec NS unshare --mount --propagation private \
        python tests/firewalld_ns.py LAUNCHER_MNT_NS CONFIG_COPY_DIR

It refuses to run in the host's own mount namespace: mounting on /run there
would hide the host's /run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def private_mount_namespace(launcher: str) -> bool:
    """Not the launcher's mount namespace (its /proc/self/ns/mnt link, passed
    in), and not init's where that can be read."""
    own = os.readlink("/proc/self/ns/mnt")
    try:
        init = os.readlink("/proc/1/ns/mnt")
    except OSError:
        init = launcher
    return own not in (launcher, init)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not private_mount_namespace(argv[0]):
        print("firewalld_ns: refusing to run outside a private mount namespace (unshare --mount)", file=sys.stderr)
        return 2
    copy = argv[1]
    shutil.copytree("/etc/firewalld", copy, dirs_exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "lvsdr-lab-run", "/run"], check=True)
    os.makedirs("/run/dbus", exist_ok=True)
    subprocess.run(["mount", "--bind", copy, "/etc/firewalld"], check=True)
    subprocess.run(["dbus-daemon", "--system", "--fork"], check=True)
    os.execvp("firewalld", ["firewalld", "--nofork", "--nopid"])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
