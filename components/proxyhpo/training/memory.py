"""What a pack's training step holds in memory, counted on PyTorch's meta device before anything is allocated.

A pack of ``K`` models of one network trains as one batched model: it holds ``K`` times one model's weights,
gradients and Adam moments, and ``K`` times the activations autograd saves for the backward pass of a batch.
Those are counted here by building the network on the meta device (shapes, no storage) and running its forward
pass under :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor kept for backward: the
count follows any family's real forward, not a formula per architecture. What it leaves out (the allocator's
rounding, the loss's and the optimiser's temporaries, a convolution's workspace) makes it a floor: a pack it
says does not fit does not.

:func:`check_pack_fits` refuses, in one line naming ``pack_size``, a pack whose floor exceeds the memory the
device has free, before the first model is built (issue 23: a pack of 10,000 full U-Nets was an OOM kill).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from proxyhpo.config import NetworkConfig
from proxyhpo.errors import ConfigError

__all__ = ["model_training_bytes", "free_bytes", "check_pack_fits"]

#: Bytes of one float32 parameter in training: the weight, its gradient and Adam's two moments.
_PARAMETER_BYTES = 4 * 4


def model_training_bytes(network: NetworkConfig, in_channels: int, out_channels: int, patch_size: Sequence[int], batch_size: int) -> int | None:
    """Bytes one model of ``network`` holds in a training step on a batch of ``batch_size`` patches of ``patch_size``.

    Args:
        network: the network (any registered family).
        in_channels, out_channels: image channels and classes.
        patch_size: ``(D, H, W)`` of a training patch.
        batch_size: patches per step.

    Returns:
        the parameters' training state plus the activations saved for backward and the logits' gradient, in bytes;
        None for a network whose forward pass cannot run on the meta device (SwinUNETR reads a value with
        ``.item()``): its packs are not checked.

    Example:
        >>> from proxyhpo.config import NetworkConfig
        >>> model_training_bytes(NetworkConfig.proxy(3), 1, 2, (32, 32, 32), 2) > 0
        True
    """
    from proxyhpo.networks import build_network

    saved = 0

    def count(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    try:
        with torch.device("meta"):
            model = build_network(network, in_channels, out_channels).train()
        batch = torch.empty(batch_size, in_channels, *patch_size, device="meta")
        with torch.autograd.graph.saved_tensors_hooks(count, lambda tensor: tensor):
            logits = model(batch)
    except (RuntimeError, NotImplementedError):  # a forward that needs real values
        return None
    outputs = logits if isinstance(logits, (list, tuple)) else [logits]
    gradients = sum(output.numel() * output.element_size() for output in outputs)
    return _PARAMETER_BYTES * sum(p.numel() for p in model.parameters()) + saved + gradients


def free_bytes(device: torch.device) -> int:
    """Memory free for a pack on ``device``: the GPU's free memory, or the machine's available memory on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_pack_fits(
    network: NetworkConfig,
    pack_size: int,
    *,
    in_channels: int,
    out_channels: int,
    patch_size: Sequence[int],
    batch_size: int,
    device: torch.device,
    where: str = "<plan>",
    available: int | None = None,
) -> None:
    """Refuse a pack of ``pack_size`` models of ``network`` whose training state (:func:`model_training_bytes`) is more
    than the device has free.

    Args:
        network, in_channels, out_channels, patch_size, batch_size: as :func:`model_training_bytes` takes them.
        pack_size: the models trained at once.
        device: where the pack trains.
        where: the file the setting came from, named in the message.
        available: the bytes free (default: :func:`free_bytes` of ``device`` now).

    Raises:
        ConfigError: naming ``pack_size``, what the pack needs and what is free, and the largest pack that fits.
    """
    per_model = model_training_bytes(network, in_channels, out_channels, patch_size, batch_size)
    if per_model is None:
        return
    free = free_bytes(device) if available is None else available
    if pack_size * per_model <= free:
        return
    fits = free // per_model
    gib = 2**30
    raise ConfigError(
        where,
        f"pack_size {pack_size} needs at least {pack_size * per_model / gib:.1f} GiB for {pack_size} {network.name} models "
        f"({per_model / gib:.2f} GiB each at patch {tuple(patch_size)} and batch {batch_size}), more than the {free / gib:.1f} GiB free on {device}",
        f"set pack_size to at most {fits} or to auto" if fits >= 1 else "use a smaller patch, batch or network: one model does not fit",
    )
