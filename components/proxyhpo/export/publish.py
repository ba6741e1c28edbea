"""A final model's bundle in MLflow: logged to the final model's run, registered under the study's name, read back.

- :func:`publish_bundle`: the bundle folder logged as the run's artifact ``bundle/`` and registered as a new
  version of the registered model named after the study, tagged with the data set's fingerprint and the
  runtime image (``proxyhpo.dataset_sha256``, ``proxyhpo.image_digest``), so ``models:/<study>/<version>``
  is the bundle.
- :func:`export_run`: ``proxyhpo export RUN_ID``: the bundle of a finished study's final model (RUN_ID the
  study's parent run or the final model's own) downloaded from MLflow, its README and metadata completed with
  the study's totals (search and total device-hours, final Dice) read from the parent run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from proxyhpo import storage
from proxyhpo.errors import InputError
from proxyhpo.tracking import names

__all__ = ["BUNDLE_ARTIFACT", "DATASET_TAG", "IMAGE_TAG", "publish_bundle", "export_run", "runtime_image"]

#: the artifact path of a final model's bundle in its MLflow run
BUNDLE_ARTIFACT = "bundle"
#: tags of a registered model version
DATASET_TAG = names.tag("dataset_sha256")
IMAGE_TAG = names.tag("image_digest")
STUDY_RUN_TAG = names.tag("study_run_id")


def runtime_image() -> str:
    """The runtime image a task runs in: ``PROXYHPO_RUNTIME_IMAGE_DIGEST`` when set, ``local`` outside a cluster, else ``unpinned``."""
    digest = os.environ.get("PROXYHPO_RUNTIME_IMAGE_DIGEST", "").strip()
    if digest:
        return digest
    return "unpinned" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"


def publish_bundle(mlflow_client: Any, run_id: str, folder: str | os.PathLike[str], *, name: str, dataset_sha256: str | None, image_digest: str, study_run_id: str | None = None) -> str:
    """Log a bundle to run ``run_id`` (artifact ``bundle/``) and register it as a new version of model ``name``.

    Args:
        mlflow_client: the tracking client (its registry is the tracking store's).
        run_id: the final model's run.
        folder: the bundle (:func:`~proxyhpo.export.bundle.write_bundle`).
        name: the registered model: the study's name.
        dataset_sha256: the data set's fingerprint (a tag of the version).
        image_digest: the runtime image (a tag of the version, :func:`runtime_image`).
        study_run_id: the study's parent run (a tag of the version).

    Returns:
        The new version's number.
    """
    from mlflow.exceptions import MlflowException

    mlflow_client.log_artifacts(run_id, str(folder), BUNDLE_ARTIFACT)
    tags = {DATASET_TAG: dataset_sha256 or "unknown", IMAGE_TAG: image_digest} | ({STUDY_RUN_TAG: study_run_id} if study_run_id else {})
    try:
        mlflow_client.create_registered_model(name, tags={names.tag("kind"): "monai-bundle"}, description="proxyhpo final models of this study, as MONAI bundles")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{mlflow_client.get_run(run_id).info.artifact_uri.rstrip('/')}/{BUNDLE_ARTIFACT}"
    version = mlflow_client.create_model_version(name, source, run_id=run_id, tags=tags, description=f"final model of study run {study_run_id or 'unknown'}")
    return str(version.version)


def _final_run(mlflow_client: Any, run_id: str) -> tuple[Any, Any | None]:
    """``(final model's run, study's parent run)`` for RUN_ID, either of them."""
    from mlflow.exceptions import MlflowException

    from proxyhpo.tracking.identity import children_by_id

    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        raise InputError(run_id, "is not a run of this MLflow store", "give a study's run id (proxyhpo runs, or the MLflow UI), with MLFLOW_TRACKING_URI set to its store") from None
    if run.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL:
        parent_id = run.data.tags.get(names.PARENT_TAG)
        return run, mlflow_client.get_run(parent_id) if parent_id else None
    finals = {trial_id: found for trial_id, found in children_by_id(mlflow_client, run.info.experiment_id, run_id, names.ROLE_FINAL).items() if found.info.status == "FINISHED"}
    if not finals:
        raise InputError(run_id, "has no finished final model (an HPO study's run trains one after its search)", "export a finished study's run, or its final model's run")
    if len(finals) > 1 and "final" not in finals:
        listed = ", ".join(f"{trial_id} ({found.info.run_id})" for trial_id, found in sorted(finals.items()))
        raise InputError(run_id, f"has {len(finals)} final models: {listed}", "give the run id of the one to export")
    return finals.get("final") or next(iter(finals.values())), run


def export_run(run_id: str, out: str | os.PathLike[str], *, tracking_uri: str | None = None) -> Path:
    """``proxyhpo export RUN_ID --out DIR``: write the MONAI bundle of a finished study's final model.

    Args:
        run_id: the study's parent run, or its final model's run.
        out: the bundle's folder (replaced when it exists).
        tracking_uri: the MLflow store (default: ``MLFLOW_TRACKING_URI``).

    Returns:
        The bundle's folder.

    Raises:
        InputError: when the run is unknown, has no finished final model, or its final model has no bundle.
    """
    import mlflow

    from proxyhpo import tracking

    mlflow_client = tracking.client(tracking_uri)
    final, parent = _final_run(mlflow_client, run_id)
    with tempfile.TemporaryDirectory(prefix="proxyhpo-export-") as scratch:
        try:
            fetched = Path(mlflow.artifacts.download_artifacts(run_id=final.info.run_id, artifact_path=BUNDLE_ARTIFACT, dst_path=scratch, tracking_uri=mlflow_client.tracking_uri))
        except Exception:  # noqa: BLE001 - MLflow raises several types for an absent artifact
            fetched = None
        if fetched is None or not (fetched / "models" / "model.pt").is_file():
            raise InputError(run_id, f"its final model's run {final.info.run_id} holds no bundle/ artifact (it trained before final models were exported)", "train the final model again with this version")
        target = Path(out)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(fetched, target)
    if parent is not None:
        _complete(target, final, parent)
    return target


def _complete(folder: Path, final: Any, parent: Any) -> None:
    """Add the study's totals, known once the study finished, to the bundle's metadata and README."""
    totals = {key: parent.data.metrics[key] for key in (names.SEARCH_GPU_HOURS, names.SEARCH_PROCESS_HOURS, names.TOTAL_GPU_HOURS, names.TOTAL_PROCESS_HOURS) if key in parent.data.metrics}
    dice = {key: parent.data.metrics[key] for key in (names.FINAL_INTERNAL_TEST_DICE, names.FINAL_TEST_DICE) if key in parent.data.metrics}
    metadata_path = folder / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    section = metadata.setdefault("proxyhpo", {})
    section["study_run_id"] = parent.info.run_id
    section["final_run_id"] = final.info.run_id
    section.setdefault("cost", {}).update(totals)
    section.setdefault("dice", {}).update(dice)
    storage.atomic_write_text(metadata_path, json.dumps(metadata, indent=2) + "\n")
    if totals or dice:
        lines = [f"| {key} | {value:.4f} |" for key, value in {**dice, **totals}.items()]
        addition = "\n## The study, as it finished\n\n| metric | value |\n|---|---|\n" + "\n".join(lines) + f"\n\nStudy run `{parent.info.run_id}`.\n"
        readme = folder / "docs" / "README.md"
        storage.atomic_write_text(readme, readme.read_text() + addition)
