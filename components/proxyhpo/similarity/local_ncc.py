"""All-pairs local normalised cross-correlation (LNCC), equal to MONAI's ``LocalNormalizedCrossCorrelationLoss``.

MONAI's loss of a pair ``(p, t)`` with a rectangular ``w**3`` window is ``-mean(cross**2 / (var_p * var_t))``
with, at each voxel and with zero padding at the borders,

- ``cross = box(p * t) - box(p) * box(t) / w**3``,
- ``var_x = max(box(x * x) - box(x)**2 / w**3, smooth_dr)``,

where ``box`` sums over the window. Every term but ``box(p * t)`` belongs to one volume, so this
module computes ``box(x)`` and ``1 / sqrt(var_x)`` once per volume and only the cross term per pair.
The box sums are running sums (one cumulative sum and two slice operations per axis) in float64:
the cross term is a difference of nearly equal numbers on smooth images, and float32 box sums of
a 96³ volume are off by ~1e-4 already.
"""

from __future__ import annotations

import numpy as np
import torch

from proxyhpo.devices import resolve_device
from proxyhpo.progress import track
from proxyhpo.similarity._base import SimilarityMetric
from proxyhpo.similarity.pair_blocks import (
    VolumeStack,
    block_pairs,
    check_positive_int,
    check_volumes,
)

__all__ = ["LocalNCC", "local_ncc_matrix", "box_sum_"]

# MONAI's default; variances are clamped from below to it, exactly as in MONAI.
_SMOOTH_DR = 1e-5


def box_sum_(x: torch.Tensor, window: int, work: torch.Tensor) -> torch.Tensor:
    """Sum over a ``window**3`` box around each voxel, zero-padded at the borders, in place.

    Equals ``monai.networks.layers.separable_filtering(x[:, None], [torch.ones(window)] * 3)[:, 0]``.

    Args:
        x: ``(B, D, H, W)`` tensor, overwritten with its box sums.
        window: odd window side.
        work: scratch tensor with at least ``x.numel()`` elements, same dtype and device.

    Returns:
        ``x``.
    """
    r = window // 2
    cum = work.view(-1)[: x.numel()].view(x.shape)
    for dim in (1, 2, 3):
        n = x.shape[dim]
        if dim == 1:
            # torch.cumsum along an outer, strided axis is several times slower than adding its
            # contiguous slices one after another.
            cum.select(1, 0).copy_(x.select(1, 0))
            for k in range(1, n):
                torch.add(cum.select(1, k - 1), x.select(1, k), out=cum.select(1, k))
        else:
            torch.cumsum(x, dim=dim, out=cum)
        # box[k] = cum[min(k + r, n - 1)] - cum[k - r - 1], the second term only when k >= r + 1.
        # Interior voxels take one fused subtraction; the borders are thin slabs.
        head = min(r + 1, n)
        a = max(0, min(head, n - r))
        if a:
            x.narrow(dim, 0, a).copy_(cum.narrow(dim, r, a))
        if head - a:
            x.narrow(dim, a, head - a).copy_(cum.narrow(dim, n - 1, 1).expand_as(x.narrow(dim, a, head - a)))
        m = max(0, n - 2 * r - 1)
        if m:
            torch.sub(cum.narrow(dim, 2 * r + 1, m), cum.narrow(dim, 0, m), out=x.narrow(dim, r + 1, m))
        k0 = max(r + 1, n - r)
        if n - k0 > 0:
            last = cum.narrow(dim, n - 1, 1).expand_as(x.narrow(dim, k0, n - k0))
            torch.sub(last, cum.narrow(dim, k0 - r - 1, n - k0), out=x.narrow(dim, k0, n - k0))
    return x


class _VolumeStats:
    """Per-volume terms of a block: the volumes, their box sums and ``1 / sqrt(clamped local variance)``."""

    def __init__(self, volumes: VolumeStack, start: int, stop: int, window: int, device: torch.device, work: torch.Tensor):
        x = torch.as_tensor(volumes[start:stop]).to(device=device, dtype=torch.float64)
        kernel_vol = float(window**3)
        self.x = x.contiguous()
        self.s = box_sum_(self.x.clone(), window, work)
        sq = box_sum_(self.x * self.x, window, work)
        # var = box(x*x) - (box(x) / N) * box(x), clamped like MONAI, then stored as its inverse sqrt.
        sq.addcmul_(self.s / kernel_vol, self.s, value=-1.0)
        self.inv_std = sq.clamp_(min=_SMOOTH_DR).rsqrt_()


def local_ncc_matrix(
    volumes: VolumeStack,
    window: int = 9,
    device: str | torch.device = "auto",
    block_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Local squared normalised cross-correlation between every pair of volumes.

    Entry ``(i, j)`` equals ``-LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=window,
    kernel_type="rectangular")(x_i[None, None], x_j[None, None])`` with MONAI's defaults
    (``smooth_nr=0``, ``smooth_dr=1e-5``), evaluated in float64. Values lie in ``[0, 1]`` up to rounding;
    1 on the diagonal of volumes without flat regions. Only ``i <= j`` is computed, in blocks of
    ``block_size`` volumes; working memory is about ``8 * block_size`` float64 volumes (0.9 GB at 96³
    and the default 16). Larger blocks mean fewer, larger tensor operations per pair, which matters on
    a CPU shared with other processes.

    Args:
        volumes: ``(n, D, H, W)`` numpy array or torch tensor with values in ``[0, 1]``.
        window: odd side of the cubic window, ``>= 1``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        block_size: volumes per block, ``>= 1``.
        progress: show a progress bar over the block pairs.

    Returns:
        ``(n, n)`` symmetric float64 array.

    Raises:
        ValueError: when ``volumes``, ``window``, ``device`` or ``block_size`` is invalid.

    Example:
        >>> x = np.random.default_rng(0).random((3, 12, 12, 12), dtype=np.float32)
        >>> local_ncc_matrix(x, window=3, device="cpu").shape
        (3, 3)
    """
    n, spatial = check_volumes(volumes)
    window = check_positive_int(window, "window")
    if window % 2 == 0:
        raise ValueError(f"window must be odd (MONAI requires an odd kernel_size), got {window}.")
    block_size = check_positive_int(block_size, "block_size")
    dev = resolve_device(device, source="device")

    voxels = int(np.prod(spatial))
    kernel_vol = float(window**3)
    # Scratch space allocated once: fresh multi-megabyte tensors per pair cost more in page faults
    # than the arithmetic does.
    work = torch.empty((block_size, *spatial), dtype=torch.float64, device=dev)
    prod_buf = torch.empty((block_size, *spatial), dtype=torch.float64, device=dev)
    weight = torch.empty(spatial, dtype=torch.float64, device=dev)

    result = np.zeros((n, n), dtype=np.float64)
    blocks = block_pairs(n, block_size)
    rows, rows_start = None, -1
    for i0, i1, j0, j1 in track(blocks, f"LNCC ({n} volumes)", enabled=progress, transient=False):
        if rows_start != i0:  # blocks come row block by row block: keep the row block's terms
            rows, rows_start = _VolumeStats(volumes, i0, i1, window, dev, work), i0
        cols = rows if j0 == i0 else _VolumeStats(volumes, j0, j1, window, dev, work)
        for i in range(i0, i1):
            first = max(i, j0)  # i <= j only
            k = j1 - first
            c = slice(first - j0, j1 - j0)
            prod = prod_buf[:k]
            torch.mul(cols.x[c], rows.x[i - i0], out=prod)
            cross = box_sum_(prod, window, work)
            # MONAI: tp_sum - p_avg * t_sum with p = x_i, t = x_j
            cross.addcmul_(cols.s[c], rows.s[i - i0], value=-1.0 / kernel_vol)
            # sum_p (cross * a_j)**2 * a_i**2, the last product and the sum as one matrix-vector product
            cross.mul_(cols.inv_std[c]).square_()
            torch.square(rows.inv_std[i - i0], out=weight)
            ncc = torch.mv(cross.view(k, -1), weight.view(-1)).div_(voxels).cpu().numpy()
            result[i, first:j1] = ncc
            result[first:j1, i] = ncc
    return result


class LocalNCC(SimilarityMetric):
    """Local normalised cross-correlation over a cubic window.

    :func:`local_ncc_matrix` with the study's ``similarity.window``.
    """

    name = "ncc"

    def matrix(self, volumes: VolumeStack, *, device: str = "auto", progress: bool = False) -> np.ndarray:
        return local_ncc_matrix(volumes, window=self.config.window, device=device, progress=progress)
