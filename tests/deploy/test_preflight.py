"""The deploy's preflight against stand-ins: a small HTTP server answers as the Kubernetes API and as the KFP API.

The ``kubernetes`` client is the real one, configured with the stand-in's address (directly, or through a
kubeconfig file for the command line); KFP is asked over HTTP as the deploy asks a real one. Every error path
ends in one line that says what to do, and ``proxyhpo deploy --preflight`` exits with code 2.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxyhpo import deploy, kfp_auth
from proxyhpo.cli import main

NAMESPACE = "team-a"
TOKEN = "kube-token-3c9d"
CREDENTIALS = {"S3_ACCESS_KEY": "team-user", "S3_SECRET_KEY": "s3-secret-77aa", "POSTGRES_PASSWORD": "pg-secret-19fe"}


def _status(code: int, reason: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code}


def _node(name: str, gpus: int | None) -> dict[str, Any]:
    allocatable = {"cpu": "16", "memory": "64Gi", **({"nvidia.com/gpu": str(gpus)} if gpus is not None else {})}
    return {"metadata": {"name": name}, "status": {"allocatable": allocatable, "capacity": allocatable}}


class FakeAPI:
    """Kubernetes and KFP APIs on one local port: ``routes`` maps a GET path to (status, JSON body or text, headers)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any, dict[str, str]]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.require_token: str | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                api.requests.append((path, dict(self.headers)))
                if api.require_token and path.startswith("/api/") and self.headers.get("Authorization") != f"Bearer {api.require_token}":
                    status, body, headers = 401, _status(401, "Unauthorized"), {}
                else:
                    status, body, headers = api.routes.get(path, (404, _status(404, "NotFound"), {}))
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "text/html" if isinstance(body, str) else "application/json"))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def healthy(self, *, gpus: int | None = 2, kfp: str = "2.14.3", multi_user: bool = False, secrets: bool = True) -> FakeAPI:
        """A cluster with the namespace, GPU nodes (or none) and the chart's Secrets; KFP at version ``kfp``."""
        self.routes[f"/api/v1/namespaces/{NAMESPACE}"] = (200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NAMESPACE}}, {})
        self.routes["/api/v1/nodes"] = (200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [_node("cpu-1", None), _node("gpu-1", gpus)]}, {})
        if secrets:
            for name in ("proxyhpo-minio", "proxyhpo-postgres"):
                self.routes[f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}"] = (
                    200, {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": name, "namespace": NAMESPACE}, "data": {}}, {})
        self.routes["/apis/v2beta1/healthz"] = (200, {"commit_sha": "abc", "tag_name": kfp, "multi_user": multi_user}, {})
        self.storage_classes(("standard", True), ("fast-ssd", False))
        self.routes[f"/api/v1/namespaces/{NAMESPACE}/resourcequotas"] = (200, {"kind": "ResourceQuotaList", "apiVersion": "v1", "metadata": {}, "items": []}, {})
        return self

    def storage_classes(self, *classes: tuple[str, bool]) -> FakeAPI:
        """The cluster's StorageClasses: (name, whether it is the default)."""
        items = [{"metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}},
                  "provisioner": "example.org/disk"} for name, default in classes]
        self.routes["/apis/storage.k8s.io/v1/storageclasses"] = (200, {"kind": "StorageClassList", "apiVersion": "storage.k8s.io/v1", "metadata": {}, "items": items}, {})
        return self

    def namespace_labels(self, labels: dict[str, str]) -> FakeAPI:
        self.routes[f"/api/v1/namespaces/{NAMESPACE}"] = (200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NAMESPACE, "labels": labels}}, {})
        return self

    def kfp_launcher(self, owner: str | None) -> FakeAPI:
        annotations = {"meta.helm.sh/release-name": owner} if owner else {}
        self.routes[f"/api/v1/namespaces/{NAMESPACE}/configmaps/kfp-launcher"] = (200, {
            "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "kfp-launcher", "namespace": NAMESPACE, "annotations": annotations},
            "data": {"defaultPipelineRoot": "minio://mlpipeline/v2/artifacts"}}, {})
        return self

    def quota(self, hard: dict[str, str], used: dict[str, str]) -> FakeAPI:
        item = {"metadata": {"name": "profile-quota", "namespace": NAMESPACE}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}}
        self.routes[f"/api/v1/namespaces/{NAMESPACE}/resourcequotas"] = (200, {"kind": "ResourceQuotaList", "apiVersion": "v1", "metadata": {}, "items": [item]}, {})
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeAPI]:
    server = FakeAPI()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "KFP_TOKEN", "KFP_COOKIES"):
        monkeypatch.delenv(name, raising=False)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _preflight(fake: FakeAPI, *, kfp: str | None = None, kube: str | None = None, env: dict[str, str] | None = None, **kwargs: Any) -> deploy.PreflightReport:
    api = deploy.kube_api_client(host=kube or fake.url)
    return deploy.preflight(kfp or fake.url, NAMESPACE, api=api, env={} if env is None else env, **kwargs)


def _one_error(report: deploy.PreflightReport) -> str:
    assert len(report.errors) == 1, report.findings
    (line,) = report.errors
    assert "\n" not in line and "; fix: " in line, line
    return line


# --- the library function --------------------------------------------------------------------------------------

def test_a_healthy_cluster_passes(fake: FakeAPI) -> None:
    report = _preflight(fake.healthy())
    assert report.ok and report.warnings == [], report.findings
    assert report.namespace_exists and report.kfp_version == "2.14.3" and report.multi_user is False
    assert any("2 advertising 2 nvidia.com/gpu" in f.message or "nvidia.com/gpu" in f.message for f in report.findings if f.level == "ok")


def test_kubernetes_api_unreachable(fake: FakeAPI) -> None:
    line = _one_error(_preflight(fake.healthy(), kube=_closed_port_url()))
    assert "Kubernetes API" in line and "unreachable" in line and "kubectl config current-context" in line


def test_kubernetes_api_refuses_the_credentials(fake: FakeAPI) -> None:
    fake.healthy().require_token = TOKEN  # the client sends none: 401, as with an expired token
    line = _one_error(_preflight(fake))
    assert "401" in line and "refused the credentials" in line and "log in again" in line


def test_namespace_missing_is_an_error_unless_helm_creates_it(fake: FakeAPI) -> None:
    del fake.healthy().routes[f"/api/v1/namespaces/{NAMESPACE}"]
    line = _one_error(_preflight(fake, env=CREDENTIALS))
    assert f"namespace {NAMESPACE} does not exist" in line and "NAMESPACE" in line and "CREATE_NAMESPACE=1" in line
    created = _preflight(fake, env=CREDENTIALS, create_namespace=True)
    assert created.ok and any("helm will create it" in w for w in created.warnings)


def test_namespace_forbidden(fake: FakeAPI) -> None:
    fake.healthy().routes[f"/api/v1/namespaces/{NAMESPACE}"] = (403, _status(403, "Forbidden"), {})
    line = _one_error(_preflight(fake))
    assert "403" in line and "kubectl auth can-i" in line


@pytest.mark.parametrize("gpus", [None, 0])
def test_no_gpu_node_is_a_warning_not_a_failure(fake: FakeAPI, gpus: int | None) -> None:
    report = _preflight(fake.healthy(gpus=gpus))
    assert report.ok, report.errors
    (warning,) = report.warnings
    assert "no node advertises nvidia.com/gpu" in warning and "device plugin" in warning


def test_nodes_that_cannot_be_listed_are_a_warning(fake: FakeAPI) -> None:
    fake.healthy().routes["/api/v1/nodes"] = (403, _status(403, "Forbidden"), {})
    report = _preflight(fake)
    assert report.ok and len(report.warnings) == 1 and "GPU nodes not checked" in report.warnings[0]


def test_kfp_older_than_2_5_fails(fake: FakeAPI) -> None:
    line = _one_error(_preflight(fake.healthy(kfp="2.4.1")))
    assert "2.4.1" in line and "older than 2.5" in line and "upgrade Kubeflow Pipelines" in line


@pytest.mark.parametrize(("tag", "target"), [("2.5.0", "2.5"), ("2.14.0", "2.14"), ("v2.15.1", "2.14"), ("3.0.0-rc.1", "2.14")])
def test_kfp_versions_from_2_5_pass_and_choose_the_compile_target(fake: FakeAPI, tag: str, target: str) -> None:
    report = _preflight(fake.healthy(kfp=tag))
    assert report.ok and report.kfp_target == target
    relayed = any("compiled for KFP 2.5" in finding.message for finding in report.findings)
    assert relayed == (target == "2.5")


def test_kfp_version_unknown_is_a_warning(fake: FakeAPI) -> None:
    report = _preflight(fake.healthy(kfp="unknown"))
    assert report.ok and any("cannot check" in w for w in report.warnings)


def test_kfp_unreachable(fake: FakeAPI) -> None:
    line = _one_error(_preflight(fake.healthy(), kfp=_closed_port_url()))
    assert "KFP at" in line and "unreachable" in line and "port-forward svc/ml-pipeline-ui" in line


@pytest.mark.parametrize("answer", [
    (401, {"error": "Unauthorized"}, {}),
    (403, {"error": "Forbidden"}, {}),
    (302, "", {"Location": "/dex/auth?client_id=kubeflow"}),
], ids=["401", "403", "login-redirect"])
def test_kfp_asking_for_a_login_says_which_variables_to_set(fake: FakeAPI, answer: tuple) -> None:
    fake.healthy().routes["/apis/v2beta1/healthz"] = answer
    line = _one_error(_preflight(fake))
    assert "KFP_TOKEN" in line and "KFP_COOKIES" in line and str(answer[0]) in line


def test_kfp_credentials_come_from_the_environment_and_are_sent(fake: FakeAPI) -> None:
    fake.healthy()
    env = {**CREDENTIALS, "KFP_TOKEN": "kfp-token-5e1f", "KFP_COOKIES": "authservice_session=c00k1e"}
    assert _preflight(fake, env=env).ok
    (headers,) = [h for path, h in fake.requests if path == "/apis/v2beta1/healthz"]
    assert headers["Authorization"] == "Bearer kfp-token-5e1f" and headers["Cookie"] == "authservice_session=c00k1e"
    assert kfp_auth.client_arguments(env) == {"existing_token": "kfp-token-5e1f", "cookies": "authservice_session=c00k1e"}


def test_a_refused_kfp_token_says_so(fake: FakeAPI) -> None:
    fake.healthy().routes["/apis/v2beta1/healthz"] = (401, {"error": "Unauthorized"}, {})
    line = _one_error(_preflight(fake, env={"KFP_TOKEN": "stale"}))
    assert "refused KFP_TOKEN" in line and "stale" not in line


def test_not_a_kfp_api(fake: FakeAPI) -> None:
    fake.healthy().routes["/apis/v2beta1/healthz"] = (200, "<html>Sign in</html>", {})
    assert "not the KFP API" in _one_error(_preflight(fake))
    del fake.routes["/apis/v2beta1/healthz"]
    assert "no Kubeflow Pipelines API" in _one_error(_preflight(fake))


def test_multi_user_kfp_needs_a_profile_namespace(fake: FakeAPI) -> None:
    fake.healthy(multi_user=True)
    assert _preflight(fake).ok  # team-a, a profile namespace
    report = deploy.preflight(fake.url, "kubeflow", api=deploy.kube_api_client(host=fake.url), env=CREDENTIALS, create_namespace=True)
    assert any("profile" in e and "NAMESPACE" in e for e in report.errors)


def test_missing_credentials(fake: FakeAPI) -> None:
    report = _preflight(fake.healthy(secrets=False))
    assert len(report.errors) == 2, report.findings
    s3, postgres = report.errors
    assert "S3_ACCESS_KEY" in s3 and "Secret proxyhpo-minio" in s3 and "fix:" in s3
    assert "POSTGRES_PASSWORD" in postgres and "Secret proxyhpo-postgres" in postgres
    # given in the environment, or existing: both pass
    assert _preflight(fake, env=CREDENTIALS).ok
    assert _preflight(fake.healthy(secrets=True)).ok


def test_existing_secret_named_in_the_values(fake: FakeAPI) -> None:
    fake.healthy(secrets=False).routes[f"/api/v1/namespaces/{NAMESPACE}/secrets/team-s3"] = (200, {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "team-s3"}}, {})
    report = _preflight(fake, env={"POSTGRES_PASSWORD": "x"}, helm_values={"s3": {"existingSecret": "team-s3"}})
    assert report.ok, report.errors


def test_an_external_s3_needs_its_users_keys_not_minios_secret(fake: FakeAPI) -> None:
    external = {"minio": {"enabled": False}, "s3": {"endpoint": "https://s3.example.org"}}
    report = _preflight(fake.healthy(secrets=True), env={"POSTGRES_PASSWORD": "x"}, helm_values=external)
    (line,) = report.errors  # MinIO's root Secret exists, but an external S3 has none
    assert line.startswith("no s3 credentials for the external S3 https://s3.example.org: S3_ACCESS_KEY, S3_SECRET_KEY not set; fix: export")
    assert _preflight(fake, env=CREDENTIALS, helm_values=external).ok
    assert _preflight(fake, env={"POSTGRES_PASSWORD": "x"}, helm_values={**external, "s3": {**external["s3"], "pipelineUser": {"secretKey": "k" * 12}}}).ok


def test_credential_secrets_follow_the_release_name() -> None:
    assert deploy.credential_secret("s3", "proxyhpo") == "proxyhpo-minio"
    assert deploy.credential_secret("s3", "team") == "team-proxyhpo-minio"
    assert deploy.credential_secret("postgresql", "team") == "proxyhpo-postgres"
    assert deploy.credential_secret("s3", "team", {"s3": {"existingSecret": "root"}}) == "root"


def test_missing_tools(fake: FakeAPI) -> None:
    report = _preflight(fake.healthy(), tools={"helm": "no-such-helm-7f", "container engine": ""})
    assert len(report.errors) == 2 and "install docker or podman" in report.errors[1]


# --- the command line, through a kubeconfig ---------------------------------------------------------------------

def _kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
    }))
    return path


def _cli(fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, server: str | None = None, env: dict[str, str] | None = None) -> int:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kubeconfig", server or fake.url)))
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    tool = shutil.which("true") or shutil.which("sh")
    return main(["deploy", "--preflight", "--host", fake.url, "--namespace", NAMESPACE, "--helm", tool, "--engine", tool])


def test_cli_preflight_passes_with_the_kubeconfig_token(fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    fake.healthy().require_token = TOKEN
    assert _cli(fake, monkeypatch, tmp_path, env=CREDENTIALS) == 0
    out, err = capsys.readouterr()
    assert err == "" and "ok: KFP at" in out and f"namespace {NAMESPACE} exists" in out
    for secret in CREDENTIALS.values():
        assert secret not in out


def test_cli_preflight_failures_are_one_line_each_and_exit_2(fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    fake.healthy(kfp="2.3.0", gpus=None, secrets=False)
    assert _cli(fake, monkeypatch, tmp_path) == deploy.EXIT_PREFLIGHT == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("proxyhpo deploy: error: ")]
    warnings = [line for line in lines if line.startswith("proxyhpo deploy: warning: ")]
    assert len(errors) == 3 and len(warnings) == 1 and len(lines) == 4, lines
    assert all("fix: " in line for line in errors)


def test_cli_preflight_unreachable_cluster(fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.healthy()
    assert _cli(fake, monkeypatch, tmp_path, server=_closed_port_url(), env=CREDENTIALS) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("proxyhpo deploy: error: the Kubernetes API at http://127.0.0.1:") and "unreachable" in line


def test_cli_preflight_without_any_kubeconfig(fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.healthy()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    tool = shutil.which("true") or shutil.which("sh")
    assert main(["deploy", "--preflight", "--host", fake.url, "--namespace", NAMESPACE, "--helm", tool, "--engine", tool]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no Kubernetes configuration" in line and "KUBECONFIG" in line


# --- what the namespace already decides (multi-user profiles) -----------------------------------------------------

@pytest.mark.parametrize(("owner", "skipped"), [(None, True), ("other-release", True), ("proxyhpo", False)])
def test_an_existing_kfp_launcher_is_kept_and_the_chart_skips_its_own(fake: FakeAPI, owner: str | None, skipped: bool) -> None:
    report = _preflight(fake.healthy(multi_user=True).kfp_launcher(owner))
    assert report.ok, report.findings
    assert (report.chart_settings.get("kfpLauncher.enabled") == "false") == skipped
    assert any("has its own kfp-launcher (pipeline root: minio://mlpipeline/v2/artifacts)" in f.message for f in report.findings) == skipped


def test_no_kfp_launcher_leaves_the_chart_its_own(fake: FakeAPI) -> None:
    assert "kfpLauncher.enabled" not in _preflight(fake.healthy()).chart_settings


def test_restricted_pod_security_is_named_with_the_label_to_set(fake: FakeAPI) -> None:
    line = _one_error(_preflight(fake.healthy().namespace_labels({"pod-security.kubernetes.io/enforce": "restricted"})))
    assert "restricted" in line and f"kubectl label namespace {NAMESPACE} pod-security.kubernetes.io/enforce=baseline --overwrite" in line


def test_baseline_pod_security_passes(fake: FakeAPI) -> None:
    report = _preflight(fake.healthy().namespace_labels({"pod-security.kubernetes.io/enforce": "baseline"}))
    assert report.ok and any("Pod Security baseline" in f.message for f in report.findings)


def test_no_default_storage_class_chooses_the_only_one(fake: FakeAPI) -> None:
    report = _preflight(fake.healthy().storage_classes(("local-path", False)))
    assert report.ok, report.findings
    assert report.chart_settings == {"minio.persistence.storageClass": "local-path", "postgresql.persistence.storageClass": "local-path"}


def test_no_default_storage_class_among_several_names_the_values(fake: FakeAPI) -> None:
    line = _one_error(_preflight(fake.healthy().storage_classes(("gp2", False), ("gp3", False))))
    assert "no default StorageClass" in line and "minio.persistence.storageClass and postgresql.persistence.storageClass" in line and "gp2, gp3" in line


def test_a_storage_class_in_the_values_must_exist(fake: FakeAPI) -> None:
    values = {"minio": {"persistence": {"storageClass": "ssd"}}, "postgresql": {"persistence": {"enabled": False}}}
    line = _one_error(_preflight(fake.healthy(), helm_values=values))
    assert "minio.persistence.storageClass 'ssd' is no StorageClass" in line


def test_a_quota_without_gpus_left_fails_and_others_are_listed(fake: FakeAPI) -> None:
    line = _one_error(_preflight(fake.healthy().quota({"requests.nvidia.com/gpu": "2", "requests.cpu": "32"}, {"requests.nvidia.com/gpu": "2"})))
    assert "ResourceQuota profile-quota" in line and "leaves no GPU" in line and "requests.nvidia.com/gpu" in line
    fake.quota({"requests.nvidia.com/gpu": "4", "requests.cpu": "32"}, {"requests.nvidia.com/gpu": "1"})
    report = _preflight(fake)
    assert report.ok and any("ResourceQuota profile-quota: requests.cpu=32, requests.nvidia.com/gpu=4" in f.message for f in report.findings)
