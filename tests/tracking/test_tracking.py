"""The MLflow contract of DESIGN.md, run against a SQLite store and a real ``mlflow server``."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.config import HyperParameters, NetworkConfig, TrialResult, TrialSpec, TrialState
from proxyhpo.errors import ProxyHPOError

SECRET = "sentinel-secret-7f3a9c"


def _experiment() -> str:
    return f"study-{uuid.uuid4().hex[:10]}"


def make_spec(trial_id: str, *, lr: float = 1e-3, optimizer: str = "adam", shift: float = 0.25, round: int | None = 0) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        hyperparameters=HyperParameters(lr=lr, optimizer=optimizer, intensity_shift_prob=shift),
        network=NetworkConfig.proxy(3),
        data_label="mi-4",
        round=round,
    )


def make_result(
    spec: TrialSpec, dice: list[float], *, gpu_hours: float = 0.02, process_hours: float = 0.0, wall: float = 72.0, fail: str | None = None
) -> TrialResult:
    return TrialResult(
        trial_id=spec.trial_id,
        state=TrialState.FAILED if fail else TrialState.COMPLETE,
        fail_reason=fail,
        hyperparameters=spec.hyperparameters,
        network=spec.network.name,
        data_label=spec.data_label,
        round=spec.round,
        epochs_run=len(dice),
        val_epochs=list(range(1, len(dice) + 1)),
        val_dice=dice,
        final_val_dice=dice[-1] if dice else None,
        best_val_dice=max(dice) if dice else None,
        best_epoch=(dice.index(max(dice)) + 1) if dice else None,
        wall_seconds=wall,
        gpu_hours=gpu_hours,
        process_hours=process_hours,
    )


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _all_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files += _all_artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return files


def test_ensure_experiment_is_idempotent(tracking_uri: str) -> None:
    name = _experiment()
    first = tracking.ensure_experiment(name, tracking_uri)
    assert tracking.ensure_experiment(name, tracking_uri) == first
    assert tracking.ensure_experiment(name, tracking_uri) == first
    experiment = tracking.client(tracking_uri).get_experiment(first)
    assert experiment.name == name
    assert experiment.tags["proxyhpo.study"] == name
    assert tracking.ensure_experiment(_experiment(), tracking_uri) != first


def test_sqlite_artifacts_live_beside_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's default for a SQLite store is ./mlruns of the current directory, outside the embedded folder
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    store = tmp_path / "home" / "mlflow.db"
    run_id = tracking.start_parent_run(_experiment(), "hpo", config={"name": "x"}, tracking_uri=f"sqlite:///{store}")
    artifact_uri = tracking.client(f"sqlite:///{store}").get_run(run_id).info.artifact_uri
    assert artifact_uri.startswith((store.parent / "mlartifacts").as_uri())
    assert list(work.iterdir()) == []


def test_parent_run_tags_params_and_study_json(tracking_uri: str, tmp_path: Path) -> None:
    name = _experiment()
    config = {"name": name, "search": {"rounds": 2, "space": {"lr": {"low": 1e-4}}}, "selection": {"budget": 6}}
    run_id = tracking.start_parent_run(name, "hpo", config=config, run_name="my-run", tracking_uri=tracking_uri)
    client = tracking.client(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "my-run"
    assert run.info.experiment_id == tracking.ensure_experiment(name, tracking_uri)
    assert run.data.tags[tracking.PIPELINE_TAG] == "hpo"
    assert run.data.tags[tracking.ROLE_TAG] == "study"
    assert run.data.params["search.rounds"] == "2"
    assert run.data.params["search.space.lr.low"] == "0.0001"
    assert run.data.params["selection.budget"] == "6"
    local = client.download_artifacts(run_id, "study.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == config
    tracking.finish_run(run_id, tracking_uri=tracking_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    failed = tracking.start_parent_run(name, "nas", config={}, tracking_uri=tracking_uri)
    tracking.finish_run(failed, failed=True, tracking_uri=tracking_uri)
    assert client.get_run(failed).info.status == "FAILED"
    assert client.get_run(failed).data.tags[tracking.PIPELINE_TAG] == "nas"


def test_trial_runs_are_tagged_children_with_params(tracking_uri: str, tmp_path: Path) -> None:
    name = _experiment()
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
        assert run.data.tags[tracking.PARENT_TAG] == parent
        assert run.data.tags[tracking.ROLE_TAG] == "trial"
        assert run.data.tags[tracking.ROUND_TAG] == str(spec.round)
        assert run.data.tags["proxyhpo.trial_id"] == spec.trial_id
        params = run.data.params
        assert float(params["lr"]) == spec.hyperparameters.lr
        assert params["optimizer"] == spec.hyperparameters.optimizer
        assert float(params["intensity_shift_prob"]) == spec.hyperparameters.intensity_shift_prob
        assert float(params["weight_decay"]) == spec.hyperparameters.weight_decay  # no names given: every hyper-parameter
        assert params["network"] == "proxy-L3"
        assert params["data"] == "mi-4"
        saved = json.loads(Path(client.download_artifacts(run.info.run_id, "trial_config.json", str(tmp_path / spec.trial_id))).read_text())
        assert saved["study"] == {"name": name}
        assert saved["trial"]["trial_id"] == spec.trial_id
    # the parent's children are found the way the report finds them
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent}'")
    assert {r.info.run_name for r in children} == {"r0-p0", "r1-p0"}


def test_trial_runs_log_exactly_the_searched_hyperparameters(tracking_uri: str) -> None:
    name = _experiment()
    spec = make_spec("r0-p0", lr=2e-4, optimizer="adamax", shift=0.5)
    with tracking.trial_runs(
        name, [spec], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False,
        hyperparameter_names=["lr", "weight_decay"],
    ) as runs:
        runs["r0-p0"].finish(make_result(spec, [0.5]))
    params = tracking.client(tracking_uri).get_run(runs["r0-p0"].run_id).data.params
    assert set(params) == {"lr", "weight_decay", "network", "data", "seed"}
    assert (float(params["lr"]), float(params["weight_decay"])) == (2e-4, 0.0)


def test_trial_without_round_or_parent_and_final_role(tracking_uri: str) -> None:
    name = _experiment()
    spec = make_spec("final", round=None)
    with tracking.trial_runs(name, [spec], parent_run_id=None, data="full", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False, role="final") as runs:
        runs["final"].finish(make_result(spec, [0.8]))
    tags = tracking.client(tracking_uri).get_run(runs["final"].run_id).data.tags
    assert tags[tracking.ROLE_TAG] == "final"
    assert tracking.ROUND_TAG not in tags
    assert tracking.PARENT_TAG not in tags


def test_val_dice_steps_and_cost_metrics(tracking_uri: str) -> None:
    name = _experiment()
    spec = make_spec("r0-p1")
    dice = [0.21, 0.47, 0.44, 0.58]
    with tracking.trial_runs(name, [spec], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False) as runs:
        run = runs[spec.trial_id]
        run.log_epoch(1, dice[0])  # logged live, as the trainer does
        run.log_epoch(2, dice[1])
        run.finish(make_result(spec, dice, gpu_hours=0.0125, process_hours=0.03, wall=45.5))
    client = tracking.client(tracking_uri)
    history = _history(client, run.run_id, "val_dice")
    assert [step for step, _ in history] == [1, 2, 3, 4]  # epochs logged live are not logged twice
    assert [value for _, value in history] == pytest.approx(dice)
    finished = client.get_run(run.run_id)
    assert finished.info.status == "FINISHED"
    metrics = finished.data.metrics
    assert metrics["val_dice"] == pytest.approx(dice[-1])  # the latest step is the final Dice
    assert metrics["final_val_dice"] == pytest.approx(dice[-1])
    assert metrics["best_val_dice"] == pytest.approx(max(dice))
    assert metrics["gpu_hours"] == pytest.approx(0.0125)
    assert metrics["process_hours"] == pytest.approx(0.03)
    assert "cpu_hours" not in metrics
    assert metrics["wall_seconds"] == pytest.approx(45.5)
    assert metrics["epochs_run"] == 4
    assert finished.data.tags["proxyhpo.state"] == "COMPLETE"
    assert "proxyhpo.fail_reason" not in finished.data.tags


def test_failed_trial_gives_failed_run_with_reason(tracking_uri: str) -> None:
    name = _experiment()
    good, bad = make_spec("r0-p0"), make_spec("r0-p1", lr=0.5)
    reason = "loss became NaN at step 3"
    with tracking.trial_runs(name, [good, bad], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=False) as runs:
        runs["r0-p0"].finish(make_result(good, [0.5]))
        runs["r0-p1"].finish(make_result(bad, [], fail=reason, gpu_hours=0.001))
    client = tracking.client(tracking_uri)
    failed = client.get_run(runs["r0-p1"].run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["proxyhpo.fail_reason"] == reason
    assert failed.data.tags["proxyhpo.state"] == "FAILED"
    assert "val_dice" not in failed.data.metrics
    assert failed.data.metrics["gpu_hours"] == pytest.approx(0.001)  # a failed trial still cost GPU time
    assert client.get_run(runs["r0-p0"].run_id).info.status == "FINISHED"


def test_exception_in_block_leaves_no_run_running(tracking_uri: str) -> None:
    name = _experiment()
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
    name = _experiment()
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
        files = _all_artifacts(client, run_id)
        assert files  # study.json / trial_config.json at least
        for artifact in files:
            local = Path(client.download_artifacts(run_id, artifact, str(tmp_path / run_id)))
            assert SECRET.encode() not in local.read_bytes(), artifact
            checked += 1
    assert checked >= 2


def test_system_metrics_on_trial_runs(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking.trials, "SYSTEM_METRICS_INTERVAL_S", 1)
    name = _experiment()
    spec = make_spec("r0-p0")
    with tracking.trial_runs(name, [spec], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=tracking_uri, system_metrics=True) as runs:
        time.sleep(3.5)
        runs["r0-p0"].finish(make_result(spec, [0.4]))
    metrics = tracking.client(tracking_uri).get_run(runs["r0-p0"].run_id).data.metrics
    system = [key for key in metrics if key.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system, sorted(metrics)
    assert any("memory" in key for key in system)


def test_fail_open_runs_of_a_kfp_run_closes_the_study_and_its_running_trials(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'exit.db'}"
    parent = tracking.start_parent_run("exit-study", "hpo", config={"name": "exit-study"}, pipeline_run="kfp-run-42", tracking_uri=uri)
    other = tracking.start_parent_run("exit-study", "hpo", config={"name": "exit-study"}, pipeline_run="kfp-run-7", tracking_uri=uri)
    client = tracking.client(uri)
    experiment_id = client.get_run(parent).info.experiment_id
    child = client.create_run(experiment_id, tags={tracking.PARENT_TAG: parent, tracking.ROLE_TAG: "trial"}).info.run_id
    done = client.create_run(experiment_id, tags={tracking.PARENT_TAG: parent, tracking.ROLE_TAG: "trial"}).info.run_id
    client.set_terminated(done, status="FINISHED")

    closed = tracking.fail_open_runs("exit-study", pipeline_run="kfp-run-42", tracking_uri=uri)

    assert sorted(closed) == sorted([parent, child])
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(child).info.status == "FAILED"
    assert client.get_run(done).info.status == "FINISHED"
    assert client.get_run(other).info.status == "RUNNING"
    assert tracking.fail_open_runs("no-such-experiment", pipeline_run="kfp-run-42", tracking_uri=uri) == []


def test_fail_open_runs_by_pipeline_run_is_the_exit_handlers_call(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'exit.db'}"
    parent = tracking.start_parent_run("exit-study", "hpo", config={"name": "exit-study"}, pipeline_run="kfp-run-42", tracking_uri=uri)
    other = tracking.start_parent_run("exit-study", "hpo", config={"name": "exit-study"}, pipeline_run="kfp-run-7", tracking_uri=uri)
    assert tracking.fail_open_runs("exit-study", pipeline_run="kfp-run-42", tracking_uri=uri) == [parent]
    client = tracking.client(uri)
    assert (client.get_run(parent).info.status, client.get_run(other).info.status) == ("FAILED", "RUNNING")
    assert tracking.fail_open_runs("exit-study", pipeline_run="kfp-run-42", tracking_uri=uri) == []  # nothing left open


def _started_after(uri: str, experiment: str) -> int:
    """A start time strictly after every run of ``experiment`` so far, and strictly before the next one."""
    tracking.ensure_experiment(experiment, uri)
    time.sleep(0.05)
    since = int(time.time() * 1000)
    time.sleep(0.05)
    return since


def test_fail_open_runs_started_after_a_time(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'local.db'}"
    earlier = tracking.start_parent_run("local-study", "hpo", config={}, tracking_uri=uri)
    since = _started_after(uri, "local-study")
    parent = tracking.start_parent_run("local-study", "hpo", config={}, tracking_uri=uri)
    client = tracking.client(uri)
    experiment_id = client.get_run(parent).info.experiment_id
    child = client.create_run(experiment_id, tags={tracking.PARENT_TAG: parent, tracking.ROLE_TAG: "trial"}).info.run_id
    done = client.create_run(experiment_id, tags={tracking.PARENT_TAG: parent, tracking.ROLE_TAG: "trial"}).info.run_id
    client.set_terminated(done, status="FINISHED")

    closed = tracking.fail_open_runs("local-study", started_after_ms=since, tracking_uri=uri)

    assert sorted(closed) == sorted([parent, child])
    assert {run_id: client.get_run(run_id).info.status for run_id in (parent, child, done, earlier)} == {
        parent: "FAILED", child: "FAILED", done: "FINISHED", earlier: "RUNNING"  # a run of an earlier launch is not ours
    }
    assert tracking.fail_open_runs("no-such-experiment", started_after_ms=since, tracking_uri=uri) == []


@pytest.mark.parametrize("selectors", [{}, {"pipeline_run": "kfp-run-1", "started_after_ms": 0}])
def test_fail_open_runs_needs_exactly_one_selector(tmp_path: Path, selectors: dict) -> None:
    with pytest.raises(ValueError, match="exactly one of pipeline_run, started_after_ms and parent_run_id"):
        tracking.fail_open_runs("any-study", tracking_uri=f"sqlite:///{tmp_path / 'x.db'}", **selectors)


def test_trial_progress_counts_the_runs_of_one_launch(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'progress.db'}"
    name = "progress-study"
    assert tracking.trial_progress(name, 0, tracking_uri=uri) == (0, 0, 0, False)
    with tracking.trial_runs(name, [make_spec("old")], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["old"].finish(make_result(make_spec("old"), [], fail="an earlier launch"))
    since = _started_after(uri, name)
    parent = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    specs = [make_spec(f"r0-p{i}") for i in range(3)]
    with tracking.trial_runs(name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["r0-p0"].finish(make_result(specs[0], [0.5]))
        runs["r0-p1"].finish(make_result(specs[1], [], fail="loss became NaN at step 1"))
        # started, done, failed (the study run is no trial; the earlier launch's trial is not counted)
        assert tracking.trial_progress(name, since, tracking_uri=uri) == (3, 2, 1, False)
        runs["r0-p2"].finish(make_result(specs[2], [0.6]))
    final = make_spec("final", round=None)
    with tracking.trial_runs(name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role="final") as runs:
        assert tracking.trial_progress(name, since, tracking_uri=uri) == (3, 3, 1, True)
        runs["final"].finish(make_result(final, [0.8]))


def test_study_summary_reads_the_newest_study_run_of_a_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.tracking._tracking_service.utils as mlflow_uri

    uri = f"sqlite:///{tmp_path / 'summary.db'}"
    # study_summary sets MLflow's process-wide tracking URI (and $MLFLOW_TRACKING_URI): undo both after the test
    monkeypatch.setattr(mlflow_uri, "_tracking_uri", mlflow_uri._tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    name = "summary-study"
    client = tracking.client(uri)
    earlier = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    client.log_dict(earlier, {"n_trials": 1}, "summary.json")
    since = _started_after(uri, name)
    with pytest.raises(ProxyHPOError, match=f"no study run was found in experiment '{name}'"):
        tracking.study_summary(name, started_after_ms=since, tracking_uri=uri)
    with pytest.raises(ProxyHPOError, match="no study run was found in experiment 'no-such-study'"):
        tracking.study_summary("no-such-study", started_after_ms=0, tracking_uri=uri)

    older = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    client.log_dict(older, {"n_trials": 2}, "summary.json")
    time.sleep(0.05)
    newest = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    summary = {"n_trials": 3, "best_hyperparameters": {"lr": 0.001, "optimizer": "adam"}, "total_process_hours": 0.5}
    client.log_dict(newest, summary, "summary.json")
    with tracking.trial_runs(name, [make_spec("r0-p0")], parent_run_id=newest, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["r0-p0"].finish(make_result(make_spec("r0-p0"), [0.5]))  # a trial run is never mistaken for the study run

    assert tracking.study_summary(name, started_after_ms=since, tracking_uri=uri) == summary


def test_open_study_checks_the_compiled_shape_before_opening_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's start-study step: a study edited to another shape fails at once, with nothing logged."""
    from proxyhpo.config import DataConfig, PipelineShape, SearchConfig, StudyConfig, StudyRun
    from proxyhpo.errors import ConfigError
    from proxyhpo.study import close_study, open_study

    uri = f"sqlite:///{tmp_path / 'open.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = StudyConfig(name="open-study", data=DataConfig(dataset="d"), search=SearchConfig(rounds=5))
    out = tmp_path / "study_run.json"
    with pytest.raises(ConfigError, match="search.rounds is 5 but this pipeline was compiled for 3"):
        open_study(study, pipeline="hpo", pipeline_run="kfp-1", compiled=PipelineShape(rounds=3, gpus=1), out=out)
    assert not out.exists()
    assert tracking.client(uri).get_experiment_by_name("open-study") is None  # no study run was opened

    run = open_study(study, pipeline="hpo", pipeline_run="kfp-2", compiled=study.shape, out=out)
    assert StudyRun.read(out) == run and run.experiment == "open-study"
    opened = tracking.client(uri).get_run(run.run_id)
    assert (opened.info.status, opened.data.tags[tracking.KFP_RUN_TAG], opened.data.params["search.rounds"]) == ("RUNNING", "kfp-2", "5")

    assert close_study(study, pipeline_run="kfp-2", succeeded=True) == []  # the report closed it
    assert tracking.client(uri).get_run(run.run_id).info.status == "RUNNING"
    assert close_study(study, pipeline_run="kfp-2", succeeded=False) == [run.run_id]
    assert tracking.client(uri).get_run(run.run_id).info.status == "FAILED"


def test_a_retried_task_resumes_its_trial_runs_never_duplicates_them(tracking_uri: str) -> None:
    name = _experiment()
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
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(run.info.run_name for run in children) == ["r0-t000", "r0-t001"]
    assert all(run.info.status == "FINISHED" and run.data.tags["proxyhpo.attempt"] == "2" for run in children)
    resumed = second["r0-t000"].run_id
    # one value per epoch: the killed attempt's epoch 1 is kept, the retry's is not logged twice
    assert _history(client, resumed, "val_dice") == [(1, 0.30), (2, 0.50)]


def test_the_launch_progress_gives_the_final_model_its_own_line_and_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from proxyhpo.catalogue import shipped_study
    from proxyhpo.launch import _StudyProgress

    uri = f"sqlite:///{tmp_path / 'progress.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = shipped_study("demo")
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    specs = [make_spec(f"r0-p{i}") for i in range(2)]
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        for spec in specs:
            runs[spec.trial_id].finish(make_result(spec, [0.5]))
    shown = io.StringIO()
    progress = _StudyProgress(study, parent, Console(file=shown, force_terminal=False, width=160))
    progress.start()
    final = make_spec("final", round=None)
    with tracking.trial_runs(study.name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role="final") as runs:
        time.sleep(3.0)  # one poll (every 2 s) sees the final model's run
        runs["final"].finish(make_result(final, [0.8]))
    progress.succeeded = True
    progress.stopped.set()
    progress.join(timeout=30)
    lines = shown.getvalue().splitlines()
    search = next(line for line in lines if line.startswith("search: 2 trials"))
    assert f"2/{study.planned_trials('hpo')}" in search
    final_line = next(line for line in lines if line.startswith("training the final model (full network, all search cases)"))
    assert "1/1" in final_line


@pytest.mark.parametrize("stopped", [0, 20])
def test_the_run_summary_shows_what_early_stopping_saved(tmp_path: Path, stopped: int) -> None:
    import io

    from rich.console import Console

    from proxyhpo.catalogue import shipped_study
    from proxyhpo.launch import _print_summary

    summary = {
        "best_hyperparameters": {"lr": 0.0055, "optimizer": "rmsprop"},
        "best_val_dice": 0.56, "final_val_dice": 0.66, "final_test_dice": 0.67,
        "n_trials": 24, "n_failed": 0, "n_stopped": stopped, "trial_epochs_run": 520.0, "trial_epochs_saved": 920.0 if stopped else 0.0,
        "total_gpu_hours": 0.0, "total_process_hours": 0.02,
    }
    shown = io.StringIO()
    _print_summary(shipped_study("demo"), summary, tmp_path / "run.log", Console(file=shown, force_terminal=False, width=160))
    rows = [line for line in shown.getvalue().splitlines() if "stopped early" in line]
    assert [("20 (920 of 1440)" in row) for row in rows] == ([True] if stopped else [])
