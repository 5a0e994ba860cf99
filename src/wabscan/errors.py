"""Errors a user can act on. Each message names what was wrong and where."""

from __future__ import annotations


class WabscanError(Exception):
    """Base of the errors the command line turns into a one-line message."""

    exit_code = 2


class InputError(WabscanError):
    """A file or value given by the user cannot be used.

    Args:
        where: the file (and line, as ``file:line``) or option at fault.
        what: what is wrong with it, as a short clause.
    """

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


class ConfigError(InputError):
    """The configuration file or an environment setting is invalid."""
