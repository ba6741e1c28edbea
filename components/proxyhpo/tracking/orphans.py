"""The orphan check: a RUNNING run whose process has ended (SIGKILL, the OOM killer) is closed FAILED.

Every run we open is tagged with the host, pid and pid start time of its process (:func:`process_tags`);
a later start on the same host tells from them whether that process is gone (:func:`process_gone`), a
reused pid included. Runs opened on other hosts cannot be judged and are left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from proxyhpo.tracking import names
from proxyhpo.tracking.connection import client

__all__ = ["process_tags", "process_gone", "close_orphans", "running_children", "close_orphaned_runs"]

logger = logging.getLogger(__name__)


def _started(pid: int) -> str | None:
    """When process ``pid`` started (to tell it from a later process given the same pid), or None if there is none."""
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.2f}"
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    except Exception:  # psutil.NoSuchProcess, AccessDenied, ZombieProcess
        try:
            import psutil

            return None if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "?"
        except Exception:
            return None


def process_tags() -> dict[str, str]:
    """Tags naming this process, so a later start can tell whether the process of a RUNNING run is gone."""
    return {names.HOST_TAG: socket.gethostname(), names.PID_TAG: str(os.getpid()), names.PID_STARTED_TAG: _started(os.getpid()) or "?"}


def process_gone(tags: Mapping[str, str]) -> bool:
    """Whether the process that opened a run (its host and pid tags) has ended. False when it cannot be told (another host)."""
    if tags.get(names.HOST_TAG) != socket.gethostname() or not tags.get(names.PID_TAG, "").isdigit():
        return False
    pid = int(tags[names.PID_TAG])
    if pid == os.getpid():
        return False
    started = _started(pid)
    if started is None:
        return True
    recorded = tags.get(names.PID_STARTED_TAG, "?")
    return "?" not in (started, recorded) and started != recorded  # the pid was reused by another process


def close_orphans(mlflow_client: Any, runs: Sequence[Any]) -> list[str]:
    """Close the RUNNING ``runs`` whose process has ended: FAILED, with :data:`~proxyhpo.tracking.names.ORPHANED_REASON`.

    Returns:
        The ids of the runs it closed.
    """
    closed = []
    for run in runs:
        if run.info.status == "RUNNING" and process_gone(run.data.tags):
            mlflow_client.set_tag(run.info.run_id, names.FAIL_REASON_TAG, names.ORPHANED_REASON)
            mlflow_client.set_terminated(run.info.run_id, status="FAILED")
            logger.warning("closed MLflow run %s: %s", run.info.run_id, names.ORPHANED_REASON)
            closed.append(run.info.run_id)
    return closed


def running_children(mlflow_client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    """The RUNNING child runs of ``parent_run_id``."""
    return mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'", max_results=50000
    )


def close_orphaned_runs(experiment: str, *, parent_run_id: str, tracking_uri: str | None = None) -> list[str]:
    """Close the RUNNING runs of a study (the parent and its children) whose process was killed (SIGKILL, OOM killer).

    Call it when a study's parent run is opened again. Only runs opened on this host can be judged (by the
    pid and start time they are tagged with); runs of other hosts are left alone.
    :func:`proxyhpo.tracking.trial_runs` does the same for the children of its parent before it starts its trials.

    Returns:
        The ids of the runs it closed.
    """
    mlflow_client = client(tracking_uri)
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    children = running_children(mlflow_client, found.experiment_id, parent_run_id)
    return close_orphans(mlflow_client, [*children, mlflow_client.get_run(parent_run_id)])
