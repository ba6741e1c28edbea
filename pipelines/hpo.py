"""The HPO pipeline: proxy data + proxy network search with the REINFORCE controller, then the final model.

Rounds are unrolled when the pipeline is built (KFP v2 has no while-loop), so a pipeline is built
for a study config: ``build_hpo_pipeline(study)``. Within a round, the proposals are grouped into
packs and fanned out with ``dsl.ParallelFor`` (parallelism = GPUs), each pack one GPU pod.
"""


from kfp import dsl

from pipelines.tasks import gpu_task as _gpu
from pipelines.tasks import light_task as _light
from proxyhpo.config import StudyConfig
from proxyhpo.kfp import components as c

__all__ = ["PIPELINE_NAME", "build_hpo_pipeline"]

PIPELINE_NAME = "proxyhpo-hpo"


def build_hpo_pipeline(study: StudyConfig):
    """Build the HPO pipeline for ``study`` (its rounds, proposals and resources fix the pipeline's shape).

    Args:
        study: the study config; it also becomes the default of the pipeline's ``study`` input.

    Returns:
        The KFP pipeline function, ready for ``kfp.compiler.Compiler().compile`` or a local run.
    """
    rounds = study.search.rounds
    parallelism = study.resources.gpus

    @dsl.pipeline(
        name=PIPELINE_NAME,
        display_name=f"proxyhpo HPO: {study.name}",
        description=(
            "Hyper-parameter search for 3D segmentation with proxy data and proxy networks: selects the proxy data set, "
            f"runs {rounds} rounds of the REINFORCE controller with trials packed onto GPUs, trains the final full model "
            "with the best hyper-parameters and reports Dice and GPU-hours to MLflow."
        ),
    )
    def hpo(study_config: str = study.model_dump_json()):
        """Search hyper-parameters on proxy data and proxy networks, then train the final model.

        Args:
            study_config: the whole study config as JSON (what `proxyhpo run` reads from the YAML); its search
                rounds and GPUs were fixed when this pipeline was compiled, and the first task refuses a
                config that differs.

        The report (Markdown, HTML, metrics) is the last task's output, and MLflow holds the same on the
        study's parent run: a pipeline output cannot come from inside the exit handler.
        """
        closing = _light(c.close_study(study=study_config, pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "close MLflow study run", cache=False)
        with dsl.ExitHandler(closing, name="study"):
            _search(study_config, rounds, parallelism, study)

    return hpo


def _search(study_config: str, rounds: int, parallelism: int, study: StudyConfig):
    """The study's tasks, inside the exit handler that closes its MLflow runs if anything fails."""
    # The first task checks that study_config (editable in the Kubeflow UI) fits the compiled shape; the
    # others wait for it, so a mismatch fails the run at once with one line.
    opening = c.start_study(
        study=study_config, pipeline="hpo", pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, compiled_shape=study.shape.model_dump_json()
    )
    start = _light(opening, "open MLflow study run", cache=False)
    data = _light(c.prepare_data(study=study_config).after(start), "prepare data")
    manifest = _light(c.select_data(study=study_config, data=data.outputs["data"]), "select proxy data")
    state = search_rounds(study_config, study, start, data, manifest, rounds=rounds, parallelism=parallelism)
    final = c.final_training(study=study_config, study_run=start.outputs["study_run"], data=data.outputs["data"], state=state)
    _gpu(final, "final model", study)
    _light(c.report(study=study_config, study_run=start.outputs["study_run"], state=state, final_result=final.outputs["result"]), "report", cache=False)


def search_rounds(
    study_config: str,
    study: StudyConfig,
    start: dsl.PipelineTask,
    data: dsl.PipelineTask,
    manifest: dsl.PipelineTask,
    *,
    rounds: int,
    parallelism: int,
    arm: str = "",
):
    """The RL search, unrolled: init the controller, then per round propose, train the packs in parallel, update.

    Args:
        arm: the automl comparison's search arm ('' for the HPO pipeline's one search); it labels the
            tasks and tags the trials.

    Returns:
        The controller's final state (an artifact channel).
    """
    label = f"{arm}: " if arm else ""
    state = _light(c.controller_init(study=study_config).after(start), f"{label}init controller").outputs["state"]
    for round_index in range(rounds):
        propose = _light(c.controller_propose(study=study_config, state=state), f"{label}round {round_index + 1}: propose", cache=False)
        loop = f"{arm}-round-{round_index + 1}-packs" if arm else f"round-{round_index + 1}-packs"
        with dsl.ParallelFor(propose.outputs["Output"], parallelism=parallelism, name=loop) as pack:
            arguments = {"arm": arm} if arm else {}  # the HPO pipeline keeps the component's default
            train = c.train_pack(
                study=study_config,
                pack=pack,
                study_run=start.outputs["study_run"],
                data=data.outputs["data"],
                manifest=manifest.outputs["manifest"],
                **arguments,
            )
            _gpu(train, f"{label}round {round_index + 1}: train pack", study)
            train.set_retry(num_retries=2, backoff_duration="30s")  # an evicted or preempted pod is retried
        update = c.controller_update(proposed=propose.outputs["proposed"], results=dsl.Collected(train.outputs["results"]))
        state = _light(update, f"{label}round {round_index + 1}: update controller", cache=False).outputs["state"]
    return state
