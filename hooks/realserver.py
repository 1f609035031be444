"""`lvsdr realserver render|plan|apply|remove`: the edge around generator/realserver.py."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Literal

from lvsdr.errors import LvsdrError, MissingToolError
from lvsdr.generator.changes import Change
from lvsdr.generator.methods import method_of
from lvsdr.generator.model import Cluster
from lvsdr.generator.realserver import desired, plan, plan_remove
from lvsdr.generator.spec import Spec

from .facts import read_addresses, read_facts, record_path, require_identity
from .fast.files import node_lock, write_atomic

Action = Literal["plan", "apply", "remove"]


def require_tools(spec: Spec) -> None:
    for tool in method_of(spec).tools(spec):
        if shutil.which(tool.program) is None:
            raise MissingToolError(tool.program, tool.debian, tool.rhel)


def print_plan(spec: Spec, changes: list[Change], verb: str) -> None:
    head = f"{verb} on {spec.node} (arp_method {spec.method}, {len(spec.vips)} VIPs):"
    if not changes:
        print(f"{head} nothing to do")
        return
    print(f"{head} {len(changes)} changes")
    for ch in changes:
        print(f"  {ch.description}")


def render(cluster: Cluster, node: str, source: str, output_dir: Path) -> int:
    """Write the node's files under ``output_dir`` and print their paths."""
    from lvsdr.generator.artifacts import realserver_files

    spec = desired(cluster, node)
    files = realserver_files(cluster, spec, source=source)
    output_dir.mkdir(parents=True, exist_ok=True)
    for rel, (text, mode) in sorted(files.items()):
        (output_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output_dir / rel, text, mode)
        print(output_dir / rel)
    return 0


def reconcile(cluster: Cluster, node: str, action: Action, state_dir: Path | None = None,
              dry_run: bool = False) -> int:
    """Plan (and unless ``dry_run`` or ``action`` is "plan", apply) on this node."""
    spec = desired(cluster, node)
    state = state_dir or Path(cluster.state_dir)
    if action in ("apply", "plan"):
        require_tools(spec)
        if not Path("/sys/class/net", spec.interface).exists():
            raise LvsdrError(f"interface {spec.interface} of real server {spec.node} does not exist on this "
                             "node (real_servers[].interface in the cluster file)")
    require_identity(spec.node, spec.address, read_addresses())  # before anything, even the lock
    dry = action == "plan" or dry_run
    if os.geteuid() != 0:
        raise LvsdrError(f"realserver {action} needs root (it reads the node's arptables, nftables and "
                         "iptables rules; `realserver render` does not)")
    with contextlib.nullcontext() if dry else node_lock(state, node):
        facts = read_facts(spec, state)
        changes = plan_remove(spec, facts) if action == "remove" else plan(spec, facts)
        if dry:
            print_plan(spec, changes, "plan" if action == "plan" else f"{action} (dry run)")
            return 0
        if not changes:
            print_plan(spec, [], action)
            return 0
        from .gateway import Gateway

        print(f"{action} on {spec.node} (arp_method {spec.method}): {len(changes)} changes")
        Gateway(record_path(state, spec), echo=print).apply(changes)
    return 0
