"""The runtime image every component runs on: one tag, equal to the package version."""

from proxyhpo import __version__

IMAGE_REGISTRY = "ghcr.io/proxyhpo"
RUNTIME_IMAGE = f"{IMAGE_REGISTRY}/runtime:{__version__}"
MLFLOW_IMAGE = f"{IMAGE_REGISTRY}/mlflow:{__version__}"

__all__ = ["IMAGE_REGISTRY", "RUNTIME_IMAGE", "MLFLOW_IMAGE"]
