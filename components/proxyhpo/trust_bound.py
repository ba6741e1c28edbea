"""The trust check's statistics: a correlation's one-sided lower bound over a small grid, and how often chance reaches it.

The trust check (``studies.trust``) trusts a proxy only when the lower bound of its rank correlation with
the full setting reaches a threshold. :func:`correlation_lower_bound` gives the bound (Fisher's z with
Bonett and Wright's standard errors); :func:`false_trust_rate` gives, exactly where it can, how often a
proxy unrelated to the full setting would still be trusted on a grid of n points; and
:func:`smallest_trust_grid` the fewest points that keep that rate at most 5%. Config validation calls them,
so this module needs numpy and the standard library only (no scipy, no reports); the reports reach it
through :mod:`proxyhpo.analysis.statistics`.

Example:
    >>> round(correlation_lower_bound("spearman", 0.9429, 6, 0.95), 3)
    0.553
    >>> smallest_trust_grid("spearman", 0.5, 0.95)
    6
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist
from typing import Literal

import numpy as np

__all__ = ["BOUND_METHODS", "MAX_FALSE_TRUST", "MIN_BOUND_POINTS", "correlation_lower_bound", "false_trust_rate", "smallest_trust_grid"]

BoundMethod = Literal["pearson", "spearman", "kendall"]
BOUND_METHODS: tuple[BoundMethod, ...] = ("pearson", "spearman", "kendall")
#: Fewest grid points a bound is computed over: Fisher's z needs n - 3 > 0 (Kendall's n - 4 > 0).
MIN_BOUND_POINTS: dict[str, int] = {"pearson": 4, "spearman": 4, "kendall": 5}
#: The most often a proxy unrelated to the full setting may be trusted (issue 18's protocol).
MAX_FALSE_TRUST = 0.05
#: Largest grid whose Spearman null distribution is enumerated (8! = 40,320 rankings, ~50 ms); above, Pearson's.
_EXACT_SPEARMAN_POINTS = 8
#: Points of the numerical integral of Pearson's null density.
_DENSITY_POINTS = 20_001


def _check(method: str, n_points: int, confidence: float) -> None:
    if method not in BOUND_METHODS:
        raise ValueError(f"method must be one of {list(BOUND_METHODS)}, got {method!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 0:
        raise ValueError(f"n_points must be an int >= 0, got {n_points!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")


def _perfect_value(method: str, n_points: int) -> float:
    """What a coefficient of +-1 is taken as: halfway between 1 and the next value a rank coefficient over n points can take.

    Fisher's z of 1 is infinite, which would make a perfect ranking of four points a certainty although
    chance gives one in 24 of them. Spearman's next value is ``1 - 12 / (n^3 - n)`` (one adjacent swap),
    Kendall's ``1 - 4 / (n (n - 1))``; Pearson's r uses Spearman's (its rank version).
    """
    if method == "kendall":
        return 1.0 - 2.0 / (n_points * (n_points - 1))
    return 1.0 - 6.0 / (n_points**3 - n_points)


def correlation_lower_bound(method: BoundMethod, value: float, n_points: int, confidence: float) -> float | None:
    """The lower bound of a correlation's one-sided interval over ``n_points`` grid points.

    Fisher's z, ``atanh(value)``, has over n points the standard error (Bonett and Wright 2000,
    Psychometrika 65:23-28) ``1 / sqrt(n - 3)`` for Pearson's r, ``sqrt((1 + value^2 / 2) / (n - 3))`` for
    Spearman's rho and ``sqrt(0.437 / (n - 4))`` for Kendall's tau; the bound is
    ``tanh(z - z_confidence * SE)``. The grid points are the sample, as they are what a search ranks.
    Chosen over a bootstrap because a percentile bootstrap over four to eight points (or over two
    repeats) is degenerate: a handful of distinct resamples, many with an undefined coefficient, and an
    interval that sits at 1 whenever the sample does. A coefficient of +-1 is taken as halfway to the
    next attainable value (Fisher's z of 1 is infinite). The bound is approximate; how often it lets an
    unrelated proxy through on a given grid is exact: :func:`false_trust_rate`.

    Args:
        method: ``pearson``, ``spearman`` or ``kendall``.
        value: the coefficient over the grid points (their mean Dice), in [-1, 1].
        n_points: grid points it was computed over.
        confidence: the one-sided interval's confidence, in (0, 1): the bound is its lower end.

    Returns:
        The bound in (-1, 1), or None with fewer than :data:`MIN_BOUND_POINTS` points.

    Raises:
        ValueError: naming an argument out of range.

    Example:
        >>> round(correlation_lower_bound("spearman", 1.0, 6, 0.95), 3)  # a perfect ranking of 6 points
        0.746
    """
    _check(method, n_points, confidence)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not -1.0 <= value <= 1.0:
        raise ValueError(f"value must be a number in [-1, 1], got {value!r}")
    if n_points < MIN_BOUND_POINTS[method]:
        return None
    edge = _perfect_value(method, n_points)
    value = min(max(float(value), -edge), edge)
    if method == "pearson":
        error = 1.0 / math.sqrt(n_points - 3)
    elif method == "spearman":
        error = math.sqrt((1.0 + value**2 / 2.0) / (n_points - 3))
    else:
        error = math.sqrt(0.437 / (n_points - 4))
    return math.tanh(math.atanh(value) - NormalDist().inv_cdf(confidence) * error)


@functools.lru_cache(maxsize=128)
def _null_distribution(method: str, n_points: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A rank coefficient's values and their probabilities when the two rankings are independent; None where not enumerated."""
    if method == "kendall":  # tau = 1 - 4 inversions / (n (n - 1)); the inversions' counts are the Mahonian numbers
        counts = np.ones(1)
        for size in range(2, n_points + 1):
            counts = np.convolve(counts, np.ones(size))
        return 1.0 - 4.0 * np.arange(counts.size) / (n_points * (n_points - 1)), counts / counts.sum()
    if method == "spearman" and n_points <= _EXACT_SPEARMAN_POINTS:  # every ranking of the proxy against a fixed one
        ranks = np.zeros((1, 0), dtype=np.int64)
        for size in range(n_points):  # the rankings of size + 1 points: point `size` put at every place
            ranks = np.concatenate([np.insert(ranks, place, size, axis=1) for place in range(size + 1)])
        sums, counts = np.unique(((ranks - np.arange(n_points)) ** 2).sum(axis=1), return_counts=True)
        return 1.0 - 6.0 * sums / (n_points**3 - n_points), counts / counts.sum()
    return None


def _pearson_null_tail(value: float, n_points: int) -> float:
    """P(r >= value) for Pearson's r of n independent normal pairs: its density is proportional to (1 - r^2)^((n - 4) / 2)."""
    grid = np.linspace(-1.0, 1.0, _DENSITY_POINTS)
    density = (1.0 - grid**2) ** ((n_points - 4) / 2.0) if n_points > 4 else np.ones_like(grid)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2.0)])
    return float(1.0 - np.interp(value, grid, cumulative) / cumulative[-1])


def false_trust_rate(method: BoundMethod, n_points: int, threshold: float, confidence: float) -> float:
    """How often a proxy unrelated to the reference reaches a lower bound >= ``threshold`` over ``n_points`` grid points.

    Exact for Kendall's tau (any n) and Spearman's rho (n <= 8): when the proxy knows nothing of the
    reference, every ranking of its points is equally likely. Pearson's r uses its null distribution for
    normal Dice, and so does Spearman's rho over more than 8 points (as ``scipy.stats.spearmanr``'s test).

    Args:
        method, n_points, confidence: as :func:`correlation_lower_bound`.
        threshold: the bound a trusted proxy must reach.

    Returns:
        The probability, in [0, 1]; 0 when too few points give no bound.

    Example:
        >>> round(false_trust_rate("spearman", 6, 0.5, 0.95), 4)  # rho >= 0.94: 6 of the 720 rankings
        0.0083
    """
    _check(method, n_points, confidence)
    if n_points < MIN_BOUND_POINTS[method]:
        return 0.0

    def trusted(value: float) -> bool:
        bound = correlation_lower_bound(method, value, n_points, confidence)
        return bound is not None and bound >= threshold

    exact = _null_distribution(method, n_points)
    if exact is not None:
        values, probabilities = exact
        return float(min(1.0, math.fsum(p for v, p in zip(values, probabilities) if trusted(float(v)))))
    if trusted(-1.0):
        return 1.0
    if not trusted(1.0):
        return 0.0
    low, high = -1.0, 1.0  # the bound rises with the coefficient: bisect for the smallest trusted value
    for _ in range(60):
        middle = (low + high) / 2.0
        low, high = (low, middle) if trusted(middle) else (middle, high)
    return _pearson_null_tail(high, n_points)


def smallest_trust_grid(
    method: BoundMethod, threshold: float, confidence: float, *, max_rate: float = MAX_FALSE_TRUST, largest: int = 60
) -> int | None:
    """The fewest grid points on which a perfect ranking is trusted and an unrelated proxy at most ``max_rate`` of the time.

    Args:
        method, threshold, confidence: as :func:`false_trust_rate`.
        max_rate: the largest :func:`false_trust_rate` allowed.
        largest: the largest grid tried.

    Returns:
        That count, or None when no grid up to ``largest`` points does (a threshold too low: chance reaches it).

    Example:
        >>> smallest_trust_grid("spearman", 0.5, 0.95), smallest_trust_grid("kendall", 0.5, 0.95)
        (6, 6)
    """
    for n_points in range(MIN_BOUND_POINTS[method], largest + 1):
        perfect = correlation_lower_bound(method, 1.0, n_points, confidence)
        if perfect is not None and perfect >= threshold and false_trust_rate(method, n_points, threshold, confidence) <= max_rate:
            return n_points
    return None
