"""Shared plumbing of the all-pairs engines: argument checks and block iteration.

The engines compute only the upper triangle ``i <= j`` of an ``(n, n)`` matrix, one pair of volume
blocks at a time, so that their working memory depends on the block size and never on ``n**2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from proxyhpo.similarity.arguments import check_positive_int

__all__ = [
    "VolumeStack",
    "check_volumes",
    "check_positive_int",
    "block_pairs",
]

VolumeStack = np.ndarray | torch.Tensor

# Volumes are read in slices of this many while checking their range, so that the check never
# makes a float64 copy of the whole stack.
_CHECK_CHUNK = 16


def check_volumes(volumes: Any, name: str = "volumes") -> tuple[int, tuple[int, int, int]]:
    """Check a stack of volumes: shape ``(n, D, H, W)``, ``n >= 1``, real values, all within ``[0, 1]``.

    Args:
        volumes: ``np.ndarray`` or ``torch.Tensor`` of shape ``(n, D, H, W)``.
        name: the argument name used in error messages.

    Returns:
        ``(n, (D, H, W))``.

    Raises:
        ValueError: when the type, shape, dtype or value range is wrong (NaN and inf are out of range).
    """
    if not isinstance(volumes, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a numpy array or torch tensor of shape (n, D, H, W), got {type(volumes).__name__}.")
    shape = tuple(volumes.shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must have shape (n, D, H, W), got shape {shape}.")
    if min(shape) < 1:
        raise ValueError(f"{name} must hold at least one non-empty volume, got shape {shape}.")
    if isinstance(volumes, torch.Tensor):
        ok = volumes.dtype in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64) or (
            volumes.dtype.is_floating_point
        )
    else:
        ok = volumes.dtype.kind in "biuf"
    if not ok:
        raise ValueError(f"{name} must hold real numbers, got dtype {volumes.dtype}.")
    n = shape[0]
    for start in range(0, n, _CHECK_CHUNK):
        chunk = volumes[start : start + _CHECK_CHUNK]
        if isinstance(chunk, torch.Tensor):
            lo, hi = (float(v) for v in torch.aminmax(chunk.to(torch.float32) if chunk.dtype == torch.bool else chunk))
        else:
            lo, hi = float(np.min(chunk)), float(np.max(chunk))
        # NaN fails both comparisons, so it is caught here too.
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"{name} must hold values in [0, 1] (scale intensities first, e.g. with prepare_volume), "
                f"got values in [{lo}, {hi}] among volumes {start}..{min(start + _CHECK_CHUNK, n) - 1}."
            )
    return n, (int(shape[1]), int(shape[2]), int(shape[3]))


def block_pairs(n: int, block_size: int) -> list[tuple[int, int, int, int]]:
    """The block pairs ``(i0, i1, j0, j1)`` that cover the upper triangle ``i <= j`` of an ``(n, n)`` matrix.

    Rows ``i0:i1`` and columns ``j0:j1`` are half-open ranges; only blocks with ``i0 <= j0`` are listed,
    row block by row block, so an engine can keep the row block's per-volume data while it walks the
    columns.
    """
    starts = list(range(0, n, block_size))
    return [
        (i0, min(i0 + block_size, n), j0, min(j0 + block_size, n))
        for bi, i0 in enumerate(starts)
        for j0 in starts[bi:]
    ]
