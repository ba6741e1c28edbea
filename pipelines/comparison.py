"""The automl comparison (the paper's Table 2 and Fig. 4C/D): the RL search run five ways, each result trained in full.

Every arm of ``studies.comparison.arms`` (all data + full network, proxy data, proxy network, both,
random data) selects its data and runs the study's search, unrolled like the HPO pipeline's; then each
arm's best hyper-parameters train the final model on all data ``studies.comparison.repeats`` times (same
split, new initialisations). The report compares the final models' Dice, the searches' GPU-hours (a
proxy's including its selection) and the distance of each found hyper-parameter vector to the all-data
search's.
"""

from kfp import dsl

from pipelines.hpo import search_rounds
from pipelines.tasks import gpu_task, light_task
from proxyhpo.config import StudyConfig
from proxyhpo.kfp import components as c

__all__ = ["build_automl_comparison"]


def build_automl_comparison(study: StudyConfig):
    """The ``automl-comparison`` pipeline for ``study`` (its search settings and ``studies.comparison``).

    Rounds, arms and repeats are unrolled when the pipeline is built, so they fix its shape with the GPUs.
    """
    comparison = study.studies.comparison

    @dsl.pipeline(
        name="proxyhpo-automl-comparison",
        display_name=f"proxyhpo automl comparison: {study.name}",
        description=(
            f"The RL search run {len(comparison.arms)} ways ({', '.join(comparison.arms)}) for {study.search.rounds} rounds each, "
            f"each result trained as the full model on all data {comparison.repeats} times; reports the paper's Table 2 "
            "(internal and external Dice, GPU-hours per search) and Fig. 4C/D (distance to the all-data search's hyper-parameters)."
        ),
    )
    def automl_comparison(study_config: str = study.model_dump_json()):
        """Run every search arm, train each result in full, and report the comparison.

        Args:
            study_config: the whole study config as JSON; its rounds and GPUs were fixed when this pipeline was
                compiled, and the first task refuses a config that differs.
        """
        closing = light_task(c.close_study(study=study_config, pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "close MLflow study run", cache=False)
        with dsl.ExitHandler(closing, name="study"):
            opening = c.start_study(
                study=study_config, pipeline="automl-comparison", pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, compiled_shape=study.shape.model_dump_json()
            )
            start = light_task(opening, "open MLflow study run", cache=False)
            data = light_task(c.prepare_data(study=study_config).after(start), "prepare data")
            finals = []
            for arm in comparison.arms:
                selecting = c.select_arm_data(study=study_config, arm=arm, study_run=start.outputs["study_run"], data=data.outputs["data"])
                manifest = gpu_task(selecting, f"{arm}: select data", study)
                state = search_rounds(study_config, study, start, data, manifest, rounds=study.search.rounds, parallelism=study.resources.gpus, arm=arm)
                for repeat in range(comparison.repeats):
                    final = c.final_training(
                        study=study_config, study_run=start.outputs["study_run"], data=data.outputs["data"], state=state, arm=arm, repeat=repeat
                    )
                    finals.append(gpu_task(final, f"{arm}: final model {repeat + 1}", study))
            light_task(c.comparison_report(study_run=start.outputs["study_run"]).after(*finals), "report", cache=False)

    return automl_comparison
