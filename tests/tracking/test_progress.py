"""tracking.progress: what a launcher reads back of a study run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from proxyhpo.errors import ProxyHPOError

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import make_result, make_spec, started_after  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402


def test_trial_progress_counts_the_runs_of_one_launch(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'progress.db'}"
    name = "progress-study"
    assert tracking.trial_progress(name, 0, tracking_uri=uri) == (0, 0, 0, False)
    with tracking.trial_runs(name, [make_spec("old")], parent_run_id=None, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["old"].finish(make_result(make_spec("old"), [], fail="an earlier launch"))
    since = started_after(uri, name)
    parent = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    specs = [make_spec(f"r0-p{i}") for i in range(3)]
    with tracking.trial_runs(name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["r0-p0"].finish(make_result(specs[0], [0.5]))
        runs["r0-p1"].finish(make_result(specs[1], [], fail="loss became NaN at step 1"))
        # started, done, failed (the study run is no trial; the earlier launch's trial is not counted)
        assert tracking.trial_progress(name, since, tracking_uri=uri) == (3, 2, 1, False)
        runs["r0-p2"].finish(make_result(specs[2], [0.6]))
    final = make_spec("final", round=None)
    with tracking.trial_runs(name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role=names.ROLE_FINAL) as runs:
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
    client.log_dict(earlier, {"n_trials": 1}, names.SUMMARY_ARTIFACT)
    since = started_after(uri, name)
    with pytest.raises(ProxyHPOError, match=f"no study run was found in experiment '{name}'"):
        tracking.study_summary(name, started_after_ms=since, tracking_uri=uri)
    with pytest.raises(ProxyHPOError, match="no study run was found in experiment 'no-such-study'"):
        tracking.study_summary("no-such-study", started_after_ms=0, tracking_uri=uri)

    older = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    client.log_dict(older, {"n_trials": 2}, names.SUMMARY_ARTIFACT)
    time.sleep(0.05)
    newest = tracking.start_parent_run(name, "hpo", config={}, tracking_uri=uri)
    summary = {"n_trials": 3, "best_hyperparameters": {"lr": 0.001, "optimizer": "adam"}, "total_process_hours": 0.5}
    client.log_dict(newest, summary, names.SUMMARY_ARTIFACT)
    with tracking.trial_runs(name, [make_spec("r0-p0")], parent_run_id=newest, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["r0-p0"].finish(make_result(make_spec("r0-p0"), [0.5]))  # a trial run is never mistaken for the study run

    assert tracking.study_summary(name, started_after_ms=since, tracking_uri=uri) == summary
