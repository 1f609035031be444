"""Hostile and careless input to the cluster file, `render` and `render --all`:
refused with one line naming the field (exit 2), never rendered into
keepalived.conf, never a traceback."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
import stat
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsdr.cli import main
from lvsdr.errors import InputError, ValidationError
from lvsdr.generator.bundle import node_trees
from lvsdr.generator.keepalived import render_keepalived
from lvsdr.generator.load import load_cluster, parse_cluster
from lvsdr.generator.model import Cluster
from lvsdr.generator.rules import extra_line
from lvsdr.hooks.fast.files import write_tree

from helpers import BASE

ROOT = Path(__file__).resolve().parent.parent
FULL = tomllib.loads((ROOT / "examples/full.toml").read_text())
IPV6 = tomllib.loads((ROOT / "examples/ipv6.toml").read_text())
ECMP = tomllib.loads((ROOT / "examples/ecmp.toml").read_text())
EXAMPLE_DATA = {"full": FULL, "ipv6": IPV6, "ecmp": ECMP}

SCOPED = "2001:db8::7%x\n}\nquorum_up \"/bin/sh\"\n{"


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _strings(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every string value of a parsed file, with its path."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, (*path, k))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, (*path, i))]
    return [(path, value)] if isinstance(value, str) else []


def _addresses(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The paths of every string value of a file that is an IP address."""
    out = []
    for path, v in _strings(data):
        try:
            ipaddress.ip_address(v.split("-")[0])
        except ValueError:
            continue
        out.append(path)
    return out


ADDRESS_FIELDS = [(name, p) for name, data in EXAMPLE_DATA.items() for p in _addresses(data)]


@pytest.mark.parametrize(("example", "path"), ADDRESS_FIELDS, ids=[f"{e}:{p}" for e, p in ADDRESS_FIELDS])
def test_a_scope_id_in_any_address_field_is_refused(example: str, path: tuple[Any, ...]) -> None:
    """No address field takes an IPv6 scope id: ipaddress accepts newlines,
    braces and quotes after %, which would render as keepalived directives."""
    data = _set(EXAMPLE_DATA[example], path, SCOPED)
    with pytest.raises(ValidationError) as e:
        parse_cluster(data)
    where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")
    assert any(line.startswith(where) for line in e.value.errors), e.value.errors
    assert all("\n" not in line for line in e.value.errors)


def test_a_single_ipv6_vip_with_a_scope_id_in_an_ipv4_cluster_is_refused() -> None:
    """The one IPv6 [[vips]] entry of an IPv4 cluster is checked like every address."""
    data = copy.deepcopy(BASE)
    data["vips"] = [{"address": "2001:db8::5%eth0"}]
    with pytest.raises(ValidationError) as e:
        parse_cluster(data)
    assert e.value.errors == ['vips[0].address: "2001:db8::5%eth0" has a scope id (%...); give the plain address']


def test_the_renderer_refuses_a_scoped_address_that_skipped_validation() -> None:
    """The second lock: an address is rendered through the same guard as every
    other value, so a model built around the loader still cannot inject."""
    c = parse_cluster(copy.deepcopy(IPV6))
    svc = c.services[0]
    bad = dataclasses.replace(svc, vip=ipaddress.ip_address("2001:db8::7%x}"))
    with pytest.raises(ValueError, match="unsafe"):
        render_keepalived(dataclasses.replace(c, services=(bad, *c.services[1:])), c.directors[0].name, "x")


PAYLOADS = [  # each kind once: a block break, braces, comment signs, quotes, blanks, line ends, the preprocessor
    "\n}\nquorum_up \"/bin/sh -c id\"\n{", "}", "{", "# {", "! {", '"', "\\", " ", "\r", "\x00", "\u2028",
    "$(id)", "%eth0", "include /etc/x",
]


def _skeleton(text: str) -> list[tuple[int, int]]:
    """Each line's block depth and brace balance, as keepalived reads them
    (text after # or ! outside quotes is a comment)."""
    out, depth = [], 0
    for line in text.split("\n"):
        body, quoted = [], False
        for c in line:
            if c == '"':
                quoted = not quoted
            elif c in "#!" and not quoted:
                break
            body.append(c)
        delta = "".join(body).count("{") - "".join(body).count("}")
        out.append((depth, delta))
        depth += delta
    return out


def mutations(data: dict[str, Any], strings: list[tuple[tuple[Any, ...], str]],
              payloads: list[str]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Each payload at either end of each string of ``strings``, set in
    ``data`` in place in turn (a copy per variant costs more than the parse)
    and put back after: yields (path, the mutated value)."""
    for path, value in strings:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        for payload in payloads:
            for mutated in (payload + value, value + payload):
                node[path[-1]] = mutated
                yield path, mutated
        node[path[-1]] = value


def accepted(data: dict[str, Any], strings: list[tuple[tuple[Any, ...], str]],
             payloads: list[str]) -> Iterator[tuple[tuple[Any, ...], str, Cluster]]:
    """The variants of ``mutations`` that validate, parsed: (path, the mutated
    value, the cluster). A refused one must be refused in one-line errors."""
    for path, mutated in mutations(data, strings, payloads):
        try:
            c = parse_cluster(data)
        except ValidationError as e:
            assert all("\n" not in line and "\r" not in line for line in e.errors), (path, mutated)
            continue
        yield path, mutated, c


CHUNKS = 4  # the sweep in parts, so that the suite's workers share it


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_injection_payloads_on_every_string_never_leave_their_block(chunk: int) -> None:
    """A payload at either end of any string value of examples/full.toml is
    refused by validation, or renders with every line of keepalived.conf in
    the block the model put it in (the same lines, depths and braces)."""
    clean = parse_cluster(copy.deepcopy(FULL))
    base = {d.name: render_keepalived(clean, d.name, "x") for d in clean.directors}
    data = copy.deepcopy(FULL)
    strings = _strings(FULL)[chunk::CHUNKS]
    tried = 2 * len(strings) * len(PAYLOADS)  # mutations' variants: each payload at either end of each string
    for path, mutated, c in accepted(data, strings, PAYLOADS):
        for d in c.directors:
            if d.name not in base:
                continue
            text = render_keepalived(c, d.name, "x")
            assert len(text.split("\n")) == len(base[d.name].split("\n")), (path, mutated)
            assert _skeleton(text) == _skeleton(base[d.name]), (path, mutated)
    assert tried > 4000 // CHUNKS


def test_some_payloads_are_legitimate_text_and_were_rendered() -> None:
    """A payload that is legitimate text (a URL path ending in ;id) validates and
    renders inside its block: the sweep checks renders, it does not only see refusals."""
    data = _set(FULL, ("services", 0, "checks", 0, "urls", 1, "path"), "/health;id")
    c = parse_cluster(data)
    text = render_keepalived(c, c.directors[0].name, "x")
    assert "path /health;id\n" in text and _skeleton(text)[-1] == (0, 0)


@pytest.mark.parametrize(("lines", "error"), [
    (["# {", "}"], "services[0]... closes a block"),
    (['"# {"', "}"], "inside double quotes"),
    (["a {", "# }"], "opens a block it does not close"),
    (["include /etc/keepalived/other.conf"], "preprocessor"),
    (["virtual_server 192.0.2.1 80 {", "include /tmp/x", "}"], "preprocessor"),
    (["$EVIL=notify_master /bin/sh"], "$"),
    (["@lb1 smtp_server 192.0.2.9"], "preprocessor"),
    (['notify_master "/bin/sh'], "unclosed double quote"),
    (["notify_master /bin/sh \\"], "backslash"),
])
def test_extra_lines_are_read_as_keepalived_reads_them(lines: list[str], error: str) -> None:
    """[[keepalived_extra]] braces are counted outside comments and quotes;
    include and the rest of keepalived's preprocessor are refused."""
    data = copy.deepcopy(BASE)
    data["keepalived_extra"] = [{"block": "global_defs", "lines": lines}]
    with pytest.raises(ValidationError) as e:
        parse_cluster(data)
    text = "\n".join(e.value.errors)
    assert error.split("...")[-1].strip() in text, text
    assert text.startswith("keepalived_extra[0].lines")


def test_extra_line_reader_counts_braces_before_a_comment() -> None:
    """`x { # }` opens one block (the } is a comment); `a # {` opens none."""
    assert extra_line("x { # }") == (1, None)
    assert extra_line("a # {") == (0, None)
    assert extra_line("vrrp_garp_master_repeat 2 ! }") == (0, None)
    assert extra_line('notify "/usr/bin/x y"') == (0, None)


def test_every_extra_entry_for_one_block_is_kept() -> None:
    """Two [[keepalived_extra]] entries for one block both render, in file order."""
    data = copy.deepcopy(BASE)
    data["keepalived_extra"] = [{"block": "global_defs", "lines": ["vrrp_garp_master_repeat 2"]},
                                {"block": "global_defs", "lines": ["vrrp_garp_master_refresh 60"]}]
    c = parse_cluster(data)
    text = render_keepalived(c, c.directors[0].name, "x")
    assert text.index("vrrp_garp_master_repeat 2") < text.index("vrrp_garp_master_refresh 60") < text.index("}")


@pytest.mark.parametrize(("path", "raw", "error"), [
    (("cluster", "virtual_router_id"), "0x" + "f" * 5000,
     "cluster.virtual_router_id: (an integer of 20000 bits) is outside 1..255"),
    (("cluster", "advert_int"), "0o" + "7" * 5000, "cluster.advert_int: (an integer of 15000 bits) is outside 0..255 "
     "seconds"),
    (("cluster", "notify_master"), "[1979-05-27]",
     "cluster.notify_master[0]: (a date) is not an absolute path without blanks or quotes"),
    (("services", 0, "port"), "[80, 07:32:00]", "services[0].port[1]: (a time) is not a port (1..65535)"),
    (("services", 0, "check"), "{ type = \"http\", status_code = [200, 1979-05-27T07:32:00Z] }",
     "services[0].check.status_code: (a datetime) is not a status code"),
])
def test_unusual_toml_values_are_one_line_each(path: tuple[Any, ...], raw: str, error: str) -> None:
    """Huge integers (hex ones too, beyond what Python prints) and TOML dates
    and times anywhere, even inside lists, are one error line each."""
    value = tomllib.loads(f"v = {raw}")["v"]
    with pytest.raises(ValidationError) as e:
        parse_cluster(_set(BASE, path, value))
    assert len(e.value.errors) == 1 and e.value.errors[0].startswith(error), e.value.errors


ODD_VALUES = [int("f" * 5000, 16), tomllib.loads("v = 1979-05-27T07:32:00Z")["v"], float("nan"),
              [int("f" * 5000, 16)], [tomllib.loads("v = 07:32:00")["v"]], {"x": int("f" * 5000, 16)}]


# every TOML type in its plain form too, for every place (a table or list where a value goes, and the reverse)
PLAIN_VALUES = [1, -1, 2.5, True, "x", "", [], [1], ["x"], [[1]], {}, {"a": 1}, [{}], [{"a": 1}]]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a parsed file: its leaves, and its tables and lists themselves."""
    if isinstance(value, dict):
        return [*([path] if path else []), *(p for k, v in value.items() for p in _places(v, (*path, k)))]
    if isinstance(value, list):
        return [path, *(p for i, v in enumerate(value) for p in _places(v, (*path, i)))]
    return [path]


def test_every_toml_type_in_every_place_is_an_error_line_or_valid() -> None:
    """Each leaf, table and list of examples/full.toml replaced by each unusual TOML value
    (huge integers, dates, times, NaN, infinities, lists and tables of them) and each plain one:
    a ValidationError of single lines, never another exception."""
    assert odd_values_everywhere(FULL) > 1000


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.toml")
                                           if p.name not in ("full.toml", "two-armed.toml", "active-active.toml")))
def test_every_example_gets_the_toml_type_sweep(example: str) -> None:
    """Every other example (the ECMP cluster's [bgp] and its peers among them: `peers = 1` was a TypeError) gets
    the same sweep: every TOML type in every place is an error line or valid."""
    assert odd_values_everywhere(tomllib.loads((ROOT / "examples" / example).read_text())) > 100


def test_per_vip_bgp_attributes_get_the_toml_type_sweep() -> None:
    """A director's bgp_vips (its nested table of one VIP's med, prepend and large communities), which the
    examples leave out (a MED on one director takes it out of the lab's multipath set), gets the sweep too."""
    data = tomllib.loads((ROOT / "examples" / "ecmp.toml").read_text())
    data["directors"][1]["bgp_vips"] = {"192.0.2.150": {"med": 10, "prepend": 1, "large_communities": ["1:2:3"]}}
    parse_cluster(data)
    assert odd_values_everywhere(data) > 100


def odd_values_everywhere(raw: dict[str, Any]) -> int:
    """Each place of ``raw`` (each leaf, table and list) replaced by each
    unusual TOML value and each plain one of every type in turn: a
    ValidationError of single lines or a valid cluster, never another
    exception. Returns how many files were tried."""
    data = copy.deepcopy(raw)
    count = 0
    for path in _places(raw):
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        keep = node[path[-1]]
        for odd in ODD_VALUES + PLAIN_VALUES:
            node[path[-1]] = odd
            count += 1
            try:
                parse_cluster(data)
            except ValidationError as e:
                assert all("\n" not in line and len(line) < 400 for line in e.errors), e.errors
        node[path[-1]] = keep
    return count


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_an_integer_of_more_than_4300_digits_is_one_line(tmp_path: Path, suffix: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Python refuses to convert such an integer; the loader says so in one line, exit 2."""
    p = tmp_path / f"c{suffix}"
    p.write_text(("cluster = { virtual_router_id = %s }" if suffix == ".toml" else '{"cluster": %s}') % ("1" * 5000))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too many digits" in err and str(p) in err


def test_json_duplicate_keys_are_refused(tmp_path: Path) -> None:
    """JSON keeps the last of two equal keys silently; lvsdr refuses them, as TOML does."""
    p = tmp_path / "c.json"
    p.write_text('{"cluster": {"name": "a", "name": "b"}}')
    with pytest.raises(InputError, match='key "name" is given twice'):
        load_cluster(p)


def test_a_long_value_is_cut_in_its_error_line() -> None:
    """A 100,000-character value is not echoed whole: the line stays short and says how long it was."""
    data = _set(BASE, ("cluster", "name"), "x" * 100_000)
    with pytest.raises(ValidationError) as e:
        parse_cluster(data)
    assert len(e.value.errors[0]) < 300 and "(100002 characters)" in e.value.errors[0]


def test_validate_refuses_a_fifo_and_a_device_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only regular files are read (with a size cap): a FIFO nobody writes, or
    /dev/zero, is one line and exit 2, not a hang or memory exhausted."""
    fifo = tmp_path / "c.toml"
    os.mkfifo(fifo)
    done: list[int] = []
    t = threading.Thread(target=lambda: done.extend([main(["validate", str(fifo)]), main(["validate", "/dev/zero"])]))
    t.start()
    t.join(10)
    assert done == [2, 2]
    err = capsys.readouterr().err
    assert f"{fifo}: not a regular file" in err and "/dev/zero: not a regular file" in err


def test_config_path_segments_cannot_leave_the_tree() -> None:
    """config_path with an empty, . or .. segment (or just /) is refused: render --all would write outside its tree."""
    for bad in ("/../../x", "/etc/../x", "/", "/etc/lvsdr/", "/etc//x", "/etc/./x"):
        with pytest.raises(ValidationError) as e:
            parse_cluster(_set(BASE, ("cluster", "config_path"), bad))
        assert e.value.errors[0].startswith("cluster.config_path: "), bad


@pytest.mark.parametrize("path", ["/etc/keepalived", "/etc/keepalived/keepalived.conf", "/etc/systemd/system",
                                  "/etc/keepalived/keepalived.conf/x"])
def test_config_path_colliding_with_a_rendered_file_is_refused(path: str) -> None:
    """The cluster file's place in the tree cannot replace, contain or sit inside another file of the tree."""
    c = parse_cluster(_set(BASE, ("cluster", "config_path"), path))
    with pytest.raises(InputError, match="cluster.config_path: .* collides with"):
        node_trees(c, b"x")


def test_render_all_leaves_no_partial_tree(tmp_path: Path) -> None:
    """A failure while writing leaves nothing: the tree is built in a
    temporary sibling and renamed into place only when complete."""
    out = tmp_path / "out"
    trees = {"a": {"etc/x": (b"1", 0o644)}, "b": {"etc/../../escape": (b"2", 0o644)}}
    with pytest.raises(InputError, match="not a path inside the tree"):
        write_tree(out, trees)
    assert sorted(os.listdir(tmp_path)) == []
    assert write_tree(out, {"a": {"etc/x": (b"1", 0o600)}}) == 1
    assert stat.S_IMODE((out / "a/etc/x").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


@pytest.mark.parametrize("example", ["two-armed.toml", "active-active.toml"])
def test_instances_keys_are_swept_like_full_toml(example: str) -> None:
    """[[instances]] (name, interface, addresses, vips, priorities), which examples/full.toml has none of, get
    both sweeps: every injection payload at either end of every string is refused in one-line errors or renders
    in its block, and every unusual TOML value in every leaf is an error line or valid."""
    raw = tomllib.loads((ROOT / "examples" / example).read_text())
    clean = parse_cluster(copy.deepcopy(raw))
    base = {d.name: _skeleton(render_keepalived(clean, d.name, "x")) for d in clean.directors}
    data = copy.deepcopy(raw)
    strings = _strings(raw)
    assert any(path[0] == "instances" for path, _v in strings)
    for path, mutated, c in accepted(data, strings, PAYLOADS):
        for d in c.directors:
            if d.name in base:
                assert _skeleton(render_keepalived(c, d.name, "x")) == base[d.name], (path, mutated)
    assert odd_values_everywhere(raw) > 0
