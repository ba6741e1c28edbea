"""The chart over a release's life: upgrades without credentials (Helm's `lookup` against a stand-in Kubernetes
API), password rotation, uninstall, start-up order, Istio, and the bucket-scoped MinIO user."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

NAMESPACE = "ml-team"
CREDS: dict[str, Any] = {"s3": {"accessKey": "team-user", "secretKey": "s3-secret-9f2c7d"},
                         "postgresql": {"auth": {"password": "pg-secret-41ab0e"}}}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _data(rendered: Any, name: str) -> dict[str, str]:
    return rendered.kind("Secret")[name]["data"]


def _checksum(rendered: Any, kind: str, name: str) -> str:
    return rendered.kind(kind)[name]["spec"]["template"]["metadata"]["annotations"]["checksum/credentials"]


def _install_secrets(fake_kube: Any, rendered: Any) -> None:
    """Store a rendered release's Secrets in the stand-in API, as `helm install` would have created them."""
    for name, secret in rendered.kind("Secret").items():
        fake_kube.secrets[(NAMESPACE, name)] = dict(secret["data"])


# --- upgrades keep the credentials ------------------------------------------------------------------------

def test_upgrade_without_credentials_keeps_every_stored_one(render_on_cluster: Any, fake_kube: Any) -> None:
    installed = render_on_cluster(CREDS, upgrade=False)
    _install_secrets(fake_kube, installed)
    upgraded = render_on_cluster({})  # `helm upgrade proxyhpo helm/proxyhpo -n ml-team`, no --set at all
    for name in ("proxyhpo-minio", "proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload", "proxyhpo-postgres", "proxyhpo-mlflow", "proxyhpo-mlflow-server"):
        assert _data(upgraded, name) == _data(installed, name), name  # generated ones too: MLflow's admin password, its signing key
    # same credentials, same checksums: an upgrade restarts nothing for credentials' sake
    for kind, name in (("Deployment", "proxyhpo-minio"), ("Deployment", "proxyhpo-mlflow"), ("StatefulSet", "proxyhpo-postgresql")):
        assert _checksum(upgraded, kind, name) == _checksum(installed, kind, name), name
    for obj in upgraded.objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)
    # it looked in the release namespace, for the chart's own Secrets, and nowhere else
    looked_up = {p for p in fake_kube.requests if "/secrets/" in p}
    assert looked_up == {f"/api/v1/namespaces/{NAMESPACE}/secrets/{n}"
                         for n in ("proxyhpo-minio", "proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload", "proxyhpo-postgres", "proxyhpo-mlflow", "proxyhpo-mlflow-server")}


def test_first_install_against_an_empty_cluster_still_needs_credentials(render_on_cluster: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match="s3 credentials missing.*Secret proxyhpo-minio.*namespace ml-team"):
        render_on_cluster({}, upgrade=False)
    with pytest.raises(helm.HelmRenderError, match="postgresql password missing.*Secret proxyhpo-postgres"):
        render_on_cluster({"s3": CREDS["s3"]}, upgrade=False)


def test_upgrade_fails_when_the_stored_secret_is_gone(render_on_cluster: Any, fake_kube: Any) -> None:
    _install_secrets(fake_kube, render_on_cluster(CREDS, upgrade=False))
    del fake_kube.secrets[(NAMESPACE, "proxyhpo-postgres")]
    with pytest.raises(helm.HelmRenderError, match="postgresql password missing"):
        render_on_cluster({})


def test_a_value_given_on_upgrade_replaces_only_its_own_secret(render_on_cluster: Any, fake_kube: Any) -> None:
    installed = render_on_cluster(CREDS, upgrade=False)
    _install_secrets(fake_kube, installed)
    rotated = render_on_cluster({"postgresql": {"auth": {"password": "pg-rotated-77c1"}}})
    assert _data(rotated, "proxyhpo-postgres") == {"POSTGRES_PASSWORD": _b64("pg-rotated-77c1")}
    assert _data(rotated, "proxyhpo-minio") == _data(installed, "proxyhpo-minio")
    assert _data(rotated, "proxyhpo-s3") == _data(installed, "proxyhpo-s3")
    # PostgreSQL (which applies the password at start) and MLflow (which logs in with it) restart; MinIO does not
    assert _checksum(rotated, "StatefulSet", "proxyhpo-postgresql") != _checksum(installed, "StatefulSet", "proxyhpo-postgresql")
    assert _checksum(rotated, "Deployment", "proxyhpo-mlflow") != _checksum(installed, "Deployment", "proxyhpo-mlflow")
    assert _checksum(rotated, "Deployment", "proxyhpo-minio") == _checksum(installed, "Deployment", "proxyhpo-minio")


def test_root_credentials_are_rotated_together(render_on_cluster: Any, fake_kube: Any) -> None:
    _install_secrets(fake_kube, render_on_cluster(CREDS, upgrade=False))
    with pytest.raises(helm.HelmRenderError, match="both or neither"):
        render_on_cluster({"s3": {"secretKey": "s3-rotated-0a9b3c"}})
    rotated = render_on_cluster({"s3": {"accessKey": "team-admin", "secretKey": "s3-rotated-0a9b3c"}})
    assert _data(rotated, "proxyhpo-minio") == {"root-user": _b64("team-admin"), "root-password": _b64("s3-rotated-0a9b3c")}


def test_a_secret_of_the_previous_chart_is_not_taken_for_the_pipeline_users(render_on_cluster: Any, fake_kube: Any) -> None:
    # Before the bucket user existed, proxyhpo-s3 held MinIO's root credentials: its key must not be reused.
    fake_kube.secrets[(NAMESPACE, "proxyhpo-s3")] = {"AWS_ACCESS_KEY_ID": _b64("team-user"), "AWS_SECRET_ACCESS_KEY": _b64("s3-secret-9f2c7d")}
    fake_kube.secrets[(NAMESPACE, "proxyhpo-postgres")] = {"POSTGRES_PASSWORD": _b64("pg-secret-41ab0e")}
    upgraded = render_on_cluster({"s3": CREDS["s3"]})
    pipeline = {k: base64.b64decode(v).decode() for k, v in _data(upgraded, "proxyhpo-s3").items()}
    assert pipeline["AWS_ACCESS_KEY_ID"] == "proxyhpo-pipeline"
    assert pipeline["AWS_SECRET_ACCESS_KEY"] != "s3-secret-9f2c7d" and re.fullmatch(r"[A-Za-z0-9]{40}", pipeline["AWS_SECRET_ACCESS_KEY"])


def test_existing_secrets_are_never_looked_up(render_on_cluster: Any, fake_kube: Any) -> None:
    render_on_cluster({"s3": {"existingSecret": "team-minio-root"}, "postgresql": {"auth": {"existingSecret": "team-postgres"}}})
    looked_up = {p.rsplit("/", 1)[-1] for p in fake_kube.requests if "/secrets/" in p}
    # only the chart's own Secrets: the pipeline user's and data set reader's keys, MLflow's admin password and signing key
    assert looked_up == {"proxyhpo-s3", "proxyhpo-s3-datasets", "proxyhpo-s3-datasets-upload", "proxyhpo-mlflow", "proxyhpo-mlflow-server"}


# --- uninstall keeps the data --------------------------------------------------------------------------------

def test_minio_volume_is_kept_on_uninstall_like_postgresqls(render: Any) -> None:
    rendered = render(CREDS)
    claims = rendered.kind("PersistentVolumeClaim")
    assert claims["proxyhpo-minio"]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # PostgreSQL's claim comes from the StatefulSet's template, which Kubernetes never deletes with the release
    assert rendered.kind("StatefulSet")["proxyhpo-postgresql"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    # nothing else is kept: Secrets, Services and workloads go with the release
    kept = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects
            if o["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"}
    assert kept == {("PersistentVolumeClaim", "proxyhpo-minio"), ("PersistentVolumeClaim", "proxyhpo-postgresql-backup")}  # and the database's dumps


# --- PostgreSQL password rotation and MLflow's wait --------------------------------------------------------

def _pod(rendered: Any, kind: str, name: str) -> dict:
    return rendered.kind(kind)[name]["spec"]["template"]["spec"]


def _secret_volume(spec: dict, mount_path: str, container: dict) -> dict:
    volume_name = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == mount_path)
    return next(v["secret"] for v in spec["volumes"] if v["name"] == volume_name)


def test_postgresql_and_mlflow_read_the_password_from_one_secret(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    expected = values.get("postgresql", {}).get("auth", {}).get("existingSecret") or "proxyhpo-postgres"
    pg_spec = _pod(rendered, "StatefulSet", "proxyhpo-postgresql")
    pg = pg_spec["containers"][0]
    env = {e["name"]: e.get("value") for e in pg["env"]}
    assert "POSTGRES_PASSWORD" not in env
    folder, key = env["POSTGRES_PASSWORD_FILE"].rsplit("/", 1)
    assert _secret_volume(pg_spec, folder, pg)["secretName"] == expected and key == "POSTGRES_PASSWORD"
    ml_spec = _pod(rendered, "Deployment", "proxyhpo-mlflow")
    pgpassword = next(e for e in ml_spec["containers"][0]["env"] if e["name"] == "PGPASSWORD")["valueFrom"]["secretKeyRef"]
    assert pgpassword == {"name": expected, "key": "POSTGRES_PASSWORD"}, name
    wait = ml_spec["initContainers"][0]
    assert _secret_volume(ml_spec, "/run/secrets/postgres", wait)["secretName"] == expected


def test_postgresql_applies_the_secrets_password_at_every_start(render: Any) -> None:
    spec = _pod(render(CREDS), "StatefulSet", "proxyhpo-postgresql")
    container = spec["containers"][0]
    script = container["lifecycle"]["postStart"]["exec"]["command"][-1]
    password_file = next(e["value"] for e in container["env"] if e["name"] == "POSTGRES_PASSWORD_FILE")
    assert f"\\set pw `cat {password_file}`" in script
    assert "ALTER ROLE :\"user\" WITH PASSWORD :'pw';" in script  # psql quotes both: any password works
    assert "\\getenv user POSTGRES_USER" in script
    # over the container's own socket folder, bounded
    socket = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "run")
    assert f"-h {socket}" in script
    assert re.search(r'if \[ "\$i" -ge (\d+) \]; then apply; exit 1; fi', script)
    # the heredoc's end marker stands alone on its line once YAML's indentation is gone
    assert "\nSQL\n" in script


def test_mlflow_waits_for_the_database_with_a_bounded_wait(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    spec = _pod(rendered, "Deployment", "proxyhpo-mlflow")
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-database"], name
    wait = spec["initContainers"][0]
    env = {e["name"]: e.get("value") for e in wait["env"]}
    mlflow_env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    # the very host, port, user and database MLflow connects to
    assert mlflow_env["MLFLOW_BACKEND_STORE_URI"] == f"postgresql+psycopg2://{env['PGUSER']}@{env['PGHOST']}:{env['PGPORT']}/{env['PGDATABASE']}"
    service = rendered.kind("Service")["proxyhpo-postgresql"]
    assert env["PGHOST"].startswith(f"proxyhpo-postgresql.{service['metadata']['namespace']}.svc.")
    assert int(env["PGPORT"]) == service["spec"]["ports"][0]["port"]
    assert int(env["PGCONNECT_TIMEOUT"]) <= 10
    script = wait["args"][0]
    timeout = values.get("mlflow", {}).get("waitForDatabase", {}).get("timeoutSeconds", 300)
    assert f"deadline=$(( $(date +%s) + {timeout} ))" in script and "exit 1" in script
    assert "psql -X -q -c 'SELECT 1'" in script  # logs in: a port that answers is not enough after a rotation
    assert wait["image"].startswith(values.get("postgresql", {}).get("image", {}).get("repository", "postgres") + ":")


def test_wait_timeout_is_a_value(render: Any) -> None:
    wait = _pod(render({**CREDS, "mlflow": {"waitForDatabase": {"timeoutSeconds": 45}}}), "Deployment", "proxyhpo-mlflow")["initContainers"][0]
    assert "+ 45 ))" in wait["args"][0] and "within 45 s" in wait["args"][0]


# --- Istio ---------------------------------------------------------------------------------------------------

def test_run_to_completion_pods_get_no_istio_sidecar(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    test_pod = rendered.kind("Pod")["proxyhpo-test"]
    assert test_pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    if values.get("minio", {}).get("bucketJob", {}).get("enabled", True):
        job = rendered.kind("Job")["proxyhpo-bucket"]
        # on the pod template: that is where the injector looks
        assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false", name
        assert job["spec"]["activeDeadlineSeconds"] > 0  # and bounded whatever happens


@pytest.mark.parametrize("inject", [False, True])
def test_services_get_a_sidecar_only_when_asked(render: Any, inject: bool) -> None:
    rendered = render({**CREDS, "istio": {"injectSidecar": inject}})
    for kind, name in (("Deployment", "proxyhpo-minio"), ("Deployment", "proxyhpo-mlflow"), ("StatefulSet", "proxyhpo-postgresql")):
        annotations = rendered.kind(kind)[name]["spec"]["template"]["metadata"]["annotations"]
        # pipeline pods run without a sidecar: by default the services they call have none either
        assert annotations.get("sidecar.istio.io/inject") == (None if inject else "false"), name
    # the run-to-completion pods never get one
    assert rendered.kind("Job")["proxyhpo-bucket"]["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert rendered.kind("Pod")["proxyhpo-test"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"


# --- the bucket-scoped MinIO user ---------------------------------------------------------------------------

def _bucket_job(rendered: Any) -> tuple[dict, str, dict[str, str]]:
    spec = _pod(rendered, "Job", "proxyhpo-bucket")
    container = spec["containers"][0]
    return spec, container["args"][0], {e["name"]: e.get("value") for e in container["env"]}


def _policy(script: str, env: dict[str, str]) -> dict:
    body = re.search(r"cat > /tmp/policy\.json <<EOF\n(.*?)\nEOF\n", script, re.S)
    assert body, "the policy document is a heredoc ending in EOF"
    return json.loads(body.group(1).replace("$BUCKET", env["BUCKET"]).replace("$DATASETS", env["DATASETS"]))


@pytest.mark.parametrize("bucket", ["proxyhpo", "imaging-studies"])
def test_bucket_policy_allows_object_actions_on_the_bucket_only(render: Any, bucket: str) -> None:
    _, script, env = _bucket_job(render({**CREDS, "s3": {**CREDS["s3"], "bucket": bucket}}))
    policy = _policy(script, env)
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*", f"arn:aws:s3:::{bucket}/datasets/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert all(a.startswith("s3:") and "*" not in a for a in actions)
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"} <= actions
    assert not actions & {"s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"}
    # the one Deny: nothing under the data sets' prefix is written or deleted with these keys (only s3.datasetUploader may)
    assert [(s["Action"], s["Resource"]) for s in policy["Statement"] if s["Effect"] != "Allow"] == [(["s3:PutObject", "s3:DeleteObject"], [f"arn:aws:s3:::{bucket}/datasets/*"])]


def test_bucket_job_creates_the_user_of_the_pipelines_secret_with_the_root_credentials(value_set: tuple[str, dict, Any]) -> None:
    name, values, rendered = value_set
    if not values.get("minio", {}).get("bucketJob", {}).get("enabled", True):
        return
    spec, script, env = _bucket_job(rendered)
    container = spec["containers"][0]
    root = _secret_volume(spec, "/run/secrets/minio-root", container)
    user = _secret_volume(spec, "/run/secrets/pipeline-user", container)
    assert root["secretName"] == (values.get("s3", {}).get("existingSecret") or "proxyhpo-minio"), name
    assert user["secretName"] == "proxyhpo-s3"
    assert {i["key"] for i in user["items"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert 'mc alias set proxyhpo "$S3_ENDPOINT" "$(cat "$root/root-user")" "$(cat "$root/root-password")"' in script
    reader = _secret_volume(spec, "/run/secrets/dataset-user", container)
    assert reader["secretName"] == "proxyhpo-s3-datasets" and {i["key"] for i in reader["items"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert 'mc admin user add proxyhpo "$(cat "$3/AWS_ACCESS_KEY_ID")" "$(cat "$3/AWS_SECRET_ACCESS_KEY")"' in script
    assert 'mc admin policy create proxyhpo "$1" "$2"' in script
    assert 'mc admin policy attach proxyhpo "$1" --user "$(cat "$3/AWS_ACCESS_KEY_ID")"' in script
    assert 'grant "$POLICY" /tmp/policy.json "$user"' in script and 'grant "$POLICY-datasets" /tmp/reader.json "$reader"' in script
    # a rerun (every upgrade) is not an error: attaching an attached policy is tolerated, nothing else is
    assert '*"already in effect"*|*"no net effect"*) ;;' in script
    assert env["BUCKET"] == values.get("s3", {}).get("bucket", "proxyhpo")
    assert env["S3_ENDPOINT"] == rendered.kind("ConfigMap")["proxyhpo-endpoints"]["data"]["PROXYHPO_S3_ENDPOINT"]


def test_pipeline_secret_is_rendered_before_the_job_that_reads_it(render: Any) -> None:
    rendered = render(CREDS)
    job = rendered.kind("Job")["proxyhpo-bucket"]
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    # the Secrets are plain release objects, so they exist before any post-install hook runs
    for secret in rendered.kind("Secret").values():
        assert "helm.sh/hook" not in secret["metadata"].get("annotations", {})


def test_checksums_follow_the_secret_data(render: Any) -> None:
    rendered = render(CREDS)
    data = {name: secret["data"] for name, secret in rendered.kind("Secret").items()}
    minio = hashlib.sha256(f"{data['proxyhpo-minio']['root-user']},{data['proxyhpo-minio']['root-password']}".encode()).hexdigest()
    postgres = hashlib.sha256(data["proxyhpo-postgres"]["POSTGRES_PASSWORD"].encode()).hexdigest()
    assert _checksum(rendered, "Deployment", "proxyhpo-minio") == minio
    assert _checksum(rendered, "StatefulSet", "proxyhpo-postgresql") == postgres
