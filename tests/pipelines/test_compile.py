"""Compiled pipelines: the demo's golden file, and targeted checks on what matters on a cluster for every shipped pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipelines.hpo import ENDPOINTS_CONFIG_MAP, PIPELINE_POD_LABEL, S3_SECRET
from proxyhpo import __version__
from proxyhpo.config import PipelineShape, StudyConfig, load_study
from proxyhpo.kfp.image import RUNTIME_IMAGE
from proxyhpo.launch import SHIPPED_PIPELINES, compile_pipelines, shipped_study

GOLDEN = Path(__file__).parent / "golden"
SECRET_SENTINEL = "never-in-yaml-7f3a9c"
SHIPPED = sorted(SHIPPED_PIPELINES)


def _golden_module():
    """``tests/pipelines/golden.py`` (``make golden``), imported by path: the tests folder is no package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("proxyhpo_tests_golden", Path(__file__).parent / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = _golden_module()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every shipped pipeline, compiled as ``proxyhpo compile`` compiles them (by name, without ``.yaml``)."""
    out = tmp_path_factory.mktemp("compiled")
    mp = pytest.MonkeyPatch()
    # a credential in the environment at compile time must never reach the YAML
    mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_SENTINEL)
    mp.setenv("AWS_ACCESS_KEY_ID", SECRET_SENTINEL + "-id")
    try:
        paths = compile_pipelines(out)
    finally:
        mp.undo()
    assert sorted(path.name for path in paths) == sorted(f"{name}.yaml" for name in SHIPPED_PIPELINES)
    return {path.stem: path.read_text() for path in paths}


def _study(name: str) -> StudyConfig:
    _, example = SHIPPED_PIPELINES[name]
    return shipped_study(example)


def _documents(text: str) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline: the root DAG's and those of its sub-DAGs (exit handler, loops)."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_shipped_pipelines_and_their_studies() -> None:
    assert SHIPPED_PIPELINES == {"hpo-demo": ("hpo", "demo"), "hpo-spleen": ("hpo", "spleen"), "hpo-prostate": ("hpo", "prostate")}
    examples = Path(__file__).parents[2] / "examples"
    for name, (_, example) in SHIPPED_PIPELINES.items():
        # the study shipped in the package is the one users read and copy from examples/
        assert _study(name) == load_study(examples / f"{example}.yaml"), name
    assert set(golden.GOLDEN_PIPELINES) <= set(SHIPPED_PIPELINES)


@pytest.mark.parametrize("name", golden.GOLDEN_PIPELINES)
def test_matches_golden_file(compiled: dict[str, str], name: str) -> None:
    path = GOLDEN / f"{name}.yaml"
    assert path.exists(), f"{path} is missing: run `make golden` and review the diff"
    assert golden.normalize(compiled[name]) == path.read_text(), f"{name} differs from {path}: run `make golden` and review the diff"


def test_normalize_strips_only_the_sdk_version() -> None:
    text = "sdkVersion: kfp-2.17.0\nimage: runtime:1.2.3\n"
    assert golden.normalize(text) == "sdkVersion: kfp-<version>\nimage: runtime:1.2.3\n"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_executor_runs_the_runtime_image(compiled: dict[str, str], name: str) -> None:
    spec, _ = _documents(compiled[name])
    images = {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()}
    assert images == {RUNTIME_IMAGE}
    assert RUNTIME_IMAGE.endswith(f":{__version__}")


@pytest.mark.parametrize("name", SHIPPED)
def test_training_tasks_request_one_gpu_and_resources(compiled: dict[str, str], name: str) -> None:
    study = _study(name)
    spec, _ = _documents(compiled[name])
    executors = spec["deploymentSpec"]["executors"]
    training = {key: value for key, value in executors.items() if key.startswith(("exec-train-pack", "exec-final-training"))}
    assert len(training) == study.search.rounds + 1
    for key, executor in training.items():
        resources = executor["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", key
        assert resources["accelerator"]["resourceCount"] == "1", key
        assert resources["resourceCpuRequest"] == study.resources.cpu
        assert resources["resourceMemoryRequest"] == study.resources.memory
    others = {key: value for key, value in executors.items() if key not in training}
    assert others and all("accelerator" not in value["container"].get("resources", {}) for value in others.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_secrets_are_referenced_never_inlined(compiled: dict[str, str], name: str) -> None:
    text = compiled[name]
    assert SECRET_SENTINEL not in text
    _, platform = _documents(text)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    spec, _ = _documents(text)
    assert set(executors) == set(spec["deploymentSpec"]["executors"]), "every task gets the credentials and endpoints"
    for key, config in executors.items():
        (secret,) = config["secretAsEnv"]
        assert secret["secretName"] == S3_SECRET or secret.get("secretNameParameter", {}).get("runtimeValue", {}).get("constant") == S3_SECRET
        assert {item["secretKey"] for item in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        (config_map,) = config["configMapAsEnv"]
        assert config_map["configMapName"] == ENDPOINTS_CONFIG_MAP or config_map.get("configMapNameParameter", {}).get("runtimeValue", {}).get("constant") == ENDPOINTS_CONFIG_MAP
        assert config["podMetadata"]["labels"][PIPELINE_POD_LABEL] == "true"


@pytest.mark.parametrize("name", SHIPPED)
def test_rounds_are_unrolled_into_parallel_loops(compiled: dict[str, str], name: str) -> None:
    study = _study(name)
    spec, _ = _documents(compiled[name])
    tasks = _all_tasks(spec)
    loops = {key: task for key, task in tasks.items() if "parameterIterator" in task}
    assert len(loops) == study.search.rounds
    for task in loops.values():
        assert task["iteratorPolicy"]["parallelismLimit"] == study.resources.gpus
    proposes = [key for key in tasks if key.startswith("controller-propose")]
    updates = [key for key in tasks if key.startswith("controller-update")]
    assert len(proposes) == len(updates) == study.search.rounds
    # round r+1 proposes from round r's updated state
    second = tasks[sorted(proposes)[1]] if len(proposes) > 1 else None
    if second is not None:
        assert second["inputs"]["artifacts"]["state"]["taskOutputArtifact"]["producerTask"].startswith("controller-update")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_round_is_one_dag_with_one_train_pack(compiled: dict[str, str], name: str) -> None:
    """One round DAG ``round-N-packs`` and one train-pack executor per round of ``search.rounds``, each round after the previous one."""
    study = _study(name)
    spec, _ = _documents(compiled[name])
    rounds = study.search.rounds
    train_packs = [key for key in spec["deploymentSpec"]["executors"] if re.fullmatch(r"exec-train-pack(-\d+)?", key)]
    assert len(train_packs) == rounds
    loops = {task["taskInfo"]["name"]: task for task in _all_tasks(spec).values() if "parameterIterator" in task}
    assert sorted(loops) == sorted(f"round-{r}-packs" for r in range(1, rounds + 1))
    for task in loops.values():  # each round DAG trains one pack per loop item
        (inner,) = spec["components"][task["componentRef"]["name"]]["dag"]["tasks"].values()
        assert inner["componentRef"]["name"].startswith("comp-train-pack")
    names = {task["taskInfo"]["name"] for task in _all_tasks(spec).values()}
    assert {f"round {r}: {step}" for r in range(1, rounds + 1) for step in ("propose", "update controller")} <= names
    assert f"round {rounds + 1}: propose" not in names


def test_the_msd_studies_run_twenty_rounds_on_four_gpus() -> None:
    """The paper's settings: what the spleen and prostate pipelines are compiled for (so their unrolling is checked at scale)."""
    for name in ("hpo-spleen", "hpo-prostate"):
        assert _study(name).shape == PipelineShape(rounds=20, gpus=4), name


@pytest.mark.parametrize("name", SHIPPED)
def test_start_study_checks_the_compiled_shape_before_anything_runs(compiled: dict[str, str], name: str) -> None:
    study = _study(name)
    spec, _ = _documents(compiled[name])
    tasks = _all_tasks(spec)
    start = tasks["start-study"]
    constant = start["inputs"]["parameters"]["compiled_shape"]["runtimeValue"]["constant"]
    assert PipelineShape.model_validate_json(constant) == study.shape == PipelineShape(rounds=study.search.rounds, gpus=study.resources.gpus)
    assert spec["components"]["comp-start-study"]["inputDefinitions"]["parameters"]["compiled_shape"]["parameterType"] == "STRING"
    # the study config itself stays a run-time input (editable in the UI); the shape is fixed
    assert start["inputs"]["parameters"]["study"] == {"componentInputParameter": "pipelinechannel--study_config"}
    assert "dependentTasks" not in start
    for first in ("prepare-data", "controller-init"):  # the rest waits for the check
        assert "start-study" in tasks[first]["dependentTasks"], first


def test_pipeline_is_documented_for_the_ui(compiled: dict[str, str]) -> None:
    spec, _ = _documents(compiled["hpo-demo"])
    assert spec["pipelineInfo"]["displayName"].startswith("proxyhpo HPO")
    assert "proxy data" in spec["pipelineInfo"]["description"]
    study_input = spec["root"]["inputDefinitions"]["parameters"]["study_config"]
    assert "study config" in study_input["description"]
    names = {task["taskInfo"]["name"] for task in _all_tasks(spec).values()}
    assert {"prepare data", "select proxy data", "final model", "report", "close MLflow study run"} <= names


def test_exit_handler_closes_the_study_run(compiled: dict[str, str]) -> None:
    spec, _ = _documents(compiled["hpo-demo"])
    root = spec["root"]["dag"]["tasks"]
    (closing,) = [task for task in root.values() if task["componentRef"]["name"] == "comp-close-study"]
    assert closing["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert closing["inputs"]["parameters"]["pipeline_run"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_compile_command_compiles_a_study(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from proxyhpo.cli import main

    document = _study("hpo-demo").model_dump(mode="json")
    document.update(name="my-study")
    document["search"]["rounds"] = 2
    document["resources"]["gpus"] = 3
    config = tmp_path / "my-study.yaml"
    config.write_text(yaml.safe_dump(document))
    out = tmp_path / "pipelines"

    assert main(["compile", str(config), "--out", str(out)]) == 0
    written = out / "hpo-my-study.yaml"
    assert capsys.readouterr().out.split() == [str(written)]
    assert sorted(path.name for path in out.iterdir()) == ["hpo-my-study.yaml"]
    spec, _ = _documents(written.read_text())
    tasks = _all_tasks(spec)
    assert PipelineShape.model_validate_json(tasks["start-study"]["inputs"]["parameters"]["compiled_shape"]["runtimeValue"]["constant"]) == PipelineShape(rounds=2, gpus=3)
    assert sorted(task["taskInfo"]["name"] for task in tasks.values() if "parameterIterator" in task) == ["round-1-packs", "round-2-packs"]
    assert spec["pipelineInfo"]["displayName"] == "proxyhpo HPO: my-study"


def test_compile_command_with_a_bad_study(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from proxyhpo.cli import main

    config = tmp_path / "bad.yaml"
    config.write_text("name: s\ndata: {dataset: d}\nsearch: {roundz: 3}\n")
    out = tmp_path / "pipelines"
    assert main(["compile", str(config), "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"proxyhpo compile: error: {config}: unknown key 'search.roundz'") and "fix:" in line
    assert not out.exists() or not list(out.iterdir())


def test_registry_override_reaches_the_compiled_images(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "from proxyhpo.kfp.image import RUNTIME_IMAGE; print(RUNTIME_IMAGE)"
    env = {**__import__("os").environ, "PROXYHPO_IMAGE_REGISTRY": "registry.example.org/team/"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"registry.example.org/team/runtime:{__version__}"
