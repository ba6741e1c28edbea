"""A failure the same inputs will give again is not retried (issue 23): a final model or a pack that fails
with a config or data error, or with a failure that repeats identically, trains once, not three times."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import PackSpec, StudyConfig, parse_config
from proxyhpo.data.prepare import prepare_study_data
from proxyhpo.errors import DataError, ConfigError, TrialError
from proxyhpo.similarity.proxy_data import all_data_manifest
from proxyhpo.data.msd import load_dataset
from proxyhpo.training import repeats
from proxyhpo.training.study_trials import train_final_model, train_pack


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("repeats")
    document = {
        "name": "repeats",
        "data": {"dataset": str(root / "spleen"), "synthetic": {"task": "spleen", "cases": 8, "size": 32, "seed": 3}, "holdout_fraction": 0.25, "search_val_fraction": 0.25},
        "similarity": {"patch": 16},
        "selection": {"method": "mi+labelcrop", "budget": 4},
        "training": {"recipe": "demo"},
    }
    study = parse_config(StudyConfig, document, "<test>")
    return study, prepare_study_data(study)


def _holdout_image(data) -> Path:
    (case,) = [c for c in load_dataset(data.dataset).cases if c.case_id == data.holdout_ids[0]]
    return Path(case.image)


def test_a_final_model_failing_on_its_data_is_not_tried_again_until_the_data_changes(prepared, tmp_path: Path) -> None:
    study, data = prepared
    image = _holdout_image(data)
    kept = image.read_bytes()
    image.unlink()  # a held-out case's image is gone: every attempt would fail the same way
    try:
        with pytest.raises(DataError):
            train_final_model(study, data, {"lr": 0.01}, parent_run_id="p1", results_out=tmp_path / "r.json", model_dir=tmp_path / "m")
        with pytest.raises(TrialError, match=f"{repeats.NOT_RETRIED}") as retried:  # the retried pod stops at once
            train_final_model(study, data, {"lr": 0.01}, parent_run_id="p1", results_out=tmp_path / "r.json", model_dir=tmp_path / "m")
        assert "\n" not in str(retried.value) and "DataError" in str(retried.value)
    finally:
        image.write_bytes(kept)
    # the data was fixed: the next attempt goes on (and fails here on its own, later, bad hyper-parameter)
    with pytest.raises(ConfigError, match="not trainable"):
        train_final_model(study, data, {"lr": 0.01, "wings": 2}, parent_run_id="p1", results_out=tmp_path / "r.json", model_dir=tmp_path / "m")


def test_a_failure_repeating_identically_is_deterministic(tmp_path: Path) -> None:
    location = str(tmp_path / "x.failure.json")
    assert repeats.record(location, RuntimeError("CUDA error: an illegal memory access")) is False  # once may be the GPU
    assert repeats.deterministic_failure(location) is None
    assert repeats.record(location, RuntimeError("CUDA error: an illegal memory access")) is True  # twice alike is not
    assert repeats.deterministic_failure(location) == "RuntimeError: CUDA error: an illegal memory access"
    repeats.forget(location)
    assert repeats.deterministic_failure(location) is None


def test_a_pack_with_a_bad_manifest_trains_once(prepared, tmp_path: Path) -> None:
    study, data = prepared
    manifest = all_data_manifest(load_dataset(data.dataset), data).model_copy(update={"dataset_sha256": "0" * 64})  # not this study's data
    pack = PackSpec.model_validate({"round": 0, "pack_index": 0, "proposals": [{"proposal_id": 0, "round": 0, "hyperparameters": {"lr": 0.01}, "log_prob": 0.0}]})
    with pytest.raises(ConfigError):
        train_pack(study, data, manifest, pack, parent_run_id="p2", results_out=tmp_path / "pack.json")
    (again,) = train_pack(study, data, manifest, pack, parent_run_id="p2", results_out=tmp_path / "pack.json")  # the task's retry
    assert again.state.value == "FAILED" and again.fail_reason.startswith("pack crashed: ConfigError") and again.fail_reason.endswith(repeats.NOT_RETRIED)
