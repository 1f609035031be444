"""Files to install on a real server (`lvsdr realserver render`): pure, deterministic."""

from __future__ import annotations

from importlib.resources import files as package_files

from lvsdr import __version__

from .model import Cluster
from .realserver import NAT_CHAIN, Facts, Spec, nft_script, plan
from .templating import render_template

UNIT = "lvsdr-realserver@.service"


def _unit(cluster: Cluster) -> str:
    text = package_files("lvsdr.systemd").joinpath(UNIT).read_text()
    return text.replace("@LVSDR@", cluster.lvsdr_path).replace("@CONFIG@", cluster.config_path)


def _iptables_restore(spec: Spec, family: int) -> str:
    """An iptables-restore --noflush fragment (Debian: /etc/iptables/rules.v4,
    RHEL: /etc/sysconfig/iptables hold the whole table; merge it there)."""
    rules = spec.iptables_rules(family)
    return "\n".join(["*nat", f":{NAT_CHAIN} - [0:0]", f"-A PREROUTING -j {NAT_CHAIN}", *rules, "COMMIT"]) + "\n"


def _arptables_restore(spec: Spec) -> str:
    return "\n".join(["*filter", ":LVSDR_IN -", ":LVSDR_OUT -", "-A INPUT -j LVSDR_IN",
                      "-A OUTPUT -j LVSDR_OUT", *spec.arptables_rules()]) + "\n"


def realserver_files(cluster: Cluster, spec: Spec, source: str) -> dict[str, tuple[str, int]]:
    """Relative path -> (text, mode)."""
    out: dict[str, tuple[str, int]] = {}
    notes = []
    if spec.sysctls():
        body = "".join(f"{k} = {v}\n" for k, v in sorted(spec.sysctls().items()))
        out["etc/sysctl.d/90-lvsdr-arp.conf"] = (
            f"# lvsdr: real server {spec.node} does not answer or announce ARP for its VIPs\n{body}", 0o644)
    if spec.method == "arptables":
        out["etc/lvsdr/arptables.rules"] = (_arptables_restore(spec), 0o644)
        notes.append("etc/lvsdr/arptables.rules is in arptables-save format (arptables-restore); on RHEL "
                     "it may go to /etc/sysconfig/arptables for arptables.service. The guide's chain names "
                     "IN/OUT are the old arptables' ones: today they are INPUT/OUTPUT.")
    if spec.method == "nftables":
        out["etc/nftables.d/lvsdr.nft"] = (nft_script(spec.nft_rules()), 0o644)
        notes.append('add `include "/etc/nftables.d/lvsdr.nft"` to /etc/nftables.conf so the nftables '
                     "service loads the table at boot; it touches no other table.")
    if spec.method == "iptables":
        out["etc/iptables/lvsdr.rules.v4"] = (_iptables_restore(spec, 4), 0o644)
        if spec.iptables_rules(6):
            out["etc/iptables/lvsdr.rules.v6"] = (_iptables_restore(spec, 6), 0o644)
        notes.append("the iptables fragment is for `iptables-restore --noflush`; the chain is PREROUTING "
                     "(the guide's PREROUTE does not exist), and the RHEL file is /etc/sysconfig/iptables "
                     "(not /etc/syconfig).")
    if spec.method == "firewalld":
        cmds = "".join(f"firewall-cmd{p} --zone={spec.zone} --add-forward-port={fp}\n"
                       for fp in spec.forward_ports() for p in ("", " --permanent"))
        out["etc/lvsdr/firewalld-commands.txt"] = (cmds, 0o644)
        notes.append("forward-ports are added runtime (effective now) AND permanent (after a reload), "
                     "without toaddr: a toaddr=<VIP> DNATs to an address this host does not have, and DR "
                     "traffic then gets no answer.")
    out[f"etc/systemd/system/{UNIT}"] = (_unit(cluster), 0o644)
    steps = [c.description for c in plan(spec, Facts())]
    readme = render_template(
        "realserver/README.txt.j2", spec=spec, version=__version__, source=source,
        steps=[s for s in steps if not s.startswith("record")],
        files=sorted(out), notes=notes, config_path=cluster.config_path, lvsdr_path=cluster.lvsdr_path)
    out["README.txt"] = (readme, 0o644)
    return out
