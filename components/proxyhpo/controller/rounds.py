"""One search round as pipeline stages: propose M trials grouped into packs, then update on their Dice.

The controller's whole state travels between rounds as one artifact (see
:mod:`proxyhpo.controller.state`), so round r+1 can start on any pod exactly where round r ended.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from proxyhpo.controller.reinforce import ReinforceController
from proxyhpo.controller.state import Proposal, UpdateStats

__all__ = ["PackSpec", "propose_round", "update_round", "split_into_packs", "trial_id_for", "packs_as_json"]


class PackSpec(BaseModel):
    """The trials one GPU trains at once: the unit a ``ParallelFor`` iteration receives (as JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    round: int
    pack_index: int
    proposals: list[Proposal]


def trial_id_for(proposal: Proposal) -> str:
    """The trial id of a proposal: ``r<round>-t<proposal id>`` (also the MLflow run name)."""
    return f"r{proposal.round}-t{proposal.proposal_id:03d}"


def split_into_packs(proposals: Sequence[Proposal], *, gpus: int, pack_size: int | None) -> list[list[Proposal]]:
    """Group proposals into packs: ``pack_size`` each when fixed, else spread evenly over ``gpus`` packs.

    Proposals with the same optimiser are kept together first, so each pack steps as few optimiser
    groups as possible.
    """
    if not proposals:
        return []
    ordered = sorted(proposals, key=lambda p: (str(p.values.get("optimizer", "")), p.proposal_id))
    size = pack_size or math.ceil(len(ordered) / max(1, gpus))
    return [list(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def propose_round(
    study: Any,
    state_in: str | os.PathLike[str] | None,
    state_out: str | os.PathLike[str],
) -> list[PackSpec]:
    """Sample the next round's proposals and group them into packs.

    Args:
        study: the :class:`proxyhpo.config.StudyConfig`.
        state_in: the controller state after the previous round; ``None`` for the first round.
        state_out: where to write the state holding the new pending proposals.

    Returns:
        The packs, one per ``ParallelFor`` iteration.
    """
    if state_in is None:
        controller = ReinforceController(study.search.space, config=study.search.controller)
    else:
        controller = ReinforceController.load(state_in)
    proposals = controller.propose(study.search.proposals_per_round)
    controller.save(state_out)
    pack_size = study.training.pack_size if isinstance(study.training.pack_size, int) else None
    groups = split_into_packs(proposals, gpus=study.resources.gpus, pack_size=pack_size)
    return [PackSpec(round=controller.round, pack_index=i, proposals=group) for i, group in enumerate(groups)]


def update_round(
    state_in: str | os.PathLike[str],
    result_files: Sequence[str | os.PathLike[str]],
    state_out: str | os.PathLike[str],
) -> UpdateStats:
    """Give the controller the round's validation Dice and take one REINFORCE step.

    A trial that failed, or whose result file is missing (its pack crashed), counts as a failed
    proposal: it gets no gradient and the round goes on.

    Args:
        state_in: the state written by :func:`propose_round`.
        result_files: the packs' result files (``proxyhpo.training.result`` JSON).
        state_out: where to write the updated state.
    """
    from proxyhpo.training.result import read_results

    controller = ReinforceController.load(state_in)
    rewards: dict[str, float | None] = {}
    for file in result_files:
        if not Path(file).is_file():
            continue
        for result in read_results(file):
            dice = result.final_val_dice if result.state.value == "COMPLETE" else None
            rewards[result.trial_id] = dice if dice is not None and math.isfinite(dice) else None
    pending = controller.pending()
    stats = controller.update(pending, [rewards.get(trial_id_for(p)) for p in pending])
    controller.save(state_out)
    return stats


def packs_as_json(packs: Sequence[PackSpec]) -> list[str]:
    """Packs as JSON strings: KFP's local runner turns integers inside dict parameters into floats."""
    return [json.dumps(pack.model_dump(mode="json")) for pack in packs]
