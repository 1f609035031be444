"""TEST SCAFFOLDING: a live firewalld inside one lab namespace.

firewalld needs a system D-Bus and writes /etc/firewalld. Inside a private
mount namespace this helper mounts a tmpfs on /run (a D-Bus of its own) and
binds a private copy of /etc/firewalld, starts dbus-daemon, then becomes
firewalld. Nothing of the host's /run or /etc changes.

    ip netns exec NS unshare --mount --propagation private \
        python -m lvsdr.lab.firewalld CONFIG_COPY_DIR
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def main(argv: list[str]) -> int:
    copy = argv[0]
    shutil.copytree("/etc/firewalld", copy, dirs_exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "lvsdr-lab-run", "/run"], check=True)
    os.makedirs("/run/dbus", exist_ok=True)
    subprocess.run(["mount", "--bind", copy, "/etc/firewalld"], check=True)
    subprocess.run(["dbus-daemon", "--system", "--fork"], check=True)
    os.execvp("firewalld", ["firewalld", "--nofork", "--nopid"])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
