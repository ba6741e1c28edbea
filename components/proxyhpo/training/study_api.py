"""Trials as a study runs them: a pack of proposals from one round, and the final model.

This turns the study's config, its prepared data and the controller's proposals into
:class:`~proxyhpo.training.plan.TrialPlan` objects, runs them with live MLflow logging, and writes
their results. The KFP training components call nothing else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from proxyhpo import paths, tracking
from proxyhpo.controller.rounds import PackSpec, trial_id_for
from proxyhpo.data.msd import load_dataset
from proxyhpo.data.prepare import StudyData, entries_for, split_cases
from proxyhpo.errors import ConfigError
from proxyhpo.networks import NetworkConfig
from proxyhpo.training.plan import HyperParameters, Recipe, TrialPlan, TrialSpec, load_preset
from proxyhpo.training.result import TrialResult, TrialState, write_results

logger = logging.getLogger(__name__)

__all__ = ["failed_result", "study_recipe", "search_split", "build_search_plan", "train_pack", "train_final", "train_from_file", "hyperparameters_from"]


def study_recipe(study: Any) -> Recipe:
    """The study's recipe, with the data config's label merge applied."""
    recipe = load_preset(study.training.recipe) if isinstance(study.training.recipe, str) else study.training.recipe
    if study.data.merge_labels:
        recipe = recipe.model_copy(update={"label_merge": dict(study.data.merge_labels)})
    return recipe


def search_split(study: Any, case_ids: list[str]) -> tuple[list[str], list[str]]:
    """The search data's train/validation split (the paper splits proxy data 50/50)."""
    return split_cases(case_ids, study.data.val_fraction, study.data.split_seed)


def hyperparameters_from(values: dict[str, Any], defaults: HyperParameters | None = None) -> HyperParameters:
    """Hyper-parameters from a proposal's values; names the search space does not cover keep their defaults.

    Raises:
        ConfigError: when the search space names a hyper-parameter the trainer does not know.
    """
    known = set(HyperParameters.model_fields)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError("search.space", f"hyper-parameters {unknown} are not trainable", f"search only {sorted(known)}")
    base = (defaults or HyperParameters(lr=1e-3)).model_dump()
    return HyperParameters.model_validate({**base, **values})


def _cache_dir(data: StudyData, recipe: Recipe) -> str:
    return str(paths.proxyhpo_home() / "cache" / f"{data.dataset_sha256[:16]}-{recipe.name}")


def _network(kind: str, levels: int) -> NetworkConfig:
    return NetworkConfig.full() if kind == "full" else NetworkConfig.proxy(levels)


def build_search_plan(study: Any, data: StudyData, manifest: Any, pack: PackSpec) -> TrialPlan:
    """The trial plan of one pack: its proposals on the search data's train/validation split."""
    dataset = load_dataset(data.dataset)
    train_ids, val_ids = search_split(study, list(manifest.case_ids))
    data_label = "full" if manifest.method == "full" else f"{manifest.method}-{manifest.budget}"
    network = _network(study.training.network, study.training.proxy_levels)
    trials = [
        TrialSpec(
            trial_id=trial_id_for(proposal),
            hyper=hyperparameters_from(dict(proposal.values)),
            network=network,
            seed=study.training.seed + proposal.proposal_id,
            data_label=data_label,
            round=proposal.round,
            tags={"proposal_id": str(proposal.proposal_id)},
        )
        for proposal in pack.proposals
    ]
    recipe = study_recipe(study)
    return TrialPlan(
        recipe=recipe,
        train=entries_for(dataset, train_ids),
        val=entries_for(dataset, val_ids),
        epochs=study.training.epochs,
        val_every=study.training.val_every,
        batch_size=study.training.batch_size,
        trials=trials,
        pack_size=study.training.pack_size,
        cache_dir=_cache_dir(data, recipe),
    )


def _run_logged(study: Any, plan: TrialPlan, *, parent_run_id: str | None, data_label: str, role: str) -> list[TrialResult]:
    from proxyhpo.training.runner import run_trials

    resolved = {"study": study.model_dump(mode="json"), "plan": plan.model_dump(mode="json")}
    with tracking.trial_runs(study.name, plan.trials, parent_run_id=parent_run_id, data=data_label, resolved_config=resolved, role=role) as runs:
        try:
            results = run_trials(plan, on_epoch=lambda trial_id, epoch, dice: runs[trial_id].log_epoch(epoch, dice), progress=True)
        except Exception as exc:  # a crashed pack fails its trials, never the study
            logger.exception("pack %s crashed", [spec.trial_id for spec in plan.trials])
            results = [failed_result(spec, f"pack crashed: {type(exc).__name__}: {exc}") for spec in plan.trials]
        for result in results:
            runs[result.trial_id].finish(result)
    return results


def failed_result(spec: TrialSpec, reason: str) -> TrialResult:
    """A FAILED result for a trial that produced nothing (its pack crashed before it finished)."""
    return TrialResult(
        trial_id=spec.trial_id,
        state=TrialState.FAILED,
        fail_reason=reason.splitlines()[0][:500] if reason else "failed",
        hyper=spec.hyper,
        network=spec.network.name,
        data_label=spec.data_label,
        seed=spec.seed,
        round=spec.round,
        tags=dict(spec.tags),
    )


def train_pack(
    study: Any,
    data: StudyData,
    manifest: Any,
    pack: PackSpec,
    *,
    parent_run_id: str | None,
    results_out: str | os.PathLike[str],
) -> list[TrialResult]:
    """Train one pack of a round, log each trial as an MLflow child run, and write the results file.

    A trial that diverges or runs out of memory is a FAILED result; the others of the pack finish.
    """
    plan = build_search_plan(study, data, manifest, pack)
    results = _run_logged(study, plan, parent_run_id=parent_run_id, data_label=plan.trials[0].data_label, role="trial")
    write_results(results_out, results)
    return results


def train_final(
    study: Any,
    data: StudyData,
    values: dict[str, Any],
    *,
    parent_run_id: str | None,
    results_out: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
) -> TrialResult:
    """Train the final model with the best hyper-parameters on all search cases with the full network.

    It is validated on the held-out internal cases and tested on the external set, when there is one.
    """
    dataset = load_dataset(data.dataset)
    external = load_dataset(data.external) if data.external else None
    recipe = study_recipe(study)
    spec = TrialSpec(
        trial_id="final",
        hyper=hyperparameters_from(values),
        network=_network(study.final.network, study.training.proxy_levels),
        seed=study.final.seed,
        data_label="full",
        tags={"role": "final"},
    )
    plan = TrialPlan(
        recipe=recipe,
        train=entries_for(dataset, data.search_ids),
        val=entries_for(dataset, data.holdout_ids),
        test=entries_for(external, data.external_ids) if external else [],
        epochs=study.final.epochs,
        val_every=study.training.val_every,
        batch_size=study.training.batch_size,
        trials=[spec],
        pack_size=1,
        cache_dir=_cache_dir(data, recipe),
        save_model_dir=str(Path(model_dir)),
    )
    (result,) = _run_logged(study, plan, parent_run_id=parent_run_id, data_label="full", role="final")
    write_results(results_out, [result])
    return result


def train_from_file(path: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None) -> list[Path]:
    """``proxyhpo train TRIAL.yaml``: run a trial or a pack and write the results JSON.

    With ``MLFLOW_TRACKING_URI`` set, every trial is an MLflow run (experiment ``$MLFLOW_EXPERIMENT_NAME``,
    default ``proxyhpo-trials``) with the params and metrics of DESIGN's contract.

    Returns:
        The results file written.
    """
    from proxyhpo.training.runner import run_trial_file

    plan = TrialPlan.from_yaml(path)
    target = Path(out) if out else Path(path).with_suffix(".results.json")
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        run_trial_file(path, target)
        return [target]
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "proxyhpo-trials")
    resolved = {"plan": plan.model_dump(mode="json"), "plan_file": str(Path(path).absolute())}
    with tracking.trial_runs(experiment, plan.trials, parent_run_id=None, data=plan.trials[0].data_label, resolved_config=resolved) as runs:
        results = run_trial_file(path, target, on_epoch=lambda trial_id, epoch, dice: runs[trial_id].log_epoch(epoch, dice))
        for result in results:
            runs[result.trial_id].finish(result)
    return [target]
