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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _mlflow_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """Start ``mlflow server`` (SQLite backend, served artifacts) without waiting for it; stop it with SIGTERM."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_"))}
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
def mlflow_server(_mlflow_server_process: tuple[subprocess.Popen, str, Path]) -> str:
    """The URL of a real ``mlflow server`` on 127.0.0.1, once it answers ``/health``."""
    process, url, log_path = _mlflow_server_process
    _wait_for_health(process, url, log_path)
    return url


@pytest.fixture(scope="session", params=["sqlite", "server"])
def tracking_uri(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tracking URI of one backend: a SQLite store, or the server. Session-scoped so pytest runs every
    SQLite case first (one schema migration, while the server starts), then every server case; tests use
    their own experiment names."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('mlflow-sqlite') / 'mlflow.db'}"
    return request.getfixturevalue("mlflow_server")
