"""The live search benchmark's accounting options without training: cost in trial-steps, seeds that vary the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from scipy import stats

from proxyhpo.config import HyperParameters, TrialResult, TrialState
from proxyhpo.analysis.search_bench import paired_finals, summary_markdown
from proxyhpo.config import load_yaml, parse_config
from proxyhpo.config.search_bench import Calibration, SearchBenchResult, StrategyRun, TableSearchConfig, load_search_bench, load_table_config
from proxyhpo.errors import ConfigError
from proxyhpo.search.bench import SearchBench

STUDY = {
    "name": "tiny",
    "data": {"dataset": "DATA", "split_seed": 2},
    "selection": {"method": "mi+labelcrop", "budget": 4, "seed": 5},
    "training": {"epochs": 4, "val_every": 2},
}


def bench(tmp_path: Path, **config: object) -> SearchBench:
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY | {"data": STUDY["data"] | {"dataset": str(tmp_path / "data")}}))
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump({"study": "study.yaml", "budget": {"trials": 40}, "seeds": [0, 3]} | config))
    return SearchBench(load_search_bench(tmp_path / "bench.yaml"), progress=False)


def result(steps: int, hours: float) -> TrialResult:
    return TrialResult(trial_id="t", state=TrialState.COMPLETE, hyperparameters=HyperParameters(lr=1e-3), network="n", steps_run=steps, epochs_run=4, process_hours=hours)


def test_a_trial_costs_its_steps_or_its_device_hours(tmp_path: Path) -> None:
    assert bench(tmp_path, cost="trial_steps")._cost(result(12, 0.5)) == 12.0
    assert bench(tmp_path)._cost(result(12, 0.5)) == 0.5  # the default stays device-hours


def test_trial_steps_refuse_a_budget_in_hours(tmp_path: Path) -> None:
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump({"study": "s.yaml", "budget": {"hours": 1.0}, "cost": "trial_steps"}))
    with pytest.raises(ConfigError, match="budget.hours cannot be counted in trial-steps"):
        load_search_bench(tmp_path / "bench.yaml")


def test_seeds_that_vary_the_data_move_the_split_and_the_proxy_data(tmp_path: Path) -> None:
    varied = bench(tmp_path, vary_data=True)
    assert [(s.data.split_seed, s.selection.seed, s.training.seed) for s in map(varied.seed_study, (0, 3))] == [(2, 5, 0), (5, 8, 3000)]
    fixed = bench(tmp_path)
    assert [(s.data.split_seed, s.selection.seed) for s in map(fixed.seed_study, (0, 3))] == [(2, 5), (2, 5)]


def _live_result(finals: dict[tuple[str, int], float], cost: str = "trial_steps") -> SearchBenchResult:
    """A live benchmark's result holding only the final models' held-out Dice (strategy, seed) -> Dice."""
    runs = tuple(
        StrategyRun(strategy=strategy, seed=seed, parent_run_id=f"{strategy}-{seed}", budget_hours=40.0, device_hours=40.0, overrun_hours=0.0,
                    trials=(), batches=(), curve=(), final_internal_test_dice=dice)
        for (strategy, seed), dice in finals.items()
    )
    calibration = Calibration(epochs=1, rates={"1": 1.0}, device_hours=1.0, full_trial_hours=1.0)
    return SearchBenchResult(bench_id="b", experiment="e", study="s", config={"cost": cost}, machine={}, budget_hours=40.0, calibration=calibration, runs=runs)


def test_the_live_finals_are_compared_with_random_search_paired_by_seed() -> None:
    random = {("random", seed): dice for seed, dice in enumerate([0.40, 0.50, 0.30, 0.60, 0.45])}
    tpe = {("tpe", seed): dice for seed, dice in enumerate([0.42, 0.55, 0.29, 0.66, 0.47])}  # +0.02, +0.05, -0.01, +0.06, +0.02
    (record,) = paired_finals(_live_result(random | tpe))
    assert record["strategy"] == "tpe" and record["seeds"] == [0, 1, 2, 3, 4]
    assert record["differences"] == pytest.approx([0.02, 0.05, -0.01, 0.06, 0.02])
    assert record["mean"] == pytest.approx(0.028)
    test = stats.ttest_rel([0.42, 0.55, 0.29, 0.66, 0.47], [0.40, 0.50, 0.30, 0.60, 0.45])
    assert record["p"] == pytest.approx(test.pvalue) and record["low"] < 0.028 < record["high"]
    # a seed random search did not finish is left out of the pairs, not counted as zero
    del random[("random", 4)]
    assert paired_finals(_live_result(random | tpe))[0]["seeds"] == [0, 1, 2, 3]
    text = summary_markdown(_live_result(random | tpe))
    assert "trial-steps per strategy and seed" in text and "| tpe | 0: +0.0200, 1: +0.0500, 2: -0.0100, 3: +0.0600 |" in text
    assert "device-hours per strategy and seed" in summary_markdown(_live_result(random | tpe, cost="device_hours"))
    assert paired_finals(_live_result(tpe)) == []  # no random search: nothing to pair with


BENCH = Path(__file__).parents[2] / "bench"


@pytest.mark.parametrize("name", ["search.yaml", "search-live.yaml"])
def test_the_committed_live_bench_configs_load_with_the_issues_protocol(name: str) -> None:
    config = load_search_bench(BENCH / name)
    # issue 19: 5 seeds that vary the data, 40 trials in trial-steps, TPE's documented 10 start-up trials
    assert config.vary_data and len(config.seeds) >= 5 and config.cost == "trial_steps" and config.budget.trials >= 40
    assert config.tpe_startup_trials == 10 and "random" in config.strategies


def test_the_committed_table_configs_load() -> None:
    for name in ("table-spleen.yaml", "table-prostate.yaml"):
        assert load_table_config(BENCH / name).grid.seeds >= 3
    replay = parse_config(TableSearchConfig, load_yaml(BENCH / "search-table.yaml"), "search-table.yaml")
    assert replay.seeds >= 200


def test_every_strategy_has_one_colour_for_all_its_seeds() -> None:
    from proxyhpo.analysis.search_bench import _strategy_colours

    names = ["random", "tpe", "reinforce", "gp", "cmaes", "reinforce-paper", "tpe+asha", "reinforce+sh", "tpe+hyperband"]
    colours = _strategy_colours(names)
    assert len(set(colours.values())) == len(names)  # distinct, so a seed's line is never read as another strategy's
    assert colours["random"] == "#7f7f7f" and _strategy_colours(["tpe"]) == {"tpe": colours["tpe"]}


def test_every_optuna_sampler_of_the_live_benchmark_gets_its_start_up_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from proxyhpo.registry import SEARCH_STRATEGIES
    from proxyhpo.search._optuna import OptunaStrategy

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    live = bench(tmp_path, tpe_startup_trials=10, proposals_per_batch=8)
    optuna_strategies = [name for name in SEARCH_STRATEGIES.names() if issubclass(SEARCH_STRATEGIES[name], OptunaStrategy)]
    assert {"tpe", "tpe+asha", "tpe+hyperband", "gp", "cmaes"} <= set(optuna_strategies)
    for name in optuna_strategies:
        search = live._open_search(name, 0, 0, live.study)
        mlflow.MlflowClient().set_terminated(search.parent_run_id)
        assert search.strategy.startup_trials == 10, name  # Optuna's default, as the config asks, not one batch of 8
