"""Records of the NAS controller: its settings, one record per episode, and its persisted state.

The ENAS-style controller (:class:`proxyhpo.controller.enas.EnasController`) samples child
architectures as option indices, one per decision of the search space, and learns from their
validation Dice. These models are the JSON part of what it persists; they import neither torch nor
the controller, so reports read a search's history without torch.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from proxyhpo.config.base import MAX_HIDDEN, MAX_SEED, StrictModel

__all__ = ["NAS_SCHEMA_VERSION", "NasControllerConfig", "EpisodeStats", "NasControllerState"]

#: Version of the persisted NAS controller layout; bumped whenever a reader of the old layout would misread the new one.
NAS_SCHEMA_VERSION: Literal[1] = 1


class NasControllerConfig(StrictModel):
    """Settings of the ENAS-style NAS controller; the defaults are the paper's (section 3.1).

    Attributes:
        lr: learning rate of the controller's Adam optimiser (paper: 0.001, fixed, no decay).
        weight_decay: Adam's (coupled, L2) weight decay on the controller (paper: 0.000001).
        entropy_weight: weight of the entropy bonus subtracted from the REINFORCE loss (paper: 0.0001).
        baseline_decay: decay ``d`` of the moving-average reward baseline,
            ``b <- d * b + (1 - d) * mean(episode rewards)``, in [0, 1). The paper does not give it.
            ENAS uses 0.99, but folds in **one** reward per controller step; here one update folds in
            the mean of a whole episode (20 children in the paper). 0.8 keeps ENAS's horizon in
            rewards: a time constant of ``1 / (1 - 0.8) = 5`` episodes is 100 children, as 0.99 is over
            100 single rewards. 0.99 per episode would average over ~100 episodes (2000 children) and
            lag far behind a reward that rises while the shared child network keeps training, so
            nearly every child would get a positive advantage and be reinforced.
        hidden_size: width of the LSTM cell and of the input embeddings.
        seed: seeds the controller's initial weights and its sampling generator.
    """

    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(1e-6, ge=0.0, le=10.0, allow_inf_nan=False)
    entropy_weight: float = Field(1e-4, ge=0.0, le=1e3, allow_inf_nan=False)
    baseline_decay: float = Field(0.8, ge=0.0, lt=1.0)
    hidden_size: int = Field(64, ge=1, le=MAX_HIDDEN)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class EpisodeStats(StrictModel):
    """What one episode of the NAS controller saw and did: its children, their rewards, and the update.

    An episode is the paper's: the controller samples children (20 in the paper), each is rewarded by
    its validation Dice, then the controller takes one REINFORCE step. Everything below is measured on
    the policy that sampled the children, i.e. **before** this episode's step.

    Attributes:
        episode: the episode's number (0-based; equal to the number of earlier updates).
        samples: the children, as option indices (one per decision), in the order given to ``update``.
        rewards: their rewards, same order; ``None`` for a failed child (``None`` or NaN was passed).
        n_failed: how many children failed; they are left out of the policy-gradient term and of the baseline.
        stepped: whether the controller learned from the episode: the baseline moved and the optimiser
            stepped (False when every child failed; a space whose decisions all have one option has
            nothing to step, only the baseline moves).
        mean_reward: mean reward of the children that did not fail (``None`` when all failed).
        max_reward: highest reward of the children that did not fail (``None`` when all failed).
        baseline_before: the moving-average baseline the advantages were computed against (the
            episode's own mean reward at the first successful episode).
        baseline: the baseline after this episode's mean reward was folded in.
        entropy: mean over **all** the episode's children of the policy's entropy summed over the
            decisions along the child's path, in nats (the chain rule makes it an unbiased estimate of
            the entropy of the whole architecture distribution); the term the entropy bonus uses.
        policy_loss: ``-mean((reward - baseline_before) * log p(child))`` over the children with a reward.
        loss: ``policy_loss - entropy_weight * entropy``, the minimised objective (``None`` without a step).
        most_likely: the controller's most likely (greedy) architecture before this episode's step.
        same_as_most_likely: fraction of the episode's children (failed ones included) equal to
            ``most_likely``; the paper reports the controller "suggests the same network more than 80%
            of the time".
        mode_fraction: fraction of the episode's children equal to the most frequent child among them.
    """

    schema_version: Literal[1] = NAS_SCHEMA_VERSION
    episode: int = Field(ge=0)
    samples: tuple[tuple[int, ...], ...] = Field(min_length=1)
    rewards: tuple[float | None, ...]
    n_failed: int = Field(ge=0)
    stepped: bool
    mean_reward: float | None = None
    max_reward: float | None = None
    baseline_before: float | None = None
    baseline: float | None = None
    entropy: float
    policy_loss: float | None = None
    loss: float | None = None
    most_likely: tuple[int, ...]
    same_as_most_likely: float = Field(ge=0.0, le=1.0)
    mode_fraction: float = Field(gt=0.0, le=1.0)

    @field_validator("rewards")
    @classmethod
    def _finite(cls, rewards: tuple[float | None, ...]) -> tuple[float | None, ...]:
        for i, reward in enumerate(rewards):
            if reward is not None and not math.isfinite(reward):
                raise ValueError(f"rewards[{i}] must be finite or None, got {reward}")
        return rewards

    @model_validator(mode="after")
    def _consistent(self) -> EpisodeStats:
        if len(self.rewards) != len(self.samples):
            raise ValueError(f"samples and rewards must have the same length, got {len(self.samples)} and {len(self.rewards)}")
        failed = sum(r is None for r in self.rewards)
        if failed != self.n_failed:
            raise ValueError(f"n_failed is {self.n_failed} but {failed} of the rewards are None")
        return self


class NasControllerState(StrictModel):
    """The JSON part of the persisted NAS controller (everything but tensors).

    Attributes:
        config: the controller's settings.
        decisions: the decisions searched, in emission order, as ``(kind, option_count)`` pairs.
        episode: the number of finished episodes (the next episode's number).
        baseline: the moving-average reward baseline (``None`` before the first successful episode).
        history: one record per finished episode, in order.
    """

    schema_version: Literal[1] = NAS_SCHEMA_VERSION
    config: NasControllerConfig
    decisions: tuple[tuple[str, int], ...] = Field(min_length=1)
    episode: int = Field(0, ge=0)
    baseline: float | None = None
    history: tuple[EpisodeStats, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> NasControllerState:
        if len(self.history) != self.episode:
            raise ValueError(f"episode is {self.episode} but the history holds {len(self.history)} episodes")
        return self
