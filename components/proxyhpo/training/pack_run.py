"""Training one pack: its models epoch after epoch, validating, stopping, finishing and refilling its slots.

:class:`PackRun` is the loop behind :func:`~proxyhpo.training.runner.run_trials`: it trains a queue of
trials of one architecture in a :class:`~proxyhpo.training.pack.ModelPack` of ``slots`` models, keeps each
trial's :class:`~proxyhpo.training.progress.TrialProgress`, and saves and resumes
:mod:`~proxyhpo.training.checkpoint` checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from proxyhpo.config import PackCheckpoint, Recipe, TrialPlan, TrialResult, TrialSpec
from proxyhpo.storage import atomic_output
from proxyhpo.training.checkpoint import SavedPack, load_checkpoint, restore_stream, save_checkpoint, stream_state
from proxyhpo.training.data import PatchStream, image_channels
from proxyhpo.training.early_stopping import EarlyStopper, EpochReport
from proxyhpo.training.evaluation import evaluate_pack_by_class
from proxyhpo.training.pack import ModelPack
from proxyhpo.training.progress import PackContext, TrialProgress

__all__ = ["PackRun", "EpochCallback", "StepCallback"]

log = logging.getLogger(__name__)

#: ``on_epoch(trial_id, epoch, val_dice)``: called after each validation of each trial (epoch is 1-based).
EpochCallback = Callable[[str, int, float], None]
#: ``on_step(trial_id, step, loss)``: called after each optimiser step of each trial (step is 1-based).
StepCallback = Callable[[str, int, float], None]


class PackRun:
    """Trains one pack: ``slots`` models at once, epoch after epoch, while a queue of further trials waits.

    Each epoch of the pack (a *tick*) trains every active trial one epoch of its own; the trials due are
    validated (every ``val_every`` of their epochs, the stopper's decision epochs and their last); the
    stopper stops some of them; a trial at its last epoch is finished (tested and saved); and every slot
    so freed (stopped, finished or failed) takes the next queued trial, which starts at its epoch 0. A
    pack without stopper or queue is the plain pack: every trial trains all epochs together.

    Models, trials and the queue share one index: trials are admitted in queue order and a model's index
    in the :class:`ModelPack` is its trial's position in ``specs``.
    """

    def __init__(
        self,
        specs: Sequence[TrialSpec],
        plan: TrialPlan,
        recipe: Recipe,
        device: torch.device,
        volumes: dict[str, list[dict]],
        *,
        slots: int,
        chunk_size: int,
        overhead_seconds: float,
        on_epoch: EpochCallback | None,
        on_step: StepCallback | None,
        progress: bool,
        checkpoint: str | None = None,
        stopper: EarlyStopper | None = None,
    ) -> None:
        self.started = time.perf_counter()
        self.specs = list(specs)
        self.slots = max(1, min(slots, len(self.specs)))
        self.context = PackContext(device=device, size=self.slots)
        if self.context.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.plan, self.recipe, self.volumes = plan, recipe, volumes
        self.overhead_seconds = overhead_seconds
        self.on_epoch, self.on_step, self.progress = on_epoch, on_step, progress
        self.stopper = stopper
        due = {e for e in range(1, plan.epochs + 1) if e % plan.val_every == 0} | {plan.epochs}
        due |= {e for e in (stopper.decision_epochs() if stopper is not None else ()) if 1 <= e <= plan.epochs}
        self.validation_epochs = frozenset(due)  # a trial's own epochs at which it is validated
        first = self.specs[: self.slots]
        # the networks' widths come from the data: the cached images' channels, the plan's classes
        self.class_names = [plan.classes.get(value, str(value)) for value in range(1, plan.num_classes)] if plan.num_classes > 2 else []
        self.pack = ModelPack(first, device=device, chunk_size=chunk_size, in_channels=image_channels(volumes), out_channels=plan.num_classes)
        # the set-up (networks, patch streams, optimisers) is charged in equal shares
        streams = [self._stream(spec) for spec in first]
        setup = overhead_seconds + (time.perf_counter() - self.started) / len(first)
        self.trials = [TrialProgress(spec, stream, setup, admitted_at=self.started) for spec, stream in zip(first, streams)]
        self.tick = 0
        self.step = 0
        self.checkpoint = checkpoint
        if checkpoint is not None:
            saved = load_checkpoint(checkpoint, [spec.trial_id for spec in self.specs])
            if saved is not None:
                self._restore(saved)

    @property
    def models(self) -> list[torch.nn.Module]:
        """Every admitted trial's network, in queue order."""
        return self.pack.models

    def _stream(self, spec: TrialSpec) -> PatchStream:
        return PatchStream(self.volumes["train"], self.recipe, self.plan.batch_size, spec.hyperparameters.intensity_shift_prob, spec.seed)

    def _admit(self) -> int:
        """The next queued trial takes a free slot: its network joins the pack; it starts at its epoch 0."""
        began = time.perf_counter()
        index = len(self.trials)
        spec = self.specs[index]
        added = self.pack.add(spec)
        assert added == index, (added, index)
        stream = self._stream(spec)
        self.trials.append(TrialProgress(spec, stream, self.overhead_seconds + time.perf_counter() - began, admitted_at=began, first_tick=self.tick))
        if self.progress:
            log.info("trial %s takes a free slot after %d epochs of the pack", spec.trial_id, self.tick)
        return index

    def _fill(self) -> None:
        """Free slots take queued trials, in queue order."""
        while len(self.pack.active) < self.slots and len(self.trials) < len(self.specs):
            self._admit()

    def _saved(self) -> SavedPack:
        """Everything :meth:`_restore` needs to continue after this tick exactly as if never stopped."""
        now = time.perf_counter()
        state = getattr(self.stopper, "state_dict", None)
        record = PackCheckpoint(
            trial_ids=[spec.trial_id for spec in self.specs],
            epoch=self.tick,
            step=self.step,
            elapsed=now - self.started,
            data_seconds=self.context.data_seconds,
            step_seconds=self.context.step_seconds,
            chunk_size=self.pack.chunk_size,
            failed=dict(self.pack.failed),
            retired=sorted(self.pack.retired),
            stopper=state() if state is not None else None,
            trials=[trial.checkpoint(self.started) for trial in self.trials],
        )
        return SavedPack(
            record=record,
            models=[model.state_dict() for model in self.models],
            optimizers=[optimizer.state_dict() for optimizer in self.pack.optimizers],
            streams=[stream_state(trial.stream) for trial in self.trials],
            best_weights=[None if trial.best is None else trial.best[2] for trial in self.trials],
        )

    def _restore(self, saved: SavedPack) -> None:
        record = saved.record
        # the queued trials admitted before the checkpoint are admitted again, in the same order, so the
        # pack's optimiser layout is the one the saved optimiser state belongs to
        while len(self.trials) < record.admitted:
            self._admit()
        self.started = time.perf_counter() - record.elapsed
        self.step, self.tick = record.step, record.epoch
        self.context.data_seconds, self.context.step_seconds = record.data_seconds, record.step_seconds
        self.pack.chunk_size = record.chunk_size
        self.pack.failed.update(record.failed)
        self.pack.retired.update(record.retired)
        if record.stopper is not None and hasattr(self.stopper, "load_state_dict"):
            self.stopper.load_state_dict(record.stopper)  # type: ignore[union-attr]
        for model, state in zip(self.models, saved.models, strict=True):
            model.load_state_dict(state)
        for optimizer, state in zip(self.pack.optimizers, saved.optimizers, strict=True):
            optimizer.load_state_dict(state)
        for trial, stream, progress, best in zip(self.trials, saved.streams, record.trials, saved.best_weights, strict=True):
            restore_stream(trial.stream, stream)
            trial.restore(progress, best, self.started)
        log.info("resumed %s after epoch %d from %s", ", ".join(t.spec.trial_id for t in self.trials), record.epoch, self.checkpoint)

    def _charge(self, since: float, members: Sequence[int]) -> float:
        """Share the time since ``since`` among ``members``; stop the clock of newly failed trials."""
        now = time.perf_counter()
        for i in members:
            self.trials[i].charged_seconds += (now - since) / len(members)
        for i in self.pack.failed:
            if self.trials[i].ended_at is None:
                self.trials[i].ended_at = now
        return now

    def train_epoch(self) -> None:
        """One epoch of optimiser steps of every active trial, each on its own batches."""
        members = self.pack.active
        batches = {i: self.trials[i].stream.epoch() for i in members}
        for _ in range(self.trials[members[0]].stream.steps_per_epoch()):
            members = self.pack.active
            if not members:
                break
            started = time.perf_counter()
            step_batches = {i: next(batches[i]) for i in members}
            batched = time.perf_counter()
            self.step += 1
            losses = self.pack.train_step(step_batches, self.step)  # reading the losses back synchronises the GPU
            done = self._charge(started, members)
            for i in members:
                self.trials[i].steps_run += 1
            for i, loss in losses.items():
                self.trials[i].record_loss(loss)
            self.context.data_seconds += batched - started
            self.context.step_seconds += done - started
            if self.on_step is not None:
                for i, loss in losses.items():
                    self.on_step(self.trials[i].spec.trial_id, self.step, loss)
        for i in self.pack.active:
            self.trials[i].end_epoch()

    def validate(self, members: Sequence[int]) -> None:
        """Validation Dice of trials ``members``; the best weights so far are kept."""
        started = time.perf_counter()
        scores = evaluate_pack_by_class(self.pack, self.volumes["val"], self.recipe, members=members)
        self._charge(started, members)
        for i, (dice, per_class) in scores.items():
            trial = self.trials[i]
            if self.class_names:
                trial.val_class_dice.append(dict(zip(self.class_names, per_class)))
            trial.record_validation(trial.epochs_run, dice, self.models[i])
            if self.progress:
                log.info("trial %s epoch %d/%d val_dice %.4f", trial.spec.trial_id, trial.epochs_run, self.plan.epochs, dice)
            if self.on_epoch is not None:
                self.on_epoch(trial.spec.trial_id, trial.epochs_run, dice)

    def _decide(self, validated: Sequence[int]) -> None:
        """After a validation: trials at their last epoch finish; the stopper stops others; both leave the pack."""
        validated = [i for i in validated if i not in self.pack.failed]
        finished = [i for i in validated if self.trials[i].epochs_run >= self.plan.epochs]
        deciding = [i for i in validated if i not in finished]
        stopped: set[str] = set()
        if self.stopper is not None and deciding:
            reports = [
                EpochReport(self.trials[i].spec.trial_id, self.trials[i].epochs_run, self.trials[i].val_dice[-1], self.trials[i].epoch_loss, order=i)
                for i in deciding
            ]
            stopped = self.stopper.stop(reports)
        now = time.perf_counter()
        for i in deciding:
            trial = self.trials[i]
            if trial.spec.trial_id in stopped:
                self.pack.retire(i)
                trial.stopped_at, trial.ended_at = trial.epochs_run, now
                if trial.best is not None:
                    trial.best = (trial.best[0], trial.best[1], None)  # a stopped trial's weights are never used
                if self.progress:
                    log.info("trial %s stopped early at epoch %d (val_dice %.4f)", trial.spec.trial_id, trial.epochs_run, trial.val_dice[-1])
        if finished:
            self._complete(finished)

    def _complete(self, members: list[int]) -> None:
        """Trials that trained all their epochs: leave the pack, then their best-validation weights are tested and saved."""
        for i in members:
            self.pack.retire(i)
            self.trials[i].done = True
            if self.trials[i].best is not None:
                self.models[i].load_state_dict(self.trials[i].best[2])  # type: ignore[index, arg-type]
        for test_set, field in (("internal_test", "internal_test_dice"), ("test", "test_dice")):
            if not self.volumes.get(test_set):
                continue
            started = time.perf_counter()
            scores = evaluate_pack_by_class(self.pack, self.volumes[test_set], self.recipe, what=test_set.replace("_", " "), members=members)
            self._charge(started, members)
            for i, (dice, per_class) in scores.items():
                setattr(self.trials[i], field, dice)
                if self.class_names:
                    setattr(self.trials[i], field.replace("_dice", "_class_dice"), dict(zip(self.class_names, per_class)))
        if self.plan.save_model_dir:
            Path(self.plan.save_model_dir).mkdir(parents=True, exist_ok=True)
            # a trial that failed during the test (out of memory) is not saved
            for i in [i for i in members if i not in self.pack.failed and self.trials[i].best is not None]:
                trial = self.trials[i]
                path = Path(self.plan.save_model_dir) / f"{trial.spec.trial_id}.pt"
                with atomic_output(path) as tmp:
                    torch.save({name: value.cpu() for name, value in trial.best[2].items()}, tmp)  # type: ignore[index, union-attr]
                trial.model_path = str(path)
        now = time.perf_counter()
        for i in members:
            if self.trials[i].ended_at is None:
                self.trials[i].ended_at = now

    def finish(self) -> list[TrialResult]:
        """Every trial's result, in queue order."""
        finished_at = time.perf_counter()
        if self.context.cuda:
            self.context.peak_memory = int(torch.cuda.max_memory_allocated(self.context.device))
        return [
            trial.result(fail_reason=self.pack.failed.get(i), finished=finished_at, overhead_seconds=self.overhead_seconds, pack=self.context)
            for i, trial in enumerate(self.trials)
        ]

    def run(self) -> list[TrialResult]:
        """Tick after tick from the first not yet trained until no trial is left to train (validating, stopping,
        finishing and refilling slots as :class:`PackRun` says; saving a checkpoint every ``checkpoint_every``
        ticks and at the end when asked), then :meth:`finish`."""
        self._fill()
        while self.pack.active:
            self.tick += 1
            self.train_epoch()
            due = [i for i in self.pack.active if self.trials[i].epochs_run in self.validation_epochs]
            if due:
                self.validate(due)
                self._decide(due)
            self._fill()
            if self.checkpoint is not None and (self.tick % self.plan.checkpoint_every == 0 or not self.pack.active):
                save_checkpoint(self.checkpoint, self._saved())
        return self.finish()
