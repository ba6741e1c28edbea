"""Which KFP backend a compiled pipeline needs: every IR feature it uses, and the backend release that first runs it.

The SDK (2.17 here) compiles features an older backend ignores or rejects: Kubeflow 1.9 ships KFP 2.2,
Kubeflow 1.10 ships 2.5, Kubeflow 26.03 ships 2.16. :data:`BACKEND_FEATURES` maps each feature of the
pipeline spec (and of the kfp-kubernetes platform spec) that proxyhpo's pipelines use to the first
backend release whose sources handle it, read from kubeflow/pipelines (file at that tag, and the pull
request). :func:`features_used` finds them in a compiled pipeline; :func:`check_target` refuses a
pipeline that needs more than its target.

Pipelines are compiled for a :class:`KfpTarget` (``proxyhpo compile --kfp-target 2.5``; ``make deploy``
chooses it from the backend's version). One pipeline definition serves every target: for a backend
without final status or collected artifacts (before 2.14) the exit handler closes whatever the run left
open and a loop's outputs are relayed through the study's folder (:mod:`proxyhpo.relay`).

Example:
    >>> KfpTarget.parse("2.5").collects_artifacts
    False
    >>> KfpTarget.for_backend("2.16.0")
    KfpTarget(version=(2, 16))
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from proxyhpo.errors import ConfigError

__all__ = ["BackendFeature", "BACKEND_FEATURES", "KfpTarget", "OLDEST_TARGET", "LATEST_TARGET", "features_used", "unmapped_features", "required_version", "check_target"]


@dataclass(frozen=True)
class BackendFeature:
    """A feature of compiled pipelines and the first KFP backend release that runs it.

    Attributes:
        since: ``(major, minor)`` of the first release.
        source: where the backend handles it, ``path@tag``, in kubeflow/pipelines.
        change: the pull request that brought it.
        what: what breaks on an older backend.
    """

    since: tuple[int, int]
    source: str
    change: str
    what: str


#: Every IR feature the pipelines use (key: :func:`features_used`'s name) -> the backend that first supports it.
BACKEND_FEATURES: dict[str, BackendFeature] = {
    "loop": BackendFeature((2, 0), "backend/src/v2/compiler/argocompiler/dag.go@2.0.0", "#7173", "ParallelFor over a task's list output"),
    "loop-parallelism": BackendFeature(
        (2, 4), "backend/src/v2/compiler/argocompiler/dag.go@2.4.0", "#10798", "ParallelFor's parallelism is ignored: every pack at once"
    ),
    "exit-handler": BackendFeature(
        (2, 4), "backend/src/v2/compiler/argocompiler/dag.go@2.4.0", "#11470", "the exit handler runs as an Argo exit hook, also when the run fails"
    ),
    "final-status": BackendFeature(
        (2, 14), "backend/src/v2/driver/resolve.go@2.14.0", "#11953", "a PipelineTaskFinalStatus input is not resolved: the exit task fails"
    ),
    "collected-artifacts": BackendFeature(
        (2, 14), "backend/src/v2/driver/driver.go@2.14.0", "#11725", "dsl.Collected outputs of a ParallelFor are not resolved"
    ),
    "retry": BackendFeature(
        (2, 5), "backend/src/v2/compiler/argocompiler/container.go@2.5.0", "#11673", "set_retry compiles to no Argo retryStrategy: a failed pod is not retried"
    ),
    "job-placeholder": BackendFeature(
        (2, 5), "backend/src/v2/driver/driver.go@2.5.0", "#11599", "{{$.pipeline_job_uuid}} reaches the component as literal text"
    ),
    "secret-env": BackendFeature((2, 0), "backend/src/v2/driver/driver.go@2.0.0", "#7173", "kfp-kubernetes use_secret_as_env"),
    "config-map-env": BackendFeature((2, 1), "backend/src/v2/driver/driver.go@2.1.0", "#10483", "kfp-kubernetes use_config_map_as_env"),
    "pod-labels": BackendFeature((2, 1), "backend/src/v2/compiler/argocompiler/container.go@2.1.0", "#10393", "kfp-kubernetes add_pod_label"),
    "node-selector": BackendFeature((2, 0), "backend/src/v2/driver/driver.go@2.0.0", "#7173", "kfp-kubernetes add_node_selector"),
    "tolerations": BackendFeature((2, 1), "backend/src/v2/driver/driver.go@2.1.0", "#10471", "kfp-kubernetes add_toleration"),
    "timeout": BackendFeature((2, 1), "backend/src/v2/driver/driver.go@2.1.0", "#10481", "kfp-kubernetes set_timeout (activeDeadlineSeconds)"),
    "image-pull-secrets": BackendFeature((2, 1), "backend/src/v2/driver/driver.go@2.1.0", "#10427", "kfp-kubernetes set_image_pull_secrets"),
    "empty-dir": BackendFeature((2, 3), "backend/src/v2/driver/driver.go@2.3.0", "#10913", "kfp-kubernetes empty_dir_mount"),
    "node-affinity": BackendFeature((2, 14), "backend/src/v2/driver/k8s.go@2.14.0", "#12028", "kfp-kubernetes add_node_affinity"),
    "secret-volume": BackendFeature((2, 0), "backend/src/v2/driver/driver.go@2.0.0", "#9178", "kfp-kubernetes use_secret_as_volume"),
    "config-map-volume": BackendFeature((2, 1), "backend/src/v2/driver/driver.go@2.1.0", "#10483", "kfp-kubernetes use_config_map_as_volume"),
    "pvc-mount": BackendFeature((2, 0), "backend/src/v2/driver/driver.go@2.0.0", "#9106", "kfp-kubernetes mount_pvc (the data cache)"),
    "ephemeral-volume": BackendFeature(
        (2, 2), "backend/src/v2/driver/driver.go@2.2.0", "#10605", "kfp-kubernetes add_ephemeral_volume (the scratch volume)"
    ),
}

#: The kfp-kubernetes executor settings -> feature names.
_PLATFORM_FEATURES = {
    "secretAsEnv": "secret-env",
    "configMapAsEnv": "config-map-env",
    "podMetadata": "pod-labels",
    "nodeSelector": "node-selector",
    "tolerations": "tolerations",
    "activeDeadlineSeconds": "timeout",
    "imagePullSecret": "image-pull-secrets",
    "emptyDirMounts": "empty-dir",
    "nodeAffinity": "node-affinity",
    "secretAsVolume": "secret-volume",
    "configMapAsVolume": "config-map-volume",
    "pvcMount": "pvc-mount",
    "genericEphemeralVolume": "ephemeral-volume",
}
#: Task fields every backend since 2.0 reads, or whose feature :func:`features_used` names.
_KNOWN_TASK_FIELDS = frozenset(
    {"componentRef", "dependentTasks", "inputs", "taskInfo", "cachingOptions", "parameterIterator", "artifactIterator", "iteratorPolicy", "triggerPolicy", "retryPolicy"}
)
_JOB_PLACEHOLDER = re.compile(r"\{\{\$\.pipeline_job_(uuid|name|resource_name|create_time_utc|schedule_time_utc)\}\}")


@dataclass(frozen=True, order=True)
class KfpTarget:
    """The KFP backend release a pipeline is compiled for, ``(major, minor)``."""

    version: tuple[int, int]

    @classmethod
    def parse(cls, text: str, source: str = "--kfp-target") -> KfpTarget:
        """``"2.5"``, ``"2.16.1"`` or ``"v2.14.0"``; ``"latest"`` is :data:`LATEST_TARGET`.

        Raises:
            ConfigError: naming ``source`` when ``text`` is no version or older than :data:`OLDEST_TARGET`.
        """
        if str(text).strip().lower() in ("", "latest"):
            return LATEST_TARGET
        match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+.\w]*)", str(text).strip())
        if not match:
            raise ConfigError(source, f"{text!r} is not a KFP version", "give a backend version such as 2.5 or 2.16, or latest")
        target = cls((int(match[1]), int(match[2])))
        if target < OLDEST_TARGET:
            raise ConfigError(
                source, f"KFP {text} is older than {OLDEST_TARGET}, the oldest backend the pipelines run on (retry, job placeholders)",
                f"upgrade Kubeflow Pipelines to {OLDEST_TARGET} or later (Kubeflow 1.10 ships 2.5)",
            )
        return target

    @classmethod
    def for_backend(cls, tag: str) -> KfpTarget:
        """The target for a backend reporting version ``tag``: its own release (newer than the table: the latest)."""
        return min(cls.parse(tag, "the KFP backend's version"), LATEST_TARGET)

    @property
    def final_status(self) -> bool:
        """Whether the exit handler may read the run's final status (``PipelineTaskFinalStatus``)."""
        return self.supports("final-status")

    @property
    def collects_artifacts(self) -> bool:
        """Whether a loop's outputs may be ``dsl.Collected``; else they are relayed (:mod:`proxyhpo.relay`)."""
        return self.supports("collected-artifacts")

    def supports(self, feature: str) -> bool:
        return BACKEND_FEATURES[feature].since <= self.version

    def __str__(self) -> str:
        return ".".join(map(str, self.version))


#: The oldest backend the pipelines run on (compiled without final status and collected artifacts).
OLDEST_TARGET = KfpTarget(max(feature.since for name, feature in BACKEND_FEATURES.items() if name not in ("final-status", "collected-artifacts", "node-affinity")))
#: A backend that runs every feature in the table.
LATEST_TARGET = KfpTarget(max(feature.since for feature in BACKEND_FEATURES.values()))


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def features_used(spec: Mapping[str, Any], platform: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Every :data:`BACKEND_FEATURES` feature a compiled pipeline uses -> where (component or executor names).

    Args:
        spec: the pipeline spec (the compiled YAML's first document).
        platform: the kfp-kubernetes platform spec (its second document), if any.
    """
    used: dict[str, list[str]] = {}

    def note(feature: str, where: str) -> None:
        used.setdefault(feature, [])
        if where not in used[feature]:
            used[feature].append(where)

    components = dict(spec.get("components", {}))
    dags = {"root": spec.get("root", {}), **components}
    for name, component in components.items():
        for parameter in ((component.get("inputDefinitions") or {}).get("parameters") or {}).values():
            if parameter.get("parameterType") == "TASK_FINAL_STATUS":
                note("final-status", name)
    for dag_name, component in dags.items():
        for task_name, task in ((component.get("dag") or {}).get("tasks") or {}).items():
            where = f"{dag_name}/{task_name}"
            if "parameterIterator" in task or "artifactIterator" in task:
                note("loop", where)
                loop = components.get((task.get("componentRef") or {}).get("name", ""), {})
                if (loop.get("dag") or {}).get("outputs"):
                    note("collected-artifacts", where)
            if (task.get("iteratorPolicy") or {}).get("parallelismLimit"):
                note("loop-parallelism", where)
            if (task.get("triggerPolicy") or {}).get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED":
                note("exit-handler", where)
            if task.get("retryPolicy"):
                note("retry", where)
            if any(isinstance(value, str) and _JOB_PLACEHOLDER.search(value) for value in _walk(task.get("inputs") or {})):
                note("job-placeholder", where)
    executors = ((platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}))
    for executor, settings in executors.items():
        for key, feature in _PLATFORM_FEATURES.items():
            if settings.get(key):
                note(feature, executor)
    return used


def unmapped_features(spec: Mapping[str, Any], platform: Mapping[str, Any] | None = None) -> list[str]:
    """Task fields and kfp-kubernetes settings of a compiled pipeline that :data:`BACKEND_FEATURES` does not map.

    A new SDK or a new platform setting adds these: each must be looked up in KFP's sources and added to the table.
    """
    found = set()
    for component in [spec.get("root", {}), *spec.get("components", {}).values()]:
        for task in ((component.get("dag") or {}).get("tasks") or {}).values():
            found |= {f"task field {key}" for key in task if key not in _KNOWN_TASK_FIELDS}
    executors = ((platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}))
    for settings in executors.values():
        found |= {f"kubernetes setting {key}" for key in settings if key not in _PLATFORM_FEATURES}
    return sorted(found)


def required_version(spec: Mapping[str, Any], platform: Mapping[str, Any] | None = None) -> KfpTarget:
    """The oldest backend that runs every feature of a compiled pipeline."""
    used = features_used(spec, platform)
    return KfpTarget(max((BACKEND_FEATURES[name].since for name in used), default=(2, 0)))


def check_target(spec: Mapping[str, Any], platform: Mapping[str, Any] | None, target: KfpTarget, source: str = "the compiled pipeline") -> None:
    """Refuse a compiled pipeline that uses a feature ``target`` does not run.

    Raises:
        ConfigError: naming the first such feature, where it is used, and the backend that has it.
    """
    for name, where in sorted(features_used(spec, platform).items(), key=lambda item: BACKEND_FEATURES[item[0]].since, reverse=True):
        feature = BACKEND_FEATURES[name]
        if not target.supports(name):
            since = ".".join(map(str, feature.since))
            raise ConfigError(
                source, f"uses {name} ({where[0]}), which KFP {target} does not run: {feature.what} (from {since}, {feature.source})",
                f"compile with --kfp-target {since} or newer and upgrade the backend, or drop the setting that needs it",
            )
