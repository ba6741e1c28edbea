"""The HPO controller's persisted state: one file per study, written atomically.

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
import os
import zipfile
from pathlib import Path
from typing import Any

from proxyhpo.config.base import brief, parse_config
from proxyhpo.config.controller import SCHEMA_VERSION, ControllerState, HistoryRecord
from proxyhpo.errors import InputError, StorageError

__all__ = ["write_state", "write_archive", "read_state", "read_state_json", "read_history"]

_JSON_ENTRY = "controller.json"
_TENSORS_ENTRY = "tensors.pt"
_TENSOR_KEYS = ("policy", "optimizer", "generator")
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIX_CORRUPT = "the file is corrupt; rerun the round that wrote it"
_FIX_NOT_STATE = "pass a file written by ReinforceController.save"


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
    import torch

    buffer = io.BytesIO()
    torch.save({k: tensors[k] for k in _TENSOR_KEYS}, buffer)
    return write_archive(path, {_JSON_ENTRY: state.model_dump_json(indent=1).encode("utf-8"), _TENSORS_ENTRY: buffer.getvalue()})


def write_archive(path: str | os.PathLike[str], entries: dict[str, bytes]) -> Path:
    """Write ``entries`` as one zip file at ``path``, atomically and synced; fixed timestamps make equal states equal bytes.

    The layout of both controllers' state files (the HPO controller's here, the NAS controller's in
    :mod:`proxyhpo.controller.enas`): a JSON record beside a ``torch.save`` payload.

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


def _open(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise StorageError(path, "controller state file does not exist", "pass the state written by the previous round")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(path, f"is not a controller state file (not a zip archive: {brief(exc)})", _FIX_NOT_STATE) from exc
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
        raise InputError(path, f"'{_JSON_ENTRY}' cannot be read ({brief(exc)})", _FIX_CORRUPT) from exc
    if not isinstance(document, dict):
        raise InputError(path, f"'{_JSON_ENTRY}' holds a {type(document).__name__}, not a mapping", _FIX_CORRUPT)
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        problem = f"has schema_version {version!r}, this proxyhpo reads {SCHEMA_VERSION}"
        raise InputError(path, problem, "use the proxyhpo version that wrote it, or start a new study")
    return parse_config(ControllerState, document, f"{path}:{_JSON_ENTRY}", fix=_FIX_CORRUPT)


def read_state(path: str | os.PathLike[str]) -> tuple[ControllerState, dict[str, Any]]:
    """Read a state written by :func:`write_state`.

    Returns:
        the JSON part and the tensors (``policy``, ``optimizer``, ``generator``).

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a controller state, is corrupt, or has another ``schema_version``.
    """
    import torch

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


def read_state_json(path: str | os.PathLike[str]) -> ControllerState:
    """The JSON part of a state file (settings, proposals, rewards, updates), read without torch.

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a valid controller state.
    """
    source = Path(path)
    with _open(source) as archive:
        return _parse_json(source, archive)


def read_history(path: str | os.PathLike[str]) -> list[HistoryRecord]:
    """The finished proposals and their rewards from a state file, read from its JSON part only.

    Raises:
        StorageError: when the file does not exist.
        InputError: when it is not a valid controller state.
    """
    return list(read_state_json(path).history)
