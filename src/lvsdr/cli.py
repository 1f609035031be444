"""The ``lvsdr`` command. Thin: parse flags, call the core, map errors to exit codes.

Imports are lazy so that ``lvsdr notify`` (on keepalived's failover path)
pays only for what it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from lvsdr.errors import InputError, LvsdrError, ValidationError

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{self.prog}: {message}")


def _cluster(args: argparse.Namespace) -> Any:
    from lvsdr.generator.load import load_cluster

    return load_cluster(args.cluster)


# -- handlers ---------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    c = _cluster(args)
    print(
        f"{args.cluster}: ok: cluster {c.name}, {len(c.directors)} directors, "
        f"{len(c.real_servers)} real servers, {len(c.services)} services"
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from lvsdr.generator.keepalived import Wiring, render_keepalived

    c = _cluster(args)
    wiring = Wiring.from_cluster(
        c, lvsdr_path=args.lvsdr_path, config_path=args.config_path,
        notify_fifo=args.notify_fifo, hook=args.hook,
    )
    _check_paths(wiring)
    text = render_keepalived(c, args.node, source=args.cluster, wiring=wiring)
    if args.check:
        from lvsdr.hooks.keepalived import require_valid

        require_valid(text)
    if args.output:
        from lvsdr.hooks.files import write_atomic

        write_atomic(args.output, text, 0o600 if c.auth_pass else 0o644)
    else:
        sys.stdout.write(text)
    return 0


def _check_paths(wiring: Any) -> None:
    for flag, value in (("--lvsdr-path", wiring.lvsdr_path), ("--config-path", wiring.config_path),
                        ("--notify-fifo", wiring.notify_fifo)):
        _check_path(flag, value)


def _check_path(flag: str, value: str | None) -> None:
    from lvsdr.generator.load import PATH_RE

    if value is not None and not PATH_RE.fullmatch(value):
        raise InputError(f"{flag}: {value!r} is not an absolute path without blanks or quotes")


def cmd_realserver(args: argparse.Namespace) -> int:
    from lvsdr.hooks import realserver

    return int(realserver.main(args, _cluster(args)))


def cmd_notify(args: argparse.Namespace) -> int:
    from lvsdr.hooks import director

    return director.cmd_notify(args, _cluster(args))


def cmd_agent(args: argparse.Namespace) -> int:
    from lvsdr.hooks import director

    return director.cmd_agent(args, _cluster(args))


def cmd_lab(args: argparse.Namespace) -> int:
    from lvsdr.lab import cli as labcli

    return int(labcli.main(args))


def cmd_watch(args: argparse.Namespace) -> int:
    from lvsdr.generator.keepalived import find_director
    from lvsdr.hooks.keepalived import keepalived_binary
    from lvsdr.hooks.watch import cmd_watch as watch

    find_director(_cluster(args), args.node)  # bad input at start: exit 2; later bad saves are logged, skipped
    for flag, value in (("--lvsdr-path", args.lvsdr_path), ("--config-path", args.config_path),
                        ("--notify-fifo", args.notify_fifo)):
        _check_path(flag, value)
    keepalived_binary()
    return watch(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from lvsdr.hooks.doctor import cmd_doctor as doctor

    return doctor(args, _cluster(args))


def _wiring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lvsdr-path", help="absolute path of lvsdr on the director")
    p.add_argument("--config-path", help="absolute path of the cluster file on the director")
    p.add_argument("--notify-fifo", help="absolute path of keepalived's notify FIFO")
    p.add_argument("--hook", choices=("both", "fifo", "notify", "none"),
                   help="how keepalived reaches lvsdr (default: the file's cluster.hook)")


# -- parser -----------------------------------------------------------------
def build_parser() -> Parser:
    p = Parser(prog="lvsdr", description="LVS direct-routing clusters with keepalived.")
    from lvsdr import __version__

    p.add_argument("--version", action="version", version=f"lvsdr {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    v = sub.add_parser("validate", help="check a cluster file")
    v.add_argument("cluster")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("render", help="keepalived.conf for one director")
    r.add_argument("cluster")
    r.add_argument("--node", required=True, help="director name")
    r.add_argument("-o", "--output", help="write here atomically (default: stdout)")
    r.add_argument("--check", action="store_true", help="validate with keepalived -t first")
    _wiring_flags(r)
    r.set_defaults(func=cmd_render)

    w = sub.add_parser("watch", help="re-render, validate and reload keepalived when the cluster file changes")
    w.add_argument("cluster")
    w.add_argument("--node", required=True, help="director name")
    w.add_argument("-o", "--output", required=True, help="keepalived.conf to keep up to date")
    w.add_argument("--pidfile", default="/run/keepalived.pid", help="keepalived's pid file (SIGHUP reloads it)")
    w.add_argument("--once", action="store_true", help="one pass, then exit (1 if the new config was rejected)")
    _wiring_flags(w)
    w.set_defaults(func=cmd_watch)

    rs = sub.add_parser("realserver", help="ARP suppression on a real server")
    rsub = rs.add_subparsers(dest="action", required=True, parser_class=Parser)
    for action, text in (("render", "the files to install on the real server"),
                         ("plan", "print what apply would change"),
                         ("apply", "apply to this node (reconcile)"),
                         ("remove", "undo everything lvsdr did on this node")):
        a = rsub.add_parser(action, help=text)
        a.add_argument("cluster")
        a.add_argument("--node", required=True, help="real server name")
        if action == "render":
            a.add_argument("--output-dir", required=True)
        else:
            a.add_argument("--state-dir", help="where lvsdr keeps its record (default /run/lvsdr)")
            if action != "plan":
                a.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        a.set_defaults(func=cmd_realserver)

    n = sub.add_parser("notify", help="keepalived's notify callback (reconciles this director)")
    n.add_argument("cluster")
    n.add_argument("--node", required=True, help="director name")
    n.add_argument("type", help="INSTANCE or GROUP (from keepalived)")
    n.add_argument("name", help="the vrrp_instance name (from keepalived)")
    n.add_argument("state", help="MASTER, BACKUP, FAULT or STOP (logged, not trusted)")
    n.add_argument("priority", nargs="?", default="", help="priority (from keepalived)")
    n.set_defaults(func=cmd_notify)

    ag = sub.add_parser("agent", help="resident: reconcile on every event of keepalived's notify FIFO")
    ag.add_argument("cluster")
    ag.add_argument("--node", required=True, help="director name")
    ag.add_argument("--fifo", required=True, help="keepalived's vrrp_notify_fifo")
    ag.add_argument("--interval", type=float, default=30.0,
                    help="also reconcile after this many quiet seconds, to heal drift (default 30)")
    ag.set_defaults(func=cmd_agent)

    dr = sub.add_parser("doctor", help="check this node against the cluster file (read-only)")
    dr.add_argument("cluster")
    dr.add_argument("--node", required=True, help="director or real server name")
    dr.add_argument("--keepalived-conf", default="/etc/keepalived/keepalived.conf",
                    help="directors: the live keepalived.conf to compare")
    _wiring_flags(dr)
    dr.set_defaults(func=cmd_doctor)

    lab = sub.add_parser("lab", help="a whole DR cluster in network namespaces (root)")
    lsub = lab.add_subparsers(dest="action", required=True, parser_class=Parser)
    for action, text in (("demo", "up, show ARP and HTTP, kill the MASTER, time the takeover, down"),
                         ("up", "build the lab and leave it running"),
                         ("down", "tear the lab down"),
                         ("status", "who holds each VIP, who answers ARP"),
                         ("failover", "kill the MASTER of a running lab and time the takeover")):
        a = lsub.add_parser(action, help=text)
        a.add_argument("cluster", nargs="?", help="cluster file (default: the bundled example)")
        if action in ("demo", "up"):
            a.add_argument("--no-suppression", action="store_true",
                           help="leave real servers without ARP suppression (shows the problem)")
        a.set_defaults(func=cmd_lab)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        func: Handler = args.func
        return func(args)
    except ValidationError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return e.exit_code
    except LvsdrError as e:
        print(f"lvsdr: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # permissions, full disks, vanished files: the operator's to fix
        where = f"{e.filename}: " if e.filename else ""
        print(f"lvsdr: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lvsdr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
