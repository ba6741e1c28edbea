"""The task pods' optional volumes (issue 21, staging): a read-only shared data cache (a PVC) and a scratch volume the
scheduler reserves (a generic ephemeral volume) instead of the emptyDir; compiled specs only, no run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.tasks import STAGING_PATH, STAGING_VOLUME
from proxyhpo.catalogue import shipped_study
from proxyhpo.compile import compile_study
from proxyhpo.config import StudyConfig, load_study
from proxyhpo.data.cache import CACHE_ENV
from proxyhpo.errors import ConfigError
from proxyhpo.kfp.target import features_used, required_version

VOLUMES = {"data_cache": {"pvc": "msd-cache", "path": "/data-cache"}, "scratch_volume": {"storage_class": "fast-ssd"}}


def _with_resources(**settings: object) -> StudyConfig:
    document = shipped_study("demo").model_dump(mode="json")
    document["resources"].update(settings)
    return StudyConfig.model_validate(document)


def _compiled(study: StudyConfig, out: Path) -> tuple[dict, dict]:
    """The pipeline spec and the kfp-kubernetes platform spec of ``study``'s HPO pipeline."""
    spec, platform = [d for d in yaml.safe_load_all(compile_study(study, out, "hpo").read_text()) if d]
    return spec, platform


def _executors(platform: dict) -> dict:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_task_mounts_the_cache_and_stages_into_a_reserved_volume(tmp_path: Path) -> None:
    study = _with_resources(scratch="7Gi", **VOLUMES)
    spec, platform = _compiled(study, tmp_path / "hpo.yaml")
    executors = _executors(platform)
    assert executors and set(executors) == set(spec["deploymentSpec"]["executors"])
    for name, settings in executors.items():
        assert "emptyDirMounts" not in settings, name
        assert settings["genericEphemeralVolume"] == [{
            "volumeName": STAGING_VOLUME, "mountPath": STAGING_PATH, "accessModes": ["ReadWriteOnce"], "size": "7Gi", "storageClassName": "fast-ssd",
        }], name
        (mount,) = settings["pvcMount"]
        assert (mount["mountPath"], mount["pvcNameParameter"]["runtimeValue"]["constant"]) == ("/data-cache", "msd-cache"), name
        env = {e["name"]: e["value"] for e in spec["deploymentSpec"]["executors"][name]["container"].get("env", [])}
        assert env[CACHE_ENV] == "/data-cache", name
    assert {"pvc-mount", "ephemeral-volume"} <= set(features_used(spec, platform))
    assert required_version(spec, platform) == required_version(*_compiled(shipped_study("demo"), tmp_path / "plain.yaml"))
    compile_study(study, tmp_path / "hpo-2.5.yaml", "hpo", kfp_target="2.5")  # both run on the oldest target (2.0, 2.2)


def test_unset_the_volumes_leave_the_study_and_its_pods_as_they_were(tmp_path: Path) -> None:
    study = shipped_study("demo")
    assert "data_cache" not in study.model_dump_json() and "scratch_volume" not in study.model_dump_json()
    executors = _executors(_compiled(study, tmp_path / "hpo.yaml")[1])
    assert all("emptyDirMounts" in s and "pvcMount" not in s and "genericEphemeralVolume" not in s for s in executors.values())


@pytest.mark.parametrize("key", sorted(VOLUMES))
def test_a_volume_set_or_changed_in_the_form_is_refused_in_one_line(key: str) -> None:
    compiled_without = shipped_study("demo")
    edited = _with_resources(**{key: VOLUMES[key]})
    for compiled, study in ((compiled_without, edited), (edited, compiled_without)):
        with pytest.raises(ConfigError) as caught:
            study.check_compiled_shape(compiled.with_compiled_settings(compiled.shape))
        message = str(caught.value)
        assert message.startswith(f"study_config: resources.{key} is ") and "fixed at compile time" in message and "\n" not in message
    edited.check_compiled_shape(edited.with_compiled_settings(edited.shape))


@pytest.mark.parametrize(("key", "value", "named"), [
    ("data_cache", {"pvc": "MSD_Cache"}, "resources.data_cache.pvc"),
    ("data_cache", {"pvc": "a" * 64}, "resources.data_cache.pvc"),
    ("data_cache", {"pvc": "cache", "path": "data-cache"}, "resources.data_cache.path"),
    ("data_cache", {"pvc": "cache", "path": "/staging/cache"}, "resources.data_cache.path"),
    # a folder the task pod already mounts (KFP's launcher binary, the CA bundle): a duplicate mount path, the pod is refused
    ("data_cache", {"pvc": "cache", "path": "/kfp-launcher"}, "resources.data_cache.path"),
    ("data_cache", {"pvc": "cache", "path": "/etc/proxyhpo/ca"}, "resources.data_cache.path"),
    # a folder of the image (a read-write shared claim over /tmp would take every task's temporary files)
    ("data_cache", {"pvc": "cache", "path": "/tmp"}, "resources.data_cache.path"),
    ("data_cache", {"pvc": "cache", "path": "/usr/local"}, "resources.data_cache.path"),
    ("scratch_volume", {"storage_class": "Fast SSD"}, "resources.scratch_volume.storage_class"),
])
def test_a_bad_volume_setting_is_one_line_naming_it(tmp_path: Path, key: str, value: dict, named: str) -> None:
    document = shipped_study("demo").model_dump(mode="json")
    document["resources"][key] = value
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as caught:
        load_study(config)
    message = str(caught.value)
    assert named in message and "\n" not in message
