"""A final model leaves as a MONAI bundle: monai.bundle runs it on phantoms, MLflow holds and registers it,
``proxyhpo export`` writes it back from a study run, and ``proxyhpo segment`` runs it from a folder or a registry URI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch

from proxyhpo.cli import main
from proxyhpo.errors import InputError
from proxyhpo.config import HUWindow, HyperParameters, NetworkConfig, Recipe
from proxyhpo.export.bundle import BUNDLE_FILES, BundleInfo, write_bundle
from proxyhpo.export.publish import DATASET_TAG, IMAGE_TAG, publish_bundle
from proxyhpo.networks import build_network
from proxyhpo.tracking import names

RECIPE = Recipe(
    name="tiny", spacing=(1.5, 1.5, 1.5), intensity=HUWindow(a_min=-57, a_max=164), patch_size=(16, 16, 16),
    num_samples=1, roi_size=(16, 16, 16), sw_batch_size=1, crop_foreground=False,
)
HYPERS = HyperParameters(lr=0.003, optimizer="novograd", weight_decay=1e-4)


def _phantoms(folder: Path, n: int = 2) -> list[Path]:
    """``n`` 20 x 22 x 18 CT-like volumes at 1.2 mm with a bright ball, on a shifted grid (the masks must come back onto it)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    affine = np.diag([1.2, 1.2, 1.2, 1.0])
    affine[:3, 3] = (10.0, -5.0, 3.0)
    paths = []
    for case in range(n):
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in (20, 22, 18)], indexing="ij"), -1)
        image = rng.normal(0, 25, (20, 22, 18)).astype(np.float32) + 120 * (np.linalg.norm(grid - (10, 11, 9), axis=-1) < 5)
        paths.append(folder / f"case{case}.nii.gz")
        nib.save(nib.Nifti1Image(image, affine), paths[-1])
    return paths


def _foreground_everywhere(network: NetworkConfig) -> dict[str, torch.Tensor]:
    """Weights whose last bias makes class 1 win at every voxel: masks of all ones prove the bundle loaded them."""
    torch.manual_seed(0)
    weights = build_network(network, 1, 2).state_dict()
    for key in [key for key in weights if key.endswith("bias") and weights[key].shape == (2,)]:  # the output and its heads
        weights[key] = torch.tensor([-1e4, 1e4])
    return weights


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    network = NetworkConfig.proxy(3, "dynunet").for_data(RECIPE.patch_size, RECIPE.spacing)  # deep supervision: eval returns the main output
    info = BundleInfo(study="bundle-test", dice={"internal_test_dice": 0.75}, cost={"final_process_hours": 0.01}, study_run_id="abc123", dataset_sha256="f" * 64)
    return write_bundle(tmp_path / "bundle", network=network, weights=_foreground_everywhere(network), recipe=RECIPE, hyperparameters=HYPERS, out_channels=2, schedule={"epochs": 3}, info=info)


def test_monai_bundle_run_segments_a_folder_of_niftis_onto_their_grids(bundle: Path, tmp_path: Path):
    assert all((bundle / name).is_file() for name in BUNDLE_FILES)
    train = json.loads((bundle / "configs" / "train.json").read_text())
    assert train["hyperparameters"] == HYPERS.model_dump(mode="json") and train["optimizer"]["_target_"] == "monai.optimizers.Novograd"
    assert train["optimizer"]["lr"] == 0.003 and train["loss"]["_target_"] == "DeepSupervisionLoss"
    readme = (bundle / "docs" / "README.md").read_text()
    assert "0.7500" in readme and "abc123" in readme and "f" * 64 in readme
    images = _phantoms(tmp_path / "images")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", "--dataset_dir", str(tmp_path / "images"), "--output_dir", str(tmp_path / "masks")]
    done = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for image in images:
        mask = nib.load(tmp_path / "masks" / image.name.replace(".nii.gz", "_seg.nii.gz"))
        source = nib.load(image)
        assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
        assert (np.asarray(mask.dataobj) == 1).all()  # the bundle's weights, not a fresh network's


def test_a_bundle_is_logged_registered_exported_and_segments_from_the_registry(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("bundle-test", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment, tags={names.ROLE_TAG: names.ROLE_STUDY}).info.run_id
    client.log_metric(parent, names.TOTAL_PROCESS_HOURS, 0.25)
    final = client.create_run(experiment, tags={names.ROLE_TAG: names.ROLE_FINAL, names.TRIAL_ID_TAG: "final", names.PARENT_TAG: parent}).info.run_id
    version = publish_bundle(client, final, bundle, name="bundle-test", dataset_sha256="f" * 64, image_digest="sha256:" + "0" * 64, study_run_id=parent)
    client.set_terminated(final)
    client.set_terminated(parent)
    registered = client.get_model_version("bundle-test", version)
    assert registered.run_id == final and registered.tags[DATASET_TAG] == "f" * 64 and registered.tags[IMAGE_TAG] == "sha256:" + "0" * 64

    assert main(["export", parent, "--out", str(tmp_path / "exported")]) == 0
    exported = tmp_path / "exported"
    assert (exported / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()
    assert json.loads((exported / "configs" / "metadata.json").read_text())["proxyhpo"]["cost"][names.TOTAL_PROCESS_HOURS] == 0.25

    images = _phantoms(tmp_path / "images", n=1)
    assert main(["segment", f"models:/bundle-test/{version}", str(images[0]), "--out-dir", str(tmp_path / "masks"), "--device", "cpu"]) == 0
    mask = nib.load(tmp_path / "masks" / "case0_mask.nii.gz")
    assert mask.shape == (20, 22, 18) and (np.asarray(mask.dataobj) == 1).all()

    (tmp_path / "broken.nii.gz").write_bytes(b"not a volume")
    assert main(["segment", str(tmp_path / "exported"), str(tmp_path / "broken.nii.gz"), "--out-dir", str(tmp_path)]) == 2
    assert "broken.nii.gz" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "exported" / "configs")
    assert main(["segment", str(tmp_path / "exported"), str(images[0]), "--out-dir", str(tmp_path)]) == 2
    assert "neither a MONAI bundle" in capsys.readouterr().err
    assert main(["export", "0" * 32, "--out", str(tmp_path / "none")]) == 2


def test_a_model_folder_is_fetched_from_s3_and_from_a_run(bundle: Path, tmp_path: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch):
    """segment's sources besides a folder and models:/: s3://bucket/prefix and runs:/RUN_ID/bundle, each the bundle's files."""
    from proxyhpo.export.segment import fetch_model
    from proxyhpo.storage import upload_dir

    upload_dir(bundle, f"s3://{s3_bucket}/studies/spleen/bundle")
    fetched = fetch_model(f"s3://{s3_bucket}/studies/spleen/bundle", tmp_path / "from-s3")
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) == sorted(BUNDLE_FILES)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("fetch", artifact_location=str(tmp_path / "artifacts"))).info.run_id
    client.log_artifacts(run, str(bundle), "bundle")
    fetched = fetch_model(f"runs:/{run}/bundle", tmp_path / "from-run")
    assert (fetched / "models" / "model.pt").read_bytes() == (bundle / "models" / "model.pt").read_bytes()
    with pytest.raises(InputError, match="not a folder"):
        fetch_model(str(tmp_path / "nowhere"), tmp_path / "x")
