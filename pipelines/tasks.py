"""What every pipeline's tasks share: the cluster's Secret, ConfigMap and pod label, CPU or GPU resources, and the
run's opening and closing tasks with the run parameters a user fills in in the Kubeflow UI."""

import contextlib
import threading
from dataclasses import dataclass
from typing import Literal

from kfp import dsl, kubernetes

from proxyhpo.config import PipelineShape, StudyConfig
from proxyhpo.config.study import ResourcesConfig
from proxyhpo.data.cache import CACHE_ENV
from proxyhpo.kfp import components as c
from proxyhpo.kfp.image import CPU_IMAGE
from proxyhpo.kfp.target import LATEST_TARGET, KfpTarget

__all__ = [
    "S3_SECRET",
    "S3_SECRET_KEYS",
    "DATASET_SECRET",
    "DATASET_SECRET_ENV",
    "MLFLOW_SECRET",
    "MLFLOW_SECRET_KEYS",
    "ENDPOINTS_CONFIG_MAP",
    "ENDPOINT_KEYS",
    "PIPELINE_POD_LABEL",
    "RUN_PARAMETERS_DOC",
    "cluster_env",
    "light_task",
    "gpu_task",
    "run_defaults",
    "closing_task",
    "opening_task",
    "compiling_for",
    "pods_of",
    "STAGING_VOLUME",
    "STAGING_PATH",
    "compile_target",
    "CaBundle",
    "CA_BUNDLE_PATH",
    "CA_BUNDLE_ENV",
    "trusting",
    "relay_arguments",
    "fan_in",
]
#: The chart's Secret with the MinIO/S3 credentials (keys become environment variables of the same name).
S3_SECRET = "proxyhpo-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The chart's Secret with the read-only keys of the data set reader (s3.datasetUser) -> the variables
#: proxyhpo.storage reads data sets under PROXYHPO_DATASETS_ROOT with (every other S3 call uses S3_SECRET's).
DATASET_SECRET = "proxyhpo-s3-datasets"
DATASET_SECRET_ENV = {"AWS_ACCESS_KEY_ID": "PROXYHPO_DATASETS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "PROXYHPO_DATASETS_SECRET_ACCESS_KEY"}
#: MLflow's credentials (the chart's mlflow.auth; empty values without it), read by MLflow's client from these names.
MLFLOW_SECRET = "proxyhpo-mlflow"
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: The chart's ConfigMap with the MLflow and MinIO endpoints, and the staging folder (the emptyDir at STAGING_PATH).
ENDPOINTS_CONFIG_MAP = "proxyhpo-endpoints"
ENDPOINT_KEYS = ("MLFLOW_TRACKING_URI", "PROXYHPO_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL", "PROXYHPO_CHECKPOINT_ROOT", "PROXYHPO_HOME", "PROXYHPO_DATASETS_ROOT")
#: Pods with this label may reach MinIO and MLflow through the chart's NetworkPolicy.
PIPELINE_POD_LABEL = "proxyhpo/pipeline"


_target = threading.local()


@contextlib.contextmanager
def _building_with(setting: str, value):
    """Inside this block (this thread), the tasks being built read ``value`` as their ``setting``; the previous one after."""
    previous = getattr(_target, setting, None)
    setattr(_target, setting, value)
    try:
        yield
    finally:
        setattr(_target, setting, previous)


@contextlib.contextmanager
def compiling_for(target: KfpTarget):
    """Build pipelines for KFP backend ``target`` inside this block (this thread): one definition, every backend."""
    with _building_with("value", target):
        yield target


@contextlib.contextmanager
def pods_of(study: StudyConfig):
    """Build the tasks inside this block with ``study``'s pod settings (scratch size, pull secrets): every builder
    wraps its ``dsl.pipeline`` call in it, so a CPU task, which gets no study, still gets them."""
    with _building_with("resources", study.resources):
        yield study


def _resources() -> ResourcesConfig:
    return getattr(_target, "resources", None) or ResourcesConfig()


def compile_target() -> KfpTarget:
    """The backend the pipeline being built is for (:func:`compiling_for`; default: the newest)."""
    return getattr(_target, "value", None) or LATEST_TARGET


def relay_arguments(group: str) -> dict[str, str]:
    """A loop task's arguments that relay its output for :func:`fan_in` (none where ``dsl.Collected`` works)."""
    if compile_target().collects_artifacts:
        return {}
    return {"relay_run": dsl.PIPELINE_JOB_ID_PLACEHOLDER, "relay_group": group}


def fan_in(collecting, relayed, producer: dsl.PipelineTask, output: str, *, group: str, **arguments) -> dsl.PipelineTask:
    """The task after a loop that reads every iteration's ``output``: ``collecting(results=dsl.Collected(...))``,
    or, for a backend without collected artifacts, ``relayed`` (reading the relay folder) ordered after the loop.

    Args:
        collecting, relayed: the two components; ``relayed`` takes ``relay_run`` and ``relay_group`` for ``results``.
        producer: the task inside the loop (built with :func:`relay_arguments` of the same ``group``).
        group: the loop's name.
        arguments: the other arguments, the same for both.
    """
    if compile_target().collects_artifacts:
        return collecting(**arguments, results=dsl.Collected(producer.outputs[output]))
    return relayed(**arguments, **relay_arguments(group)).after(producer)


@dataclass(frozen=True)
class CaBundle:
    """A private CA bundle (PEM) the task pods trust for TLS to an external S3 or MLflow: one key of a ConfigMap or a
    Secret in the run namespace (the chart's ``caBundle`` value names the same one for its own pods)."""

    kind: Literal["configMap", "secret"]
    name: str
    key: str = "ca.crt"


#: Where a task pod finds the CA bundle: the ConfigMap or Secret is mounted at the folder, each key a file.
CA_BUNDLE_FOLDER = "/etc/proxyhpo/ca"
CA_BUNDLE_PATH = CA_BUNDLE_FOLDER + "/{key}"
#: The variables pointing boto3 (S3), requests (MLflow's client) and Python's ssl module at the bundle.
CA_BUNDLE_ENV = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@contextlib.contextmanager
def trusting(bundle: CaBundle | None):
    """Build the tasks inside this block with ``bundle`` mounted and named by :data:`CA_BUNDLE_ENV` (None: nothing)."""
    with _building_with("ca_bundle", bundle):
        yield bundle


def _trust_ca_bundle(task: dsl.PipelineTask) -> None:
    bundle: CaBundle | None = getattr(_target, "ca_bundle", None)
    if bundle is None:
        return
    if bundle.kind == "secret":
        kubernetes.use_secret_as_volume(task, secret_name=bundle.name, mount_path=CA_BUNDLE_FOLDER, optional=False)
    else:
        kubernetes.use_config_map_as_volume(task, config_map_name=bundle.name, mount_path=CA_BUNDLE_FOLDER, optional=False)
    for variable in CA_BUNDLE_ENV:  # the bundle replaces the image's public CAs for these clients
        task.set_env_variable(variable, CA_BUNDLE_PATH.format(key=bundle.key))


def cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Inject the credentials (from the Secret, by reference only), the endpoints and a private CA bundle (when
    :func:`trusting` one) into a task's pod."""
    _trust_ca_bundle(task)
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={key: key for key in S3_SECRET_KEYS})
    kubernetes.use_secret_as_env(task, secret_name=DATASET_SECRET, secret_key_to_env=DATASET_SECRET_ENV)
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env={key: key for key in MLFLOW_SECRET_KEYS})
    kubernetes.use_config_map_as_env(task, config_map_name=ENDPOINTS_CONFIG_MAP, config_map_key_to_env={key: key for key in ENDPOINT_KEYS})
    kubernetes.add_pod_label(task, label_key=PIPELINE_POD_LABEL, label_value="true")  # the chart's NetworkPolicy admits these pods
    return task


#: Every task stages data sets and caches into this emptyDir, never into the container's layer: the chart's
#: ConfigMap sets ``PROXYHPO_HOME`` to it (on the cluster only: a local run keeps its own home).
STAGING_VOLUME, STAGING_PATH = "proxyhpo-staging", "/staging"


def staged(task: dsl.PipelineTask, resources: ResourcesConfig) -> dsl.PipelineTask:
    """Stage into an emptyDir capped at ``resources.scratch`` (the kubelet evicts the one pod that overflows it, not
    the node's other pods under DiskPressure), or into a generic ephemeral volume of that size when the study sets
    ``resources.scratch_volume`` (a PVC per pod the scheduler must bind: the disk is reserved, not only capped); mount
    the study's shared data cache (``resources.data_cache``), and pull with the study's image pull secrets."""
    if resources.scratch_volume is None:
        kubernetes.empty_dir_mount(task, volume_name=STAGING_VOLUME, mount_path=STAGING_PATH, size_limit=resources.scratch)
    else:
        kubernetes.add_ephemeral_volume(
            task, volume_name=STAGING_VOLUME, mount_path=STAGING_PATH, access_modes=["ReadWriteOnce"],
            size=resources.scratch, storage_class_name=resources.scratch_volume.storage_class,
        )
    if resources.data_cache is not None:  # kfp-kubernetes mounts a PVC read-write only: the tasks never write to it
        kubernetes.mount_pvc(task, pvc_name=resources.data_cache.pvc, mount_path=resources.data_cache.path)
        task.set_env_variable(CACHE_ENV, resources.data_cache.path)
    if resources.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(resources.image_pull_secrets))
    return task


def light_task(task: dsl.PipelineTask, name: str, *, cache: bool = True) -> dsl.PipelineTask:
    """A CPU task: the slim CPU image (no CUDA libraries to pull, no GPU visible) and small requests."""
    task.set_container_image(CPU_IMAGE)
    task.set_display_name(name).set_cpu_request("1").set_memory_request("2Gi").set_cpu_limit("2").set_memory_limit("4Gi")
    task.set_caching_options(cache)
    return cluster_env(staged(task, _resources()))


def gpu_task(task: dsl.PipelineTask, name: str, study: StudyConfig) -> dsl.PipelineTask:
    """A GPU task: the CUDA runtime image (the components' own), one GPU, the study's CPU and memory, and its placement:
    node selector, required node affinity and tolerations (independent of the GPU's resource name), a timeout."""
    resources = study.resources
    task.set_display_name(name).set_caching_options(False)
    task.set_accelerator_type(resources.gpu_type).set_accelerator_limit(1)
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory).set_cpu_limit(resources.cpu).set_memory_limit(resources.memory)
    for toleration in resources.tolerations:
        kubernetes.add_toleration(task, key=toleration.key, operator=toleration.operator, value=toleration.value or None, effect=toleration.effect or None)
    for label, value in resources.node_selector.items():
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    if resources.node_affinity:
        kubernetes.add_node_affinity(task, match_expressions=[requirement.model_dump() for requirement in resources.node_affinity])
    if resources.timeout_hours is not None:  # a hung pod would hold its GPU for ever
        kubernetes.set_timeout(task, seconds=round(resources.timeout_hours * 3600))
    return cluster_env(staged(task, resources))


#: What every pipeline's inputs mean, for the Kubeflow UI (the docstring of each pipeline function).
RUN_PARAMETERS_DOC = """
        Args:
            study_config: the whole study config as JSON (what `proxyhpo run` reads from the YAML); the settings
                a pipeline is compiled for (rounds, GPUs) are checked by the first task, which refuses a config
                that differs.
            dataset: the data set: an MSD folder in the chart's MinIO, s3://bucket/prefix (wins over study_config's).
            external: the external test set, s3://bucket/prefix, or none (wins over study_config's).
            study_name: the MLflow experiment and the study's name (wins over study_config's).
            resume_run: empty, or the MLflow parent run of a stopped run of this study and config to continue: the
                trials it finished are not trained again (`proxyhpo run CONFIG --host URL --resume RUN` fills it in).
"""


def run_defaults(study: StudyConfig) -> dict[str, str]:
    """The defaults of a pipeline's run parameters: the study it is compiled for."""
    return study.run_parameters()


def closing_task(study_config: str, study_name: str) -> dsl.PipelineTask:
    """The exit handler's task: closes the run's MLflow runs FAILED when the run did not succeed.

    For a backend without final status it closes whatever the run left open: after a successful run, nothing.
    """
    arguments = {"study": study_config, "study_name": study_name, "pipeline_run": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
    closing = c.close_study(**arguments) if compile_target().final_status else c.close_open_runs(**arguments)
    return light_task(closing, "close MLflow study run", cache=False)


def opening_task(
    study_config: str,
    dataset: str,
    external: str,
    study_name: str,
    *,
    kind: str,
    shape: PipelineShape,
    resume_run: str = "",
    fields: dict | None = None,
) -> dsl.PipelineTask:
    """The first task: resolves the run's study, checks it against the compiled ``shape`` and opens the MLflow run.

    Every other task reads the study and the run from its ``study_run`` artifact, so they all wait for it:
    a config edited in the UI into another shape fails the run at once, with one line.
    """
    opening = c.start_study(
        study=study_config,
        dataset=dataset,
        external=external,
        study_name=study_name,
        pipeline=kind,
        pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        compiled_shape=shape.model_dump_json(),
        resume_run=resume_run,
        **({"typed_fields": True, **fields} if fields else {}),  # the launch form's typed fields (proxyhpo.launch_form)
    )
    return light_task(opening, "open MLflow study run", cache=False)
