"""The study's own steps in a pipeline run: open its MLflow parent run, and close it when the run fails.

Every other step is a stage's library call (data, similarity, controller, training, analysis); these two
belong to the study as a whole.
"""

from __future__ import annotations

import os

from proxyhpo import tracking
from proxyhpo.config import PipelineShape, StudyConfig, StudyRun

__all__ = ["open_study", "close_study"]


def open_study(
    study: StudyConfig, *, pipeline: str, pipeline_run: str, compiled: PipelineShape, out: str | os.PathLike[str]
) -> StudyRun:
    """Check the study against the pipeline it runs in, open its MLflow parent run and write its handle to ``out``.

    Args:
        study: the study config the run was launched with (possibly edited in the Kubeflow UI).
        pipeline: the pipeline's kind, the ``proxyhpo.pipeline`` tag (``hpo``).
        pipeline_run: the KFP run id, tagged so the exit handler finds the run again.
        compiled: the rounds and parallelism the pipeline was compiled for.
        out: where the :class:`~proxyhpo.config.StudyRun` is written.

    Raises:
        ConfigError: when the study's rounds or GPUs differ from the compiled pipeline's.
    """
    study.check_compiled_shape(compiled)
    run_id = tracking.start_parent_run(study.name, pipeline, config=study.model_dump(mode="json"), pipeline_run=pipeline_run)
    run = StudyRun(experiment=study.name, run_id=run_id)
    run.write(out)
    return run


def close_study(study: StudyConfig, *, pipeline_run: str, succeeded: bool) -> list[str]:
    """The exit handler's step: when the run did not succeed, mark its study and trial runs FAILED.

    Returns:
        the ids of the MLflow runs it closed (none after a successful run: the report closed the study run).
    """
    if succeeded:
        return []
    return tracking.fail_open_study_runs(study.name, pipeline_run)
