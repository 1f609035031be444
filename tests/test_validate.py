"""Bad cluster files: each gets its exact one-line error, naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lvsdr.errors import ValidationError
from lvsdr.generator.load import load_cluster, parse_cluster

from helpers import BASE, DELETE
from helpers import patched as patched_base


def patched(**changes: Any) -> dict[str, Any]:
    """patched(**{"services.1.vip": "x"}): a copy of BASE with dotted paths set."""
    return patched_base(BASE, changes)


# (changes, the exact error line)
CASES: list[tuple[dict[str, Any], str]] = [
    ({"cluster.interface": "lo"}, "cluster.interface: lo is the loopback: give the interface on the cluster's segment"),
    ({"directors.0.interface": "lo"},
     "directors[0].interface: lo is the loopback: give the interface on the cluster's segment"),
    ({"real_servers.0.interface": "lo"},
     "real_servers[0].interface: lo is the loopback: give the interface on the cluster's segment"),
    ({"cluster.vrrp_version": 3, "cluster.advert_int": 0.04},
     "cluster.advert_int: 0.04 s: lvsdr goes down to 0.05 s (a host's scheduling and the agent's hooks make faster "
     "adverts a false failover, not a faster one)"),
    ({"cluster.vrrp_version": 3, "cluster.advert_int": 41},
     "cluster.advert_int: 41 s: VRRPv3 carries at most 40.95 s (4095 hundredths; keepalived refuses more)"),
    ({"services.1.vip": "192.0.2.300"}, 'services[1].vip: "192.0.2.300" is not an IP address'),
    ({"services.1.vip": "2001:db8::1"}, "services[1].backends[0]: web1 is IPv4 but the VIP is IPv6"),
    ({"cluster.virtual_router_id": 0}, "cluster.virtual_router_id: 0 is outside 1..255"),
    ({"cluster.virtual_router_id": 256}, "cluster.virtual_router_id: 256 is outside 1..255"),
    ({"cluster.virtual_router_id": "51"}, "cluster.virtual_router_id: expected integer, got string"),
    ({"cluster.virtual_router_id": True}, "cluster.virtual_router_id: expected integer, got boolean"),
    ({"real_servers.1.name": "web1"}, "real_servers[1].name: duplicate name (also real_servers[0].name)"),
    ({"real_servers.0.name": "lb1"}, "real_servers[0].name: duplicate name (also directors[0].name)"),
    ({"services.1.port": 80}, "services[1]: duplicate vip/port/protocol (also services[0])"),
    ({"services.1.name": "http"}, "services[1].name: duplicate service name (also services[0].name)"),
    ({"services.0.port": 0}, "services[0].port: 0 is outside 1..65535"),
    ({"services.0.port": 65536}, "services[0].port: 65536 is outside 1..65535"),
    ({"services.1.backends": ["web9"]}, 'services[1].backends[0]: unknown server "web9"'),
    ({"services.1.backends": []}, "services[1].backends: at least one backend is required"),
    ({"services.1.backends": ["web1", "web1"]},
     'services[1].backends[1]: server "web1" is already backends[0]'),
    ({"cluster.auth_pass": "123456789"}, "cluster.auth_pass: 9 characters; VRRP PASS allows at most 8"),
    ({"cluster.auth_pass": "a b"},
     'cluster.auth_pass: "a b" is not 1..8 characters of [A-Za-z0-9._~@%+=:,-]'),
    ({"real_servers.0.arp_method": "arp"},
     'real_servers[0].arp_method: unknown value "arp" (expected one of sysctl, arptables, nftables, '
     "iptables, firewalld)"),
    ({"services.0.scheduler": "fastest"},
     'services[0].scheduler: unknown value "fastest" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, '
     "sh, sed, nq, fo, ovf, mh, twos)"),
    ({"directors.1.priority": 150},
     "directors[1].priority: same priority 150 as directors[0] (lb1); VRRP then elects by address"),
    ({"directors.1.priority": 255}, "directors[1].priority: 255 is outside 1..254"),
    ({"services.1.backends": [{"server": "web1", "port": 8443}]},
     "services[1].backends[0].port: 8443 differs from the service port 443; DR cannot map ports "
     "(use listen_port with arp_method iptables or firewalld)"),
    ({"services.1.backends": [{"server": "web1", "listen_port": 8443}]},
     "services[1].backends[0].listen_port: needs arp_method iptables or firewalld on web1 (it is sysctl)"),
    # names that could inject keepalived syntax
    ({"directors.0.name": 'lb1"'},
     'directors[0].name: "lb1\\"" is not a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})'),
    ({"directors.0.name": "lb1 }"},
     'directors[0].name: "lb1 }" is not a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})'),
    ({"directors.0.name": "lb1\nvrrp_script x {"},
     'directors[0].name: "lb1\\nvrrp_script x {" is not a name ([A-Za-z0-9][A-Za-z0-9_.-]{0,62})'),
    ({"cluster.name": "web#1"}, 'cluster.name: "web#1" is not a cluster name ([a-z0-9][a-z0-9_-]{0,30})'),
    ({"cluster.name": "web!"}, 'cluster.name: "web!" is not a cluster name ([a-z0-9][a-z0-9_-]{0,30})'),
    ({"cluster.interface": "eth0 {"}, 'cluster.interface: "eth0 {" is not an interface name'),
    ({"cluster.lvsdr_path": "/usr/bin/lvsdr; rm -rf /"},
     'cluster.lvsdr_path: "/usr/bin/lvsdr; rm -rf /" is not an absolute path'),
    ({"services.0.check": {"type": "http", "path": "/x }"}},
     'services[0].check.path: "/x }" is not a URL path (/..., no blanks, quotes, # or !)'),
    ({"services.0.check": {"type": "misc", "script": "check.sh"}},
     'services[0].check.script: "check.sh" is not an absolute path without blanks or quotes'),
    ({"services.0.check": {"type": "icmp"}},
     'services[0].check.type: unknown value "icmp" (expected one of tcp, http, https, misc, dns, udp, ping, smtp, '
     'file, none)'),
    ({"services.0.protocol": "icmp"},
     'services[0].protocol: unknown value "icmp" (expected one of tcp, udp, sctp)'),
    ({"services.0.protocol": "udp"},
     "services[0].check: a udp service needs an explicit check (udp, dns, misc, ping, file or none; "
     "the default tcp check cannot probe udp)"),
    ({"directors.1.address": "2001:db8::3"},
     "directors[1].address: IPv6 but directors[0] is IPv4; directors must share one address family"),
    ({"directors.0.address": "192.0.2.11"},
     "real_servers[0].address: duplicate address (also directors[0].address)"),
    ({"services.0.vip": "192.0.2.2"}, "services[0].vip: 192.0.2.2 is also directors[0].address"),
    ({"services.0.vip": "224.0.0.18"}, "services[0].vip: 224.0.0.18 is not a unicast host address"),
    ({"cluster.vrrp_version": 3, "cluster.auth_pass": "x"},
     "cluster.auth_pass: VRRP version 3 has no authentication; remove auth_pass"),
    ({"cluster.advert_int": 0.5}, "cluster.advert_int: 0.5 is fractional; VRRP version 2 needs whole seconds"),
    ({"cluster.colour": "red"}, "cluster.colour: unknown key"),
    ({"services.0.persistance_timeout": 30}, "services[0].persistance_timeout: unknown key"),
    ({"cluster.name": DELETE}, "cluster.name: required key is missing"),
    ({"directors": []}, "directors: at least one director is required"),
    ({"services.0.quorum": 5}, "services[0].quorum: 5 is more than the backends' total weight 2; "
     "the service could never be up"),
    ({"services.0.vip": "2001:db8::100", "real_servers.1.address": "2001:db8::12",
      "services.0.backends": ["web2"], "real_servers.1.arp_method": "arptables"},
     "services[0].backends[0]: web2 uses arp_method arptables, which cannot serve an IPv6 VIP "
     "(use sysctl, nftables, iptables)"),
    # found while proving the data plane and the breadth of keepalived (issue 9's list)
    ({"services.0.sorry_server": {"address": "192.0.2.50", "port": 8080}},
     "services[0].sorry_server.port: 8080 differs from the service port 80; DR cannot map ports "
     "(keepalived would reset it)"),
    ({"services.0.sorry_server": {"address": "192.0.2.100"}},
     "services[0].sorry_server.address: 192.0.2.100 is the service's own VIP"),
    ({"services.0.protocol": "sctp"},
     "services[0].check: a sctp service needs an explicit check (misc, ping, file or none; the default tcp check "
     "cannot probe sctp)"),
    ({"services.0.check": {"type": "tcp", "path": "/x"}},
     "services[0].check.path: does not apply to check type tcp (it is for http, https)"),
    ({"services.0.check": {"type": "http", "query": "a.example"}},
     "services[0].check.query: does not apply to check type http (it is for dns)"),
    # richer checks
    ({"services.0.check": {"type": "tcp"}, "services.0.checks": [{"type": "ping"}]},
     "services[0].checks: give check (one checker) or checks (several), not both"),
    ({"services.0.checks": [{"type": "tcp"}, {"type": "none"}]},
     "services[0].checks[1].type: none cannot be one of several checks"),
    ({"services.0.checks": []},
     'services[0].checks: expected at least one check (for none, use check = { type = "none" })'),
    ({"services.0.check": {"type": "http", "status_code": 600}},
     'services[0].check.status_code: 600 is not a status code (200) or range ("200-299")'),
    ({"services.0.check": {"type": "http", "status_code": [200, "299-200"]}},
     'services[0].check.status_code: "299-200" is not a status code (200) or range ("200-299")'),
    ({"services.0.check": {"type": "http", "urls": [{"path": "/", "digest": "XYZ"}]}},
     'services[0].check.urls[0].digest: "XYZ" is not an MD5 digest (32 lowercase hex digits, as keepalived\'s '
     "genhash prints)"),
    ({"services.0.check": {"type": "http", "path": "/a", "urls": [{"path": "/b"}]}},
     "services[0].check.path: give it inside urls, or drop urls"),
    ({"services.0.check": {"type": "https", "sni": True}},
     "services[0].check.sni: needs a virtualhost (the name sent as SNI)"),
    ({"services.0.check": {"type": "http", "sni": True}},
     "services[0].check.sni: does not apply to check type http (it is for https)"),
    ({"services.0.check": {"type": "tcp", "dynamic": True}},
     "services[0].check.dynamic: does not apply to check type tcp (it is for misc)"),
    ({"services.0.check": {"type": "misc", "script": "/bin/check", "connect_timeout": 3}},
     "services[0].check.connect_timeout: does not apply to check type misc (it is for tcp, http, https, dns, udp, "
     "ping, smtp)"),
    ({"services.0.check": {"type": "misc", "script": "/bin/check", "args": ["$(reboot)"]}},
     'services[0].check.args[0]: "$(reboot)" is not an argument lvsdr can quote for keepalived (letters, digits '
     "and ._/:=@%+,- only)"),
    ({"services.0.check": {"type": "misc", "script": "/bin/check", "user": "Root Admin"}},
     'services[0].check.user: "Root Admin" is not a user name'),
    ({"services.0.check": {"type": "udp", "require_reply": "zz"}},
     'services[0].check.require_reply: "zz" is not true, or the hex bytes the reply must start with'),
    ({"services.0.check": {"type": "file"}}, "services[0].check.file: required key is missing"),
    ({"services.0.check": {"type": "file", "file": "/etc/w", "retry": 2}},
     "services[0].check.retry: does not apply to check type file (it is for tcp, http, https, misc, dns, udp, "
     "ping, smtp)"),
    ({"services.0.protocol": "sctp", "services.0.check": {"type": "udp"}},
     "services[0].check.type: a udp check cannot probe an sctp service"),
    ({"services.0.backends": [{"server": "web1", "check": {"type": "http", "path": "x"}}]},
     'services[0].backends[0].check.path: "x" is not a URL path (/..., no blanks, quotes, # or !)'),
    ({"services.0.sorry_server": {"address": "::1"}},
     "services[0].sorry_server.address: IPv6 but the VIP is IPv4"),
    ({"services.0.vip": "255.255.255.255"}, "services[0].vip: 255.255.255.255 is not a unicast host address"),
    ({"services.0.vip": "0.1.2.3"}, "services[0].vip: 0.1.2.3 is not a unicast host address"),
    ({"cluster.subnet": "192.0.2.0/24", "services.0.vip": "192.0.2.255"},
     "services[0].vip: 192.0.2.255 is the broadcast address of cluster.subnet 192.0.2.0/24"),
    ({"cluster.subnet": "192.0.2.0/25", "services.0.vip": "192.0.2.0"},
     "services[0].vip: 192.0.2.0 is the network address of cluster.subnet 192.0.2.0/25"),
    ({"cluster.subnet": "192.0.2.0/25", "services.0.vip": ["192.0.2.120-130"]},
     "services[0].vip: 192.0.2.127 is the broadcast address of cluster.subnet 192.0.2.0/25"),
    ({"cluster.subnet": "192.0.2.1/24"},
     'cluster.subnet: "192.0.2.1/24" is not a network ("192.0.2.0/24", host bits zero)'),
    ({"cluster.subnet": "198.51.100.0/24"}, "cluster.subnet: 198.51.100.0/24 does not hold director lb1 (192.0.2.2)"),
    # several VRRP instances
    ({"instances": [{"name": "b", "virtual_router_id": 51, "vips": ["192.0.2.101"],
                     "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances[0].virtual_router_id: 51 is also cluster.virtual_router_id (on the same interface)"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.99"],
                     "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances[0].vips[0]: 192.0.2.99 is no service's VIP and not in [[vips]]"),
    # an instance on its own interface (two-armed directors)
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"], "interface": "eth1",
                     "priorities": {"lb1": 100, "lb2": 150}},
                    {"name": "c", "virtual_router_id": 52, "vips": ["192.0.2.100"], "interface": "eth1",
                     "priorities": {"lb1": 90, "lb2": 140}}]},
     "instances[1].virtual_router_id: 52 is also instances[0].virtual_router_id (on the same interface)"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"], "interface": "eth 1",
                     "priorities": {"lb1": 100, "lb2": 150}}]},
     'instances[0].interface: "eth 1" is not an interface name'),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"], "interface": "eth1",
                     "addresses": {"lb1": "198.51.100.2"}, "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances[0].addresses.lb2: required key is missing"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"], "interface": "eth1",
                     "addresses": {"lb1": "198.51.100.2", "lb2": "2001:db8::3"},
                     "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances[0].addresses: mixes IPv4 and IPv6; an instance's adverts are of one family"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"], "interface": "eth1",
                     "addresses": {"lb1": "198.51.100.2", "lb2": "198.51.100.2"},
                     "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances[0].addresses.lb2: 198.51.100.2 is also lb1's"),
    ({"cluster.unicast": True, "instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"],
                                              "interface": "eth1", "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances[0].addresses: required with unicast on interface eth1: each director's address there (its "
     "unicast_src_ip and its peers' unicast_peer)"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"], "priorities": {"lb1": 100}}]},
     "instances[0].priorities.lb2: required key is missing"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"],
                     "priorities": {"lb1": 100, "lb2": 100}}]},
     "instances[0].priorities.lb2: same priority 100 as lb1; VRRP then elects by address"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.100", "192.0.2.101"],
                     "priorities": {"lb1": 100, "lb2": 150}}]},
     "instances: every VIP is in [[instances]]; the cluster's own instance would carry none"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"],
                     "priorities": {"lb1": 100, "lb2": 150}}], "services.0.backends": ["web1", "lb1"]},
     "instances: several VRRP instances with a director as a backend (lb1) are not supported: its ARP suppression "
     "follows one role"),
    ({"cluster.sync_group": True}, "cluster.sync_group: needs [[instances]] (a sync group joins several instances)"),
    ({"instances": [{"name": "b", "virtual_router_id": 52, "vips": ["192.0.2.101"],
                     "priorities": {"lb1": 100, "lb2": 150}}], "cluster.sync_group": True,
      "track_interfaces": [{"name": "eth1", "weight": -10}]},
     "track_interfaces[0].weight: must be 0 in a sync group (keepalived ignores weighted tracking there and "
     "refuses the file); 0 puts the group in FAULT"),
    ({"cluster.auth_type": "AH"}, "cluster.auth_type: needs auth_pass (the shared secret)"),
    ({"cluster.auth_type": "MD5", "cluster.auth_pass": "x"},
     'cluster.auth_type: unknown value "MD5" (expected one of PASS, AH)'),
    # virtual_server_group
    ({"services.0.vip": ["192.0.2.100-90"]},
     'services[0].vip[0]: "192.0.2.100-90" is not a range FIRST-LAST with FIRST <= LAST'),
    ({"services.0.vip": "192.0.2.100-192.0.40.200"},
     'services[0].vip: "192.0.2.100-192.0.40.200" holds more than 4096 addresses'),
    ({"services.0.vip": ["192.0.2.100", "2001:db8::1"]},
     "services[0].vip: mixes IPv4 and IPv6; a service has one family"),
    ({"services.0.vip": ["192.0.2.100-102", "192.0.2.101"]}, "services[0].vip: 192.0.2.101 is listed twice"),
    ({"services.0.vip": ["192.0.2.1-3"]}, "services[0].vip: 192.0.2.2 is also directors[0].address"),
    ({"services.0.port": [80, 443]}, "services[1]: duplicate vip/port/protocol (also services[0])"),
    ({"services.0.port": [80, 0]}, "services[0].port[1]: 0 is not a port (1..65535)"),
    ({"services.0.port": [80, 8080], "services.0.sorry_server": {"address": "192.0.2.50", "port": 80}},
     "services[0].sorry_server.port: leave it out: a group with several ports forwards each to the same port"),
    ({"vips": [{"address": "192.0.2.2"}]}, "vips[0].address: 192.0.2.2 is also directors[0].address"),
    ({"vips": [{"address": "192.0.2.200"}, {"address": "192.0.2.200"}]},
     "vips[1].address: duplicate VIP (also vips[0].address)"),
    ({"vips": [{"address": "192.0.2.200", "device": "eth1", "label": "eth0:x"}]},
     'vips[0].label: "eth0:x" must start with its device and hold 15 characters at most'),
    ({"keepalived_extra": [{"block": "vrrp_instance", "lines": ["}", "vrrp_script evil {"]}]},
     "keepalived_extra[0].lines[0]: closes a block it did not open"),
    ({"keepalived_extra": [{"block": "global_defs", "lines": ["x {"]}]},
     "keepalived_extra[0].lines: opens a block it does not close"),
    ({"keepalived_extra": [{"block": "global_defs", "lines": ["a\n}\nvrrp_script x {"]}]},
     "keepalived_extra[0].lines[0]: expected one line of text"),
    ({"keepalived_extra": [{"block": "service:nosuch", "lines": ["ops"]}]},
     'keepalived_extra[0].block: "service:nosuch" is not global_defs, vrrp_instance or service:NAME of a service '
     "in this file"),
    ({"cluster.sync_daemon": {"id": 256}}, "cluster.sync_daemon.id: 256 is outside 0..255"),
    ({"cluster.sync_daemon": {"interface": "eth 1"}},
     'cluster.sync_daemon.interface: "eth 1" is not an interface name'),
    ({"cluster.sync_daemon": "yes"}, "cluster.sync_daemon: expected boolean or table, got string"),
    ({"cluster.sync_daemon": True, "cluster.preempt_delay": 5},
     "cluster.preempt_delay: 5 s with sync_daemon: a MASTER that comes back would take the VIPs before the "
     "connections have synced to it; 10 or more (default 60 with sync_daemon), or nopreempt = true"),
    ({"cluster.sync_daemon": True, "cluster.initial_state": "MASTER"},
     "cluster.initial_state: MASTER with sync_daemon: a MASTER that comes back would take the VIPs before the "
     "connections have synced to it (keepalived waits preempt_delay only from BACKUP); use BACKUP, or "
     "nopreempt = true"),
    ({"services.0.hysteresis": 1},
     "services[0].hysteresis: 1 is not below the quorum 1 (keepalived would set it to 0)"),
    ({"track_interfaces": [{"name": "eth0"}]},
     "track_interfaces[0].name: eth0 is the VRRP interface itself (keepalived tracks it already, and refuses it here)"),
    ({"services.0.ops": True}, "services[0].ops: one-packet scheduling is for udp services (this one is tcp)"),
    ({"services.0.sh_port": True}, "services[0].sh_port: is for scheduler sh (this service uses wlc)"),
    ({"services.0.persistence_granularity": "255.0.255.0"},
     'services[0].persistence_granularity: "255.0.255.0" is not a netmask (IPv4: 255.255.255.0; IPv6 VIPs: a '
     'prefix length such as "64")'),
    ({"cluster.notify_master": ["announce", "master"]},
     'cluster.notify_master[0]: "announce" is not an absolute path without blanks or quotes'),
    ({"cluster.notify_backup": ["/usr/bin/logger", "a b"]},
     'cluster.notify_backup[1]: "a b" is not an argument lvsdr can quote for keepalived (letters, digits and '
     "._/:=@%+,- only)"),
    ({"cluster.mcast_src_ip": True, "cluster.unicast": True},
     "cluster.mcast_src_ip: applies to multicast adverts; this cluster is unicast"),
    ({"services.0.backends": [{"server": "web1", "notify_up": []}]},
     "services[0].backends[0].notify_up: expected [path, arguments...], got an empty list"),
    ({"track_scripts": [{"name": "up", "script": "/usr/bin/curl", "args": ["http://x/ ; reboot"]}]},
     'track_scripts[0].args[0]: "http://x/ ; reboot" is not an argument lvsdr can quote for keepalived '
     "(letters, digits and ._/:=@%+,- only)"),
    ({"track_scripts": [{"name": "up", "script": "check-uplink"}]},
     'track_scripts[0].script: "check-uplink" is not an absolute path without blanks or quotes'),
    ({"track_scripts": [{"name": "up", "script": "/bin/true", "weight": 254}]},
     "track_scripts[0].weight: 254 is outside -253..253"),
    ({"track_interfaces": [{"name": "eth1"}, {"name": "eth1", "weight": -10}]},
     "track_interfaces[1].name: duplicate name (also track_interfaces[0].name)"),
    ({"track_files": [{"name": "maint", "file": "/etc/lvsdr/maint", "weigth": 1}]},
     "track_files[0].weigth: unknown key"),
    ({"cluster.hook": "none", "services.0.backends": ["web1", "lb1"]},
     "cluster.hook: none leaves the fwmark services (http) without their mark rule: nothing would be balanced "
     "(use both, fifo or notify)"),
]


@pytest.mark.parametrize(("changes", "expected"), CASES, ids=[e.split(":")[0] for _, e in CASES])
def test_bad_file_gets_exact_error(changes: dict[str, Any], expected: str) -> None:
    """Each bad value gets its exact one-line error naming the field."""
    with pytest.raises(ValidationError) as exc:
        parse_cluster(patched(**changes))
    assert expected in exc.value.errors, exc.value.errors


def test_base_is_valid() -> None:
    """The base file the cases mutate is itself valid."""
    c = parse_cluster(BASE)
    assert c.name == "web" and len(c.services) == 2


def test_all_errors_in_one_run() -> None:
    """Every problem of a file is reported in one run."""
    data = patched(**{"cluster.virtual_router_id": 0, "services.0.port": 0,
                      "services.1.backends": ["web9"]})
    with pytest.raises(ValidationError) as exc:
        parse_cluster(data)
    assert len(exc.value.errors) == 3


def test_vrrp3_takes_every_hundredth_up_to_40_95() -> None:
    """VRRPv3's advert_int: 40.95 (4095.0000000000005 hundredths in floating point) and 0.05 are taken."""
    for adv in (40.95, 0.05, 0.07, 12.34):
        c = parse_cluster(patched(**{"cluster.vrrp_version": 3, "cluster.advert_int": adv}))
        assert c.advert_int == adv


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("bad.toml", "[cluster\nname = 1", "bad.toml: TOML syntax error: "),
    ("bad.json", "{", "bad.json: JSON syntax error at line 1: "),
    ("bin.toml", b"\xff\xfe", "bin.toml: not UTF-8 text (byte 0)"),
    ("list.json", "[1, 2]", "(top level): expected table, got list"),
])
def test_unreadable_files(tmp_path: Path, name: str, content: str | bytes, expected: str) -> None:
    """An unreadable, non-UTF-8 or unparsable file is one line naming the file."""
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(Exception) as exc:  # noqa: B017 - the message is what matters
        load_cluster(p)
    assert expected.replace("bad.toml", str(p)).replace("bad.json", str(p)).replace(
        "bin.toml", str(p)) in str(exc.value)


def test_json_shape_is_accepted(tmp_path: Path) -> None:
    """The JSON form of a cluster file is accepted."""
    p = tmp_path / "c.json"
    p.write_text(json.dumps(BASE))
    assert load_cluster(p).name == "web"


def test_repeated_sub_tables_are_parsed_once_and_still_checked_everywhere() -> None:
    """The loader reuses a backend's or a check's table that parsed without
    error when the same one comes again (large clusters repeat them): the
    same bad table under two services is reported under both, the same good
    one gives equal results, and true is not taken for 1."""
    bad_backend = {"server": "web1", "weight": -1}
    bad_check = {"type": "http", "path": "no slash"}
    data = patched(**{"services.0.backends": [bad_backend], "services.1.backends": [dict(bad_backend)],
                      "services.0.check": bad_check, "services.1.check": dict(bad_check)})
    with pytest.raises(ValidationError) as exc:
        parse_cluster(data)
    for i in (0, 1):
        assert f"services[{i}].backends[0].weight: -1 is outside 0..65535" in exc.value.errors
        assert any(e.startswith(f"services[{i}].check.path: ") for e in exc.value.errors), exc.value.errors
    good = {"server": "web1", "weight": 1, "inhibit_on_failure": True}
    c = parse_cluster(patched(**{"services.0.backends": [good], "services.1.backends": [dict(good)]}))
    assert c.services[0].backends == c.services[1].backends
    assert c.services[0].backends[0].inhibit_on_failure is True
    with pytest.raises(ValidationError) as exc:
        parse_cluster(patched(**{"services.0.backends": [good],
                                 "services.1.backends": [{**good, "weight": True}]}))
    assert exc.value.errors == ["services[1].backends[0].weight: expected integer, got boolean"]


def test_sync_daemon_derives_a_preempt_delay_unless_told_otherwise() -> None:
    """With sync_daemon a returning MASTER waits 60 s as BACKUP before it takes
    the VIPs back (its table syncs meanwhile), unless the file sets a delay of
    its own or nopreempt; without sync_daemon nothing is derived."""
    assert parse_cluster(patched(**{"cluster.sync_daemon": True})).preempt_delay == 60
    assert parse_cluster(patched(**{"cluster.sync_daemon": True, "cluster.preempt_delay": 20})).preempt_delay == 20
    assert parse_cluster(patched(**{"cluster.sync_daemon": True, "cluster.nopreempt": True})).preempt_delay is None
    assert parse_cluster(patched()).preempt_delay is None
