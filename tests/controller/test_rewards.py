"""Rewards with trials stopped early: ranks in rung order, what the controller records, and the final choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import HyperParameters, PackSpec, Proposal, StudyConfig, TrialResult, TrialResults, TrialState
from proxyhpo.controller import ReinforceController, read_history, read_state_json
from proxyhpo.controller.rewards import TrialOutcome, dice_rewards, rank_rewards, reward_function
from proxyhpo.controller.rounds import final_hyperparameters, init_controller, propose_round, split_into_packs, update_round


def _study(early_stopping: dict | None = None, **controller) -> StudyConfig:
    search = {"strategy": "reinforce", "rounds": 2, "proposals_per_round": 6, "controller": controller}
    if early_stopping is not None:
        search["early_stopping"] = early_stopping
    return StudyConfig.model_validate({"name": "rewards", "data": {"dataset": "d"}, "search": search, "training": {"pack_size": 2, "epochs": 9}})


def test_survivors_outrank_the_stopped_in_rung_order() -> None:
    outcomes = [
        TrialOutcome(0.40, 9),  # finished
        TrialOutcome(0.90, 1),  # stopped at the first rung with a high Dice: still below everyone who went further
        TrialOutcome(0.55, 9),  # finished, the best
        None,  # failed: no reward
        TrialOutcome(0.20, 3),  # stopped at the second rung
        TrialOutcome(0.10, 1),
    ]
    assert rank_rewards(outcomes) == [0.75, 0.25, 1.0, None, 0.5, 0.0]
    assert dice_rewards(outcomes) == [0.40, 0.90, 0.55, None, 0.20, 0.10]


def test_rank_ties_share_their_places_and_a_lone_trial_is_neutral() -> None:
    assert rank_rewards([TrialOutcome(0.3, 9), TrialOutcome(0.3, 9), TrialOutcome(0.1, 9)]) == [0.75, 0.75, 0.0]
    assert rank_rewards([None, TrialOutcome(0.3, 9)]) == [None, 0.5]
    assert rank_rewards([None, None]) == [None, None]
    assert sum(rank_rewards([TrialOutcome(d, e) for d, e in [(0.1, 1), (0.2, 1), (0.5, 3), (0.7, 9)]])) == pytest.approx(2.0)  # mean 0.5
    with pytest.raises(ValueError, match="reward must be one of"):
        reward_function("zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dice must be finite"):
        TrialOutcome(float("nan"), 1)


def test_auto_reward_is_rank_with_early_stopping_and_dice_without(tmp_path: Path) -> None:
    init_controller(_study({"min_epochs": 1}), tmp_path / "stopping.zip")
    init_controller(_study(), tmp_path / "plain.zip")
    init_controller(_study({"min_epochs": 1}, reward="dice"), tmp_path / "chosen.zip")
    assert [read_state_json(tmp_path / f"{name}.zip").config.reward for name in ("stopping", "plain", "chosen")] == ["rank", "dice", "dice"]


def _proposal(i: int) -> Proposal:
    return Proposal(proposal_id=i, round=0, hyperparameters={"lr": 1e-3, "optimizer": "adam", "intensity_shift_prob": 0.1}, log_prob=0.0)


def test_with_early_stopping_a_round_is_queued_on_its_gpus() -> None:
    proposals = [_proposal(i) for i in range(7)]
    assert [[p.proposal_id for p in pack] for pack in split_into_packs(proposals, gpus=2, pack_size=2, queued=True)] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [len(pack) for pack in split_into_packs(proposals, gpus=8, pack_size=2, queued=True)] == [2, 2, 2, 1]  # no GPU left idle
    assert [len(pack) for pack in split_into_packs(proposals, gpus=1, pack_size=2, queued=True)] == [7]
    assert [len(pack) for pack in split_into_packs(proposals, gpus=3, pack_size=None, queued=True)] == [3, 3, 1]


def _result(proposal: Proposal, dice: float | None, stopped_at: int | None = None, epochs: int = 9) -> TrialResult:
    state = TrialState.FAILED if dice is None else (TrialState.STOPPED if stopped_at else TrialState.COMPLETE)
    return TrialResult(
        trial_id=proposal.trial_id, state=state, stopped_at_epoch=stopped_at, hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3",
        final_val_dice=dice, epochs_run=stopped_at or epochs, tags={"proposal_id": str(proposal.proposal_id)},
    )


def test_a_round_with_stopped_trials_learns_from_ranks_and_picks_a_survivor(tmp_path: Path) -> None:
    study = _study({"min_epochs": 1, "reduction_factor": 3})
    init_controller(study, tmp_path / "state0.zip")
    (pack,) = [PackSpec.model_validate_json(text) for text in propose_round(study, tmp_path / "state0.zip", tmp_path / "proposed.zip")]
    assert [p.proposal_id for p in pack.proposals] == list(range(6))  # one queue, in proposal order
    p = pack.proposals
    TrialResults(
        results=(_result(p[0], 0.62), _result(p[1], 0.70, stopped_at=3), _result(p[2], 0.30, stopped_at=1), _result(p[3], None), _result(p[4], 0.10, stopped_at=1))
    ).write(tmp_path / "pack.json")  # p[5]'s result is missing: its pack crashed before writing it
    stats = update_round(study, tmp_path / "proposed.zip", [tmp_path / "pack.json"], tmp_path / "state1.zip")
    assert (stats.n_proposals, stats.n_failed, stats.mean_reward) == (6, 2, pytest.approx(0.5))
    history = {record.proposal.proposal_id: record for record in read_history(tmp_path / "state1.zip")}
    assert {i: history[i].reward for i in range(6)} == {0: 1.0, 1: pytest.approx(2 / 3), 2: pytest.approx(1 / 3), 3: None, 4: 0.0, 5: None}
    assert {i: (history[i].dice, history[i].stopped_at_epoch) for i in range(6)} == {
        0: (0.62, None), 1: (0.70, 3), 2: (0.30, 1), 3: (None, None), 4: (0.10, 1), 5: (None, None)
    }
    # the stopped trial's 0.70 (at epoch 3) does not beat the survivor's 0.62 after all 9 epochs
    assert final_hyperparameters(study, tmp_path / "state1.zip") == dict(p[0].hyperparameters)
    assert ReinforceController.load(tmp_path / "state1.zip").best() == (p[0], 0.62)


def test_without_a_finished_trial_the_latest_stopped_is_chosen() -> None:
    controller = ReinforceController(seed=0)
    proposals = controller.propose(3)
    controller.update(proposals, [0.0, 1.0, 0.5], dice=[0.8, 0.3, 0.4], stopped_at_epoch=[1, 3, 3])
    assert controller.best() == (proposals[2], 0.4)
