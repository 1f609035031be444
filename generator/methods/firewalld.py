"""firewalld: no VIP on the host; a forward-port WITHOUT toaddr (a local
redirect) for each VIP's port, runtime (now) and permanent (after a reload),
in the real server's zone. The guide's toaddr=<VIP> DNATs to an address the
host does not have, and DR traffic then gets no answer. The port itself is
opened too: the director's health checks connect to the real server's own
address, where the redirect changes nothing (no DNAT, so firewalld's zone
rejects it; found on real IPVS, tests/ipvs). Only forward-ports and ports
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


@dataclass(frozen=True)
class OpenPort(Rule):
    """The port open in the zone, for the health checks to the real address."""

    where: str
    zone: str
    port: int
    protocol: str

    def argv(self, op: Op) -> tuple[str, ...]:
        extra = ("--permanent",) if self.where == "permanent" else ()
        return (PROG, *extra, f"--zone={self.zone}", f"--{'add' if op == 'add' else 'remove'}-port={self.listing()}")

    def listing(self) -> str:
        return f"{self.port}/{self.protocol}"

    def describe(self, op: Op) -> str:
        verb = "open" if op == "add" else "close"
        return f"firewalld ({self.where}, zone {self.zone}): {verb} port {self.listing()} (health checks)"


def desired_rules(spec: Spec) -> tuple[ForwardPort | OpenPort, ...]:
    ports = sorted({(r.port, r.protocol, r.listen_port or r.port) for r in spec.redirects},
                   key=lambda t: f"port={t[0]}:proto={t[1]}:toport={t[2]}")
    opened = sorted({(r.port, r.protocol) for r in spec.redirects}, key=lambda t: f"{t[0]}/{t[1]}")
    out: list[ForwardPort | OpenPort] = []
    for where in WHERE:
        out += [ForwardPort(where, spec.zone, port, proto, to) for port, proto, to in ports]
        out += [OpenPort(where, spec.zone, port, proto) for port, proto in opened]
    return tuple(out)


def zone_fields(text: str) -> dict[str, str]:
    """`firewall-cmd --zone=Z --list-all` -> its fields by name ("ports" ->
    "80/tcp 53/udp"); a field's tab-indented continuation lines (forward-ports,
    rich rules) joined with newlines. One call instead of one per listing:
    firewall-cmd is a Python program that starts in ~0.3 s (seconds in a
    small VM), and a real server asks runtime and permanent."""
    fields: dict[str, list[str]] = {}
    key: str | None = None
    for line in text.splitlines():
        if line.startswith("\t") and key is not None:
            fields[key].append(line.strip())
        elif line.startswith("  ") and ":" in line:
            key, _, value = line.strip().partition(":")
            fields[key] = [value.strip()]
        else:
            key = None  # the zone's name line
    return {k: "\n".join(v).strip() for k, v in fields.items()}


def parse_listing(text: str, where: str, zone: str) -> tuple[ForwardPort, ...]:
    """The forward-ports field of `--list-all` (as `--list-forward-ports`
    prints it: "port=80:proto=tcp:toport=80:toaddr=", one per line; an empty
    toaddr is none) -> forward-ports."""
    out = []
    for item in text.split():
        fields = dict(kv.split("=", 1) for kv in item.split(":") if "=" in kv)
        try:
            out.append(ForwardPort(where, zone, int(fields["port"]), fields["proto"],
                                   int(fields.get("toport") or fields["port"]), fields.get("toaddr", "")))
        except (KeyError, ValueError):
            continue  # a port range or a form lvsdr never writes: not lvsdr's
    return tuple(sorted(out, key=lambda f: f.listing()))


def parse_ports(text: str, where: str, zone: str) -> tuple[OpenPort, ...]:
    """The ports field of `--list-all` ("80/tcp 53/udp") -> open ports (ranges are not lvsdr's)."""
    out = []
    for item in text.split():
        port, _, proto = item.partition("/")
        if port.isdigit() and proto:
            out.append(OpenPort(where, zone, int(port), proto))
    return tuple(sorted(out, key=lambda p: p.listing()))


class Firewalld(Method):
    name = "firewalld"
    summary = "no VIP on the host; firewalld forward-ports (no toaddr) redirect each VIP port locally"

    def tools(self, spec: Spec) -> tuple[Tool, ...]:
        return (Tool(PROG, "firewalld", "firewalld"),)

    def recorded(self, spec: Spec) -> tuple[str, ...]:
        return tuple(sorted({r.listing() for r in desired_rules(spec)}))

    def fact_commands(self, spec: Spec, recorded: Sequence[str]) -> tuple[FactCommand, ...]:
        if spec.method != self.name and not recorded:
            return ()  # firewall-cmd fails where firewalld is not running: ask only when it matters
        hint = (("not running", "firewalld is not running (systemctl start firewalld)"),)
        return tuple(FactCommand((PROG, *(("--permanent",) if w == "permanent" else ()), f"--zone={spec.zone}",
                                  "--list-all"), hints=hint) for w in WHERE)

    def parse(self, outputs: Sequence[str], spec: Spec) -> Observed:
        zones = [(zone_fields(text), where) for text, where in zip(outputs, WHERE, strict=True)]
        fps = tuple(fp for fields, where in zones for fp in parse_listing(fields.get("forward-ports", ""), where,
                                                                          spec.zone))
        ports = tuple(p for fields, where in zones for p in parse_ports(fields.get("ports", ""), where, spec.zone))
        return Observed(rules=fps + ports)

    def add(self, spec: Spec, facts: Facts) -> list[Change]:
        return [AddRule(r) for r in desired_rules(spec) if r not in facts.rules]

    def prune(self, spec: Spec, wanted: bool, facts: Facts) -> list[Change]:
        want = desired_rules(spec) if wanted else ()
        recorded = set(facts.record.forward_ports if facts.record else ())
        present = [r for r in facts.rules if isinstance(r, ForwardPort | OpenPort)]
        return [DeleteRule(r) for where in WHERE for r in present
                if r.where == where and r not in want and r.listing() in recorded]

    def artifacts(self, spec: Spec) -> Artifacts:
        cmds = "".join(" ".join(r.argv("add")) + "\n" for r in sorted(
            desired_rules(spec), key=lambda r: (isinstance(r, OpenPort), r.listing(), r.where != "runtime")))
        note = ("forward-ports are added runtime (effective now) AND permanent (after a reload), without toaddr: a "
                "toaddr=<VIP> DNATs to an address this host does not have, and DR traffic then gets no answer. "
                "The ports are opened too: the director's health checks connect to this host's own address.")
        return Artifacts({COMMANDS_FILE: (cmds, 0o644)}, (note,))
