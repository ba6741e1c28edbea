"""MLflow tracking, exactly as DESIGN's contract states.

One experiment per study (``study.name``); one parent run per pipeline run, tagged
``proxyhpo.pipeline``; one child run per trial, tagged ``proxyhpo.role=trial`` and ``proxyhpo.round``,
with params the search space's hyper-parameter names (``lr``, ``optimizer``, ``intensity_shift_prob``
by default), ``network`` and ``data``, and metrics
``val_dice`` (per epoch as steps; its last value is the final Dice), ``gpu_hours`` and
``wall_seconds``. The parent holds the study's summary metrics, plots and report.

The package, one idea a module:

- :mod:`~proxyhpo.tracking.names`: every tag, tag value, param, metric and artifact name of that contract;
  writers, readers and tests import them.
- :mod:`~proxyhpo.tracking.connection`: the client, the store's URI (credentials never shown) and its experiments.
- :mod:`~proxyhpo.tracking.parent`: the parent run's life; :mod:`~proxyhpo.tracking.orphans`: the orphan check.
- :mod:`~proxyhpo.tracking.trials`: the trial and task runs; :mod:`~proxyhpo.tracking.pending`: their offline buffer.
- :mod:`~proxyhpo.tracking.identity`: :func:`reopen_or_create`, a run found again by its identity.
- :mod:`~proxyhpo.tracking.progress`: what a launcher reads back of a study run.

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids, so several trials of a
pack, or several pods, log at once without sharing MLflow's global "active run". Importing this package
loads neither MLflow nor torch: each function imports MLflow where it is used.
"""

from __future__ import annotations

from proxyhpo.tracking import names
from proxyhpo.tracking.connection import HTTP_DEFAULTS, check_reachable, client, ensure_experiment, flatten, shown_uri
from proxyhpo.tracking.identity import children_by_id, reopen_or_create
from proxyhpo.tracking.names import (
    ATTEMPT_TAG,
    FAIL_REASON_TAG,
    HOST_TAG,
    KFP_RUN_TAG,
    ORPHANED_REASON,
    PARENT_TAG,
    PID_STARTED_TAG,
    PID_TAG,
    PIPELINE_TAG,
    PLAN_HASH_TAG,
    ROLE_TAG,
    ROUND_TAG,
    STOPPED_TAG,
    TRIAL_ID_TAG,
)
from proxyhpo.tracking.orphans import close_orphaned_runs, close_orphans, process_gone, process_tags, running_children
from proxyhpo.tracking.parent import fail_open_runs, finish_run, start_parent_run
from proxyhpo.tracking.pending import PENDING_SUFFIX, flush_pending, pending_path_for
from proxyhpo.tracking.progress import study_artifact, study_summary, trial_progress
from proxyhpo.tracking.trials import TrialRun, task_run, trial_runs

__all__ = [
    "names",
    # the tag names callers read from here since before the package (new code imports proxyhpo.tracking.names)
    "PIPELINE_TAG",
    "ROLE_TAG",
    "ROUND_TAG",
    "ATTEMPT_TAG",
    "FAIL_REASON_TAG",
    "HOST_TAG",
    "KFP_RUN_TAG",
    "PARENT_TAG",
    "PID_STARTED_TAG",
    "PID_TAG",
    "PLAN_HASH_TAG",
    "STOPPED_TAG",
    "TRIAL_ID_TAG",
    "ORPHANED_REASON",
    # connection
    "HTTP_DEFAULTS",
    "client",
    "shown_uri",
    "check_reachable",
    "ensure_experiment",
    "flatten",
    # the parent run and the orphan check
    "start_parent_run",
    "finish_run",
    "fail_open_runs",
    "process_tags",
    "process_gone",
    "close_orphans",
    "running_children",
    "close_orphaned_runs",
    # runs found again by their identity
    "children_by_id",
    "reopen_or_create",
    # trial and task runs, their offline buffer
    "TrialRun",
    "trial_runs",
    "task_run",
    "PENDING_SUFFIX",
    "pending_path_for",
    "flush_pending",
    # reading a study back
    "trial_progress",
    "study_artifact",
    "study_summary",
]
