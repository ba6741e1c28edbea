"""Statistics of the paper's comparison studies: correlations, Table 1, costs and hyper-parameter distances.

Pure functions over plain records: a :class:`GridCell` is one trained model of a study (one arm, one
repeat, one grid point). Nothing here reads MLflow or imports KFP or torch; the pipelines turn runs into
cells and log what these functions return (the metric names of DESIGN.md come from
:func:`correlation_metrics`).

Example:
    >>> cells = [GridCell(arm="full", repeat=0, point=p, internal_dice=d, external_dice=d, device_hours=0.1, steps=100)
    ...          for p, d in [("adam/0.001", 0.8), ("adam/0.0001", 0.6), ("rmsprop/0.001", 0.7)]]
    >>> best_point(cells)
    'adam/0.001'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scipy import stats

from proxyhpo.config import Categorical, SearchSpace, StrictModel
from proxyhpo.trust_bound import MIN_BOUND_POINTS, correlation_lower_bound, false_trust_rate, smallest_trust_grid

__all__ = [
    "Metric",
    "Method",
    "METHODS",
    "GridCell",
    "Correlation",
    "TableRow",
    "correlations",
    "correlation_metrics",
    "MIN_BOUND_POINTS",
    "correlation_lower_bound",
    "false_trust_rate",
    "smallest_trust_grid",
    "mean_std",
    "best_point",
    "table_at_point",
    "speedup",
    "equal_pack_hours",
    "relative_distance",
]

Metric = Literal["external", "internal"]
Method = Literal["pearson", "spearman", "kendall"]
METHODS: tuple[Method, ...] = ("pearson", "spearman", "kendall")
#: The parent run's metric name of each coefficient (DESIGN.md, MLflow contract).
METRIC_NAMES: dict[str, str] = {"pearson": "pearson_r", "spearman": "spearman_rho", "kendall": "kendall_tau"}
#: Fewest grid points a coefficient is computed over: two points always give r = +-1.
MIN_POINTS = 3


class GridCell(StrictModel):
    """One trained model of a study: an arm's trial at one grid point in one repeat.

    Attributes:
        arm: what was trained, e.g. ``full``, ``mi+labelcrop-8``, ``proxy-L3``.
        repeat: the repeat (split and initialization), from 0.
        point: the grid point's id, e.g. ``adam/0.001``.
        internal_dice, external_dice: Dice on the cell's own validation cases (reports call it validation
            Dice; the paper's "internal validation") and on the external test set; None when the trial failed (or, for ``external_dice``, when there is no external set).
        device_hours: the trial's share of the device's wall-clock hours (1/K of the pack's time in a
            pack of K), as the trial logs ``gpu_hours``.
        steps: optimizer steps the trial ran.
        pack_size: models in the trial's pack when it started.
    """

    arm: str = Field(min_length=1)
    repeat: int = Field(ge=0)
    point: str = Field(min_length=1)
    internal_dice: float | None = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    external_dice: float | None = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    device_hours: float = Field(ge=0.0, allow_inf_nan=False)
    steps: int = Field(ge=0)
    pack_size: int = Field(default=1, ge=1)

    @property
    def failed(self) -> bool:
        """Whether the trial produced no Dice at all."""
        return self.internal_dice is None and self.external_dice is None

    def dice(self, metric: Metric) -> float | None:
        """The ``external`` or ``internal`` Dice."""
        return self.external_dice if metric == "external" else self.internal_dice


class Correlation(StrictModel):
    """One correlation coefficient between a proxy arm and the reference, with its bootstrap interval.

    Attributes:
        value: the coefficient over the per-point means; None when undefined (``over`` says why).
        low, high: the percentile bootstrap interval over repeats; None when not computed or undefined.
        n_points: grid points finished in both arms; ``n_repeats``: the fewer repeats of the two arms.
        over: a sentence saying what the numbers are computed over.
    """

    method: Method
    value: float | None
    low: float | None
    high: float | None
    n_points: int
    n_repeats: int
    over: str


class TableRow(StrictModel):
    """One arm's row of the paper's Table 1: Dice at one grid point, mean and std over repeats.

    ``n`` counts the arm's cells at the point, ``n_failed`` those without any Dice; stds are None with
    fewer than two finished cells.
    """

    arm: str
    internal_mean: float | None
    internal_std: float | None
    external_mean: float | None
    external_std: float | None
    n: int
    n_failed: int


def _check_metric(metric: Any) -> None:
    if metric not in ("external", "internal"):
        raise ValueError(f"metric must be 'external' or 'internal', got {metric!r}")


def _check_cells(cells: Any, argument: str, *, one_arm: bool = True, allow_empty: bool = False) -> list[GridCell]:
    """``cells`` as a list, checked: GridCells only, non-empty, one arm, one cell per (repeat, point)."""
    if isinstance(cells, (str, bytes, Mapping)) or not isinstance(cells, Iterable):
        raise ValueError(f"{argument} must be a sequence of GridCell, got {type(cells).__name__}")
    cells = list(cells)
    if not cells and not allow_empty:
        raise ValueError(f"{argument} must hold at least one GridCell, got none")
    for i, cell in enumerate(cells):
        if not isinstance(cell, GridCell):
            raise ValueError(f"{argument}[{i}] must be a GridCell, got {type(cell).__name__}")
    if one_arm:
        arms = sorted({cell.arm for cell in cells})
        if len(arms) > 1:
            raise ValueError(f"{argument} must hold the cells of one arm, got arms {arms}")
        seen: set[tuple[int, str]] = set()
        for cell in cells:
            if (cell.repeat, cell.point) in seen:
                raise ValueError(f"{argument} holds two cells for repeat {cell.repeat} at grid point {cell.point!r}")
            seen.add((cell.repeat, cell.point))
    return cells


def _check_hours(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{argument} must be a finite number >= 0, got {value!r}")
    return float(value)


def _repeat_matrix(cells: list[GridCell], points: list[str], metric: Metric) -> tuple[np.ndarray, int]:
    """Dice as a (repeats, points) matrix, NaN where a cell is missing or failed; and the repeat count.

    Every repeat the arm ran is a row, so a repeat whose cells all failed is still drawn by the bootstrap.
    """
    repeats = sorted({cell.repeat for cell in cells})
    row, column = {r: i for i, r in enumerate(repeats)}, {p: j for j, p in enumerate(points)}
    matrix = np.full((len(repeats), len(points)), np.nan)
    for cell in cells:
        value = cell.dice(metric)
        if value is not None and cell.point in column:
            matrix[row[cell.repeat], column[cell.point]] = value
    return matrix, len(repeats)


def _column_means(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-point means of ``matrix`` (NaN = missing) with rows counted ``weights`` times, for each row of weights."""
    finished = np.isfinite(matrix)
    sums = weights @ np.where(finished, matrix, 0.0)
    counts = weights @ finished.astype(float)
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def _draw_weights(rng: np.random.Generator, n_repeats: int, resamples: int) -> np.ndarray:
    """How often each repeat is drawn in each resample, shape (resamples, repeats)."""
    drawn = rng.integers(0, n_repeats, size=(resamples, n_repeats))
    flat = (drawn + n_repeats * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_repeats).reshape(resamples, n_repeats).astype(float)


def _coefficient_rows(method: Method, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The coefficient of each row pair of ``x`` and ``y``, NaN where a row is constant.

    Equal, up to rounding, to ``scipy.stats.pearsonr``, ``spearmanr`` and ``kendalltau`` (tau-b), which
    take ~150 us a call; vectorized over rows because the bootstrap needs thousands of them.
    """
    constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
    if method == "spearman":  # Pearson's r of the average ranks, as scipy.stats.spearmanr
        x, y, method = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1), "pearson"
    if method == "pearson":
        xc, yc = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
        numerator, denominator = (xc * yc).sum(axis=1), np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    else:  # Kendall's tau-b: pairs tied on one side count in neither the numerator nor that side's total
        i, j = np.triu_indices(x.shape[1], 1)
        numerator, denominator = np.empty(len(x)), np.empty(len(x))
        chunk = max(1, 4_000_000 // max(1, len(i)))  # bounds the (rows, pairs) arrays' memory
        for start in range(0, len(x), chunk):
            part = slice(start, start + chunk)
            sx, sy = np.sign(x[part][:, i] - x[part][:, j]), np.sign(y[part][:, i] - y[part][:, j])
            numerator[part] = (sx * sy).sum(axis=1)
            denominator[part] = np.sqrt(np.abs(sx).sum(axis=1) * np.abs(sy).sum(axis=1))
    undefined = constant | (denominator == 0)
    values = np.divide(numerator, denominator, out=np.full(len(x), np.nan), where=~undefined)
    return np.clip(values, -1.0, 1.0)


def expanded_tail(n_repeats: int, confidence: float) -> float:
    """The tail probability at which the expanded percentile interval reads the bootstrap distribution.

    The plain percentile bootstrap is too narrow over few resampling units: over 7 repeats it resamples means
    with (n-1)/n of their variance and reads normal quantiles where Student's t applies, and covered the
    coefficient of the expected Dice 85 times in 100 (Pearson). Hesterberg's expanded percentile interval
    (The American Statistician 69(4), 2015) widens it by reading the quantiles at
    ``Phi(-sqrt(n/(n-1)) * t_{n-1}(1 - alpha/2))`` instead of ``alpha/2``.

    Args:
        n_repeats: resampling units (repeats) per arm, the smaller arm's count; below 2 no widening applies.
        confidence: the interval's coverage, in (0, 1).

    Returns:
        The lower quantile level; the upper one is ``1 - tail``.

    Example:
        >>> round(expanded_tail(7, 0.95), 4)
        0.0041
    """
    alpha = 1 - confidence
    if n_repeats < 2:
        return alpha / 2
    return float(stats.norm.cdf(-math.sqrt(n_repeats / (n_repeats - 1)) * stats.t.ppf(1 - alpha / 2, n_repeats - 1)))


def _bootstrap_coefficients(method: Method, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of resampled means; a point with no finished drawn repeat is left out of that resample."""
    values = np.full(len(x), np.nan)
    complete = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    if complete.any():
        values[complete] = _coefficient_rows(method, x[complete], y[complete])
    for row in np.flatnonzero(~complete):
        keep = np.isfinite(x[row]) & np.isfinite(y[row])
        if keep.sum() >= MIN_POINTS:
            values[row] = _coefficient_rows(method, x[row, keep][None], y[row, keep][None])[0]
    return values


def correlations(
    proxy: Sequence[GridCell],
    reference: Sequence[GridCell],
    *,
    metric: Metric = "external",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Correlation]:
    """Pearson's r, Spearman's rho and Kendall's tau between a proxy arm and the reference over the grid.

    For every grid point with at least one finished cell in both arms, the mean Dice over repeats is taken
    in each arm (failed cells left out); the coefficients correlate the proxy's means with the reference's
    across points (the paper's Fig. 2; the unit, means over repeats, is ours). The interval is an expanded
    percentile bootstrap over repeats (:func:`expanded_tail`): each resample draws repeats with replacement,
    independently for the two arms, the same drawn repeats for every grid point of an arm (a repeat's cells
    stay together), and recomputes the means and the coefficients. Resamples whose coefficient is undefined
    (constant means, fewer than 3 points) are skipped. Resampling adds repeat noise to the means, which pulls
    a coefficient toward 0: when the repeats scatter widely against the spread between grid points, the
    interval can sit below the value.
    Simulated coverage of the coefficient of the expected Dice (tests/analysis/test_statistics_coverage.py;
    7 repeats, 8 points, repeat noise a third of the spread between points): 93 of 100 for Pearson's r, 98
    for Spearman's rho and Kendall's tau (the plain percentile interval: 85, 98, 93). Over 3 repeats, or with
    repeat noise two thirds of the spread, Pearson's r still under-covers (54 to 88 in 200 simulations):
    there the attenuation of the means, not the interval's width, dominates. The interval
    describes the repeat noise; the trust verdict uses a bound over the grid points instead
    (:func:`~proxyhpo.trust_bound.correlation_lower_bound`).

    Args:
        proxy: the proxy arm's cells (one arm, one cell per repeat and point).
        reference: the reference arm's cells, usually the full data and network.
        metric: which Dice to correlate, ``external`` (the paper's proxy data study) or ``internal``.
        confidence: the interval's coverage, in (0, 1).
        resamples: bootstrap resamples; 0 computes no interval.
        seed: seed of :func:`numpy.random.default_rng`; the same seed gives the same interval.

    Returns:
        ``{"pearson": ..., "spearman": ..., "kendall": ...}``; a coefficient that is undefined (fewer
        than 3 common points, or one arm's means all equal) has value, low and high None, and its
        ``over`` says why.

    Raises:
        ValueError: naming the argument that is empty, holds something other than GridCells, mixes arms
            or repeats a cell, or an out-of-range ``metric``, ``confidence``, ``resamples`` or ``seed``.

    Example:
        >>> result = correlations(proxy_cells, full_cells, resamples=500)  # doctest: +SKIP
        >>> result["pearson"].value, result["pearson"].low, result["pearson"].high  # doctest: +SKIP
        (0.71, 0.42, 0.88)
    """
    proxy_cells, reference_cells = _check_cells(proxy, "proxy"), _check_cells(reference, "reference")
    _check_metric(metric)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError(f"resamples must be an int >= 0, got {resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")

    def finished_points(cells: list[GridCell]) -> set[str]:
        return {cell.point for cell in cells if cell.dice(metric) is not None}

    points = sorted(finished_points(proxy_cells) & finished_points(reference_cells))
    proxy_matrix, proxy_repeats = _repeat_matrix(proxy_cells, points, metric)
    reference_matrix, reference_repeats = _repeat_matrix(reference_cells, points, metric)
    x = _column_means(proxy_matrix, np.ones(proxy_repeats))
    y = _column_means(reference_matrix, np.ones(reference_repeats))

    repeats = f"{proxy_repeats} repeats per arm" if proxy_repeats == reference_repeats else f"{proxy_repeats} proxy and {reference_repeats} reference repeats"
    described = f"{len(points)} grid point{'s' if len(points) != 1 else ''}, mean {metric} Dice over {repeats}"
    reason = None
    if len(points) < MIN_POINTS:
        reason = f"undefined: {len(points)} grid point(s) finished in both arms, {MIN_POINTS} needed"
    elif np.ptp(x) == 0 or np.ptp(y) == 0:
        reason = f"undefined: the {'proxy' if np.ptp(x) == 0 else 'reference'}'s mean {metric} Dice is the same at every grid point"

    resampled: tuple[np.ndarray, np.ndarray] | None = None
    if reason is None and resamples:
        rng = np.random.default_rng(seed)
        proxy_weights = _draw_weights(rng, proxy_repeats, resamples)
        reference_weights = _draw_weights(rng, reference_repeats, resamples)
        resampled = _column_means(proxy_matrix, proxy_weights), _column_means(reference_matrix, reference_weights)

    results: dict[str, Correlation] = {}
    for method in METHODS:
        value = low = high = None
        over = f"{described}; {reason}" if reason else described
        if reason is None:
            # the resamples' code, not scipy's (equal up to rounding), so an interval of 1.0s holds a value of 1.0
            value = float(_coefficient_rows(method, x[None], y[None])[0])
            if resampled is None:
                over += "; no interval (resamples=0)"
            else:
                coefficients = _bootstrap_coefficients(method, *resampled)
                defined = coefficients[np.isfinite(coefficients)]
                skipped = f", {resamples - defined.size} undefined ones skipped" if defined.size < resamples else ""
                if defined.size:
                    tail = expanded_tail(min(proxy_repeats, reference_repeats), confidence)
                    low, high = (float(q) for q in np.quantile(defined, [tail, 1 - tail]))
                    over += f"; {confidence * 100:g}% expanded-percentile bootstrap interval over repeats ({resamples} resamples{skipped})"
                else:
                    over += f"; no interval: all {resamples} bootstrap resamples were undefined"
        results[method] = Correlation(
            method=method, value=value, low=low, high=high, n_points=len(points), n_repeats=min(proxy_repeats, reference_repeats), over=over
        )
    return results


def correlation_metrics(results: Mapping[str, Correlation]) -> dict[str, float]:
    """The coefficients as the parent run's MLflow metrics (``pearson_r``, ``pearson_r_low``, ...).

    Undefined values are left out, since MLflow metrics are numbers.

    Example:
        >>> correlation_metrics({"pearson": Correlation(method="pearson", value=0.5, low=0.1, high=0.8,
        ...                                             n_points=16, n_repeats=7, over="...")})
        {'pearson_r': 0.5, 'pearson_r_low': 0.1, 'pearson_r_high': 0.8}
    """
    metrics: dict[str, float] = {}
    for key, result in results.items():
        if not isinstance(result, Correlation):
            raise ValueError(f"results[{key!r}] must be a Correlation, got {type(result).__name__}")
        name = METRIC_NAMES[result.method]
        for suffix, value in (("", result.value), ("_low", result.low), ("_high", result.high)):
            if value is not None:
                metrics[name + suffix] = value
    return metrics


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the values that are not None or NaN.

    Returns:
        ``(mean, std)``; ``(None, None)`` without values, ``(mean, None)`` with a single one.

    Raises:
        ValueError: when a value is neither a number nor None.

    Example:
        >>> mean, std = mean_std([0.8, None, 0.6])
        >>> round(mean, 4), round(std, 4)
        (0.7, 0.1414)
    """
    kept = []
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"values[{i}] must be a number or None, got {value!r}")
        if not math.isnan(value):
            kept.append(float(value))
    if not kept:
        return None, None
    mean = math.fsum(kept) / len(kept)
    return mean, (float(np.std(kept, ddof=1)) if len(kept) > 1 else None)


def best_point(cells: Sequence[GridCell], metric: Metric = "external") -> str | None:
    """The grid point with the highest mean Dice over repeats (failed cells left out).

    Ties go to the first point in sorted order, so the answer never depends on the cells' order.

    Args:
        cells: one arm's cells.
        metric: ``external`` or ``internal`` Dice.

    Returns:
        The point's id, or None when no cell finished.

    Raises:
        ValueError: when ``cells`` is empty, mixes arms or repeats a cell, or ``metric`` is unknown.

    Example:
        >>> best_point(full_cells, "internal")  # doctest: +SKIP
        'adam/0.001'
    """
    cells = _check_cells(cells, "cells")
    _check_metric(metric)
    means = {point: mean_std(c.dice(metric) for c in cells if c.point == point)[0] for point in sorted({c.point for c in cells})}
    finished = {point: mean for point, mean in means.items() if mean is not None}
    return max(finished, key=lambda point: finished[point]) if finished else None  # max keeps the first of equals


def table_at_point(arms: Mapping[str, Sequence[GridCell]], point: str) -> list[TableRow]:
    """The paper's Table 1: every arm's Dice at one grid point (the reference's best), mean and std over repeats.

    Args:
        arms: arm label -> that arm's cells; the labels name the rows, in this order.
        point: the grid point, usually ``best_point(reference_cells)``.

    Returns:
        One :class:`TableRow` per arm; an arm never trained at ``point`` has ``n == 0`` and no means.

    Raises:
        ValueError: when ``arms`` is empty, an arm's cells are invalid, or no arm has a cell at ``point``.

    Example:
        >>> rows = table_at_point({"MI+Labelcrop": mi_cells, "Full": full_cells}, "adam/0.001")  # doctest: +SKIP
        >>> rows[0].external_mean, rows[0].external_std  # doctest: +SKIP
        (0.8173, 0.0184)
    """
    if not isinstance(arms, Mapping) or not arms:
        raise ValueError(f"arms must map at least one arm label to its cells, got {arms!r}")
    if not isinstance(point, str) or not point:
        raise ValueError(f"point must be a non-empty grid point id, got {point!r}")
    checked = {label: _check_cells(cells, f"arms[{label!r}]") for label, cells in arms.items()}
    if not any(cell.point == point for cells in checked.values() for cell in cells):
        known = sorted({cell.point for cells in checked.values() for cell in cells})
        raise ValueError(f"point {point!r} is in none of the arms; they hold {known[:8]}{' ...' if len(known) > 8 else ''}")
    rows = []
    for label, cells in checked.items():
        here = [cell for cell in cells if cell.point == point]
        internal, external = mean_std(c.internal_dice for c in here), mean_std(c.external_dice for c in here)
        rows.append(
            TableRow(
                arm=label,
                internal_mean=internal[0],
                internal_std=internal[1],
                external_mean=external[0],
                external_std=external[1],
                n=len(here),
                n_failed=sum(cell.failed for cell in here),
            )
        )
    return rows


def speedup(reference_hours: float, proxy_hours: float) -> float | None:
    """How many times fewer device-hours the proxy search took: ``reference_hours / proxy_hours``.

    Returns:
        The ratio, or None when ``proxy_hours`` is 0 (nothing to divide by).

    Raises:
        ValueError: when either argument is not a finite number >= 0.

    Example:
        >>> speedup(1056.0, 240.0)
        4.4
    """
    reference_hours, proxy_hours = _check_hours(reference_hours, "reference_hours"), _check_hours(proxy_hours, "proxy_hours")
    return reference_hours / proxy_hours if proxy_hours > 0 else None


def equal_pack_hours(cells: Iterable[GridCell]) -> float:
    """The cells' device-hours as if every trial had run alone, each step costing what a step of its pack cost.

    The paper does not pack trials (it reports GPU hours); ours: a cell's cost counted per trial-step without packing. A cell's ``device_hours`` is its 1/K share
    of its pack's time, so ``device_hours * pack_size`` is the pack's time for the cell's ``steps`` steps,
    and ``device_hours * pack_size / steps`` the device time of one packed step (all K models at once).
    On these launch-bound networks packing never makes a step cheaper than training one model alone, so
    a packed step's time is an upper bound of one trial-step alone; charging every step of every trial
    that much gives ``sum(device_hours * pack_size)`` over the cells (finished and failed) with
    ``steps > 0``. It compares searches as if packing had saved nothing, so ``speedup`` over it credits
    the proxies only with what smaller data and networks save. (``pack_size`` is the size when the pack
    started; where trials left a pack early this over-states the cost a little more.)

    Args:
        cells: the cells of one search or study, any arms; empty gives 0.

    Raises:
        ValueError: when ``cells`` holds something other than GridCells.

    Example:
        >>> equal_pack_hours([GridCell(arm="proxy-L3", repeat=0, point="adam/0.001", internal_dice=0.7,
        ...                            external_dice=None, device_hours=0.25, steps=400, pack_size=16)])
        4.0
    """
    checked = _check_cells(cells, "cells", one_arm=False, allow_empty=True)
    return math.fsum(cell.device_hours * cell.pack_size for cell in checked if cell.steps > 0)


def relative_distance(found: Mapping[str, Any], reference: Mapping[str, Any], space: SearchSpace) -> float:
    """The relative distance between two hyper-parameter settings, in [0, 1] (the paper's Fig. 4C/D plots one without a formula: this formula is ours).

    Each value is mapped to the unit interval by its distribution's ``to_unit`` (a log scale for a
    log-uniform range); a categorical hyper-parameter contributes 0 when the choices are equal and 1
    otherwise (compared as text, since values read back from MLflow params are strings). The result is
    the Euclidean distance of the two unit vectors divided by sqrt(number of hyper-parameters), so
    identical settings give 0 and opposite corners of the space give 1.

    Args:
        found: the setting a search found, by the search space's names.
        reference: the setting the full search found.
        space: the search space both were searched in.

    Raises:
        ValueError: when a mapping lacks or adds a hyper-parameter, or a continuous value is not a number.

    Example:
        >>> space = SearchSpace.model_validate({"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2},
        ...                                     "p": {"type": "uniform", "low": 0.0, "high": 1.0}})
        >>> relative_distance({"lr": 1e-4, "p": 0.0}, {"lr": 1e-2, "p": 1.0}, space)
        1.0
    """
    if not isinstance(space, SearchSpace):
        raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
    for argument, values in (("found", found), ("reference", reference)):
        if not isinstance(values, Mapping):
            raise ValueError(f"{argument} must map hyper-parameter names to values, got {type(values).__name__}")
        missing, unknown = [n for n in space.names if n not in values], [n for n in values if n not in space]
        if missing or unknown:
            raise ValueError(f"{argument} must have exactly the hyper-parameters {list(space.names)}, missing {missing}, unknown {unknown}")
    squares = []
    for name, distribution in space.items():
        if isinstance(distribution, Categorical):
            squares.append(0.0 if str(found[name]) == str(reference[name]) else 1.0)
            continue
        units = []
        for argument, value in (("found", found[name]), ("reference", reference[name])):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{argument}[{name!r}] must be a finite number for the {distribution.type} range, got {value!r}")
            units.append(distribution.to_unit(float(value)))
        squares.append((units[0] - units[1]) ** 2)
    return math.sqrt(math.fsum(squares) / len(squares))
