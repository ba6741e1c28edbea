"""Where proxyhpo keeps things when nothing is configured (the embedded default): one rule for every command.

The home folder is ``$PROXYHPO_HOME``, else ``.proxyhpo/`` in the working directory. Under it:
``artifacts/`` (the KFP local pipeline root), ``logs/`` (the task logs of local runs), ``pipelines/``
(the compiled YAML a local run executes), ``checkpoints/`` and ``mlflow.db`` (the MLflow tracking store);
``data/`` is where the shipped examples generate their data sets (a study's data are wherever its
``data.dataset`` says). ``MLFLOW_TRACKING_URI`` points tracking elsewhere.

Commands that only read (``proxyhpo report``, ``proxyhpo status``) take the store through
:func:`existing_tracking_uri`, which never creates one.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["proxyhpo_home", "data_dir", "artifacts_dir", "logs_dir", "checkpoint_root", "default_tracking_uri", "tracking_uri", "existing_tracking_uri"]


def proxyhpo_home() -> Path:
    """The root folder: ``$PROXYHPO_HOME`` or ``./.proxyhpo``, as an absolute path."""
    return Path(os.environ.get("PROXYHPO_HOME", "").strip() or ".proxyhpo").absolute()  # empty: unset, not the current folder


def data_dir() -> Path:
    """Generated and staged data sets."""
    return proxyhpo_home() / "data"


def artifacts_dir() -> Path:
    """The KFP local pipeline root."""
    return proxyhpo_home() / "artifacts"


def logs_dir() -> Path:
    """The task logs of local runs (kfp.local's executors write there, never over the terminal's display)."""
    return proxyhpo_home() / "logs"


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


def existing_tracking_uri() -> str:
    """:func:`tracking_uri` for a command that only reads: an embedded store that does not exist is an error, not created.

    Raises:
        InputError: when the embedded SQLite store is missing, naming where it was looked for and how to point at one.
    """
    from proxyhpo.errors import InputError

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///"))
        if not store.is_file():
            where = "$PROXYHPO_HOME" if os.environ.get("PROXYHPO_HOME", "").strip() else "./.proxyhpo (no PROXYHPO_HOME set)"
            raise InputError(
                store,
                f"does not exist: no study has run with the home folder {where}",
                "run the command in the folder the study ran from, or set PROXYHPO_HOME (or MLFLOW_TRACKING_URI) to the study's store",
            )
    return uri
