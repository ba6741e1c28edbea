"""The runtime image every component runs on: one tag, equal to the package version.

``PROXYHPO_IMAGE_REGISTRY`` at compile time points the pipelines at another registry (``make deploy
IMAGE_REGISTRY=...`` sets it, so compiled pipelines pull what ``make push`` pushed).
"""

import os

from proxyhpo import __version__

DEFAULT_REGISTRY = "ghcr.io/proxyhpo"
IMAGE_REGISTRY = os.environ.get("PROXYHPO_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")
RUNTIME_IMAGE = f"{IMAGE_REGISTRY}/runtime:{__version__}"
MLFLOW_IMAGE = f"{IMAGE_REGISTRY}/mlflow:{__version__}"

__all__ = ["DEFAULT_REGISTRY", "IMAGE_REGISTRY", "RUNTIME_IMAGE", "MLFLOW_IMAGE"]
