"""`lvsdr import` reads a keepalived.conf exactly as keepalived 2.2.7 reads it,
and anything it cannot take is one line naming the file and line, never a
traceback: careless and hostile files alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lvsdr.cli import main
from lvsdr.errors import InputError
from lvsdr.generator.importer import number
from lvsdr.generator.kaconf import _tokens, looks_like_keepalived, read_keepalived

from helpers import REPO

BASE = (REPO / "tests/data/import/classic/lb1.conf").read_bytes()
ADDRESSES = ["--address", "lb1=192.0.2.2", "--address", "lb1-peer=192.0.2.3", "--address", "lb1.conf-peer=192.0.2.3"]


def read_tree(text: str) -> list[tuple[str, ...]]:
    """The top-level directives' words of ``text`` as the importer reads them."""
    return [d.words for d in read_keepalived("k.conf", {"k.conf": text}.__getitem__)]


def run_import(tmp_path: Path, data: bytes, *extra: str) -> tuple[int, str, str]:
    p = tmp_path / "lb1.conf"
    p.write_bytes(data)
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["import", str(p), "--arp-method", "sysctl", *ADDRESSES, *extra])
    return code, out.getvalue(), err.getvalue()


def test_a_comment_starts_anywhere_outside_quotes() -> None:
    """`virtual_router_id 51#7` is 51 for keepalived: # and ! end a word too, but not inside quotes."""
    assert _tokens("virtual_router_id 51#7") == [("virtual_router_id", False), ("51", False)]
    assert _tokens("a b!c") == [("a", False), ("b", False)]
    assert _tokens('script "/bin/x #1"') == [("script", False), ("/bin/x #1", True)]


def test_lines_end_at_newline_only() -> None:
    """A form feed or a Unicode line separator in a comment does not start a
    line: a commented-out virtual_server stays commented out."""
    for sep in ("\x0c", "\u2028", "\x85", "\x1e", "\x0b"):
        text = f"# old{sep}virtual_server 192.0.2.9 81 {{\n}}\nvrrp_instance VI {{\n}}\n"
        assert read_tree(text) == [("vrrp_instance", "VI")], repr(sep)


def test_there_is_no_backslash_continuation() -> None:
    """keepalived 2.2.7 joins no lines: a trailing backslash is a character, the next line its own."""
    assert read_tree("priority \\\n150\n") == [("priority", "\\"), ("150",)]


def test_a_nul_ends_a_line_as_in_c() -> None:
    """keepalived reads C strings: what follows a NUL on its line is not read."""
    assert read_tree("a b\0c d\ne\n") == [("a", "b"), ("e",)]


def test_blanks_are_cs_blanks() -> None:
    """U+00A0 and U+2003 are part of a word for keepalived (C's isspace), not blanks."""
    assert _tokens("a\u00a0b c") == [("a\u00a0b", False), ("c", False)]


@pytest.mark.parametrize(("word", "value"), [("51", 51), ("-3", -3), ("³", None), ("1_0", None), ("٣", None),
                                             (" 5", None), ("nan", None), ("9" * 30, None), ("", None)])
def test_numbers_are_ascii_digits(word: str, value: int | None) -> None:
    """Only ASCII digits make a number (Python's int() also takes superscripts, Arabic digits and underscores)."""
    assert number(word) == value


def test_a_stray_closing_brace_is_noted_not_fatal(tmp_path: Path) -> None:
    """keepalived warns about an extra } at the end and goes on; so does import, with a note."""
    code, out, err = run_import(tmp_path, BASE + b"}\n")
    assert code == 0 and "closes a block that was not opened" in err and "[cluster]" in out


@pytest.mark.parametrize(("name", "change", "expect"), [
    ("latin-1 comment", (b"! Configuration", b"! Configura\xe9tion"), 0),
    ("hash in a word", (b"virtual_router_id 51", b"virtual_router_id 51#7"), 0),
    ("advert_int nan", (b"advert_int 1", b"advert_int nan"), 0),
    ("advert_int 1e999", (b"advert_int 1", b"advert_int 1e999"), 0),
    ("a word for a number", (b"priority 150", b"priority high"), 0),
    ("superscript digits", (b"weight 3", "weight \u00b3".encode()), 0),
    ("a service name as port", (b"virtual_server 192.0.2.100 80 {", b"virtual_server 192.0.2.100 http {"), 0),
    ("an unknown service name", (b"virtual_server 192.0.2.100 80 {", b"virtual_server 192.0.2.100 nosuch {"), 0),
    ("a bare sorry_server", (b"protocol TCP", b"protocol TCP\n    sorry_server"), 0),
    ("no virtual_router_id", (b"virtual_router_id 51\n", b""), 2),
    ("a backslash continuation", (b"priority 150", b"priority \\\n150"), 0),
    ("include /dev/zero", (b"global_defs {", b"include /dev/zero\nglobal_defs {"), 2),
    ("include a FIFO", (b"global_defs {", b"include /proc/self/fd/0\nglobal_defs {"), 2),
])
def test_careless_files_are_one_line_each(tmp_path: Path, name: str, change: tuple[bytes, bytes], expect: int) -> None:
    """What keepalived runs imports (with notes); what it cannot is one line
    naming the file, exit 2; with and without --diff, never a traceback."""
    data = BASE.replace(*change)
    assert data != BASE, name
    for extra in ((), ("--diff",)):
        code, _out, err = run_import(tmp_path, data, *extra)
        assert "Traceback" not in err
        if expect == 2:
            assert code == 2 and err.count("\n") == 1 and str(tmp_path / "lb1.conf") in err, err
        else:
            assert code in (0, 1) if extra else code == 0, err


def test_a_bom_or_nul_before_global_defs_is_named(tmp_path: Path) -> None:
    """keepalived does not know `\\ufeffglobal_defs` (nor reads past a NUL): the
    block is dropped, as keepalived drops it, and import says so."""
    body = BASE[BASE.index(b"global_defs"):]
    code, _out, err = run_import(tmp_path, b"\xef\xbb\xbf" + body)
    assert code == 0 and "not a keyword keepalived knows" in err and "\ufeffglobal_defs" in err
    code, _out, err = run_import(tmp_path, b"\0" + body)
    assert code == 0 and "closes a block that was not opened" in err


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    """3,000 nested blocks are refused at the depth cap, naming the line."""
    code, _out, err = run_import(tmp_path, BASE + b"x {\n" * 3000 + b"}\n" * 3000)
    assert code == 2 and "nested deeper than" in err and "Traceback" not in err


def test_looks_like_keepalived_reads_lines_as_keepalived() -> None:
    """The file-kind guess splits at newlines only, as the reader does."""
    assert not looks_like_keepalived("# x\u2028vrrp_instance VI {\n")
    assert looks_like_keepalived("vrrp_instance VI {\n}\n")


def test_include_of_a_missing_file_is_a_note_and_of_a_device_one_line(tmp_path: Path) -> None:
    """An include matching nothing is a note (keepalived goes on); a device is refused at its include line."""
    (tmp_path / "main.conf").write_text("include /dev/null\n")
    with pytest.raises(InputError, match=r"main.conf:1: include /dev/null: /dev/null: not a regular file"):
        from lvsdr.inputs import read_regular

        read_keepalived(str(tmp_path / "main.conf"), lambda p: read_regular(p).decode())


LINES = [b"vrrp_instance VI_1 {", b"}", b"{", b"virtual_server 192.0.2.100 80 {", b"real_server 192.0.2.11 80 {",
         b"weight 3", b"priority 150", b"include x", b"$X=1", b"@lb1 priority 9", b'"', b"#", b"!", b"\\",
         b"lb_kind DR", b"lb_algo mh", b"\xff\xfe", b"\0", b"\x0c", "\u2028".encode(), b"sorry_server", b"quorum -1",
         b"virtual_router_id 300", b"advert_int 0.001", b"delay_loop 99999999999999999999", b"TCP_CHECK {",
         b"~SEQ(i, 3) weight $i", b"~SEQ(i, 0x7fffffffffffffff) x", b"~SEQx(i, -2)", b"~SEQ(", b"~LST({a, b}, {1}) $a",
         b"~LST(a, {1, 2}) $a", b"~SEQ(i, 2) ~LST(j, 1, 2) real_server 192.0.2.1$i$j 80 {", b"${_RANDOM 1 2}",
         b"$_HASH", b"${_INSTANCE}", b"$_PWD"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 120), st.sampled_from(LINES)), max_size=6), st.booleans())
def test_mutated_keepalived_files_never_print_a_traceback(tmp_path: Path, inserts: list[tuple[int, bytes]],
                                                          diff: bool) -> None:
    """Lines of keepalived's grammar and garbage inserted anywhere in a real
    file: import succeeds with notes, or refuses in one line (exit 2)."""
    lines = BASE.split(b"\n")
    for at, line in inserts:
        lines.insert(at % (len(lines) + 1), line)
    code, _out, err = run_import(tmp_path, b"\n".join(lines), *(("--diff",) if diff else ()))
    assert "Traceback" not in err
    assert code in (0, 1, 2)
    if code == 2:
        assert err.count("\n") == 1, err


@pytest.mark.parametrize("directive", [b"notify_down \"\"", b"notify_up \"\"", b"notify_down \" \""])
def test_an_empty_notify_script_is_named_not_a_traceback(tmp_path: Path, directive: bytes) -> None:
    """keepalived accepts `notify_down ""` (and runs nothing): import names it and leaves it out (a TypeError
    before)."""
    data = BASE.replace(b"real_server 192.0.2.11 80 {", b"real_server 192.0.2.11 80 {\n        " + directive, 1)
    assert data != BASE
    code, out, err = run_import(tmp_path, data)
    assert code == 0 and "an empty script: keepalived runs nothing (not imported)" in err, err
    assert "Traceback" not in err and "[cluster]" in out


def test_a_variable_multiplied_past_the_cap_is_one_line(tmp_path: Path) -> None:
    """A 1 MB $NAME used 3,000 times (3 GB once substituted) is refused in one line naming the file and line, before
    anything that large is built (a MemoryError before)."""
    big = b"$BIG=" + b"x" * (1 << 20) + b"\nglobal_defs {\n" + b"  router_id ${BIG}\n" * 3000 + b"}\n"
    code, _out, err = run_import(tmp_path, big + BASE)
    assert code == 2 and err.count("\n") == 1 and "MiB of configuration in all" in err, err[:300]
    assert "lb1.conf:" in err


def test_a_fan_out_of_includes_is_capped(tmp_path: Path) -> None:
    """Eight files of eight `include` lines each (8**7 loads, 29 s before) are refused in one line once 1,000 files
    were loaded, not after the 2.1 million."""
    from lvsdr.generator.kaconf import MAX_LOADS

    for i in range(8):
        nxt = f"f{i + 1}.conf" if i < 7 else None
        (tmp_path / f"f{i}.conf").write_text("".join(f"include {nxt}\n" for _ in range(8)) if nxt else "")
    loads: list[str] = []

    def read(path: str) -> str:
        loads.append(path)
        return Path(path).read_text()

    (tmp_path / "lb1.conf").write_bytes(b"include f0.conf\n" + BASE)
    with pytest.raises(InputError, match="more than 1000 files"):
        read_keepalived(str(tmp_path / "lb1.conf"), read)
    assert len(loads) <= MAX_LOADS
    code, _out, err = run_import(tmp_path, b"include f0.conf\n" + BASE)
    assert code == 2 and err.count("\n") == 1 and "more than 1000 files" in err, err


LVS = REPO / "tests" / "data" / "import" / "lvs"
LVS_LINES = [b"-A -t 192.0.2.100:81 -s rr", b"-a -t 192.0.2.100:81 -r 192.0.2.11:81 -g -w 99999999999999999999",
             b"-a -t [2001:db8::1]:80 -r [2001:db8::2]:80 -g", b"-A -u 192.0.2.100:80 -s '", b"-A -t x:y", b"-a",
             b"virtual=192.0.2.100:81", b"\treal=192.0.2.11:81 gate 3 \"/\" \"ok\"", b"\tservice=\"http", b"\t=",
             b"\tchecktype=7", b"\tfallback=127.0.0.1:80 masq", b"\trequest=\"\n\"", b"\tvirtualhost=a b\"c",
             b"\tpersistent=-1", b"\tscheduler=mh; x", b"quiescent=maybe", b"\xff\xfe", b"\0", b"#", b"\\"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.sampled_from(["ipvsadm", "ldirectord"]),
       st.lists(st.tuples(st.integers(0, 40), st.sampled_from(LVS_LINES)), max_size=6))
def test_mutated_ipvsadm_and_ldirectord_files_never_print_a_traceback(tmp_path: Path, source: str,
                                                                      inserts: list[tuple[int, bytes]]) -> None:
    """Lines of either grammar, hostile strings and garbage inserted anywhere in the sample dump and
    ldirectord.cf: import succeeds with notes, or refuses in one line (exit 2); a string that reaches the cluster
    file (a virtualhost, a request path, a scheduler) is validated there like any other."""
    base = (LVS / ("ipvsadm-save.txt" if source == "ipvsadm" else "ldirectord.cf")).read_bytes()
    lines = base.split(b"\n")
    for at, line in inserts:
        lines.insert(at % (len(lines) + 1), line)
    p = tmp_path / "src"
    p.write_bytes(b"\n".join(lines))
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["import", "--from", source, str(p), "--arp-method", "sysctl", "--address", "lb1=192.0.2.2",
                     "--address", "lb2=192.0.2.3"])
    assert "Traceback" not in err.getvalue()
    assert code in (0, 2)
    if code == 2:
        assert err.getvalue().count("\n") == 1, err.getvalue()
