"""How a round's trial outcomes become the REINFORCE controller's rewards: Dice, or ranks when trials stop early.

Without early stopping every trial trains all its epochs and its validation Dice is the reward (the
paper's). With successive halving inside packs (:mod:`proxyhpo.training.early_stopping`) most trials
stop at a rung, with the Dice of an early epoch, and the reward must still say which proposals were
better. :func:`rank_rewards` is the reward for that case:

- Order the round's trials as successive halving did: a trial that reached a later epoch (a later rung,
  or the end) outranks every trial stopped before it; trials that ended at the same epoch are ordered
  by their Dice there (same epochs of training, so comparable). Equal places share their mean rank.
- The reward is the place mapped linearly onto [0, 1]: 1 for the best, 0 for the worst (0.5 for a lone
  trial, which nothing was compared with). Failed trials (a crash, a diverged loss) get no reward, as
  with Dice: they are left out of the gradient.

Why ranks, against the alternatives:

- *Raw Dice at the stop epoch* compares a Dice after 5 epochs with one after 60: mostly it measures how
  long a trial was allowed to train, a decision successive halving already made, and it can contradict
  that decision (a trial stopped at epoch 15 with 0.30 would outscore a survivor ending at 0.25 after it
  beat that trial at epoch 15). Early-epoch Dice is also noise around 0 on most tasks.
- *Zero for a stopped trial* says "learned nothing" of a trial that merely lost a comparison: one
  stopped at the last rung, nearly as good as the winner, is punished like one that diverged, the
  order among stopped trials is lost, and the Dice baseline is dragged down by the stopping rate (set by
  η, not by the policy).
- *Leaving stopped trials out* keeps only the survivors, about one in η per rung: REINFORCE then only
  ever raises the probability of what survived and is never told which regions to leave (selection
  bias), and most of the round's samples are thrown away.
- *Ranks* use exactly the information successive halving produced (every stop is a comparison), in its
  order, and need no common scale: they are bounded, robust to one outlier and to the Dice scale of a
  task. Their mean is 0.5 in every round, so the moving-average baseline settles at 0.5 and the
  advantage is the centred rank, the fitness shaping of evolution strategies. The price: a round of
  uniformly good trials still pushes half of them down; the comparison across rounds is left to the
  policy's entropy and to later rounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["TrialOutcome", "dice_rewards", "rank_rewards", "reward_function", "REWARDS"]


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial ended with, as far as its reward goes.

    Attributes:
        dice: the validation Dice at its last validation (its stop rung, or its last epoch).
        reached_epoch: the epoch of that validation: ``stopped_at_epoch`` for a stopped trial, the epochs it
            trained for one that finished.
    """

    dice: float
    reached_epoch: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.dice):
            raise ValueError(f"dice must be finite, got {self.dice}")
        if self.reached_epoch < 0:
            raise ValueError(f"reached_epoch must be >= 0, got {self.reached_epoch}")


def dice_rewards(outcomes: Sequence[TrialOutcome | None]) -> list[float | None]:
    """The paper's reward: each trial's Dice (None for a failed trial).

    Example:
        >>> dice_rewards([TrialOutcome(0.7, 60), None])
        [0.7, None]
    """
    return [None if outcome is None else outcome.dice for outcome in outcomes]


def rank_rewards(outcomes: Sequence[TrialOutcome | None]) -> list[float | None]:
    """Rank rewards over one round: later epoch reached first, then higher Dice; see the module's docstring.

    Args:
        outcomes: the round's trials, None for a failed one.

    Returns:
        One reward per outcome, in [0, 1] (1: the best place), or None for a failed trial; ties share the
        mean of their places; a lone successful trial gets 0.5.

    Example:
        >>> rank_rewards([TrialOutcome(0.61, 60), TrialOutcome(0.40, 5), TrialOutcome(0.52, 15), None])
        [1.0, 0.0, 0.5, None]
    """
    valid = [(index, outcome) for index, outcome in enumerate(outcomes) if outcome is not None]
    rewards: list[float | None] = [None] * len(outcomes)
    if len(valid) == 1:
        rewards[valid[0][0]] = 0.5
    if len(valid) < 2:
        return rewards
    ordered = sorted(valid, key=lambda item: (-item[1].reached_epoch, -item[1].dice))
    place = 0
    while place < len(ordered):
        key = (ordered[place][1].reached_epoch, ordered[place][1].dice)
        tied = place
        while tied + 1 < len(ordered) and (ordered[tied + 1][1].reached_epoch, ordered[tied + 1][1].dice) == key:
            tied += 1
        mean_place = (place + tied) / 2  # 0-based
        for index, _ in ordered[place : tied + 1]:
            rewards[index] = 1.0 - mean_place / (len(ordered) - 1)
        place = tied + 1
    return rewards


#: The rewards by name (``search.controller.reward``).
REWARDS: dict[str, Callable[[Sequence[TrialOutcome | None]], list[float | None]]] = {"dice": dice_rewards, "rank": rank_rewards}


def reward_function(name: Literal["dice", "rank"]) -> Callable[[Sequence[TrialOutcome | None]], list[float | None]]:
    """The reward called ``name``.

    Raises:
        ValueError: for a name that is not one of :data:`REWARDS` (``auto`` is resolved by the study first).
    """
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"reward must be one of {sorted(REWARDS)}, got {name!r}") from None
