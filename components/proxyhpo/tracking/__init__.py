"""MLflow tracking, exactly as DESIGN's contract states.

One experiment per study (``study.name``); one parent run per pipeline run, tagged
``proxyhpo.pipeline``; one child run per trial, tagged ``proxyhpo.role=trial`` and ``proxyhpo.round``,
with params the search space's hyper-parameter names (``lr``, ``optimizer``, ``intensity_shift_prob``
by default), ``network`` and ``data``, and metrics
``val_dice`` (per epoch as steps; its last value is the final Dice), ``gpu_hours`` and
``wall_seconds``. The parent holds the study's summary metrics, plots and report.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids, so several trials of a
pack, or several pods, log at once without sharing MLflow's global "active run".
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proxyhpo import paths

__all__ = [
    "PIPELINE_TAG",
    "ROLE_TAG",
    "ROUND_TAG",
    "client",
    "ensure_experiment",
    "start_parent_run",
    "finish_run",
    "fail_open_runs",
    "trial_progress",
    "study_artifact",
    "study_summary",
    "TrialRun",
    "task_run",
    "trial_runs",
    "flatten",
    "check_reachable",
    "close_orphaned_runs",
    "pending_path_for",
    "flush_pending",
    "ORPHANED_REASON",
    "ATTEMPT_TAG",
    "FAIL_REASON_TAG",
    "HOST_TAG",
    "KFP_RUN_TAG",
    "PARENT_TAG",
    "PID_STARTED_TAG",
    "PID_TAG",
    "PLAN_HASH_TAG",
    "STOPPED_TAG",
    "TRIAL_ID_TAG",
]

from proxyhpo.tracking.names import (  # noqa: E402  (the tag names once lived here)
    ATTEMPT_TAG,
    FAIL_REASON_TAG,
    HOST_TAG,
    KFP_RUN_TAG,
    ORPHANED_REASON,
    PARENT_TAG,
    PID_STARTED_TAG,
    PID_TAG,
    PIPELINE_TAG,
    PLAN_HASH_TAG,
    ROLE_TAG,
    ROUND_TAG,
    STOPPED_TAG,
    TRIAL_ID_TAG,
)

SYSTEM_METRICS_INTERVAL_S = 10
PENDING_SUFFIX = ".mlflow-pending.json"
# MLflow's own HTTP retries default to 7 with back-off factor 2 and a 120 s timeout: 254 s per call
# against a server that is down. These are the defaults here; a user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
# our own retries of one logging call, on top of MLflow's, before its data is buffered on disk
LOG_RETRY_DELAYS_S = (0.5, 1.5)

logger = logging.getLogger(__name__)


def client(tracking_uri: str | None = None):
    """An :class:`mlflow.MlflowClient` on ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI`` or the embedded store)."""
    import mlflow

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri or paths.tracking_uri()
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri)


def _shown_uri(uri: str) -> str:
    """``uri`` without user or password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username or parts.password:
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


def check_reachable(tracking_uri: str | None = None) -> None:
    """Fail fast, in seconds, when the tracking server does not answer.

    Raises:
        ProxyHPOError: one line naming the server and the fix.
    """
    from proxyhpo.errors import ProxyHPOError

    uri = tracking_uri or paths.tracking_uri()
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as exc:
        reason = type(exc).__name__ if "Connection" in str(exc) or "Max retries" in str(exc) else f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        raise ProxyHPOError(
            f"MLflow at {_shown_uri(uri)} does not answer ({reason}); fix: start the tracking server or correct "
            "MLFLOW_TRACKING_URI (unset it to train without tracking)"
        ) from None


def _started(pid: int) -> str | None:
    """When process ``pid`` started (to tell it from a later process given the same pid), or None if there is none."""
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.2f}"
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    except Exception:  # psutil.NoSuchProcess, AccessDenied, ZombieProcess
        try:
            import psutil

            return None if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "?"
        except Exception:
            return None


def _process_tags() -> dict[str, str]:
    """Tags naming this process, so a later start can tell whether the process of a RUNNING run is gone."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PID_STARTED_TAG: _started(os.getpid()) or "?"}


def _process_gone(tags: Mapping[str, str]) -> bool:
    """Whether the process that opened a run (its host and pid tags) has ended. False when it cannot be told (another host)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    pid = int(tags[PID_TAG])
    if pid == os.getpid():
        return False
    started = _started(pid)
    if started is None:
        return True
    recorded = tags.get(PID_STARTED_TAG, "?")
    return "?" not in (started, recorded) and started != recorded  # the pid was reused by another process


def _close_orphans(mlflow_client: Any, runs: Sequence[Any]) -> list[str]:
    """Close the RUNNING ``runs`` whose process has ended: FAILED, with :data:`ORPHANED_REASON`."""
    closed = []
    for run in runs:
        if run.info.status == "RUNNING" and _process_gone(run.data.tags):
            mlflow_client.set_tag(run.info.run_id, FAIL_REASON_TAG, ORPHANED_REASON)
            mlflow_client.set_terminated(run.info.run_id, status="FAILED")
            logger.warning("closed MLflow run %s: %s", run.info.run_id, ORPHANED_REASON)
            closed.append(run.info.run_id)
    return closed


def close_orphaned_runs(experiment: str, *, parent_run_id: str, tracking_uri: str | None = None) -> list[str]:
    """Close the RUNNING runs of a study (the parent and its children) whose process was killed (SIGKILL, OOM killer).

    Call it when a study's parent run is opened again. Only runs opened on this host can be judged (by the
    pid and start time they are tagged with); runs of other hosts are left alone. :func:`trial_runs` does
    the same for the children of its parent before it starts its trials.

    Returns:
        The ids of the runs it closed.
    """
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    children = mlflow_client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'", max_results=50000
    )
    return _close_orphans(mlflow_client, [*children, mlflow_client.get_run(parent_run_id)])


def ensure_experiment(name: str, tracking_uri: str | None = None) -> str:
    """Return the id of experiment ``name``, creating it (and the store's tables) if needed.

    Call this once before parallel writers start: the first use of a SQLite store migrates its schema,
    and two processes doing it at once race.
    """
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = client(uri)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=_artifact_location(uri, name), tags={"proxyhpo.study": name})
    except Exception:  # another writer created it between our two calls
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


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
    """Flatten a nested mapping into ``a.b.c -> str(value)`` pairs for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return flat


def start_parent_run(
    experiment: str,
    pipeline: str,
    *,
    config: Mapping[str, Any],
    run_name: str | None = None,
    pipeline_run: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Create the parent run of one pipeline run and return its id.

    The resolved study config is logged flattened as params and whole as ``study.json``; ``pipeline_run``
    (the KFP run id) is tagged, so the pipeline's exit handler can find the run again.
    """
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    tags = {PIPELINE_TAG: pipeline, ROLE_TAG: "study"} | _process_tags()
    if pipeline_run:
        tags[KFP_RUN_TAG] = pipeline_run
    run = mlflow_client.create_run(
        experiment_id,
        run_name=run_name or f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=tags,
    )
    run_id = run.info.run_id
    params = flatten(config)
    _log_params(mlflow_client, run_id, params)
    mlflow_client.log_dict(run_id, dict(config), "study.json")
    return run_id


def _log_params(mlflow_client, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(key, value[:6000]) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow's batch limit
        mlflow_client.log_batch(run_id, params=items[start : start + 100])


def finish_run(run_id: str, *, failed: bool = False, tracking_uri: str | None = None) -> None:
    """Mark a run FINISHED (or FAILED)."""
    client(tracking_uri).set_terminated(run_id, status="FAILED" if failed else "FINISHED")


def fail_open_runs(
    experiment: str,
    *,
    pipeline_run: str | None = None,
    started_after_ms: int | None = None,
    parent_run_id: str | None = None,
    reason: str | None = None,
    tracking_uri: str | None = None,
) -> list[str]:
    """Mark a study's runs FAILED where they are still RUNNING, so a failed study never stays RUNNING in MLflow.

    Give one selector: ``pipeline_run`` (the KFP run id the study run is tagged with; the pipeline's exit
    handler knows it), ``parent_run_id`` (the study run itself, as the local launcher knows it), or
    ``started_after_ms`` (every run of the experiment started since). The study runs found and their trial
    runs are closed, with ``reason`` as their ``proxyhpo.fail_reason`` when given.

    Returns:
        The ids of the runs it closed.

    Raises:
        ValueError: unless exactly one selector is given.
    """
    if sum(selector is not None for selector in (pipeline_run, started_after_ms, parent_run_id)) != 1:
        raise ValueError("give exactly one of pipeline_run, started_after_ms and parent_run_id")
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    if pipeline_run is not None or parent_run_id is not None:
        parents = (
            mlflow_client.search_runs([found.experiment_id], filter_string=f"tags.`{KFP_RUN_TAG}` = '{pipeline_run}'")
            if pipeline_run is not None
            else [mlflow_client.get_run(parent_run_id)]
        )
        candidates = []
        for parent in parents:
            candidates += mlflow_client.search_runs(
                [found.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and attributes.status = 'RUNNING'"
            )
            candidates.append(parent)
    else:
        candidates = mlflow_client.search_runs(
            [found.experiment_id], filter_string=f"attributes.start_time >= {started_after_ms} and attributes.status = 'RUNNING'", max_results=10000
        )
    closed = []
    for run in candidates:
        if run.info.status == "RUNNING":
            if reason:
                mlflow_client.set_tag(run.info.run_id, FAIL_REASON_TAG, reason[:5000])
            mlflow_client.set_terminated(run.info.run_id, status="FAILED")
            closed.append(run.info.run_id)
    return closed


def trial_progress(
    experiment: str, started_after_ms: int | None = None, tracking_uri: str | None = None, *, parent_run_id: str | None = None
) -> tuple[int, int, int, bool]:
    """How far a study has come: trials started, done, failed, and whether the final model started.

    The study is the runs started since ``started_after_ms``, or the children of ``parent_run_id`` (a
    resumed study's earlier trials count as done).
    """
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return 0, 0, 0, False
    selector = f"tags.`{PARENT_TAG}` = '{parent_run_id}'" if parent_run_id else f"attributes.start_time >= {started_after_ms or 0}"
    runs = mlflow_client.search_runs([found.experiment_id], filter_string=selector, max_results=5000)
    trials = [run for run in runs if run.data.tags.get(ROLE_TAG) in ("trial", "nas-search")]
    done = sum(run.info.status != "RUNNING" for run in trials)
    failed = sum(run.info.status == "FAILED" for run in trials)
    final = any(run.data.tags.get(ROLE_TAG) == "final" for run in runs)
    return len(trials), done, failed, final


def study_artifact(
    experiment: str, name: str, *, started_after_ms: int | None = None, run_id: str | None = None, tracking_uri: str | None = None
) -> str:
    """The text of artifact ``name`` (``summary.json``, ``report.md``) of study run ``run_id``, or of the newest
    study run started since ``started_after_ms``.

    Raises:
        ProxyHPOError: when no such study run exists.
    """
    import mlflow

    from proxyhpo.errors import ProxyHPOError

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    runs = []
    if run_id is not None:
        runs = [mlflow_client.get_run(run_id)]
    elif found is not None:
        runs = mlflow_client.search_runs(
            [found.experiment_id],
            filter_string=f"attributes.start_time >= {started_after_ms or 0} and tags.`{ROLE_TAG}` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise ProxyHPOError(f"the pipeline finished but no study run was found in experiment {experiment!r}")
    # download_artifacts takes the store explicitly: set_tracking_uri would change it for the whole process
    local = mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path=name, tracking_uri=uri)
    return Path(local).read_text(encoding="utf-8")


def study_summary(experiment: str, *, started_after_ms: int | None = None, run_id: str | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """The ``summary.json`` the report logged on study run ``run_id``, or on the newest study run started since ``started_after_ms``.

    Raises:
        ProxyHPOError: when no such study run exists.
    """
    return json.loads(study_artifact(experiment, "summary.json", started_after_ms=started_after_ms, run_id=run_id, tracking_uri=tracking_uri))


def pending_path_for(results: str | os.PathLike[str]) -> Path:
    """Where the MLflow data of a results file waits while the server does not answer: ``<results>.mlflow-pending.json``."""
    results = Path(results)
    return results.with_name(results.name + PENDING_SUFFIX)


class _Pending:
    """MLflow data that could not be logged, kept in a JSON file (written atomically) until :func:`flush_pending` logs it.

    The file maps run ids to ``{"metrics": [[key, value, timestamp_ms, step], ...], "tags": {...}, "status": ...}``.
    It is a local path or an ``s3://`` object (on a cluster, under ``PROXYHPO_CHECKPOINT_ROOT``, so it outlives the pod).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = os.fspath(path) if path is not None else None

    def add(self, run_id: str, *, metrics: Sequence[tuple[str, float, int, int]] = (), tags: Mapping[str, str] | None = None, status: str | None = None) -> bool:
        """Buffer data of ``run_id``; False when there is no file to buffer in."""
        if self.path is None:
            return False
        document = _read_pending(self.path)
        entry = document["runs"].setdefault(run_id, {"metrics": [], "tags": {}, "status": None})
        entry["metrics"] += [[key, float(value), int(timestamp), int(step)] for key, value, timestamp, step in metrics]
        entry["tags"].update(tags or {})
        if status:
            entry["status"] = status
        _write_pending(self.path, document)
        return True


def _write_pending(location: str, document: dict[str, Any]) -> None:
    from proxyhpo import storage

    storage.write_bytes(location, (json.dumps(document, indent=1) + "\n").encode("utf-8"))


def _read_pending(path: str | os.PathLike[str]) -> dict[str, Any]:
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


def _pending_exists(path: str | os.PathLike[str]) -> bool:
    from proxyhpo import storage

    return storage.exists(path)


def flush_pending(path: str | os.PathLike[str], *, tracking_uri: str | None = None) -> bool:
    """Log what a trial buffered while MLflow did not answer, and remove the file once all of it is logged.

    Called at the end of a pack (:func:`trial_runs`), at the start of the next attempt of the same pack,
    and by any later stage that reads the results file beside it. ``path`` is a local file or an ``s3://`` object.

    Returns:
        True when nothing is left pending (the file is gone); False when the server still does not answer
        (the file stays, holding what was not logged).
    """
    from mlflow.entities import Metric

    from proxyhpo import storage

    path = os.fspath(path)
    document = _read_pending(path)
    if not document["runs"]:
        storage.remove(path)
        return True
    mlflow_client = client(tracking_uri)
    for run_id in list(document["runs"]):
        entry = document["runs"][run_id]
        try:
            metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step in entry["metrics"]]
            for start in range(0, len(metrics), 1000):  # MLflow's batch limit
                mlflow_client.log_batch(run_id, metrics=metrics[start : start + 1000])
            for key, value in entry["tags"].items():
                mlflow_client.set_tag(run_id, key, value)
            if entry["status"]:
                mlflow_client.set_terminated(run_id, status=entry["status"])
        except Exception as exc:
            logger.warning("MLflow still does not answer; %s keeps what is not logged yet: %s", path, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            _write_pending(path, document)
            return False
        del document["runs"][run_id]
    storage.remove(path)
    return True


class TrialRun:
    """The MLflow child run of one trial, logged while the trial trains.

    Logging never stops training: a call the server does not answer is retried a few times (seconds in
    all), then its data goes to the pending file (``pending``, beside the results) and the run stops calling
    the server until it finishes; :func:`flush_pending` logs it later.

    Args:
        mlflow_client: the client to log with.
        run_id: the run.
        system_metrics: sample CPU, memory and GPU (through nvidia-ml-py) into this run while it is open.
        logged_epochs: epochs whose validation Dice a resumed run holds already.
        pending: the pending file's path (None: a failed call raises, as before).
    """

    def __init__(
        self,
        mlflow_client,
        run_id: str,
        *,
        system_metrics: bool = True,
        logged_epochs: set[int] | None = None,
        pending: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self._monitor = None
        self._logged_epochs: set[int] = set(logged_epochs or ())
        self._pending = _Pending(pending)
        self.offline = False
        self.closed = False
        if system_metrics:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self._monitor = SystemMetricsMonitor(
                    run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=mlflow_client.tracking_uri
                )
                self._monitor.start()
            except Exception as exc:  # system metrics are a nicety; never fail a trial over them
                logger.warning("system metrics disabled for run %s: %s", run_id, exc)
                self._monitor = None

    def _call(self, action, *, retries: bool = True) -> bool:
        """Run one logging call with bounded retries; False (and the run offline) when the server never answered."""
        if self._pending.path is None:
            action()
            return True
        delays = LOG_RETRY_DELAYS_S if retries else ()
        for attempt in range(len(delays) + 1):
            try:
                action()
                return True
            except Exception as exc:
                if attempt == len(delays):
                    if not self.offline:
                        logger.warning(
                            "MLflow does not answer (%s); run %s logs to %s until it does",
                            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, self.run_id, self._pending.path,
                        )
                    self.offline = True
                    return False
                time.sleep(delays[attempt])
        return False

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception as exc:
                logger.warning("system metrics of run %s did not stop cleanly: %s", self.run_id, exc)
            self._monitor = None

    def log_epoch(self, epoch: int, val_dice: float) -> None:
        """Log one epoch's validation Dice as step ``epoch`` (once: a resumed run keeps what it logged)."""
        if int(epoch) in self._logged_epochs:
            return
        metric = ("val_dice", float(val_dice), int(time.time() * 1000), int(epoch))
        if self.offline or not self._call(lambda: self.client.log_metric(self.run_id, metric[0], metric[1], timestamp=metric[2], step=metric[3])):
            self._pending.add(self.run_id, metrics=[metric])
        self._logged_epochs.add(int(epoch))

    def finish(self, result: Any) -> None:
        """Log a :class:`proxyhpo.config.TrialResult` and close the run (FAILED for a failed trial; KILLED, tagged
        :data:`STOPPED_TAG`, for one stopped early, so nothing reading FINISHED runs takes its early Dice for a final one).

        When the server does not answer, the metrics, tags and final status wait in the pending file.
        """
        from mlflow.entities import Metric

        self._stop_monitor()
        now = int(time.time() * 1000)
        metrics = {
            "gpu_hours": result.gpu_hours,
            "process_hours": result.process_hours,
            "wall_seconds": result.wall_seconds,
            "epochs_run": result.epochs_run,
            "steps_run": result.steps_run,
            "pack_size": result.pack_size,
            "peak_gpu_mem_bytes": result.peak_gpu_mem_bytes,
            "data_wait_fraction": result.data_wait_fraction,
            "test_dice": result.test_dice,
            "final_val_dice": result.final_val_dice,
            "best_val_dice": result.best_val_dice,
        }
        batch = [(key, float(value), now, 0) for key, value in metrics.items() if value is not None]
        # val_dice per validated epoch as steps; its last step is the final Dice
        batch += [
            ("val_dice", float(dice), now, int(epoch))
            for epoch, dice in zip(result.val_epochs, result.val_dice)
            if int(epoch) not in self._logged_epochs
        ]
        tags = {"proxyhpo.state": str(result.state.value if hasattr(result.state, "value") else result.state)}
        if result.fail_reason:
            tags[FAIL_REASON_TAG] = result.fail_reason[:5000]
        stopped_at = getattr(result, "stopped_at_epoch", None)
        if stopped_at is not None:
            tags[STOPPED_TAG] = str(stopped_at)
        status = "FAILED" if result.fail_reason else ("KILLED" if stopped_at is not None else "FINISHED")

        def log() -> None:
            self.client.log_batch(self.run_id, metrics=[Metric(*item) for item in batch])
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)
            self.client.set_terminated(self.run_id, status=status)

        # an offline run tries once more: the server may be back
        if not self._call(log, retries=not self.offline):
            self._pending.add(self.run_id, metrics=batch, tags=tags, status=status)
        self.closed = True

    def abort(self, reason: str) -> None:
        """Close the run FAILED with ``reason`` if it is still open (the block around it raised)."""
        self._stop_monitor()
        if self.closed:
            return
        self.closed = True

        def close() -> None:
            if self.client.get_run(self.run_id).info.status == "RUNNING":
                self.client.set_tag(self.run_id, FAIL_REASON_TAG, reason[:5000])
                self.client.set_terminated(self.run_id, status="FAILED")

        try:
            closed = not self.offline and self._call(close, retries=False)
        except Exception as exc:  # no pending file: the error that unwinds must not be hidden by this one
            logger.warning("run %s could not be closed: %s", self.run_id, exc)
            return
        if not closed:
            if not self._pending.add(self.run_id, tags={FAIL_REASON_TAG: reason[:5000]}, status="FAILED"):
                logger.warning("run %s could not be closed: MLflow does not answer", self.run_id)


def _trial_runs_of(mlflow_client: Any, experiment_id: str, parent_run_id: str, role: str) -> dict[str, Any]:
    """The child runs of ``parent_run_id`` with ``role``, by trial id (the newest, should there be several)."""
    found: dict[str, Any] = {}
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{ROLE_TAG}` = '{role}'",
        order_by=["attributes.start_time ASC"],
        max_results=50000,
    )
    for run in runs:
        trial_id = run.data.tags.get("proxyhpo.trial_id")
        if trial_id:
            found[trial_id] = run
    return found


@contextmanager
def trial_runs(
    experiment: str,
    trials: list[Any],
    *,
    parent_run_id: str | None,
    data: str,
    resolved_config: Mapping[str, Any],
    tracking_uri: str | None = None,
    system_metrics: bool = True,
    role: str = "trial",
    hyperparameter_names: Sequence[str] | None = None,
    identity: Mapping[str, str] | None = None,
    pending: str | os.PathLike[str] | None = None,
) -> Iterator[dict[str, TrialRun]]:
    """Open one child run per :class:`~proxyhpo.config.TrialSpec` and yield them by trial id.

    Args:
        experiment: the MLflow experiment (the study's name).
        trials: the trial specs.
        parent_run_id: the study's parent run, or None for stand-alone trials.
        data: the ``data`` param (``full``, ``mi+labelcrop-8``, ...).
        resolved_config: logged whole, with the trial's spec, as ``trial_config.json``.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).
        system_metrics: sample CPU, memory and GPU into each run.
        role: the ``proxyhpo.role`` tag (``trial`` or ``final``).
        hyperparameter_names: the hyper-parameters logged as params: a study's search-space names; every
            hyper-parameter the trainer knows when None (a stand-alone plan searches nothing).
        identity: tags that, with the trial id, identify a stand-alone trial (no parent): ``proxyhpo train``
            gives the hash of its plan file (``proxyhpo.plan_sha256``).
        pending: the file where logging waits while the server does not answer (see :func:`pending_path_for`);
            None: a logging failure raises.

    A trial of a study whose run already exists under ``parent_run_id`` (a retried task) resumes that
    run: it is RUNNING again, its ``proxyhpo.attempt`` tag counts the attempts, and epochs it logged
    already are not logged twice; it is never duplicated.

    Orphans are closed first: RUNNING runs of the same parent, or stand-alone runs with the same trial id
    and ``identity``, whose process has ended (killed with SIGKILL) are marked FAILED with
    :data:`ORPHANED_REASON`. What an earlier attempt left in ``pending`` is logged first as well.

    Runs still open when the block raises are marked FAILED with the reason (``terminated (SIGTERM)``,
    ``interrupted (SIGINT)``, or the exception), so a crash never leaves runs RUNNING. When the block ends,
    whatever waits in ``pending`` is logged if the server answers again; otherwise the file stays for
    :func:`flush_pending`.
    """
    from proxyhpo.config import HyperParameters
    from proxyhpo.signals import fail_reason_of

    names = tuple(hyperparameter_names) if hyperparameter_names is not None else tuple(HyperParameters.model_fields)
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    if pending is not None and _pending_exists(pending):
        flush_pending(pending, tracking_uri=tracking_uri)
    process = _process_tags()
    identity = dict(identity or {})
    runs: dict[str, TrialRun] = {}
    # a retried task (an evicted pod, a preempted node) finds its trials' runs by their identity and resumes them
    earlier = _trial_runs_of(mlflow_client, experiment_id, parent_run_id, role) if parent_run_id else {}
    if parent_run_id:
        resumed = {earlier[spec.trial_id].info.run_id for spec in trials if spec.trial_id in earlier}
        open_children = mlflow_client.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'", max_results=50000
        )
        _close_orphans(mlflow_client, [run for run in open_children if run.info.run_id not in resumed])
    for spec in trials:
        found = earlier.get(spec.trial_id)
        if found is not None:
            attempt = int(found.data.tags.get(ATTEMPT_TAG, "1")) + 1
            mlflow_client.update_run(found.info.run_id, status="RUNNING")
            mlflow_client.set_tag(found.info.run_id, ATTEMPT_TAG, str(attempt))
            for key, value in process.items():
                mlflow_client.set_tag(found.info.run_id, key, value)
            logged = {int(metric.step) for metric in mlflow_client.get_metric_history(found.info.run_id, "val_dice")}
            runs[spec.trial_id] = TrialRun(mlflow_client, found.info.run_id, system_metrics=system_metrics, logged_epochs=logged, pending=pending)
            continue
        if not parent_run_id and identity:
            selector = " and ".join(f"tags.`{key}` = '{value}'" for key, value in {TRIAL_ID_TAG: spec.trial_id, **identity}.items())
            same = mlflow_client.search_runs([experiment_id], filter_string=f"{selector} and attributes.status = 'RUNNING'", max_results=1000)
            _close_orphans(mlflow_client, [run for run in same if PARENT_TAG not in run.data.tags])
        # the spec's own tags (a comparison study's study, arm, repeat and point) become proxyhpo.<key> tags
        tags = {f"proxyhpo.{key}": value for key, value in spec.tags.items()} | {ROLE_TAG: role, TRIAL_ID_TAG: spec.trial_id}
        tags |= identity | process
        if spec.round is not None:
            tags[ROUND_TAG] = str(spec.round)
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        run = mlflow_client.create_run(experiment_id, run_name=spec.trial_id, tags=tags)
        params = {name: str(getattr(spec.hyperparameters, name)) for name in names}
        params.update({"network": spec.network.name, "data": data, "seed": str(spec.seed)})
        _log_params(mlflow_client, run.info.run_id, params)
        mlflow_client.log_dict(run.info.run_id, {**resolved_config, "trial": spec.model_dump(mode="json")}, "trial_config.json")
        runs[spec.trial_id] = TrialRun(mlflow_client, run.info.run_id, system_metrics=system_metrics, pending=pending)
    try:
        yield runs
    except BaseException as exc:
        reason = fail_reason_of(exc)
        for trial_run in runs.values():
            trial_run.abort(reason)
        raise
    finally:
        for trial_run in runs.values():
            trial_run._stop_monitor()
    if pending is not None and _pending_exists(pending):
        flush_pending(pending, tracking_uri=tracking_uri)


@contextmanager
def task_run(
    experiment: str,
    *,
    parent_run_id: str | None,
    role: str,
    task_id: str,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
) -> Iterator[tuple[Any, str, set[int]]]:
    """One child run of a long pipeline task (a NAS search task), resumed by ``task_id`` when the task is retried.

    Yields ``(client, run_id, logged_steps)``: the steps of metric ``reward_mean`` the run holds already (a
    retried task does not log them twice). The run is FAILED with the reason when the block raises, and
    left open when it ends: the caller logs the task's totals and closes it with :func:`finish_run`.
    """
    from proxyhpo.signals import fail_reason_of

    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    earlier = _trial_runs_of(mlflow_client, experiment_id, parent_run_id, role).get(task_id) if parent_run_id else None
    process = _process_tags()
    if earlier is not None:
        run_id = earlier.info.run_id
        mlflow_client.update_run(run_id, status="RUNNING")
        mlflow_client.set_tag(run_id, ATTEMPT_TAG, str(int(earlier.data.tags.get(ATTEMPT_TAG, "1")) + 1))
        for key, value in process.items():
            mlflow_client.set_tag(run_id, key, value)
        logged = {int(metric.step) for metric in mlflow_client.get_metric_history(run_id, "reward_mean")}
    else:
        run_tags = {f"proxyhpo.{key}": value for key, value in (tags or {}).items()} | {ROLE_TAG: role, TRIAL_ID_TAG: task_id} | process
        if parent_run_id:
            run_tags[PARENT_TAG] = parent_run_id
        run_id = mlflow_client.create_run(experiment_id, run_name=task_id, tags=run_tags).info.run_id
        _log_params(mlflow_client, run_id, dict(params or {}))
        logged = set()
    try:
        yield mlflow_client, run_id, logged
    except BaseException as exc:
        try:
            mlflow_client.set_tag(run_id, FAIL_REASON_TAG, fail_reason_of(exc)[:5000])
            mlflow_client.set_terminated(run_id, status="FAILED")
        except Exception as inner:  # the error that unwinds must not be hidden by this one
            logger.warning("run %s could not be closed: %s", run_id, inner)
        raise
