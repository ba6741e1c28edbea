"""Compiled pipelines: golden files, and targeted checks on what matters on a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.compile import EXAMPLES, REPO, compile_study, normalise
from pipelines.hpo import ENDPOINTS_CONFIG_MAP, PIPELINE_POD_LABEL, S3_SECRET
from proxyhpo import __version__
from proxyhpo.config import load_study
from proxyhpo.kfp.image import RUNTIME_IMAGE

GOLDEN = Path(__file__).parent / "golden"
SECRET_SENTINEL = "never-in-yaml-7f3a9c"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("compiled")
    mp = pytest.MonkeyPatch()
    # a credential in the environment at compile time must never reach the YAML
    mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_SENTINEL)
    mp.setenv("AWS_ACCESS_KEY_ID", SECRET_SENTINEL + "-id")
    try:
        return {name: compile_study(load_study(REPO / example), out / f"{name}.yaml").read_text() for name, example in EXAMPLES.items()}
    finally:
        mp.undo()


def _documents(text: str) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline: the root DAG's and those of its sub-DAGs (exit handler, loops)."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_matches_golden_file(compiled: dict[str, str], name: str) -> None:
    golden = GOLDEN / f"{name}.yaml"
    assert golden.exists(), f"{golden} is missing: run `make golden` and review the diff"
    assert normalise(compiled[name]) == golden.read_text(), f"{name} differs from {golden}: run `make golden` and review the diff"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_executor_runs_the_runtime_image(compiled: dict[str, str], name: str) -> None:
    spec, _ = _documents(compiled[name])
    images = {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()}
    assert images == {RUNTIME_IMAGE}
    assert RUNTIME_IMAGE.endswith(f":{__version__}")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_training_tasks_request_one_gpu_and_resources(compiled: dict[str, str], name: str) -> None:
    study = load_study(REPO / EXAMPLES[name])
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


@pytest.mark.parametrize("name", sorted(EXAMPLES))
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


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_rounds_are_unrolled_into_parallel_loops(compiled: dict[str, str], name: str) -> None:
    study = load_study(REPO / EXAMPLES[name])
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


def test_registry_override_reaches_the_compiled_images(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "from proxyhpo.kfp.image import RUNTIME_IMAGE; print(RUNTIME_IMAGE)"
    env = {**__import__("os").environ, "PROXYHPO_IMAGE_REGISTRY": "registry.example.org/team/"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"registry.example.org/team/runtime:{__version__}"
