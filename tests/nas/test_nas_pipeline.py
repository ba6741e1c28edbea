"""The NAS pipeline: compiled (targeted asserts) and run end to end by kfp.local at a tiny size, checked through MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import nibabel as nib
import pytest
import yaml

from proxyhpo import paths
from proxyhpo.compile import compile_study
from proxyhpo.config import StudyConfig, parse_config
from proxyhpo.launch import run_local
from proxyhpo.tracking import names
from proxyhpo.training.nas_export import ExportedNetwork


def _tasks(compiled: Path) -> dict[str, dict]:
    spec = next(yaml.safe_load_all(compiled.read_text()))
    found: dict[str, dict] = {}

    def walk(dag: dict) -> None:
        for name, task in dag.get("tasks", {}).items():
            found[name] = task
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"])

    walk(spec["root"]["dag"])
    return found


def test_compiled_nas_pipeline_chains_the_search_tasks(tmp_path: Path, tiny_nas_study) -> None:
    study = tiny_nas_study(tmp_path, episodes=5, episodes_per_task=2, search_data="both")
    compiled = compile_study(study, tmp_path / "nas.yaml", "nas")
    tasks = _tasks(compiled)
    searches = sorted(name for name in tasks if name.startswith("nas-search"))
    assert len(searches) == study.nas.tasks == 3  # episodes 1-2, 3-4, 5
    for name in searches:
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 2
    # each search task takes the state the one before it wrote
    second = tasks[searches[1]]["inputs"]["artifacts"]["state_in"]["taskOutputArtifact"]
    assert second == {"outputArtifactKey": "state", "producerTask": searches[0]}
    text = compiled.read_text()
    assert '"episodes":5' in text.replace(" ", "") and "proxyhpo-nas" in text


@pytest.mark.slow
def test_nas_pipeline_runs_locally_and_exports_a_network(tmp_path: Path, isolated_home: Path, tiny_nas_study) -> None:
    # one search task per fold: the hand-over between search tasks is pinned bit for bit in test_nas_search.py and its
    # wiring in the compiled YAML above; each task more is a process that loads torch and MONAI again
    # on the brain phantom (4 MR channels, 3 tumour classes): the supernet takes and gives the data's widths, the
    # folds' final networks log each class's Dice, the exported network segments a 4-channel case
    document = tiny_nas_study(tmp_path, episodes=2, episodes_per_task=2, children_per_episode=2).model_dump(mode="json")
    document["data"].update(dataset=str(tmp_path / "brain"), synthetic={"task": "brain", "cases": 10, "size": 32, "seed": 5, "external_cases": 0})
    study = parse_config(StudyConfig, document, "<test>")
    summary = run_local(study, "nas")
    assert summary["metrics"]["all_cv_dice_mean"] >= 0.0
    # the report names its sets: 8 search cases in 2 folds of 3 search-train, 1 search-validation, 4 test; 2 held out
    assert summary["sets"]["protocol"].startswith("nested cross-validation")
    assert [(f["search_train"], f["search_validation"], f["test"]) for f in summary["sets"]["folds"]] == [(3, 1, 4), (3, 1, 4)]
    assert summary["sets"]["internal_test"] == 2
    assert (summary["n_trials"], summary["n_failed"], summary["n_stopped"]) == (2 * 2 * 2, 0, 0)

    client = mlflow.MlflowClient(paths.tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("tiny-nas").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get(names.PIPELINE_TAG) == "nas"]
    assert parent.info.status == "FINISHED"
    searches = [run for run in runs if run.data.tags.get(names.ROLE_TAG) == names.ROLE_NAS_SEARCH]
    assert len(searches) == study.nas.folds * study.nas.tasks
    for run in searches:
        assert run.info.status == "FINISHED"
        assert run.data.tags[names.PARENT_TAG] == parent.info.run_id
        episodes = study.nas.task_episodes(int(run.data.tags[names.TASK_TAG]))
        assert [m.step for m in client.get_metric_history(run.info.run_id, names.REWARD_MEAN)] == list(episodes)
        assert {names.ENTROPY, names.SAME_AS_MOST_LIKELY, names.WALL_SECONDS} <= set(run.data.metrics)
    finals = [run for run in runs if run.data.tags.get(names.ROLE_TAG) == names.ROLE_NAS_FINAL]
    assert sorted(run.data.tags[names.FOLD_TAG] for run in finals) == ["0", "1"]
    for run in finals:  # each final network's Dice on its fold's test part, on the reward cases, on the held-out cases
        assert {names.FOLD_TEST_DICE, names.VAL_DICE, names.INTERNAL_TEST_DICE} <= set(run.data.metrics)
        classes = {key.removeprefix(f"{names.FOLD_TEST_DICE}_class_") for key in run.data.metrics if key.startswith(f"{names.FOLD_TEST_DICE}_class_")}
        assert classes == {"edema", "non_enhancing_tumor", "enhancing_tumour"}, run.data.metrics
    assert {"report.md", "controller.png", "summary.json", "fold_results.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}

    model = Path(mlflow.artifacts.download_artifacts(run_id=finals[0].info.run_id, artifact_path="model", tracking_uri=paths.tracking_uri()))
    network = ExportedNetwork(model, device="cpu")
    from proxyhpo.data.msd import load_dataset

    case = load_dataset(study.data.dataset).cases[0]
    mask = network.segment_file(case.image, tmp_path / "mask.nii.gz")
    assert nib.load(mask).shape == nib.load(case.image).shape[:3]  # one class map, no channel axis
