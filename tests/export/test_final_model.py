"""The final model's step hands it on as a bundle: beside its weights, in its MLflow run, in the registry; never failing the study."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
import torch
from torch import nn

from proxyhpo.config import DataItem, HUWindow, HyperParameters, NetworkConfig, Recipe, StudyConfig, StudyData, TrialPlan, TrialResult, TrialSpec, TrialState, parse_config
from proxyhpo.export.final_model import export_final_model
from proxyhpo.networks import NetworkFamily, build_network
from proxyhpo.registry import NETWORK_FAMILIES
from proxyhpo.tracking import names

RECIPE = Recipe(name="tiny", spacing=None, intensity=HUWindow(a_min=-57, a_max=164), patch_size=(16, 16, 16), num_samples=1, roi_size=(16, 16, 16), sw_batch_size=1)


def _setting(tmp_path: Path, network: NetworkConfig) -> tuple[StudyConfig, StudyData, TrialPlan, TrialResult]:
    study = parse_config(StudyConfig, {"name": "final-export", "data": {"dataset": str(tmp_path / "data")}}, "s.yaml")
    data = StudyData(dataset=str(tmp_path / "data"), dataset_sha256="d" * 64, modality="CT", labels={0: "background", 1: "spleen"}, holdout_ids=(), search_ids=(), search_train_ids=(), search_val_ids=())
    spec = TrialSpec(trial_id="final", hyperparameters=HyperParameters(lr=0.02), network=network, seed=0)
    case = DataItem(image=str(tmp_path / "i.nii.gz"), label=str(tmp_path / "l.nii.gz"))
    plan = TrialPlan(recipe=RECIPE, train=[case], val=[case], trials=[spec], epochs=2, device="cpu")
    weights = tmp_path / "weights" / "final.pt"
    weights.parent.mkdir()
    torch.save(build_network(network).state_dict(), weights)
    result = TrialResult.of(spec, TrialState.COMPLETE, model_path=str(weights), internal_test_dice=0.61, best_val_dice=0.58, process_hours=0.5)
    return study, data, plan, result


def test_the_final_model_is_exported_logged_and_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("final-export", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment, tags={names.ROLE_TAG: names.ROLE_STUDY}).info.run_id
    final = client.create_run(experiment, tags={names.ROLE_TAG: names.ROLE_FINAL, names.TRIAL_ID_TAG: "final", names.PARENT_TAG: parent}).info.run_id
    study, data, plan, result = _setting(tmp_path, NetworkConfig.proxy(3, "segresnet"))

    folder = export_final_model(study, data, plan, result, parent_run_id=parent, model_dir=tmp_path / "model")
    assert folder == tmp_path / "model" / "bundle"
    section = json.loads((folder / "configs" / "metadata.json").read_text())["proxyhpo"]
    assert (section["final_run_id"], section["study_run_id"], section["dice"]["internal_test_dice"]) == (final, parent, 0.61)
    assert json.loads((folder / "configs" / "train.json").read_text())["optimizer"]["lr"] == 0.02
    assert "bundle" in {item.path for item in client.list_artifacts(final)}
    (version,) = client.search_model_versions("name = 'final-export'")
    assert version.run_id == final and version.tags[names.tag("dataset_sha256")] == "d" * 64


class _Unexportable(NetworkFamily):
    """A convolution without a bundle component."""

    name = "unexportable"

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        return nn.Conv3d(in_channels, out_channels, 3, padding=1)


def test_a_family_without_a_bundle_component_warns_and_the_study_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with NETWORK_FAMILIES.temporary("unexportable", _Unexportable, "A convolution without a bundle component."):
        study, data, plan, result = _setting(tmp_path, NetworkConfig.proxy(3, "unexportable"))
        with caplog.at_level(logging.WARNING, logger="proxyhpo.export.final_model"):
            assert export_final_model(study, data, plan, result, parent_run_id=None, model_dir=tmp_path / "model") is None
    assert "no MONAI bundle written" in caplog.text and "network_def" in caplog.text
    failed = result.model_copy(update={"state": TrialState.FAILED})
    assert export_final_model(study, data, plan, failed, parent_run_id=None, model_dir=tmp_path / "model") is None
