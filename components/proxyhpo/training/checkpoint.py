"""Checkpoints of a pack in training: every model, optimiser, data stream and trial's progress, to resume exactly.

A long trial (the final full U-Net trains for hundreds of epochs) must survive a preempted pod: the pack
saves a checkpoint every ``plan.checkpoint_every`` epochs to ``plan.checkpoint`` (a local file or an
``s3://`` object in the chart's MinIO, written atomically), and a retried task resumes from it. The
random streams are part of the checkpoint, so the resumed trial draws the same batches, crops and
shifts as the one that was killed.

A checkpoint is one torch file holding the pack's :class:`~proxyhpo.config.PackCheckpoint` record (as
its JSON text: where the pack stood, each trial's progress) beside the tensors (weights, optimiser
states, best weights, random streams). Everything is stored as tensors and plain Python values, so it
loads with ``weights_only=True``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable
from pydantic import ValidationError

from proxyhpo import storage
from proxyhpo.config import PackCheckpoint
from proxyhpo.errors import StorageError

__all__ = ["SavedPack", "stream_state", "restore_stream", "save_checkpoint", "load_checkpoint"]

log = logging.getLogger(__name__)

#: State dictionary of one network: parameter name -> tensor.
Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SavedPack:
    """A pack's checkpoint: its record and its tensors, one entry per admitted trial (in the record's order).

    Attributes:
        record: where the pack stood (:class:`~proxyhpo.config.PackCheckpoint`).
        models: each admitted trial's current weights.
        optimizers: each optimiser's ``state_dict``, in the pack's optimiser order.
        streams: each admitted trial's random stream (:func:`stream_state`).
        best_weights: each admitted trial's best-validation weights (None before its first validation, or
            once it stopped: a stopped trial's weights are never used).
    """

    record: PackCheckpoint
    models: list[Weights]
    optimizers: list[dict[str, Any]]
    streams: list[dict[str, Any]]
    best_weights: list[Weights | None]

    def __post_init__(self) -> None:
        admitted = self.record.admitted
        counts = {"models": len(self.models), "streams": len(self.streams), "best_weights": len(self.best_weights)}
        wrong = {name: n for name, n in counts.items() if n != admitted}
        if wrong:
            raise ValueError(f"a checkpoint of {admitted} admitted trials needs one entry each, got {wrong}")


def _randomizable(transform: Any) -> list[Randomizable]:
    """Every random transform reachable from ``transform``, in a fixed order.

    Dictionary transforms hold array transforms with random states of their own (a crop's sampler), so
    the transform's attributes are walked, not only a ``Compose``'s list.
    """
    found: list[Randomizable] = []
    seen: set[int] = set()

    def walk(item: Any) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, Randomizable):
            found.append(item)
        children = vars(item).values() if hasattr(item, "__dict__") else ()
        for child in children:
            for value in child if isinstance(child, (list, tuple)) else (child,):
                if hasattr(value, "__dict__") and type(value).__module__.startswith("monai."):
                    walk(value)

    walk(transform)
    return found


def stream_state(stream: Any) -> dict[str, Any]:
    """The random state of a :class:`~proxyhpo.training.data.PatchStream`: its case order and its transforms'."""
    transforms = []
    for transform in _randomizable(stream.transform):
        name, keys, position, has_gauss, cached = transform.R.get_state()
        transforms.append({"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(position), "has_gauss": int(has_gauss), "cached": float(cached)})
    return {"order": stream.rng.bit_generator.state, "transforms": transforms}


def restore_stream(stream: Any, state: dict[str, Any]) -> None:
    """Put a stream back into ``state`` (from :func:`stream_state` of a stream built alike)."""
    stream.rng.bit_generator.state = state["order"]
    transforms = _randomizable(stream.transform)
    if len(transforms) != len(state["transforms"]):
        raise ValueError(f"the stream has {len(transforms)} random transforms, the checkpoint {len(state['transforms'])}")
    for transform, saved in zip(transforms, state["transforms"], strict=True):
        keys = saved["keys"].numpy().astype(np.uint32)
        transform.R.set_state(("MT19937", keys, saved["pos"], saved["has_gauss"], saved["cached"]))


def save_checkpoint(location: str, saved: SavedPack) -> None:
    """Write a checkpoint to a local path or an ``s3://`` URL, atomically.

    Raises:
        StorageError: when it cannot be written.
    """
    buffer = io.BytesIO()
    payload = {
        "record": saved.record.model_dump_json(),
        "models": saved.models,
        "optimizers": saved.optimizers,
        "streams": saved.streams,
        "best_weights": saved.best_weights,
    }
    torch.save(payload, buffer)
    storage.write_bytes(location, buffer.getvalue())


def load_checkpoint(location: str, trial_ids: Sequence[str]) -> SavedPack | None:
    """The checkpoint at ``location`` when there is one for exactly these trials, else None.

    A checkpoint of other trials, of another layout (an older version's, whose record is missing or of
    another ``schema_version``), or unreadable is not resumed from: training starts over (and the reason is
    logged), which is always correct, only slower.

    Example:
        >>> load_checkpoint("s3://proxyhpo/ckpt/r0-p0.pt", ["r0-t000", "r0-t001"]).record.epoch  # doctest: +SKIP
        20
    """
    try:
        raw = storage.read_bytes(location)
    except StorageError:
        return None
    try:
        checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises many types
        log.warning("checkpoint %s cannot be read (%s); training starts over", location, type(exc).__name__)
        return None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("record"), str):
        version = checkpoint.get("version") if isinstance(checkpoint, dict) else None
        log.warning("checkpoint %s has another layout (version %s); training starts over", location, version)
        return None
    try:
        record = PackCheckpoint.model_validate_json(checkpoint["record"])
        saved = SavedPack(
            record=record,
            models=list(checkpoint["models"]),
            optimizers=list(checkpoint["optimizers"]),
            streams=list(checkpoint["streams"]),
            best_weights=list(checkpoint["best_weights"]),
        )
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        log.warning("checkpoint %s has another layout or version (%s); training starts over", location, " ".join(str(exc).split())[:200])
        return None
    if record.trial_ids != list(trial_ids):
        log.warning("checkpoint %s belongs to other trials; training starts over", location)
        return None
    return saved
