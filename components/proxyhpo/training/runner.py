"""Running a trial plan: one trial or packs of trials, with validation, test and accounting.

``run_trials`` is the library entry point behind ``proxyhpo train TRIAL.yaml``; ``run_trial_file``
reads the YAML, runs it and writes the result JSON. Trials are grouped by network architecture and
packed (see :mod:`proxyhpo.training.pack`); each trial keeps its own seed, data stream and optimiser
settings, so packing changes the cost of a trial, not its outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from proxyhpo.errors import ConfigError
from proxyhpo.networks import NetworkConfig, build_network, check_patch_size
from proxyhpo.training.data import PatchStream, cache_volumes
from proxyhpo.training.pack import ModelPack, is_out_of_memory
from proxyhpo.training.plan import HyperParameters, Recipe, TrialPlan, TrialSpec
from proxyhpo.training.result import TrialResult, TrialState, write_results

__all__ = [
    "run_trials",
    "run_trial_file",
    "resolve_device",
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


def resolve_device(device: str, *, path: str = "<plan>") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cuda"`` without a GPU is a :class:`ConfigError`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(path, "key 'device' is 'cuda' but no CUDA GPU is available", "use device: auto or cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(path, f"key 'device' must be auto, cpu or cuda, got {device!r}", "use device: auto")
    return torch.device(device)


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
        specs = [TrialSpec(trial_id=f"probe{i}", hyper=HyperParameters(lr=1e-4), network=network) for i in range(k)]
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            models = build_models(specs, device)
            pack = ModelPack(models, [s.hyper for s in specs], [s.trial_id for s in specs])
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


def evaluate_pack(pack: ModelPack, volumes: Sequence[dict], recipe: Recipe, what: str = "validation") -> dict[int, float]:
    """Mean foreground Dice of every active model of a pack over ``volumes``, by sliding-window inference.

    All models of a chunk share each window: one batched forward gives every model's logits.

    Args:
        pack: the pack.
        volumes: cached volumes with ``image`` ``(C, D, H, W)`` and ``label`` ``(1, D, H, W)``.
        recipe: inference window (``roi_size``) and windows per call (``sw_batch_size``).
        what: name used in failure messages.

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

    pack.run_chunked(work, what)
    return {i: v for i, v in scores.items() if i not in pack.failed}


def _run_pack(
    specs: Sequence[TrialSpec],
    plan: TrialPlan,
    recipe: Recipe,
    device: torch.device,
    train_vols: list[dict],
    val_vols: list[dict],
    test_vols: list[dict],
    *,
    chunk_size: int,
    overhead_seconds: float,
    on_epoch: EpochCallback | None,
    on_step: StepCallback | None,
    progress: bool,
) -> list[TrialResult]:
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    k = len(specs)
    ids = [s.trial_id for s in specs]
    models = build_models(specs, device)
    streams = [PatchStream(train_vols, recipe, plan.batch_size, s.hyper.intensity_shift_prob, s.seed) for s in specs]
    pack = ModelPack(models, [s.hyper for s in specs], ids, [s.fault for s in specs], chunk_size=chunk_size)
    # Device seconds charged to each trial: an equal share of the setup, then of each step by the models in it.
    charged = [overhead_seconds + (time.perf_counter() - t0) / k] * k
    ended_at: list[float | None] = [None] * k
    epochs_run = [0] * k
    val_epochs: list[list[int]] = [[] for _ in range(k)]
    val_dice: list[list[float]] = [[] for _ in range(k)]
    best: list[tuple[float, int, dict[str, torch.Tensor]] | None] = [None] * k
    data_seconds = step_seconds = 0.0

    def settle(t_start: float, members: list[int]) -> float:
        now = time.perf_counter()
        for i in members:
            charged[i] += (now - t_start) / len(members)
        for i in pack.failed:
            if ended_at[i] is None:
                ended_at[i] = now
        return now

    step = 0
    for epoch in range(1, plan.epochs + 1):
        if not pack.active:
            break
        iters = [stream.epoch() for stream in streams]
        for _ in range(streams[0].steps_per_epoch()):
            members = pack.active
            if not members:
                break
            t_a = time.perf_counter()
            batches = {i: next(iters[i]) for i in members}
            t_b = time.perf_counter()
            step += 1
            losses = pack.train_step(batches, step)  # reading the losses back synchronises the GPU
            t_c = settle(t_a, members)
            data_seconds += t_b - t_a
            step_seconds += t_c - t_a
            if on_step is not None:
                for i, v in losses.items():
                    on_step(ids[i], step, v)
        for i in pack.active:
            epochs_run[i] = epoch
        if pack.active and (epoch % plan.val_every == 0 or epoch == plan.epochs):
            members = pack.active
            t_v = time.perf_counter()
            scores = evaluate_pack(pack, val_vols, recipe)
            settle(t_v, members)
            for i, d in scores.items():
                val_epochs[i].append(epoch)
                val_dice[i].append(d)
                if best[i] is None or d > best[i][0]:
                    state = {n: p.detach().clone() for n, p in models[i].state_dict().items()}
                    best[i] = (d, epoch, state)
                if progress:
                    log.info("trial %s epoch %d/%d val_dice %.4f", ids[i], epoch, plan.epochs, d)
                if on_epoch is not None:
                    on_epoch(ids[i], epoch, d)

    # External test and saved weights use each trial's best-validation weights.
    test_dice: dict[int, float] = {}
    model_paths: dict[int, str] = {}
    finished = [i for i in pack.active if best[i] is not None]
    for i in finished:
        models[i].load_state_dict(best[i][2])
    if test_vols and finished:
        members = pack.active
        t_t = time.perf_counter()
        test_dice = evaluate_pack(pack, test_vols, recipe, what="test")
        settle(t_t, members)
    if plan.save_model_dir:
        out = Path(plan.save_model_dir)
        out.mkdir(parents=True, exist_ok=True)
        for i in pack.active:
            if best[i] is not None:
                path = out / f"{ids[i]}.pt"
                tmp = path.with_suffix(".pt.tmp")
                torch.save({n: v.cpu() for n, v in best[i][2].items()}, tmp)
                tmp.replace(path)
                model_paths[i] = str(path)

    t_end = time.perf_counter()
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else 0
    wait = data_seconds / step_seconds if step_seconds > 0 else 0.0
    results = []
    for i, s in enumerate(specs):
        failed = i in pack.failed
        hours = charged[i] / 3600.0
        results.append(
            TrialResult(
                trial_id=s.trial_id,
                state=TrialState.FAILED if failed else TrialState.COMPLETE,
                fail_reason=pack.failed.get(i),
                hyper=s.hyper,
                network=s.network.name,
                data_label=s.data_label,
                seed=s.seed,
                round=s.round,
                tags=dict(s.tags),
                epochs_run=epochs_run[i],
                val_epochs=val_epochs[i],
                val_dice=val_dice[i],
                final_val_dice=val_dice[i][-1] if val_dice[i] and not failed else None,
                best_val_dice=best[i][0] if best[i] is not None and not failed else None,
                best_epoch=best[i][1] if best[i] is not None and not failed else None,
                test_dice=test_dice.get(i),
                wall_seconds=overhead_seconds + ((ended_at[i] or t_end) - t0),
                gpu_hours=hours if cuda else 0.0,
                cpu_hours=0.0 if cuda else hours,
                peak_gpu_mem_bytes=peak,
                data_wait_fraction=wait,
                pack_size=k,
                device=str(device),
                model_path=model_paths.get(i),
            )
        )
    return results


def run_trials(
    plan: TrialPlan,
    *,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    progress: bool = True,
    plan_path: str = "<plan>",
) -> list[TrialResult]:
    """Run every trial of a plan, packing trials of the same network, and return their results.

    Args:
        plan: the validated trial plan (data paths absolute).
        on_epoch: called as ``on_epoch(trial_id, epoch, val_dice)`` after each validation.
        on_step: called as ``on_step(trial_id, step, loss)`` after each optimiser step.
        progress: log one line per trial and validation at INFO level (``proxyhpo.training.runner``).
        plan_path: the plan's file, used in error messages.

    Returns:
        one :class:`TrialResult` per trial, in plan order; failed trials (diverged, out of memory) are
        results with ``state=FAILED``, not exceptions.

    Raises:
        ConfigError: when the recipe's patch or window does not suit a network, or the device is absent.
        DataError: when a data file is missing or unreadable.
    """
    recipe = plan.resolved_recipe()
    device = resolve_device(plan.device, path=plan_path)
    for s in plan.trials:
        check_patch_size(recipe.patch_size, s.network.levels, what="recipe.patch_size", path=plan_path)
        check_patch_size(recipe.roi_size, s.network.levels, what="recipe.roi_size", path=plan_path)

    t0 = time.perf_counter()
    kw = dict(cache_dir=plan.cache_dir, num_workers=plan.num_workers)
    train_vols = cache_volumes(plan.train, recipe, device, training=True, what="train", **kw)
    val_vols = cache_volumes(plan.val, recipe, device, training=False, what="val", **kw)
    test_vols = cache_volumes(plan.test, recipe, device, training=False, what="test", **kw) if plan.test else []
    # Preprocessing is shared by every trial of the run: each is charged an equal part of it.
    overhead = (time.perf_counter() - t0) / len(plan.trials)
    if progress:
        log.info("cached %d train, %d val, %d test volumes in %.1f s on %s", len(train_vols), len(val_vols), len(test_vols), time.perf_counter() - t0, device)

    groups: dict[NetworkConfig, list[TrialSpec]] = {}
    for s in plan.trials:
        groups.setdefault(s.network, []).append(s)
    by_id: dict[str, TrialResult] = {}
    for network, specs in groups.items():
        if plan.pack_size == "auto":
            size = auto_pack_size(network, recipe, plan.batch_size, device)
        else:
            size = plan.pack_size
        size = max(1, min(size, len(specs)))
        for start in range(0, len(specs), size):
            chunk = specs[start : start + size]
            if progress:
                log.info("training %s on %s: %s", network.name, device, ", ".join(s.trial_id for s in chunk))
            for r in _run_pack(
                chunk,
                plan,
                recipe,
                device,
                train_vols,
                val_vols,
                test_vols,
                chunk_size=size,
                overhead_seconds=overhead,
                on_epoch=on_epoch,
                on_step=on_step,
                progress=progress,
            ):
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
        path: the plan file (see :class:`~proxyhpo.training.plan.TrialPlan`).
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
    write_results(target, results)
    return results
