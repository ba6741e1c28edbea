"""A multi-channel, multi-class final model leaves as a MONAI bundle that segments MSD Task01-shaped images (issue 20).

The bundle of a network taking 4 channels and giving 4 classes (background and three tumour classes) is run on 4-D
NIfTIs with the channels last, as MSD's BrainTumour stores them: by ``python -m monai.bundle run`` and by
``proxyhpo segment``. Each must write one 3-D class map per image, on the image's own grid, of the bundle's weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from proxyhpo.cli import main
from proxyhpo.config import HyperParameters, NetworkConfig, Normalize, Recipe
from proxyhpo.export.bundle import BundleInfo, write_bundle
from proxyhpo.networks import build_network

RECIPE = Recipe(
    name="tiny-brain", spacing=None, intensity=Normalize(), patch_size=(16, 16, 16), num_samples=1, roi_size=(16, 16, 16), sw_batch_size=1,
    crop_foreground=False,
)
CHANNELS, CLASSES, WINNER = 4, 4, 3  # FLAIR, T1w, T1gd, T2w -> background, edema, non-enhancing, enhancing; class 3 wins
SHAPE = (18, 20, 17)


def _brain_images(folder: Path, n: int = 2) -> list[Path]:
    """``n`` 4-D volumes (X, Y, Z, 4 channels last) on a shifted, anisotropic grid."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    affine = np.diag([1.0, 1.2, 1.5, 1.0])
    affine[:3, 3] = (-4.0, 7.0, 2.0)
    paths = []
    for case in range(n):
        paths.append(folder / f"brain{case}.nii.gz")
        nib.save(nib.Nifti1Image(rng.normal(100, 20, (*SHAPE, CHANNELS)).astype(np.float32), affine), paths[-1])
    return paths


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    network = NetworkConfig.proxy(3)
    torch.manual_seed(0)
    weights = build_network(network, CHANNELS, CLASSES).state_dict()
    last = [key for key in weights if key.endswith("bias") and weights[key].shape == (CLASSES,)][-1]
    weights[last] = torch.tensor([-1e4 if c != WINNER else 1e4 for c in range(CLASSES)])  # the output layer: class 3 everywhere
    info = BundleInfo(study="brain-bundle", dice={"internal_test_dice": 0.5}, cost={}, study_run_id="r1", dataset_sha256="b" * 64)
    return write_bundle(tmp_path / "bundle", network=network, weights=weights, recipe=RECIPE, hyperparameters=HyperParameters(lr=0.01), out_channels=CLASSES,
                        schedule={"epochs": 1}, info=info)


def _check_mask(mask_path: Path, image: Path) -> None:
    mask, source = nib.load(mask_path), nib.load(image)
    assert mask.shape == SHAPE and np.allclose(mask.affine, source.affine)  # one class map on the image's grid, no channel axis
    assert (np.asarray(mask.dataobj) == WINNER).all()  # the bundle's weights, not a fresh network's


def test_a_four_channel_four_class_bundle_segments_4d_images_under_monai_bundle_run(bundle: Path, tmp_path: Path) -> None:
    import json

    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    inputs, outputs = metadata["network_data_format"]["inputs"]["image"], metadata["network_data_format"]["outputs"]["pred"]
    assert (inputs["num_channels"], outputs["num_channels"]) == (CHANNELS, CLASSES)
    images = _brain_images(tmp_path / "images")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--dataset_dir", str(tmp_path / "images"), "--output_dir", str(tmp_path / "masks")]
    done = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for image in images:
        _check_mask(tmp_path / "masks" / image.name.replace(".nii.gz", "_seg.nii.gz"), image)

    # proxyhpo segment runs the same bundle on the same 4-D image
    assert main(["segment", str(bundle), str(images[0]), "--out-dir", str(tmp_path / "segmented"), "--device", "cpu"]) == 0
    _check_mask(tmp_path / "segmented" / "brain0_mask.nii.gz", images[0])
