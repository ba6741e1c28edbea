"""Fixtures of the similarity tests: small smooth volumes and the devices to run the engines on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

# Every engine test runs on each of these; CUDA is skipped where there is none.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    ),
]


def smooth_volumes(n: int, shape: tuple[int, int, int], seed: int, sigma: float = 1.5) -> np.ndarray:
    """``(n, *shape)`` float32 volumes in [0, 1]: blurred noise, each rescaled to fill [0, 1]."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, *shape), dtype=np.float32)
    for k in range(n):
        v = gaussian_filter(rng.random(shape), sigma)
        out[k] = (v - v.min()) / (v.max() - v.min())
    return out


@pytest.fixture
def make_volumes():
    """The :func:`smooth_volumes` factory (test modules cannot import conftest under importlib mode)."""
    return smooth_volumes


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def mixed_volumes() -> np.ndarray:
    """Seven 10x12x9 volumes covering the cases that break naive formulas.

    Smooth textures, pure noise, a constant volume, an all-zero one, an all-one one, a monotone
    transform of another volume (high MI), and a volume with a flat zero slab (zero local variance).
    """
    rng = np.random.default_rng(7)
    shape = (10, 12, 9)
    smooth = smooth_volumes(2, shape, seed=3)
    vols = [
        smooth[0],
        rng.random(shape, dtype=np.float32),
        np.full(shape, 0.37, dtype=np.float32),
        np.zeros(shape, dtype=np.float32),
        np.ones(shape, dtype=np.float32),
        np.sqrt(smooth[0]),
        smooth[1].copy(),
    ]
    vols[-1][:, :4] = 0.0
    return np.stack(vols)
