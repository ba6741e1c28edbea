"""The record of a pack's checkpoint: where a pack in training stood, besides its tensors.

A pack saves a checkpoint every ``plan.checkpoint_every`` epochs so that a retried task (a preempted pod)
resumes exactly (:mod:`proxyhpo.training.checkpoint`). The weights, optimiser states, best weights and
random streams stay torch's business; this record holds everything else, typed and versioned, so that a
checkpoint of another layout is recognised and training starts over instead of misreading it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from proxyhpo.config.base import Record, StrictModel

__all__ = ["PACK_CHECKPOINT_VERSION", "PackCheckpoint", "TrialCheckpoint"]

#: Layouts: 1 and 2 were dictionaries written and read by hand (2 added the queue: admitted and retired
#: trials, the early-stopping rule's records); 3 is this record.
PACK_CHECKPOINT_VERSION = 3


class TrialCheckpoint(StrictModel):
    """One admitted trial's progress inside its pack; times are seconds since the pack started.

    Attributes:
        trial_id: the trial.
        charged_seconds: device time charged to it so far (its share of set-up, steps and validations).
        admitted_after: when it took its slot; ``ended_after``: when it failed, stopped or finished (None
            while it trains).
        first_tick: the pack's epoch count when it was admitted.
        epochs_run, steps_run: its own epochs and optimiser steps.
        val_epochs, val_dice: its validations so far (epochs are its own, 1-based).
        best_dice, best_epoch: its best validation so far (its weights then are among the tensors);
            None before the first.
        internal_test_dice, test_dice, model_path: once it finished: its Dice on the internal and the external
            test set and where its best weights were saved.
        stopped_at: the epoch early stopping stopped it at; ``done``: it trained all its epochs.
        epoch_loss: mean training loss of its last epoch (the stopping rule's tie-breaker).
        val_class_dice, internal_test_class_dice, test_class_dice: with several classes, their Dice per class.
    """

    model_config = ConfigDict(ser_json_inf_nan="constants")

    trial_id: str
    charged_seconds: float = Field(ge=0)
    admitted_after: float
    first_tick: int = Field(ge=0)
    ended_after: float | None = None
    epochs_run: int = Field(ge=0)
    steps_run: int = Field(ge=0)
    val_epochs: list[int] = Field(default_factory=list)
    val_dice: list[float] = Field(default_factory=list)
    best_dice: float | None = None
    best_epoch: int | None = None
    internal_test_dice: float | None = None
    test_dice: float | None = None
    model_path: str | None = None
    stopped_at: int | None = None
    done: bool = False
    epoch_loss: float | None = None
    val_class_dice: list[dict[str, float]] = Field(default_factory=list)
    internal_test_class_dice: dict[str, float] = Field(default_factory=dict)
    test_class_dice: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validations_pair_up(self) -> TrialCheckpoint:
        if len(self.val_epochs) != len(self.val_dice):
            raise ValueError(f"val_epochs and val_dice must pair up, got {len(self.val_epochs)} epochs and {len(self.val_dice)} Dice")
        if (self.best_dice is None) != (self.best_epoch is None):
            raise ValueError("best_dice and best_epoch are set together")
        return self


class PackCheckpoint(Record):
    """Where a pack in training stood after its ``epoch``-th epoch (tick), to resume as if never stopped.

    The pack is a queue of trials (``trial_ids``, in queue order) trained in slots; ``trials`` are the
    admitted ones, in admission order (which is queue order), so the pack rebuilt by admitting them again
    has the optimiser layout the saved optimiser states belong to.

    Attributes:
        trial_ids: every trial of the pack's queue: a checkpoint is resumed only by the same queue.
        epoch: the pack's epochs (ticks) done; ``step``: its optimiser steps.
        elapsed: seconds since the pack started; ``data_seconds``, ``step_seconds``: time spent producing
            batches, and in whole steps.
        chunk_size: most models computed in one batched call (lowered by out-of-memory).
        failed: the failed models by index, with their reasons; ``retired``: the stopped or finished ones.
        stopper: the early-stopping rule's own state (plain values), None without one.
        trials: the admitted trials' progress.

    Example:
        >>> PackCheckpoint.model_validate_json(record.model_dump_json()) == record  # doctest: +SKIP
        True
    """

    model_config = ConfigDict(ser_json_inf_nan="constants")
    WRITTEN_BY = "the pack's training (a checkpoint is rewritten every plan.checkpoint_every epochs)"

    schema_version: Literal[3] = PACK_CHECKPOINT_VERSION  # type: ignore[assignment]
    trial_ids: list[str] = Field(min_length=1)
    epoch: int = Field(ge=0)
    step: int = Field(ge=0)
    elapsed: float = Field(ge=0)
    data_seconds: float = Field(default=0.0, ge=0)
    step_seconds: float = Field(default=0.0, ge=0)
    chunk_size: int = Field(ge=1)
    failed: dict[int, str] = Field(default_factory=dict)
    retired: list[int] = Field(default_factory=list)
    stopper: dict[str, Any] | None = None
    trials: list[TrialCheckpoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _admitted_in_queue_order(self) -> PackCheckpoint:
        admitted = [t.trial_id for t in self.trials]
        if admitted != self.trial_ids[: len(admitted)]:
            raise ValueError(f"trials must be the queue's first {len(admitted)} trial_ids in order, got {admitted}")
        outside = sorted(i for i in (*self.failed, *self.retired) if not 0 <= i < len(admitted))
        if outside:
            raise ValueError(f"failed and retired name models {outside}, but {len(admitted)} were admitted")
        return self

    @property
    def admitted(self) -> int:
        """How many trials of the queue had taken a slot."""
        return len(self.trials)
