"""The paper's comparison studies as pipelines: the proxy-data study, the proxy-network study and the trust check.

Each has the same shape: open the study run (checking the compiled parallelism), prepare the data, plan
every cell (one arm in one repeat: its data and network; all similarity matrices computed once), train
the cells with ``dsl.ParallelFor`` (parallelism = GPUs; each cell's grid is one pack on one GPU), then
report correlations, tables, plots and costs from MLflow. An exit handler closes the MLflow runs of a
run that fails.
"""

from kfp import dsl

from pipelines.tasks import pods_of, RUN_PARAMETERS_DOC, closing_task, fan_in, gpu_task, light_task, opening_task, relay_arguments, run_defaults
from proxyhpo.config import StudyConfig
from proxyhpo.kfp import components as c

__all__ = ["DESCRIPTIONS", "build_proxy_data_study", "build_proxy_net_study", "build_trust_check"]

DESCRIPTIONS = {
    "proxy-data-study": (
        "Which proxy data set ranks hyper-parameters like all data? Trains the grid on all data and on the proxy data "
        "sets of every selection method and budget, over repeats, scores every model on the external set, and reports "
        "the paper's Table 1, Fig. 2 and Fig. 4A/B with correlations, intervals and GPU-hours."
    ),
    "proxy-net-study": (
        "Do proxy U-Nets rank hyper-parameters like the full U-Net? Trains the grid with the full network and with "
        "proxy networks of 5, 4 and 3 levels on the same splits, over repeats, and reports the paper's Fig. 3 with "
        "correlations, intervals and GPU-hours."
    ),
    "trust": (
        "Before a heavy search: trains a small calibration grid in the study's proxy setting and with all data and the "
        "full network, and gives a verdict: the rank correlation with its interval against the study's threshold."
    ),
}


def _build(kind: str, study: StudyConfig):
    defaults = run_defaults(study)

    def comparison(
        study_config: str = study.model_dump_json(),
        dataset: str = defaults["dataset"],
        external: str = defaults["external"],
        study_name: str = defaults["study_name"],
        resume_run: str = "",
    ):
        with dsl.ExitHandler(closing_task(study_config, study_name), name="study"):
            start = opening_task(study_config, dataset, external, study_name, kind=kind, shape=study.with_compiled_settings(study.study_shape), resume_run=resume_run)
            run = start.outputs["study_run"]
            data = light_task(c.prepare_data(study_run=run), "prepare data")
            plan = gpu_task(c.plan_cells(kind=kind, study_run=run, data=data.outputs["data"]), "plan cells: select every arm's data", study)
            with dsl.ParallelFor(plan.outputs["Output"], parallelism=study.resources.gpus, name="cells") as cell:
                train = c.train_cell(cell=cell, study_run=run, data=data.outputs["data"], **relay_arguments("cells"))
                gpu_task(train, "train a cell's grid", study)
                train.set_retry(num_retries=2, backoff_duration="30s")  # an evicted or preempted pod is retried
            report = fan_in(c.study_report, c.study_report_relayed, train, "results", group="cells", study_run=run)
            light_task(report, "report", cache=False)

    comparison.__doc__ = "Train every cell of the study and report it.\n" + RUN_PARAMETERS_DOC
    with pods_of(study):  # the CPU tasks get the study's scratch size and pull secrets too
        return dsl.pipeline(name=f"proxyhpo-{kind}", display_name=f"proxyhpo {kind}: {study.name}", description=DESCRIPTIONS[kind])(comparison)


def build_proxy_data_study(study: StudyConfig):
    """Does a proxy data set rank the hyper-parameter grid like all data (the paper's Table 1, Figs. 2 and 4A/B)?

    The study's ``studies.proxy_data`` section sets the methods, budgets and repeats.
    """
    return _build("proxy-data-study", study)


def build_proxy_net_study(study: StudyConfig):
    """Does a proxy U-Net rank the hyper-parameter grid like the full U-Net (the paper's Fig. 3)?

    The study's ``studies.proxy_net`` section sets the levels and repeats.
    """
    return _build("proxy-net-study", study)


def build_trust_check(study: StudyConfig):
    """Before a heavy search: does the study's proxy setting rank a small grid like all data and the full U-Net?

    The study's ``studies.trust`` section sets the calibration grid, repeats and threshold.
    """
    return _build("trust", study)
