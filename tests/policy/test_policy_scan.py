"""Policy scan: checkov on the chart as Helm renders it and on the Dockerfiles; every finding is fixed or waived
with a reason in policy-waivers.yaml, and every waiver still matches a finding."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "proxyhpo"
WAIVERS = REPO / "policy-waivers.yaml"
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))
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


def _checkov() -> str:
    beside = Path(sys.executable).with_name("checkov")
    found = str(beside) if beside.exists() else shutil.which("checkov")
    if not found:
        pytest.fail("checkov is missing: install the test extras (pip install -c requirements.lock -e '.[test]')")
    return found


def _reports(stdout: str) -> list[dict[str, Any]]:
    """checkov's JSON output: one report, or a list of them (one per framework)."""
    decoded = json.loads(stdout)
    return decoded if isinstance(decoded, list) else [decoded]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], dict[str, int]]]:
    """Render both values sets and copy the Dockerfiles into one folder; run checkov once over it.

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
    for dockerfile in DOCKERFILES:
        copy = root / dockerfile.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dockerfile, copy)
    result = subprocess.run(
        [_checkov(), "--directory", str(root), "--framework", "kubernetes", "dockerfile", "--output", "json",
         "--quiet", "--no-guide", "--skip-policy-download"],
        cwd=root, capture_output=True, text=True, timeout=300,
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
            else:  # "Kind.namespace.name"
                kind, *_, name = check["resource"].split(".")
                resource = f"{kind}/{name}"
            failed.append({"check": check["check_id"], "resource": resource, "where": relative, "title": check.get("check_name", "")})
    yield failed, counts


@pytest.fixture(scope="module")
def waivers() -> list[dict[str, Any]]:
    return yaml.safe_load(WAIVERS.read_text())["waivers"]


def test_waiver_file_gives_every_waiver_a_check_resources_and_reason(waivers: list[dict[str, Any]]) -> None:
    assert waivers
    seen: set[tuple[str, str]] = set()
    for waiver in waivers:
        assert set(waiver) == {"check", "title", "resources", "reason"}, waiver
        assert waiver["check"].startswith(("CKV_K8S_", "CKV_DOCKER_", "CKV2_K8S_")), waiver["check"]
        assert len(waiver["reason"].split()) >= 12, f"{waiver['check']}: say why"
        assert waiver["resources"], waiver["check"]
        for resource in waiver["resources"]:
            assert (waiver["check"], resource) not in seen, f"{waiver['check']} {resource} waived twice"
            seen.add((waiver["check"], resource))


def test_the_scan_reads_every_manifest_and_dockerfile(scan: tuple[list[dict[str, Any]], dict[str, int]]) -> None:
    _, counts = scan
    # both renders' workloads, Services, Secrets, ...; a scan that parsed nothing would pass everything
    assert counts.get("kubernetes", 0) >= 2 * 12, counts
    assert counts.get("dockerfile", 0) == len(DOCKERFILES) >= 2, counts
    assert {"images/runtime/Dockerfile", "images/mlflow/Dockerfile"} <= {d.relative_to(REPO).as_posix() for d in DOCKERFILES}


def test_every_finding_is_fixed_or_waived(scan: tuple[list[dict[str, Any]], dict[str, int]], waivers: list[dict[str, Any]]) -> None:
    failed, _ = scan
    waived = {(w["check"], r) for w in waivers for r in w["resources"]}
    open_findings = sorted({f"{f['check']} {f['resource']} ({f['where']}): {f['title']}" for f in failed if (f["check"], f["resource"]) not in waived})
    assert not open_findings, "fix these or waive them with a reason in policy-waivers.yaml:\n" + "\n".join(open_findings)


def test_every_waiver_still_matches_a_finding(scan: tuple[list[dict[str, Any]], dict[str, int]], waivers: list[dict[str, Any]]) -> None:
    failed, _ = scan
    found = {(f["check"], f["resource"]) for f in failed}
    stale = sorted(f"{w['check']} {r}" for w in waivers for r in w["resources"] if (w["check"], r) not in found)
    assert not stale, "these waivers match no finding any more: remove them from policy-waivers.yaml\n" + "\n".join(stale)


def test_the_scan_can_fail(tmp_path: Path) -> None:
    # A privileged, root container must be reported: the scanner is really checking, not passing everything.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "c", "image": "busybox:latest", "securityContext": {"privileged": True, "runAsUser": 0}}]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(pod))
    result = subprocess.run([_checkov(), "--directory", str(tmp_path), "--framework", "kubernetes", "--output", "json", "--quiet",
                             "--no-guide", "--skip-policy-download"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    ids = {c["check_id"] for report in _reports(result.stdout) for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= ids  # privileged; privilege escalation allowed
