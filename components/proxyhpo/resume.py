"""A killed study started again: its MLflow parent run reopened, its finished trials kept by identity.

``proxyhpo run CONFIG --local`` killed part-way (Ctrl-C, SIGTERM, SIGKILL) and run again resumes by default
(``--fresh`` starts over). Three things make that work:

- **The parent run is found again** (:func:`open_parent_run`, called by the local launcher): the newest
  parent run of the study (its experiment) with the same pipeline kind and the same config hash
  (``proxyhpo.config_sha256``) that did not finish, opened by a launcher on this host. It is reopened
  (RUNNING again, ``proxyhpo.attempt`` counting the starts) and handed to the pipeline's first task
  through :data:`PARENT_ENV`, so every task logs under it. A KFP local run names its pipeline-root folder
  after the pipeline and the time it started, so the killed run's artifacts are never found again by
  KFP: what must outlive a run lives here instead, keyed by the parent run.
- **Finished trials are kept by identity** (:func:`keep_result`, :func:`finished_results`): a trial's
  identity is the sha256 of what it trains — its data, recipe and schedule, network, hyper-parameters
  and seed (:func:`trial_key`, tagged ``proxyhpo.trial_key`` on its MLflow child run). When a pack
  ends, each trial's result is written to ``<checkpoint root>/<parent run>/trials/``; a later start of
  the same study finds it there and does not train that trial again. The checkpoint root is
  ``PROXYHPO_CHECKPOINT_ROOT`` (on a cluster, a folder of the chart's MinIO bucket), else
  ``.proxyhpo/checkpoints``.
- **The controller replays** its rounds from its initial state with the kept rewards: proposals and
  REINFORCE steps are deterministic given the seed and the rewards, so it reaches the state it was
  killed in bit for bit, and then goes on; rounds that were not finished are trained as before.

The final result therefore equals an uninterrupted run's with the same seeds, and each trial has one
MLflow child run however often the study was started.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from proxyhpo import paths, storage, tracking
from proxyhpo.config import StudyConfig, TrialPlan, TrialResult, TrialSpec
from proxyhpo.errors import ConfigError, ProxyHPOError
from proxyhpo.tracking import names

__all__ = [
    "CONFIG_HASH_TAG",
    "TRIAL_KEY_TAG",
    "PARENT_ENV",
    "SUPERSEDED_REASON",
    "config_sha256",
    "trial_key",
    "with_trial_keys",
    "study_folder",
    "keep_result",
    "finished_results",
    "pending_location",
    "open_parent_run",
    "adopt_parent_run",
]

logger = logging.getLogger(__name__)

CONFIG_HASH_TAG = names.CONFIG_HASH_TAG
#: The spec tag ``trial_key`` becomes this tag on the trial's MLflow run (spec tags become ``proxyhpo.<key>``).
TRIAL_KEY_TAG = names.TRIAL_KEY_TAG
#: The parent run the local launcher opened (or reopened) for the pipeline's first task to log under.
PARENT_ENV = "PROXYHPO_PARENT_RUN_ID"
SUPERSEDED_REASON = "superseded: the study was started again with --fresh"
# plan fields that change where or how fast a trial runs, never what it learns
_NOT_IDENTITY = {"trials", "pack_size", "device", "cache_dir", "save_model_dir", "num_workers", "checkpoint", "checkpoint_every"}


def _sha256(document: Any) -> str:
    # keys keep their order: the search space's is the order the controller emits its decisions in
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode("utf-8")).hexdigest()


def config_sha256(study: StudyConfig) -> str:
    """The sha256 of a study's resolved config (its JSON, keys in order): a study started again with another config is another study."""
    return _sha256(study.model_dump(mode="json"))


def trial_key(spec: TrialSpec, plan: TrialPlan) -> str:
    """A trial's identity: the sha256 of its data, recipe and schedule, network, hyper-parameters and seed.

    The pack it trains in, the device and where it saves are left out: the same seed gives the same trial
    alone or in a pack. With early stopping the pack size stays in (a trial is stopped by its rank among
    its pack-mates). The trial's id, round and tags are left out too (they name the trial, they do not
    change what it learns).
    """
    excluded = _NOT_IDENTITY - ({"pack_size"} if getattr(plan, "early_stopping", None) is not None else set())
    return _sha256(
        {
            "plan": plan.model_dump(mode="json", exclude=excluded),
            "trial": spec.model_dump(mode="json", exclude={"trial_id", "round", "tags"}),
        }
    )


def with_trial_keys(plan: TrialPlan) -> TrialPlan:
    """``plan`` with each trial's :func:`trial_key` in its tags (``trial_key``), so its run and its result carry it."""
    trials = [spec.model_copy(update={"tags": {**spec.tags, "trial_key": trial_key(spec, plan)}}) for spec in plan.trials]
    return plan.model_copy(update={"trials": trials})


def study_folder(parent_run_id: str) -> str:
    """Where what outlives a study's pipeline runs is kept: ``<checkpoint root>/<parent run id>`` (local or ``s3://``)."""
    return f"{paths.checkpoint_root().rstrip('/')}/{parent_run_id}"


def _result_location(parent_run_id: str, trial_id: str, key: str) -> str:
    return f"{study_folder(parent_run_id)}/trials/{trial_id}-{key[:16]}.json"


def keep_result(parent_run_id: str, result: TrialResult) -> str:
    """Keep a finished trial's result for a later start of the study (atomically); return where.

    Raises:
        ValueError: when the result carries no ``trial_key`` tag (its plan did not go through :func:`with_trial_keys`).
    """
    key = result.tags.get("trial_key")
    if not key:
        raise ValueError(f"result {result.trial_id!r} has no trial_key tag")
    location = _result_location(parent_run_id, result.trial_id, key)
    storage.write_bytes(location, result.model_dump_json(indent=1).encode("utf-8"))
    return location


def finished_results(parent_run_id: str, plan: TrialPlan) -> dict[str, TrialResult]:
    """The results kept for ``plan``'s trials (with :func:`with_trial_keys` tags) by an earlier start of the study, by trial id.

    A result that cannot be read is not reused: that trial trains again. With early stopping a trial's fate
    depends on its pack-mates, so a pack is reused whole or not at all.
    """
    found: dict[str, TrialResult] = {}
    for spec in plan.trials:
        key = spec.tags.get("trial_key")
        if not key:
            continue
        location = _result_location(parent_run_id, spec.trial_id, key)
        if not storage.exists(location):
            continue
        try:
            result = TrialResult.model_validate_json(storage.read_bytes(location))
        except Exception as exc:  # a damaged file: train the trial again rather than fail the study
            logger.warning("kept result %s cannot be read (%s); the trial trains again", location, str(exc).splitlines()[0][:200])
            continue
        if result.tags.get("trial_key") == key and result.trial_id == spec.trial_id:
            found[spec.trial_id] = result
    found = _agreeing_with_mlflow(parent_run_id, found)
    if getattr(plan, "early_stopping", None) is not None and len(found) < len(plan.trials):
        return {}
    return found


def _agreeing_with_mlflow(parent_run_id: str, found: dict[str, TrialResult]) -> dict[str, TrialResult]:
    """The kept results whose Dice equals the one MLflow recorded for the same trial (its child run, by trial key).

    A kept file edited on disk (valid JSON, a Dice of 0.999) would otherwise be trusted on resume: the final
    model would train with its settings while the summary, read from MLflow, names another trial. A result
    that disagrees trains again. Without MLflow's record of the trial (no tracking, or the run is gone)
    the kept result is used as it is.
    """
    if not found:
        return found
    recorded: dict[str, float | None] = {}
    try:
        mlflow_client = tracking.client()
        parent = mlflow_client.get_run(parent_run_id)
        runs = mlflow_client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'", max_results=5000
        )
    except Exception as exc:  # no such parent run, or no store to ask: nothing to check against
        logger.debug("kept results not checked against MLflow (%s)", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return found
    for run in runs:
        key = run.data.tags.get(names.TRIAL_KEY_TAG)
        if key:
            metrics = run.data.metrics
            recorded[key] = metrics.get(names.FINAL_VAL_DICE, metrics.get(names.DICE_AT_STOP))
    kept = {}
    for trial_id, result in found.items():
        key = result.tags.get("trial_key", "")
        dice = recorded.get(key)
        if key in recorded and dice is not None and (result.final_val_dice is None or abs(result.final_val_dice - dice) > 1e-6):
            logger.warning("kept result of %s says Dice %s, MLflow recorded %s: it is not trusted, the trial trains again", trial_id, result.final_val_dice, dice)
            continue
        kept[trial_id] = result
    return kept


def pending_location(results_out: str | os.PathLike[str], *, parent_run_id: str | None, plan: TrialPlan, role: str) -> str:
    """Where a pack's MLflow data waits while the server does not answer.

    With ``PROXYHPO_CHECKPOINT_ROOT`` set (a cluster: a folder of the chart's MinIO bucket), under it —
    ``<root>/<parent run>/mlflow-pending/<role>-<hash of the trial ids>.json`` — so it survives the pod and
    the pack's retry finds it; otherwise beside the results file (:func:`proxyhpo.tracking.pending_path_for`).
    """
    if not os.environ.get("PROXYHPO_CHECKPOINT_ROOT"):
        return str(tracking.pending_path_for(results_out))
    pack = _sha256(sorted(spec.trial_id for spec in plan.trials))[:16]
    return f"{study_folder(parent_run_id or 'standalone')}/mlflow-pending/{role}-{pack}.json"


# --- the parent run ------------------------------------------------------------------------------------------------


def _launched_here(tags: Mapping[str, str]) -> bool:
    return tags.get(tracking.HOST_TAG) == socket.gethostname() and tags.get(tracking.PID_TAG, "").isdigit()


def _unfinished_parents(mlflow_client: Any, experiment_id: str, kind: str, config_hash: str) -> list[Any]:
    """The study's parent runs of pipeline ``kind`` and this config, launched on this host, that did not finish; newest first."""
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{tracking.ROLE_TAG}` = '{names.ROLE_STUDY}' and tags.`{tracking.PIPELINE_TAG}` = '{kind}' and tags.`{CONFIG_HASH_TAG}` = '{config_hash}'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    return [run for run in runs if run.info.status != "FINISHED" and _launched_here(run.data.tags)]


def _close_dead_children(mlflow_client: Any, run: Any) -> None:
    """Close the RUNNING child runs of parent ``run`` whose process has ended (FAILED, orphaned)."""
    tracking.close_orphans(mlflow_client, tracking.running_children(mlflow_client, run.info.experiment_id, run.info.run_id))


def _close(mlflow_client: Any, run: Any, reason: str) -> None:
    """Close an unfinished parent whose launcher is gone, FAILED with ``reason``, and its children whose process is gone."""
    _close_dead_children(mlflow_client, run)
    if run.info.status == "RUNNING":
        mlflow_client.set_tag(run.info.run_id, tracking.FAIL_REASON_TAG, reason)
        mlflow_client.set_terminated(run.info.run_id, status="FAILED")


def open_parent_run(study: StudyConfig, kind: str, *, fresh: bool = False, tracking_uri: str | None = None) -> tuple[str, bool]:
    """The local launcher's parent run for ``study``: the unfinished one reopened, or a new one.

    Args:
        study: the study as the pipeline's first task resolves it (its config hash identifies it).
        kind: the pipeline kind (``proxyhpo.pipeline``).
        fresh: start a new parent run even when an unfinished one exists (``--fresh``); the unfinished
            ones still RUNNING are closed FAILED (:data:`SUPERSEDED_REASON`).

    Returns:
        ``(run id, resumed)``.

    Raises:
        ProxyHPOError: when the study is running already: its parent run is RUNNING and its launcher
            process is alive.
    """
    mlflow_client = tracking.client(tracking_uri)
    experiment_id = tracking.ensure_experiment(study.name, tracking_uri)
    config_hash = config_sha256(study)
    unfinished = _unfinished_parents(mlflow_client, experiment_id, kind, config_hash)
    for run in unfinished:
        if run.info.status == "RUNNING" and not tracking.process_gone(run.data.tags):
            raise ProxyHPOError(
                f"study {study.name!r} is running already (process {run.data.tags[tracking.PID_TAG]}, MLflow run {run.info.run_id}); "
                "fix: wait for it to end, or stop it (Ctrl-C) and run the same command again to resume it"
            )
    resumed, *older = unfinished if unfinished and not fresh else [None, *unfinished]
    for run in older:
        _close(mlflow_client, run, SUPERSEDED_REASON)
    if resumed is not None:
        _close_dead_children(mlflow_client, resumed)

    def create() -> str:
        run_id = tracking.start_parent_run(study.name, kind, config=study.model_dump(mode="json"), tracking_uri=tracking_uri)
        mlflow_client.set_tag(run_id, CONFIG_HASH_TAG, config_hash)
        return run_id

    # reopened: RUNNING again, its fail reason dropped, its attempt counted, this launcher's process tags
    return tracking.reopen_or_create(mlflow_client, resumed, create, clear_fail_reason=True)


def adopt_parent_run(study: StudyConfig, run_id: str, *, pipeline_run: str, tracking_uri: str | None = None) -> str:
    """The pipeline's first task takes the parent run its launcher opened: tag the KFP run on it (the exit handler finds it by that).

    Raises:
        ConfigError: when the run is not a parent run of this study and config (:data:`PARENT_ENV` set by hand).
    """
    mlflow_client = tracking.client(tracking_uri)
    try:
        run = mlflow_client.get_run(run_id)
    except Exception:
        run = None
    expected = tracking.ensure_experiment(study.name, tracking_uri)
    if run is None or run.info.experiment_id != expected or run.data.tags.get(CONFIG_HASH_TAG) != config_sha256(study):
        raise ConfigError(
            PARENT_ENV,
            f"names run {run_id!r}, which is not a parent run of study {study.name!r} with this config",
            f"unset {PARENT_ENV}: `proxyhpo run` sets it for the runs it launches",
        )
    mlflow_client.set_tag(run_id, tracking.KFP_RUN_TAG, pipeline_run)
    return run_id
