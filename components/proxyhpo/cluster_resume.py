"""Continue a stopped cluster run: ``proxyhpo run CONFIG --host URL --resume RUN``.

The local resume's rules (:mod:`proxyhpo.resume`), on the cluster's stores: a study is continued under its
MLflow parent run, which must be a study parent run of the same pipeline and the same config (its hash), and
not finished; every trial a pack finished is kept under ``<checkpoint root>/<parent run>/trials/`` in the
chart's bucket, so the new KFP run trains only what is missing (:func:`proxyhpo.resume.finished_results`),
and the final model resumes from its checkpoint there.

:func:`resolve_parent` runs where the user types the command (MLflow reached as ``MLFLOW_TRACKING_URI``, e.g.
through ``kubectl port-forward``); the new run's first task then reopens that parent run
(:func:`reopen_parent`) instead of starting a new one. ``RUN`` is the parent's MLflow run id or the id of a
KFP run that used it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxyhpo.errors import ConfigError

if TYPE_CHECKING:
    from proxyhpo.config import StudyConfig

__all__ = ["resolve_parent", "reopen_parent"]


def _find(mlflow_client: Any, experiment_id: str, reference: str) -> Any | None:
    """The run ``reference`` names in the experiment: its MLflow run id, or the KFP run tagged on a parent run."""
    from proxyhpo import tracking

    try:
        run = mlflow_client.get_run(reference)
        if run.info.experiment_id == experiment_id:
            return run
    except Exception:  # not an MLflow run id (MLflow raises its own errors for unknown or malformed ids)
        pass
    found = mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`{tracking.KFP_RUN_TAG}` = '{reference}' and tags.`{tracking.ROLE_TAG}` = 'study'", max_results=2
    )
    return found[0] if found else None


def resolve_parent(study: StudyConfig, kind: str, reference: str, *, tracking_uri: str | None = None) -> tuple[str, int]:
    """The MLflow parent run a resumed cluster run continues, and how many finished trials it keeps.

    Args:
        study: the study as it will be submitted (its config hash must equal the parent's).
        kind: the pipeline (``hpo``, ``proxy-data-study``, ...).
        reference: the parent's MLflow run id, or a KFP run id tagged on it.
        tracking_uri: the cluster's MLflow (default ``MLFLOW_TRACKING_URI``).

    Returns:
        ``(parent run id, trials kept on S3 for it)``.

    Raises:
        ConfigError: naming ``--resume`` when the run is unknown, of another pipeline or config, or finished.
    """
    from proxyhpo import paths, resume, storage, tracking

    mlflow_client = tracking.client(tracking_uri)
    where = tracking_uri or paths.tracking_uri()
    experiment = mlflow_client.get_experiment_by_name(study.name)
    run = _find(mlflow_client, experiment.experiment_id, reference) if experiment is not None else None
    if run is None:
        raise ConfigError(
            "--resume", f"names {reference!r}, which is no run of study {study.name!r} in MLflow at {where}",
            "give the study's parent run id (MLflow UI) or the KFP run id of the stopped run, with MLFLOW_TRACKING_URI pointing at the cluster's MLflow",
        )
    tags = run.data.tags
    if tags.get(tracking.ROLE_TAG) != "study" or tags.get(tracking.PIPELINE_TAG) != kind:
        raise ConfigError(
            "--resume", f"names run {run.info.run_id}, which is not a {kind} study's parent run (role {tags.get(tracking.ROLE_TAG)!r}, pipeline {tags.get(tracking.PIPELINE_TAG)!r})",
            "give the parent run of the stopped study (tag proxyhpo.role = study), and the same --pipeline",
        )
    if tags.get(resume.CONFIG_HASH_TAG) != resume.config_sha256(study):
        raise ConfigError(
            "--resume", f"names run {run.info.run_id}, which was started with another config of study {study.name!r}",
            "resume with the config the run was started with (its config.json on the MLflow run), or drop --resume to start over",
        )
    if run.info.status == "FINISHED":
        raise ConfigError("--resume", f"names run {run.info.run_id}, which finished", "nothing to resume: drop --resume to start the study again")
    kept = f"{resume.study_folder(run.info.run_id)}/trials/"
    count = 0
    if storage.is_s3_url(kept):
        bucket, prefix = storage.split_s3_url(kept)
        count = sum(1 for _ in storage.s3_client().list_objects(bucket_name=bucket, prefix=prefix, recursive=True))
    return run.info.run_id, count


def reopen_parent(study: StudyConfig, run_id: str, *, pipeline_run: str, tracking_uri: str | None = None) -> str:
    """In the resumed run's first task: the parent run RUNNING again (its fail reason dropped), tagged with the new KFP run.

    Raises:
        ConfigError: when ``run_id`` is not a parent run of this study and config.
    """
    from proxyhpo import resume, tracking

    resume.adopt_parent_run(study, run_id, pipeline_run=pipeline_run, tracking_uri=tracking_uri)  # checks study and config
    mlflow_client = tracking.client(tracking_uri)
    from proxyhpo.tracking.identity import reopen

    return reopen(mlflow_client, mlflow_client.get_run(run_id), clear_fail_reason=True)
