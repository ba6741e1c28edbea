"""``make deploy`` in steps: the preflight, the pipelines compiled for the pushed images, the chart installed,
the pipelines uploaded, the experiments created, and where the UIs are.

``make deploy`` runs ``proxyhpo deploy --preflight`` (before any build), then ``make push`` (the images,
tagged ``<version>-<commit>``, their digests written to ``build/images/<tag>/``), then ``proxyhpo deploy``.
With ``--dry-run`` (``make deploy DRY_RUN=1``) nothing is contacted and no engine, cluster or registry is
needed: every step is printed, and the rendered manifests and the compiled pipelines are written under
``--out`` (default ``build/deploy``). Rerunning is safe: ``helm upgrade --install`` converges, a pipeline
that exists gets a new version, an experiment that exists is kept.

Secrets only come from the environment and are never printed or written: ``S3_ACCESS_KEY``,
``S3_SECRET_KEY`` and ``POSTGRES_PASSWORD`` reach helm as JSON on its stdin; ``KFP_TOKEN`` or ``KFP_COOKIES``
authenticate to Kubeflow Pipelines (:mod:`proxyhpo.kfp_auth`).

The pipelines are compiled by the one compile path (:mod:`proxyhpo.compile`, for the pushed images) and
uploaded by the one upload path (:mod:`proxyhpo.upload`); which pipelines ship is the catalogue's
(:mod:`proxyhpo.catalogue`). This module imports only the standard library and :mod:`proxyhpo.kfp_auth` at
the top (the CLI imports it to build its parser); ``kubernetes``, ``kfp``, ``yaml`` and ``helm_python`` are
imported where they are used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxyhpo import kfp_auth

__all__ = [
    "MIN_KFP_VERSION",
    "EXIT_PREFLIGHT",
    "Finding",
    "PreflightReport",
    "DeployOptions",
    "kube_api_client",
    "check_cluster",
    "check_gpu_nodes",
    "check_credentials",
    "check_namespace_settings",
    "check_kfp",
    "check_tools",
    "preflight",
    "chart_fullname",
    "credential_secret",
    "credential_values",
    "compile_pipelines",
    "install_chart",
    "upload_pipelines",
    "print_urls",
    "deploy",
    "add_arguments",
    "run",
]

#: The oldest KFP backend the pipelines run on (:data:`proxyhpo.kfp.target.OLDEST_TARGET`): before 2.14 they are
#: compiled without exit-handler final status and ``Collected`` artifacts (:mod:`proxyhpo.kfp.target`).
MIN_KFP_VERSION = (2, 5)
#: Exit code of a failed preflight (bad input a user fixes, like the CLI's other input errors).
EXIT_PREFLIGHT = 2
#: The chart's credentials: the Secret it keeps them in (``{fullname}``: the release's resource prefix; or the
#: one ``existing`` names), and the variables that give them. An upgrade reuses the Secret a first install wrote.
CREDENTIALS = {
    "s3": {"secret": "{fullname}-minio", "existing": ("s3", "existingSecret"), "env": ("S3_ACCESS_KEY", "S3_SECRET_KEY")},
    "postgresql": {"secret": "proxyhpo-postgres", "existing": ("postgresql", "auth", "existingSecret"), "env": ("POSTGRES_PASSWORD",)},
}


def chart_fullname(release: str) -> str:
    """The chart's resource prefix, as its ``proxyhpo.fullname`` helper makes it (no name overrides)."""
    return (release if "proxyhpo" in release else f"{release}-proxyhpo")[:63].rstrip("-")


def credential_secret(part: str, release: str, helm_values: Mapping[str, Any] | None = None) -> str:
    """The Secret holding credential ``part`` (``s3``, ``postgresql``) for ``release``."""
    spec = CREDENTIALS[part]
    return _nested(helm_values or {}, spec["existing"]) or spec["secret"].format(fullname=chart_fullname(release)[:50].rstrip("-"))
#: Values put in place of the credentials when the chart is rendered for a dry run: never the real ones.
DRY_RUN_CREDENTIALS = {
    "s3": {"accessKey": "dry-run-user", "secretKey": "dry-run-placeholder"},
    "postgresql": {"auth": {"password": "dry-run-placeholder"}},
}
_TIMEOUT_S = 10


# --- findings -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One preflight result: ``level`` is ``ok``, ``warning`` or ``error``; an error's message says what to do."""

    level: str
    message: str


@dataclass
class PreflightReport:
    """The preflight's findings, and what it learnt that later steps use."""

    findings: list[Finding] = field(default_factory=list)
    namespace_exists: bool | None = None
    kfp_version: str | None = None
    multi_user: bool | None = None
    kfp_target: str | None = None
    #: Chart values the preflight chose for this namespace (``--set`` on the install), e.g. ``kfpLauncher.enabled``.
    chart_settings: dict[str, str] = field(default_factory=dict)

    def add(self, level: str, message: str) -> None:
        self.findings.append(Finding(level, message))

    @property
    def errors(self) -> list[str]:
        return [f.message for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[str]:
        return [f.message for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


# --- KFP ------------------------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect from the KFP API is a login page (Dex, oauth2-proxy): report it rather than follow it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib's signature
        return None


def _version_tuple(tag: str) -> tuple[int, int, int] | None:
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", tag.strip())
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def check_kfp(host: str, namespace: str, report: PreflightReport, env: Mapping[str, str] | None = None, timeout: float = _TIMEOUT_S) -> None:
    """KFP reachable at ``host`` with the credentials given, at least :data:`MIN_KFP_VERSION`, and a namespace runs can use."""
    given = " and ".join(kfp_auth.given(env))
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    how_to_auth = kfp_auth.HOW_TO_AUTHENTICATE
    request = urllib.request.Request(url, headers=kfp_auth.request_headers(env))
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as response:
            body = response.read(65536)
    except urllib.error.HTTPError as exc:
        if exc.code in (301, 302, 303, 307, 308, 401, 403):
            problem = f"refused {given}" if given and exc.code in (401, 403) else "asks for a login"
            report.add("error", f"KFP at {host} {problem} ({exc.code} from {url}); fix: {how_to_auth}")
        else:
            report.add(
                "error",
                f"no Kubeflow Pipelines API at {url} ({exc.code} {exc.reason}); fix: set KFP_HOST to the Pipelines endpoint"
                " (Kubeflow: https://<host>/pipeline; standalone: `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80`"
                " and KFP_HOST=http://localhost:8080)",
            )
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        report.add(
            "error",
            f"KFP at {host} is unreachable ({reason}); fix: check KFP_HOST (Kubeflow: https://<host>/pipeline; standalone:"
            " `kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80` and KFP_HOST=http://localhost:8080)",
        )
        return
    try:
        health = json.loads(body)
        if not isinstance(health, dict):
            raise ValueError(health)
    except ValueError:
        report.add("error", f"{url} answered something that is not the KFP API's JSON (a login page?); fix: {how_to_auth}, and check KFP_HOST")
        return
    report.multi_user = bool(health.get("multi_user"))
    tag = str(health.get("tag_name") or "unknown")
    report.kfp_version = tag
    version = _version_tuple(tag)
    floor = ".".join(map(str, MIN_KFP_VERSION))
    if version is None:
        report.add("warning", f"KFP at {host} reports version {tag!r}: cannot check that it is at least {floor}, which the pipelines need")
    elif version[:2] < MIN_KFP_VERSION:
        report.add(
            "error",
            f"KFP at {host} is {tag}, older than {floor}, which the pipelines need (retries, the run-id placeholder, ParallelFor parallelism);"
            f" fix: upgrade Kubeflow Pipelines to {floor} or later (Kubeflow 1.10 ships 2.5)",
        )
    else:
        from proxyhpo.kfp.target import LATEST_TARGET, KfpTarget

        target = KfpTarget.for_backend(tag)
        report.kfp_target = str(target)
        mode = "" if target == LATEST_TARGET else f"; pipelines compiled for KFP {target}: no final status, loop outputs relayed through the bucket"
        report.add("ok", f"KFP at {host}: version {tag}{', multi-user' if report.multi_user else ''}{mode}")
    if report.multi_user and namespace == "kubeflow":
        report.add(
            "error",
            "KFP is multi-user, so runs go to a profile namespace, not 'kubeflow'; fix: set NAMESPACE to your profile's namespace (`kubectl get profiles`)",
        )


# --- Kubernetes -------------------------------------------------------------------------------------------------

class _Stop(Exception):
    """A finding after which the Kubernetes checks cannot go on."""


def kube_api_client(context: str | None = None, *, host: str | None = None) -> Any:
    """A ``kubernetes`` ``ApiClient``: for ``host`` when given (no credentials), else from kubeconfig or in-cluster.

    Raises:
        _Stop: with a one-line message when no configuration is found.
    """
    from kubernetes import client, config

    if host:
        configuration = client.Configuration()
        configuration.host = host
        return client.ApiClient(configuration)
    try:
        # the variable is read here, not when the kubernetes package was imported
        return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None, context=context)
    except (config.ConfigException, OSError, TypeError) as exc:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            where = os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise _Stop(
                f"no Kubernetes configuration ({where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__});"
                " fix: set KUBECONFIG or run `kubectl config use-context <cluster>`, then check with `kubectl get namespaces`"
            ) from None


def _api_problem(exc: Exception, host: str, what: str) -> str:
    """One line for a failed Kubernetes API call."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        if exc.status == 401:
            return (
                f"the Kubernetes API at {host} refused the credentials (401 Unauthorized); fix: log in again or refresh the"
                " kubeconfig's token, then check with `kubectl get namespaces`"
            )
        if exc.status == 403:
            return f"not allowed to {what} (403 Forbidden); fix: use a kubeconfig whose user may install into the namespace (`kubectl auth can-i create secrets -n <namespace>`)"
        return f"the Kubernetes API at {host} answered {exc.status} {exc.reason} when asked to {what}; fix: check the cluster's health with `kubectl get --raw /readyz`"
    reason = str(getattr(exc, "reason", "") or exc).splitlines()[0]
    return (
        f"the Kubernetes API at {host} is unreachable ({reason[:160]}); fix: check `kubectl config current-context`,"
        " that the cluster is up and that you can reach it (VPN, proxy)"
    )


def _api_errors() -> tuple[type[Exception], ...]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return ApiException, HTTPError, OSError


def check_cluster(api: Any, namespace: str, report: PreflightReport, *, create_namespace: bool = False) -> None:
    """The cluster answers with the credentials given, and ``namespace`` exists (or helm will create it)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    host = api.configuration.host
    try:
        client.CoreV1Api(api).read_namespace(namespace, _request_timeout=_TIMEOUT_S)
    except ApiException as exc:
        if exc.status == 404:
            report.namespace_exists = False
            if create_namespace:
                report.add("warning", f"namespace {namespace} does not exist: helm will create it (runs must be launched into it)")
                return
            report.add(
                "error",
                f"namespace {namespace} does not exist; fix: set NAMESPACE to the namespace your runs go to (standalone KFP: kubeflow;"
                " multi-user Kubeflow: your profile's), or CREATE_NAMESPACE=1 to have helm create it",
            )
            return
        report.add("error", _api_problem(exc, host, f"read namespace {namespace}"))
        raise _Stop from None
    except _api_errors() as exc:
        report.add("error", _api_problem(exc, host, f"read namespace {namespace}"))
        raise _Stop from None
    report.namespace_exists = True
    report.add("ok", f"Kubernetes API at {host}: namespace {namespace} exists")


def check_gpu_nodes(api: Any, report: PreflightReport) -> None:
    """Nodes advertising ``nvidia.com/gpu``: a warning, not a failure, when there are none (or they cannot be listed)."""
    from kubernetes import client

    try:
        nodes = client.CoreV1Api(api).list_node(_request_timeout=_TIMEOUT_S).items
    except _api_errors() as exc:
        report.add("warning", f"GPU nodes not checked: {_api_problem(exc, api.configuration.host, 'list nodes').split('; fix:')[0]}")
        return
    gpus = {}
    for node in nodes:
        allocatable = (node.status.allocatable if node.status else None) or {}
        try:
            count = int(str(allocatable.get("nvidia.com/gpu", "0")))
        except ValueError:
            count = 0
        if count > 0:
            gpus[node.metadata.name] = count
    if not gpus:
        report.add(
            "warning",
            f"no node advertises nvidia.com/gpu ({len(nodes)} nodes): GPU trials will stay Pending until one does;"
            " install the NVIDIA device plugin or GPU Operator on the GPU nodes",
        )
        return
    report.add("ok", f"GPU nodes: {len(gpus)} advertising {sum(gpus.values())} nvidia.com/gpu")


#: The PodSecurity label whose level decides whether KFP's task pods may start in the run namespace.
PSS_ENFORCE = "pod-security.kubernetes.io/enforce"
_DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")


def check_namespace_settings(api: Any, namespace: str, report: PreflightReport, *, helm_values: Mapping[str, Any] | None = None,
                             release: str = "proxyhpo") -> None:
    """What a (multi-user) run namespace already decides, and the chart setting each calls for.

    - ``kfp-launcher``: a ConfigMap this release does not own (the profile controller's, KFP 2.15+) is kept: the
      chart skips its own (``kfpLauncher.enabled=false``, also guarded by a lookup in the chart).
    - PodSecurity: ``restricted`` refuses KFP's task pods (KFP sets no seccomp profile or dropped capabilities on
      them); ``baseline`` and ``privileged`` admit them and the chart's own pods, which are restricted.
    - StorageClass: MinIO's and PostgreSQL's claims need a default class, or one named in the values; with no
      default and exactly one class, that one is chosen.
    - ResourceQuotas: a quota that leaves no ``nvidia.com/gpu`` fails every GPU task; the others are listed.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    helm_values = helm_values or {}
    host = api.configuration.host
    try:
        launcher = core.read_namespaced_config_map("kfp-launcher", namespace, _request_timeout=_TIMEOUT_S)
    except ApiException as exc:
        launcher = None
        if exc.status != 404:
            report.add("warning", f"kfp-launcher not checked: {_api_problem(exc, host, f'read ConfigMap kfp-launcher in {namespace}').split('; fix:')[0]}")
    except _api_errors() as exc:
        launcher = None
        report.add("warning", f"kfp-launcher not checked: {_api_problem(exc, host, 'read ConfigMap kfp-launcher').split('; fix:')[0]}")
    if launcher is not None:
        owner = ((launcher.metadata.annotations or {}) if launcher.metadata else {}).get("meta.helm.sh/release-name")
        if owner != release:
            report.chart_settings["kfpLauncher.enabled"] = "false"
            root = (launcher.data or {}).get("defaultPipelineRoot", "KFP's default")
            report.add("ok", f"namespace {namespace} has its own kfp-launcher (pipeline root: {root}): kept, the chart skips its own (kfpLauncher.enabled=false)")
    try:
        labels = (core.read_namespace(namespace, _request_timeout=_TIMEOUT_S).metadata.labels or {})
    except _api_errors():
        labels = None  # check_cluster has reported it
    if labels is not None:
        level = labels.get(PSS_ENFORCE, "")
        if level == "restricted":
            report.add(
                "error",
                f"namespace {namespace} enforces the restricted Pod Security level, which refuses Kubeflow Pipelines' task pods;"
                f" fix: `kubectl label namespace {namespace} {PSS_ENFORCE}=baseline --overwrite` (the chart's own pods are restricted either way)",
            )
        else:
            report.add("ok", f"namespace {namespace}: Pod Security {level or 'not enforced'} admits the task pods and the chart's")
    _check_storage_class(client.StorageV1Api(api), report, helm_values, host)
    try:
        quotas = core.list_namespaced_resource_quota(namespace, _request_timeout=_TIMEOUT_S).items
    except _api_errors() as exc:
        report.add("warning", f"resource quotas not checked: {_api_problem(exc, host, 'list resource quotas').split('; fix:')[0]}")
        return
    for quota in quotas:
        hard = (quota.status.hard if quota.status and quota.status.hard else None) or (quota.spec.hard if quota.spec else None) or {}
        used = (quota.status.used if quota.status else None) or {}
        name = quota.metadata.name
        gpu = next((key for key in hard if key in ("requests.nvidia.com/gpu", "nvidia.com/gpu", "limits.nvidia.com/gpu")), None)
        if gpu is not None and _quantity(hard[gpu]) - _quantity(used.get(gpu, "0")) < 1:
            report.add(
                "error",
                f"ResourceQuota {name} in {namespace} leaves no GPU ({gpu}: {used.get(gpu, '0')} of {hard[gpu]} used), so every GPU task stays Pending;"
                f" fix: ask the cluster's administrators to raise {gpu} in {name} (`kubectl describe resourcequota {name} -n {namespace}`)",
            )
        else:
            shown = ", ".join(f"{key}={value}" for key, value in sorted(hard.items()))
            report.add("ok", f"ResourceQuota {name}: {shown} (each GPU task requests 1 GPU and the study's CPU and memory)")


def _quantity(text: str) -> float:
    """A Kubernetes quantity as a number (GPU counts are plain integers; ``m`` is a thousandth)."""
    text = str(text).strip()
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text or 0)


def _check_storage_class(storage: Any, report: PreflightReport, helm_values: Mapping[str, Any], host: str) -> None:
    """MinIO's and PostgreSQL's claims get a class: the values', the cluster's default, or the only one there is."""
    claims = [
        part for part in ("minio", "postgresql")
        if _nested(helm_values, (part, "persistence", "enabled")) is not False and not _nested(helm_values, (part, "persistence", "existingClaim"))
        and not (part == "minio" and _nested(helm_values, ("minio", "enabled")) is False)
    ]
    named = {part: _nested(helm_values, (part, "persistence", "storageClass")) for part in claims}
    if not claims:
        return
    try:
        classes = storage.list_storage_class(_request_timeout=_TIMEOUT_S).items
    except _api_errors() as exc:
        report.add("warning", f"storage classes not checked: {_api_problem(exc, host, 'list storage classes').split('; fix:')[0]}")
        return
    names = sorted(item.metadata.name for item in classes)
    default = next((item.metadata.name for item in classes if any((item.metadata.annotations or {}).get(key) == "true" for key in _DEFAULT_CLASS)), None)
    for part, name in named.items():
        if name and name not in names:
            report.add("error", f"{part}.persistence.storageClass {name!r} is no StorageClass of the cluster ({', '.join(names) or 'none'}); fix: name one of them in HELM_VALUES")
    unnamed = [part for part, name in named.items() if not name]
    if not unnamed:
        return
    if default:
        report.add("ok", f"StorageClass: {default} (the cluster's default) for {' and '.join(unnamed)}")
    elif len(names) == 1:
        for part in unnamed:
            report.chart_settings[f"{part}.persistence.storageClass"] = names[0]
        report.add("ok", f"StorageClass: no default; {names[0]}, the only one, is chosen for {' and '.join(unnamed)}")
    else:
        settings = " and ".join(f"{part}.persistence.storageClass" for part in unnamed)
        report.add(
            "error",
            f"no default StorageClass for the volumes of {' and '.join(unnamed)} ({', '.join(names) or 'no class at all'});"
            f" fix: set {settings} in HELM_VALUES to one of them" + ("" if names else ", or install a provisioner"),
        )


def _nested(values: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(values, Mapping):
            return None
        values = values.get(key)
    return values


def check_credentials(api: Any | None, namespace: str, report: PreflightReport, *, helm_values: Mapping[str, Any] | None = None,
                      env: Mapping[str, str] | None = None, release: str = "proxyhpo") -> None:
    """Each of the chart's credentials given in the environment, or its Secret already in ``namespace``."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    env = os.environ if env is None else env
    helm_values = helm_values or {}
    for part, spec in CREDENTIALS.items():
        variables = spec["env"]
        missing = [name for name in variables if not env.get(name)]
        if not missing:
            report.add("ok", f"{part} credentials: from {', '.join(variables)}")
            continue
        if part == "s3" and external_s3(helm_values):  # no MinIO root Secret: the external service's user for the bucket
            if _nested(helm_values, ("s3", "pipelineUser", "secretKey")):
                report.add("ok", "s3 credentials: s3.pipelineUser in HELM_VALUES")
            else:
                report.add("error", f"no s3 credentials for the external S3 {_nested(helm_values, ('s3', 'endpoint'))}: {', '.join(missing)} not set;"
                           " fix: export S3_ACCESS_KEY and S3_SECRET_KEY, the keys of that service's user for the bucket")
            continue
        secret = credential_secret(part, release, helm_values)
        if api is not None and report.namespace_exists:
            try:
                client.CoreV1Api(api).read_namespaced_secret(secret, namespace, _request_timeout=_TIMEOUT_S)
                report.add("ok", f"{part} credentials: Secret {secret} exists in {namespace}")
                continue
            except ApiException as exc:
                if exc.status != 404:
                    report.add("error", _api_problem(exc, api.configuration.host, f"read Secret {secret} in {namespace}"))
                    continue
            except _api_errors() as exc:
                report.add("error", _api_problem(exc, api.configuration.host, f"read Secret {secret} in {namespace}"))
                continue
        report.add(
            "error",
            f"no {part} credentials: {', '.join(missing)} not set and no Secret {secret} in {namespace};"
            f" fix: export {' and '.join(variables)}, or create Secret {secret} in {namespace} and name it in HELM_VALUES"
            f" ({'.'.join(spec['existing'])})",
        )


def check_tools(report: PreflightReport, tools: Mapping[str, str]) -> None:
    """Each command the deploy runs (``helm``, the container engine) is on PATH."""
    for role, command in tools.items():
        if not command or not shutil.which(command):
            fix = "install docker or podman (or set DOCKER=...)" if role == "container engine" else f"install {role} (or point at it)"
            report.add("error", f"{role} {command or ''} not found on PATH; fix: {fix}".replace("  ", " "))
        else:
            report.add("ok", f"{role}: {shutil.which(command)}")


def preflight(host: str, namespace: str, *, api: Any = None, context: str | None = None, create_namespace: bool = False,
              helm_values: Mapping[str, Any] | None = None, tools: Mapping[str, str] | None = None,
              env: Mapping[str, str] | None = None, release: str = "proxyhpo") -> PreflightReport:
    """Every check ``make deploy`` needs before building anything; ``api`` (a ``kubernetes`` ``ApiClient``) defaults to kubeconfig's."""
    report = PreflightReport()
    if tools:
        check_tools(report, tools)
    try:
        api = api if api is not None else kube_api_client(context)
        check_cluster(api, namespace, report, create_namespace=create_namespace)
        check_gpu_nodes(api, report)
        check_credentials(api, namespace, report, helm_values=helm_values, env=env, release=release)
        if report.namespace_exists:
            check_namespace_settings(api, namespace, report, helm_values=helm_values, release=release)
    except _Stop as stop:  # the cluster cannot be asked: its other checks would only repeat the one line that matters
        if stop.args:
            report.add("error", str(stop))
    check_kfp(host, namespace, report, env=env)
    return report


# --- deploy -------------------------------------------------------------------------------------------------------

@dataclass
class DeployOptions:
    """What ``make deploy`` passes on (``proxyhpo deploy --help``)."""

    host: str
    namespace: str = "kubeflow"
    release: str = "proxyhpo"
    chart: Path = Path("helm/proxyhpo")
    values: Path | None = None
    registry: str = "ghcr.io/proxyhpo"
    tag: str | None = None
    digests: Path | None = None
    out: Path = Path("build/deploy")
    dry_run: bool = False
    create_namespace: bool = False
    context: str | None = None
    helm: str = "helm"
    engine: str | None = None
    timeout: str = "10m"
    data_root: str = ""
    kfp_target: str = "auto"
    s3_endpoint: str = ""
    s3_bucket: str = ""


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(title: str) -> None:
    _say(f"==> {title}")


def _show(command: Sequence[str], *, runs: bool, note: str = "") -> None:
    """Print a command; ``runs`` is False for what a dry run only shows."""
    _say(f"    {'run' if runs else 'would run'}: {shlex.join(command)}{f'   ({note})' if note else ''}")


def _load_values(path: Path | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    from proxyhpo.errors import ConfigError

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path, f"cannot be read as chart values ({str(exc).splitlines()[0]})", "give a YAML file of chart values as HELM_VALUES") from None
    if not isinstance(values, dict):
        raise ConfigError(path, "is not a mapping of chart values", "give a YAML file of chart values as HELM_VALUES")
    return values


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, Mapping) and isinstance(merged.get(key), dict) else value
    return merged


_S3_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def value_overrides(options: DeployOptions) -> dict[str, Any]:
    """Chart values set by ``make deploy`` variables, over HELM_VALUES (``--set`` on the install).

    ``S3_ENDPOINT`` (``--s3-endpoint``): an external S3 (Kubeflow's SeaweedFS or MinIO, a cloud bucket) instead of the
    chart's MinIO: ``minio.enabled=false`` and ``s3.endpoint``. ``S3_BUCKET`` (``--s3-bucket``): ``s3.bucket``, which
    also places the pipelines' data root and the runs' checkpoints. ``DATA_ROOT`` (``--data-root``,
    ``s3://<bucket>/<folder>``): ``s3.datasetUser.prefix``, so that the data sets are read with the read-only
    reader's keys there and the pipeline user may not delete them (another folder would be read with the results keys).

    Raises:
        ConfigError: an endpoint that is not ``http(s)://host[:port]``, a bucket name S3 refuses, or a data root that
            is not a folder of the bucket (``S3_BUCKET`` or HELM_VALUES' ``s3.bucket``, default ``proxyhpo``).
    """
    from proxyhpo.errors import ConfigError

    overrides: dict[str, Any] = {}
    if options.s3_endpoint:
        if not _S3_ENDPOINT.fullmatch(options.s3_endpoint):
            raise ConfigError("S3_ENDPOINT", f"{options.s3_endpoint!r} is not http(s)://host[:port]",
                              "give the S3 service's URL, e.g. S3_ENDPOINT=https://s3.example.org (https: TLS)")
        overrides = {"minio": {"enabled": False}, "s3": {"endpoint": options.s3_endpoint.rstrip("/")}}
    if options.s3_bucket:
        if not _S3_BUCKET.fullmatch(options.s3_bucket):
            raise ConfigError("S3_BUCKET", f"{options.s3_bucket!r} is not an S3 bucket name",
                              "use 3 to 63 lower-case letters, digits, dots and hyphens, e.g. S3_BUCKET=imaging-studies")
        overrides = _merge(overrides, {"s3": {"bucket": options.s3_bucket}})
    if options.data_root:
        bucket = options.s3_bucket or _nested(_load_values(options.values), ("s3", "bucket")) or "proxyhpo"
        folder = options.data_root.removeprefix(f"s3://{bucket}/").strip("/")
        if not options.data_root.startswith(f"s3://{bucket}/") or not folder:
            raise ConfigError("DATA_ROOT", f"{options.data_root!r} is not a folder of the bucket {bucket!r}, whose data set reader and policies the chart makes",
                              f"give DATA_ROOT=s3://{bucket}/<folder>, or S3_BUCKET with the data root's bucket")
        overrides = _merge(overrides, {"s3": {"datasetUser": {"prefix": folder}}})
    return overrides


def _settings(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``overrides`` as helm ``--set`` pairs (key.path -> value)."""
    pairs: dict[str, str] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            pairs.update(_settings(value, f"{prefix}{key}."))
        else:
            pairs[f"{prefix}{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return pairs


def user_values(options: DeployOptions) -> dict[str, Any]:
    """The chart values the user gave: HELM_VALUES, then what the make variables set (:func:`value_overrides`)."""
    return _merge(_load_values(options.values), value_overrides(options))


def ca_bundle(values: Mapping[str, Any]) -> Any:
    """The private CA bundle the chart values name (``caBundle``) as the pipelines' tasks mount it, or None.

    Returns:
        A :class:`pipelines.tasks.CaBundle`, or None when neither ``caBundle.configMap`` nor ``caBundle.secret`` is set.
    """
    from pipelines.tasks import CaBundle

    key = _nested(values, ("caBundle", "key")) or "ca.crt"
    for kind in ("configMap", "secret"):
        if _nested(values, ("caBundle", kind)):
            return CaBundle(kind, _nested(values, ("caBundle", kind)), key)
    return None


def external_s3(values: Mapping[str, Any]) -> bool:
    """Whether these chart values replace the chart's MinIO by an external S3."""
    return _nested(values, ("minio", "enabled")) is False


def credential_values(env: Mapping[str, str] | None = None, *, external: bool = False) -> dict[str, Any]:
    """Chart values holding the credentials found in the environment (helm reads them as JSON on stdin).

    With an external S3 (``external``), S3_ACCESS_KEY and S3_SECRET_KEY are the keys of that service's user for
    the bucket (``s3.pipelineUser``): there are no MinIO root keys.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if external and (env.get("S3_ACCESS_KEY") or env.get("S3_SECRET_KEY")):
        values["s3"] = {"pipelineUser": {"name": env.get("S3_ACCESS_KEY", ""), "secretKey": env.get("S3_SECRET_KEY", "")}}
    elif env.get("S3_ACCESS_KEY") or env.get("S3_SECRET_KEY"):
        values["s3"] = {"accessKey": env.get("S3_ACCESS_KEY", ""), "secretKey": env.get("S3_SECRET_KEY", "")}
    if env.get("POSTGRES_PASSWORD"):
        values["postgresql"] = {"auth": {"password": env["POSTGRES_PASSWORD"]}}
    return values


def data_root(options: DeployOptions) -> str:
    """Where the pipelines' data sets default: ``--data-root``, else ``s3://<s3.bucket>/datasets`` of the chart's values
    (HELM_VALUES over the chart's defaults): the bucket is named once, in the values."""
    if options.data_root:
        return options.data_root
    values = _merge(_load_values(options.chart / "values.yaml") if (options.chart / "values.yaml").is_file() else {}, user_values(options))
    return f"s3://{_nested(values, ('s3', 'bucket')) or 'proxyhpo'}/{_nested(values, ('s3', 'datasetUser', 'prefix')) or 'datasets'}"


def compile_pipelines(options: DeployOptions, kfp_target: str | None = None) -> list[Path]:
    """Every shipped pipeline compiled for the pushed images and the backend into ``OUT/pipelines``: the folder is
    replaced whole, never left half-written (:func:`proxyhpo.compile.compile_pipelines`, the one compile path).

    Args:
        kfp_target: the backend's version the pipelines are compiled for (default: ``options.kfp_target``, where
            ``auto`` without a detected backend is the newest).
    """
    from proxyhpo.compile import PipelineImages
    from proxyhpo.compile import compile_pipelines as compile_shipped
    from proxyhpo.kfp.target import KfpTarget

    wanted = kfp_target or options.kfp_target
    backend = KfpTarget.parse("latest" if wanted in ("", "auto") else wanted)
    target = options.out / "pipelines"
    images = PipelineImages.pushed(options.registry, options.tag, digests=options.digests)
    _step(f"compile every shipped pipeline into {target}")
    _say(f"    images: runtime={images.runtime} cpu={images.cpu}")
    root = data_root(options)
    _say(f"    data sets: the pipelines' dataset and external default under {root}")
    bundle = ca_bundle(user_values(options))
    if bundle is not None:
        _say(f"    TLS: every task trusts the CA bundle {bundle.key} of {bundle.kind} {bundle.name} (caBundle)")
    _say(f"    KFP backend: {backend}{' (no final status; loop outputs relayed through the bucket)' if not backend.collects_artifacts else ''}")
    options.out.mkdir(parents=True, exist_ok=True)  # compiling contacts nothing: a dry run compiles too
    staging = Path(tempfile.mkdtemp(prefix=".pipelines-", dir=options.out))
    try:
        compile_shipped(staging, data_root=root, images=images, kfp_target=backend, ca_bundle=bundle)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    compiled = sorted(target.glob("*.yaml"))
    _say(f"    wrote {len(compiled)} pipelines")
    return compiled


def _helm_command(options: DeployOptions, settings: Mapping[str, str] | None = None) -> list[str]:
    command = [options.helm, "upgrade", "--install", options.release, str(options.chart), "--namespace", options.namespace]
    if options.create_namespace:
        command.append("--create-namespace")
    command += ["--set", f"image.registry={options.registry}"]
    if options.tag:
        command += ["--set", f"image.tag={options.tag}"]
    for key, value in (settings or {}).items():  # what the preflight chose for this namespace
        command += ["--set", f"{key}={value}"]
    for key, value in _settings(value_overrides(options)).items():  # S3_ENDPOINT, S3_BUCKET: --set wins over --values
        command += ["--set", f"{key}={value}"]
    if options.values:
        command += ["--values", str(options.values)]
    return command + ["--values", "-", "--wait", "--timeout", options.timeout]


def _render(options: DeployOptions, values: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Render the chart as ``helm template`` would, with placeholder credentials; write OUT/manifests/. Returns (objects, how)."""
    import yaml

    target = options.out / "manifests"
    shutil.rmtree(target, ignore_errors=True)  # a rerun leaves nothing of an earlier render behind
    target.mkdir(parents=True)
    try:
        import helm_python
    except ImportError:
        helm_python = None
    from proxyhpo.errors import InputError

    def refused(message: str) -> InputError:
        lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
        return InputError(options.values or options.chart, f"the chart does not render ({' '.join(lines[-2:])[:400]})",
                          "fix the values (HELM_VALUES) or the chart; `make chart-lint` shows every problem")

    if helm_python is not None:
        try:
            with helm_python.Chart.load(options.chart) as chart:
                manifests = chart.render(values, name=options.release, namespace=options.namespace, is_install=True)
        except helm_python.HelmError as exc:
            raise refused(str(exc)) from None
        how = "Helm's engine (helm-python-sdk)"
    elif shutil.which(options.helm):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(values, handle)  # placeholders only: no real credential is ever written
        try:
            result = subprocess.run(
                [options.helm, "template", options.release, str(options.chart), "--namespace", options.namespace, "--values", handle.name],
                capture_output=True, text=True,
            )
        finally:
            os.unlink(handle.name)
        if result.returncode != 0:
            raise refused(result.stderr or f"exit {result.returncode}")
        manifests = {"rendered": result.stdout}
        how = f"{options.helm} template"
    else:
        _say("    rendering skipped: neither helm-python-sdk (pip install helm-python-sdk) nor a helm binary is installed")
        return [], ""
    notes = "".join(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
    documents = [f"# Source: {path}\n{text.strip()}\n" for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt") and text.strip()]
    (target / f"{options.release}.yaml").write_text("---\n".join(documents))
    if notes:
        (target / "NOTES.txt").write_text(notes)
    objects = [doc for text in documents for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if isinstance(doc, dict)]
    return objects, how


def install_chart(options: DeployOptions, env: Mapping[str, str] | None = None, settings: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``helm upgrade --install`` with the credentials on stdin; in a dry run, print it and render the manifests instead.

    Args:
        settings: chart values the preflight chose for the namespace (``--set``), e.g. ``kfpLauncher.enabled=false``.
    """
    env = os.environ if env is None else env
    given_values = user_values(options)
    credentials = credential_values(env, external=external_s3(given_values))
    command = _helm_command(options, settings)
    given = [name for name in ("S3_ACCESS_KEY", "S3_SECRET_KEY", "POSTGRES_PASSWORD") if env.get(name)]
    _step(f"install the chart {options.chart} as release {options.release} in namespace {options.namespace}")
    _show(command, runs=not options.dry_run, note=f"stdin: credentials from {', '.join(given)}" if given else "stdin: no credentials; existing Secrets are used")
    if options.dry_run:
        values = _merge(given_values, {"image": {"registry": options.registry, **({"tag": options.tag} if options.tag else {})}})
        for part, placeholder in DRY_RUN_CREDENTIALS.items():
            if not _nested(values, CREDENTIALS[part]["existing"]):
                values = _merge(values, {part: placeholder})
        if external_s3(values) and not _nested(values, ("s3", "pipelineUser", "secretKey")):
            values = _merge(values, {"s3": {"pipelineUser": {"secretKey": "dry-run-placeholder"}}})  # the external user's key
        chart_values = _load_values(options.chart / "values.yaml")
        if isinstance(_nested(chart_values, ("s3", "pipelineUser")), dict) and "secretKey" in chart_values["s3"]["pipelineUser"]:
            # else the chart generates a random key on every render: keep the dry run's output reproducible
            values = _merge({"s3": {"pipelineUser": {"secretKey": "dry-run-placeholder"}}}, values)
        objects, how = _render(options, values)
        if how:
            _say(f"    rendered {len(objects)} manifests with {how} (placeholder credentials) into {options.out / 'manifests'}")
        return objects
    result = subprocess.run(command, input=json.dumps(credentials), text=True)
    if result.returncode != 0:
        from proxyhpo.errors import ProxyHPOError

        raise ProxyHPOError(f"helm upgrade failed (exit {result.returncode}); see helm's message above, and `helm status {options.release} -n {options.namespace}`")
    return []


def upload_pipelines(options: DeployOptions, compiled: Sequence[Path], *, multi_user: bool = False, env: Mapping[str, str] | None = None) -> list[str]:
    """Upload each compiled pipeline (a new version when it exists) and create the shipped studies' experiments
    (:func:`proxyhpo.upload.publish`, the one upload path); a dry run only says what it would do."""
    from proxyhpo.catalogue import shipped_experiments

    names = [f"proxyhpo-{path.stem}" for path in compiled]
    _step(f"upload {len(names)} pipelines to {options.host} ({kfp_auth.describe(env)}); an existing one gets a new version")
    for path, name in zip(compiled, names):
        _say(f"    {'would upload' if options.dry_run else 'upload'}: {name} <- {path}")
    experiments = shipped_experiments()
    _step("create the experiments of the shipped studies (kept when they exist)")
    _say(f"    {'would create' if options.dry_run else 'create'}: {', '.join(experiments)} in namespace {options.namespace}")
    if options.dry_run:
        return names
    from proxyhpo.upload import publish

    return publish(
        options.host, compiled, namespace=options.namespace, version=options.tag or "latest", experiments=experiments, multi_user=multi_user, env=env
    )


def _mlflow_service(objects: Sequence[Mapping[str, Any]], release: str) -> tuple[str, int]:
    for obj in objects:
        labels = obj.get("metadata", {}).get("labels") or {}
        if obj.get("kind") == "Service" and labels.get("app.kubernetes.io/component") == "mlflow" and labels.get("app.kubernetes.io/instance") == release:
            return obj["metadata"]["name"], int(obj["spec"]["ports"][0]["port"])
    return (release if "proxyhpo" in release else f"{release}-proxyhpo") + "-mlflow", 5000


def _ingress_url(ingresses: Sequence[Mapping[str, Any]], service: str) -> str | None:
    for ingress in ingresses:
        tls_hosts = {host for tls in ingress.get("spec", {}).get("tls") or [] for host in tls.get("hosts") or []}
        for rule in ingress.get("spec", {}).get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                if ((path.get("backend") or {}).get("service") or {}).get("name") == service and rule.get("host"):
                    scheme = "https" if rule["host"] in tls_hosts else "http"
                    return f"{scheme}://{rule['host']}{path.get('path') or '/'}"
    return None


def print_urls(options: DeployOptions, objects: Sequence[Mapping[str, Any]] = (), api: Any = None) -> None:
    """Where the Kubeflow Pipelines and MLflow UIs are: an ingress when the chart has one, else ``kubectl port-forward``."""
    ingresses = [o for o in objects if o.get("kind") == "Ingress"]
    service, port = _mlflow_service(objects, options.release)
    if api is not None:
        from kubernetes import client

        try:
            selector = f"app.kubernetes.io/instance={options.release},app.kubernetes.io/component=mlflow"
            found = client.CoreV1Api(api).list_namespaced_service(options.namespace, label_selector=selector, _request_timeout=_TIMEOUT_S).items
            if found:
                service, port = found[0].metadata.name, found[0].spec.ports[0].port
            listed = client.NetworkingV1Api(api).list_namespaced_ingress(options.namespace, _request_timeout=_TIMEOUT_S).items
            ingresses = [api.sanitize_for_serialization(i) for i in listed]
        except _api_errors():
            pass
    _step("where to look")
    _say(f"    Kubeflow Pipelines UI: {options.host.rstrip('/')}/#/pipelines  (pipelines proxyhpo-*; launch a run with 'Create run')")
    url = _ingress_url(ingresses, service)
    if url:
        _say(f"    MLflow UI: {url}")
    else:
        _say(f"    MLflow UI: kubectl -n {options.namespace} port-forward svc/{service} 5000:{port}   then open http://localhost:5000")


def deploy(options: DeployOptions, env: Mapping[str, str] | None = None) -> int:
    """Compile, install the chart, upload, create the experiments, print the URLs (``--dry-run``: print and write only)."""
    env = os.environ if env is None else env
    if options.dry_run:
        _say(f"dry run: nothing is contacted; the rendered manifests and compiled pipelines go to {options.out}")
    multi_user = False
    api = None
    kfp_target = options.kfp_target
    report = PreflightReport()
    if not options.dry_run:
        check_kfp(options.host, options.namespace, report, env=env)
        multi_user = bool(report.multi_user)
        if kfp_target in ("", "auto"):
            kfp_target = report.kfp_target or "latest"
        try:
            api = kube_api_client(options.context)
            check_namespace_settings(api, options.namespace, report, helm_values=user_values(options), release=options.release)
        except (_Stop, *_api_errors()):
            api = None
    compiled = compile_pipelines(options, kfp_target)
    objects = install_chart(options, env, report.chart_settings)
    upload_pipelines(options, compiled, multi_user=multi_user, env=env)
    print_urls(options, objects, api)
    return 0


def print_preflight_plan(options: DeployOptions, env: Mapping[str, str] | None = None) -> None:
    """What ``--preflight`` checks, printed without contacting anything (``--dry-run``)."""
    env = os.environ if env is None else env
    floor = ".".join(map(str, MIN_KFP_VERSION))
    auth = " and ".join(kfp_auth.given(env)) or "no KFP credentials"
    _step("preflight (dry run: nothing is contacted)")
    context = options.context or os.environ.get("KUBECONFIG") or "the current kubeconfig context"
    _say(f"    would check: the Kubernetes API ({context}) answers; namespace {options.namespace} exists"
         f"{' (or will be created)' if options.create_namespace else ''}")
    _say("    would check: nodes advertising nvidia.com/gpu (a warning when none)")
    _say(f"    would check: namespace {options.namespace}'s own kfp-launcher (kept: kfpLauncher.enabled=false), its Pod Security level"
         " (restricted refuses KFP's task pods), a default StorageClass for the volumes, its ResourceQuotas (GPUs left)")
    values = user_values(options)
    if external_s3(values):
        _say(f"    external S3: {_nested(values, ('s3', 'endpoint'))}, bucket {_nested(values, ('s3', 'bucket')) or 'proxyhpo'}"
             " (no MinIO; S3_ACCESS_KEY and S3_SECRET_KEY are its user's keys for the bucket)")
    for part, spec in CREDENTIALS.items():
        state = "given" if all(env.get(v) for v in spec["env"]) else f"not given: Secret {credential_secret(part, options.release, values)} must exist"
        _say(f"    would check: {part} credentials ({', '.join(spec['env'])} {state})")
    _say(f"    would check: GET {options.host.rstrip('/')}/apis/v2beta1/healthz ({auth}) reports KFP >= {floor}")
    _say(f"    would check: {options.helm} and a container engine ({options.engine or 'docker or podman'}) on PATH")


def run_preflight(options: DeployOptions, env: Mapping[str, str] | None = None) -> int:
    """``proxyhpo deploy --preflight``: each failure one line on stderr saying what to do; exit code 2 when any failed."""
    if options.dry_run:
        print_preflight_plan(options, env)
        return 0
    _step("preflight")
    engine = options.engine or next((name for name in ("docker", "podman") if shutil.which(name)), "")
    report = preflight(
        options.host, options.namespace, context=options.context, create_namespace=options.create_namespace,
        helm_values=user_values(options), tools={"helm": options.helm, "container engine": engine}, env=env, release=options.release,
    )
    for finding in report.findings:
        if finding.level == "ok":
            _say(f"    ok: {finding.message}")
        else:
            print(f"proxyhpo deploy: {finding.level}: {finding.message}", file=sys.stderr, flush=True)
    return 0 if report.ok else EXIT_PREFLIGHT


# --- command line -------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``proxyhpo deploy`` options (``make deploy`` passes them)."""
    parser.add_argument("--host", required=True, help="Kubeflow Pipelines URL (KFP_HOST); credentials from KFP_TOKEN or KFP_COOKIES")
    parser.add_argument("--namespace", default="kubeflow", help="the runs' namespace, where the chart is installed (standalone KFP: kubeflow; multi-user: your profile's)")
    parser.add_argument("--preflight", action="store_true", help="only check the cluster, KFP, credentials and tools; exit code 2 on a failure")
    parser.add_argument("--dry-run", action="store_true", help="contact nothing: print every step, write the rendered manifests and compiled pipelines under --out")
    parser.add_argument("--out", type=Path, default=Path("build/deploy"), help="folder for the compiled pipelines (and, in a dry run, the rendered manifests)")
    parser.add_argument("--release", default="proxyhpo", help="helm release name")
    parser.add_argument("--chart", type=Path, default=Path("helm/proxyhpo"), help="the Helm chart's folder")
    parser.add_argument("--values", type=Path, default=None, help="extra chart values (HELM_VALUES), e.g. existing Secrets")
    parser.add_argument("--registry", default="ghcr.io/proxyhpo", help="registry the images were pushed to (IMAGE_REGISTRY)")
    parser.add_argument("--tag", default=None, help="the images' tag (make: <version>-<commit>); default: the package version")
    parser.add_argument("--digests", type=Path, default=None, help="folder of runtime.digest and runtime-cpu.digest written by `make push`")
    parser.add_argument("--create-namespace", action="store_true", help="let helm create the namespace when it is missing")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    parser.add_argument("--helm", default="helm", help="helm command")
    parser.add_argument("--engine", default=None, help="container engine (default: docker or podman, whichever is present)")
    parser.add_argument("--timeout", default="10m", help="how long helm waits for the release to be ready")
    parser.add_argument(
        "--kfp-target", default="auto",
        help="the KFP backend the pipelines are compiled for: auto (the backend's reported version; a dry run: the newest), or e.g. 2.5, 2.16",
    )
    parser.add_argument(
        "--data-root", default="",
        help="where the data sets live in the chart's bucket; the uploaded pipelines' data fields default there (default: s3://<s3.bucket>/datasets)",
    )
    parser.add_argument(
        "--s3-endpoint", default="",
        help="an external S3 (S3_ENDPOINT), http(s)://host[:port], instead of the chart's MinIO: minio.enabled=false, s3.endpoint",
    )
    parser.add_argument("--s3-bucket", default="", help="the bucket (S3_BUCKET): s3.bucket, and so the pipelines' data root and the checkpoints")


def run(args: argparse.Namespace) -> int:
    """``proxyhpo deploy``: the preflight (``--preflight``) or the deploy steps; returns the exit code."""
    options = DeployOptions(**{name: getattr(args, name) for name in DeployOptions.__dataclass_fields__})
    if args.preflight:
        return run_preflight(options)
    return deploy(options)
