"""MONAI's residual U-Net, the paper's network family: the full U-Net and its proxies.

The full network is the paper's 5-level residual U-Net with "2 residual blocks per level" (MONAI's
``num_res_units=2``: two convolutions per residual unit); its channels 16, 32, 64, 128, 256 are ours, since
the paper does not state the full model's first width. A proxy network shrinks it as the paper does: 4
channels in the first level (doubling per level), one residual unit, and 5, 4 or 3 levels. Both are MONAI
:class:`~monai.networks.nets.UNet` instances.

Normalisation is instance norm (MONAI's default for ``UNet``). It keeps no running statistics, so a
network has parameters and no buffers; this is what lets several networks be trained as one batched
model with ``torch.func.vmap`` (batch norm's running-stat updates are in-place writes that ``vmap``
cannot batch) and makes a network's output for one patch independent of the other patches in a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxyhpo.networks._base import NetworkFamily, instantiate

if TYPE_CHECKING:
    from monai.networks.nets import UNet

    from proxyhpo.config.network import NetworkConfig

__all__ = ["ResidualUNet", "count_parameters"]


class ResidualUNet(NetworkFamily):
    """MONAI's residual U-Net, the paper's family (instance norm and PReLU are MONAI's defaults, not the paper's).

    ``channels`` double from ``base_channels`` over ``levels`` levels, strides are 2, and each level has a
    residual unit of ``num_res_units`` convolutions, with instance norm and PReLU (MONAI's defaults).
    """

    name = "unet"

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> UNet:
        return instantiate(self.network_def(cfg, in_channels, out_channels))  # type: ignore[return-value]

    def network_def(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> dict[str, Any]:
        return {
            "_target_": "monai.networks.nets.UNet",
            "spatial_dims": 3,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "channels": list(cfg.channels),
            "strides": list(cfg.strides),
            "num_res_units": cfg.num_res_units,
            "norm": "instance",
        }


def count_parameters(module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
