"""The ``lvsdr`` command: the only module that knows argparse. It parses flags,
calls the core and the edges with typed values, and maps errors to exit codes.

Imports are lazy so that ``lvsdr notify`` (on keepalived's failover path)
pays only for what it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from lvsdr.defaults import AGENT_INTERVAL, KEEPALIVED_CONF, KEEPALIVED_PIDFILE
from lvsdr.errors import InputError, LvsdrError, ValidationError

TYPE_CHECKING = False  # typing costs ~6 ms to import; these modules are on notify's path (mypy reads it as True)

if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

    from lvsdr.generator.keepalived import Wiring
    from lvsdr.generator.model import Cluster
    from lvsdr.source import Source

Handler = Callable[["argparse.Namespace"], int]


def _source(args: argparse.Namespace) -> Source:
    """The cluster file, read once for the whole command (``args.node``, when the command has one, is its node)."""
    from lvsdr.source import Source

    return Source.read(args.cluster, getattr(args, "node", None) or "")


def _cluster(args: argparse.Namespace) -> Cluster:
    """The validated cluster of the command's one reading of the file."""
    return _source(args).cluster


def _wiring(args: argparse.Namespace, cluster: Cluster) -> Wiring:
    from lvsdr.generator.keepalived import Wiring

    return Wiring.from_cluster(cluster, lvsdr_path=args.lvsdr_path, config_path=args.config_path,
                               notify_fifo=args.notify_fifo, hook=args.hook)


# -- handlers ---------------------------------------------------------------
# Commands that read a cluster file, write and exit run without cyclic garbage
# collection: they build hundreds of thousands of objects that live until the
# end (the modules, the model, the rendered text) and make next to no cycles;
# the collector only rescans them, ~16 ms of a 1,000-service render (measured
# with gc.callbacks: 4 ms of it while importing). Not agent or watch: they stay.
SHORT_LIVED = ("validate", "render", "import")


def cmd_validate(args: argparse.Namespace) -> int:
    c = _cluster(args)
    print(
        f"{args.cluster}: ok: cluster {c.name}, {len(c.directors)} directors, "
        f"{len(c.real_servers)} real servers, {len(c.services)} services"
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from lvsdr.generator.keepalived import render_keepalived

    if args.all:
        return _render_all(args)
    if not args.node:
        raise InputError("render: give --node NAME (one director) or --all --output-dir DIR (every node)")
    if args.output_dir:
        raise InputError("render: --output-dir is for --all; one director's keepalived.conf goes to -o FILE")
    c = _cluster(args)
    if args.firewall:
        if args.bird or args.check:
            raise InputError("render: --firewall stands alone (no --bird, no --check)")
        from lvsdr.generator import firewall

        c.find_director(args.node)
        render = firewall.render_nft if args.firewall == "nftables" else firewall.render_firewalld
        text = render(c, args.node, args.cluster)
        if args.output:
            from lvsdr.hooks.fast.files import write_output

            write_output(args.output, text, 0o644)
        else:
            sys.stdout.write(text)
        return 0
    if args.bird:
        from lvsdr.generator.bird import render_bird

        text = render_bird(c, args.node, source=args.cluster)
        if args.check:
            from lvsdr.hooks.bird import check_text

            check_text(text)
    else:
        text = render_keepalived(c, args.node, source=args.cluster, wiring=_wiring(args, c))
    if args.check and not args.bird:
        from lvsdr.hooks.keepalived import require_valid

        require_valid(text)
    if args.output:
        from lvsdr.hooks.fast.files import write_output

        write_output(args.output, text, c.file_mode)
    else:
        sys.stdout.write(text)
    return 0


def _render_all(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lvsdr.generator.bundle import node_trees
    from lvsdr.hooks.fast.files import write_tree

    if (args.node or args.output or args.check or args.bird or args.firewall or args.lvsdr_path
            or args.config_path or args.notify_fifo or args.hook):
        raise InputError("render: --all takes the paths from the cluster file; give only --output-dir")
    if not args.output_dir:
        raise InputError("render: --all needs --output-dir DIR")
    source = _source(args)  # read once: the tree holds the very bytes that were validated
    trees = node_trees(source.cluster, source.raw)
    count = write_tree(Path(args.output_dir), trees)
    print(f"{args.output_dir}: {count} files for {len(trees)} nodes ({', '.join(trees)})")
    return 0


def cmd_realserver(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lvsdr.hooks import realserver

    if args.action == "watch":
        import math

        from lvsdr.hooks.fast.log import configure
        from lvsdr.hooks.heal import watch

        if not (math.isfinite(args.interval) and 0.1 <= args.interval <= 60):
            raise InputError(f"--interval: {args.interval} is not a number of seconds from 0.1 to 60")
        source = _source(args)
        source.cluster.find_node(args.node, "real server")
        configure()
        return watch(source, args.interval, Path(args.state_dir) if args.state_dir else None)
    c = _cluster(args)
    if args.action == "render":
        # the header names the cluster's config_path, as render --all does: the same bytes wherever the file lies
        return realserver.render(c, args.node, c.config_path, Path(args.output_dir))
    state_dir = Path(args.state_dir) if args.state_dir else None
    return realserver.reconcile(c, args.node, args.action, state_dir, getattr(args, "dry_run", False))


def cmd_notify(args: argparse.Namespace) -> int:
    import time

    started = time.monotonic()
    from lvsdr.fingerprint import code_fingerprint
    from lvsdr.hooks.fast.replay import replay
    from lvsdr.source import Source

    source = Source.read(args.cluster, args.node)  # read once: the fast path and the full path see the same bytes
    event = {"type": args.type, "name": args.name, "state": args.state, "priority": args.priority}
    fast = replay(args.cluster, args.node, code_fingerprint(), source.raw)
    if isinstance(fast, tuple):
        from lvsdr.hooks.fast.log import transition

        transition(args.node, fast[0], fast[1], started, event, replayed=True)
        return 0
    if fast is not None:
        from lvsdr.hooks.fast.log import get_logger

        get_logger(node=args.node, event_source="notify").warning("fast path declined", reason=fast, **event)
    from lvsdr.hooks.director import notify
    from lvsdr.hooks.notify_fifo import Event

    return notify(source, Event(args.type, args.name, args.state, args.priority))


def cmd_agent(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    from lvsdr.defaults import MAX_INTERVAL
    from lvsdr.hooks.agent import agent
    from lvsdr.source import Source

    if not (math.isfinite(args.interval) and 0.1 <= args.interval <= MAX_INTERVAL):
        raise InputError(f"--interval: {args.interval} is not a number of seconds from 0.1 to {MAX_INTERVAL:g}")
    from lvsdr.hooks.processes import pid_from

    source = Source.read(args.cluster, args.node)
    source.cluster.find_director(args.node)  # a bad file or node: exit 2 before anything starts
    pid_from(args.pidfile)  # a pidfile root must not trust: refused before anything starts
    return agent(source, Path(args.fifo), args.interval, args.pidfile)


def cmd_drain(args: argparse.Namespace) -> int:
    import math

    from lvsdr.hooks.drain import drain

    if args.timeout is not None and not (math.isfinite(args.timeout) and 0 <= args.timeout <= 86400):
        raise InputError(f"--timeout: {args.timeout} is not a number of seconds from 0 to 86400")
    if args.undo and args.unit:  # keepalived.service's start step: must not fail (systemd would stop keepalived)
        from lvsdr.hooks.drain import undo_unit

        return undo_unit(args.cluster, args.node)
    return drain(_cluster(args), args.node, args.timeout, args.undo, unit=args.unit)


def cmd_lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lvsdr.lab import cli as labcli

    return labcli.run(args.action, Path(args.cluster) if args.cluster else None,
                      no_suppression=getattr(args, "no_suppression", False))


def _watch_target(args: argparse.Namespace) -> tuple[Any, Source]:
    """What watch and plan keep true, and the command's one reading of the cluster file."""
    import os
    from pathlib import Path

    from lvsdr.hooks.reload import WatchTarget

    source = _source(args)
    c = source.cluster
    c.find_director(args.node)  # bad input at start: exit 2; later bad saves are logged, skipped
    _wiring(args, c)
    bird = getattr(args, "bird_conf", None) or (c.bgp.bird_conf if c.bgp else None)
    if bird and os.path.realpath(bird) == os.path.realpath(args.output):
        raise InputError(f"{'--bird-conf' if getattr(args, 'bird_conf', None) else 'bgp.bird_conf'}: {bird} is the "
                         f"keepalived.conf of -o; they are two files")
    return WatchTarget(Path(args.cluster), args.node, Path(args.output), Path(args.pidfile),
                       args.lvsdr_path, args.config_path, args.notify_fifo, args.hook,
                       Path(args.bird_conf) if getattr(args, "bird_conf", None) else None,
                       getattr(args, "bird_socket", None)), source


def cmd_watch(args: argparse.Namespace) -> int:
    from lvsdr.hooks.keepalived import keepalived_binary
    from lvsdr.hooks.watch import once, watch

    if args.confirm or args.abort:
        from lvsdr.hooks.fast.files import write_atomic
        from lvsdr.hooks.guard import hand_path

        c = _cluster(args)
        c.find_director(args.node)
        path = hand_path(c.state_dir, c.name, args.node, "confirm" if args.confirm else "abort")
        write_atomic(path, "by hand\n", 0o600)
        print(f"lvsdr watch: {'confirm' if args.confirm else 'abort'} left for the guard of {args.node} ({path}); "
              "without a guard window running, the next one starts afresh")
        return 0
    if not args.output:
        raise InputError("watch: -o/--output is required (the keepalived.conf to keep up to date)")
    target, source = _watch_target(args)
    if args.dry_run:
        from lvsdr.hooks.reload import plan

        return plan(target, source)
    keepalived_binary()
    return once(target, source) if args.once else watch(target, source)


def cmd_plan(args: argparse.Namespace) -> int:
    from lvsdr.hooks.reload import plan

    return plan(*_watch_target(args), as_json=getattr(args, "json", False))


def cmd_metrics(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lvsdr.hooks.metrics import DEFAULT_INTERVAL, config, exposition, families_of, parse_listen, serve

    if args.listen is not None:
        try:
            parse_listen(args.listen)
        except LvsdrError as e:
            raise InputError(str(e)) from None
    if args.interval is not None and not 1 <= args.interval <= 3600:
        raise InputError(f"--interval: {args.interval} is outside 1..3600 seconds")
    source = _source(args)
    if args.listen is None and not args.serve:
        text = exposition(lambda: families_of(config(source, args.node, args.bird_socket)))
        if args.textfile:
            from lvsdr.hooks.fast.files import write_output

            write_output(args.textfile, text, 0o644)
        else:
            sys.stdout.write(text)
        return 0
    return serve(source, args.listen, Path(args.textfile) if args.textfile else None,
                 args.interval or DEFAULT_INTERVAL, args.bird_socket)


def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lvsdr.generator import methods
    from lvsdr.generator.import_diff import compare, semantics
    from lvsdr.generator.import_merge import import_files
    from lvsdr.generator.kaconf import read_keepalived
    from lvsdr.inputs import read_regular

    if args.arp_method not in methods.NAMES:
        raise InputError(f"--arp-method: {args.arp_method!r} is not one of {', '.join(methods.NAMES)}")
    addresses = {}
    for item in args.address or []:
        node, sep, ip = item.partition("=")
        if not sep or not node or not ip:
            raise InputError(f"--address: {item!r} is not NAME=IP")
        addresses[node] = ip
    # keepalived reads bytes: a Latin-1 comment is no error (undecodable bytes become U+FFFD)
    if args.source != "keepalived" and args.diff:
        raise InputError(f"--diff compares keepalived.conf files with lvsdr's rendering; not with --from {args.source}")
    job = import_files(args.files, lambda p: read_regular(p).decode("utf-8", "replace"), args.arp_method,
                       addresses, args.name, args.config_id, args.source)
    for line in job.notes:
        print(f"lvsdr import: {line}", file=sys.stderr)
    for u in job.imported.unmapped:
        print(f"lvsdr import: {u.line()}", file=sys.stderr)
    if not args.diff:
        if args.output:
            from lvsdr.hooks.fast.files import write_output

            write_output(Path(args.output), job.text, 0o600)
        else:
            sys.stdout.write(job.text)
        return 0
    from lvsdr.generator.keepalived import render_keepalived

    differ = 0
    for node, tree in job.trees.items():
        rendered = render_keepalived(job.cluster, node, "import")
        lines = compare(semantics(tree), semantics(read_keepalived("(rendered)", {"(rendered)": rendered}.__getitem__)))
        print(f"{node}: {'the same' if not lines else f'{len(lines)} differences'}")
        for line in lines:
            print(f"  {line}")
        differ |= bool(lines)
    return 1 if differ else 0


def cmd_audit(args: argparse.Namespace) -> int:
    import os

    from lvsdr.hooks.audit import audit

    c = _cluster(args)
    if os.geteuid() != 0:
        raise InputError("audit: needs root (it sends and reads raw frames)")
    return audit(c, args.interface, args.json, args.textfile)


def cmd_doctor(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lvsdr.hooks.doctor import doctor

    source = _source(args)
    c = source.cluster
    c.find_node(args.node)
    return doctor(source, Path(args.keepalived_conf), _wiring(args, c), args.bird_socket, args.pidfile)


def _wiring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lvsdr-path", help="absolute path of lvsdr on the director (default: the file's lvsdr_path)")
    p.add_argument("--config-path", help="absolute path of the cluster file on the director "
                   "(default: the file's config_path)")
    p.add_argument("--notify-fifo", help="absolute path of keepalived's notify FIFO (default: the file's notify_fifo)")
    p.add_argument("--hook", choices=("both", "fifo", "notify", "none"),
                   help="how keepalived reaches lvsdr (default: the file's cluster.hook)")


# -- parser -----------------------------------------------------------------
def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse that reports a bad flag in one line, exit 2."""

        def error(self, message: str) -> NoReturn:
            sub = self.prog.removeprefix("lvsdr").strip()
            raise InputError(f"{sub}: {message}" if sub else message)

    return Parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (a known one, the first
    argument), only that command's part: building every subcommand costs
    ~10 ms, a tenth of a large render."""
    Parser = _parser_class()  # argparse is imported here, not on notify's path
    p = Parser(prog="lvsdr", description="LVS direct-routing clusters with keepalived.")
    from lvsdr import __version__

    p.add_argument("--version", action="version", version=f"lvsdr {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, add in COMMANDS.items():
        if command in (None, name):
            add(sub, Parser)
    return p


def _args_validate(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    v = sub.add_parser("validate", help="check a cluster file")
    v.add_argument("cluster")
    v.set_defaults(func=cmd_validate)


def _args_render(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("render", help="keepalived.conf for one director, or every node's files (--all)")
    r.add_argument("cluster")
    r.add_argument("--node", help="director name")
    r.add_argument("--all", action="store_true",
                   help="every node's files, root-relative, under --output-dir DIR/NODE (reproducible bytes)")
    r.add_argument("--output-dir", help="with --all: an empty or new directory")
    r.add_argument("-o", "--output", help="write here atomically (default: stdout)")
    r.add_argument("--check", action="store_true", help="validate with keepalived -t (bird -p with --bird) first")
    r.add_argument("--bird", action="store_true", help="an ECMP cluster's bird.conf for the director instead")
    r.add_argument("--firewall", choices=("nftables", "firewalld"),
                   help="what the director's firewall must let in instead: nft rules to include in a default-drop "
                   "input chain, or a firewalld service")
    _wiring_flags(r)
    r.set_defaults(func=cmd_render)


def _args_import(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    im = sub.add_parser("import", help="turn existing keepalived.conf files (one per director), an ipvsadm-save dump "
                        "or an ldirectord.cf into a cluster file")
    im.add_argument("files", nargs="+", metavar="FILE")
    im.add_argument("--from", dest="source", choices=("keepalived", "ipvsadm", "ldirectord"), default="keepalived",
                    help="what the files are: keepalived.conf (one per director; the default), one `ipvsadm-save "
                    "-n` dump, or one ldirectord.cf (for these two, every director by --address)")
    im.add_argument("--arp-method", required=True,
                    help="how the real servers suppress ARP (sysctl, arptables, nftables, iptables, firewalld)")
    im.add_argument("-o", "--output", help="write the cluster file here (default: stdout)")
    im.add_argument("--address", action="append", metavar="NAME=IP",
                    help="a director's address its file does not hold (repeatable); with --from ipvsadm or "
                    "ldirectord each director, the first the highest priority")
    im.add_argument("--name", help="the cluster's name (default: from the first vrrp_instance)")
    im.add_argument("--config-id", help="keepalived's -i: which @ID conditional lines apply")
    im.add_argument("--diff", action="store_true",
                    help="render the import for each director and compare it with the original "
                    "(exit 0 the same, 1 different)")
    im.set_defaults(func=cmd_import)


def _args_audit(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("audit", help="check the whole cluster on the wire from this host (read-only)")
    a.add_argument("cluster")
    a.add_argument("--interface", help="the interface in the directors' segment (default: the one holding an "
                   "address in the first director's network)")
    a.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    a.add_argument("--textfile", metavar="PATH", help="also write Prometheus gauges here (node_exporter textfile)")
    a.set_defaults(func=cmd_audit)


def _args_watch(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("watch", help="re-render, validate and reload keepalived when the cluster file changes")
    w.add_argument("cluster")
    w.add_argument("--node", required=True, help="director name")
    w.add_argument("-o", "--output", help="keepalived.conf to keep up to date (required but with --confirm/--abort)")
    w.add_argument("--pidfile", default=KEEPALIVED_PIDFILE,
                   help=f"keepalived's pid file (SIGHUP reloads it; default {KEEPALIVED_PIDFILE})")
    w.add_argument("--once", action="store_true",
                   help="one pass, say what it did on stderr, then exit (1 if the new config was not installed)")
    w.add_argument("--dry-run", action="store_true",
                   help="print what the next pass would change in the live kernel (as `lvsdr plan`), change nothing")
    hand = w.add_mutually_exclusive_group()
    hand.add_argument("--confirm", action="store_true",
                      help="end the running watch's guard window now, keeping the new config (commit confirmed)")
    hand.add_argument("--abort", action="store_true",
                      help="end the running watch's guard window now, putting the last working config back")
    w.add_argument("--bird-conf", help="ECMP clusters: bird.conf to keep up to date (default: bgp.bird_conf)")
    w.add_argument("--bird-socket", help="ECMP clusters: birdc's control socket (default: bgp.bird_socket)")
    _wiring_flags(w)
    w.set_defaults(func=cmd_watch)


def _args_metrics(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("metrics", help="a director's Prometheus metrics: to stdout, a textfile, or served (read-only)")
    m.add_argument("cluster")
    m.add_argument("--node", required=True, help="director name (or a real server: what `realserver watch` healed)")
    m.add_argument("--textfile", metavar="PATH", help="write them here (node_exporter's textfile collector)")
    m.add_argument("--listen", metavar="[ADDR:]PORT", help="serve them over HTTP (resident)")
    m.add_argument("--serve", action="store_true", help="resident without HTTP: rewrite --textfile every --interval")
    m.add_argument("--interval", type=float, help="seconds between textfile writes when resident (default 15)")
    m.add_argument("--bird-socket", help="ECMP directors: birdc's control socket (default: bgp.bird_socket)")
    m.set_defaults(func=cmd_metrics)


def _args_plan(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="what reloading keepalived with the cluster file would change in the live IPVS "
                       "table and VIPs (read-only)")
    p.add_argument("cluster")
    p.add_argument("--node", required=True, help="director name")
    p.add_argument("-o", "--output", default=KEEPALIVED_CONF,
                   help=f"the keepalived.conf keepalived runs now (default {KEEPALIVED_CONF})")
    p.set_defaults(pidfile=KEEPALIVED_PIDFILE)
    p.add_argument("--json", action="store_true", help="one JSON document: the typed changes, leaving real servers")
    _wiring_flags(p)
    p.set_defaults(func=cmd_plan)


def _args_realserver(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    rs = sub.add_parser("realserver", help="ARP suppression on a real server")
    rsub = rs.add_subparsers(dest="action", required=True, parser_class=parser_class)
    for action, text in (("render", "the files to install on the real server"),
                         ("plan", "print what apply would change"),
                         ("apply", "apply to this node (reconcile)"),
                         ("remove", "undo everything lvsdr did on this node"),
                         ("watch", "resident: apply, then heal the node whenever it drifts (netlink, nft monitor, "
                          "firewalld's reload, a timer)")):
        a = rsub.add_parser(action, help=text)
        a.add_argument("cluster")
        a.add_argument("--node", required=True, help="real server name")
        if action == "render":
            a.add_argument("--output-dir", required=True)
        else:
            a.add_argument("--state-dir", help="where lvsdr keeps its record (default: the file's cluster.state_dir)")
            if action == "watch":
                a.add_argument("--interval", type=float, default=1.0,
                               help="seconds between the sysctls' reads (they send no event; default 1)")
            elif action != "plan":
                a.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        a.set_defaults(func=cmd_realserver)


def _args_notify(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    n = sub.add_parser("notify", help="keepalived's notify callback (reconciles this director)")
    n.add_argument("cluster")
    n.add_argument("--node", required=True, help="director name")
    n.add_argument("type", help="INSTANCE or GROUP (from keepalived)")
    n.add_argument("name", help="the vrrp_instance name (from keepalived)")
    n.add_argument("state", help="MASTER, BACKUP, FAULT or STOP (logged, not trusted)")
    n.add_argument("priority", nargs="?", default="", help="priority (from keepalived)")
    n.set_defaults(func=cmd_notify)


def _args_agent(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    ag = sub.add_parser("agent", help="resident: reconcile on every event of keepalived's notify FIFO")
    ag.add_argument("cluster")
    ag.add_argument("--node", required=True, help="director name")
    ag.add_argument("--fifo", required=True, help="keepalived's vrrp_notify_fifo")
    ag.add_argument("--pidfile", default=KEEPALIVED_PIDFILE,
                    help=f"keepalived's pid file: only that process of root's counts as keepalived "
                    f"(default {KEEPALIVED_PIDFILE})")
    ag.add_argument("--interval", type=float, default=AGENT_INTERVAL,
                    help=f"also reconcile after this many quiet seconds, to heal drift (default {AGENT_INTERVAL:g})")
    ag.set_defaults(func=cmd_agent)


def _args_drain(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    dn = sub.add_parser("drain", help="take a director out of service: ECMP withdraws its VIPs and waits for its "
                        "connections to end; VRRP hands its VIPs to another director (a planned switchover)")
    dn.add_argument("cluster")
    dn.add_argument("--node", required=True, help="director name")
    dn.add_argument("--timeout", type=float, help="ECMP: seconds to wait for connections to end (default: "
                    "bgp.drain_timeout); VRRP: for another director to hold the VIPs (default: preempt_delay + 6 "
                    "adverts, at least 10)")
    dn.add_argument("--undo", action="store_true", help="put it back in service (ECMP: the agent announces again "
                    "within a second; VRRP: its priority comes back after its hold)")
    dn.add_argument("--unit", action="store_true",
                    help="as keepalived.service runs it: its start undoes only the drain its stop made")
    dn.set_defaults(func=cmd_drain)


def _args_doctor(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    dr = sub.add_parser("doctor", help="check this node against the cluster file (read-only)")
    dr.add_argument("cluster")
    dr.add_argument("--node", required=True, help="director or real server name")
    dr.add_argument("--keepalived-conf", default=KEEPALIVED_CONF,
                    help=f"directors: the live keepalived.conf to compare (default {KEEPALIVED_CONF})")
    dr.add_argument("--bird-socket", help="ECMP directors: birdc's control socket (default: bgp.bird_socket)")
    dr.add_argument("--pidfile", default=KEEPALIVED_PIDFILE,
                    help=f"directors: keepalived's pid file, as the agent reads it (default {KEEPALIVED_PIDFILE})")
    _wiring_flags(dr)
    dr.set_defaults(func=cmd_doctor)


def _args_lab(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="a whole DR cluster in network namespaces (root)")
    lsub = lab.add_subparsers(dest="action", required=True, parser_class=parser_class)
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


COMMANDS: dict[str, Callable[[Any, type[argparse.ArgumentParser]], None]] = {
    "validate": _args_validate,
    "render": _args_render,
    "import": _args_import,
    "audit": _args_audit,
    "watch": _args_watch,
    "metrics": _args_metrics,
    "plan": _args_plan,
    "realserver": _args_realserver,
    "notify": _args_notify,
    "agent": _args_agent,
    "drain": _args_drain,
    "doctor": _args_doctor,
    "lab": _args_lab,
}


def _keepalived_notify(argv: Sequence[str]) -> Any:
    """The exact form keepalived calls (`notify CLUSTER --node NAME TYPE NAME
    STATE [PRIORITY]`), read without building the whole parser: it is on the
    failover path. Anything else goes through argparse."""
    if len(argv) in (7, 8) and argv[0] == "notify" and argv[2] == "--node" and not any(
            a.startswith("-") for i, a in enumerate(argv[1:], 1) if i != 2):
        from types import SimpleNamespace

        return SimpleNamespace(func=cmd_notify, cluster=argv[1], node=argv[3], type=argv[4], name=argv[5],
                               state=argv[6], priority=argv[7] if len(argv) == 8 else "")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        words = sys.argv[1:] if argv is None else list(argv)
        if words and words[0] in SHORT_LIVED and argv is None:  # a process of its own (not a test calling main)
            import gc

            gc.disable()
        args = _keepalived_notify(words) or build_parser(words[0] if words and words[0] in COMMANDS else None
                                                         ).parse_args(words)
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
