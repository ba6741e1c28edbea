"""The proxy network study's report (the paper's section 4.2 and Fig. 3).

:func:`collect` reads the study back from MLflow into a frozen :class:`ProxyNetRecord`: each proxy network
(``proxy-L5/L4/L3``) correlated with ``full`` on validation Dice (each repeat's validation cases, the
paper's "internal validation"; the cells' ``internal`` Dice), the Dice at ``full``'s best grid point, the
cost of a search and its speed-ups. :func:`render` turns it into Markdown, metrics and Fig. 3. Table and
figure give one correlation per network: over grid points, each network's Dice averaged over its repeats.

Example:
    >>> record = collect(parent_run_id)  # doctest: +SKIP
    >>> record.headline  # the deepest proxy network  # doctest: +SKIP
    'proxy-L5'
"""

from __future__ import annotations

import re

from proxyhpo.analysis import _grid
from proxyhpo.analysis._grid import REFERENCE, GridRun
from proxyhpo.analysis._markdown import dice_name, plots_section
from proxyhpo.analysis.costs import SearchCost
from proxyhpo.analysis.publish import Rendered
from proxyhpo.analysis.statistics import Correlation, Metric, TableRow, best_point
from proxyhpo.analysis.study_plots import plot_proxy_networks
from proxyhpo.config import StrictModel
from proxyhpo.registry import STUDY_PIPELINES

__all__ = ["KIND", "ProxyNetRecord", "collect", "render"]

#: The study kind this module reports on, as :data:`proxyhpo.registry.STUDY_PIPELINES` names it.
KIND = STUDY_PIPELINES.check("proxy-net-study")
TITLE = "Proxy network study"
_LEVELLED = re.compile(r"proxy-L\d")


class ProxyNetRecord(StrictModel):
    """A proxy network study's numbers.

    Attributes:
        run: the study as MLflow holds it.
        metric: the Dice correlated: always the cells' ``internal`` Dice, each repeat's validation cases (the paper's
            Fig. 3 "internal validation"; "validation Dice" in the report).
        arms, proxies: every arm in the plan's order, and those other than ``full``.
        labels: arm -> what the network is.
        correlations: proxy arm -> its coefficients with ``full``.
        costs: arm -> its cost per search and speed-ups.
        headline: the deepest proxy network correlated (the parent run's unprefixed metrics).
        point: ``full``'s best grid point; None when no reference trial finished.
        table: the Dice of every network at ``point``, its trials counted by how they ended; a multi-class task's Dice per
            class in each row's ``classes``.
        metrics: the parent run's metrics.
    """

    run: GridRun
    metric: Metric
    arms: tuple[str, ...]
    proxies: tuple[str, ...]
    labels: dict[str, str]
    correlations: dict[str, dict[str, Correlation]]
    costs: dict[str, SearchCost]
    headline: str | None
    point: str | None
    table: tuple[TableRow, ...]
    metrics: dict[str, float]


def collect(parent_run_id: str, tracking_uri: str | None = None) -> ProxyNetRecord:
    """The proxy network study's numbers, from its parent run and child runs alone.

    Raises:
        ProxyHPOError: when the run does not exist or lacks its plan.
        ConfigError: when the plan does not validate.
    """
    return compute(_grid.collect_run(parent_run_id, tracking_uri))


def compute(run: GridRun) -> ProxyNetRecord:
    """The record of a proxy network study already read from MLflow."""
    cells = run.cells
    reference = list(cells.get(REFERENCE, ()))
    metric: Metric = "internal"
    arms = _grid.arm_order(run.plan, cells)
    proxies = [arm for arm in arms if arm != REFERENCE]
    labels = {arm: f"{arm.removeprefix('proxy-L')} levels, 4 channels, 1 residual unit" if _LEVELLED.fullmatch(arm) else arm for arm in arms}
    # 16 channels is ours: the paper gives 5 levels and 2 residual blocks, not the full network's first width
    labels[REFERENCE] = "full network (5 levels, 16 channels, 2 residual units)"
    correlation = {arm: _grid.correlate(cells[arm], reference, metric) for arm in proxies if cells.get(arm) and reference}
    costs = _grid.costs(run, arms, selection=False)
    levelled = {int(arm.removeprefix("proxy-L")): arm for arm in correlation if _LEVELLED.fullmatch(arm)}
    headline = levelled[max(levelled)] if levelled else next(iter(correlation), None)
    point = best_point(reference, metric) if reference else None
    table = _grid.table_rows({arm: arm for arm in [*proxies, REFERENCE]}, cells, point, outcomes=run.outcomes, class_dice=run.class_dice) if point is not None else ()
    return ProxyNetRecord(
        run=run,
        metric=metric,
        arms=tuple(arms),
        proxies=tuple(proxies),
        labels=labels,
        correlations=correlation,
        costs=costs,
        headline=headline,
        point=point,
        table=table,
        metrics=_grid.grid_metrics(correlation, costs, headline, run),
    )


def render(record: ProxyNetRecord) -> Rendered:
    """The report of a proxy network study: Markdown, the parent run's metrics and Fig. 3."""
    run, point = record.run, record.point
    study, cells = run.study, run.cells
    config = study.studies.proxy_net
    lines = _grid.header(
        TITLE, run, "How shallow can a proxy network be and still rank the grid like the full U-Net? (the paper's section 4.2 and Fig. 3)"
    )
    lines += [
        "## What was run",
        "",
        f"- Reference: `{REFERENCE}`, the full U-Net; proxy networks with {', '.join(map(str, config.levels))} levels; every network trains "
        f"all the data, on the same split in a repeat.",
        f"- Repeats: {config.repeats} per network (random splits of all cases, each with its own initialisation); grid: {_grid.grid_sentence(study.studies.grid)}.",
        "- Dice correlated: **validation Dice**, on each repeat's validation cases (the paper's Fig. 3 correlates \"internal validation\" Dice).",
        "- Correlation: one per network, over grid points: each network's Dice at a grid point averaged over its repeats, the table's and "
        "Fig. 3's alike (the paper's coefficient is Pearson's r; the unit is ours: the paper does not say whether its dots are means).",
        "",
        *_grid.arms_table(record.arms, record.labels, run),
        "",
    ]
    if point is not None:
        lines += [
            "## Dice at the full network's best grid point",
            "",
            f"Best grid point of `{REFERENCE}` by mean {dice_name(record.metric)} over repeats: `{point}`; mean ± std over repeats "
            "(failed and early-stopped trials left out, each counted in its column).",
            "",
            *_grid.dice_table(record.table, {arm: "all (100%)" for arm in record.arms}, "network"),
            "",
        ]
    lines += [f"## Correlation with the full network ({dice_name(record.metric)}; Fig. 3)", ""]
    lines += _grid.correlation_section(record.proxies, record.labels, record.correlations) + [""]
    if record.headline is not None:
        lines += [f"Headline arm (the parent run's unprefixed metrics): `{record.headline}`.", ""]
    figures = {}
    captions: dict[str, str] = {}
    present = {arm: list(cells[arm]) for arm in record.proxies if cells.get(arm)}
    reference = list(cells.get(REFERENCE, ()))
    if present and reference:
        name = "fig3_proxy_networks"
        figures[name] = plot_proxy_networks(present, reference, metric=record.metric, correlation=record.correlations, left_out=run.by_arm)
        captions[name] = (
            f"Fig. 3: each proxy network's {dice_name(record.metric)} against the full network's, one dot per grid point (mean over repeats), "
            "with the Pearson r of the table above."
        )
    unit = run.hours.unit
    lines += ["## Cost", "", *_grid.cost_section(record.arms, record.labels, record.costs, unit, selection=False), ""]
    lines += plots_section(captions, "No plot: no grid point finished in the reference arm.")
    summary = _grid.summary(
        run, KIND, record.metrics, list(figures),
        correlations={arm: {m: r.model_dump(mode="json") for m, r in result.items()} for arm, result in record.correlations.items()},
        costs={arm: cost.model_dump(mode="json") for arm, cost in record.costs.items()},
        dice=record.metric, best_point=point, headline_arm=record.headline, hours=unit, table=[row.model_dump(mode="json") for row in record.table],
    )
    return Rendered(kind=KIND, title=f"{TITLE} {study.name}", markdown="\n".join(lines) + "\n", metrics=record.metrics, figures=figures, summary=summary)
