"""Study configs: every example loads; bad keys and values are errors naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo.config import PipelineShape, ProxyDataManifest, SelectionConfig, StudyConfig, StudyData, StudyRun, load_config, load_study, study_from_json
from proxyhpo.errors import ConfigError, StorageError

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    study = load_study(path)
    assert isinstance(study, StudyConfig) and study.name


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: s\ndata: {dataset: d}\nsearch: {roundz: 3}\n", "unknown key 'search.roundz'"),
        ("name: s\ndata: {dataset: d}\nbogus: 1\n", "unknown key 'bogus'"),
        ("name: s\n", "required key 'data' is missing"),
        ("name: s\ndata: {dataset: d}\nselection: {budget: 1}\n", "key 'selection.budget': Input should be greater than or equal to 2 (got 1)"),
        ("name: s\ndata: {dataset: d}\nselection: {method: mutual}\n", "key 'selection.method'"),
        ("name: s\ndata: {dataset: d}\nsearch: {space: {lr: {type: log_uniform, low: 0, high: 1}}}\n", "search.space.lr"),
        ("name: [unclosed\n", "is not valid YAML at line 2, column 1"),
        ("- a\n- b\n", "holds a list, not a mapping"),
    ],
)
def test_bad_configs_name_the_key_and_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "; fix: " in message


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="file does not exist") as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}: ")


def test_patch_too_small_for_the_full_network(tmp_path: Path) -> None:
    text = (
        "name: s\ndata: {dataset: d}\ntraining:\n  recipe: {name: t, intensity: {kind: normalize}, "
        "patch_size: [16, 16, 16], roi_size: [32, 32, 32]}\n"
    )
    with pytest.raises(ConfigError, match=r"1x1x1 voxel.*final.network: full"):
        load_study(_write(tmp_path, text))


def test_patch_not_a_multiple_for_the_proxy_levels(tmp_path: Path) -> None:
    text = (
        "name: s\ndata: {dataset: d}\ntraining:\n  proxy_levels: 4\n  recipe: {name: t, intensity: {kind: normalize}, "
        "patch_size: [36, 36, 36], roi_size: [64, 64, 64]}\n"
    )
    with pytest.raises(ConfigError, match=r"multiple of 2\^\(levels-1\) = 8"):
        load_study(_write(tmp_path, text))


def test_selection_method_implies_metric_and_crop() -> None:
    assert (SelectionConfig(method="mi+labelcrop").metric, SelectionConfig(method="mi+labelcrop").crop) == ("mi", "label")
    assert (SelectionConfig(method="ncc").metric, SelectionConfig(method="ncc").crop) == ("ncc", "none")
    assert SelectionConfig(method="random").metric is None


def test_load_config_for_any_model(tmp_path: Path) -> None:
    path = tmp_path / "selection.yaml"
    path.write_text("method: random\nbudget: 4\nseed: 7\n")
    assert load_config(SelectionConfig, path) == SelectionConfig(method="random", budget=4, seed=7)


@pytest.mark.parametrize(
    "space, expected",
    [
        ("{momentum: {type: uniform, low: 0, high: 1}}", "search.space.momentum is not a hyper-parameter the trainer knows"),
        ("{optimizer: {type: categorical, choices: [sgd, adam]}}", "search.space.optimizer allows 'sgd'"),
        ("{intensity_shift_prob: {type: uniform, low: 0, high: 2}}", "search.space.intensity_shift_prob allows 2.0"),
    ],
)
def test_search_space_must_be_trainable(tmp_path: Path, space: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_study(_write(tmp_path, f"name: s\ndata: {{dataset: d}}\nsearch: {{space: {space}}}\n"))


@pytest.mark.parametrize("key, value", [("metric", "ncc"), ("crop", "label")])
def test_similarity_metric_and_crop_are_the_selection_methods(tmp_path: Path, key: str, value: str) -> None:
    """The selection method decides the metric and the crop, so the similarity section cannot contradict it."""
    with pytest.raises(ConfigError, match=f"unknown key 'similarity.{key}'"):
        load_study(_write(tmp_path, f"name: s\ndata: {{dataset: d}}\nsimilarity: {{{key}: {value}}}\nselection: {{method: mi}}\n"))


def test_submit_refuses_local_data(tmp_path: Path) -> None:
    from proxyhpo.launch import submit

    study = load_study(Path(__file__).parents[2] / "examples" / "spleen.yaml")
    with pytest.raises(ConfigError, match="data.dataset: is the local path '/data/Task09_Spleen'"):
        submit(study, "http://127.0.0.1:9")  # fails before any connection is attempted


def _study(tmp_path: Path, rounds: int = 3, gpus: int = 1) -> StudyConfig:
    return load_study(_write(tmp_path, f"name: s\ndata: {{dataset: d}}\nsearch: {{rounds: {rounds}}}\nresources: {{gpus: {gpus}}}\n"))


def test_study_shape_is_what_a_pipeline_is_compiled_for(tmp_path: Path) -> None:
    study = _study(tmp_path, rounds=5, gpus=2)
    assert study.shape == PipelineShape(rounds=5, gpus=2)
    study.check_compiled_shape(PipelineShape(rounds=5, gpus=2))  # fits: no error


@pytest.mark.parametrize(
    "compiled, expected",
    [
        (PipelineShape(rounds=3, gpus=2), "search.rounds is 5 but this pipeline was compiled for 3"),
        (PipelineShape(rounds=5, gpus=4), "resources.gpus is 2 but this pipeline was compiled for 4"),
    ],
)
def test_study_that_does_not_fit_the_compiled_pipeline(tmp_path: Path, compiled: PipelineShape, expected: str) -> None:
    study = _study(tmp_path, rounds=5, gpus=2)
    with pytest.raises(ConfigError) as info:
        study.check_compiled_shape(compiled)
    message = str(info.value)
    assert message.startswith(f"study_config: {expected}"), message
    assert "fix: compile the pipeline for this study (`proxyhpo compile STUDY.yaml`)" in message


def test_study_survives_its_json_round_trip(tmp_path: Path) -> None:
    for path in EXAMPLES:
        study = load_study(path)
        assert study_from_json(study.model_dump_json()) == study, path.name
    with pytest.raises(ConfigError, match="^task-input: is not valid JSON"):
        study_from_json("{not json", "task-input")
    with pytest.raises(ConfigError, match="^study_config: unknown key 'similarity.metric'"):
        study_from_json('{"name": "s", "data": {"dataset": "d"}, "similarity": {"metric": "mi"}}')


def test_records_round_trip(tmp_path: Path) -> None:
    run = StudyRun(experiment="s", run_id="abc123", study=StudyConfig.model_validate({"name": "s", "data": {"dataset": "d"}}))
    assert StudyRun.read(run.write(tmp_path / "deep" / "run.json")) == run
    assert not list(tmp_path.rglob("*.partial"))


def test_the_run_parameters_win_over_the_study_config() -> None:
    study = StudyConfig.model_validate(
        {"name": "demo", "data": {"dataset": ".proxyhpo/data/demo", "external": ".proxyhpo/data/ext", "synthetic": {"task": "spleen"}}}
    )
    text = study.model_dump_json()
    assert study_from_json(text, **{"dataset": "", "external": "", "name": ""}) == study  # empty fields keep the config's
    assert study_from_json(text, dataset=study.data.dataset, external="none", name="demo").data.external is None
    on_minio = study_from_json(text, dataset="s3://proxyhpo/datasets/demo", external="s3://proxyhpo/datasets/ext", name="my-run")
    assert (on_minio.name, on_minio.data.dataset, on_minio.data.external) == ("my-run", "s3://proxyhpo/datasets/demo", "s3://proxyhpo/datasets/ext")
    assert on_minio.data.synthetic is None  # phantoms are generated locally; data in the object store are given
    assert study.run_parameters() == {"dataset": ".proxyhpo/data/demo", "external": ".proxyhpo/data/ext", "study_name": "demo"}


def test_missing_record_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    with pytest.raises(StorageError) as info:
        StudyData.read(path)
    assert str(info.value).startswith(f"{path}: cannot be read")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", "is not a StudyRun JSON file"),
        ('{"experiment": "s"}', "required key 'run_id' is missing"),
        ('{"experiment": "s", "run_id": "r", "study": {"name": "s", "data": {"dataset": "d"}}, "schema_version": 2}', "key 'schema_version'"),
        ('{"experiment": "s", "run_id": "r", "study": {"name": "s", "data": {"dataset": "d"}}, "extra": 1}', "unknown key 'extra'"),
    ],
)
def test_invalid_record_is_a_config_error_naming_its_writer(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        StudyRun.read(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert message.endswith(f"fix: regenerate it with {StudyRun.WRITTEN_BY}"), message


def test_manifest_split_must_cover_its_cases() -> None:
    fields = {"method": "mi", "budget": 2, "seed": 0, "dataset": "d", "dataset_sha256": "0" * 64, "case_ids": ("a", "b"),
              "cases": ({"image": "a.nii.gz", "label": "a.nii.gz"}, {"image": "b.nii.gz", "label": "b.nii.gz"}), "scores": (0.1, 0.2)}
    assert ProxyDataManifest(**fields, train_ids=("a",), val_ids=("b",)).val_ids == ("b",)
    with pytest.raises(ValueError, match="train_ids and val_ids must split case_ids exactly"):
        ProxyDataManifest(**fields, train_ids=("a",), val_ids=("a",))


def test_local_data_move_under_the_clusters_data_root() -> None:
    demo = load_study(Path(__file__).parents[2] / "examples" / "demo.yaml")
    moved = demo.with_data_root("s3://proxyhpo/datasets/")
    assert (moved.data.dataset, moved.data.external) == ("s3://proxyhpo/datasets/demo-spleen", "s3://proxyhpo/datasets/demo-spleen-external")
    assert moved.data.synthetic is None and moved.run_parameters()["dataset"] == "s3://proxyhpo/datasets/demo-spleen"
    on_minio = moved.with_data_root("s3://elsewhere")
    assert on_minio == moved  # data in the object store stay where they are
