"""The schema layer: every model survives its own JSON round trip, and importing it loads no stage.

A KFP task re-reads each record from JSON (the study config as a parameter, the others as artifacts),
so "a validated model equals the model read back from its JSON" must hold for every model, for every
shipped example and every selection method.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, RootModel

import proxyhpo.config as schema
from proxyhpo.config import (
    selection_methods,
    ControllerConfig,
    ControllerState,
    EarlyStoppingConfig,
    DataItem,
    FaultInjection,
    HistoryRecord,
    HyperParameters,
    NetworkConfig,
    PackSpec,
    PipelineShape,
    Proposal,
    ProxyDataManifest,
    StudyConfig,
    StudyData,
    StudyRun,
    TrialPlan,
    TrialResult,
    TrialResults,
    TrialSpec,
    StudyCell,
    TrialState,
    UpdateStats,
    default_search_space,
    grid_points,
    load_preset,
    load_study,
    study_from_json,
)
from proxyhpo.errors import ConfigError
from proxyhpo.networks.nas_encoding import largest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def _proposal(proposal_id: int = 0) -> Proposal:
    return Proposal(proposal_id=proposal_id, round=1, hyperparameters={"lr": 1e-3, "optimizer": "adam", "intensity_shift_prob": 0.25}, log_prob=-2.5)


def _result() -> TrialResult:
    return TrialResult(
        trial_id="r1-t000", state=TrialState.COMPLETE, hyperparameters=HyperParameters(lr=1e-3), network="proxy-L3",
        val_epochs=[1, 2], val_dice=[0.5, 0.6], final_val_dice=0.6, best_val_dice=0.6, best_epoch=2, process_hours=0.01,
    )


def _manifest() -> ProxyDataManifest:
    return ProxyDataManifest(
        method="mi+labelcrop", budget=4, seed=0, dataset="/data/d", dataset_sha256="ab" * 32,
        case_ids=("a", "b", "c", "d"), cases=tuple({"image": f"imagesTr/{c}.nii.gz", "label": f"labelsTr/{c}.nii.gz"} for c in "abcd"),
        scores=(0.1, 0.2, None, 0.4), train_ids=("a", "c"), val_ids=("b", "d"),
    )


#: One instance of every model of the schema layer a user writes or a stage hands on (studies come from the examples).
def _nas_space() -> schema.NasSearchSpace:
    return schema.NasSearchSpace.from_shapes(schema.NasSpaceConfig(channels=(2, 4, 4, 8, 8)), [(40, 64, 64), (24, 48, 56)], in_channels=2)


def _episode() -> schema.EpisodeStats:
    return schema.EpisodeStats(
        episode=0, samples=((0, 1), (0, 0)), rewards=(0.5, None), n_failed=1, stepped=True, mean_reward=0.5, max_reward=0.5,
        baseline=0.5, entropy=1.25, policy_loss=-0.1, loss=-0.2, most_likely=(0, 0), same_as_most_likely=0.5, mode_fraction=0.5,
    )


INSTANCES: dict[str, BaseModel] = {
    "nas_plan": schema.NasPlan(
        space=_nas_space(),
        folds=(schema.NasFold(fold=0, search_train_ids=("a", "b"), search_validation_ids=("c",), test_ids=("e",), proxy_ids=("a",), proxy_selection_seconds=0.5),),
        internal_test_ids=("d",), proxy_method="mi+labelcrop",
    ),
    "nas_fold_result": schema.NasFoldResult(
        fold=0, arm="proxy", architecture=largest(_nas_space()), test_dice=0.7, test_case_dice={"e": 0.7}, search_validation_dice=0.8,
        search_process_hours=0.25, train_cases=2, episodes=(_episode(),),
    ),
    "nas_controller_state": schema.NasControllerState(
        config=schema.NasControllerConfig(seed=2), decisions=(("patch_size", 2), ("skip", 2)), episode=1, baseline=0.5, history=(_episode(),),
    ),
    "search_space": default_search_space(),
    "controller_config": ControllerConfig(seed=3, max_grad_norm=None),
    "proposal": _proposal(),
    "history_record": HistoryRecord(proposal=_proposal(), reward=None, failed=True),
    "history_record_stopped": HistoryRecord(proposal=_proposal(), reward=0.25, failed=False, dice=0.31, stopped_at_epoch=10),
    "early_stopping": EarlyStoppingConfig(reduction_factor=4, min_epochs=5),
    "early_stopping_hyperband": EarlyStoppingConfig(reduction_factor=3, min_epochs=2, schedule="hyperband"),
    "update_stats": UpdateStats(round=0, n_proposals=2, n_failed=1, stepped=True, mean_reward=0.4),
    "controller_state": ControllerState(
        config=ControllerConfig(), search_space=default_search_space(), pending=(_proposal(1),), history=(HistoryRecord(proposal=_proposal(), reward=0.5, failed=False),)
    ),
    "pack_spec": PackSpec(round=1, pack_index=0, proposals=(_proposal(), _proposal(1))),
    "pack_checkpoint": schema.PackCheckpoint(
        trial_ids=["a"], epoch=1, step=2, elapsed=1.0, chunk_size=1, stopper={"arrivals": 1},
        trials=[schema.TrialCheckpoint(trial_id="a", charged_seconds=1.0, admitted_after=0.0, first_tick=0, epochs_run=1, steps_run=2)],
    ),
    "search_state": schema.SearchState(
        strategy="random", seed=1, batches=1, next_proposal_id=2, generator={"bit_generator": "PCG64", "state": {"state": 2**100, "inc": 7}},
        pending=(_proposal(1),), history=(HistoryRecord(proposal=_proposal(), reward=0.5, failed=False, dice=0.5),),
    ),
    "recipe_spleen": load_preset("spleen"),
    "recipe_prostate": load_preset("prostate"),
    "network_full": NetworkConfig.full(),
    "network_proxy": NetworkConfig.proxy(4),
    "hyperparameters": HyperParameters(lr=3e-4, optimizer="novograd", intensity_shift_prob=0.5, weight_decay=1e-5),
    "trial_plan": TrialPlan(
        recipe=load_preset("prostate"), train=[DataItem(image="a.nii.gz", label="b.nii.gz")], val=[DataItem(image="c.nii.gz", label="d.nii.gz")],
        trials=[TrialSpec(trial_id="t0", hyperparameters=HyperParameters(lr=1e-3), fault=FaultInjection(kind="nan"), tags={"k": "v"})],
        pack_size="auto",
    ),
    "trial_results": TrialResults(results=(_result(),)),
    "study_data": StudyData(
        dataset="/data/d", dataset_sha256="ab" * 32, modality="MR", labels={0: "background", 1: "prostate", 2: "zone"},
        holdout_ids=("x",), search_ids=("a", "b", "c", "d"), search_train_ids=("a", "b", "d"), search_val_ids=("c",),
    ),
    "proxy_manifest": _manifest(),
    "study_run": StudyRun(experiment="s", run_id="0123abc", study=StudyConfig.model_validate({"name": "s", "data": {"dataset": "s3://b/d"}})),
    "pipeline_shape": PipelineShape(rounds=3, gpus=2),
    "pipeline_shape_without_rounds": PipelineShape(rounds=None, gpus=2),
    "grid_point": grid_points({"optimizer": ("adam",), "lr": (0.001,)})[0],
    "study_cell": StudyCell(
        study="proxy-data-study", arm="mi+labelcrop-4", repeat=3, network=NetworkConfig.proxy(3), train_ids=("a", "b"), val_ids=("c", "d"),
        data_fraction=0.1, selection_seconds=2.5, selection_device="cuda",
    ),
}


def _studies() -> list[tuple[str, StudyConfig]]:
    studies = []
    for example in EXAMPLES:
        study = load_study(example)
        for method in selection_methods():
            selection = study.selection.model_copy(update={"method": method})
            studies.append((f"{example.stem}-{method}", StudyConfig.model_validate(study.model_copy(update={"selection": selection}).model_dump())))
    return studies


@pytest.mark.parametrize("model", [m for _, m in INSTANCES.items()] + [s for _, s in _studies()], ids=list(INSTANCES) + [n for n, _ in _studies()])
def test_model_equals_its_json_read_back(model: BaseModel) -> None:
    assert type(model).model_validate_json(model.model_dump_json()) == model


@pytest.mark.parametrize("name, study", _studies(), ids=[n for n, _ in _studies()])
def test_study_survives_the_pipeline_parameter(name: str, study: StudyConfig) -> None:
    # what every KFP task does with its study_config parameter
    assert study_from_json(study.model_dump_json()) == study


def test_every_schema_model_is_covered() -> None:
    models = {
        obj for _, obj in inspect.getmembers(schema, inspect.isclass)
        if issubclass(obj, BaseModel) and obj.__module__.startswith("proxyhpo.config.") and obj not in (schema.StrictModel, schema.Record)
    }
    covered = {type(m) for m in INSTANCES.values()} | {StudyConfig}
    # nested models are covered through their parents
    nested = {
        schema.SyntheticDataConfig, schema.DataConfig, schema.SimilarityConfig, schema.SelectionConfig, schema.SearchConfig,
        schema.TrialSettings, schema.FinalConfig, schema.ResourcesConfig, schema.HUWindow, schema.Normalize, schema.Categorical,
        schema.Uniform, schema.LogUniform, schema.FaultInjection, schema.TrialSpec, schema.DataItem, schema.TrialResult,
        schema.StudiesConfig, schema.ProxyDataStudyConfig, schema.ProxyNetStudyConfig, schema.TrustConfig,
        schema.NasConfig, schema.NasChildConfig, schema.NasSpaceConfig, schema.NasControllerConfig, schema.NasFold,
        schema.Decision, schema.Architecture, schema.NasSearchSpace, schema.EpisodeStats, schema.TrialCheckpoint,
    }
    missing = sorted(m.__name__ for m in models - covered - nested if not issubclass(m, RootModel) or m is not schema.SearchSpace)
    assert missing == [], f"add an instance of {missing} to INSTANCES"


def test_records_write_and_read(tmp_path: Path) -> None:
    for name in ("trial_results", "study_data", "proxy_manifest", "study_run", "pack_spec", "trial_plan"):
        record = INSTANCES[name]
        path = record.write(tmp_path / f"{name}.json")
        assert type(record).read(path) == record


def test_reading_a_record_of_another_kind_names_the_file_and_key(tmp_path: Path) -> None:
    path = INSTANCES["study_run"].write(tmp_path / "run.json")
    with pytest.raises(ConfigError, match=r"run.json: required key 'dataset' is missing \(and 10 more\); fix: regenerate it with the study's prepare step"):
        StudyData.read(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"run.json: is not a StudyRun JSON file"):
        StudyRun.read(path)


def test_study_json_that_is_not_json_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match="study_config: is not valid JSON"):
        study_from_json("{name: x")


def test_manifest_split_must_cover_its_cases() -> None:
    document = _manifest().model_dump() | {"val_ids": ("b",)}
    with pytest.raises(ValueError, match="train_ids and val_ids must split case_ids exactly"):
        ProxyDataManifest.model_validate(document)


def test_manifest_is_checked_against_the_data() -> None:
    data = INSTANCES["study_data"]
    _manifest().check_against(data)
    other = data.model_copy(update={"dataset_sha256": "cd" * 32})
    with pytest.raises(ConfigError, match=r"was chosen from data set abababababab, but the study's data are cdcdcdcdcdcd"):
        _manifest().check_against(other)
    fewer = data.model_copy(update={"search_ids": ("a", "b", "c")})
    with pytest.raises(ConfigError, match=r"chose cases outside the study's search cases: \['d'\]"):
        _manifest().check_against(fewer)


@pytest.mark.parametrize(
    "compiled, expected",
    [
        (PipelineShape(rounds=5, gpus=1), r"search.rounds is 3 but this pipeline was compiled for 5.*compile the pipeline for this study \(`proxyhpo compile STUDY.yaml`\)"),
        (PipelineShape(rounds=3, gpus=4), r"resources.gpus is 1 but this pipeline was compiled for 4"),
    ],
)
def test_a_study_edited_after_compilation_is_refused(compiled: PipelineShape, expected: str) -> None:
    study = load_study(Path(__file__).parents[2] / "examples" / "demo.yaml")
    study.check_compiled_shape(study.shape)
    with pytest.raises(ConfigError, match=expected):
        study.check_compiled_shape(compiled)


@pytest.mark.parametrize("module", ["proxyhpo.config", "proxyhpo.cli", "proxyhpo.kfp.components", "proxyhpo.launch", "proxyhpo.study"])
def test_schema_and_entry_points_load_without_torch(module: str) -> None:
    code = f"import sys, {module}; heavy = sorted(m for m in ('torch', 'monai', 'mlflow') if m in sys.modules); print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} loads {out}"


def test_help_loads_no_stage() -> None:
    code = "import sys; from proxyhpo.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'monai', 'mlflow', 'kfp', 'pipelines') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    assert out == "[]"


@pytest.mark.parametrize("module", ["proxyhpo.data.prepare", "proxyhpo.analysis.report", "proxyhpo.controller.state", "proxyhpo.tracking"])
def test_steps_that_do_not_train_load_no_torch(module: str) -> None:
    # the prepare, report, exit-handler and state-reading steps start without torch's seconds of import
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing {module} loads {out}"


def test_the_examples_are_found() -> None:
    # the parametrisations above would silently shrink if the examples moved
    assert [path.name for path in EXAMPLES] == [
        "demo-studies.yaml", "demo.yaml", "nas-brain.yaml", "nas-demo.yaml", "nas-heart.yaml", "nas-prostate.yaml", "prostate.yaml", "spleen.yaml",
    ]
