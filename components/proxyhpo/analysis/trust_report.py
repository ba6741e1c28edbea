"""The trust check's report: does the study's proxy rank a small calibration grid like all data with the full network?

:func:`collect` reads the check back from MLflow into a frozen :class:`TrustRecord` (the proxy's
correlation with ``full`` by ``studies.trust``'s coefficient and Dice, the :class:`TrustVerdict`, the
Dice at the reference's best grid point, the cost); :func:`render` turns it into Markdown, metrics and
the scatter plot. :func:`trust_verdict` gives the verdict from cells alone (the HPO pipeline's gate).

The verdict compares the lower bound of the coefficient's one-sided interval, at ``studies.trust.confidence``,
with ``studies.trust.threshold`` (:func:`~proxyhpo.trust_bound.correlation_lower_bound`), never the
coefficient itself: on a small grid a coefficient of 0.5 or more is common by chance. The Dice correlated is
each setting's validation Dice (``internal``: the trial's own validation cases, what a search optimises) or
the external set's (``external``); the message says which.

Example:
    >>> collect(parent_run_id).verdict.message  # doctest: +SKIP
    'proxy trusted: spearman 0.94 over 6 grid points, one-sided 95% interval [0.55, 1] >= 0.5 (validation Dice of each setting)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxyhpo.analysis import _grid
from proxyhpo.analysis._grid import REFERENCE, GridRun
from proxyhpo.analysis._markdown import dice_name, percent, plots_section
from proxyhpo.analysis.costs import SearchCost
from proxyhpo.analysis.publish import Rendered
from proxyhpo.analysis.statistics import Correlation, GridCell, Method, Metric, TableRow, best_point
from proxyhpo.analysis.study_plots import plot_proxy_vs_reference
from proxyhpo.config import StrictModel, StudyConfig
from proxyhpo.registry import STUDY_PIPELINES
from proxyhpo.tracking import names
from proxyhpo.trust_bound import MIN_BOUND_POINTS, correlation_lower_bound

__all__ = ["KIND", "TRUST_PROXY", "TrustRecord", "TrustVerdict", "collect", "render", "trust_verdict"]

#: The study kind this module reports on, as :data:`proxyhpo.registry.STUDY_PIPELINES` names it.
KIND = STUDY_PIPELINES.check("trust")
TITLE = "Trust check"
#: The proxy arm of the trust check.
TRUST_PROXY = "proxy"
#: What each Dice of a trust cell is measured on, as the verdict names it.
DICE_SETS = {"internal": "validation Dice of each setting", "external": "external Dice of each setting"}


class TrustVerdict(StrictModel):
    """The trust check's answer: does the proxy rank the calibration grid like the full setting?

    Attributes:
        metric: the coefficient used (``studies.trust.metric``).
        dice: the Dice actually correlated (``internal``, each setting's validation Dice, when ``external``
            was asked but none was logged).
        value: the coefficient over the grid points' mean Dice; None when undefined.
        lower: the lower bound of its one-sided ``confidence`` interval over the grid points (Fisher z,
            Bonett-Wright); what the verdict compares. None when undefined or too few points finished.
        confidence: the one-sided interval's confidence (``studies.trust.confidence``).
        low, high: the report's two-sided bootstrap interval over repeats (descriptive, not the verdict's).
        n_points: grid points finished in both arms.
        threshold: the bound the proxy had to reach (``studies.trust.threshold``).
        passed: ``lower >= threshold``; None when the bound is undefined.
        over: what the coefficient is computed over (and any fallback of the Dice).
        message: the verdict in one line: coefficient, interval, confidence, threshold, the Dice's set.
    """

    metric: Method
    dice: Metric
    value: float | None
    lower: float | None
    confidence: float
    low: float | None
    high: float | None
    n_points: int
    threshold: float
    passed: bool | None
    over: str
    message: str


class TrustRecord(StrictModel):
    """A trust check's numbers.

    Attributes:
        run: the check as MLflow holds it.
        verdict: the verdict.
        arms, labels: ``full`` and ``proxy`` (and any other arm with runs), and what each is.
        correlations: ``proxy`` -> its coefficients with ``full`` (empty when an arm has no trial).
        costs: arm -> its cost per search and speed-ups.
        point: ``full``'s best grid point by the verdict's Dice; None when no reference trial finished.
        table: the Dice of every arm at ``point``.
        fractions: arm -> its share of the data.
        metrics: the parent run's metrics (``trust_passed``, ``trust_value``, ``trust_lower_bound``,
            ``trust_threshold``, ``trust_confidence`` among them).
    """

    run: GridRun
    verdict: TrustVerdict
    arms: tuple[str, ...]
    labels: dict[str, str]
    correlations: dict[str, dict[str, Correlation]]
    costs: dict[str, SearchCost]
    point: str | None
    table: tuple[TableRow, ...]
    fractions: dict[str, float]
    metrics: dict[str, float]


def _verdict(config: Any, correlation: Mapping[str, Correlation] | None, dice: Metric, note: str, problem: str | None) -> TrustVerdict:
    """The trust check's verdict from the proxy's correlations (None when the arms lack trials: ``problem`` says why)."""
    method: Method = config.metric
    confidence = float(config.confidence)
    result = correlation.get(method) if correlation else None
    value = result.value if result else None
    n_points = result.n_points if result else 0
    low, high = (result.low, result.high) if result else (None, None)
    lower = correlation_lower_bound(method, value, n_points, confidence) if value is not None else None
    over = note + (result.over if result else (problem or "no trials"))
    passed = None if lower is None else lower >= config.threshold
    points = f"over {n_points} grid point{'s' if n_points != 1 else ''}"
    level = f"{confidence * 100:g}%"
    if passed is None:
        if problem is None and value is not None:
            problem = f"too few for a {level} bound ({MIN_BOUND_POINTS[method]} needed)"
        reason = problem or (result.over.split("; ", 1)[1] if result and "; " in result.over else "undefined")
        message = f"proxy trust undecided: {method} {points} ({DICE_SETS[dice]}) is {reason}"
    else:
        verb, sign = ("proxy trusted", ">=") if passed else ("proxy not trusted", "<")
        message = (
            f"{verb}: {method} {value:.2f} {points}, one-sided {level} interval [{lower:.2f}, 1] {sign} {config.threshold:g} "
            f"({DICE_SETS[dice]})"
        )
    return TrustVerdict(
        metric=method, dice=dice, value=value, lower=lower, confidence=confidence, low=low, high=high, n_points=n_points,
        threshold=config.threshold, passed=passed, over=over, message=message,
    )


def _trust_check(study: StudyConfig, cells: Mapping[str, Sequence[GridCell]]) -> tuple[TrustVerdict, dict[str, Correlation] | None]:
    """:func:`trust_verdict`, and the proxy's correlations it rests on (None when an arm has no trial)."""
    config = study.studies.trust
    reference, proxy = list(cells.get(REFERENCE, [])), list(cells.get(TRUST_PROXY, []))
    dice: Metric = config.dice
    note = ""
    if dice == "external" and not (_grid.has_dice(reference, "external") and _grid.has_dice(proxy, "external")):
        dice, note = "internal", "validation Dice of each setting (external was asked, but the study logged no external Dice); "
    problem = None if proxy and reference else f"no trials in the {'proxy' if not proxy else REFERENCE} arm"
    correlation = _grid.correlate(proxy, reference, dice) if problem is None else None
    return _verdict(config, correlation, dice, note, problem), correlation


def trust_verdict(study: StudyConfig, cells: Mapping[str, Sequence[GridCell]]) -> TrustVerdict:
    """The trust check's verdict on a study's calibration cells (arms ``full`` and ``proxy``), by ``studies.trust``.

    External Dice is used when asked for and logged by both arms, each setting's validation Dice
    (``internal``) otherwise (and ``over`` says so). The proxy is trusted when the lower bound of the
    coefficient's one-sided ``studies.trust.confidence`` interval reaches ``studies.trust.threshold``. The
    verdict is undecided (``passed`` None) when an arm has no trial, the correlation is undefined, or too
    few grid points finished for a bound.
    """
    return _trust_check(study, cells)[0]


def collect(parent_run_id: str, tracking_uri: str | None = None) -> TrustRecord:
    """The trust check's numbers, from its parent run and child runs alone.

    Raises:
        ProxyHPOError: when the run does not exist or lacks its plan.
        ConfigError: when the plan does not validate.
    """
    return compute(_grid.collect_run(parent_run_id, tracking_uri))


def compute(run: GridRun) -> TrustRecord:
    """The record of a trust check already read from MLflow."""
    study, cells = run.study, run.cells
    config = study.studies.trust
    reference = list(cells.get(REFERENCE, ()))
    verdict, result = _trust_check(study, cells)
    arms = _grid.arm_order(run.plan, cells)
    nets = _grid.networks(run.plan)
    labels = {
        REFERENCE: "all data, full network",
        TRUST_PROXY: f"the study's proxy: {study.training.data} data"
        + (f" ({study.selection.method}, B = {study.selection.budget})" if study.training.data == "proxy" else "")
        + f", {nets.get(TRUST_PROXY, study.training.network)} network",
    }
    correlation = {TRUST_PROXY: result} if result is not None else {}
    costs = _grid.costs(run, arms, selection=True)
    metrics = _grid.grid_metrics(correlation, costs, TRUST_PROXY, run)
    if verdict.passed is not None:
        metrics[names.TRUST_PASSED] = 1.0 if verdict.passed else 0.0
    if verdict.value is not None:
        metrics[names.TRUST_VALUE] = verdict.value
    if verdict.lower is not None:
        metrics[names.TRUST_LOWER_BOUND] = verdict.lower
    metrics[names.TRUST_THRESHOLD] = float(config.threshold)
    metrics[names.TRUST_CONFIDENCE] = verdict.confidence
    point = best_point(reference, verdict.dice) if reference else None
    table = _grid.table_rows({arm: arm for arm in arms}, cells, point, outcomes=run.outcomes, class_dice=run.class_dice) if point is not None else ()
    return TrustRecord(
        run=run, verdict=verdict, arms=tuple(arms), labels=labels, correlations=correlation, costs=costs, point=point, table=table,
        fractions=_grid.fractions(run.plan), metrics=metrics,
    )


def render(record: TrustRecord) -> Rendered:
    """The report of a trust check: Markdown with the verdict, the parent run's metrics and the scatter plot."""
    run, verdict, point = record.run, record.verdict, record.point
    study, cells = run.study, run.cells
    config = study.studies.trust
    dice = verdict.dice
    lines = _grid.header(TITLE, run, "Before a heavy search: does the study's proxy rank a small calibration grid like all data with the full network?")
    lines += [
        f"**Verdict: {verdict.message}.**",
        "",
        f"The verdict asks the lower bound of {verdict.metric}'s one-sided {verdict.confidence * 100:g}% interval (Fisher z, Bonett-Wright "
        f"standard error, over the grid points) to reach {config.threshold:g}, not the coefficient itself; the Dice correlated is the "
        f"{DICE_SETS[verdict.dice]}, computed over {verdict.over}. The bootstrap intervals below are over repeats and describe the "
        "coefficient; they are not the verdict's.",
        "",
        "## What was run",
        "",
        f"- Arms: `{REFERENCE}` ({record.labels[REFERENCE]}) and `{TRUST_PROXY}` ({record.labels[TRUST_PROXY]}).",
        f"- Repeats: {config.repeats} per arm; grid: {_grid.grid_sentence(config.grid)}.",
        "",
        *_grid.arms_table(record.arms, record.labels, run),
        "",
    ]
    if point is not None:
        lines += [
            "## Dice at the reference's best grid point",
            "",
            f"Best grid point of `{REFERENCE}` by mean {dice_name(dice)} over repeats: `{point}`; mean ± std over repeats.",
            "",
            *_grid.dice_table(record.table, {arm: percent(record.fractions.get(arm)) for arm in record.arms}, "arm"),
            "",
        ]
    lines += [f"## Correlation with the reference ({dice_name(dice)})", ""]
    lines += _grid.correlation_section([TRUST_PROXY], record.labels, record.correlations) + [""]
    figures = {}
    captions: dict[str, str] = {}
    if TRUST_PROXY in record.correlations:
        name = "trust_proxy_vs_full"
        figures[name] = plot_proxy_vs_reference(
            list(cells[TRUST_PROXY]), list(cells[REFERENCE]), metric=dice,
            title=f"trust check: {verdict.message.split(':', 1)[0]}\n({verdict.metric}'s {verdict.confidence * 100:g}% lower bound >= {config.threshold:g} needed)",
            correlation=record.correlations[TRUST_PROXY],
            left_out=run.by_arm,
        )
        captions[name] = f"the proxy's {dice_name(dice)} against the reference's per grid point, with the least-squares line."
    unit = run.hours.unit
    lines += ["## Cost", "", *_grid.cost_section(record.arms, record.labels, record.costs, unit, selection=True), ""]
    lines += plots_section(captions, "No plot: no grid point finished in the reference arm.")
    summary = _grid.summary(
        run, KIND, record.metrics, list(figures),
        verdict=verdict.model_dump(mode="json"),
        correlations={arm: {m: r.model_dump(mode="json") for m, r in result.items()} for arm, result in record.correlations.items()},
        costs={arm: cost.model_dump(mode="json") for arm, cost in record.costs.items()},
        dice=dice, best_point=point, headline_arm=TRUST_PROXY, hours=unit, table=[row.model_dump(mode="json") for row in record.table],
    )
    return Rendered(kind=KIND, title=f"{TITLE} {study.name}", markdown="\n".join(lines) + "\n", metrics=record.metrics, figures=figures, summary=summary)
