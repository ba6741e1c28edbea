"""The HPO pipeline's last training step hands its final model on as a MONAI bundle, in MLflow and its registry.

:func:`export_final_model` runs right after the final model trains (:func:`proxyhpo.training.study_trials.train_final_model`):
it writes the bundle beside the weights (``<model_dir>/bundle``, the pipeline's model artifact), logs it to the
final model's MLflow run and registers it under the study's name (:mod:`proxyhpo.export.publish`). Exporting
never fails the study: a problem is one warning, and ``proxyhpo export`` can be run later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from proxyhpo.config import StudyConfig, StudyData, TrialPlan, TrialResult, TrialState
from proxyhpo.export.bundle import BundleInfo, write_bundle
from proxyhpo.export.publish import publish_bundle, runtime_image

__all__ = ["export_final_model"]

log = logging.getLogger(__name__)


def export_final_model(
    study: StudyConfig, data: StudyData, plan: TrialPlan, result: TrialResult, *, parent_run_id: str | None, model_dir: str | os.PathLike[str]
) -> Path | None:
    """Write the final model's bundle to ``<model_dir>/bundle``; under a study run also log and register it.

    Returns:
        The bundle's folder, or None when the model did not finish or could not be exported (logged).
    """
    if result.state != TrialState.COMPLETE or not result.model_path:
        return None
    (spec,) = [s for s in plan.trials if s.trial_id == result.trial_id]
    tracked = bool(parent_run_id and os.environ.get("MLFLOW_TRACKING_URI"))
    final_run = None
    if tracked:
        try:
            final_run = _final_run_id(result, parent_run_id)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the study's result stands without its bundle in MLflow
            log.warning("final model %s: its MLflow run was not found (%s)", result.trial_id, " ".join(str(exc).split())[:300])
    dice = {"internal_test_dice": result.internal_test_dice, "val_dice": result.best_val_dice, "test_dice": result.test_dice}
    info = BundleInfo(
        study=study.name,
        description=study.description,
        dice={key: value for key, value in dice.items() if value is not None},
        cost={"final_gpu_hours": result.gpu_hours, "final_process_hours": result.process_hours},
        study_run_id=parent_run_id,
        final_run_id=final_run,
        dataset_sha256=data.dataset_sha256,
        image_digest=runtime_image(),
        classes=dict(plan.classes),
    )
    schedule = {"epochs": plan.epochs, "batch_size": plan.batch_size, "val_every": plan.val_every, "seed": spec.seed}
    try:
        folder = write_bundle(
            Path(model_dir) / "bundle", network=spec.network, weights=result.model_path, recipe=plan.resolved_recipe(),
            hyperparameters=result.hyperparameters, out_channels=plan.num_classes, schedule=schedule, info=info,
        )
    except Exception as exc:  # noqa: BLE001 - the study's result stands without its bundle
        log.warning("final model %s: no MONAI bundle written (%s)", result.trial_id, " ".join(str(exc).split())[:300])
        return None
    if final_run is not None:
        try:
            from proxyhpo import tracking

            version = publish_bundle(
                tracking.client(), final_run, folder, name=study.name, dataset_sha256=data.dataset_sha256, image_digest=runtime_image(), study_run_id=parent_run_id
            )
            log.info("final model %s: MONAI bundle logged to run %s and registered as models:/%s/%s", result.trial_id, final_run, study.name, version)
        except Exception as exc:  # noqa: BLE001 - the bundle is in the model artifact; proxyhpo export can log it later
            log.warning("final model %s: its bundle was not logged to MLflow (%s)", result.trial_id, " ".join(str(exc).split())[:300])
    return folder


def _final_run_id(result: TrialResult, parent_run_id: str) -> str:
    """The MLflow run of the final model ``result`` under the study's run."""
    from proxyhpo import tracking
    from proxyhpo.tracking import names
    from proxyhpo.tracking.identity import children_by_id

    mlflow_client = tracking.client()
    experiment = mlflow_client.get_run(parent_run_id).info.experiment_id
    run = children_by_id(mlflow_client, experiment, parent_run_id, names.ROLE_FINAL).get(result.trial_id)
    if run is None:
        raise RuntimeError(f"no final-model run {result.trial_id!r} under study run {parent_run_id}")
    return run.info.run_id
