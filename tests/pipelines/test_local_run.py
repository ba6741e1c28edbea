"""The HPO pipeline run end to end by kfp.local.SubprocessRunner at a tiny size, checked through MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from proxyhpo.config import StudyConfig, parse_config
from proxyhpo.launch import run_local
from proxyhpo.errors import DataError
from proxyhpo.tracking import names
from tiny import tiny_recipe

TRIAL_PARAMS = {"lr", "optimizer", "intensity_shift_prob", "network", "data"}


def tiny_study(root: Path, **overrides) -> StudyConfig:
    document = {
        "name": "tiny-local",
        "data": {
            "dataset": str(root / "tiny"),
            "external": str(root / "tiny-external"),
            "synthetic": {"task": "spleen", "cases": 6, "size": 32, "seed": 3, "external_cases": 2},
            "holdout_fraction": 0.2,
        },
        "similarity": {"patch": 16},
        "selection": {"method": "mi+labelcrop", "budget": 4},
        "search": {"rounds": 2, "proposals_per_round": 2},
        "training": {
            "recipe": tiny_recipe(),
            "epochs": 1,
            "pack_size": 2,
            "batch_size": 1,
        },
        "final": {"epochs": 1, "network": "proxy"},  # a 5-level full U-Net needs patches of at least 32³
        **overrides,
    }
    return parse_config(StudyConfig, document, "<test>")


#: The brain phantom's tumour classes, as their metrics name them (the session's tiny run is on brain phantoms).
BRAIN_CLASSES = {"edema", "non_enhancing_tumor", "enhancing_tumour"}


def _class_names(run, metric: str) -> set[str]:
    return {key.removeprefix(f"{metric}_class_") for key in run.data.metrics if key.startswith(f"{metric}_class_")}


@pytest.mark.slow
@pytest.mark.xdist_group("tiny_hpo_run")  # one worker runs the session's tiny study for all three
def test_local_run_logs_the_mlflow_contract(tiny_hpo_run) -> None:
    # the session's tiny run (tests/conftest.py) uses ncc: every task re-reads the study from JSON, and a method other
    # than the default must survive that too (the default, mi+labelcrop, runs through the same tasks in test_study_runs.py)
    method = "ncc"
    summary = tiny_hpo_run.summary
    assert summary["n_trials"] == 4

    client = mlflow.MlflowClient(tiny_hpo_run.tracking_uri)
    experiment = client.get_experiment_by_name("tiny-local")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get(names.PIPELINE_TAG) == "hpo"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[names.STRATEGY_TAG] == tiny_hpo_run.study.search.strategy
    for metric in (names.BEST_VAL_DICE, names.TOTAL_GPU_HOURS, names.TOTAL_PROCESS_HOURS, names.FINAL_VAL_DICE):
        assert metric in parent.data.metrics, metric
    assert parent.data.metrics[names.TOTAL_PROCESS_HOURS] > 0

    trials = [run for run in runs if run.data.tags.get(names.ROLE_TAG) == names.ROLE_TRIAL]
    assert len(trials) == 4
    assert {run.data.tags[names.ROUND_TAG] for run in trials} == {"0", "1"}
    assert len({run.data.tags[names.TRIAL_KEY_TAG] for run in trials}) == 4  # each trial's identity, on its run
    for run in trials:
        assert run.data.tags[names.PARENT_TAG] == parent.info.run_id
        assert TRIAL_PARAMS <= set(run.data.params)
        assert run.data.params["network"] == "proxy-L3"
        assert run.data.params["data"] == f"{method}-4"
        assert {names.VAL_DICE, names.GPU_HOURS, names.WALL_SECONDS} <= set(run.data.metrics)
        history = client.get_metric_history(run.info.run_id, names.VAL_DICE)
        assert [m.step for m in history] == [1]
        assert _class_names(run, names.VAL_DICE) == BRAIN_CLASSES, run.data.metrics  # the Dice of each class

    (final,) = [run for run in runs if run.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL]
    assert final.data.params["network"] == "proxy-L3"
    assert names.TEST_DICE in final.data.metrics  # evaluated on the external set
    assert names.INTERNAL_TEST_DICE in final.data.metrics  # and on the held-out cases, which nothing before read
    assert _class_names(final, names.INTERNAL_TEST_DICE) == _class_names(final, names.TEST_DICE) == BRAIN_CLASSES
    # the result leaves as a MONAI bundle: logged to the final run, registered under the study's name (issue 20)
    assert "bundle" in {item.path for item in client.list_artifacts(final.info.run_id)}
    bundle = Path(mlflow.artifacts.download_artifacts(run_id=final.info.run_id, artifact_path="bundle/configs/inference.json", tracking_uri=tiny_hpo_run.tracking_uri))
    network = json.loads(bundle.read_text())["network_def"]
    assert (network["in_channels"], network["out_channels"]) == (4, 4), network  # 4 MR channels in, background + 3 classes out
    (version,) = client.search_model_versions("name = 'tiny-local'")
    assert version.run_id == final.info.run_id and len(version.tags[names.tag("dataset_sha256")]) == 64
    assert version.tags[names.tag("image_digest")] == "local"
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "search.png", "study.json", "summary.json", "controller_history.json"} <= artifacts
    report = Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="report.md", tracking_uri=tiny_hpo_run.tracking_uri)).read_text()
    assert "| class | validation | internal test | external |" in report and all(f"| {name} | " in report for name in BRAIN_CLASSES)
    assert [m.step for m in client.get_metric_history(parent.info.run_id, names.ROUND_MEAN_VAL_DICE)] == [0, 1]
    assert (tiny_hpo_run.home / "artifacts").is_dir()


def test_bad_data_stops_before_the_pipeline(tmp_path: Path, isolated_home: Path) -> None:
    study = tiny_study(tmp_path)
    study = study.model_copy(update={"data": study.data.model_copy(update={"synthetic": None})})
    with pytest.raises(DataError, match="tiny: does not exist"):
        run_local(study)
    assert not (isolated_home / "artifacts").exists()


def test_multi_class_labels_keep_their_classes_unless_merged(tmp_path: Path, isolated_home: Path) -> None:
    """Both prostate zones are classes of their own (issue 20); data.merge_labels joins them as the paper does."""
    from proxyhpo.data.prepare import classes_after_merge, prepare_study_data, study_merge

    study = tiny_study(tmp_path).model_copy(deep=True)
    document = study.model_dump(mode="json")
    document["data"]["synthetic"]["task"] = "prostate"
    document["training"]["recipe"]["intensity"] = {"kind": "normalize"}
    prostate = parse_config(StudyConfig, document, "<test>")
    labels = prepare_study_data(prostate).labels
    assert len(classes_after_merge(labels, study_merge(prostate))) == 3
    document["data"]["merge_labels"] = {2: 1}
    merged = parse_config(StudyConfig, document, "<test>")
    assert prepare_study_data(merged).modality == "MR"
    assert list(classes_after_merge(labels, study_merge(merged))) == [0, 1]
