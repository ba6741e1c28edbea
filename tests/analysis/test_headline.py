"""The headline figure: the lever ladder's log-ratio decomposition, the Dice verdict, pooling over seeds, and the
automl comparison's report of a ladder logged into a real SQLite MLflow store, checked against numbers computed by hand."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest

from proxyhpo import tracking
from proxyhpo.analysis.headline import DICE_TOLERANCE, Headline, dice_gap, dice_within, headline, lever_steps, paired_candidates, pool_headlines
from proxyhpo.analysis.study_report import write_study_report
from proxyhpo.config.studies import LEVER_ARMS, ComparisonConfig

LADDER = list(LEVER_ARMS)  # full-search, plus-proxy-data, plus-proxy-net, plus-packing, plus-early-stopping


def _comparison_helpers() -> Any:
    """The comparison report tests' loggers (``tests/`` is no package under ``--import-mode=importlib``)."""
    spec = importlib.util.spec_from_file_location("_comparison_report_helpers", Path(__file__).with_name("test_comparison_report.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize(
    "hours",
    [
        (8.0, 2.0, 0.8, 0.5, 0.25),  # every lever saves
        (4.0, 1.0, 0.5, 0.6, 0.2),  # packing made it dearer (a CPU can): a negative share, the others above their part
        (1.0, 0.5, 0.25, 0.25, 0.05),  # packing saved nothing: share 0
    ],
)
def test_shares_sum_to_one_and_factors_multiply_to_the_speedup(hours: tuple[float, ...]) -> None:
    steps = lever_steps(list(zip(LADDER, hours, strict=True)))
    total = hours[0] / hours[-1]
    assert [s.lever for s in steps] == ["proxy-data", "proxy-net", "packing", "early-stopping"]
    assert [s.arm for s in steps] == LADDER[1:]
    assert math.fsum(s.share for s in steps) == pytest.approx(1.0, abs=1e-12)
    assert math.prod(s.factor for s in steps) == pytest.approx(total, rel=1e-12)
    for step, before, after in zip(steps, hours[:-1], hours[1:], strict=True):
        assert (step.hours_before, step.hours_after, step.factor) == (before, after, pytest.approx(before / after))
        assert step.share == pytest.approx(math.log(before / after) / math.log(total))
    if hours[3] > hours[2]:
        assert steps[2].share < 0 and max(s.share for s in steps) > 0


def test_the_order_of_the_ladder_matters() -> None:
    """The same levers, the same total; another intermediate cost (another order's) gives other shares."""
    # proxy data saves 4x on the full network but only 2x once the network is small: its share depends on what came first
    data_first = lever_steps([("full-search", 8.0), ("plus-proxy-data", 2.0), ("plus-proxy-net", 1.0)])
    assert [round(s.share, 3) for s in data_first] == [0.667, 0.333]
    # had the proxy net come first (8 -> 2 h, then 2 -> 1 h with proxy data), proxy data's factor would be 2 and its share 1/3;
    # the decomposition is along the order given, so the report states it
    assert lever_steps([("full-search", 8.0), ("plus-proxy-data", 4.0), ("plus-proxy-net", 1.0)])[0].share == pytest.approx(1 / 3)


def test_arms_left_out_merge_their_levers_and_bad_ladders_are_refused() -> None:
    steps = lever_steps([("full-search", 9.0), ("plus-proxy-net", 3.0), ("plus-early-stopping", 1.0)])
    assert [(s.lever, s.share) for s in steps] == [("proxy-data+proxy-net", pytest.approx(0.5)), ("packing+early-stopping", pytest.approx(0.5))]
    assert [s.share for s in lever_steps([("full-search", 2.0), ("plus-proxy-data", 1.0), ("plus-packing", 2.0)])] == [None, None]  # no saving: no shares
    with pytest.raises(ValueError, match="at least one more arm"):
        lever_steps([("full-search", 1.0)])
    with pytest.raises(ValueError, match="follow the order of LEVER_ARMS"):
        lever_steps([("full-search", 4.0), ("plus-packing", 2.0), ("plus-proxy-data", 1.0)])
    with pytest.raises(ValueError, match="must be one of"):
        lever_steps([("full-search", 4.0), ("proxy-data-net", 1.0)])
    with pytest.raises(ValueError, match="finite and > 0"):
        lever_steps([("full-search", 4.0), ("plus-proxy-data", 0.0)])


def test_dice_verdict_is_one_sided_and_relative() -> None:
    assert dice_gap(0.80, 0.792) == pytest.approx(0.01)
    assert dice_within(0.80, 0.792) is True  # exactly 1% below: within
    assert dice_within(0.80, 0.7919) is False
    assert dice_within(0.80, 0.95) is True and dice_gap(0.80, 0.95) < 0  # better passes
    assert dice_within(None, 0.8) is None and dice_within(0.8, None) is None and dice_gap(0.0, 0.5) is None
    assert DICE_TOLERANCE == 0.01


@pytest.mark.parametrize(
    ("levers_hours", "dice_levers", "speedup_met", "within", "goal"),
    [
        (0.4, 0.795, True, True, True),  # 25x, 0.6% below: the goal
        (0.4, 0.78, True, False, False),  # 25x but 2.5% below
        (1.0, 0.80, False, True, False),  # same Dice, only 10x
        (0.5, 0.80, True, True, True),  # exactly 20x
        (0.4, None, True, None, None),  # no final model: no verdict on the Dice, none on the goal
    ],
)
def test_headline_goal(levers_hours: float, dice_levers: float | None, speedup_met: bool, within: bool | None, goal: bool | None) -> None:
    ladder = [("full-search", 10.0), ("plus-proxy-data", 3.0), ("plus-early-stopping", levers_hours)]
    result = headline(ladder, {"full-search": (0.80, 0.002, 2), "plus-early-stopping": (dice_levers, 0.02 if dice_levers else None, 2 if dice_levers else 0)})
    assert result.speedup == pytest.approx(10.0 / levers_hours)
    assert (result.speedup_goal_met, result.dice_within_tolerance, result.goal_met) == (speedup_met, within, goal)
    assert result.levers == ("proxy-data", "proxy-net", "packing", "early-stopping") and result.reference_arm == "full-search"
    # the levers' spread of 0.02 over their repeats is above 1% of 0.8; the reference's 0.002 alone is not
    assert result.dice_noisy is (dice_levers is not None)


def test_pooling_over_seeds() -> None:
    per_seed = [
        headline(list(zip(LADDER, hours, strict=True)), {"full-search": (ref, None, 1), "plus-early-stopping": (lev, None, 1)})
        for hours, ref, lev in (((8.0, 2.0, 0.8, 0.5, 0.25), 0.80, 0.79), ((10.0, 2.0, 1.0, 0.5, 0.4), 0.78, 0.79), ((9.0, 3.0, 1.0, 0.9, 0.3), 0.82, 0.79))
    ]
    pooled = pool_headlines(per_seed)
    speedups = [r.speedup for r in per_seed]
    assert pooled.n == 3 and pooled.speedup == pytest.approx(math.prod(speedups) ** (1 / 3))
    assert (pooled.speedup_min, pooled.speedup_max) == (min(speedups), max(speedups))
    assert math.fsum(pooled.shares.values()) == pytest.approx(1.0, abs=1e-12)
    assert math.prod(pooled.factors.values()) == pytest.approx(pooled.speedup)
    for index, lever in enumerate(pooled.levers):
        mean_log = sum(math.log(r.steps[index].factor) for r in per_seed) / 3
        assert pooled.shares[lever] == pytest.approx(mean_log / math.log(pooled.speedup))
    assert pooled.dice_reference == pytest.approx(0.80) and pooled.dice_levers == pytest.approx(0.79)
    assert pooled.dice_reference_std == pytest.approx(0.02)
    assert pooled.dice_within_tolerance is False and pooled.goal_met is False  # 1.25% below on the means
    assert pooled.goal_met_count == sum(bool(r.goal_met) for r in per_seed) == 1  # the second alone: 25x, Dice 0.79 above 0.78
    with pytest.raises(ValueError, match="ladders differ"):
        pool_headlines([per_seed[0], headline([("full-search", 2.0), ("plus-proxy-net", 1.0)], {})])
    with pytest.raises(ValueError, match="at least one"):
        pool_headlines([])


#: the ladder's trials per arm: (round, lr, intensity_shift_prob, final_val_dice, process-hours, pack_size, failed)
LADDER_TRIALS: dict[str, list[tuple[int, float, float, float | None, float, int, bool]]] = {
    "full-search": [(0, 0.001, 0.5, 0.70, 0.50, 1, False), (0, 0.01, 0.1, 0.80, 0.55, 1, False), (1, 0.003, 0.3, 0.75, 0.45, 1, False)],
    "plus-proxy-data": [(0, 0.002, 0.5, 0.50, 0.12, 1, False), (0, 0.008, 0.2, 0.60, 0.10, 1, False), (1, 0.004, 0.4, 0.55, 0.10, 1, True)],
    "plus-proxy-net": [(0, 0.002, 0.5, 0.40, 0.05, 1, False), (0, 0.009, 0.2, 0.52, 0.04, 1, False), (1, 0.004, 0.4, 0.45, 0.05, 1, False)],
    "plus-packing": [(0, 0.002, 0.5, 0.41, 0.045, 3, False), (0, 0.009, 0.2, 0.50, 0.046, 3, False), (1, 0.004, 0.4, 0.44, 0.05, 3, False)],
    "plus-early-stopping": [(0, 0.002, 0.5, 0.20, 0.010, 3, False), (0, 0.009, 0.2, 0.50, 0.030, 3, False), (1, 0.004, 0.4, 0.25, 0.010, 3, False)],
}
#: the final models' internal Dice per repeat (no external set)
LADDER_FINALS = {
    "full-search": [(0.80, None), (0.82, None)],
    "plus-proxy-data": [(0.79, None), (0.80, None)],
    "plus-proxy-net": [(0.78, None), (0.81, None)],
    "plus-packing": [(0.80, None), (0.79, None)],
    "plus-early-stopping": [(0.805, None), (0.80, None)],
}
#: every proxy arm chose its data once: 36 s of selection each, counted in its search's hours
LADDER_DATA = {arm: (("full", 12, 0.0, "cpu") if arm == "full-search" else ("mi+labelcrop", 8, 36.0, "cpu")) for arm in LADDER}


def test_report_of_a_ladder_logged_in_mlflow(tmp_path: Path) -> None:
    """Headline metrics, shares and verdict of a CPU comparison of the ladder, recomputed by hand from the runs logged."""
    helpers = _comparison_helpers()
    helpers.NETWORK.update({arm: ("full" if arm in ("full-search", "plus-proxy-data") else "proxy-L3") for arm in LADDER})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = helpers._study("ladder", tuple(LADDER), external=False)
    parent = helpers._log_comparison(uri, study, LADDER_TRIALS, LADDER_FINALS, manifests=LADDER_DATA, cpu=True)
    report = write_study_report(parent, markdown=tmp_path / "report.md", html=tmp_path / "report.html", tracking_uri=uri)

    hours = {arm: sum(row[4] for row in rows) + LADDER_DATA[arm][2] / 3600 for arm, rows in LADDER_TRIALS.items()}  # failed trials count
    total = hours["full-search"] / hours["plus-early-stopping"]
    metrics = tracking.client(uri).get_run(parent).data.metrics
    assert metrics == pytest.approx(report.metrics)
    assert metrics["headline_speedup"] == pytest.approx(total)
    assert (metrics["headline_hours_full"], metrics["headline_hours_levers"]) == (pytest.approx(hours["full-search"]), pytest.approx(hours["plus-early-stopping"]))
    shares = {lever: metrics[f"lever_share_{lever}"] for lever in ("proxy_data", "proxy_net", "packing", "early_stopping")}
    assert math.fsum(shares.values()) == pytest.approx(1.0, abs=1e-9)
    for lever, before, after in zip(shares, LADDER[:-1], LADDER[1:], strict=True):
        assert shares[lever] == pytest.approx(math.log(hours[before] / hours[after]) / math.log(total))
        assert metrics[f"lever_speedup_{lever}"] == pytest.approx(hours[before] / hours[after])
    assert shares["packing"] < 0  # 0.151 h packed against 0.15 h one by one: the CPU's packing, dearer by a hair
    # the Dice: means over the repeats, the levers 0.25% below the full search's: within 1%
    assert (metrics["headline_dice_full"], metrics["headline_dice_levers"]) == (pytest.approx(0.81), pytest.approx(0.8025))
    assert metrics["headline_dice_gap"] == pytest.approx((0.81 - 0.8025) / 0.81)
    assert metrics["headline_dice_within_tolerance"] == 1.0
    assert metrics["headline_speedup_goal_met"] == float(total >= 20) and metrics["headline_goal_met"] == float(total >= 20)
    # the reference of the other tables is the full search; the unprefixed arm the one with every lever
    assert metrics["speedup_vs_full"] == pytest.approx(total) and "speedup_vs_full.full-search" not in metrics

    text = report.markdown
    assert f"## Headline: all levers against the full search (goal {'met' if total >= 20 else 'not met'})" in text
    assert "| step | arm | lever added | hours before → after | factor | share of the speed-up |" in text
    assert f"| 1 | `plus-proxy-data` | proxy-data | 1.5 → {hours['plus-proxy-data']:.4g} | {hours['full-search'] / hours['plus-proxy-data']:.2f}× |" in text
    assert f"- Speed-up: **{total:.2f}×** (goal ≥ 20×: {'met' if total >= 20 else 'not met'})." in text
    assert "gap +0.93% of the full search's (within the 1% tolerance" in text
    assert "the verdict is within their noise" in text  # the final models' spread over repeats (0.014) is above 1% of 0.81
    assert "On a CPU packing saves little" in text
    assert "- Lever ladder: `full-search` is the full search" in text and "rungs at epochs 1, 3, 9" in text
    client = tracking.client(uri)
    summary = json.loads(Path(client.download_artifacts(parent, "summary.json", str(tmp_path))).read_text())
    assert summary["reference_arm"] == "full-search" and summary["headline_arm"] == "plus-early-stopping"
    assert Headline.model_validate(summary["headline"]).speedup == pytest.approx(total)


def test_the_ladder_needs_a_reference() -> None:
    assert ComparisonConfig(arms=("full-search", "plus-early-stopping")).arms == ("full-search", "plus-early-stopping")
    with pytest.raises(ValueError, match="arms must include a reference, 'all-data' or 'full-search'"):
        ComparisonConfig(arms=("plus-proxy-data", "plus-early-stopping"))


def test_a_stopped_trial_is_counted_stopped_not_failed_in_the_headline(tmp_path: Path) -> None:
    """The levers arm's successive halving stops two trials (one KILLED, one FINISHED and tagged); the plus-proxy-data arm
    has one FAILED trial: the headline counts them apart, in its record, its metrics and its Markdown."""
    helpers = _comparison_helpers()
    helpers.NETWORK.update({arm: ("full" if arm in ("full-search", "plus-proxy-data") else "proxy-L3") for arm in LADDER})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    arms = ("full-search", "plus-early-stopping")
    study = helpers._study("ladder-stopped", arms, external=False)
    trials = {arm: LADDER_TRIALS[arm] for arm in arms}
    trials["full-search"] = [*trials["full-search"][:2], (1, 0.003, 0.3, None, 0.45, 1, True)]  # one failed
    parent = helpers._log_comparison(
        uri, study, trials, {arm: LADDER_FINALS[arm] for arm in arms}, manifests={arm: LADDER_DATA[arm] for arm in arms}, cpu=True,
        stopped={"plus-early-stopping": {0: "KILLED", 2: "FINISHED"}},
    )
    report = write_study_report(parent, markdown=tmp_path / "report.md", html=tmp_path / "report.html", tracking_uri=uri)
    client = tracking.client(uri)
    summary = json.loads(Path(client.download_artifacts(parent, "summary.json", str(tmp_path))).read_text())
    ladder = Headline.model_validate(summary["headline"])
    assert (ladder.levers_trials.n_trials, ladder.levers_trials.n_stopped, ladder.levers_trials.n_failed, ladder.levers_trials.n_finished) == (3, 2, 0, 1)
    assert (ladder.reference_trials.n_stopped, ladder.reference_trials.n_failed) == (0, 1)
    metrics = client.get_run(parent).data.metrics
    assert (metrics["headline_stopped_trials_levers"], metrics["headline_failed_trials_levers"]) == (2.0, 0.0)
    assert (metrics["headline_stopped_trials_full"], metrics["headline_failed_trials_full"]) == (0.0, 1.0)
    assert "| search trials: failed / stopped early | 1 / 0 | 0 / 2 |" in report.markdown
    # the stopped trials' hours count in the levers' cost all the same
    assert ladder.levers_hours == pytest.approx(sum(row[4] for row in trials["plus-early-stopping"]) + 36.0 / 3600)


def test_paired_candidates_rank_correlation_and_regret_on_the_shared_settings() -> None:
    full = [({"lr": 0.1, "optimizer": "adam"}, 0.70), ({"lr": 0.01, "optimizer": "adam"}, 0.80), ({"lr": 0.001, "optimizer": "adam"}, 0.60),
            ({"lr": 0.003, "optimizer": "sgd"}, 0.90)]  # trained by the full search alone: not shared
    proxy = [({"lr": 0.1, "optimizer": "adam"}, 0.55), ({"lr": 0.01, "optimizer": "adam"}, 0.50), ({"lr": 0.001, "optimizer": "adam"}, 0.30),
             ({"lr": 0.01, "optimizer": "adam"}, 0.40),  # trained twice: its mean, 0.45
             ({"lr": 0.02, "optimizer": "adam"}, None)]  # stopped: left out
    result = paired_candidates(full, proxy)
    assert result.n_shared == 3
    # the proxy ranks 0.1 > 0.01 > 0.001, the full search 0.01 > 0.1 > 0.001: rho = 0.5; it picks lr 0.1 (0.70 against 0.80)
    assert result.spearman_rho == pytest.approx(0.5) and result.regret == pytest.approx(0.10)
    faithful = paired_candidates(full, [(setting, dice) for setting, dice in full])
    assert faithful.spearman_rho == pytest.approx(1.0) and faithful.regret == 0.0
    assert paired_candidates(full, [({"lr": 0.5, "optimizer": "adam"}, 0.9)]).model_dump() == {"n_shared": 0, "spearman_rho": None, "regret": None}
