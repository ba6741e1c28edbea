"""tracking.identity: a run found again by its identity is reopened, never duplicated."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import metric_history, make_result, make_spec, new_experiment  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402


def test_a_retried_task_resumes_its_trial_runs_never_duplicates_them(tracking_uri: str) -> None:
    name = new_experiment()
    parent = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=tracking_uri)
    specs = [make_spec(f"r0-t00{i}") for i in range(2)]
    options = dict(parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False)
    # the first attempt is killed after one epoch (an evicted pod): its runs end FAILED
    with pytest.raises(RuntimeError, match="evicted"):
        with tracking.trial_runs(name, specs, **options) as first:
            first["r0-t000"].log_epoch(1, 0.30)
            raise RuntimeError("evicted")
    # the retry trains both trials again and finishes them
    with tracking.trial_runs(name, specs, **options) as second:
        for spec in specs:
            second[spec.trial_id].log_epoch(1, 0.31)
            second[spec.trial_id].log_epoch(2, 0.50)
            second[spec.trial_id].finish(make_result(spec, [0.31, 0.50]))
    assert {trial_id: run.run_id for trial_id, run in second.items()} == {trial_id: run.run_id for trial_id, run in first.items()}
    client = tracking.client(tracking_uri)
    experiment_id = tracking.ensure_experiment(name, tracking_uri)
    children = client.search_runs([experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent}'")
    assert sorted(run.info.run_name for run in children) == ["r0-t000", "r0-t001"]
    assert all(run.info.status == "FINISHED" and run.data.tags[names.ATTEMPT_TAG] == "2" for run in children)
    resumed = second["r0-t000"].run_id
    # one value per epoch: the killed attempt's epoch 1 is kept, the retry's is not logged twice
    assert metric_history(client, resumed, names.VAL_DICE) == [(1, 0.30), (2, 0.50)]


def test_a_retried_long_task_resumes_its_run_and_knows_the_steps_it_logged(tracking_uri: str) -> None:
    """A NAS search task retried after its pod was evicted: the same run, RUNNING again, its logged episodes known."""
    name = new_experiment()
    parent = tracking.start_parent_run(name, "nas", config={}, tracking_uri=tracking_uri)
    options = dict(parent_run_id=parent, role=names.ROLE_NAS_SEARCH, task_id="nas-proxy-fold0-task0", tracking_uri=tracking_uri)
    with pytest.raises(RuntimeError, match="evicted"):
        with tracking.task_run(name, tags={names.FOLD_KEY: "0", names.ARM_KEY: "proxy"}, params={"episodes": "0-1"}, **options) as (client, first, logged):
            assert logged == set()
            client.log_metric(first, names.REWARD_MEAN, 0.4, step=0)
            raise RuntimeError("evicted")
    assert client.get_run(first).info.status == "FAILED"
    with tracking.task_run(name, **options) as (client, second, logged):
        assert (second, logged) == (first, {0})
        assert client.get_run(second).info.status == "RUNNING"
        client.log_metric(second, names.REWARD_MEAN, 0.5, step=1)
        tracking.finish_run(second, tracking_uri=tracking_uri)
    run = client.get_run(first)
    assert (run.info.status, run.data.tags[names.ATTEMPT_TAG], run.data.tags[names.ARM_TAG], run.data.tags[names.FOLD_TAG]) == ("FINISHED", "2", "proxy", "0")
    assert (run.data.tags[names.TRIAL_ID_TAG], run.data.tags[names.ROLE_TAG], run.data.tags[names.PARENT_TAG]) == (options["task_id"], names.ROLE_NAS_SEARCH, parent)
    assert metric_history(client, first, names.REWARD_MEAN) == [(0, 0.4), (1, 0.5)]


def test_reopen_or_create_reopens_what_was_found_and_creates_only_otherwise(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment("reopen", uri)
    made: list[str] = []

    def create() -> str:
        made.append(client.create_run(experiment_id, tags=tracking.process_tags()).info.run_id)
        return made[-1]

    run_id, reopened = tracking.reopen_or_create(client, None, create)
    assert (reopened, made) == (False, [run_id])
    client.set_tag(run_id, names.FAIL_REASON_TAG, "terminated (SIGTERM)")
    client.set_tag(run_id, names.PID_TAG, "1")
    client.set_terminated(run_id, status="FAILED")

    again, reopened = tracking.reopen_or_create(client, client.get_run(run_id), create)
    assert (again, reopened, made) == (run_id, True, [run_id])  # nothing new created
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags[names.ATTEMPT_TAG], run.data.tags[names.PID_TAG]) == ("RUNNING", "2", str(os.getpid()))
    assert run.data.tags[names.FAIL_REASON_TAG] == "terminated (SIGTERM)"  # a trial's run keeps it until its end writes its state

    client.set_terminated(run_id, status="FAILED")
    tracking.reopen_or_create(client, client.get_run(run_id), create, clear_fail_reason=True)  # a study's parent run drops it
    run = client.get_run(run_id)
    assert (run.data.tags[names.ATTEMPT_TAG], names.FAIL_REASON_TAG in run.data.tags) == ("3", False)


def test_children_are_found_by_trial_id_and_role(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment("children", uri)
    parent = tracking.start_parent_run("children", "hpo", config={}, tracking_uri=uri)

    def child(trial_id: str | None, role: str) -> str:
        tags = {names.PARENT_TAG: parent, names.ROLE_TAG: role} | ({names.TRIAL_ID_TAG: trial_id} if trial_id else {})
        return client.create_run(experiment_id, tags=tags).info.run_id

    older, _, final, _ = child("t0", names.ROLE_TRIAL), child(None, names.ROLE_TRIAL), child("t0", names.ROLE_FINAL), child("t1", names.ROLE_TRIAL)
    newer = child("t0", names.ROLE_TRIAL)
    found = tracking.children_by_id(client, experiment_id, parent, names.ROLE_TRIAL)
    assert set(found) == {"t0", "t1"} and found["t0"].info.run_id == newer != older  # the newest, should there be several
    assert {run.info.run_id for run in tracking.children_by_id(client, experiment_id, parent, names.ROLE_FINAL).values()} == {final}
