"""Fan-in without ``dsl.Collected``: a loop's outputs relayed through the study's folder, for older KFP backends.

KFP backends before 2.14 cannot hand a ``ParallelFor``'s output artifacts to a task after the loop
(``dsl.Collected``, kubeflow/pipelines#11725). Compiled for such a backend (:mod:`proxyhpo.kfp.target`),
each iteration also writes its output file to a relay folder, and the task after the loop, ordered after
it with ``.after``, reads what is there. The folder is the study's (:func:`proxyhpo.resume.study_folder`:
``<checkpoint root>/<parent run>``, the chart's bucket on a cluster), below the pipeline run's id and the
loop's name, so neither an earlier start of the study nor another loop is read. An iteration that failed
leaves no file: its trials count as failed, as a missing ``Collected`` entry would.

Example:
    >>> folder = relay_folder("3f2a", pipeline_run="run-1", group="round-1-packs")  # doctest: +SKIP
    >>> put("results.json", folder, item='{"round": 0, "pack_index": 1}')  # doctest: +SKIP
    >>> gather(folder, "/tmp/round-1")  # doctest: +SKIP
    [PosixPath('/tmp/round-1/6b1e0c1d2a6f4e7b.json')]
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["relay_folder", "put", "gather", "gathered"]


def relay_folder(parent_run_id: str, *, pipeline_run: str, group: str) -> str:
    """``<study folder>/relay/<pipeline run>/<group>``: local or ``s3://``."""
    from proxyhpo.resume import study_folder

    return f"{study_folder(parent_run_id)}/relay/{pipeline_run}/{group}"


def put(output: str | os.PathLike[str], folder: str, *, item: str) -> str:
    """Copy one iteration's output file into ``folder``, named by its loop item (a retry overwrites its own); return where."""
    from proxyhpo import storage

    location = f"{folder}/{hashlib.sha256(item.encode('utf-8')).hexdigest()[:16]}.json"
    storage.write_bytes(location, Path(output).read_bytes())
    return location


def gather(folder: str, local_dir: str | os.PathLike[str]) -> list[Path]:
    """Every output relayed into ``folder``, copied below ``local_dir``, in name order (empty when none arrived)."""
    from proxyhpo import storage

    if storage.is_s3_url(folder):
        return sorted(storage.download_prefix(folder, local_dir))
    return sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []


def gathered(parent_run_id: str, *, pipeline_run: str, group: str) -> list[Path]:
    """:func:`gather` for a loop of this pipeline run, into a new temporary folder (kept: the caller reads the files)."""
    return gather(relay_folder(parent_run_id, pipeline_run=pipeline_run, group=group), tempfile.mkdtemp(prefix=f"relay-{group}-"))
