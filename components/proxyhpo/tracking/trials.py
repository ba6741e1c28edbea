"""The child runs of trials and of long tasks, resumed by their identity when a task is retried.

One child run per trial, tagged :data:`~proxyhpo.tracking.names.ROLE_TAG` (``trial``, ``final``, ...),
:data:`~proxyhpo.tracking.names.ROUND_TAG` and the spec's own tags as ``proxyhpo.<key>``; params: the
search space's hyper-parameter names plus ``network``, ``data`` and ``seed``; metrics ``val_dice`` (per
validated epoch as steps; its last value is the final Dice), ``gpu_hours``, ``wall_seconds`` and the rest
of :meth:`TrialRun.finish`. Logging never stops training: while the server does not answer, data waits in
the pending file (:mod:`proxyhpo.tracking.pending`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from proxyhpo.tracking import names
from proxyhpo.tracking.connection import client, ensure_experiment, log_params
from proxyhpo.tracking.orphans import close_orphans, process_tags, running_children
from proxyhpo.tracking.pending import Pending, flush_pending, pending_exists
from proxyhpo.tracking.identity import children_by_id, reopen_or_create

__all__ = ["SYSTEM_METRICS_INTERVAL_S", "LOG_RETRY_DELAYS_S", "TrialRun", "trial_runs", "task_run"]

SYSTEM_METRICS_INTERVAL_S = 10
# our own retries of one logging call, on top of MLflow's, before its data is buffered on disk
LOG_RETRY_DELAYS_S = (0.5, 1.5)

logger = logging.getLogger(__name__)


class TrialRun:
    """The MLflow child run of one trial, logged while the trial trains.

    Logging never stops training: a call the server does not answer is retried a few times (seconds in
    all), then its data goes to the pending file (``pending``, beside the results) and the run stops calling
    the server until it finishes; :func:`~proxyhpo.tracking.pending.flush_pending` logs it later.

    Args:
        mlflow_client: the client to log with.
        run_id: the run.
        system_metrics: sample CPU, memory and GPU (through nvidia-ml-py) into this run while it is open.
        logged_epochs: epochs whose validation Dice a resumed run holds already (given: the run was reopened).
        pending: the pending file's path (None: a failed call raises, as before).
    """

    def __init__(
        self,
        mlflow_client,
        run_id: str,
        *,
        system_metrics: bool = True,
        logged_epochs: set[int] | None = None,
        pending: str | os.PathLike[str] | None = None,
    ) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self._monitor = None
        self._logged_epochs: set[int] = set(logged_epochs or ())
        self.reopened = logged_epochs is not None
        self._pending = Pending(pending)
        self.offline = False
        self.closed = False
        if system_metrics:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self._monitor = SystemMetricsMonitor(
                    run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=mlflow_client.tracking_uri
                )
                self._monitor.start()
            except Exception as exc:  # system metrics are a nicety; never fail a trial over them
                logger.warning("system metrics disabled for run %s: %s", run_id, exc)
                self._monitor = None

    def _call(self, action, *, retries: bool = True) -> bool:
        """Run one logging call with bounded retries; False (and the run offline) when the server never answered."""
        from proxyhpo.signals import termination_deferred

        if self._pending.path is None:
            with termination_deferred():  # a SIGTERM never cuts a store write in half
                action()
            return True
        delays = LOG_RETRY_DELAYS_S if retries else ()
        for attempt in range(len(delays) + 1):
            try:
                with termination_deferred():
                    action()
                return True
            except Exception as exc:
                if attempt == len(delays):
                    if not self.offline:
                        logger.warning(
                            "MLflow does not answer (%s); run %s logs to %s until it does",
                            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, self.run_id, self._pending.path,
                        )
                    self.offline = True
                    return False
                time.sleep(delays[attempt])
        return False

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception as exc:
                logger.warning("system metrics of run %s did not stop cleanly: %s", self.run_id, exc)
            self._monitor = None

    def log_epoch(self, epoch: int, val_dice: float) -> None:
        """Log one epoch's validation Dice as step ``epoch`` (once: a resumed run keeps what it logged)."""
        if int(epoch) in self._logged_epochs:
            return
        metric = (names.VAL_DICE, float(val_dice), int(time.time() * 1000), int(epoch))
        if self.offline or not self._call(lambda: self.client.log_metric(self.run_id, metric[0], metric[1], timestamp=metric[2], step=metric[3])):
            self._pending.add(self.run_id, metrics=[metric])
        self._logged_epochs.add(int(epoch))

    def finish(self, result: Any) -> None:
        """Log a :class:`proxyhpo.config.TrialResult` and close the run: FAILED for a failed trial, else FINISHED.

        A trial stopped early is FINISHED too (Optuna calls it pruned, Katib early-stopped; neither a failure),
        tagged :data:`~proxyhpo.tracking.names.STATE_TAG` ``STOPPED`` and
        :data:`~proxyhpo.tracking.names.STOPPED_TAG`; its Dice at the stop is
        :data:`~proxyhpo.tracking.names.DICE_AT_STOP`, never ``final_val_dice``, so nothing reading final Dice
        takes its early one for a final one. A reopened run (a resumed study) that succeeds loses the fail
        reason its interrupted attempt left.

        When the server does not answer, the metrics, tags and final status wait in the pending file.
        """
        from mlflow.entities import Metric

        self._stop_monitor()
        now = int(time.time() * 1000)
        stopped_at = getattr(result, "stopped_at_epoch", None)
        metrics = {
            names.GPU_HOURS: result.gpu_hours,
            names.PROCESS_HOURS: result.process_hours,
            names.WALL_SECONDS: result.wall_seconds,
            names.EPOCHS_RUN: result.epochs_run,
            names.STEPS_RUN: result.steps_run,
            names.PACK_SIZE: result.pack_size,
            names.PEAK_GPU_MEM_BYTES: result.peak_gpu_mem_bytes,
            names.DATA_WAIT_FRACTION: result.data_wait_fraction,
            names.INTERNAL_TEST_DICE: result.internal_test_dice,
            names.TEST_DICE: result.test_dice,
            names.DICE_AT_STOP if stopped_at is not None else names.FINAL_VAL_DICE: result.final_val_dice,
            names.BEST_VAL_DICE: result.best_val_dice,
        }
        batch = [(key, float(value), now, 0) for key, value in metrics.items() if value is not None]
        # val_dice per validated epoch as steps; its last step is the final Dice
        batch += [
            (names.VAL_DICE, float(dice), now, int(epoch))
            for epoch, dice in zip(result.val_epochs, result.val_dice)
            if int(epoch) not in self._logged_epochs
        ]
        # a multi-class task: each class's Dice per validated epoch and on the test sets (issue 20)
        batch += [
            (names.class_dice(names.VAL_DICE, name), float(dice), now, int(epoch))
            for epoch, per_class in zip(result.val_epochs, getattr(result, "val_class_dice", []))
            for name, dice in per_class.items()
        ]
        for metric in (names.INTERNAL_TEST_DICE, names.TEST_DICE):
            batch += [(names.class_dice(metric, name), float(dice), now, 0) for name, dice in getattr(result, metric.replace("_dice", "_class_dice"), {}).items()]
        tags = {names.STATE_TAG: str(result.state.value if hasattr(result.state, "value") else result.state)}
        if result.fail_reason:
            tags[names.FAIL_REASON_TAG] = result.fail_reason[:5000]
        if stopped_at is not None:
            tags[names.STOPPED_TAG] = str(stopped_at)
        status = "FAILED" if result.fail_reason else "FINISHED"
        stale = not result.fail_reason and self.reopened  # an interrupted attempt's reason no longer holds

        def log() -> None:
            self.client.log_batch(self.run_id, metrics=[Metric(*item) for item in batch])
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)
            if stale and names.FAIL_REASON_TAG in self.client.get_run(self.run_id).data.tags:
                self.client.delete_tag(self.run_id, names.FAIL_REASON_TAG)
            self.client.set_terminated(self.run_id, status=status)

        # an offline run tries once more: the server may be back
        if not self._call(log, retries=not self.offline):
            self._pending.add(self.run_id, metrics=batch, tags=tags, status=status)
        self.closed = True

    def close_finished(self) -> None:
        """Close a run that holds no trial's result (a pack's run) FINISHED; a server that does not answer costs only its end."""
        self._stop_monitor()
        self.closed = True
        try:
            self.client.set_terminated(self.run_id, status="FINISHED")
        except Exception as exc:
            logger.warning("run %s could not be closed: %s", self.run_id, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    def abort(self, reason: str) -> None:
        """Close the run FAILED with ``reason`` if it is still open (the block around it raised)."""
        self._stop_monitor()
        if self.closed:
            return
        self.closed = True

        def close() -> None:
            if self.client.get_run(self.run_id).info.status == "RUNNING":
                self.client.set_tag(self.run_id, names.FAIL_REASON_TAG, reason[:5000])
                self.client.set_terminated(self.run_id, status="FAILED")

        try:
            closed = not self.offline and self._call(close, retries=False)
        except Exception as exc:  # no pending file: the error that unwinds must not be hidden by this one
            logger.warning("run %s could not be closed: %s", self.run_id, exc)
            return
        if not closed:
            if not self._pending.add(self.run_id, tags={names.FAIL_REASON_TAG: reason[:5000]}, status="FAILED"):
                logger.warning("run %s could not be closed: MLflow does not answer", self.run_id)


def _logged_steps(mlflow_client: Any, run_id: str, metric: str) -> set[int]:
    """The steps of ``metric`` that run ``run_id`` holds already."""
    return {int(point.step) for point in mlflow_client.get_metric_history(run_id, metric)}


def _replaced(mlflow_client: Any, run: Any, trials: Sequence[Any]) -> bool:
    """Retire ``run`` when its trial trains again as a new trial (its data or config changed: a new ``trial_key``).

    Reopening it would keep the old key and the old per-epoch curve (MLflow deletes no metric history), so the
    trial gets a new run; the old one is closed FAILED with the reason and deleted (restorable: ``mlflow runs restore``).
    """
    wanted = {spec.trial_id: spec.tags.get(names.TRIAL_KEY_KEY) for spec in trials}
    trial_id, old_key = run.data.tags.get(names.TRIAL_ID_TAG), run.data.tags.get(names.TRIAL_KEY_TAG)
    if trial_id not in wanted or not old_key or not wanted[trial_id] or wanted[trial_id] == old_key:
        return False
    run_id = run.info.run_id
    mlflow_client.set_tag(run_id, names.FAIL_REASON_TAG, f"replaced: trial {trial_id} trains again on changed data or config (new trial_key)")
    if run.info.status == "RUNNING":
        mlflow_client.set_terminated(run_id, status="FAILED")
    mlflow_client.delete_run(run_id)
    logger.info("trial %s: its data or config changed; its old run %s is replaced by a new one", trial_id, run_id)
    return True


def _child_tags(spec_tags: Mapping[str, str], *, role: str, trial_id: str, parent_run_id: str | None) -> dict[str, str]:
    """A new child run's tags: the spec's own as ``proxyhpo.<key>``, its role and trial id, and its parent."""
    tags = {names.tag(key): value for key, value in spec_tags.items()} | {names.ROLE_TAG: role, names.TRIAL_ID_TAG: trial_id}
    if parent_run_id:
        tags[names.PARENT_TAG] = parent_run_id
    return tags


@contextmanager
def trial_runs(
    experiment: str,
    trials: list[Any],
    *,
    parent_run_id: str | None,
    data: str,
    resolved_config: Mapping[str, Any],
    tracking_uri: str | None = None,
    system_metrics: bool = True,
    role: str = names.ROLE_TRIAL,
    hyperparameter_names: Sequence[str] | None = None,
    identity: Mapping[str, str] | None = None,
    pending: str | os.PathLike[str] | None = None,
) -> Iterator[dict[str, TrialRun]]:
    """Open one child run per :class:`~proxyhpo.config.TrialSpec` and yield them by trial id.

    Args:
        experiment: the MLflow experiment (the study's name).
        trials: the trial specs.
        parent_run_id: the study's parent run, or None for stand-alone trials.
        data: the ``data`` param (``full``, ``mi+labelcrop-8``, ...).
        resolved_config: logged whole, with the trial's spec, as ``trial_config.json``.
        tracking_uri: the MLflow store (default: the environment's or the embedded one).
        system_metrics: sample CPU, memory and GPU into the run of a trial that trains alone (a pack of
            several shares the machine: its samples would be no one trial's).
        role: the ``proxyhpo.role`` tag (``trial`` or ``final``).
        hyperparameter_names: the hyper-parameters logged as params: a study's search-space names; every
            hyper-parameter the trainer knows when None (a stand-alone plan searches nothing).
        identity: tags that, with the trial id, identify a stand-alone trial (no parent): ``proxyhpo train``
            gives the hash of its plan file (``proxyhpo.plan_sha256``).
        pending: the file where logging waits while the server does not answer (see
            :func:`~proxyhpo.tracking.pending.pending_path_for`); None: a logging failure raises.

    A trial of a study whose run already exists under ``parent_run_id`` (a retried task) resumes that
    run (:func:`~proxyhpo.tracking.identity.reopen_or_create`): it is RUNNING again, its ``proxyhpo.attempt``
    tag counts the attempts, and epochs it logged already are not logged twice; it is never duplicated. A
    trial whose ``trial_key`` changed (its data or config did) is a new trial: its old run is replaced (:func:`_replaced`).

    Orphans are closed first: RUNNING runs of the same parent, or stand-alone runs with the same trial id
    and ``identity``, whose process has ended (killed with SIGKILL) are marked FAILED with
    :data:`~proxyhpo.tracking.names.ORPHANED_REASON`. What an earlier attempt left in ``pending`` is logged first as well.

    Runs still open when the block raises are marked FAILED with the reason (``terminated (SIGTERM)``,
    ``interrupted (SIGINT)``, or the exception), so a crash never leaves runs RUNNING. When the block ends,
    whatever waits in ``pending`` is logged if the server answers again; otherwise the file stays for
    :func:`~proxyhpo.tracking.pending.flush_pending`.
    """
    from proxyhpo.config import HyperParameters
    from proxyhpo.signals import fail_reason_of

    hyperparameters = tuple(hyperparameter_names) if hyperparameter_names is not None else tuple(HyperParameters.model_fields)
    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    if pending is not None and pending_exists(pending):
        flush_pending(pending, tracking_uri=tracking_uri)
    process = process_tags()
    identity = dict(identity or {})
    runs: dict[str, TrialRun] = {}
    # a retried task (an evicted pod, a preempted node) finds its trials' runs by their identity and resumes them
    earlier = children_by_id(mlflow_client, experiment_id, parent_run_id, role) if parent_run_id else {}
    earlier = {trial_id: run for trial_id, run in earlier.items() if not _replaced(mlflow_client, run, trials)}
    if parent_run_id:
        resumed = {earlier[spec.trial_id].info.run_id for spec in trials if spec.trial_id in earlier}
        open_children = running_children(mlflow_client, experiment_id, parent_run_id)
        close_orphans(mlflow_client, [run for run in open_children if run.info.run_id not in resumed])
    for spec in trials:

        def create(spec: Any = spec) -> str:
            if not parent_run_id and identity:
                selector = " and ".join(f"tags.`{key}` = '{value}'" for key, value in {names.TRIAL_ID_TAG: spec.trial_id, **identity}.items())
                same = mlflow_client.search_runs([experiment_id], filter_string=f"{selector} and attributes.status = 'RUNNING'", max_results=1000)
                close_orphans(mlflow_client, [run for run in same if names.PARENT_TAG not in run.data.tags])
            # the spec's own tags (a comparison study's study, arm, repeat and point) become proxyhpo.<key> tags
            tags = _child_tags(spec.tags, role=role, trial_id=spec.trial_id, parent_run_id=parent_run_id) | identity | process
            if spec.round is not None:
                tags[names.ROUND_TAG] = str(spec.round)
            run_id = mlflow_client.create_run(experiment_id, run_name=spec.trial_id, tags=tags).info.run_id
            params = {name: str(getattr(spec.hyperparameters, name)) for name in hyperparameters}
            if "lr" in params:  # the compare view's axes are linear: log10 spreads a log-uniform lr evenly
                params[names.LOG10_LR_PARAM] = f"{math.log10(float(params['lr'])):.4f}"
            params.update({names.NETWORK_PARAM: spec.network.name, names.DATA_PARAM: data, names.SEED_PARAM: str(spec.seed)})
            log_params(mlflow_client, run_id, params)
            mlflow_client.log_dict(run_id, {**resolved_config, "trial": spec.model_dump(mode="json")}, names.TRIAL_CONFIG_ARTIFACT)
            return run_id

        run_id, reopened = reopen_or_create(mlflow_client, earlier.get(spec.trial_id), create)
        logged = _logged_steps(mlflow_client, run_id, names.VAL_DICE) if reopened else None
        # CPU, memory and GPU are the process's: a trial's own only when it trains alone, else the pack's run's
        runs[spec.trial_id] = TrialRun(mlflow_client, run_id, system_metrics=system_metrics and len(trials) == 1, logged_epochs=logged, pending=pending)
    pack = _pack_run(mlflow_client, experiment_id, trials, parent_run_id, process) if system_metrics and len(trials) > 1 and parent_run_id else None
    try:
        yield runs
    except BaseException as exc:
        reason = fail_reason_of(exc)
        for trial_run in (*runs.values(), *([pack] if pack else [])):
            trial_run.abort(reason)
        raise
    finally:
        for trial_run in runs.values():
            trial_run._stop_monitor()
        if pack is not None and not pack.closed:
            pack.close_finished()
    if pending is not None and pending_exists(pending):
        flush_pending(pending, tracking_uri=tracking_uri)


def _pack_run(mlflow_client: Any, experiment_id: str, trials: Sequence[Any], parent_run_id: str, process: Mapping[str, str]) -> TrialRun | None:
    """A run beside a pack's trial runs (role ``pack``) that samples the machine's system metrics while the pack trains.

    Its trials share the process, so its CPU, memory and GPU are no single trial's; the pack's run holds them, tagged
    with the trials it trained. A run that cannot be opened (MLflow down) costs the samples, never the pack.
    """
    ids = [spec.trial_id for spec in trials]
    tags = {
        names.PARENT_TAG: parent_run_id, names.ROLE_TAG: names.ROLE_PACK, names.PACK_TRIALS_TAG: ",".join(ids)[:5000], **process,
        **({names.ROUND_TAG: str(trials[0].round)} if trials[0].round is not None else {}),
    }
    try:
        run_id = mlflow_client.create_run(experiment_id, run_name=f"pack {ids[0]}..{ids[-1]}", tags=tags).info.run_id
    except Exception as exc:
        logger.warning("the pack's run (system metrics) could not be opened: %s", str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return None
    return TrialRun(mlflow_client, run_id, system_metrics=True)


@contextmanager
def task_run(
    experiment: str,
    *,
    parent_run_id: str | None,
    role: str,
    task_id: str,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    tracking_uri: str | None = None,
) -> Iterator[tuple[Any, str, set[int]]]:
    """One child run of a long pipeline task (a NAS search task), resumed by ``task_id`` when the task is retried.

    Yields ``(client, run_id, logged_steps)``: the steps of metric ``reward_mean`` the run holds already (a
    retried task does not log them twice). The run is FAILED with the reason when the block raises, and
    left open when it ends: the caller logs the task's totals and closes it with :func:`~proxyhpo.tracking.parent.finish_run`.
    """
    from proxyhpo.signals import fail_reason_of

    mlflow_client = client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    earlier = children_by_id(mlflow_client, experiment_id, parent_run_id, role).get(task_id) if parent_run_id else None

    def create() -> str:
        run_tags = _child_tags(tags or {}, role=role, trial_id=task_id, parent_run_id=parent_run_id) | process_tags()
        run_id = mlflow_client.create_run(experiment_id, run_name=task_id, tags=run_tags).info.run_id
        log_params(mlflow_client, run_id, dict(params or {}))
        return run_id

    run_id, reopened = reopen_or_create(mlflow_client, earlier, create)
    logged = _logged_steps(mlflow_client, run_id, names.REWARD_MEAN) if reopened else set()
    try:
        yield mlflow_client, run_id, logged
    except BaseException as exc:
        try:
            mlflow_client.set_tag(run_id, names.FAIL_REASON_TAG, fail_reason_of(exc)[:5000])
            mlflow_client.set_terminated(run_id, status="FAILED")
        except Exception as inner:  # the error that unwinds must not be hidden by this one
            logger.warning("run %s could not be closed: %s", run_id, inner)
        raise
