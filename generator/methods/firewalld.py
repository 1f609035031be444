"""firewalld: no VIP on the host; a forward-port WITHOUT toaddr (a local
redirect) for each VIP's port, runtime (now) and permanent (after a reload),
in the real server's zone. The guide's toaddr=<VIP> DNATs to an address the
host does not have, and DR traffic then gets no answer. Only forward-ports
lvsdr added (its record names them) are ever removed: the zone is shared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..changes import AddRule, Change, DeleteRule
from ..node import Facts, Op, Rule
from ..spec import Spec
from .base import Artifacts, FactCommand, Method, Observed, Tool

PROG = "firewall-cmd"
WHERE = ("runtime", "permanent")
COMMANDS_FILE = "etc/lvsdr/firewalld-commands.txt"


@dataclass(frozen=True)
class ForwardPort(Rule):
    where: str  # runtime | permanent
    zone: str
    port: int
    protocol: str
    to_port: int
    to_addr: str = ""

    def argv(self, op: Op) -> tuple[str, ...]:
        extra = ("--permanent",) if self.where == "permanent" else ()
        return (PROG, *extra, f"--zone={self.zone}", f"--{'add' if op == 'add' else 'remove'}-forward-port="
                + self.listing())

    def listing(self) -> str:
        to = f":toaddr={self.to_addr}" if self.to_addr else ""
        return f"port={self.port}:proto={self.protocol}:toport={self.to_port}{to}"

    def describe(self, op: Op) -> str:
        verb = "" if op == "add" else "remove "
        return f"firewalld ({self.where}, zone {self.zone}): {verb}forward-port {self.listing()}"


def desired_rules(spec: Spec) -> tuple[ForwardPort, ...]:
    ports = sorted({(r.port, r.protocol, r.listen_port or r.port) for r in spec.redirects},
                   key=lambda t: f"port={t[0]}:proto={t[1]}:toport={t[2]}")
    return tuple(ForwardPort(where, spec.zone, port, proto, to) for where in WHERE for port, proto, to in ports)


def parse_listing(text: str, where: str, zone: str) -> tuple[ForwardPort, ...]:
    """`firewall-cmd --list-forward-ports` ("port=80:proto=tcp:toport=80:toaddr=",
    one per line; an empty toaddr is none) -> forward-ports."""
    out = []
    for item in text.split():
        fields = dict(kv.split("=", 1) for kv in item.split(":") if "=" in kv)
        try:
            out.append(ForwardPort(where, zone, int(fields["port"]), fields["proto"],
                                   int(fields.get("toport") or fields["port"]), fields.get("toaddr", "")))
        except (KeyError, ValueError):
            continue  # a port range or a form lvsdr never writes: not lvsdr's
    return tuple(sorted(out, key=lambda f: f.listing()))


class Firewalld(Method):
    name = "firewalld"
    summary = "no VIP on the host; firewalld forward-ports (no toaddr) redirect each VIP port locally"
    redirect = True

    def tools(self, spec: Spec) -> tuple[Tool, ...]:
        return (Tool(PROG, "firewalld", "firewalld"),)

    def recorded(self, spec: Spec) -> tuple[str, ...]:
        return tuple(sorted({r.listing() for r in desired_rules(spec)}))

    def fact_commands(self, spec: Spec, recorded: Sequence[str]) -> tuple[FactCommand, ...]:
        if spec.method != self.name and not recorded:
            return ()  # firewall-cmd fails where firewalld is not running: ask only when it matters
        hint = (("not running", "firewalld is not running (systemctl start firewalld)"),)
        return tuple(FactCommand((PROG, *(("--permanent",) if w == "permanent" else ()), f"--zone={spec.zone}",
                                  "--list-forward-ports"), hints=hint) for w in WHERE)

    def parse(self, outputs: Sequence[str], spec: Spec) -> Observed:
        return Observed(rules=tuple(fp for text, where in zip(outputs, WHERE, strict=False)
                                    for fp in parse_listing(text, where, spec.zone)))

    def add(self, spec: Spec, facts: Facts) -> list[Change]:
        return [AddRule(r) for r in desired_rules(spec) if r not in facts.rules]

    def prune(self, spec: Spec, wanted: bool, facts: Facts) -> list[Change]:
        want = desired_rules(spec) if wanted else ()
        recorded = set(facts.record.forward_ports if facts.record else ())
        present = [r for r in facts.rules if isinstance(r, ForwardPort)]
        return [DeleteRule(r) for where in WHERE for r in present
                if r.where == where and r not in want and r.listing() in recorded]

    def artifacts(self, spec: Spec) -> Artifacts:
        cmds = "".join(" ".join(r.argv("add")) + "\n" for r in sorted(
            desired_rules(spec), key=lambda r: (r.listing(), r.where != "runtime")))
        note = ("forward-ports are added runtime (effective now) AND permanent (after a reload), without toaddr: a "
                "toaddr=<VIP> DNATs to an address this host does not have, and DR traffic then gets no answer.")
        return Artifacts({COMMANDS_FILE: (cmds, 0o644)}, (note,))
