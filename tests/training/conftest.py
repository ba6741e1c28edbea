"""Tiny synthetic CT volumes for the training tests: a bright sphere (the organ) in noisy tissue."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from proxyhpo.config import DataItem, HUWindow, Recipe


def write_sphere_cases(folder: Path, n: int, size: int = 32, seed: int = 0) -> list[DataItem]:
    """Write ``n`` cases of ``size``³ voxels (1 mm): HU 0 ± 25 tissue, a sphere of HU 120 labelled 1."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    items = []
    for c in range(n):
        radius = rng.uniform(size * 0.15, size * 0.28)
        centre = rng.uniform(radius + 1, size - radius - 1, size=3)
        mask = np.linalg.norm(grid - centre, axis=-1) <= radius
        image = rng.normal(0.0, 25.0, size=(size,) * 3).astype(np.float32)
        image[mask] += 120.0
        img_path, lab_path = folder / f"case{c:02d}.nii.gz", folder / f"case{c:02d}_seg.nii.gz"
        nib.save(nib.Nifti1Image(image, np.eye(4)), img_path)
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4), dtype=np.uint8), lab_path)
        items.append(DataItem(image=str(img_path), label=str(lab_path)))
    return items


@pytest.fixture(scope="session")
def sphere_cases(tmp_path_factory) -> list[DataItem]:
    """Eight tiny cases: use [:4] to train, [4:6] to validate, [6:] as an external test."""
    return write_sphere_cases(tmp_path_factory.mktemp("spheres"), 8)


@pytest.fixture(scope="session")
def tiny_recipe() -> Recipe:
    """Native 1 mm spacing, CT window, 16³ patches, 32³ inference window: fits proxy networks of 3-5 levels."""
    return Recipe(
        name="tiny",
        spacing=None,
        intensity=HUWindow(a_min=-57, a_max=164),
        patch_size=(16, 16, 16),
        num_samples=2,
        roi_size=(32, 32, 32),
        sw_batch_size=1,
        crop_foreground=False,
    )
