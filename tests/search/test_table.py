"""The tabular search benchmark: a tiny table recorded through the real trainer, then replayed; the accounting of the
replay (snapping, packs and rungs, trial-steps, budgets, picks, regret) checked on a small table written by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from proxyhpo.analysis.search_bench import median_interval, paired_test
from proxyhpo.cli import main
from proxyhpo.config import StudyConfig
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.config.search_bench import TableConfig, TableGridConfig, TableSearchConfig, load_table_config
from proxyhpo.config.controller import Proposal
from proxyhpo.search import table as table_module
from proxyhpo.search.table import ReplayTrial, Table, merge_tables, pick, record_table, regrets, replay_pack, replay_search
from proxyhpo.training.early_stopping import SuccessiveHalving
from tiny import tiny_recipe

TINY_STUDY = {
    "name": "tiny-table",
    "data": {
        "dataset": "DATA/tiny",
        "synthetic": {"task": "spleen", "cases": 6, "size": 32, "seed": 3, "external_cases": 0},
        "holdout_fraction": 0.2,
    },
    "similarity": {"patch": 16},
    "selection": {"method": "mi+labelcrop", "budget": 4},
    "search": {"space": {"lr": {"type": "log_uniform", "low": 1.0e-3, "high": 1.0e-2}, "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]}}},
    "training": {
        "recipe": tiny_recipe(),
        "epochs": 2,
        "batch_size": 1,
    },
    "final": {"epochs": 1, "network": "proxy"},
}


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2 x 2 grid (optimiser x lr) x 2 seeds x 2 epochs recorded through the study's plan and packs: (config, table)."""
    folder = tmp_path_factory.mktemp("table")
    study = dict(TINY_STUDY, data=dict(TINY_STUDY["data"], dataset=str(folder / "tiny")))
    (folder / "study.yaml").write_text(yaml.safe_dump(study))
    config = folder / "table.yaml"
    config.write_text(yaml.safe_dump({"study": "study.yaml", "grid": {"points": {"lr": 2}, "seeds": 2, "pack_size": 4}}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROXYHPO_HOME", str(folder / "home"))
        assert main(["bench", "table", str(config), "--out", str(folder / "table.npz")]) == 0
    return config, folder / "table.npz"


def test_a_tiny_table_holds_every_trial_at_every_epoch(tiny_table: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    config_path, path = tiny_table
    table = Table.read(path)
    assert (table.points, table.seeds, table.epochs) == (4, 2, 2)
    assert table.names == ["lr", "optimizer"] and table.values["optimizer"] == ["adam", "rmsprop"]
    assert table.values["lr"] == pytest.approx([1e-3, 1e-2])
    # 2 training cases of the proxy data, one volume a step: 2 steps an epoch, 4 trial-steps a whole trial
    assert table.steps_per_epoch == 2 and table.trial_steps == 4
    for curve in (table.val_dice, table.test_dice):
        assert np.isfinite(curve).all() and ((curve >= 0) & (curve <= 1)).all()
    assert np.isfinite(table.train_loss).all() and (table.seconds > 0).all()
    assert table.meta["command"].startswith("proxyhpo bench table") and table.meta["commit"]
    assert table.meta["config"]["grid"]["seeds"] == 2 and len(table.meta["data"]["test"]) == 1
    # the seeds differ (own initialisation and data order), the grid's points too
    assert not np.array_equal(table.val_dice[:, 0], table.val_dice[:, 1])

    # recording again into the same file trains nothing: every seed is there
    monkeypatch.setattr(table_module, "_train_recording", lambda *a, **k: pytest.fail("trained a recorded seed again"))
    again = record_table(load_table_config(config_path), path, progress=False)
    np.testing.assert_array_equal(again.val_dice, table.val_dice)


def test_the_tiny_table_replays_every_strategy_and_writes_its_report(tiny_table: tuple[Path, Path], tmp_path: Path) -> None:
    _, path = tiny_table
    bench = tmp_path / "replay.yaml"
    bench.write_text(yaml.safe_dump({"seeds": 3, "budgets": [2, 4], "proposals_per_batch": 2, "pack_slots": 2, "val_every": 1, "early_stopping": {"min_epochs": 1, "reduction_factor": 2}}))
    out = tmp_path / "results"
    args = ["bench", "search", str(bench), "--table", str(path), "--out", str(out), "--strategies", "random", "reinforce", "reinforce-paper", "tpe+asha", "--default", "reinforce"]
    assert main(args) == 0
    summary = json.loads((out / "search-table-table.json").read_text())
    assert (out / "search-table-table.png").stat().st_size > 0
    assert set(summary["strategies"]) == {"random", "reinforce", "reinforce-paper", "tpe+asha"}
    table = Table.read(path)
    for name, rows in summary["regrets"].items():
        assert len(rows) == 3 and all(len(row) == 2 for row in rows)
        assert all(0.0 <= value <= summary["table_best_test_dice"] + 1e-6 for row in rows for value in row)
    assert summary["default"] == "reinforce" and [row["budget_trials"] for row in summary["paired_tests"]["reinforce"]["random"]] == [2.0, 4.0]
    # a search runs until its trials cost the largest budget; its cost is its trials' epochs times the steps of one
    trials = replay_search(table, "tpe+asha", 0, TableSearchConfig.model_validate(yaml.safe_load(bench.read_text())))
    assert trials[-1].cumulative_steps >= 4 * table.trial_steps
    assert [t.cumulative_steps for t in trials] == list(np.cumsum([t.epochs_run * table.steps_per_epoch for t in trials]))
    assert any(t.state == "STOPPED" for t in trials)  # the rung at epoch 1 stops half of those that reach it


# ---------------------------------------------------------------------------------------------- a table by hand
def hand_table(val: np.ndarray, test: np.ndarray, *, lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2)) -> Table:
    """A table over lr (log-uniform 1e-4..1e-2) x optimizer (adam, rmsprop) with the given ``(P, S, E)`` curves."""
    study = StudyConfig.model_validate(
        {
            **{k: v for k, v in TINY_STUDY.items() if k != "search"},
            "data": dict(TINY_STUDY["data"], synthetic=None),
            "search": {"space": {"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}, "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]}}},
        }
    )
    index = np.array([(i, j) for i in range(len(lrs)) for j in range(2)])
    assert val.shape[0] == len(index)
    meta = {"steps_per_epoch": 3, "epochs": val.shape[2], "study": study.model_dump(mode="json")}
    return Table(["lr", "optimizer"], {"lr": list(lrs), "optimizer": ["adam", "rmsprop"]}, index, val, test, np.zeros_like(val), np.ones(val.shape[:2]), meta)


def proposals(n: int) -> list[Proposal]:
    return [Proposal(proposal_id=i, round=0, hyperparameters={"lr": 1e-3, "optimizer": "adam"}, log_prob=0.0) for i in range(n)]


def test_a_proposal_snaps_to_the_nearest_point_on_its_scale() -> None:
    table = hand_table(np.zeros((6, 1, 2)), np.zeros((6, 1, 2)))
    # 4e-4 is nearer 1e-4 on a linear scale but nearer 1e-3 on the log scale the learning rate is searched on
    assert table.hyperparameters(table.snap({"lr": 4e-4, "optimizer": "rmsprop"})) == {"lr": 1e-3, "optimizer": "rmsprop"}
    assert table.hyperparameters(table.snap({"lr": 2.9e-4, "optimizer": "adam"})) == {"lr": 1e-4, "optimizer": "adam"}
    assert table.hyperparameters(table.snap({"lr": 1e-2, "optimizer": "adam"})) == {"lr": 1e-2, "optimizer": "adam"}


def test_a_replayed_round_queues_for_the_slots_and_stops_at_the_rungs() -> None:
    # four trials, 3 epochs, two slots, rungs at epochs 1 and 2 keeping the better half of those that reached them
    val = np.array(
        [
            [[0.5, 0.6, 0.7]],  # point 0: best at the rung, trains to the end
            [[0.1, 0.2, 0.3]],  # point 1: stopped at the rung (beside point 0)
            [[0.4, math.nan, 0.1]],  # point 2: takes the freed slot; 2nd of 3 at the rung, goes on, diverges at epoch 2
            [[0.9, 0.9, 0.9]],  # point 3: takes the slot point 2 freed; first of 4 at the rung, trains to the end
            [[0.0, 0.0, 0.0]],
            [[0.0, 0.0, 0.0]],
        ]
    )
    table = hand_table(val, val.copy())
    stopper = SuccessiveHalving(EarlyStoppingConfig(min_epochs=1, reduction_factor=2), epochs=3)
    results = replay_pack(table, proposals(4), [0, 1, 2, 3], [0, 0, 0, 0], slots=2, stopper=stopper, val_every=3)
    assert [r.state.value for r in results] == ["COMPLETE", "STOPPED", "FAILED", "COMPLETE"]
    assert [r.epochs_run for r in results] == [3, 1, 2, 3]
    assert [r.steps_run for r in results] == [9, 3, 6, 9]
    assert results[0].val_epochs == [1, 2, 3] and results[0].final_val_dice == pytest.approx(0.7)
    # a curve that is not finite is a failed trial at that epoch, without a stopper too
    failed = replay_pack(table, proposals(1), [2], [0], slots=1, stopper=None, val_every=3)[0]
    assert failed.state.value == "FAILED" and failed.epochs_run == 2 and failed.final_val_dice is None


def test_the_pick_and_its_regret_count_only_finished_trials_within_the_budget() -> None:
    val = np.array([[[0.2, 0.3]], [[0.9, 0.1]], [[0.4, 0.5]], [[0.6, 0.8]], [[0.0, 0.0]], [[0.0, 0.0]]])
    test = np.array([[[0.1, 0.2]], [[0.7, 0.0]], [[0.3, 0.35]], [[0.5, 0.6]], [[0.0, 0.0]], [[0.0, 0.0]]])
    table = hand_table(val, test)
    # a configuration's test Dice is read at its best validation epoch: point 1 peaks at epoch 1 (test 0.7)
    np.testing.assert_allclose(table.config_test_dice(), [0.2, 0.7, 0.35, 0.6, 0.0, 0.0])
    trials = [
        ReplayTrial(0, 0, point=2, seed=0, state="COMPLETE", epochs_run=2, steps=6, val_dice=0.5, cumulative_steps=6),
        ReplayTrial(1, 0, point=1, seed=0, state="STOPPED", epochs_run=1, steps=3, val_dice=0.9, cumulative_steps=9),
        ReplayTrial(2, 0, point=3, seed=0, state="COMPLETE", epochs_run=2, steps=6, val_dice=0.8, cumulative_steps=15),
    ]
    assert pick(trials, 5) is None
    assert pick(trials, 14).point == 2  # the stopped trial's higher Dice is an earlier epoch's: no candidate
    assert pick(trials, 15).point == 3
    # budgets in full trials of 6 trial-steps: 0.5 -> nothing picked (regret = the best's Dice), 2 -> point 2, 3 -> point 3
    np.testing.assert_allclose(regrets(table, trials, [0.5, 2, 2.5]), [0.7, 0.7 - 0.35, 0.7 - 0.6])


def test_seeds_recorded_apart_merge_into_one_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = hand_table(rng.random((6, 2, 2)), rng.random((6, 2, 2)))
    full.meta["config"] = {"grid": "same"}
    parts = []
    for seed in (1, 0):
        path = tmp_path / f"part{seed}.npz"
        arrays = {"index": full.index, "val_dice": np.where(np.arange(2)[None, :, None] == seed, full.val_dice, np.nan)}
        arrays |= {key: getattr(full, key) for key in ("test_dice", "train_loss", "seconds")}
        table_module._write_raw(path, arrays, full.meta | {"names": full.names, "values": full.values, "seeds_recorded": [seed]})
        assert Table.read(path).seeds == 1
        parts.append(path)
    merged = merge_tables(parts, tmp_path / "merged.npz")
    np.testing.assert_allclose(merged.val_dice, full.val_dice.astype(np.float32))
    assert merged.meta["seeds_recorded"] == [0, 1]


def test_paired_test_and_interval() -> None:
    ours = np.array([0.0, 0.1, 0.0, 0.2, 0.05] * 8)
    theirs = ours + np.array([0.1, 0.0, 0.2, 0.1, 0.3] * 8)  # ties where equal: dropped
    result = paired_test(ours, theirs)
    assert result["n"] == 32 and result["wins"] == 32 and result["losses"] == 0 and result["p"] < 1e-6
    assert paired_test(theirs, ours)["p"] > 0.99
    assert paired_test(ours, ours) == {"p": None, "n": 0, "wins": 0, "losses": 0}
    exact = ours + 1.3e-6  # as replayed, against the same regrets rounded to the results file's 5 decimals
    assert paired_test(exact, np.round(exact, 5)) == {"p": None, "n": 0, "wins": 0, "losses": 0}
    assert paired_test(ours + 1e-5, ours)["losses"] == 40  # one unit of the 5th decimal is a difference
    median, low, high = median_interval(theirs, resamples=500)
    assert low <= median <= high


def test_a_table_config_names_only_ranges_of_the_space(tmp_path: Path) -> None:
    from proxyhpo.errors import ConfigError

    study = dict(TINY_STUDY, data=dict(TINY_STUDY["data"], dataset=str(tmp_path / "tiny")))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    config = TableConfig(study=str(tmp_path / "study.yaml"), grid=TableGridConfig(points={"optimizer": 3}))
    with pytest.raises(ConfigError, match="grid.points"):
        record_table(config, tmp_path / "t.npz", progress=False)
