"""The proxy data study's report (the paper's section 4.2: Table 1, Fig. 2 and Fig. 4A/B).

:func:`collect` reads the study back from MLflow into a frozen :class:`ProxyDataRecord` of numbers: every
proxy arm (selection method × budget) correlated with ``full`` on external Dice (on each cell's validation
cases, the cells' ``internal`` Dice, when none was logged), Table 1 at ``full``'s best grid point, the Dice against the share of data used, the cost of a
search and its speed-ups. :func:`render` turns the record into Markdown, metrics and figures
(:class:`~proxyhpo.analysis.publish.Rendered`).

Example:
    >>> record = collect(parent_run_id)  # doctest: +SKIP
    >>> record.headline, record.correlations[record.headline]["spearman"].value  # doctest: +SKIP
    ('mi+labelcrop-8', 0.83)
"""

from __future__ import annotations

from proxyhpo.analysis import _grid
from proxyhpo.analysis._grid import REFERENCE, GridRun
from proxyhpo.analysis._markdown import dice_name, file_stem, format_dice, method_label, percent, plots_section
from proxyhpo.analysis.costs import SearchCost
from proxyhpo.analysis.publish import Rendered
from proxyhpo.analysis.statistics import Correlation, Metric, TableRow, best_point, mean_std
from proxyhpo.analysis.study_plots import plot_dice_vs_data_usage, plot_proxy_vs_reference
from proxyhpo.config import StrictModel
from proxyhpo.registry import STUDY_PIPELINES

__all__ = ["KIND", "ProxyDataRecord", "UsagePoint", "collect", "render"]

#: The study kind this module reports on, as :data:`proxyhpo.registry.STUDY_PIPELINES` names it.
KIND = STUDY_PIPELINES.check("proxy-data-study")
TITLE = "Proxy data study"


class UsagePoint(StrictModel):
    """One method at one budget at the reference's best grid point (Fig. 4A/B).

    Attributes:
        method, budget, arm: the selection method, the budget B and their arm (``<method>-<budget>``).
        fraction: the arm's share of the data; None when the plan has no such arm.
        mean, std: its Dice at the point over repeats (None when none finished).
    """

    method: str
    budget: int
    arm: str
    fraction: float | None
    mean: float | None
    std: float | None


class ProxyDataRecord(StrictModel):
    """A proxy data study's numbers.

    Attributes:
        run: the study as MLflow holds it.
        metric: the Dice correlated: ``external``, or the cells' ``internal`` Dice (each cell's own validation
            cases, "validation Dice" in the report) when no external Dice was logged.
        arms, proxies: every arm in the plan's order, and those other than ``full``.
        labels: arm -> ``MI+Labelcrop, B = 8`` (``Full Dataset`` for the reference).
        fractions: arm -> its share of the data.
        correlations: proxy arm -> its coefficients with ``full`` (arms with trials, when ``full`` has some).
        costs: arm -> its cost per search and speed-ups.
        headline: the arm whose numbers the parent run holds unprefixed.
        point: ``full``'s best grid point by mean Dice; None when no reference trial finished.
        table: Table 1 at ``point`` (the methods at ``budget_of_table``, then the full data set), trials counted by how they ended;
            a multi-class task's Dice per class in each row's ``classes``.
        usage: every method at every budget at ``point`` (Fig. 4A/B); empty without a point.
        full_mean, full_std: the full data set's Dice at ``point``.
        metrics: the parent run's metrics.
    """

    run: GridRun
    metric: Metric
    arms: tuple[str, ...]
    proxies: tuple[str, ...]
    labels: dict[str, str]
    fractions: dict[str, float]
    correlations: dict[str, dict[str, Correlation]]
    costs: dict[str, SearchCost]
    headline: str | None
    point: str | None
    table: tuple[TableRow, ...]
    usage: tuple[UsagePoint, ...]
    full_mean: float | None
    full_std: float | None
    metrics: dict[str, float]


def collect(parent_run_id: str, tracking_uri: str | None = None) -> ProxyDataRecord:
    """The proxy data study's numbers, from its parent run (``study.json``, ``cells.json``) and child runs alone.

    The headline arm is ``<selection.method>-<budget_of_table>`` when correlated, else the first proxy arm.

    Raises:
        ProxyHPOError: when the run does not exist or lacks its plan.
        ConfigError: when the plan does not validate.
    """
    return compute(_grid.collect_run(parent_run_id, tracking_uri))


def compute(run: GridRun) -> ProxyDataRecord:
    """The record of a proxy data study already read from MLflow."""
    study, cells = run.study, run.cells
    config = study.studies.proxy_data
    reference = list(cells.get(REFERENCE, ()))
    metric: Metric = "external" if _grid.has_dice(reference, "external") else "internal"
    arms = _grid.arm_order(run.plan, cells)
    proxies = [arm for arm in arms if arm != REFERENCE]
    methods: dict[str, tuple[str, int]] = {f"{m}-{b}": (m, b) for m in config.methods for b in config.budgets}
    labels = {arm: f"{method_label(methods[arm][0])}, B = {methods[arm][1]}" if arm in methods else arm for arm in arms}
    labels[REFERENCE] = "Full Dataset"
    shares = _grid.fractions(run.plan)
    budget = config.budget_of_table

    correlation = {arm: _grid.correlate(cells[arm], reference, metric) for arm in proxies if cells.get(arm) and reference}
    costs = _grid.costs(run, arms, selection=True)
    wanted = f"{study.selection.method}-{budget}"
    headline = wanted if wanted in correlation else next(iter(correlation), None)
    point = best_point(reference, metric) if reference else None
    table: tuple[TableRow, ...] = ()
    usage: list[UsagePoint] = []
    full_mean = full_std = None
    if point is not None:
        table_arms = {f"{m}-{budget}": method_label(m) for m in config.methods} | {REFERENCE: "Full Dataset"}
        table = _grid.table_rows(table_arms, cells, point, outcomes=run.outcomes, class_dice=run.class_dice)
        for method in config.methods:
            for b in config.budgets:
                arm = f"{method}-{b}"
                mean, std = mean_std(c.dice(metric) for c in cells.get(arm, ()) if c.point == point)
                usage.append(UsagePoint(method=method, budget=b, arm=arm, fraction=shares.get(arm), mean=mean, std=std))
        full_mean, full_std = mean_std(c.dice(metric) for c in reference if c.point == point)
    return ProxyDataRecord(
        run=run,
        metric=metric,
        arms=tuple(arms),
        proxies=tuple(proxies),
        labels=labels,
        fractions=shares,
        correlations=correlation,
        costs=costs,
        headline=headline,
        point=point,
        table=table,
        usage=tuple(usage),
        full_mean=full_mean,
        full_std=full_std,
        metrics=_grid.grid_metrics(correlation, costs, headline, run),
    )


def render(record: ProxyDataRecord) -> Rendered:
    """The report of a proxy data study: Markdown, the parent run's metrics, Fig. 4A/B and Fig. 2 per method."""
    run, metric, point = record.run, record.metric, record.point
    study, cells = run.study, run.cells
    config = study.studies.proxy_data
    budget = config.budget_of_table
    reference = list(cells.get(REFERENCE, ()))
    dice = dice_name(metric)
    figures = {}
    captions: dict[str, str] = {}
    lines = _grid.header(
        TITLE,
        run,
        "Which proxy data set ranks the hyper-parameter grid like all the data, and how many cases are enough? "
        "(the paper's section 4.2: Table 1, Fig. 2 and Fig. 4A/B)",
    )
    lines += [
        "## What was run",
        "",
        f"- Reference: `{REFERENCE}`, all the data with the {_grid.networks(run.plan).get(REFERENCE, config.network)} network, {config.repeats} repeats over random splits.",
        f"- Selection methods: {', '.join(method_label(m) for m in config.methods)}; budgets B = {', '.join(map(str, config.budgets))} cases, "
        f"each split {1 - study.data.val_fraction:.0%} train / {study.data.val_fraction:.0%} validation anew per repeat.",
        f"- Repeats: {config.repeats} per arm (split and initialisation); grid: {_grid.grid_sentence(study.studies.grid)}.",
        f"- Dice correlated: **{dice}**"
        + (" (the external test set, as in the paper's Fig. 2)." if metric == "external" else " (no external Dice was logged: each trial's own validation cases)."),
        "- Correlation: one per arm, over grid points: each arm's Dice at a grid point averaged over its repeats, the table's and Fig. 2's "
        "alike (the paper's coefficient is Pearson's r; the unit is ours: the paper does not say whether its dots are means).",
        "",
        *_grid.arms_table(record.arms, record.labels, run),
        "",
    ]

    lines += ["## Table 1: Dice at the reference's best grid point", ""]
    if point is None:
        lines += [f"No `{REFERENCE}` trial finished: there is no best grid point to report at.", ""]
    else:
        data_used = {method_label(m): f"{budget} cases ({percent(record.fractions.get(f'{m}-{budget}'))})" for m in config.methods}
        data_used["Full Dataset"] = "all (100%)"
        lines += [
            f"Best grid point of `{REFERENCE}` by mean {dice} over repeats: `{point}`. Budget B = {budget} cases; "
            "mean ± std over repeats (failed and early-stopped trials left out, each counted in its column). Validation Dice: each "
            "trial's own validation cases.",
            "",
            *_grid.dice_table(record.table, data_used, "Selection method"),
            "",
        ]

    lines += [f"## Correlation with the full data ({dice}; Fig. 2)", ""]
    lines += _grid.correlation_section(record.proxies, record.labels, record.correlations) + [""]
    if record.headline is not None:
        lines += [f"Headline arm (the parent run's unprefixed metrics): `{record.headline}`.", ""]

    if point is not None:
        lines += [f"## Dice against data used (Fig. 4A/B; {dice} at `{point}`)", ""]
        lines += ["| method | " + " | ".join(f"B = {b}" for b in config.budgets) + " |", "| --- | " + " | ".join("---" for _ in config.budgets) + " |"]
        for method in config.methods:
            row = [f"{format_dice(u.mean, u.std)} ({percent(u.fraction)})" for u in record.usage if u.method == method]
            lines.append(f"| {method_label(method)} | " + " | ".join(row) + " |")
        lines += ["", f"Full Dataset (100%): {format_dice(record.full_mean, record.full_std)}.", ""]
        rows = [(method_label(u.method), u.fraction, u.mean, u.std) for u in record.usage if u.fraction is not None]
        if rows:
            name = "fig4_data_usage"
            figures[name] = plot_dice_vs_data_usage(
                rows, full_dice=record.full_mean, full_std=record.full_std, metric_label=dice,
                title=f"{dice} against the share of training data used\nat the reference's best grid point {point}",
            )
            captions[name] = f"Fig. 4A/B: {dice} at `{point}` against the share of data used, one line per method; dashed: the full data set."
        for method in config.methods:
            arm = f"{method}-{budget}"
            if not cells.get(arm):
                continue
            name = f"fig2_{file_stem(arm)}"
            title = f"{method_label(method)}, B = {budget} ({percent(record.fractions.get(arm))} of the data) vs all data"
            figures[name] = plot_proxy_vs_reference(
                cells[arm], reference, metric=metric, title=title, correlation=record.correlations.get(arm), left_out=run.by_arm
            )
            captions[name] = (
                f"Fig. 2: `{arm}` vs `{REFERENCE}`, {dice} per grid point (mean over repeats), with the least-squares line and the "
                "coefficients of the table above."
            )

    unit = run.hours.unit
    lines += ["## Cost", "", *_grid.cost_section(record.arms, record.labels, record.costs, unit, selection=True), ""]
    lines += plots_section(captions, "No plot: no grid point finished in the reference arm.")
    markdown = "\n".join(lines) + "\n"
    summary = _grid.summary(
        run, KIND, record.metrics, list(figures),
        correlations={arm: {m: r.model_dump(mode="json") for m, r in result.items()} for arm, result in record.correlations.items()},
        costs={arm: cost.model_dump(mode="json") for arm, cost in record.costs.items()},
        dice=metric, best_point=point, headline_arm=record.headline, hours=unit, table=[row.model_dump(mode="json") for row in record.table],
    )
    return Rendered(kind=KIND, title=f"{TITLE} {study.name}", markdown=markdown, metrics=record.metrics, figures=figures, summary=summary)
