"""The one exception family of proxyhpo.

Every error a user can fix derives from :class:`ProxyHPOError`. :class:`InputError` and its
subclasses carry the offending ``path`` and a ``fix``; the CLI prints them as one line and exits
with code 2, never with a traceback.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "scrub_credentials",
    "outward_error",
    "credentials_refused",
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


#: A user and password inside a URL (``scheme://user:password@host``, or a token alone): never printed. The password
#: may hold '/' (S3 secret keys do), the user may not: ``s3://bucket/key@v1`` has no user and stays as it is.
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^/\s@'\":]+:[^\s@'\"]*|[^/\s@'\"]+)@")


def scrub_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it removed, for any line or traceback shown.

    Example:
        >>> scrub_credentials("API request to http://user:secret@mlflow:5000/api failed")
        'API request to http://mlflow:5000/api failed'
    """
    return _CREDENTIALS.sub(r"\g<scheme>", text)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 20:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def credentials_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is an MLflow server's 401 or 403: it answers, not to these credentials."""
    return any(
        getattr(e, "error_code", "") in ("UNAUTHENTICATED", "PERMISSION_DENIED") or any(f"{code} != 200" in str(e) or f"status code {code}" in str(e) for code in (401, 403))
        for e in _chain(exc)
    )


def outward_error(exc: BaseException, tracking_uri: str | None = None) -> ProxyHPOError | None:
    """One line for a failure of something outside proxyhpo (the MLflow store, a server), or None when ``exc`` is not one.

    Recognised: a corrupt SQLite store (names the file and ``sqlite3 FILE 'pragma integrity_check'``), a
    tracking URI of an unknown scheme, a server that refuses the credentials (401, 403: MLflow's basic auth), a
    server that does not answer (connection refused, timed out), a full or read-only disk. The line never holds a URL's user or password.

    Args:
        exc: what was raised.
        tracking_uri: the MLflow store in use (named in the line).
    """
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = scrub_credentials(" ".join(str(e).splitlines()[0] if str(e) else type(e).__name__ for e in chain[:1]))
    store = scrub_credentials(tracking_uri) if tracking_uri else "the MLflow store (MLFLOW_TRACKING_URI)"
    if "DatabaseError" in names and any("not a database" in str(e) or "malformed" in str(e) for e in chain):
        file = tracking_uri.removeprefix("sqlite:///") if tracking_uri and tracking_uri.startswith("sqlite:///") else "FILE"
        return ProxyHPOError(
            f"MLflow store {store} is not a readable SQLite database (corrupt or not a database); fix: check it with "
            f"`sqlite3 {file} 'pragma integrity_check'`, restore it from a backup, or point MLFLOW_TRACKING_URI at another store"
        )
    if "UnsupportedModelRegistryStoreURIException" in names or "unsupported URI" in text or "registered tracking store" in text:
        return ProxyHPOError(
            f"MLflow store {store} has a scheme MLflow does not know; fix: set MLFLOW_TRACKING_URI to http(s)://host:port, sqlite:///FILE or a folder"
        )
    if credentials_refused(exc):
        return ProxyHPOError(
            f"the MLflow server at {store} refused the request ({text[:160]}); fix: export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            " (the chart's admin: `kubectl get secret proxyhpo-mlflow`), or ask its admin for a user with access to the experiment"
        )
    refused = {"ConnectionError", "NewConnectionError", "MaxRetryError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionRefusedError", "Timeout"}
    if names & refused or "Max retries exceeded" in text or "Failed to establish a new connection" in text:
        return ProxyHPOError(
            f"the MLflow server at {store} does not answer ({text[:160]}); fix: start the server or correct MLFLOW_TRACKING_URI, then run again"
        )
    for error in chain:
        if isinstance(error, OSError) and error.errno in (28, 30):  # ENOSPC, EROFS
            where = f"{error.filename}: " if error.filename else ""
            return ProxyHPOError(f"{where}{error.strerror}; fix: free space or give a writable location (PROXYHPO_HOME, --out)")
    return None
