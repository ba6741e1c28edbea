"""tracking.trials: one child run per trial, its tags, params and metrics, against a SQLite store and a real ``mlflow server``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import all_artifacts, metric_history, make_result, make_spec, new_experiment  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402

SECRET = "sentinel-secret-7f3a9c"


def test_trial_runs_are_tagged_children_with_params(tracking_uri: str, tmp_path: Path) -> None:
    name = new_experiment()
    parent = tracking.start_parent_run(name, "hpo", config={"name": name}, tracking_uri=tracking_uri)
    specs = [make_spec("r0-p0", lr=3e-4, optimizer="rmsprop", shift=0.75, round=0), make_spec("r1-p0", lr=2e-3, optimizer="novograd", shift=0.0, round=1)]
    resolved = {"study": {"name": name}}
    with tracking.trial_runs(
        name, specs, parent_run_id=parent, data="mi-4", resolved_config=resolved, tracking_uri=tracking_uri, system_metrics=False
    ) as runs:
        assert set(runs) == {"r0-p0", "r1-p0"}
        for spec in specs:
            runs[spec.trial_id].finish(make_result(spec, [0.3, 0.4]))
    client = tracking.client(tracking_uri)
    for spec in specs:
        run = client.get_run(runs[spec.trial_id].run_id)
        assert run.info.run_name == spec.trial_id
        assert run.info.experiment_id == tracking.ensure_experiment(name, tracking_uri)
        assert run.data.tags[names.PARENT_TAG] == parent
        assert run.data.tags[names.ROLE_TAG] == names.ROLE_TRIAL
        assert run.data.tags[names.ROUND_TAG] == str(spec.round)
        assert run.data.tags[names.TRIAL_ID_TAG] == spec.trial_id
        params = run.data.params
        assert float(params["lr"]) == spec.hyperparameters.lr
        assert params["optimizer"] == spec.hyperparameters.optimizer
        assert float(params["intensity_shift_prob"]) == spec.hyperparameters.intensity_shift_prob
        assert float(params["weight_decay"]) == spec.hyperparameters.weight_decay  # no names given: every hyper-parameter
        assert params[names.NETWORK_PARAM] == "proxy-L3"
        assert params[names.DATA_PARAM] == "mi-4"
        saved = json.loads(Path(client.download_artifacts(run.info.run_id, names.TRIAL_CONFIG_ARTIFACT, str(tmp_path / spec.trial_id))).read_text())
        assert saved["study"] == {"name": name}
        assert saved["trial"]["trial_id"] == spec.trial_id
    # the parent's children are found the way the report finds them
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent}'")
    assert {r.info.run_name for r in children} == {"r0-p0", "r1-p0"}


def test_trial_runs_log_exactly_the_searched_hyperparameters(tracking_uri: str) -> None:
    name = new_experiment()
    spec = make_spec("r0-p0", lr=2e-4, optimizer="adamax", shift=0.5)
    with tracking.trial_runs(
        name, [spec], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False,
        hyperparameter_names=["lr", "weight_decay"],
    ) as runs:
        runs["r0-p0"].finish(make_result(spec, [0.5]))
    params = tracking.client(tracking_uri).get_run(runs["r0-p0"].run_id).data.params
    assert set(params) == {"lr", names.LOG10_LR_PARAM, "weight_decay", names.NETWORK_PARAM, names.DATA_PARAM, names.SEED_PARAM}
    assert (float(params["lr"]), float(params["weight_decay"])) == (2e-4, 0.0)


def test_trial_without_round_or_parent_and_final_role(tracking_uri: str) -> None:
    name = new_experiment()
    spec = make_spec("final", round=None)
    with tracking.trial_runs(name, [spec], parent_run_id=None, data="full", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False, role=names.ROLE_FINAL) as runs:
        runs["final"].finish(make_result(spec, [0.8]))
    tags = tracking.client(tracking_uri).get_run(runs["final"].run_id).data.tags
    assert tags[names.ROLE_TAG] == names.ROLE_FINAL
    assert names.ROUND_TAG not in tags
    assert names.PARENT_TAG not in tags


def test_val_dice_steps_and_cost_metrics(tracking_uri: str) -> None:
    name = new_experiment()
    spec = make_spec("r0-p1")
    dice = [0.21, 0.47, 0.44, 0.58]
    with tracking.trial_runs(name, [spec], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False) as runs:
        run = runs[spec.trial_id]
        run.log_epoch(1, dice[0])  # logged live, as the trainer does
        run.log_epoch(2, dice[1])
        run.finish(make_result(spec, dice, gpu_hours=0.0125, process_hours=0.03, wall=45.5))
    client = tracking.client(tracking_uri)
    history = metric_history(client, run.run_id, names.VAL_DICE)
    assert [step for step, _ in history] == [1, 2, 3, 4]  # epochs logged live are not logged twice
    assert [value for _, value in history] == pytest.approx(dice)
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"
    metrics = finished.data.metrics
    assert metrics[names.VAL_DICE] == pytest.approx(dice[-1])  # the latest step is the final Dice
    assert metrics[names.FINAL_VAL_DICE] == pytest.approx(dice[-1])
    assert metrics[names.BEST_VAL_DICE] == pytest.approx(max(dice))
    assert metrics[names.GPU_HOURS] == pytest.approx(0.0125)
    assert metrics[names.PROCESS_HOURS] == pytest.approx(0.03)
    assert "cpu_hours" not in metrics
    assert metrics[names.WALL_SECONDS] == pytest.approx(45.5)
    assert metrics[names.EPOCHS_RUN] == 4
    assert finished.data.tags[names.STATE_TAG] == names.STATE_COMPLETE
    assert names.FAIL_REASON_TAG not in finished.data.tags


def test_failed_trial_gives_failed_run_with_reason(tracking_uri: str) -> None:
    name = new_experiment()
    good, bad = make_spec("r0-p0"), make_spec("r0-p1", lr=0.5)
    reason = "loss became NaN at step 3"
    with tracking.trial_runs(name, [good, bad], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False) as runs:
        runs["r0-p0"].finish(make_result(good, [0.5]))
        runs["r0-p1"].finish(make_result(bad, [], fail=reason, gpu_hours=0.001))
    client = tracking.client(tracking_uri)
    failed = client.get_run(runs["r0-p1"].run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[names.FAIL_REASON_TAG] == reason
    assert failed.data.tags[names.STATE_TAG] == names.STATE_FAILED
    assert names.VAL_DICE not in failed.data.metrics
    assert failed.data.metrics[names.GPU_HOURS] == pytest.approx(0.001)  # a failed trial still cost GPU time
    assert client.get_run(runs["r0-p0"].run_id).info.status == "FINISHED"


def test_exception_in_block_leaves_no_run_running(tracking_uri: str) -> None:
    name = new_experiment()
    specs = [make_spec(f"r0-p{i}") for i in range(3)]
    with pytest.raises(RuntimeError, match="pod evicted"):
        with tracking.trial_runs(name, specs, parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False) as runs:
            runs["r0-p0"].finish(make_result(specs[0], [0.6]))
            runs["r0-p1"].log_epoch(1, 0.2)
            raise RuntimeError("pod evicted")
    client = tracking.client(tracking_uri)
    statuses = {trial_id: client.get_run(run.run_id).info.status for trial_id, run in runs.items()}
    assert statuses == {"r0-p0": "FINISHED", "r0-p1": "FAILED", "r0-p2": "FAILED"}
    experiment_id = tracking.ensure_experiment(name, tracking_uri)
    assert client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'") == []


def test_no_secret_reaches_mlflow(tracking_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "proxyhpo-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("PROXYHPO_S3_ENDPOINT", "http://127.0.0.1:9")
    name = new_experiment()
    config = {"name": name, "data": {"dataset": "s3://bucket/spleen"}}
    parent = tracking.start_parent_run(name, "hpo", config=config, tracking_uri=tracking_uri)
    spec = make_spec("r0-p0")
    with tracking.trial_runs(name, [spec], parent_run_id=parent, data="mi-4", resolved_config=config, tracking_uri=tracking_uri, system_metrics=False) as runs:
        runs["r0-p0"].log_epoch(1, 0.3)
        runs["r0-p0"].finish(make_result(spec, [0.3, 0.5]))
    tracking.finish_run(parent, tracking_uri=tracking_uri)
    client = tracking.client(tracking_uri)
    checked = 0
    for run_id in (parent, runs["r0-p0"].run_id):
        run = client.get_run(run_id)
        for key, value in {**run.data.params, **run.data.tags}.items():
            assert SECRET not in key and SECRET not in value, key
        files = all_artifacts(client, run_id)
        assert files  # study.json / trial_config.json at least
        for artifact in files:
            local = Path(client.download_artifacts(run_id, artifact, str(tmp_path / run_id)))
            assert SECRET.encode() not in local.read_bytes(), artifact
            checked += 1
    assert checked >= 2


def _until_system_metrics(runs: Callable[[], list], timeout: float = 30.0) -> None:
    """Wait until one of ``runs()`` holds a system metric: MLflow's monitor logs its first samples after an interval."""
    deadline = time.monotonic() + timeout
    while not any(key.startswith("system/") for run in runs() for key in run.data.metrics):
        assert time.monotonic() < deadline, "no system metric logged"
        time.sleep(0.2)


def test_system_metrics_on_trial_runs(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking.trials, "SYSTEM_METRICS_INTERVAL_S", 1)
    name = new_experiment()
    spec = make_spec("r0-p0")
    with tracking.trial_runs(name, [spec], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=True) as runs:
        _until_system_metrics(lambda: [tracking.client(tracking_uri).get_run(runs["r0-p0"].run_id)])
        runs["r0-p0"].finish(make_result(spec, [0.4]))
    metrics = tracking.client(tracking_uri).get_run(runs["r0-p0"].run_id).data.metrics
    system = [key for key in metrics if key.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system, sorted(metrics)
    assert any("memory" in key for key in system)


def test_a_packs_system_metrics_go_to_the_packs_run_not_its_trials(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22: the trials of a pack share the process, so its CPU and memory are the pack's run's, tagged with its trials."""
    monkeypatch.setattr(tracking.trials, "SYSTEM_METRICS_INTERVAL_S", 1)
    name = new_experiment()
    parent = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=tracking_uri)
    specs = [make_spec("r0-t000"), make_spec("r0-t001")]
    mlflow_client = tracking.client(tracking_uri)
    experiment_id = mlflow_client.get_run(parent).info.experiment_id
    with tracking.trial_runs(name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=True) as runs:
        _until_system_metrics(lambda: mlflow_client.search_runs([experiment_id], filter_string=f"tags.`{names.ROLE_TAG}` = '{names.ROLE_PACK}'"))
        for spec in specs:
            runs[spec.trial_id].finish(make_result(spec, [0.4]))
    for spec in specs:
        assert not [key for key in mlflow_client.get_run(runs[spec.trial_id].run_id).data.metrics if key.startswith("system/")]
    children = mlflow_client.search_runs([mlflow_client.get_run(parent).info.experiment_id], filter_string=f"tags.`{names.ROLE_TAG}` = '{names.ROLE_PACK}'")
    (pack,) = [run for run in children if run.data.tags[names.PARENT_TAG] == parent]
    assert pack.info.status == "FINISHED" and pack.data.tags[names.PACK_TRIALS_TAG] == "r0-t000,r0-t001"
    assert "system/cpu_utilization_percentage" in pack.data.metrics, sorted(pack.data.metrics)


def test_every_tag_a_trial_run_carries_is_declared_in_names(tracking_uri: str) -> None:
    """A writer that invents a tag (or a metric, or a param outside the search space) shows up here, not in a report."""
    declared_tags = {value for key, value in vars(names).items() if key.endswith("_TAG") and isinstance(value, str)}
    declared_metrics = {value for key, value in vars(names).items() if key.isupper() and isinstance(value, str) and not key.endswith(("_TAG", "_KEY", "_PARAM"))}
    name = new_experiment()
    parent = tracking.start_parent_run(name, "proxy-data-study", config={}, tracking_uri=tracking_uri)
    spec = make_spec("r0-p0").model_copy(update={"tags": {names.STUDY_KEY: "proxy-data-study", names.ARM_KEY: "mi-4", names.REPEAT_KEY: "0", names.POINT_KEY: "p0"}})
    with tracking.trial_runs(name, [spec], parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False,
                             hyperparameter_names=["lr"]) as runs:
        runs["r0-p0"].log_epoch(1, 0.3)
        runs["r0-p0"].finish(make_result(spec, [0.3]).model_copy(update={"stopped_at_epoch": 1, "test_dice": 0.2}))
    run = tracking.client(tracking_uri).get_run(runs["r0-p0"].run_id)
    ours = {key for key in run.data.tags if not key.startswith("mlflow.") or key == names.PARENT_TAG}
    assert ours <= declared_tags, ours - declared_tags
    assert {names.ARM_TAG, names.REPEAT_TAG, names.POINT_TAG, names.STUDY_TAG, names.STOPPED_TAG, names.STATE_TAG} <= ours
    assert set(run.data.metrics) <= declared_metrics, set(run.data.metrics) - declared_metrics
    assert set(run.data.params) == {"lr", names.LOG10_LR_PARAM, names.NETWORK_PARAM, names.DATA_PARAM, names.SEED_PARAM}


def test_a_stopped_trial_is_finished_and_a_resumed_one_loses_its_interruption(tmp_path: Path) -> None:
    """Issue 22: early stopping is no failure (FINISHED, state STOPPED, its Dice at the stop, no final Dice); a trial
    interrupted by Ctrl-C and finished by the study's next start keeps no fail reason; lr's log10 is a param too;
    the runs of a pack of several sample no system metrics (the machine's, not one trial's)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = new_experiment()
    parent = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    specs = [make_spec("r0-p0", lr=1e-3), make_spec("r0-p1", lr=3e-4)]
    options = dict(parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, hyperparameter_names=["lr"])
    with pytest.raises(KeyboardInterrupt), tracking.trial_runs(name, specs, **options) as runs:
        assert all(run._monitor is None for run in runs.values())  # two trials share the process
        raise KeyboardInterrupt
    client = tracking.client(uri)
    interrupted = client.get_run(runs["r0-p0"].run_id)
    assert interrupted.info.status == "FAILED" and interrupted.data.tags[names.FAIL_REASON_TAG] == "interrupted (SIGINT)"

    with tracking.trial_runs(name, specs, **options | {"system_metrics": False}) as again:
        again["r0-p0"].finish(make_result(specs[0], [0.3, 0.4]))
        stopped = make_result(specs[1], [0.2]).model_copy(update={"state": "STOPPED", "stopped_at_epoch": 1})
        again["r0-p1"].finish(stopped)
    finished, early = (client.get_run(again[spec.trial_id].run_id) for spec in specs)
    assert finished.info.run_id == interrupted.info.run_id  # the same run, reopened
    assert finished.info.status == "FINISHED" and names.FAIL_REASON_TAG not in finished.data.tags
    assert finished.data.metrics[names.FINAL_VAL_DICE] == pytest.approx(0.4) and names.DICE_AT_STOP not in finished.data.metrics
    assert finished.data.params[names.LOG10_LR_PARAM] == "-3.0000"
    assert early.info.status == "FINISHED" and names.FAIL_REASON_TAG not in early.data.tags
    assert early.data.tags[names.STATE_TAG] == names.STATE_STOPPED and early.data.tags[names.STOPPED_TAG] == "1"
    assert early.data.metrics[names.DICE_AT_STOP] == pytest.approx(0.2) and names.FINAL_VAL_DICE not in early.data.metrics
    assert float(early.data.params[names.LOG10_LR_PARAM]) == pytest.approx(-3.5229, abs=1e-4)
