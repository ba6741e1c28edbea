"""tracking.pending: what a trial could not log waits in a file, and is logged, then removed, once the server answers.

The same with a real ``mlflow server`` cut mid-training is tests/tracking/test_mlflow_down.py; on S3, tests/test_resume.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.tracking import names
from proxyhpo.tracking.pending import Pending


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch):
    """A client on a server that is not there, failing at once."""
    for key, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tracking.trials, "LOG_RETRY_DELAYS_S", ())
    return tracking.client("http://127.0.0.1:9")  # nothing listens on the discard port


def test_the_pending_file_lies_beside_the_results(tmp_path: Path) -> None:
    assert tracking.pending_path_for(tmp_path / "trial.results.json") == tmp_path / "trial.results.json.mlflow-pending.json"


def test_buffered_data_adds_up_per_run(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    assert not Pending(None).add("r1", tags={"a": "b"})  # nowhere to buffer
    pending = Pending(path)
    assert pending.add("r1", metrics=[(names.VAL_DICE, 0.25, 1000, 1)])
    pending.add("r1", metrics=[(names.VAL_DICE, 0.5, 2000, 2)], tags={names.STATE_TAG: names.STATE_COMPLETE}, status="FINISHED")
    pending.add("r2", tags={names.FAIL_REASON_TAG: "terminated (SIGTERM)"}, status="FAILED")
    document = json.loads(path.read_text())
    assert document["runs"]["r1"] == {
        "metrics": [[names.VAL_DICE, 0.25, 1000, 1], [names.VAL_DICE, 0.5, 2000, 2]], "tags": {names.STATE_TAG: names.STATE_COMPLETE}, "status": "FINISHED",
    }
    assert document["runs"]["r2"] == {"metrics": [], "tags": {names.FAIL_REASON_TAG: "terminated (SIGTERM)"}, "status": "FAILED"}


def test_an_offline_trial_is_logged_later_and_the_file_goes(tmp_path: Path, unreachable) -> None:
    from proxyhpo.config import HyperParameters, TrialResult, TrialSpec, TrialState

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = tracking.client(uri).create_run(tracking.ensure_experiment("pending", uri)).info.run_id
    pending = tracking.pending_path_for(tmp_path / "trial.results.json")
    trial = tracking.TrialRun(unreachable, run_id, system_metrics=False, pending=pending)
    trial.log_epoch(1, 0.25)
    assert trial.offline and pending.is_file()
    trial.log_epoch(2, 0.5)
    spec = TrialSpec(trial_id="t0", hyperparameters=HyperParameters(lr=1e-3))
    trial.finish(TrialResult.of(spec, TrialState.COMPLETE, epochs_run=2, val_epochs=[1, 2], val_dice=[0.25, 0.5], final_val_dice=0.5, gpu_hours=0.01))
    assert not tracking.flush_pending(pending, tracking_uri="http://127.0.0.1:9") and pending.is_file()  # still down: kept

    assert tracking.flush_pending(pending, tracking_uri=uri)
    assert not pending.exists()
    client = tracking.client(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[names.STATE_TAG] == names.STATE_COMPLETE
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, names.VAL_DICE)) == [(1, 0.25), (2, 0.5)]  # once each
    assert run.data.metrics[names.GPU_HOURS] == pytest.approx(0.01)


def test_a_pending_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pending.json"
    path.write_text('{"something": "else"}')
    with pytest.raises(ValueError, match="is not a pending MLflow file"):
        tracking.flush_pending(path)
