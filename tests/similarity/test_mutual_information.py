"""Contract tests of the all-pairs MI engine: equal to sklearn's mutual_info_score on quantised volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from proxyhpo.errors import ConfigError
from proxyhpo.similarity import mutual_information_matrix
from proxyhpo.similarity.mutual_information import mutual_information_from_joint


def reference_mi(volumes: np.ndarray, bins: int) -> np.ndarray:
    """sklearn on the contract's quantisation, pair by pair."""
    q = np.minimum(np.floor(np.asarray(volumes, dtype=np.float64) * bins), bins - 1).astype(np.int64)
    q = q.reshape(q.shape[0], -1)
    n = q.shape[0]
    return np.array([[mutual_info_score(q[i], q[j]) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("bins", [2, 7, 32])
@pytest.mark.parametrize("engine", ["auto", "onehot"])
def test_equals_sklearn_on_mixed_volumes(mixed_volumes, device, bins, engine):
    got = mutual_information_matrix(mixed_volumes, bins=bins, device=device, engine=engine)
    np.testing.assert_allclose(got, reference_mi(mixed_volumes, bins), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_sklearn_on_random_smooth_volumes(make_volumes, device, seed):
    vols = make_volumes(5, (16, 14, 12), seed=seed, sigma=1.0 + seed)
    got = mutual_information_matrix(vols, bins=32, device=device)
    ref = reference_mi(vols, 32)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # The values are not trivially small: the diagonal is each volume's entropy.
    assert np.all(np.diag(got) > 1.0)


def test_known_values():
    """Two independent halves give MI 0; a volume with itself gives its entropy, log(2) for two equal halves."""
    a = np.zeros((1, 2, 2, 2), dtype=np.float32)
    a[0, 1] = 1.0  # half 0, half 1
    b = np.zeros((1, 2, 2, 2), dtype=np.float32)
    b[0, :, 1] = 1.0  # split along another axis: independent of a
    m = mutual_information_matrix(np.concatenate([a, b]), bins=2, device="cpu")
    np.testing.assert_allclose(m, [[np.log(2), 0.0], [0.0, np.log(2)]], atol=1e-12)


def test_single_volume(make_volumes, device):
    vols = make_volumes(1, (8, 8, 8), seed=4)
    got = mutual_information_matrix(vols, device=device)
    assert got.shape == (1, 1)
    np.testing.assert_allclose(got, reference_mi(vols, 32), atol=1e-6)


def test_constant_volumes_have_zero_mi(device):
    vols = np.stack([np.full((6, 6, 6), v, dtype=np.float32) for v in (0.0, 0.5, 1.0)])
    got = mutual_information_matrix(vols, device=device)
    assert np.array_equal(got, np.zeros((3, 3)))


@pytest.mark.parametrize("engine", ["auto", "onehot"])
def test_block_size_invariance_and_symmetry(make_volumes, device, engine):
    vols = make_volumes(7, (10, 9, 8), seed=5)
    results = [mutual_information_matrix(vols, device=device, block_size=bs, engine=engine) for bs in (1, 3, 32)]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(results[0], results[0].T)


def test_accepts_torch_tensor(make_volumes):
    vols = make_volumes(3, (8, 8, 8), seed=6)
    np.testing.assert_array_equal(
        mutual_information_matrix(torch.from_numpy(vols), device="cpu"), mutual_information_matrix(vols, device="cpu")
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.float16, np.float64])
def test_other_input_dtypes(make_volumes, dtype):
    """Integer and boolean stacks (0 or 1) and other float widths quantise like their float64 values."""
    vols = make_volumes(3, (6, 7, 8), seed=14)
    vols = (vols > 0.5).astype(dtype) if dtype in (np.uint8, np.bool_) else vols.astype(dtype)
    for bins in (5, 300):
        got = mutual_information_matrix(vols, bins=bins, device="cpu")
        np.testing.assert_allclose(got, reference_mi(vols, bins), rtol=0, atol=1e-6)


def test_engines_agree_on_histograms_larger_than_fp16(make_volumes):
    """Counts above 2048 are not exact in fp16; the one-hot engine must still count exactly."""
    vols = make_volumes(3, (24, 24, 24), seed=8, sigma=3.0)  # 13824 voxels, few bins -> large counts
    a = mutual_information_matrix(vols, bins=4, device="cpu", engine="bincount")
    b = mutual_information_matrix(vols, bins=4, device="cpu", engine="onehot")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_from_joint_matches_sklearn_contingency():
    rng = np.random.default_rng(9)
    x, y = rng.integers(0, 5, 1000), rng.integers(0, 4, 1000)
    joint = np.zeros((1, 5, 5))
    np.add.at(joint[0], (x, y), 1)
    np.testing.assert_allclose(mutual_information_from_joint(joint), [mutual_info_score(x, y)], atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volumes": np.zeros((4, 4, 4), dtype=np.float32)}, r"volumes must have shape \(n, D, H, W\)"),
        ({"volumes": np.zeros((0, 4, 4, 4), dtype=np.float32)}, "volumes must hold at least one"),
        ({"volumes": np.full((2, 4, 4, 4), 1.5, dtype=np.float32)}, r"volumes must hold values in \[0, 1\]"),
        ({"volumes": np.full((2, 4, 4, 4), np.nan, dtype=np.float32)}, r"volumes must hold values in \[0, 1\]"),
        ({"volumes": [[[[0.0]]]]}, "volumes must be a numpy array or torch tensor"),
        ({"bins": 1}, "bins must be an integer >= 2"),
        ({"bins": 2.5}, "bins must be an integer >= 2"),
        ({"block_size": 0}, "block_size must be an integer >= 1"),
        ({"engine": "magic"}, "engine must be 'auto', 'bincount' or 'onehot'"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    args = {"volumes": np.zeros((2, 4, 4, 4), dtype=np.float32)} | kwargs
    with pytest.raises(ValueError, match=message):
        mutual_information_matrix(**args)


def test_rejects_unknown_device():
    with pytest.raises(ConfigError, match=r"^device: 'tpu' is not a device; fix: use auto, cpu, cuda or cuda:N$"):
        mutual_information_matrix(np.zeros((2, 4, 4, 4), dtype=np.float32), device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ConfigError, match="'cuda' asks for CUDA, but no CUDA GPU is available here; fix: use device auto or cpu"):
        mutual_information_matrix(np.zeros((2, 4, 4, 4), dtype=np.float32), device="cuda")


def test_progress_bar_runs(make_volumes, capsys):
    vols = make_volumes(3, (6, 6, 6), seed=10)
    got = mutual_information_matrix(vols, device="cpu", block_size=1, progress=True)
    assert got.shape == (3, 3)
    assert "MI (3 volumes)" in capsys.readouterr().out
