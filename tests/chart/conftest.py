"""Render the proxyhpo chart with Helm's own engine (helm-python-sdk binds Helm's Go SDK; no helm binary).

Offline renders see an empty cluster (`lookup` finds nothing). Upgrades are rendered against a small local
HTTP server standing in for the Kubernetes API, so `lookup` finds the Secrets a first install created.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
        "s3": {"existingSecret": "team-minio-root"},
        "postgresql": {"auth": {"existingSecret": "team-postgres"}},
    },
    "production": {
        "s3": {**CREDENTIALS["s3"], "bucket": "imaging-studies", "pipelineUser": {"name": "imaging-pipelines", "secretKey": "pipeline-key-5e1d"}},
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
    # A multi-user Kubeflow profile: its own bucket, the UI's artifact server admitted, pipelines in the profile.
    "multi-user": {
        **CREDENTIALS,
        "s3": {**CREDENTIALS["s3"], "bucket": "team-a-studies"},
        "networkPolicy": {"kfpUi": {"enabled": True, "namespace": "kubeflow", "uiPodLabels": {"app": "ml-pipeline-ui"},
                                    "artifactServerPodLabels": {"app": "ml-pipeline-ui-artifact"}}},
    },
    "ephemeral": {
        **CREDENTIALS,
        "minio": {"persistence": {"enabled": False}, "bucketJob": {"enabled": False}},
        "postgresql": {"auth": {"password": PG_PASSWORD}, "persistence": {"enabled": False}},
        "networkPolicy": {"enabled": False},
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


class FakeKubeAPI:
    """The part of the Kubernetes API that Helm's `lookup` of a Secret or ConfigMap uses: discovery of v1, then a GET.

    ``secrets`` maps (namespace, name) to the Secret's ``data`` (base64 values), ``config_maps`` to a ConfigMap's
    ``metadata`` (its annotations say which release owns it); ``requests`` records paths.
    """

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                api.requests.append(path)
                parts = path.strip("/").split("/")
                body: dict[str, Any]
                if path == "/api/v1":
                    body = {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                        {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get", "list"]},
                        {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap", "verbs": ["get", "list"]}]}
                elif path == "/api":
                    body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
                elif path == "/apis":
                    body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
                elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets" and (parts[3], parts[5]) in api.secrets:
                    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": parts[5], "namespace": parts[3]}, "data": api.secrets[(parts[3], parts[5])]}
                elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "configmaps" and (parts[3], parts[5]) in api.config_maps:
                    metadata = {"name": parts[5], "namespace": parts[3], **api.config_maps[(parts[3], parts[5])]}
                    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {}}
                else:
                    self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
                    return
                self._send(200, body)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self) -> str:
        return (f"apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: '{self.url}'}}}}]\n"
                f"users: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {NAMESPACE}}}}}]\n"
                "current-context: fake\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_kube() -> Iterator[FakeKubeAPI]:
    """An empty stand-in Kubernetes API; put Secrets into ``secrets`` before rendering."""
    api = FakeKubeAPI()
    yield api
    api.close()


@pytest.fixture
def render_on_cluster(chart: Any, fake_kube: FakeKubeAPI) -> Callable[..., Rendered]:
    """Render as `helm upgrade` (or install) against ``fake_kube``: `lookup` returns its Secrets."""

    def _render(values: dict[str, Any], *, upgrade: bool = True) -> Rendered:
        config = helm.Config(kubeconfig_content=fake_kube.kubeconfig(), namespace=NAMESPACE)
        try:
            manifests = config.render(chart, values, name=RELEASE, namespace=NAMESPACE, revision=2 if upgrade else 1,
                                      is_upgrade=upgrade, is_install=not upgrade)
        finally:
            config.close()
        return Rendered(manifests)

    return _render

