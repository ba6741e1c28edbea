"""A round with failed packs (``search.max_failed_packs``): their trials count as failed, the strategy learns from
the rest, and more failures than allowed fail the round in one line. Real controller, result files as packs write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import HyperParameters, PackSpec, StudyConfig, TrialResult, TrialResults, TrialState
from proxyhpo.controller import read_history
from proxyhpo.controller.rounds import init_controller, propose_round, update_round
from proxyhpo.errors import TrialError


def _round(tmp_path: Path, max_failed_packs: int | None) -> tuple[StudyConfig, list[PackSpec]]:
    study = StudyConfig.model_validate({
        "name": "faults", "data": {"dataset": "d"}, "training": {"pack_size": 2},
        "search": {"strategy": "reinforce", "rounds": 2, "proposals_per_round": 6, "max_failed_packs": max_failed_packs},
    })
    init_controller(study, tmp_path / "state0.zip")
    packs = [PackSpec.model_validate_json(text) for text in propose_round(study, tmp_path / "state0.zip", tmp_path / "proposed.zip")]
    assert len(packs) == 3
    return study, packs


def _write(tmp_path: Path, pack: PackSpec, dice: float | None) -> Path:
    """A pack's results file: trained (``dice``), or crashed (every trial FAILED 'pack crashed: ...', as study_trials writes it)."""
    results = tuple(
        TrialResult(
            trial_id=proposal.trial_id, state=TrialState.COMPLETE if dice is not None else TrialState.FAILED,
            hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3", final_val_dice=dice,
            fail_reason=None if dice is not None else "pack crashed: RuntimeError: CUDA error: an illegal memory access",
            tags={"proposal_id": str(proposal.proposal_id)},
        )
        for proposal in pack.proposals
    )
    path = tmp_path / f"pack{pack.pack_index}.json"
    TrialResults(results=results).write(path)
    return path


def test_a_failed_pack_within_the_limit_counts_its_trials_as_failed(tmp_path: Path) -> None:
    study, packs = _round(tmp_path, max_failed_packs=1)
    files = [_write(tmp_path, packs[0], 0.6), _write(tmp_path, packs[1], None), _write(tmp_path, packs[2], 0.8)]
    stats = update_round(study, tmp_path / "proposed.zip", files, tmp_path / "state1.zip", expected_packs=3)
    assert stats.n_failed == 2 and stats.mean_reward == pytest.approx(0.7)
    rewards = {record.proposal.trial_id: record.reward for record in read_history(tmp_path / "state1.zip")}
    assert [rewards[p.trial_id] for p in packs[1].proposals] == [None, None]  # learnt from the other packs only
    assert {rewards[p.trial_id] for p in packs[2].proposals} == {0.8}


def test_more_failed_packs_than_allowed_fail_the_round(tmp_path: Path) -> None:
    study, packs = _round(tmp_path, max_failed_packs=1)
    files = [_write(tmp_path, packs[0], None), _write(tmp_path, packs[1], 0.5)]  # pack 2 left nothing (its pod died)
    with pytest.raises(TrialError) as caught:
        update_round(study, tmp_path / "proposed.zip", files, tmp_path / "state1.zip", expected_packs=3)
    assert str(caught.value) == "2 packs of this round failed, more than search.max_failed_packs = 1; see their task logs, or raise it"
    assert not (tmp_path / "state1.zip").exists()


def test_without_a_limit_a_round_goes_on_whatever_failed(tmp_path: Path) -> None:
    study, packs = _round(tmp_path, max_failed_packs=None)
    files = [_write(tmp_path, packs[0], None), _write(tmp_path, packs[1], None)]
    stats = update_round(study, tmp_path / "proposed.zip", files, tmp_path / "state1.zip", expected_packs=3)
    assert stats.n_failed == 6
