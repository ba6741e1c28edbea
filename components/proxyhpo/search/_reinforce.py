"""The REINFORCE controller as a search strategy: the paper's (``reinforce-paper``), ours (``reinforce``), and ours with
successive halving in its packs (``reinforce+sh``).

Ours differs from the paper's in settings only (:data:`OURS`, each labelled with its reason), applied where the
study's ``search.controller`` keeps the paper's default; they were chosen on the tabular benchmark's tuning table
(``bench/results/table-prostate.npz``, ``proxyhpo bench search --table``) and judged on the other (``table-spleen.npz``).

Its state is the controller's own file (:mod:`proxyhpo.controller.state`): the policy's weights, the
optimiser, the generator, the baseline, the pending proposals and the history, in one zip; the settings travel in
it, so a restored search continues with the variant that saved it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from proxyhpo.config import Proposal, StudyConfig, TrialResult, UpdateStats
from proxyhpo.config.controller import HistoryRecord
from proxyhpo.search._base import Strategy, outcome_of

if TYPE_CHECKING:
    from proxyhpo.controller.reinforce import ReinforceController

__all__ = ["ReinforceSearch", "PaperReinforceSearch", "ReinforceHalvingSearch", "OURS"]

#: Ours: the controller settings the ``reinforce`` strategies use where the study leaves the paper's default.
#:
#: - ``advantage: normalized`` (ours): Adam's step barely depends on the reward's scale, so with the paper's raw
#:   advantage rewards of 0 to 0.06 moved the policy as much as real differences; divided by the rewards' spread,
#:   one spread above the baseline counts the same at any scale.
#: - ``updates_per_round`` and ``lr`` (ours): a study has 2 to 8 rounds, not the hundreds REINFORCE is usually
#:   given; one Adam step of 0.02 per round left the policy where it started (it still proposed lr < 1e-3 half the
#:   time after five rounds). Two steps of 0.05 a round: the variant of lowest *mean* regret over budgets of 10 to
#:   60 trials on the prostate table (60 searches each; :file:`bench/results/reinforce-tuning.md`). The first choice,
#:   four steps of 0.1 (lowest median on that table), collapsed on the spleen table: the median hid the searches
#:   that had settled on a poor setting, the mean shows them.
#: - ``entropy_weight`` (ours): kept small: with so few rounds standing still is the risk; a larger bonus (0.05,
#:   0.1) did not lower the mean regret on the prostate table.
OURS: dict[str, object] = {"advantage": "normalized", "updates_per_round": 2, "lr": 0.05, "entropy_weight": 0.01}


class ReinforceSearch(Strategy):
    """The paper's RNN controller trained with REINFORCE, with our settings (normalised advantage, several steps a round).

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
    #: settings that replace the paper's defaults (:data:`OURS`; none for ``reinforce-paper``)
    settings: ClassVar[dict[str, object]] = OURS

    def __init__(self, study: StudyConfig, seed: int, *, controller: ReinforceController | None = None) -> None:
        super().__init__(study, seed)
        if controller is None:
            from proxyhpo.controller.reinforce import ReinforceController

            given = study.search.controller
            # a setting the study changed from the paper's default stays the study's
            ours = {key: value for key, value in self.settings.items() if getattr(given, key) == type(given).model_fields[key].default}
            config = given.model_copy(update=ours | {"seed": seed}).resolved(early_stopping=study.search.early_stopping is not None)
            config = type(config).model_validate(config.model_dump())
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


class PaperReinforceSearch(ReinforceSearch):
    """The paper's RNN controller trained with REINFORCE, with the paper's settings (one Adam step per round on the raw advantage)."""

    name = "reinforce-paper"
    settings: ClassVar[dict[str, object]] = {}


class ReinforceHalvingSearch(ReinforceSearch):
    """REINFORCE with successive halving inside its packs.

    A round's proposals queue for the pack's slots; at each rung of ``search.early_stopping`` the worse
    trials stop and their slots take the next; the controller learns from ranks, survivors above the
    stopped (``controller.reward: auto``).
    """

    name = "reinforce+sh"
    requires_early_stopping = True
