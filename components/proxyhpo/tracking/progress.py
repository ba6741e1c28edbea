"""What a launcher reads back of a study run: its trials' progress, its report and summary artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxyhpo import paths
from proxyhpo.signals import INTERRUPTED_REASON, TERMINATED_REASON
from proxyhpo.tracking import names
from proxyhpo.tracking.connection import client

__all__ = ["TrialSnapshot", "StudySnapshot", "study_snapshot", "trial_progress", "study_artifact", "study_summary"]

#: the roles counted as trials in a study's progress
_TRIAL_ROLES = (names.ROLE_TRIAL, names.ROLE_NAS_SEARCH)
#: the reasons of runs closed because their study stopped, not because they failed: a resume trains them again
_STOP_REASONS = frozenset({INTERRUPTED_REASON, TERMINATED_REASON, names.ORPHANED_REASON})


@dataclass(frozen=True)
class TrialSnapshot:
    """One trial run as a study's progress sees it.

    Attributes:
        trial_id: its ``proxyhpo.trial_id``.
        round: its search round, or None.
        status: MLflow's status (``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``).
        state: ``COMPLETE``, ``STOPPED`` or ``FAILED`` once it ended (its ``proxyhpo.state``), else None.
        epochs: epochs trained (the last validated epoch while it runs).
        stopped_at: the epoch early stopping stopped it at, or None.
        dice: its best validation Dice so far, or None.
        hyperparameters: its params (the search space's names, ``network``, ``data``, ``seed``).
        fail_reason: its ``proxyhpo.fail_reason``, or None.
        started_ms: when its run started (ms since the epoch).
        gpu_hours, process_hours: the device time it was charged (once it ended).
    """

    trial_id: str
    round: int | None
    status: str
    state: str | None
    epochs: int
    stopped_at: int | None
    dice: float | None
    hyperparameters: dict[str, str] = field(default_factory=dict)
    fail_reason: str | None = None
    started_ms: int = 0
    gpu_hours: float = 0.0
    process_hours: float = 0.0

    @property
    def running(self) -> bool:
        return self.status == "RUNNING"

    @property
    def interrupted(self) -> bool:
        """Closed because its study was stopped (Ctrl-C, SIGTERM, a killed process): the study's next start trains it again."""
        return self.status != "RUNNING" and self.fail_reason in _STOP_REASONS

    @property
    def pending(self) -> bool:
        """Neither training nor ended: an interrupted trial waiting for its study's next start."""
        return self.interrupted

    @property
    def failed(self) -> bool:
        return not self.interrupted and (self.status == "FAILED" or self.state == names.STATE_FAILED)

    @property
    def stopped(self) -> bool:
        return not self.running and not self.failed and self.stopped_at is not None


@dataclass(frozen=True)
class StudySnapshot:
    """A study run's progress at one moment, read from MLflow alone (:func:`study_snapshot`).

    Attributes:
        trials: its trial runs (search trials, or NAS search tasks), oldest first.
        final_started: whether its final model's run exists.
        epochs_per_trial: the epochs a trial plans (0 when unknown).
    """

    trials: tuple[TrialSnapshot, ...]
    final_started: bool
    epochs_per_trial: int = 0

    @property
    def done(self) -> int:
        """Trials that ended (completed, stopped early or failed); interrupted ones are trained again, so not done."""
        return sum(not trial.running and not trial.pending for trial in self.trials)

    @property
    def failed(self) -> int:
        return sum(trial.failed for trial in self.trials)

    @property
    def stopped(self) -> int:
        return sum(trial.stopped for trial in self.trials)

    @property
    def epochs_done(self) -> int:
        """Trial-epochs trained, in all trials together."""
        return sum(trial.epochs for trial in self.trials if not trial.pending)

    @property
    def epochs_removed(self) -> int:
        """Planned trial-epochs that will not run: early stopping's savings and what failed trials left."""
        return sum(max(self.epochs_per_trial - trial.epochs, 0) for trial in self.trials if not trial.running and (trial.stopped or trial.failed))

    @property
    def epochs_stopped_early(self) -> int:
        """The planned trial-epochs early stopping removed."""
        return sum(max(self.epochs_per_trial - trial.epochs, 0) for trial in self.trials if trial.stopped)

    @property
    def best(self) -> TrialSnapshot | None:
        """The trial with the best validation Dice so far (failed ones are not candidates)."""
        candidates = [trial for trial in self.trials if trial.dice is not None and not trial.failed and not trial.pending]
        return max(candidates, key=lambda trial: trial.dice) if candidates else None  # type: ignore[arg-type,return-value]

    @property
    def round(self) -> int | None:
        """The newest round a trial started in (0-based)."""
        rounds = [trial.round for trial in self.trials if trial.round is not None]
        return max(rounds) if rounds else None


def _snapshot_of(mlflow_client: Any, run: Any) -> TrialSnapshot:
    tags, metrics = run.data.tags, run.data.metrics
    stopped = tags.get(names.STOPPED_TAG)
    if run.info.status == "RUNNING":  # the last validated epoch is the step of its newest val_dice
        history = mlflow_client.get_metric_history(run.info.run_id, names.VAL_DICE)
        epochs = max((int(point.step) for point in history), default=0)
        dice = max((point.value for point in history), default=None)
    else:
        epochs = int(metrics.get(names.EPOCHS_RUN, 0))
        dice = metrics.get(names.BEST_VAL_DICE, metrics.get(names.VAL_DICE))
    round_tag = tags.get(names.ROUND_TAG)
    return TrialSnapshot(
        trial_id=tags.get(names.TRIAL_ID_TAG, run.info.run_name or run.info.run_id),
        round=int(round_tag) if round_tag and round_tag.lstrip("-").isdigit() else None,
        status=run.info.status,
        state=tags.get(names.STATE_TAG),
        epochs=epochs,
        stopped_at=int(stopped) if stopped and stopped.isdigit() else None,
        dice=None if dice is None else float(dice),
        hyperparameters=dict(run.data.params),
        fail_reason=tags.get(names.FAIL_REASON_TAG),
        started_ms=int(run.info.start_time or 0),
        gpu_hours=float(metrics.get(names.GPU_HOURS, 0.0)),
        process_hours=float(metrics.get(names.PROCESS_HOURS, 0.0)),
    )


def study_snapshot(experiment: str, *, parent_run_id: str, epochs_per_trial: int = 0, tracking_uri: str | None = None) -> StudySnapshot:
    """The progress of study run ``parent_run_id``: each trial's state, epochs and Dice, and whether the final model started.

    A resumed study's earlier trials count as they ended. A running trial's epochs and Dice are read from its
    ``val_dice`` history (one call per running trial: a pack's few).
    """
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return StudySnapshot(trials=(), final_started=False, epochs_per_trial=epochs_per_trial)
    runs = mlflow_client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'", order_by=["attributes.start_time ASC"], max_results=5000
    )
    trials = tuple(_snapshot_of(mlflow_client, run) for run in runs if run.data.tags.get(names.ROLE_TAG) in _TRIAL_ROLES)
    final = any(run.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL for run in runs)
    return StudySnapshot(trials=trials, final_started=final, epochs_per_trial=epochs_per_trial)


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
    selector = f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'" if parent_run_id else f"attributes.start_time >= {started_after_ms or 0}"
    runs = mlflow_client.search_runs([found.experiment_id], filter_string=selector, max_results=5000)
    trials = [run for run in runs if run.data.tags.get(names.ROLE_TAG) in _TRIAL_ROLES]
    done = sum(run.info.status != "RUNNING" for run in trials)
    failed = sum(run.info.status == "FAILED" for run in trials)
    final = any(run.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL for run in runs)
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
            filter_string=f"attributes.start_time >= {started_after_ms or 0} and tags.`{names.ROLE_TAG}` = '{names.ROLE_STUDY}'",
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
    return json.loads(
        study_artifact(experiment, names.SUMMARY_ARTIFACT, started_after_ms=started_after_ms, run_id=run_id, tracking_uri=tracking_uri)
    )
