"""The Pods the KFP backend starts for a compiled pipeline's tasks, built from its IR for the policy scan.

The KFP v2 driver renders each container task as a pod spec patch: ``initPodSpecPatch`` (backend/src/v2/driver/
driver.go) gives the ``main`` container the executor's image, the launcher command before the component's command
and arguments, the IR's env and its resources (CPU and memory requests and limits, the accelerator as a limit);
``extendPodSpecPatch`` (backend/src/v2/driver/k8s.go) applies the kfp-kubernetes platform spec: Secrets and
ConfigMaps as env (``secretKeyRef`` / ``configMapKeyRef``) or volumes, PVC mounts (``makeVolumeMountPatch``: the
volume named after the claim), generic ephemeral volumes (a ``volumeClaimTemplate`` of the given access modes, size
and storage class), emptyDir mounts, node selector, node
affinity, tolerations, image pull secrets and policy, the active deadline; the compiler puts ``podMetadata`` on the
pod. From KFP 2.16 the backend's compiler also gives every executor pod a security context
(backend/src/v2/compiler/argocompiler/security_context.go, #12782): the pod's seccomp profile RuntimeDefault, and
the main container no privilege escalation, every capability dropped, seccomp RuntimeDefault. This module does the
same for what the proxyhpo pipelines use, so checkov reads the task pods as they run.

Left out, as they are KFP's and not the pipeline's: the launcher's init container and Argo's wait container.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

#: Where Argo's launcher volume is mounted and the driver's launcher binary lies (component.KFPLauncherPath).
LAUNCHER = "/kfp-launcher/launch"
#: The service account of KFP's runs (standalone KFP's; a profile's is default-editor).
SERVICE_ACCOUNT = "pipeline-runner"


def _resources(resources: dict[str, Any]) -> dict[str, dict[str, str]]:
    requests = {k8s: resources[ir] for ir, k8s in (("resourceCpuRequest", "cpu"), ("resourceMemoryRequest", "memory")) if ir in resources}
    limits = {k8s: resources[ir] for ir, k8s in (("resourceCpuLimit", "cpu"), ("resourceMemoryLimit", "memory")) if ir in resources}
    accelerator = resources.get("accelerator")
    if accelerator:  # the driver sets the accelerator as a limit only; Kubernetes copies it to the request
        limits[accelerator.get("resourceType") or accelerator["type"]] = str(accelerator.get("resourceCount") or accelerator["count"])
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def _env(platform: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "KFP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KFP_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    for secret in platform.get("secretAsEnv", []):
        env += [{"name": pair["envVar"], "valueFrom": {"secretKeyRef": {"name": secret["secretName"], "key": pair["secretKey"],
                                                                         "optional": secret.get("optional", False)}}}
                for pair in secret["keyToEnv"]]
    for config_map in platform.get("configMapAsEnv", []):
        env += [{"name": pair["envVar"], "valueFrom": {"configMapKeyRef": {"name": config_map["configMapName"], "key": pair["configMapKey"],
                                                                            "optional": config_map.get("optional", False)}}}
                for pair in config_map["keyToEnv"]]
    return env


def _pvc_name(pvc: dict[str, Any]) -> str:
    """The claim a ``pvcMount`` names: a constant, as the proxyhpo pipelines give it (``pvcNameParameter`` since
    kfp-kubernetes 1.4, the deprecated ``constant`` before); a name resolved at run time cannot be scanned."""
    name = pvc.get("pvcNameParameter", {}).get("runtimeValue", {}).get("constant") or pvc.get("constant")
    if not name:
        raise ValueError(f"pvcMount at {pvc.get('mountPath')}: only a constant claim name can be scanned, got {pvc}")
    return name


def _volumes(platform: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "kfp-launcher", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "kfp-launcher", "mountPath": "/kfp-launcher"}]
    for pvc in platform.get("pvcMount", []):
        name = _pvc_name(pvc)
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": name}})
        mounts.append({"name": name, "mountPath": pvc["mountPath"], **({"subPath": pvc["subPath"]} if pvc.get("subPath") else {})})
    for ephemeral in platform.get("genericEphemeralVolume", []):
        claim: dict[str, Any] = {"accessModes": ephemeral.get("accessModes", []), "resources": {"requests": {"storage": ephemeral["size"]}}}
        if not ephemeral.get("defaultStorageClass"):  # the driver sets the class, "" included, unless told to use the default
            claim["storageClassName"] = ephemeral.get("storageClassName", "")
        template: dict[str, Any] = {"spec": claim}
        if ephemeral.get("metadata"):
            template["metadata"] = {key: ephemeral["metadata"][key] for key in ("labels", "annotations") if ephemeral["metadata"].get(key)}
        volumes.append({"name": ephemeral["volumeName"], "ephemeral": {"volumeClaimTemplate": template}})
        mounts.append({"name": ephemeral["volumeName"], "mountPath": ephemeral["mountPath"]})
    for empty_dir in platform.get("emptyDirMounts", []):
        source = {key: empty_dir[key] for key in ("medium", "sizeLimit") if empty_dir.get(key)}
        volumes.append({"name": empty_dir["volumeName"], "emptyDir": source})
        mounts.append({"name": empty_dir["volumeName"], "mountPath": empty_dir["mountPath"]})
    for secret in platform.get("secretAsVolume", []):
        volumes.append({"name": secret["secretName"], "secret": {"secretName": secret["secretName"], "optional": secret.get("optional", False)}})
        mounts.append({"name": secret["secretName"], "mountPath": secret["mountPath"], "readOnly": True})
    for config_map in platform.get("configMapAsVolume", []):
        volumes.append({"name": config_map["configMapName"], "configMap": {"name": config_map["configMapName"], "optional": config_map.get("optional", False)}})
        mounts.append({"name": config_map["configMapName"], "mountPath": config_map["mountPath"], "readOnly": True})
    return volumes, mounts


def _affinity(terms: list[dict[str, Any]]) -> dict[str, Any]:
    required = [{"matchExpressions": term["matchExpressions"]} for term in terms if not term.get("weight")]
    preferred = [{"weight": term["weight"], "preference": {"matchExpressions": term["matchExpressions"]}} for term in terms if term.get("weight")]
    node_affinity: dict[str, Any] = {}
    if required:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {"nodeAffinity": node_affinity}


#: The first KFP backend that sets the executor pods' security context itself.
SECURITY_CONTEXT_SINCE = (2, 16)


def task_pods(compiled: str, prefix: str, namespace: str, kfp_version: tuple[int, int] = SECURITY_CONTEXT_SINCE) -> Iterator[dict[str, Any]]:
    """The Pod of each container executor of one compiled pipeline, named ``<prefix>-<executor>``.

    Args:
        compiled: the pipeline's YAML (the IR, then the kfp-kubernetes platform spec when it has one).
        prefix: the start of each Pod's name (a waiver names the pods by it).
        namespace: the run namespace.
        kfp_version: the backend that renders them (major, minor): 2.16 and newer add the security context.

    Yields:
        ``v1`` Pod manifests, one per executor.
    """
    documents = [document for document in yaml.safe_load_all(compiled) if document]
    spec = documents[0]
    platforms = next((d["platforms"]["kubernetes"]["deploymentSpec"]["executors"] for d in documents[1:] if "platforms" in d), {})
    pipeline_name = spec["pipelineInfo"]["name"]
    for executor, definition in sorted(spec["deploymentSpec"]["executors"].items()):
        container = definition.get("container")
        if container is None:  # importers and resolvers run in the driver, not in a pod of their own
            continue
        platform = platforms.get(executor, {})
        volumes, mounts = _volumes(platform)
        main: dict[str, Any] = {
            "name": "main",
            "image": container["image"],
            "command": [LAUNCHER, "--pipeline_name", pipeline_name, "--run_id", "$(KFP_RUN_ID)", "--executor_type", "container",
                        "--pod_name", "$(KFP_POD_NAME)", "--pod_uid", "$(KFP_POD_UID)", "--"],
            "args": [*container.get("command", []), *container.get("args", [])],
            "env": [*({"name": e["name"], "value": e["value"]} for e in container.get("env", [])), *_env(platform)],
            "resources": _resources(container.get("resources", {})),
            "volumeMounts": mounts,
        }
        if platform.get("imagePullPolicy"):
            main["imagePullPolicy"] = platform["imagePullPolicy"]
        pod_spec: dict[str, Any] = {"serviceAccountName": SERVICE_ACCOUNT, "restartPolicy": "Never", "containers": [main], "volumes": volumes}
        if kfp_version >= SECURITY_CONTEXT_SINCE:
            pod_spec["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
            main["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                       "seccompProfile": {"type": "RuntimeDefault"}}
        if platform.get("nodeSelector", {}).get("labels"):
            pod_spec["nodeSelector"] = platform["nodeSelector"]["labels"]
        if platform.get("nodeAffinity"):
            pod_spec["affinity"] = _affinity(platform["nodeAffinity"])
        if platform.get("tolerations"):
            pod_spec["tolerations"] = [{key: value for key, value in toleration.items() if key in {"key", "operator", "value", "effect", "tolerationSeconds"}}
                                       for toleration in platform["tolerations"]]
        if platform.get("imagePullSecret"):
            pod_spec["imagePullSecrets"] = [{"name": secret["secretName"]} for secret in platform["imagePullSecret"]]
        if platform.get("activeDeadlineSeconds"):
            pod_spec["activeDeadlineSeconds"] = int(platform["activeDeadlineSeconds"])
        metadata: dict[str, Any] = {"name": f"{prefix}-{executor.removeprefix('exec-')}", "namespace": namespace}
        for key in ("labels", "annotations"):
            if platform.get("podMetadata", {}).get(key):
                metadata[key] = platform["podMetadata"][key]
        yield {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
