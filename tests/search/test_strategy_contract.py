"""Contract tests every registered search strategy passes (Optuna's habit: one suite, parametrised over the plug-ins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import StudyConfig, TrialResult, TrialState
from proxyhpo.registry import SEARCH_STRATEGIES
from proxyhpo.search import Strategy

STRATEGIES = SEARCH_STRATEGIES.names()
PERSISTENT = [name for name in STRATEGIES if SEARCH_STRATEGIES[name].persistent]


def _study(name: str) -> StudyConfig:
    stops = SEARCH_STRATEGIES[name].requires_early_stopping
    search = {"strategy": name, "proposals_per_round": 3, "early_stopping": {"min_epochs": 1, "reduction_factor": 3} if stops else None}
    return StudyConfig.model_validate({"name": "contract", "data": {"dataset": "d"}, "search": search, "training": {"epochs": 9}})


def _strategy(name: str, seed: int = 1) -> Strategy:
    return SEARCH_STRATEGIES[name](_study(name), seed)


def _results(proposals, dice: dict[int, float | None], stopped: dict[int, int] | None = None) -> list[TrialResult]:
    """One result per proposal listed in ``dice`` (None: failed); a proposal left out returned no result at all."""
    stopped = stopped or {}
    results = []
    for p in proposals:
        if p.proposal_id not in dice:
            continue
        value = dice[p.proposal_id]
        state = TrialState.FAILED if value is None else TrialState.STOPPED if p.proposal_id in stopped else TrialState.COMPLETE
        results.append(
            TrialResult(
                trial_id=p.trial_id, state=state, hyperparameters={"lr": 1e-3} | p.hyperparameters, network="proxy-L3",
                tags={"proposal_id": str(p.proposal_id)}, epochs_run=stopped.get(p.proposal_id, 9), final_val_dice=value,
                stopped_at_epoch=stopped.get(p.proposal_id), fail_reason="diverged" if value is None else None,
            )
        )
    return results


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_proposes_within_the_search_space_and_numbers_its_proposals_on(name: str) -> None:
    strategy = _strategy(name)
    assert strategy.name == name
    ids = []
    for _ in range(2):
        proposals = strategy.ask(3)
        for proposal in proposals:
            strategy.study.search.space.check_values(proposal.hyperparameters)
        ids += [proposal.proposal_id for proposal in proposals]
        strategy.tell(_results(proposals, {p.proposal_id: 0.1 * k for k, p in enumerate(proposals)}))
    assert ids == list(range(6))


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_refuses_a_bad_batch_size(name: str) -> None:
    for n in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            _strategy(name).ask(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_names_the_best_trial_that_trained_all_epochs_and_survives_failures(name: str) -> None:
    strategy = _strategy(name)
    assert strategy.best() is None
    proposals = strategy.ask(3)
    # 0: trained to the end; 1: stopped early with a higher Dice; 2: no result at all (its pack crashed)
    strategy.tell(_results(proposals, {proposals[0].proposal_id: 0.4, proposals[1].proposal_id: 0.9}, stopped={proposals[1].proposal_id: 3}))
    best = strategy.best()
    assert best is not None and best.proposal.proposal_id == proposals[0].proposal_id and best.dice == pytest.approx(0.4)
    later = strategy.ask(3)  # the round after a crash goes on
    strategy.tell(_results(later, {p.proposal_id: None for p in later}))
    assert strategy.best().proposal.proposal_id == proposals[0].proposal_id  # type: ignore[union-attr]


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_strategy_that_needs_rungs_refuses_a_study_without_them(name: str) -> None:
    cls = SEARCH_STRATEGIES[name]
    study = StudyConfig.model_validate({"name": "contract", "data": {"dataset": "d"}})
    if cls.requires_early_stopping:
        with pytest.raises(ValueError, match="set search.early_stopping"):
            cls(study, 0)
    else:
        assert cls(study, 0).stops_early is False


@pytest.mark.parametrize("name", PERSISTENT)
def test_a_restored_strategy_continues_exactly_as_the_one_that_saved_it(name: str, tmp_path: Path) -> None:
    study = _study(name)
    kept = SEARCH_STRATEGIES[name](study, 4)
    first = kept.ask(3)
    kept.save(tmp_path / "proposed")
    told = _results(first, {p.proposal_id: 0.2 + 0.1 * k for k, p in enumerate(first)})
    kept.tell(told)
    kept.save(tmp_path / "state")

    restored = SEARCH_STRATEGIES[name].restore(study, tmp_path / "proposed")
    restored.tell(told)
    assert restored.best() == kept.best()
    assert restored.ask(3) == kept.ask(3)
    restored_again = SEARCH_STRATEGIES[name].restore(study, tmp_path / "state")
    assert restored_again.ask(3) == SEARCH_STRATEGIES[name].restore(study, tmp_path / "state").ask(3)


@pytest.mark.parametrize("name", [name for name in STRATEGIES if name not in PERSISTENT])
def test_a_strategy_kept_in_memory_says_so_when_a_pipeline_asks_to_carry_it(name: str, tmp_path: Path) -> None:
    from proxyhpo.controller.rounds import init_controller
    from proxyhpo.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        init_controller(_study(name), tmp_path / "state")
    persistent = ", ".join(PERSISTENT)
    assert str(caught.value) == f"search.strategy: '{name}' keeps its state in memory and runs only in `proxyhpo bench search`; fix: choose one of {persistent}"
    assert not (tmp_path / "state").exists()


def test_seeds_change_what_random_search_proposes() -> None:
    assert _strategy("random", 1).ask(3) != _strategy("random", 2).ask(3)
    assert _strategy("random", 1).ask(3) == _strategy("random", 1).ask(3)


def test_compiling_a_search_with_a_strategy_kept_in_memory_stops_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from proxyhpo.cli import main

    (name,) = [name for name in STRATEGIES if name not in PERSISTENT]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "data": {"dataset": str(tmp_path / "d")}, "search": {"strategy": name, "early_stopping": {"min_epochs": 1}}}))
    assert main(["compile", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"proxyhpo compile: error: search.strategy: '{name}' keeps its state in memory") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
