"""MONAI's SwinUNETR (Hatamizadeh et al., 2022): a Swin transformer encoder with a convolutional U-Net decoder.

SwinUNETR's resolutions are fixed: a patch embedding and four Swin stages halve the image five times, so every
patch side must be a multiple of 32, whatever ``levels`` says. What a proxy shrinks is the rest:
``base_channels`` is ``feature_size`` (a multiple of 12; it doubles per stage), ``num_res_units`` the Swin
blocks of each stage (``depths``), and ``levels`` the stages that keep their blocks: the first ``levels - 1``
of the four (5: every stage); the deeper ones only merge patches. The full network, 24 features and 2 blocks a
stage, is MONAI's default SwinUNETR; a proxy keeps 12 features and 1 block.

The decoder normalises with group norm of 12 groups (every width is a multiple of 12), not MONAI's default
instance norm: at a 32-voxel patch the deepest level is one voxel, where instance norm is undefined. Each Swin
block keeps its relative-position index as a buffer, so SwinUNETRs do not pack: one model per slot.
It needs ``einops`` (a dependency of MONAI's Swin blocks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxyhpo.networks._base import NetworkFamily, instantiate

if TYPE_CHECKING:
    from torch import nn

    from proxyhpo.config.network import NetworkConfig

__all__ = ["SwinUNETRFamily", "swin_depths"]

#: SwinUNETR's Swin stages (MONAI's encoder has exactly four)
SWIN_STAGES = 4
#: group-norm groups: SwinUNETR's feature_size is a multiple of 12, so every width divides into them
NORM_GROUPS = 12


def swin_depths(levels: int, blocks: int) -> tuple[int, ...]:
    """Swin blocks of each of the four stages: ``blocks`` in the first ``levels - 1``, none in the deeper ones.

    Example:
        >>> swin_depths(5, 2), swin_depths(3, 1)
        ((2, 2, 2, 2), (1, 1, 0, 0))
    """
    kept = min(SWIN_STAGES, levels - 1)
    return (max(1, blocks),) * kept + (0,) * (SWIN_STAGES - kept)


class SwinUNETRFamily(NetworkFamily):
    """MONAI's SwinUNETR: a Swin transformer encoder of four stages and a convolutional decoder (sides multiple of 32)."""

    name = "swinunetr"
    full_size = (5, 24, 2)  # MONAI's default SwinUNETR: feature_size 24, depths (2, 2, 2, 2)
    proxy_size = (12, 1)  # the smallest feature_size MONAI allows, one Swin block a stage
    packable = False  # each Swin block's relative-position index is a buffer
    patch_multiple = 32  # a patch embedding and four merging stages halve every side five times

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        return instantiate(self.network_def(cfg, in_channels, out_channels))

    def network_def(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> dict[str, Any]:
        if cfg.base_channels % NORM_GROUPS:
            raise ValueError(f"SwinUNETR's feature_size (base_channels) must be a multiple of 12, got {cfg.base_channels}")
        return {
            "_target_": "monai.networks.nets.SwinUNETR",
            "spatial_dims": 3,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "feature_size": cfg.base_channels,
            "depths": list(swin_depths(cfg.levels, cfg.num_res_units)),
            "norm_name": ["GROUP", {"num_groups": NORM_GROUPS}],
        }
