"""Trials as a study runs them: a pack of proposals from one round, the final model, a comparison study's cell.

This turns the study's config, its prepared data and the controller's proposals into
:class:`~proxyhpo.config.TrialPlan` objects, runs them with live MLflow logging, and writes
their results. The KFP training components call nothing else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyhpo import paths, tracking
from proxyhpo.tracking import names
from proxyhpo.tracking.pending import pending_exists
from proxyhpo.config import (
    HyperParameters,
    NetworkConfig,
    PackSpec,
    ProxyDataManifest,
    Recipe,
    StudyCell,
    StudyConfig,
    StudyData,
    TrialPlan,
    TrialResult,
    TrialResults,
    TrialSpec,
    TrialState,
    grid_points,
    resolve_recipe,
)
from proxyhpo.controller.rounds import final_hyperparameters
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.prepare import classes_after_merge, entries_for
from proxyhpo.training import repeats
from proxyhpo.errors import ConfigError, TrialError

logger = logging.getLogger(__name__)

__all__ = ["failed_result", "study_recipe", "build_search_plan", "train_pack", "train_final", "final_model_plan", "train_final_model", "train_cell", "train_from_file", "hyperparameters_from"]


def study_recipe(study: StudyConfig) -> Recipe:
    """The study's recipe, with the data config's label merge applied."""
    recipe = resolve_recipe(study.training.recipe)
    if study.data.merge_labels:
        recipe = recipe.model_copy(update={"label_merge": dict(study.data.merge_labels)})
    return recipe


def hyperparameters_from(searched: dict[str, Any], defaults: HyperParameters | None = None) -> HyperParameters:
    """Hyper-parameters from a proposal's searched values; names the search space does not cover keep their defaults.

    Raises:
        ConfigError: when the search space names a hyper-parameter the trainer does not know.
    """
    known = set(HyperParameters.model_fields)
    unknown = sorted(set(searched) - known)
    if unknown:
        raise ConfigError("search.space", f"hyper-parameters {unknown} are not trainable", f"search only {sorted(known)}")
    base = (defaults or HyperParameters(lr=1e-3)).model_dump()
    return HyperParameters.model_validate({**base, **searched})


def _cache_dir(data: StudyData, recipe: Recipe) -> str:
    return str(paths.proxyhpo_home() / "cache" / f"{data.dataset_sha256[:16]}-{recipe.name}")


def _study_plan(
    study: StudyConfig,
    data: StudyData,
    trials: list[TrialSpec],
    train_ids: Sequence[str],
    val_ids: Sequence[str],
    *,
    external: bool,
    internal_test: Sequence[str] = (),
    **settings: Any,
) -> TrialPlan:
    """A trial plan with the study's recipe and schedule on ``train_ids``/``val_ids`` of the study's data set.

    Args:
        external: test every trial on the study's external set, when it has one.
        internal_test: the untouched internal test cases (the final model's held-out cases), tested once.
        settings: plan settings that differ from the study's search schedule (the final model's epochs, ...).
    """
    dataset = load_dataset(data.dataset, cases={*train_ids, *val_ids, *internal_test})  # from S3, a pack stages only its cases
    external_set = load_dataset(data.external) if external and data.external else None
    recipe = study_recipe(study)
    schedule = {"epochs": study.training.epochs, "val_every": study.training.val_every, "batch_size": study.training.batch_size, "pack_size": study.training.pack_size}
    classes = classes_after_merge(dataset.labels, recipe.label_merge, source=str(dataset.dataset_json), strict=False)
    if len(classes) > 2:  # one output per class; a binary plan stays as it was
        settings = {"classes": classes, **settings}
    return TrialPlan(
        recipe=recipe,
        train=entries_for(dataset, train_ids),
        val=entries_for(dataset, val_ids),
        internal_test=entries_for(dataset, internal_test),
        test=entries_for(external_set, data.external_ids) if external_set else [],
        trials=trials,
        cache_dir=_cache_dir(data, recipe),
        **(schedule | settings),
    )


def _network(study: StudyConfig, kind: str) -> NetworkConfig:
    """The study family's full or proxy network, planned for the study's patch and spacing (``dynunet`` plans from them)."""
    family, recipe = study.training.network_family, study_recipe(study)
    network = NetworkConfig.full(family) if kind == "full" else NetworkConfig.proxy(study.training.proxy_levels, family)
    return network.for_data(recipe.patch_size, recipe.spacing)


def build_search_plan(study: StudyConfig, data: StudyData, manifest: ProxyDataManifest, pack: PackSpec, *, arm: str | None = None) -> TrialPlan:
    """The trial plan of one pack: its proposals on the manifest's train/validation split.

    With ``search.early_stopping`` the plan stops trials early (successive halving), and its proposals
    queue for its ``pack_size`` slots in proposal order. ``arm`` names the automl comparison's search
    the pack belongs to (its trials' ``proxyhpo.arm`` tag).

    Raises:
        ConfigError: when the manifest was not chosen from the study's data.
    """
    manifest.check_against(data)
    trials = _pack_trials(study, manifest, pack, arm=arm)
    return _study_plan(study, data, trials, manifest.train_ids, manifest.val_ids, external=False, early_stopping=study.search.early_stopping)


def _pack_trials(study: StudyConfig, manifest: ProxyDataManifest, pack: PackSpec, *, arm: str | None) -> list[TrialSpec]:
    """The trials of one pack, one per proposal (read no data)."""
    data_label = "full" if manifest.method == "full" else f"{manifest.method}-{manifest.budget}"
    network = _network(study, study.training.network)
    return [
        TrialSpec(
            # the automl comparison's searches propose alike: the arm keeps their trials apart (in MLflow too)
            trial_id=f"{arm}-{proposal.trial_id}" if arm else proposal.trial_id,
            hyperparameters=hyperparameters_from(dict(proposal.hyperparameters)),
            network=network,
            seed=study.training.seed + proposal.proposal_id,
            data_label=data_label,
            round=proposal.round,
            tags={names.PROPOSAL_ID_KEY: str(proposal.proposal_id)} | ({names.ARM_KEY: arm} if arm else {}),
        )
        for proposal in pack.proposals
    ]


def _run_logged(
    study: StudyConfig,
    plan: TrialPlan,
    *,
    parent_run_id: str | None,
    data_label: str,
    role: str,
    hyperparameter_names: tuple[str, ...] | None = None,
    results_out: str | os.PathLike[str] | None = None,
    failure_at: str | None = None,
) -> list[TrialResult]:
    """Train ``plan`` with live MLflow logging; trials an earlier start of the study finished are not trained again.

    Each trial carries its identity (:func:`proxyhpo.resume.trial_key`, tag ``trial_key``). Under a study
    run, a trial whose result an earlier start of the same study kept (:func:`proxyhpo.resume.finished_results`)
    is not trained again: its kept result stands, and its MLflow run is left as it is (what an outage left
    pending for it is logged first). A plan that saves
    weights (the final model: its weights are an output of this pipeline run) trains again, from its checkpoint.
    Every result a pack produces (a crash excepted) is kept for a later start. A crash is recorded at
    ``failure_at`` (:mod:`proxyhpo.training.repeats`): a deterministic one is not retried.

    SIGTERM (an evicted pod) ends it like Ctrl-C: the open runs are marked FAILED with the reason
    ``terminated (SIGTERM)`` and :class:`~proxyhpo.signals.Terminated` (exit code 143) unwinds. While MLflow
    does not answer, logging waits in the pending file (:func:`proxyhpo.resume.pending_location`) and training goes on.
    """
    from proxyhpo import resume

    plan = resume.with_trial_keys(plan)
    if results_out is not None:  # an outage's MLflow data first: the kept results are then checked against all MLflow holds
        waiting = resume.pending_location(results_out, parent_run_id=parent_run_id, plan=plan, role=role)
        if pending_exists(waiting):
            tracking.flush_pending(waiting)
    kept = resume.finished_results(parent_run_id, plan) if parent_run_id and plan.save_model_dir is None else {}
    for trial_id in kept:
        logger.warning("trial %s: finished by an earlier start of the study; its result is reused, not trained again", trial_id)
    todo = [spec for spec in plan.trials if spec.trial_id not in kept]
    trained: dict[str, TrialResult] = {}
    if todo:
        subset = plan.model_copy(update={"trials": todo})
        trained = {
            result.trial_id: result
            for result in _train_logged(
                study, subset, parent_run_id=parent_run_id, data_label=data_label, role=role,
                hyperparameter_names=hyperparameter_names, results_out=results_out, failure_at=failure_at,
            )
        }
    return [kept.get(spec.trial_id) or trained[spec.trial_id] for spec in plan.trials]


def _train_logged(
    study: StudyConfig,
    plan: TrialPlan,
    *,
    parent_run_id: str | None,
    data_label: str,
    role: str,
    hyperparameter_names: tuple[str, ...] | None,
    results_out: str | os.PathLike[str] | None,
    failure_at: str | None = None,
) -> list[TrialResult]:
    """Train every trial of ``plan``, one MLflow child run each; keep each result for a later start of the study."""
    from proxyhpo import resume
    from proxyhpo.signals import sigterm_ends_trials
    from proxyhpo.training.runner import run_trials

    resolved = {"study": study.model_dump(mode="json"), "plan": plan.model_dump(mode="json")}
    pending = resume.pending_location(results_out, parent_run_id=parent_run_id, plan=plan, role=role) if results_out is not None else None
    with sigterm_ends_trials(), tracking.trial_runs(
        study.name,
        plan.trials,
        parent_run_id=parent_run_id,
        data=data_label,
        resolved_config=resolved,
        role=role,
        hyperparameter_names=hyperparameter_names or study.search.space.names,
        pending=pending,
    ) as runs:
        crashed = False
        try:
            results = run_trials(plan, on_epoch=lambda trial_id, epoch, dice: runs[trial_id].log_epoch(epoch, dice), progress=True)
        except Exception as exc:  # a crashed pack fails its trials, never the study
            logger.exception("pack %s crashed", [spec.trial_id for spec in plan.trials])
            deterministic = repeats.record(failure_at, exc) if failure_at else repeats.is_deterministic(exc)
            reason = f"pack crashed: {repeats.describe(exc)}" + (f"; {repeats.NOT_RETRIED}" if deterministic else "")
            results = [failed_result(spec, reason) for spec in plan.trials]
            crashed = True
        for result in results:
            runs[result.trial_id].finish(result)
            if parent_run_id and not crashed:  # a crash may be transient: that trial trains again on a later start
                try:
                    resume.keep_result(parent_run_id, result)
                except Exception as exc:  # keeping it saves time later; losing it costs a retrain, never the study
                    logger.warning("trial %s: its result could not be kept for a later start (%s)", result.trial_id, str(exc).splitlines()[0][:200])
    return results


def failed_result(spec: TrialSpec, reason: str) -> TrialResult:
    """A FAILED result for a trial that produced nothing (its pack crashed before it finished)."""
    return TrialResult.of(spec, TrialState.FAILED, fail_reason=reason.splitlines()[0][:500] if reason else "failed")


def train_pack(
    study: StudyConfig,
    data: StudyData,
    manifest: ProxyDataManifest,
    pack: PackSpec,
    *,
    parent_run_id: str | None,
    results_out: str | os.PathLike[str],
    arm: str | None = None,
) -> list[TrialResult]:
    """Train one pack of a round, log each trial as an MLflow child run, and write the results file.

    A trial that diverges or runs out of memory is a FAILED result; the others of the pack finish.
    In the automl comparison, ``arm`` names the search: its data and network are the arm's. Under a study
    run, a pack whose earlier attempt failed deterministically (a config or data error, or a crash repeated
    identically; :mod:`proxyhpo.training.repeats`) is not trained again: its trials are FAILED at once.
    """
    if arm:
        study = study.for_search_arm(arm)
    inputs = (study.model_dump(mode="json"), data.model_dump(mode="json"), manifest.model_dump(mode="json"), pack.model_dump(mode="json"))
    failure_at = repeats.failure_location(parent_run_id, f"pack-r{pack.round}-p{pack.pack_index}{f'-{arm}' if arm else ''}", *inputs) if parent_run_id else None
    earlier = repeats.deterministic_failure(failure_at) if failure_at else None
    if earlier:
        logger.error("pack %d of round %d: an earlier attempt failed with %s; %s", pack.pack_index, pack.round, earlier, repeats.NOT_RETRIED)
        results = [failed_result(spec, f"pack crashed: {earlier}; {repeats.NOT_RETRIED}") for spec in _pack_trials(study, manifest, pack, arm=arm)]
    else:
        try:
            plan = build_search_plan(study, data, manifest, pack, arm=arm)
        except Exception as exc:
            if failure_at:
                repeats.record(failure_at, exc)
            raise
        results = _run_logged(
            study, plan, parent_run_id=parent_run_id, data_label=plan.trials[0].data_label, role=names.ROLE_TRIAL, results_out=results_out, failure_at=failure_at
        )
        if failure_at and not all((result.fail_reason or "").startswith("pack crashed") for result in results):
            repeats.forget(failure_at)
    TrialResults(results=tuple(results)).write(results_out)
    return results


def train_final(
    study: StudyConfig,
    data: StudyData,
    controller_state: str | os.PathLike[str],
    *,
    parent_run_id: str | None,
    results_out: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    arm: str | None = None,
    repeat: int = 0,
) -> TrialResult:
    """Train the final model with the search's best hyper-parameters on the search cases.

    The best proposal is read from the controller's final state; the network is ``final.network``
    (the full U-Net by default). The model trains on the search-train cases, its checkpoint is chosen
    on the search-validation cases, and its best-validation weights are tested once on the untouched
    held-out cases (internal test Dice) and on the external set, when there is one; they are saved in
    ``model_dir`` (:func:`final_model_plan`). In the automl comparison, ``arm`` names the search whose
    result it trains and ``repeat`` (a new initialisation, same split) the repetition.

    Raises:
        TrialError: when every search trial failed, so there are no hyper-parameters to train with.
    """
    searched = final_hyperparameters(study.for_search_arm(arm) if arm else study, controller_state)
    return train_final_model(study, data, searched, parent_run_id=parent_run_id, results_out=results_out, model_dir=model_dir, arm=arm, repeat=repeat)


def final_name(arm: str | None, repeat: int) -> str:
    """A final model's trial id: ``final-<arm>-r<repeat>`` in a comparison, else ``final`` (``final-r<repeat>`` for
    the further initialisations the search benchmark trains)."""
    if arm:
        return f"final-{arm}-r{repeat}"
    return f"final-r{repeat}" if repeat else "final"


def final_model_plan(
    study: StudyConfig,
    data: StudyData,
    searched: dict[str, Any],
    *,
    model_dir: str | os.PathLike[str],
    parent_run_id: str | None = None,
    arm: str | None = None,
    repeat: int = 0,
) -> TrialPlan:
    """The final model's plan: three disjoint sets, so that its internal test Dice is a test.

    It trains on the search-train cases, chooses its checkpoint on the search-validation cases, and is
    tested once, with those weights, on the held-out cases (``internal_test``) and on the external set.
    """
    spec = TrialSpec(
        trial_id=final_name(arm, repeat),
        hyperparameters=hyperparameters_from(searched),
        network=_network(study, study.final.network),
        seed=study.final.seed + repeat,
        data_label="full",
        tags={names.ROLE_KEY: names.ROLE_FINAL} | ({names.ARM_KEY: arm, names.REPEAT_KEY: str(repeat)} if arm else {}),
    )
    return _study_plan(
        study,
        data,
        [spec],
        data.search_train_ids,
        data.search_val_ids,
        internal_test=data.holdout_ids,
        external=True,
        epochs=study.final.epochs,
        pack_size=1,
        save_model_dir=str(Path(model_dir)),
        # hundreds of epochs of the full network: a preempted pod must not lose them; its retry resumes here
        checkpoint=f"{paths.checkpoint_root().rstrip('/')}/{parent_run_id or 'local'}/{spec.trial_id}.pt",
        checkpoint_every=study.training.val_every,
    )


def train_final_model(
    study: StudyConfig,
    data: StudyData,
    searched: dict[str, Any],
    *,
    parent_run_id: str | None,
    results_out: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    arm: str | None = None,
    repeat: int = 0,
) -> TrialResult:
    """Train the final model (:func:`final_model_plan`) with hyper-parameters ``searched`` (any search's best), as :func:`train_final` does.

    The search benchmark trains each strategy's best this way (:mod:`proxyhpo.search.bench`). Under a study
    run, a retried attempt after a deterministic failure (:mod:`proxyhpo.training.repeats`) stops at once.

    Raises:
        TrialError: when an earlier attempt on the same inputs failed deterministically (one line, not retried).
    """
    from proxyhpo.export.final_model import export_final_model

    name = final_name(arm, repeat)
    failure_at = repeats.failure_location(parent_run_id, name, study.model_dump(mode="json"), data.model_dump(mode="json"), searched) if parent_run_id else None
    earlier = repeats.deterministic_failure(failure_at) if failure_at else None
    if earlier:
        raise TrialError(f"{name}: an earlier attempt failed with {earlier}; {repeats.NOT_RETRIED}: fix that and run again")
    try:
        plan = final_model_plan(study, data, searched, model_dir=model_dir, parent_run_id=parent_run_id, arm=arm, repeat=repeat)
        (result,) = _run_logged(study, plan, parent_run_id=parent_run_id, data_label="full", role=names.ROLE_FINAL, results_out=results_out)
    except Exception as exc:
        if failure_at:
            repeats.record(failure_at, exc)
        raise
    if failure_at:
        repeats.forget(failure_at)
    TrialResults(results=(result,)).write(results_out)
    # the result leaves as a MONAI bundle: <model_dir>/bundle, logged to the final run and registered under the study's name
    export_final_model(study, data, plan, result, parent_run_id=parent_run_id, model_dir=model_dir)
    return result


def train_cell(
    study: StudyConfig,
    data: StudyData,
    cell: StudyCell,
    *,
    parent_run_id: str | None,
    results_out: str | os.PathLike[str],
    role: str = names.ROLE_TRIAL,
) -> list[TrialResult]:
    """Train one cell of a comparison study: its whole grid, as packs, on the cell's data and network.

    Every trial is scored on the cell's validation cases (internal Dice) and on the external set when
    the study has one (external Dice); each is an MLflow child run tagged with the cell's study, arm,
    repeat and grid point. The trust check trains ``studies.trust.grid``, the others ``studies.grid``.
    ``role`` is the runs' ``proxyhpo.role``: ``trial``, or ``calibration`` for the HPO search's trust gate
    (whose report then counts the cost, not the Dice, of those runs).
    """
    grid = study.studies.trust.grid if cell.study == "trust" else study.studies.grid
    trials = [
        TrialSpec(
            trial_id=f"{cell.arm}-r{cell.repeat}-p{index:02d}",
            hyperparameters=hyperparameters_from(dict(point.hyperparameters)),
            network=cell.network,
            # a repeat is a new initialisation; within it every arm starts each grid point alike
            seed=study.training.seed + 1000 * cell.repeat + index,
            data_label=cell.arm,
            tags={names.STUDY_KEY: cell.study, names.ARM_KEY: cell.arm, names.REPEAT_KEY: str(cell.repeat), names.POINT_KEY: point.point_id},
        )
        for index, point in enumerate(grid_points(grid))
    ]
    plan = _study_plan(study, data, trials, cell.train_ids, cell.val_ids, external=True)
    results = _run_logged(study, plan, parent_run_id=parent_run_id, data_label=cell.arm, role=role, hyperparameter_names=tuple(grid), results_out=results_out)
    TrialResults(results=tuple(results)).write(results_out)
    return results


def train_from_file(path: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None) -> list[Path]:
    """``proxyhpo train TRIAL.yaml``: run a trial or a pack and write the results JSON.

    With ``MLFLOW_TRACKING_URI`` set, every trial is an MLflow run (experiment ``$MLFLOW_EXPERIMENT_NAME``,
    default ``proxyhpo-trials``) with the params and metrics of DESIGN's contract, tagged with the trial id
    and the sha256 of the plan file (``proxyhpo.plan_sha256``): the trial's identity. A start finds runs of
    the same identity left RUNNING by a killed process and closes them (FAILED, ``orphaned: ...``).

    Faults:
        - A tracking server that does not answer at the start fails the command within seconds, before
          any training (one line; unset ``MLFLOW_TRACKING_URI`` to train without tracking).
        - A server that stops answering later does not stop training: logging waits in
          ``<results>.mlflow-pending.json`` beside the results and is logged at the end if the server is
          back, else by the next ``proxyhpo train`` of the same plan (which then trains nothing again: its
          results stand, :func:`_logged_after_outage`) or :func:`proxyhpo.tracking.flush_pending`.
        - SIGTERM marks the open runs FAILED (``terminated (SIGTERM)``) and exits with code 143.

    Returns:
        The results file written.

    Raises:
        ProxyHPOError: when the tracking server does not answer at the start.
    """
    import hashlib

    from proxyhpo.signals import sigterm_ends_trials
    from proxyhpo.training.runner import run_trial_file

    plan = TrialPlan.from_yaml(path)
    target = Path(out) if out else Path(path).with_suffix(".results.json")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        with sigterm_ends_trials():
            run_trial_file(path, target)
        return [target]
    tracking.check_reachable()
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "proxyhpo-trials")
    resolved = {"plan": plan.model_dump(mode="json"), "plan_file": str(Path(path).absolute())}
    identity = {tracking.PLAN_HASH_TAG: hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    if _logged_after_outage(plan, target, experiment, identity):
        return [target]
    with sigterm_ends_trials(), tracking.trial_runs(
        experiment,
        plan.trials,
        parent_run_id=None,
        data=plan.trials[0].data_label,
        resolved_config=resolved,
        identity=identity,
        pending=tracking.pending_path_for(target),
    ) as runs:
        results = run_trial_file(path, target, on_epoch=lambda trial_id, epoch, dice: runs[trial_id].log_epoch(epoch, dice))
        for result in results:
            runs[result.trial_id].finish(result)
    return [target]


def _logged_after_outage(plan: TrialPlan, target: Path, experiment: str, identity: dict[str, str]) -> bool:
    """Whether an earlier ``proxyhpo train`` of this plan finished while MLflow did not answer, and is now logged.

    Its results (``target``) stand beside what MLflow missed (the pending file): that is logged, and when every
    trial's run (same trial id and plan hash) is then closed, nothing trains again; training would add a
    second run of the same trials. Otherwise (MLflow still down, a trial's end not among what waited) it trains.
    """
    pending = tracking.pending_path_for(target)
    if not (pending.is_file() and target.is_file()):
        return False
    try:
        kept = TrialResults.read(target).results
    except Exception:  # noqa: BLE001 - unreadable results: they train again
        return False
    if sorted(result.trial_id for result in kept) != sorted(spec.trial_id for spec in plan.trials) or not tracking.flush_pending(pending):
        return False
    mlflow_client = tracking.client()
    found = mlflow_client.get_experiment_by_name(experiment)
    selector = " and ".join(f"tags.`{key}` = '{value}'" for key, value in identity.items())
    runs = mlflow_client.search_runs([found.experiment_id], filter_string=selector, max_results=5000) if found else []
    closed = {run.data.tags.get(names.TRIAL_ID_TAG) for run in runs if run.info.status != "RUNNING"}
    if not closed >= {spec.trial_id for spec in plan.trials}:
        return False
    logger.warning("%s: this plan's results stand; what MLflow missed while it did not answer is logged now, nothing trains again (delete the file to train again)", target)
    return True
