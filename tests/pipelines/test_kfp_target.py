"""Which KFP backend each compiled pipeline needs (:mod:`proxyhpo.kfp.target`), against the golden files and a
compile for the Kubeflow 1.10 backend (KFP 2.5): cheap, no pipeline runs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from proxyhpo.errors import ConfigError
from proxyhpo.kfp.target import (
    BACKEND_FEATURES,
    LATEST_TARGET,
    OLDEST_TARGET,
    KfpTarget,
    check_target,
    features_used,
    required_version,
    unmapped_features,
)

GOLDEN = Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("proxyhpo_tests_golden_names", Path(__file__).parent / "golden.py")
_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_golden)
GOLDEN_FILES = [*_golden.GOLDEN_PIPELINES, *_golden.GOLDEN_VARIANTS]


def _documents(text: str) -> tuple[dict, dict | None]:
    documents = [document for document in yaml.safe_load_all(text) if document]
    return documents[0], documents[1] if len(documents) > 1 else None


@pytest.fixture(scope="module")
def compiled_for_kfp_2_5(tmp_path_factory):
    """Three shipped pipelines (HPO with its trust gate, a comparison study, NAS) compiled for KFP 2.5."""
    from proxyhpo.catalogue import SHIPPED_PIPELINES, shipped_study
    from proxyhpo.compile import compile_study

    folder = tmp_path_factory.mktemp("kfp-2.5")
    compiled = {}
    for name in ("hpo-demo", "trust-demo-studies", "nas-demo"):
        kind, example = SHIPPED_PIPELINES[name]
        study = shipped_study(example)
        if name == "hpo-demo":  # the trust gate's loop and verdict too
            study = study.model_copy(update={"search": study.search.model_copy(update={"trust_gate": True})})
        compiled[name] = _documents(compile_study(study, folder / f"{name}.yaml", kind, kfp_target="2.5").read_text())
    return compiled


def test_every_feature_cites_the_backend_source_at_its_first_release():
    for name, feature in BACKEND_FEATURES.items():
        match = re.fullmatch(r"backend/src/v2/[\w/]+\.go@(\d+)\.(\d+)\.\d+", feature.source)
        assert match, f"{name}: {feature.source}"
        assert (int(match[1]), int(match[2])) == feature.since, name
        assert re.fullmatch(r"#\d+", feature.change), name
    assert str(OLDEST_TARGET) == "2.5" and str(LATEST_TARGET) == "2.14"


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_golden_pipelines_use_only_mapped_features_and_need_2_14(name):
    spec, platform = _documents((GOLDEN / f"{name}.yaml").read_text())
    assert unmapped_features(spec, platform) == []
    used = features_used(spec, platform)
    assert {"final-status", "collected-artifacts", "retry", "loop-parallelism", "exit-handler"} <= set(used)
    assert required_version(spec, platform) == KfpTarget((2, 14))
    check_target(spec, platform, LATEST_TARGET)
    with pytest.raises(ConfigError, match=r"uses (final-status|collected-artifacts) .*which KFP 2\.5 does not run"):
        check_target(spec, platform, KfpTarget((2, 5)))


def test_pipelines_compiled_for_kfp_2_5_keep_their_tasks_without_final_status_or_collected(compiled_for_kfp_2_5):
    for name, (spec, platform) in compiled_for_kfp_2_5.items():
        used = features_used(spec, platform)
        assert "final-status" not in used and "collected-artifacts" not in used, name
        assert required_version(spec, platform) <= KfpTarget((2, 5)), name
        assert unmapped_features(spec, platform) == [], name
        text = yaml.safe_dump(spec)
        assert "isArtifactList" not in text and "TASK_FINAL_STATUS" not in text, name
        assert "relay_group" in text and "comp-close-open-runs" in spec["components"], name
    hpo_tasks = {task for component in compiled_for_kfp_2_5["hpo-demo"][0]["components"].values() for task in (component.get("dag") or {}).get("tasks", {})}
    assert {"controller-update-relayed", "trust-gate-relayed", "final-training", "report"} <= hpo_tasks
    # the relayed update waits for its round's loop: ordered, since no data flows from the loop to it
    exit_handler = compiled_for_kfp_2_5["hpo-demo"][0]["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    update = next(task for name, task in exit_handler.items() if name.startswith("controller-update-relayed"))
    assert any(dependency.startswith("for-loop") for dependency in update["dependentTasks"])


def test_a_feature_newer_than_the_target_is_refused():
    spec, platform = _documents((GOLDEN / "hpo-demo.yaml").read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    first = next(iter(executors))
    executors[first]["nodeAffinity"] = [{"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]}]
    with pytest.raises(ConfigError, match=r"uses node-affinity .*KFP 2\.5 does not run.*backend/src/v2/driver/k8s\.go@2\.14\.0"):
        check_target({"components": {}, "root": {}}, platform, KfpTarget((2, 5)))
    executors[first]["someNewSetting"] = True
    assert unmapped_features(spec, platform) == ["kubernetes setting someNewSetting"]


@pytest.mark.parametrize(("text", "expected"), [("2.5", (2, 5)), ("v2.5.0", (2, 5)), ("2.16.1", (2, 14)), ("latest", (2, 14))])
def test_backend_versions_map_to_targets(text, expected):
    assert KfpTarget.for_backend(text).version == expected


@pytest.mark.parametrize("text", ["2.2.0", "2.4.1", "nonsense"])
def test_a_backend_too_old_or_unreadable_is_one_line(text):
    with pytest.raises(ConfigError) as caught:
        KfpTarget.parse(text)
    assert "\n" not in str(caught.value) and "--kfp-target" in str(caught.value)
