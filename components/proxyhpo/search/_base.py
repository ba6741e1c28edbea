"""The search strategy's protocol: ``ask`` for proposals, ``tell`` their results, ``save`` and ``restore`` between rounds.

Every strategy proposes hyper-parameters from the study's search space as :class:`~proxyhpo.config.Proposal`
records (so they train through the pipeline's own plan builder, packs and MLflow runs), learns from
:class:`~proxyhpo.config.TrialResult` records, and names the study its trials train with
(:attr:`Strategy.study`, whose ``search.early_stopping`` is the rule that stops them early in their packs).
The HPO pipeline's round steps (:mod:`proxyhpo.controller.rounds`) and the search benchmark
(:mod:`proxyhpo.search.bench`) drive any registered strategy (:data:`proxyhpo.registry.SEARCH_STRATEGIES`)
through this protocol and nothing else; a strategy's state layout is its own business.

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
from proxyhpo.config.early_stopping import EarlyStoppingConfig
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
    #: the ``search.early_stopping.schedule`` the strategy's packs must stop trials with (None: either)
    early_stopping_schedule: ClassVar[str | None] = None

    def __init__(self, study: StudyConfig, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if self.requires_early_stopping and study.search.early_stopping is None:
            raise ValueError(f"the {self.name} strategy stops trials at rungs: set search.early_stopping")
        wanted = self.early_stopping_schedule
        if wanted is not None and study.search.early_stopping is not None and study.search.early_stopping.schedule != wanted:
            raise ValueError(f"the {self.name} strategy stops trials with search.early_stopping.schedule {wanted!r}, got {study.search.early_stopping.schedule!r}")
        self.study = study
        self.seed = seed

    @classmethod
    def bench_early_stopping(cls, rungs: EarlyStoppingConfig) -> dict[str, Any] | None:
        """The ``search.early_stopping`` a benchmark gives this strategy, whose other strategies share ``rungs``:
        None when it trains every trial all its epochs, else ``rungs`` with the strategy's schedule, if it has one."""
        if not cls.requires_early_stopping:
            return None
        return rungs.model_dump() | ({"schedule": cls.early_stopping_schedule} if cls.early_stopping_schedule else {})

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

    @property
    def stops_early(self) -> bool:
        """Whether this strategy's trials may stop before their last epoch: a round then queues for a pack's slots."""
        return self.study.search.early_stopping is not None

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
    """The class of the study's ``search.strategy``, checked against the study's early stopping.

    The HPO pipeline's search calls this when it is built, so a strategy the study cannot run stops the
    launch with one line, before any task starts.

    Raises:
        ConfigError: when the strategy needs early stopping the study lacks, or another schedule of it.
    """
    name = study.search.strategy
    cls = SEARCH_STRATEGIES[name]
    early_stopping = study.search.early_stopping
    if cls.requires_early_stopping and early_stopping is None:
        raise ConfigError("search.early_stopping", f"search.strategy '{name}' stops trials at rungs, and the study sets none", "set search.early_stopping (min_epochs, reduction_factor)")
    wanted = cls.early_stopping_schedule
    if wanted is not None and early_stopping is not None and early_stopping.schedule != wanted:
        raise ConfigError(
            "search.early_stopping.schedule", f"search.strategy '{name}' stops trials with the {wanted} schedule, and the study sets {early_stopping.schedule}", f"set search.early_stopping.schedule: {wanted}"
        )
    return cls
