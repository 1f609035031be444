"""`lvsdr realserver render|plan|apply|remove`: the edge around generator/realserver.py."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path

from lvsdr.errors import LvsdrError, MissingToolError
from lvsdr.generator.model import Cluster
from lvsdr.generator.realserver import TOOLS, Change, Spec, desired, plan, plan_remove

from .facts import read_addresses, read_facts, record_path, require_identity
from .files import node_lock


def require_tools(spec: Spec) -> None:
    for prog in spec.tools():
        if shutil.which(prog) is None:
            debian, rhel = TOOLS[prog]
            raise MissingToolError(prog, debian, rhel)


def print_plan(spec: Spec, changes: list[Change], verb: str) -> None:
    head = f"{verb} on {spec.node} (arp_method {spec.method}, {len(spec.vips)} VIPs):"
    if not changes:
        print(f"{head} nothing to do")
        return
    print(f"{head} {len(changes)} changes")
    for ch in changes:
        print(f"  {ch.description}")


def main(args: argparse.Namespace, cluster: Cluster) -> int:
    spec = desired(cluster, args.node)
    if args.action == "render":
        from lvsdr.generator.artifacts import realserver_files

        from .files import write_atomic

        out = Path(args.output_dir)
        files = realserver_files(cluster, spec, source=args.cluster)
        out.mkdir(parents=True, exist_ok=True)
        for rel, (text, mode) in sorted(files.items()):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(out / rel, text, mode)
            print(out / rel)
        return 0
    state_dir = Path(getattr(args, "state_dir", None) or cluster.state_dir)
    if args.action in ("apply", "plan"):
        require_tools(spec)
        if not Path("/sys/class/net", spec.interface).exists():
            raise LvsdrError(f"interface {spec.interface} of real server {spec.node} does not exist on this "
                             "node (real_servers[].interface in the cluster file)")
    require_identity(spec.node, spec.address, read_addresses())  # before anything, even the lock
    dry = args.action == "plan" or args.dry_run
    if os.geteuid() != 0:
        raise LvsdrError(f"realserver {args.action} needs root (it reads the node's arptables, nftables and "
                         "iptables rules; `realserver render` does not)")
    with contextlib.nullcontext() if dry else node_lock(state_dir):
        return _run(args, spec, state_dir)


def _run(args: argparse.Namespace, spec: Spec, state_dir: Path) -> int:
    facts = read_facts(spec, state_dir)
    changes = plan_remove(spec, facts) if args.action == "remove" else plan(spec, facts)
    verb = {"apply": "apply", "plan": "plan", "remove": "remove"}[args.action]
    if args.action == "plan" or getattr(args, "dry_run", False):
        print_plan(spec, changes, f"{verb} (dry run)" if args.action != "plan" else "plan")
        return 0
    from .gateway import Gateway

    if not changes:
        print_plan(spec, [], verb)
        return 0
    print(f"{verb} on {spec.node} (arp_method {spec.method}): {len(changes)} changes")
    Gateway(record_path(state_dir, spec), echo=print).apply(changes)
    return 0
