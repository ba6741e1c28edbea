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
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import nibabel as nib
import numpy as np
from pydantic import ConfigDict

from proxyhpo import paths, storage
from proxyhpo.config import StrictModel
from proxyhpo.errors import DataError
from proxyhpo.progress import track

__all__ = ["CaseEntry", "CaseVolumes", "MSDDataset", "load_dataset", "push_dataset", "read_case", "validate_dataset", "case_id_of"]

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
        modality: channel index -> modality name (``{"0": "CT"}``).
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
    """A case read into memory: image (float32, spatial axes of the file) and label (uint8), voxel spacing in mm."""

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


def _stage_from_s3(url: str) -> Path:
    """Download an S3 data set (``dataset.json`` and every file it lists) and return the local dataset.json."""
    if not url.endswith(".json"):
        url = url.rstrip("/") + "/dataset.json"
    bucket, key = storage.split_s3_url(url)
    prefix = key.rsplit("/", 1)[0] if "/" in key else ""
    local_root = paths.data_dir() / "s3" / bucket / prefix
    local_json = local_root / "dataset.json"
    raw = storage.read_bytes(url)
    document = _parse_json(raw, url)
    for entry in _training_entries(document, url):
        for field in ("image", "label"):
            relative = entry[field].removeprefix("./")
            if relative.startswith("/") or ".." in PurePosixPath(relative).parts:
                raise DataError(url, f"entry {entry[field]!r} points outside the data set's prefix", "list paths relative to dataset.json, without '..'")
            target = local_root / relative
            if not target.exists():
                object_url = f"s3://{bucket}/{prefix + '/' if prefix else ''}{relative}"
                storage.download_file(object_url, target)
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
        raise DataError(where, f"is not valid JSON ({exc})", "fix the syntax of dataset.json") from exc
    if not isinstance(document, dict):
        raise DataError(where, "is not a JSON object", "dataset.json must be an object with 'training', 'labels' and 'modality'")
    return document


def _training_entries(document: dict[str, Any], where: str) -> list[dict[str, str]]:
    training = document.get("training")
    if not isinstance(training, list) or not training:
        raise DataError(where, "has no non-empty 'training' list", 'list the cases as "training": [{"image": ..., "label": ...}]')
    for index, entry in enumerate(training):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not isinstance(entry.get("label"), str):
            raise DataError(where, f"training[{index}] is {entry!r}", 'each training entry must be {"image": "<path>", "label": "<path>"}')
    return training


def load_dataset(location: str | os.PathLike[str]) -> MSDDataset:
    """Read an MSD data set from a folder or its ``dataset.json``, local or ``s3://``.

    Only ``dataset.json`` is checked here (structure, duplicate entries, that every file exists); use
    :func:`validate_dataset` to read every volume.

    Args:
        location: a folder holding ``dataset.json``, the file itself, or an ``s3://`` URL of either.

    Returns:
        The data set with every path resolved to an absolute local file.

    Raises:
        DataError: for a missing or malformed ``dataset.json``, duplicate entries or missing files.
    """
    given = os.fspath(location)
    if storage.is_s3_url(given):
        json_path = _stage_from_s3(given)
    else:
        json_path = Path(given)
        if json_path.is_dir():
            json_path = json_path / "dataset.json"
        if not json_path.is_file():
            raise DataError(json_path, "does not exist", "point at an MSD folder that holds dataset.json, or at the file itself")
    json_path = json_path.absolute()
    document = _parse_json(json_path.read_bytes(), str(json_path))
    entries = _training_entries(document, str(json_path))

    labels_raw = document.get("labels")
    if not isinstance(labels_raw, dict) or not labels_raw:
        raise DataError(json_path, "has no 'labels' mapping", 'add "labels": {"0": "background", "1": "<organ>"}')
    try:
        labels = {int(value): str(name) for value, name in labels_raw.items()}
    except ValueError as exc:
        raise DataError(json_path, f"'labels' keys must be integers, got {list(labels_raw)}", 'write labels as {"0": "background", "1": ...}') from exc
    modality = document.get("modality")
    if not isinstance(modality, dict) or not modality:
        raise DataError(json_path, "has no 'modality' mapping", 'add "modality": {"0": "CT"} (or "MRI", "T2", ...)')

    root = json_path.parent
    cases: list[CaseEntry] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        image = (root / entry["image"]).resolve()
        label = (root / entry["label"]).resolve()
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
        cases.append(
            CaseEntry(case_id=case_id_of(image), image=str(image), label=str(label), image_ref=entry["image"], label_ref=entry["label"])
        )
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
        return nib.load(path)
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors
        raise DataError(path, f"is not a readable NIfTI file ({type(exc).__name__}: {exc})", "replace it with a valid .nii/.nii.gz file") from exc


def _read_array(image: nib.Nifti1Image, path: str) -> np.ndarray:
    try:
        return image.get_fdata(dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DataError(path, f"is truncated or corrupt ({type(exc).__name__}: {exc})", "re-export or re-download the file") from exc


def read_case(case: CaseEntry, *, channel: int = 0) -> CaseVolumes:
    """Read one case's image and label into memory, checked against each other.

    Args:
        case: the case to read.
        channel: which channel of a 4D (multi-modal) image to keep.

    Returns:
        The image as float32 and the label as uint8, both of the image's spatial shape, and the voxel spacing.

    Raises:
        DataError: for an unreadable or truncated file, a shape or affine mismatch, an empty label, or a
            label with non-integer or negative values.
    """
    image_nii = _load_nifti(case.image)
    label_nii = _load_nifti(case.label)
    image = _read_array(image_nii, case.image)
    if image.ndim == 4:
        image = image[..., channel]
    label_float = _read_array(label_nii, case.label)
    if image.ndim != 3:
        raise DataError(case.image, f"has {image.ndim} dimensions, expected 3 (or 4 with channels last)", "give a 3D volume")
    if label_float.shape != image.shape:
        raise DataError(
            case.label,
            f"has shape {label_float.shape} but its image {Path(case.image).name} has {image.shape}",
            "resample or re-export the label on the image's grid",
        )
    if not np.allclose(image_nii.affine, label_nii.affine, atol=AFFINE_TOLERANCE):
        raise DataError(case.label, "has an affine different from its image's", "save the label with the image's affine (same spacing, origin and orientation)")
    if not np.isfinite(image).all():
        raise DataError(case.image, "contains NaN or infinite voxels", "fix or re-export the image")
    if (label_float < 0).any() or not np.array_equal(label_float, np.round(label_float)):
        raise DataError(case.label, "contains non-integer or negative values", "labels must hold the integer values listed in dataset.json 'labels'")
    if label_float.max() > 255:
        raise DataError(case.label, f"holds label value {label_float.max():g}, above 255", "segmentation labels must be small integers listed in dataset.json 'labels'")
    label = label_float.astype(np.uint8)
    if not label.any():
        raise DataError(case.label, "is empty (no foreground voxel)", "annotate the case or remove it from dataset.json")
    spacing = tuple(float(s) for s in image_nii.header.get_zooms()[:3])
    return CaseVolumes(case_id=case.case_id, image=image, label=label, spacing=spacing)  # type: ignore[arg-type]


def validate_dataset(
    dataset: MSDDataset,
    *,
    on_case: Callable[[CaseVolumes], None] | None = None,
    progress: bool = False,
) -> None:
    """Read every case and check it: readable, shapes and affines match, label non-empty and within ``labels``.

    Args:
        dataset: the data set to check.
        on_case: called with each case once it passed, so callers can use the volumes without reading twice.
        progress: show a progress bar.

    Raises:
        DataError: naming the first file that fails and how to fix it.
    """
    allowed = set(dataset.labels)
    for volumes, case in zip(_iterate_cases(dataset.cases, progress, "validating"), dataset.cases):
        unexpected = sorted(set(np.unique(volumes.label).tolist()) - allowed)
        if unexpected:
            raise DataError(
                case.label,
                f"holds label values {unexpected} not listed in dataset.json labels {sorted(allowed)}",
                "add them to 'labels' in dataset.json or fix the label",
            )
        if on_case is not None:
            on_case(volumes)


def _iterate_cases(cases: Iterable[CaseEntry], progress: bool, what: str) -> Iterator[CaseVolumes]:
    cases = list(cases)
    for case in track(cases, f"{what} {len(cases)} cases", enabled=progress):
        yield read_case(case)
