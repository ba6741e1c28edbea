"""The offline buffer: MLflow data a trial could not log, kept on disk until the server answers again.

The file maps run ids to ``{"metrics": [[key, value, timestamp_ms, step], ...], "tags": {...}, "status": ...}``
and is written atomically through :mod:`proxyhpo.storage`: a local path or an ``s3://`` object (on a
cluster, under ``PROXYHPO_CHECKPOINT_ROOT``, so it outlives the pod).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxyhpo.tracking.connection import client

__all__ = ["PENDING_SUFFIX", "pending_path_for", "Pending", "pending_exists", "flush_pending"]

logger = logging.getLogger(__name__)

PENDING_SUFFIX = ".mlflow-pending.json"
#: MLflow's limit of metrics in one ``log_batch``.
METRIC_BATCH = 1000


def pending_path_for(results: str | os.PathLike[str]) -> Path:
    """Where the MLflow data of a results file waits while the server does not answer: ``<results>.mlflow-pending.json``."""
    results = Path(results)
    return results.with_name(results.name + PENDING_SUFFIX)


class Pending:
    """MLflow data that could not be logged, kept in a JSON file (written atomically) until :func:`flush_pending` logs it.

    Args:
        path: the file, local or ``s3://``; None: nothing can be buffered (:meth:`add` returns False).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = os.fspath(path) if path is not None else None

    def add(self, run_id: str, *, metrics: Sequence[tuple[str, float, int, int]] = (), tags: Mapping[str, str] | None = None, status: str | None = None) -> bool:
        """Buffer data of ``run_id``; False when there is no file to buffer in."""
        if self.path is None:
            return False
        document = _read(self.path)
        entry = document["runs"].setdefault(run_id, {"metrics": [], "tags": {}, "status": None})
        entry["metrics"] += [[key, float(value), int(timestamp), int(step)] for key, value, timestamp, step in metrics]
        entry["tags"].update(tags or {})
        if status:
            entry["status"] = status
        _write(self.path, document)
        return True


def _write(location: str, document: dict[str, Any]) -> None:
    from proxyhpo import storage

    storage.write_bytes(location, (json.dumps(document, indent=1) + "\n").encode("utf-8"))


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    from proxyhpo import storage
    from proxyhpo.errors import StorageError

    try:
        document = json.loads(storage.read_bytes(path))
    except StorageError:
        if storage.exists(path):
            raise
        return {"schema_version": 1, "runs": {}}
    if not isinstance(document, dict) or not isinstance(document.get("runs"), dict):
        raise ValueError(f"{path} is not a pending MLflow file")
    return document


def pending_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a pending file is there (local or ``s3://``)."""
    from proxyhpo import storage

    return storage.exists(path)


def flush_pending(path: str | os.PathLike[str], *, tracking_uri: str | None = None) -> bool:
    """Log what a trial buffered while MLflow did not answer, and remove the file once all of it is logged.

    Called at the end of a pack (:func:`proxyhpo.tracking.trial_runs`), at the start of the next attempt of
    the same pack, and by any later stage that reads the results file beside it. ``path`` is a local file or an ``s3://`` object.

    Returns:
        True when nothing is left pending (the file is gone); False when the server still does not answer
        (the file stays, holding what was not logged).
    """
    from mlflow.entities import Metric

    from proxyhpo import storage

    path = os.fspath(path)
    document = _read(path)
    if not document["runs"]:
        storage.remove(path)
        return True
    mlflow_client = client(tracking_uri)
    for run_id in list(document["runs"]):
        entry = document["runs"][run_id]
        try:
            metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in entry["metrics"]]
            for start in range(0, len(metrics), METRIC_BATCH):
                mlflow_client.log_batch(run_id, metrics=metrics[start : start + METRIC_BATCH])
            for key, value in entry["tags"].items():
                mlflow_client.set_tag(run_id, key, value)
            if entry["status"]:
                mlflow_client.set_terminated(run_id, status=entry["status"])
        except Exception as exc:
            logger.warning("MLflow still does not answer; %s keeps what is not logged yet: %s", path, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            _write(path, document)
            return False
        del document["runs"][run_id]
    storage.remove(path)
    return True
