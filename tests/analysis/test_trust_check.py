"""The trust check's verdict: a lower bound against the threshold, on a grid where chance rarely passes.

Issue 18: the verdict compared the point estimate with the threshold, and on the 4-point grid a Spearman
rho >= 0.5 came about by chance one time in five. Here: the bound (proxyhpo.trust_bound), the config check
of the grid, a simulation of unrelated proxies at the default grid, and both sides of the verdict (a useless
proxy is not trusted, a faithful one is).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from proxyhpo.analysis.statistics import GridCell, correlations
from proxyhpo.analysis.trust_report import trust_verdict
from proxyhpo.config import StudyConfig, grid_points, parse_config
from proxyhpo.config.studies import TrustConfig
from proxyhpo.errors import ConfigError
from proxyhpo.trust_bound import MAX_FALSE_TRUST, correlation_lower_bound, false_trust_rate, smallest_trust_grid


def _study(**trust) -> StudyConfig:
    return parse_config(StudyConfig, {"name": "trust", "data": {"dataset": "d"}, "studies": {"trust": trust}}, "study.yaml")


def _cells(arm: str, dice: np.ndarray, points: list[str]) -> list[GridCell]:
    """One arm's cells from a (repeats, points) matrix of validation Dice."""
    return [
        GridCell(arm=arm, repeat=r, point=p, internal_dice=float(dice[r, j]), external_dice=None, device_hours=0.01, steps=10)
        for r in range(dice.shape[0])
        for j, p in enumerate(points)
    ]


# ------------------------------------------------------------------------------------------ the bound


def test_the_bound_is_fisher_z_with_the_bonett_wright_error() -> None:
    z = stats.norm.ppf(0.95)
    assert correlation_lower_bound("spearman", 0.8, 10, 0.95) == pytest.approx(math.tanh(math.atanh(0.8) - z * math.sqrt(1.32 / 7)))
    assert correlation_lower_bound("pearson", 0.8, 10, 0.95) == pytest.approx(math.tanh(math.atanh(0.8) - z / math.sqrt(7)))
    assert correlation_lower_bound("kendall", 0.6, 10, 0.9) == pytest.approx(math.tanh(math.atanh(0.6) - stats.norm.ppf(0.9) * math.sqrt(0.437 / 6)))
    # a perfect ranking is not a certainty: taken halfway to the next value (one adjacent swap)
    assert correlation_lower_bound("spearman", 1.0, 6, 0.95) == pytest.approx(correlation_lower_bound("spearman", 1 - 6 / 210, 6, 0.95))
    assert correlation_lower_bound("spearman", 1.0, 6, 0.95) < 0.75
    assert correlation_lower_bound("spearman", 0.9, 3, 0.95) is None and correlation_lower_bound("kendall", 0.9, 4, 0.95) is None
    with pytest.raises(ValueError, match=r"value must be a number in \[-1, 1\], got 1.5"):
        correlation_lower_bound("spearman", 1.5, 6, 0.95)
    with pytest.raises(ValueError, match=r"confidence must be a number in \(0, 1\), got 95"):
        correlation_lower_bound("spearman", 0.5, 6, 95)


@pytest.mark.parametrize(("method", "n_points"), [("spearman", 5), ("spearman", 6), ("kendall", 5), ("kendall", 6)])
def test_the_false_trust_rate_is_exact(method: str, n_points: int) -> None:
    # every ranking of the proxy's points against the reference's, counted
    coefficient = stats.spearmanr if method == "spearman" else stats.kendalltau
    values = [float(coefficient(range(n_points), ranking).statistic) for ranking in itertools.permutations(range(n_points))]
    for threshold in (0.0, 0.3, 0.5):
        trusted = sum(correlation_lower_bound(method, value, n_points, 0.95) >= threshold for value in values)
        assert false_trust_rate(method, n_points, threshold, 0.95) == pytest.approx(trusted / len(values))


def test_the_smallest_grid() -> None:
    assert smallest_trust_grid("spearman", 0.5, 0.95) == 6
    assert smallest_trust_grid("spearman", 0.5, 0.99) > 6
    assert smallest_trust_grid("spearman", -1.0, 0.95) is None  # chance reaches -1 on any grid


# ------------------------------------------------------------------------------------------ the config


def test_the_default_grid_is_the_smallest_that_can_say_yes_and_rarely_says_it_by_chance() -> None:
    config = TrustConfig()
    n_points = len(grid_points(config.grid))
    assert n_points == smallest_trust_grid(config.metric, config.threshold, config.confidence) == 6
    assert false_trust_rate(config.metric, n_points, config.threshold, config.confidence) <= MAX_FALSE_TRUST


@pytest.mark.parametrize(
    ("trust", "message"),
    [
        (
            {"grid": {"lr": [0.01, 0.003, 0.001, 0.0003]}},
            "studies.trust.grid: 4 grid points are too few for spearman's 0.95 lower bound >= 0.5: even a perfect ranking has a lower bound "
            "of -0.44; list at least 6 grid points, or lower studies.trust.threshold",
        ),
        (
            {"threshold": -1.0},
            "studies.trust.grid: on 6 grid points, spearman's 0.95 lower bound >= -1 trusts a proxy unrelated to the full setting 100.0% "
            "of the time (at most 5%); raise studies.trust.threshold (chance reaches it on any grid)",
        ),
        (
            {"confidence": 0.99},
            "studies.trust.grid: 6 grid points are too few for spearman's 0.99 lower bound >= 0.5: even a perfect ranking has a lower bound "
            "of 0.45; list at least 7 grid points, or lower studies.trust.threshold",
        ),
    ],
)
def test_a_grid_too_small_for_the_threshold_is_a_config_error(trust: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        _study(**trust)
    assert str(error.value).startswith(f"study.yaml: {message}")


# ------------------------------------------------------------------------------------------ the verdict


POINTS = [f"lr={lr}" for lr in (0.002, 0.001, 0.0006, 0.0004, 0.0002, 0.0001)]


def test_an_unrelated_proxy_is_trusted_at_most_5_percent_of_the_time_at_the_default_grid() -> None:
    """Independent random Dice for the proxy and the reference (two repeats, the default grid): the real verdict."""
    study = _study()
    rng = np.random.default_rng(18)
    verdicts = []
    for _ in range(60):
        reference, proxy = rng.uniform(0.3, 0.9, (2, 6)), rng.uniform(0.3, 0.9, (2, 6))
        verdicts.append(trust_verdict(study, {"full": _cells("full", reference, POINTS), "proxy": _cells("proxy", proxy, POINTS)}).passed)
    assert None not in verdicts and np.mean(verdicts) <= 0.05
    # many more random rankings through the same bound: trusted as often as the exact rate says (6 in 720)
    ranks = np.argsort(rng.random((20_000, 6)), axis=1)
    rho = 1 - 6 * ((ranks - np.arange(6)) ** 2).sum(axis=1) / (6**3 - 6)
    trusted = np.array([correlation_lower_bound("spearman", float(r), 6, 0.95) >= 0.5 for r in rho])
    assert trusted.mean() <= 0.05 and trusted.mean() == pytest.approx(false_trust_rate("spearman", 6, 0.5, 0.95), abs=0.003)
    # the old rule, the point estimate against the threshold, trusts about one in six of them
    assert (rho >= 0.5).mean() > 0.1


def test_a_useless_proxy_is_not_trusted_and_a_faithful_one_is() -> None:
    study = _study()
    rng = np.random.default_rng(7)
    reference = np.linspace(0.85, 0.35, 6) + rng.normal(0, 0.01, (2, 6))
    # useless: the proxy's Dice per point has nothing to do with the reference's (the same values, the points shuffled)
    useless = reference[:, [1, 3, 0, 5, 2, 4]]
    verdict = trust_verdict(study, {"full": _cells("full", reference, POINTS), "proxy": _cells("proxy", useless, POINTS)})
    assert verdict.passed is False and verdict.lower is not None and verdict.lower < 0.5
    # faithful: the full setting itself as the proxy
    verdict = trust_verdict(study, {"full": _cells("full", reference, POINTS), "proxy": _cells("proxy", reference.copy(), POINTS)})
    assert verdict.passed is True and verdict.value == pytest.approx(1.0) and verdict.lower == pytest.approx(0.746, abs=1e-3)
    assert verdict.message == "proxy trusted: spearman 1.00 over 6 grid points, one-sided 95% interval [0.75, 1] >= 0.5 (validation Dice of each setting)"


def test_a_good_but_imperfect_ranking_is_trusted_on_the_default_grid_only_when_its_bound_clears() -> None:
    study = _study()
    reference = np.tile(np.linspace(0.85, 0.35, 6), (2, 1))
    one_swap = reference[:, [1, 0, 2, 3, 4, 5]]  # rho 0.94: bound 0.55
    two_swaps = reference[:, [1, 0, 2, 3, 5, 4]]  # rho 0.89: bound 0.27, although rho >= 0.5
    verdicts = [trust_verdict(study, {"full": _cells("full", reference, POINTS), "proxy": _cells("proxy", d, POINTS)}) for d in (one_swap, two_swaps)]
    assert [(round(v.value, 2), round(v.lower, 2), v.passed) for v in verdicts] == [(0.94, 0.55, True), (0.89, 0.27, False)]


def test_too_few_finished_points_leave_the_verdict_undecided() -> None:
    study = _study()
    reference = np.tile(np.linspace(0.85, 0.35, 6), (2, 1))
    proxy = _cells("proxy", reference, POINTS)
    proxy = [c if c.point in POINTS[:3] else c.model_copy(update={"internal_dice": None}) for c in proxy]
    verdict = trust_verdict(study, {"full": _cells("full", reference, POINTS), "proxy": proxy})
    assert verdict.passed is None and verdict.lower is None
    assert verdict.message == "proxy trust undecided: spearman over 3 grid points (validation Dice of each setting) is too few for a 95% bound (4 needed)"


def test_the_bootstrap_interval_is_kept_beside_the_bound() -> None:
    reference = np.linspace(0.85, 0.35, 6) + np.random.default_rng(1).normal(0, 0.02, (3, 6))
    result = correlations(_cells("proxy", reference[::-1], POINTS), _cells("full", reference, POINTS), metric="internal", resamples=200)
    verdict = trust_verdict(_study(repeats=3), {"full": _cells("full", reference, POINTS), "proxy": _cells("proxy", reference[::-1], POINTS)})
    assert verdict.value == pytest.approx(result["spearman"].value) and verdict.low is not None and verdict.high is not None


def test_a_study_that_ran_before_the_grid_rule_is_still_read_back_for_its_report() -> None:
    # the demo studies ran with a 4-point trust grid until issue 18: their proxy-data reports must stay readable
    document = {"name": "old", "data": {"dataset": "d"}, "studies": {"trust": {"grid": {"lr": [0.01, 0.003, 0.001, 0.0003]}}}}
    with pytest.raises(ConfigError, match="studies.trust.grid: 4 grid points are too few"):
        parse_config(StudyConfig, document, "study.yaml")
    recorded = parse_config(StudyConfig, document, "runs:/r/study.json", recorded=True)
    assert len(grid_points(recorded.studies.trust.grid)) == 4
