"""Records of the HPO controller and its persisted state: one file per study, written atomically.

The controller's whole state is a single zip file so that round ``r + 1`` continues exactly where
round ``r`` ended, in another process or on another pod:

- ``controller.json``: a :class:`ControllerState` (``schema_version``, config, search space, round
  counter, baseline, pending proposals, the history of proposals with their rewards, the update
  statistics). Plain JSON, so reports read it without torch (:func:`read_history`, or ``unzip -p``).
- ``tensors.pt``: ``torch.save`` of the policy's ``state_dict``, the Adam optimiser's ``state_dict`` and
  the state of the controller's own ``torch.Generator``; loaded with ``weights_only=True``.

The zip entries carry a fixed timestamp, so equal states give byte-identical files.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from proxyhpo.controller.search_space import Choice, SearchSpace
from proxyhpo.errors import InputError, StorageError

__all__ = [
    "SCHEMA_VERSION",
    "ControllerConfig",
    "Proposal",
    "HistoryRecord",
    "UpdateStats",
    "ControllerState",
    "write_state",
    "read_state",
    "read_history",
]

#: Version of the persisted layout; bumped whenever a reader of the old layout would misread the new one.
SCHEMA_VERSION: Literal[1] = 1

_JSON_ENTRY = "controller.json"
_TENSORS_ENTRY = "tensors.pt"
_TENSOR_KEYS = ("policy", "optimizer", "generator")
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIX_CORRUPT = "the file is corrupt; rerun the round that wrote it"
_FIX_NOT_STATE = "pass a file written by ReinforceController.save"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControllerConfig(_Record):
    """Settings of the REINFORCE controller (the ``controller`` section of a study config).

    Attributes:
        seed: seeds the policy's initial weights and the sampling generator.
        lr: learning rate of the Adam optimiser on the policy.
        entropy_weight: weight of the entropy bonus added to the REINFORCE objective (keeps exploring).
        baseline_decay: decay of the exponential moving-average reward baseline, in [0, 1).
        hidden_size: width of the LSTM cell and of the decision embeddings.
        max_grad_norm: the policy gradient is clipped to this norm; ``None`` disables clipping.
    """

    seed: int = Field(0, ge=0)
    lr: float = Field(0.02, gt=0.0)
    entropy_weight: float = Field(0.01, ge=0.0)
    baseline_decay: float = Field(0.8, ge=0.0, lt=1.0)
    hidden_size: int = Field(64, ge=1)
    max_grad_norm: float | None = Field(5.0, gt=0.0)


class Proposal(_Record):
    """One set of hyper-parameters proposed by the controller, to be trained as one trial.

    Attributes:
        proposal_id: unique within a study, increasing in the order of proposal.
        round: the round the proposal belongs to (0-based).
        values: ``name -> value`` for every hyper-parameter of the search space.
        log_prob: log-probability of the proposal under the policy that sampled it (categorical
            choices plus the densities of the continuous values on the unit interval).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    proposal_id: int = Field(ge=0)
    round: int = Field(ge=0)
    values: dict[str, Choice]
    log_prob: float


class HistoryRecord(_Record):
    """A finished proposal: its reward, or ``failed`` when the trial produced none.

    Attributes:
        proposal: the proposal.
        reward: validation Dice of the trial; ``None`` when it failed.
        failed: the trial failed (diverged, crashed); such proposals get no gradient.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    proposal: Proposal
    reward: float | None
    failed: bool

    @field_validator("reward")
    @classmethod
    def _finite(cls, reward: float | None) -> float | None:
        if reward is not None and not math.isfinite(reward):
            raise ValueError(f"reward must be finite or None, got {reward}")
        return reward


class UpdateStats(_Record):
    """What one REINFORCE update did.

    Attributes:
        round: the round that was updated.
        n_proposals: proposals given to the update.
        n_failed: of which failed (no reward); they are left out of the gradient.
        stepped: whether the optimiser took a step (False when every proposal failed).
        mean_reward: mean reward of the successful proposals (``None`` when all failed).
        baseline_before: the moving-average baseline the advantages were computed against.
        baseline: the baseline after this round's rewards were folded in.
        policy_loss: ``-mean(advantage * log_prob)``.
        entropy: mean over proposals of the policy's entropy, summed over the decisions.
        entropy_bonus: ``entropy_weight * entropy``, subtracted from the loss.
        loss: ``policy_loss - entropy_bonus``, the minimised objective.
        grad_norm: norm of the policy gradient before clipping.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    round: int
    n_proposals: int
    n_failed: int
    stepped: bool
    mean_reward: float | None = None
    baseline_before: float | None = None
    baseline: float | None = None
    policy_loss: float | None = None
    entropy: float | None = None
    entropy_bonus: float | None = None
    loss: float | None = None
    grad_norm: float | None = None


class ControllerState(_Record):
    """The JSON part of the persisted controller (everything but tensors).

    Attributes:
        config: the controller's settings.
        search_space: the hyper-parameters searched, in emission order.
        round: the round the next proposals belong to (= number of finished updates).
        next_proposal_id: id given to the next proposal.
        baseline: the moving-average reward baseline (``None`` before the first successful round).
        pending: proposals of the current round still waiting for their rewards.
        history: every finished proposal with its reward, in order of proposal id.
        updates: statistics of every update, one per round.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    config: ControllerConfig
    search_space: SearchSpace
    round: int = Field(0, ge=0)
    next_proposal_id: int = Field(0, ge=0)
    baseline: float | None = None
    pending: tuple[Proposal, ...] = ()
    history: tuple[HistoryRecord, ...] = ()
    updates: tuple[UpdateStats, ...] = ()


def write_state(path: str | os.PathLike[str], state: ControllerState, tensors: dict[str, Any]) -> Path:
    """Write the controller state to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        path: destination file; its folder is created when missing.
        state: the JSON part.
        tensors: ``{"policy": state_dict, "optimizer": state_dict, "generator": ByteTensor}``.

    Returns:
        the path written.

    Raises:
        ValueError: when ``tensors`` lacks one of its keys.
        StorageError: when the file cannot be written.
    """
    missing = [k for k in _TENSOR_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"tensors must have the keys {list(_TENSOR_KEYS)}, missing {missing}")
    target = Path(path)
    buffer = io.BytesIO()
    torch.save({k: tensors[k] for k in _TENSOR_KEYS}, buffer)
    document = state.model_dump_json(indent=1).encode("utf-8")
    tmp_name: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for entry, payload in ((_JSON_ENTRY, document), (_TENSORS_ENTRY, buffer.getvalue())):
                    info = zipfile.ZipInfo(entry, date_time=_FIXED_ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        problem = f"cannot be written ({exc.strerror or brief_error(exc)})"
        raise StorageError(target, problem, "check that the folder is writable and has space") from exc
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def brief_error(exc: BaseException, limit: int = 240) -> str:
    """``exc`` as one short line: error messages end up on the CLI's single stderr line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise StorageError(path, "controller state file does not exist", "pass the state written by the previous round")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(path, f"is not a controller state file (not a zip archive: {brief_error(exc)})", _FIX_NOT_STATE) from exc
    names = set(archive.namelist())
    for entry in (_JSON_ENTRY, _TENSORS_ENTRY):
        if entry not in names:
            archive.close()
            raise InputError(path, f"is not a controller state file (entry '{entry}' is missing)", _FIX_NOT_STATE)
    return archive


def _parse_json(path: Path, archive: zipfile.ZipFile) -> ControllerState:
    try:
        document = json.loads(archive.read(_JSON_ENTRY).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(path, f"'{_JSON_ENTRY}' cannot be read ({brief_error(exc)})", _FIX_CORRUPT) from exc
    if not isinstance(document, dict):
        raise InputError(path, f"'{_JSON_ENTRY}' holds a {type(document).__name__}, not a mapping", _FIX_CORRUPT)
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        problem = f"has schema_version {version!r}, this proxyhpo reads {SCHEMA_VERSION}"
        raise InputError(path, problem, "use the proxyhpo version that wrote it, or start a new study")
    try:
        return ControllerState.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        problem = f"'{_JSON_ENTRY}' does not validate at '{where}': {first['msg']}"
        raise InputError(path, problem, _FIX_CORRUPT) from exc


def read_state(path: str | os.PathLike[str]) -> tuple[ControllerState, dict[str, Any]]:
    """Read a state written by :func:`write_state`.

    Returns:
        the JSON part and the tensors (``policy``, ``optimizer``, ``generator``).

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a controller state, is corrupt, or has another ``schema_version``.
    """
    source = Path(path)
    with _open(source) as archive:
        state = _parse_json(source, archive)
        try:
            tensors = torch.load(io.BytesIO(archive.read(_TENSORS_ENTRY)), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types (pickle, RuntimeError, zip errors) for corrupt bytes
            # torch's own text for garbage bytes advises weights_only=False, which would be wrong here
            problem = f"'{_TENSORS_ENTRY}' cannot be loaded ({type(exc).__name__})"
            raise InputError(source, problem, _FIX_CORRUPT) from exc
    if not isinstance(tensors, dict) or any(k not in tensors for k in _TENSOR_KEYS):
        raise InputError(source, f"'{_TENSORS_ENTRY}' must hold the keys {list(_TENSOR_KEYS)}", _FIX_CORRUPT)
    return state, tensors


def read_history(path: str | os.PathLike[str]) -> list[HistoryRecord]:
    """The finished proposals and their rewards from a state file, read from its JSON part only.

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a valid controller state.
    """
    source = Path(path)
    with _open(source) as archive:
        return list(_parse_json(source, archive).history)
