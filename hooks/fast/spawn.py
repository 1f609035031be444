"""Starting a program on notify's fast path: posix_spawnp and pipes, not the
subprocess module, which costs ~4 ms to import there; and nft, run in this
process through libnftables where the caller stays (libnft.py), spawned
where it ends. Standard library only. Everything else lvsdr runs goes
through hooks/run.py."""

from __future__ import annotations

import os


def run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    """(exit code, output) of a program, stderr merged into stdout (one pipe:
    no deadlock). ``stdin`` is small (an nft script). ``FileNotFoundError``
    when the program is not installed."""
    r_out, w_out = os.pipe()
    r_in, w_in = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, r_in, 0), (os.POSIX_SPAWN_DUP2, w_out, 1), (os.POSIX_SPAWN_DUP2, w_out, 2)]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    except BaseException:
        for fd in (r_out, w_in):
            os.close(fd)
        raise
    finally:
        os.close(r_in)
        os.close(w_out)
    with os.fdopen(w_in, "w") as f:
        f.write(stdin)
    with os.fdopen(r_out) as out:
        output = out.read()
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def nft(script: str, resident: bool, argv: tuple[str, ...] = ("nft", "-f", "-")) -> tuple[int, str]:
    """(exit code, output) of an nft script (one transaction: all of it or
    nothing): in a resident process through libnftables (~0.4 ms for a role
    change), else by spawning ``argv`` (~16 ms; cheaper than loading the
    library in a process that ends), the script on its stdin when it reads
    one (``-``)."""
    if resident:
        from .libnft import run as in_process

        done = in_process(script)
        if done is not None:
            return done
    return run(list(argv), script if argv[-1] == "-" else "")
