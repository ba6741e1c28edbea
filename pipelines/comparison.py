"""The automl comparison (the paper's Table 2 and Fig. 4C/D): the RL search run five ways, each result trained in full.

Every arm of ``studies.comparison.arms`` (all data + full network, proxy data, proxy network, both,
random data) selects its data and runs the study's search, unrolled like the HPO pipeline's; then each
arm's best hyper-parameters train the final model on the search cases ``studies.comparison.repeats`` times
(same split, new initialisations), tested once on the held-out cases no search read (internal test Dice).
Each arm's controller and trials draw from their own seeds (:func:`proxyhpo.config.studies.arm_seed`)
unless ``studies.comparison.paired`` shares them. The report compares the final models' internal test
Dice, the searches' device-hours (a proxy's including its selection) and the distance of each found
hyper-parameter vector to the reference search's.
"""

from kfp import dsl

from pipelines.hpo import search_rounds
from pipelines.tasks import pods_of, RUN_PARAMETERS_DOC, closing_task, gpu_task, light_task, opening_task, run_defaults
from proxyhpo.config import StudyConfig
from proxyhpo.launch_form import RUN_FIELDS_DOC, run_fields
from proxyhpo.kfp import components as c

__all__ = ["build_automl_comparison"]


def build_automl_comparison(study: StudyConfig):
    """The search run in every arm, each result trained in full: Dice and GPU-hours (the paper's Table 2, Fig. 4C/D).

    The study's search settings and ``studies.comparison`` (arms, repeats, paired) apply. Rounds, arms and repeats are
    unrolled when the pipeline is built, so they fix its shape with the GPUs.
    """
    comparison = study.studies.comparison
    defaults = run_defaults(study)
    fields = run_fields(study)  # the launch form's typed fields, defaulting to the study's values

    def automl_comparison(
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
                study_config, dataset, external, study_name, kind="automl-comparison", shape=study.with_compiled_settings(study.shape), resume_run=resume_run,
                fields={"epochs": epochs, "proposals_per_round": proposals_per_round, "budget": budget, "pack_size": pack_size, "early_stopping": early_stopping},
            )
            run = start.outputs["study_run"]
            data = light_task(c.prepare_data(study_run=run), "prepare data")
            finals = []
            for arm in comparison.arms:
                manifest = gpu_task(c.select_arm_data(arm=arm, study_run=run, data=data.outputs["data"]), f"{arm}: select data", study)
                state = search_rounds(study, start, data, manifest, arm=arm)
                for repeat in range(comparison.repeats):
                    final = c.final_training(study_run=run, data=data.outputs["data"], state=state, arm=arm, repeat=repeat)
                    finals.append(gpu_task(final, f"{arm}: final model {repeat + 1}", study).set_retry(num_retries=2, backoff_duration="60s"))
            light_task(c.comparison_report(study_run=run).after(*finals), "report", cache=False)

    automl_comparison.__doc__ = "Run every search arm, train each result in full, and report the comparison.\n" + RUN_PARAMETERS_DOC + RUN_FIELDS_DOC
    with pods_of(study):  # the CPU tasks get the study's scratch size and pull secrets too
        return dsl.pipeline(
            name="proxyhpo-automl-comparison",
            display_name=f"proxyhpo automl comparison: {study.name}",
            description=(
                f"The RL search run {len(comparison.arms)} ways ({', '.join(comparison.arms)}) for {study.search.rounds} rounds each, "
                f"each result trained as the final model {comparison.repeats} times and tested on held-out cases no search read; "
                f"arms {'share their seeds (paired)' if comparison.paired else 'draw independent seeds'}; reports the paper's Table 2 "
                "(internal test and external Dice, device-hours per search) and Fig. 4C/D (distance to the reference search's hyper-parameters)."
            ),
        )(automl_comparison)
