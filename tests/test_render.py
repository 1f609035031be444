"""keepalived.conf golden files: what operators deploy. Each must pass the real
``keepalived -t``. Regenerate after an intended change with UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import load_cluster
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
    text = render_case(example, node)
    golden = GOLDEN / f"{Path(example).stem}.{node}.keepalived.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden.name} differs; UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize(("example", "node"), CASES)
def test_golden_passes_keepalived(example: str, node: str, scratch_netns: str) -> None:
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
    import json

    data = tomllib.loads((EXAMPLES / "full.toml").read_text())
    j = tmp_path / "full.json"
    j.write_text(json.dumps(data))
    assert render_keepalived(load_cluster(j), "lb-a", "x") == render_keepalived(
        load_cluster(EXAMPLES / "full.toml"), "lb-a", "x"
    )


def test_director_as_backend_gets_fwmark_and_no_ports() -> None:
    text = render_case("two-node.toml", "node1")
    assert "virtual_server fwmark " in text
    assert "real_server 192.0.2.21 {" in text  # fwmark services carry no port
    assert "connect_port 443" in text


def test_backup_everywhere_and_unicast_peers() -> None:
    text = render_case("two-node.toml", "node2")
    assert "state BACKUP" in text
    assert "unicast_src_ip 192.0.2.22" in text
    assert "unicast_peer {\n        192.0.2.21\n    }" in text


def test_ipv6_instance_carries_ipv4_vip_as_excluded() -> None:
    text = render_case("ipv6.toml", "lb1")
    assert "2001:db8::100/128 dev eth0" in text
    assert "virtual_ipaddress_excluded {\n        192.0.2.100/32 dev eth0" in text
    assert "version 3" in text and "auth_pass" not in text


def test_never_deprecated_nb_get_retry() -> None:
    for example, node in CASES:
        assert "nb_get_retry" not in render_case(example, node)
