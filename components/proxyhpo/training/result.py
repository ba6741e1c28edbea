"""The record of a finished trial, and atomic JSON files of them.

A :class:`TrialResult` is frozen: a trial ends ``COMPLETE`` or ``FAILED`` (diverged, out of memory)
with the reason, never as an exception that kills a pack or a study.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxyhpo.errors import StorageError
from proxyhpo.storage import atomic_write_text
from proxyhpo.training.plan import HyperParameters

__all__ = ["TrialState", "TrialResult", "TrialResults", "write_results", "read_results"]


class TrialState(str, enum.Enum):
    """How a trial ended."""

    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


class TrialResult(BaseModel):
    """What one trial produced and what it cost.

    Attributes:
        trial_id, hyper, network, data_label, seed, round, tags: copied from the :class:`TrialSpec`
            (``network`` is the network's name, e.g. ``full`` or ``proxy-L3``).
        state, fail_reason: ``COMPLETE``, or ``FAILED`` with a one-line reason.
        epochs_run: epochs completed (fewer than planned when the trial failed).
        val_epochs, val_dice: the epochs at which validation ran (1-based) and the mean validation
            Dice (foreground only) at each.
        final_val_dice: Dice at the last validation; ``best_val_dice`` / ``best_epoch`` the best one.
        test_dice: mean Dice on the external test set with the best-validation weights, if any.
        wall_seconds: wall time from the start of the pack to the end of this trial.
        gpu_hours: GPU wall time times this trial's share of the GPU (1/K while in a pack of K); 0 on a
            CPU, where ``cpu_hours`` holds the same share of CPU wall time instead.
        peak_gpu_mem_bytes: peak GPU memory allocated by the pack this trial ran in (0 on a CPU).
        data_wait_fraction: fraction of training step time spent producing the batch.
        pack_size: models in the pack when it started; ``device``: where it ran.
        model_path: where the best weights were saved, if asked.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    trial_id: str
    state: TrialState
    fail_reason: str | None = None
    hyper: HyperParameters
    network: str
    data_label: str = "full"
    seed: int = 0
    round: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    epochs_run: int = 0
    val_epochs: list[int] = Field(default_factory=list)
    val_dice: list[float] = Field(default_factory=list)
    final_val_dice: float | None = None
    best_val_dice: float | None = None
    best_epoch: int | None = None
    test_dice: float | None = None
    wall_seconds: float = 0.0
    gpu_hours: float = 0.0
    cpu_hours: float = 0.0
    peak_gpu_mem_bytes: int = 0
    data_wait_fraction: float = 0.0
    pack_size: int = 1
    device: str = "cpu"
    model_path: str | None = None


class TrialResults(BaseModel):
    """The result file of a plan: every trial's result, in plan order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    results: list[TrialResult]


def write_results(path: str | Path, results: list[TrialResult]) -> Path:
    """Write results as one JSON file (``{"schema_version": 1, "results": [...]}``) atomically.

    Returns:
        the path written.
    """
    atomic_write_text(path, TrialResults(results=list(results)).model_dump_json(indent=2) + "\n")
    return Path(path)


def read_results(path: str | Path) -> list[TrialResult]:
    """Read a results file written by :func:`write_results`.

    Raises:
        StorageError: when the file is missing, not JSON, or not a results file.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        return list(TrialResults.model_validate(raw).results)
    except FileNotFoundError:
        raise StorageError(path, "file does not exist", "run the trial plan first") from None
    except (json.JSONDecodeError, ValidationError) as e:
        first = str(e).splitlines()[0]
        raise StorageError(path, f"is not a trial results file ({first})", "regenerate it with proxyhpo train") from None
