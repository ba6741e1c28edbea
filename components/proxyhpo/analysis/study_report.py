"""The report of the paper's grid studies (section 5: Table 1, Figs. 2, 3 and 4A/B), built from MLflow alone.

A grid study's parent run (tag ``proxyhpo.pipeline`` = ``proxy-data-study``, ``proxy-net-study`` or
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

The entry points cover the automl comparison too (tag ``automl-comparison``), whose report
:mod:`~proxyhpo.analysis.comparison_report` builds: :func:`build_study_report` only reads MLflow;
:func:`write_study_report` (the pipeline's report step) also logs the report on the parent run and closes
it; :func:`render_report` serves ``proxyhpo report``.

Example:
    >>> report = build_study_report(parent_run_id, "out")  # doctest: +SKIP
    >>> report.metrics["spearman_rho"], report.plots["fig4_data_usage"]  # doctest: +SKIP
    (0.83, 'out/fig4_data_usage.png')
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxyhpo import paths, storage, tracking
from proxyhpo.analysis._report_io import (
    METHOD_NAMES,
    Built,
    RunTotals,
    arm_metrics,
    artifact_json,
    artifact_text,
    children,
    device_hours,
    dice_of,
    format_dice,
    format_hours,
    format_times,
    heading,
    is_running,
    keep_run,
    parent_run,
    plots_section,
    read_study,
    speedup_note,
    trial_cell,
    unit_sentence,
)
from proxyhpo.analysis.comparison_report import COMPARISON, build_comparison
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
    speedup,
    table_at_point,
)
from proxyhpo.analysis.study_plots import plot_dice_vs_data_usage, plot_proxy_networks, plot_proxy_vs_reference
from proxyhpo.config import StrictModel, StudyCell, StudyConfig, grid_points, parse_config
from proxyhpo.errors import ConfigError, ProxyHPOError

__all__ = [
    "ArmCost",
    "StudyReport",
    "TrustVerdict",
    "collect_cells",
    "read_plan",
    "trust_verdict",
    "build_study_report",
    "write_study_report",
    "latest_study_run",
    "render_report",
]

#: The reference arm of every grid study: all data, the full U-Net.
REFERENCE = "full"
#: The proxy arm of the trust check.
TRUST_PROXY = "proxy"
#: Bootstrap settings of every interval in the report (fixed seed: the same runs give the same report).
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
_SYMBOLS = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ"}
_TITLES = {"proxy-data-study": "Proxy data study", "proxy-net-study": "Proxy network study", "trust": "Trust check"}


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


class _Collected(RunTotals):
    """The cells by arm, and what the trial runs amount to (how many failed, what they cost)."""

    cells: dict[str, list[GridCell]]


def _collect(parent_run_id: str, tracking_uri: str | None) -> _Collected:
    mlflow_client, parent = parent_run(parent_run_id, tracking_uri)
    chosen: dict[tuple[str, int, str], Any] = {}
    for run in children(mlflow_client, parent):
        tags = run.data.tags
        if tags.get(tracking.ROLE_TAG, "trial") != "trial" or "proxyhpo.arm" not in tags or "proxyhpo.point" not in tags:
            continue
        try:
            key = (tags["proxyhpo.arm"], int(tags.get("proxyhpo.repeat", "0")), tags["proxyhpo.point"])
        except ValueError:
            continue
        keep_run(chosen, key, run)
    cells: dict[str, list[GridCell]] = {}
    n_failed = n_running = n_gpu = n_cpu = 0
    gpu_total = process_total = 0.0
    for (arm, repeat, point), run in sorted(chosen.items(), key=lambda item: item[0]):
        internal, external = dice_of(run, "final_val_dice"), dice_of(run, "test_dice")
        if is_running(run):
            n_running += 1
        elif internal is None and external is None:
            n_failed += 1
        gpu, process = device_hours(run.data.metrics)
        gpu_total += gpu
        process_total += process
        n_gpu += gpu > 0
        n_cpu += gpu == 0 and process > 0
        cells.setdefault(arm, []).append(trial_cell(run, arm, repeat, point, internal, external))
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


def read_plan(parent_run_id: str, tracking_uri: str | None = None) -> tuple[StudyConfig, list[StudyCell]]:
    """The study config (``study.json``) and the plan (``cells.json``) logged on a comparison study's parent run.

    Raises:
        ProxyHPOError: when the run does not exist or lacks either artifact.
        ConfigError: when either does not validate, naming the artifact and the key.
    """
    mlflow_client, _ = parent_run(parent_run_id, tracking_uri)
    study = read_study(mlflow_client, parent_run_id)
    plan = artifact_json(mlflow_client, parent_run_id, "cells.json")
    if not isinstance(plan, list):
        raise ConfigError(f"runs:/{parent_run_id}/cells.json", f"must be a JSON list of cells, got {type(plan).__name__}", "rerun the study")
    cells = [parse_config(StudyCell, cell, f"runs:/{parent_run_id}/cells.json[{i}]", fix="rerun the study") for i, cell in enumerate(plan)]
    return study, cells


# --------------------------------------------------------------------------------------------- numbers


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


def _has(cells: Sequence[GridCell], metric: Metric) -> bool:
    return any(cell.dice(metric) is not None for cell in cells)


def _correlate(proxy: Sequence[GridCell], reference: Sequence[GridCell], metric: Metric) -> dict[str, Correlation]:
    return correlations(proxy, reference, metric=metric, confidence=CONFIDENCE, resamples=RESAMPLES, seed=SEED)


def _arm_metrics(
    correlation: Mapping[str, Mapping[str, Correlation]], costs: Mapping[str, ArmCost], headline: str | None, collected: _Collected
) -> dict[str, float]:
    """The parent run's metrics: the headline arm's unprefixed, every arm's under ``<name>.<arm>``."""

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

    per_arm = {arm: arm_values(arm) for arm in dict.fromkeys([*correlation, *costs])}
    headline_values = {}
    if headline is not None:
        headline_values = {name: value for name, value in arm_values(headline).items() if name != "device_hours_per_repeat"}
    return arm_metrics(per_arm, headline_values, collected.metrics())


# --------------------------------------------------------------------------------------------- Markdown pieces


def _coefficient(result: Correlation | None) -> str:
    if result is None or result.value is None:
        return "undefined"
    interval = f" [{result.low:.2f}, {result.high:.2f}]" if result.low is not None and result.high is not None else ""
    return f"{result.value:.2f}{interval}"


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
        f"| {row.arm} | {data.get(row.arm, '–')} | {format_dice(row.internal_mean, row.internal_std)} | {format_dice(row.external_mean, row.external_std)} | {row.n} ({row.n_failed}) |"
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
        unit_sentence(unit)
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
        chosen = f"{format_hours(cost.selection_hours)} ({cost.selection_device or '–'}) | " if selection else ""
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {cost.repeats} | {format_hours(cost.trial_hours)} | {chosen}{format_hours(cost.hours)} | {format_times(cost.speedup)} "
            f"| {format_hours(cost.equal_pack_hours)} | {format_times(cost.speedup_equal_pack)} | {format_hours(cost.total_hours)} |"
        )
    return [*lines, "", speedup_note(REFERENCE)]


def _plots_section(plots: Mapping[str, str], captions: Mapping[str, str]) -> list[str]:
    return plots_section(plots, captions, "No plot: no grid point finished in the reference arm.")


def _header(kind: str, study: StudyConfig, parent_run_id: str, collected: _Collected, question: str) -> list[str]:
    return heading(_TITLES[kind], study, question) + [
        f"MLflow parent run `{parent_run_id}`: {collected.n_trials} trials, {collected.n_failed} failed"
        + (f", {collected.n_running} still running" if collected.n_running else "")
        + " (failed and unfinished trials are left out of every Dice, mean and correlation below; the cost counts their device hours).",
        "",
    ]


# --------------------------------------------------------------------------------------------- the three studies


class _Built(Built):
    """A grid study's report as built, with the trust check's verdict (None for the other studies)."""

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
                row.append(f"{format_dice(mean, std)} ({_percent(fractions.get(arm))})")
                if arm in fractions:
                    rows.append((METHOD_NAMES.get(method, method), fractions[arm], mean, std))
            lines.append(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(row) + " |")
        full_mean, full_std = mean_std(c.dice(metric) for c in reference if c.point == point)
        lines += ["", f"Full Dataset (100%): {format_dice(full_mean, full_std)}.", ""]
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

    unit = collected.unit
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
    unit = collected.unit
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


def trust_verdict(study: StudyConfig, cells: Mapping[str, Sequence[GridCell]]) -> TrustVerdict:
    """The trust check's verdict on a study's calibration cells (arms ``full`` and ``proxy``), by ``studies.trust``.

    External Dice is used when asked for and logged by both arms, internal Dice otherwise (and ``over``
    says so). The verdict is undecided (``passed`` None) when an arm has no trial or the correlation is
    undefined.
    """
    return _trust_check(study, cells)[0]


def _trust_check(study: StudyConfig, cells: Mapping[str, Sequence[GridCell]]) -> tuple[TrustVerdict, dict[str, Correlation] | None]:
    """:func:`trust_verdict`, and the proxy's correlations it rests on (None when an arm has no trial)."""
    config = study.studies.trust
    reference, proxy = list(cells.get(REFERENCE, [])), list(cells.get(TRUST_PROXY, []))
    dice: Metric = config.dice
    note = ""
    if dice == "external" and not (_has(reference, "external") and _has(proxy, "external")):
        dice, note = "internal", "internal Dice (external was asked, but the study logged no external Dice); "
    problem = None if proxy and reference else f"no trials in the {'proxy' if not proxy else REFERENCE} arm"
    correlation = _correlate(proxy, reference, dice) if problem is None else None
    return _verdict(config, correlation, dice, note, problem), correlation


def _trust(study: StudyConfig, plan: list[StudyCell], collected: _Collected, parent_run_id: str, out: Path) -> _Built:
    config = study.studies.trust
    cells = collected.cells
    reference, proxy = cells.get(REFERENCE, []), cells.get(TRUST_PROXY, [])
    verdict, result = _trust_check(study, cells)
    dice = verdict.dice
    arms = _arm_order(plan, cells)
    networks = _networks(plan)
    labels = {REFERENCE: "all data, full network", TRUST_PROXY: f"the study's proxy: {study.training.data} data"
              + (f" ({study.selection.method}, B = {study.selection.budget})" if study.training.data == "proxy" else "")
              + f", {networks.get(TRUST_PROXY, study.training.network)} network"}
    correlation = {TRUST_PROXY: result} if result is not None else {}
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
    if result is not None:
        name = "trust_proxy_vs_full"
        plots[name] = str(
            plot_proxy_vs_reference(proxy, reference, out / f"{name}.png", metric=dice, title=f"trust check: {verdict.message.split(':', 1)[0]}\n({verdict.metric} >= {config.threshold:g} needed)", correlation=correlation[TRUST_PROXY])
        )
        captions[name] = f"the proxy's {dice} Dice against the reference's per grid point, with the least-squares line."
    unit = collected.unit
    lines += ["## Cost", "", *_cost_section(arms, labels, costs, unit, selection=True), ""]
    lines += _plots_section(plots, captions)
    summary = _summary(correlation, costs, dice=dice, best_point=point, headline_arm=TRUST_PROXY, hours=unit, table=[row.model_dump(mode="json") for row in table])
    return _Built(markdown="\n".join(lines) + "\n", metrics=metrics, plots=plots, summary=summary, verdict=verdict)


# --------------------------------------------------------------------------------------------- the entry points


_BUILDERS = {"proxy-data-study": _proxy_data, "proxy-net-study": _proxy_net, "trust": _trust}
#: Every kind this module reports on: the grid studies, then the automl comparison.
_KINDS = (*_BUILDERS, COMPARISON)


def _build(parent_run_id: str, out_dir: str | os.PathLike[str], tracking_uri: str | None) -> tuple[StudyReport, dict[str, Any]]:
    """The report of the parent run's study, picked by its pipeline tag, and its ``summary.json``."""
    _, parent = parent_run(parent_run_id, tracking_uri)
    kind = parent.data.tags.get(tracking.PIPELINE_TAG)
    if kind not in _KINDS:
        raise ProxyHPOError(
            f"MLflow run {parent_run_id} is a {kind or 'untagged'} run, not one of the comparison studies this report covers "
            f"({', '.join(_KINDS)})"
        )
    out = Path(out_dir)
    verdict = None
    if kind == COMPARISON:
        study, totals, built = build_comparison(parent_run_id, out, tracking_uri)
    else:
        study, plan = read_plan(parent_run_id, tracking_uri)
        totals = _collect(parent_run_id, tracking_uri)
        out.mkdir(parents=True, exist_ok=True)
        built = _BUILDERS[kind](study, plan, totals, parent_run_id, out)
        verdict = built.verdict
    report = StudyReport(kind=kind, markdown=built.markdown, metrics=built.metrics, plots=built.plots, verdict=verdict)
    summary = {
        "kind": kind,
        "study": study.name,
        "parent_run_id": parent_run_id,
        "n_trials": totals.n_trials,
        "n_failed": totals.n_failed,
        "n_running": totals.n_running,
        "total_gpu_hours": totals.gpu_hours,
        "total_process_hours": totals.process_hours,
        "metrics": built.metrics,
        "verdict": verdict.model_dump(mode="json") if verdict else None,
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
    - ``automl-comparison`` (built by :mod:`~proxyhpo.analysis.comparison_report`; reads ``study.json``
      and ``manifests/<arm>.json``, no ``cells.json``): what each arm searched on; Table 2 (the final models' internal Dice ``final_val_dice`` and external Dice
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
    text = artifact_text(mlflow_client, run_id, "report.md")
    if text is None:
        raise ProxyHPOError(f"MLflow run {run_id} ({kind or 'untagged'}) has no report.md yet: its pipeline has not reached its report step")
    return text

