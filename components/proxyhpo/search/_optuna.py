"""Optuna's TPE sampler with its Hyperband pruner, through Optuna's ask-and-tell interface.

Each trial reports its validation Dice at every validation to the pruner (``trial.report``), and a trial
the pruner prunes (``trial.should_prune``) leaves its pack at once, its slot taking the next queued trial,
exactly as successive halving's stopped trials do.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from typing import Any

from proxyhpo.config import Categorical, LogUniform, Proposal, StudyConfig, TrialResult, TrialState
from proxyhpo.config.controller import HistoryRecord
from proxyhpo.search._base import Strategy, outcome_of, study_with

__all__ = ["OptunaPruning", "OptunaSearch"]


class OptunaPruning:
    """Optuna's pruner as the packs' early-stopping rule: reports every validation, stops what it prunes.

    An :class:`~proxyhpo.training.early_stopping.EarlyStopper`: the pack validates every trial at
    :meth:`decision_epochs` (the Hyperband rungs ``min_epochs * reduction_factor**k``, the same epochs
    successive halving decides at) besides its ``val_every`` epochs; :meth:`stop` reports each validation
    to its Optuna trial (``trial.report(dice, epoch)``) and stops the trials Optuna would prune
    (``trial.should_prune()``).

    Args:
        trials: the round's Optuna trials by trial id.
        rungs: the decision epochs.
    """

    def __init__(self, trials: dict[str, Any], rungs: Collection[int]) -> None:
        self.trials = trials
        self.rungs = tuple(sorted(rungs))

    def decision_epochs(self) -> Collection[int]:
        """The rungs: every trial is validated there."""
        return self.rungs

    def stop(self, reports: Sequence[Any]) -> set[str]:
        """Report each validation to its trial; the ids of the trials the pruner prunes."""
        stopped = set()
        for report in reports:
            trial = self.trials.get(report.trial_id)
            if trial is None:
                continue
            trial.report(float(report.val_dice), int(report.epoch))
            if trial.should_prune():
                stopped.add(report.trial_id)
        return stopped


class OptunaSearch(Strategy):
    """Optuna's TPE sampler with its Hyperband pruner.

    A round asks ``n`` trials at once (TPE's ``constant_liar`` keeps the trials of one round apart) and
    trains them as one queue with :class:`OptunaPruning` as the stopper; when they end, each is told: its
    final validation Dice when it trained all epochs, ``PRUNED`` when the pruner stopped it, ``FAIL`` when
    it failed. The Hyperband pruner's minimum resource and reduction factor are ``search.early_stopping``'s,
    its maximum resource ``training.epochs``.

    Its study lives in memory: it runs in ``proxyhpo bench search``, not yet between pipeline tasks
    (:attr:`persistent` is False).

    Args:
        startup_trials: TPE's random trials before it models the results (default: one round,
            ``search.proposals_per_round``).
    """

    name = "tpe+hyperband"
    requires_early_stopping = True
    requires_packages = ("optuna",)
    persistent = False

    def __init__(self, study: StudyConfig, seed: int, *, startup_trials: int | None = None) -> None:
        super().__init__(study, seed)
        import optuna

        early_stopping = study.search.early_stopping
        assert early_stopping is not None  # requires_early_stopping
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # constant_liar (experimental in Optuna 4.9) keeps the trials asked for one round apart
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message=".*constant_liar.*")
        self._optuna = optuna
        epochs = study.training.epochs
        self.rungs = early_stopping.rungs(epochs)
        # the pruner stops the trials: the plan's own successive halving stays off
        self.study = study_with(study, "search", early_stopping=None)
        startup = study.search.proposals_per_round if startup_trials is None else startup_trials
        self.optuna_study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True),
            pruner=optuna.pruners.HyperbandPruner(min_resource=early_stopping.min_epochs, max_resource=epochs, reduction_factor=early_stopping.reduction_factor),
        )
        self.distributions = {name: self._distribution(dist) for name, dist in study.search.space.items()}
        self.batches = 0
        self._next_id = 0
        self._asked: dict[str, tuple[Proposal, Any]] = {}
        self._history: list[HistoryRecord] = []

    def _distribution(self, dist: Any) -> Any:
        distributions = self._optuna.distributions
        if isinstance(dist, Categorical):
            return distributions.CategoricalDistribution(list(dist.choices))
        return distributions.FloatDistribution(dist.low, dist.high, log=isinstance(dist, LogUniform))

    def ask(self, n: int) -> list[Proposal]:
        self._check_n(n)
        proposals = []
        for _ in range(n):
            trial = self.optuna_study.ask(self.distributions)
            proposal = Proposal(proposal_id=self._next_id, round=self.batches, hyperparameters=dict(trial.params), log_prob=0.0)
            self._next_id += 1
            self._asked[proposal.trial_id] = (proposal, trial)
            proposals.append(proposal)
        return proposals

    def stopper(self) -> OptunaPruning:
        return OptunaPruning({trial_id: trial for trial_id, (_, trial) in self._asked.items()}, self.rungs)

    @property
    def stops_early(self) -> bool:
        return True  # the pruner stops trials: they queue for the pack's slots like successive halving's

    def tell(self, results: Sequence[TrialResult]) -> None:
        state = self._optuna.trial.TrialState
        by_id = {result.trial_id: result for result in results}
        for trial_id, (proposal, trial) in sorted(self._asked.items(), key=lambda item: item[1][0].proposal_id):
            result = by_id.get(trial_id)
            dice, stopped = outcome_of(result) if result is not None else (None, None)
            if result is not None and result.state == TrialState.COMPLETE and dice is not None:
                self.optuna_study.tell(trial, dice)
            elif result is not None and result.state == TrialState.STOPPED:
                self.optuna_study.tell(trial, state=state.PRUNED)
            else:
                self.optuna_study.tell(trial, state=state.FAIL)
            self._history.append(HistoryRecord(proposal=proposal, reward=dice, failed=dice is None, dice=dice, stopped_at_epoch=stopped))
        self._asked.clear()
        self.batches += 1

    def history(self) -> list[HistoryRecord]:
        return list(self._history)
