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


def _compared(config: Mapping[str, Any]) -> dict[str, str]:
    """The params of a parent run: a study config's :data:`~proxyhpo.tracking.names.COMPARED_PARAMS`, or every
    key of another settings mapping (a benchmark's few), flattened."""
    flat = flatten(config)
    chosen = {key: flat[key] for key in names.COMPARED_PARAMS if key in flat}
    return chosen or flat


def describe_study(config: Mapping[str, Any], pipeline: str) -> str:
    """The first lines of a study run's description: what it searches, how, on what.

    Example:
        >>> describe_study({"name": "demo", "search": {"strategy": "reinforce", "rounds": 3, "proposals_per_round": 8,
        ...     "space": {"lr": {}, "optimizer": {}}}, "selection": {"method": "mi", "budget": 8}, "training": {"data": "proxy",
        ...     "network": "proxy", "epochs": 20}}, "hpo")
        '**demo** (hpo): lr, optimizer searched by reinforce, 3 rounds × 8 trials of 20 epochs, on proxy data (mi, 8 cases) with the proxy network.'
    """
    search, selection, training = (dict(config.get(key) or {}) for key in ("search", "selection", "training"))
    if not search:
        return f"**{config.get('name', '?')}** ({pipeline})."
    space = ", ".join(search.get("space") or {}) or "hyper-parameters"
    data = f"proxy data ({selection.get('method')}, {selection.get('budget')} cases)" if training.get("data") == "proxy" else "all search cases"
    return (
        f"**{config.get('name', '?')}** ({pipeline}): {space} searched by {search.get('strategy')}, {search.get('rounds')} rounds × "
        f"{search.get('proposals_per_round')} trials of {training.get('epochs')} epochs, on {data} with the {training.get('network')} network."
    )


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

    It is named ``<study> <pipeline> <date>`` unless ``run_name`` is given, and tagged
    :data:`~proxyhpo.tracking.names.PIPELINE_TAG` = ``pipeline`` and :data:`~proxyhpo.tracking.names.ROLE_TAG` =
    ``study``. The resolved study config is logged whole as ``study.yaml`` (and ``study.json``, which the reports
    read); its :data:`~proxyhpo.tracking.names.COMPARED_PARAMS` as params; what it searches as the run's
    description (:func:`finish_run` adds the result). ``pipeline_run`` (the KFP run id) is tagged, so the
    pipeline's exit handler can find the run again.
    """
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    tags = {names.PIPELINE_TAG: pipeline, names.ROLE_TAG: names.ROLE_STUDY, names.DESCRIPTION_TAG: describe_study(config, pipeline)} | process_tags()
    if pipeline_run:
        tags[names.KFP_RUN_TAG] = pipeline_run
    run = mlflow_client.create_run(experiment_id, run_name=run_name or f"{experiment} {pipeline} {time.strftime('%Y-%m-%d %H:%M')}", tags=tags)
    run_id = run.info.run_id
    log_params(mlflow_client, run_id, _compared(config))
    mlflow_client.log_dict(run_id, dict(config), names.STUDY_ARTIFACT)
    mlflow_client.log_dict(run_id, dict(config), names.STUDY_YAML_ARTIFACT)  # MLflow writes a .yaml name as YAML
    return run_id


def _result_lines(run: Any) -> list[str]:
    """The description's lines about a finished study run's result, from the metrics its report logged."""
    metrics = run.data.metrics
    lines = []
    if names.N_TRIALS in metrics:
        counts = [f"{metrics.get(names.N_STOPPED_TRIALS, 0):.0f} stopped early", f"{metrics.get(names.N_FAILED_TRIALS, 0):.0f} failed"]
        lines.append(f"- {metrics[names.N_TRIALS]:.0f} trials ({', '.join(counts)})")
    if names.BEST_VAL_DICE in metrics:
        lines.append(f"- best search validation Dice {metrics[names.BEST_VAL_DICE]:.4f}")
    for key, label in ((names.FINAL_INTERNAL_TEST_DICE, "final model, internal test Dice"), (names.FINAL_TEST_DICE, "final model, external test Dice")):
        if key in metrics:
            lines.append(f"- {label} {metrics[key]:.4f}")
    return lines


def finish_run(run_id: str, *, failed: bool = False, tracking_uri: str | None = None) -> None:
    """Mark a run FINISHED (or FAILED). A finished study run's description gains its result and where its report is."""
    mlflow_client = client(tracking_uri)
    if not failed:
        run = mlflow_client.get_run(run_id)
        if run.data.tags.get(names.ROLE_TAG) == names.ROLE_STUDY:
            experiment = mlflow_client.get_experiment(run.info.experiment_id).name
            head = run.data.tags.get(names.DESCRIPTION_TAG, "").split("\n\n**Result**")[0]  # a resumed run's earlier result goes
            report = f"the report: artifact `{names.REPORT_ARTIFACT}` of this run, or `proxyhpo report {experiment}`"
            mlflow_client.set_tag(run_id, names.DESCRIPTION_TAG, "\n".join([head, "", "**Result**", "", *_result_lines(run), "", report]))
    mlflow_client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")


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
