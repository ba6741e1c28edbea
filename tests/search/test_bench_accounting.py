"""The live search benchmark's accounting options without training: cost in trial-steps, seeds that vary the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from proxyhpo.config import HyperParameters, TrialResult, TrialState
from proxyhpo.config.search_bench import load_search_bench
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
