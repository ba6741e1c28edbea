"""proxyhpo.resume: trial identity, kept results (local and S3), and finding the parent run of a study started again.

The end-to-end scenario (a real `proxyhpo run` killed with SIGTERM and SIGKILL, then resumed) is
tests/pipelines/test_resume.py; these cases pin each rule on a real SQLite MLflow store in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from proxyhpo import resume, tracking
from proxyhpo.tracking import names
from proxyhpo.config import DataItem, HyperParameters, StudyConfig, TrialPlan, TrialResult, TrialSpec, TrialState
from proxyhpo.errors import ConfigError, ProxyHPOError


def _plan(**changes) -> TrialPlan:
    items = [DataItem(image=f"/d/i{i}.nii.gz", label=f"/d/l{i}.nii.gz") for i in range(3)]
    trials = [TrialSpec(trial_id="r0-t000", hyperparameters=HyperParameters(lr=0.01), seed=3, round=0, tags={"proposal_id": "0"})]
    document = {"recipe": "demo", "train": items[:2], "val": items[2:], "epochs": 2, "trials": trials} | changes
    return TrialPlan(**document)


def _study(**changes) -> StudyConfig:
    return StudyConfig.model_validate({"name": "resume-study", "data": {"dataset": "/data/spleen"}} | changes)


def test_a_trials_identity_is_what_it_trains() -> None:
    plan = _plan()
    spec = plan.trials[0]
    key = resume.trial_key(spec, plan)
    assert len(key) == 64 and key == resume.trial_key(spec, _plan())
    # what it learns from changes it ...
    assert key != resume.trial_key(spec.model_copy(update={"seed": 4}), plan)
    assert key != resume.trial_key(spec.model_copy(update={"hyperparameters": HyperParameters(lr=0.02)}), plan)
    assert key != resume.trial_key(spec, _plan(epochs=3))
    assert key != resume.trial_key(spec, _plan(val=[DataItem(image="/d/i9.nii.gz", label="/d/l9.nii.gz")]))
    # ... where and with whom it trains, and what it is called, do not
    assert key == resume.trial_key(spec, _plan(pack_size=4, device="cpu", save_model_dir="/m", checkpoint="/c.pt"))
    assert key == resume.trial_key(spec.model_copy(update={"trial_id": "arm-r0-t000", "round": 5, "tags": {}}), plan)
    keyed = resume.with_trial_keys(plan)
    assert keyed.trials[0].tags == {"proposal_id": "0", "trial_key": key}


@pytest.fixture(params=["local", "s3"])
def checkpoint_root(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    if request.param == "local":
        root = str(tmp_path / "checkpoints")
    else:
        root = f"s3://{request.getfixturevalue('s3_bucket')}/checkpoints"
    monkeypatch.setenv("PROXYHPO_CHECKPOINT_ROOT", root)
    return root


def test_finished_results_are_kept_by_identity(checkpoint_root: str) -> None:
    from proxyhpo import storage

    plan = resume.with_trial_keys(_plan())
    assert resume.finished_results("parent-1", plan) == {}
    result = TrialResult.of(plan.trials[0], TrialState.COMPLETE, final_val_dice=0.5, epochs_run=2)
    location = resume.keep_result("parent-1", result)
    assert location.startswith(f"{checkpoint_root}/parent-1/trials/r0-t000-")
    assert resume.finished_results("parent-1", plan) == {"r0-t000": result}
    assert resume.finished_results("parent-2", plan) == {}  # another study run keeps its own
    other = resume.with_trial_keys(_plan(epochs=3))  # same trial id, another identity
    assert resume.finished_results("parent-1", other) == {}
    storage.write_bytes(location, b"{not json")  # a damaged file: the trial trains again
    assert resume.finished_results("parent-1", plan) == {}
    with pytest.raises(ValueError, match="no trial_key"):
        resume.keep_result("parent-1", TrialResult.of(_plan().trials[0], TrialState.COMPLETE))


def test_pending_mlflow_data_lives_under_the_checkpoint_root_on_a_cluster(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan()
    results = tmp_path / "pack" / "results"
    monkeypatch.delenv("PROXYHPO_CHECKPOINT_ROOT", raising=False)
    assert resume.pending_location(results, parent_run_id="p", plan=plan, role="trial") == str(tracking.pending_path_for(results))
    monkeypatch.setenv("PROXYHPO_CHECKPOINT_ROOT", "s3://bucket/checkpoints/")
    location = resume.pending_location(results, parent_run_id="p", plan=plan, role="trial")
    assert location.startswith("s3://bucket/checkpoints/p/mlflow-pending/trial-") and location.endswith(".json")
    # a retried pack (another pod, another results path) finds the same file
    assert resume.pending_location(tmp_path / "other", parent_run_id="p", plan=plan, role="trial") == location


@pytest.mark.s3
def test_pending_mlflow_data_waits_in_s3_and_is_logged_later(s3_bucket: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo import storage

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = tracking.ensure_experiment("pending", uri)
    run_id = tracking.client(uri).create_run(experiment_id).info.run_id
    for key, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tracking.trials, "LOG_RETRY_DELAYS_S", ())
    unreachable = tracking.client("http://127.0.0.1:9")  # nothing listens on the discard port
    pending = f"s3://{s3_bucket}/checkpoints/parent/mlflow-pending/trial-abc.json"
    trial_run = tracking.TrialRun(unreachable, run_id, system_metrics=False, pending=pending)
    trial_run.log_epoch(1, 0.25)
    trial_run.log_epoch(2, 0.5)
    assert trial_run.offline and storage.exists(pending)
    assert tracking.flush_pending(pending, tracking_uri=uri)
    assert not storage.exists(pending)
    history = tracking.client(uri).get_metric_history(run_id, names.VAL_DICE)
    assert sorted((m.step, m.value) for m in history) == [(1, 0.25), (2, 0.5)]


def test_a_new_study_gets_a_new_parent_run(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, resumed = resume.open_parent_run(_study(), "hpo", tracking_uri=uri)
    assert not resumed
    tags = tracking.client(uri).get_run(run_id).data.tags
    assert tags[resume.CONFIG_HASH_TAG] == resume.config_sha256(_study())
    assert tags[tracking.PID_TAG] == str(os.getpid())  # the launcher's: a later start tells whether it is alive


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_an_unfinished_study_is_reopened_and_a_finished_one_is_not(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    run_id, _ = resume.open_parent_run(_study(), "hpo", tracking_uri=uri)
    with pytest.raises(ProxyHPOError, match="is running already .* run the same command again to resume"):
        resume.open_parent_run(_study(), "hpo", tracking_uri=uri)  # its launcher (this process) is alive
    client.set_tag(run_id, tracking.PID_TAG, str(_dead_pid()))  # its launcher was killed (SIGKILL)
    orphan = client.create_run(client.get_run(run_id).info.experiment_id, tags={tracking.PARENT_TAG: run_id} | tracking.process_tags())
    client.set_tag(orphan.info.run_id, tracking.PID_TAG, str(_dead_pid()))
    again, resumed = resume.open_parent_run(_study(), "hpo", tracking_uri=uri)
    assert (again, resumed) == (run_id, True)
    parent = client.get_run(run_id)
    assert parent.info.status == "RUNNING" and parent.data.tags[tracking.ATTEMPT_TAG] == "2"
    assert parent.data.tags[tracking.PID_TAG] == str(os.getpid())
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"  # its dead child closed

    client.set_terminated(run_id, status="FAILED")  # stopped with Ctrl-C: reopened too
    client.set_tag(run_id, tracking.FAIL_REASON_TAG, "interrupted (SIGINT)")
    assert resume.open_parent_run(_study(), "hpo", tracking_uri=uri) == (run_id, True)
    assert tracking.FAIL_REASON_TAG not in client.get_run(run_id).data.tags
    assert resume.open_parent_run(_study(), "trust", tracking_uri=uri)[1] is False  # another pipeline of the study
    client.set_terminated(run_id, status="FINISHED")
    fresh_id, resumed = resume.open_parent_run(_study(), "hpo", tracking_uri=uri)
    assert not resumed and fresh_id != run_id  # a finished study run again is a new run
    client.set_terminated(fresh_id, status="FAILED")
    other, resumed = resume.open_parent_run(_study(search={"rounds": 7}), "hpo", tracking_uri=uri)
    assert not resumed and other not in (run_id, fresh_id)  # another config is another study


def test_fresh_closes_the_unfinished_run_and_starts_a_new_one(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    old, _ = resume.open_parent_run(_study(), "hpo", tracking_uri=uri)
    client.set_tag(old, tracking.PID_TAG, str(_dead_pid()))
    new, resumed = resume.open_parent_run(_study(), "hpo", fresh=True, tracking_uri=uri)
    assert not resumed and new != old
    closed = client.get_run(old)
    assert closed.info.status == "FAILED" and closed.data.tags[tracking.FAIL_REASON_TAG] == resume.SUPERSEDED_REASON


def test_the_first_task_adopts_only_its_studys_run(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id, _ = resume.open_parent_run(_study(), "hpo", tracking_uri=uri)
    assert resume.adopt_parent_run(_study(), run_id, pipeline_run="kfp-1", tracking_uri=uri) == run_id
    assert tracking.client(uri).get_run(run_id).data.tags[tracking.KFP_RUN_TAG] == "kfp-1"
    for study, given in ((_study(search={"rounds": 7}), run_id), (_study(), "no-such-run")):
        with pytest.raises(ConfigError, match=f"{resume.PARENT_ENV}: names run .* fix: unset {resume.PARENT_ENV}"):
            resume.adopt_parent_run(study, given, pipeline_run="kfp-1", tracking_uri=uri)


def test_the_search_spaces_order_is_part_of_the_config() -> None:
    """The controller emits its decisions in the search space's order: another order proposes other trials."""
    space = {"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}, "optimizer": {"type": "categorical", "choices": ["adam", "rmsprop"]}}
    reordered = dict(reversed(list(space.items())))
    assert resume.config_sha256(_study(search={"space": space})) != resume.config_sha256(_study(search={"space": reordered}))
