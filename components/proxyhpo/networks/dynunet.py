"""MONAI's DynUNet in nnU-Net's configuration: kernels and strides planned from the spacing and patch, deep supervision.

nnU-Net plans its 3-D U-Net from the data (Isensee et al., 2021): at every stage it pools (stride 2) only the
axes whose spacing is within a factor 2 of the finest one and whose feature map is still at least 8 voxels
(so none falls below 4), and it convolves with 3-voxel kernels along those axes of similar spacing and
1-voxel ones along a much coarser axis; the spacing of a pooled axis doubles. Widths start at 32 and double per
stage up to 320, each stage is two plain convolutions (instance norm, leaky ReLU), and every decoder stage but
the coarsest has a segmentation head whose loss is added with weights halving per stage
(:func:`~proxyhpo.training.pack.per_model_dice_ce`).

Here ``levels`` caps the stages (the planner stops earlier when the patch is too small to pool),
``base_channels`` is the first width and ``num_res_units`` chooses the block: 0 is nnU-Net's two plain
convolutions, 1 or more MONAI's residual block. The full network is nnU-Net's (5 levels, 32 channels, plain
blocks); a proxy keeps nnU-Net's plan and blocks with 4 channels in its first level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from proxyhpo.networks._base import NetworkFamily, instantiate

if TYPE_CHECKING:
    from torch import nn

    from proxyhpo.config.network import NetworkConfig

__all__ = ["NnUNet", "plan_kernels_and_strides"]

#: nnU-Net's widest 3-D stage
MAX_WIDTH = 320
#: nnU-Net stops pooling an axis whose feature map would fall below this many voxels
MIN_FEATURE_MAP = 4


def plan_kernels_and_strides(
    patch_size: Sequence[int], spacing: Sequence[float] | None, max_levels: int
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """nnU-Net's convolution kernels and pooling strides of each stage, for a patch and spacing.

    Args:
        patch_size: the training patch, one side per axis.
        spacing: the voxel spacing per axis in mm (None: isotropic).
        max_levels: at most this many stages (``max_levels - 1`` poolings).

    Returns:
        ``(kernels, strides)``, one tuple per stage; the first stage's stride is 1 (MONAI's layout).

    Example:
        >>> kernels, strides = plan_kernels_and_strides((32, 32, 16), (1.0, 1.0, 3.0), 5)
        >>> kernels[0], strides[1:]  # z is 3x coarser: not convolved across nor pooled until x and y catch up
        ((3, 3, 1), [(2, 2, 1), (2, 2, 2), (2, 2, 2)])
    """
    sizes = [int(s) for s in patch_size]
    current = [float(s) for s in spacing] if spacing is not None else [1.0] * len(sizes)
    kernels: list[tuple[int, ...]] = []
    strides: list[tuple[int, ...]] = [(1,) * len(sizes)]
    while len(strides) < max_levels:
        finest = min(current)
        similar = [c / finest < 2 for c in current]  # axes of about the finest spacing
        kernels.append(tuple(3 if s else 1 for s in similar))
        pooled = [s and size >= 2 * MIN_FEATURE_MAP for s, size in zip(similar, sizes)]
        if not any(pooled):
            kernels.pop()
            break
        strides.append(tuple(2 if p else 1 for p in pooled))
        for axis, p in enumerate(pooled):
            if p:
                current[axis] *= 2
                sizes[axis] = -(-sizes[axis] // 2)
    finest = min(current)
    kernels.append(tuple(3 if c / finest < 2 else 1 for c in current))  # the bottleneck's
    return kernels, strides


class NnUNet(NetworkFamily):
    """MONAI's DynUNet as nnU-Net configures it: kernels and strides from the spacing and patch, deep supervision."""

    name = "dynunet"
    full_size = (5, 32, 0)  # nnU-Net's: 32 channels doubling to 320, two plain convolutions a stage
    proxy_size = (4, 0)
    plans_from_data = True

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        return instantiate(self.network_def(cfg, in_channels, out_channels))

    def network_def(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> dict[str, Any]:
        # no patch: the smallest that lets every axis pool at every level
        patch = cfg.patch_size or (MIN_FEATURE_MAP * 2 ** (cfg.levels - 1),) * 3
        kernels, strides = plan_kernels_and_strides(patch, cfg.spacing, cfg.levels)
        stages = len(strides)
        if stages < 3:
            raise ValueError(f"patch {tuple(patch)} at spacing {cfg.spacing} plans {stages} stages; DynUNet needs 3: use sides of at least {4 * MIN_FEATURE_MAP}")
        # every decoder stage but the coarsest has a head (MONAI allows at most stages - 2)
        supervised = stages - 2
        return {
            "_target_": "monai.networks.nets.DynUNet",
            "spatial_dims": 3,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "kernel_size": [list(k) for k in kernels],
            "strides": [list(s) for s in strides],
            "upsample_kernel_size": [list(s) for s in strides[1:]],
            "filters": [min(cfg.base_channels * 2**i, MAX_WIDTH) for i in range(stages)],
            "norm_name": ["INSTANCE", {"affine": True}],
            "deep_supervision": supervised >= 1,
            "deep_supr_num": max(1, supervised),
            "res_block": cfg.num_res_units > 0,
        }
