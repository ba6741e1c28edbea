"""Do the reports' intervals cover what they claim to? Simulated samples from known distributions (seeded).

A 95% interval must cover the true value in 90 to 99 of 100 simulated samples (issue 18): the percentile
bootstrap over repeats that every grid report prints beside its coefficients, and the one-sided bound the
trust verdict compares with its threshold.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import stats

from proxyhpo.analysis.statistics import GridCell, correlations
from proxyhpo.trust_bound import correlation_lower_bound

SAMPLES = 100
POINTS = [f"p{i}" for i in range(8)]
#: Each grid point's expected Dice in the reference and in the proxy (a proxy that ranks most points like the reference).
REFERENCE_MEANS = np.linspace(0.5, 0.8, len(POINTS))
PROXY_MEANS = 0.7 * REFERENCE_MEANS + 0.05 * np.sin(1.7 * np.arange(len(POINTS)))


def _cells(arm: str, dice: np.ndarray) -> list[GridCell]:
    return [
        GridCell(arm=arm, repeat=r, point=p, internal_dice=float(dice[r, j]), external_dice=None, device_hours=0.01, steps=10)
        for r in range(dice.shape[0])
        for j, p in enumerate(POINTS)
    ]


@functools.cache
def _bootstrap_coverage() -> dict[str, int]:
    """How many of 100 samples' 95% bootstrap intervals cover the coefficient of the expected Dice, per coefficient.

    7 repeats (the paper's) of 8 grid points, repeat noise 0.03 Dice (about a third of the spread between points).
    """
    truth = {
        "pearson": stats.pearsonr(PROXY_MEANS, REFERENCE_MEANS).statistic,
        "spearman": stats.spearmanr(PROXY_MEANS, REFERENCE_MEANS).statistic,
        "kendall": stats.kendalltau(PROXY_MEANS, REFERENCE_MEANS).statistic,
    }
    covered = dict.fromkeys(truth, 0)
    rng = np.random.default_rng(2026)
    for sample in range(SAMPLES):
        reference = REFERENCE_MEANS + rng.normal(0.0, 0.03, (7, len(POINTS)))
        proxy = PROXY_MEANS + rng.normal(0.0, 0.03, (7, len(POINTS)))
        found = correlations(_cells("proxy", proxy), _cells("full", reference), metric="internal", resamples=1000, seed=sample)
        for method, value in truth.items():
            covered[method] += found[method].low <= value <= found[method].high
    return covered


@pytest.mark.parametrize(
    "method",
    [
        "pearson",
        "spearman",
        "kendall",
    ],
)
def test_the_bootstrap_interval_over_repeats_covers_the_coefficient_of_the_expected_dice(method: str) -> None:
    assert 90 <= _bootstrap_coverage()[method] <= 99, _bootstrap_coverage()


@pytest.mark.parametrize(("method", "population"), [("pearson", lambda rho: rho), ("spearman", lambda rho: 6 / math.pi * math.asin(rho / 2))])
def test_the_trust_bound_lies_below_the_true_correlation_95_times_in_100(method: str, population) -> None:
    """Grid points drawn from a bivariate normal with correlation 0.6: the one-sided 95% bound over 8 points."""
    rho, n_points = 0.6, 8
    rng = np.random.default_rng(18)
    covariance = [[1.0, rho], [rho, 1.0]]
    below = 0
    for _ in range(SAMPLES):
        x, y = rng.multivariate_normal([0.0, 0.0], covariance, n_points).T
        value = stats.pearsonr(x, y).statistic if method == "pearson" else stats.spearmanr(x, y).statistic
        below += correlation_lower_bound(method, float(value), n_points, 0.95) <= population(rho)
    assert 90 <= below <= 99, below
