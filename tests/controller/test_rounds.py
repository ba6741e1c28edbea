"""One search round as pipeline stages: packs from proposals, rewards from result files, the final choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import HyperParameters, PackSpec, Proposal, StudyConfig, TrialResult, TrialResults, TrialState
from proxyhpo.controller import ReinforceController, read_history
from proxyhpo.controller.rounds import final_hyperparameters, init_controller, propose_round, split_into_packs, update_round
from proxyhpo.errors import TrialError
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.registry import SEARCH_STRATEGIES


def _study(**search) -> StudyConfig:
    return StudyConfig.model_validate(
        {"name": "rounds", "data": {"dataset": "d"}, "search": {"strategy": "reinforce", "rounds": 2, "proposals_per_round": 5, **search}, "training": {"pack_size": 2}}
    )


def _proposal(i: int, optimizer: str) -> Proposal:
    return Proposal(proposal_id=i, round=0, hyperparameters={"lr": 1e-3, "optimizer": optimizer, "intensity_shift_prob": 0.1}, log_prob=0.0)


def _result(proposal: Proposal, dice: float | None, arm: str = "") -> TrialResult:
    state = TrialState.COMPLETE if dice is not None else TrialState.FAILED
    trial_id = f"{arm}-{proposal.trial_id}" if arm else proposal.trial_id
    return TrialResult(
        trial_id=trial_id, state=state, hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3", final_val_dice=dice,
        tags={"proposal_id": str(proposal.proposal_id)},
    )


def test_trial_id_names_round_and_proposal() -> None:
    assert _proposal(7, "adam").trial_id == "r0-t007"


@pytest.mark.parametrize(
    "gpus, pack_size, expected",
    [
        (1, None, [[1, 3, 0, 2, 4]]),  # one pack per GPU, same optimiser together (adam, then rmsprop)
        (2, None, [[1, 3, 0], [2, 4]]),
        (1, 2, [[1, 3], [0, 2], [4]]),  # a fixed pack size wins over the GPU count
    ],
)
def test_split_into_packs(gpus: int, pack_size: int | None, expected: list[list[int]]) -> None:
    proposals = [_proposal(i, "rmsprop" if i % 2 == 0 else "adam") for i in range(5)]
    packs = split_into_packs(proposals, gpus=gpus, pack_size=pack_size)
    assert [[p.proposal_id for p in pack] for pack in packs] == expected
    assert split_into_packs([], gpus=2, pack_size=None) == []


def test_a_round_from_proposals_to_update(tmp_path: Path) -> None:
    study = _study()
    init_controller(study, tmp_path / "state0.zip")
    packs = [PackSpec.model_validate_json(text) for text in propose_round(study, tmp_path / "state0.zip", tmp_path / "proposed.zip")]
    assert [len(pack.proposals) for pack in packs] == [2, 2, 1]
    assert [pack.pack_index for pack in packs] == [0, 1, 2] and {pack.round for pack in packs} == {0}
    proposals = [p for pack in packs for p in pack.proposals]
    trial_ids = [p.trial_id for p in proposals]

    # pack 0 finished (one trial failed), pack 1 wrote nothing (its pod crashed), pack 2 finished; a search arm's
    # trial ids carry the arm, and the rewards still find their proposals
    TrialResults(results=(_result(proposals[0], 0.5, "proxy-data"), _result(proposals[1], None, "proxy-data"))).write(tmp_path / "pack0.json")
    TrialResults(results=(_result(proposals[4], 0.7, "proxy-data"),)).write(tmp_path / "pack2.json")
    stats = update_round(study, tmp_path / "proposed.zip", [tmp_path / "pack0.json", tmp_path / "pack1.json", tmp_path / "pack2.json"], tmp_path / "state1.zip")
    assert (stats.round, stats.n_proposals, stats.n_failed, stats.stepped) == (0, 5, 3, True)
    assert stats.mean_reward == pytest.approx(0.6)
    rewards = {record.proposal.trial_id: record.reward for record in read_history(tmp_path / "state1.zip")}
    assert rewards == {trial_ids[0]: 0.5, trial_ids[1]: None, trial_ids[2]: None, trial_ids[3]: None, trial_ids[4]: 0.7}
    assert ReinforceController.load(tmp_path / "state1.zip").round == 1

    best = final_hyperparameters(study, tmp_path / "state1.zip")
    (winner,) = [p for pack in packs for p in pack.proposals if p.trial_id == trial_ids[4]]
    assert best == dict(winner.hyperparameters)


def test_final_hyperparameters_need_one_successful_trial(tmp_path: Path) -> None:
    study = _study()
    init_controller(study, tmp_path / "state0.zip")
    propose_round(study, tmp_path / "state0.zip", tmp_path / "proposed.zip")
    update_round(study, tmp_path / "proposed.zip", [], tmp_path / "state1.zip")
    with pytest.raises(TrialError, match="every search trial failed: there are no hyper-parameters to train the final model with"):
        final_hyperparameters(study, tmp_path / "state1.zip")


def test_ties_go_to_the_earliest_proposal(tmp_path: Path) -> None:
    controller = ReinforceController(seed=0)
    proposals = controller.propose(3)
    controller.update(proposals, [0.4, 0.8, 0.8])
    controller.save(tmp_path / "state.zip")
    assert final_hyperparameters(_study(), tmp_path / "state.zip") == dict(proposals[1].hyperparameters)
    assert controller.best() == (proposals[1], 0.8)


@pytest.mark.parametrize("name", SEARCH_STRATEGIES.names())
def test_every_strategy_runs_its_rounds_through_the_state_files_and_a_retried_step_repeats_itself(name: str, tmp_path: Path) -> None:
    early_stopping = SEARCH_STRATEGIES[name].bench_early_stopping(EarlyStoppingConfig(min_epochs=1, reduction_factor=3))
    study = _study(strategy=name, proposals_per_round=3, early_stopping=early_stopping)
    state = init_controller(study, tmp_path / "state0")
    dice: dict[str, float] = {}
    proposed: dict[str, Proposal] = {}
    for round_index in range(2):
        packs = propose_round(study, state, tmp_path / f"proposed{round_index}")
        assert propose_round(study, state, tmp_path / "retried") == packs  # a retried propose task proposes the same
        proposals = [p for text in packs for p in PackSpec.model_validate_json(text).proposals]
        proposed |= {p.trial_id: p for p in proposals}
        assert {p.round for p in proposals} == {round_index} and sorted(p.proposal_id for p in proposals) == list(range(3 * round_index, 3 * round_index + 3))
        # the first proposal's trial fails, the others train to the end; one pack file per pack
        for index, text in enumerate(packs):
            pack = PackSpec.model_validate_json(text).proposals
            results = [_result(p, None if p.proposal_id == 3 * round_index else 0.1 + 0.1 * p.proposal_id) for p in pack]
            dice |= {p.trial_id: r.final_val_dice for p, r in zip(pack, results) if r.final_val_dice is not None}
            TrialResults(results=tuple(results)).write(tmp_path / f"r{round_index}-pack{index}.json")
        stats = update_round(study, tmp_path / f"proposed{round_index}", sorted(tmp_path.glob(f"r{round_index}-pack*.json")), tmp_path / f"state{round_index + 1}")
        assert stats.n_failed == 1
        state = tmp_path / f"state{round_index + 1}"
    assert max(dice, key=dice.__getitem__) == "r1-t005"
    assert final_hyperparameters(study, state) == dict(proposed["r1-t005"].hyperparameters)
