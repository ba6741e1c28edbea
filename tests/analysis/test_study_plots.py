"""The comparison studies' figures: each writes one valid PNG, copes with failed cells and one arm, refuses empty input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from proxyhpo.analysis.statistics import GridCell, correlations
from proxyhpo.analysis.study_plots import plot_dice_vs_data_usage, plot_hyperparameter_distance, plot_proxy_networks, plot_proxy_vs_reference

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """A PNG file of more than 100 x 100 pixels, and nothing half-written left beside it."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".partial")] == []


def arm(name: str, noise: float, repeats: int = 4, seed: int = 0, fail_every: int = 0) -> list[GridCell]:
    rng = np.random.default_rng(seed)
    cells = []
    for repeat in range(repeats):
        for p, truth in enumerate(np.linspace(0.5, 0.85, 8)):
            failed = fail_every and (repeat * 8 + p) % fail_every == 0
            dice = None if failed else float(np.clip(truth + rng.normal(0, noise), 0, 1))
            cells.append(GridCell(arm=name, repeat=repeat, point=f"opt{p % 2}/lr{p}", internal_dice=dice, external_dice=dice, device_hours=0.1, steps=100))
    return cells


def test_proxy_vs_reference_with_failed_cells_and_intervals(tmp_path: Path) -> None:
    proxy, reference = arm("mi+labelcrop-8", 0.08, fail_every=5), arm("full", 0.02, seed=1)
    out = plot_proxy_vs_reference(proxy, reference, tmp_path / "fig2.png", title="MI+Labelcrop, 8 cases", correlation=correlations(proxy, reference, resamples=100))
    assert out == tmp_path / "fig2.png"
    assert_png(out)


def test_proxy_vs_reference_when_no_point_finished_in_both(tmp_path: Path) -> None:
    failed = [cell.model_copy(update={"external_dice": None, "internal_dice": None}) for cell in arm("random-8", 0.1)]
    assert_png(plot_proxy_vs_reference(failed, arm("full", 0.02), tmp_path / "sub" / "fig2.png", metric="internal"))


def test_proxy_vs_reference_refuses_empty_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^proxy must hold at least one GridCell, got none$"):
        plot_proxy_vs_reference([], arm("full", 0.02), tmp_path / "fig2.png")
    with pytest.raises(ValueError, match=r"^reference must hold at least one GridCell, got none$"):
        plot_proxy_vs_reference(arm("mi", 0.1), [], tmp_path / "fig2.png")
    assert not (tmp_path / "fig2.png").exists()


def test_dice_vs_data_usage(tmp_path: Path) -> None:
    rows = [("mi+labelcrop", 0.1, 0.71, 0.05), ("mi+labelcrop", 0.24, 0.80, 0.02), ("random", 0.24, 0.70, None), ("random", 0.1, None, None)]
    assert_png(plot_dice_vs_data_usage(rows, tmp_path / "fig4a.png", full_dice=0.88, full_std=0.004))
    assert_png(plot_dice_vs_data_usage([("ncc", 0.15, 0.6, 0.1)], tmp_path / "one.png"))


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
def test_dice_vs_data_usage_argument_errors(tmp_path: Path, rows, message) -> None:
    with pytest.raises(ValueError, match=message):
        plot_dice_vs_data_usage(rows, tmp_path / "fig4a.png")


def test_proxy_networks(tmp_path: Path) -> None:
    reference = arm("full", 0.02, fail_every=7)
    arms = {f"proxy-L{levels}": arm(f"proxy-L{levels}", 0.03 * (6 - levels), seed=levels, fail_every=levels + 3) for levels in (5, 4, 3)}
    assert_png(plot_proxy_networks(arms, reference, tmp_path / "fig3.png"))
    assert_png(plot_proxy_networks({"proxy-L3": arm("proxy-L3", 0.1)}, reference, tmp_path / "one.png", metric="external"))


def test_proxy_networks_refuses_empty_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^arms must map at least one proxy network's label to its cells, got \{\}$"):
        plot_proxy_networks({}, arm("full", 0.02), tmp_path / "fig3.png")
    with pytest.raises(ValueError, match=r"^arms\['proxy-L3'\] must hold at least one GridCell, got none$"):
        plot_proxy_networks({"proxy-L3": []}, arm("full", 0.02), tmp_path / "fig3.png")
    with pytest.raises(ValueError, match=r"^reference must hold at least one GridCell, got none$"):
        plot_proxy_networks({"proxy-L3": arm("proxy-L3", 0.1)}, [], tmp_path / "fig3.png")


def test_hyperparameter_distance(tmp_path: Path) -> None:
    distances = {"proxy data": [0.1, 0.2, 0.15, 0.3, 0.12], "proxy net": [0.2, 0.25], "random data": [], "all data": [0.05, 0.4]}
    assert_png(plot_hyperparameter_distance(distances, tmp_path / "fig4c.png"))
    assert_png(plot_hyperparameter_distance({"proxy data&net": [0.3]}, tmp_path / "one.png", title="spleen"))


def test_hyperparameter_distance_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^distances must map at least one arm label to its distances, got \{\}$"):
        plot_hyperparameter_distance({}, tmp_path / "fig4c.png")
    with pytest.raises(ValueError, match=r"^distances holds no distance at all for the arms \['random data'\]$"):
        plot_hyperparameter_distance({"random data": []}, tmp_path / "fig4c.png")
    with pytest.raises(ValueError, match=r"^distances\['proxy'\]\[1\] must be a finite number >= 0, got nan$"):
        plot_hyperparameter_distance({"proxy": [0.1, float("nan")]}, tmp_path / "fig4c.png")
