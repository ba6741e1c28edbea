"""The search benchmark at a tiny size: every strategy runs, and the accounting holds against the MLflow store.

Checked from the real SQLite MLflow store, recomputed here from the runs alone: each strategy's trials in
proposal order, their device-hours summed in that order, the trials within the budget, the running best
of the validation Dice of those that trained all their epochs.
"""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pytest
import yaml

from proxyhpo import paths
from proxyhpo.cli import main
from proxyhpo.config.search_bench import SearchBenchResult
from proxyhpo.tracking import names
from proxyhpo.analysis.search_bench import summary_markdown
from proxyhpo.search.bench import CostModel, run_search_bench
from tiny import tiny_recipe

TINY_STUDY = {
    "name": "tiny-bench",
    "data": {
        "dataset": "DATA/tiny",
        "synthetic": {"task": "spleen", "cases": 6, "size": 32, "seed": 3, "external_cases": 0},
        "holdout_fraction": 0.2,
    },
    "similarity": {"patch": 16},
    "selection": {"method": "mi+labelcrop", "budget": 4},
    "search": {"proposals_per_round": 2},
    "training": {
        "recipe": tiny_recipe(),
        "epochs": 3,
        "val_every": 3,  # validated at the end, and at the rungs of the strategies that stop trials early
        "pack_size": 2,
        "batch_size": 1,
    },
    "final": {"epochs": 1, "network": "proxy"},  # a 5-level full U-Net needs patches of at least 32³
}


def write_bench(folder: Path, **bench) -> Path:
    study = dict(TINY_STUDY, data=dict(TINY_STUDY["data"], dataset=str(folder / "tiny")))
    (folder / "study.yaml").write_text(yaml.safe_dump(study))
    # a budget of 4 trials at the calibrated rate: the test's time follows the machine's speed (a device-second is a
    # wall-second on a CPU), and without a margin a first batch of 2 fits unless the machine got twice as slow since
    config = {"study": "study.yaml", "budget": {"trials": 4}, "margin": 0.0, "seeds": [0], "strategies": list(ACCOUNTED), "early_stopping": {"reduction_factor": 2, "min_epochs": 1}} | bench
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


#: One strategy of each way a benchmark accounts trials: random proposals, a controller that learns, successive
#: halving in the queue, and an Optuna pruner in the trainer. Every registered strategy's ask/tell, save/restore and
#: determinism are checked without training in tests/search/test_strategy_contract.py; training all of them here
#: cost about 25 CPU s more and checked the same accounting.
ACCOUNTED = ("random", "reinforce", "reinforce+sh", "tpe+hyperband")

def mlflow_curve(client: mlflow.MlflowClient, experiment_id: str, parent_run_id: str, budget: float) -> tuple[list[tuple], float, list[str]]:
    """The running best recomputed from the trial runs MLflow holds: (trial id, hours, trial-epochs, best), counted hours, run ids."""
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent_run_id}' and tags.`{names.ROLE_TAG}` = '{names.ROLE_TRIAL}'", max_results=1000
    )
    ordered = sorted(children, key=lambda run: int(run.data.tags[names.PROPOSAL_ID_TAG]))
    spent, counted_hours, epochs, best, curve = 0.0, 0.0, 0, None, []
    for run in ordered:
        spent += run.data.metrics[names.GPU_HOURS] + run.data.metrics[names.PROCESS_HOURS]
        counted = spent <= budget
        assert run.data.tags[names.BENCH_COUNTED_TAG] == ("true" if counted else "false")
        if not counted:
            continue
        counted_hours = spent
        epochs += int(run.data.metrics[names.EPOCHS_RUN])
        if run.info.status == "FINISHED" and names.STOPPED_TAG not in run.data.tags:  # trained all epochs: a candidate (failed ones end FAILED)
            dice = run.data.metrics[names.FINAL_VAL_DICE]
            best = dice if best is None else max(best, dice)
        curve.append((run.data.tags[names.TRIAL_ID_TAG], spent, epochs, best))
    return curve, counted_hours, [run.info.run_id for run in ordered]


@pytest.mark.slow
def test_search_bench_spends_at_most_the_budget_and_its_curve_is_the_running_best_in_mlflow(tmp_path: Path, isolated_home: Path) -> None:
    out = tmp_path / "results"
    result = run_search_bench(write_bench(tmp_path, final_repeats=2), out, progress=False)

    assert SearchBenchResult.read(out / "search.json") == result
    assert (out / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "search.md").read_text() == summary_markdown(result)
    assert [run.strategy for run in result.runs] == list(ACCOUNTED)
    assert result.budget_hours == pytest.approx(4 * result.calibration.full_trial_hours)

    client = mlflow.MlflowClient(paths.tracking_uri())
    experiment = client.get_experiment_by_name("tiny-bench-search-bench")
    for run in result.runs:
        assert run.budget_hours == result.budget_hours
        assert run.device_hours <= run.budget_hours, run.strategy  # every strategy spends at most the budget
        assert run.trials, f"{run.strategy} trained nothing"
        curve, counted_hours, run_ids = mlflow_curve(client, experiment.experiment_id, run.parent_run_id, run.budget_hours)
        assert counted_hours <= run.budget_hours
        assert run_ids == [trial.run_id for trial in run.trials]
        assert [(p.trial_id, p.hours, p.trial_epochs, p.best_val_dice) for p in run.curve] == curve
        assert run.device_hours == pytest.approx(counted_hours, rel=1e-12)
        parent = client.get_run(run.parent_run_id)
        assert parent.info.status == "FINISHED"
        assert parent.data.tags[names.BENCH_STRATEGY_TAG] == run.strategy
        assert parent.data.metrics[names.DEVICE_HOURS] <= parent.data.metrics[names.BUDGET_HOURS]
        if run.best_val_dice is not None:
            assert run.best_val_dice == max(p.best_val_dice for p in run.curve if p.best_val_dice is not None)
            finals = client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{run.parent_run_id}' and tags.`{names.ROLE_TAG}` = '{names.ROLE_FINAL}'"
            )
            # two initialisations of the best hyper-parameters (final.seed + 0, 1): the reported Dice are their means
            assert sorted(final.data.params[names.SEED_PARAM] for final in finals) == ["0", "1"]
            assert run.final_val_dice == pytest.approx(sum(final.data.metrics[names.FINAL_VAL_DICE] for final in finals) / 2)
            internal = {int(final.data.params[names.SEED_PARAM]): final.data.metrics[names.INTERNAL_TEST_DICE] for final in finals}
            assert run.final_internal_test_dices == pytest.approx((internal[0], internal[1]))
            assert run.final_internal_test_dice == pytest.approx(sum(internal.values()) / 2)
            for final in finals:
                assert {k: final.data.params[k] for k in run.best_hyperparameters} == {k: str(v) for k, v in run.best_hyperparameters.items()}

    by_name = {run.strategy: run for run in result.runs}
    # successive halving in a queue of 2 slots with reduction factor 2 stops one trial of each pair at the first rung
    halving = by_name["reinforce+sh"]
    stopped = [trial for trial in halving.trials if trial.state == "STOPPED"]
    assert len(stopped) == sum(batch.proposals == 2 for batch in halving.batches)
    assert all(trial.stopped_at_epoch == 1 and trial.epochs_run == 1 for trial in stopped)
    for name in ("random", "reinforce"):
        assert all(trial.state != "STOPPED" and trial.epochs_run == 3 for trial in by_name[name].trials if trial.state != "FAILED")


def test_cost_model_predicts_from_the_median_recent_rate_at_the_pack_size_or_below() -> None:
    model = CostModel(margin=0.5, window=3)
    with pytest.raises(ValueError, match="calibrate first"):
        model.rate(4)
    model.observe(1, hours=0.4, trial_epochs=4)  # 0.1 per trial-epoch alone
    model.observe(4, hours=0.8, trial_epochs=16)  # 0.05 packed
    assert model.rate(4) == pytest.approx(0.05)
    assert model.rate(3) == pytest.approx(0.1)  # not measured: a smaller pack is never cheaper per trial-epoch than alone
    model.observe(4, hours=1.6, trial_epochs=16)  # one slow batch
    assert model.rate(4) == pytest.approx(0.075)  # the median of 0.05 and 0.1
    model.observe(4, hours=0.96, trial_epochs=16)
    model.observe(4, hours=0.8, trial_epochs=16)
    assert model.rate(4) == pytest.approx(0.06)  # the median of the last three: 0.1, 0.06, 0.05
    assert model.predict(2, slots=4, epochs=10) == pytest.approx(2 * 10 * 0.06 * 1.5)
    assert math.isfinite(model.predict(1, slots=1, epochs=1))


def test_cli_bench_search_refuses_a_bad_config_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_bench(tmp_path, budget={"hours": 1.0, "trials": 2})
    assert main(["bench", "search", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxyhpo bench: error: ") and "bench.yaml" in err and "exactly one of budget.hours and budget.trials" in err
    assert "\n" not in err and not (tmp_path / "out").exists()
    assert main(["bench", "search", str(write_bench(tmp_path)), "--seeds", "-1", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == "proxyhpo bench: error: --seeds: seeds must be >= 0, got [-1]; fix: give distinct seeds >= 0"
