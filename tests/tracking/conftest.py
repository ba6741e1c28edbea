"""Tracking backends every MLflow contract test runs against: a SQLite store and a real ``mlflow server``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_START_TIMEOUT_S = 150


#: The session server's admin (MLflow's basic-auth app creates it at its first start).
SERVER_USER = ("proxyhpo-test", "test-password-4f2c9a81")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _mlflow_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """Start ``mlflow server`` (SQLite backend, served artifacts, MLflow's basic-auth app as the chart runs it) without
    waiting for it; stop it with SIGTERM. Its admin's name and password are :data:`SERVER_USER`."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    (root / "basic_auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\nauth_cache_ttl_seconds = 60\n"
    )
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--app-name", "basic-auth",
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_"))}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(root / "basic_auth.ini"), MLFLOW_AUTH_ADMIN_USERNAME=SERVER_USER[0], MLFLOW_AUTH_ADMIN_PASSWORD=SERVER_USER[1],
               MLFLOW_FLASK_SERVER_SECRET_KEY="test-flask-secret-key")
    # the server's job runner starts seven huey consumers we never use; on two cores they slow everything
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session", autouse=True)
def _start_mlflow_server_early(_mlflow_server_process: tuple[subprocess.Popen, str, Path]) -> None:
    """The server takes half a minute to start: let it start while the SQLite cases run."""


def _wait_for_health(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not answer /health within {SERVER_START_TIMEOUT_S} s: {log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def mlflow_server(_mlflow_server_process: tuple[subprocess.Popen, str, Path]) -> Iterator[str]:
    """The URL of a real ``mlflow server`` on 127.0.0.1, once it answers ``/health``; this worker's MLflow clients
    (and the processes it starts) authenticate as :data:`SERVER_USER` through MLflow's own variables."""
    process, url, log_path = _mlflow_server_process
    _wait_for_health(process, url, log_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", SERVER_USER[0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", SERVER_USER[1])
        yield url


@pytest.fixture(scope="session", params=["sqlite", "server"])
def tracking_uri(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tracking URI of one backend: a SQLite store, or the server. Session-scoped so pytest runs every
    SQLite case first (one schema migration, while the server starts), then every server case; tests use
    their own experiment names."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('mlflow-sqlite') / 'mlflow.db'}"
    return request.getfixturevalue("mlflow_server")
