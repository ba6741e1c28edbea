"""Tiny `proxyhpo train` runs in a subprocess, for the fault tests (signals, MLflow outages)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from proxyhpo.config import HUWindow, Recipe
from proxyhpo.tracking import names

TRAIN_TIMEOUT_S = 300  # a hang guard, not a speed check: a loaded 2-core machine took 138 s


def write_plan(folder: Path, *, epochs: int, trials: int = 2, size: int = 24) -> Path:
    """A plan of ``trials`` proxy trials on five tiny sphere volumes, validated every epoch; returns its path."""
    rng = np.random.default_rng(0)
    cases = folder / "cases"
    cases.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1).astype(np.float32)
    items = []
    for c in range(5):
        mask = np.linalg.norm(grid - rng.uniform(8, size - 8, size=3), axis=-1) <= 5
        image = rng.normal(0.0, 25.0, size=(size,) * 3).astype(np.float32) + 120.0 * mask
        nib.save(nib.Nifti1Image(image, np.eye(4)), cases / f"c{c}.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4), dtype=np.uint8), cases / f"c{c}_seg.nii.gz")
        items.append({"image": str(cases / f"c{c}.nii.gz"), "label": str(cases / f"c{c}_seg.nii.gz")})
    plan = {
        "recipe": Recipe(
            name="tiny", spacing=None, intensity=HUWindow(a_min=-57, a_max=164), patch_size=(16, 16, 16),
            num_samples=1, roi_size=(16, 16, 16), sw_batch_size=1, crop_foreground=False,
        ).model_dump(mode="json"),
        "train": items[:3],
        "val": items[3:],
        "epochs": epochs,
        "val_every": 1,
        "device": "cpu",
        "num_workers": 0,
        "trials": [
            {"trial_id": f"t{i}", "hyperparameters": {"lr": 0.01, "optimizer": "adam"}, "seed": i, "data_label": "full"} for i in range(trials)
        ],
    }
    path = folder / "trial.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def train_env(tracking_uri: str, experiment: str) -> dict[str, str]:
    # MLflow's settings are the test's to give, except the credentials of a server with MLflow's basic auth
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_") or key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_EXPERIMENT_NAME=experiment, MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false")
    return env


def start_train(plan: Path, tracking_uri: str, experiment: str, **env: str) -> subprocess.Popen:
    """``proxyhpo train PLAN`` in a subprocess (stdout and stderr captured); ``env``: more variables for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "proxyhpo", "train", str(plan)],
        cwd=plan.parent, env=train_env(tracking_uri, experiment) | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_epoch(process: subprocess.Popen, tracking_uri: str, experiment: str, *, epochs: int = 1, timeout: float = 60) -> None:
    """Wait until every run of ``experiment`` logged ``epochs`` validation Dice values (the trials are training)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            found = client.get_experiment_by_name(experiment)
            runs = client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'") if found else []
            if runs and all(len(client.get_metric_history(run.info.run_id, names.VAL_DICE)) >= epochs for run in runs):
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no epoch was logged within {timeout} s")
