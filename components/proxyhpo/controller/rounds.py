"""One search round as pipeline stages: propose M trials grouped into packs, then update on their outcomes.

The controller's whole state travels between rounds as one artifact (see
:mod:`proxyhpo.controller.state`), so round r+1 can start on any pod exactly where round r ended. With
early stopping (``search.early_stopping``) a round's proposals are queued on its GPUs rather than cut into
packs of ``pack_size``: each GPU's pack trains ``pack_size`` of them at a time and a slot freed by a
stopped trial takes the next (:func:`proxyhpo.training.run_trials`); the rewards are then ranks
(:mod:`proxyhpo.controller.rewards`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyhpo.config import PackSpec, Proposal, StudyConfig, TrialResults, TrialState, UpdateStats, resolve_pack_size
from proxyhpo.controller.reinforce import ReinforceController
from proxyhpo.controller.rewards import TrialOutcome, reward_function
from proxyhpo.controller.state import read_state_json
from proxyhpo.errors import TrialError

__all__ = ["init_controller", "propose_round", "update_round", "split_into_packs", "final_hyperparameters"]


def split_into_packs(proposals: Sequence[Proposal], *, gpus: int, pack_size: int | None, queued: bool = False) -> list[list[Proposal]]:
    """Group proposals into packs: ``pack_size`` each when fixed, else spread evenly over ``gpus`` packs.

    With ``queued`` (early stopping), a pack is a queue for one GPU whose ``pack_size`` slots train at
    once: the proposals are spread evenly over ``gpus`` packs, fewer when ``pack_size`` slots each would
    leave a GPU idle (at most ``ceil(M / pack_size)`` packs).

    Proposals with the same optimiser are kept together first, so each pack steps as few optimiser
    groups as possible (without a queue; a queue is trained in proposal order, first proposed first).
    """
    if not proposals:
        return []
    if queued:
        ordered = sorted(proposals, key=lambda p: p.proposal_id)
        packs = min(max(1, gpus), math.ceil(len(ordered) / pack_size) if pack_size else max(1, gpus))
        size = math.ceil(len(ordered) / packs)
    else:
        ordered = sorted(proposals, key=lambda p: (str(p.hyperparameters.get("optimizer", "")), p.proposal_id))
        size = pack_size or math.ceil(len(ordered) / max(1, gpus))
    return [list(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def init_controller(study: StudyConfig, state_out: str | os.PathLike[str]) -> Path:
    """Write the study's initial controller state (untrained policy, round 0) to ``state_out``.

    The controller's ``reward: auto`` is resolved here, from whether the study stops trials early, so
    every later round reads the reward it learns from in the state itself.
    """
    config = study.search.controller.resolved(early_stopping=study.search.early_stopping is not None)
    return ReinforceController(study.search.space, config=config).save(state_out)


def propose_round(study: StudyConfig, state_in: str | os.PathLike[str], state_out: str | os.PathLike[str]) -> list[str]:
    """Sample the next round's proposals, group them into packs and write the state holding them.

    Args:
        study: the study config.
        state_in: the controller state after the previous round (or the initial one).
        state_out: where to write the state holding the new pending proposals.

    Returns:
        The packs as JSON strings, one per ``ParallelFor`` iteration (KFP's local runner turns
        integers inside dict parameters into floats, so packs travel as strings).
    """
    controller = ReinforceController.load(state_in)
    proposals = controller.propose(study.search.proposals_per_round)
    controller.save(state_out)
    pack_size = resolve_pack_size(study.training.pack_size, trials=len(proposals), devices=study.resources.gpus)
    groups = split_into_packs(proposals, gpus=study.resources.gpus, pack_size=pack_size, queued=study.search.early_stopping is not None)
    return [PackSpec(round=controller.round, pack_index=i, proposals=tuple(group)).model_dump_json() for i, group in enumerate(groups)]


def update_round(
    state_in: str | os.PathLike[str],
    result_files: Sequence[str | os.PathLike[str]],
    state_out: str | os.PathLike[str],
) -> UpdateStats:
    """Give the controller the round's rewards and take one REINFORCE step.

    The reward is the one the controller's state names (:attr:`~proxyhpo.config.ControllerConfig.reward`):
    each trial's validation Dice at its last validation, or its rank in the round with trials stopped
    early below those that went further (:func:`~proxyhpo.controller.rewards.rank_rewards`). Each trial's
    Dice and stop epoch are kept in the history, where the final model's hyper-parameters are chosen.
    A trial that failed, or whose result file is missing (its pack crashed), counts as a failed
    proposal: it gets no gradient and the round goes on.

    Args:
        state_in: the state written by :func:`propose_round`.
        result_files: the packs' :class:`~proxyhpo.config.TrialResults` files.
        state_out: where to write the updated state.
    """
    controller = ReinforceController.load(state_in)
    reward = reward_function("dice" if controller.config.reward == "auto" else controller.config.reward)
    outcomes: dict[int, TrialOutcome | None] = {}  # by proposal id: a trial's id may carry its search arm
    stops: dict[int, int | None] = {}
    for file in result_files:
        if not Path(file).is_file():
            continue
        for result in TrialResults.read(file).results:
            dice = result.final_val_dice if result.state in (TrialState.COMPLETE, TrialState.STOPPED) else None
            ok = dice is not None and math.isfinite(dice)
            reached = result.stopped_at_epoch or result.epochs_run
            outcomes[int(result.tags["proposal_id"])] = TrialOutcome(dice, reached) if ok else None  # type: ignore[arg-type]
            stops[int(result.tags["proposal_id"])] = result.stopped_at_epoch
    pending = controller.pending()
    round_outcomes = [outcomes.get(p.proposal_id) for p in pending]
    stats = controller.update(
        pending,
        reward(round_outcomes),
        dice=[None if outcome is None else outcome.dice for outcome in round_outcomes],
        stopped_at_epoch=[stops.get(p.proposal_id) for p in pending],
    )
    controller.save(state_out)
    return stats


def final_hyperparameters(state: str | os.PathLike[str]) -> dict[str, Any]:
    """The hyper-parameters the final model trains with: the best-rewarded proposal's.

    Raises:
        TrialError: when every search trial failed, so there is nothing to train with.
    """
    best = read_state_json(state).best()
    if best is None:
        raise TrialError(
            "every search trial failed: there are no hyper-parameters to train the final model with; "
            "see the trial runs' fail reasons in MLflow"
        )
    return dict(best.proposal.hyperparameters)
