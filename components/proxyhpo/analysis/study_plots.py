"""The comparison studies' figures (the paper's Figs. 2, 3 and 4), each drawn as one matplotlib Figure.

Pure functions over :class:`~proxyhpo.analysis.statistics.GridCell` records and plain numbers, returning
the Figure; :func:`~proxyhpo.analysis.publish.save` writes it as PNG. Figures are drawn on matplotlib's
Agg canvas directly (no pyplot), so no global state is touched and nothing needs a display. Titles and
axis labels say what is plotted, on which set and over what unit: a cell's ``internal`` Dice is its own
validation cases' (labelled "validation Dice"), its ``external`` one the external set's. Cells without a Dice
are left out and counted in the title, failed apart from stopped early when their counts are given.
A figure that quotes a correlation quotes the one the report's table gives: over grid points, each arm's
Dice at a point averaged over its repeats first (:func:`~proxyhpo.analysis.statistics.correlations`).

Example:
    >>> figure = plot_proxy_vs_reference(mi_cells, full_cells, title="MI+Labelcrop, 8 cases")  # doctest: +SKIP
    >>> figure.axes[0].get_xlabel()  # doctest: +SKIP
    'full: external Dice, mean over 3 repeats'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from proxyhpo.analysis._markdown import dice_name
from proxyhpo.analysis._report_io import TrialCounts
from proxyhpo.analysis.statistics import (
    METHODS,
    Correlation,
    GridCell,
    Metric,
    _check_cells,
    _check_metric,
    correlations,
    mean_std,
)

__all__ = ["figure", "plot_proxy_vs_reference", "plot_dice_vs_data_usage", "plot_proxy_networks", "plot_hyperparameter_distance"]

_SYMBOLS = {"pearson": "r", "spearman": "\u03c1", "kendall": "\u03c4"}


def figure(width: float, height: float) -> Figure:
    """An empty Figure of ``width`` x ``height`` inches on the Agg canvas, laid out by constrained layout."""
    drawn = Figure(figsize=(width, height), constrained_layout=True)
    FigureCanvasAgg(drawn)  # the Agg canvas whatever backend pyplot was given
    return drawn


def _fit_line(axis: Any, x: Sequence[float], y: Sequence[float]) -> None:
    """Draw the least-squares line of y on x, when x is not constant."""
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.array([min(x), max(x)])
        axis.plot(xs, slope * xs + intercept, color="k", lw=1, label=f"least-squares fit (slope {slope:.2f})")


def _left_out_note(
    arms: Mapping[str, Sequence[GridCell]], metric: Metric, left_out: Mapping[str, TrialCounts] | None, *, lead: str = "; left out: ", named: bool = True
) -> str:
    """``; left out: mi-8 2 failed, 1 stopped early`` for the arms with cells left out ('' when none is).

    An arm in ``left_out`` is told by how its trials ended; any other by its cells without the ``metric`` Dice.
    ``lead`` starts the note; ``named=False`` leaves the arm's name out (a panel of its own).
    """
    parts = []
    for arm, cells in arms.items():
        if left_out is not None and arm in left_out:
            counts = left_out[arm]
            ends = [f"{n} {end}" for n, end in ((counts.n_failed, "failed"), (counts.n_stopped, "stopped early"), (counts.n_running, "running")) if n]
            if ends:
                parts.append(f"{arm} {', '.join(ends)}" if named else ", ".join(ends))
        elif missing := sum(cell.dice(metric) is None for cell in cells):
            parts.append(f"{arm} {missing} without a Dice" if named else f"{missing} without a Dice")
    return lead + "; ".join(parts) if parts else ""


def _repeats(cells: Sequence[GridCell]) -> int:
    return len({cell.repeat for cell in cells})


class _PointMeans:
    """Per grid point finished in both arms: each arm's Dice averaged over its repeats, and its std."""

    def __init__(self, proxy: list[GridCell], reference: list[GridCell], metric: Metric) -> None:
        def per_point(cells: list[GridCell]) -> dict[str, tuple[float | None, float | None]]:
            return {point: mean_std(c.dice(metric) for c in cells if c.point == point) for point in {c.point for c in cells}}

        proxy_means, reference_means = per_point(proxy), per_point(reference)
        self.points = sorted(p for p in proxy_means.keys() & reference_means.keys() if proxy_means[p][0] is not None and reference_means[p][0] is not None)
        self.x = [float(reference_means[p][0]) for p in self.points]  # type: ignore[arg-type]
        self.y = [float(proxy_means[p][0]) for p in self.points]  # type: ignore[arg-type]
        self.xerr = [reference_means[p][1] or 0.0 for p in self.points]
        self.yerr = [proxy_means[p][1] or 0.0 for p in self.points]

    def draw(self, axis: Any, label: str) -> None:
        axis.errorbar(self.x, self.y, xerr=self.xerr, yerr=self.yerr, fmt="o", ms=5, capsize=2, lw=0.8, label=label)
        _fit_line(axis, self.x, self.y)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def plot_proxy_vs_reference(
    proxy: Sequence[GridCell],
    reference: Sequence[GridCell],
    *,
    metric: Metric = "external",
    title: str | None = None,
    correlation: Mapping[str, Correlation] | None = None,
    left_out: Mapping[str, TrialCounts] | None = None,
) -> Figure:
    """The paper's Fig. 2: per grid point, the proxy arm's mean Dice (y) against the reference's (x).

    The unit is the grid point, each arm's Dice there averaged over its repeats (ours: the paper does not say
    whether its dots are means or single repeats); error bars are the standard
    deviation over repeats; the least-squares line is drawn, and Pearson's r, Spearman's rho and Kendall's
    tau over the points are given in the legend (with their intervals when ``correlation`` is given).

    Args:
        proxy: the proxy arm's cells.
        reference: the reference arm's cells (usually the full data set).
        metric: ``external`` Dice, or ``internal`` (each cell's validation cases, labelled "validation Dice").
        title: the figure's first title line; by default "<proxy arm> vs <reference arm>".
        correlation: the result of :func:`~proxyhpo.analysis.statistics.correlations` for these cells,
            to show its intervals; computed without intervals when None.
        left_out: arm -> how its trials ended, to count the cells left out as failed, stopped early or
            running; without, an arm's cells without a Dice are counted together.

    Returns:
        The Figure.

    Raises:
        ValueError: when ``proxy`` or ``reference`` is empty or invalid, or ``metric`` is unknown.
    """
    proxy_cells, reference_cells = _check_cells(proxy, "proxy"), _check_cells(reference, "reference")
    _check_metric(metric)
    coefficients = correlation if correlation is not None else correlations(proxy_cells, reference_cells, metric=metric, resamples=0)
    proxy_arm, reference_arm = proxy_cells[0].arm, reference_cells[0].arm
    means = _PointMeans(proxy_cells, reference_cells, metric)

    drawn = figure(6.0, 5.2)
    axis = drawn.subplots()
    if means.points:
        means.draw(axis, f"grid points (n = {len(means.points)})")
    else:
        axis.text(0.5, 0.5, "no grid point finished in both arms", ha="center", va="center", transform=axis.transAxes)
    for method in METHODS:
        result = coefficients.get(method)
        if result is not None:
            interval = f" [{_number(result.low)}, {_number(result.high)}]" if result.low is not None else ""
            axis.plot([], [], " ", label=f"{_SYMBOLS[method]} = {_number(result.value)}{interval}")
    note = _left_out_note({proxy_arm: proxy_cells, reference_arm: reference_cells}, metric, left_out, lead="\nleft out: ")
    axis.set(
        xlabel=f"{reference_arm}: {dice_name(metric)}, mean over {_repeats(reference_cells)} repeats",
        ylabel=f"{proxy_arm}: {dice_name(metric)}, mean over {_repeats(proxy_cells)} repeats",
        title=f"{title or f'{proxy_arm} vs {reference_arm}'}\nper grid point (mean over repeats); error bars: std over repeats{note}",
    )
    axis.title.set_fontsize(9)
    axis.legend(fontsize=8, loc="best")
    return drawn


def plot_dice_vs_data_usage(
    rows: Iterable[tuple[str, float, float | None, float | None]],
    *,
    full_dice: float | None = None,
    full_std: float | None = None,
    metric_label: str = "external Dice",
    title: str | None = None,
) -> Figure:
    """The paper's Fig. 4A/B: Dice against the share of the training data used, one line per method.

    Args:
        rows: ``(method, fraction_of_data, mean_dice, std_dice)``, the fraction in (0, 1]; a row with no
            mean (every repeat failed) is left out, a missing std draws no error bar.
        full_dice, full_std: the full data set's Dice, drawn as a horizontal line (with a ±std band).
        metric_label: what the Dice was measured on, for the y label.
        title: the figure's title; by default it says what is plotted.

    Returns:
        The Figure.

    Raises:
        ValueError: when ``rows`` is empty or a row is malformed, naming the row.

    Example:
        >>> plot_dice_vs_data_usage([("mi+labelcrop", 0.1, 0.71, 0.05), ("mi+labelcrop", 0.24, 0.80, 0.02),
        ...                          ("random", 0.1, 0.62, 0.08)], full_dice=0.88)  # doctest: +SKIP
    """
    lines: dict[str, list[tuple[float, float | None, float | None]]] = {}
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != 4:
            raise ValueError(f"rows[{i}] must be (method, fraction_of_data, mean_dice, std_dice), got {row!r}")
        method, fraction, mean, std = row
        if not isinstance(method, str) or not method:
            raise ValueError(f"rows[{i}]: method must be a non-empty string, got {method!r}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"rows[{i}]: fraction_of_data must be in (0, 1], got {fraction!r}")
        for name, value in (("mean_dice", mean), ("std_dice", std)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
                raise ValueError(f"rows[{i}]: {name} must be a number in [0, 1] or None, got {value!r}")
        lines.setdefault(method, []).append((float(fraction), mean, std))
    if not lines:
        raise ValueError("rows must hold at least one (method, fraction_of_data, mean_dice, std_dice), got none")
    for name, value in (("full_dice", full_dice), ("full_std", full_std)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise ValueError(f"{name} must be a number in [0, 1] or None, got {value!r}")

    drawn = figure(6.4, 4.6)
    axis = drawn.subplots()
    for method, points in lines.items():
        shown = sorted((f, m, s) for f, m, s in points if m is not None)
        if shown:
            axis.errorbar(
                [100 * f for f, _, _ in shown], [m for _, m, _ in shown], yerr=[s or 0.0 for _, _, s in shown],
                fmt="o-", ms=4, capsize=2, lw=1, label=method,
            )
    if full_dice is not None:
        axis.axhline(full_dice, color="k", ls="--", lw=1, label=f"full data set ({full_dice:.3f})")
        if full_std:
            axis.axhspan(full_dice - full_std, full_dice + full_std, color="k", alpha=0.08, lw=0)
    axis.set(
        xlabel="training data used (% of the full training set)",
        ylabel=f"{metric_label}, mean ± std over repeats",
        title=title or f"{metric_label} against the share of training data used",
    )
    axis.legend(fontsize=8, loc="lower right")
    return drawn


def plot_proxy_networks(
    arms: Mapping[str, Sequence[GridCell]],
    reference: Sequence[GridCell],
    *,
    metric: Metric = "internal",
    correlation: Mapping[str, Mapping[str, Correlation]] | None = None,
    left_out: Mapping[str, TrialCounts] | None = None,
) -> Figure:
    """The paper's Fig. 3: one panel per proxy network, its Dice against the full network's per grid point.

    The unit is the one of the report's table: each dot is one grid point, each network's Dice there averaged
    over its repeats (error bars: std over repeats), and the panel's Pearson r is over those means (the
    paper's coefficient; the unit is ours, as in :func:`plot_proxy_vs_reference`), with its interval when
    ``correlation`` is given; the least-squares line is drawn.

    Args:
        arms: arm label -> the proxy network's cells (e.g. ``proxy-L5``, ``proxy-L4``, ``proxy-L3``).
        reference: the full network's cells, trained on the same grid and repeats.
        metric: ``internal`` (each repeat's validation cases, the paper's "internal validation"; labelled
            "validation Dice") or ``external`` Dice.
        correlation: arm label -> the result of :func:`~proxyhpo.analysis.statistics.correlations` for its
            cells and ``reference``, as the report's table has it; computed without intervals when None.
        left_out: arm -> how its trials ended, to count the cells left out as failed, stopped early or
            running; without, an arm's cells without a Dice are counted together.

    Returns:
        The Figure.

    Raises:
        ValueError: when ``arms`` or ``reference`` is empty or invalid, or ``metric`` is unknown.
    """
    if not isinstance(arms, Mapping) or not arms:
        raise ValueError(f"arms must map at least one proxy network's label to its cells, got {arms!r}")
    checked = {label: _check_cells(cells, f"arms[{label!r}]") for label, cells in arms.items()}
    reference_cells = _check_cells(reference, "reference")
    _check_metric(metric)
    reference_arm = reference_cells[0].arm
    dice = dice_name(metric)

    drawn = figure(4.2 * len(checked), 4.6)
    panels = drawn.subplots(1, len(checked), squeeze=False)[0]
    for axis, (label, cells) in zip(panels, checked.items(), strict=True):
        given = correlation.get(label) if correlation is not None else None
        pearson = (given or correlations(cells, reference_cells, metric=metric, resamples=0))["pearson"]
        means = _PointMeans(cells, reference_cells, metric)
        if means.points:
            means.draw(axis, f"grid points (n = {len(means.points)})")
            axis.legend(fontsize=7, loc="lower right")
        else:
            axis.text(0.5, 0.5, "no grid point finished in both networks", ha="center", va="center", transform=axis.transAxes)
        interval = f" [{_number(pearson.low)}, {_number(pearson.high)}]" if pearson.low is not None else ""
        axis.set(xlabel=f"{reference_arm}: {dice}, mean over {_repeats(reference_cells)} repeats", ylabel=f"{label}: {dice}, mean over {_repeats(cells)} repeats")
        axis.set_title(
            f"{label}: r = {_number(pearson.value)}{interval} over {len(means.points)} grid points"
            + _left_out_note({label: cells}, metric, left_out, lead="\nleft out: ", named=False),
            fontsize=9,
        )
    note = _left_out_note({reference_arm: reference_cells}, metric, left_out)
    drawn.suptitle(f"proxy networks vs {reference_arm}: {dice} per grid point, mean over repeats (error bars: std){note}", fontsize=10)
    return drawn


def plot_hyperparameter_distance(
    distances: Mapping[str, Sequence[float]],
    *,
    title: str | None = None,
) -> Figure:
    """The paper's Fig. 4C/D: the relative distance of each arm's found hyper-parameters to the full search's.

    One box and the individual distances (one dot per search, jittered sideways) per arm; distances
    come from :func:`~proxyhpo.analysis.statistics.relative_distance` (0 = the same setting, 1 =
    opposite corners of the search space). The paper plots a "relative distance" without giving its
    formula; that one is ours.

    Args:
        distances: arm label -> the distances of that arm's searches (e.g. one per repeat); an arm with
            none is labelled as such.
        title: the figure's title; by default it says what is plotted.

    Returns:
        The Figure.

    Raises:
        ValueError: when ``distances`` is empty, holds no distance at all, or a distance is not a finite
            number >= 0.

    Example:
        >>> plot_hyperparameter_distance({"proxy data": [0.1, 0.2], "random data": [0.4, 0.3]})  # doctest: +SKIP
    """
    if not isinstance(distances, Mapping) or not distances:
        raise ValueError(f"distances must map at least one arm label to its distances, got {distances!r}")
    values: dict[str, list[float]] = {}
    for label, arm in distances.items():
        if isinstance(arm, (str, bytes)) or not isinstance(arm, Iterable):
            raise ValueError(f"distances[{label!r}] must be a sequence of numbers, got {type(arm).__name__}")
        values[label] = list(arm)
        for i, value in enumerate(values[label]):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"distances[{label!r}][{i}] must be a finite number >= 0, got {value!r}")
    if not any(values.values()):
        raise ValueError(f"distances holds no distance at all for the arms {list(values)}")

    drawn = figure(max(4.5, 1.3 * len(values) + 2), 4.6)
    axis = drawn.subplots()
    positions = {label: i + 1 for i, label in enumerate(values)}
    filled = [label for label in values if values[label]]
    axis.boxplot([values[label] for label in filled], positions=[positions[label] for label in filled], widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)  # fixed, so the same input draws the same figure
    for label in filled:
        spread = jitter.uniform(-0.12, 0.12, len(values[label]))
        axis.scatter(positions[label] + spread, values[label], s=16, alpha=0.7, color="C0", zorder=3)
    axis.set_xticks(list(positions.values()), [f"{label}\n(n = {len(values[label])})" for label in values], fontsize=8)
    axis.set_xlim(0.4, len(values) + 0.6)
    axis.set_ylim(bottom=0.0, top=max(1.0, max(max(v) for v in values.values() if v)) * 1.04)
    axis.set(
        ylabel="relative distance to the full search's hyper-parameters\n(0 = same setting, 1 = opposite corners)",
        title=title or "hyper-parameters found by each arm vs the full search (one dot per search)",
    )
    axis.title.set_fontsize(9)
    return drawn


# --- an HPO study's search plot, drawn by Optuna's matplotlib visualisations ---------------------------------------

#: the search plot's size in inches: 1320 x 1012 pixels at the reports' 110 dpi, which MLflow's artifact view
#: shows at about its own size; each of its four panels is drawn at its quadrant's size, so its text keeps its size
SEARCH_PLOT_INCHES = (12.0, 9.2)


def search_study(rows: Iterable[Any], space: Any) -> Any:
    """An in-memory Optuna study of an HPO study's search trials, for Optuna's visualisations.

    A trial that trained to the end is COMPLETE with its validation Dice; one stopped early is PRUNED, its
    Dice at the stop its intermediate value at that epoch (its rung); a failed one is FAIL; running ones are
    left out. Log-uniform hyper-parameters are log-scaled distributions, so the plots draw them on log axes.

    Args:
        rows: the study's trial rows (:class:`proxyhpo.analysis.report.TrialRow`: ``hyperparameters``,
            ``val_dice``, ``stopped``, ``stopped_dice``, ``stopped_at_epoch``, ``running``, ``role``).
        space: the study's :class:`~proxyhpo.config.SearchSpace`.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    distributions = {}
    for name, distribution in space.items():
        if distribution.type == "categorical":
            distributions[name] = CategoricalDistribution([str(choice) for choice in distribution.choices])
        else:
            distributions[name] = FloatDistribution(distribution.low, distribution.high, log=distribution.type == "log_uniform")
    study = optuna.create_study(direction="maximize", study_name="search")
    for row in rows:
        if getattr(row, "role", "trial") != "trial" or row.running:
            continue
        params = {name: (str(value) if isinstance(distributions[name], CategoricalDistribution) else float(value)) for name, value in row.hyperparameters.items() if value is not None}
        if set(params) != set(distributions):
            continue
        if row.stopped:
            state, value, steps = TrialState.PRUNED, None, {int(row.stopped_at_epoch or 0): row.stopped_dice} if row.stopped_dice is not None else {}
        elif row.val_dice is not None:
            state, value, steps = TrialState.COMPLETE, float(row.val_dice), {}
        else:
            state, value, steps = TrialState.FAIL, None, {}
        try:
            study.add_trial(create_trial(params=params, distributions=distributions, value=value, state=state, intermediate_values=steps))
        except ValueError:  # a value outside the space (a config edited since): not this search's trial
            continue
    return study


def _rendered(axes: Any, size: tuple[float, float], title: str) -> np.ndarray:
    """An Optuna panel (its Axes, or an array of them) drawn at ``size`` inches at the reports' dpi, as RGBA pixels; its figure closed."""
    import matplotlib.pyplot as plt

    from proxyhpo.analysis.publish import DPI

    from matplotlib.ticker import NullFormatter

    first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
    panel = first.figure
    panel.set_size_inches(*size)
    panel.set_dpi(DPI)
    for axis in panel.axes:
        for where in ("left", "center", "right"):  # Optuna's own titles ("Slice Plot") give way to one saying what is plotted
            axis.set_title("", loc=where)
        for scaled in (axis.xaxis, axis.yaxis):
            if scaled.get_scale() == "log":  # the major ticks (powers of ten) only: the minor labels run into each other
                scaled.set_minor_formatter(NullFormatter())
    panel.suptitle(title, fontsize=12)
    panel.canvas.draw()
    pixels = np.asarray(panel.canvas.buffer_rgba()).copy()
    plt.close(panel)
    return pixels


def _message(text: str, size: tuple[float, float]) -> np.ndarray:
    """A panel that says why it is empty, as RGBA pixels."""
    from proxyhpo.analysis.publish import DPI

    drawn = figure(*size)
    drawn.set_dpi(DPI)
    drawn.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=12)
    drawn.canvas.draw()
    return np.asarray(drawn.canvas.buffer_rgba()).copy()


def plot_search(rows: Sequence[Any], space: Any) -> Figure:
    """The HPO study's search, 2 x 2, by Optuna's matplotlib visualisations of :func:`search_study`.

    Top left, the optimisation history (validation Dice per trial and the best so far), with the trials
    stopped early drawn at their Dice at the stop, the epoch of their rung beside them; top right, the
    slice plots of the continuous hyper-parameters (a log axis for a log-uniform one, the learning rate);
    bottom left, the parallel coordinates of every hyper-parameter; bottom right, their importances
    (fANOVA). Trials that failed or still run are counted in the title.
    """
    import warnings

    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plots

    study = search_study(rows, space)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    search = [row for row in rows if getattr(row, "role", "trial") == "trial"]
    failed = sum(1 for row in search if not row.running and not row.stopped and row.val_dice is None)  # with params logged or not
    running = sum(1 for row in search if row.running)
    quadrant = (SEARCH_PLOT_INCHES[0] / 2, SEARCH_PLOT_INCHES[1] / 2)
    continuous = [name for name, distribution in space.items() if distribution.type != "categorical"][:2]
    panels = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings(), plt.rc_context({"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9, "figure.constrained_layout.use": True}):
            warnings.simplefilter("ignore")  # Optuna's matplotlib functions are marked experimental
            # constrained layout from the figure's start keeps a colour bar beside its panels
            if not complete:
                panels = [_message("no trial trained to the end yet: nothing to plot", quadrant)] * 4
            else:
                history = optuna_plots.plot_optimization_history(study, target_name="validation Dice")
                at_rung = [trial for trial in pruned if trial.last_step is not None]
                if at_rung:
                    history.scatter(
                        [trial.number for trial in at_rung], [trial.intermediate_values[trial.last_step] for trial in at_rung],
                        marker="v", color="grey", zorder=3, label="stopped early (Dice at its rung)",
                    )
                    for trial in at_rung:
                        history.annotate(f"ep {trial.last_step}", (trial.number, trial.intermediate_values[trial.last_step]), fontsize=8, color="grey",
                                         xytext=(3, 3), textcoords="offset points")
                    history.legend(loc="best")
                history.set_xlabel("trial (in order of proposal)")
                panels.append(_rendered(history, quadrant, "search progress"))
                if continuous:
                    panels.append(_rendered(optuna_plots.plot_slice(study, params=continuous, target_name="validation Dice"), quadrant, "validation Dice vs hyper-parameter"))
                else:
                    panels.append(_message("no continuous hyper-parameter to slice", quadrant))
                panels.append(_rendered(optuna_plots.plot_parallel_coordinate(study, target_name="validation Dice"), quadrant, "every trial's hyper-parameters"))
                if len(complete) >= 2:
                    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # the same figure from the same trials
                    importances = optuna_plots.plot_param_importances(study, evaluator=evaluator, target_name="validation Dice")
                    panels.append(_rendered(importances, quadrant, "hyper-parameter importance (fANOVA)"))
                else:
                    panels.append(_message("importances need at least 2 trials that trained to the end", quadrant))
    finally:
        optuna.logging.set_verbosity(verbosity)
    drawn = Figure(figsize=SEARCH_PLOT_INCHES)
    FigureCanvasAgg(drawn)
    for index, pixels in enumerate(panels):
        axis = drawn.add_axes((index % 2 / 2, 0.485 - index // 2 * 0.485, 0.5, 0.485))  # the top 3% for the title
        axis.imshow(pixels, interpolation="none")
        axis.set_axis_off()
    counts = [f"{len(complete)} trained to the end", f"{len(pruned)} stopped early"] + ([f"{failed} failed"] if failed else []) + ([f"{running} running"] if running else [])
    drawn.suptitle(f"search: {', '.join(counts)}", fontsize=12, y=0.999, va="top")
    return drawn
