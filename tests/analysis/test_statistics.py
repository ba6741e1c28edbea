"""The comparison studies' statistics, checked against scipy and against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from proxyhpo.analysis.statistics import (
    Correlation,
    GridCell,
    _coefficient_rows,
    best_point,
    correlation_metrics,
    correlations,
    equal_pack_hours,
    mean_std,
    relative_distance,
    speedup,
    table_at_point,
)
from proxyhpo.config import SearchSpace, default_search_space

SCIPY = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}


def cell(arm: str, repeat: int, point: str, external: float | None, internal: float | None = None, **costs: float) -> GridCell:
    return GridCell(
        arm=arm, repeat=repeat, point=point, external_dice=external, internal_dice=internal,
        device_hours=costs.get("hours", 0.1), steps=int(costs.get("steps", 100)), pack_size=int(costs.get("pack", 1)),
    )


#: A hand-made grid: point -> Dice per repeat, for a proxy and the reference (with a tie, for rho and tau).
PROXY = {"adam/1e-3": [0.70, 0.74, 0.72], "adam/1e-4": [0.55, 0.61, 0.58], "rmsprop/1e-3": [0.66, 0.60, 0.63], "novograd/1e-3": [0.58, 0.58, 0.58], "adamax/1e-4": [0.40, 0.50, 0.45]}
REFERENCE = {"adam/1e-3": [0.88, 0.90], "adam/1e-4": [0.80, 0.84], "rmsprop/1e-3": [0.86, 0.85], "novograd/1e-3": [0.75, 0.79], "adamax/1e-4": [0.83, 0.82]}


def grid(arm: str, table: dict[str, list[float | None]]) -> list[GridCell]:
    return [cell(arm, repeat, point, dice) for point, values in table.items() for repeat, dice in enumerate(values)]


def noisy_arm(arm: str, repeats: int, noise: float, seed: int) -> list[GridCell]:
    rng = np.random.default_rng(seed)
    truth = np.linspace(0.5, 0.85, 10)
    return [cell(arm, r, f"p{p}", float(np.clip(t + rng.normal(0, noise), 0, 1))) for r in range(repeats) for p, t in enumerate(truth)]


def test_values_equal_scipy_on_the_per_point_means() -> None:
    result = correlations(grid("mi", PROXY), grid("full", REFERENCE), resamples=200)
    points = sorted(PROXY)
    x, y = [np.mean(PROXY[p]) for p in points], [np.mean(REFERENCE[p]) for p in points]
    assert set(result) == {"pearson", "spearman", "kendall"}
    for method, function in SCIPY.items():
        assert result[method].method == method
        assert result[method].value == pytest.approx(function(x, y)[0], abs=1e-12)
        assert (result[method].n_points, result[method].n_repeats) == (5, 2)
    assert result["pearson"].over == "5 grid points, mean external Dice over 3 proxy and 2 reference repeats; 95% expanded-percentile bootstrap interval over repeats (200 resamples)"


def test_resampled_coefficients_equal_scipy_with_ties() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.random((40, 9)), np.round(rng.random((40, 9)), 1)  # rounding makes ties
    x[:, 0] = x[:, 1]
    for method, function in SCIPY.items():
        expected = [function(a, b)[0] for a, b in zip(x, y, strict=True)]
        np.testing.assert_allclose(_coefficient_rows(method, x, y), expected, atol=1e-12)


def test_internal_metric_uses_internal_dice() -> None:
    proxy = [cell("mi", 0, f"p{i}", external=0.5, internal=v) for i, v in enumerate([0.1, 0.5, 0.3, 0.9])]
    reference = [cell("full", 0, f"p{i}", external=0.5 + i / 10, internal=v) for i, v in enumerate([0.2, 0.6, 0.4, 0.8])]
    assert correlations(proxy, reference, metric="internal", resamples=0)["spearman"].value == pytest.approx(1.0)
    assert correlations(proxy, reference, metric="external", resamples=0)["pearson"].value is None  # proxy's external is constant


def test_interval_contains_the_value_and_narrows_with_more_repeats() -> None:
    few = correlations(noisy_arm("mi", 4, 0.08, 1), noisy_arm("full", 4, 0.04, 2))
    many = correlations(noisy_arm("mi", 40, 0.08, 1), noisy_arm("full", 40, 0.04, 2))
    for method in ("pearson", "spearman", "kendall"):
        for result in (few[method], many[method]):
            assert result.low <= result.value <= result.high
        assert many[method].high - many[method].low < few[method].high - few[method].low
    assert few["pearson"].n_repeats == 4 and "over 4 repeats per arm" in few["pearson"].over


def test_interval_is_deterministic_for_a_seed() -> None:
    proxy, reference = noisy_arm("mi", 5, 0.08, 1), noisy_arm("full", 5, 0.04, 2)
    first, again = correlations(proxy, reference, seed=7), correlations(proxy, reference, seed=7)
    other = correlations(proxy, reference, seed=8)
    assert first == again
    assert (first["pearson"].low, first["pearson"].high) != (other["pearson"].low, other["pearson"].high)
    assert first["pearson"].value == other["pearson"].value


def test_failed_cells_are_left_out() -> None:
    proxy, reference = grid("mi", PROXY), grid("full", REFERENCE)
    failed = [cell("mi", 0, "sgd/1e-2", None), cell("mi", 1, "sgd/1e-2", None), cell("mi", 2, "adam/1e-3", None)]
    with_failures = correlations([c for c in proxy if (c.repeat, c.point) != (2, "adam/1e-3")] + failed, reference + [cell("full", 0, "sgd/1e-2", 0.3)])
    # the failed cell of a point with other finished repeats: the mean of the two left
    x = [np.mean(PROXY[p] if p != "adam/1e-3" else PROXY[p][:2]) for p in sorted(PROXY)]
    y = [np.mean(REFERENCE[p]) for p in sorted(REFERENCE)]
    assert with_failures["pearson"].value == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert with_failures["pearson"].n_points == 5  # sgd/1e-2 only failed in the proxy
    # a failed cell is a hole in its repeat: removing it changes nothing, the interval included
    without = correlations([c for c in proxy if (c.repeat, c.point) != (2, "adam/1e-3")], reference)
    assert correlations([c for c in proxy if (c.repeat, c.point) != (2, "adam/1e-3")] + failed[2:], reference) == without


def test_undefined_coefficients_are_none_with_a_reason() -> None:
    constant = [cell("mi", r, p, 0.6) for r in range(2) for p in PROXY]
    result = correlations(constant, grid("full", REFERENCE))
    for value in result.values():
        assert (value.value, value.low, value.high) == (None, None, None)
        assert value.over.endswith("undefined: the proxy's mean external Dice is the same at every grid point")
    two_points = correlations(grid("mi", PROXY), [cell("full", 0, "adam/1e-3", 0.9), cell("full", 0, "adam/1e-4", 0.8)])
    assert two_points["kendall"].value is None and two_points["kendall"].n_points == 2
    assert "undefined: 2 grid point(s) finished in both arms, 3 needed" in two_points["kendall"].over
    no_interval = correlations(grid("mi", PROXY), grid("full", REFERENCE), resamples=0)["pearson"]
    assert no_interval.value is not None and (no_interval.low, no_interval.high) == (None, None)
    assert no_interval.over.endswith("no interval (resamples=0)")


def test_single_repeat_gives_an_interval_of_the_value_alone() -> None:
    result = correlations(grid("mi", {p: v[:1] for p, v in PROXY.items()}), grid("full", {p: v[:1] for p, v in REFERENCE.items()}), resamples=50)
    assert result["pearson"].low == result["pearson"].high == result["pearson"].value


@pytest.mark.parametrize(
    ("proxy", "reference", "options", "message"),
    [
        ([], grid("full", REFERENCE), {}, r"^proxy must hold at least one GridCell, got none$"),
        (grid("mi", PROXY), "cells", {}, r"^reference must be a sequence of GridCell, got str$"),
        (grid("mi", PROXY) + [{"arm": "mi"}], grid("full", REFERENCE), {}, r"^proxy\[15\] must be a GridCell, got dict$"),
        (grid("mi", PROXY) + grid("ncc", PROXY), grid("full", REFERENCE), {}, r"^proxy must hold the cells of one arm, got arms \['mi', 'ncc'\]$"),
        (grid("mi", PROXY), grid("full", REFERENCE) * 2, {}, r"^reference holds two cells for repeat 0 at grid point 'adam/1e-3'$"),
        (grid("mi", PROXY), grid("full", REFERENCE), {"metric": "test"}, r"^metric must be 'external' or 'internal', got 'test'$"),
        (grid("mi", PROXY), grid("full", REFERENCE), {"confidence": 95}, r"^confidence must be a number in \(0, 1\), got 95$"),
        (grid("mi", PROXY), grid("full", REFERENCE), {"resamples": -1}, r"^resamples must be an int >= 0, got -1$"),
        (grid("mi", PROXY), grid("full", REFERENCE), {"seed": 1.5}, r"^seed must be an int >= 0, got 1.5$"),
    ],
)
def test_correlations_argument_errors(proxy, reference, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        correlations(proxy, reference, **options)


def test_correlation_metrics_use_the_mlflow_names() -> None:
    result = correlations(grid("mi", PROXY), grid("full", REFERENCE), resamples=100)
    metrics = correlation_metrics(result)
    assert set(metrics) == {f"{name}{suffix}" for name in ("pearson_r", "spearman_rho", "kendall_tau") for suffix in ("", "_low", "_high")}
    assert metrics["pearson_r"] == result["pearson"].value
    undefined = Correlation(method="kendall", value=None, low=None, high=None, n_points=2, n_repeats=1, over="undefined")
    assert correlation_metrics({"kendall": undefined}) == {}


def test_grid_cell_rejects_a_dice_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1"):
        cell("mi", 0, "adam/1e-3", 1.5)


def test_mean_std() -> None:
    assert mean_std([0.8, None, 0.6, math.nan]) == (pytest.approx(0.7), pytest.approx(math.sqrt(0.02)))
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([None]) == (None, None)
    with pytest.raises(ValueError, match=r"^values\[1\] must be a number or None, got '0.5'$"):
        mean_std([0.1, "0.5"])


def test_best_point_takes_the_highest_mean_and_breaks_ties_by_name() -> None:
    cells = grid("full", REFERENCE) + [cell("full", 0, "sgd/1e-2", None), cell("full", 1, "sgd/1e-2", None)]
    assert best_point(cells) == "adam/1e-3"
    assert best_point(cells, "internal") is None  # no internal Dice anywhere
    assert best_point([cell("full", 0, "b", 0.5), cell("full", 0, "a", 0.5)]) == "a"
    with pytest.raises(ValueError, match=r"^cells must hold at least one GridCell, got none$"):
        best_point([])


def test_table_at_point_matches_hand_computed_means_and_stds() -> None:
    mi = [cell("mi", 0, "adam/1e-3", 0.80, 0.90), cell("mi", 1, "adam/1e-3", 0.84, 0.86), cell("mi", 2, "adam/1e-3", None, None), cell("mi", 0, "adam/1e-4", 0.1, 0.1)]
    full = [cell("full", r, "adam/1e-3", e, i) for r, (e, i) in enumerate([(0.88, 0.94), (0.89, 0.95), (0.90, 0.96)])]
    rows = table_at_point({"MI+Labelcrop": mi, "Full": full, "Random": [cell("random", 0, "adam/1e-4", 0.5)]}, "adam/1e-3")
    assert [row.arm for row in rows] == ["MI+Labelcrop", "Full", "Random"]
    first, second, third = rows
    assert (first.external_mean, first.internal_mean) == (pytest.approx(0.82), pytest.approx(0.88))
    assert (first.external_std, first.internal_std) == (pytest.approx(math.sqrt(0.0008)), pytest.approx(math.sqrt(0.0008)))
    assert (first.n, first.n_failed) == (3, 1)
    assert (second.external_mean, second.external_std, second.internal_mean) == (pytest.approx(0.89), pytest.approx(0.01), pytest.approx(0.95))
    assert (third.n, third.external_mean, third.external_std) == (0, None, None)
    with pytest.raises(ValueError, match=r"^point 'sgd' is in none of the arms; they hold \['adam/1e-3', 'adam/1e-4'\]$"):
        table_at_point({"mi": mi}, "sgd")
    with pytest.raises(ValueError, match=r"^arms must map at least one arm label to its cells, got \{\}$"):
        table_at_point({}, "adam/1e-3")


def test_speedup() -> None:
    assert speedup(1056.0, 240.0) == pytest.approx(4.4)
    assert speedup(10, 0) is None
    with pytest.raises(ValueError, match=r"^proxy_hours must be a finite number >= 0, got -1$"):
        speedup(1.0, -1)
    with pytest.raises(ValueError, match=r"^reference_hours must be a finite number >= 0, got inf$"):
        speedup(math.inf, 1.0)


def test_equal_pack_hours_charges_every_trial_its_packs_step_time() -> None:
    cells = [
        cell("proxy-L3", 0, "a", 0.7, hours=0.25, steps=400, pack=16),  # 4 h: the whole pack's time
        cell("proxy-L3", 1, "a", None, hours=0.1, steps=50, pack=4),  # failed after 50 steps still cost 0.4 h
        cell("proxy-L3", 2, "a", None, hours=0.3, steps=0, pack=4),  # never stepped: left out
        cell("full", 0, "a", 0.9, hours=1.5, steps=400),
    ]
    assert equal_pack_hours(cells) == pytest.approx(4.0 + 0.4 + 1.5)
    assert equal_pack_hours([]) == 0.0
    with pytest.raises(ValueError, match=r"^cells\[0\] must be a GridCell, got float$"):
        equal_pack_hours([1.0])


def test_relative_distance_known_values() -> None:
    space = default_search_space()
    setting = {"lr": 1e-3, "optimizer": "adam", "intensity_shift_prob": 0.3}
    assert relative_distance(setting, dict(setting), space) == 0.0
    corner = {"lr": 1e-4, "optimizer": "adam", "intensity_shift_prob": 0.0}
    opposite = {"lr": 1e-2, "optimizer": "novograd", "intensity_shift_prob": 1.0}
    assert relative_distance(corner, opposite, space) == pytest.approx(1.0)
    # lr 1e-3 is halfway on the log scale: only it differs, by 0.5 of 3 hyper-parameters
    assert relative_distance({**corner, "lr": 1e-3}, corner, space) == pytest.approx(math.sqrt(0.25 / 3))
    assert relative_distance({**corner, "optimizer": "rmsprop"}, corner, space) == pytest.approx(math.sqrt(1 / 3))


def test_relative_distance_argument_errors() -> None:
    space = SearchSpace.model_validate({"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}})
    with pytest.raises(ValueError, match=r"^found must have exactly the hyper-parameters \['lr'\], missing \['lr'\], unknown \['learning_rate'\]$"):
        relative_distance({"learning_rate": 1e-3}, {"lr": 1e-3}, space)
    with pytest.raises(ValueError, match=r"^reference\['lr'\] must be a finite number for the log_uniform range, got '0.001'$"):
        relative_distance({"lr": 1e-3}, {"lr": "0.001"}, space)
    with pytest.raises(ValueError, match=r"^space must be a SearchSpace, got dict$"):
        relative_distance({"lr": 1e-3}, {"lr": 1e-3}, {"lr": None})
