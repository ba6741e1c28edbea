"""MLflow unreachable: training goes on, results are kept, and what was not logged is logged once the server answers.

A real ``mlflow server`` behind a TCP forwarder that is cut mid-training and restored (tests/faults/tcp_proxy.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "faults"))  # --import-mode=importlib puts no test folder on sys.path

from tcp_proxy import TcpProxy  # noqa: E402
from train_helpers import TRAIN_TIMEOUT_S, start_train, train_env, wait_for_epoch, write_plan  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402

pytestmark = pytest.mark.timeout(420)


def test_training_survives_the_server_going_away_and_logs_later(mlflow_server: str, tmp_path: Path) -> None:
    host, port = mlflow_server.removeprefix("http://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.up()
    experiment = f"outage-{uuid.uuid4().hex[:8]}"
    epochs = 12  # enough to be still training when the server goes away (cut right after epoch 1); each epoch costs CPU
    plan = write_plan(tmp_path, epochs=epochs, trials=1)
    # no HTTP retries (a user's setting wins over proxyhpo's 2): each call to the gone server fails at once, the path is the same
    process = start_train(plan, proxy.url, experiment, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    try:
        wait_for_epoch(process, mlflow_server, experiment)
        proxy.down()
        _, stderr = process.communicate(timeout=TRAIN_TIMEOUT_S)
    finally:
        proxy.down()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    results = json.loads((tmp_path / "trial.results.json").read_text())["results"]
    assert len(results) == 1 and results[0]["epochs_run"] == epochs and len(results[0]["val_dice"]) == epochs
    pending = tracking.pending_path_for(tmp_path / "trial.results.json")
    assert pending.is_file(), stderr[-3000:]

    client = mlflow.MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "RUNNING"  # the server never heard the end
    proxy.up()
    try:
        assert tracking.flush_pending(pending, tracking_uri=proxy.url)
    finally:
        proxy.down()
    assert not pending.exists()
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.STATE_TAG] == names.STATE_COMPLETE or run.data.tags[names.STATE_TAG]
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, names.VAL_DICE))
    assert sorted(set(steps)) == list(range(1, epochs + 1))
    assert run.data.metrics[names.FINAL_VAL_DICE] == pytest.approx(results[0]["final_val_dice"])


def test_an_unreachable_server_at_the_start_fails_in_seconds(tmp_path: Path) -> None:
    proxy = TcpProxy(("127.0.0.1", 9))  # never up: nothing listens on its port
    plan = write_plan(tmp_path, epochs=2, trials=1)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "proxyhpo", "train", str(plan)], env=train_env(proxy.url, "nowhere"), capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("proxyhpo train: error: MLflow at http://127.0.0.1:") and "does not answer" in lines[-1], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "trial.results.json").exists()


def test_a_server_that_refuses_the_credentials_is_one_line_saying_how_to_give_them(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's server runs MLflow's basic-auth app, as the chart's does: no user (the command line), or a wrong
    password (the same check in this process), is a 401 told in one line."""
    from proxyhpo.errors import ProxyHPOError

    plan = write_plan(tmp_path, epochs=1, trials=1)
    env = {key: value for key, value in train_env(mlflow_server, "refused").items() if key not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    done = subprocess.run([sys.executable, "-m", "proxyhpo", "train", str(plan)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(f"proxyhpo train: error: the MLflow server at {mlflow_server} refused the request") and "MLFLOW_TRACKING_PASSWORD" in line, line

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    with pytest.raises(ProxyHPOError) as caught:
        tracking.check_reachable(mlflow_server)
    assert str(caught.value).startswith(f"the MLflow server at {mlflow_server} refused the request") and "not-the-password" not in str(caught.value)
