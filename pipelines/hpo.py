"""The HPO pipeline: proxy data + proxy network search with the REINFORCE controller, then the final model.

Rounds are unrolled when the pipeline is built (KFP v2 has no while-loop), so a pipeline is built
for a study config: ``build_hpo_pipeline(study)``. Within a round, the proposals are grouped into
packs and fanned out with ``dsl.ParallelFor`` (parallelism = GPUs), each pack one GPU pod.
"""


from kfp import dsl, kubernetes

from proxyhpo.config import StudyConfig
from proxyhpo.kfp import components as c

__all__ = ["PIPELINE_NAME", "S3_SECRET", "ENDPOINTS_CONFIG_MAP", "build_hpo_pipeline"]

PIPELINE_NAME = "proxyhpo-hpo"
#: The chart's Secret with the MinIO/S3 credentials (keys become environment variables of the same name).
S3_SECRET = "proxyhpo-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The chart's ConfigMap with the MLflow and MinIO endpoints.
ENDPOINTS_CONFIG_MAP = "proxyhpo-endpoints"
ENDPOINT_KEYS = ("MLFLOW_TRACKING_URI", "PROXYHPO_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL")
#: Pods with this label may reach MinIO and MLflow through the chart's NetworkPolicy.
PIPELINE_POD_LABEL = "proxyhpo/pipeline"


def _cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Inject the credentials (from the Secret, by reference only) and the endpoints into a task's pod."""
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={key: key for key in S3_SECRET_KEYS})
    kubernetes.use_config_map_as_env(task, config_map_name=ENDPOINTS_CONFIG_MAP, config_map_key_to_env={key: key for key in ENDPOINT_KEYS})
    kubernetes.add_pod_label(task, label_key=PIPELINE_POD_LABEL, label_value="true")  # the chart's NetworkPolicy admits these pods
    return task


def _light(task: dsl.PipelineTask, name: str, *, cache: bool = True) -> dsl.PipelineTask:
    task.set_display_name(name).set_cpu_request("1").set_memory_request("2Gi").set_cpu_limit("2").set_memory_limit("4Gi")
    task.set_caching_options(cache)
    return _cluster_env(task)


def _gpu(task: dsl.PipelineTask, name: str, study: StudyConfig) -> dsl.PipelineTask:
    resources = study.resources
    task.set_display_name(name).set_caching_options(False)
    task.set_accelerator_type(resources.gpu_type).set_accelerator_limit(1)
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory).set_cpu_limit(resources.cpu).set_memory_limit(resources.memory)
    kubernetes.add_toleration(task, key=resources.gpu_type, operator="Exists", effect="NoSchedule")
    return _cluster_env(task)


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
    state = _light(c.controller_init(study=study_config).after(start), "init controller").outputs["state"]
    for round_index in range(rounds):
        propose = _light(c.controller_propose(study=study_config, state=state), f"round {round_index + 1}: propose", cache=False)
        with dsl.ParallelFor(propose.outputs["Output"], parallelism=parallelism, name=f"round-{round_index + 1}-packs") as pack:
            train = c.train_pack(
                study=study_config,
                pack=pack,
                study_run=start.outputs["study_run"],
                data=data.outputs["data"],
                manifest=manifest.outputs["manifest"],
            )
            _gpu(train, f"round {round_index + 1}: train pack", study)
            train.set_retry(num_retries=2, backoff_duration="30s")  # an evicted or preempted pod is retried
        update = c.controller_update(proposed=propose.outputs["proposed"], results=dsl.Collected(train.outputs["results"]))
        state = _light(update, f"round {round_index + 1}: update controller", cache=False).outputs["state"]
    final = c.final_training(study=study_config, study_run=start.outputs["study_run"], data=data.outputs["data"], state=state)
    _gpu(final, "final model", study)
    _light(c.report(study=study_config, study_run=start.outputs["study_run"], state=state, final_result=final.outputs["result"]), "report", cache=False)
