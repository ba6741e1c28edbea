"""The paper's REINFORCE controller as a search strategy, with and without successive halving in its packs.

Its state is the controller's own file (:mod:`proxyhpo.controller.state`): the policy's weights, the
optimiser, the generator, the baseline, the pending proposals and the history, in one zip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from proxyhpo.config import Proposal, StudyConfig, TrialResult, UpdateStats
from proxyhpo.config.controller import HistoryRecord
from proxyhpo.search._base import Strategy, outcome_of

if TYPE_CHECKING:
    from proxyhpo.controller.reinforce import ReinforceController

__all__ = ["ReinforceSearch"]


class ReinforceSearch(Strategy):
    """The paper's RNN controller trained with REINFORCE.

    A round samples its proposals from the policy; their results become rewards (each trial's validation
    Dice, or its rank in the round when trials stop early: ``controller.reward``,
    :mod:`proxyhpo.controller.rewards`) and the controller takes one REINFORCE step. A proposal whose
    trial failed or returned no result gets no gradient, and the round goes on.

    Args:
        study: the study; its ``search.controller`` holds the controller's settings (its ``seed`` is
            replaced by ``seed``) and its ``search.early_stopping`` resolves ``reward: auto``.
        seed: seeds the policy's weights and its sampling.
        controller: a controller restored from its state (its own settings and seed then hold).

    Example:
        >>> search = ReinforceSearch(study, seed=0)  # doctest: +SKIP
        >>> search.tell(results_of(search.ask(4)))  # doctest: +SKIP
        >>> search.save("controller.zip")  # doctest: +SKIP
    """

    name = "reinforce"

    def __init__(self, study: StudyConfig, seed: int, *, controller: ReinforceController | None = None) -> None:
        super().__init__(study, seed)
        if controller is None:
            from proxyhpo.controller.reinforce import ReinforceController

            config = study.search.controller.model_copy(update={"seed": seed}).resolved(early_stopping=study.search.early_stopping is not None)
            controller = ReinforceController(study.search.space, config=config)
        self.controller = controller
        #: the last update's statistics (None before the first)
        self.last_update: UpdateStats | None = None

    @property
    def round(self) -> int:
        """The round the next proposals belong to."""
        return self.controller.round

    def ask(self, n: int) -> list[Proposal]:
        self._check_n(n)
        return self.controller.propose(n)

    def tell(self, results: Sequence[TrialResult]) -> UpdateStats:
        from proxyhpo.controller.rewards import TrialOutcome, reward_function

        reward = reward_function("dice" if self.controller.config.reward == "auto" else self.controller.config.reward)
        outcomes: dict[int, TrialOutcome | None] = {}  # by proposal id: a trial's id may carry its search arm
        stops: dict[int, int | None] = {}
        for result in results:
            proposal_id = int(result.tags["proposal_id"])
            dice, stops[proposal_id] = outcome_of(result)
            outcomes[proposal_id] = None if dice is None else TrialOutcome(dice, result.stopped_at_epoch or result.epochs_run)
        pending = self.controller.pending()
        round_outcomes = [outcomes.get(p.proposal_id) for p in pending]
        self.last_update = self.controller.update(
            pending,
            reward(round_outcomes),
            dice=[None if outcome is None else outcome.dice for outcome in round_outcomes],
            stopped_at_epoch=[stops.get(p.proposal_id) for p in pending],
        )
        return self.last_update

    def history(self) -> list[HistoryRecord]:
        return self.controller.history()

    def round_metrics(self) -> dict[str, list[tuple[int, float]]]:
        """The policy's entropy per round and, when the rewards are ranks (not the Dice itself), their mean."""
        from proxyhpo.tracking import names

        updates = self.controller.update_stats()
        metrics = {names.CONTROLLER_ENTROPY: [(u.round, float(u.entropy)) for u in updates if u.entropy is not None]}
        if self.controller.config.reward == "rank":
            metrics[names.ROUND_MEAN_REWARD] = [(u.round, float(u.mean_reward)) for u in updates if u.mean_reward is not None]
        return metrics

    def save(self, path: str | os.PathLike[str]) -> Path:
        return self.controller.save(path)

    @classmethod
    def restore(cls, study: StudyConfig, path: str | os.PathLike[str]) -> ReinforceSearch:
        from proxyhpo.controller.reinforce import ReinforceController

        controller = ReinforceController.load(path)
        return cls(study, controller.config.seed, controller=controller)


class ReinforceHalvingSearch(ReinforceSearch):
    """REINFORCE with successive halving inside its packs.

    A round's proposals queue for the pack's slots; at each rung of ``search.early_stopping`` the worse
    trials stop and their slots take the next; the controller learns from ranks, survivors above the
    stopped (``controller.reward: auto``).
    """

    name = "reinforce+sh"
    requires_early_stopping = True
