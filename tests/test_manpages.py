"""Man pages and bash completion made from the argument parser (lvsdr.manpages): one page per command, each
option in its page, groff without a warning, the completion completing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lvsdr.cli import COMMANDS, build_parser
from lvsdr.manpages import _commands, bash_completion, main, pages


def test_every_command_has_a_page_naming_each_of_its_options() -> None:
    """lvsdr.1 and lvsdr-COMMAND.1 for every command; each option string of a command (but -h) is in its page."""
    got = pages("9.9", "2026-01-01")
    assert sorted(got) == sorted(["lvsdr.1", *(f"lvsdr-{c}.1" for c in COMMANDS)])
    for name, (parser, _help) in _commands(build_parser()).items():
        text = got[f"lvsdr-{name}.1"]
        for flag in {f for a in parser._actions for f in a.option_strings if f not in ("-h", "--help")}:
            assert flag.replace("-", "\\-") in text, (name, flag)
        title = f"LVSDR-{name.upper()}".replace("-", "\\-")
        assert text.startswith(f'.TH {title} 1 "2026-01-01" "lvsdr 9.9"'), text[:80]


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
def test_the_pages_render_without_a_warning(tmp_path: Path) -> None:
    """`man --warnings -l` (groff) renders every page without one warning, and the written tree is the pages and
    the completion."""
    assert main([str(tmp_path), "2026-01-01"]) == 0
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "bash-completion/lvsdr" in files and "man1/lvsdr-drain.1" in files
    for page in (tmp_path / "man1").iterdir():
        p = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                           env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"}, timeout=60)
        assert p.returncode == 0 and not p.stderr.strip(), (page.name, p.stderr)


@pytest.mark.parametrize(("words", "want"), [
    (["lvsdr", "dr"], ["drain"]),
    (["lvsdr", "drain", "--u"], ["--undo", "--unit"]),
    (["lvsdr", "import", "--fr"], ["--from"]),
    (["lvsdr", "lab", ""], ["--help", "-h", "demo", "down", "failover", "status", "up"]),
])
def test_bash_completes_commands_and_flags(tmp_path: Path, words: list[str], want: list[str]) -> None:
    """The completion script offers the commands, then each command's flags (and its own subcommands)."""
    script = tmp_path / "lvsdr"
    script.write_text(bash_completion())
    quoted = " ".join(f"'{w}'" for w in words)
    p = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
                        "_lvsdr; printf '%s\\n' \"${COMPREPLY[@]}\""], capture_output=True, text=True, timeout=30)
    assert sorted(p.stdout.split()) == want, p.stdout + p.stderr
