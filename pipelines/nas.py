"""The NAS pipeline (RONASMIS): plan the space from the data, search every fold on one GPU each, export the
searched networks without retraining, and report their cross-validated Dice.

The cross-validation is nested: each fold's search trains on its search-train cases and is rewarded on its
search-validation cases; the fold's test part, which no search reads, measures its final network.

The shared supernet makes a search's episodes sequential: they are unrolled when the pipeline is built
into a chain of tasks of ``nas.episodes_per_task`` episodes, each handing the supernet and the controller
on as an artifact (and checkpointing after every episode, so a preempted pod resumes where it stopped).
The folds (and, with ``nas.search_data: both``, the proxy-data searches beside them) fan out with
``dsl.ParallelFor``, one GPU each.
"""

from kfp import dsl

from pipelines.tasks import pods_of, RUN_PARAMETERS_DOC, closing_task, fan_in, opening_task, relay_arguments, run_defaults
from pipelines.tasks import gpu_task as _gpu
from pipelines.tasks import light_task as _light
from proxyhpo.config import StudyConfig
from proxyhpo.kfp import components as c
from proxyhpo.kfp import nas as n

__all__ = ["PIPELINE_NAME", "build_nas_pipeline"]

PIPELINE_NAME = "proxyhpo-nas"


def build_nas_pipeline(study: StudyConfig):
    """Resource-optimised NAS: an ENAS controller searches the U-Net macro space on a shared supernet, per fold.

    The study's episodes, tasks, folds and GPUs fix the pipeline's shape.

    Args:
        study: the study config (its ``nas`` section); it also gives the defaults of the run parameters.

    Returns:
        The KFP pipeline function.
    """
    nas = study.nas
    defaults = run_defaults(study)

    def nas_pipeline(
        study_config: str = study.model_dump_json(),
        dataset: str = defaults["dataset"],
        external: str = defaults["external"],
        study_name: str = defaults["study_name"],
        resume_run: str = "",
    ):
        with dsl.ExitHandler(closing_task(study_config, study_name), name="study"):
            start = opening_task(study_config, dataset, external, study_name, kind="nas", shape=study.with_compiled_settings(study.nas_shape), resume_run=resume_run)
            run = start.outputs["study_run"]
            data = _light(c.prepare_data(study_run=run), "prepare data").outputs["data"]
            plan = _gpu(n.nas_plan(study_run=run, data=data), "plan: search space, folds, proxy data", study)
            with dsl.ParallelFor(plan.outputs["Output"], parallelism=study.resources.gpus, name="searches") as search:
                state = _light(n.nas_init(study_run=run, plan=plan.outputs["plan"], search=search), "init supernet and controller").outputs["state"]
                for task in range(nas.tasks):
                    episodes = nas.task_episodes(task)
                    step = n.nas_search(study_run=run, data=data, plan=plan.outputs["plan"], search=search, task=task, state_in=state)
                    _gpu(step, f"search: episodes {episodes.start + 1}-{episodes.stop}", study)
                    step.set_retry(num_retries=2, backoff_duration="30s")  # a preempted pod resumes from its last episode
                    state = step.outputs["state"]
                evaluate = n.nas_evaluate(study_run=run, data=data, plan=plan.outputs["plan"], search=search, state=state, **relay_arguments("searches"))
                _gpu(evaluate, "export and evaluate", study)
            report = fan_in(n.nas_report, n.nas_report_relayed, evaluate, "result", group="searches", study_run=run, plan=plan.outputs["plan"])
            _light(report, "report", cache=False)

    nas_pipeline.__doc__ = "Search U-Net architectures with RONASMIS, fold by fold, and report their nested cross-validated Dice.\n" + RUN_PARAMETERS_DOC
    with pods_of(study):  # the CPU tasks get the study's scratch size and pull secrets too
        return dsl.pipeline(
            name=PIPELINE_NAME,
            display_name=f"proxyhpo NAS: {study.name}",
            description=(
                f"Resource-optimised NAS for 3D segmentation: {nas.episodes} episodes of {nas.children_per_episode} children on one shared "
                f"supernet per fold ({nas.folds} folds, data: {nas.search_data}), the final networks exported without retraining."
            ),
        )(nas_pipeline)
