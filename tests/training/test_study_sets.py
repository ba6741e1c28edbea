"""A study's three disjoint sets: what searches, what validates, and the untouched internal test set.

Each test here failed on the code before issue 18: the "all data" search validated on the held-out cases,
the planner accepted that, and the final model chose its checkpoint on the cases it reported as its test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from proxyhpo.config import DataItem, StudyConfig, TrialPlan, TrialSpec, HyperParameters, parse_config
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.prepare import prepare_study_data
from proxyhpo.errors import ConfigError
from proxyhpo.similarity.proxy_data import all_data_manifest, select_for_study
from proxyhpo.similarity.study_cells import plan_cells
from proxyhpo.training.study_trials import final_model_plan


def _study(root: Path, **training) -> StudyConfig:
    document = {
        "name": "sets",
        "data": {
            "dataset": str(root / "spleen"),
            "synthetic": {"task": "spleen", "cases": 12, "size": 32, "seed": 5},
            "holdout_fraction": 0.25,
            "search_val_fraction": 0.25,
        },
        "similarity": {"patch": 16},
        "selection": {"method": "mi+labelcrop", "budget": 4},
        "training": {"recipe": "demo", **training},
        "studies": {"trust": {"repeats": 1}},
    }
    return parse_config(StudyConfig, document, "<test>")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    study = _study(tmp_path_factory.mktemp("sets"))
    return study, prepare_study_data(study)


def test_a_prepared_study_has_three_disjoint_sets_covering_every_case(prepared) -> None:
    study, data = prepared
    train, val, test = set(data.search_train_ids), set(data.search_val_ids), set(data.holdout_ids)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {case.case_id for case in load_dataset(data.dataset).cases}
    assert (len(test), len(val), len(train)) == (3, 2, 7)  # 12 cases: 25% held out, 25% of the other 9 validate


def test_the_all_data_search_never_reads_the_held_out_cases(prepared) -> None:
    study, data = prepared
    manifest = all_data_manifest(load_dataset(data.dataset), data)
    assert not set(manifest.case_ids) & set(data.holdout_ids)
    assert (manifest.train_ids, manifest.val_ids) == (data.search_train_ids, data.search_val_ids)
    manifest.check_against(data)


@pytest.mark.parametrize("data_setting", ["full", "proxy"])
def test_every_search_setting_reads_search_cases_only(tmp_path, prepared, data_setting) -> None:
    _, data = prepared
    study = _study(tmp_path, data=data_setting)
    manifest = select_for_study(study, data)
    assert set(manifest.case_ids) <= set(data.search_ids)


def test_the_planner_refuses_a_search_that_reads_the_test_set(prepared) -> None:
    _, data = prepared
    leaky = all_data_manifest(load_dataset(data.dataset), data)
    held_out = data.holdout_ids[0]
    leaky = leaky.model_copy(update={"case_ids": (*leaky.case_ids, held_out), "val_ids": (*leaky.val_ids, held_out), "scores": (*leaky.scores, None), "cases": (*leaky.cases, leaky.cases[0])})
    with pytest.raises(ConfigError, match=rf"manifest: reads held-out test cases \['{held_out}'\] in its search.*held-out cases test the final model and nothing else"):
        leaky.check_against(data)


def test_the_final_model_is_tested_on_cases_nothing_before_read(tmp_path, prepared) -> None:
    study, data = prepared
    plan = final_model_plan(study, data, {"lr": 1e-3}, model_dir=tmp_path / "model")
    dataset = load_dataset(data.dataset)
    images = {case.case_id: case.as_dict()["image"] for case in dataset.cases}
    assert [item.image for item in plan.internal_test] == [images[i] for i in data.holdout_ids]
    assert [item.image for item in plan.val] == [images[i] for i in data.search_val_ids]  # the checkpoint choice
    assert [item.image for item in plan.train] == [images[i] for i in data.search_train_ids]


def test_a_trial_plan_refuses_a_test_set_that_training_reads() -> None:
    a, b, c = (DataItem(image=f"{n}.nii.gz", label=f"{n}_seg.nii.gz") for n in "abc")
    trial = TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3))
    TrialPlan(train=[a], val=[b], internal_test=[c], trials=[trial])
    for field in ("internal_test", "test"):
        with pytest.raises(ValidationError, match=rf"{field} shares cases with train or val \(b.nii.gz\): a test set must be untouched"):
            TrialPlan(train=[a], val=[b], trials=[trial], **{field: [b]})


def test_the_trust_check_that_gates_a_search_reads_search_cases_only(prepared) -> None:
    study, data = prepared
    cells = plan_cells(study, data, "trust")
    assert {cell.arm for cell in cells} == {"full", "proxy"}
    for cell in cells:
        assert not set((*cell.train_ids, *cell.val_ids)) & set(data.holdout_ids), cell.arm


def test_a_random_proxy_data_set_is_drawn_anew_per_repeat_from_the_all_data_cases(prepared) -> None:
    # the proxy-data study's random arm (the pipeline test runs its similarity arm only): each repeat draws its own
    # cases from those the all-data arm of that repeat splits, never the same draw twice
    study, data = prepared
    study = study.model_copy(update={"studies": study.studies.model_copy(update={"proxy_data": study.studies.proxy_data.model_copy(update={"methods": ("random",), "budgets": (4,), "repeats": 3})})})
    cells = plan_cells(study, data, "proxy-data-study")
    drawn = [set(cell.train_ids) | set(cell.val_ids) for cell in cells if cell.arm == "random-4"]
    reference = [set(cell.train_ids) | set(cell.val_ids) for cell in cells if cell.arm == "full"]
    assert len(drawn) == 3 == len(reference) and all(len(cases) == 4 for cases in drawn)
    assert len({frozenset(cases) for cases in drawn}) == 3
    assert all(cases <= reference[0] for cases in drawn)
