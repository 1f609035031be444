"""keepalived.conf golden files: what operators deploy. Each must pass the real
``keepalived -t``. Regenerate after an intended change with UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from lvsdr.errors import ValidationError
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import load_cluster, parse_cluster
from lvsdr.hooks.keepalived import check_text

from helpers import EXAMPLES, GOLDEN, REPO

CASES = [
    (example.name, d["name"])
    for example in sorted(EXAMPLES.glob("*.toml"))
    for d in tomllib.loads(example.read_text())["directors"]
]


def render_case(example: str, node: str) -> str:
    path = EXAMPLES / example
    return render_keepalived(load_cluster(path), node, source=str(path.relative_to(REPO)))


@pytest.mark.parametrize(("example", "node"), CASES)
def test_golden(example: str, node: str) -> None:
    """Each example renders its golden keepalived.conf byte for byte."""
    text = render_case(example, node)
    golden = GOLDEN / f"{Path(example).stem}.{node}.keepalived.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs; UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize(("example", "node"), CASES)
def test_golden_passes_keepalived(example: str, node: str, scratch_netns: str) -> None:
    """Each golden keepalived.conf passes keepalived -t."""
    golden = GOLDEN / f"{Path(example).stem}.{node}.keepalived.conf"
    result = check_text(golden.read_text(), netns=scratch_netns)
    assert result.ok, result.message()


def test_render_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Hash seeds (set order), working directory and locale of two separate
    processes: the same bytes."""
    outs = []
    for seed, cwd, lang in (("1", REPO, "C.UTF-8"), ("2", tmp_path, "POSIX")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "LANG": lang, "LC_ALL": lang}
        p = subprocess.run([sys.executable, "-m", "lvsdr.cli", "render", str(EXAMPLES / "full.toml"), "--node", "lb-a"],
                           capture_output=True, cwd=cwd, env=env, check=True)
        outs.append(p.stdout)
    assert outs[0] == outs[1]


def test_json_and_toml_render_the_same(tmp_path: Path) -> None:
    """A cluster file in JSON renders the same bytes as in TOML."""
    import json

    data = tomllib.loads((EXAMPLES / "full.toml").read_text())
    j = tmp_path / "full.json"
    j.write_text(json.dumps(data))
    assert render_keepalived(load_cluster(j), "lb-a", "x") == render_keepalived(
        load_cluster(EXAMPLES / "full.toml"), "lb-a", "x"
    )


def test_director_as_backend_gets_fwmark_and_no_ports() -> None:
    """A service backed by a director renders as a fwmark virtual_server whose real servers carry no port."""
    text = render_case("two-node.toml", "node1")
    assert "virtual_server fwmark " in text
    assert "real_server 192.0.2.21 {" in text  # fwmark services carry no port
    assert "connect_port 443" in text


def test_backup_everywhere_and_unicast_peers() -> None:
    """Every director starts as BACKUP and lists the others as unicast peers."""
    text = render_case("two-node.toml", "node2")
    assert "state BACKUP" in text
    assert "unicast_src_ip 192.0.2.22" in text
    assert "unicast_peer {\n        192.0.2.21\n    }" in text


def test_ipv6_instance_carries_ipv4_vip_as_excluded() -> None:
    """An IPv6 instance carries an IPv4 VIP as virtual_ipaddress_excluded."""
    text = render_case("ipv6.toml", "lb1")
    assert "2001:db8::100/128 dev eth0" in text
    assert "virtual_ipaddress_excluded {\n        192.0.2.100/32 dev eth0" in text
    assert "version 3" in text and "auth_pass" not in text


def test_never_deprecated_nb_get_retry() -> None:
    """Rendered checkers use retry, never the deprecated nb_get_retry."""
    for example, node in CASES:
        assert "nb_get_retry" not in render_case(example, node)


def test_vips_past_what_one_advert_carries_move_unadvertised(scratch_netns: str) -> None:
    """700 IPv4 and 100 IPv6 VIPs: 255 IPv4 (83 IPv6) in virtual_ipaddress,
    the rest in virtual_ipaddress_excluded (keepalived refuses more in one
    advert: exit 5), and keepalived -t accepts it."""
    import ipaddress

    from helpers import BASE

    pool = [ipaddress.ip_address(f"{net}.{i}") for net in ("198.51.100", "203.0.113", "192.0.2")
            for i in range(1, 255)][:700]
    pool = [a for a in pool if str(a) not in ("192.0.2.2", "192.0.2.3", "192.0.2.11", "192.0.2.12")]
    services = [{"name": f"s{i}", "vip": str(a), "port": 80, "backends": ["web1"], "check": {"type": "none"}}
                for i, a in enumerate(pool)]
    services += [{"name": f"v6-{i}", "vip": f"2001:db8::{i + 1:x}", "port": 80, "backends": ["web6"],
                  "check": {"type": "none"}} for i in range(100)]
    data = {**BASE, "services": services,
            "real_servers": [*BASE["real_servers"], {"name": "web6", "address": "2001:db8:1::6"}]}
    text = render_keepalived(parse_cluster(data), "lb1", "many")
    block = text.split("virtual_ipaddress {\n")[1].split("    }\n")[0]
    excluded = text.split("virtual_ipaddress_excluded {\n")[1].split("    }\n")[0]
    assert block.count(" dev eth0") == 255
    assert excluded.count(" dev eth0") == len(pool) - 255 + 100
    result = check_text(text, netns=scratch_netns)
    assert result.ok, result.message()


def test_hook_none_flag_refused_with_fwmark_services(capsys: pytest.CaptureFixture[str]) -> None:
    """--hook none is refused when fwmark services need the mark rule."""
    from lvsdr.cli import main

    assert main(["render", str(EXAMPLES / "pair.toml"), "--node", "node1", "--hook", "none"]) == 2
    assert capsys.readouterr().err == ("lvsdr: --hook: none leaves the fwmark services (http) without their mark "
                                       "rule: nothing would be balanced (use both, fifo or notify)\n")


def test_sync_group_joins_every_instance(scratch_netns: str) -> None:
    """sync_group: one vrrp_sync_group over the cluster's instance and the
    [[instances]], and keepalived -t accepts it with the tracking in use."""
    data = tomllib.loads((EXAMPLES / "active-active.toml").read_text())
    data["cluster"]["sync_group"] = True
    data["track_scripts"] = [{"name": "uplink", "script": "/bin/true"}]
    text = render_keepalived(parse_cluster(data), "lb1", "x")
    group = text.split("vrrp_sync_group VG_aa {\n")[1].split("\n}\n")[0]
    assert [ln.strip() for ln in group.splitlines() if not ln.strip().startswith("#")] == \
        ["group {", "VI_aa", "VI_aa_shop", "}", "sync_group_tracking_weight"]  # the quorum hand-over's weights count
    result = check_text(text, netns=scratch_netns)
    assert result.ok, result.message()


def test_rendering_writes_nothing_into_the_package() -> None:
    """jinja2's compiled templates are cached outside the installed package
    (an uninstall would leave them behind): a render adds no file under it."""
    import lvsdr
    from lvsdr.generator.templating import environment

    root = Path(lvsdr.__file__).resolve().parent
    dirs = [root, *(p.resolve() for p in root.iterdir() if p.is_dir())]

    def files() -> set[Path]:
        return {f for d in dirs for f in d.rglob("*") if f.is_file() and f.suffix != ".pyc"}

    before = files()
    environment.cache_clear()
    c = load_cluster(EXAMPLES / "full.toml")
    render_keepalived(c, c.directors[0].name, "x")
    assert files() == before


def test_the_docs_table_of_check_keys_is_the_catalogs() -> None:
    """docs/cluster-file.md lists every check key with its types and keepalived's default, as the catalog says."""
    from lvsdr.generator.checks import docs_table

    assert docs_table() in (REPO / "docs" / "cluster-file.md").read_text()


def test_a_new_check_type_is_one_catalog_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check type made of the catalog's kinds of keys needs nothing else: an
    entry makes the loader take it (and refuse its keys elsewhere), the
    renderer write it and the importer read it back."""
    from lvsdr.generator import checks, importer, keepalived
    from lvsdr.generator.kaconf import read_keepalived

    new = checks.CheckType("ldap", "LDAP_CHECK", True, (
        checks._text("bind_dn", "bind_dn", checks.HOST, "a host name", "none", "the DN to bind as"),))
    types = {**checks.TYPES, "ldap": new}
    monkeypatch.setattr(checks, "TYPES", types)
    monkeypatch.setattr(checks, "NAMES", (*types, "none"))
    monkeypatch.setattr(checks, "KEY_TYPES", checks._key_types())
    monkeypatch.setattr(keepalived, "CHECK_KINDS", {
        t.name: SimpleNamespace(block=t.block, keys=checks.keys_of(t)) for t in types.values()})
    monkeypatch.setattr(importer, "CHECKERS", {t.block: t.name for t in types.values()})
    data = tomllib.loads((EXAMPLES / "web.toml").read_text())
    data["services"][0]["check"] = {"type": "ldap", "bind_dn": "admin.example", "port": 389, "retry": 2}
    c = parse_cluster(data)
    text = render_keepalived(c, c.directors[0].name, "x")
    block = "LDAP_CHECK {\n            bind_dn admin.example\n            connect_port 389\n            retry 2\n"
    assert block in text
    with pytest.raises(ValidationError, match="does not apply to check type tcp"):
        bad = tomllib.loads((EXAMPLES / "web.toml").read_text())
        bad["services"][0]["check"] = {"type": "tcp", "bind_dn": "x"}
        parse_cluster(bad)
    side = importer.read_side(read_keepalived("k", {"k": text}.__getitem__), "k")
    assert side.services[0].backends[0].checks == [{"type": "ldap", "bind_dn": "admin.example", "port": 389,
                                                          "retry": 2}]


def test_an_instance_on_its_own_interface_renders_there(tmp_path: Path, scratch_netns: str) -> None:
    """A two-armed instance names its interface, puts its VIPs on it, sends unicast from each director's address
    there to the other's, and leaves out a track_interface on its own interface (the other instance keeps it)."""
    data = tomllib.loads((EXAMPLES / "two-armed.toml").read_text())
    data["cluster"]["unicast"] = True
    data["track_interfaces"] = [{"name": "eth1"}]
    text = render_keepalived(parse_cluster(data), "lb1", "x")
    outside, inside = text.split("vrrp_instance ")[1:3]
    assert "interface eth0\n" in outside and "unicast_src_ip 192.0.2.2\n" in outside
    assert "unicast_peer {\n        192.0.2.3\n" in outside and "track_interface {\n        eth1 weight 0\n" in outside
    assert "interface eth1\n" in inside and "unicast_src_ip 198.51.100.2\n" in inside
    assert "unicast_peer {\n        198.51.100.3\n" in inside and "track_interface" not in inside
    assert "198.51.100.254/32 dev eth1\n" in inside
    result = check_text(text, netns=scratch_netns)
    assert result.ok, result.message()


def test_the_docs_tables_of_the_files_keys_are_their_declarations() -> None:
    """docs/cluster-file.md's tables of [cluster], [[directors]], [[real_servers]] and [[services]] are made from the
    keys declared on the model (each key declared once: type, range, default and meaning)."""
    from lvsdr.generator.keys import docs_table
    from lvsdr.generator.model import Cluster, Director, RealServer, Service

    page = (REPO / "docs" / "cluster-file.md").read_text()
    for cls in (Cluster, Director, RealServer, Service):
        assert docs_table(cls) in page, cls.__name__


def test_every_simple_key_is_read_by_its_declaration() -> None:
    """Each declared key of an integer, boolean, choice or text form is read by its declaration: a value of the
    wrong type there is one error line naming that key (none is read by other code, or ignored)."""
    import tomllib

    from lvsdr.errors import ValidationError
    from lvsdr.generator.keys import keys_of
    from lvsdr.generator.load import parse_cluster
    from lvsdr.generator.model import Cluster, Director, RealServer, Service

    from helpers import patched

    base = tomllib.loads((EXAMPLES / "full.toml").read_text())
    where = {Cluster: "cluster", Director: "directors.0", RealServer: "real_servers.0", Service: "services.0"}
    for cls, path in where.items():
        for k in keys_of(cls).values():
            if k.form not in ("int", "bool", "choice", "text"):
                continue
            wrong = "x" if k.form in ("int", "bool") else 7
            with pytest.raises(ValidationError) as e:
                parse_cluster(patched(base, {f"{path}.{k.name}": wrong}))
            field = f"{path.replace('.0', '[0]')}.{k.name}"
            assert any(line.startswith(f"{field}: ") for line in e.value.errors), (field, e.value.errors)
