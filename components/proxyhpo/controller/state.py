"""The HPO controller's persisted state: one file per study, written atomically.

The controller's whole state is a single zip file so that round ``r + 1`` continues exactly where
round ``r`` ended, in another process or on another pod:

- ``controller.json``: a :class:`ControllerState` (``schema_version``, config, search space, round
  counter, baseline, pending proposals, the history of proposals with their rewards, the update
  statistics). Plain JSON, so reports read it without torch (:func:`read_history`, or ``unzip -p``).
- ``tensors.pt``: ``torch.save`` of the policy's ``state_dict``, the Adam optimiser's ``state_dict`` and
  the state of the controller's own ``torch.Generator``; loaded with ``weights_only=True``.

The zip entries carry a fixed timestamp, so equal states give byte-identical files. The NAS
controller's file has the same layout with its own JSON entry: both are written and read here, each
kind described by a :class:`StateLayout`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from proxyhpo.config.base import brief, parse_config
from proxyhpo.config.controller import SCHEMA_VERSION, ControllerState, HistoryRecord
from proxyhpo.errors import InputError, StorageError

__all__ = ["StateLayout", "HPO_STATE", "write_state", "write_archive", "read_archive", "read_state", "read_state_json", "read_history"]

_JSON_ENTRY = "controller.json"
_TENSORS_ENTRY = "tensors.pt"
_TENSOR_KEYS = ("policy", "optimizer", "generator")
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIX_CORRUPT = "the file is corrupt; rerun the round that wrote it"
_FIX_NOT_STATE = "pass a file written by ReinforceController.save"


@dataclass(frozen=True)
class StateLayout:
    """One kind of controller state file: its JSON entry and model, and how its errors read.

    Both controllers write a zip of a JSON entry and ``tensors.pt`` (:func:`write_archive`); this says
    which JSON entry, which schema version, and the fixes their one-line errors give.

    Attributes:
        what: the file's name in errors (``controller state``).
        json_entry: the zip entry of the JSON part.
        model: the pydantic model of the JSON part.
        schema_version: the version this proxyhpo reads.
        fix_missing: the fix when the file does not exist.
        fix_not_state: the fix when the file is no such state.
        fix_corrupt: the fix when an entry cannot be read.
        fix_version: the fix for another schema version.
        foreign: JSON entries of other kinds of state file, each with (what that file is, the fix), so a
            file of the wrong kind is named as such rather than as corrupt.
    """

    what: str
    json_entry: str
    model: type[BaseModel]
    schema_version: int
    fix_missing: str
    fix_not_state: str
    fix_corrupt: str
    fix_version: str
    foreign: Mapping[str, tuple[str, str]] = field(default_factory=dict)


#: The HPO controller's state file (:class:`~proxyhpo.controller.reinforce.ReinforceController`).
HPO_STATE = StateLayout(
    what="controller state",
    json_entry=_JSON_ENTRY,
    model=ControllerState,
    schema_version=SCHEMA_VERSION,
    fix_missing="pass the state written by the previous round",
    fix_not_state=_FIX_NOT_STATE,
    fix_corrupt=_FIX_CORRUPT,
    fix_version="use the proxyhpo version that wrote it, or start a new study",
)


def write_state(path: str | os.PathLike[str], state: BaseModel, tensors: dict[str, Any], layout: StateLayout = HPO_STATE) -> Path:
    """Write a controller state to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        path: destination file; its folder is created when missing.
        state: the JSON part (a ``layout.model``).
        tensors: ``{"policy": state_dict, "optimizer": state_dict, "generator": ByteTensor}``.
        layout: the kind of state file (the NAS controller passes its own).

    Returns:
        the path written.

    Raises:
        ValueError: when ``tensors`` lacks one of its keys.
        StorageError: when the file cannot be written.
    """
    missing = [k for k in _TENSOR_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"tensors must have the keys {list(_TENSOR_KEYS)}, missing {missing}")
    import torch

    buffer = io.BytesIO()
    torch.save({k: tensors[k] for k in _TENSOR_KEYS}, buffer)
    return write_archive(path, {layout.json_entry: state.model_dump_json(indent=1).encode("utf-8"), _TENSORS_ENTRY: buffer.getvalue()})


def write_archive(path: str | os.PathLike[str], entries: dict[str, bytes]) -> Path:
    """Write ``entries`` as one zip file at ``path``, atomically and synced; fixed timestamps make equal states equal bytes.

    The layout of both controllers' state files (:data:`HPO_STATE` here, the NAS controller's
    :class:`StateLayout` in :mod:`proxyhpo.controller.enas`): a JSON record beside a ``torch.save`` payload.

    Raises:
        StorageError: when the file cannot be written.
    """
    from proxyhpo.storage import atomic_output

    target = Path(path)
    try:
        with atomic_output(target) as tmp, open(tmp, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for entry, payload in entries.items():
                    info = zipfile.ZipInfo(entry, date_time=_FIXED_ZIP_TIME)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, payload)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        problem = f"cannot be written ({exc.strerror or brief(exc)})"
        raise StorageError(target, problem, "check that the folder is writable and has space") from exc
    return target


def _open(path: Path, layout: StateLayout) -> zipfile.ZipFile:
    if not path.is_file():
        raise StorageError(path, f"{layout.what} file does not exist", layout.fix_missing)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(path, f"is not a {layout.what} file (not a zip archive: {brief(exc)})", layout.fix_not_state) from exc
    names = set(archive.namelist())
    for entry in (layout.json_entry, _TENSORS_ENTRY):
        if entry not in names:
            archive.close()
            for other, (other_what, fix) in layout.foreign.items():
                if other in names:
                    raise InputError(path, f"is {other_what} (entry '{other}'), not a {layout.what}", fix)
            raise InputError(path, f"is not a {layout.what} file (entry '{entry}' is missing)", layout.fix_not_state)
    return archive


def _parse_json(path: Path, archive: zipfile.ZipFile, layout: StateLayout) -> Any:
    entry = layout.json_entry
    try:
        document = json.loads(archive.read(entry).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(path, f"'{entry}' cannot be read ({brief(exc)})", layout.fix_corrupt) from exc
    if not isinstance(document, dict):
        raise InputError(path, f"'{entry}' holds a {type(document).__name__}, not a mapping", layout.fix_corrupt)
    version = document.get("schema_version")
    if version != layout.schema_version:
        problem = f"has schema_version {version!r}, this proxyhpo reads {layout.schema_version}"
        raise InputError(path, problem, layout.fix_version)
    return parse_config(layout.model, document, f"{path}:{entry}", fix=layout.fix_corrupt)


def read_archive(path: str | os.PathLike[str], layout: StateLayout) -> tuple[Any, dict[str, Any]]:
    """Read a state file of kind ``layout`` written by :func:`write_archive`.

    Returns:
        the JSON part (a ``layout.model``) and the tensors (``policy``, ``optimizer``, ``generator``).

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not such a state, is corrupt, or has another ``schema_version``.
    """
    import torch

    source = Path(path)
    with _open(source, layout) as archive:
        state = _parse_json(source, archive, layout)
        try:
            tensors = torch.load(io.BytesIO(archive.read(_TENSORS_ENTRY)), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types (pickle, RuntimeError, zip errors) for corrupt bytes
            # torch's own text for garbage bytes advises weights_only=False, which would be wrong here
            problem = f"'{_TENSORS_ENTRY}' cannot be loaded ({type(exc).__name__})"
            raise InputError(source, problem, layout.fix_corrupt) from exc
    if not isinstance(tensors, dict) or any(k not in tensors for k in _TENSOR_KEYS):
        raise InputError(source, f"'{_TENSORS_ENTRY}' must hold the keys {list(_TENSOR_KEYS)}", layout.fix_corrupt)
    return state, tensors


def read_state(path: str | os.PathLike[str]) -> tuple[ControllerState, dict[str, Any]]:
    """Read a state written by :func:`write_state`.

    Returns:
        the JSON part and the tensors (``policy``, ``optimizer``, ``generator``).

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a controller state, is corrupt, or has another ``schema_version``.
    """
    return read_archive(path, HPO_STATE)


def read_state_json(path: str | os.PathLike[str]) -> ControllerState:
    """The JSON part of a state file (settings, proposals, rewards, updates), read without torch.

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a valid controller state.
    """
    source = Path(path)
    with _open(source, HPO_STATE) as archive:
        return _parse_json(source, archive, HPO_STATE)


def read_history(path: str | os.PathLike[str]) -> list[HistoryRecord]:
    """The finished proposals and their rewards from a state file, read from its JSON part only.

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a valid controller state.
    """
    return list(read_state_json(path).history)
