"""Search strategies behind one small interface: ``ask`` for proposals, ``tell`` their results.

Every strategy proposes hyper-parameters from the study's search space as
:class:`~proxyhpo.config.Proposal` records (so they train through the pipeline's own plan builder, packs
and MLflow runs), learns from :class:`~proxyhpo.config.TrialResult` records, and names the study its
trials train with (:attr:`Strategy.study`) and the rule, if any, that stops its trials early while they
train (:meth:`Strategy.stopper`):

- ``random``: independent uniform draws (log-uniform for a log scale), from its own seeded generator.
- ``reinforce``: the paper's REINFORCE controller, round by round through the pipeline's own round steps
  (:func:`~proxyhpo.controller.rounds.init_controller`, :func:`~proxyhpo.controller.rounds.propose_round`,
  :func:`~proxyhpo.controller.rounds.update_round`), every trial trained all its epochs.
- ``reinforce+sh``: the same controller with successive halving inside its packs
  (``search.early_stopping``): a round's proposals queue for the pack's slots, the worse stop at rungs, and
  the controller learns from ranks (:mod:`proxyhpo.controller.rewards`).
- ``tpe+hyperband``: Optuna's TPE sampler with its Hyperband pruner, through Optuna's ask-and-tell
  interface; each trial reports its validation Dice at every validation to the pruner
  (``trial.report``), and a trial the pruner prunes (``trial.should_prune``) leaves its pack at once, its
  slot taking the next queued trial, exactly as successive halving's stopped trials do.

Example:
    >>> strategy = make_strategy("random", study, seed=0, workdir="work")  # doctest: +SKIP
    >>> proposals = strategy.ask(4)  # doctest: +SKIP
    >>> strategy.tell(results)  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from proxyhpo.config import Categorical, LogUniform, PackSpec, Proposal, StudyConfig, TrialResult, TrialResults, TrialState
from proxyhpo.config.early_stopping import EarlyStoppingConfig

__all__ = ["study_with", "Strategy", "RandomSearch", "ReinforceSearch", "ReinforceHalvingSearch", "OptunaSearch", "OptunaPruning", "make_strategy"]


def study_with(study: StudyConfig, section: str, **values: Any) -> StudyConfig:
    """``study`` with keys of one section (``search``, ``training``) replaced, validated again.

    Example:
        >>> study_with(study, "training", epochs=24).training.epochs  # doctest: +SKIP
        24
    """
    document = study.model_dump()
    document[section].update(values)
    return StudyConfig.model_validate(document)


class Strategy(abc.ABC):
    """A search strategy: proposes hyper-parameters, learns from the results of their trials.

    Args:
        study: the study whose search space is searched; the strategy's own trials train with
            :attr:`study` (the same study, with or without early stopping).
        seed: seeds everything random in the strategy.

    Example:
        >>> proposals = strategy.ask(4)  # doctest: +SKIP
        >>> strategy.tell([result_of(p) for p in proposals])  # doctest: +SKIP
    """

    #: the strategy's name in configs, MLflow tags and results
    name: ClassVar[str]

    def __init__(self, study: StudyConfig, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        # a strategy that does not stop trials early trains them all their epochs, whatever the study says
        self.study = study_with(study, "search", early_stopping=None)
        self.seed = seed
        self.batches = 0
        self._next_id = 0

    @abc.abstractmethod
    def ask(self, n: int) -> list[Proposal]:
        """``n`` new proposals, trained together as the next batch (ids continue the strategy's count)."""

    @abc.abstractmethod
    def tell(self, results: Sequence[TrialResult]) -> None:
        """The results of the last batch's trials (every one of them, in any order)."""

    def stopper(self) -> Any | None:
        """The rule that stops this batch's trials early while they train, passed to
        :func:`~proxyhpo.training.run_trials` (an :class:`~proxyhpo.training.early_stopping.EarlyStopper`);
        None: the plan's own (``search.early_stopping`` of :attr:`study`), or none."""
        return None

    @property
    def stops_early(self) -> bool:
        """Whether this strategy's trials may stop before their last epoch: a batch then queues for a pack's slots."""
        return self.study.search.early_stopping is not None

    def _proposal(self, values: dict[str, Any]) -> Proposal:
        """A proposal of the current batch; ``log_prob`` is 0 for strategies that are not a policy."""
        proposal = Proposal(proposal_id=self._next_id, round=self.batches, hyperparameters=values, log_prob=0.0)
        self._next_id += 1
        return proposal

    @staticmethod
    def _check_n(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")


class RandomSearch(Strategy):
    """Independent draws from the search space: each categorical choice equally likely, each range
    uniform on its scale (``from_unit`` of a uniform variate: log-uniform for :class:`LogUniform`)."""

    name = "random"

    def __init__(self, study: StudyConfig, seed: int) -> None:
        super().__init__(study, seed)
        self._rng = np.random.default_rng(seed)

    def ask(self, n: int) -> list[Proposal]:
        self._check_n(n)
        proposals = []
        for _ in range(n):
            values: dict[str, Any] = {}
            for name, dist in self.study.search.space.items():
                if isinstance(dist, Categorical):
                    values[name] = dist.choices[int(self._rng.integers(dist.size))]
                else:
                    values[name] = dist.from_unit(float(self._rng.random()))
            proposals.append(self._proposal(values))
        return proposals

    def tell(self, results: Sequence[TrialResult]) -> None:
        self.batches += 1  # random search learns nothing


class ReinforceSearch(Strategy):
    """The study's REINFORCE controller (seeded with ``seed``), round by round through the pipeline's round steps.

    A batch is one round: :func:`~proxyhpo.controller.rounds.propose_round` samples it and
    :func:`~proxyhpo.controller.rounds.update_round` learns from its results file, both on the
    controller's state file in ``workdir``, exactly as the HPO pipeline's tasks do.

    Args:
        workdir: where the controller's state and the rounds' results files live.
        early_stopping: successive halving inside the packs (see :class:`ReinforceHalvingSearch`); the
            controller's ``reward: auto`` then learns from ranks.
    """

    name = "reinforce"

    def __init__(self, study: StudyConfig, seed: int, *, workdir: str | os.PathLike[str], early_stopping: EarlyStoppingConfig | None = None) -> None:
        super().__init__(study, seed)
        from proxyhpo.controller.rounds import init_controller

        controller = self.study.search.controller.model_copy(update={"seed": seed})
        self.study = study_with(self.study, "search", controller=controller.model_dump(), early_stopping=early_stopping.model_dump() if early_stopping else None)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = self.workdir / "controller.zip"
        init_controller(self.study, self.state)

    def ask(self, n: int) -> list[Proposal]:
        from proxyhpo.controller.rounds import propose_round

        self._check_n(n)
        packs = propose_round(study_with(self.study, "search", proposals_per_round=n), self.state, self.state)
        proposals = [proposal for pack in packs for proposal in PackSpec.model_validate_json(pack).proposals]
        return sorted(proposals, key=lambda p: p.proposal_id)

    def tell(self, results: Sequence[TrialResult]) -> None:
        from proxyhpo.controller.rounds import update_round

        file = self.workdir / f"round-{self.batches:03d}.results.json"
        TrialResults(results=tuple(results)).write(file)
        update_round(self.state, [file], self.state)
        self.batches += 1


class ReinforceHalvingSearch(ReinforceSearch):
    """``reinforce+sh``: the REINFORCE controller with successive halving inside its packs (``early_stopping``).

    A round's proposals queue for the pack's slots; at each rung the worse trials stop and their slots take
    the next; the controller learns from ranks, survivors above the stopped (``controller.reward: auto``).
    """

    name = "reinforce+sh"

    def __init__(self, study: StudyConfig, seed: int, *, workdir: str | os.PathLike[str], early_stopping: EarlyStoppingConfig) -> None:
        super().__init__(study, seed, workdir=workdir, early_stopping=early_stopping)


class OptunaPruning:
    """Optuna's pruner as the packs' early-stopping rule: reports every validation, stops what it prunes.

    An :class:`~proxyhpo.training.early_stopping.EarlyStopper`: the pack validates every trial at
    :meth:`decision_epochs` (the Hyperband rungs ``min_epochs * reduction_factor**k``, the same epochs
    successive halving decides at) besides its ``val_every`` epochs; :meth:`stop` reports each validation
    to its Optuna trial (``trial.report(dice, epoch)``) and stops the trials Optuna would prune
    (``trial.should_prune()``).

    Args:
        trials: the batch's Optuna trials by trial id.
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
    """Optuna's TPE sampler with its Hyperband pruner, through ask-and-tell.

    A batch asks ``n`` trials at once (TPE's ``constant_liar`` keeps the trials of one batch apart) and
    trains them as one queue with :class:`OptunaPruning` as the stopper; when they end, each is told:
    its final validation Dice when it trained all epochs, ``PRUNED`` when the pruner stopped it,
    ``FAIL`` when it failed.

    Args:
        early_stopping: the Hyperband pruner's minimum resource (``min_epochs``) and reduction factor; its
            maximum resource is ``training.epochs``.
        startup_trials: TPE's random trials before it models the results.
    """

    name = "tpe+hyperband"

    def __init__(self, study: StudyConfig, seed: int, *, early_stopping: EarlyStoppingConfig, startup_trials: int) -> None:
        super().__init__(study, seed)
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # constant_liar (experimental in Optuna 4.9) keeps the trials asked for one batch apart
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message=".*constant_liar.*")
        self._optuna = optuna
        epochs = self.study.training.epochs
        self.rungs = early_stopping.rungs(epochs)
        self.optuna_study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, constant_liar=True),
            pruner=optuna.pruners.HyperbandPruner(min_resource=early_stopping.min_epochs, max_resource=epochs, reduction_factor=early_stopping.reduction_factor),
        )
        self.distributions = {name: self._distribution(dist) for name, dist in self.study.search.space.items()}
        self._asked: dict[str, Any] = {}

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
            proposal = self._proposal(dict(trial.params))
            self._asked[proposal.trial_id] = trial
            proposals.append(proposal)
        return proposals

    def stopper(self) -> OptunaPruning:
        return OptunaPruning(dict(self._asked), self.rungs)

    @property
    def stops_early(self) -> bool:
        return True  # the pruner stops trials: they queue for the pack's slots like successive halving's

    def tell(self, results: Sequence[TrialResult]) -> None:
        state = self._optuna.trial.TrialState
        for result in results:
            trial = self._asked.pop(result.trial_id)
            if result.state == TrialState.COMPLETE and result.final_val_dice is not None:
                self.optuna_study.tell(trial, float(result.final_val_dice))
            elif result.state == TrialState.STOPPED:
                self.optuna_study.tell(trial, state=state.PRUNED)
            else:
                self.optuna_study.tell(trial, state=state.FAIL)
        self.batches += 1


def make_strategy(
    name: str,
    study: StudyConfig,
    *,
    seed: int,
    workdir: str | os.PathLike[str],
    early_stopping: EarlyStoppingConfig,
    startup_trials: int,
) -> Strategy:
    """The strategy called ``name`` (one of :data:`~proxyhpo.config.search_bench.STRATEGIES`).

    Args:
        name: the strategy.
        study: the study searched.
        seed: the strategy's seed.
        workdir: where it keeps files (the controller's state).
        early_stopping: the rungs of ``reinforce+sh`` and of ``tpe+hyperband``'s pruner.
        startup_trials: ``tpe+hyperband``'s random start.

    Raises:
        ValueError: for an unknown name.
    """
    if name == "random":
        return RandomSearch(study, seed)
    if name == "reinforce":
        return ReinforceSearch(study, seed, workdir=workdir)
    if name == "reinforce+sh":
        return ReinforceHalvingSearch(study, seed, workdir=workdir, early_stopping=early_stopping)
    if name == "tpe+hyperband":
        return OptunaSearch(study, seed, early_stopping=early_stopping, startup_trials=startup_trials)
    raise ValueError(f"name must be one of random, reinforce, reinforce+sh, tpe+hyperband, got {name!r}")
