"""An unknown config key is one line naming the key, the file and the nearest valid key (issue 23)."""

from __future__ import annotations

import pytest

from proxyhpo.config import StudyConfig, TrialPlan, parse_config
from proxyhpo.errors import ConfigError


def _study(**changes) -> dict:
    document = {
        "name": "typo",
        "data": {"dataset": "/data/spleen", "holdout_fraction": 0.25},
        "selection": {"method": "mi+labelcrop", "budget": 4},
        "training": {"recipe": "demo"},
    }
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            document[section] = {**document[section], leaf: value}
        else:
            document[section] = value
    return document


@pytest.mark.parametrize(
    ("changes", "unknown", "nearest"),
    [
        ({"training__epoch": 3}, "training.epoch", "training.epochs"),  # a nested key
        ({"selecton": {"budget": 4}}, "selecton", "selection"),  # a top-level one
        ({"data__holdout_fracton": 0.2}, "data.holdout_fracton", "data.holdout_fraction"),
    ],
)
def test_an_unknown_key_names_the_nearest_valid_one(changes: dict, unknown: str, nearest: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(StudyConfig, _study(**changes), "study.yaml")
    line = str(raised.value)
    assert "\n" not in line and line.startswith("study.yaml: ") and f"unknown key '{unknown}'" in line
    assert f"did you mean '{nearest}'?" in line


def test_a_key_like_no_valid_one_gets_no_guess() -> None:
    with pytest.raises(ConfigError, match="unknown key 'training.zzzzqqq'") as raised:
        parse_config(StudyConfig, _study(training__zzzzqqq=1), "study.yaml")
    assert "did you mean" not in str(raised.value)


def test_a_key_under_a_list_of_models_is_guessed_among_that_model_s_keys() -> None:
    document = {"recipe": "demo", "train": [{"image": "/a.nii.gz", "label": "/b.nii.gz"}], "val": [{"image": "/c.nii.gz", "label": "/d.nii.gz"}],
                "epochs": 1, "trials": [{"trial_id": "t0", "hyperparameters": {"lr": 0.01}, "seeed": 1}]}
    with pytest.raises(ConfigError, match=r"did you mean 'trials\.0\.seed'\?"):
        parse_config(TrialPlan, document, "trial.yaml")
