"""``make deploy``: its dry run needs no cluster, container engine or registry, prints every step and writes the
rendered manifests and the compiled pipelines; the real run checks before it builds, and never shows a secret.

docker, podman, helm and kubectl are replaced on PATH by stand-ins that record being called and fail, so a
dry run that called any of them would fail here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxyhpo import deploy
from proxyhpo.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
HOST = "https://kubeflow.example.org/pipeline"
SECRETS = {"S3_ACCESS_KEY": "dry-user-4b2a", "S3_SECRET_KEY": "s3-secret-never-shown-8d1c", "POSTGRES_PASSWORD": "pg-never-shown-62e0",
           "KFP_TOKEN": "kfp-token-never-shown-0f9e", "KFP_COOKIES": "authservice_session=never-shown-77b1"}
TOOLS = ("docker", "podman", "helm", "kubectl")


def _make() -> str:
    make = shutil.which("make")
    if not make:
        pytest.fail("GNU make is missing")
    return make


def _stand_ins(folder: Path) -> tuple[dict[str, str], Path]:
    """An environment whose docker, podman, helm and kubectl only record their call and fail; the call log."""
    folder.mkdir()
    log = folder / "calls.log"
    for tool in TOOLS:
        script = folder / tool
        script.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> '{log}'\nexit 97\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYHPO_") and not k.startswith("MAKE")}
    env.update(SECRETS)
    env["PATH"] = os.pathsep.join([str(folder), env.get("PATH", "")])
    env["KUBECONFIG"] = str(folder / "no-kubeconfig")  # no cluster either
    return env, log


def _run_make(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # -o: never reinstall the virtual environment from a test (`deploy` depends on it)
    return subprocess.run([_make(), "--no-print-directory", "-o", ".venv/.installed", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `make deploy DRY_RUN=1` into a folder holding a stale earlier output."""
    base = tmp_path_factory.mktemp("deploy")
    env, log = _stand_ins(base / "bin")
    out = base / "out"
    (out / "pipelines").mkdir(parents=True)
    (out / "pipelines" / "stale-pipeline.yaml").write_text("stale")
    (out / "manifests").mkdir()
    (out / "manifests" / "stale.yaml").write_text("stale")
    result = _run_make(env, "deploy", "DRY_RUN=1", f"KFP_HOST={HOST}", "NAMESPACE=team-a", "IMAGE_REGISTRY=registry.example.org/ml",
                       "IMAGE_TAG=0.1.0-abc1234", f"DEPLOY_OUT={out}", "KFP_TARGET=2.16")
    return {"result": result, "out": out, "log": log, "stdout": result.stdout}


@pytest.fixture(scope="module")
def multi_user_dry_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`make deploy DRY_RUN=1` for a Kubeflow 1.10 profile: KFP 2.5, the profile's namespace, its own bucket and kfp-launcher."""
    base = tmp_path_factory.mktemp("deploy-multi-user")
    env, log = _stand_ins(base / "bin")
    values = base / "profile-values.yaml"
    values.write_text(yaml.safe_dump({"s3": {"bucket": "team-a-studies"},
                                      "kfpLauncher": {"enabled": False, "pipelineRootPrefix": "pipeline-root", "region": "us-east-1"}}))
    out = base / "out"
    result = _run_make(env, "deploy", "DRY_RUN=1", f"KFP_HOST={HOST}", "NAMESPACE=kubeflow-user-example-com", f"HELM_VALUES={values}",
                       "IMAGE_REGISTRY=registry.example.org/ml", "IMAGE_TAG=0.1.0-abc1234", f"DEPLOY_OUT={out}", "KFP_TARGET=2.5",
                       f"S3_ENDPOINT={KUBEFLOW_S3}")
    return {"result": result, "out": out, "log": log, "stdout": result.stdout}


# Kubeflow's own object store (SeaweedFS from Kubeflow 26.03, MinIO before it), which a profile's runs share.
KUBEFLOW_S3 = "http://seaweedfs.kubeflow.svc.cluster.local:8333"
CLOUD_S3 = "https://s3.eu-central-1.amazonaws.com"


@pytest.fixture(scope="module")
def external_s3_dry_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`make deploy DRY_RUN=1` on standalone KFP 2.5 (Kubeflow 1.9/1.10's) with a cloud bucket instead of the chart's MinIO."""
    base = tmp_path_factory.mktemp("deploy-external-s3")
    env, log = _stand_ins(base / "bin")
    values = base / "tls-values.yaml"  # the hospital's CA, which signs its S3 service's certificate
    values.write_text(yaml.safe_dump({"caBundle": {"configMap": "hospital-ca", "key": "bundle.pem"}}))
    out = base / "out"
    result = _run_make(env, "deploy", "DRY_RUN=1", f"KFP_HOST={HOST}", "NAMESPACE=team-a", "IMAGE_REGISTRY=registry.example.org/ml",
                       "IMAGE_TAG=0.1.0-abc1234", f"DEPLOY_OUT={out}", "KFP_TARGET=2.5", f"S3_ENDPOINT={CLOUD_S3}/", "S3_BUCKET=imaging-studies",
                       f"HELM_VALUES={values}")
    return {"result": result, "out": out, "log": log, "stdout": result.stdout}


def _assert_external_s3(run: dict[str, Any], endpoint: str, bucket: str) -> None:
    result = run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert not run["log"].exists()
    helm = next(line for line in result.stdout.splitlines() if "would run: helm upgrade --install" in line)
    assert f"--set minio.enabled=false --set s3.endpoint={endpoint}" in helm
    assert f"external S3: {endpoint}, bucket {bucket}" in result.stdout
    assert f"data sets: the pipelines' dataset and external default under s3://{bucket}/datasets" in result.stdout
    objects = [doc for doc in yaml.safe_load_all((run["out"] / "manifests" / "proxyhpo.yaml").read_text()) if doc]
    assert not [o["metadata"]["name"] for o in objects if "minio" in o["metadata"]["name"] or o["metadata"]["name"].endswith("-bucket")]
    endpoints = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "proxyhpo-endpoints")["data"]
    assert endpoints["PROXYHPO_S3_ENDPOINT"] == endpoints["MLFLOW_S3_ENDPOINT_URL"] == endpoint
    assert endpoints["PROXYHPO_CHECKPOINT_ROOT"] == f"s3://{bucket}/checkpoints"
    spec = next(yaml.safe_load_all((run["out"] / "pipelines" / "hpo-demo.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["dataset"]["defaultValue"] == f"s3://{bucket}/datasets/demo-spleen"


def test_single_user_dry_run_with_an_external_s3_replaces_minio(external_s3_dry_run: dict[str, Any]) -> None:
    _assert_external_s3(external_s3_dry_run, CLOUD_S3, "imaging-studies")
    assert "--set s3.bucket=imaging-studies" in external_s3_dry_run["stdout"]


def test_a_private_ca_bundle_reaches_mlflow_and_every_task(external_s3_dry_run: dict[str, Any], multi_user_dry_run: dict[str, Any]) -> None:
    assert "TLS: every task trusts the CA bundle bundle.pem of configMap hospital-ca (caBundle)" in external_s3_dry_run["stdout"]
    objects = [doc for doc in yaml.safe_load_all((external_s3_dry_run["out"] / "manifests" / "proxyhpo.yaml").read_text()) if doc]
    mlflow = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "proxyhpo-mlflow")["spec"]["template"]["spec"]
    assert {"name": "AWS_CA_BUNDLE", "value": "/etc/proxyhpo/ca/bundle.pem"} in mlflow["containers"][0]["env"]
    assert {"name": "ca-bundle", "configMap": {"name": "hospital-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]}} in mlflow["volumes"]
    for path in (external_s3_dry_run["out"] / "pipelines").glob("*.yaml"):
        spec, platform = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for name, executor in spec["deploymentSpec"]["executors"].items():
            env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
            assert env.get("AWS_CA_BUNDLE") == env.get("REQUESTS_CA_BUNDLE") == env.get("SSL_CERT_FILE") == "/etc/proxyhpo/ca/bundle.pem", (path.name, name)
            (volume,) = executors[name]["configMapAsVolume"]
            assert (volume["configMapName"], volume["mountPath"]) == ("hospital-ca", "/etc/proxyhpo/ca"), (path.name, name)
    # without caBundle nothing is mounted or set
    plain = (multi_user_dry_run["out"] / "pipelines" / "hpo-demo.yaml").read_text()
    assert "CA_BUNDLE" not in plain and "configMapAsVolume" not in plain


def test_multi_user_dry_run_on_kubeflows_object_store(multi_user_dry_run: dict[str, Any]) -> None:
    _assert_external_s3(multi_user_dry_run, KUBEFLOW_S3, "team-a-studies")  # the bucket from HELM_VALUES


@pytest.mark.parametrize(("variable", "value"), [("S3_ENDPOINT", "s3.example.org"), ("S3_BUCKET", "Imaging_Studies")])
def test_a_bad_s3_setting_is_one_line_before_anything(tmp_path: Path, variable: str, value: str) -> None:
    env, log = _stand_ins(tmp_path / "bin")
    result = _run_make(env, "deploy", "DRY_RUN=1", f"KFP_HOST={HOST}", f"DEPLOY_OUT={tmp_path / 'out'}", f"{variable}={value}")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert line.startswith(f"proxyhpo deploy: error: {variable}: {value!r} is not") and "; fix: " in line and f"{variable}=" in line.split("fix:")[1]
    assert not log.exists() and not (tmp_path / "out").exists()


def test_multi_user_dry_run_on_kfp_2_5_compiles_for_it_into_the_profiles_bucket(multi_user_dry_run: dict[str, Any]) -> None:
    from proxyhpo.catalogue import SHIPPED_PIPELINES
    from proxyhpo.kfp.target import KfpTarget, features_used, required_version

    result = multi_user_dry_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert not multi_user_dry_run["log"].exists()
    assert "KFP backend: 2.5 (no final status; loop outputs relayed through the bucket)" in result.stdout
    assert "data sets: the pipelines' dataset and external default under s3://team-a-studies/datasets" in result.stdout
    pipelines = multi_user_dry_run["out"] / "pipelines"
    assert sorted(p.stem for p in pipelines.glob("*.yaml")) == sorted(SHIPPED_PIPELINES)
    for path in pipelines.glob("*.yaml"):
        spec, platform = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert required_version(spec, platform) <= KfpTarget((2, 5)), (path.name, sorted(features_used(spec, platform)))
        dataset = spec["root"]["inputDefinitions"]["parameters"]["dataset"]["defaultValue"]
        assert dataset.startswith("s3://team-a-studies/datasets/") or not dataset.startswith("s3://"), (path.name, dataset)
    objects = [doc for doc in yaml.safe_load_all((multi_user_dry_run["out"] / "manifests" / "proxyhpo.yaml").read_text()) if doc]
    assert all(o["metadata"].get("namespace", "kubeflow-user-example-com") == "kubeflow-user-example-com" for o in objects)
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    assert "kfp-launcher" not in config_maps  # the profile's own is kept
    assert config_maps["proxyhpo-endpoints"]["data"]["PROXYHPO_CHECKPOINT_ROOT"] == "s3://team-a-studies/checkpoints"


def test_multi_user_dry_run_on_kfp_2_16_with_the_charts_minio(tmp_path: Path) -> None:
    # the fourth corner: a Kubeflow 26.03 profile (KFP 2.16) keeping its data in the chart's own MinIO (the fixtures
    # cover single-user on 2.16 and, with an external S3, single-user and multi-user on 2.5)
    from proxyhpo.kfp.target import KfpTarget, required_version

    env, log = _stand_ins(tmp_path / "bin")
    namespace = "kubeflow-user-example-com"
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"kfpLauncher": {"enabled": False}}))  # the profile controller's own is kept
    out = tmp_path / "out"
    result = _run_make(env, "deploy", "DRY_RUN=1", f"KFP_HOST={HOST}", f"NAMESPACE={namespace}", f"HELM_VALUES={values}",
                       "IMAGE_REGISTRY=registry.example.org/ml", "IMAGE_TAG=0.1.0-abc1234", f"DEPLOY_OUT={out}", "KFP_TARGET=2.16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not log.exists()
    assert "    KFP backend: 2.16" in result.stdout.splitlines()
    for path in (out / "pipelines").glob("*.yaml"):
        spec, platform = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert required_version(spec, platform) <= KfpTarget((2, 16)), path.name
    objects = [doc for doc in yaml.safe_load_all((out / "manifests" / "proxyhpo.yaml").read_text()) if doc]
    assert all(o["metadata"].get("namespace", namespace) == namespace for o in objects)
    kinds_and_names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ConfigMap", "kfp-launcher") not in kinds_and_names
    assert any("minio" in name for _, name in kinds_and_names)  # the chart's own MinIO


def test_single_user_dry_run_on_kfp_2_16_compiles_every_feature(dry_run: dict[str, Any]) -> None:
    from proxyhpo.kfp.target import KfpTarget, required_version

    assert "    KFP backend: 2.16" in dry_run["stdout"].splitlines()
    spec, platform = [doc for doc in yaml.safe_load_all((dry_run["out"] / "pipelines" / "hpo-demo.yaml").read_text()) if doc]
    assert required_version(spec, platform) == KfpTarget((2, 14))
    assert spec["root"]["inputDefinitions"]["parameters"]["dataset"]["defaultValue"] == "s3://proxyhpo/datasets/demo-spleen"


def test_dry_run_succeeds_without_engine_cluster_or_registry(dry_run: dict[str, Any]) -> None:
    result = dry_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert not dry_run["log"].exists(), dry_run["log"].read_text()  # no docker, podman, helm or kubectl was run
    assert not (REPO / "build" / "images" / "0.1.0-abc1234").exists()


def test_dry_run_prints_every_step_in_order(dry_run: dict[str, Any]) -> None:
    out = dry_run["stdout"]
    steps = [
        "==> preflight (dry run: nothing is contacted)",
        "==> build and push the images (docker, linux/amd64)",
        "==> compile every shipped pipeline",
        "==> install the chart helm/proxyhpo as release proxyhpo in namespace team-a",
        "==> upload ",
        "==> create the experiments",
        "==> where to look",
    ]
    positions = [out.find(step) for step in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), list(zip(steps, positions))
    assert f"GET {HOST}/apis/v2beta1/healthz (KFP_TOKEN and KFP_COOKIES) reports KFP >= 2.5" in out
    for image in ("runtime", "runtime-cpu", "mlflow"):
        assert f"would run: docker build --platform linux/amd64 --file images/{image}/Dockerfile" in out
        assert f"would run: docker push registry.example.org/ml/{image}:0.1.0-abc1234" in out
    helm = next(line for line in out.splitlines() if "would run: helm upgrade --install" in line)
    assert "--namespace team-a" in helm and "--set image.registry=registry.example.org/ml" in helm and "--set image.tag=0.1.0-abc1234" in helm
    assert "--values -" in helm and "stdin: credentials from S3_ACCESS_KEY, S3_SECRET_KEY, POSTGRES_PASSWORD" in helm
    assert "would upload: proxyhpo-hpo-demo" in out
    assert f"Kubeflow Pipelines UI: {HOST}/#/pipelines" in out
    assert "MLflow UI: kubectl -n team-a port-forward svc/proxyhpo-mlflow 5000:5000" in out


def test_dry_run_writes_the_rendered_manifests(dry_run: dict[str, Any]) -> None:
    manifests = dry_run["out"] / "manifests"
    assert sorted(p.name for p in manifests.iterdir()) == ["NOTES.txt", "proxyhpo.yaml"]  # the stale file is gone
    objects = [doc for doc in yaml.safe_load_all((manifests / "proxyhpo.yaml").read_text()) if doc]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "proxyhpo-mlflow"), ("Service", "proxyhpo-mlflow"), ("ConfigMap", "proxyhpo-endpoints")} <= kinds
    assert all(o["metadata"].get("namespace", "team-a") == "team-a" for o in objects)
    images = {c["image"] for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]}
    assert "registry.example.org/ml/mlflow:0.1.0-abc1234" in images


def test_dry_run_writes_the_compiled_pipelines_for_the_tagged_images(dry_run: dict[str, Any]) -> None:
    from proxyhpo.catalogue import SHIPPED_PIPELINES

    pipelines = dry_run["out"] / "pipelines"
    assert sorted(p.stem for p in pipelines.glob("*.yaml")) == sorted(SHIPPED_PIPELINES)  # the stale one is gone
    spec = next(yaml.safe_load_all((pipelines / "hpo-demo.yaml").read_text()))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert "registry.example.org/ml/runtime:0.1.0-abc1234" in images
    assert images <= {"registry.example.org/ml/runtime:0.1.0-abc1234", "registry.example.org/ml/runtime-cpu:0.1.0-abc1234"}, images


def test_no_secret_is_printed_or_written(dry_run: dict[str, Any]) -> None:
    written = "".join(p.read_text() for p in dry_run["out"].rglob("*") if p.is_file())
    shown = dry_run["result"].stdout + dry_run["result"].stderr
    for name, value in SECRETS.items():
        secret = value.split("=")[-1]
        assert secret not in shown, name
        assert secret not in written, name


def test_kfp_host_is_checked_before_anything(tmp_path: Path) -> None:
    env, log = _stand_ins(tmp_path / "bin")
    env.pop("KFP_HOST", None)
    result = _run_make(env, "deploy", "DRY_RUN=1", f"DEPLOY_OUT={tmp_path / 'out'}")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[:1]
    assert line.startswith("make deploy: KFP_HOST is not set; fix:")
    assert not log.exists() and not (tmp_path / "out").exists()


def test_real_deploy_runs_preflight_then_images_then_the_rest() -> None:
    # -n: print the commands without running them (make still runs the recursive `make push`, also with -n)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = _run_make(env, "-n", "deploy", f"KFP_HOST={HOST}", "IMAGE_REGISTRY=registry.example.org/ml", "IMAGE_TAG=0.1.0-abc1234", "DOCKER=docker")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    order = [out.find(s) for s in ("KFP_HOST is not set", "proxyhpo deploy --preflight", "docker build", "docker push", "proxyhpo deploy --host")]
    assert all(p >= 0 for p in order) and order == sorted(order), order
    final = next(line for line in out.splitlines() if "proxyhpo deploy --host" in line)
    assert "--digests build/images/0.1.0-abc1234" in final and "--dry-run" not in final and "--namespace kubeflow" in final
    for value in SECRETS.values():
        assert value not in out


def test_makefile_has_pipefail_and_the_venv_prerequisite() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run([_make(), "-pn", "deploy", f"KFP_HOST={HOST}", "DRY_RUN=1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    database = result.stdout
    assert re.search(r"^\.SHELLFLAGS := .*-o pipefail", database, re.M)
    assert re.search(r"^deploy: install\b", database, re.M)
    assert re.search(r"^install: \.venv/\.installed", database, re.M)


# --- the library's steps that a dry run cannot show -----------------------------------------------------------------

def test_upload_authenticates_from_the_environment_and_is_rerun_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import kfp

    calls: list[tuple] = []
    existing = {"proxyhpo-hpo-demo": "id-1"}

    class FakeClient:
        def __init__(self, **kwargs: Any) -> None:
            calls.append(("client", kwargs))

        def get_pipeline_id(self, name: str) -> str | None:  # shared pipelines: a multi-user deploy must not look here
            calls.append(("shared lookup", name))
            return None

        def list_pipelines(self, filter: str, namespace: str | None = None) -> Any:  # noqa: A002 - kfp.Client's name
            from types import SimpleNamespace

            found = existing.get(json.loads(filter)["predicates"][0]["stringValue"]) if namespace == "team-a" else None
            return SimpleNamespace(pipelines=[SimpleNamespace(pipeline_id=found)] if found else None)

        def upload_pipeline(self, path: str, pipeline_name: str, description: str, namespace: str | None = None) -> None:
            calls.append(("upload", pipeline_name, namespace))

        def upload_pipeline_version(self, path: str, pipeline_version_name: str, pipeline_id: str) -> None:
            calls.append(("version", pipeline_id, pipeline_version_name))

        def create_experiment(self, name: str, namespace: str | None = None) -> None:
            calls.append(("experiment", name, namespace))

    monkeypatch.setattr(kfp, "Client", FakeClient)
    compiled = [tmp_path / "hpo-demo.yaml", tmp_path / "trust-spleen.yaml"]
    options = deploy.DeployOptions(host=HOST, namespace="team-a", tag="0.1.0-abc1234")
    names = deploy.upload_pipelines(options, compiled, multi_user=True, env={"KFP_TOKEN": "tok-1", "KFP_COOKIES": "c=1"})
    assert names == ["proxyhpo-hpo-demo", "proxyhpo-trust-spleen"]
    assert calls[0] == ("client", {"host": HOST, "namespace": "team-a", "existing_token": "tok-1", "cookies": "c=1"})
    assert ("upload", "proxyhpo-trust-spleen", "team-a") in calls  # into the profile's namespace
    assert not [c for c in calls if c[0] == "shared lookup"]
    (version,) = [c for c in calls if c[0] == "version"]
    assert version[1] == "id-1" and version[2].startswith("proxyhpo-hpo-demo-0.1.0-abc1234-")
    assert {c[2] for c in calls if c[0] == "experiment"} == {"team-a"}
    assert "tok-1" not in capsys.readouterr().out


def test_mlflow_url_is_the_ingress_when_there_is_one(capsys: pytest.CaptureFixture[str]) -> None:
    objects = [
        {"kind": "Service", "metadata": {"name": "proxyhpo-mlflow", "labels": {"app.kubernetes.io/component": "mlflow", "app.kubernetes.io/instance": "proxyhpo"}},
         "spec": {"ports": [{"port": 5000}]}},
        {"kind": "Ingress", "metadata": {"name": "mlflow"}, "spec": {
            "tls": [{"hosts": ["mlflow.example.org"]}],
            "rules": [{"host": "mlflow.example.org", "http": {"paths": [{"path": "/", "backend": {"service": {"name": "proxyhpo-mlflow", "port": {"number": 5000}}}}]}}]}},
    ]
    deploy.print_urls(deploy.DeployOptions(host="http://localhost:8080"), objects)
    out = capsys.readouterr().out
    assert "MLflow UI: https://mlflow.example.org/" in out and "Kubeflow Pipelines UI: http://localhost:8080/#/pipelines" in out


def test_a_chart_that_does_not_render_is_one_line(tmp_path: Path) -> None:
    from proxyhpo.errors import InputError

    values = tmp_path / "values.yaml"
    values.write_text("replicaCount: 2\n")  # the chart's schema refuses unknown keys
    options = deploy.DeployOptions(host=HOST, values=values, out=tmp_path / "out", dry_run=True, chart=REPO / "helm" / "proxyhpo")
    with pytest.raises(InputError) as caught:
        deploy.install_chart(options, env={})
    message = str(caught.value)
    assert message.startswith(f"{values}: the chart does not render") and "\n" not in message and "fix:" in message


def test_rendering_is_skipped_and_said_so_without_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import builtins

    real_import = builtins.__import__

    def no_helm_python(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "helm_python":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_helm_python)
    options = deploy.DeployOptions(host=HOST, out=tmp_path / "out", dry_run=True, chart=REPO / "helm" / "proxyhpo", helm="no-such-helm-3b")
    assert deploy.install_chart(options, env={}) == []
    assert "rendering skipped: neither helm-python-sdk" in capsys.readouterr().out


def test_the_data_root_follows_the_bucket_and_the_readers_prefix(tmp_path: Path) -> None:
    # the pipelines' data fields must point where the chart's PROXYHPO_DATASETS_ROOT and the reader's policy do
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"s3": {"bucket": "studies", "datasetUser": {"prefix": "imaging/sets"}}}))
    options = deploy.DeployOptions(host=HOST, chart=REPO / "helm" / "proxyhpo", values=values)
    assert deploy.data_root(options) == "s3://studies/imaging/sets"
    assert deploy.data_root(deploy.DeployOptions(host=HOST, chart=REPO / "helm" / "proxyhpo", values=values, s3_bucket="team-b")) == "s3://team-b/imaging/sets"
    assert deploy.data_root(deploy.DeployOptions(host=HOST, chart=REPO / "helm" / "proxyhpo")) == "s3://proxyhpo/datasets"


def test_a_data_root_moves_the_readers_prefix_and_stays_in_the_bucket(tmp_path: Path) -> None:
    # DATA_ROOT elsewhere in the bucket: the reader's keys and the no-delete policy must follow it, not stay on datasets/
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"s3": {"bucket": "studies"}}))
    options = deploy.DeployOptions(host=HOST, chart=REPO / "helm" / "proxyhpo", values=values, data_root="s3://studies/imaging/ct/")
    assert deploy.value_overrides(options) == {"s3": {"datasetUser": {"prefix": "imaging/ct"}}}
    assert deploy.data_root(options) == "s3://studies/imaging/ct/"
    for outside in ("s3://other/imaging", "s3://studies", "s3://studies/", "/data/imaging"):
        with pytest.raises(ConfigError, match=r"^DATA_ROOT: .* is not a folder of the bucket 'studies'"):
            deploy.value_overrides(deploy.DeployOptions(host=HOST, chart=REPO / "helm" / "proxyhpo", values=values, data_root=outside))
