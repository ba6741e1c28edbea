"""The comparison studies' figures: what each draws (axes, series, labels), with failed cells and one arm; empty input refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

from proxyhpo.analysis._report_io import TrialCounts
from proxyhpo.analysis.statistics import GridCell, correlations, mean_std
from proxyhpo.analysis.study_plots import plot_dice_vs_data_usage, plot_hyperparameter_distance, plot_proxy_networks, plot_proxy_vs_reference


def arm(name: str, noise: float, repeats: int = 4, seed: int = 0, fail_every: int = 0) -> list[GridCell]:
    rng = np.random.default_rng(seed)
    cells = []
    for repeat in range(repeats):
        for p, truth in enumerate(np.linspace(0.5, 0.85, 8)):
            failed = fail_every and (repeat * 8 + p) % fail_every == 0
            dice = None if failed else float(np.clip(truth + rng.normal(0, noise), 0, 1))
            cells.append(GridCell(arm=name, repeat=repeat, point=f"opt{p % 2}/lr{p}", internal_dice=dice, external_dice=dice, device_hours=0.1, steps=100))
    return cells


def legend(axis) -> list[str]:
    return [text.get_text() for text in axis.get_legend().get_texts()]


def test_proxy_vs_reference_with_failed_cells_and_intervals() -> None:
    proxy, reference = arm("mi+labelcrop-8", 0.08, fail_every=5), arm("full", 0.02, seed=1)
    result = correlations(proxy, reference, resamples=100)
    figure = plot_proxy_vs_reference(proxy, reference, title="MI+Labelcrop, 8 cases", correlation=result)
    assert isinstance(figure, Figure)
    (axis,) = figure.axes
    assert axis.get_xlabel() == "full: external Dice, mean over 4 repeats"
    assert axis.get_ylabel() == "mi+labelcrop-8: external Dice, mean over 4 repeats"
    failed = sum(c.external_dice is None for c in proxy)
    assert axis.get_title() == f"MI+Labelcrop, 8 cases\nper grid point (mean over repeats); error bars: std over repeats\nleft out: mi+labelcrop-8 {failed} without a Dice"
    # one point per grid point at the means over repeats (failed cells left out), the fit, and the three coefficients
    (points,) = [line for line in axis.get_lines() if line.get_marker() == "o"]
    for x, y, point in zip(points.get_xdata(), points.get_ydata(), sorted({c.point for c in reference}), strict=True):
        assert x == pytest.approx(mean_std(c.external_dice for c in reference if c.point == point)[0])
        assert y == pytest.approx(mean_std(c.external_dice for c in proxy if c.point == point)[0])
    labels = legend(axis)
    assert "grid points (n = 8)" in labels and any(label.startswith("least-squares fit (slope ") for label in labels)
    coefficients = [label for label in labels if label.split(" = ")[0] in ("r", "ρ", "τ")]
    pearson = result["pearson"]
    assert coefficients[0] == f"r = {pearson.value:.2f} [{pearson.low:.2f}, {pearson.high:.2f}]"
    assert [label.split(" = ")[0] for label in coefficients] == ["r", "ρ", "τ"]


def test_proxy_vs_reference_when_no_point_finished_in_both() -> None:
    failed = [cell.model_copy(update={"external_dice": None, "internal_dice": None}) for cell in arm("random-8", 0.1)]
    (axis,) = plot_proxy_vs_reference(failed, arm("full", 0.02), metric="internal").axes
    assert [text.get_text() for text in axis.texts] == ["no grid point finished in both arms"]
    assert axis.get_xlabel() == "full: validation Dice, mean over 4 repeats"  # a cell's internal Dice is its validation cases'
    assert "left out: random-8 32 without a Dice" in axis.get_title()


def test_proxy_vs_reference_counts_stopped_cells_apart_from_failed_ones() -> None:
    """Given how the trials ended, the title says which cells failed and which early stopping ended."""
    proxy, reference = arm("mi+labelcrop-8", 0.08, fail_every=5), arm("full", 0.02, seed=1)
    missing = sum(c.external_dice is None for c in proxy)
    ends = {"mi+labelcrop-8": TrialCounts(n_trials=32, n_finished=32 - missing, n_failed=2, n_stopped=missing - 2), "full": TrialCounts(n_trials=32, n_finished=32)}
    (axis,) = plot_proxy_vs_reference(proxy, reference, left_out=ends).axes
    assert axis.get_title().endswith(f"\nleft out: mi+labelcrop-8 2 failed, {missing - 2} stopped early")


def test_proxy_vs_reference_refuses_empty_input() -> None:
    with pytest.raises(ValueError, match=r"^proxy must hold at least one GridCell, got none$"):
        plot_proxy_vs_reference([], arm("full", 0.02))
    with pytest.raises(ValueError, match=r"^reference must hold at least one GridCell, got none$"):
        plot_proxy_vs_reference(arm("mi", 0.1), [])


def test_dice_vs_data_usage() -> None:
    rows = [("mi+labelcrop", 0.24, 0.80, 0.02), ("mi+labelcrop", 0.1, 0.71, 0.05), ("random", 0.24, 0.70, None), ("random", 0.1, None, None)]
    (axis,) = plot_dice_vs_data_usage(rows, full_dice=0.88, full_std=0.004).axes
    assert axis.get_xlabel() == "training data used (% of the full training set)"
    assert axis.get_ylabel() == "external Dice, mean ± std over repeats"
    assert sorted(legend(axis)) == ["full data set (0.880)", "mi+labelcrop", "random"]
    lines = {container.get_label(): container.lines[0] for container in axis.containers}
    # one line per method, sorted by the share of data, rows without a mean left out
    assert list(lines["mi+labelcrop"].get_xdata()) == pytest.approx([10, 24]) and list(lines["mi+labelcrop"].get_ydata()) == pytest.approx([0.71, 0.80])
    assert list(lines["random"].get_xdata()) == pytest.approx([24]) and list(lines["random"].get_ydata()) == pytest.approx([0.70])
    (full,) = [line for line in axis.get_lines() if line.get_label() == "full data set (0.880)"]
    assert list(full.get_ydata()) == pytest.approx([0.88, 0.88])
    (one,) = plot_dice_vs_data_usage([("ncc", 0.15, 0.6, 0.1)], metric_label="internal Dice", title="spleen").axes
    assert (one.get_title(), legend(one)) == ("spleen", ["ncc"])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], r"^rows must hold at least one \(method, fraction_of_data, mean_dice, std_dice\), got none$"),
        ([("mi", 0.1, 0.7)], r"^rows\[0\] must be \(method, fraction_of_data, mean_dice, std_dice\), got \('mi', 0.1, 0.7\)$"),
        ([("mi", 24, 0.7, 0.1)], r"^rows\[0\]: fraction_of_data must be in \(0, 1\], got 24$"),
        ([("mi", 0.2, 0.7, 0.1), ("", 0.2, 0.7, 0.1)], r"^rows\[1\]: method must be a non-empty string, got ''$"),
        ([("mi", 0.2, 1.7, 0.1)], r"^rows\[0\]: mean_dice must be a number in \[0, 1\] or None, got 1.7$"),
    ],
)
def test_dice_vs_data_usage_argument_errors(rows, message) -> None:
    with pytest.raises(ValueError, match=message):
        plot_dice_vs_data_usage(rows)


def test_proxy_networks() -> None:
    """One dot per grid point at each network's mean over repeats, and the panel's r is the table's coefficient (same unit)."""
    reference = arm("full", 0.02, fail_every=7)
    arms = {f"proxy-L{levels}": arm(f"proxy-L{levels}", 0.03 * (6 - levels), seed=levels, fail_every=levels + 3) for levels in (5, 4, 3)}
    table = {label: correlations(cells, reference, metric="internal", resamples=200) for label, cells in arms.items()}
    figure = plot_proxy_networks(arms, reference, correlation=table)
    assert len(figure.axes) == 3  # one panel per proxy network
    failed_reference = sum(c.internal_dice is None for c in reference)
    assert figure.get_suptitle() == (
        f"proxy networks vs full: validation Dice per grid point, mean over repeats (error bars: std); left out: full {failed_reference} without a Dice"
    )
    for axis, (label, cells) in zip(figure.axes, arms.items(), strict=True):
        both = sorted({c.point for c in cells if c.internal_dice is not None} & {c.point for c in reference if c.internal_dice is not None})
        (points,) = [line for line in axis.get_lines() if line.get_marker() == "o"]
        for x, y, point in zip(points.get_xdata(), points.get_ydata(), both, strict=True):
            assert x == pytest.approx(mean_std(c.internal_dice for c in reference if c.point == point)[0])
            assert y == pytest.approx(mean_std(c.internal_dice for c in cells if c.point == point)[0])
        assert (axis.get_xlabel(), axis.get_ylabel()) == ("full: validation Dice, mean over 4 repeats", f"{label}: validation Dice, mean over 4 repeats")
        pearson = table[label]["pearson"]
        assert pearson.n_points == len(both) and pearson.value == pytest.approx(stats.pearsonr(np.asarray(points.get_xdata(), float), np.asarray(points.get_ydata(), float))[0])
        failed = sum(c.internal_dice is None for c in cells)
        assert axis.get_title() == (
            f"{label}: r = {pearson.value:.2f} [{pearson.low:.2f}, {pearson.high:.2f}] over {len(both)} grid points\nleft out: {failed} without a Dice"
        )
    # without the table's results the panel computes the same coefficient, without an interval
    (alone,) = plot_proxy_networks({"proxy-L4": arms["proxy-L4"]}, reference).axes
    assert alone.get_title().startswith(f"proxy-L4: r = {table['proxy-L4']['pearson'].value:.2f} over {table['proxy-L4']['pearson'].n_points} grid points\n")
    ends = {"proxy-L3": TrialCounts(n_trials=32, n_finished=28, n_failed=1, n_stopped=3)}
    (one,) = plot_proxy_networks({"proxy-L3": arm("proxy-L3", 0.1)}, reference, metric="external", left_out=ends).axes
    assert one.get_xlabel() == "full: external Dice, mean over 4 repeats"
    assert one.get_title().endswith("\nleft out: 1 failed, 3 stopped early")


def test_proxy_networks_refuses_empty_input() -> None:
    with pytest.raises(ValueError, match=r"^arms must map at least one proxy network's label to its cells, got \{\}$"):
        plot_proxy_networks({}, arm("full", 0.02))
    with pytest.raises(ValueError, match=r"^arms\['proxy-L3'\] must hold at least one GridCell, got none$"):
        plot_proxy_networks({"proxy-L3": []}, arm("full", 0.02))
    with pytest.raises(ValueError, match=r"^reference must hold at least one GridCell, got none$"):
        plot_proxy_networks({"proxy-L3": arm("proxy-L3", 0.1)}, [])


def test_hyperparameter_distance() -> None:
    distances = {"proxy data": [0.1, 0.2, 0.15, 0.3, 0.12], "proxy net": [0.2, 0.25], "random data": [], "all data": [0.05, 0.4]}
    (axis,) = plot_hyperparameter_distance(distances).axes
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["proxy data\n(n = 5)", "proxy net\n(n = 2)", "random data\n(n = 0)", "all data\n(n = 2)"]
    # one box per arm with distances, one dot per search at its distance (jittered sideways only)
    assert [sorted(collection.get_offsets()[:, 1]) for collection in axis.collections] == [
        pytest.approx(sorted(values)) for values in distances.values() if values
    ]
    assert [math.floor(x + 0.5) for collection in axis.collections for x in collection.get_offsets()[:, 0]] == [1] * 5 + [2] * 2 + [4] * 2
    assert axis.get_ylim()[0] == 0.0 and axis.get_ylim()[1] == pytest.approx(1.04)
    assert axis.get_title() == "hyper-parameters found by each arm vs the full search (one dot per search)"
    (one,) = plot_hyperparameter_distance({"proxy data&net": [0.3]}, title="spleen").axes
    assert one.get_title() == "spleen"


def test_hyperparameter_distance_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"^distances must map at least one arm label to its distances, got \{\}$"):
        plot_hyperparameter_distance({})
    with pytest.raises(ValueError, match=r"^distances holds no distance at all for the arms \['random data'\]$"):
        plot_hyperparameter_distance({"random data": []})
    with pytest.raises(ValueError, match=r"^distances\['proxy'\]\[1\] must be a finite number >= 0, got nan$"):
        plot_hyperparameter_distance({"proxy": [0.1, float("nan")]})
