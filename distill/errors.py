"""User-facing errors.

A :class:`UserError` is a problem with what the user gave us (a path, a name, a config key, a
file): the CLI prints its message on one line (plus an optional ``fix:`` hint) and exits with a
non-zero status, without a traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: says what is wrong, where, and how to fix it."""

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(what if fix is None else f"{what}\n  fix: {fix}")


class DataError(UserError):
    """A dataset root, split, resolution or channel count that does not work."""


class ConfigError(UserError):
    """An unknown config key, a value of the wrong type, a missing config file."""


class FileFormatError(UserError):
    """A file that is not what it claims to be (corrupt, truncated, foreign, pickled)."""


class NumericalError(UserError):
    """NaN or inf where a finite number is needed (usually a learning rate that is too high)."""
