"""NAS on a multi-class, multi-channel task (issue 20): the supernet's widths come from the data, a search runs, the export segments classes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from proxyhpo.config import StudyConfig, parse_config
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.prepare import prepare_study_data
from proxyhpo.training.nas_export import ExportedNetwork, evaluate_fold
from proxyhpo.training.nas_search import init_search, plan_nas, search_episodes


def _brain_nas_study(root: Path) -> StudyConfig:
    document = {
        "name": "tiny-brain-nas",
        "data": {"dataset": str(root / "brain"), "synthetic": {"task": "brain", "cases": 7, "size": 32, "seed": 2, "external_cases": 0}, "holdout_fraction": 0.2},
        "selection": {"method": "mi+labelcrop", "budget": 3},
        "training": {"recipe": {"name": "tiny-brain", "spacing": [14.0, 14.0, 14.0], "intensity": {"kind": "normalize"}, "patch_size": [32, 32, 32], "roi_size": [32, 32, 32]}},
        "nas": {
            "space": {"channels": [2, 4, 4, 8, 8]},
            "episodes": 1,
            "children_per_episode": 1,
            "child_epochs": 1,
            "episodes_per_task": 1,
            "folds": 2,
            "search_data": "all",
            "child": {"batch_size": 2},
            "device": "cpu",
        },
    }
    return parse_config(StudyConfig, document, "<test>")


def test_brain_nas_supernet_takes_4_channels_gives_4_classes_and_segments_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYHPO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PROXYHPO_CHECKPOINT_ROOT", raising=False)
    study = _brain_nas_study(tmp_path)
    data = prepare_study_data(study)
    plan = plan_nas(study, data)
    assert (plan.space.in_channels, plan.space.out_channels) == (4, 4)  # FLAIR, T1w, T1gd, T2w -> background + 3 classes
    init_search(study, plan, 0, "all", out=tmp_path / "state-0.pt")
    search_episodes(study, data, plan, 0, "all", task=0, state_in=tmp_path / "state-0.pt", state_out=tmp_path / "state-1.pt")
    from proxyhpo import tracking
    from proxyhpo.tracking import names as metric_names

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    parent = tracking.start_parent_run(study.name, "nas", config={}, tracking_uri=uri)
    result = evaluate_fold(study, data, plan, 0, "all", state_in=tmp_path / "state-1.pt", model_dir=tmp_path / "model", out=tmp_path / "fold.json", parent_run_id=parent)
    assert result.test_dice is not None and 0.0 <= result.test_dice <= 1.0
    names = ["edema", "non-enhancing tumor", "enhancing tumour"]
    assert list(result.test_class_dice) == names and list(result.internal_test_class_dice) == names
    client = tracking.client(uri)
    (final,) = client.search_runs([client.get_experiment_by_name(study.name).experiment_id], filter_string=f"tags.`{metric_names.ROLE_TAG}` = '{metric_names.ROLE_NAS_FINAL}'")
    assert final.data.metrics["fold_test_dice_class_enhancing_tumour"] == pytest.approx(result.test_class_dice["enhancing tumour"])
    assert final.data.metrics["internal_test_dice_class_edema"] == pytest.approx(result.internal_test_class_dice["edema"])
    case = load_dataset(data.dataset).cases[0]
    mask = ExportedNetwork(tmp_path / "model", device="cpu").segment_file(case.image, tmp_path / "mask.nii.gz")
    written = nib.load(mask)
    assert written.shape == nib.load(case.label).shape  # one 3D label map on the input's grid, from a 4D image
    assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1, 2, 3}
    # the NAS pipeline's report step shows the fold's Dice per class under its search's row
    from proxyhpo.analysis import nas_report

    record = nas_report.collect(study, plan, [tmp_path / "fold.json"])
    assert list(record.arms["all"]["class_cv_dice"]) == names
    assert record.metrics["all_cv_dice_mean_class_enhancing_tumour"] == pytest.approx(result.test_class_dice["enhancing tumour"])
    assert "| &nbsp;&nbsp;class enhancing tumour |" in nas_report.render(record).markdown
