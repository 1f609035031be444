"""The one exception family of lvsdr.

Every error a user can cause is an ``LvsdrError`` whose ``str()`` is a
one-line message naming what is wrong and where. The CLI turns them into
exit codes: ``InputError`` (bad file, bad flag) -> 2, everything else -> 1.
"""

from __future__ import annotations


class LvsdrError(Exception):
    """Base class: a problem lvsdr can explain in one line."""

    exit_code = 1


class InputError(LvsdrError):
    """Bad input: a bad cluster file, flag or node name. Exit code 2."""

    exit_code = 2


class ValidationError(InputError):
    """A cluster file with one or more problems; ``errors`` lists them all."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class MissingToolError(LvsdrError):
    """A program lvsdr needs is not installed; names the package to install."""

    def __init__(self, program: str, debian: str, rhel: str | None = None) -> None:
        pkg = f"Debian package {debian}" + (f", RHEL package {rhel}" if rhel else "")
        super().__init__(f"{program}: not found; install {pkg}")
        self.program = program


class CheckError(LvsdrError):
    """keepalived -t rejected (or could not confirm) a rendered configuration."""


class ApplyError(LvsdrError):
    """A change to the node failed."""
