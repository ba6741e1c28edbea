"""After a fault, one MLflow run per trial, telling that trial's own story (issue 23).

MLflow data left pending by an outage is logged by the next ``proxyhpo train`` of the same plan without training
again (one FINISHED run per trial, not two); a trial trained again because its data changed (a new trial_key)
gets a clean run: the new key, its own per-epoch curve, not the old run's. Both tests share one SQLite store (its
creation costs seconds of CPU), each in its own experiment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import write_plan

from proxyhpo import tracking
from proxyhpo.config import HyperParameters, TrialResult, TrialResults, TrialSpec, TrialState
from proxyhpo.tracking import names
from proxyhpo.tracking.trials import TrialRun
from proxyhpo.training.study_trials import train_from_file


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"

def test_the_next_train_of_the_plan_logs_what_waited_and_trains_nothing(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "outage")
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    plan = write_plan(tmp_path, epochs=1, trials=1, size=16)
    (results,) = train_from_file(plan)
    client = tracking.client()
    experiment = client.get_experiment_by_name("outage").experiment_id
    (run,) = client.search_runs([experiment])
    # the outage: the server never heard the trial's end, which waits in the pending file beside the results
    client.update_run(run.info.run_id, status="RUNNING")
    pending = tracking.pending_path_for(results)
    for key, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tracking.trials, "LOG_RETRY_DELAYS_S", ())
    (result,) = TrialResults.read(results).results
    TrialRun(tracking.client("http://127.0.0.1:9"), run.info.run_id, system_metrics=False, pending=pending).finish(result)
    assert pending.is_file()
    written = results.stat().st_mtime_ns

    train_from_file(plan)  # the server is back

    runs = client.search_runs([experiment])
    assert [r.info.status for r in runs] == ["FINISHED"] and runs[0].info.run_id == run.info.run_id  # one run, the trial's own
    assert runs[0].data.metrics[names.FINAL_VAL_DICE] == pytest.approx(result.final_val_dice)
    assert not pending.exists() and results.stat().st_mtime_ns == written  # logged, not trained again



def _train(parent: str, key: str, dice: list[float]) -> None:
    spec = TrialSpec(trial_id="r0-t000", hyperparameters=HyperParameters(lr=0.01), seed=0, tags={"trial_key": key})
    with tracking.trial_runs("retrained", [spec], parent_run_id=parent, data="full", resolved_config={}, system_metrics=False) as runs:
        for epoch, value in enumerate(dice, start=1):
            runs[spec.trial_id].log_epoch(epoch, value)
        result = TrialResult.of(spec, TrialState.COMPLETE, final_val_dice=dice[-1], epochs_run=len(dice), val_epochs=list(range(1, len(dice) + 1)), val_dice=dice)
        runs[spec.trial_id].finish(result)


def test_a_trial_retrained_on_changed_data_has_a_clean_run(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = tracking.client()
    parent = client.create_run(tracking.ensure_experiment("retrained")).info.run_id
    _train(parent, "a" * 64, [0.1, 0.2, 0.3])
    _train(parent, "b" * 64, [0.5, 0.6])  # the same trial id, its data changed: trained again
    experiment = client.get_run(parent).info.experiment_id
    (run,) = client.search_runs([experiment], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent}'")
    assert run.data.tags[names.TRIAL_KEY_TAG] == "b" * 64
    history = sorted((point.step, point.value) for point in client.get_metric_history(run.info.run_id, names.VAL_DICE))
    assert history == [(1, 0.5), (2, 0.6)]
    assert run.info.status == "FINISHED"


def test_a_resumed_study_logs_what_waited_before_it_reuses_the_kept_results(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxyhpo import resume
    from proxyhpo.config import DataItem, StudyConfig, TrialPlan, parse_config
    from proxyhpo.training.study_trials import _run_logged

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    client = tracking.client()
    experiment = tracking.ensure_experiment("resumed")
    parent = client.create_run(experiment).info.run_id
    items = [DataItem(image=f"/d/i{i}.nii.gz", label=f"/d/l{i}.nii.gz") for i in range(3)]
    spec = TrialSpec(trial_id="r0-t000", hyperparameters=HyperParameters(lr=0.01), seed=0)
    plan = resume.with_trial_keys(TrialPlan(recipe="demo", train=items[:2], val=items[2:], epochs=1, trials=[spec]))
    (spec,) = plan.trials
    child = client.create_run(experiment, tags={names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL, names.TRIAL_ID_TAG: spec.trial_id, names.TRIAL_KEY_TAG: spec.tags["trial_key"]})
    result = TrialResult.of(spec, TrialState.COMPLETE, final_val_dice=0.4, epochs_run=1, val_epochs=[1], val_dice=[0.4])
    resume.keep_result(parent, result)
    # the outage: the trial's end waits in the pack's pending file; MLflow still has its run RUNNING
    results_out = tmp_path / "pack.json"
    pending = resume.pending_location(results_out, parent_run_id=parent, plan=plan, role=names.ROLE_TRIAL)
    for key, value in {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tracking.trials, "LOG_RETRY_DELAYS_S", ())
    TrialRun(tracking.client("http://127.0.0.1:9"), child.info.run_id, system_metrics=False, pending=pending).finish(result)

    study = parse_config(StudyConfig, {"name": "resumed", "data": {"dataset": "/d"}, "training": {"recipe": "demo"}}, "<test>")
    (reused,) = _run_logged(study, plan, parent_run_id=parent, data_label="full", role=names.ROLE_TRIAL, results_out=results_out)

    assert reused.final_val_dice == 0.4 and not Path(pending).exists()
    run = client.get_run(child.info.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics[names.FINAL_VAL_DICE] == pytest.approx(0.4)
