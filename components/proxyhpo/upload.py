"""The one upload path: compiled pipelines onto a Kubeflow Pipelines server, a new version when one exists.

``proxyhpo upload`` (every shipped pipeline, compiled for this package's images) and ``make deploy`` (compiled
for the images it pushed, then the shipped studies' experiments) both come through :func:`publish`; the client
authenticates through :mod:`proxyhpo.kfp_auth`. Rerunning is safe: a pipeline that exists gets a new version,
an experiment that exists is kept.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["upload_compiled", "create_experiments", "publish", "upload_shipped"]


def _pipeline_id(client: Any, name: str, namespace: str | None) -> str | None:
    """The id of pipeline ``name``: among ``namespace``'s own pipelines (multi-user), else among the shared ones."""
    if namespace is None:
        return client.get_pipeline_id(name)
    predicate = {"operation": "EQUALS", "key": "display_name", "stringValue": name}
    found = client.list_pipelines(filter=json.dumps({"predicates": [predicate]}), namespace=namespace).pipelines or []
    return found[0].pipeline_id if found else None


def upload_compiled(client: Any, compiled: Sequence[Path], *, version: str, namespace: str | None = None) -> list[str]:
    """Upload each compiled pipeline as ``proxyhpo-<file stem>``; one that exists gets a new version instead.

    Args:
        client: a ``kfp.Client`` (authenticated).
        compiled: the compiled pipeline files.
        version: names the new versions (``<pipeline>-<version>-<time>``): the package version or the image tag.
        namespace: on a multi-user cluster, the profile's namespace: the pipelines are its own (KFP 2.15+
            answers 403 to a tenant uploading a shared one; older ones would publish them to every profile,
            whose runs then miss the chart's Secret and ConfigMap). None: shared (standalone KFP).

    Returns:
        The pipelines' names, in the order of ``compiled``.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    names = []
    for path in map(Path, compiled):
        name = f"proxyhpo-{path.stem}"
        existing = _pipeline_id(client, name, namespace)
        if existing is None:
            description = f"proxyhpo {path.stem} (compiled from examples/)"
            arguments = {"namespace": namespace} if namespace is not None else {}
            client.upload_pipeline(str(path), pipeline_name=name, description=description, **arguments)
        else:  # a second deploy adds a version instead of failing on the name
            client.upload_pipeline_version(str(path), pipeline_version_name=f"{name}-{version}-{stamp}", pipeline_id=existing)
        names.append(name)
    return names


def create_experiments(client: Any, experiments: Sequence[str], *, namespace: str | None) -> None:
    """Create each experiment (KFP keeps one that exists); ``namespace`` is the profile's on a multi-user cluster, else None."""
    for experiment in experiments:
        client.create_experiment(experiment, namespace=namespace)


def publish(
    host: str,
    compiled: Sequence[Path],
    *,
    namespace: str | None = "kubeflow",
    version: str,
    experiments: Sequence[str] = (),
    multi_user: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """Upload ``compiled`` to KFP at ``host`` (:func:`upload_compiled`) and create ``experiments``; return the pipelines' names.

    Args:
        host: the Kubeflow Pipelines API.
        namespace: the runs' namespace (a multi-user profile's).
        version: names the new versions of pipelines that exist.
        experiments: experiments to create (kept when they exist).
        multi_user: the pipelines and experiments belong to ``namespace`` (a multi-user cluster), not to everyone.
        env: where the credentials come from (default ``os.environ``, :mod:`proxyhpo.kfp_auth`).

    Raises:
        ProxyHPOError: one line saying what the server answered, when it refused or could not be reached.
    """
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from proxyhpo import kfp_auth
    from proxyhpo.errors import ProxyHPOError

    try:
        client = kfp_auth.client(host, namespace=namespace, env=env)
        names = upload_compiled(client, compiled, version=version, namespace=namespace if multi_user else None)
        create_experiments(client, experiments, namespace=namespace if multi_user else None)
    except (ApiException, HTTPError, OSError, ValueError) as exc:
        status = getattr(exc, "status", None)
        cause = getattr(exc, "reason", None) if isinstance(exc, HTTPError) else None  # urllib3's retries give up: say on what
        reason = f"{status} {getattr(exc, 'reason', '')}".strip() if status else str(cause or exc).splitlines()[0][:200]
        raise ProxyHPOError(
            f"uploading to KFP at {host} failed ({reason}); rerun once fixed (it is safe):"
            f" `proxyhpo deploy --preflight --host {host} --namespace {namespace}` names what is wrong"
        ) from None
    return names


def upload_shipped(
    host: str,
    *,
    namespace: str | None = "kubeflow",
    data_root: str | None = None,
    env: Mapping[str, str] | None = None,
    kfp_target: str | None = None,
    multi_user: bool = False,
) -> list[str]:
    """``proxyhpo upload``: compile every shipped pipeline for this package's images and :func:`publish` it.

    Args:
        data_root: where the examples' data sets live in the chart's MinIO (``s3://bucket/datasets``): the
            pipelines' ``dataset`` and ``external`` fields default there, so a run launched from the UI reads
            data every pod can reach.
        kfp_target: the KFP backend compiled for (:mod:`proxyhpo.kfp.target`; default: the newest).
        multi_user: upload into ``namespace`` (a multi-user profile's) instead of sharing the pipelines.
    """
    from proxyhpo import __version__
    from proxyhpo.compile import compile_pipelines

    with tempfile.TemporaryDirectory() as folder:
        compiled = compile_pipelines(folder, data_root=data_root, kfp_target=kfp_target)
        return publish(host, compiled, namespace=namespace, version=__version__, multi_user=multi_user, env=os.environ if env is None else env)
