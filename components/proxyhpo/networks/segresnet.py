"""MONAI's SegResNet (Myronenko, 2018): a residual encoder of group-normed blocks and a light decoder.

``levels`` is the encoder's resolution levels (``len(blocks_down)``), ``base_channels`` its first width
(``init_filters``, doubling per level) and ``num_res_units`` its blocks per level: one block at the first level,
``num_res_units`` at the middle ones and twice as many at the deepest, so the full network, 4 levels of 8
channels with 2 blocks, is MONAI's default SegResNet (``blocks_down=(1, 2, 2, 4)``). Every decoder level has
one block. A proxy keeps the levels the study sweeps, with 4 channels and 1 block. Group norm takes at most 8
groups and no more than the first width, so every width divides into them; it keeps no running statistics,
so SegResNets pack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxyhpo.networks._base import NetworkFamily, instantiate

if TYPE_CHECKING:
    from torch import nn

    from proxyhpo.config.network import NetworkConfig

__all__ = ["SegResNetFamily", "blocks_down"]


def blocks_down(levels: int, blocks: int) -> tuple[int, ...]:
    """Residual blocks of each encoder level: 1, then ``blocks`` at the middle levels and ``2 * blocks`` at the deepest.

    Example:
        >>> blocks_down(4, 2)
        (1, 2, 2, 4)
    """
    blocks = max(1, blocks)
    return (1, *(blocks,) * (levels - 2), 2 * blocks)


class SegResNetFamily(NetworkFamily):
    """MONAI's SegResNet: residual encoder levels of group-normed blocks, one block per decoder level."""

    name = "segresnet"
    full_size = (4, 8, 2)  # MONAI's default SegResNet
    proxy_size = (4, 1)

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        return instantiate(self.network_def(cfg, in_channels, out_channels))

    def network_def(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> dict[str, Any]:
        return {
            "_target_": "monai.networks.nets.SegResNet",
            "spatial_dims": 3,
            "init_filters": cfg.base_channels,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": ["GROUP", {"num_groups": min(8, cfg.base_channels)}],
            "blocks_down": list(blocks_down(cfg.levels, cfg.num_res_units)),
            "blocks_up": [1] * (cfg.levels - 1),
        }
