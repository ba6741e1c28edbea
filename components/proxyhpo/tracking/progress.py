"""What a launcher reads back of a study run: its trials' progress, its report and summary artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from proxyhpo import paths
from proxyhpo.tracking import names
from proxyhpo.tracking.connection import client

__all__ = ["trial_progress", "study_artifact", "study_summary"]

#: the roles counted as trials in a study's progress
_TRIAL_ROLES = (names.ROLE_TRIAL, names.ROLE_NAS_SEARCH)


def trial_progress(
    experiment: str, started_after_ms: int | None = None, tracking_uri: str | None = None, *, parent_run_id: str | None = None
) -> tuple[int, int, int, bool]:
    """How far a study has come: trials started, done, failed, and whether the final model started.

    The study is the runs started since ``started_after_ms``, or the children of ``parent_run_id`` (a
    resumed study's earlier trials count as done).
    """
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return 0, 0, 0, False
    selector = f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'" if parent_run_id else f"attributes.start_time >= {started_after_ms or 0}"
    runs = mlflow_client.search_runs([found.experiment_id], filter_string=selector, max_results=5000)
    trials = [run for run in runs if run.data.tags.get(names.ROLE_TAG) in _TRIAL_ROLES]
    done = sum(run.info.status != "RUNNING" for run in trials)
    failed = sum(run.info.status == "FAILED" for run in trials)
    final = any(run.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL for run in runs)
    return len(trials), done, failed, final


def study_artifact(
    experiment: str, name: str, *, started_after_ms: int | None = None, run_id: str | None = None, tracking_uri: str | None = None
) -> str:
    """The text of artifact ``name`` (``summary.json``, ``report.md``) of study run ``run_id``, or of the newest
    study run started since ``started_after_ms``.

    Raises:
        ProxyHPOError: when no such study run exists.
    """
    import mlflow

    from proxyhpo.errors import ProxyHPOError

    uri = tracking_uri or paths.tracking_uri()
    mlflow_client = client(uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    runs = []
    if run_id is not None:
        runs = [mlflow_client.get_run(run_id)]
    elif found is not None:
        runs = mlflow_client.search_runs(
            [found.experiment_id],
            filter_string=f"attributes.start_time >= {started_after_ms or 0} and tags.`{names.ROLE_TAG}` = '{names.ROLE_STUDY}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise ProxyHPOError(f"the pipeline finished but no study run was found in experiment {experiment!r}")
    # download_artifacts takes the store explicitly: set_tracking_uri would change it for the whole process
    local = mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path=name, tracking_uri=uri)
    return Path(local).read_text(encoding="utf-8")


def study_summary(experiment: str, *, started_after_ms: int | None = None, run_id: str | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """The ``summary.json`` the report logged on study run ``run_id``, or on the newest study run started since ``started_after_ms``.

    Raises:
        ProxyHPOError: when no such study run exists.
    """
    return json.loads(
        study_artifact(experiment, names.SUMMARY_ARTIFACT, started_after_ms=started_after_ms, run_id=run_id, tracking_uri=tracking_uri)
    )
