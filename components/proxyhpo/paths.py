"""Where proxyhpo keeps things when nothing is configured (the embedded default).

Everything lives under ``.proxyhpo/`` in the working directory: ``data/`` (generated or staged data
sets), ``artifacts/`` (the KFP local pipeline root) and ``mlflow.db`` (the MLflow tracking store).
``PROXYHPO_HOME`` moves the whole folder; ``MLFLOW_TRACKING_URI`` points tracking elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["proxyhpo_home", "data_dir", "artifacts_dir", "checkpoint_root", "default_tracking_uri", "tracking_uri"]


def proxyhpo_home() -> Path:
    """The root folder: ``$PROXYHPO_HOME`` or ``./.proxyhpo``, as an absolute path."""
    return Path(os.environ.get("PROXYHPO_HOME", "").strip() or ".proxyhpo").absolute()  # empty: unset, not the current folder


def data_dir() -> Path:
    """Generated and staged data sets."""
    return proxyhpo_home() / "data"


def artifacts_dir() -> Path:
    """The KFP local pipeline root."""
    return proxyhpo_home() / "artifacts"


def checkpoint_root() -> str:
    """Where long trials save checkpoints: ``$PROXYHPO_CHECKPOINT_ROOT`` (on a cluster, a folder of the chart's
    MinIO bucket, ``s3://bucket/checkpoints``, so a retried pod on another node finds them), else
    ``checkpoints/`` under the home folder."""
    return os.environ.get("PROXYHPO_CHECKPOINT_ROOT") or str(proxyhpo_home() / "checkpoints")


def default_tracking_uri() -> str:
    """The embedded SQLite MLflow store under the home folder."""
    return f"sqlite:///{proxyhpo_home() / 'mlflow.db'}"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
