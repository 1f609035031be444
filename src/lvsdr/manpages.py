"""Man pages and bash completion, made from the argument parser itself (so
they cannot drift from it): ``lvsdr.1`` and one ``lvsdr-COMMAND.1`` per
command, and a bash completion script. The packages build them at build
time:

    python3 -m lvsdr.manpages OUTDIR [DATE]

writes OUTDIR/man1/*.1 and OUTDIR/bash-completion/lvsdr (DATE, for the pages'
footer, defaults to SOURCE_DATE_EPOCH's day: reproducible bytes)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SEE_ALSO = ("keepalived(8)", "keepalived.conf(5)", "ipvsadm(8)", "bird(8)")


def _roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """{name: (its parser, its one-line help)} of ``parser``'s subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (p, helps.get(name, "")) for name, p in action.choices.items()}
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            flags = ", ".join(f"\\fB{_roff(f)}\\fR" for f in a.option_strings)
            if a.nargs != 0:
                metavar = a.metavar or (a.dest.upper() if not a.choices else "{" + ",".join(map(str, a.choices)) + "}")
                flags += f" \\fI{_roff(str(metavar))}\\fR"
        else:
            flags = f"\\fI{_roff(str(a.metavar or a.dest).upper() if a.metavar is None else str(a.metavar))}\\fR"
        out += [".TP", flags, _roff(a.help or "") if a.help and a.help != argparse.SUPPRESS else ""]
    return out


def _page(name: str, summary: str, parser: argparse.ArgumentParser, version: str, date: str) -> str:
    usage = " ".join(parser.format_usage().split())
    usage = usage.removeprefix("usage: ")
    title = _roff(name.upper())
    lines = [f'.TH {title} 1 "{date}" "lvsdr {version}" "lvsdr"',
             ".SH NAME", f"{_roff(name)} \\- {_roff(summary)}", ".SH SYNOPSIS", ".nf", _roff(usage), ".fi"]
    if parser.description:
        lines += [".SH DESCRIPTION", _roff(parser.description)]
    subs = _commands(parser)
    if subs:
        lines += [".SH COMMANDS"]
        for sub, (p, help_) in subs.items():
            usage = " ".join(p.format_usage().split()).removeprefix("usage: ")
            lines += [".TP", f"\\fB{_roff(sub)}\\fR", _roff(help_), ".br", _roff(usage)]
    options = _options(parser)
    if options:
        lines += [".SH OPTIONS", *options]
    lines += [".SH EXIT STATUS", "0 done; 1 the check or the action found a fault; 2 bad input (one line on "
              "standard error naming the field, or the file and line), nothing changed.",
              ".SH SEE ALSO", ", ".join(f"\\fB{_roff(p.split('(')[0])}\\fR({p.split('(')[1]}" for p in
                                        (["lvsdr(1)"] if name != "lvsdr" else []) + list(SEE_ALSO))]
    return "\n".join(lines) + "\n"


def pages(version: str, date: str) -> dict[str, str]:
    """{file name: text}: lvsdr.1 and lvsdr-COMMAND.1 for each command."""
    from lvsdr.cli import build_parser

    top = build_parser()
    out = {"lvsdr.1": _page("lvsdr", top.description or "LVS direct-routing clusters", top, version, date)}
    for name, (p, help_) in _commands(top).items():
        out[f"lvsdr-{name}.1"] = _page(f"lvsdr-{name}", help_, p, version, date)
    return out


def bash_completion() -> str:
    """A bash completion script: the commands, then each command's flags (and its own subcommands)."""
    from lvsdr.cli import build_parser

    top = build_parser()
    cases = []
    for name, (p, _help) in sorted(_commands(top).items()):
        words = sorted({f for a in p._actions for f in a.option_strings} | set(_commands(p)))
        cases.append(f"        {name}) words=\"{' '.join(words)}\" ;;")
    commands = " ".join(sorted(_commands(top)))
    return "\n".join([
        "# bash completion for lvsdr (made from its argument parser by lvsdr.manpages)",
        "_lvsdr() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} words",
        "    if [ \"$COMP_CWORD\" -eq 1 ]; then",
        f"        COMPREPLY=($(compgen -W \"{commands} --help --version\" -- \"$cur\"))",
        "        return",
        "    fi",
        "    case ${COMP_WORDS[1]} in",
        *cases,
        "        *) words=\"\" ;;",
        "    esac",
        "    if [[ $cur == -* || -z $cur && $COMP_CWORD -eq 2 ]]; then",
        "        COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))",
        "    else",
        "        COMPREPLY=($(compgen -f -- \"$cur\"))",
        "    fi",
        "}",
        "complete -F _lvsdr lvsdr",
        ""])


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python3 -m lvsdr.manpages OUTDIR [DATE]", file=sys.stderr)
        return 2
    from lvsdr import __version__

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    date = argv[1] if len(argv) > 1 else time.strftime("%Y-%m-%d", time.gmtime(epoch))
    out = Path(argv[0])
    (out / "man1").mkdir(parents=True, exist_ok=True)
    (out / "bash-completion").mkdir(parents=True, exist_ok=True)
    for name, text in pages(__version__, date).items():
        (out / "man1" / name).write_text(text)
    (out / "bash-completion" / "lvsdr").write_text(bash_completion())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
