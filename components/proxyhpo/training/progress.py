"""One trial's progress inside a pack: what it has done, what it has been charged, its best weights, its result.

Device time is charged as it is spent: an equal share of the pack's set-up (a trial that takes a freed
slot later pays its own set-up), then of each step by the models that took part in it; a trial that
fails, stops or finishes stops being charged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from proxyhpo.config import TrialCheckpoint, TrialResult, TrialSpec, TrialState
from proxyhpo.training.data import PatchStream

__all__ = ["PackContext", "TrialProgress"]


@dataclass
class PackContext:
    """What every trial of a pack shares in its result: the device, the pack's size and its measurements."""

    device: torch.device
    size: int
    peak_memory: int = 0
    data_seconds: float = 0.0
    step_seconds: float = 0.0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def data_wait_fraction(self) -> float:
        return self.data_seconds / self.step_seconds if self.step_seconds > 0 else 0.0


@dataclass
class TrialProgress:
    """One trial's progress inside a pack (times are ``time.perf_counter`` readings).

    Attributes:
        spec, stream: the trial and its patch stream.
        charged_seconds: device time charged to it so far.
        admitted_at, ended_at: when it took its slot, and when it failed, stopped or finished.
        first_tick: the pack's epoch count when it was admitted.
        best: ``(Dice, epoch, weights)`` of its best validation so far (weights None once stopped).
    """

    spec: TrialSpec
    stream: PatchStream
    charged_seconds: float
    admitted_at: float
    first_tick: int = 0
    ended_at: float | None = None
    epochs_run: int = 0
    steps_run: int = 0
    val_epochs: list[int] = field(default_factory=list)
    val_dice: list[float] = field(default_factory=list)
    best: tuple[float, int, dict[str, torch.Tensor] | None] | None = None
    internal_test_dice: float | None = None
    test_dice: float | None = None
    val_class_dice: list[dict[str, float]] = field(default_factory=list)  # with several classes: per class, per validation
    internal_test_class_dice: dict[str, float] = field(default_factory=dict)
    test_class_dice: dict[str, float] = field(default_factory=dict)
    model_path: str | None = None
    stopped_at: int | None = None
    done: bool = False
    epoch_loss: float | None = None
    loss_sum: float = 0.0
    loss_steps: int = 0

    def record_validation(self, epoch: int, dice: float, model: torch.nn.Module) -> None:
        """Keep the epoch's Dice, and the weights when they are the best so far."""
        self.val_epochs.append(epoch)
        self.val_dice.append(dice)
        if self.best is None or dice > self.best[0]:
            self.best = (dice, epoch, {name: value.detach().clone() for name, value in model.state_dict().items()})

    def record_loss(self, loss: float) -> None:
        self.loss_sum += loss
        self.loss_steps += 1

    def end_epoch(self) -> None:
        """One more epoch done: its mean training loss is kept (the stopper's tie-breaker)."""
        self.epochs_run += 1
        self.epoch_loss = self.loss_sum / self.loss_steps if self.loss_steps else None
        self.loss_sum, self.loss_steps = 0.0, 0

    def checkpoint(self, started: float) -> TrialCheckpoint:
        """Its progress as a checkpoint record, times relative to ``started`` (the pack's start); the best weights go with the tensors."""
        return TrialCheckpoint(
            trial_id=self.spec.trial_id,
            charged_seconds=self.charged_seconds,
            admitted_after=self.admitted_at - started,
            first_tick=self.first_tick,
            ended_after=None if self.ended_at is None else self.ended_at - started,
            epochs_run=self.epochs_run,
            steps_run=self.steps_run,
            val_epochs=list(self.val_epochs),
            val_dice=list(self.val_dice),
            best_dice=None if self.best is None else self.best[0],
            best_epoch=None if self.best is None else self.best[1],
            internal_test_dice=self.internal_test_dice,
            test_dice=self.test_dice,
            model_path=self.model_path,
            stopped_at=self.stopped_at,
            done=self.done,
            epoch_loss=self.epoch_loss,
            val_class_dice=list(self.val_class_dice),
            internal_test_class_dice=dict(self.internal_test_class_dice),
            test_class_dice=dict(self.test_class_dice),
        )

    def restore(self, saved: TrialCheckpoint, best_weights: dict[str, torch.Tensor] | None, started: float) -> None:
        """Take back the progress :meth:`checkpoint` recorded (``started``: the resumed pack's start, shifted back by its elapsed time)."""
        if saved.trial_id != self.spec.trial_id:
            raise ValueError(f"the checkpoint's trial {saved.trial_id!r} is not {self.spec.trial_id!r}")
        self.charged_seconds = saved.charged_seconds
        self.admitted_at = started + saved.admitted_after
        self.first_tick = saved.first_tick
        self.ended_at = None if saved.ended_after is None else started + saved.ended_after
        self.epochs_run, self.steps_run = saved.epochs_run, saved.steps_run
        self.val_epochs, self.val_dice = list(saved.val_epochs), list(saved.val_dice)
        self.best = None if saved.best_dice is None else (saved.best_dice, saved.best_epoch, best_weights)  # type: ignore[assignment]
        self.internal_test_dice, self.test_dice, self.model_path = saved.internal_test_dice, saved.test_dice, saved.model_path
        self.stopped_at, self.done, self.epoch_loss = saved.stopped_at, saved.done, saved.epoch_loss
        self.val_class_dice = list(saved.val_class_dice)
        self.internal_test_class_dice, self.test_class_dice = dict(saved.internal_test_class_dice), dict(saved.test_class_dice)

    def result(self, *, fail_reason: str | None, finished: float, overhead_seconds: float, pack: PackContext) -> TrialResult:
        """The trial's :class:`TrialResult`: COMPLETE, STOPPED early, or FAILED with ``fail_reason``."""
        ok = fail_reason is None
        hours = self.charged_seconds / 3600.0
        if not ok:
            state = TrialState.FAILED
        else:
            state = TrialState.STOPPED if self.stopped_at is not None else TrialState.COMPLETE
        return TrialResult.of(
            self.spec,
            state,
            fail_reason=fail_reason,
            stopped_at_epoch=self.stopped_at if ok else None,
            epochs_run=self.epochs_run,
            steps_run=self.steps_run,
            val_epochs=self.val_epochs,
            val_dice=self.val_dice,
            final_val_dice=self.val_dice[-1] if self.val_dice and ok else None,
            best_val_dice=self.best[0] if self.best is not None and ok else None,
            best_epoch=self.best[1] if self.best is not None and ok else None,
            internal_test_dice=self.internal_test_dice,
            test_dice=self.test_dice,
            val_class_dice=self.val_class_dice,
            internal_test_class_dice=self.internal_test_class_dice,
            test_class_dice=self.test_class_dice,
            wall_seconds=overhead_seconds + ((self.ended_at or finished) - self.admitted_at),
            gpu_hours=hours if pack.cuda else 0.0,
            process_hours=0.0 if pack.cuda else hours,
            peak_gpu_mem_bytes=pack.peak_memory,
            data_wait_fraction=pack.data_wait_fraction,
            pack_size=pack.size,
            device=str(pack.device),
            model_path=self.model_path,
        )
