"""The report of the paper's comparison studies (section 5: Table 1, Figs. 2-4), built from MLflow alone.

A comparison study's parent run (tag ``proxyhpo.pipeline`` = ``proxy-data-study``, ``proxy-net-study`` or
``trust``) holds its config (``study.json``) and its plan (``cells.json``: every
:class:`~proxyhpo.config.StudyCell`); each trained model is a child run tagged with its arm, repeat and
grid point and carrying its Dice and device hours. This module reads them back as
:class:`~proxyhpo.analysis.statistics.GridCell` records and turns them, with the functions of
:mod:`~proxyhpo.analysis.statistics` and :mod:`~proxyhpo.analysis.study_plots`, into:

- the Markdown report (what was run, a Table 1-like table at the reference's best grid point, the
  correlations with their bootstrap intervals and what they are computed over, the cost and speed-ups);
- the figures (Fig. 2 per method, Fig. 3, Fig. 4A/B, the trust check's scatter);
- the parent run's summary metrics (DESIGN.md's contract: ``pearson_r``, ``spearman_rho``,
  ``kendall_tau`` with ``_low``/``_high``, ``speedup_vs_full``, ``speedup_vs_full_equal_pack``);
- for the trust check, its verdict.

The automl comparison (tag ``automl-comparison``: the RL search run on all data, proxy data, a proxy network,
both, and random data, each result trained in full) has no plan: its parent holds ``study.json`` and each
arm's data manifest (``manifests/<arm>.json``), its children are the searches' trials and the final models.
Its report (:func:`collect_searches`, :class:`ArmSearch`) is the paper's Table 2 (the final models'
internal and external Dice, the device hours per search and the speed-ups over the all-data search) and
Fig. 4C/D (each search's best hyper-parameters and their relative distance to the all-data search's).

:func:`build_study_report` only reads MLflow; :func:`write_study_report` (the pipeline's report step)
also logs the report on the parent run and closes it. :func:`render_report` serves ``proxyhpo report``.

Example:
    >>> report = build_study_report(parent_run_id, "out")  # doctest: +SKIP
    >>> report.metrics["spearman_rho"], report.plots["fig4_data_usage"]  # doctest: +SKIP
    (0.83, 'out/fig4_data_usage.png')
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxyhpo import paths, storage, tracking
from proxyhpo.analysis.statistics import (
    Correlation,
    GridCell,
    Method,
    Metric,
    TableRow,
    best_point,
    correlation_metrics,
    correlations,
    equal_pack_hours,
    mean_std,
    relative_distance,
    speedup,
    table_at_point,
)
from proxyhpo.analysis.study_plots import plot_dice_vs_data_usage, plot_hyperparameter_distance, plot_proxy_networks, plot_proxy_vs_reference
from proxyhpo.config import (
    Categorical,
    NetworkConfig,
    ProxyDataManifest,
    SearchSpace,
    StrictModel,
    StudyCell,
    StudyConfig,
    grid_points,
    parse_config,
)
from proxyhpo.config.studies import SEARCH_ARMS
from proxyhpo.errors import ConfigError, ProxyHPOError

__all__ = [
    "ArmCost",
    "ArmSearch",
    "StudyReport",
    "TrustVerdict",
    "collect_cells",
    "collect_searches",
    "read_manifests",
    "read_plan",
    "build_study_report",
    "write_study_report",
    "latest_study_run",
    "render_report",
]

#: The reference arm of every comparison study: all data, the full U-Net.
REFERENCE = "full"
#: The proxy arm of the trust check.
TRUST_PROXY = "proxy"
#: Bootstrap settings of every interval in the report (fixed seed: the same runs give the same report).
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
#: Names of the selection methods as the paper's Table 1 prints them.
METHOD_NAMES = {"mi": "MI", "ncc": "NCC", "mi+labelcrop": "MI+Labelcrop", "ncc+labelcrop": "NCC+Labelcrop", "random": "Random baseline"}
_SYMBOLS = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ"}
_TITLES = {"proxy-data-study": "Proxy data study", "proxy-net-study": "Proxy network study", "trust": "Trust check", "automl-comparison": "AutoML comparison"}
_PAGE = 1000  # runs per search_runs page


class TrustVerdict(StrictModel):
    """The trust check's answer: does the proxy rank the calibration grid like the full setting?

    Attributes:
        metric: the coefficient used (``studies.trust.metric``).
        dice: the Dice actually correlated (``internal`` when ``external`` was asked but none was logged).
        value, low, high: the coefficient and its bootstrap interval; None when undefined.
        threshold: the value the proxy had to reach (``studies.trust.threshold``).
        passed: ``value >= threshold``; None when the coefficient is undefined.
        over: what the coefficient is computed over (and any fallback of the Dice).
        message: the verdict in one line.
    """

    metric: Method
    dice: Metric
    value: float | None
    low: float | None
    high: float | None
    threshold: float
    passed: bool | None
    over: str
    message: str


class ArmCost(StrictModel):
    """What one arm's searches cost, per repeat (one repeat = one search of the grid).

    Attributes:
        repeats: repeats the arm ran trials in.
        trial_hours: device hours of its trials (failed ones too: they used the device), mean over repeats
            of the sum over the repeat's trials.
        selection_hours: device hours of choosing its data (``selection_seconds / 3600`` of its cell),
            once per search, mean over repeats; 0 for all data and for proxy networks.
        selection_device: where the selection ran (``cpu``, ``cuda``), None without a selection.
        hours: ``trial_hours + selection_hours``, the cost of one search as run.
        equal_pack_hours: the trials' hours as if every trial had run alone
            (:func:`~proxyhpo.analysis.statistics.equal_pack_hours`), mean over repeats, plus the selection.
        total_hours: the trials' hours summed over every repeat (selection not included).
        speedup, speedup_equal_pack: the reference's hours over this arm's, as run and at equal pack
            size; None without a reference or when this arm cost nothing.
    """

    arm: str
    repeats: int
    trial_hours: float
    selection_hours: float
    selection_device: str | None
    hours: float
    equal_pack_hours: float
    total_hours: float
    speedup: float | None
    speedup_equal_pack: float | None


class StudyReport(StrictModel):
    """A comparison study's report.

    Attributes:
        kind: the study (``proxy-data-study``, ``proxy-net-study``, ``trust``, ``automl-comparison``).
        markdown: the report as Markdown.
        metrics: the parent run's summary metrics, by MLflow key.
        plots: plot name -> the PNG's path (in the ``out_dir`` it was built in).
        verdict: the trust check's verdict; None for the other studies.
    """

    kind: str
    markdown: str
    metrics: dict[str, float]
    plots: dict[str, str]
    verdict: TrustVerdict | None = None


# --------------------------------------------------------------------------------------------- reading MLflow


class _Collected(StrictModel):
    """The cells by arm, and what the trial runs cost and how many failed."""

    cells: dict[str, list[GridCell]]
    n_trials: int
    n_failed: int
    n_running: int
    gpu_hours: float
    process_hours: float
    n_on_gpu: int
    n_on_cpu: int


def _number(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _children(mlflow_client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Every child run of the parent, oldest first, over as many search pages as it takes."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'",
            max_results=_PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs += list(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def _get_run(mlflow_client: Any, run_id: str, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_run(run_id)
    except MlflowException as exc:
        raise ProxyHPOError(f"MLflow run {run_id!r} not found in {uri}: {str(exc).splitlines()[0]}") from None


def _collect(parent_run_id: str, tracking_uri: str | None) -> _Collected:
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    parent = _get_run(mlflow_client, parent_run_id, uri)
    chosen: dict[tuple[str, int, str], Any] = {}
    for run in _children(mlflow_client, parent.info.experiment_id, parent_run_id):
        tags = run.data.tags
        if tags.get(tracking.ROLE_TAG, "trial") != "trial" or "proxyhpo.arm" not in tags or "proxyhpo.point" not in tags:
            continue
        try:
            key = (tags["proxyhpo.arm"], int(tags.get("proxyhpo.repeat", "0")), tags["proxyhpo.point"])
        except ValueError:
            continue
        # a retried cell keeps one run: a finished one over any other, then the newest
        held = chosen.get(key)
        if held is None or (run.info.status == "FINISHED") >= (held.info.status == "FINISHED"):
            chosen[key] = run
    cells: dict[str, list[GridCell]] = {}
    n_failed = n_running = n_gpu = n_cpu = 0
    gpu_total = process_total = 0.0
    for (arm, repeat, point), run in sorted(chosen.items(), key=lambda item: item[0]):
        metrics = run.data.metrics
        finished = run.info.status == "FINISHED"
        internal = _number(metrics.get("final_val_dice")) if finished else None
        external = _number(metrics.get("test_dice")) if finished else None
        if run.info.status in ("RUNNING", "SCHEDULED"):
            n_running += 1
        elif internal is None and external is None:
            n_failed += 1
        gpu = max(0.0, _number(metrics.get("gpu_hours")) or 0.0)
        process = max(0.0, _number(metrics.get("process_hours")) or 0.0)
        gpu_total += gpu
        process_total += process
        n_gpu += gpu > 0
        n_cpu += gpu == 0 and process > 0
        pack = _number(metrics.get("pack_size"))
        cells.setdefault(arm, []).append(
            GridCell(
                arm=arm,
                repeat=repeat,
                point=point,
                internal_dice=None if internal is None else min(1.0, max(0.0, internal)),
                external_dice=None if external is None else min(1.0, max(0.0, external)),
                device_hours=gpu if gpu > 0 else process,
                steps=max(0, int(_number(metrics.get("steps_run")) or 0)),
                pack_size=max(1, int(pack)) if pack is not None else 1,
            )
        )
    return _Collected(
        cells=cells, n_trials=len(chosen), n_failed=n_failed, n_running=n_running, gpu_hours=gpu_total, process_hours=process_total, n_on_gpu=n_gpu, n_on_cpu=n_cpu
    )


def collect_cells(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, list[GridCell]]:
    """The comparison study's trained models, read back from the parent's child runs, by arm.

    Every child run tagged ``proxyhpo.role=trial`` with an arm and a grid point becomes one
    :class:`GridCell`: Dice from ``final_val_dice`` (internal) and ``test_dice`` (external; None when not
    logged), both None unless the run FINISHED; ``device_hours`` is ``gpu_hours`` when above 0 (a GPU),
    else ``process_hours`` (the trial's share of the wall-clock hours on a CPU); ``steps`` from
    ``steps_run``; ``pack_size`` from the metric ``pack_size`` (1 when not logged). Should a cell have
    two runs (a retry), the finished one, else the newest, is kept.

    Args:
        parent_run_id: the study's parent run.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).

    Returns:
        Arm -> its cells, arms sorted by name, cells by repeat then grid point.

    Raises:
        ProxyHPOError: when the parent run does not exist.
    """
    return _collect(parent_run_id, tracking_uri).cells


def _artifact_text(mlflow_client: Any, run_id: str, path: str) -> str | None:
    """The text of the run's top-level artifact ``path``, or None when the run has none."""
    if path not in {entry.path for entry in mlflow_client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory(prefix="artifact-") as folder:
        local = mlflow_client.download_artifacts(run_id, path, folder)
        return Path(local).read_text(encoding="utf-8")


def _artifact_json(mlflow_client: Any, run_id: str, path: str) -> Any:
    """The run's top-level JSON artifact ``path``, parsed.

    Raises:
        ProxyHPOError: when the run has no such artifact.
        ConfigError: when it is not JSON.
    """
    text = _artifact_text(mlflow_client, run_id, path)
    if text is None:
        raise ProxyHPOError(f"MLflow run {run_id} has no {path} artifact: it is not a comparison study's parent run, or its plan step has not run")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"runs:/{run_id}/{path}", f"is not valid JSON ({exc})", "rerun the study") from None


def _read_study(mlflow_client: Any, run_id: str) -> StudyConfig:
    """The study config a parent run logged as ``study.json``."""
    return parse_config(StudyConfig, _artifact_json(mlflow_client, run_id, "study.json"), f"runs:/{run_id}/study.json", fix="rerun the study")


def read_plan(parent_run_id: str, tracking_uri: str | None = None) -> tuple[StudyConfig, list[StudyCell]]:
    """The study config (``study.json``) and the plan (``cells.json``) logged on a comparison study's parent run.

    Raises:
        ProxyHPOError: when the run does not exist or lacks either artifact.
        ConfigError: when either does not validate, naming the artifact and the key.
    """
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    _get_run(mlflow_client, parent_run_id, uri)
    study = _read_study(mlflow_client, parent_run_id)
    plan = _artifact_json(mlflow_client, parent_run_id, "cells.json")
    if not isinstance(plan, list):
        raise ConfigError(f"runs:/{parent_run_id}/cells.json", f"must be a JSON list of cells, got {type(plan).__name__}", "rerun the study")
    cells = [parse_config(StudyCell, cell, f"runs:/{parent_run_id}/cells.json[{i}]", fix="rerun the study") for i, cell in enumerate(plan)]
    return study, cells


# --------------------------------------------------------------------------------------------- numbers


def metric_key(name: str) -> str:
    """``name`` as an MLflow metric key: characters other than alphanumerics, ``_ - . /`` and space become ``_``."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _arm_order(plan: Sequence[StudyCell], cells: Mapping[str, list[GridCell]]) -> list[str]:
    """Arms in the plan's order, then any arm with runs but not in the plan."""
    order = list(dict.fromkeys(cell.arm for cell in plan))
    return order + sorted(arm for arm in cells if arm not in order)


def _costs(arms: Sequence[str], cells: Mapping[str, list[GridCell]], plan: Sequence[StudyCell], *, selection: bool) -> dict[str, ArmCost]:
    """Each arm's cost per repeat, and its speed-ups over the reference (as run, at equal pack size)."""
    planned = {(cell.arm, cell.repeat): cell for cell in plan}
    costs: dict[str, ArmCost] = {}
    for arm in arms:
        mine = cells.get(arm, [])
        repeats = sorted({cell.repeat for cell in mine})
        if not repeats:
            continue
        trial = [math.fsum(c.device_hours for c in mine if c.repeat == r) for r in repeats]
        packed = [equal_pack_hours([c for c in mine if c.repeat == r]) for r in repeats]
        chosen = [planned.get((arm, r)) for r in repeats]
        seconds = [cell.selection_seconds if (cell is not None and selection) else 0.0 for cell in chosen]
        devices = sorted({cell.selection_device for cell, s in zip(chosen, seconds, strict=True) if cell is not None and s > 0})
        selection_hours = math.fsum(seconds) / 3600 / len(repeats)
        trial_hours = math.fsum(trial) / len(repeats)
        costs[arm] = ArmCost(
            arm=arm,
            repeats=len(repeats),
            trial_hours=trial_hours,
            selection_hours=selection_hours,
            selection_device=",".join(devices) or None,
            hours=trial_hours + selection_hours,
            equal_pack_hours=math.fsum(packed) / len(repeats) + selection_hours,
            total_hours=math.fsum(trial),
            speedup=None,
            speedup_equal_pack=None,
        )
    reference = costs.get(REFERENCE)
    if reference is not None:
        for arm, cost in costs.items():
            costs[arm] = cost.model_copy(
                update={"speedup": speedup(reference.hours, cost.hours), "speedup_equal_pack": speedup(reference.equal_pack_hours, cost.equal_pack_hours)}
            )
    return costs


def _hours_label(collected: _Collected) -> str:
    return _unit_label(collected.n_on_gpu, collected.n_on_cpu)


def _unit_label(n_on_gpu: int, n_on_cpu: int) -> str:
    """What the hours are, from how many trials ran on a GPU and how many on the CPU."""
    if n_on_gpu and n_on_cpu:
        return "device hours (GPU-hours where a GPU ran the trial, wall-hours on the CPU otherwise)"
    return "GPU-hours" if n_on_gpu else "device wall-hours (CPU)"


def _has(cells: Sequence[GridCell], metric: Metric) -> bool:
    return any(cell.dice(metric) is not None for cell in cells)


def _correlate(proxy: Sequence[GridCell], reference: Sequence[GridCell], metric: Metric) -> dict[str, Correlation]:
    return correlations(proxy, reference, metric=metric, confidence=CONFIDENCE, resamples=RESAMPLES, seed=SEED)


def _arm_metrics(
    correlation: Mapping[str, Mapping[str, Correlation]], costs: Mapping[str, ArmCost], headline: str | None, collected: _Collected
) -> dict[str, float]:
    """The parent run's metrics: the headline arm's unprefixed, every arm's under ``<name>.<arm>``."""
    metrics: dict[str, float] = {}

    def arm_values(arm: str) -> dict[str, float]:
        values = dict(correlation_metrics(correlation[arm])) if arm in correlation else {}
        cost = costs.get(arm)
        if cost is not None:
            values["device_hours_per_repeat"] = cost.hours
            if arm != REFERENCE:
                if cost.speedup is not None:
                    values["speedup_vs_full"] = cost.speedup
                if cost.speedup_equal_pack is not None:
                    values["speedup_vs_full_equal_pack"] = cost.speedup_equal_pack
        return values

    for arm in dict.fromkeys([*correlation, *costs]):
        metrics.update({f"{name}.{metric_key(arm)}": value for name, value in arm_values(arm).items()})
    if headline is not None:
        metrics.update({name: value for name, value in arm_values(headline).items() if name != "device_hours_per_repeat"})
    metrics.update(
        {
            "total_gpu_hours": collected.gpu_hours,
            "total_process_hours": collected.process_hours,
            "n_trials": float(collected.n_trials),
            "n_failed_trials": float(collected.n_failed),
        }
    )
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(float(value))}


# --------------------------------------------------------------------------------------------- Markdown pieces


def _dice(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def _coefficient(result: Correlation | None) -> str:
    if result is None or result.value is None:
        return "undefined"
    interval = f" [{result.low:.2f}, {result.high:.2f}]" if result.low is not None and result.high is not None else ""
    return f"{result.value:.2f}{interval}"


def _hours(value: float) -> str:
    return f"{value:.4g}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _percent(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.0f}%"


def _grid_sentence(grid: Mapping[str, Sequence[Any]]) -> str:
    n = len(grid_points(dict(grid)))  # type: ignore[arg-type]
    return f"{n} grid points: " + " × ".join(f"{name} ∈ {{{', '.join(str(v) for v in values)}}}" for name, values in grid.items())


def _fractions(plan: Sequence[StudyCell]) -> dict[str, float]:
    """Each arm's share of the data (mean over its cells, which agree)."""
    shares: dict[str, list[float]] = {}
    for cell in plan:
        shares.setdefault(cell.arm, []).append(cell.data_fraction)
    return {arm: math.fsum(values) / len(values) for arm, values in shares.items()}


def _cases(plan: Sequence[StudyCell]) -> dict[str, str]:
    """Each arm's training/validation cases, as ``8 (4 train / 4 val)``."""
    out: dict[str, str] = {}
    for cell in plan:
        out.setdefault(cell.arm, f"{len(cell.train_ids) + len(cell.val_ids)} ({len(cell.train_ids)} train / {len(cell.val_ids)} val)")
    return out


def _networks(plan: Sequence[StudyCell]) -> dict[str, str]:
    out: dict[str, str] = {}
    for cell in plan:
        out.setdefault(cell.arm, cell.network.name)
    return out


def _arms_table(arms: Sequence[str], labels: Mapping[str, str], cells: Mapping[str, list[GridCell]], plan: Sequence[StudyCell]) -> list[str]:
    fractions, cases, networks = _fractions(plan), _cases(plan), _networks(plan)
    planned_repeats: dict[str, int] = {}
    for cell in plan:
        planned_repeats[cell.arm] = planned_repeats.get(cell.arm, 0) + 1
    lines = ["| arm | | network | cases | data used | repeats (planned) | trials | failed |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm in arms:
        mine = cells.get(arm, [])
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {networks.get(arm, '–')} | {cases.get(arm, '–')} | {_percent(fractions.get(arm))} "
            f"| {len({c.repeat for c in mine})} ({planned_repeats.get(arm, 0)}) | {len(mine)} | {sum(c.failed for c in mine)} |"
        )
    return lines


def _table_rows(arms: Mapping[str, str], cells: Mapping[str, list[GridCell]], point: str) -> list[TableRow]:
    """:func:`table_at_point` over the arms with cells; arms with none get an empty row."""
    present = {label: cells[arm] for arm, label in arms.items() if cells.get(arm)}
    computed = {row.arm: row for row in table_at_point(present, point)} if present else {}
    empty = {"internal_mean": None, "internal_std": None, "external_mean": None, "external_std": None, "n": 0, "n_failed": 0}
    return [computed.get(label) or TableRow(arm=label, **empty) for label in arms.values()]


def _dice_table(rows: Sequence[TableRow], data: Mapping[str, str], first: str) -> list[str]:
    lines = [f"| {first} | data used | internal Dice | external Dice | trials (failed) |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {row.arm} | {data.get(row.arm, '–')} | {_dice(row.internal_mean, row.internal_std)} | {_dice(row.external_mean, row.external_std)} | {row.n} ({row.n_failed}) |"
        for row in rows
    ]
    return lines


def _correlation_section(arms: Sequence[str], labels: Mapping[str, str], correlation: Mapping[str, Mapping[str, Correlation]], reference: str) -> list[str]:
    lines = [
        f"| arm | | {_SYMBOLS['pearson']} [95% CI] | {_SYMBOLS['spearman']} [95% CI] | {_SYMBOLS['kendall']} [95% CI] | grid points | repeats |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    sentences = ["", f"Each coefficient correlates the arm's mean Dice per grid point with `{reference}`'s; computed over:", ""]
    for arm in arms:
        result = correlation.get(arm)
        if result is None:
            lines.append(f"| `{arm}` | {labels.get(arm, arm)} | no trials | | | 0 | 0 |")
            continue
        first = result["pearson"]
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {_coefficient(result['pearson'])} | {_coefficient(result['spearman'])} | "
            f"{_coefficient(result['kendall'])} | {first.n_points} | {first.n_repeats} |"
        )
        overs = list(dict.fromkeys(r.over for r in result.values()))
        if len(overs) == 1:
            sentences.append(f"- `{arm}`: {overs[0]}.")
        else:
            sentences += [f"- `{arm}` ({method}): {r.over}." for method, r in result.items()]
    return lines + sentences


def _cost_section(arms: Sequence[str], labels: Mapping[str, str], costs: Mapping[str, ArmCost], unit: str, *, selection: bool) -> list[str]:
    lines = [
        f"Hours are **{unit}**"
        + (": the trials ran on a GPU." if unit == "GPU-hours" else ": the trials ran on the CPU, so each trial is charged its share of the wall-clock hours." if unit.startswith("device wall") else ".")
        + " A search is one repeat of an arm: its whole grid"
        + (", plus choosing its data (counted once per search)." if selection else ".")
        + " Failed trials count: they used the device.",
        "",
        "| arm | | repeats | trials, per search | "
        + ("selection, per search (device) | " if selection else "")
        + f"total per search | speed-up vs `{REFERENCE}` | at equal pack size: per search | speed-up | all repeats (trials) |",
        "| --- | --- | --- | --- | " + ("--- | " if selection else "") + "--- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        cost = costs.get(arm)
        if cost is None:
            continue
        chosen = f"{_hours(cost.selection_hours)} ({cost.selection_device or '–'}) | " if selection else ""
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {cost.repeats} | {_hours(cost.trial_hours)} | {chosen}{_hours(cost.hours)} | {_times(cost.speedup)} "
            f"| {_hours(cost.equal_pack_hours)} | {_times(cost.speedup_equal_pack)} | {_hours(cost.total_hours)} |"
        )
    lines += [
        "",
        f"Speed-up as run: `{REFERENCE}`'s hours per search over the arm's (packing included). At equal pack size every trial is "
        "charged as if it had run alone, each of its steps costing what a step of its pack cost (an upper bound), so the speed-up "
        "credits only what smaller data and networks save.",
    ]
    return lines


def _plots_section(plots: Mapping[str, str], captions: Mapping[str, str]) -> list[str]:
    if not plots:
        return ["## Plots", "", "No plot: no grid point finished in the reference arm."]
    return ["## Plots", ""] + [f"- [{Path(path).name}]({Path(path).name}): {captions.get(name, name)}" for name, path in plots.items()]


def _header(kind: str, study: StudyConfig, parent_run_id: str, collected: _Collected, question: str) -> list[str]:
    lines = [f"# {_TITLES[kind]} `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [
        question,
        "",
        f"MLflow parent run `{parent_run_id}`: {collected.n_trials} trials, {collected.n_failed} failed"
        + (f", {collected.n_running} still running" if collected.n_running else "")
        + " (failed and unfinished trials are left out of every Dice, mean and correlation below; the cost counts their device hours).",
        "",
    ]
    return lines


# --------------------------------------------------------------------------------------------- the three studies


class _Built(StrictModel):
    markdown: str
    metrics: dict[str, float]
    plots: dict[str, str]
    summary: dict[str, Any]
    verdict: TrustVerdict | None = None


def _summary(correlation: Mapping[str, Mapping[str, Correlation]], costs: Mapping[str, ArmCost], **extra: Any) -> dict[str, Any]:
    return {
        "correlations": {arm: {m: r.model_dump(mode="json") for m, r in result.items()} for arm, result in correlation.items()},
        "costs": {arm: cost.model_dump(mode="json") for arm, cost in costs.items()},
        **extra,
    }


def _proxy_data(study: StudyConfig, plan: list[StudyCell], collected: _Collected, parent_run_id: str, out: Path) -> _Built:
    config = study.studies.proxy_data
    cells = collected.cells
    reference = cells.get(REFERENCE, [])
    metric: Metric = "external" if _has(reference, "external") else "internal"
    arms = _arm_order(plan, cells)
    proxies = [arm for arm in arms if arm != REFERENCE]
    methods: dict[str, tuple[str, int]] = {f"{m}-{b}": (m, b) for m in config.methods for b in config.budgets}
    labels = {arm: f"{METHOD_NAMES.get(methods[arm][0], methods[arm][0])}, B = {methods[arm][1]}" if arm in methods else arm for arm in arms}
    labels[REFERENCE] = "Full Dataset"
    fractions = _fractions(plan)
    budget = config.budget_of_table

    correlation = {arm: _correlate(cells[arm], reference, metric) for arm in proxies if cells.get(arm) and reference}
    costs = _costs(arms, cells, plan, selection=True)
    wanted = f"{study.selection.method}-{budget}"
    headline = wanted if wanted in correlation else next(iter(correlation), None)
    metrics = _arm_metrics(correlation, costs, headline, collected)

    point = best_point(reference, metric) if reference else None
    plots: dict[str, str] = {}
    captions: dict[str, str] = {}
    lines = _header(
        "proxy-data-study",
        study,
        parent_run_id,
        collected,
        "Which proxy data set ranks the hyper-parameter grid like all the data, and how many cases are enough? "
        "(the paper's section 4.2: Table 1, Fig. 2 and Fig. 4A/B)",
    )
    lines += [
        "## What was run",
        "",
        f"- Reference: `{REFERENCE}`, all the data with the {_networks(plan).get(REFERENCE, config.network)} network, {config.repeats} repeats over random splits.",
        f"- Selection methods: {', '.join(METHOD_NAMES.get(m, m) for m in config.methods)}; budgets B = {', '.join(map(str, config.budgets))} cases, "
        f"each split {1 - study.data.val_fraction:.0%} train / {study.data.val_fraction:.0%} validation anew per repeat.",
        f"- Repeats: {config.repeats} per arm (split and initialisation); grid: {_grid_sentence(study.studies.grid)}.",
        f"- Dice correlated: **{metric}**"
        + (" (the external test set)." if metric == "external" else " (no external Dice was logged: each arm's own validation cases)."),
        "",
        *_arms_table(arms, labels, cells, plan),
        "",
    ]

    # Table 1 at the reference's best point
    table_arms = {f"{m}-{budget}": METHOD_NAMES.get(m, m) for m in config.methods} | {REFERENCE: "Full Dataset"}
    data_used = {label: f"{budget} cases ({_percent(fractions.get(arm))})" for arm, label in table_arms.items()}
    data_used["Full Dataset"] = "all (100%)"
    lines += ["## Table 1: Dice at the reference's best grid point", ""]
    table: list[TableRow] = []
    if point is None:
        lines += [f"No `{REFERENCE}` trial finished: there is no best grid point to report at.", ""]
    else:
        table = _table_rows(table_arms, cells, point)
        lines += [
            f"Best grid point of `{REFERENCE}` by mean {metric} Dice over repeats: `{point}`. Budget B = {budget} cases; "
            "mean ± std over repeats (failed trials left out).",
            "",
            *_dice_table(table, data_used, "Selection method"),
            "",
        ]

    lines += [f"## Correlation with the full data ({metric} Dice; Fig. 2)", ""]
    lines += _correlation_section(proxies, labels, correlation, REFERENCE) + [""]
    if headline is not None:
        lines += [f"Headline arm (the parent run's unprefixed metrics): `{headline}`.", ""]

    # Fig 4A/B: Dice at the best point against the share of data
    if point is not None:
        rows = []
        lines += [f"## Dice against data used (Fig. 4A/B; {metric} Dice at `{point}`)", ""]
        lines += ["| method | " + " | ".join(f"B = {b}" for b in config.budgets) + " |", "| --- | " + " | ".join("---" for _ in config.budgets) + " |"]
        for method in config.methods:
            row = []
            for b in config.budgets:
                arm = f"{method}-{b}"
                mean, std = mean_std(c.dice(metric) for c in cells.get(arm, []) if c.point == point)
                row.append(f"{_dice(mean, std)} ({_percent(fractions.get(arm))})")
                if arm in fractions:
                    rows.append((METHOD_NAMES.get(method, method), fractions[arm], mean, std))
            lines.append(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(row) + " |")
        full_mean, full_std = mean_std(c.dice(metric) for c in reference if c.point == point)
        lines += ["", f"Full Dataset (100%): {_dice(full_mean, full_std)}.", ""]
        if rows:
            name = "fig4_data_usage"
            plots[name] = str(
                plot_dice_vs_data_usage(
                    rows, out / f"{name}.png", full_dice=full_mean, full_std=full_std, metric_label=f"{metric} Dice",
                    title=f"{metric} Dice against the share of training data used\nat the reference's best grid point {point}",
                )
            )
            captions[name] = f"Fig. 4A/B: {metric} Dice at `{point}` against the share of data used, one line per method; dashed: the full data set."
        # Fig 2 per method at the table's budget
        for method in config.methods:
            arm = f"{method}-{budget}"
            if not cells.get(arm):
                continue
            name = f"fig2_{_file_stem(arm)}"
            title = f"{METHOD_NAMES.get(method, method)}, B = {budget} ({_percent(fractions.get(arm))} of the data) vs all data"
            plots[name] = str(plot_proxy_vs_reference(cells[arm], reference, out / f"{name}.png", metric=metric, title=title, correlation=correlation.get(arm)))
            captions[name] = f"Fig. 2: `{arm}` vs `{REFERENCE}`, {metric} Dice per grid point, with the least-squares line."

    unit = _hours_label(collected)
    lines += ["## Cost", "", *_cost_section(arms, labels, costs, unit, selection=True), ""]
    lines += _plots_section(plots, captions)
    summary = _summary(correlation, costs, dice=metric, best_point=point, headline_arm=headline, hours=unit, table=[row.model_dump(mode="json") for row in table])
    return _Built(markdown="\n".join(lines) + "\n", metrics=metrics, plots=plots, summary=summary)


def _proxy_net(study: StudyConfig, plan: list[StudyCell], collected: _Collected, parent_run_id: str, out: Path) -> _Built:
    config = study.studies.proxy_net
    cells = collected.cells
    reference = cells.get(REFERENCE, [])
    metric: Metric = "internal"
    arms = _arm_order(plan, cells)
    proxies = [arm for arm in arms if arm != REFERENCE]
    labels = {arm: f"{arm.removeprefix('proxy-L')} levels, 4 channels, 1 residual unit" if re.fullmatch(r"proxy-L\d", arm) else arm for arm in arms}
    labels[REFERENCE] = "full network (5 levels, 16 channels, 2 residual units)"

    correlation = {arm: _correlate(cells[arm], reference, metric) for arm in proxies if cells.get(arm) and reference}
    costs = _costs(arms, cells, plan, selection=False)
    levelled = {int(arm.removeprefix("proxy-L")): arm for arm in correlation if re.fullmatch(r"proxy-L\d", arm)}
    headline = levelled[max(levelled)] if levelled else next(iter(correlation), None)
    metrics = _arm_metrics(correlation, costs, headline, collected)

    point = best_point(reference, metric) if reference else None
    lines = _header(
        "proxy-net-study",
        study,
        parent_run_id,
        collected,
        "How shallow can a proxy network be and still rank the grid like the full U-Net? (the paper's section 4.2 and Fig. 3)",
    )
    lines += [
        "## What was run",
        "",
        f"- Reference: `{REFERENCE}`, the full U-Net; proxy networks with {', '.join(map(str, config.levels))} levels; every network trains "
        f"all the data, on the same split in a repeat.",
        f"- Repeats: {config.repeats} per network (random splits of all cases, each with its own initialisation); grid: {_grid_sentence(study.studies.grid)}.",
        "- Dice correlated: **internal** (each repeat's validation cases), as in the paper.",
        "",
        *_arms_table(arms, labels, cells, plan),
        "",
    ]
    table: list[TableRow] = []
    if point is not None:
        table = _table_rows({arm: arm for arm in [*proxies, REFERENCE]}, cells, point)
        lines += [
            "## Dice at the full network's best grid point",
            "",
            f"Best grid point of `{REFERENCE}` by mean internal Dice over repeats: `{point}`; mean ± std over repeats.",
            "",
            *_dice_table(table, {arm: "all (100%)" for arm in arms}, "network"),
            "",
        ]
    lines += ["## Correlation with the full network (internal Dice; Fig. 3)", ""]
    lines += _correlation_section(proxies, labels, correlation, REFERENCE) + [""]
    if headline is not None:
        lines += [f"Headline arm (the parent run's unprefixed metrics): `{headline}`.", ""]
    plots: dict[str, str] = {}
    captions: dict[str, str] = {}
    present = {arm: cells[arm] for arm in proxies if cells.get(arm)}
    if present and reference:
        name = "fig3_proxy_networks"
        plots[name] = str(plot_proxy_networks(present, reference, out / f"{name}.png", metric=metric))
        captions[name] = "Fig. 3: each proxy network's internal Dice against the full network's, one dot per (grid point, repeat)."
    unit = _hours_label(collected)
    lines += ["## Cost", "", *_cost_section(arms, labels, costs, unit, selection=False), ""]
    lines += _plots_section(plots, captions)
    summary = _summary(correlation, costs, dice=metric, best_point=point, headline_arm=headline, hours=unit, table=[row.model_dump(mode="json") for row in table])
    return _Built(markdown="\n".join(lines) + "\n", metrics=metrics, plots=plots, summary=summary)


def _verdict(config: Any, correlation: Mapping[str, Correlation] | None, dice: Metric, note: str, problem: str | None) -> TrustVerdict:
    """The trust check's verdict from the proxy's correlations (None when the arms lack trials: ``problem`` says why)."""
    method: Method = config.metric
    result = correlation.get(method) if correlation else None
    value = result.value if result else None
    low, high = (result.low, result.high) if result else (None, None)
    over = note + (result.over if result else (problem or "no trials"))
    passed = None if value is None else value >= config.threshold
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    points = f"over {result.n_points} grid point{'s' if result.n_points != 1 else ''}" if result else "over no grid point"
    if passed is None:
        reason = problem or (result.over.split("; ", 1)[1] if result and "; " in result.over else "undefined")
        message = f"proxy trust undecided: {method} {points} ({dice} Dice) is {reason}"
    else:
        verb, sign = ("proxy trusted", ">=") if passed else ("proxy not trusted", "<")
        message = f"{verb}: {method} {value:.2f}{interval} {points} {sign} {config.threshold:g} ({dice} Dice)"
    return TrustVerdict(metric=method, dice=dice, value=value, low=low, high=high, threshold=config.threshold, passed=passed, over=over, message=message)


def _trust(study: StudyConfig, plan: list[StudyCell], collected: _Collected, parent_run_id: str, out: Path) -> _Built:
    config = study.studies.trust
    cells = collected.cells
    reference, proxy = cells.get(REFERENCE, []), cells.get(TRUST_PROXY, [])
    dice: Metric = config.dice
    note = ""
    if dice == "external" and not (_has(reference, "external") and _has(proxy, "external")):
        dice, note = "internal", "internal Dice (external was asked, but the study logged no external Dice); "
    arms = _arm_order(plan, cells)
    networks = _networks(plan)
    labels = {REFERENCE: "all data, full network", TRUST_PROXY: f"the study's proxy: {study.training.data} data"
              + (f" ({study.selection.method}, B = {study.selection.budget})" if study.training.data == "proxy" else "")
              + f", {networks.get(TRUST_PROXY, study.training.network)} network"}
    problem = None if proxy and reference else f"no trials in the {'proxy' if not proxy else REFERENCE} arm"
    correlation = {TRUST_PROXY: _correlate(proxy, reference, dice)} if problem is None else {}
    verdict = _verdict(config, correlation.get(TRUST_PROXY), dice, note, problem)
    costs = _costs(arms, cells, plan, selection=True)
    metrics = _arm_metrics(correlation, costs, TRUST_PROXY, collected)
    if verdict.passed is not None:
        metrics["trust_passed"] = 1.0 if verdict.passed else 0.0
    if verdict.value is not None:
        metrics["trust_value"] = verdict.value
    metrics["trust_threshold"] = float(config.threshold)

    lines = _header(
        "trust",
        study,
        parent_run_id,
        collected,
        "Before a heavy search: does the study's proxy rank a small calibration grid like all data with the full network?",
    )
    lines += [
        f"**Verdict: {verdict.message}.**",
        "",
        f"The verdict asks {verdict.metric}'s coefficient of {verdict.dice} Dice to reach {config.threshold:g}; computed over {verdict.over}.",
        "",
        "## What was run",
        "",
        f"- Arms: `{REFERENCE}` ({labels[REFERENCE]}) and `{TRUST_PROXY}` ({labels[TRUST_PROXY]}).",
        f"- Repeats: {config.repeats} per arm; grid: {_grid_sentence(config.grid)}.",
        "",
        *_arms_table(arms, labels, cells, plan),
        "",
    ]
    point = best_point(reference, dice) if reference else None
    table: list[TableRow] = []
    if point is not None:
        table = _table_rows({arm: arm for arm in arms}, cells, point)
        fractions = _fractions(plan)
        lines += [
            "## Dice at the reference's best grid point",
            "",
            f"Best grid point of `{REFERENCE}` by mean {dice} Dice over repeats: `{point}`; mean ± std over repeats.",
            "",
            *_dice_table(table, {arm: _percent(fractions.get(arm)) for arm in arms}, "arm"),
            "",
        ]
    lines += [f"## Correlation with the reference ({dice} Dice)", ""]
    lines += _correlation_section([TRUST_PROXY], labels, correlation, REFERENCE) + [""]
    plots: dict[str, str] = {}
    captions: dict[str, str] = {}
    if problem is None:
        name = "trust_proxy_vs_full"
        plots[name] = str(
            plot_proxy_vs_reference(proxy, reference, out / f"{name}.png", metric=dice, title=f"trust check: {verdict.message.split(':', 1)[0]}\n({verdict.metric} >= {config.threshold:g} needed)", correlation=correlation[TRUST_PROXY])
        )
        captions[name] = f"the proxy's {dice} Dice against the reference's per grid point, with the least-squares line."
    unit = _hours_label(collected)
    lines += ["## Cost", "", *_cost_section(arms, labels, costs, unit, selection=True), ""]
    lines += _plots_section(plots, captions)
    summary = _summary(correlation, costs, dice=dice, best_point=point, headline_arm=TRUST_PROXY, hours=unit, table=[row.model_dump(mode="json") for row in table])
    return _Built(markdown="\n".join(lines) + "\n", metrics=metrics, plots=plots, summary=summary, verdict=verdict)


# --------------------------------------------------------------------------------------------- the automl comparison

#: The automl comparison's pipeline tag, its reference arm (the search on all data with the full network) and
#: its arms as the paper's Table 2 heads them.
COMPARISON = "automl-comparison"
SEARCH_REFERENCE = "all-data"
SEARCH_ARM_NAMES = {"all-data": "All Data", "proxy-data": "Proxy Data", "proxy-net": "Proxy Net", "proxy-data-net": "Proxy Data&Net", "random-data": "Random Data"}
#: The arm whose numbers the parent run holds unprefixed, when the comparison has it.
SEARCH_HEADLINE = "proxy-data-net"

HyperValue = float | str | None


class ArmSearch(StrictModel):
    """One arm of the automl comparison: its search, what it found, and what that gave trained in full.

    Attributes:
        arm: the search (``all-data``, ``proxy-data``, ``proxy-net``, ``proxy-data-net``, ``random-data``).
        method, budget, train_cases, val_cases: the arm's search data from its manifest
            (``manifests/<arm>.json``: ``full`` or a selection method); None without a manifest.
        network: the network its search trials trained (their ``network`` param); None without trials.
        rounds: rounds it ran trials in; n_trials, n_failed, n_running: its search trials (a FINISHED
            trial without ``final_val_dice`` counts as failed).
        trial_hours: device hours of its search trials, failed ones too (``gpu_hours`` where above 0,
            else ``process_hours``).
        selection_hours: ``selection_seconds / 3600`` of its manifest: choosing its data, once per search.
        selection_device: where the selection ran; None when it cost nothing.
        hours: ``trial_hours + selection_hours``: the search's cost as run (the paper's Table 2 "GPU Hours").
        equal_pack_hours: the trials' hours as if every trial had run alone
            (:func:`~proxyhpo.analysis.statistics.equal_pack_hours`), plus the selection.
        speedup, speedup_equal_pack: ``all-data``'s hours over this arm's, as run and at equal pack size
            (:func:`~proxyhpo.analysis.statistics.speedup`); None without an ``all-data`` search or
            when this arm cost nothing.
        best_trial, best_round, best_val_dice: its best FINISHED search trial by ``final_val_dice`` (the
            search's reward; on ties the earliest started), its round and that Dice.
        hyperparameters: the best trial's value of each search-space name (a number for a range, the
            choice as text for a categorical); empty without a finished trial.
        distance: :func:`~proxyhpo.analysis.statistics.relative_distance` of ``hyperparameters`` to the
            ``all-data`` search's (0 for ``all-data`` itself); None when either search found nothing.
        n_final, n_final_failed: its final models (the best hyper-parameters trained in full) and how many
            produced no Dice.
        internal_mean, internal_std: the final models' ``final_val_dice`` (internal Dice, held-out
            cases), mean and sample std over repeats; external_mean, external_std: their ``test_dice``
            (external Dice; None without an external set).
        final_hyperparameters: what the final models logged as params, when they all agree; None otherwise.
        final_matches_best: whether those equal ``hyperparameters``; None when either is missing.
    """

    arm: str
    method: str | None
    budget: int | None
    train_cases: int | None
    val_cases: int | None
    network: str | None
    rounds: int
    n_trials: int
    n_failed: int
    n_running: int
    trial_hours: float
    selection_hours: float
    selection_device: str | None
    hours: float
    equal_pack_hours: float
    speedup: float | None
    speedup_equal_pack: float | None
    best_trial: str | None
    best_round: int | None
    best_val_dice: float | None
    hyperparameters: dict[str, HyperValue]
    distance: float | None
    n_final: int
    n_final_failed: int
    internal_mean: float | None
    internal_std: float | None
    external_mean: float | None
    external_std: float | None
    final_hyperparameters: dict[str, HyperValue] | None
    final_matches_best: bool | None


class _Comparison(StrictModel):
    """Every arm's search and final models, and what all the child runs cost."""

    study: StudyConfig
    arms: dict[str, ArmSearch]
    manifests: dict[str, ProxyDataManifest]
    n_trials: int
    n_failed: int
    n_running: int
    n_final: int
    n_final_failed: int
    n_final_running: int
    gpu_hours: float
    process_hours: float
    n_on_gpu: int
    n_on_cpu: int


def read_manifests(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, ProxyDataManifest]:
    """The search data of each arm of an automl comparison: the parent run's ``manifests/<arm>.json``.

    Returns:
        Arm -> its :class:`~proxyhpo.config.ProxyDataManifest`, arms sorted by name; empty when no
        selection has run yet.

    Raises:
        ProxyHPOError: when the run does not exist.
        ConfigError: when a manifest is not JSON or does not validate, naming the artifact and the key.
    """
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    _get_run(mlflow_client, parent_run_id, uri)
    return _manifests(mlflow_client, parent_run_id)


def _manifests(mlflow_client: Any, run_id: str) -> dict[str, ProxyDataManifest]:
    entries = [entry.path for entry in mlflow_client.list_artifacts(run_id, "manifests") if not entry.is_dir and entry.path.endswith(".json")]
    manifests: dict[str, ProxyDataManifest] = {}
    with tempfile.TemporaryDirectory(prefix="manifests-") as folder:
        for path in sorted(entries):
            source = f"runs:/{run_id}/{path}"
            try:
                document = json.loads(Path(mlflow_client.download_artifacts(run_id, path, folder)).read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigError(source, f"is not valid JSON ({exc})", "rerun the study") from None
            manifests[Path(path).stem] = parse_config(ProxyDataManifest, document, source, fix="rerun the study")
    return manifests


def _hyper_value(distribution: Any, text: str | None) -> HyperValue:
    """A logged param back as the search space's value: the text of a choice, a finite number for a range."""
    if text is None:
        return None
    if isinstance(distribution, Categorical):
        return text
    return _number(text)


def _hyperparameters(run: Any, space: SearchSpace) -> dict[str, HyperValue]:
    return {name: _hyper_value(distribution, run.data.params.get(name)) for name, distribution in space.items()}


def _same_setting(a: Mapping[str, HyperValue], b: Mapping[str, HyperValue]) -> bool:
    """Whether two settings agree on every name (numbers to 1e-9 relative, choices as text)."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0):
                return False
        elif x != y:
            return False
    return True


def _distance(found: Mapping[str, HyperValue], reference: Mapping[str, HyperValue], space: SearchSpace) -> float | None:
    """:func:`relative_distance` of two complete settings; None when either lacks a value."""
    if not found or not reference or any(v is None for v in (*found.values(), *reference.values())):
        return None
    try:
        return relative_distance(found, reference, space)
    except ValueError:
        return None


def _keep(chosen: dict[Any, Any], key: Any, run: Any) -> None:
    """A retried run keeps one: a finished one over any other, then the newest (runs come oldest first)."""
    held = chosen.get(key)
    if held is None or (run.info.status == "FINISHED") >= (held.info.status == "FINISHED"):
        chosen[key] = run


def _device_hours(metrics: Mapping[str, Any]) -> tuple[float, float]:
    """(gpu_hours, process_hours) of a run, each a finite number >= 0."""
    return max(0.0, _number(metrics.get("gpu_hours")) or 0.0), max(0.0, _number(metrics.get("process_hours")) or 0.0)


def _dice_of(run: Any, key: str) -> float | None:
    """The run's Dice ``key`` clipped to [0, 1]; None unless the run FINISHED and logged it."""
    if run.info.status != "FINISHED":
        return None
    value = _number(run.data.metrics.get(key))
    return None if value is None else min(1.0, max(0.0, value))


def _comparison_arms(study: StudyConfig, found: Sequence[str]) -> list[str]:
    """The configured arms in their order, then any arm with runs or a manifest that is not configured."""
    order = list(study.studies.comparison.arms)
    return order + sorted(arm for arm in set(found) if arm not in order)


def _collect_comparison(parent_run_id: str, tracking_uri: str | None) -> _Comparison:
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    parent = _get_run(mlflow_client, parent_run_id, uri)
    study = _read_study(mlflow_client, parent_run_id)
    space = study.search.space
    manifests = _manifests(mlflow_client, parent_run_id)
    trials: dict[tuple[str, str], Any] = {}
    finals: dict[tuple[str, int], Any] = {}
    other: list[Any] = []  # children of neither role still cost device hours
    for run in _children(mlflow_client, parent.info.experiment_id, parent_run_id):
        tags = run.data.tags
        arm, role = tags.get("proxyhpo.arm"), tags.get(tracking.ROLE_TAG, "trial")
        if not arm or role not in ("trial", "final"):
            other.append(run)
        elif role == "trial":
            _keep(trials, (arm, tags.get("proxyhpo.trial_id") or run.info.run_id), run)
        else:
            try:
                _keep(finals, (arm, int(tags.get("proxyhpo.repeat", "0"))), run)
            except ValueError:
                other.append(run)
    arms = _comparison_arms(study, [*manifests, *(a for a, _ in trials), *(a for a, _ in finals)])

    hours = [_device_hours(run.data.metrics) for run in (*trials.values(), *finals.values(), *other)]
    searched = [_device_hours(run.data.metrics) for run in trials.values()]
    built: dict[str, dict[str, Any]] = {}
    best_settings: dict[str, dict[str, HyperValue]] = {}
    for arm in arms:
        mine = [run for (a, _), run in trials.items() if a == arm]  # oldest first
        running = [run for run in mine if run.info.status in ("RUNNING", "SCHEDULED")]
        scored = [(run, _dice_of(run, "final_val_dice")) for run in mine]
        done = [(run, dice) for run, dice in scored if dice is not None]
        cells = []
        for run, dice in scored:
            gpu, process = _device_hours(run.data.metrics)
            pack = _number(run.data.metrics.get("pack_size"))
            cells.append(
                GridCell(
                    arm=arm, repeat=0, point=run.data.tags.get("proxyhpo.trial_id") or run.info.run_id, internal_dice=dice, external_dice=None,
                    device_hours=gpu if gpu > 0 else process, steps=max(0, int(_number(run.data.metrics.get("steps_run")) or 0)),
                    pack_size=max(1, int(pack)) if pack is not None else 1,
                )
            )
        best = None
        if done:  # the highest reward; on ties the earliest started (then the earlier round, the smaller trial id)
            best = min(done, key=lambda item: (-item[1], item[0].info.start_time or 0, _round(item[0]) or 0, item[0].data.tags.get("proxyhpo.trial_id", "")))[0]
        manifest = manifests.get(arm)
        seconds = manifest.selection_seconds if manifest is not None else 0.0
        trial_hours = math.fsum(cell.device_hours for cell in cells)
        selection_hours = seconds / 3600
        mine_finals = [run for (a, _), run in sorted(finals.items(), key=lambda item: item[0]) if a == arm]
        internal = [_dice_of(run, "final_val_dice") for run in mine_finals]
        external = [_dice_of(run, "test_dice") for run in mine_finals]
        logged = [_hyperparameters(run, space) for run in mine_finals if any(name in run.data.params for name in space.names)]
        final_setting = logged[0] if logged and all(_same_setting(logged[0], s) for s in logged[1:]) else None
        setting = _hyperparameters(best, space) if best is not None else {}
        best_settings[arm] = setting
        networks = sorted({run.data.params["network"] for run in mine if run.data.params.get("network")})
        rounds = {_round(run) for run in mine} - {None}
        internal_mean, internal_std = mean_std(internal)
        external_mean, external_std = mean_std(external)
        built[arm] = {
            "arm": arm,
            "method": manifest.method if manifest else None,
            "budget": manifest.budget if manifest else None,
            "train_cases": len(manifest.train_ids) if manifest else None,
            "val_cases": len(manifest.val_ids) if manifest else None,
            "network": ", ".join(networks) or None,
            "rounds": len(rounds),
            "n_trials": len(mine),
            "n_failed": len(mine) - len(done) - len(running),
            "n_running": len(running),
            "trial_hours": trial_hours,
            "selection_hours": selection_hours,
            "selection_device": manifest.selection_device if manifest is not None and seconds > 0 else None,
            "hours": trial_hours + selection_hours,
            "equal_pack_hours": equal_pack_hours(cells) + selection_hours,
            "best_trial": (best.data.tags.get("proxyhpo.trial_id") or best.info.run_name or best.info.run_id) if best is not None else None,
            "best_round": _round(best) if best is not None else None,
            "best_val_dice": _dice_of(best, "final_val_dice") if best is not None else None,
            "hyperparameters": setting,
            "n_final": len(mine_finals),
            "n_final_failed": sum(i is None and e is None and run.info.status not in ("RUNNING", "SCHEDULED") for i, e, run in zip(internal, external, mine_finals, strict=True)),
            "internal_mean": internal_mean,
            "internal_std": internal_std,
            "external_mean": external_mean,
            "external_std": external_std,
            "final_hyperparameters": final_setting,
            "final_matches_best": _same_setting(final_setting, setting) if final_setting is not None and setting else None,
        }
    reference = built.get(SEARCH_REFERENCE)
    out: dict[str, ArmSearch] = {}
    for arm, values in built.items():
        distance = _distance(best_settings[arm], best_settings.get(SEARCH_REFERENCE, {}), space)
        as_run = equal = None
        if reference is not None and reference["n_trials"] and values["n_trials"]:  # a search that ran no trial has no cost to compare
            as_run = speedup(reference["hours"], values["hours"])
            equal = speedup(reference["equal_pack_hours"], values["equal_pack_hours"])
        out[arm] = ArmSearch(**values, distance=distance, speedup=as_run, speedup_equal_pack=equal)
    running_finals = sum(run.info.status in ("RUNNING", "SCHEDULED") for run in finals.values())
    return _Comparison(
        study=study,
        arms=out,
        manifests=manifests,
        n_trials=len(trials),
        n_failed=sum(arm.n_failed for arm in out.values()),
        n_running=sum(arm.n_running for arm in out.values()),
        n_final=len(finals),
        n_final_failed=sum(arm.n_final_failed for arm in out.values()),
        n_final_running=running_finals,
        gpu_hours=math.fsum(gpu for gpu, _ in hours),
        process_hours=math.fsum(process for _, process in hours),
        n_on_gpu=sum(gpu > 0 for gpu, _ in searched),
        n_on_cpu=sum(gpu == 0 and process > 0 for gpu, process in searched),
    )


def _round(run: Any) -> int | None:
    try:
        return int(run.data.tags[tracking.ROUND_TAG])
    except (KeyError, ValueError):
        return None


def collect_searches(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, ArmSearch]:
    """The automl comparison's arms, read back from the parent run and its child runs alone.

    Search trials are the child runs tagged ``proxyhpo.role=trial`` with an arm; final models those
    tagged ``proxyhpo.role=final`` with an arm and a repeat; each arm's data and selection cost come
    from ``manifests/<arm>.json``, the search space from ``study.json``. Should a trial (same arm and
    ``proxyhpo.trial_id``) or a final model (same arm and repeat) have two runs (a retry), the finished
    one, else the newest, is kept. See :class:`ArmSearch` for what each number is.

    Returns:
        Arm -> its search, in ``studies.comparison.arms``' order, then any arm not configured.

    Raises:
        ProxyHPOError: when the run does not exist or has no ``study.json``.
        ConfigError: when ``study.json`` or a manifest does not validate.
    """
    return _collect_comparison(parent_run_id, tracking_uri).arms


def _value(value: HyperValue) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _space_sentence(space: SearchSpace) -> str:
    parts = []
    for name, distribution in space.items():
        if isinstance(distribution, Categorical):
            parts.append(f"{name} ∈ {{{', '.join(str(c) for c in distribution.choices)}}}")
        else:
            scale = "log scale" if distribution.type == "log_uniform" else "linear scale"
            parts.append(f"{name} ∈ [{distribution.low:g}, {distribution.high:g}] ({scale})")
    return "; ".join(parts)


def _arm_label(arm: str) -> str:
    return SEARCH_ARM_NAMES.get(arm, arm)


def _data_label(manifest: ProxyDataManifest | None) -> str:
    if manifest is None:
        return "– (no manifest logged)"
    if manifest.method == "full":
        return "all data"
    return f"{METHOD_NAMES.get(manifest.method, manifest.method)}, B = {manifest.budget}"


def _comparison_metrics(comparison: _Comparison, headline: str | None) -> dict[str, float]:
    """The parent run's metrics: the headline arm's unprefixed, every arm's under ``<name>.<arm>``, then the totals."""

    def arm_values(search: ArmSearch) -> dict[str, float | None]:
        values: dict[str, float | None] = {
            "final_val_dice": search.internal_mean,
            "final_val_dice_std": search.internal_std,
            "final_test_dice": search.external_mean,
            "final_test_dice_std": search.external_std,
            "best_val_dice": search.best_val_dice,
        }
        if search.n_trials:  # costs of searches that ran
            values |= {"device_hours_per_search": search.hours, "equal_pack_hours_per_search": search.equal_pack_hours, "selection_hours": search.selection_hours}
        if search.arm != SEARCH_REFERENCE:
            values |= {"speedup_vs_full": search.speedup, "speedup_vs_full_equal_pack": search.speedup_equal_pack, "hp_distance": search.distance}
        return values

    metrics: dict[str, float | None] = {}
    for arm, search in comparison.arms.items():
        metrics.update({f"{name}.{metric_key(arm)}": value for name, value in arm_values(search).items()})
    if headline is not None and headline in comparison.arms:
        unprefixed = ("speedup_vs_full", "speedup_vs_full_equal_pack", "final_val_dice", "final_test_dice", "hp_distance", "best_val_dice")
        metrics.update({name: value for name, value in arm_values(comparison.arms[headline]).items() if name in unprefixed})
    metrics.update(
        {
            "total_gpu_hours": comparison.gpu_hours,
            "total_process_hours": comparison.process_hours,
            "n_trials": float(comparison.n_trials),
            "n_failed_trials": float(comparison.n_failed),
            "n_final_models": float(comparison.n_final),
            "n_failed_final_models": float(comparison.n_final_failed),
        }
    )
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(float(value))}


def _automl_comparison(comparison: _Comparison, parent_run_id: str, out: Path) -> _Built:
    study = comparison.study
    config = study.studies.comparison
    space = study.search.space
    searches = comparison.arms
    arms = list(searches)
    others = [arm for arm in arms if arm != SEARCH_REFERENCE]
    headline = SEARCH_HEADLINE if SEARCH_HEADLINE in arms else next(iter(others), None)
    metrics = _comparison_metrics(comparison, headline)
    unit = _unit_label(comparison.n_on_gpu, comparison.n_on_cpu)
    planned_trials = study.search.rounds * study.search.proposals_per_round
    reference = searches.get(SEARCH_REFERENCE)

    def planned_network(arm: str) -> str:
        if arm not in SEARCH_ARMS:
            return "–"
        return NetworkConfig.full().name if SEARCH_ARMS[arm][1] == "full" else NetworkConfig.proxy(study.training.proxy_levels).name

    lines = [f"# AutoML comparison `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [
        "Will proxy data and proxy networks lead the RL search to hyper-parameters close to those it finds on all data with the "
        "full network, and at what cost? (the paper's section 4.2 and section 5, AutoML: Table 2 and Fig. 4C/D)",
        "",
        f"MLflow parent run `{parent_run_id}`: {comparison.n_trials} search trials, {comparison.n_failed} failed"
        + (f", {comparison.n_running} still running" if comparison.n_running else "")
        + f"; {comparison.n_final} final models, {comparison.n_final_failed} failed"
        + (f", {comparison.n_final_running} still running" if comparison.n_final_running else "")
        + " (failed and unfinished runs are left out of every Dice, best trial and mean below; the cost counts their device hours).",
        "",
        "## What was run",
        "",
        f"- Searches: the RL controller (RNN + REINFORCE), {study.search.rounds} rounds × {study.search.proposals_per_round} proposals "
        f"= {planned_trials} trials per arm, over {_space_sentence(space)}; its reward is each trial's validation Dice (`final_val_dice`) "
        "on the arm's own validation cases.",
        f"- Arms: {', '.join(f'`{arm}` ({_arm_label(arm)})' for arm in arms)}; the reference is `{SEARCH_REFERENCE}`, the search on all data "
        "with the full network. Proxy data is the study's selection, random data a random draw of the same budget.",
        f"- Final models: each arm's best hyper-parameters train the {study.final.network} network on all search cases for "
        f"{study.final.epochs} epochs, {config.repeats} times (same split, new initialisations); internal Dice on the held-out cases, "
        + ("external Dice on the external set." if study.data.external else "no external set configured (external Dice: –)."),
        "",
        "| arm | HP from | data | cases (train / val) | network | rounds | trials (planned) | failed | final models (planned) | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        search = searches[arm]
        manifest = comparison.manifests.get(arm)
        cases = f"{search.train_cases + search.val_cases} ({search.train_cases} / {search.val_cases})" if manifest is not None else "–"
        network = search.network or f"{planned_network(arm)} (planned)"
        lines.append(
            f"| `{arm}` | {_arm_label(arm)} | {_data_label(manifest)} | {cases} | {network} | {search.rounds} "
            f"| {search.n_trials} ({planned_trials}) | {search.n_failed} | {search.n_final} ({config.repeats}) | {search.n_final_failed} |"
        )
    lines.append("")

    header = "| HP from: | " + " | ".join(_arm_label(arm) for arm in arms) + " |"
    rule = "| --- | " + " | ".join("---" for _ in arms) + " |"
    lines += [
        "## Table 2: the hyper-parameters each search found, trained in full",
        "",
        f"Each arm's best hyper-parameters train the final model on all data; mean ± std over its {config.repeats} repeats "
        f"(failed final models left out). Hours are **{unit}** per search: the arm's search trials plus choosing its data; "
        "the final models are not counted.",
        "",
        header,
        rule,
        "| MSD Dice (internal) | " + " | ".join(_dice(searches[a].internal_mean, searches[a].internal_std) for a in arms) + " |",
        "| External Dice | " + " | ".join(_dice(searches[a].external_mean, searches[a].external_std) for a in arms) + " |",
        f"| {'device hours' if unit.startswith('device hours') else unit} per search | " + " | ".join(_hours(searches[a].hours) for a in arms) + " |",
        f"| speed-up vs `{SEARCH_REFERENCE}` | " + " | ".join(_times(searches[a].speedup) for a in arms) + " |",
        "| speed-up at equal pack size | " + " | ".join(_times(searches[a].speedup_equal_pack) for a in arms) + " |",
        "",
    ]
    if headline is not None:
        lines += [f"Headline arm (the parent run's unprefixed metrics): `{headline}`.", ""]

    names = list(space.names)
    lines += [
        "## Hyper-parameters found (Fig. 4C/D)",
        "",
        "Each search's best trial: its highest validation Dice among FINISHED trials (the controller's reward; ties: the earliest "
        "started). The search Dice is each search's own validation, on its own cases and network, so it does not compare across arms. "
        f"Relative distance to `{SEARCH_REFERENCE}`'s: each value mapped to [0, 1] on its range's scale (a choice: 0 when equal, 1 "
        "otherwise), the Euclidean distance over √(number of hyper-parameters); 0 = the same setting, 1 = opposite corners.",
        "",
        "| arm | HP from | best trial | round | search Dice | " + " | ".join(names) + f" | distance to `{SEARCH_REFERENCE}` | final models trained with |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- | --- |",
    ]
    for arm in arms:
        search = searches[arm]
        if search.best_trial is None:
            lines.append(f"| `{arm}` | {_arm_label(arm)} | no finished trial | | | " + " | ".join("" for _ in names) + " | – | – |")
            continue
        if search.n_final == 0:
            trained = "–"
        elif search.final_matches_best is None:
            trained = "not logged alike by every final model"
        elif search.final_matches_best:
            trained = "the best trial's"
        else:
            trained = "other values: " + ", ".join(f"{n} = {_value(v)}" for n, v in (search.final_hyperparameters or {}).items())
        distance = "–" if search.distance is None else f"{search.distance:.3f}"
        lines.append(
            f"| `{arm}` | {_arm_label(arm)} | `{search.best_trial}` | {'–' if search.best_round is None else search.best_round} "
            f"| {_dice(search.best_val_dice, None)} | " + " | ".join(_value(search.hyperparameters.get(n)) for n in names) + f" | {distance} | {trained} |"
        )
    if reference is None or reference.best_trial is None:
        lines += ["", f"No `{SEARCH_REFERENCE}` trial finished: there is no reference to measure distances from."]
    lines.append("")

    lines += [
        "## Cost",
        "",
        f"Hours are **{unit}**"
        + (": the trials ran on a GPU." if unit == "GPU-hours" else ": the trials ran on the CPU, so each trial is charged its share of the wall-clock hours." if unit.startswith("device wall") else ".")
        + " A search is one arm's rounds of trials (failed ones count: they used the device) plus choosing its data (`selection_seconds` "
        "of its manifest, once).",
        "",
        f"| arm | HP from | trials | selection (device) | total per search | speed-up vs `{SEARCH_REFERENCE}` | at equal pack size: per search | speed-up |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        search = searches[arm]
        lines.append(
            f"| `{arm}` | {_arm_label(arm)} | {_hours(search.trial_hours)} | {_hours(search.selection_hours)} ({search.selection_device or '–'}) "
            f"| {_hours(search.hours)} | {_times(search.speedup)} | {_hours(search.equal_pack_hours)} | {_times(search.speedup_equal_pack)} |"
        )
    lines += [
        "",
        f"Speed-up as run: `{SEARCH_REFERENCE}`'s hours per search over the arm's (packing included). At equal pack size every trial is "
        "charged as if it had run alone, each of its steps costing what a step of its pack cost (an upper bound), so the speed-up "
        "credits only what smaller data and networks save. "
        f"All child runs (searches and final models) used {_hours(comparison.gpu_hours)} GPU-hours and {_hours(comparison.process_hours)} process-hours.",
        "",
    ]

    plots: dict[str, str] = {}
    distances: dict[str, list[float]] = {}
    for arm in others:
        distance = searches[arm].distance
        if distance is not None:
            distances[f"{_arm_label(arm)}\n({arm})"] = [distance]
    if distances:
        name = "fig4_hp_distance"
        plots[name] = str(
            plot_hyperparameter_distance(
                distances, out / f"{name}.png",
                title=f"best hyper-parameters found, distance to {SEARCH_REFERENCE}'s\n({', '.join(names)})",
            )
        )
    lines += ["## Plots", ""]
    if plots:
        lines.append(
            f"- [fig4_hp_distance.png](fig4_hp_distance.png): Fig. 4C/D: each search's relative distance to `{SEARCH_REFERENCE}`'s hyper-parameters, "
            "one dot per search (the reference, at 0, left out)."
        )
    else:
        lines.append(f"No plot: no search other than `{SEARCH_REFERENCE}` has a distance to it.")
    summary = {
        "arms": {arm: search.model_dump(mode="json") for arm, search in searches.items()},
        "manifests": {arm: {"method": m.method, "budget": m.budget, "selection_seconds": m.selection_seconds, "selection_device": m.selection_device} for arm, m in comparison.manifests.items()},
        "reference_arm": SEARCH_REFERENCE,
        "headline_arm": headline,
        "hours": unit,
        "n_final_models": comparison.n_final,
        "n_failed_final_models": comparison.n_final_failed,
    }
    return _Built(markdown="\n".join(lines) + "\n", metrics=metrics, plots=plots, summary=summary)


_BUILDERS = {"proxy-data-study": _proxy_data, "proxy-net-study": _proxy_net, "trust": _trust}
#: Every kind this module reports on: the grid studies, then the automl comparison.
_KINDS = (*_BUILDERS, COMPARISON)


def _build(parent_run_id: str, out_dir: str | os.PathLike[str], tracking_uri: str | None) -> tuple[StudyReport, dict[str, Any]]:
    uri = tracking_uri or paths.tracking_uri()
    parent = _get_run(tracking.client(uri), parent_run_id, uri)
    kind = parent.data.tags.get(tracking.PIPELINE_TAG)
    if kind not in _KINDS:
        raise ProxyHPOError(
            f"MLflow run {parent_run_id} is a {kind or 'untagged'} run, not one of the comparison studies this report covers "
            f"({', '.join(_KINDS)})"
        )
    if kind == COMPARISON:
        return _build_comparison(parent_run_id, out_dir, uri)
    study, plan = read_plan(parent_run_id, uri)
    collected = _collect(parent_run_id, uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = _BUILDERS[kind](study, plan, collected, parent_run_id, out)
    report = StudyReport(kind=kind, markdown=built.markdown, metrics=built.metrics, plots=built.plots, verdict=built.verdict)
    summary = {
        "kind": kind,
        "study": study.name,
        "parent_run_id": parent_run_id,
        "n_trials": collected.n_trials,
        "n_failed": collected.n_failed,
        "n_running": collected.n_running,
        "total_gpu_hours": collected.gpu_hours,
        "total_process_hours": collected.process_hours,
        "metrics": built.metrics,
        "verdict": built.verdict.model_dump(mode="json") if built.verdict else None,
        "plots": sorted(Path(path).name for path in built.plots.values()),
        **built.summary,
    }
    return report, summary


def _build_comparison(parent_run_id: str, out_dir: str | os.PathLike[str], uri: str) -> tuple[StudyReport, dict[str, Any]]:
    comparison = _collect_comparison(parent_run_id, uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = _automl_comparison(comparison, parent_run_id, out)
    report = StudyReport(kind=COMPARISON, markdown=built.markdown, metrics=built.metrics, plots=built.plots)
    summary = {
        "kind": COMPARISON,
        "study": comparison.study.name,
        "parent_run_id": parent_run_id,
        "n_trials": comparison.n_trials,
        "n_failed": comparison.n_failed,
        "n_running": comparison.n_running,
        "total_gpu_hours": comparison.gpu_hours,
        "total_process_hours": comparison.process_hours,
        "metrics": built.metrics,
        "verdict": None,
        "plots": sorted(Path(path).name for path in built.plots.values()),
        **built.summary,
    }
    return report, summary


def build_study_report(parent_run_id: str, out_dir: str | os.PathLike[str], tracking_uri: str | None = None) -> StudyReport:
    """Build a comparison study's report from MLflow alone: ``report.md`` and the plots in ``out_dir``.

    Reads the parent run (its ``proxyhpo.pipeline`` tag picks the study), its ``study.json`` and
    ``cells.json``, and its child runs; logs nothing (see :func:`write_study_report`).

    - ``proxy-data-study``: every proxy arm against ``full`` on external Dice (internal when none was
      logged); Table 1 at ``full``'s best grid point for each method at ``studies.proxy_data.budget_of_table``;
      Fig. 2 per method at that budget; Fig. 4A/B; cost with the selection's. Headline arm:
      ``<selection.method>-<budget_of_table>`` when present, else the first proxy arm.
    - ``proxy-net-study``: ``proxy-L5/L4/L3`` against ``full`` on internal Dice; Fig. 3; cost. Headline:
      the deepest proxy network.
    - ``trust``: ``proxy`` against ``full`` with ``studies.trust``'s coefficient, Dice and threshold, the
      verdict and the scatter plot; cost.
    - ``automl-comparison`` (reads ``study.json`` and ``manifests/<arm>.json``, no ``cells.json``): what
      each arm searched on; Table 2 (the final models' internal Dice ``final_val_dice`` and external Dice
      ``test_dice``, mean ± std over repeats; device hours per search = the arm's search trials, failed
      ones too, plus its manifest's ``selection_seconds / 3600``; speed-ups over ``all-data`` as run and
      at equal pack size, by :func:`~proxyhpo.analysis.statistics.speedup` over
      :func:`~proxyhpo.analysis.statistics.equal_pack_hours` of the trials as :class:`GridCell` records);
      each search's best FINISHED trial by ``final_val_dice`` (ties: the earliest started), its
      hyper-parameters and their :func:`~proxyhpo.analysis.statistics.relative_distance` to the
      ``all-data`` search's, Fig. 4C/D (``fig4_hp_distance``); cost. Headline arm: ``proxy-data-net`` when
      an arm, else the first arm other than ``all-data``; its ``speedup_vs_full``,
      ``speedup_vs_full_equal_pack``, ``final_val_dice``, ``final_test_dice``, ``hp_distance`` and
      ``best_val_dice`` go unprefixed, every arm's (with ``_std``s, ``device_hours_per_search``,
      ``equal_pack_hours_per_search``, ``selection_hours``) under ``<name>.<arm>``; then
      ``total_gpu_hours``/``total_process_hours`` (every child run, final models included), ``n_trials``,
      ``n_failed_trials`` (search trials), ``n_final_models``, ``n_failed_final_models``.

    Args:
        parent_run_id: the comparison study's parent run.
        out_dir: where ``report.md`` and the PNGs are written (created if needed).
        tracking_uri: the MLflow store (default: the environment's or the embedded one).

    Raises:
        ProxyHPOError: when the run does not exist, is not a comparison study, or lacks its plan
            (its ``study.json``, and ``cells.json`` but for the automl comparison).
        ConfigError: when its ``study.json``, ``cells.json`` or a manifest does not validate.
    """
    report, _ = _build(parent_run_id, out_dir, tracking_uri)
    storage.atomic_write_text(Path(out_dir) / "report.md", report.markdown)
    return report


def _html(title: str, markdown: str, plots: Mapping[str, str]) -> str:
    """A self-contained page: every PNG inlined as base64, the Markdown in <pre>."""
    import base64
    import html

    images = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}'/>"
        f"<figcaption>{html.escape(Path(path).name)}</figcaption></figure>"
        for name, path in plots.items()
    )
    return (
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"{images}<pre>{html.escape(markdown)}</pre></body></html>"
    )


def write_study_report(
    parent_run_id: str, *, markdown: str | os.PathLike[str], html: str | os.PathLike[str], tracking_uri: str | None = None
) -> StudyReport:
    """The comparison pipelines' report step: build the report, log it on the parent run and close the run.

    The metrics go to the parent in one ``log_batch``; ``report.md``, the plots and ``summary.json`` as
    artifacts; then the parent is marked FINISHED. The Markdown and a self-contained HTML page (PNGs
    inlined, the Markdown in ``<pre>``) are written atomically to ``markdown`` and ``html``, for the
    Kubeflow UI.

    Returns:
        The report; its ``plots`` name files of a temporary folder that is gone by then (the PNGs are on
        the parent run as artifacts).
    """
    from mlflow.entities import Metric as MlflowMetric

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    with tempfile.TemporaryDirectory(prefix="study-report-") as folder:
        out = Path(folder)
        report, summary = _build(parent_run_id, out, uri)
        report_path = storage.atomic_write_text(out / "report.md", report.markdown)
        summary_path = storage.atomic_write_json(out / "summary.json", summary)
        now = int(time.time() * 1000)
        batch = [MlflowMetric(key, value, now, 0) for key, value in report.metrics.items()]
        for start in range(0, len(batch), 1000):  # MLflow's limit per batch; one batch for any real study
            mlflow_client.log_batch(parent_run_id, metrics=batch[start : start + 1000])
        for path in (report_path, *report.plots.values(), summary_path):
            mlflow_client.log_artifact(parent_run_id, str(path))
        tracking.finish_run(parent_run_id, tracking_uri=uri)
        title = report.markdown.splitlines()[0].lstrip("# ").replace("`", "")
        page = _html(title, report.markdown, report.plots)
    storage.atomic_write_text(markdown, report.markdown)
    storage.atomic_write_text(html, page)
    return report


def latest_study_run(experiment: str, tracking_uri: str | None = None) -> str:
    """The id of the newest parent run (tag ``proxyhpo.role=study``, any pipeline) of ``experiment``.

    Raises:
        ProxyHPOError: when the experiment does not exist or holds no study run.
    """
    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        raise ProxyHPOError(f"no MLflow experiment {experiment!r} in {uri}")
    runs = mlflow_client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{tracking.ROLE_TAG}` = 'study'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise ProxyHPOError(f"MLflow experiment {experiment!r} in {uri} holds no study run (tag {tracking.ROLE_TAG}=study)")
    return runs[0].info.run_id


def render_report(experiment_or_run: str, tracking_uri: str | None = None) -> str:
    """The Markdown report of an experiment's newest study run, or of a given parent run, from MLflow alone.

    For ``proxyhpo report EXPERIMENT``: an experiment name picks its newest study run; anything else is
    taken as a run id. The report of a ``proxy-data-study``, ``proxy-net-study``, ``trust`` or
    ``automl-comparison`` run is built
    afresh (in a temporary folder, nothing logged); any other pipeline's (``hpo``) is the ``report.md``
    its report step logged.

    Raises:
        ProxyHPOError: when it names neither an experiment nor a run, or the run has no report yet.
    """
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = tracking.client(uri)
    if mlflow_client.get_experiment_by_name(experiment_or_run) is not None:
        run_id = latest_study_run(experiment_or_run, uri)
    else:
        try:
            run_id = mlflow_client.get_run(experiment_or_run).info.run_id
        except MlflowException:
            raise ProxyHPOError(f"{experiment_or_run!r} is neither an MLflow experiment nor a run in {uri}") from None
    kind = mlflow_client.get_run(run_id).data.tags.get(tracking.PIPELINE_TAG)
    if kind in _KINDS:
        with tempfile.TemporaryDirectory(prefix="study-report-") as folder:
            return build_study_report(run_id, folder, uri).markdown
    text = _artifact_text(mlflow_client, run_id, "report.md")
    if text is None:
        raise ProxyHPOError(f"MLflow run {run_id} ({kind or 'untagged'}) has no report.md yet: its pipeline has not reached its report step")
    return text

