"""The search strategy's protocol: ``ask`` for proposals, ``tell`` their results, ``save`` and ``restore`` between rounds.

Every strategy proposes hyper-parameters from the study's search space as :class:`~proxyhpo.config.Proposal`
records (so they train through the pipeline's own plan builder, packs and MLflow runs), learns from
:class:`~proxyhpo.config.TrialResult` records, and names the study its trials train with
(:attr:`Strategy.study`) and the rule, if any, that stops its trials early while they train
(:meth:`Strategy.stopper`). The HPO pipeline's round steps (:mod:`proxyhpo.controller.rounds`) and the
search benchmark (:mod:`proxyhpo.search.bench`) drive any registered strategy
(:data:`proxyhpo.registry.SEARCH_STRATEGIES`) through this protocol and nothing else; a strategy's state
layout is its own business.

Example:
    >>> strategy = SEARCH_STRATEGIES["random"](study, seed=0)  # doctest: +SKIP
    >>> proposals = strategy.ask(4)  # doctest: +SKIP
    >>> strategy.tell(results)  # doctest: +SKIP
    >>> strategy.save("search.json")  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from proxyhpo.config import Proposal, StudyConfig, TrialResult, TrialState, UpdateStats
from proxyhpo.config.controller import HistoryRecord, best_record
from proxyhpo.errors import ConfigError
from proxyhpo.registry import SEARCH_STRATEGIES

__all__ = ["Strategy", "study_with", "outcome_of", "strategy_class"]


def study_with(study: StudyConfig, section: str, **values: Any) -> StudyConfig:
    """``study`` with keys of one section (``search``, ``training``) replaced, validated again.

    Example:
        >>> study_with(study, "training", epochs=24).training.epochs  # doctest: +SKIP
        24
    """
    document = study.model_dump()
    document[section].update(values)
    return StudyConfig.model_validate(document)


def outcome_of(result: TrialResult) -> tuple[float | None, int | None]:
    """A trial's Dice at its last validation (None: failed or not finite) and the epoch early stopping stopped it at."""
    dice = result.final_val_dice if result.state in (TrialState.COMPLETE, TrialState.STOPPED) else None
    if dice is None or not math.isfinite(dice):
        return None, result.stopped_at_epoch
    return float(dice), result.stopped_at_epoch


class Strategy(abc.ABC):
    """A search strategy: proposes hyper-parameters, learns from the results of their trials.

    Subclasses implement :meth:`ask`, :meth:`tell` and :meth:`history` (:meth:`best` reads it); those the HPO pipeline can run also
    implement :meth:`save` and :meth:`restore`, so that round ``r + 1`` continues on another pod exactly
    where round ``r`` ended.

    Args:
        study: the study whose search space is searched; the strategy's trials train with :attr:`study`
            (with its ``search.early_stopping``, if any: successive halving inside the packs).
        seed: seeds everything random in the strategy.

    Example:
        >>> proposals = strategy.ask(4)  # doctest: +SKIP
        >>> strategy.tell([result_of(p) for p in proposals])  # doctest: +SKIP
    """

    #: the strategy's name in configs, MLflow tags and results (its registry name)
    name: ClassVar[str]
    #: whether the strategy needs ``search.early_stopping`` (its trials stop at rungs)
    requires_early_stopping: ClassVar[bool] = False
    #: the optional packages the strategy imports (an extra of the proxyhpo package of the same name)
    requires_packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, study: StudyConfig, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if self.requires_early_stopping and study.search.early_stopping is None:
            raise ValueError(f"the {self.name} strategy stops trials at rungs: set search.early_stopping")
        self.study = study
        self.seed = seed

    @abc.abstractmethod
    def ask(self, n: int) -> list[Proposal]:
        """``n`` new proposals, trained together as the next round (ids continue the strategy's count)."""

    @abc.abstractmethod
    def tell(self, results: Sequence[TrialResult]) -> UpdateStats | None:
        """Learn from the results of the last round's trials, in any order; a proposal without a result counts as failed.

        Returns:
            what a learning strategy's update did (the REINFORCE controller's :class:`~proxyhpo.config.UpdateStats`), or None.
        """

    @abc.abstractmethod
    def history(self) -> list[HistoryRecord]:
        """Every proposal told so far with its Dice (None: failed) and stop epoch, in order of proposal id."""

    def best(self) -> HistoryRecord | None:
        """The proposal the search found best so far (:func:`~proxyhpo.config.controller.best_record`), or None."""
        return best_record(self.history())

    def round_metrics(self) -> dict[str, list[tuple[int, float]]]:
        """What the strategy learned round by round, for the report: metric name -> ``(round, value)`` pairs (none by default)."""
        return {}

    def stopper(self) -> Any | None:
        """The rule that stops this round's trials early while they train, passed to
        :func:`~proxyhpo.training.run_trials` (an :class:`~proxyhpo.training.early_stopping.EarlyStopper`);
        None: the plan's own (``search.early_stopping`` of :attr:`study`), or none."""
        return None

    @property
    def stops_early(self) -> bool:
        """Whether this strategy's trials may stop before their last epoch: a round then queues for a pack's slots."""
        return self.study.search.early_stopping is not None

    #: whether :meth:`save` and :meth:`restore` carry the strategy between pipeline tasks
    persistent: ClassVar[bool] = True
    #: why a strategy that is not :attr:`persistent` runs only in the search benchmark (its one-line refusal says it)
    bench_only_reason: ClassVar[str] = "keeps its state in memory"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the strategy's whole state to ``path``, atomically; return the path."""
        raise NotImplementedError(f"the {self.name} strategy cannot be carried between pipeline tasks")

    @classmethod
    def restore(cls, study: StudyConfig, path: str | os.PathLike[str]) -> Strategy:
        """The strategy :meth:`save` wrote to ``path``; its next round continues exactly as it would have in the saver."""
        raise NotImplementedError(f"the {cls.name} strategy cannot be carried between pipeline tasks")

    @staticmethod
    def _check_n(n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")


def strategy_class(study: StudyConfig) -> type[Strategy]:
    """The class of the study's ``search.strategy``, checked to run between pipeline tasks.

    The HPO pipeline's search calls this when it is built, so a strategy it cannot run stops the launch
    with one line, before any task starts.

    Raises:
        ConfigError: when the strategy cannot be carried between tasks, or needs early stopping the study lacks.
    """
    name = study.search.strategy
    cls = SEARCH_STRATEGIES[name]
    if not cls.persistent:
        carried = ", ".join(other for other in SEARCH_STRATEGIES if SEARCH_STRATEGIES[other].persistent)
        raise ConfigError("search.strategy", f"'{name}' {cls.bench_only_reason} and runs only in `proxyhpo bench search`", f"choose one of {carried}")
    if cls.requires_early_stopping and study.search.early_stopping is None:
        raise ConfigError("search.early_stopping", f"search.strategy '{name}' stops trials at rungs, and the study sets none", "set search.early_stopping (min_epochs, reduction_factor)")
    return cls
