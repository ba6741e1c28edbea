"""Reading a study back from MLflow: its parent run, child runs, artifacts, and how each trial ended.

Private to :mod:`proxyhpo.analysis`: every report's ``collect`` reads MLflow through these functions, so
they all agree on what a retried run, a failed trial and an early-stopped trial are. Tag, metric and
artifact names come from :mod:`proxyhpo.tracking.names`.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from proxyhpo import paths, tracking
from proxyhpo.config import StrictModel, StudyConfig, parse_config
from proxyhpo.errors import ConfigError, ProxyHPOError
from proxyhpo.tracking import names

if TYPE_CHECKING:
    from proxyhpo.analysis.statistics import GridCell

_PAGE = 1000  # runs per search_runs page
_UNFINISHED = ("RUNNING", "SCHEDULED")

#: How a trial ended, as the reports count it.
Outcome = Literal["finished", "stopped", "failed", "running"]


class TrialCounts(StrictModel):
    """How a set of trials ended (a retried trial counted once).

    Attributes:
        n_trials: every trial.
        n_finished: trials that trained to the end and logged their Dice.
        n_stopped: trials early stopping ended (tag ``proxyhpo.state`` = ``STOPPED``, or
            ``proxyhpo.stopped_at_epoch``): not failures, but their Dice is an early epoch's and no final one.
        n_failed: trials that ended without a Dice (FAILED, KILLED, or FINISHED without one).
        n_running: trials that have not ended yet.
    """

    n_trials: int = 0
    n_finished: int = 0
    n_stopped: int = 0
    n_failed: int = 0
    n_running: int = 0

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> TrialCounts:
        """The counts of the given outcomes."""
        listed = list(outcomes)
        return cls(
            n_trials=len(listed),
            n_finished=listed.count("finished"),
            n_stopped=listed.count("stopped"),
            n_failed=listed.count("failed"),
            n_running=listed.count("running"),
        )

    def __add__(self, other: TrialCounts) -> TrialCounts:
        return TrialCounts(**{key: getattr(self, key) + getattr(other, key) for key in TrialCounts.model_fields})

    def sentence(self, noun: str = "trials") -> str:
        """``12 trials, 1 failed, 3 stopped early, 2 still running`` (stopped and running only when there are any)."""
        return (
            f"{self.n_trials} {noun}, {self.n_failed} failed"
            + (f", {self.n_stopped} stopped early" if self.n_stopped else "")
            + (f", {self.n_running} still running" if self.n_running else "")
        )


# --------------------------------------------------------------------------------------------- reading MLflow


def number(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def parent_run(parent_run_id: str, tracking_uri: str | None) -> tuple[Any, Any]:
    """An MLflow client on the store and the study's parent run.

    Args:
        parent_run_id: the study's parent run.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).

    Returns:
        The client and the run.

    Raises:
        ProxyHPOError: when the run does not exist.
    """
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    try:
        return mlflow_client, mlflow_client.get_run(parent_run_id)
    except MlflowException as exc:
        raise ProxyHPOError(f"MLflow run {parent_run_id!r} not found in {uri}: {str(exc).splitlines()[0]}") from None


def children(mlflow_client: Any, parent: Any) -> list[Any]:
    """Every child run of the parent that trained something, oldest first, over as many search pages as it takes (the
    runs of packs, which hold only their machine's system metrics, are left out)."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{names.PARENT_TAG}` = '{parent.info.run_id}'",
            max_results=_PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs += [run for run in page if run.data.tags.get(names.ROLE_TAG) != names.ROLE_PACK]
        token = getattr(page, "token", None)
        if not token:
            return runs


def artifact_text(mlflow_client: Any, run_id: str, path: str) -> str | None:
    """The text of the run's top-level artifact ``path``, or None when the run has none."""
    if path not in {entry.path for entry in mlflow_client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory(prefix="artifact-") as folder:
        local = mlflow_client.download_artifacts(run_id, path, folder)
        return Path(local).read_text(encoding="utf-8")


def artifact_json(mlflow_client: Any, run_id: str, path: str) -> Any:
    """The run's top-level JSON artifact ``path``, parsed.

    Raises:
        ProxyHPOError: when the run has no such artifact.
        ConfigError: when it is not JSON.
    """
    text = artifact_text(mlflow_client, run_id, path)
    if text is None:
        raise ProxyHPOError(f"MLflow run {run_id} has no {path} artifact: it is not a comparison study's parent run, or its plan step has not run")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"runs:/{run_id}/{path}", f"is not valid JSON ({exc})", "rerun the study") from None


def read_study(mlflow_client: Any, run_id: str) -> StudyConfig:
    """The study config a parent run logged as ``study.json``."""
    source = f"runs:/{run_id}/{names.STUDY_ARTIFACT}"
    return parse_config(StudyConfig, artifact_json(mlflow_client, run_id, names.STUDY_ARTIFACT), source, fix="rerun the study", recorded=True)


def keep_run(chosen: dict[Any, Any], key: Any, run: Any) -> None:
    """A retried run keeps one: a finished one over any other, then the newest (runs come oldest first)."""
    held = chosen.get(key)
    if held is None or (run.info.status == "FINISHED") >= (held.info.status == "FINISHED"):
        chosen[key] = run


def is_running(run: Any) -> bool:
    """Whether the run has not ended yet (RUNNING or SCHEDULED)."""
    return run.info.status in _UNFINISHED


def is_stopped(run: Any) -> bool:
    """Whether early stopping ended the trial: tag ``proxyhpo.state`` = ``STOPPED`` or ``proxyhpo.stopped_at_epoch`` set."""
    tags = run.data.tags
    return str(tags.get(names.STATE_TAG, "")).upper() == names.STATE_STOPPED or names.STOPPED_TAG in tags


def stopped_at_epoch(run: Any) -> int | None:
    """The epoch early stopping stopped the trial at (tag ``proxyhpo.stopped_at_epoch``), or None."""
    value = str(run.data.tags.get(names.STOPPED_TAG, ""))
    return int(value) if value.isdigit() else None


def outcome(run: Any, *dice_keys: str) -> Outcome:
    """How the trial run ended: running, stopped early, finished (FINISHED with one of ``dice_keys`` logged) or failed."""
    if is_running(run):
        return "running"
    if is_stopped(run):
        return "stopped"
    return "finished" if any(dice_of(run, key) is not None for key in dice_keys) else "failed"


def device_hours(metrics: Mapping[str, Any]) -> tuple[float, float]:
    """(gpu_hours, process_hours) of a run, each a finite number >= 0."""
    return max(0.0, number(metrics.get(names.GPU_HOURS)) or 0.0), max(0.0, number(metrics.get(names.PROCESS_HOURS)) or 0.0)


def dice_of(run: Any, key: str) -> float | None:
    """The run's Dice ``key`` clipped to [0, 1]; None unless the run FINISHED, was not stopped early, and logged it."""
    if run.info.status != "FINISHED" or is_stopped(run):
        return None
    value = number(run.data.metrics.get(key))
    return None if value is None else min(1.0, max(0.0, value))


def class_dice_of(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """A run's per-class Dice metrics (``<metric>_class_<name>``, :func:`~proxyhpo.tracking.names.class_dice`) by metric
    (``val_dice``, ``internal_test_dice``, ``test_dice``) and class; empty for a binary task."""
    found: dict[str, dict[str, float]] = {}
    for metric in (names.VAL_DICE, names.INTERNAL_TEST_DICE, names.TEST_DICE):
        prefix = f"{metric}_class_"
        for key, value in metrics.items():
            if key.startswith(prefix):
                found.setdefault(metric, {})[key[len(prefix) :]] = float(value)
    return found


def trial_cell(run: Any, arm: str, repeat: int, point: str, internal: float | None, external: float | None) -> GridCell:
    """A trial run as a :class:`GridCell`: ``device_hours`` is ``gpu_hours`` when above 0 (a GPU), else
    ``process_hours``; ``steps`` from ``steps_run``; ``pack_size`` from the metric ``pack_size`` (1 when not logged)."""
    from proxyhpo.analysis.statistics import GridCell

    gpu, process = device_hours(run.data.metrics)
    pack = number(run.data.metrics.get(names.PACK_SIZE))
    return GridCell(
        arm=arm,
        repeat=repeat,
        point=point,
        internal_dice=internal,
        external_dice=external,
        device_hours=gpu if gpu > 0 else process,
        steps=max(0, int(number(run.data.metrics.get(names.STEPS_RUN)) or 0)),
        pack_size=max(1, int(pack)) if pack is not None else 1,
    )
