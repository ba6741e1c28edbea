"""MLflow 3 refuses Host headers it does not know (DNS-rebinding guard): the chart's list must admit the
address the pipelines use. Checked with MLflow's own host check, on the chart's rendered values."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest
from mlflow.server import fastapi_security, security_utils

CREDS: dict[str, Any] = {"s3": {"accessKey": "team-user", "secretKey": "s3-secret-9f2c7d"},
                         "postgresql": {"auth": {"password": "pg-secret-41ab0e"}}}


def _server_allowed_hosts(rendered: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The allowed hosts the MLflow server computes from the Deployment's environment."""
    container = rendered.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    monkeypatch.setenv("MLFLOW_SERVER_ALLOWED_HOSTS", env["MLFLOW_SERVER_ALLOWED_HOSTS"])
    return fastapi_security.get_allowed_hosts()


@pytest.mark.parametrize("extra_hosts", [[], ["mlflow.imaging.example.org"]])
def test_tracking_uri_host_is_admitted(render: Any, monkeypatch: pytest.MonkeyPatch, extra_hosts: list[str]) -> None:
    rendered = render({**CREDS, "mlflow": {"allowedHosts": extra_hosts}})
    allowed = _server_allowed_hosts(rendered, monkeypatch)
    uri = urlparse(rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]["MLFLOW_TRACKING_URI"])
    namespace = rendered.kind("Service")["proxyhpo-mlflow"]["metadata"]["namespace"]
    # What an HTTP client sends as Host for each way of naming the service, and for port-forwarding.
    for host in (uri.netloc, "proxyhpo-mlflow:5000", f"proxyhpo-mlflow.{namespace}:5000",
                 f"proxyhpo-mlflow.{namespace}.svc:5000", "localhost:5000", "127.0.0.1:5000", *extra_hosts):
        assert security_utils.is_allowed_host_header(allowed, host), host
    for host in ("evil.example.com", "evil.example.com:5000", "proxyhpo-mlflow.other-namespace:5000"):
        assert not security_utils.is_allowed_host_header(allowed, host), host


def test_probes_are_exempt_from_the_host_check(render: Any) -> None:
    container = render(CREDS).kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert security_utils.is_health_endpoint(container[probe]["httpGet"]["path"]), probe
