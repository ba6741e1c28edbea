"""A failure that will repeat is not retried.

A pack's crash is retried in its task, and a failed final-model or pack task is retried by KFP (``set_retry``):
right for a preempted pod or a flaky GPU, a waste of hours for a failure that the same inputs will give again.
Each attempt records its failure beside the checkpoints (:func:`proxyhpo.paths.checkpoint_root`, which a
retried pod on another node reads), under a fingerprint of its inputs. A failure is deterministic when it is a
:class:`~proxyhpo.errors.ConfigError` or :class:`~proxyhpo.errors.DataError`, or when its line repeats the one
the previous attempt on the same inputs recorded; the attempts after a deterministic one stop at once, in one
line, instead of training again. New inputs (a fixed config or data set) have a new fingerprint: they train.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

from proxyhpo import paths, storage
from proxyhpo.errors import ConfigError, DataError, scrub_credentials

__all__ = ["NOT_RETRIED", "describe", "deterministic_failure", "failure_location", "forget", "is_deterministic", "record"]

log = logging.getLogger(__name__)

#: The end of a failure's reason when later attempts will not train again.
NOT_RETRIED = "deterministic, not retried"


def failure_location(parent_run_id: str | None, name: str, *inputs: Any) -> str:
    """Where the attempts at ``name`` (a pack, the final model) under study run ``parent_run_id`` with ``inputs``
    (JSON-serialisable documents, e.g. ``model_dump(mode="json")``) record their failure."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
    return f"{paths.checkpoint_root().rstrip('/')}/{parent_run_id or 'local'}/{name}-{digest}.failure.json"


def describe(exc: BaseException) -> str:
    """The failure's one line: ``Type: first line of its message`` (credentials scrubbed), as results and logs carry it."""
    message = scrub_credentials(str(exc)).splitlines()[0][:400] if str(exc) else ""
    return f"{type(exc).__name__}: {message}"


def is_deterministic(exc: BaseException) -> bool:
    """A bad config or data set fails the same way every time it is tried."""
    return isinstance(exc, (ConfigError, DataError))


def _read(location: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(location)) if storage.exists(location) else None
    except Exception:  # noqa: BLE001 - an unreadable record costs a retry, never the attempt
        return None


def _file_state(path: str | None) -> list[int] | str | None:
    """What a failure's file is now (its size and modification time, or absent): a fixed file is a new input."""
    if not path or storage.is_s3_url(path):
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return "absent"
    return [stat.st_size, stat.st_mtime_ns]


def deterministic_failure(location: str) -> str | None:
    """The line of the deterministic failure an earlier attempt recorded at ``location``, else None (also when
    the file the failure named has changed since)."""
    earlier = _read(location)
    if not earlier or not earlier.get("deterministic"):
        return None
    return earlier["reason"] if _file_state(earlier.get("path")) == earlier.get("file_state") else None


def record(location: str, exc: BaseException) -> bool:
    """Record this attempt's failure ``exc`` at ``location``; True when it is deterministic (said in one log line)."""
    reason = describe(exc)
    earlier = _read(location)
    deterministic = is_deterministic(exc) or (earlier is not None and earlier.get("reason") == reason)
    path = getattr(exc, "path", None)  # an InputError names its file
    document = {"reason": reason, "deterministic": deterministic, "path": path, "file_state": _file_state(path)}
    try:
        storage.write_bytes(location, json.dumps(document).encode("utf-8"))
    except Exception as failure:  # noqa: BLE001 - without the record a later attempt trains again: time, not results
        log.warning("the failure could not be recorded at %s (%s)", location, describe(failure))
    if deterministic:
        log.error("%s: %s (%s); the next attempts stop at once", reason, NOT_RETRIED, "a config or data error" if is_deterministic(exc) else "it repeats identically")
    return deterministic


def forget(location: str) -> None:
    """A success clears the record of earlier failures."""
    try:
        if storage.exists(location):
            storage.remove(location)
    except Exception:  # noqa: BLE001 - a stale record of a failure is only read under the same inputs
        pass
