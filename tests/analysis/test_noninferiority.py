"""The headline's paired non-inferiority test: known inputs, both verdicts, the bound's arithmetic and its coverage."""

import math

import numpy as np
import pytest
from scipy import stats

from proxyhpo.analysis.noninferiority import NON_INFERIOR, NOT_SHOWN, TOO_FEW_SEEDS, noninferiority
from proxyhpo.config.studies import NonInferiorityConfig

REFERENCE = [0.80, 0.81, 0.79, 0.80, 0.82]


def test_paired_t_bound_is_the_textbook_one():
    levers = [0.805, 0.805, 0.795, 0.801, 0.818]
    result = noninferiority(REFERENCE, levers)
    d = np.array(levers) - np.array(REFERENCE)
    # mean - t_{0.95, 4} * sd / sqrt(5); t_{0.95, 4} = 2.1318...
    expected = d.mean() - 2.131846786 * d.std(ddof=1) / math.sqrt(5)
    assert result.differences == pytest.approx(tuple(d))
    assert result.lower_bound == pytest.approx(expected, abs=1e-9)
    assert result.lower_bound > -0.01 and result.verdict == NON_INFERIOR
    assert result.p_value < 0.05  # the test of H0 mean d <= -margin agrees with the bound


def test_a_consistent_loss_of_two_points_is_not_shown_non_inferior():
    levers = [r - 0.02 + e for r, e in zip(REFERENCE, [0.001, -0.002, 0.0, 0.002, -0.001], strict=True)]
    result = noninferiority(REFERENCE, levers)
    assert result.verdict == NOT_SHOWN
    assert result.lower_bound < -0.01 and "not shown" in result.sentence()


def test_a_small_mean_loss_with_a_wide_interval_is_not_shown():
    # mean difference -0.002 (inside the margin) but seeds scatter by ±3 points: the bound is below -0.01
    levers = [r + e for r, e in zip(REFERENCE, [0.03, -0.03, 0.02, -0.03, 0.0], strict=True)]
    result = noninferiority(REFERENCE, levers)
    assert result.mean_difference == pytest.approx(-0.002)
    assert result.mean_difference > -result.margin
    assert result.verdict == NOT_SHOWN


def test_fewer_seeds_than_the_minimum_give_no_verdict():
    result = noninferiority(REFERENCE[:3], REFERENCE[:3])
    assert result.verdict == TOO_FEW_SEEDS and result.n == 3
    assert noninferiority([0.8], [0.8]).lower_bound is None


def test_the_margin_is_the_configs():
    levers = [r - 0.015 for r in REFERENCE]  # a constant loss of 1.5 points
    assert noninferiority(REFERENCE, levers).verdict == NOT_SHOWN
    assert noninferiority(REFERENCE, levers, NonInferiorityConfig(margin=0.02)).verdict == NON_INFERIOR


def test_paired_bootstrap_agrees_with_the_t_bound_on_normal_differences():
    rng = np.random.default_rng(3)
    reference = rng.uniform(0.7, 0.9, 30)
    levers = reference + rng.normal(0.0, 0.01, 30)
    t = noninferiority(reference, levers, NonInferiorityConfig(test="paired-t"))
    boot = noninferiority(reference, levers, NonInferiorityConfig(test="paired-bootstrap", bootstrap_samples=2000))
    assert boot.test == "paired-bootstrap" and boot.p_value is None
    assert boot.lower_bound == pytest.approx(t.lower_bound, abs=0.002)


@pytest.mark.parametrize("test", ["paired-t", "paired-bootstrap"])
def test_the_one_sided_bound_covers_the_true_mean_about_95_times_in_100(test):
    rng = np.random.default_rng(18)
    config = NonInferiorityConfig(test=test, min_seeds=2, bootstrap_samples=500)
    covered = 0
    for _ in range(100):
        d = rng.normal(0.003, 0.01, 12)
        covered += noninferiority(np.zeros(12), d, config).lower_bound <= 0.003
    assert 90 <= covered <= 99


def test_unequal_lengths_and_nan_are_refused():
    with pytest.raises(ValueError, match="one Dice per seed"):
        noninferiority([0.8, 0.8], [0.8])
    with pytest.raises(ValueError, match="finite"):
        noninferiority([0.8, float("nan")], [0.8, 0.8])


def test_scipy_t_quantile_matches_the_constant_used_above():
    assert stats.t.ppf(0.95, 4) == pytest.approx(2.131846786)
