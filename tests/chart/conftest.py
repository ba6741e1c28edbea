"""Render the proxyhpo chart with Helm's own engine (helm-python-sdk binds Helm's Go SDK; no helm binary)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm  # helm-python-sdk, a test extra: Helm's Go engine through ctypes
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "proxyhpo"
RELEASE = "proxyhpo"
NAMESPACE = "ml-team"

# Credentials a user would pass with --set; the chart ships none.
S3_KEY, S3_SECRET, PG_PASSWORD = "team-user", "s3-secret-9f2c7d", "pg-secret-41ab0e"
CREDENTIALS: dict[str, Any] = {
    "s3": {"accessKey": S3_KEY, "secretKey": S3_SECRET},
    "postgresql": {"auth": {"password": PG_PASSWORD}},
}

# Realistic values sets a cluster team would install with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "minimal": CREDENTIALS,
    "existing-secrets": {
        "s3": {"existingSecret": "proxyhpo-s3"},
        "postgresql": {"auth": {"existingSecret": "team-postgres"}},
    },
    "production": {
        **CREDENTIALS,
        "image": {"registry": "registry.example.org:5000/ml/proxyhpo", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "commonLabels": {"team": "imaging"},
        "minio": {
            "persistence": {"size": "2Ti", "storageClass": "fast-ssd"},
            "nodeSelector": {"node-role/storage": "true"},
            "tolerations": [{"key": "storage", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "postgresql": {"auth": {"password": PG_PASSWORD}, "persistence": {"storageClass": "fast-ssd"}},
        "mlflow": {"replicas": 2, "workers": 4, "allowedHosts": ["mlflow.imaging.example.org"]},
        "networkPolicy": {
            "extraMinioFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}}],
            "extraMlflowFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        },
    },
    "ephemeral": {
        **CREDENTIALS,
        "minio": {"persistence": {"enabled": False}, "bucketJob": {"enabled": False}},
        "postgresql": {"auth": {"password": PG_PASSWORD}, "persistence": {"enabled": False}},
        "networkPolicy": {"enabled": False},
        "pipeline": {"serviceAccount": {"create": False, "name": "default-editor"}},
    },
}


@pytest.fixture(scope="session")
def package_version() -> str:
    """The package version from pyproject.toml: the tag of every image and the chart's appVersion."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    """The chart, loaded once by Helm."""
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


class Rendered:
    """One `helm template proxyhpo helm/proxyhpo -n ml-team` result: the Kubernetes objects and NOTES.txt."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = next((text for path, text in manifests.items() if path.endswith("NOTES.txt")), "")
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if not path.endswith("NOTES.txt"):
                self.objects.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def kind(self, kind: str) -> dict[str, dict[str, Any]]:
        """Objects of one kind by name."""
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == kind}

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind/name, pod spec) of every workload and bare Pod."""
        for obj in self.objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
                yield f"{kind}/{name}", obj["spec"]["template"]["spec"]
            elif kind == "Pod":
                yield f"{kind}/{name}", obj["spec"]


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[[dict[str, Any]], Rendered]:
    """Render the chart with the given values (Helm merges them over values.yaml and checks the schema).

    The returned function raises ``helm_python.HelmError`` when a `fail` guard fires or the schema refuses.
    """

    def _render(values: dict[str, Any]) -> Rendered:
        return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))

    return _render


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def value_set(request: pytest.FixtureRequest, render: Callable[[dict[str, Any]], Rendered]) -> tuple[str, dict[str, Any], Rendered]:
    """(name, values, rendered chart) for each realistic values set."""
    values = VALUE_SETS[request.param]
    return request.param, values, render(values)
