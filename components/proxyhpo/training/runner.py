"""Running a trial plan: one trial or packs of trials, with validation, test and accounting.

``run_trials`` is the library entry point behind ``proxyhpo train TRIAL.yaml``; ``run_trial_file``
reads the YAML, runs it and writes the result JSON. Trials are grouped by network architecture and
packed (see :mod:`proxyhpo.training.pack`); each trial keeps its own seed, data stream and optimiser
settings, so packing changes the cost of a trial, not its outcome.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from proxyhpo.config import HyperParameters, NetworkConfig, Recipe, TrialPlan, TrialResult, TrialResults, TrialSpec, TrialState, check_patch_size
from proxyhpo.devices import resolve_device
from proxyhpo.errors import ConfigError
from proxyhpo.networks import build_network
from proxyhpo.storage import atomic_output
from proxyhpo.training.checkpoint import load_checkpoint, restore_stream, save_checkpoint, stream_state
from proxyhpo.training.data import PatchStream, cache_volumes
from proxyhpo.training.early_stopping import EarlyStopper, EpochReport, make_stopper
from proxyhpo.training.pack import ModelPack, is_out_of_memory

__all__ = [
    "run_trials",
    "run_trial_file",
    "auto_pack_size",
    "build_models",
    "evaluate_pack",
    "EpochCallback",
    "StepCallback",
    "CPU_PACK_SIZE",
    "NUM_CLASSES",
]

log = logging.getLogger(__name__)

#: ``on_epoch(trial_id, epoch, val_dice)``: called after each validation of each trial (epoch is 1-based).
EpochCallback = Callable[[str, int, float], None]
#: ``on_step(trial_id, step, loss)``: called after each optimiser step of each trial (step is 1-based).
StepCallback = Callable[[str, int, float], None]

#: Pack size ``"auto"`` picks on a CPU: packing helps little there (bench/bench_training.py), and
#: memory is rarely the limit for proxy networks.
CPU_PACK_SIZE = 4
#: Classes of every task after the label merge: background and one foreground.
NUM_CLASSES = 2


def build_models(specs: Sequence[TrialSpec], device: torch.device | str = "cpu") -> list[torch.nn.Module]:
    """Build each trial's network, initialised from the trial's seed, on ``device``."""
    models = []
    for s in specs:
        # Initialise from the trial's own seed without disturbing the caller's global RNG: a trial gets
        # the same initial weights alone or in a pack, on any device.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            models.append(build_network(s.network, in_channels=1, out_channels=NUM_CLASSES))
    return [m.to(device) for m in models]


def auto_pack_size(
    network: NetworkConfig,
    recipe: Recipe,
    batch_size: int,
    device: torch.device,
    *,
    in_channels: int = 1,
    limit: int = 64,
    headroom: float = 0.8,
) -> int:
    """Models per pack that fit in free GPU memory; :data:`CPU_PACK_SIZE` on a CPU.

    The footprint is measured, not guessed: one training step with one model and with two gives the
    fixed and the per-model memory; the pack fills ``headroom`` of the free memory with that.

    Args:
        network: the architecture to pack.
        recipe: patch size and samples per volume.
        batch_size: volumes per step.
        device: the training device.
        in_channels: image channels.
        limit: upper bound.
        headroom: fraction of free memory to plan for (the rest absorbs fragmentation).

    Returns:
        the pack size, between 1 and ``limit``.
    """
    if device.type != "cuda":
        return max(1, min(limit, CPU_PACK_SIZE))
    n = batch_size * recipe.num_samples
    peaks = []
    for k in (1, 2):
        specs = [TrialSpec(trial_id=f"probe{i}", hyperparameters=HyperParameters(lr=1e-4), network=network) for i in range(k)]
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            models = build_models(specs, device)
            pack = ModelPack(models, [s.hyperparameters for s in specs], [s.trial_id for s in specs])
            x = torch.rand(n, in_channels, *recipe.patch_size, device=device)
            y = (x[:, :1] > 0.5).float()
            pack.train_step({i: (x, y) for i in range(k)}, step=1)
            torch.cuda.synchronize(device)
            peaks.append(torch.cuda.max_memory_allocated(device) - base)
        except Exception as e:  # noqa: BLE001
            if not is_out_of_memory(e):
                raise
            return 1
        finally:
            models = pack = x = y = None  # noqa: F841 - release the probe before measuring free memory
            torch.cuda.empty_cache()
    per_model = max(peaks[1] - peaks[0], 1)
    fixed = max(peaks[0] - per_model, 0)
    free, _total = torch.cuda.mem_get_info(device)
    k = int((headroom * free - fixed) // per_model)
    log.info("auto pack size: %d (%.1f MiB per model, %.1f MiB free)", k, per_model / 2**20, free / 2**20)
    return max(1, min(limit, k))


def evaluate_pack(
    pack: ModelPack, volumes: Sequence[dict], recipe: Recipe, what: str = "validation", members: Sequence[int] | None = None
) -> dict[int, float]:
    """Mean foreground Dice of models of a pack over ``volumes``, by sliding-window inference.

    All models of a chunk share each window: one batched forward gives every model's logits.

    Args:
        pack: the pack.
        volumes: cached volumes with ``image`` ``(C, D, H, W)`` and ``label`` ``(1, D, H, W)``.
        recipe: inference window (``roi_size``) and windows per call (``sw_batch_size``).
        what: name used in failure messages.
        members: the models to score (default: every active one).

    Returns:
        ``{model index: mean Dice}`` over the volumes (``DiceMetric(include_background=False)``); volumes
        whose label is empty are skipped, and a model with no scored volume gets 0.
    """
    scores: dict[int, float] = {}

    def work(chunk: list[int]) -> None:
        metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
        k = len(chunk)
        for vol in volumes:
            image, label = vol["image"][None], vol["label"][None]
            logits = sliding_window_inference(
                image, recipe.roi_size, recipe.sw_batch_size, lambda w: pack.predict(chunk, w), overlap=0.25
            )  # (1, k * NUM_CLASSES, D, H, W)
            pred = logits.reshape(k, NUM_CLASSES, *logits.shape[2:]).argmax(dim=1, keepdim=True)
            metric(y_pred=one_hot(pred, NUM_CLASSES), y=one_hot(label, NUM_CLASSES).expand(k, -1, -1, -1, -1))
        per_case = metric.aggregate().reshape(len(volumes), k)  # rows: volumes, columns: models
        for j, i in enumerate(chunk):
            col = per_case[:, j]
            col = col[~torch.isnan(col)]
            scores[i] = float(col.mean()) if col.numel() else 0.0

    pack.run_chunked(work, what, members)
    return {i: v for i, v in scores.items() if i not in pack.failed}


@dataclass
class _TrialProgress:
    """One trial's progress inside a pack: what it has done, what it has been charged, its best weights.

    Device time is charged as it is spent: an equal share of the pack's set-up (a trial that takes a
    freed slot later pays its own set-up), then of each step by the models that took part in it; a trial
    that fails, stops or finishes stops being charged.
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
    test_dice: float | None = None
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

    def result(self, *, fail_reason: str | None, finished: float, overhead_seconds: float, pack: _PackContext) -> TrialResult:
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
            test_dice=self.test_dice,
            wall_seconds=overhead_seconds + ((self.ended_at or finished) - self.admitted_at),
            gpu_hours=hours if pack.cuda else 0.0,
            process_hours=0.0 if pack.cuda else hours,
            peak_gpu_mem_bytes=pack.peak_memory,
            data_wait_fraction=pack.data_wait_fraction,
            pack_size=pack.size,
            device=str(pack.device),
            model_path=self.model_path,
        )


@dataclass
class _PackContext:
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


class _PackRun:
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
        self.context = _PackContext(device=device, size=self.slots)
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
        models = build_models(first, device)
        self.pack = ModelPack(models, [s.hyperparameters for s in first], [s.trial_id for s in first], [s.fault for s in first], chunk_size=chunk_size)
        # the set-up (networks, patch streams, optimisers) is charged in equal shares
        streams = [self._stream(spec) for spec in first]
        setup = overhead_seconds + (time.perf_counter() - self.started) / len(first)
        self.trials = [_TrialProgress(spec, stream, setup, admitted_at=self.started) for spec, stream in zip(first, streams)]
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
        (model,) = build_models([spec], self.context.device)
        added = self.pack.add(model, spec.hyperparameters, spec.trial_id, spec.fault)
        assert added == index, (added, index)
        stream = self._stream(spec)
        self.trials.append(_TrialProgress(spec, stream, self.overhead_seconds + time.perf_counter() - began, admitted_at=began, first_tick=self.tick))
        if self.progress:
            log.info("trial %s takes a free slot after %d epochs of the pack", spec.trial_id, self.tick)
        return index

    def _fill(self) -> None:
        """Free slots take queued trials, in queue order."""
        while len(self.pack.active) < self.slots and len(self.trials) < len(self.specs):
            self._admit()

    def _payload(self) -> dict:
        """Everything :meth:`_restore` needs to continue after this tick exactly as if never stopped."""
        now = time.perf_counter()
        state = getattr(self.stopper, "state_dict", None)
        return {
            "trial_ids": [spec.trial_id for spec in self.specs],
            "epoch": self.tick,
            "admitted": len(self.trials),
            "step": self.step,
            "elapsed": now - self.started,
            "data_seconds": self.context.data_seconds,
            "step_seconds": self.context.step_seconds,
            "chunk_size": self.pack.chunk_size,
            "failed": dict(self.pack.failed),
            "retired": sorted(self.pack.retired),
            "stopper": state() if state is not None else None,
            "models": [model.state_dict() for model in self.models],
            "optimizers": [optimizer.state_dict() for optimizer in self.pack.optimizers],
            "streams": [stream_state(trial.stream) for trial in self.trials],
            "trials": [
                {
                    "charged_seconds": trial.charged_seconds,
                    "admitted_after": trial.admitted_at - self.started,
                    "first_tick": trial.first_tick,
                    "ended_after": None if trial.ended_at is None else trial.ended_at - self.started,
                    "epochs_run": trial.epochs_run,
                    "steps_run": trial.steps_run,
                    "val_epochs": list(trial.val_epochs),
                    "val_dice": list(trial.val_dice),
                    "best": None if trial.best is None else {"dice": trial.best[0], "epoch": trial.best[1], "state": trial.best[2]},
                    "test_dice": trial.test_dice,
                    "model_path": trial.model_path,
                    "stopped_at": trial.stopped_at,
                    "done": trial.done,
                    "epoch_loss": trial.epoch_loss,
                }
                for trial in self.trials
            ],
        }

    def _restore(self, saved: dict) -> None:
        # the queued trials admitted before the checkpoint are admitted again, in the same order, so the
        # pack's optimiser layout is the one the saved optimiser state belongs to
        while len(self.trials) < saved["admitted"]:
            self._admit()
        self.started = time.perf_counter() - saved["elapsed"]
        self.step, self.tick = saved["step"], saved["epoch"]
        self.context.data_seconds, self.context.step_seconds = saved["data_seconds"], saved["step_seconds"]
        self.pack.chunk_size = saved["chunk_size"]
        self.pack.failed.update(saved["failed"])
        self.pack.retired.update(saved["retired"])
        if saved["stopper"] is not None and hasattr(self.stopper, "load_state_dict"):
            self.stopper.load_state_dict(saved["stopper"])  # type: ignore[union-attr]
        for model, state in zip(self.models, saved["models"], strict=True):
            model.load_state_dict(state)
        for optimizer, state in zip(self.pack.optimizers, saved["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        for trial, stream, progress in zip(self.trials, saved["streams"], saved["trials"], strict=True):
            restore_stream(trial.stream, stream)
            trial.charged_seconds = progress["charged_seconds"]
            trial.admitted_at = self.started + progress["admitted_after"]
            trial.first_tick = progress["first_tick"]
            trial.ended_at = None if progress["ended_after"] is None else self.started + progress["ended_after"]
            trial.epochs_run, trial.steps_run = progress["epochs_run"], progress["steps_run"]
            trial.val_epochs, trial.val_dice = list(progress["val_epochs"]), list(progress["val_dice"])
            best = progress["best"]
            trial.best = None if best is None else (best["dice"], best["epoch"], best["state"])
            trial.test_dice, trial.model_path = progress["test_dice"], progress["model_path"]
            trial.stopped_at, trial.done, trial.epoch_loss = progress["stopped_at"], progress["done"], progress["epoch_loss"]
        log.info("resumed %s after epoch %d from %s", ", ".join(t.spec.trial_id for t in self.trials), saved["epoch"], self.checkpoint)

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
        scores = evaluate_pack(self.pack, self.volumes["val"], self.recipe, members=members)
        self._charge(started, members)
        for i, dice in scores.items():
            trial = self.trials[i]
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
        if self.volumes["test"]:
            started = time.perf_counter()
            scores = evaluate_pack(self.pack, self.volumes["test"], self.recipe, what="test", members=members)
            self._charge(started, members)
            for i, dice in scores.items():
                self.trials[i].test_dice = dice
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
        finishing and refilling slots as :class:`_PackRun` says; saving a checkpoint every ``checkpoint_every``
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
                save_checkpoint(self.checkpoint, self._payload())
        return self.finish()


def _check_writable(folder: str, source: str) -> None:
    """Refuse a folder the best weights could not be saved in, before hours of training find it out."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-", delete=True)
        probe.close()
    except OSError as exc:
        raise ConfigError(source, f"{folder!r} cannot be written ({exc.strerror or type(exc).__name__})", "give a folder you can write to") from None


def run_trials(
    plan: TrialPlan,
    *,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    progress: bool = True,
    plan_path: str = "<plan>",
    stopper: EarlyStopper | None = None,
) -> list[TrialResult]:
    """Run every trial of a plan, packing trials of the same network, and return their results.

    Without early stopping, the trials of a network train in packs of ``plan.pack_size``, one pack after
    another. With it (``plan.early_stopping``, or a ``stopper``), all trials of a network form one queue
    trained in ``plan.pack_size`` slots: a trial the stopper stops leaves the batched model at once (the
    step gets cheaper), and each slot freed by a stopped, finished or failed trial takes the next queued
    trial, which starts at its epoch 0.

    Args:
        plan: the validated trial plan (data paths absolute).
        on_epoch: called as ``on_epoch(trial_id, epoch, val_dice)`` after each validation (``epoch`` is the
            trial's own, 1-based).
        on_step: called as ``on_step(trial_id, step, loss)`` after each optimiser step (``step`` counts the
            pack's steps).
        progress: log one line per trial and validation at INFO level (``proxyhpo.training.runner``).
        plan_path: the plan's file, used in error messages.
        stopper: the early-stopping rule (see :class:`~proxyhpo.training.early_stopping.EarlyStopper`), one
            for every trial of the plan; default: successive halving with ``plan.early_stopping``, or none.

    Returns:
        one :class:`TrialResult` per trial, in plan order; failed trials (diverged, out of memory) are
        results with ``state=FAILED``, stopped ones ``state=STOPPED`` with ``stopped_at_epoch``, not exceptions.

    Example:
        >>> plan = plan.model_copy(update={"early_stopping": EarlyStoppingConfig(reduction_factor=3, min_epochs=5)})  # doctest: +SKIP
        >>> [r.stopped_at_epoch for r in run_trials(plan)]  # doctest: +SKIP
        [None, 5, 15, 5]

    Raises:
        ConfigError: when the recipe's patch or window does not suit a network, or the device is absent.
        DataError: when a data file is missing or unreadable.
    """
    recipe = plan.resolved_recipe()
    device = resolve_device(plan.device, source=f"{plan_path}: key 'device'")
    for s in plan.trials:
        check_patch_size(recipe.patch_size, s.network.levels, what="recipe.patch_size", path=plan_path)
        check_patch_size(recipe.roi_size, s.network.levels, what="recipe.roi_size", path=plan_path)
    if plan.save_model_dir is not None:
        _check_writable(plan.save_model_dir, f"{plan_path}: key 'save_model_dir'")

    t0 = time.perf_counter()
    kw = dict(cache_dir=plan.cache_dir, num_workers=plan.num_workers)
    volumes = {
        "train": cache_volumes(plan.train, recipe, device, training=True, what="train", **kw),
        "val": cache_volumes(plan.val, recipe, device, training=False, what="val", **kw),
        "test": cache_volumes(plan.test, recipe, device, training=False, what="test", **kw) if plan.test else [],
    }
    # Preprocessing is shared by every trial of the run: each is charged an equal part of it.
    overhead = (time.perf_counter() - t0) / len(plan.trials)
    if progress:
        log.info("cached %d train, %d val, %d test volumes in %.1f s on %s", *(len(v) for v in volumes.values()), time.perf_counter() - t0, device)

    groups: dict[NetworkConfig, list[TrialSpec]] = {}
    for s in plan.trials:
        groups.setdefault(s.network, []).append(s)
    if stopper is None:
        stopper = make_stopper(plan.early_stopping, plan.epochs)
    by_id: dict[str, TrialResult] = {}
    for network, specs in groups.items():
        if plan.pack_size == "auto":
            size = auto_pack_size(network, recipe, plan.batch_size, device)
        else:
            size = plan.pack_size
        size = max(1, min(size, len(specs)))
        # with early stopping a network's trials queue for the slots; without, they train in packs one after another
        queues = [specs] if stopper is not None else [specs[start : start + size] for start in range(0, len(specs), size)]
        for chunk in queues:
            checkpoint = plan.checkpoint if plan.checkpoint is None or len(plan.trials) == len(chunk) else f"{plan.checkpoint}-p{len(by_id) // size}"
            if progress:
                log.info("training %s on %s: %s", network.name, device, ", ".join(s.trial_id for s in chunk))
            pack_run = _PackRun(
                chunk,
                plan,
                recipe,
                device,
                volumes,
                slots=size,
                chunk_size=size,
                overhead_seconds=overhead,
                on_epoch=on_epoch,
                on_step=on_step,
                progress=progress,
                checkpoint=checkpoint,
                stopper=stopper,
            )
            for r in pack_run.run():
                by_id[r.trial_id] = r
    return [by_id[s.trial_id] for s in plan.trials]


def run_trial_file(
    path: str | Path,
    out: str | Path | None = None,
    *,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    progress: bool = True,
) -> list[TrialResult]:
    """Read a trial plan YAML, run it and write the results JSON atomically.

    Args:
        path: the plan file (see :class:`~proxyhpo.config.TrialPlan`).
        out: the results file; default ``<plan stem>.results.json`` beside the plan.
        on_epoch, on_step, progress: as for :func:`run_trials`.

    Returns:
        the results, in plan order.

    Raises:
        ConfigError: naming the file and key when the plan is invalid.
        DataError: when a data file is missing or unreadable.
    """
    path = Path(path)
    plan = TrialPlan.from_yaml(path)
    results = run_trials(plan, on_epoch=on_epoch, on_step=on_step, progress=progress, plan_path=str(path))
    target = Path(out) if out is not None else path.with_name(f"{path.stem}.results.json")
    TrialResults(results=tuple(results)).write(target)
    return results
