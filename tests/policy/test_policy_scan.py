"""Policy scan: checkov 3 on the chart as Helm renders it, on the Dockerfiles and on the pipelines' task pods as the
KFP backend renders them; every finding is fixed or waived with a reason in policy-waivers.yaml, and every waiver
still matches a finding.

checkov runs from its own venv (.venv-checkov, pinned by requirements-checkov.lock, made by `make checkov` on first
use): its pins conflict with requirements.lock. One checkov run reads everything.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from task_pods import task_pods  # tests/support

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "proxyhpo"
WAIVERS = REPO / "policy-waivers.yaml"
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))
GOLDEN = sorted((REPO / "tests" / "pipelines" / "golden").glob("*.yaml"))
CHECKOV_LOCK = REPO / "requirements-checkov.lock"
CHECKOV_VENV = REPO / ".venv-checkov"
RELEASE, NAMESPACE = "proxyhpo", "ml-team"

# The default values (plus the credentials the chart requires) and a variant that takes the other branches:
# existing Secrets, a given pipeline key, an existing claim, pull secrets and policy, replicas, extra peers.
VALUES: dict[str, dict[str, Any]] = {
    "default": {"s3": {"accessKey": "team-user", "secretKey": "s3-secret-9f2c7d"},
                "postgresql": {"auth": {"password": "pg-secret-41ab0e"}}},
    "variant": {
        "s3": {"existingSecret": "team-minio-root", "bucket": "imaging-studies",
               "pipelineUser": {"name": "imaging-pipelines", "secretKey": "pipeline-key-5e1d"}},
        "postgresql": {"auth": {"existingSecret": "team-postgres"}},
        "image": {"registry": "registry.example.org/ml/proxyhpo", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "minio": {"persistence": {"existingClaim": "imaging-minio-data"}},
        "mlflow": {"replicas": 2},
        "networkPolicy": {"extraMinioFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}}]},
    },
}
# The GPU placement a cluster study sets (node pool, GPU product, private registry), compiled as `make deploy` does.
PLACEMENT = {"node_selector": {"cloud.google.com/gke-nodepool": "gpu-a100"}, "image_pull_secrets": ["regcred"],
             "node_affinity": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}]}
# The shared data cache (a PVC) and the scratch volume (a generic ephemeral volume), so the scan reads both; the golden
# pipelines keep the emptyDir staging.
VOLUMES = {"data_cache": {"pvc": "imaging-cache", "path": "/data-cache"}, "scratch_volume": {"storage_class": "fast-ssd"}}
# A privileged root container that every scan must report (CKV_K8S_16, CKV_K8S_20): the scanner really checks.
CANARY = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "canary", "namespace": NAMESPACE},
          "spec": {"containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True, "runAsUser": 0}}]}}


def _checkov() -> Path:
    """checkov from .venv-checkov, made by `make checkov` when missing or older than the lock (one maker at a time)."""
    executable, stamp = CHECKOV_VENV / "bin" / "checkov", CHECKOV_VENV / ".installed"
    with open(REPO / ".venv-checkov.lock-file", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # pytest-xdist workers share the folder
        if not stamp.exists() or stamp.stat().st_mtime < CHECKOV_LOCK.stat().st_mtime:
            made = subprocess.run(["make", "--no-print-directory", "checkov"], cwd=REPO, capture_output=True, text=True, timeout=900)
            assert made.returncode == 0, f"make checkov failed:\n{made.stderr[-3000:]}"
    return executable


def _reports(stdout: str) -> list[dict[str, Any]]:
    """checkov's JSON output: one report, or a list of them (one per framework)."""
    decoded = json.loads(stdout)
    return decoded if isinstance(decoded, list) else [decoded]


def _deployed_pipeline(folder: Path) -> str:
    """The HPO demo compiled as `make deploy` compiles it: images pinned by the digests `make push` recorded, GPU placement,
    a private CA bundle (caBundle), a shared data cache and a scratch volume."""
    from pipelines.tasks import CaBundle
    from proxyhpo.catalogue import shipped_study
    from proxyhpo.compile import PipelineImages, compile_study
    from proxyhpo.config import StudyConfig

    digests = folder / "digests"
    digests.mkdir()
    for image in ("runtime", "runtime-cpu"):
        (digests / f"{image}.digest").write_text(f"registry.example.org/ml/{image}@sha256:{image.encode().hex().ljust(64, '0')}\n")
    document = shipped_study("demo").model_dump(mode="json")
    document["resources"].update(PLACEMENT | VOLUMES)
    images = PipelineImages.pushed("registry.example.org/ml", "0.1.0-abc1234", digests=digests)
    return compile_study(StudyConfig.model_validate(document), folder / "hpo.yaml", "hpo", images=images,
                         ca_bundle=CaBundle("configMap", "hospital-ca")).read_text()


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], dict[str, int]]]:
    """Render both values sets, build the task pods, copy the Dockerfiles into one folder; run checkov once over it.

    Returns the failed checks (check id, resource as "Kind/name" or the Dockerfile's path, where) and the
    number of resources checkov read per framework.
    """
    root = tmp_path_factory.mktemp("policy-scan")
    with helm.Chart.load(CHART_DIR) as chart:
        for name, values in VALUES.items():
            folder = root / "chart" / name
            folder.mkdir(parents=True)
            for path, text in chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True).items():
                if path.endswith(".yaml") and text.strip():
                    (folder / path.replace("/", "_")).write_text(text)
    pods = root / "task-pods"
    pods.mkdir()
    # the golden pipelines (every pipeline kind, images by tag as `make golden` compiles them), and the deployed HPO pipeline
    compiled = {f"golden-{path.stem}": path.read_text() for path in GOLDEN}
    compiled["deploy-hpo"] = _deployed_pipeline(tmp_path_factory.mktemp("deployed"))
    for prefix, text in compiled.items():
        (pods / f"{prefix}.yaml").write_text(yaml.safe_dump_all(task_pods(text, prefix, NAMESPACE), sort_keys=False))
    (pods / "canary.yaml").write_text(yaml.safe_dump(CANARY))
    for dockerfile in DOCKERFILES:
        copy = root / dockerfile.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(dockerfile.read_bytes())
    result = subprocess.run(
        [str(_checkov()), "--directory", str(root), "--framework", "kubernetes", "dockerfile", "--output", "json",
         "--quiet", "--compact", "--skip-download"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr[-4000:]  # 1: there are failed checks
    failed: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for report in _reports(result.stdout):
        counts[report["check_type"]] = report["summary"]["resource_count"]
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]
        for check in report["results"]["failed_checks"]:
            # absolute, or relative to the scanned folder with a leading "/" (checkov does both)
            path = check["file_path"]
            relative = Path(path).relative_to(root).as_posix() if path.startswith(str(root)) else path.lstrip("/")
            if report["check_type"] == "dockerfile":
                resource = relative
            else:  # "Kind.namespace.name", and a graph check's pod template "Pod.namespace.name.<its labels>"
                kind, _, name = check["resource"].split(".")[:3]
                resource = f"{kind}/{name}"
            failed.append({"check": check["check_id"], "resource": resource, "where": relative, "title": check.get("check_name", "")})
    counts["task pods"] = sum(text.count("\nkind: Pod") + text.startswith("apiVersion: v1\nkind: Pod") for text in
                              (path.read_text() for path in pods.glob("*.yaml") if path.name != "canary.yaml"))
    yield failed, counts


@pytest.fixture(scope="module")
def waivers() -> list[dict[str, Any]]:
    return yaml.safe_load(WAIVERS.read_text())["waivers"]


def _waived(finding: dict[str, Any], waivers: list[dict[str, Any]]) -> bool:
    return any(w["check"] == finding["check"] and any(fnmatch.fnmatchcase(finding["resource"], r) for r in w["resources"]) for w in waivers)


def test_checkov_is_the_pinned_3x(waivers: list[dict[str, Any]]) -> None:
    pinned = re.search(r"^checkov==(\S+)$", CHECKOV_LOCK.read_text(), re.MULTILINE)
    assert pinned and pinned.group(1).startswith("3."), "requirements-checkov.lock: pin checkov==3.x"
    version = subprocess.run([str(_checkov()), "--version"], capture_output=True, text=True, timeout=120).stdout.strip()
    assert version == pinned.group(1), f"{CHECKOV_VENV.name} has checkov {version}, the lock pins {pinned.group(1)}: run make checkov"


def test_waiver_file_gives_every_waiver_a_check_resources_and_reason(waivers: list[dict[str, Any]]) -> None:
    assert waivers
    seen: set[tuple[str, str]] = set()
    for waiver in waivers:
        assert set(waiver) == {"check", "title", "resources", "reason"}, waiver
        assert waiver["check"].startswith(("CKV_K8S_", "CKV_DOCKER_", "CKV2_K8S_", "CKV2_DOCKER_")), waiver["check"]
        assert len(waiver["reason"].split()) >= 12, f"{waiver['check']}: say why"
        assert waiver["resources"], waiver["check"]
        for resource in waiver["resources"]:
            assert (waiver["check"], resource) not in seen, f"{waiver['check']} {resource} waived twice"
            seen.add((waiver["check"], resource))


def test_the_scan_reads_every_manifest_dockerfile_and_task_pod(scan: tuple[list[dict[str, Any]], dict[str, int]]) -> None:
    _, counts = scan
    # both renders' workloads, Services, Secrets, ... and the task pods; a scan that parsed nothing would pass everything
    assert counts["task pods"] >= 6 * 5, counts
    assert counts.get("kubernetes", 0) >= 2 * 12 + counts["task pods"], counts
    assert counts.get("dockerfile", 0) == len(DOCKERFILES) >= 2, counts
    assert {"images/runtime/Dockerfile", "images/mlflow/Dockerfile"} <= {d.relative_to(REPO).as_posix() for d in DOCKERFILES}


def test_every_finding_is_fixed_or_waived(scan: tuple[list[dict[str, Any]], dict[str, int]], waivers: list[dict[str, Any]]) -> None:
    failed, _ = scan
    open_findings = sorted({f"{f['check']} {f['resource']} ({f['where']}): {f['title']}" for f in failed
                            if f["resource"] != "Pod/canary" and not _waived(f, waivers)})
    assert not open_findings, "fix these or waive them with a reason in policy-waivers.yaml:\n" + "\n".join(open_findings)


def test_every_waiver_still_matches_a_finding(scan: tuple[list[dict[str, Any]], dict[str, int]], waivers: list[dict[str, Any]]) -> None:
    failed, _ = scan
    stale = sorted(f"{w['check']} {r}" for w in waivers for r in w["resources"]
                   if not any(f["check"] == w["check"] and f["resource"] != "Pod/canary" and fnmatch.fnmatchcase(f["resource"], r) for f in failed))
    assert not stale, "these waivers match no finding any more: remove them from policy-waivers.yaml\n" + "\n".join(stale)


def test_the_scan_can_fail(scan: tuple[list[dict[str, Any]], dict[str, int]]) -> None:
    # The privileged root canary must be reported: the scanner is really checking, not passing everything.
    failed, _ = scan
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= {f["check"] for f in failed if f["resource"] == "Pod/canary"}  # privileged; escalation


def test_task_pods_carry_the_platform_spec(tmp_path: Path) -> None:
    # What the scan reads of a task pod is what the driver puts there: secrets by reference, placement, deadline, digest.
    pods = {pod["metadata"]["name"]: pod for pod in task_pods(_deployed_pipeline(tmp_path), "deploy-hpo", NAMESPACE)}
    train = pods["deploy-hpo-train-pack"]["spec"]
    main = train["containers"][0]
    assert "@sha256:" in main["image"] and main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert train["nodeSelector"] == PLACEMENT["node_selector"] and train["imagePullSecrets"] == [{"name": "regcred"}]
    terms = train["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.product"
    assert train["tolerations"] and train["activeDeadlineSeconds"] > 0
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in main["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets["AWS_SECRET_ACCESS_KEY"] == "proxyhpo-s3" and not any("value" in e and "SECRET" in e["name"] for e in main["env"])
    staging = next(v for v in train["volumes"] if v["name"] == "proxyhpo-staging")
    claim = staging["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] and claim["storageClassName"] == "fast-ssd" and claim["accessModes"] == ["ReadWriteOnce"]
    assert {"name": "imaging-cache", "persistentVolumeClaim": {"claimName": "imaging-cache"}} in train["volumes"]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts["/staging"] == "proxyhpo-staging" and mounts["/data-cache"] == "imaging-cache"
    assert {"name": "hospital-ca", "configMap": {"name": "hospital-ca", "optional": False}} in train["volumes"]
    assert {"name": "AWS_CA_BUNDLE", "value": "/etc/proxyhpo/ca/ca.crt"} in main["env"]
