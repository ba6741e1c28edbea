"""tracking.orphans: a RUNNING run whose process has ended is closed FAILED; a live one, or one of another host, is left alone.

A killed ``proxyhpo train`` (SIGKILL) and the next start that closes its run are tested in tests/faults/test_signals.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.tracking import names


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_run_of_a_live_process_is_not_an_orphan(tmp_path: Path) -> None:
    """Only a run whose process has ended is closed: one tagged with this (live) process stays open."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment("live", uri)
    alive = client.create_run(experiment_id, tags=tracking.process_tags() | {names.TRIAL_ID_TAG: "t0"})
    dead_tags = tracking.process_tags() | {names.PID_TAG: "999999999"}
    dead = client.create_run(experiment_id, tags=dead_tags)
    other_host = client.create_run(experiment_id, tags=dead_tags | {names.HOST_TAG: "some-other-host"})
    parent = client.create_run(experiment_id, tags=tracking.process_tags())
    for run in (alive, dead, other_host):
        client.set_tag(run.info.run_id, names.PARENT_TAG, parent.info.run_id)
    closed = tracking.close_orphaned_runs("live", parent_run_id=parent.info.run_id, tracking_uri=uri)
    assert closed == [dead.info.run_id]
    assert client.get_run(dead.info.run_id).data.tags[names.FAIL_REASON_TAG] == names.ORPHANED_REASON
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(other_host.info.run_id).info.status == "RUNNING"  # cannot be told from here: left alone


def test_which_process_is_gone() -> None:
    here = tracking.process_tags()
    assert here[names.PID_TAG] == str(os.getpid())
    assert not tracking.process_gone(here)  # this process
    assert tracking.process_gone(here | {names.PID_TAG: str(_dead_pid())})
    assert not tracking.process_gone(here | {names.PID_TAG: str(_dead_pid()), names.HOST_TAG: "some-other-host"})
    assert not tracking.process_gone({})  # untagged: cannot be told


def test_a_reused_pid_is_another_process() -> None:
    """A live pid whose start time differs from the recorded one belongs to a later process: the run's own is gone."""
    pytest.importorskip("psutil")  # without it a start time cannot be read, and a live pid counts as alive
    parent_pid = os.getppid()
    recorded = tracking.process_tags() | {names.PID_TAG: str(parent_pid)}
    assert not tracking.process_gone(recorded | {names.PID_STARTED_TAG: "?"})  # no start time recorded: assume alive
    assert tracking.process_gone(recorded | {names.PID_STARTED_TAG: "1.00"})
