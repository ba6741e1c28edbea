"""The parent run's life: one per pipeline run, opened with the study's config, closed FINISHED or FAILED.

A study that fails never stays RUNNING in MLflow: the pipeline's exit handler (by the KFP run id), the
local launcher (by the run itself) or a sweep (by start time) closes what is left open (:func:`fail_open_runs`).
The orphan check for runs whose process was killed is :mod:`proxyhpo.tracking.orphans`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from proxyhpo.tracking import names
from proxyhpo.tracking.connection import client, ensure_experiment, flatten, log_params
from proxyhpo.tracking.orphans import process_tags

__all__ = ["start_parent_run", "finish_run", "fail_open_runs"]


def start_parent_run(
    experiment: str,
    pipeline: str,
    *,
    config: Mapping[str, Any],
    run_name: str | None = None,
    pipeline_run: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Create the parent run of one pipeline run and return its id.

    It is tagged :data:`~proxyhpo.tracking.names.PIPELINE_TAG` = ``pipeline`` and
    :data:`~proxyhpo.tracking.names.ROLE_TAG` = ``study``. The resolved study config is logged flattened as
    params and whole as ``study.json``; ``pipeline_run`` (the KFP run id) is tagged, so the pipeline's exit
    handler can find the run again.
    """
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    tags = {names.PIPELINE_TAG: pipeline, names.ROLE_TAG: names.ROLE_STUDY} | process_tags()
    if pipeline_run:
        tags[names.KFP_RUN_TAG] = pipeline_run
    run = mlflow_client.create_run(
        experiment_id,
        run_name=run_name or f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=tags,
    )
    run_id = run.info.run_id
    log_params(mlflow_client, run_id, flatten(config))
    mlflow_client.log_dict(run_id, dict(config), names.STUDY_ARTIFACT)
    return run_id


def finish_run(run_id: str, *, failed: bool = False, tracking_uri: str | None = None) -> None:
    """Mark a run FINISHED (or FAILED)."""
    client(tracking_uri).set_terminated(run_id, status="FAILED" if failed else "FINISHED")


def fail_open_runs(
    experiment: str,
    *,
    pipeline_run: str | None = None,
    started_after_ms: int | None = None,
    parent_run_id: str | None = None,
    reason: str | None = None,
    tracking_uri: str | None = None,
) -> list[str]:
    """Mark a study's runs FAILED where they are still RUNNING, so a failed study never stays RUNNING in MLflow.

    Give one selector: ``pipeline_run`` (the KFP run id the study run is tagged with; the pipeline's exit
    handler knows it), ``parent_run_id`` (the study run itself, as the local launcher knows it), or
    ``started_after_ms`` (every run of the experiment started since). The study runs found and their trial
    runs are closed, with ``reason`` as their ``proxyhpo.fail_reason`` when given.

    Returns:
        The ids of the runs it closed.

    Raises:
        ValueError: unless exactly one selector is given.
    """
    if sum(selector is not None for selector in (pipeline_run, started_after_ms, parent_run_id)) != 1:
        raise ValueError("give exactly one of pipeline_run, started_after_ms and parent_run_id")
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    if pipeline_run is not None or parent_run_id is not None:
        parents = (
            mlflow_client.search_runs([found.experiment_id], filter_string=f"tags.`{names.KFP_RUN_TAG}` = '{pipeline_run}'")
            if pipeline_run is not None
            else [mlflow_client.get_run(parent_run_id)]
        )
        candidates = []
        for parent in parents:
            candidates += mlflow_client.search_runs(
                [found.experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent.info.run_id}' and attributes.status = 'RUNNING'"
            )
            candidates.append(parent)
    else:
        candidates = mlflow_client.search_runs(
            [found.experiment_id], filter_string=f"attributes.start_time >= {started_after_ms} and attributes.status = 'RUNNING'", max_results=10000
        )
    closed = []
    for run in candidates:
        if run.info.status == "RUNNING":
            if reason:
                mlflow_client.set_tag(run.info.run_id, names.FAIL_REASON_TAG, reason[:5000])
            mlflow_client.set_terminated(run.info.run_id, status="FAILED")
            closed.append(run.info.run_id)
    return closed
