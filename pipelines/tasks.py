"""What every pipeline's tasks share: the cluster's Secret, ConfigMap and pod label, and CPU or GPU resources."""

from kfp import dsl, kubernetes

from proxyhpo.config import StudyConfig

__all__ = ["S3_SECRET", "S3_SECRET_KEYS", "ENDPOINTS_CONFIG_MAP", "ENDPOINT_KEYS", "PIPELINE_POD_LABEL", "cluster_env", "light_task", "gpu_task"]
#: The chart's Secret with the MinIO/S3 credentials (keys become environment variables of the same name).
S3_SECRET = "proxyhpo-s3"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The chart's ConfigMap with the MLflow and MinIO endpoints.
ENDPOINTS_CONFIG_MAP = "proxyhpo-endpoints"
ENDPOINT_KEYS = ("MLFLOW_TRACKING_URI", "PROXYHPO_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL")
#: Pods with this label may reach MinIO and MLflow through the chart's NetworkPolicy.
PIPELINE_POD_LABEL = "proxyhpo/pipeline"


def cluster_env(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Inject the credentials (from the Secret, by reference only) and the endpoints into a task's pod."""
    kubernetes.use_secret_as_env(task, secret_name=S3_SECRET, secret_key_to_env={key: key for key in S3_SECRET_KEYS})
    kubernetes.use_config_map_as_env(task, config_map_name=ENDPOINTS_CONFIG_MAP, config_map_key_to_env={key: key for key in ENDPOINT_KEYS})
    kubernetes.add_pod_label(task, label_key=PIPELINE_POD_LABEL, label_value="true")  # the chart's NetworkPolicy admits these pods
    return task


def light_task(task: dsl.PipelineTask, name: str, *, cache: bool = True) -> dsl.PipelineTask:
    task.set_display_name(name).set_cpu_request("1").set_memory_request("2Gi").set_cpu_limit("2").set_memory_limit("4Gi")
    task.set_caching_options(cache)
    return cluster_env(task)


def gpu_task(task: dsl.PipelineTask, name: str, study: StudyConfig) -> dsl.PipelineTask:
    resources = study.resources
    task.set_display_name(name).set_caching_options(False)
    task.set_accelerator_type(resources.gpu_type).set_accelerator_limit(1)
    task.set_cpu_request(resources.cpu).set_memory_request(resources.memory).set_cpu_limit(resources.cpu).set_memory_limit(resources.memory)
    kubernetes.add_toleration(task, key=resources.gpu_type, operator="Exists", effect="NoSchedule")
    return cluster_env(task)
