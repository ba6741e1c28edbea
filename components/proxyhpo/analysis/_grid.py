"""What the grid studies' reports share (proxy data study, proxy network study, trust check).

A grid study's parent run holds its config (``study.json``) and its plan (``cells.json``: every
:class:`~proxyhpo.config.StudyCell`); each trained model is a child run tagged with its arm, repeat and
grid point and carrying its Dice and device hours. :func:`collect_run` reads them back as a frozen
:class:`GridRun`; the numbers every grid report computes from it (costs, correlations, the table at a grid
point, the parent run's metrics) and the Markdown sections they share are here. Private to
:mod:`proxyhpo.analysis`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from proxyhpo.analysis._markdown import arm_metrics, dice_name, format_dice, format_hours, format_times, heading, percent, speedup_note, unit_sentence
from proxyhpo.analysis._report_io import (
    Outcome,
    TrialCounts,
    artifact_json,
    children,
    class_dice_of,
    device_hours,
    dice_of,
    keep_run,
    outcome,
    parent_run,
    read_study,
    trial_cell,
)
from proxyhpo.analysis.costs import RunHours, SearchCost, search_cost, with_speedups
from proxyhpo.analysis.statistics import Correlation, GridCell, Metric, TableRow, correlation_metrics, correlations, mean_std, table_at_point
from proxyhpo.config import StrictModel, StudyCell, StudyConfig, grid_points, parse_config
from proxyhpo.errors import ConfigError
from proxyhpo.tracking import names

#: The reference arm of every grid study: all data, the full U-Net.
REFERENCE = "full"
#: Bootstrap settings of every interval in the report (fixed seed: the same runs give the same report).
RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
#: The plan a grid study's parent run logs.
PLAN_ARTIFACT = "cells.json"
#: A trial's per-class Dice metrics (:func:`~proxyhpo.analysis._report_io.class_dice_of`) by the cell's Dice they break
#: down: its last validation's (``internal``, the cell's validation Dice) and the external set's.
_CLASS_METRICS: dict[Metric, str] = {"internal": names.VAL_DICE, "external": names.TEST_DICE}

#: A cell's Dice per class of a multi-class task: ``{"internal" | "external": {class: Dice}}``; empty for a binary task.
ClassDice = dict[str, dict[str, float]]
_SYMBOLS = {"pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ"}


class GridRun(StrictModel):
    """A grid study as MLflow holds it: config, plan, the trained models by arm, and what the trial runs amount to.

    Attributes:
        parent_run_id: the study's parent run.
        study, plan: ``study.json`` and ``cells.json``.
        cells: arm -> its trials as :class:`GridCell` records, arms sorted by name, cells by repeat then point.
        outcomes: arm -> how each of its cells' trials ended, in the order of ``cells`` (a cell without a Dice
            may have failed, been stopped early or still be running: the cell alone cannot tell).
        counts: how the trials ended; by_arm: the same per arm.
        hours: the device hours of the trial runs.
        class_dice: arm -> each of its cells' Dice per class (:data:`ClassDice`), in the order of ``cells``: a
            multi-class task's ``val_dice_class_<name>`` (last validation) as ``internal`` and ``test_dice_class_<name>``
            as ``external``; empty for a cell without a Dice (failed, stopped early, running) and for a binary task.
    """

    parent_run_id: str
    study: StudyConfig
    plan: tuple[StudyCell, ...]
    cells: dict[str, tuple[GridCell, ...]]
    outcomes: dict[str, tuple[Outcome, ...]]
    counts: TrialCounts
    by_arm: dict[str, TrialCounts]
    hours: RunHours
    class_dice: dict[str, tuple[ClassDice, ...]] = {}


def read_plan(parent_run_id: str, tracking_uri: str | None = None) -> tuple[StudyConfig, list[StudyCell]]:
    """The study config (``study.json``) and the plan (``cells.json``) logged on a grid study's parent run.

    Raises:
        ProxyHPOError: when the run does not exist or lacks either artifact.
        ConfigError: when either does not validate, naming the artifact and the key.
    """
    mlflow_client, _ = parent_run(parent_run_id, tracking_uri)
    study = read_study(mlflow_client, parent_run_id)
    plan = artifact_json(mlflow_client, parent_run_id, PLAN_ARTIFACT)
    source = f"runs:/{parent_run_id}/{PLAN_ARTIFACT}"
    if not isinstance(plan, list):
        raise ConfigError(source, f"must be a JSON list of cells, got {type(plan).__name__}", "rerun the study")
    cells = [parse_config(StudyCell, cell, f"{source}[{i}]", fix="rerun the study") for i, cell in enumerate(plan)]
    return study, cells


def collect_run(parent_run_id: str, tracking_uri: str | None = None) -> GridRun:
    """The grid study's config, plan and trials, read back from its parent run and child runs.

    Every child run tagged ``proxyhpo.role=trial`` with an arm and a grid point becomes one
    :class:`GridCell` (see :func:`~proxyhpo.analysis._report_io.trial_cell`): Dice from ``final_val_dice``
    (the trial's validation cases: the cell's ``internal_dice``) and ``test_dice`` (external), both None unless
    the run FINISHED and was not stopped early; how each trial ended goes to :attr:`GridRun.outcomes`.
    Should a cell have two runs (a retry), the finished one, else the newest, is kept.

    Args:
        parent_run_id: the study's parent run.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).

    Raises:
        ProxyHPOError: when the parent run does not exist or lacks its plan.
        ConfigError: when the plan does not validate.
    """
    study, plan = read_plan(parent_run_id, tracking_uri)
    cells, outcomes, hours, class_dice = _read_cells(parent_run_id, tracking_uri)
    by_arm = {arm: TrialCounts.of(found) for arm, found in outcomes.items()}
    return GridRun(
        parent_run_id=parent_run_id,
        study=study,
        plan=tuple(plan),
        cells={arm: tuple(found) for arm, found in cells.items()},
        outcomes={arm: tuple(found) for arm, found in outcomes.items()},
        counts=sum(by_arm.values(), TrialCounts()),
        by_arm=by_arm,
        hours=hours,
        class_dice={arm: tuple(found) for arm, found in class_dice.items()},
    )


def _read_cells(
    parent_run_id: str, tracking_uri: str | None
) -> tuple[dict[str, list[GridCell]], dict[str, list[Outcome]], RunHours, dict[str, list[ClassDice]]]:
    """The trials by arm, how each ended and its Dice per class (both in the same order), and their device hours."""
    mlflow_client, parent = parent_run(parent_run_id, tracking_uri)
    chosen: dict[tuple[str, int, str], Any] = {}
    for run in children(mlflow_client, parent):
        tags = run.data.tags
        if tags.get(names.ROLE_TAG, names.ROLE_TRIAL) != names.ROLE_TRIAL or names.ARM_TAG not in tags or names.POINT_TAG not in tags:
            continue
        try:
            key = (tags[names.ARM_TAG], int(tags.get(names.REPEAT_TAG, "0")), tags[names.POINT_TAG])
        except ValueError:
            continue
        keep_run(chosen, key, run)
    cells: dict[str, list[GridCell]] = {}
    outcomes: dict[str, list[Outcome]] = {}
    class_dice: dict[str, list[ClassDice]] = {}
    for (arm, repeat, point), run in sorted(chosen.items(), key=lambda item: item[0]):
        validation, external = dice_of(run, names.FINAL_VAL_DICE), dice_of(run, names.TEST_DICE)
        outcomes.setdefault(arm, []).append(outcome(run, names.FINAL_VAL_DICE, names.TEST_DICE))
        cells.setdefault(arm, []).append(trial_cell(run, arm, repeat, point, validation, external))
        logged = class_dice_of(run.data.metrics)
        dice = {"internal": validation, "external": external}
        # a class's Dice counts where the cell's own does: a failed or early-stopped trial's counts nowhere
        class_dice.setdefault(arm, []).append(
            {metric: logged[key] for metric, key in _CLASS_METRICS.items() if dice[metric] is not None and logged.get(key)}
        )
    return cells, outcomes, RunHours.of(device_hours(run.data.metrics) for run in chosen.values()), class_dice


def collect_cells(parent_run_id: str, tracking_uri: str | None = None) -> dict[str, list[GridCell]]:
    """The grid study's trained models, read back from the parent's child runs, by arm (see :func:`collect_run`).

    Returns:
        Arm -> its cells, arms sorted by name, cells by repeat then grid point.

    Raises:
        ProxyHPOError: when the parent run does not exist.
    """
    return _read_cells(parent_run_id, tracking_uri)[0]


# --------------------------------------------------------------------------------------------- numbers


def arm_order(plan: Sequence[StudyCell], cells: Mapping[str, Sequence[GridCell]]) -> list[str]:
    """Arms in the plan's order, then any arm with runs but not in the plan."""
    order = list(dict.fromkeys(cell.arm for cell in plan))
    return order + sorted(arm for arm in cells if arm not in order)


def fractions(plan: Sequence[StudyCell]) -> dict[str, float]:
    """Each arm's share of the data (mean over its cells, which agree)."""
    shares: dict[str, list[float]] = {}
    for cell in plan:
        shares.setdefault(cell.arm, []).append(cell.data_fraction)
    return {arm: math.fsum(values) / len(values) for arm, values in shares.items()}


def networks(plan: Sequence[StudyCell]) -> dict[str, str]:
    """Each arm's network name."""
    out: dict[str, str] = {}
    for cell in plan:
        out.setdefault(cell.arm, cell.network.name)
    return out


def costs(run: GridRun, arms: Sequence[str], *, selection: bool) -> dict[str, SearchCost]:
    """Each arm's cost per search (one repeat), with its speed-ups over :data:`REFERENCE`; arms without trials left out."""
    planned = {(cell.arm, cell.repeat): cell for cell in run.plan}
    found: dict[str, SearchCost] = {}
    for arm in arms:
        mine = run.cells.get(arm, ())
        searches = {repeat: [c for c in mine if c.repeat == repeat] for repeat in sorted({c.repeat for c in mine})}
        if not searches:
            continue
        chosen = {repeat: planned[(arm, repeat)] for repeat in searches if (arm, repeat) in planned}
        seconds = {repeat: (cell.selection_seconds, cell.selection_device) for repeat, cell in chosen.items()} if selection else {}
        found[arm] = search_cost(arm, searches, seconds)
    return with_speedups(found, REFERENCE)


def has_dice(cells: Sequence[GridCell], metric: Metric) -> bool:
    """Whether any cell logged the ``metric`` Dice."""
    return any(cell.dice(metric) is not None for cell in cells)


def correlate(proxy: Sequence[GridCell], reference: Sequence[GridCell], metric: Metric) -> dict[str, Correlation]:
    """The three coefficients of the proxy's per-point mean Dice with the reference's, with bootstrap intervals.

    The unit is the grid point: each arm's Dice at a point is averaged over its repeats first. The figures
    of every grid report draw these means and quote these coefficients, so a report has one correlation
    per comparison. ``over`` names the Dice by its set (a cell's ``internal`` Dice is its validation Dice).
    """
    found = correlations(proxy, reference, metric=metric, confidence=CONFIDENCE, resamples=RESAMPLES, seed=SEED)
    named = f"mean {dice_name(metric)}"
    return {method: result.model_copy(update={"over": result.over.replace(f"mean {metric} Dice", named)}) for method, result in found.items()}


class ClassRow(StrictModel):
    """One class's Dice in an arm's row of a multi-class task: mean and std over the repeats that logged it.

    Attributes:
        name: the class as its metrics name it (``enhancing_tumour``).
        internal_mean, internal_std: its Dice on each trial's validation cases (the row's validation Dice breaks down into these).
        external_mean, external_std: its Dice on the external set; None without one.
    """

    name: str
    internal_mean: float | None
    internal_std: float | None
    external_mean: float | None
    external_std: float | None


class GridTableRow(TableRow):
    """A :class:`~proxyhpo.analysis.statistics.TableRow` that tells how its trials without a Dice ended, and a multi-class
    task's Dice per class.

    Attributes:
        n_failed: the arm's trials at the point that failed (not those stopped early or still running).
        n_stopped: those early stopping ended (their Dice is an early epoch's, left out of the means).
        n_running: those not ended yet.
        classes: each class's Dice at the point, in the order the trials' runs hold them (as the HPO and comparison
            reports show them); empty for a binary task.
    """

    n_stopped: int = 0
    n_running: int = 0
    classes: tuple[ClassRow, ...] = ()


def table_rows(
    arms: Mapping[str, str],
    cells: Mapping[str, Sequence[GridCell]],
    point: str,
    *,
    outcomes: Mapping[str, Sequence[Outcome]] | None = None,
    class_dice: Mapping[str, Sequence[ClassDice]] | None = None,
) -> tuple[TableRow, ...]:
    """:func:`table_at_point` over the arms (arm -> its row's label) with cells; arms with none get an empty row.

    Args:
        arms: arm -> its row's label, in the table's order.
        cells: arm -> its cells.
        point: the grid point of the table.
        outcomes: arm -> how each of its cells ended, in the order of ``cells`` (:attr:`GridRun.outcomes`).
            With them the rows are :class:`GridTableRow` and count failed, stopped and running trials
            apart; without, ``n_failed`` counts every cell without a Dice.
        class_dice: arm -> each of its cells' Dice per class, in the order of ``cells`` (:attr:`GridRun.class_dice`).
            With ``outcomes``, each row's ``classes`` hold every class's mean and std at the point over the repeats.
    """
    present = {label: list(cells[arm]) for arm, label in arms.items() if cells.get(arm)}
    computed = {row.arm: row for row in table_at_point(present, point)} if present else {}
    empty = {"internal_mean": None, "internal_std": None, "external_mean": None, "external_std": None, "n": 0, "n_failed": 0}
    rows = {label: computed.get(label) or TableRow(arm=label, **empty) for label in arms.values()}
    if outcomes is None:
        return tuple(rows.values())
    counted = []
    for arm, label in arms.items():
        here = TrialCounts.of(end for cell, end in zip(cells.get(arm, ()), outcomes.get(arm, ()), strict=True) if cell.point == point)
        per_class = _class_rows(cells.get(arm, ()), (class_dice or {}).get(arm, ()), point)
        counted.append(
            GridTableRow(**(rows[label].model_dump() | {"n_failed": here.n_failed}), n_stopped=here.n_stopped, n_running=here.n_running, classes=per_class)
        )
    return tuple(counted)


def _class_rows(cells: Sequence[GridCell], class_dice: Sequence[ClassDice], point: str) -> tuple[ClassRow, ...]:
    """Each class's Dice at ``point``, mean and std over the cells there that logged it; empty for a binary task."""
    here = [found for cell, found in zip(cells, class_dice, strict=True) if cell.point == point] if class_dice else []
    classes = list(dict.fromkeys(name for found in here for per_class in found.values() for name in per_class))
    rows = []
    for name in classes:
        internal = mean_std(found.get("internal", {}).get(name) for found in here)
        external = mean_std(found.get("external", {}).get(name) for found in here)
        rows.append(ClassRow(name=name, internal_mean=internal[0], internal_std=internal[1], external_mean=external[0], external_std=external[1]))
    return tuple(rows)


def totals(counts: TrialCounts, hours: RunHours) -> dict[str, float]:
    """The study's totals as the parent run's metrics."""
    return {
        names.TOTAL_GPU_HOURS: hours.gpu_hours,
        names.TOTAL_PROCESS_HOURS: hours.process_hours,
        names.N_TRIALS: float(counts.n_trials),
        names.N_FAILED_TRIALS: float(counts.n_failed),
        names.N_STOPPED_TRIALS: float(counts.n_stopped),
    }


def grid_metrics(
    correlation: Mapping[str, Mapping[str, Correlation]], arm_costs: Mapping[str, SearchCost], headline: str | None, run: GridRun
) -> dict[str, float]:
    """The parent run's metrics: the headline arm's unprefixed, every arm's under ``<name>.<arm>``, then the totals."""

    def arm_values(arm: str) -> dict[str, float]:
        values = dict(correlation_metrics(correlation[arm])) if arm in correlation else {}
        cost = arm_costs.get(arm)
        if cost is not None:
            values["device_hours_per_repeat"] = cost.hours
            if arm != REFERENCE:
                if cost.speedup is not None:
                    values[names.SPEEDUP_VS_FULL] = cost.speedup
                if cost.speedup_equal_pack is not None:
                    values[names.SPEEDUP_VS_FULL_EQUAL_PACK] = cost.speedup_equal_pack
        return values

    per_arm = {arm: arm_values(arm) for arm in dict.fromkeys([*correlation, *arm_costs])}
    headline_values = {}
    if headline is not None:
        headline_values = {name: value for name, value in arm_values(headline).items() if name != "device_hours_per_repeat"}
    return arm_metrics(per_arm, headline_values, totals(run.counts, run.hours))


def summary(run: GridRun, kind: str, metrics: Mapping[str, float], plots: Sequence[str], **extra: Any) -> dict[str, Any]:
    """``summary.json`` of a grid study: what was counted, the metrics, the plots' files, and the report's own entries."""
    return {
        "kind": kind,
        "study": run.study.name,
        "parent_run_id": run.parent_run_id,
        "n_trials": run.counts.n_trials,
        "n_failed": run.counts.n_failed,
        "n_stopped": run.counts.n_stopped,
        "n_running": run.counts.n_running,
        "total_gpu_hours": run.hours.gpu_hours,
        "total_process_hours": run.hours.process_hours,
        "metrics": dict(metrics),
        "verdict": None,
        "plots": sorted(f"{name}.png" for name in plots),
        **extra,
    }


# --------------------------------------------------------------------------------------------- Markdown pieces


def coefficient(result: Correlation | None) -> str:
    """A coefficient with its interval, ``0.83 [0.61, 0.95]``, or ``undefined``."""
    if result is None or result.value is None:
        return "undefined"
    interval = f" [{result.low:.2f}, {result.high:.2f}]" if result.low is not None and result.high is not None else ""
    return f"{result.value:.2f}{interval}"


def grid_sentence(grid: Mapping[str, Sequence[Any]]) -> str:
    """``4 grid points: optimizer ∈ {adam, rmsprop} × lr ∈ {0.001, 0.0001}``."""
    n = len(grid_points(dict(grid)))  # type: ignore[arg-type]
    return f"{n} grid points: " + " × ".join(f"{name} ∈ {{{', '.join(str(v) for v in values)}}}" for name, values in grid.items())


def header(title: str, run: GridRun, question: str) -> list[str]:
    """The report's title, description, question and what the trial runs amount to."""
    left_out = "failed, stopped and unfinished" if run.counts.n_stopped else "failed and unfinished"
    return heading(title, run.study, question) + [
        f"MLflow parent run `{run.parent_run_id}`: {run.counts.sentence()} ({left_out} trials are left out of every Dice, mean and "
        "correlation below; the cost counts their device hours).",
        "",
    ]


def arms_table(arms: Sequence[str], labels: Mapping[str, str], run: GridRun) -> list[str]:
    """What each arm is and ran: network, cases, share of the data, repeats (planned), trials and failures."""
    plan = run.plan
    shares, nets = fractions(plan), networks(plan)
    cases: dict[str, str] = {}
    planned_repeats: dict[str, int] = {}
    for cell in plan:
        cases.setdefault(cell.arm, f"{len(cell.train_ids) + len(cell.val_ids)} ({len(cell.train_ids)} train / {len(cell.val_ids)} val)")
        planned_repeats[cell.arm] = planned_repeats.get(cell.arm, 0) + 1
    running = any(counts.n_running for counts in run.by_arm.values())
    lines = [
        "| arm | | network | cases | data used | repeats (planned) | trials | failed | stopped early |" + (" running |" if running else ""),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if running else ""),
    ]
    for arm in arms:
        mine = run.cells.get(arm, ())
        counts = run.by_arm.get(arm, TrialCounts())
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {nets.get(arm, '–')} | {cases.get(arm, '–')} | {percent(shares.get(arm))} "
            f"| {len({c.repeat for c in mine})} ({planned_repeats.get(arm, 0)}) | {len(mine)} | {counts.n_failed} | {counts.n_stopped} |"
            + (f" {counts.n_running} |" if running else "")
        )
    return lines


def dice_table(rows: Sequence[TableRow], data: Mapping[str, str], first: str) -> list[str]:
    """The Dice of each row's arm at one grid point, mean ± std over repeats: on each trial's validation cases
    (the cells' ``internal`` Dice) and on the external set; trials counted by how they ended.

    Rows from :func:`table_rows` with outcomes (:class:`GridTableRow`) count failed and stopped trials apart and, for a
    multi-class task, have a row per class under them; plain rows count the trials without a Dice, whatever ended them.
    """
    told = all(isinstance(row, GridTableRow) for row in rows)
    ends = "failed | stopped early" if told else "without a Dice (failed or stopped)"
    lines = [f"| {first} | data used | validation Dice | external Dice | trials | {ends} |", "| --- | --- | --- | --- | --- | --- |" + (" --- |" if told else "")]
    for row in rows:
        counts = f"{row.n_failed} | {row.n_stopped}" if told and isinstance(row, GridTableRow) else f"{row.n_failed}"
        lines.append(
            f"| {row.arm} | {data.get(row.arm, '–')} | {format_dice(row.internal_mean, row.internal_std)} | {format_dice(row.external_mean, row.external_std)} "
            f"| {row.n} | {counts} |"
        )
        # a multi-class task: the row's Dice per class under it (the row's Dice is their mean)
        lines += [
            f"| &nbsp;&nbsp;class {c.name} | | {format_dice(c.internal_mean, c.internal_std)} | {format_dice(c.external_mean, c.external_std)} |" + " |" * (3 if told else 2)
            for c in (row.classes if isinstance(row, GridTableRow) else ())
        ]
    if any(isinstance(row, GridTableRow) and row.classes for row in rows):
        lines += ["", "Rows `class <name>`: a multi-class task's Dice of each class, mean ± std over the same repeats (the Dice of the arm above them averages its classes)."]
    return lines


def correlation_section(arms: Sequence[str], labels: Mapping[str, str], correlation: Mapping[str, Mapping[str, Correlation]]) -> list[str]:
    """The coefficients of each arm with the reference, with what each is computed over."""
    lines = [
        f"| arm | | {_SYMBOLS['pearson']} [95% CI] | {_SYMBOLS['spearman']} [95% CI] | {_SYMBOLS['kendall']} [95% CI] | grid points | repeats |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    sentences = [
        "",
        f"Unit: the grid point. Each coefficient correlates the arm's Dice per grid point, averaged over its repeats, with `{REFERENCE}`'s "
        "(the figures plot these means and quote these coefficients); computed over:",
        "",
    ]
    for arm in arms:
        result = correlation.get(arm)
        if result is None:
            lines.append(f"| `{arm}` | {labels.get(arm, arm)} | no trials | | | 0 | 0 |")
            continue
        first = result["pearson"]
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {coefficient(result['pearson'])} | {coefficient(result['spearman'])} | "
            f"{coefficient(result['kendall'])} | {first.n_points} | {first.n_repeats} |"
        )
        overs = list(dict.fromkeys(r.over for r in result.values()))
        if len(overs) == 1:
            sentences.append(f"- `{arm}`: {overs[0]}.")
        else:
            sentences += [f"- `{arm}` ({method}): {r.over}." for method, r in result.items()]
    return lines + sentences


def cost_section(arms: Sequence[str], labels: Mapping[str, str], arm_costs: Mapping[str, SearchCost], unit: str, *, selection: bool) -> list[str]:
    """Each arm's hours per search (trials, selection), its speed-ups over the reference, and its hours over all repeats."""
    lines = [
        unit_sentence(unit)
        + " A search is one repeat of an arm: its whole grid"
        + (", plus choosing its data (counted once per search)." if selection else ".")
        + " Failed and early-stopped trials count: they used the device.",
        "",
        "| arm | | repeats | trials, per search | "
        + ("selection, per search (device) | " if selection else "")
        + f"total per search | speed-up vs `{REFERENCE}` | at equal pack size: per search | speed-up | all repeats (trials) |",
        "| --- | --- | --- | --- | " + ("--- | " if selection else "") + "--- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        cost = arm_costs.get(arm)
        if cost is None:
            continue
        chosen = f"{format_hours(cost.selection_hours)} ({cost.selection_device or '–'}) | " if selection else ""
        lines.append(
            f"| `{arm}` | {labels.get(arm, arm)} | {cost.searches} | {format_hours(cost.trial_hours)} | {chosen}{format_hours(cost.hours)} | {format_times(cost.speedup)} "
            f"| {format_hours(cost.equal_pack_hours)} | {format_times(cost.speedup_equal_pack)} | {format_hours(cost.total_hours)} |"
        )
    return [*lines, "", speedup_note(REFERENCE)]
