"""How many models of a network a device holds: what ``pack_size: auto`` resolves to where the device is at hand.

The rule that reads ``pack_size`` is :func:`proxyhpo.config.resolve_pack_size` (torch-free, shared with
the controller); this module only measures the device for it.
"""

from __future__ import annotations

import logging

import torch

from proxyhpo.config import HyperParameters, NetworkConfig, Recipe, TrialSpec
from proxyhpo.training.memory import free_bytes
from proxyhpo.training.pack import ModelPack, is_out_of_memory

__all__ = ["CPU_PACK_SIZE", "pack_capacity"]

log = logging.getLogger(__name__)

#: Models a CPU is taken to hold: packing helps little there (bench/bench_training.py), and memory is
#: rarely the limit for proxy networks.
CPU_PACK_SIZE = 4


def pack_capacity(
    network: NetworkConfig,
    recipe: Recipe,
    batch_size: int,
    device: torch.device,
    *,
    in_channels: int = 1,
    out_channels: int = 2,
    limit: int = 64,
    headroom: float = 0.8,
) -> int:
    """Models of ``network`` that one pack trains at once in the device's free memory; :data:`CPU_PACK_SIZE` on a CPU.

    The footprint is measured, not guessed: one training step with one model and with two gives the
    fixed and the per-model memory; the pack fills ``headroom`` of the free memory with that.

    Args:
        network: the architecture to pack.
        recipe: patch size and samples per volume.
        batch_size: volumes per step.
        device: the training device.
        in_channels: image channels; out_channels: classes, background included (the plan's data's).
        limit: upper bound.
        headroom: fraction of free memory to plan for (the rest absorbs fragmentation).

    Returns:
        the number of models, between 1 and ``limit``.

    Example:
        >>> resolve_pack_size("auto", trials=8, capacity=lambda: pack_capacity(network, recipe, 2, device))  # doctest: +SKIP
        8
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
        pack = x = y = None
        try:
            pack = ModelPack(specs, device=device, in_channels=in_channels, out_channels=out_channels)
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
            pack = x = y = None  # noqa: F841 - release the probe before measuring free memory
            torch.cuda.empty_cache()
    per_model = max(peaks[1] - peaks[0], 1)
    fixed = max(peaks[0] - per_model, 0)
    free = free_bytes(device)
    k = int((headroom * free - fixed) // per_model)
    log.info("pack capacity: %d (%.1f MiB per model, %.1f MiB free)", k, per_model / 2**20, free / 2**20)
    return max(1, min(limit, k))
