"""Contract tests every registered search strategy passes (Optuna's habit: one suite, parametrised over the plug-ins).

What the HPO pipeline relies on, with no training: proposals in the space, numbered on; results told in any
order, stopped, failed or missing; the state saved and restored between every ask and tell ends where the
uninterrupted search ends (the pipeline's resume and retries replay rounds from these files); one seed, one search.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import StudyConfig, TrialResult, TrialState
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.registry import SEARCH_STRATEGIES
from proxyhpo.search import Strategy

STRATEGIES = SEARCH_STRATEGIES.names()
#: the strategies whose packs stop trials with a schedule of their own
SCHEDULED = [name for name in STRATEGIES if SEARCH_STRATEGIES[name].early_stopping_schedule is not None]


def _study(name: str) -> StudyConfig:
    early_stopping = SEARCH_STRATEGIES[name].bench_early_stopping(EarlyStoppingConfig(min_epochs=1, reduction_factor=3))
    search = {"strategy": name, "proposals_per_round": 3, "early_stopping": early_stopping}
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


def _round_results(proposals) -> list[TrialResult]:
    """A round's results in reverse order: trained to the end, stopped at epoch 3 (with its curve), failed, and one missing."""
    dice = {p.proposal_id: 0.1 + 0.07 * ((p.proposal_id * 5) % 9) for p in proposals}
    ids = [p.proposal_id for p in proposals]
    told = {ids[0]: dice[ids[0]], ids[1]: dice[ids[1]]} | ({ids[2]: None} if len(ids) > 2 else {})
    results = _results(proposals, told, stopped={ids[1]: 3})
    stopped = results[1].model_copy(update={"val_epochs": [1, 3], "val_dice": [0.05, dice[ids[1]]]})
    return [results[0], stopped, *results[2:]][::-1]


def _hyperparameters(proposals) -> list[tuple]:
    return [(p.proposal_id, p.round, sorted(p.hyperparameters.items())) for p in proposals]


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_search_saved_and_restored_between_every_ask_and_tell_ends_as_the_uninterrupted_one(name: str, tmp_path: Path) -> None:
    """The pipeline's rounds: init, then per round restore, ask, save; restore, tell, save (a retry or resume replays them)."""
    cls, study, rounds = SEARCH_STRATEGIES[name], _study(name), 3
    uninterrupted = cls(study, 4)
    asked = []
    for _ in range(rounds):
        asked.append(_hyperparameters(proposals := uninterrupted.ask(3)))
        uninterrupted.tell(_round_results(proposals))

    state = cls(study, 4).save(tmp_path / "init")
    resumed = []
    for round_index in range(rounds):
        search = cls.restore(study, state)
        proposals = search.ask(3)
        proposed = search.save(tmp_path / f"proposed{round_index}")
        assert _hyperparameters(cls.restore(study, state).ask(3)) == _hyperparameters(proposals)  # a retried propose step
        resumed.append(_hyperparameters(proposals))
        search = cls.restore(study, proposed)
        search.tell(_round_results(proposals))
        state = search.save(tmp_path / f"state{round_index}")

    assert resumed == asked
    restored = cls.restore(study, state)
    assert restored.history() == uninterrupted.history() and len(restored.history()) == 3 * rounds
    assert restored.best() == uninterrupted.best() is not None
    assert [(r.failed, r.stopped_at_epoch) for r in restored.history()[:3]] == [(False, None), (False, 3), (True, None)]
    assert _hyperparameters(restored.ask(3)) == _hyperparameters(uninterrupted.ask(3))


@pytest.mark.parametrize("name", STRATEGIES)
def test_one_seed_makes_one_search_and_another_seed_another(name: str) -> None:
    def run(seed: int) -> list[tuple]:
        search = _strategy(name, seed)
        first = search.ask(3)
        search.tell(_round_results(first))
        return _hyperparameters(first) + _hyperparameters(search.ask(3))

    assert run(1) == run(1)
    assert run(1) != run(2)


def _is_optuna(name: str) -> bool:
    from proxyhpo.search._optuna import OptunaStrategy

    return issubclass(SEARCH_STRATEGIES[name], OptunaStrategy)


@pytest.mark.parametrize("name", [name for name in STRATEGIES if _is_optuna(name)])
def test_an_optuna_search_refuses_another_strategys_state_in_one_line(name: str, tmp_path: Path) -> None:
    from proxyhpo.errors import InputError

    other = "gp" if name != "gp" else "tpe"
    state = _strategy(other).save(tmp_path / "state")
    with pytest.raises(InputError) as caught:
        SEARCH_STRATEGIES[name].restore(_study(name), state)
    assert str(caught.value) == f"{state}: is the {other} strategy's state, not the {name} strategy's; fix: pass the state file the search's previous round wrote, with the same search.strategy"
    _strategy("random").save(tmp_path / "random")
    with pytest.raises(InputError, match="is not an Optuna journal"):
        SEARCH_STRATEGIES[name].restore(_study(name), tmp_path / "random")


def test_tpe_with_hyperband_is_a_pipeline_strategy() -> None:
    assert SCHEDULED == ["tpe+hyperband"]  # the others stop trials with whatever schedule the study sets


@pytest.mark.parametrize("name", SCHEDULED)
def test_a_strategy_with_a_schedule_of_its_own_refuses_the_study_s_other_schedule(name: str, tmp_path: Path) -> None:
    from proxyhpo.controller.rounds import init_controller
    from proxyhpo.errors import ConfigError

    wanted = SEARCH_STRATEGIES[name].early_stopping_schedule
    study = StudyConfig.model_validate(_study(name).model_dump() | {"search": _study(name).search.model_dump() | {"early_stopping": {"min_epochs": 1, "schedule": "asha"}}})
    with pytest.raises(ConfigError) as caught:
        init_controller(study, tmp_path / "state")
    assert str(caught.value) == f"search.early_stopping.schedule: search.strategy '{name}' stops trials with the {wanted} schedule, and the study sets asha; fix: set search.early_stopping.schedule: {wanted}"
    assert not (tmp_path / "state").exists()
    with pytest.raises(ValueError, match=f"schedule '{wanted}', got 'asha'"):
        SEARCH_STRATEGIES[name](study, 0)


def test_seeds_change_what_random_search_proposes() -> None:
    assert _strategy("random", 1).ask(3) != _strategy("random", 2).ask(3)
    assert _strategy("random", 1).ask(3) == _strategy("random", 1).ask(3)


def test_compiling_a_search_whose_strategy_wants_another_schedule_stops_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from proxyhpo.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "data": {"dataset": str(tmp_path / "d")}, "search": {"strategy": "tpe+hyperband", "early_stopping": {"min_epochs": 1}}}))
    assert main(["compile", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == "proxyhpo compile: error: search.early_stopping.schedule: search.strategy 'tpe+hyperband' stops trials with the hyperband schedule, and the study sets asha; fix: set search.early_stopping.schedule: hyperband\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_the_pipeline_carries_compiles_for_the_cluster(name: str, tmp_path: Path) -> None:
    import yaml

    from proxyhpo.compile import compile_study

    study = _study(name).model_copy(update={"search": _study(name).search.model_copy(update={"rounds": 2})})
    spec = next(yaml.safe_load_all(compile_study(study, tmp_path / "hpo.yaml").read_text()))
    compiled = StudyConfig.model_validate_json(spec["root"]["inputDefinitions"]["parameters"]["study_config"]["defaultValue"])
    assert compiled.search.strategy == name and compiled.search.early_stopping == study.search.early_stopping
    components = set(spec["components"])  # two rounds unrolled: each proposes, trains its packs, updates the state
    assert {"comp-controller-init", "comp-controller-propose-2", "comp-train-pack-2", "comp-controller-update-2", "comp-final-training"} <= components
