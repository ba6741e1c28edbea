"""tracking.connection: the client, the store's URI (credentials never shown) and its experiments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import new_experiment  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402


def test_ensure_experiment_is_idempotent(tracking_uri: str) -> None:
    name = new_experiment()
    first = tracking.ensure_experiment(name, tracking_uri)
    assert tracking.ensure_experiment(name, tracking_uri) == first
    assert tracking.ensure_experiment(name, tracking_uri) == first
    experiment = tracking.client(tracking_uri).get_experiment(first)
    assert experiment.name == name
    assert experiment.tags[names.STUDY_TAG] == name
    assert tracking.ensure_experiment(new_experiment(), tracking_uri) != first


def test_sqlite_artifacts_live_beside_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's default for a SQLite store is ./mlruns of the current directory, outside the embedded folder
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    store = tmp_path / "home" / "mlflow.db"
    run_id = tracking.start_parent_run(new_experiment(), "hpo", config={"name": "x"}, tracking_uri=f"sqlite:///{store}")
    artifact_uri = tracking.client(f"sqlite:///{store}").get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith((store.parent / "mlartifacts").as_uri())
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("http://user:secret@mlflow:5000/path", "http://mlflow:5000/path"),
        ("http://user:se/cr/et@mlflow:5000/path", "http://mlflow:5000/path"),
        ("https://token@mlflow.example.org", "https://mlflow.example.org"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_a_shown_uri_carries_no_credentials(uri: str, shown: str) -> None:
    assert tracking.shown_uri(uri) == shown


def test_an_unreachable_server_fails_in_one_line_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo.errors import ProxyHPOError

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(ProxyHPOError) as raised:
        tracking.check_reachable("http://someone:sentinel-secret-7f3a9c@127.0.0.1:9")  # nothing listens on the discard port
    message = str(raised.value)
    assert message.startswith("MLflow at http://127.0.0.1:9 does not answer") and "fix: start the tracking server" in message
    assert "sentinel-secret-7f3a9c" not in message and "someone" not in message and "\n" not in message


def test_a_sqlite_store_gets_its_folder(tmp_path: Path) -> None:
    store = tmp_path / "new" / "folder" / "mlflow.db"
    tracking.client(f"sqlite:///{store}")
    assert store.parent.is_dir()


@pytest.mark.parametrize(
    "text, shown",
    [
        ("API request to http://user:secret@mlflow:5000/api failed", "API request to http://mlflow:5000/api failed"),
        # an S3 secret key holds '/' (AWS's do): the whole password goes, not what precedes its first '/'
        ("to http://AKIAEXAMPLE:wJal/rXUtn/FEMI@s3.example.org:9000 refused", "to http://s3.example.org:9000 refused"),
        ("'https://token@mlflow.example.org/x'", "'https://mlflow.example.org/x'"),
        ("s3://bucket/key@v1 and http://mlflow:5000/api", "s3://bucket/key@v1 and http://mlflow:5000/api"),  # no userinfo: unchanged
    ],
)
def test_shown_text_carries_no_credentials(text: str, shown: str) -> None:
    from proxyhpo.errors import scrub_credentials

    assert scrub_credentials(text) == shown
