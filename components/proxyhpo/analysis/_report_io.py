"""What the comparison studies' reports share: reading a study's runs back from MLflow, and writing numbers as text.

Private to :mod:`proxyhpo.analysis`. :mod:`~proxyhpo.analysis.study_report` (the grid studies and the
reports' entry points) and :mod:`~proxyhpo.analysis.comparison_report` (the automl comparison) both build
on it; neither imports the other's internals.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxyhpo import paths, tracking
from proxyhpo.analysis.statistics import GridCell
from proxyhpo.config import StrictModel, StudyConfig, parse_config
from proxyhpo.errors import ConfigError, ProxyHPOError

#: Names of the selection methods as the paper's tables print them.
METHOD_NAMES = {"mi": "MI", "ncc": "NCC", "mi+labelcrop": "MI+Labelcrop", "ncc+labelcrop": "NCC+Labelcrop", "random": "Random baseline"}
_PAGE = 1000  # runs per search_runs page
_UNFINISHED = ("RUNNING", "SCHEDULED")


class RunTotals(StrictModel):
    """What a study's trials amount to: how many ran, failed or still run, and the device hours its child runs used.

    Attributes:
        n_trials, n_failed, n_running: the trials (a retried one counted once); failed and running ones
            are left out of every Dice.
        gpu_hours, process_hours: ``gpu_hours`` and ``process_hours`` summed over the child runs.
        n_on_gpu, n_on_cpu: trials that ran on a GPU (``gpu_hours`` above 0), and on the CPU alone.
    """

    n_trials: int
    n_failed: int
    n_running: int
    gpu_hours: float
    process_hours: float
    n_on_gpu: int
    n_on_cpu: int

    @property
    def unit(self) -> str:
        """What the hours are, from how many trials ran on a GPU and how many on the CPU."""
        if self.n_on_gpu and self.n_on_cpu:
            return "device hours (GPU-hours where a GPU ran the trial, wall-hours on the CPU otherwise)"
        return "GPU-hours" if self.n_on_gpu else "device wall-hours (CPU)"

    def metrics(self) -> dict[str, float]:
        """The totals as the parent run's metrics."""
        return {
            "total_gpu_hours": self.gpu_hours,
            "total_process_hours": self.process_hours,
            "n_trials": float(self.n_trials),
            "n_failed_trials": float(self.n_failed),
        }


class Built(StrictModel):
    """One study's report as its builder makes it, before :func:`~proxyhpo.analysis.study_report.build_study_report` wraps it.

    Attributes:
        markdown: the report as Markdown.
        metrics: the parent run's summary metrics, by MLflow key.
        plots: plot name -> the PNG's path.
        summary: the builder's own entries of ``summary.json``.
    """

    markdown: str
    metrics: dict[str, float]
    plots: dict[str, str]
    summary: dict[str, Any]


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
    """Every child run of the parent, oldest first, over as many search pages as it takes."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent.info.run_id}'",
            max_results=_PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs += list(page)
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
    return parse_config(StudyConfig, artifact_json(mlflow_client, run_id, "study.json"), f"runs:/{run_id}/study.json", fix="rerun the study")


def keep_run(chosen: dict[Any, Any], key: Any, run: Any) -> None:
    """A retried run keeps one: a finished one over any other, then the newest (runs come oldest first)."""
    held = chosen.get(key)
    if held is None or (run.info.status == "FINISHED") >= (held.info.status == "FINISHED"):
        chosen[key] = run


def is_running(run: Any) -> bool:
    """Whether the run has not ended yet (RUNNING or SCHEDULED)."""
    return run.info.status in _UNFINISHED


def device_hours(metrics: Mapping[str, Any]) -> tuple[float, float]:
    """(gpu_hours, process_hours) of a run, each a finite number >= 0."""
    return max(0.0, number(metrics.get("gpu_hours")) or 0.0), max(0.0, number(metrics.get("process_hours")) or 0.0)


def dice_of(run: Any, key: str) -> float | None:
    """The run's Dice ``key`` clipped to [0, 1]; None unless the run FINISHED and logged it."""
    if run.info.status != "FINISHED":
        return None
    value = number(run.data.metrics.get(key))
    return None if value is None else min(1.0, max(0.0, value))


def trial_cell(run: Any, arm: str, repeat: int, point: str, internal: float | None, external: float | None) -> GridCell:
    """A trial run as a :class:`GridCell`: ``device_hours`` is ``gpu_hours`` when above 0 (a GPU), else
    ``process_hours``; ``steps`` from ``steps_run``; ``pack_size`` from the metric ``pack_size`` (1 when not logged)."""
    gpu, process = device_hours(run.data.metrics)
    pack = number(run.data.metrics.get("pack_size"))
    return GridCell(
        arm=arm,
        repeat=repeat,
        point=point,
        internal_dice=internal,
        external_dice=external,
        device_hours=gpu if gpu > 0 else process,
        steps=max(0, int(number(run.data.metrics.get("steps_run")) or 0)),
        pack_size=max(1, int(pack)) if pack is not None else 1,
    )


# --------------------------------------------------------------------------------------------- numbers and text


def metric_key(name: str) -> str:
    """``name`` as an MLflow metric key: characters other than alphanumerics, ``_ - . /`` and space become ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def arm_metrics(
    per_arm: Mapping[str, Mapping[str, float | None]], headline: Mapping[str, float | None], totals: Mapping[str, float]
) -> dict[str, float]:
    """The parent run's metrics: every arm's under ``<name>.<arm>``, the headline arm's unprefixed, then the totals.

    Args:
        per_arm: arm -> its metrics, by name.
        headline: the metrics the parent run holds unprefixed (the headline arm's, or a part of them).
        totals: the study's totals (:meth:`RunTotals.metrics` and the like).

    Returns:
        MLflow key -> value, missing and non-finite values left out.
    """
    metrics: dict[str, float | None] = {
        f"{name}.{metric_key(arm)}": value for arm, values in per_arm.items() for name, value in values.items()
    }
    metrics.update(headline)
    metrics.update(totals)
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(float(value))}


def format_dice(mean: float | None, std: float | None) -> str:
    """A Dice as ``mean ± std`` (``mean`` alone without a std; ``–`` without a mean)."""
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def format_hours(value: float) -> str:
    """Hours to 4 significant digits."""
    return f"{value:.4g}"


def format_times(value: float | None) -> str:
    """A speed-up as ``2.50×`` (``–`` when undefined)."""
    return "–" if value is None else f"{value:.2f}×"


def heading(title: str, study: StudyConfig, question: str) -> list[str]:
    """The report's title, the study's description and the question it answers."""
    lines = [f"# {title} `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    return lines + [question, ""]


def unit_sentence(unit: str) -> str:
    """What the hours of the cost section are (:attr:`RunTotals.unit`), as the section's first sentence."""
    if unit == "GPU-hours":
        return f"Hours are **{unit}**: the trials ran on a GPU."
    if unit.startswith("device wall"):
        return f"Hours are **{unit}**: the trials ran on the CPU, so each trial is charged its share of the wall-clock hours."
    return f"Hours are **{unit}**."


def speedup_note(reference: str) -> str:
    """How the cost section's speed-ups over the ``reference`` arm are computed."""
    return (
        f"Speed-up as run: `{reference}`'s hours per search over the arm's (packing included). At equal pack size every trial is "
        "charged as if it had run alone, each of its steps costing what a step of its pack cost (an upper bound), so the speed-up "
        "credits only what smaller data and networks save."
    )


def plots_section(plots: Mapping[str, str], captions: Mapping[str, str], missing: str) -> list[str]:
    """The report's list of plots (file name and caption), or ``missing`` when there is none."""
    if not plots:
        return ["## Plots", "", missing]
    return ["## Plots", ""] + [
        f"- [{Path(path).name}]({Path(path).name}): {captions.get(name, name)}" for name, path in plots.items()
    ]

