"""Trial plans, recipes and hyper-parameters: presets, validation, and YAML errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from proxyhpo.config import PRESETS, HyperParameters, NetworkConfig, TrialPlan, TrialSpec, load_preset
from proxyhpo.errors import ConfigError


def test_presets_hold_the_papers_recipes():
    spleen, prostate = load_preset("spleen"), load_preset("prostate")
    assert spleen.spacing == (1.5, 1.5, 2.0)
    assert (spleen.intensity.a_min, spleen.intensity.a_max) == (-57.0, 164.0)
    assert spleen.patch_size == (96, 96, 96) and spleen.roi_size == (160, 160, 160)
    assert prostate.spacing == (1.0, 1.0, 1.0) and prostate.intensity.kind == "normalize"
    assert prostate.patch_size == (128, 128, 48) and prostate.label_merge == {2: 1} and prostate.pad
    assert set(PRESETS) == {"spleen", "prostate", "demo"}
    demo = load_preset("demo")
    assert max(demo.patch_size) <= 48 and max(demo.roi_size) <= 64


def test_unknown_preset():
    with pytest.raises(ConfigError, match="recipe preset 'liver' does not exist"):
        load_preset("liver")


@pytest.mark.parametrize(
    "kwargs, key",
    [({"lr": 0}, "lr"), ({"lr": 1e-3, "optimizer": "sgd"}, "optimizer"), ({"lr": 1e-3, "intensity_shift_prob": 1.5}, "intensity_shift_prob")],
)
def test_hyper_parameters_checked(kwargs, key):
    with pytest.raises(ValidationError) as err:
        HyperParameters(**kwargs)
    assert err.value.errors()[0]["loc"] == (key,)


def _plan_dict(tmp_path: Path) -> dict:
    return {
        "recipe": "demo",
        "train": [{"image": "a.nii.gz", "label": "a_seg.nii.gz"}],
        "val": [{"image": str(tmp_path / "b.nii.gz"), "label": str(tmp_path / "b_seg.nii.gz")}],
        "epochs": 2,
        "trials": [{"trial_id": "t0", "hyperparameters": {"lr": 1e-3, "optimizer": "novograd"}, "network": {"kind": "proxy", "levels": 4, "base_channels": 4, "num_res_units": 1}}],
    }


def test_from_yaml_resolves_relative_paths(tmp_path):
    f = tmp_path / "sub" / "trial.yaml"
    f.parent.mkdir()
    f.write_text(yaml.safe_dump(_plan_dict(tmp_path)))
    plan = TrialPlan.from_yaml(f)
    assert plan.train[0].image == str(f.parent / "a.nii.gz")
    assert plan.val[0].image == str(tmp_path / "b.nii.gz")
    assert plan.trials[0].network == NetworkConfig.proxy(4)
    assert plan.pack_size == "auto" and plan.device == "auto"
    assert plan.resolved_recipe().name == "demo"


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d.update(epoch=3), "unknown key 'epoch'; fix: did you mean 'epochs'?"),
        (lambda d: d["trials"][0]["hyperparameters"].update(lr=-1), "key 'trials.0.hyperparameters.lr': Input should be greater than 0 (got -1); fix: correct the value"),
        (lambda d: d["trials"][0].pop("hyperparameters"), "required key 'trials.0.hyperparameters' is missing; fix: add 'trials.0.hyperparameters'"),
        (lambda d: d.update(pack_size=0), "key 'pack_size"),
        (lambda d: d.update(recipe="liver"), "recipe preset 'liver' does not exist"),
        (lambda d: d["trials"].append(dict(d["trials"][0])), "trial_id values must be unique, repeated: t0"),
    ],
)
def test_bad_plan_names_file_and_key(tmp_path, edit, expected):
    d = _plan_dict(tmp_path)
    edit(d)
    f = tmp_path / "trial.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as err:
        TrialPlan.from_yaml(f)
    assert str(err.value).startswith(f"{f}: ")
    assert expected in str(err.value)


def test_malformed_yaml_and_missing_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("trials: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: is not valid YAML"):
        TrialPlan.from_yaml(f)
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: holds a list, not a mapping"):
        TrialPlan.from_yaml(f)
    with pytest.raises(ConfigError, match=r"nope.yaml: file does not exist"):
        TrialPlan.from_yaml(tmp_path / "nope.yaml")


def test_records_are_frozen():
    spec = TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3))
    with pytest.raises(ValidationError):
        spec.seed = 3
    assert spec.network == NetworkConfig.proxy(3)
