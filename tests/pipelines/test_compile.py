"""Compiled pipelines: the demos' golden files, and targeted checks on what matters on a cluster for every shipped pipeline.

Generic checks (image, credentials, resources, exit handler, the compiled shape, the UI) run on every shipped
pipeline; the HPO search's own shape (unrolled rounds, final training) on the HPO ones; the comparison
studies' shape (planned cells fanned out, one GPU each, and a report of them all) on the study ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("compiled")  # one worker compiles every shipped pipeline once for the whole module
import yaml

from pipelines.studies import DESCRIPTIONS, build_proxy_data_study, build_proxy_net_study, build_trust_check
from pipelines.tasks import DATASET_SECRET, ENDPOINTS_CONFIG_MAP, MLFLOW_SECRET, PIPELINE_POD_LABEL, S3_SECRET
from proxyhpo import __version__
from proxyhpo.config import PipelineShape, StudyConfig, load_study, study_from_json
from proxyhpo.kfp.image import CPU_IMAGE, RUNTIME_IMAGE
from proxyhpo.catalogue import SHIPPED_PIPELINES, shipped_study
from proxyhpo.compile import compile_study, pipeline_builder
from proxyhpo.registry import STUDY_PIPELINES

GOLDEN = Path(__file__).parent / "golden"
SHIPPED = sorted(SHIPPED_PIPELINES)
#: The comparison studies built by ``pipelines/studies.py``: planned cells fanned out, then one report.
STUDY_KINDS = tuple(DESCRIPTIONS)
#: The HPO search's pipelines, and the comparison studies'.
HPO = sorted(name for name, (kind, _) in SHIPPED_PIPELINES.items() if kind == "hpo")
STUDIES = sorted(name for name, (kind, _) in SHIPPED_PIPELINES.items() if kind in STUDY_KINDS)
#: The components that train (or compute similarities) on a GPU; KFP numbers a component's repeats (train-pack-2, ...).
GPU_COMPONENTS = {"train-pack", "final-training", "plan-cells", "train-cell", "select-arm-data", "nas-plan", "nas-search", "nas-evaluate"}


def _golden_module():
    """``tests/pipelines/golden.py`` (``make golden``), imported by path: the tests folder is no package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("proxyhpo_tests_golden", Path(__file__).parent / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = _golden_module()


#: Where ``make deploy`` and ``proxyhpo upload`` point the shipped pipelines' data.
DATA_ROOT = "s3://proxyhpo/datasets"


@pytest.fixture(scope="module")
def compiled(shipped_pipelines) -> dict[str, str]:
    """Every shipped pipeline as it ships to a cluster (``proxyhpo upload --data-root``), by name without ``.yaml``.

    The session compiles them once for this module, the upload tests and the secrets scan.
    """
    paths = shipped_pipelines(DATA_ROOT)
    assert sorted(path.name for path in paths) == sorted(f"{name}.yaml" for name in SHIPPED_PIPELINES)
    return {path.stem: path.read_text() for path in paths}


def _kind(name: str) -> str:
    kind, _ = SHIPPED_PIPELINES[name]
    return kind


def _is_gpu_executor(key: str) -> bool:
    return re.sub(r"-\d+$", "", key.removeprefix("exec-")) in GPU_COMPONENTS


def _study(name: str) -> StudyConfig:
    _, example = SHIPPED_PIPELINES[name]
    return shipped_study(example).with_data_root(DATA_ROOT)


def _compiled_shape(name: str) -> PipelineShape:
    """What pipeline ``name`` fixes: a comparison study its parallelism only, the searches their rounds too."""
    study = _study(name)
    if _kind(name) == "nas":
        return study.with_compiled_settings(study.nas_shape)
    return study.with_compiled_settings(study.study_shape if _kind(name) in STUDY_KINDS else study.shape)


def _documents(text: str) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(text))
    return spec, platform


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline: the root DAG's and those of its sub-DAGs (exit handler, loops)."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def _upstream(spec: dict) -> dict[str, set[str]]:
    """What each task waits for: its dependencies, theirs, and (inside an exit handler or a loop) what the enclosing task waits for."""
    upstream: dict[str, set[str]] = {}

    def walk(dag: dict, inherited: set[str]) -> None:
        tasks = dag.get("tasks", {})

        def before(key: str, seen: set[str]) -> set[str]:
            for dependency in tasks[key].get("dependentTasks", []):
                if dependency not in seen:
                    seen.add(dependency)
                    before(dependency, seen)
            return seen

        for key, task in tasks.items():
            upstream[key] = before(key, set()) | inherited
            walk(spec["components"][task["componentRef"]["name"]].get("dag", {}), upstream[key])

    walk(spec["root"]["dag"], set())
    return upstream


def _executor(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def _cells_loop(spec: dict) -> tuple[str, dict]:
    """A study pipeline's one ``ParallelFor``: its task key and task."""
    (loop,) = [(key, task) for key, task in _all_tasks(spec).items() if "parameterIterator" in task]
    return loop


def test_shipped_pipelines_and_their_studies() -> None:
    assert {name: SHIPPED_PIPELINES[name] for name in HPO} == {"hpo-demo": ("hpo", "demo"), "hpo-spleen": ("hpo", "spleen"), "hpo-prostate": ("hpo", "prostate")}
    assert {name: SHIPPED_PIPELINES[name] for name in STUDIES} == {
        f"{kind}-{example}": (kind, example) for kind in ("proxy-data-study", "proxy-net-study", "trust") for example in ("demo-studies", "spleen", "prostate")
    }
    assert {kind for kind, _ in SHIPPED_PIPELINES.values()} == set(STUDY_PIPELINES), "every study pipeline ships at least once"
    assert set(STUDY_KINDS) <= set(STUDY_PIPELINES)
    examples = Path(__file__).parents[2] / "examples"
    for name, (_, example) in SHIPPED_PIPELINES.items():
        # the study shipped in the package is the one users read and copy from examples/
        assert shipped_study(example) == load_study(examples / f"{example}.yaml"), name
    assert set(golden.GOLDEN_PIPELINES) <= set(SHIPPED_PIPELINES)
    assert {_kind(name) for name in golden.GOLDEN_PIPELINES} >= {"hpo", *STUDY_KINDS}, "the search and every study have a golden file"


def test_study_pipelines_are_found_through_the_registry() -> None:
    assert pipeline_builder("proxy-data-study") is build_proxy_data_study
    assert pipeline_builder("proxy-net-study") is build_proxy_net_study
    assert pipeline_builder("trust") is build_trust_check


@pytest.mark.parametrize("name", sorted(golden.GOLDEN_VARIANTS))
def test_variant_matches_golden_file(tmp_path: Path, name: str) -> None:
    kind = golden.GOLDEN_VARIANTS[name][0]
    text = compile_study(golden.variant_study(name), tmp_path / f"{name}.yaml", kind).read_text()
    path = GOLDEN / f"{name}.yaml"
    assert path.exists(), f"{path} is missing: run `make golden` and review the diff"
    assert golden.normalize(text) == path.read_text(), f"{name} differs from {path}: run `make golden` and review the diff"


@pytest.mark.parametrize("name", golden.GOLDEN_PIPELINES)
def test_matches_golden_file(name: str, tmp_path: Path) -> None:
    kind, example = SHIPPED_PIPELINES[name]
    text = compile_study(shipped_study(example), tmp_path / f"{name}.yaml", kind).read_text()  # as `make golden` compiles it
    path = GOLDEN / f"{name}.yaml"
    assert path.exists(), f"{path} is missing: run `make golden` and review the diff"
    assert golden.normalize(text) == path.read_text(), f"{name} differs from {path}: run `make golden` and review the diff"


def test_normalize_strips_only_the_sdk_version() -> None:
    text = "sdkVersion: kfp-2.17.0\nimage: runtime:1.2.3\n"
    assert golden.normalize(text) == "sdkVersion: kfp-<version>\nimage: runtime:1.2.3\n"


@pytest.mark.parametrize("name", SHIPPED)
def test_gpu_tasks_run_the_cuda_image_and_the_others_the_cpu_image(compiled: dict[str, str], name: str) -> None:
    spec, _ = _documents(compiled[name])
    executors = spec["deploymentSpec"]["executors"]
    for key, executor in executors.items():
        expected = RUNTIME_IMAGE if "accelerator" in executor["container"].get("resources", {}) else CPU_IMAGE
        assert executor["container"]["image"] == expected, key
    assert {executor["container"]["image"] for executor in executors.values()} == {RUNTIME_IMAGE, CPU_IMAGE}
    assert RUNTIME_IMAGE.endswith(f"/runtime:{__version__}") and CPU_IMAGE.endswith(f"/runtime-cpu:{__version__}")


@pytest.mark.parametrize("name", SHIPPED)
def test_gpu_tasks_request_one_gpu_and_resources(compiled: dict[str, str], name: str) -> None:
    """The training tasks ask for one GPU, the study's CPU and memory and tolerate GPU nodes' taint; the others ask for no accelerator."""
    study = _study(name)
    spec, platform = _documents(compiled[name])
    executors = spec["deploymentSpec"]["executors"]
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu = {key: value for key, value in executors.items() if _is_gpu_executor(key)}
    assert gpu
    if _kind(name) == "hpo":  # the rounds' train-packs share one executor (merged copies), and the final training
        assert sorted(gpu) == ["exec-final-training", "exec-train-pack"]
    elif _kind(name) in STUDY_KINDS:  # planning (the similarity matrices) and every cell's training
        assert sorted(gpu) == ["exec-plan-cells", "exec-train-cell"]
    elif _kind(name) == "nas":  # planning (shapes, proxy similarities), the chained search tasks, export and evaluation
        assert sorted(gpu) == ["exec-nas-evaluate", "exec-nas-plan", "exec-nas-search"]
    toleration = {"key": study.resources.gpu_type, "operator": "Exists", "effect": "NoSchedule"}
    for key, executor in gpu.items():
        resources = executor["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == study.resources.gpu_type == "nvidia.com/gpu", key
        assert resources["accelerator"]["resourceCount"] == "1", key
        assert resources["resourceCpuRequest"] == resources["resourceCpuLimit"] == study.resources.cpu, key
        assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == study.resources.memory, key
        assert kubernetes[key]["tolerations"] == [toleration], key
    others = {key: value for key, value in executors.items() if key not in gpu}
    assert others
    for key, executor in others.items():
        assert "accelerator" not in executor["container"].get("resources", {}), key
        assert "tolerations" not in kubernetes[key], key


@pytest.mark.parametrize("name", SHIPPED)
def test_secrets_are_referenced_never_inlined(compiled: dict[str, str], name: str, fake_secrets: dict[str, str]) -> None:
    text = compiled[name]  # compiled with the fake credentials in the environment
    assert not [key for key, value in fake_secrets.items() if value in text]
    _, platform = _documents(text)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    spec, _ = _documents(text)
    assert set(executors) == set(spec["deploymentSpec"]["executors"]), "every task gets the credentials and endpoints"
    for key, config in executors.items():
        by_name = {secret.get("secretNameParameter", {}).get("runtimeValue", {}).get("constant") or secret["secretName"]: secret for secret in config["secretAsEnv"]}
        assert set(by_name) == {S3_SECRET, DATASET_SECRET, MLFLOW_SECRET}  # S3's keys, the data set reader's, MLflow's user
        assert {item["secretKey"] for item in by_name[S3_SECRET]["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert {item["secretKey"]: item["envVar"] for item in by_name[MLFLOW_SECRET]["keyToEnv"]} == {key: key for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        (config_map,) = config["configMapAsEnv"]
        assert config_map["configMapName"] == ENDPOINTS_CONFIG_MAP or config_map.get("configMapNameParameter", {}).get("runtimeValue", {}).get("constant") == ENDPOINTS_CONFIG_MAP
        assert config["podMetadata"]["labels"][PIPELINE_POD_LABEL] == "true"


@pytest.mark.parametrize("name", HPO)
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


@pytest.mark.parametrize("name", HPO)
def test_every_round_is_one_dag_with_one_train_pack(compiled: dict[str, str], name: str) -> None:
    """One round DAG ``round-N-packs`` with one train-pack task per round of ``search.rounds``, each round after the previous
    one; every round's train-pack component runs the one merged train-pack executor."""
    study = _study(name)
    spec, _ = _documents(compiled[name])
    rounds = study.search.rounds
    train_packs = [task for task in _all_tasks(spec).values() if task["componentRef"]["name"].startswith("comp-train-pack")]
    assert len(train_packs) == rounds == len({task["componentRef"]["name"] for task in train_packs})  # one component per task
    assert {spec["components"][task["componentRef"]["name"]]["executorLabel"] for task in train_packs} == {"exec-train-pack"}
    loops = {task["taskInfo"]["name"]: task for task in _all_tasks(spec).values() if "parameterIterator" in task}
    assert sorted(loops) == sorted(f"round-{r}-packs" for r in range(1, rounds + 1))
    for task in loops.values():  # each round DAG trains one pack per loop item
        (inner,) = spec["components"][task["componentRef"]["name"]]["dag"]["tasks"].values()
        assert inner["componentRef"]["name"].startswith("comp-train-pack")
    names = {task["taskInfo"]["name"] for task in _all_tasks(spec).values()}
    assert {f"round {r}: {step}" for r in range(1, rounds + 1) for step in ("propose", "update controller")} <= names
    assert f"round {rounds + 1}: propose" not in names


@pytest.mark.parametrize("name", HPO)
def test_the_search_ends_with_the_final_training(compiled: dict[str, str], name: str) -> None:
    """The final model trains after the last round's update, on a GPU, and the report reads its result."""
    spec, _ = _documents(compiled[name])
    tasks = _all_tasks(spec)
    upstream = _upstream(spec)
    updates = [key for key in tasks if key.startswith("controller-update")]
    (last_update,) = [key for key in updates if set(updates) - {key} <= upstream[key]]  # the one after every other round
    final = tasks["final-training"]
    assert final["inputs"]["artifacts"]["state"]["taskOutputArtifact"]["producerTask"] == last_update
    assert _executor(spec, final) == "exec-final-training"
    assert tasks["report"]["inputs"]["artifacts"]["final_result"]["taskOutputArtifact"]["producerTask"] == "final-training"


def test_the_msd_studies_run_twenty_rounds_on_four_gpus() -> None:
    """The paper's settings: what the spleen and prostate pipelines are compiled for (so their unrolling is checked at scale)."""
    for name in ("hpo-spleen", "hpo-prostate"):
        assert _study(name).shape == PipelineShape(rounds=20, gpus=4), name
    for name in STUDIES:  # the comparison studies fix their parallelism only
        if not name.endswith("-demo-studies"):
            assert _study(name).study_shape == PipelineShape(rounds=None, gpus=4), name


@pytest.mark.parametrize("name", SHIPPED)
def test_start_study_checks_the_compiled_shape_before_anything_runs(compiled: dict[str, str], name: str) -> None:
    study = _study(name)
    kind = _kind(name)
    spec, _ = _documents(compiled[name])
    tasks = _all_tasks(spec)
    start = tasks["start-study"]
    constant = start["inputs"]["parameters"]["compiled_shape"]["runtimeValue"]["constant"]
    assert PipelineShape.model_validate_json(constant) == _compiled_shape(name)
    # and the other settings compiled into the tasks (pod placement, scratch, trust gate), refused when edited
    assert _compiled_shape(name).fixed == study._compiled_settings()
    if kind in STUDY_KINDS:  # a comparison study has no rounds: only its parallelism is compiled in
        assert constant.startswith(f'{{"rounds":null,"gpus":{study.resources.gpus},"nas":null,"fixed":')
    elif kind == "nas":  # its chained tasks, folds and arms are compiled in
        assert _compiled_shape(name).nas == {"episodes": study.nas.episodes, "episodes_per_task": study.nas.episodes_per_task, "folds": study.nas.folds, "search_data": study.nas.search_data}
    else:
        assert _compiled_shape(name).model_copy(update={"fixed": None}) == PipelineShape(rounds=study.search.rounds, gpus=study.resources.gpus)
    assert start["inputs"]["parameters"]["pipeline"]["runtimeValue"]["constant"] == kind
    assert spec["components"]["comp-start-study"]["inputDefinitions"]["parameters"]["compiled_shape"]["parameterType"] == "STRING"
    # the study config itself stays a run-time input (editable in the UI); the shape is fixed
    assert start["inputs"]["parameters"]["study"] == {"componentInputParameter": "pipelinechannel--study_config"}
    assert "dependentTasks" not in start
    firsts = {"hpo": ("prepare-data", "controller-init"), **dict.fromkeys(STUDY_KINDS, ("prepare-data", "plan-cells"))}.get(kind, ("prepare-data",))
    for first in firsts:  # the rest waits for the check
        assert "start-study" in tasks[first]["dependentTasks"], first
    upstream = _upstream(spec)
    root = set(spec["root"]["dag"]["tasks"])  # the exit handler and its closing task
    for key in set(tasks) - root - {"start-study"}:
        assert "start-study" in upstream[key], key


@pytest.mark.parametrize("name", SHIPPED)
def test_study_config_default_is_the_example_study(compiled: dict[str, str], name: str) -> None:
    spec, _ = _documents(compiled[name])
    study_input = spec["root"]["inputDefinitions"]["parameters"]["study_config"]
    assert study_input["parameterType"] == "STRING"
    assert study_from_json(study_input["defaultValue"]) == _study(name)


@pytest.mark.parametrize("name", SHIPPED)
def test_pipeline_is_documented_for_the_ui(compiled: dict[str, str], name: str) -> None:
    study = _study(name)
    kind = _kind(name)
    spec, _ = _documents(compiled[name])
    info = spec["pipelineInfo"]
    assert info["name"] == f"proxyhpo-{kind}"
    assert info["displayName"].startswith("proxyhpo ") and info["displayName"].endswith(f": {study.name}")
    assert info["description"]
    steps = {"open MLflow study run", "prepare data", "report", "close MLflow study run"}
    if kind == "hpo":
        assert info["displayName"] == f"proxyhpo HPO: {study.name}"
        assert "proxy data" in info["description"] and f"runs {study.search.rounds} rounds" in info["description"]
        steps |= {"select proxy data", "final model"}
    elif kind in STUDY_KINDS:
        assert info["displayName"] == f"proxyhpo {kind}: {study.name}"
        assert info["description"] == DESCRIPTIONS[kind]
        assert {"proxy-data-study": "proxy data", "proxy-net-study": "proxy U-Nets", "trust": "verdict"}[kind] in info["description"]
        steps |= {"plan cells: select every arm's data", "cells", "train a cell's grid"}
    study_input = spec["root"]["inputDefinitions"]["parameters"]["study_config"]
    assert "study config" in study_input["description"]
    names = {task["taskInfo"]["name"] for task in _all_tasks(spec).values()}
    assert steps <= names


@pytest.mark.parametrize("name", SHIPPED)
def test_exit_handler_closes_the_study_run(compiled: dict[str, str], name: str) -> None:
    spec, _ = _documents(compiled[name])
    root = spec["root"]["dag"]["tasks"]
    ((closing_key, closing),) = [(key, task) for key, task in root.items() if task["componentRef"]["name"] == "comp-close-study"]
    ((handler_key, handler),) = [(key, task) for key, task in root.items() if key != closing_key]  # everything else runs inside the handler
    assert handler["taskInfo"]["name"] == "study"
    assert "start-study" in spec["components"][handler["componentRef"]["name"]]["dag"]["tasks"]
    assert closing["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert closing["dependentTasks"] == [handler_key]
    assert closing["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": handler_key}}
    assert closing["inputs"]["parameters"]["pipeline_run"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert closing["inputs"]["parameters"]["study"] == {"componentInputParameter": "study_config"}


@pytest.mark.parametrize("name", STUDIES)
def test_study_cells_fan_out_one_gpu_each(compiled: dict[str, str], name: str) -> None:
    """The planned cells fan out with parallelism = GPUs; each trains its grid on one GPU and is retried if evicted."""
    study = _study(name)
    spec, _ = _documents(compiled[name])
    tasks = _all_tasks(spec)
    plan = tasks["plan-cells"]
    assert _executor(spec, plan) == "exec-plan-cells"
    assert plan["inputs"]["parameters"]["kind"]["runtimeValue"]["constant"] == _kind(name)
    assert plan["inputs"]["artifacts"]["data"]["taskOutputArtifact"] == {"outputArtifactKey": "data", "producerTask": "prepare-data"}
    _, loop = _cells_loop(spec)
    assert loop["taskInfo"]["name"] == "cells"
    assert loop["iteratorPolicy"]["parallelismLimit"] == study.resources.gpus
    items = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][items]["taskOutputParameter"] == {"outputParameterKey": "Output", "producerTask": "plan-cells"}
    ((inner_key, train),) = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"].items()  # one cell per loop item
    assert inner_key == "train-cell"
    assert _executor(spec, train) == "exec-train-cell"
    assert train["inputs"]["parameters"]["cell"] == {"componentInputParameter": loop["parameterIterator"]["itemInput"]}
    assert train["retryPolicy"]["maxRetryCount"] == 2
    assert train["retryPolicy"]["backoffDuration"] == "30s"


@pytest.mark.parametrize("name", STUDIES)
def test_study_report_collects_every_cell(compiled: dict[str, str], name: str) -> None:
    spec, _ = _documents(compiled[name])
    tasks = _all_tasks(spec)
    loop_key, loop = _cells_loop(spec)
    report = tasks["study-report"]
    assert loop_key in report["dependentTasks"], "the report runs after every cell"
    results = report["inputs"]["artifacts"]["results"]["taskOutputArtifact"]
    assert results["producerTask"] == loop_key
    collected = spec["components"][loop["componentRef"]["name"]]["dag"]["outputs"]["artifacts"][results["outputArtifactKey"]]
    assert collected == {"artifactSelectors": [{"outputArtifactKey": "results", "producerSubtask": "train-cell"}]}
    assert spec["components"][report["componentRef"]["name"]]["inputDefinitions"]["artifacts"]["results"]["isArtifactList"] is True
    assert report["inputs"]["artifacts"]["study_run"]["taskOutputArtifact"] == {"outputArtifactKey": "study_run", "producerTask": "start-study"}


@pytest.mark.parametrize("name", STUDIES)
def test_study_tasks_wait_for_the_shape_check(compiled: dict[str, str], name: str) -> None:
    """In a study pipeline every task of the exit handler waits for start-study itself, not through another task."""
    spec, _ = _documents(compiled[name])
    handler = next(task for key, task in spec["root"]["dag"]["tasks"].items() if task["componentRef"]["name"] != "comp-close-study")
    tasks = spec["components"][handler["componentRef"]["name"]]["dag"]["tasks"]
    assert set(tasks) == {"start-study", "prepare-data", "plan-cells", _cells_loop(spec)[0], "study-report"}
    for key, task in tasks.items():
        if key != "start-study":
            assert "start-study" in task["dependentTasks"], key


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
    compiled_shape = PipelineShape.model_validate_json(tasks["start-study"]["inputs"]["parameters"]["compiled_shape"]["runtimeValue"]["constant"])
    assert (compiled_shape.rounds, compiled_shape.gpus) == (2, 3)
    assert sorted(task["taskInfo"]["name"] for task in tasks.values() if "parameterIterator" in task) == ["round-1-packs", "round-2-packs"]
    assert spec["pipelineInfo"]["displayName"] == "proxyhpo HPO: my-study"


@pytest.mark.parametrize("kind", STUDY_KINDS)
def test_compile_command_compiles_a_comparison_study(capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str) -> None:
    from proxyhpo.cli import main

    document = _study("trust-demo-studies").model_dump(mode="json")
    document.update(name="my-study")
    document["resources"]["gpus"] = 3
    config = tmp_path / "my-study.yaml"
    config.write_text(yaml.safe_dump(document))
    out = tmp_path / "pipelines"

    assert main(["compile", str(config), "--pipeline", kind, "--out", str(out)]) == 0
    written = out / f"{kind}-my-study.yaml"
    assert capsys.readouterr().out.split() == [str(written)]
    assert sorted(path.name for path in out.iterdir()) == [f"{kind}-my-study.yaml"]
    spec, _ = _documents(written.read_text())
    tasks = _all_tasks(spec)
    assert tasks["start-study"]["inputs"]["parameters"]["compiled_shape"]["runtimeValue"]["constant"].startswith('{"rounds":null,"gpus":3,"nas":null,"fixed":{')
    assert _cells_loop(spec)[1]["iteratorPolicy"]["parallelismLimit"] == 3
    assert spec["pipelineInfo"]["name"] == f"proxyhpo-{kind}"
    assert spec["pipelineInfo"]["displayName"] == f"proxyhpo {kind}: my-study"
    assert study_from_json(spec["root"]["inputDefinitions"]["parameters"]["study_config"]["defaultValue"]) == load_study(config)


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

    code = "from proxyhpo.kfp.image import CPU_IMAGE, RUNTIME_IMAGE; print(RUNTIME_IMAGE)"
    env = {**__import__("os").environ, "PROXYHPO_IMAGE_REGISTRY": "registry.example.org/team/"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == f"registry.example.org/team/runtime:{__version__}"


def test_task_pods_stage_into_a_capped_emptydir_and_gpu_pods_follow_the_studys_placement(tmp_path: Path) -> None:
    from pipelines.tasks import STAGING_PATH, STAGING_VOLUME

    study = shipped_study("demo")
    resources = study.resources.model_copy(update={
        "scratch": "7Gi", "image_pull_secrets": ["regcred"], "node_selector": {"agentpool": "gpua100"}, "timeout_hours": 2.5,
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    })
    study = study.model_copy(update={"resources": type(resources).model_validate(resources.model_dump())})
    spec, platform = [d for d in yaml.safe_load_all(compile_study(study, tmp_path / "hpo.yaml", "hpo").read_text()) if d]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu = {name for name, executor in spec["deploymentSpec"]["executors"].items() if "accelerator" in executor["container"].get("resources", {})}
    assert gpu and set(executors) == set(spec["deploymentSpec"]["executors"])
    for name, settings in executors.items():
        assert settings["emptyDirMounts"] == [{"volumeName": STAGING_VOLUME, "mountPath": STAGING_PATH, "sizeLimit": "7Gi"}], name
        assert [secret["secretName"] for secret in settings["imagePullSecret"]] == ["regcred"], name
        if name in gpu:  # the AKS taint, not the GPU's resource name
            assert settings["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], name
            assert settings["nodeSelector"] == {"labels": {"agentpool": "gpua100"}} and int(settings["activeDeadlineSeconds"]) == 9000, name
        else:
            assert "tolerations" not in settings and "nodeSelector" not in settings and "activeDeadlineSeconds" not in settings, name
    local_env = {e["name"] for executor in spec["deploymentSpec"]["executors"].values() for e in executor["container"].get("env", [])}
    assert "PROXYHPO_HOME" not in local_env  # set by the chart's ConfigMap on the cluster; a local run keeps its own home


def test_node_affinity_needs_kfp_2_14(tmp_path: Path) -> None:
    from proxyhpo.errors import ConfigError

    study = shipped_study("demo")
    data = study.model_dump(mode="json")
    data["resources"]["node_affinity"] = [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}]
    study = StudyConfig.model_validate(data)
    spec, platform = [d for d in yaml.safe_load_all(compile_study(study, tmp_path / "hpo.yaml", "hpo").read_text()) if d]
    terms = {str(e.get("nodeAffinity")) for e in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()}
    assert any("NVIDIA-A100-SXM4-80GB" in term for term in terms)
    with pytest.raises(ConfigError, match="node-affinity"):
        compile_study(study, tmp_path / "hpo-2.5.yaml", "hpo", kfp_target="2.5")


def test_the_launch_form_has_typed_fields_for_what_changes_per_run(tmp_path: Path) -> None:
    from proxyhpo.config import study_from_json
    from proxyhpo.errors import ConfigError
    from proxyhpo.launch_form import with_run_fields

    study = shipped_study("demo")
    spec = next(yaml.safe_load_all(compile_study(study, tmp_path / "hpo.yaml", "hpo").read_text()))
    form = spec["root"]["inputDefinitions"]["parameters"]
    assert {name: (form[name]["parameterType"], form[name]["defaultValue"]) for name in ("epochs", "proposals_per_round", "budget", "pack_size", "early_stopping")} == {
        "epochs": ("NUMBER_INTEGER", study.training.epochs),
        "proposals_per_round": ("NUMBER_INTEGER", study.search.proposals_per_round),
        "budget": ("NUMBER_INTEGER", study.selection.budget),
        "pack_size": ("NUMBER_INTEGER", study.training.pack_size),
        "early_stopping": ("BOOLEAN", study.search.early_stopping is not None),
    }
    edited = study_from_json(with_run_fields(study.model_dump_json(), epochs=90, proposals_per_round=16, budget=12, pack_size=0, early_stopping=False))
    assert (edited.training.epochs, edited.search.proposals_per_round, edited.selection.budget, edited.training.pack_size) == (90, 16, 12, "auto")
    assert edited.search.early_stopping is None
    assert study_from_json(with_run_fields(study.model_dump_json(), epochs=90, proposals_per_round=16, budget=12, pack_size=2, early_stopping=True)).search.early_stopping
    with pytest.raises(ConfigError) as caught:  # a bad value is one line naming its key
        study_from_json(with_run_fields(study.model_dump_json(), epochs=60, proposals_per_round=0, budget=12, pack_size=2, early_stopping=False))
    assert "proposals_per_round" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("section", "key", "value"), [("resources", "node_selector", {"pool": "a100"}), ("resources", "scratch", "500Gi"), ("search", "trust_gate", True)])
def test_a_compile_time_setting_edited_in_the_form_is_refused_in_one_line(section: str, key: str, value: object) -> None:
    from proxyhpo.errors import ConfigError

    study = shipped_study("demo")
    document = study.model_dump(mode="json")
    document[section][key] = value
    with pytest.raises(ConfigError) as caught:
        StudyConfig.model_validate(document).check_compiled_shape(study.with_compiled_settings(study.shape))
    message = str(caught.value)
    assert message.startswith(f"study_config: {section}.{key} is ") and "fixed at compile time" in message and "\n" not in message
