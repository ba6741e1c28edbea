"""The MLflow client: the store's URI, its experiments, and params logged in batches.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids, so several trials of a
pack, or several pods, log at once without sharing MLflow's global "active run". A URI shown in a
message never carries a user or a password (:func:`shown_uri`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from proxyhpo import paths
from proxyhpo.tracking import names

__all__ = ["HTTP_DEFAULTS", "client", "shown_uri", "check_reachable", "ensure_experiment", "flatten", "log_params", "study_experiments", "unknown_experiment"]

# MLflow's own HTTP retries default to 7 with back-off factor 2 and a 120 s timeout: 254 s per call
# against a server that is down. These are the defaults here; a user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
#: MLflow's limit of params in one ``log_batch``.
PARAM_BATCH = 100


def client(tracking_uri: str | None = None):
    """An :class:`mlflow.MlflowClient` on ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI`` or the embedded store).

    A SQLite store's folder is created when it does not exist yet.
    """
    import mlflow

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri or paths.tracking_uri()
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri)


def shown_uri(uri: str) -> str:
    """``uri`` without user or password, for messages.

    Example:
        >>> shown_uri("http://user:secret@mlflow:5000/path")
        'http://mlflow:5000/path'
    """
    from proxyhpo.errors import scrub_credentials

    # not urlsplit: a password holding '/' (as S3 secret keys do) ends its netloc early, and the whole URI would be shown
    return scrub_credentials(uri)


def check_reachable(tracking_uri: str | None = None) -> None:
    """Fail fast, in seconds, when the tracking server does not answer, or refuses the credentials (MLflow's basic auth).

    Raises:
        ProxyHPOError: one line naming the server (without credentials) and the fix.
    """
    from proxyhpo.errors import ProxyHPOError, credentials_refused, outward_error

    uri = tracking_uri or paths.tracking_uri()
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as exc:
        if credentials_refused(exc):  # it answers, but not to these credentials
            raise outward_error(exc, shown_uri(uri)) from None
        reason = type(exc).__name__ if "Connection" in str(exc) or "Max retries" in str(exc) else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        raise ProxyHPOError(
            f"MLflow at {shown_uri(uri)} does not answer ({reason}); fix: start the tracking server or correct "
            "MLFLOW_TRACKING_URI (unset it to train without tracking)"
        ) from None


def ensure_experiment(name: str, tracking_uri: str | None = None) -> str:
    """Return the id of experiment ``name``, creating it (and the store's tables) if needed.

    Call this once before parallel writers start: the first use of a SQLite store migrates its schema,
    and two processes doing it at once race. A new experiment is tagged :data:`~proxyhpo.tracking.names.STUDY_TAG`.
    """
    uri = tracking_uri or paths.tracking_uri()
    with _store_lock(uri):  # two launches on a fresh home would both migrate the new store's schema
        mlflow_client = client(uri)
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return mlflow_client.create_experiment(name, artifact_location=_artifact_location(uri, name), tags={names.STUDY_TAG: name})
        except Exception:  # another writer created it between our two calls
            experiment = mlflow_client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<store>.lock`` beside a SQLite store (no lock for a server: it migrates itself)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    store = Path(uri.removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_name(store.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _artifact_location(uri: str, name: str) -> str | None:
    """Artifacts of a SQLite store live beside the database (``<db folder>/mlartifacts/<experiment>``).

    Without this MLflow puts them in ``./mlruns`` of whatever the current directory is, which scatters
    them outside the embedded default folder (and across each KFP component's working directory).
    A server store keeps its own artifact root, so it gets ``None``.
    """
    if not uri.startswith("sqlite:///"):
        return None
    folder = Path(uri.removeprefix("sqlite:///")).absolute().parent / "mlartifacts" / re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return folder.as_uri()


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested mapping into ``a.b.c -> str(value)`` pairs for MLflow params.

    Example:
        >>> flatten({"a": {"b": 1, "c": [1, 2]}})
        {'a.b': '1', 'a.c': '[1, 2]'}
    """
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return flat


def log_params(mlflow_client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log ``params`` on ``run_id`` in batches of MLflow's limit, each value cut to MLflow's 6000 characters."""
    from mlflow.entities import Param

    items = [Param(key, value[:6000]) for key, value in params.items()]
    for start in range(0, len(items), PARAM_BATCH):
        mlflow_client.log_batch(run_id, params=items[start : start + PARAM_BATCH])


def study_experiments(mlflow_client: Any) -> list[str]:
    """The names of the store's experiments, MLflow's ``Default`` left out, sorted."""
    return sorted(experiment.name for experiment in mlflow_client.search_experiments() if experiment.name != "Default")


def unknown_experiment(name: str, known: list[str], uri: str) -> str:
    """The message for an experiment ``name`` the store at ``uri`` does not hold: what it holds, and the nearest name.

    Example:
        >>> unknown_experiment("dmeo", ["demo", "spleen"], "sqlite:///x.db")
        "no experiment 'dmeo' in sqlite:///x.db (it holds: demo, spleen); did you mean 'demo'?"
    """
    import difflib

    held = f"it holds: {', '.join(known)}" if known else "it holds no study yet"
    nearest = difflib.get_close_matches(name, known, n=1)
    return f"no experiment {name!r} in {shown_uri(uri)} ({held})" + (f"; did you mean {nearest[0]!r}?" if nearest else "")
