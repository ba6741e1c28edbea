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
    "fail_open_study_runs",
    "trial_progress",
    "study_artifact",
    "study_summary",
    "TrialRun",
    "trial_runs",
    "flatten",
]

PIPELINE_TAG = "proxyhpo.pipeline"
ROLE_TAG = "proxyhpo.role"
ROUND_TAG = "proxyhpo.round"
PARENT_TAG = "mlflow.parentRunId"
KFP_RUN_TAG = "proxyhpo.kfp_run_id"
ATTEMPT_TAG = "proxyhpo.attempt"
SYSTEM_METRICS_INTERVAL_S = 10

logger = logging.getLogger(__name__)


def client(tracking_uri: str | None = None):
    """An :class:`mlflow.MlflowClient` on ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI`` or the embedded store)."""
    import mlflow

    uri = tracking_uri or paths.tracking_uri()
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri.removeprefix("sqlite:///")) or ".", exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri)


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
    tags = {PIPELINE_TAG: pipeline, ROLE_TAG: "study"}
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
    experiment: str, *, pipeline_run: str | None = None, started_after_ms: int | None = None, tracking_uri: str | None = None
) -> list[str]:
    """Mark a study's runs FAILED where they are still RUNNING, so a failed study never stays RUNNING in MLflow.

    Give one selector: ``pipeline_run`` (the KFP run id the study run is tagged with; the pipeline's exit
    handler knows it), or ``started_after_ms`` (every run of the experiment started since, as a local
    launcher knows it). The study runs found and their trial runs are closed.

    Returns:
        The ids of the runs it closed.

    Raises:
        ValueError: unless exactly one selector is given.
    """
    if (pipeline_run is None) == (started_after_ms is None):
        raise ValueError("give exactly one of pipeline_run and started_after_ms")
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    if pipeline_run is not None:
        parents = mlflow_client.search_runs([found.experiment_id], filter_string=f"tags.`{KFP_RUN_TAG}` = '{pipeline_run}'")
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
            mlflow_client.set_terminated(run.info.run_id, status="FAILED")
            closed.append(run.info.run_id)
    return closed


def fail_open_study_runs(experiment: str, pipeline_run: str, *, tracking_uri: str | None = None) -> list[str]:
    """The exit handler's call: :func:`fail_open_runs` for the study run of KFP run ``pipeline_run``."""
    return fail_open_runs(experiment, pipeline_run=pipeline_run, tracking_uri=tracking_uri)


def trial_progress(experiment: str, started_after_ms: int, tracking_uri: str | None = None) -> tuple[int, int, int, bool]:
    """How far a study launched at ``started_after_ms`` has come: trials started, done, failed, and whether the final model started."""
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return 0, 0, 0, False
    runs = mlflow_client.search_runs([found.experiment_id], filter_string=f"attributes.start_time >= {started_after_ms}", max_results=5000)
    trials = [run for run in runs if run.data.tags.get(ROLE_TAG) == "trial"]
    done = sum(run.info.status != "RUNNING" for run in trials)
    failed = sum(run.info.status == "FAILED" for run in trials)
    final = any(run.data.tags.get(ROLE_TAG) == "final" for run in runs)
    return len(trials), done, failed, final


def study_artifact(experiment: str, name: str, *, started_after_ms: int, tracking_uri: str | None = None) -> str:
    """The text of artifact ``name`` (``summary.json``, ``report.md``) of the newest study run started since ``started_after_ms``.

    Raises:
        ProxyHPOError: when no such study run exists.
    """
    import mlflow

    from proxyhpo.errors import ProxyHPOError

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    runs = []
    if found is not None:
        runs = mlflow_client.search_runs(
            [found.experiment_id],
            filter_string=f"attributes.start_time >= {started_after_ms} and tags.`{ROLE_TAG}` = 'study'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise ProxyHPOError(f"the pipeline finished but no study run was found in experiment {experiment!r}")
    # download_artifacts takes the store explicitly: set_tracking_uri would change it for the whole process
    local = mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path=name, tracking_uri=uri)
    return Path(local).read_text(encoding="utf-8")


def study_summary(experiment: str, *, started_after_ms: int, tracking_uri: str | None = None) -> dict[str, Any]:
    """The ``summary.json`` the report logged on the newest study run started since ``started_after_ms``.

    Raises:
        ProxyHPOError: when no such study run exists.
    """
    return json.loads(study_artifact(experiment, "summary.json", started_after_ms=started_after_ms, tracking_uri=tracking_uri))


class TrialRun:
    """The MLflow child run of one trial, logged while the trial trains.

    Args:
        mlflow_client: the client to log with.
        run_id: the run.
        system_metrics: sample CPU, memory and GPU (through nvidia-ml-py) into this run while it is open.
        logged_epochs: epochs whose validation Dice a resumed run holds already.
    """

    def __init__(self, mlflow_client, run_id: str, *, system_metrics: bool = True, logged_epochs: set[int] | None = None) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self._monitor = None
        self._logged_epochs: set[int] = set(logged_epochs or ())
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

    def log_epoch(self, epoch: int, val_dice: float) -> None:
        """Log one epoch's validation Dice as step ``epoch`` (once: a resumed run keeps what it logged)."""
        if int(epoch) in self._logged_epochs:
            return
        self.client.log_metric(self.run_id, "val_dice", float(val_dice), step=int(epoch))
        self._logged_epochs.add(int(epoch))

    def finish(self, result: Any) -> None:
        """Log a :class:`proxyhpo.config.TrialResult` and close the run (FAILED for a failed trial)."""
        from mlflow.entities import Metric

        if self._monitor is not None:
            self._monitor.finish()
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
        batch = [Metric(key, float(value), now, 0) for key, value in metrics.items() if value is not None]
        # val_dice per validated epoch as steps; its last step is the final Dice
        batch += [
            Metric("val_dice", float(dice), now, int(epoch))
            for epoch, dice in zip(result.val_epochs, result.val_dice)
            if int(epoch) not in self._logged_epochs
        ]
        self.client.log_batch(self.run_id, metrics=batch)
        self.client.set_tag(self.run_id, "proxyhpo.state", str(result.state.value if hasattr(result.state, "value") else result.state))
        if result.fail_reason:
            self.client.set_tag(self.run_id, "proxyhpo.fail_reason", result.fail_reason[:5000])
        self.client.set_terminated(self.run_id, status="FAILED" if result.fail_reason else "FINISHED")


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

    A trial of a study whose run already exists under ``parent_run_id`` (a retried task) resumes that
    run: it is RUNNING again, its ``proxyhpo.attempt`` tag counts the attempts, and epochs it logged
    already are not logged twice; it is never duplicated.

    Runs still open when the block raises are marked FAILED, so a crash never leaves runs RUNNING.
    """
    from proxyhpo.config import HyperParameters

    names = tuple(hyperparameter_names) if hyperparameter_names is not None else tuple(HyperParameters.model_fields)
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    runs: dict[str, TrialRun] = {}
    # a retried task (an evicted pod, a preempted node) finds its trials' runs by their identity and resumes them
    earlier = _trial_runs_of(mlflow_client, experiment_id, parent_run_id, role) if parent_run_id else {}
    for spec in trials:
        found = earlier.get(spec.trial_id)
        if found is not None:
            attempt = int(found.data.tags.get(ATTEMPT_TAG, "1")) + 1
            mlflow_client.update_run(found.info.run_id, status="RUNNING")
            mlflow_client.set_tag(found.info.run_id, ATTEMPT_TAG, str(attempt))
            logged = {int(metric.step) for metric in mlflow_client.get_metric_history(found.info.run_id, "val_dice")}
            runs[spec.trial_id] = TrialRun(mlflow_client, found.info.run_id, system_metrics=system_metrics, logged_epochs=logged)
            continue
        # the spec's own tags (a comparison study's study, arm, repeat and point) become proxyhpo.<key> tags
        tags = {f"proxyhpo.{key}": value for key, value in spec.tags.items()} | {ROLE_TAG: role, "proxyhpo.trial_id": spec.trial_id}
        if spec.round is not None:
            tags[ROUND_TAG] = str(spec.round)
        if parent_run_id:
            tags[PARENT_TAG] = parent_run_id
        run = mlflow_client.create_run(experiment_id, run_name=spec.trial_id, tags=tags)
        params = {name: str(getattr(spec.hyperparameters, name)) for name in names}
        params.update({"network": spec.network.name, "data": data, "seed": str(spec.seed)})
        _log_params(mlflow_client, run.info.run_id, params)
        mlflow_client.log_dict(run.info.run_id, {**resolved_config, "trial": spec.model_dump(mode="json")}, "trial_config.json")
        runs[spec.trial_id] = TrialRun(mlflow_client, run.info.run_id, system_metrics=system_metrics)
    try:
        yield runs
    except BaseException:
        for trial_run in runs.values():
            if trial_run._monitor is not None:
                trial_run._monitor.finish()
            status = mlflow_client.get_run(trial_run.run_id).info.status
            if status == "RUNNING":
                mlflow_client.set_terminated(trial_run.run_id, status="FAILED")
        raise
