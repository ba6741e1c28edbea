"""Running a trial plan: its trials grouped by network, sized into packs and trained, with their results.

``run_trials`` is the library entry point behind ``proxyhpo train TRIAL.yaml``; ``run_trial_file``
reads the YAML, runs it and writes the result JSON. Trials are grouped by network architecture and
packed (see :mod:`proxyhpo.training.pack`; one pack's loop is :mod:`proxyhpo.training.pack_run`); each
trial keeps its own seed, data stream and optimiser settings, so packing changes the cost of a trial,
not its outcome.
"""

from __future__ import annotations

import logging
import tempfile
import time
from functools import partial
from pathlib import Path

from proxyhpo.config import NetworkConfig, TrialPlan, TrialResult, TrialResults, TrialSpec, check_patch_size, resolve_pack_size
from proxyhpo.devices import resolve_device
from proxyhpo.errors import ConfigError
from proxyhpo.training.capacity import pack_capacity
from proxyhpo.training.memory import check_pack_fits
from proxyhpo.training.data import cache_volumes, image_channels
from proxyhpo.training.early_stopping import EarlyStopper, make_stopper
from proxyhpo.training.pack_run import EpochCallback, PackRun, StepCallback

__all__ = ["run_trials", "run_trial_file", "EpochCallback", "StepCallback"]

log = logging.getLogger(__name__)


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
    trial, which starts at its epoch 0. ``pack_size: auto`` is as many as the device holds
    (:func:`~proxyhpo.config.resolve_pack_size` with :func:`~proxyhpo.training.capacity.pack_capacity`: measured
    on a GPU, 4 on a CPU), never more than the network's trials.

    Args:
        plan: the validated trial plan (data paths absolute).
        on_epoch: called as ``on_epoch(trial_id, epoch, val_dice)`` after each validation (``epoch`` is the
            trial's own, 1-based).
        on_step: called as ``on_step(trial_id, step, loss)`` after each optimiser step (``step`` counts the
            pack's steps).
        progress: log one line per trial and validation at INFO level (``proxyhpo.training.pack_run``).
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
        check_patch_size(recipe.patch_size, s.network.levels, what="recipe.patch_size", path=plan_path, family=s.network.family)
        check_patch_size(recipe.roi_size, s.network.levels, what="recipe.roi_size", path=plan_path, family=s.network.family)
    if plan.save_model_dir is not None:
        _check_writable(plan.save_model_dir, f"{plan_path}: key 'save_model_dir'")

    t0 = time.perf_counter()
    kw = dict(cache_dir=plan.cache_dir, num_workers=plan.num_workers, num_classes=plan.num_classes)
    volumes = {
        "train": cache_volumes(plan.train, recipe, device, training=True, what="train", **kw),
        "val": cache_volumes(plan.val, recipe, device, training=False, what="val", **kw),
        "internal_test": cache_volumes(plan.internal_test, recipe, device, training=False, what="internal test", **kw) if plan.internal_test else [],
        "test": cache_volumes(plan.test, recipe, device, training=False, what="test", **kw) if plan.test else [],
    }
    # Preprocessing is shared by every trial of the run: each is charged an equal part of it.
    overhead = (time.perf_counter() - t0) / len(plan.trials)
    if progress:
        log.info("cached %d train, %d val, %d internal test, %d test volumes in %.1f s on %s", *(len(v) for v in volumes.values()), time.perf_counter() - t0, device)

    groups: dict[NetworkConfig, list[TrialSpec]] = {}
    for s in plan.trials:
        groups.setdefault(s.network, []).append(s)
    if stopper is None:
        stopper = make_stopper(plan.early_stopping, plan.epochs)
    by_id: dict[str, TrialResult] = {}
    channels = image_channels(volumes)
    for network, specs in groups.items():
        size = resolve_pack_size(plan.pack_size, trials=len(specs), capacity=partial(pack_capacity, network, recipe, plan.batch_size, device, in_channels=channels, out_channels=plan.num_classes))
        if plan.pack_size != "auto" and size > 1:  # auto measured what fits; a number is checked before a model is built
            check_pack_fits(
                network, size, in_channels=channels, out_channels=plan.num_classes, patch_size=recipe.patch_size,
                batch_size=plan.batch_size * recipe.num_samples, device=device, where=plan_path,
            )
        # with early stopping a network's trials queue for the slots; without, they train in packs one after another
        queues = [specs] if stopper is not None else [specs[start : start + size] for start in range(0, len(specs), size)]
        for chunk in queues:
            checkpoint = plan.checkpoint if plan.checkpoint is None or len(plan.trials) == len(chunk) else f"{plan.checkpoint}-p{len(by_id) // size}"
            if progress:
                log.info("training %s on %s: %s", network.name, device, ", ".join(s.trial_id for s in chunk))
            pack_run = PackRun(
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
