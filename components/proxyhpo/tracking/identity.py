"""A run reopened by its identity, or created: never a second run for the same thing.

Two kinds of run are found again today:

- a child run by its trial id under its parent (:func:`children_by_id`): a trial of a retried pack
  (:func:`proxyhpo.tracking.trial_runs`) or a retried long task (:func:`proxyhpo.tracking.task_run`);
- a study's parent run by its pipeline kind and config hash, when a killed local study is started again
  (:func:`proxyhpo.resume.open_parent_run`).

Each finds its run its own way, then calls :func:`reopen_or_create`: the run found is RUNNING again,
its :data:`~proxyhpo.tracking.names.ATTEMPT_TAG` counts the attempts and it is tagged with this process
(for the orphan check); without one, the caller's ``create`` makes a new run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxyhpo.tracking import names
from proxyhpo.tracking.orphans import process_tags

__all__ = ["children_by_id", "reopen", "reopen_or_create"]


def children_by_id(mlflow_client: Any, experiment_id: str, parent_run_id: str, role: str) -> dict[str, Any]:
    """The child runs of ``parent_run_id`` with ``role``, by their :data:`~proxyhpo.tracking.names.TRIAL_ID_TAG` (the newest, should there be several)."""
    found: dict[str, Any] = {}
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{names.PARENT_TAG}` = '{parent_run_id}' and tags.`{names.ROLE_TAG}` = '{role}'",
        order_by=["attributes.start_time ASC"],
        max_results=50000,
    )
    for run in runs:
        trial_id = run.data.tags.get(names.TRIAL_ID_TAG)
        if trial_id:
            found[trial_id] = run
    return found


def reopen(mlflow_client: Any, run: Any, *, clear_fail_reason: bool = False) -> str:
    """Make ``run`` this process's again: RUNNING, its attempt counted, tagged with this process; return its id.

    Args:
        mlflow_client: the client to write with.
        run: the run as found (its tags hold the attempts so far).
        clear_fail_reason: drop the reason an earlier attempt failed with (a study's parent run does; a
            trial's run keeps it until the trial's end writes its state).
    """
    run_id = run.info.run_id
    mlflow_client.update_run(run_id, status="RUNNING")
    if clear_fail_reason and names.FAIL_REASON_TAG in mlflow_client.get_run(run_id).data.tags:
        mlflow_client.delete_tag(run_id, names.FAIL_REASON_TAG)
    mlflow_client.set_tag(run_id, names.ATTEMPT_TAG, str(int(run.data.tags.get(names.ATTEMPT_TAG, "1")) + 1))
    for key, value in process_tags().items():
        mlflow_client.set_tag(run_id, key, value)
    return run_id


def reopen_or_create(mlflow_client: Any, found: Any | None, create: Callable[[], str], *, clear_fail_reason: bool = False) -> tuple[str, bool]:
    """The run ``found`` by its identity reopened (:func:`reopen`), or a new one made by ``create``.

    Args:
        mlflow_client: the client to write with.
        found: the run found by its identity, or None.
        create: makes the new run (its tags, params and artifacts) and returns its id; called only when
            nothing was found.
        clear_fail_reason: see :func:`reopen`.

    Returns:
        ``(run id, reopened)``.
    """
    if found is None:
        return create(), False
    return reopen(mlflow_client, found, clear_fail_reason=clear_fail_reason), True
