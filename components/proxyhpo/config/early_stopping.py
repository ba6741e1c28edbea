"""Early stopping inside packs: the successive-halving settings a study's search (or a trial plan) runs with.

Torch-free, like the rest of the schema layer: :mod:`proxyhpo.training.early_stopping` holds the
scheduler that applies these settings while a pack trains.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxyhpo.config.base import MAX_EPOCHS, StrictModel

__all__ = ["EarlyStoppingConfig", "rung_epochs"]


class EarlyStoppingConfig(StrictModel):
    """Asynchronous successive halving (ASHA) among the trials of a pack.

    Rungs sit at ``min_epochs * reduction_factor**k`` epochs, below the trials' epochs. A trial is
    validated at every rung it reaches; there it goes on only when its validation Dice is among the best
    ``ceil(n / reduction_factor)`` of the ``n`` trials of its pack that have reached that rung so far
    (itself included), and stops otherwise. A stopped model leaves the pack (the batched step gets
    cheaper), and its slot takes the next queued trial, which starts at epoch 0: a pack may hold more
    trials than slots (``pack_size``), and with early stopping a search round queues its proposals on
    its GPUs instead of training them in successive packs.

    Attributes:
        reduction_factor: η; about one trial in η goes on at each rung.
        min_epochs: the first rung, in epochs (the grace every trial gets); must be below the trials' epochs.
        metric: what decides at a rung: the Dice validated at the rung's epoch (ties broken by the lower
            training loss of the epoch, then by arrival).
        schedule: ``asha``: every trial starts at the first rung; ``hyperband``: each trial is given one of
            Hyperband's brackets (Li et al., JMLR 2018), bracket ``s`` halving from ``min_epochs *
            reduction_factor**s`` on among its own trials only, so some trials get a longer grace than the
            first rung (:class:`proxyhpo.training.early_stopping.Hyperband`).

    Example:
        >>> EarlyStoppingConfig(reduction_factor=3, min_epochs=5).rungs(60)
        (5, 15, 45)
    """

    schema_version: Literal[1] = 1
    reduction_factor: int = Field(3, ge=2, le=64)
    min_epochs: int = Field(ge=1, le=MAX_EPOCHS)
    metric: Literal["val_dice"] = "val_dice"
    schedule: Literal["asha", "hyperband"] = "asha"

    def rungs(self, epochs: int) -> tuple[int, ...]:
        """The rung epochs for trials of ``epochs`` epochs (see :func:`rung_epochs`)."""
        return rung_epochs(self.min_epochs, self.reduction_factor, epochs)


def rung_epochs(min_epochs: int, reduction_factor: int, epochs: int) -> tuple[int, ...]:
    """The epochs at which successive halving decides: ``min_epochs * reduction_factor**k`` below ``epochs``.

    The last epoch is no rung: a trial that reaches it has finished.

    Args:
        min_epochs: the first rung, >= 1.
        reduction_factor: the factor between rungs, >= 2.
        epochs: the trials' epochs, >= 1.

    Returns:
        The rungs, increasing; empty when ``min_epochs >= epochs``.

    Raises:
        ValueError: naming the argument out of range.

    Example:
        >>> rung_epochs(4, 2, 20)
        (4, 8, 16)
    """
    if min_epochs < 1:
        raise ValueError(f"min_epochs must be >= 1, got {min_epochs}")
    if reduction_factor < 2:
        raise ValueError(f"reduction_factor must be >= 2, got {reduction_factor}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    rungs = []
    rung = min_epochs
    while rung < epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return tuple(rungs)
