"""The suite's own conventions, checked."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_every_test_says_what_it_protects() -> None:
    """Each test function opens with a docstring saying the behaviour it protects."""
    missing = [f"{p.relative_to(HERE)}:{n.lineno} {n.name}" for p in sorted(HERE.rglob("test_*.py"))
               for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.FunctionDef)
               and n.name.startswith("test_") and not ast.get_docstring(n)]
    assert missing == []


def test_the_generator_imports_nothing_of_the_edges() -> None:
    """generator/ is the pure core: no module of it imports hooks/, lab/ or the CLI."""
    import re

    edges = re.compile(r"^\s*(from|import)\s+(lvsdr\.(hooks|lab|cli)\b|\.\.(hooks|lab|cli)\b)", re.M)
    offenders = [str(p.relative_to(HERE.parent)) for p in sorted((HERE.parent / "generator").rglob("*.py"))
                 if edges.search(p.read_text())]
    assert offenders == []
