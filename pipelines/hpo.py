"""The HPO pipeline: proxy data + proxy network search with the REINFORCE controller, then the final model.

Rounds are unrolled when the pipeline is built (KFP v2 has no while-loop), so a pipeline is built
for a study config: ``build_hpo_pipeline(study)``. Within a round, the proposals are grouped into
packs and fanned out with ``dsl.ParallelFor`` (parallelism = GPUs), each pack one GPU pod.
"""


from kfp import dsl

from pipelines.tasks import pods_of, RUN_PARAMETERS_DOC, closing_task, fan_in, opening_task, relay_arguments, run_defaults
from pipelines.tasks import gpu_task as _gpu
from pipelines.tasks import light_task as _light
from proxyhpo.config import StudyConfig
from proxyhpo.launch_form import RUN_FIELDS_DOC, run_fields
from proxyhpo.kfp import components as c
from proxyhpo.search import strategy_class
from proxyhpo.tracking import names

__all__ = ["PIPELINE_NAME", "build_hpo_pipeline", "search_rounds"]

PIPELINE_NAME = "proxyhpo-hpo"


def build_hpo_pipeline(study: StudyConfig):
    """Search hyper-parameters on proxy data and proxy networks, then train the final model on all data.

    The study's rounds, proposals and resources fix the pipeline's shape.

    Args:
        study: the study config; it also gives the defaults of the pipeline's run parameters.

    Returns:
        The KFP pipeline function, ready for ``kfp.compiler.Compiler().compile`` or a local run.
    """
    rounds = study.search.rounds
    defaults = run_defaults(study)
    fields = run_fields(study)  # the launch form's typed fields, defaulting to the study's values

    def hpo(
        study_config: str = study.model_dump_json(),
        dataset: str = defaults["dataset"],
        external: str = defaults["external"],
        study_name: str = defaults["study_name"],
        resume_run: str = "",
        epochs: int = fields["epochs"],
        proposals_per_round: int = fields["proposals_per_round"],
        budget: int = fields["budget"],
        pack_size: int = fields["pack_size"],
        early_stopping: bool = fields["early_stopping"],
    ):
        with dsl.ExitHandler(closing_task(study_config, study_name), name="study"):
            start = opening_task(
                study_config, dataset, external, study_name, kind="hpo", shape=study.with_compiled_settings(study.shape), resume_run=resume_run,
                fields={"epochs": epochs, "proposals_per_round": proposals_per_round, "budget": budget, "pack_size": pack_size, "early_stopping": early_stopping},
            )
            _search(start, study)

    hpo.__doc__ = (
        "Search hyper-parameters on proxy data and proxy networks, then train the final model.\n"
        + RUN_PARAMETERS_DOC
        + RUN_FIELDS_DOC
        + "\n        The report (Markdown, HTML, metrics) is the last task's output, and MLflow holds the same on the\n"
        "        study's parent run: a pipeline output cannot come from inside the exit handler.\n"
    )
    with pods_of(study):  # the CPU tasks get the study's scratch size and pull secrets too
        return dsl.pipeline(
            name=PIPELINE_NAME,
            display_name=f"proxyhpo HPO: {study.name}",
            description=(
                "Hyper-parameter search for 3D segmentation with proxy data and proxy networks: selects the proxy data set, "
                f"runs {rounds} rounds of the REINFORCE controller with trials packed onto GPUs, trains the final full model "
                "with the best hyper-parameters and reports Dice and GPU-hours to MLflow."
            ),
        )(hpo)


def _search(start: dsl.PipelineTask, study: StudyConfig):
    """The study's tasks after the first, inside the exit handler that closes its MLflow runs if anything fails."""
    run = start.outputs["study_run"]
    data = _light(c.prepare_data(study_run=run), "prepare data")
    selecting = c.select_data(study_run=run, data=data.outputs["data"])
    gate = None
    if study.search.trust_gate:  # fixed at compile time: the gate's tasks exist only when asked for
        gate = _trust_gate(study, start, data)
        selecting.after(gate)  # the search's first tasks wait for the verdict
    manifest = _light(selecting, "select proxy data")
    state = search_rounds(study, start, data, manifest, after=gate)
    final = c.final_training(study_run=run, data=data.outputs["data"], state=state)
    _gpu(final, "final model", study)
    final.set_retry(num_retries=2, backoff_duration="60s")  # a preempted pod is retried and resumes from its checkpoint
    _light(c.report(study_run=run, state=state, final_result=final.outputs["result"]), "report", cache=False)


def _trust_gate(study: StudyConfig, start: dsl.PipelineTask, data: dsl.PipelineTask) -> dsl.PipelineTask:
    """The trust check before the search: calibration cells (logged with role ``calibration``), then the verdict."""
    run = start.outputs["study_run"]
    plan = _gpu(c.plan_cells(kind="trust", study_run=run, data=data.outputs["data"]), "trust gate: plan calibration", study)
    loop = "trust-gate-cells"
    with dsl.ParallelFor(plan.outputs["Output"], parallelism=study.resources.gpus, name=loop) as cell:
        train = c.train_cell(cell=cell, study_run=run, data=data.outputs["data"], role=names.ROLE_CALIBRATION, **relay_arguments(loop))
        _gpu(train, "trust gate: train a calibration cell", study)
        train.set_retry(num_retries=2, backoff_duration="30s")
    verdict = fan_in(c.trust_gate, c.trust_gate_relayed, train, "results", group=loop, study_run=run)
    return _light(verdict, "trust gate: verdict", cache=False)


def search_rounds(
    study: StudyConfig,
    start: dsl.PipelineTask,
    data: dsl.PipelineTask,
    manifest: dsl.PipelineTask,
    *,
    arm: str = "",
    after: dsl.PipelineTask | None = None,
):
    """The RL search, unrolled: init the controller, then per round propose, train the packs in parallel, update.

    Args:
        study: the study the pipeline is compiled for: its rounds and GPUs shape the search.
        start, data, manifest: the tasks that opened the run, prepared the data and chose the search data.
        arm: the automl comparison's search arm ('' for the HPO pipeline's one search); it labels the
            tasks and tags the trials.
        after: a task the search waits for besides the study run (the trust gate).

    Returns:
        The controller's final state (an artifact channel).
    """
    strategy_class(study)  # a strategy the rounds cannot carry from task to task stops the launch here, in one line
    run = start.outputs["study_run"]
    label = f"{arm}: " if arm else ""
    arguments = {"arm": arm} if arm else {}  # the HPO pipeline keeps the components' default
    init = c.controller_init(study_run=run, **arguments)  # an arm's early stopping sets its reward, its packing its packs
    if after is not None:
        init.after(after)
    state = _light(init, f"{label}init controller").outputs["state"]
    for round_index in range(study.search.rounds):
        propose = _light(c.controller_propose(study_run=run, state=state, **arguments), f"{label}round {round_index + 1}: propose", cache=False)
        loop = f"{arm}-round-{round_index + 1}-packs" if arm else f"round-{round_index + 1}-packs"
        with dsl.ParallelFor(propose.outputs["Output"], parallelism=study.resources.gpus, name=loop) as pack:
            train = c.train_pack(
                pack=pack, study_run=run, data=data.outputs["data"], manifest=manifest.outputs["manifest"], **arguments, **relay_arguments(loop)
            )
            _gpu(train, f"{label}round {round_index + 1}: train pack", study)
            train.set_retry(num_retries=2, backoff_duration="30s")  # an evicted or preempted pod is retried
        update = fan_in(
            c.controller_update, c.controller_update_relayed, train, "results", group=loop,
            study_run=run, proposed=propose.outputs["proposed"], packs=propose.outputs["Output"], **arguments,
        )
        state = _light(update, f"{label}round {round_index + 1}: update controller", cache=False).outputs["state"]
    return state
