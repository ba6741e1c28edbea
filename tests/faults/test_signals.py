"""SIGTERM and SIGKILL during `proxyhpo train`: no MLflow run stays RUNNING (real SQLite store, real subprocess)."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import mlflow
import pytest
from train_helpers import TRAIN_TIMEOUT_S, start_train, wait_for_epoch, write_plan

from proxyhpo.tracking import names

pytestmark = pytest.mark.timeout(120)


def _runs(uri: str, experiment: str) -> list:
    client = mlflow.MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_sigterm_marks_the_runs_failed_and_exits_143(tmp_path: Path) -> None:
    uri, experiment = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sigterm-{uuid.uuid4().hex[:8]}"
    plan = write_plan(tmp_path, epochs=200)
    process = start_train(plan, uri, experiment)
    wait_for_epoch(process, uri, experiment)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TRAIN_TIMEOUT_S)
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "terminated (SIGTERM)" in stderr
    runs = _runs(uri, experiment)
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FAILED"
        assert run.data.tags[names.FAIL_REASON_TAG] == "terminated (SIGTERM)"
    assert not (tmp_path / "trial.results.json").exists()  # nothing half-written


def test_after_sigkill_the_next_start_closes_the_orphans(tmp_path: Path) -> None:
    uri, experiment = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sigkill-{uuid.uuid4().hex[:8]}"
    plan = write_plan(tmp_path, epochs=12, trials=1)  # long enough to be killed mid-training (seconds left after epoch 1), short to rerun
    process = start_train(plan, uri, experiment)
    wait_for_epoch(process, uri, experiment)
    process.kill()
    process.communicate(timeout=30)
    (orphan,) = _runs(uri, experiment)
    assert orphan.info.status == "RUNNING"  # SIGKILL cannot be caught: the next start must close it

    again = start_train(plan, uri, experiment)
    _, stderr = again.communicate(timeout=TRAIN_TIMEOUT_S)
    assert again.returncode == 0, stderr
    runs = {run.info.run_id: run for run in _runs(uri, experiment)}
    assert len(runs) == 2
    closed = runs.pop(orphan.info.run_id)
    assert closed.info.status == "FAILED"
    assert closed.data.tags[names.FAIL_REASON_TAG] == names.ORPHANED_REASON
    (finished,) = runs.values()
    assert finished.info.status == "FINISHED"
    assert finished.data.tags[names.PLAN_HASH_TAG] == closed.data.tags[names.PLAN_HASH_TAG]
    assert (tmp_path / "trial.results.json").is_file()


def test_trials_end_when_their_launcher_is_killed(tmp_path: Path) -> None:
    """`proxyhpo run --local` names itself to its tasks; SIGKILLed, it cannot stop them: its training tasks end themselves."""
    import os
    import subprocess
    import sys

    from proxyhpo.signals import LAUNCHER_ENV, launcher_identity

    uri, experiment = f"sqlite:///{tmp_path / 'mlflow.db'}", f"launcher-{uuid.uuid4().hex[:8]}"
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stands in for the launcher
    try:
        os.environ[LAUNCHER_ENV] = launcher_identity(launcher.pid)
        process = start_train(write_plan(tmp_path, epochs=200), uri, experiment)
    finally:
        os.environ.pop(LAUNCHER_ENV, None)
    try:
        wait_for_epoch(process, uri, experiment)
        launcher.kill()
        launcher.wait()
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "the launcher (process" in stderr and "Traceback" not in stderr
    runs = _runs(uri, experiment)
    assert runs and {run.info.status for run in runs} == {"FAILED"}
    assert {run.data.tags[names.FAIL_REASON_TAG] for run in runs} == {"terminated (SIGTERM)"}


def test_a_sigterm_inside_a_store_write_waits_for_its_end() -> None:
    """A SIGTERM during an MLflow write is raised when the write ends, never in the middle of it: cut inside a SQLite
    transaction, it left the database locked, and closing the runs then waited past the grace period."""
    import os
    import threading

    from proxyhpo.signals import Terminated, sigterm_ends_trials, termination_deferred

    assert threading.current_thread() is threading.main_thread()  # Python delivers signals to the main thread only
    steps: list[str] = []
    with pytest.raises(Terminated), sigterm_ends_trials():
        with termination_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("the write went on")  # not cut here
            with termination_deferred():  # nested: only the outermost block's end raises
                steps.append("an inner write")
            steps.append("the outer write ended")
        steps.append("after the write")  # never reached
    assert steps == ["the write went on", "an inner write", "the outer write ended"]

    with pytest.raises(Terminated), sigterm_ends_trials():  # outside a write, SIGTERM raises at once
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("never")
    assert steps[-1] == "the outer write ended"
