"""The images the components run on: ``RUNTIME_IMAGE`` (CUDA torch, for the tasks that train or compute
similarities on a GPU) and ``CPU_IMAGE`` (the CPU torch wheel, for every other task), plus MLflow's.

All are read from the environment when this module is first imported, i.e. at compile time:

- ``PROXYHPO_IMAGE_REGISTRY``: the registry (default ``ghcr.io/proxyhpo``); ``make deploy IMAGE_REGISTRY=...``
  sets it, so compiled pipelines pull what ``make push`` pushed.
- ``PROXYHPO_IMAGE_TAG``: the tag (default: the package version). ``make images`` tags with the version
  and the commit, ``0.1.0-<short sha>[-dirty]``, and ``make deploy`` passes that tag on, so a warm node
  never runs last week's code under an unchanged tag.
- ``PROXYHPO_RUNTIME_IMAGE_DIGEST`` and ``PROXYHPO_CPU_IMAGE_DIGEST``: the digest ``make push`` recorded
  (``build/images/<tag>/runtime.digest``, ``runtime-cpu.digest``), either ``sha256:<64 hex>`` or the whole
  ``registry/runtime@sha256:<64 hex>``. Given, the image is referenced as ``repo:tag@sha256:...``: the
  digest decides what is pulled, the tag stays readable.
"""

from __future__ import annotations

import os
import re

from proxyhpo import __version__
from proxyhpo.errors import ConfigError

DEFAULT_REGISTRY = "ghcr.io/proxyhpo"
#: Repository names under the registry; ``make images`` builds exactly these.
RUNTIME_REPOSITORY, CPU_REPOSITORY, MLFLOW_REPOSITORY = "runtime", "runtime-cpu", "mlflow"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def image_reference(registry: str, repository: str, tag: str, digest: str | None = None, *, variable: str = "digest") -> str:
    """``registry/repository:tag``, pinned as ``registry/repository:tag@sha256:...`` when ``digest`` is given.

    ``digest`` is ``sha256:<64 hex>`` or a whole reference ending in ``@sha256:<64 hex>`` (as ``docker
    image inspect`` reports it); a reference must name the same repository.

    Raises:
        ConfigError: a tag or digest that is not one (``variable`` names where it came from).

    Example:
        >>> image_reference("r.example.org/team", "runtime", "0.1.0-abc1234", "sha256:" + "0" * 64)
        'r.example.org/team/runtime:0.1.0-abc1234@sha256:0000000000000000000000000000000000000000000000000000000000000000'
    """
    repo = f"{registry.rstrip('/')}/{repository}"
    if not _TAG.fullmatch(tag):
        raise ConfigError("PROXYHPO_IMAGE_TAG", f"is {tag!r}, not an image tag", "use letters, digits, '_', '.' and '-' (at most 128)")
    if not digest:
        return f"{repo}:{tag}"
    digest = digest.strip()
    named, _, pinned = digest.rpartition("@")
    last = named.rsplit("/", 1)[-1]
    if ":" in last:  # a tag before the digest (repo:tag@sha256:...) names the same repository
        named = named[: len(named) - len(last) + last.index(":")]
    if not _DIGEST.fullmatch(pinned) or (named and named != repo):
        raise ConfigError(
            variable, f"is {digest!r}, not the digest of {repo}", f"give sha256:<64 hex> or {repo}@sha256:<64 hex> (`make push` writes it)"
        )
    return f"{repo}:{tag}@{pinned}"


IMAGE_REGISTRY = os.environ.get("PROXYHPO_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/") or DEFAULT_REGISTRY
IMAGE_TAG = os.environ.get("PROXYHPO_IMAGE_TAG") or __version__
#: The GPU tasks' image (CUDA build of torch); the name every component uses unless it is a CPU task.
RUNTIME_IMAGE = image_reference(
    IMAGE_REGISTRY, RUNTIME_REPOSITORY, IMAGE_TAG, os.environ.get("PROXYHPO_RUNTIME_IMAGE_DIGEST"), variable="PROXYHPO_RUNTIME_IMAGE_DIGEST"
)
#: The CPU tasks' image (controller, report, exit handler, prepare): the same package on the CPU torch wheel.
CPU_IMAGE = image_reference(IMAGE_REGISTRY, CPU_REPOSITORY, IMAGE_TAG, os.environ.get("PROXYHPO_CPU_IMAGE_DIGEST"), variable="PROXYHPO_CPU_IMAGE_DIGEST")
#: MLflow's server image, which the chart deploys.
MLFLOW_IMAGE = image_reference(IMAGE_REGISTRY, MLFLOW_REPOSITORY, IMAGE_TAG)

__all__ = [
    "DEFAULT_REGISTRY",
    "IMAGE_REGISTRY",
    "IMAGE_TAG",
    "RUNTIME_IMAGE",
    "CPU_IMAGE",
    "MLFLOW_IMAGE",
    "image_reference",
]
