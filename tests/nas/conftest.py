"""A tiny NAS study on synthetic phantoms (~18³ volumes), shared by the NAS tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import StudyConfig, StudyData, parse_config
from proxyhpo.config.nas import NasPlan


def tiny_nas_study(root: Path, **nas: object) -> StudyConfig:
    document = {
        "name": "tiny-nas",
        "data": {
            "dataset": str(root / "tiny-nas"),
            "synthetic": {"task": "spleen", "cases": 10, "size": 32, "seed": 5, "external_cases": 0},
            "holdout_fraction": 0.2,
        },
        "similarity": {"patch": 16},
        "selection": {"method": "mi+labelcrop", "budget": 3},
        "training": {
            "recipe": {
                "name": "tiny-nas",
                "spacing": [12.0, 12.0, 14.0],
                "intensity": {"kind": "normalize"},
                "patch_size": [32, 32, 32],
                "roi_size": [32, 32, 32],
            }
        },
        "nas": {
            "space": {"channels": [2, 4, 4, 8, 8]},
            "episodes": 4,
            "children_per_episode": 2,
            "child_epochs": 1,
            "episodes_per_task": 2,
            "folds": 2,
            "search_data": "all",
            "child": {"batch_size": 2},
            "controller": {"lr": 0.05},
            "device": "cpu",
            **nas,
        },
    }
    return parse_config(StudyConfig, document, "<test>")


@pytest.fixture(name="tiny_nas_study")
def _tiny_nas_study():
    """The factory :func:`tiny_nas_study` (test modules are imported without a package path)."""
    return tiny_nas_study


@pytest.fixture(scope="module")
def nas_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, StudyData, NasPlan, Path]:
    """The tiny study, its prepared data and its plan (generated once per module)."""
    from proxyhpo.data.prepare import prepare_study_data
    from proxyhpo.training.nas_search import plan_nas

    root = tmp_path_factory.mktemp("nas")
    study = tiny_nas_study(root)
    data = prepare_study_data(study)
    return study, data, plan_nas(study, data, out=root / "plan.json"), root
