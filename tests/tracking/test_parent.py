"""tracking.parent: the parent run's life, and the failed study that never stays RUNNING."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import new_experiment, started_after  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402


def test_parent_run_tags_params_and_study_json(tracking_uri: str, tmp_path: Path) -> None:
    name = new_experiment()
    config = {"name": name, "search": {"rounds": 2, "space": {"lr": {"low": 1e-4}}}, "selection": {"budget": 6}, "nas": {"arms": ["a", "b"]}}
    run_id = tracking.start_parent_run(name, "hpo", config=config, run_name="my-run", tracking_uri=tracking_uri)
    client = tracking.client(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "my-run"
    assert run.info.experiment_id == tracking.ensure_experiment(name, tracking_uri)
    assert run.data.tags[names.PIPELINE_TAG] == "hpo"
    assert run.data.tags[names.ROLE_TAG] == names.ROLE_STUDY
    # the handful of params runs are compared on, not the whole config flattened (issue 22) ...
    assert run.data.params == {"search.rounds": "2", "selection.budget": "6"}
    # ... which is one YAML artifact (and the JSON the reports read)
    local = client.download_artifacts(run_id, names.STUDY_ARTIFACT, str(tmp_path))
    assert json.loads(Path(local).read_text()) == config
    assert yaml.safe_load(Path(client.download_artifacts(run_id, names.STUDY_YAML_ARTIFACT, str(tmp_path))).read_text()) == config
    assert run.data.tags[names.DESCRIPTION_TAG].startswith(f"**{name}** (hpo): lr searched by None, 2 rounds")
    client.log_metric(run_id, names.BEST_VAL_DICE, 0.61)
    client.log_metric(run_id, names.N_TRIALS, 4)
    tracking.finish_run(run_id, tracking_uri=tracking_uri)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    description = finished.data.tags[names.DESCRIPTION_TAG]
    assert "- 4 trials (0 stopped early, 0 failed)" in description and "- best search validation Dice 0.6100" in description
    assert f"`proxyhpo report {name}`" in description
    failed = tracking.start_parent_run(name, "nas", config={}, tracking_uri=tracking_uri)
    tracking.finish_run(failed, failed=True, tracking_uri=tracking_uri)
    assert client.get_run(failed).info.status == "FAILED"
    assert client.get_run(failed).data.tags[names.PIPELINE_TAG] == "nas"


def test_fail_open_runs_of_a_kfp_run_closes_the_study_and_its_running_trials(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'exit.db'}"
    parent = tracking.start_parent_run("exit-study", "hpo", config={"name": "exit-study"}, pipeline_run="kfp-run-42", tracking_uri=uri)
    other = tracking.start_parent_run("exit-study", "hpo", config={"name": "exit-study"}, pipeline_run="kfp-run-7", tracking_uri=uri)
    client = tracking.client(uri)
    experiment_id = client.get_run(parent).info.experiment_id
    child = client.create_run(experiment_id, tags={names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL}).info.run_id
    done = client.create_run(experiment_id, tags={names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL}).info.run_id
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


def test_fail_open_runs_started_after_a_time(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'local.db'}"
    earlier = tracking.start_parent_run("local-study", "hpo", config={}, tracking_uri=uri)
    since = started_after(uri, "local-study")
    parent = tracking.start_parent_run("local-study", "hpo", config={}, tracking_uri=uri)
    client = tracking.client(uri)
    experiment_id = client.get_run(parent).info.experiment_id
    child = client.create_run(experiment_id, tags={names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL}).info.run_id
    done = client.create_run(experiment_id, tags={names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL}).info.run_id
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


def test_a_parent_run_is_named_after_its_study_pipeline_and_date(tmp_path: Path) -> None:
    import time

    from proxyhpo.catalogue import shipped_study

    uri = f"sqlite:///{tmp_path / 'names.db'}"
    study = shipped_study("demo")
    run = tracking.client(uri).get_run(tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), tracking_uri=uri))
    assert run.info.run_name == f"{study.name} hpo {time.strftime('%Y-%m-%d')}" + run.info.run_name[-6:]
    assert set(run.data.params) <= set(names.COMPARED_PARAMS) and len(run.data.params) >= 10
    assert run.data.tags[names.DESCRIPTION_TAG] == (
        f"**{study.name}** (hpo): lr, optimizer, intensity_shift_prob searched by tpe, 3 rounds × 8 trials of "
        f"{study.training.epochs} epochs, on proxy data ({study.selection.method}, {study.selection.budget} cases) with the proxy network."
    )
