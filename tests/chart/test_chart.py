"""The proxyhpo chart, rendered by Helm's own engine and validated against Kubernetes' schemas."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "proxyhpo"
# Validated against the chart's kubeVersion floor and a current release; kubernetes-validate ships the
# schemas, nothing is fetched.
KUBE_VERSIONS = ("1.27.0", "1.33.0")
CREDS: dict[str, Any] = {"s3": {"accessKey": "team-user", "secretKey": "s3-secret-9f2c7d"},
                         "postgresql": {"auth": {"password": "pg-secret-41ab0e"}}}


def _decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# --- helm lint ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_helm_lint_strict_has_no_warning(kube_version: str) -> None:
    report = helm.lint(CHART_DIR, CREDS, strict=True, kube_version=f"v{kube_version}")
    findings = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert report["errors"] == [] and findings == [], report


def test_kube_version_floor_is_the_one_tested(chart: Any) -> None:
    assert chart.metadata["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"


def test_helm_lint_reports_a_schema_violation() -> None:
    # The lint must be able to fail: an unknown key is an error.
    report = helm.lint(CHART_DIR, {**CREDS, "replicaCount": 2}, strict=True)
    assert any("replicaCount" in error for error in report["errors"]), report


# --- every rendered manifest is valid Kubernetes ----------------------------------------------------------

@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_kubernetes(value_set: tuple[str, dict, Any], kube_version: str) -> None:
    name, _, rendered = value_set
    assert rendered.objects, name
    for obj in rendered.objects:
        # strict: unknown fields (a misspelt key, a field at the wrong level) are errors too
        kubernetes_validate.validate(obj, kube_version, strict=True)


def test_validator_rejects_a_broken_manifest(render: Any) -> None:
    deployment = render(CREDS).kind("Deployment")["proxyhpo-mlflow"]
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # misspelt "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


def test_release_contains_every_service(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    expected = {
        ("Deployment", "proxyhpo-minio"), ("Service", "proxyhpo-minio"),
        ("StatefulSet", "proxyhpo-postgresql"), ("Service", "proxyhpo-postgresql"),
        ("Deployment", "proxyhpo-mlflow"), ("Service", "proxyhpo-mlflow"),
        ("ConfigMap", "proxyhpo-endpoints"), ("Pod", "proxyhpo-test"),
    }
    assert expected <= kinds, expected - kinds
    minio_persistence = values.get("minio", {}).get("persistence", {}).get("enabled", True)
    assert (("PersistentVolumeClaim", "proxyhpo-minio") in kinds) == minio_persistence
    assert (("Job", "proxyhpo-bucket") in kinds) == values.get("minio", {}).get("bucketJob", {}).get("enabled", True)
    # Pipeline pods run as KFP's own service account: the chart creates no identity nothing would use.
    assert not any(k in {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"} for k, _ in kinds)


# --- restricted pods ----------------------------------------------------------------------------------------

def test_every_container_is_restricted_and_bounded(value_set: tuple[str, dict, Any]) -> None:
    name, _, rendered = value_set
    specs = list(rendered.pod_specs())
    assert len(specs) >= 4, name
    for where, spec in specs:
        pod_ctx = spec["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True, where
        assert pod_ctx["runAsUser"] > 0 and pod_ctx["runAsGroup"] > 0, where
        assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, f"{where}: none of the services calls the API"
        mounts_tmp = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where}/{container['name']}"
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, at
            assert ctx["runAsNonRoot"] is True, at
            assert ctx["capabilities"]["drop"] == ["ALL"] and "add" not in ctx["capabilities"], at
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, at
            assert ctx["readOnlyRootFilesystem"] is True, at
            assert not ctx.get("privileged", False), at
            # a read-only root needs a writable /tmp
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if where.startswith("Pod/"):
                assert not tmp  # the test pod writes nothing
            else:
                assert tmp and tmp[0]["name"] in mounts_tmp, at
            for section in ("requests", "limits"):
                assert set(container["resources"][section]) >= {"cpu", "memory"}, f"{at}: resources.{section}"
            assert not container["image"].endswith(":latest") and ":" in container["image"].rsplit("/", 1)[-1], at


def test_long_running_containers_have_probes(value_set: tuple[str, dict, Any]) -> None:
    _, _, rendered = value_set
    for where, spec in rendered.pod_specs():
        if where.split("/")[0] not in {"Deployment", "StatefulSet"}:
            continue
        for container in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{where}/{container['name']} lacks {probe}"


def test_mlflow_probes_use_the_host_check_exempt_health_path(render: Any) -> None:
    container = render(CREDS).kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    assert {container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")} == {"/health"}


# --- credentials ---------------------------------------------------------------------------------------------

def test_values_yaml_ships_no_credentials(chart: Any) -> None:
    values = chart.values
    assert values["s3"]["accessKey"] == "" and values["s3"]["secretKey"] == ""
    assert values["postgresql"]["auth"]["password"] == ""


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "s3 credentials missing"),
        ({"s3": {"accessKey": "team-user"}, "postgresql": {"auth": {"password": "x"}}}, "s3 credentials missing"),
        ({"s3": {"secretKey": "s3-secret-9f2c7d"}, "postgresql": CREDS["postgresql"]}, "both or neither"),
        ({"s3": CREDS["s3"]}, "postgresql password missing"),
        ({"s3": {"accessKey": "ab", "secretKey": "s3-secret-9f2c7d"}, "postgresql": CREDS["postgresql"]}, "s3.accessKey must have at least 3"),
        ({"s3": {"accessKey": "team-user", "secretKey": "short"}, "postgresql": CREDS["postgresql"]}, "s3.secretKey must have at least 8"),
        ({"s3": {**CREDS["s3"], "existingSecret": "mine"}, "postgresql": CREDS["postgresql"]}, "not both"),
        ({"s3": CREDS["s3"], "postgresql": {"auth": {"password": "p", "existingSecret": "mine"}}}, "not both"),
        ({**CREDS, "minio": {"persistence": {"enabled": False, "existingClaim": "data"}}}, "minio.persistence.existingClaim"),
        ({"s3": {"existingSecret": "proxyhpo-s3"}, "postgresql": CREDS["postgresql"]}, "not proxyhpo-s3"),
        ({"s3": {**CREDS["s3"], "pipelineUser": {"name": "team-user"}}, "postgresql": CREDS["postgresql"]}, "must differ from the MinIO root user"),
        ({**CREDS, "s3": {**CREDS["s3"], "pipelineUser": {"secretKey": "short"}}}, "s3.pipelineUser.secretKey must have at least 8"),
    ],
    ids=["nothing", "no-s3-secret-key", "only-s3-secret-key", "no-pg-password", "short-access-key", "short-secret-key", "s3-both", "pg-both",
         "claim-without-persistence", "root-secret-named-like-the-pipelines-one", "pipeline-user-is-root", "short-pipeline-key"],
)
def test_fail_guards_stop_the_render_with_a_message(render: Any, values: dict, message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)


def test_fail_message_says_how_to_fix(render: Any) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render({})
    assert "s3.existingSecret" in str(caught.value) and "--set s3.accessKey=" in str(caught.value)
    # and where an upgrade would have found them
    assert "Secret proxyhpo-minio" in str(caught.value) and "namespace ml-team" in str(caught.value)


def test_generated_secrets_hold_the_given_values_and_nothing_else_does(render: Any) -> None:
    rendered = render(CREDS)
    secrets = rendered.kind("Secret")
    assert set(secrets) == {"proxyhpo-minio", "proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload", "proxyhpo-postgres", "proxyhpo-mlflow", "proxyhpo-mlflow-server"}
    assert _decoded(secrets["proxyhpo-minio"]) == {"root-user": "team-user", "root-password": "s3-secret-9f2c7d"}
    assert _decoded(secrets["proxyhpo-postgres"]) == {"POSTGRES_PASSWORD": "pg-secret-41ab0e"}
    pipeline_key = _decoded(secrets["proxyhpo-s3"])["AWS_SECRET_ACCESS_KEY"]
    # MLflow's admin (mlflow.auth, on by default): its generated password, and the server's own signing key
    mlflow_user = _decoded(secrets["proxyhpo-mlflow"])
    assert mlflow_user["MLFLOW_TRACKING_USERNAME"] == "admin" and re.fullmatch(r"[A-Za-z0-9]{40}", mlflow_user["MLFLOW_TRACKING_PASSWORD"])
    flask_key = _decoded(secrets["proxyhpo-mlflow-server"])["flask-secret-key"]
    assert re.fullmatch(r"[A-Za-z0-9]{48}", flask_key)
    reader_key = _decoded(secrets["proxyhpo-s3-datasets"])["AWS_SECRET_ACCESS_KEY"]
    assert re.fullmatch(r"[A-Za-z0-9]{40}", reader_key) and reader_key != pipeline_key
    uploader_key = _decoded(secrets["proxyhpo-s3-datasets-upload"])["AWS_SECRET_ACCESS_KEY"]
    assert re.fullmatch(r"[A-Za-z0-9]{40}", uploader_key) and uploader_key not in (pipeline_key, reader_key)
    generated = ("s3-secret-9f2c7d", "pg-secret-41ab0e", pipeline_key, reader_key, uploader_key, mlflow_user["MLFLOW_TRACKING_PASSWORD"], flask_key)
    # The secret values appear in Secrets only: never in env values, args, the ConfigMaps or the NOTES.
    for obj in rendered.objects:
        if obj["kind"] != "Secret":
            text = yaml.safe_dump(obj)
            for secret in generated:
                assert secret not in text, f"{obj['kind']}/{obj['metadata']['name']} leaks a secret"
    for secret in generated:
        assert secret not in rendered.notes


def test_without_mlflow_auth_the_server_is_open_and_the_pipelines_reference_still_resolves(render: Any) -> None:
    rendered = render({**CREDS, "mlflow": {"auth": {"enabled": False}}})
    assert _decoded(rendered.kind("Secret")["proxyhpo-mlflow"]) == {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
    assert "proxyhpo-mlflow-server" not in rendered.kind("Secret") and "proxyhpo-mlflow-auth" not in rendered.kind("ConfigMap")
    args = rendered.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--app-name=basic-auth" not in args and "anyone who reaches the service reads and writes every run" in rendered.notes


def test_mlflow_auth_runs_the_basic_auth_app_on_the_runs_database(render: Any) -> None:
    rendered = render({**CREDS, "mlflow": {"auth": {"adminUsername": "ops", "adminPassword": "given-password-7c1e", "defaultPermission": "NO_PERMISSIONS"}}})
    assert _decoded(rendered.kind("Secret")["proxyhpo-mlflow"]) == {"MLFLOW_TRACKING_USERNAME": "ops", "MLFLOW_TRACKING_PASSWORD": "given-password-7c1e"}
    container = rendered.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    assert "--app-name=basic-auth" in container["args"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["secretKeyRef"]["name"] + "/" + e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]}
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "proxyhpo-mlflow/MLFLOW_TRACKING_USERNAME" and env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "proxyhpo-mlflow/MLFLOW_TRACKING_PASSWORD"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "proxyhpo-mlflow-server/flask-secret-key"
    ini = rendered.kind("ConfigMap")["proxyhpo-mlflow-auth"]["data"]["basic_auth.ini"]
    assert "default_permission = NO_PERMISSIONS" in ini and env["MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg2", "") in ini  # the runs' database
    assert "given-password-7c1e" not in ini and "as user ops" in rendered.notes


def test_pipeline_secret_holds_the_bucket_users_keys_never_the_root_ones(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    pipeline = _decoded(rendered.kind("Secret")["proxyhpo-s3"])
    # exactly the names and keys the compiled pipelines reference
    assert set(pipeline) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, name
    user = values.get("s3", {}).get("pipelineUser", {})
    assert pipeline["AWS_ACCESS_KEY_ID"] == user.get("name", "proxyhpo-pipeline")
    given = user.get("secretKey")
    if given:
        assert pipeline["AWS_SECRET_ACCESS_KEY"] == given
    else:  # generated: long and random
        assert re.fullmatch(r"[A-Za-z0-9]{40}", pipeline["AWS_SECRET_ACCESS_KEY"]), name
    root = values.get("s3", {})
    assert pipeline["AWS_ACCESS_KEY_ID"] != root.get("accessKey") and pipeline["AWS_SECRET_ACCESS_KEY"] != root.get("secretKey")


def test_generated_pipeline_key_is_fresh_per_install_and_one_within_a_render(render: Any) -> None:
    first, second = render(CREDS), render(CREDS)
    key = _decoded(first.kind("Secret")["proxyhpo-s3"])["AWS_SECRET_ACCESS_KEY"]
    assert key != _decoded(second.kind("Secret")["proxyhpo-s3"])["AWS_SECRET_ACCESS_KEY"]
    # The MLflow pod's checksum is computed from the very key the Secret holds (generated once per render).
    data = first.kind("Secret")
    keys = (data["proxyhpo-postgres"]["data"]["POSTGRES_PASSWORD"], data["proxyhpo-s3"]["data"]["AWS_SECRET_ACCESS_KEY"],
            data["proxyhpo-mlflow"]["data"]["MLFLOW_TRACKING_PASSWORD"], data["proxyhpo-mlflow-server"]["data"]["flask-secret-key"])
    expected = hashlib.sha256(",".join(keys).encode()).hexdigest()
    annotations = first.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/credentials"] == expected


def _secrets_read(spec: dict) -> set[str]:
    """Names of the Secrets a pod reads, as env or as volumes."""
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for container in spec.get("initContainers", []) + spec["containers"]:
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
    return names


def test_only_minio_and_the_bucket_job_see_the_root_credentials(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    root = values.get("s3", {}).get("existingSecret") or "proxyhpo-minio"
    readers = {where for where, spec in rendered.pod_specs() if root in _secrets_read(spec)}
    bucket_job = {"Job/proxyhpo-bucket"} if values.get("minio", {}).get("bucketJob", {}).get("enabled", True) else set()
    assert readers == {"Deployment/proxyhpo-minio"} | bucket_job, name
    # MLflow holds the bucket user's keys (its artifact proxy), not the root ones
    assert "proxyhpo-s3" in _secrets_read(dict(rendered.pod_specs())["Deployment/proxyhpo-mlflow"])


def test_credentials_reach_pods_as_files_where_the_program_reads_files(render: Any) -> None:
    rendered = render(CREDS)
    specs = dict(rendered.pod_specs())

    def env_secret_refs(spec: dict) -> set[tuple[str, str]]:
        return {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for c in spec.get("initContainers", []) + spec["containers"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}

    # MinIO (MINIO_ROOT_*_FILE), PostgreSQL (POSTGRES_PASSWORD_FILE) and the bucket Job's script read files.
    for where in ("Deployment/proxyhpo-minio", "StatefulSet/proxyhpo-postgresql", "Job/proxyhpo-bucket"):
        assert env_secret_refs(specs[where]) == set(), where
    minio = specs["Deployment/proxyhpo-minio"]["containers"][0]
    env = {e["name"]: e.get("value") for e in minio["env"]}
    mounts = {m["name"]: m["mountPath"] for m in minio["volumeMounts"]}
    assert env["MINIO_ROOT_USER_FILE"] == f"{mounts['minio-root']}/root-user"
    assert env["MINIO_ROOT_PASSWORD_FILE"] == f"{mounts['minio-root']}/root-password"
    # MLflow: libpq, boto3 and its auth app read the environment (waived in policy-waivers.yaml); the bucket user's keys.
    assert env_secret_refs(specs["Deployment/proxyhpo-mlflow"]) == {
        ("proxyhpo-postgres", "POSTGRES_PASSWORD"), ("proxyhpo-s3", "AWS_ACCESS_KEY_ID"), ("proxyhpo-s3", "AWS_SECRET_ACCESS_KEY"),
        ("proxyhpo-mlflow", "MLFLOW_TRACKING_USERNAME"), ("proxyhpo-mlflow", "MLFLOW_TRACKING_PASSWORD"), ("proxyhpo-mlflow-server", "flask-secret-key")}
    for where, spec in specs.items():
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["defaultMode"] == 0o440, f"{where}: {volume['name']}"


def test_existing_secrets_render_no_secret_of_theirs_and_are_referenced(render: Any) -> None:
    rendered = render({"s3": {"existingSecret": "team-minio-root"}, "postgresql": {"auth": {"existingSecret": "team-postgres"}}})
    # the bucket user's keys and MLflow's user are always the chart's
    assert set(rendered.kind("Secret")) == {"proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload", "proxyhpo-mlflow", "proxyhpo-mlflow-server"}
    refs = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for _, spec in rendered.pod_specs() for c in spec["containers"] for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert refs == {
        ("proxyhpo-s3", "AWS_ACCESS_KEY_ID"), ("proxyhpo-s3", "AWS_SECRET_ACCESS_KEY"), ("team-postgres", "POSTGRES_PASSWORD"),
        ("proxyhpo-mlflow", "MLFLOW_TRACKING_USERNAME"), ("proxyhpo-mlflow", "MLFLOW_TRACKING_PASSWORD"), ("proxyhpo-mlflow-server", "flask-secret-key"),
    }
    volumes = {v["secret"]["secretName"] for _, spec in rendered.pod_specs() for v in spec.get("volumes", []) if "secret" in v}
    # the test Pod reads MLflow's user from files; the bucket Job the reader's and uploader's keys, the demo Job the uploader's
    assert volumes == {"team-minio-root", "team-postgres", "proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload", "proxyhpo-mlflow"}
    assert "team-minio-root" in rendered.notes


# --- schema ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "extra",
    [{"replicaCount": 2}, {"mlflow": {"replica": 2}}, {"minio": {"persistence": {"sise": "1Gi"}}},
     {"minio": {"resources": {"requests": {"nvidia.com/gpu": 1}}}}, {"s3": {"bucket": "Not_A_Bucket"}},
     {"image": {"tag": "latest"}}, {"containerSecurityContext": {"allowPrivilegeEscalation": True}}],
    ids=["unknown-top-level", "unknown-nested", "misspelt-deep", "unknown-resource", "bad-bucket", "latest-tag", "escalation"],
)
def test_schema_rejects_bad_values(render: Any, chart: Any, extra: dict) -> None:
    values = json.loads(json.dumps(CREDS))
    for key, value in extra.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        render(values)


def _object_nodes(node: Any, path: str = "#") -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((path, node))
        for key, value in node.items():
            found.extend(_object_nodes(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_object_nodes(value, f"{path}/{i}"))
    return found


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    nodes = _object_nodes(schema)
    assert len(nodes) > 20
    for path, node in nodes:
        closed = node.get("additionalProperties")
        # Closed objects, or maps of strings (labels, selectors), whose keys are the user's to choose.
        assert closed is False or closed == {"type": "string"}, path


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z][\w.\-/]*|\"[^\"]+\"):(\s|$)")
    for i, line in enumerate(lines):
        if not key.match(line):
            continue
        previous = next((p for p in reversed(lines[:i]) if p.strip()), "")
        assert previous.strip().startswith("#"), f"values.yaml:{i + 1} {line.strip()!r} has no comment above it"


# --- wiring between the pieces -------------------------------------------------------------------------------

def test_services_select_their_pods(value_set: tuple[str, dict, Any]) -> None:
    _, _, rendered = value_set
    pods = {obj["metadata"]["name"]: obj["spec"]["template"]["metadata"]["labels"]
            for kind in ("Deployment", "StatefulSet") for obj in rendered.kind(kind).values()}
    for name, service in rendered.kind("Service").items():
        selector = service["spec"]["selector"]
        assert selector.items() <= pods[name].items(), name
        ports = {p["name"] for c in (rendered.kind("Deployment") | rendered.kind("StatefulSet"))[name]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name


def test_endpoints_configmap_points_at_the_services(value_set: tuple[str, dict, Any]) -> None:
    _, values, rendered = value_set
    data = rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]
    # exactly the keys the pipelines read (pipelines/hpo.py ENDPOINT_KEYS): nothing that no pod uses
    assert set(data) == {"MLFLOW_TRACKING_URI", "PROXYHPO_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL", "PROXYHPO_CHECKPOINT_ROOT", "PROXYHPO_HOME",
                         "PROXYHPO_DATASETS_ROOT"}
    assert data["PROXYHPO_DATASETS_ROOT"] == f"s3://{values.get('s3', {}).get('bucket', 'proxyhpo')}/datasets"
    from pipelines.tasks import STAGING_PATH

    assert data["PROXYHPO_HOME"] == STAGING_PATH  # the compiled tasks' emptyDir: staging never lands in the container's layer
    assert data["PROXYHPO_CHECKPOINT_ROOT"] == f"s3://{values.get('s3', {}).get('bucket', 'proxyhpo')}/checkpoints"
    services = rendered.kind("Service")
    for key, service in (("MLFLOW_TRACKING_URI", "proxyhpo-mlflow"), ("PROXYHPO_S3_ENDPOINT", "proxyhpo-minio")):
        url = urlparse(data[key])
        name, namespace = url.hostname.split(".")[:2]
        assert (url.scheme, name, namespace) == ("http", service, services[service]["metadata"]["namespace"]), key
        assert url.port in {p["port"] for p in services[service]["spec"]["ports"]}, key
    assert data["MLFLOW_S3_ENDPOINT_URL"] == data["PROXYHPO_S3_ENDPOINT"]
    bucket = values.get("s3", {}).get("bucket", "proxyhpo")
    mlflow = rendered.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    assert f"--artifacts-destination=s3://{bucket}/mlflow" in mlflow["args"]
    env = {e["name"]: e.get("value") for e in mlflow["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"] == data["PROXYHPO_S3_ENDPOINT"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow@proxyhpo-postgresql.")
    assert ":" not in urlparse(env["MLFLOW_BACKEND_STORE_URI"]).netloc.split("@")[0], "no password in the URI"


def test_image_tags_equal_the_package_version(value_set: tuple[str, dict, Any], package_version: str, chart: Any) -> None:
    _, values, rendered = value_set
    assert chart.metadata["appVersion"] == package_version
    assert chart.metadata["version"] == package_version
    registry = values.get("image", {}).get("registry", "ghcr.io/proxyhpo")
    mlflow_images = {c["image"] for where, spec in rendered.pod_specs() for c in spec["containers"] if c["name"] in {"mlflow", "check"}}
    assert mlflow_images == {f"{registry}/mlflow:{package_version}"}


def test_image_tag_override_reaches_both_images(render: Any) -> None:
    rendered = render({**CREDS, "image": {"tag": "0.1.0-rc1"}})
    assert rendered.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/mlflow:0.1.0-rc1")


# --- network policy and service accounts ------------------------------------------------------------------

def test_network_policies_admit_only_the_intended_clients(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    policies = rendered.kind("NetworkPolicy")
    if not values.get("networkPolicy", {}).get("enabled", True):
        assert policies == {}
        return
    assert set(policies) == {"proxyhpo-minio", "proxyhpo-postgresql", "proxyhpo-mlflow"}
    labels = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
              for kind in ("Deployment", "StatefulSet", "Job") for o in rendered.kind(kind).values()}
    namespace = policies["proxyhpo-minio"]["metadata"]["namespace"]

    def admitted(policy: dict) -> list[dict]:
        return [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]

    for pname, target in (("proxyhpo-minio", "proxyhpo-minio"), ("proxyhpo-postgresql", "proxyhpo-postgresql"), ("proxyhpo-mlflow", "proxyhpo-mlflow")):
        assert policies[pname]["spec"]["podSelector"]["matchLabels"].items() <= labels[target].items(), pname
        assert policies[pname]["spec"]["policyTypes"] == ["Ingress"]

    def matches(peer: dict, pod_labels: dict, pod_namespace: str = namespace, namespace_labels: dict | None = None) -> bool:
        """Whether a NetworkPolicyPeer (podSelector and/or namespaceSelector, no ipBlock) admits the pod."""
        if "ipBlock" in peer:
            return False
        ns_labels = namespace_labels or {"kubernetes.io/metadata.name": pod_namespace}
        if "namespaceSelector" in peer:
            if not peer["namespaceSelector"].get("matchLabels", {}).items() <= ns_labels.items():
                return False
        elif pod_namespace != namespace:
            return False  # a podSelector alone selects the policy's namespace
        return peer.get("podSelector", {}).get("matchLabels", {}).items() <= pod_labels.items()

    pipeline_pod = {"proxyhpo/pipeline": "true", "pipelines.kubeflow.org/v2_component": "true"}
    stranger = {"app": "notebook"}
    minio_peers = admitted(policies["proxyhpo-minio"])
    assert any(matches(p, pipeline_pod) for p in minio_peers)
    # the same pipeline pod in another namespace (another profile, or KFP's own) is refused
    assert not any(matches(p, pipeline_pod, "kubeflow-user-other") for p in minio_peers if p not in values.get("networkPolicy", {}).get("extraMinioFrom", []))
    assert any(matches(p, labels["proxyhpo-mlflow"]) for p in minio_peers)
    assert not any(matches(p, stranger) for p in minio_peers)
    assert not any(matches(p, labels["proxyhpo-postgresql"]) for p in minio_peers)
    pg_peers = admitted(policies["proxyhpo-postgresql"])
    backup = values.get("postgresql", {}).get("backup", {}).get("enabled", True)
    assert len(pg_peers) == 1 + backup and matches(pg_peers[0], labels["proxyhpo-mlflow"])
    if backup:  # the CronJob's pods, by their component label
        assert pg_peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "postgresql-backup"
    assert not any(matches(peer, pipeline_pod) for peer in pg_peers)
    assert {"podSelector": {}} in admitted(policies["proxyhpo-mlflow"])  # the whole namespace
    extra = values.get("networkPolicy", {}).get("extraMinioFrom", [])
    assert all(peer in minio_peers for peer in extra)


def test_pipeline_pods_are_admitted_by_label_and_namespace_together(value_set: tuple[str, dict, Any]) -> None:
    _, values, rendered = value_set
    if not values.get("networkPolicy", {}).get("enabled", True):
        return
    policy = rendered.kind("NetworkPolicy")["proxyhpo-minio"]
    peer = policy["spec"]["ingress"][0]["from"][0]
    # one peer with both selectors (AND), not two peers (OR)
    assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": policy["metadata"]["namespace"]}},
                    "podSelector": {"matchLabels": {"proxyhpo/pipeline": "true"}}}


def test_minio_console_is_open_to_no_pod(value_set: tuple[str, dict, Any]) -> None:
    _, values, rendered = value_set
    if not values.get("networkPolicy", {}).get("enabled", True):
        return
    for name, policy in rendered.kind("NetworkPolicy").items():
        for rule in policy["spec"]["ingress"]:
            assert "console" not in {p["port"] for p in rule["ports"]}, name
    minio_ports = [p for rule in rendered.kind("NetworkPolicy")["proxyhpo-minio"]["spec"]["ingress"] for p in rule["ports"]]
    assert minio_ports == [{"port": "s3", "protocol": "TCP"}]
    # The Service still has the console (reached through kubectl port-forward), named as the policy expects.
    assert {p["name"] for p in rendered.kind("Service")["proxyhpo-minio"]["spec"]["ports"]} == {"s3", "console"}


def test_notes_say_the_release_namespace_is_the_run_namespace(render: Any) -> None:
    notes = " ".join(render(CREDS).notes.split())
    assert "The release namespace is the run namespace: ml-team" in notes
    assert "standalone KFP: kubeflow" in notes and "the profile's namespace" in notes
    # the upload compiles for the chart's images and bucket: data from MinIO, not phantoms generated on a pod
    assert ("PROXYHPO_IMAGE_REGISTRY=ghcr.io/proxyhpo PROXYHPO_IMAGE_TAG=0.1.0 proxyhpo upload --host <Kubeflow Pipelines URL>"
            " --namespace ml-team --data-root s3://proxyhpo/datasets") in notes
    bucket = " ".join(render({**CREDS, "s3": {**CREDS["s3"], "bucket": "studies"}}).notes.split())
    assert "--data-root s3://studies/datasets" in bucket
    # which service account the pods run as, since the chart makes none
    assert "pipeline-runner" in notes and "default-editor" in notes


def test_chart_serves_exactly_what_the_pipelines_read(render: Any) -> None:
    from pipelines.tasks import DATASET_SECRET, DATASET_SECRET_ENV, ENDPOINT_KEYS, ENDPOINTS_CONFIG_MAP, PIPELINE_POD_LABEL, S3_SECRET, S3_SECRET_KEYS

    rendered = render(CREDS)
    assert set(rendered.kind("Secret")[S3_SECRET]["data"]) == set(S3_SECRET_KEYS)
    assert set(rendered.kind("Secret")[DATASET_SECRET]["data"]) == set(DATASET_SECRET_ENV)
    assert set(rendered.kind("ConfigMap")[ENDPOINTS_CONFIG_MAP]["data"]) == set(ENDPOINT_KEYS)
    peer = rendered.kind("NetworkPolicy")["proxyhpo-minio"]["spec"]["ingress"][0]["from"][0]
    assert peer["podSelector"]["matchLabels"] == {PIPELINE_POD_LABEL: "true"}


def test_kfp_launcher_puts_the_pipeline_root_in_the_charts_bucket(render: Any) -> None:
    rendered = render({**CREDS, "s3": {**CREDS["s3"], "bucket": "studies"}})
    launcher = rendered.kind("ConfigMap")["kfp-launcher"]["data"]
    assert launcher["defaultPipelineRoot"] == "s3://studies/pipeline-root"
    providers = yaml.safe_load(launcher["providers"])["s3"]["default"]
    endpoint = urlparse(rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]["PROXYHPO_S3_ENDPOINT"]).netloc
    assert providers["endpoint"] == endpoint and providers["disableSSL"] is True
    assert providers["credentials"] == {
        "fromEnv": False,
        "secretRef": {"secretName": "proxyhpo-s3", "accessKeyKey": "AWS_ACCESS_KEY_ID", "secretKeyKey": "AWS_SECRET_ACCESS_KEY"},
    }
    assert "kfp-launcher" not in render({**CREDS, "kfpLauncher": {"enabled": False, "pipelineRootPrefix": "x", "region": "r"}}).kind("ConfigMap")


def test_demo_data_job_pushes_where_the_demo_pipelines_read(render: Any) -> None:
    from proxyhpo.catalogue import shipped_study

    # a data set prefix of its own (s3.datasetUser.prefix): the Job pushes under it, as the pipelines and the reader read it
    rendered = render({**CREDS, "s3": {**CREDS["s3"], "bucket": "studies", "datasetUser": {"name": "proxyhpo-datasets", "secretKey": "", "prefix": "imaging/sets"}}})
    root = rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]["PROXYHPO_DATASETS_ROOT"]
    assert root == "s3://studies/imaging/sets" and f"--data-root {root}\n" in rendered.notes
    job = rendered.kind("Job")["proxyhpo-demo-data"]
    assert job["metadata"]["annotations"]["helm.sh/hook-weight"] == "10"  # after the bucket Job (0) made the user
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["proxyhpo/pipeline"] == "true"  # the NetworkPolicy admits it to MinIO
    (container,) = pod["spec"]["containers"]
    assert container["image"].endswith("/runtime-cpu:0.1.0")
    env = {e["name"]: e.get("value") for e in container["env"]}
    script = container["args"][0].replace("$BUCKET", env["BUCKET"]).replace("$DATASETS", env.get("DATASETS", "$DATASETS"))
    demo = shipped_study("demo").with_data_root(root)
    for location in (demo.data.dataset, demo.data.external):
        assert f'"{location}"' in script
    # every shipped pipeline on phantoms defaults to a data set the Job pushes, generated as its study describes
    from proxyhpo.catalogue import SHIPPED_PIPELINES

    for name, (_, example) in SHIPPED_PIPELINES.items():
        study = shipped_study(example)
        synthetic = study.data.synthetic
        if synthetic is None:
            continue
        location = study.with_data_root(root).data.dataset
        assert f'"{location}"' in script, name
        assert f"--out /work/{location.rsplit('/', 1)[1]} --cases {synthetic.cases} --size {synthetic.size} --seed {synthetic.seed}" in script, name
    assert {"name": "BUCKET", "value": "studies"} in container["env"]
    assert not any(e.get("valueFrom") for e in container["env"])  # the keys come as files, never as env from the Secret
    assert "proxyhpo-demo-data" not in render({**CREDS, "demoData": {"enabled": False}}).kind("Job")



@pytest.mark.parametrize(("owner", "rendered_here"), [("", False), ("another-release", False), ("proxyhpo", True)])
def test_kfp_launcher_of_the_profile_is_left_alone(render_on_cluster: Any, fake_kube: Any, owner: str, rendered_here: bool) -> None:
    # multi-user KFP 2.15+: the profile controller keeps a kfp-launcher in the namespace; installing over it fails
    annotations = {"meta.helm.sh/release-name": owner} if owner else {}
    fake_kube.config_maps[("ml-team", "kfp-launcher")] = {"annotations": annotations}
    rendered = render_on_cluster(CREDS, upgrade=False)
    assert ("kfp-launcher" in rendered.kind("ConfigMap")) == rendered_here
    assert "proxyhpo-endpoints" in rendered.kind("ConfigMap")


def test_minio_admits_the_kfp_ui_and_the_profiles_artifact_server(render: Any) -> None:
    peers = [peer for rule in render(CREDS).kind("NetworkPolicy")["proxyhpo-minio"]["spec"]["ingress"] for peer in rule["from"]]
    ui = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}, "podSelector": {"matchLabels": {"app": "ml-pipeline-ui"}}}
    assert ui in peers and {"podSelector": {"matchLabels": {"app": "ml-pipeline-ui-artifact"}}} in peers
    off = render({**CREDS, "networkPolicy": {"kfpUi": {"enabled": False, "namespace": "kubeflow", "uiPodLabels": {"a": "b"},
                                                       "artifactServerPodLabels": {"a": "b"}}}})
    off_peers = [peer for rule in off.kind("NetworkPolicy")["proxyhpo-minio"]["spec"]["ingress"] for peer in rule["from"]]
    assert ui not in off_peers and len(off_peers) == 3


def test_postgresql_is_backed_up_on_a_schedule_into_a_kept_volume(render: Any) -> None:
    rendered = render(CREDS)
    (cron,) = rendered.kind("CronJob").values()
    assert cron["spec"]["schedule"] == "30 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert "pg_dump" in container["args"][0] and "--format=custom" in container["args"][0]
    assert not any("valueFrom" in env for env in container["env"])  # the password comes as a file
    claim = rendered.kind("PersistentVolumeClaim")["proxyhpo-postgresql-backup"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql-backup"
    assert rendered.kind("CronJob") and not render({**CREDS, "postgresql": {**CREDS["postgresql"], "backup": {
        "enabled": False, "schedule": "0 0 * * *", "keep": 1, "size": "1Gi", "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"cpu": "1m", "memory": "1Mi"}}}}}).kind("CronJob")


def test_disruption_budgets_keep_the_services_through_a_drain(render: Any) -> None:
    budgets = render(CREDS).kind("PodDisruptionBudget")
    assert {name: budget["spec"] for name, budget in budgets.items()} == {
        name: {"minAvailable": 1, "selector": {"matchLabels": budgets[name]["spec"]["selector"]["matchLabels"]}}
        for name in ("proxyhpo-minio", "proxyhpo-postgresql", "proxyhpo-mlflow")
    }
    replicated = render({**CREDS, "mlflow": {"replicas": 2}}).kind("PodDisruptionBudget")["proxyhpo-mlflow"]["spec"]
    assert replicated["maxUnavailable"] == 1 and "minAvailable" not in replicated


# --- an external S3 instead of the chart's MinIO --------------------------------------------------------------

EXTERNAL = {"minio": {"enabled": False}, "s3": {"endpoint": "https://s3.storage.example.org", "pipelineUser": {"name": "team-proxyhpo", "secretKey": "ext-key-5d3a91c2"}},
            "postgresql": CREDS["postgresql"]}


def test_an_external_s3_replaces_minio_everywhere(render: Any) -> None:
    rendered = render(EXTERNAL)
    assert not [o for o in rendered.objects if "minio" in o["metadata"]["name"] or o["metadata"]["name"].endswith("-bucket")]
    assert _decoded(rendered.kind("Secret")["proxyhpo-s3"]) == {"AWS_ACCESS_KEY_ID": "team-proxyhpo", "AWS_SECRET_ACCESS_KEY": "ext-key-5d3a91c2"}
    endpoints = rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]
    assert endpoints["PROXYHPO_S3_ENDPOINT"] == endpoints["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.storage.example.org"
    launcher = yaml.safe_load(rendered.kind("ConfigMap")["kfp-launcher"]["data"]["providers"])["s3"]["default"]
    assert launcher["endpoint"] == "s3.storage.example.org" and launcher["disableSSL"] is False  # TLS
    mlflow_env = {e["name"]: e.get("value") for e in rendered.kind("Deployment")["proxyhpo-mlflow"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.storage.example.org"
    assert "S3 (external) https://s3.storage.example.org" in rendered.notes and "MinIO console" not in rendered.notes
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [({"s3": {"endpoint": ""}}, "minio.enabled is false: set s3.endpoint"),
     ({"s3": {"pipelineUser": {"name": "team-proxyhpo", "secretKey": ""}}}, "minio.enabled is false: give the keys of a user of https://s3.storage.example.org")],
    ids=["no-endpoint", "no-key"],
)
def test_an_external_s3_needs_its_endpoint_and_the_users_key(render: Any, values: dict, message: str) -> None:
    document = json.loads(json.dumps(EXTERNAL))
    document["s3"].update(values["s3"])
    with pytest.raises(helm.HelmRenderError, match=message):
        render(document)


# --- a private CA bundle for TLS to an external S3 or MLflow ---------------------------------------------------------

@pytest.mark.parametrize("source", ["configMap", "secret"])
def test_a_private_ca_bundle_reaches_the_pods_that_talk_tls(render: Any, source: str) -> None:
    rendered = render({**EXTERNAL, "caBundle": {source: "hospital-ca", "key": "bundle.pem"}})
    for kind, name in (("Deployment", "proxyhpo-mlflow"), ("Job", "proxyhpo-demo-data")):
        spec = rendered.kind(kind)[name]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AWS_CA_BUNDLE"] == env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == "/etc/proxyhpo/ca/bundle.pem", name
        assert {"name": "ca-bundle", "mountPath": "/etc/proxyhpo/ca", "readOnly": True} in container["volumeMounts"], name
        volume = next(v for v in spec["volumes"] if v["name"] == "ca-bundle")
        reference = volume["configMap"]["name"] if source == "configMap" else volume["secret"]["secretName"]
        assert reference == "hospital-ca" and volume[source]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}], name
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    text = json.dumps(render(EXTERNAL).objects)  # unset: no trace of it
    assert "ca-bundle" not in text and "CA_BUNDLE" not in text and "SSL_CERT_FILE" not in text


def test_a_ca_bundle_comes_from_one_place(render: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"^.*caBundle: give caBundle.configMap or caBundle.secret, not both"):
        render({**EXTERNAL, "caBundle": {"configMap": "hospital-ca", "secret": "hospital-ca"}})


# --- read-only data set credentials, separate from the results credentials -------------------------------------------

def test_the_bucket_job_creates_a_data_set_reader_the_results_user_cannot_delete_its_data(render: Any) -> None:
    rendered = render({**CREDS, "s3": {**CREDS["s3"], "bucket": "studies", "datasetUser": {"name": "team-reader", "secretKey": "reader-key-71c3", "prefix": "imaging/datasets"}}})
    reader = _decoded(rendered.kind("Secret")["proxyhpo-s3-datasets"])
    assert reader == {"AWS_ACCESS_KEY_ID": "team-reader", "AWS_SECRET_ACCESS_KEY": "reader-key-71c3"}
    assert rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]["PROXYHPO_DATASETS_ROOT"] == "s3://studies/imaging/datasets"
    job = rendered.kind("Job")["proxyhpo-bucket"]["spec"]["template"]["spec"]
    script = job["containers"][0]["args"][0]
    env = {e["name"]: e.get("value") for e in job["containers"][0]["env"]}
    assert env["DATASETS"] == "imaging/datasets" and env["BUCKET"] == "studies"
    # the results user: no delete under the prefix; the reader: list and get under it, nothing else
    assert re.search(r'"Effect": "Deny",\s*"Action": \["s3:PutObject", "s3:DeleteObject"\],\s*"Resource": \["arn:aws:s3:::\$BUCKET/\$DATASETS/\*"\]', script)
    reader_policy = script[script.index("cat > /tmp/reader.json"):script.index("EOF", script.index("cat > /tmp/reader.json") + 30)]
    actions = set(re.findall(r'"(s3:[A-Za-z]+)"', reader_policy)) - {"s3:prefix"}
    assert actions == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}, actions
    assert '"s3:prefix": ["$DATASETS/*"]' in reader_policy
    assert 'grant "$POLICY-datasets" /tmp/reader.json "$reader"' in script
    mounted = {v["name"]: v["secret"]["secretName"] for v in job["volumes"] if "secret" in v}
    assert mounted["dataset-user"] == "proxyhpo-s3-datasets"


def test_the_readers_key_is_generated_once_and_an_external_s3_may_read_with_the_pipeline_users(render: Any) -> None:
    generated = _decoded(render(CREDS).kind("Secret")["proxyhpo-s3-datasets"])
    assert generated["AWS_ACCESS_KEY_ID"] == "proxyhpo-datasets" and len(generated["AWS_SECRET_ACCESS_KEY"]) == 40
    external = _decoded(render(EXTERNAL).kind("Secret")["proxyhpo-s3-datasets"])
    assert external == {"AWS_ACCESS_KEY_ID": "team-proxyhpo", "AWS_SECRET_ACCESS_KEY": "ext-key-5d3a91c2"}  # no reader there: no split
    given = {**EXTERNAL, "s3": {**EXTERNAL["s3"], "datasetUser": {"name": "ext-reader", "secretKey": "ext-reader-key-0a", "prefix": "datasets"}}}
    assert _decoded(render(given).kind("Secret")["proxyhpo-s3-datasets"])["AWS_ACCESS_KEY_ID"] == "ext-reader"


def _heredoc(script: str, path: str, env: dict[str, str]) -> dict:
    body = re.search(rf"cat > {re.escape(path)} <<EOF\n(.*?)\nEOF\n", script, re.S)
    assert body, f"{path} is a heredoc ending in EOF"
    return json.loads(body.group(1).replace("$BUCKET", env["BUCKET"]).replace("$DATASETS", env["DATASETS"]))


def test_only_the_uploader_may_write_or_delete_the_data_sets(render: Any) -> None:
    # without bucket versioning an overwrite destroys like a delete: the pipeline user may do neither under the prefix
    rendered = render({**CREDS, "s3": {**CREDS["s3"], "bucket": "studies", "datasetUser": {"name": "team-reader", "secretKey": "", "prefix": "imaging/sets"}}})
    job = rendered.kind("Job")["proxyhpo-bucket"]["spec"]["template"]["spec"]
    script, env = job["containers"][0]["args"][0], {e["name"]: e.get("value") for e in job["containers"][0]["env"]}
    pipeline = _heredoc(script, "/tmp/policy.json", env)
    denied = [(set(s["Action"]), s["Resource"]) for s in pipeline["Statement"] if s["Effect"] == "Deny"]
    assert denied == [({"s3:PutObject", "s3:DeleteObject"}, ["arn:aws:s3:::studies/imaging/sets/*"])]
    uploader = _heredoc(script, "/tmp/uploader.json", env)
    assert {r for s in uploader["Statement"] for r in s["Resource"]} == {"arn:aws:s3:::studies", "arn:aws:s3:::studies/imaging/sets/*"}
    writes = {a for s in uploader["Statement"] if s["Resource"] == ["arn:aws:s3:::studies/imaging/sets/*"] for a in s["Action"]}
    assert {"s3:PutObject", "s3:DeleteObject", "s3:GetObject"} <= writes
    listing = next(s for s in uploader["Statement"] if s["Action"] == ["s3:ListBucket"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["imaging/sets/*"]}}
    assert 'grant "$POLICY-datasets-upload" /tmp/uploader.json "$uploader"' in script
    mounted = {v["name"]: v["secret"]["secretName"] for v in job["volumes"] if "secret" in v}
    assert mounted["dataset-uploader"] == "proxyhpo-s3-datasets-upload"
    # its own generated key, not the pipeline user's or the reader's
    secrets = rendered.kind("Secret")
    keys = {name: _decoded(secrets[name]) for name in ("proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload")}
    assert keys["proxyhpo-s3-datasets-upload"]["AWS_ACCESS_KEY_ID"] == "proxyhpo-datasets-upload"
    assert len({k["AWS_SECRET_ACCESS_KEY"] for k in keys.values()}) == 3
    # the demo Job pushes with the uploader's keys, read from files of that Secret, and mounts no other S3 keys
    demo = rendered.kind("Job")["proxyhpo-demo-data"]["spec"]["template"]["spec"]
    demo_secrets = {v["name"]: v["secret"]["secretName"] for v in demo["volumes"] if "secret" in v}
    assert demo_secrets == {"dataset-uploader": "proxyhpo-s3-datasets-upload"}
    push = demo["containers"][0]
    assert 'export AWS_ACCESS_KEY_ID="$(cat /run/secrets/dataset-uploader/AWS_ACCESS_KEY_ID)"' in push["args"][0]
    assert {m["mountPath"] for m in push["volumeMounts"] if m["name"] == "dataset-uploader"} == {"/run/secrets/dataset-uploader"}
    assert not any("proxyhpo-s3" in str(e.get("valueFrom", "")) for e in push.get("env", []))
    # no pipeline pod ever gets the uploader's keys
    for golden in (CHART_DIR.parents[1] / "tests" / "pipelines" / "golden").glob("*.yaml"):
        assert "proxyhpo-s3-datasets-upload" not in golden.read_text(), golden.name


def test_the_uploaders_key_is_given_or_kept_and_an_external_s3_falls_back_to_the_pipeline_users(render: Any) -> None:
    given = {**CREDS, "s3": {**CREDS["s3"], "datasetUploader": {"name": "team-uploader", "secretKey": "upload-key-3e9a"}}}
    assert _decoded(render(given).kind("Secret")["proxyhpo-s3-datasets-upload"]) == {"AWS_ACCESS_KEY_ID": "team-uploader", "AWS_SECRET_ACCESS_KEY": "upload-key-3e9a"}
    external = _decoded(render(EXTERNAL).kind("Secret")["proxyhpo-s3-datasets-upload"])
    assert external == {"AWS_ACCESS_KEY_ID": "team-proxyhpo", "AWS_SECRET_ACCESS_KEY": "ext-key-5d3a91c2"}  # no uploader there: no split
    for uploader, message in (({"name": "proxyhpo-pipeline", "secretKey": ""}, "s3.datasetUploader.name must differ"),
                              ({"name": "proxyhpo-datasets", "secretKey": ""}, "s3.datasetUploader.name must differ"),
                              ({"name": "team-uploader", "secretKey": "short"}, "s3.datasetUploader.secretKey must have at least 8 characters")):
        with pytest.raises(helm.HelmRenderError, match=message):
            render({**CREDS, "s3": {**CREDS["s3"], "datasetUploader": uploader}})


@pytest.mark.parametrize(("reader", "message"), [
    ({"name": "proxyhpo-pipeline", "secretKey": "", "prefix": "datasets"}, "s3.datasetUser.name must differ from s3.pipelineUser.name"),
    ({"name": "team-reader", "secretKey": "short", "prefix": "datasets"}, "s3.datasetUser.secretKey must have at least 8 characters"),
    # the pipeline user may not delete under the prefix: a folder where runs delete (checkpoints, relays) cannot be it
    ({"name": "team-reader", "secretKey": "", "prefix": "checkpoints"}, r's3.datasetUser.prefix "checkpoints" overlaps s3://<bucket>/checkpoints'),
    ({"name": "team-reader", "secretKey": "", "prefix": "mlflow/datasets"}, r's3.datasetUser.prefix "mlflow/datasets" overlaps s3://<bucket>/mlflow'),
], ids=["same-user", "short-key", "checkpoints", "inside-mlflow"])
def test_a_bad_reader_is_one_line(render: Any, reader: dict, message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render({**CREDS, "s3": {**CREDS["s3"], "datasetUser": reader}})
