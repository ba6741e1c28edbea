"""One search round as pipeline stages: propose M trials grouped into packs, then tell the strategy their outcomes.

The HPO pipeline drives any registered search strategy (:data:`proxyhpo.registry.SEARCH_STRATEGIES`,
chosen by ``search.strategy``) through one protocol, :class:`~proxyhpo.search.Strategy`: ``ask`` and
``tell``, with ``save`` and ``restore`` between tasks. The strategy's whole state travels between rounds as
one artifact whose layout is the strategy's own (the REINFORCE controller's zip, random search's JSON, an
Optuna search's journal file: :mod:`proxyhpo.search._optuna`), so round r+1 can start on any pod exactly where
round r ended, and a retried or resumed task, given the same file, repeats what it did. With early stopping (``search.early_stopping``)
a round's proposals are queued on its GPUs rather than cut into packs of ``pack_size``: each GPU's pack
trains ``pack_size`` of them at a time and a slot freed by a stopped trial takes the next
(:func:`proxyhpo.training.run_trials`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyhpo.config import PackSpec, Proposal, StudyConfig, TrialResults, UpdateStats, resolve_pack_size
from proxyhpo.errors import TrialError
from proxyhpo.search import strategy_class

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
    """Write the study's initial search state (round 0, nothing proposed) to ``state_out``.

    The strategy is seeded with ``search.controller.seed``. The REINFORCE controller's ``reward: auto`` is
    resolved here, from whether the study stops trials early, so every later round reads the reward it
    learns from in the state itself.
    """
    return strategy_class(study)(study, study.search.controller.seed).save(state_out)


def propose_round(study: StudyConfig, state_in: str | os.PathLike[str], state_out: str | os.PathLike[str]) -> list[str]:
    """Ask the strategy for the next round's proposals, group them into packs and write the state holding them.

    Args:
        study: the study config.
        state_in: the search state after the previous round (or the initial one).
        state_out: where to write the state holding the new pending proposals.

    Returns:
        The packs as JSON strings, one per ``ParallelFor`` iteration (KFP's local runner turns
        integers inside dict parameters into floats, so packs travel as strings).
    """
    strategy = strategy_class(study).restore(study, state_in)
    proposals = strategy.ask(study.search.proposals_per_round)
    strategy.save(state_out)
    pack_size = resolve_pack_size(study.training.pack_size, trials=len(proposals), devices=study.resources.gpus)
    groups = split_into_packs(proposals, gpus=study.resources.gpus, pack_size=pack_size, queued=strategy.stops_early)
    return [PackSpec(round=proposals[0].round, pack_index=i, proposals=tuple(group)).model_dump_json() for i, group in enumerate(groups)]


def update_round(
    study: StudyConfig,
    state_in: str | os.PathLike[str],
    result_files: Sequence[str | os.PathLike[str]],
    state_out: str | os.PathLike[str],
    *,
    expected_packs: int | None = None,
) -> UpdateStats:
    """Tell the strategy the round's results and write the state it learned.

    A trial that failed, or whose result file is missing (its pack crashed), counts as a failed
    proposal: the strategy learns nothing from it and the round goes on. Each trial's Dice and stop epoch
    are kept in the strategy's history, where the final model's hyper-parameters are chosen.

    Args:
        study: the study config.
        state_in: the state written by :func:`propose_round`.
        result_files: the packs' :class:`~proxyhpo.config.TrialResults` files.
        state_out: where to write the updated state.
        expected_packs: how many packs the round had (:func:`propose_round`'s list); a pack with no file failed.

    Raises:
        TrialError: when more packs failed than ``search.max_failed_packs``.

    Returns:
        What the strategy learned (the REINFORCE controller's update statistics), or, for a strategy
        without a model, the round's counts and mean Dice.
    """
    strategy = strategy_class(study).restore(study, state_in)
    results = [result for file in result_files if Path(file).is_file() for result in TrialResults.read(file).results]
    _check_failed_packs(study, result_files, expected_packs)  # their trials count as failed below; too many fail the round
    stats = strategy.tell(results)
    strategy.save(state_out)
    if isinstance(stats, UpdateStats):
        return stats
    dice = [result.final_val_dice for result in results if result.final_val_dice is not None and math.isfinite(result.final_val_dice)]
    return UpdateStats(
        round=min((result.round for result in results if result.round is not None), default=0),
        n_proposals=study.search.proposals_per_round,
        n_failed=max(0, study.search.proposals_per_round - len(dice)),
        stepped=False,
        mean_reward=sum(dice) / len(dice) if dice else None,
    )


def _check_failed_packs(study: StudyConfig, result_files: Sequence[str | os.PathLike[str]], expected_packs: int | None) -> int:
    """The round's failed packs (every trial crashed, or no results: ``result_files`` short of ``expected_packs``); a
    :class:`TrialError` when there are more than ``search.max_failed_packs``."""
    failed = max(0, (expected_packs or len(result_files)) - len(result_files))
    for file in result_files:
        trials = TrialResults.read(file).results if Path(file).is_file() else ()
        if not trials or all((result.fail_reason or "").startswith("pack crashed") for result in trials):
            failed += 1
    allowed = study.search.max_failed_packs
    if allowed is not None and failed > allowed:
        raise TrialError(f"{failed} packs of this round failed, more than search.max_failed_packs = {allowed}; see their task logs, or raise it")
    return failed


def final_hyperparameters(study: StudyConfig, state: str | os.PathLike[str]) -> dict[str, Any]:
    """The hyper-parameters the final model trains with: the best proposal of the search's final state.

    Raises:
        TrialError: when every search trial failed, so there is nothing to train with.
    """
    best = strategy_class(study).restore(study, state).best()
    if best is None:
        raise TrialError(
            "every search trial failed: there are no hyper-parameters to train the final model with; "
            "see the trial runs' fail reasons in MLflow"
        )
    return dict(best.proposal.hyperparameters)
