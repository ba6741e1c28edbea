"""A multi-class, multi-channel study through the HPO pipeline's steps, in process (issue 20).

Each step is the library call its KFP task makes (components/proxyhpo/kfp/components.py), in the pipeline's order, on a
tiny brain phantom (4 MR channels, background and 3 tumour classes) with a real SQLite MLflow store: no kfp.local run,
so the chain costs seconds. Every trial's run must hold its Dice per class, the final model's too, the final model must
leave as a 4-channel, 4-class bundle, and the report must show the Dice per class. The proxy-net study and the automl
comparison (whose arms are HPO searches with final models) run on the same phantom through kfp.local in
tests/pipelines/test_study_runs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import PackSpec, StudyConfig, StudyData, parse_config
from proxyhpo.tracking import names
from tiny import tiny_recipe

pytestmark = pytest.mark.slow

CLASSES = ("edema", "non_enhancing_tumor", "enhancing_tumour")  # the brain phantom's classes, as their metrics name them


def _study(root: Path, name: str, **sections) -> StudyConfig:
    recipe = tiny_recipe() | {"intensity": {"kind": "normalize"}}
    document = {
        "name": name,
        "data": {"dataset": str(root / "brain"), "synthetic": {"task": "brain", "cases": 6, "size": 32, "seed": 3, "external_cases": 0}, "holdout_fraction": 0.2},
        "similarity": {"patch": 16},
        "selection": {"method": "mi+labelcrop", "budget": 4},
        "training": {"recipe": recipe, "epochs": 1, "pack_size": 2, "batch_size": 1},
        **sections,
    }
    return parse_config(StudyConfig, document, "<test>")


def _prepared(study: StudyConfig, root: Path, pipeline: str):
    from proxyhpo.data.prepare import prepare_study_data
    from proxyhpo.study import open_study

    run = open_study(study, pipeline=pipeline, pipeline_run=f"steps-{pipeline}", compiled=study.shape, out=root / f"{pipeline}-run.json")
    prepare_study_data(study).write(root / f"{pipeline}-data.json")
    return run, StudyData.read(root / f"{pipeline}-data.json")


def _class_metrics(run, metric: str) -> set[str]:
    return {key.removeprefix(f"{metric}_class_") for key in run.data.metrics if key.startswith(f"{metric}_class_")}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROXYHPO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("PROXYHPO_CHECKPOINT_ROOT", raising=False)
    return tmp_path


def test_a_brain_hpo_study_logs_per_class_dice_and_leaves_a_four_class_bundle(home: Path) -> None:
    import json

    from proxyhpo import paths, tracking
    from proxyhpo.analysis.report import write_report
    from proxyhpo.controller.rounds import init_controller, propose_round, update_round
    from proxyhpo.similarity.proxy_data import select_for_study
    from proxyhpo.training.study_trials import train_final, train_pack

    study = _study(home, "brain-hpo", search={"rounds": 1, "proposals_per_round": 2}, final={"epochs": 1, "network": "proxy"})
    run, data = _prepared(study, home, "hpo")
    assert data.labels == {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}
    manifest = select_for_study(study, data)
    init_controller(study, home / "s0.json")
    packs = propose_round(study, home / "s0.json", home / "s1.json")
    results = []
    for i, pack in enumerate(packs):
        train_pack(study, data, manifest, PackSpec.model_validate_json(pack), parent_run_id=run.run_id, results_out=home / f"p{i}.json")
        results.append(home / f"p{i}.json")
    update_round(study, home / "s1.json", results, home / "s2.json", expected_packs=len(packs))
    train_final(study, data, home / "s2.json", parent_run_id=run.run_id, results_out=home / "final.json", model_dir=home / "model")
    write_report(study, run.run_id, home / "s2.json", markdown=home / "report.md", html=home / "report.html")

    client = tracking.client(paths.tracking_uri())
    children = client.search_runs([client.get_experiment_by_name("brain-hpo").experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{run.run_id}'")
    trials = [r for r in children if r.data.tags.get(names.ROLE_TAG) == names.ROLE_TRIAL]
    (final,) = [r for r in children if r.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL]
    assert len(trials) == 2 and all(_class_metrics(r, names.VAL_DICE) == set(CLASSES) for r in trials)
    assert _class_metrics(final, names.INTERNAL_TEST_DICE) == set(CLASSES)
    # the final model's bundle: 4 channels in, 4 classes out, logged and registered under the study's name
    metadata = json.loads((home / "model" / "bundle" / "configs" / "metadata.json").read_text())["network_data_format"]
    assert (metadata["inputs"]["image"]["num_channels"], metadata["outputs"]["pred"]["num_channels"]) == (4, 4)
    (version,) = client.search_model_versions("name = 'brain-hpo'")
    assert version.run_id == final.info.run_id
    markdown = (home / "report.md").read_text()
    assert "| class | validation | internal test | external |" in markdown and all(f"| {name} | " in markdown for name in CLASSES)
