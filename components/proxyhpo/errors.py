"""The one exception family of proxyhpo.

Every error a user can fix derives from :class:`ProxyHPOError`. :class:`InputError` and its
subclasses carry the offending ``path`` and a ``fix``; the CLI prints them as one line and exits
with code 2, never with a traceback.
"""

from __future__ import annotations

import os

__all__ = [
    "ProxyHPOError",
    "InputError",
    "ConfigError",
    "DataError",
    "StorageError",
    "TrialError",
]


class ProxyHPOError(Exception):
    """Base class of every error raised on purpose by proxyhpo."""


class InputError(ProxyHPOError):
    """Bad input the user can fix: a file, a config key, a data set entry.

    Args:
        path: the file (or URL) that is wrong.
        problem: what is wrong with it, stated as what came in versus what was expected.
        fix: what to do about it.

    Example:
        >>> str(InputError("data/dataset.json", "key 'training' is missing", "list the cases under 'training'"))
        "data/dataset.json: key 'training' is missing; fix: list the cases under 'training'"
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, fix: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}; fix: {fix}")


class ConfigError(InputError):
    """A study, trial or search-space config that does not validate."""


class DataError(InputError):
    """A data set that does not validate: missing files, corrupt NIfTI, shape mismatches, empty labels."""


class StorageError(InputError):
    """An object store or file system location that cannot be read or written."""


class TrialError(ProxyHPOError):
    """A trial that failed (diverged, ran out of memory); recorded as a failed result, never fatal to a study."""
