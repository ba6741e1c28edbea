"""All-pairs mutual information between volumes, by joint histograms of quantised intensities.

Each volume is quantised once into ``bins`` integer codes; the joint histogram of every pair
``i <= j`` is then counted block by block, either

- on the CPU by ``numpy.bincount`` of the joint index ``code_i * bins + code_j`` (engine
  ``"bincount"``), or
- on any torch device by one-hot matrix products, ``onehot_I @ onehot_J.T`` giving the joint
  histograms of all pairs of two blocks at once (engine ``"onehot"``, the default on CUDA).

Both count exactly, so the result equals ``sklearn.metrics.mutual_info_score`` of the quantised,
flattened pair up to floating-point rounding of the final sum.
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

__all__ = ["MutualInformation", "mutual_information_matrix", "quantize_volumes", "mutual_information_from_joint"]

# Volumes quantised per step; bounds the float64 temporary of quantisation.
_QUANTISE_CHUNK = 8
# fp32 accumulation counts exactly only below 2**24; the one-hot products run over voxel chunks
# no longer than this and add the chunks in float64.
_EXACT_FP32 = 2**24 - 1


def quantize_volumes(volumes: VolumeStack, bins: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Quantise each voxel as ``min(floor(x * bins), bins - 1)``, with ``x * bins`` exact or in float64.

    Args:
        volumes: ``(n, D, H, W)`` array or tensor with values in ``[0, 1]`` (not re-checked here).
        bins: number of intensity bins, ``>= 2``.
        device: where the codes are kept.

    Returns:
        ``(n, D * H * W)`` tensor of codes in ``[0, bins)``: ``uint8`` when ``bins <= 256``, else ``int32``.
    """
    n = int(volumes.shape[0])
    voxels = int(np.prod(volumes.shape[1:]))
    dtype = torch.uint8 if bins <= 256 else torch.int32
    dev = torch.device(device)
    codes = torch.empty((n, voxels), dtype=dtype, device=dev)
    in_dtype = torch.as_tensor(volumes[:1]).dtype
    # Multiplying by a power of two is exact in any float type, so the input's own precision gives
    # the same codes as float64 there; other bin counts are computed in float64 so that the codes
    # never depend on the input's dtype or the device.
    power_of_two = bins & (bins - 1) == 0
    work_dtype = in_dtype if power_of_two and in_dtype in (torch.float16, torch.float32, torch.float64) else torch.float64
    chunk = min(_QUANTISE_CHUNK, n)
    buf = torch.empty((chunk, voxels), dtype=work_dtype, device=dev)  # reused: no per-chunk allocation
    for start in range(0, n, chunk):
        src = torch.as_tensor(volumes[start : start + chunk]).to(device=dev, dtype=work_dtype)
        k = src.shape[0]
        work = buf[:k]
        torch.mul(src.reshape(k, voxels), bins, out=work)
        codes[start : start + k].copy_(work.floor_().clamp_(0, bins - 1))
    return codes


def mutual_information_from_joint(joint: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mutual information in nats of a batch of joint histograms (counts).

    Args:
        joint: ``(P, bins, bins)`` non-negative counts; each histogram must have a positive total.

    Returns:
        ``(P,)`` float64 MI, clipped at 0 like ``sklearn.metrics.mutual_info_score``.
    """
    h = torch.as_tensor(joint).to(torch.float64)
    total = h.sum(dim=(1, 2), keepdim=True)
    row = h.sum(dim=2, keepdim=True)
    col = h.sum(dim=1, keepdim=True)
    # sum_ab p_ab * log(p_ab / (p_a p_b)) written with counts: log(n_ab * N / (n_a * n_b)); empty
    # cells contribute 0 (their row and column sums may be 0 too, hence the masking).
    nonzero = h > 0
    ratio = torch.where(nonzero, h * total / torch.where(nonzero, row * col, 1.0), 1.0)
    mi = (h * torch.log(ratio)).sum(dim=(1, 2)) / total.reshape(-1)
    return mi.clamp_(min=0.0).cpu().numpy()


def _joint_bincount(codes: np.ndarray, i0: int, i1: int, j0: int, j1: int, bins: int) -> tuple[list, np.ndarray]:
    """Joint histograms of pairs ``(i, j)``, ``i0 <= i < i1``, ``max(i, j0) <= j < j1``, by ``numpy.bincount``.

    Two rows are counted against a column in one pass when ``bins**3`` fits in 16 bits: the histogram
    of ``(code_i, code_i2, code_j)`` gives both pairs by summing out one axis, and a 16-bit index is
    cheaper to write than a 64-bit one. This halves the passes over the voxels, which is the cost.
    """
    group = 2 if bins**3 <= 2**16 else 1
    index_dtype = np.uint16 if bins ** (group + 1) <= 2**16 else np.intp
    buf = np.empty(codes.shape[1], dtype=index_dtype)
    pairs: list[tuple[int, int]] = []
    hists: list[np.ndarray] = []
    for g0 in range(i0, i1, group):
        rows = list(range(g0, min(g0 + group, i1)))
        scaled = np.zeros(codes.shape[1], dtype=index_dtype)
        for r in rows:
            scaled *= bins
            scaled += codes[r]
        scaled *= bins
        for j in range(max(g0, j0), j1):
            np.add(scaled, codes[j], out=buf)
            h = np.bincount(buf, minlength=bins ** (len(rows) + 1))
            if len(rows) == 1:
                hists.append(h.reshape(bins, bins))
                pairs.append((rows[0], j))
                continue
            h = h.reshape(bins, bins, bins)
            hists.append(h.sum(axis=1))
            pairs.append((rows[0], j))
            if j >= rows[1]:
                hists.append(h.sum(axis=0))
                pairs.append((rows[1], j))
    return pairs, np.stack(hists)


def _onehot(codes: torch.Tensor, bins: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, V)`` codes to the ``(B * bins, V)`` matrix whose row ``b * bins + a`` marks voxels of code ``a`` in ``b``."""
    b, v = codes.shape
    out = torch.zeros((b, bins, v), dtype=dtype, device=codes.device)
    out.scatter_(1, codes.long().unsqueeze(1), 1.0)
    return out.reshape(b * bins, v)


def _matmul_counts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` of 0/1 matrices with exact float32 counts, whatever the dtype of ``a`` and ``b``."""
    if a.dtype == torch.float32:
        return a @ b.T
    try:
        # fp16 inputs with fp32 accumulation and output: exact counts at tensor-core speed.
        return torch.mm(a, b.T, out_dtype=torch.float32)
    except (RuntimeError, TypeError, NotImplementedError):
        return a.float() @ b.float().T


def _onehot_dtype(device: torch.device) -> torch.dtype:
    # 0 and 1 are exact in fp16 and counts accumulate in fp32, so fp16 loses nothing on CUDA; CPU
    # matrix products have no fp16 fast path, so they use fp32 (also exact below 2**24).
    return torch.float16 if device.type == "cuda" else torch.float32


def _joint_onehot(
    codes: torch.Tensor, i0: int, i1: int, j0: int, j1: int, bins: int, row_cache: dict
) -> tuple[list, torch.Tensor]:
    """Joint histograms of all pairs of rows ``i0:i1`` and columns ``j0:j1`` (``i <= j``) by one-hot products."""
    voxels = codes.shape[1]
    dtype = _onehot_dtype(codes.device)
    counts = torch.zeros(((i1 - i0) * bins, (j1 - j0) * bins), dtype=torch.float64, device=codes.device)
    for v0 in range(0, voxels, _EXACT_FP32):
        v1 = min(v0 + _EXACT_FP32, voxels)
        key = (i0, i1, v0)
        if key not in row_cache:
            row_cache.clear()  # keep only the current row block's one-hots
            row_cache[key] = _onehot(codes[i0:i1, v0:v1], bins, dtype)
        rows = row_cache[key]
        cols = rows if (j0, j1) == (i0, i1) else _onehot(codes[j0:j1, v0:v1], bins, dtype)
        counts += _matmul_counts(rows, cols).to(torch.float64)
    # (I*bins, J*bins) -> (I, J, bins, bins)
    joint = counts.reshape(i1 - i0, bins, j1 - j0, bins).permute(0, 2, 1, 3)
    pairs = [(i, j) for i in range(i0, i1) for j in range(max(i, j0), j1)]
    ii = torch.tensor([p[0] - i0 for p in pairs], device=codes.device)
    jj = torch.tensor([p[1] - j0 for p in pairs], device=codes.device)
    return pairs, joint[ii, jj]


def mutual_information_matrix(
    volumes: VolumeStack,
    bins: int = 32,
    device: str | torch.device = "auto",
    block_size: int = 32,
    progress: bool = False,
    *,
    engine: str = "auto",
) -> np.ndarray:
    """Mutual information (nats) between every pair of volumes, on quantised intensities.

    Each volume ``x`` is quantised as ``min(floor(x * bins), bins - 1)`` (in float64); entry
    ``(i, j)`` is ``sklearn.metrics.mutual_info_score(q(x_i).ravel(), q(x_j).ravel())``. The diagonal
    holds each volume's entropy. Only ``i <= j`` is computed, in blocks of ``block_size`` volumes, so
    working memory grows with ``block_size`` (and the ``n * D * H * W`` bytes of codes), not with ``n**2``.

    Args:
        volumes: ``(n, D, H, W)`` numpy array or torch tensor with values in ``[0, 1]``.
        bins: number of intensity bins, ``>= 2``.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        block_size: volumes per block, ``>= 1``. On CUDA, 32 keeps one-hot blocks near 2 GB at 96³.
        progress: show a progress bar over the block pairs.
        engine: ``"auto"`` (``"onehot"`` on CUDA, ``"bincount"`` on CPU), ``"bincount"`` (CPU only)
            or ``"onehot"`` (any device). Both give the same counts.

    Returns:
        ``(n, n)`` symmetric float64 array of MI in nats.

    Raises:
        ValueError: when ``volumes``, ``bins``, ``device``, ``block_size`` or ``engine`` is invalid.

    Example:
        >>> x = np.random.default_rng(0).random((3, 8, 8, 8), dtype=np.float32)
        >>> mutual_information_matrix(x, bins=4, device="cpu").shape
        (3, 3)
    """
    n, _ = check_volumes(volumes)
    bins = check_positive_int(bins, "bins", minimum=2)
    block_size = check_positive_int(block_size, "block_size")
    dev = resolve_device(device)
    if engine not in ("auto", "bincount", "onehot"):
        raise ValueError(f"engine must be 'auto', 'bincount' or 'onehot', got {engine!r}.")
    if engine == "auto":
        engine = "onehot" if dev.type == "cuda" else "bincount"
    if engine == "bincount" and dev.type != "cpu":
        raise ValueError(f"engine='bincount' runs on the CPU only, got device={device!r}; use engine='onehot'.")

    codes = quantize_volumes(volumes, bins, dev)
    result = np.zeros((n, n), dtype=np.float64)
    blocks = block_pairs(n, block_size)
    if engine == "bincount":
        codes_np = codes.numpy()
    row_cache: dict = {}
    for i0, i1, j0, j1 in track(blocks, f"MI ({n} volumes)", enabled=progress, transient=False):
        if engine == "bincount":
            pairs, joint = _joint_bincount(codes_np, i0, i1, j0, j1, bins)
        else:
            pairs, joint = _joint_onehot(codes, i0, i1, j0, j1, bins, row_cache)
        mi = mutual_information_from_joint(joint)
        ii, jj = np.array(pairs).T
        result[ii, jj] = mi
        result[jj, ii] = mi
    return result


class MutualInformation(SimilarityMetric):
    """Mutual information between quantised volumes, in nats.

    :func:`mutual_information_matrix` with the study's ``similarity.bins``.
    """

    name = "mi"

    def matrix(self, volumes: VolumeStack, *, device: str = "auto", progress: bool = False) -> np.ndarray:
        return mutual_information_matrix(volumes, bins=self.config.bins, device=device, progress=progress)
