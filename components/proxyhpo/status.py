"""``proxyhpo status [EXPERIMENT]``: the running and finished studies of a store, read from MLflow alone, from any shell.

For each study run (an MLflow parent run, newest first): its pipeline and state (running, finished,
failed, or stopped with the reason, or left RUNNING by a process that is gone), its round, trials done,
stopped early and failed of those planned, the best validation Dice so far with its hyper-parameters, the
device-hours its trials were charged (GPU-hours only where a GPU ran), an ETA while it runs, and the
command that resumes it when it did not finish. The store is never created (:func:`proxyhpo.paths.existing_tracking_uri`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from proxyhpo.tracking import names

__all__ = ["study_status", "status_lines"]


def _study_of(mlflow_client: Any, run: Any) -> Any | None:
    """The study config the run logged (``study.json``), or None (a benchmark's run, an unreadable config)."""
    import mlflow

    from proxyhpo.config import StudyConfig, parse_config

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=names.STUDY_ARTIFACT, tracking_uri=mlflow_client.tracking_uri)
        with open(local, encoding="utf-8") as file:
            return parse_config(StudyConfig, json.load(file), f"runs:/{run.info.run_id}/{names.STUDY_ARTIFACT}", recorded=True)
    except Exception:
        return None


def _state(run: Any) -> str:
    from proxyhpo.tracking.orphans import process_gone

    status, tags = run.info.status, run.data.tags
    if status == "RUNNING":
        if process_gone(tags):
            return "stopped (its launcher is gone; the runs are closed when it starts again)"
        return f"running (process {tags.get(names.PID_TAG, '?')} on {tags.get(names.HOST_TAG, '?')})"
    if status == "FAILED":
        return f"stopped: {tags[names.FAIL_REASON_TAG]}" if names.FAIL_REASON_TAG in tags else "failed"
    return status.lower()


def status_lines(mlflow_client: Any, run: Any, *, now_ms: int | None = None) -> Iterator[str]:
    """The lines ``proxyhpo status`` prints for one study run (its parent run)."""
    from proxyhpo.progress import format_duration, format_hyperparameters
    from proxyhpo.tracking.progress import study_snapshot

    tags = run.data.tags
    kind = tags.get(names.PIPELINE_TAG, "?")
    experiment = mlflow_client.get_experiment(run.info.experiment_id).name
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000))
    yield f"{experiment}: {kind} run {run.info.run_id} ({run.info.run_name}), started {started}: {_state(run)}"
    study = _study_of(mlflow_client, run)
    try:
        planned = study.planned_trials(kind) if study is not None else 0
    except ValueError:
        planned = 0
    epochs = int(study.training.epochs) if study is not None and kind in ("hpo", "automl-comparison") else 0
    snapshot = study_snapshot(experiment, parent_run_id=run.info.run_id, epochs_per_trial=epochs, tracking_uri=mlflow_client.tracking_uri)
    if not snapshot.trials:
        yield "  no trial has started"
    else:
        outcomes = f"{snapshot.stopped} stopped early, {snapshot.failed} failed"
        round_text = f"round {snapshot.round + 1}/{study.search.rounds} · " if kind == "hpo" and study is not None and snapshot.round is not None else ""
        planned_trials = max(planned, len(snapshot.trials))
        line = f"  {round_text}trials {snapshot.done}/{planned_trials} done ({outcomes})"
        if epochs:
            total = planned_trials * epochs - snapshot.epochs_removed
            line += f" · {snapshot.epochs_done}/{total} trial-epochs"
            if run.info.status == "RUNNING" and snapshot.epochs_done:
                first = min(trial.started_ms for trial in snapshot.trials)
                elapsed = ((now_ms or int(time.time() * 1000)) - first) / 1000
                line += f" · ETA {format_duration(elapsed / snapshot.epochs_done * (total - snapshot.epochs_done))}"
        if snapshot.final_started:
            line += " · final model started"
        yield line
        best = snapshot.best
        if best is not None:
            shown = format_hyperparameters(best.hyperparameters, study.search.space.names if study is not None else sorted(best.hyperparameters))
            yield f"  best val Dice {best.dice:.4f} ({best.trial_id})" + (f": {shown}" if shown else "")
        gpu = sum(trial.gpu_hours for trial in snapshot.trials)
        cpu = sum(trial.process_hours for trial in snapshot.trials)
        # GPU-hours only where a GPU ran; otherwise the trials' process (CPU) hours
        yield f"  trials' device time: {gpu:.3f} GPU-hours" + (f" + {cpu:.3f} CPU-hours" if cpu else "") if gpu else f"  trials' device time: {cpu:.3f} CPU-hours (no GPU)"
    if run.info.status != "FINISHED" and tags.get(names.COMMAND_TAG):
        yield f"  resume: {tags[names.COMMAND_TAG]}"
    if run.info.status == "FINISHED":
        yield f"  report: proxyhpo report {experiment}"


def study_status(experiment: str | None = None, *, tracking_uri: str | None = None, limit: int = 5) -> list[str]:
    """``proxyhpo status``'s lines: the newest ``limit`` study runs of ``experiment``, or of every experiment of the store.

    Raises:
        InputError: when there is no store (it is never created here).
        ProxyHPOError: for an experiment the store does not hold (its experiments named, the nearest first).
    """
    from proxyhpo import paths, tracking
    from proxyhpo.errors import ProxyHPOError
    from proxyhpo.tracking.connection import shown_uri, study_experiments, unknown_experiment

    uri = tracking_uri or paths.existing_tracking_uri()
    mlflow_client = tracking.client(uri)
    known = study_experiments(mlflow_client)
    if experiment is not None and experiment not in known:
        raise ProxyHPOError(unknown_experiment(experiment, known, uri))
    chosen = [experiment] if experiment is not None else known
    ids = [mlflow_client.get_experiment_by_name(name).experiment_id for name in chosen]
    runs = (
        mlflow_client.search_runs(ids, filter_string=f"tags.`{names.ROLE_TAG}` = '{names.ROLE_STUDY}'", order_by=["attributes.start_time DESC"], max_results=limit)
        if ids
        else []
    )
    lines = [f"store: {shown_uri(uri)}; experiments: {', '.join(known) or 'none'}"]
    if not runs:
        lines.append("no study run yet")
    for run in runs:
        lines += ["", *status_lines(mlflow_client, run)]
    return lines
