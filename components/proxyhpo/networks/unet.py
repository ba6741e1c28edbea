"""The full U-Net and the proxy U-Nets of the proxy-network study, from one config model.

The full network is the paper's 5-level residual U-Net (channels 16, 32, 64, 128, 256, two
convolutions per residual unit). A proxy network shrinks it: 4 channels in the first level (doubling
per level), one convolution per residual unit, and 5, 4 or 3 levels. Both are MONAI
:class:`~monai.networks.nets.UNet` instances.

Normalisation is instance norm (MONAI's default for ``UNet``). It keeps no running statistics, so a
network has parameters and no buffers; this is what lets several networks be trained as one batched
model with ``torch.func.vmap`` (batch norm's running-stat updates are in-place writes that ``vmap``
cannot batch) and makes a network's output for one patch independent of the other patches in a batch.
"""

from __future__ import annotations

from monai.networks.nets import UNet

from proxyhpo.config.network import NetworkConfig

__all__ = ["build_network", "count_parameters"]


def build_network(cfg: NetworkConfig, in_channels: int = 1, out_channels: int = 2) -> UNet:
    """Build the MONAI 3D ``UNet`` described by ``cfg``.

    Args:
        cfg: the network config.
        in_channels: image channels (1 for CT or single-sequence MR).
        out_channels: classes including background (2: background and the merged foreground).

    Returns:
        a ``UNet`` mapping ``(B, in_channels, D, H, W)`` to ``(B, out_channels, D, H, W)`` logits, with
        instance norm and PReLU (MONAI's defaults).

    Raises:
        ValueError: when ``in_channels`` or ``out_channels`` is not positive.
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if out_channels < 1:
        raise ValueError(f"out_channels must be >= 1, got {out_channels}")
    return UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=cfg.channels,
        strides=cfg.strides,
        num_res_units=cfg.num_res_units,
        norm="instance",
    )


def count_parameters(module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
