"""Reading keepalived.conf as keepalived 2.2.7 does: blocks, comments, quotes,
no continuations, include, @ID conditional lines, $VARIABLES."""

from __future__ import annotations

import pytest

from lvsdr.errors import InputError
from lvsdr.generator.kaconf import Directive, Notes, looks_like_keepalived, read_keepalived


def read(files: dict[str, str], config_id: str | None = None) -> tuple[tuple[Directive, ...], Notes]:
    notes = Notes()
    def reader(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[path]
    return read_keepalived("/k/keepalived.conf", reader, config_id, notes), notes


def shape(tree: tuple[Directive, ...]) -> list[object]:
    return [(d.words, shape(d.children)) if d.children is not None else d.words for d in tree]


def test_blocks_comments_quotes_and_no_continuations() -> None:
    """Blocks on one line or many, comments after directives, quoted strings as
    one word; a trailing backslash joins nothing (keepalived 2.2.7 has no continuation)."""
    tree, _ = read({"/k/keepalived.conf": """! a comment
global_defs {   # trailing comment
   router_id lb1
}
vrrp_script chk { script "/usr/bin/check --fast  now" ; interval 2 }
virtual_server 192.0.2.100 80 {
    lb_algo \\
        wrr
    real_server 192.0.2.11 80 { weight 2 }
}
"""})
    assert shape(tree) == [
        (("global_defs",), [("router_id", "lb1")]),
        (("vrrp_script", "chk"), [("script", "/usr/bin/check --fast  now", ";", "interval", "2")]),
        (("virtual_server", "192.0.2.100", "80"), [("lb_algo", "\\"), ("wrr",),
                                                 (("real_server", "192.0.2.11", "80"), [("weight", "2")])]),
    ]
    assert tree[1].children is not None and tree[1].children[0].quoted[:2] == (False, True)
    assert tree[2].children is not None and tree[2].children[2].line == 9


def test_include_conditions_and_variables() -> None:
    """include, @ID conditional lines and $VARIABLES are read as keepalived reads them."""
    files = {
        "/k/keepalived.conf": "$VIP=192.0.2.100\n@lb1 $PRIO=150\n@lb2 $PRIO=100\ninclude conf.d/*.conf\n"
                              "vrrp_instance VI_1 {\n  priority $PRIO\n  virtual_ipaddress {\n    ${VIP}\n  }\n}\n",
    }
    with pytest.raises(InputError):  # no file for the glob is a note, a missing brace is an error
        read({**files, "/k/keepalived.conf": files["/k/keepalived.conf"] + "vrrp_instance X {\n"})
    tree, notes = read(files, config_id="lb2")
    assert shape(tree) == [(("vrrp_instance", "VI_1"), [("priority", "100"), (("virtual_ipaddress",),
                                                                             [("192.0.2.100",)])])]
    assert [text for _w, text in notes.skipped] == ["include conf.d/*.conf matches no file"]
    _tree, notes = read(files)
    assert any("conditional line for config id 'lb1' skipped" in t for _w, t in notes.skipped)


def test_a_stray_closing_brace_is_a_note_and_a_missing_one_an_error() -> None:
    """keepalived warns about an extra } and goes on (a note here); a block the file never closes is one line."""
    tree, notes = read({"/k/keepalived.conf": "global_defs {\n}\n}\n"})
    assert shape(tree) == [(("global_defs",), [])]
    assert notes.skipped == [("/k/keepalived.conf:3", "'}' closes a block that was not opened (keepalived ignores "
                                                       "it, and so does lvsdr)")]
    with pytest.raises(InputError, match="end of file inside a block"):
        read({"/k/keepalived.conf": "global_defs {\n"})


def test_looks_like_keepalived() -> None:
    """A keepalived.conf is told from a cluster file by its first directives."""
    assert looks_like_keepalived("! x\n\nglobal_defs {\n}\n")
    assert looks_like_keepalived("@high net_namespace high\nvrrp_instance VI_0 {\n}\n")
    assert not looks_like_keepalived('[cluster]\nname = "web"\n')


def test_escaped_comment_signs_and_multi_line_definitions() -> None:
    """Outside quotes `\\#` and `\\!` are the signs themselves, not a comment (keepalived's decomment()); inside
    quotes the backslash stays; a $NAME definition continued by a trailing backslash (a multi-line definition,
    which keepalived expands into several lines) is refused in one line naming file and line."""
    tree, _ = read({"/k/keepalived.conf": 'global_defs {\n  router_id lb\\#1 # a comment\n  notification_email_from '
                                          'a\\!b "c\\#d"\n}\n'})
    assert shape(tree) == [(("global_defs",), [("router_id", "lb#1"), ("notification_email_from", "a!b", "c\\#d")])]
    with pytest.raises(InputError, match=r"^/k/keepalived.conf:1: \$VIPS is a multi-line definition"):
        read({"/k/keepalived.conf": "$VIPS=192.0.2.100 \\\n  192.0.2.101\nglobal_defs {\n}\n"})


def _words(text: str) -> list[tuple[str, ...]]:
    return [d.words for d in read_keepalived("k.conf", {"k.conf": text}.__getitem__)]


def test_seq_repeats_its_line_as_keepalived_does() -> None:
    """~SEQ(var, end), (var, start, end), (var, start, step, end), numbers in strtol's bases and through $NAME,
    ~SEQx in hex, nested on one line; the variable stays defined after, as keepalived's set_definition leaves it."""
    assert _words("~SEQ(i, 3) a $i") == [("a", "1"), ("a", "2"), ("a", "3")]
    assert _words("~SEQ(i, 3, 1) a $i") == [("a", "3"), ("a", "2"), ("a", "1")]
    assert _words("~SEQ(i, 1, 2, 6) a $i") == [("a", "1"), ("a", "3"), ("a", "5")]
    assert _words("$S=010\n~SEQ(i, $S, 0x0a) a $i") == [("a", "8"), ("a", "9"), ("a", "10")]
    assert _words("~SEQx(i, 9, 11) a ${i}") == [("a", "9"), ("a", "a"), ("a", "b")]
    assert _words("~SEQ(i, 2) ~SEQ(j, 2) a $i$j") == [("a", "11"), ("a", "12"), ("a", "21"), ("a", "22")]
    assert _words("~SEQ(i, 2) x\nlast $i") == [("x",), ("x",), ("last", "2")]


def test_lst_repeats_its_line_over_values() -> None:
    """~LST(var, a, b) and ~LST({v, w}, {a, b}, {c}) (a missing value blank), as keepalived 2.2.7's add_lst()."""
    assert _words("~LST(h, a, b) x $h") == [("x", "a"), ("x", "b")]
    assert _words("~LST({h, w}, {a, 1}, {b}) x $h w$w") == [("x", "a", "w1"), ("x", "b", "w")]


@pytest.mark.parametrize(("text", "expected"), [
    ("~SEQ(i) a", "k.conf:1: invalid ~SEQ specification"),
    ("~SEQ(i, 1, 0, 3) a", "k.conf:1: invalid ~SEQ specification"),
    ("~SEQ(i, 1, -1, 3) a", "k.conf:1: invalid ~SEQ specification"),
    ("~SEQx(i, -1, 3) a", "k.conf:1: invalid ~SEQ specification '~SEQx"),
    ("~SEQ(i, one) a", "k.conf:1: invalid ~SEQ specification"),
    ("~LST(h) a", "k.conf:1: invalid ~LST specification"),
    ("~LST({h}, {a, b}) a", "k.conf:1: invalid ~LST specification"),
    ("~SEQ(i, 1, 1000000000) a $i", "k.conf:1: ~SEQ and ~LST make more than 100000 lines in all"),
    ("~SEQ(i, 400) ~SEQ(j, 400) a", "k.conf:1: ~SEQ and ~LST make more than 100000 lines in all"),
    ("~SEQ(i, 1) " * 5000 + "a", "k.conf:1: more than 8 ~SEQ/~LST nested on one line"),
])
def test_a_bad_or_runaway_repeater_is_refused_in_one_line(text: str, expected: str) -> None:
    """A ~SEQ/~LST keepalived refuses, or one that makes more than 100,000 lines (keepalived has no bound: a typo
    makes billions), is one InputError naming the file and line; nothing is built first."""
    with pytest.raises(InputError) as e:
        read_keepalived("k.conf", {"k.conf": text}.__getitem__)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_keepalived_standard_definitions() -> None:
    """$_HASH and $_BANG are the signs (not a comment), ${_INSTANCE} the config id; $_PWD, ${_RANDOM MIN MAX}
    and $_INSTANCE without a config id have values only keepalived knows: one line, naming file and line."""
    assert _words("a $_HASH b ${_BANG}c") == [("a", "#", "b", "!c")]
    assert [d.words for d in read_keepalived("k.conf", {"k.conf": "i ${_INSTANCE}"}.__getitem__, "lb1")] == [
        ("i", "lb1")]
    for text in ("x ${_RANDOM 1 9}", "x $_PWD", "x $_INSTANCE"):
        with pytest.raises(InputError) as e:
            read_keepalived("k.conf", {"k.conf": text}.__getitem__)
        assert str(e.value).startswith("k.conf:1: $") and "cannot know its value" in str(e.value)
