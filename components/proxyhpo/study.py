"""The study's own steps in a pipeline run: open its MLflow parent run, plan a comparison study's cells,
and close the run when it fails.

Every other step is a stage's library call (data, similarity, controller, training, analysis); these
belong to the study as a whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from proxyhpo import tracking
from proxyhpo.tracking import names
from proxyhpo.config import PipelineShape, ProxyDataManifest, StudyConfig, StudyData, StudyRun, TrialResults, TrialState
from proxyhpo.errors import TrialError

if TYPE_CHECKING:
    from proxyhpo.analysis.trust_report import TrustVerdict

__all__ = ["open_study", "close_study", "plan_study", "select_arm_data", "check_trust"]


def open_study(
    study: StudyConfig, *, pipeline: str, pipeline_run: str, compiled: PipelineShape, out: str | os.PathLike[str]
) -> StudyRun:
    """Check the study against the pipeline it runs in, open its MLflow parent run and write the run's handle to ``out``.

    Launched by ``proxyhpo run --local``, the parent run is the one the launcher opened or reopened to
    resume the study (named in :data:`proxyhpo.resume.PARENT_ENV`); otherwise (a cluster) a new one, tagged
    with the config's hash (:func:`proxyhpo.resume.config_sha256`).

    Args:
        study: the study the run was launched with (its config, possibly edited in the Kubeflow UI, with
            the run's data set, external set and name).
        pipeline: the pipeline's kind, the ``proxyhpo.pipeline`` tag (``hpo``, ``proxy-data-study``, ...).
        pipeline_run: the KFP run id, tagged so the exit handler finds the run again.
        compiled: the rounds and parallelism the pipeline was compiled for.
        out: where the :class:`~proxyhpo.config.StudyRun` (the study and its run) is written for the other tasks.

    Raises:
        ConfigError: when the study's rounds or GPUs differ from the compiled pipeline's.
    """
    from proxyhpo import resume

    study.check_compiled_shape(compiled)
    opened = os.environ.get(resume.PARENT_ENV)
    if opened:
        run_id = resume.adopt_parent_run(study, opened, pipeline_run=pipeline_run)
    else:
        run_id = tracking.start_parent_run(study.name, pipeline, config=study.model_dump(mode="json"), pipeline_run=pipeline_run)
        tracking.client().set_tag(run_id, resume.CONFIG_HASH_TAG, resume.config_sha256(study))
    tracking.client().set_tag(run_id, names.STRATEGY_TAG, study.search.strategy)
    run = StudyRun(experiment=study.name, run_id=run_id, study=study)
    run.write(out)
    return run


def plan_study(study: StudyConfig, data: StudyData, kind: str, *, parent_run_id: str, out: str | os.PathLike[str]) -> list[str]:
    """Plan every cell of comparison study ``kind``, log the plan on the study run, write it to ``out``.

    The plan is logged on the parent run as ``cells.json``, so the report (and ``proxyhpo report``)
    needs nothing but MLflow.

    Returns:
        The cells as JSON strings, one per ``ParallelFor`` iteration.
    """
    from proxyhpo.similarity.study_cells import plan_cells
    from proxyhpo.storage import atomic_write_json

    cells = plan_cells(study, data, kind)
    plan = [cell.model_dump(mode="json") for cell in cells]
    tracking.client().log_dict(parent_run_id, plan, "cells.json")
    atomic_write_json(out, plan)
    return [cell.model_dump_json() for cell in cells]


def select_arm_data(study: StudyConfig, data: StudyData, arm: str, *, parent_run_id: str, out: str | os.PathLike[str]) -> ProxyDataManifest:
    """The search data of the automl comparison's ``arm``, logged on the study run as ``manifests/<arm>.json``.

    The manifest carries what the selection cost, so the report charges it to the arm's search from
    MLflow alone.
    """
    from proxyhpo.similarity.proxy_data import select_for_study

    manifest = select_for_study(study.for_search_arm(arm), data)
    tracking.client().log_dict(parent_run_id, manifest.model_dump(mode="json"), f"manifests/{arm}.json")
    manifest.write(out)
    return manifest


def check_trust(study: StudyConfig, result_files: Sequence[str | os.PathLike[str]]) -> TrustVerdict:
    """The search's trust gate: the trust check's verdict on the calibration cells' results; stop unless trusted.

    Args:
        study: the study config (its ``studies.trust`` section: metric, Dice, threshold).
        result_files: the calibration cells' :class:`~proxyhpo.config.TrialResults` files.

    Returns:
        The verdict, when the proxy is trusted.

    Raises:
        TrialError: when the proxy is not trusted, or the verdict is undecided: the search does not start.
    """
    from proxyhpo.analysis.statistics import GridCell
    from proxyhpo.analysis.trust_report import trust_verdict

    cells: dict[str, list[GridCell]] = {}
    for file in result_files:
        for result in TrialResults.read(file).results:
            finished = result.state == TrialState.COMPLETE
            cells.setdefault(result.tags["arm"], []).append(
                GridCell(
                    arm=result.tags["arm"],
                    repeat=int(result.tags["repeat"]),
                    point=result.tags["point"],
                    internal_dice=result.final_val_dice if finished else None,
                    external_dice=result.test_dice if finished else None,
                    device_hours=result.gpu_hours or result.process_hours,
                    steps=result.steps_run,
                    pack_size=result.pack_size,
                )
            )
    verdict = trust_verdict(study, cells)
    if not verdict.passed:
        raise TrialError(f"the search stops before it starts: {verdict.message}; see the calibration runs in MLflow, or set search.trust_gate: false")
    return verdict


def close_study(study: StudyConfig, *, pipeline_run: str, succeeded: bool) -> list[str]:
    """The exit handler's step: when the run did not succeed, mark its study and trial runs FAILED.

    Returns:
        the ids of the MLflow runs it closed (none after a successful run: the report closed the study run).
    """
    if succeeded:
        return []
    return tracking.fail_open_runs(study.name, pipeline_run=pipeline_run)
