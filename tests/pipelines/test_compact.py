"""Compiled pipelines without copies: merged executors and components, the same tasks, and the size bound."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from proxyhpo.config import StudyConfig
from proxyhpo.kfp.compact import deduplicate
from proxyhpo.catalogue import shipped_study
from proxyhpo.compile import compile_study, pipeline_builder

#: etcd's limit on one object, which an Argo Workflow must stay under once expanded at run time.
ETCD_LIMIT = 1.5 * 2**20


def _raw(study: StudyConfig, tmp_path, on_a_fresh_thread, kind: str = "hpo") -> list[dict]:
    """The compiler's own output, before merging (built on a fresh thread: see tests/conftest.py)."""
    from kfp import compiler

    path = tmp_path / "raw.yaml"
    on_a_fresh_thread(lambda: compiler.Compiler().compile(pipeline_builder(kind)(study), str(path)))
    return list(yaml.safe_load_all(path.read_text()))


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task by its path of DAGs, without its component reference."""
    found = {}

    def walk(tasks: dict, where: str) -> None:
        for name, task in tasks.items():
            found[f"{where}/{name}"] = {key: value for key, value in task.items() if key != "componentRef"}
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"]["tasks"], f"{where}/{name}")

    walk(spec["root"]["dag"]["tasks"], "")
    return found


def _resolved(spec: dict, platform: dict) -> dict[str, str]:
    """What each task runs: its executor's container and platform settings, through its component."""
    executors = spec["deploymentSpec"]["executors"]
    settings = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    runs = {}

    def walk(tasks: dict, where: str) -> None:
        for name, task in tasks.items():
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"]["tasks"], f"{where}/{name}")
            else:
                label = component["executorLabel"]
                runs[f"{where}/{name}"] = json.dumps([executors[label], settings.get(label)], sort_keys=True)

    walk(spec["root"]["dag"]["tasks"], "")
    return runs


@pytest.mark.parametrize("kind, example, copies", [("hpo", "demo", True), ("automl-comparison", "demo-studies", True), ("proxy-data-study", "demo-studies", False)])
def test_merging_keeps_every_task_and_what_it_runs(tmp_path, on_a_fresh_thread, kind: str, example: str, copies: bool) -> None:
    spec, platform = _raw(shipped_study(example), tmp_path, on_a_fresh_thread, kind)
    merged_spec, merged_platform = deduplicate(copy.deepcopy(spec), copy.deepcopy(platform))
    assert _tasks(merged_spec) == _tasks(spec)  # names, inputs, dependencies, retries, display names
    # every task keeps a component of its own: KFP's local runner keeps a task's outputs under its component's name
    assert merged_spec["components"].keys() == spec["components"].keys()
    assert _resolved(merged_spec, merged_platform) == _resolved(spec, platform)
    executors = merged_spec["deploymentSpec"]["executors"]
    assert len({json.dumps(body, sort_keys=True) for body in executors.values()}) == len(executors)  # no copies left
    assert (len(executors) < len(spec["deploymentSpec"]["executors"])) == copies  # unrolled rounds repeat their tasks
    referenced = {c["executorLabel"] for c in merged_spec["components"].values() if "executorLabel" in c}
    assert referenced == set(executors)  # nothing dangling, nothing unused
    assert set(merged_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]) <= referenced


def test_a_fifty_round_study_stays_far_below_etcds_limit(tmp_path, on_a_fresh_thread) -> None:
    document = shipped_study("spleen").model_dump(mode="json")
    document["search"].update(rounds=50, proposals_per_round=16 * 16)  # 16 packs of 16 trials a round on 16 GPUs
    document["resources"]["gpus"] = 16
    path = on_a_fresh_thread(compile_study, StudyConfig.model_validate(document), tmp_path / "fifty.yaml")
    size = path.stat().st_size
    # a third of the limit: Argo adds each node's status to the Workflow object as the run goes
    assert size < ETCD_LIMIT / 3, f"{size / 2**10:.0f} KiB"
    spec = next(yaml.safe_load_all(path.read_text()))
    loops = [name for name in spec["components"] if name.startswith("comp-for-loop")]
    assert len(loops) == 50
