"""Medical Segmentation Decathlon folders: read ``dataset.json``, stage from S3, validate every case.

An MSD folder holds ``dataset.json`` (a ``training`` list of ``{"image", "label"}`` paths relative to
it, ``labels`` and ``modality``) beside ``imagesTr/`` and ``labelsTr/``. A data set is given as the
folder or its ``dataset.json``, on disk or as ``s3://bucket/prefix[/dataset.json]``; S3 data sets are
staged once under ``<PROXYHPO_HOME>/data/s3/`` and read from there.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import nibabel as nib
import numpy as np
from pydantic import ConfigDict

from proxyhpo import paths, storage
from proxyhpo.data import cache, checks
from proxyhpo.config import StrictModel, brief
from proxyhpo.errors import DataError
from proxyhpo.progress import track

__all__ = ["CaseEntry", "CaseVolumes", "MSDDataset", "load_dataset", "push_dataset", "read_case", "read_volumes", "validate_dataset", "case_id_of"]

AFFINE_TOLERANCE = 1e-3


class CaseEntry(StrictModel):
    """One training case: its id, the absolute local paths of its image and label, and both as written in dataset.json."""


    case_id: str
    image: str
    label: str
    image_ref: str = ""
    label_ref: str = ""

    def as_entry(self) -> dict[str, str]:
        """The entry as written in dataset.json (paths relative to it)."""
        return {"image": self.image_ref or self.image, "label": self.label_ref or self.label}

    def as_dict(self) -> dict[str, str]:
        """The MONAI data-list form, ``{"image": ..., "label": ...}``."""
        return {"image": self.image, "label": self.label}


class MSDDataset(StrictModel):
    """A data set as read from ``dataset.json``, with paths resolved to local files.

    Attributes:
        location: what the user gave (local path or ``s3://`` URL).
        root: the local folder holding ``dataset.json``.
        name: the data set's ``name``.
        modality: channel index -> modality name (``{"0": "CT"}``; MSD brain: ``{"0": "FLAIR", "1": "T1w",
            "2": "t1gd", "3": "T2w"}``), from ``modality`` or nnU-Net's ``channel_names``.
        labels: label value -> name (``{0: "background", 1: "spleen"}``).
        cases: the ``training`` entries in file order.
    """


    location: str
    root: str
    name: str
    modality: dict[str, str]
    labels: dict[int, str]
    cases: tuple[CaseEntry, ...]

    @property
    def dataset_json(self) -> Path:
        """The local ``dataset.json``."""
        return Path(self.root) / "dataset.json"

    @property
    def channels(self) -> int:
        """Image channels every case has (``len(modality)``); a 4-D image holds them on its last axis."""
        return len(self.modality)

    @property
    def is_ct(self) -> bool:
        """Whether the first channel is CT (intensities in HU)."""
        return self.modality.get("0", "").upper() == "CT"

    def sha256(self) -> str:
        """A fingerprint of ``dataset.json`` and every referenced file's bytes, in case order."""
        digest = hashlib.sha256(self.dataset_json.read_bytes())
        for case in self.cases:
            for file in (case.image, case.label):
                with open(file, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
        return digest.hexdigest()


class CaseVolumes(StrictModel):
    """A case read into memory: image (float32, spatial axes of the file, then channels when several are kept:
    ``(X, Y, Z)`` or ``(X, Y, Z, C)``), label (uint8, ``(X, Y, Z)``), voxel spacing in mm."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # numpy arrays; the rest as StrictModel

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]


def case_id_of(path: str | os.PathLike[str]) -> str:
    """The case id of an MSD file: its name without ``.nii.gz``/``.nii`` (``spleen_2``)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _stage_from_s3(url: str, cases: Collection[str] | None = None) -> Path:
    """Download an S3 data set (``dataset.json`` and every file it lists, or only ``cases``'s) and return the local dataset.json."""
    if not url.endswith(".json"):
        url = url.rstrip("/") + "/dataset.json"
    bucket, key = storage.split_s3_url(url)
    prefix = key.rsplit("/", 1)[0] if "/" in key else ""
    local_root = paths.data_dir() / "s3" / bucket / prefix
    local_json = local_root / "dataset.json"
    raw = storage.read_bytes(url)
    document = _parse_json(raw, url)
    for entry in _training_entries(document, url):
        if cases is not None and case_id_of(entry["image"]) not in cases:
            continue  # a pack stages only the cases it trains and validates on
        for field in ("image", "label"):
            relative = entry[field].removeprefix("./")
            if relative.startswith("/") or ".." in PurePosixPath(relative).parts:
                raise DataError(url, f"entry {entry[field]!r} points outside the data set's prefix", "list paths relative to dataset.json, without '..'")
            target = local_root / relative
            object_url = f"s3://{bucket}/{prefix + '/' if prefix else ''}{relative}"
            if not storage.matches(object_url, target):  # a staged file is reused only when it is the store's
                cache.take_or_download(object_url, target)  # the shared cache's copy when it has one
    storage.atomic_write_bytes(local_json, raw)
    return local_json


def push_dataset(location: str | os.PathLike[str], url: str, *, progress: bool = False) -> str:
    """Validate a local MSD data set and upload it under ``url`` (``s3://bucket/prefix``), ``dataset.json`` last.

    Only ``dataset.json`` and the files it lists are uploaded, at their paths relative to it, so a
    pipeline pod stages exactly the validated data set from the chart's MinIO. ``dataset.json`` goes up
    after every volume: a reader never finds a data set whose files are not all there yet.

    Returns:
        The data set's URL (``s3://bucket/prefix``), what a pipeline run's ``dataset`` field takes.

    Raises:
        DataError: for the first bad file, naming it and the fix (nothing is uploaded then).
        StorageError: when the bucket cannot be written.
    """
    if not storage.is_s3_url(url):
        raise DataError(url, "is not an s3://bucket/prefix URL", "give the data set's destination in the object store, e.g. s3://proxyhpo/datasets/spleen")
    dataset = load_dataset(location)
    validate_dataset(dataset, progress=progress)
    root = dataset.dataset_json.parent
    prefix = url.rstrip("/")
    files = [Path(path) for case in dataset.cases for path in (case.image, case.label)]
    for file in track(files, f"uploading {len(files)} files to {prefix}", enabled=progress):
        storage.upload_file(file, f"{prefix}/{file.relative_to(root).as_posix()}")
    storage.upload_file(dataset.dataset_json, f"{prefix}/dataset.json")
    return prefix


def _parse_json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(where, f"is not valid JSON ({brief(exc)})", "fix the syntax of dataset.json") from None
    except RecursionError:
        raise DataError(where, "is nested too deeply to be a dataset.json", "write dataset.json as an object of 'training', 'labels' and 'modality'") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise DataError(where, f"is not valid JSON ({brief(exc)})", "fix the syntax of dataset.json") from None
    if not isinstance(document, dict):
        raise DataError(where, "is not a JSON object", "dataset.json must be an object with 'training', 'labels' and 'modality'")
    return document


def _training_entries(document: dict[str, Any], where: str) -> list[dict[str, str]]:
    training = document.get("training")
    if not isinstance(training, list) or not training:
        raise DataError(where, "has no non-empty 'training' list", 'list the cases as "training": [{"image": ..., "label": ...}]')
    for index, entry in enumerate(training):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not isinstance(entry.get("label"), str):
            raise DataError(where, f"training[{index}] is {brief(entry)}", 'each training entry must be {"image": "<path>", "label": "<path>"}')
        for field in ("image", "label"):
            relative = entry[field]
            if "\x00" in relative or not relative.strip():
                raise DataError(where, f"training[{index}] {field} {brief(relative)} is not a file path (empty or holds a NUL byte)", "write the path relative to dataset.json")
            parts = PurePosixPath(relative.replace("\\", "/")).parts
            if relative.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
                raise DataError(
                    where, f"training[{index}] {field} {brief(relative)} leaves the data set's folder", "list paths relative to dataset.json, inside its folder, without '..'"
                )
    return training


def load_dataset(location: str | os.PathLike[str], *, cases: Collection[str] | None = None) -> MSDDataset:
    """Read an MSD data set from a folder or its ``dataset.json``, local or ``s3://``.

    Only ``dataset.json`` is checked here (structure, duplicate entries, that every file exists); use
    :func:`validate_dataset` to read every volume.

    Args:
        location: a folder holding ``dataset.json``, the file itself, or an ``s3://`` URL of either.
        cases: only these case ids (the others are neither staged nor returned): what one pack reads.

    Returns:
        The data set with every path resolved to an absolute local file.

    Raises:
        DataError: for a missing or malformed ``dataset.json``, duplicate entries or missing files.
    """
    given = os.fspath(location)
    if storage.is_s3_url(given):
        json_path = _stage_from_s3(given, cases)
    else:
        json_path = Path(given)
        if json_path.is_dir():
            json_path = json_path / "dataset.json"
        if not json_path.is_file():
            raise DataError(json_path, "does not exist", "point at an MSD folder that holds dataset.json, or at the file itself")
    json_path = json_path.absolute()
    try:
        raw = json_path.read_bytes()
    except OSError as exc:
        raise DataError(json_path, f"cannot be read ({exc.strerror or exc})", "check the file and its permissions") from None
    document = _parse_json(raw, str(json_path))
    entries = _training_entries(document, str(json_path))
    if cases is not None:
        entries = [entry for entry in entries if case_id_of(entry["image"]) in cases]

    labels_raw = document.get("labels")
    if not isinstance(labels_raw, dict) or not labels_raw:
        raise DataError(json_path, "has no 'labels' mapping", 'add "labels": {"0": "background", "1": "<organ>"}')
    try:
        labels = {int(value): str(name) for value, name in labels_raw.items()}
    except ValueError as exc:
        raise DataError(json_path, f"'labels' keys must be integers, got {list(labels_raw)}", 'write labels as {"0": "background", "1": ...}') from exc
    # MSD names the channels 'modality'; nnU-Net v2's dataset.json names them 'channel_names'
    modality = document.get("modality", document.get("channel_names"))
    if not isinstance(modality, dict) or not modality:
        raise DataError(json_path, "has no 'modality' mapping", 'add "modality": {"0": "CT"} (or "MRI", "T2", ...; one entry per image channel)')
    if sorted(str(key) for key in modality) != [str(i) for i in range(len(modality))]:
        raise DataError(
            json_path, f"'modality' keys must be the channel indices 0..{len(modality) - 1}, got {sorted(modality)}", 'number the channels from 0: {"0": "FLAIR", "1": "T1w", ...}'
        )

    root = json_path.parent
    cases: list[CaseEntry] = []
    seen: dict[str, int] = {}
    ids: dict[str, int] = {}
    for index, entry in enumerate(entries):
        resolved: dict[str, Path] = {}
        for kind in ("image", "label"):
            try:
                resolved[kind] = (root / entry[kind]).resolve()
            except (OSError, RuntimeError) as exc:  # a symlink loop
                raise DataError(
                    root / entry[kind], f"cannot be resolved ({brief(exc)}; training[{index}] {kind} in {json_path})", "replace the symbolic link loop with the file"
                ) from None
        image, label = resolved["image"], resolved["label"]
        for kind in ("image", "label"):
            checks.check_inside(root, root / entry[kind], resolved[kind])
        for kind, file in (("image", image), ("label", label)):
            if str(file) in seen:
                raise DataError(
                    json_path,
                    f"training[{index}] {kind} {entry[kind]} is listed twice (also in training[{seen[str(file)]}])",
                    "remove the duplicate entry",
                )
            seen[str(file)] = index
            if not file.is_file():
                raise DataError(file, f"is missing (training[{index}] {kind} in {json_path})", "restore the file or remove its entry from dataset.json")
        case_id = case_id_of(image)
        if case_id in ids:
            raise DataError(
                json_path,
                f"training[{index}] image {entry['image']} has case id '{case_id}', like training[{ids[case_id]}] (case ids are file names)",
                "rename one of the files so every case's file name is unique",
            )
        ids[case_id] = index
        cases.append(CaseEntry(case_id=case_id, image=str(image), label=str(label), image_ref=entry["image"], label_ref=entry["label"]))
    return MSDDataset(
        location=given,
        root=str(root),
        name=str(document.get("name", root.name)),
        modality={str(k): str(v) for k, v in modality.items()},
        labels=labels,
        cases=tuple(cases),
    )


def _load_nifti(path: str) -> nib.Nifti1Image:
    try:
        image = nib.load(path)
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors
        raise DataError(path, f"is not a readable NIfTI file ({type(exc).__name__}: {brief(exc)})", "replace it with a valid .nii/.nii.gz file") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(path, f"is a {type(image).__name__}, not a NIfTI file", "convert it to .nii.gz") from None
    return image


def _read_array(image: nib.Nifti1Image, path: str) -> np.ndarray:
    try:
        return image.get_fdata(dtype=np.float32)
    except Exception as exc:  # OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, ...
        raise DataError(path, f"is truncated or corrupt ({type(exc).__name__}: {brief(exc)})", "re-export or re-download the file") from None


def _check_shape(path: str, shape: tuple[int, ...], what: str, *, channels: int | None) -> None:
    """Refuse before reading voxels: a zero-length axis, fewer than 3 or more than 4 axes, an unexpected 4th axis."""
    if any(size == 0 for size in shape):
        raise DataError(path, f"has a zero-length axis (shape {shape})", f"give {'an' if what == 'image' else 'a'} {what} with at least one voxel along every axis")
    if len(shape) < 3:
        raise DataError(path, f"is {len(shape)}D (shape {shape}), expected a 3D {what}", "give a 3D volume, not a slice")
    if len(shape) > 4:
        raise DataError(path, f"is {len(shape)}D (shape {shape}), expected a 3D {what}", "give a 3D volume (or 4D with channels last)")
    if len(shape) == 4 and shape[3] != 1 and what == "label":
        raise DataError(path, f"is 4D (shape {shape}), expected a 3D label", "save the label as one 3D volume of integer values (one value per class)")
    found = shape[3] if len(shape) == 4 else 1
    if what == "image" and channels is not None and found != channels:
        # every case must have the channels dataset.json lists, so all cases agree with each other as well
        raise DataError(
            path,
            f"{f'is 4D with {found} channels' if len(shape) == 4 else 'is 3D (one channel)'} (shape {shape}), but dataset.json 'modality' lists {channels}",
            "give every case the channels dataset.json lists (4D, channels last), or fix 'modality'" if channels > 1 else "give 3D volumes, or list every channel in dataset.json 'modality'",
        )


def read_volumes(image_path: str, label_path: str, *, case_id: str = "", channel: int | None = 0, channels: int | None = None) -> CaseVolumes:
    """Read and check one image and its label (see :func:`read_case`); the trainer checks a plan's cases with it too.

    Args:
        image_path, label_path: the NIfTI files.
        case_id: the case's id (default: from the image's file name).
        channel: which channel of a 4D (multi-modal) image to keep; ``None`` keeps every channel (the
            image is then ``(X, Y, Z, C)`` when it has several).
        channels: how many channels the image must have (``len(modality)``); ``None`` accepts any.

    Raises:
        DataError: naming the file, for anything :func:`read_case` refuses.
    """
    image_nii = _load_nifti(image_path)
    label_nii = _load_nifti(label_path)
    _check_shape(image_path, tuple(image_nii.shape), "image", channels=channels)
    _check_shape(label_path, tuple(label_nii.shape), "label", channels=None)
    for nii, path in ((image_nii, image_path), (label_nii, label_path)):
        checks.check_header(nii, path)  # before decompressing: voxel count, complex voxels, affine
    if channel is not None and len(image_nii.shape) == 4 and not 0 <= channel < image_nii.shape[3] and image_nii.shape[3] > 1:
        raise DataError(image_path, f"has {image_nii.shape[3]} channels, channel {channel} was asked for", "choose a channel the image has")
    image = _read_array(image_nii, image_path)
    if image.ndim == 4 and (channel is not None or image.shape[3] == 1):
        image = image[..., channel if channel is not None and image.shape[3] > 1 else 0]
    label_float = _read_array(label_nii, label_path)
    if label_float.ndim == 4:
        label_float = label_float[..., 0]
    if label_float.shape != image.shape[:3]:
        raise DataError(
            label_path,
            f"has shape {label_float.shape} but its image {Path(image_path).name} has {image.shape[:3]}",
            "resample or re-export the label on the image's grid",
        )
    if not np.allclose(image_nii.affine, label_nii.affine, atol=AFFINE_TOLERANCE):
        raise DataError(label_path, "has an affine different from its image's", "save the label with the image's affine (same spacing, origin and orientation)")
    if not np.isfinite(image).all():
        raise DataError(image_path, "contains NaN or infinite voxels", "fix or re-export the image")
    checks.check_not_constant(image, image_path)
    if not np.isfinite(label_float).all() or (label_float < 0).any() or not np.array_equal(label_float, np.round(label_float)):
        raise DataError(
            label_path, "contains non-integer or negative values", "labels must hold the integer values listed in dataset.json 'labels'"
        )
    if label_float.max() > 255:
        raise DataError(label_path, f"holds label value {label_float.max():g}, above 255", "segmentation labels must be small integers listed in dataset.json 'labels'")
    label = label_float.astype(np.uint8)
    if not label.any():
        raise DataError(label_path, "is empty (no foreground voxel)", "annotate the case or remove it from dataset.json")
    spacing = tuple(float(s) for s in image_nii.header.get_zooms()[:3])
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise DataError(image_path, f"has voxel spacing {spacing}", "save the image with positive voxel sizes in its header")
    return CaseVolumes(case_id=case_id or case_id_of(image_path), image=image, label=label, spacing=spacing)  # type: ignore[arg-type]


def read_case(case: CaseEntry, *, channel: int | None = 0, channels: int | None = None) -> CaseVolumes:
    """Read one case's image and label into memory, checked against each other.

    Args:
        case: the case to read.
        channel: which channel of a 4D (multi-modal) image to keep; ``None`` keeps them all.
        channels: how many channels the image must have (the data set's ``len(modality)``); ``None`` accepts any.

    Returns:
        The image as float32 (``(X, Y, Z)``, or ``(X, Y, Z, C)`` with every channel kept) and the label
        as uint8 of the image's spatial shape, and the voxel spacing.

    Raises:
        DataError: for an unreadable or truncated file, a 2D or 5D volume, a zero-length axis, another
            channel count than ``channels``, a 4D label, a shape or affine mismatch, NaN or infinite
            voxels, an empty label, or a label with non-integer or negative values.
    """
    return read_volumes(case.image, case.label, case_id=case.case_id, channel=channel, channels=channels)


def validate_dataset(
    dataset: MSDDataset,
    *,
    on_case: Callable[[CaseVolumes], None] | None = None,
    progress: bool = False,
) -> None:
    """Read every case and check it: readable, the channels ``modality`` lists, a 3D label of the image's
    grid (shape, affine), non-empty and holding only values that ``labels`` declares.

    Args:
        dataset: the data set to check.
        on_case: called with each case once it passed, so callers can use the volumes without reading twice
            (a multi-channel image comes with every channel, ``(X, Y, Z, C)``).
        progress: show a progress bar.

    Raises:
        DataError: naming the first file that fails and how to fix it.
    """
    allowed = set(dataset.labels)
    channels = dataset.channels
    for volumes, case in zip(_iterate_cases(dataset.cases, progress, "validating", channels), dataset.cases):
        unexpected = sorted(set(np.unique(volumes.label).tolist()) - allowed)
        if unexpected:
            raise DataError(
                case.label,
                f"holds label values {unexpected} not declared in dataset.json 'labels' {sorted(allowed)}",
                "declare them in 'labels' of dataset.json, or fix the label",
            )
        if on_case is not None:
            on_case(volumes)


def _iterate_cases(cases: Iterable[CaseEntry], progress: bool, what: str, channels: int | None = None) -> Iterator[CaseVolumes]:
    cases = list(cases)
    keep = None if channels is not None and channels > 1 else 0  # a multi-channel data set is read whole
    for case in track(cases, f"{what} {len(cases)} cases", enabled=progress):
        yield read_case(case, channel=keep, channels=channels)
