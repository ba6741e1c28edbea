"""Random search: independent draws from the search space, persisted as a :class:`~proxyhpo.config.search_state.SearchState`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from proxyhpo.config import Categorical, Proposal, StudyConfig, TrialResult
from proxyhpo.config.controller import HistoryRecord
from proxyhpo.config.search_state import SearchState
from proxyhpo.search._base import Strategy, outcome_of

__all__ = ["RandomSearch"]


class RandomSearch(Strategy):
    """Independent uniform draws from the search space.

    Each categorical choice is equally likely and each range uniform on its scale (``from_unit`` of a
    uniform variate: log-uniform for a :class:`~proxyhpo.config.LogUniform`). It learns nothing from
    results; it keeps them to name the best proposal.

    Example:
        >>> search = RandomSearch(study, seed=0)  # doctest: +SKIP
        >>> [p.proposal_id for p in search.ask(3)]  # doctest: +SKIP
        [0, 1, 2]
    """

    name = "random"

    def __init__(self, study: StudyConfig, seed: int) -> None:
        super().__init__(study, seed)
        self._rng = np.random.default_rng(seed)
        self.batches = 0
        self._next_id = 0
        self._pending: dict[int, Proposal] = {}
        self._history: list[HistoryRecord] = []

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
            proposal = Proposal(proposal_id=self._next_id, round=self.batches, hyperparameters=values, log_prob=0.0)
            self._next_id += 1
            self._pending[proposal.proposal_id] = proposal
            proposals.append(proposal)
        return proposals

    def tell(self, results: Sequence[TrialResult]) -> None:
        by_id = {int(result.tags["proposal_id"]): result for result in results if "proposal_id" in result.tags}
        for proposal_id, proposal in sorted(self._pending.items()):
            result = by_id.get(proposal_id)
            dice, stopped = outcome_of(result) if result is not None else (None, None)
            self._history.append(HistoryRecord(proposal=proposal, reward=dice, failed=dice is None, dice=dice, stopped_at_epoch=stopped))
        self._pending.clear()
        self.batches += 1

    def history(self) -> list[HistoryRecord]:
        return list(self._history)

    def state(self) -> SearchState:
        """Everything the next round needs, as one record."""
        return SearchState(
            strategy=self.name,
            seed=self.seed,
            batches=self.batches,
            next_proposal_id=self._next_id,
            generator=self._rng.bit_generator.state,
            pending=tuple(self._pending.values()),
            history=tuple(self._history),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        return Path(self.state().write(path))

    @classmethod
    def restore(cls, study: StudyConfig, path: str | os.PathLike[str]) -> RandomSearch:
        state = SearchState.read(path)
        search = cls(study, state.seed)
        search._rng.bit_generator.state = state.generator
        search.batches = state.batches
        search._next_id = state.next_proposal_id
        search._pending = {p.proposal_id: p for p in state.pending}
        search._history = list(state.history)
        return search
