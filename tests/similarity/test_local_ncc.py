"""Contract tests of the all-pairs LNCC engine: equal to MONAI's LocalNormalizedCrossCorrelationLoss, negated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss
from monai.networks.layers import separable_filtering

from proxyhpo.errors import ConfigError
from proxyhpo.similarity import local_ncc_matrix
from proxyhpo.similarity.local_ncc import box_sum_


def reference_lncc(volumes: np.ndarray, window: int, dtype: torch.dtype) -> np.ndarray:
    loss = LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=window, kernel_type="rectangular")
    t = torch.as_tensor(volumes).to(dtype)
    n = t.shape[0]
    return np.array([[-float(loss(t[i][None, None], t[j][None, None])) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("window", [3, 9])
def test_equals_monai_float64_on_mixed_volumes(mixed_volumes, device, window):
    """Flat regions, constant volumes and zero slabs exercise MONAI's variance clamp (smooth_dr)."""
    got = local_ncc_matrix(mixed_volumes, window=window, device=device)
    np.testing.assert_allclose(got, reference_lncc(mixed_volumes, window, torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("shape", "window"), [((14, 12, 10), 9), ((9, 11, 13), 5), ((4, 5, 6), 9)])
def test_equals_monai_float32_on_smooth_volumes(make_volumes, device, shape, window):
    """MONAI's everyday float32 evaluation agrees to 1e-4, including windows larger than the volume."""
    vols = make_volumes(4, shape, seed=sum(shape))
    got = local_ncc_matrix(vols, window=window, device=device)
    np.testing.assert_allclose(got, reference_lncc(vols, window, torch.float32), rtol=0, atol=1e-4)


def test_values_mean_something(make_volumes):
    """Identical textured volumes correlate perfectly; independent ones far less."""
    vols = make_volumes(2, (16, 16, 16), seed=11, sigma=1.0)
    m = local_ncc_matrix(vols, window=5, device="cpu")
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-9)
    assert m[0, 1] < 0.5


@pytest.mark.parametrize("block_size", [1, 3, 32])
def test_block_size_invariance_and_symmetry(make_volumes, device, block_size):
    vols = make_volumes(7, (10, 9, 8), seed=12)
    ref = local_ncc_matrix(vols, window=3, device=device, block_size=7)
    got = local_ncc_matrix(vols, window=3, device=device, block_size=block_size)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got, got.T)


def test_single_volume_and_torch_input(make_volumes, device):
    vols = make_volumes(1, (8, 8, 8), seed=13)
    got = local_ncc_matrix(torch.from_numpy(vols), window=3, device=device)
    assert got.shape == (1, 1)
    np.testing.assert_allclose(got, reference_lncc(vols, 3, torch.float64), atol=1e-9)


@pytest.mark.parametrize("window", [1, 3, 9, 15])
def test_box_sum_equals_monai_separable_filtering(window):
    x = torch.rand(2, 7, 10, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(window))
    expected = separable_filtering(x[:, None], [torch.ones(window, dtype=torch.float64)] * 3)[:, 0]
    got = box_sum_(x.clone(), window, torch.empty_like(x))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 4}, "window must be odd"),
        ({"window": 0}, "window must be an integer >= 1"),
        ({"block_size": -1}, "block_size must be an integer >= 1"),
        ({"volumes": -np.ones((2, 4, 4, 4), dtype=np.float32)}, r"volumes must hold values in \[0, 1\]"),
        ({"volumes": np.zeros((2, 4, 4), dtype=np.float32)}, r"volumes must have shape \(n, D, H, W\)"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    args = {"volumes": np.zeros((2, 4, 4, 4), dtype=np.float32)} | kwargs
    with pytest.raises(ValueError, match=message):
        local_ncc_matrix(**args)


def test_rejects_unknown_device():
    with pytest.raises(ConfigError, match=r"^device: 'gpu' is not a device; fix: use auto, cpu, cuda or cuda:N$"):
        local_ncc_matrix(np.zeros((2, 4, 4, 4), dtype=np.float32), device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ConfigError, match="'cuda' asks for CUDA, but no CUDA GPU is available here; fix: use device auto or cpu"):
        local_ncc_matrix(np.zeros((2, 4, 4, 4), dtype=np.float32), device="cuda")
