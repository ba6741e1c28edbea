"""Records of the HPO controller: its settings, its proposals, their rewards and its persisted state.

These are the JSON part of what :mod:`proxyhpo.controller.state` persists, and what the pipeline's
stages hand each other (a :class:`PackSpec` per GPU pod); they import neither torch nor the controller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from proxyhpo.config.base import MAX_HIDDEN, MAX_SEED, Record, StrictModel
from proxyhpo.config.search_space import Choice, SearchSpace

__all__ = ["SCHEMA_VERSION", "ControllerConfig", "Proposal", "HistoryRecord", "UpdateStats", "ControllerState", "PackSpec", "best_record"]

#: Version of the persisted controller layout; bumped whenever a reader of the old layout would misread the new one.
SCHEMA_VERSION: Literal[1] = 1


class ControllerConfig(StrictModel):
    """Settings of the REINFORCE controller (the ``controller`` section of a study config).

    Attributes:
        seed: seeds the policy's initial weights and the sampling generator.
        lr: learning rate of the Adam optimiser on the policy.
        entropy_weight: weight of the entropy bonus added to the REINFORCE objective (keeps exploring).
        baseline_decay: decay of the exponential moving-average reward baseline, in [0, 1).
        hidden_size: width of the LSTM cell and of the decision embeddings.
        max_grad_norm: the policy gradient is clipped to this norm; ``None`` disables clipping.
        reward: how a round's trial outcomes become rewards (:mod:`proxyhpo.controller.rewards`): ``dice``,
            each trial's validation Dice (the paper's); ``rank``, its place in the round, survivors of early
            stopping above the stopped; ``auto`` (the default), ``rank`` when the search stops trials early
            (``search.early_stopping``) and ``dice`` otherwise, resolved when the study's controller is created.
        advantage: ``raw`` (the paper's): reward minus baseline; ``normalized`` (ours): that divided by the spread
            (standard deviation) of every reward the controller has seen, so the step does not depend on the
            reward's scale (Dice of 0 to 0.06 and of 0 to 0.9 move the policy alike).
        updates_per_round: optimiser steps on each round's samples (ours; the paper takes one): a study has only a
            handful of rounds, and one Adam step each hardly moves the policy.
    """

    seed: int = Field(0, ge=0, le=MAX_SEED)
    lr: float = Field(0.02, gt=0.0, le=10.0)
    entropy_weight: float = Field(0.01, ge=0.0, le=1e3, allow_inf_nan=False)
    baseline_decay: float = Field(0.8, ge=0.0, lt=1.0)
    hidden_size: int = Field(64, ge=1, le=MAX_HIDDEN)
    max_grad_norm: float | None = Field(5.0, gt=0.0, allow_inf_nan=False)
    reward: Literal["auto", "dice", "rank"] = "auto"
    advantage: Literal["raw", "normalized"] = "raw"
    updates_per_round: int = Field(1, ge=1, le=64)

    def resolved(self, early_stopping: bool) -> ControllerConfig:
        """These settings with ``reward: auto`` made concrete: ``rank`` when trials stop early, else ``dice``."""
        if self.reward != "auto":
            return self
        return self.model_copy(update={"reward": "rank" if early_stopping else "dice"})


class Proposal(StrictModel):
    """One set of hyper-parameters proposed by the controller, to be trained as one trial.

    Attributes:
        proposal_id: unique within a study, increasing in the order of proposal.
        round: the round the proposal belongs to (0-based).
        hyperparameters: ``name -> value`` for every hyper-parameter of the search space.
        log_prob: log-probability of the proposal under the policy that sampled it (categorical
            choices plus the densities of the continuous values on the unit interval).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    proposal_id: int = Field(ge=0)
    round: int = Field(ge=0)
    hyperparameters: dict[str, Choice]
    log_prob: float

    @property
    def trial_id(self) -> str:
        """The id of the trial that trains this proposal: ``r<round>-t<proposal id>`` (also the MLflow run name)."""
        return f"r{self.round}-t{self.proposal_id:03d}"


class HistoryRecord(StrictModel):
    """A finished proposal: its reward, or ``failed`` when the trial produced none.

    Attributes:
        proposal: the proposal.
        reward: what the controller learned from: the trial's validation Dice, or its rank in the round
            (:attr:`ControllerConfig.reward`); ``None`` when it failed.
        failed: the trial failed (diverged, crashed); such proposals get no gradient.
        dice: the trial's validation Dice at its last validation (None: failed, or not recorded by an older
            controller, whose reward was its Dice).
        stopped_at_epoch: the epoch at which early stopping stopped the trial; None when it trained to the end.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    proposal: Proposal
    reward: float | None
    failed: bool
    dice: float | None = None
    stopped_at_epoch: int | None = Field(default=None, ge=1)

    @field_validator("reward", "dice")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"reward and dice must be finite or None, got {value}")
        return value

    @property
    def score(self) -> float | None:
        """The trial's validation Dice (its reward when no Dice was recorded); None when it failed."""
        if self.failed:
            return None
        return self.dice if self.dice is not None else self.reward


class UpdateStats(StrictModel):
    """What one REINFORCE update did.

    Attributes:
        round: the round that was updated.
        n_proposals: proposals given to the update.
        n_failed: of which failed (no reward); they are left out of the gradient.
        stepped: whether the optimiser took a step (False when every proposal failed).
        mean_reward: mean reward of the successful proposals (``None`` when all failed).
        baseline_before: the moving-average baseline the advantages were computed against.
        baseline: the baseline after this round's rewards were folded in.
        policy_loss: ``-mean(advantage * log_prob)``.
        entropy: mean over proposals of the policy's entropy, summed over the decisions.
        entropy_bonus: ``entropy_weight * entropy``, subtracted from the loss.
        loss: ``policy_loss - entropy_bonus``, the minimised objective.
        grad_norm: norm of the policy gradient before clipping.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    round: int
    n_proposals: int
    n_failed: int
    stepped: bool
    mean_reward: float | None = None
    baseline_before: float | None = None
    baseline: float | None = None
    policy_loss: float | None = None
    entropy: float | None = None
    entropy_bonus: float | None = None
    loss: float | None = None
    grad_norm: float | None = None


class ControllerState(StrictModel):
    """The JSON part of the persisted controller (everything but tensors).

    Attributes:
        config: the controller's settings.
        search_space: the hyper-parameters searched, in emission order.
        round: the round the next proposals belong to (= number of finished updates).
        next_proposal_id: id given to the next proposal.
        baseline: the moving-average reward baseline (``None`` before the first successful round).
        pending: proposals of the current round still waiting for their rewards.
        history: every finished proposal with its reward, in order of proposal id.
        updates: statistics of every update, one per round.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    config: ControllerConfig
    search_space: SearchSpace
    round: int = Field(0, ge=0)
    next_proposal_id: int = Field(0, ge=0)
    baseline: float | None = None
    pending: tuple[Proposal, ...] = ()
    history: tuple[HistoryRecord, ...] = ()
    updates: tuple[UpdateStats, ...] = ()

    def best(self) -> HistoryRecord | None:
        """The proposal the search found best (see :func:`best_record`), or None if every trial failed."""
        return best_record(self.history)


def best_record(history: Sequence[HistoryRecord]) -> HistoryRecord | None:
    """The proposal a search found best (the earliest on ties), or None if every trial failed.

    Trials that trained all their epochs come first, by validation Dice; a trial stopped early is
    chosen only when none trained to the end (then the one stopped latest, by Dice). Without early
    stopping this is the highest Dice, which is the highest reward with ``reward: dice``.
    """
    best: HistoryRecord | None = None
    best_key: tuple[bool, int, float] | None = None
    for record in history:
        score = record.score
        if score is None:
            continue
        key = (record.stopped_at_epoch is None, record.stopped_at_epoch or 0, score)
        if best_key is None or key > best_key:
            best, best_key = record, key
    return best


class PackSpec(Record):
    """The trials one GPU trains at once: the unit a ``ParallelFor`` iteration receives (as JSON).

    Attributes:
        round: the controller round the proposals belong to.
        pack_index: position of the pack within its round.
        proposals: the proposals, each trained as one trial of the pack.
    """

    WRITTEN_BY = "the controller's propose step"

    round: int = Field(ge=0)
    pack_index: int = Field(ge=0)
    proposals: tuple[Proposal, ...]
