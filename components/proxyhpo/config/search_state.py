"""The persisted state of a search strategy that keeps no model of its own (random search).

The HPO pipeline hands a strategy's state from round to round as one artifact. The REINFORCE controller
keeps its own layout (:mod:`proxyhpo.controller.state`); a strategy without a learned model keeps this
record: its random generator, its counters, the proposals waiting for results and the history of those
that returned, from which the final model's hyper-parameters are chosen.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from proxyhpo.config.base import Record
from proxyhpo.config.controller import HistoryRecord, Proposal, best_record

__all__ = ["SearchState"]


class SearchState(Record):
    """A model-free strategy's state between rounds.

    Attributes:
        strategy: the registered strategy that wrote it (:data:`proxyhpo.registry.SEARCH_STRATEGIES`).
        seed: the strategy's seed.
        batches: rounds told so far (= the round of the next proposals).
        next_proposal_id: id given to the next proposal.
        generator: the state of the strategy's ``numpy`` bit generator.
        pending: proposals of the current round still waiting for their results.
        history: every finished proposal with its Dice, in order of proposal id.
    """

    WRITTEN_BY = "the search's propose or update step"

    schema_version: Literal[1] = 1
    strategy: str
    seed: int = Field(ge=0)
    batches: int = Field(0, ge=0)
    next_proposal_id: int = Field(0, ge=0)
    generator: dict[str, Any]
    pending: tuple[Proposal, ...] = ()
    history: tuple[HistoryRecord, ...] = ()

    def best(self) -> HistoryRecord | None:
        """The proposal the search found best (:func:`~proxyhpo.config.controller.best_record`)."""
        return best_record(self.history)
