"""Turn a training case into the cubic, [0, 1]-scaled patch that the similarity engines compare.

Following the proxy-data paper (section 3): intensities are normalised (CT: clipped to a HU window
and scaled; MR: scaled between the volume's 1st and 99th percentiles), then either the whole volume
(``crop="none"``) or the label's bounding box plus a margin (``crop="label"``, "Labelcrop") is
resampled to a ``patch``³ cube. Intensities are normalised on the whole volume before cropping, so
a region keeps the same scale whichever crop is used.

A multi-channel image (MSD brain: FLAIR, T1w, T1gd, T2w, channels last) gives one cube per channel,
each channel scaled on its own (MR channels have unrelated units) and all cropped to the same box,
the bounding box of every foreground class together (``label > 0``). How the engines' per-channel
similarities are combined is :func:`proxyhpo.similarity.proxy_data.compute_similarity`'s rule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensityRange, ScaleIntensityRangePercentiles
from monai.transforms.utils import generate_spatial_bounding_box

from proxyhpo.progress import track
from proxyhpo.similarity.arguments import check_positive_int

__all__ = ["prepare_volume", "prepare_volumes", "label_bounding_box", "CT_HU_WINDOW"]

CT_HU_WINDOW: tuple[float, float] = (-57.0, 164.0)
"""The paper's soft-tissue HU window for the spleen CT task."""

_MODALITIES = ("CT", "MR")
_CROPS = ("label", "none")


def label_bounding_box(label: np.ndarray, margin: int = 0) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Bounding box of the voxels with ``label > 0``, grown by ``margin`` voxels and clipped to the volume.

    Args:
        label: ``(D, H, W)`` label map.
        margin: voxels added on each side, ``>= 0``.

    Returns:
        ``(start, end)``: half-open voxel ranges per axis.

    Raises:
        ValueError: when ``label`` has no foreground voxel.
    """
    label = np.asarray(label)
    start, end = generate_spatial_bounding_box(label[None], select_fn=lambda x: x > 0, margin=margin, allow_smaller=True)
    if all(s == 0 for s in start) and all(e == 0 for e in end):
        raise ValueError(
            f"label has no foreground voxel (label > 0) among its {label.size} voxels; "
            "crop='label' needs one, or use crop='none'."
        )
    return tuple(int(s) for s in start), tuple(int(e) for e in end)  # type: ignore[return-value]


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError) as err:
        raise ValueError(f"spacing must be three positive numbers (mm per voxel), got {spacing!r}.") from err
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be three positive numbers (mm per voxel), got {spacing!r}.")
    return values  # type: ignore[return-value]


def _normalize_intensity(image: np.ndarray, modality: str, hu_window: tuple[float, float]) -> np.ndarray:
    img = torch.as_tensor(image, dtype=torch.float32)[None]
    if modality == "CT":
        out = ScaleIntensityRange(a_min=hu_window[0], a_max=hu_window[1], b_min=0.0, b_max=1.0, clip=True)(img)
    else:
        with warnings.catch_warnings():
            # A flat MR volume has equal percentiles; MONAI warns and maps it to 0, which is what we want.
            warnings.filterwarnings("ignore", message="Divide by zero", category=Warning)
            out = ScaleIntensityRangePercentiles(lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True)(img)
    return np.asarray(out)[0]


def prepare_volume(
    image: np.ndarray,
    label: np.ndarray | None,
    *,
    spacing: Sequence[float],
    modality: str,
    crop: str,
    patch: int = 96,
    margin: int = 8,
    hu_window: tuple[float, float] = CT_HU_WINDOW,
) -> np.ndarray:
    """Normalise, optionally crop to the label, and resample one volume to a ``patch``³ cube in ``[0, 1]``.

    Args:
        image: ``(D, H, W)`` intensities (HU for CT), or ``(D, H, W, C)`` with ``C`` channels last (as
            MSD stores several MR sequences): each channel is normalised on its own.
        label: ``(D, H, W)`` label map (foreground is ``label > 0``: the union of every foreground class);
            needed when ``crop="label"``.
        spacing: voxel size in mm, three positive numbers. It is checked but does not change the
            result: the paper resamples every region to the same cube whatever its physical size.
        modality: ``"CT"`` (clip to ``hu_window``, scale to [0, 1]) or ``"MR"`` (scale the volume's
            1st..99th percentile to [0, 1], clipped).
        crop: ``"label"`` (the label's bounding box plus ``margin``, clipped to the volume) or ``"none"``.
        patch: side of the output cube, ``>= 1``.
        margin: voxels added around the label's bounding box, ``>= 0``.
        hu_window: ``(low, high)`` HU window for CT, ``low < high``.

    Returns:
        ``(patch, patch, patch)`` float32 array with values in ``[0, 1]``; ``(C, patch, patch, patch)``
        for a ``(D, H, W, C)`` image, every channel cropped to the same box.

    Raises:
        ValueError: when an argument is invalid, ``label`` is missing or empty with ``crop="label"``,
            or ``label`` does not match ``image``'s spatial shape.

    Example:
        >>> img = np.linspace(-100, 200, 20 * 20 * 20).reshape(20, 20, 20)
        >>> prepare_volume(img, None, spacing=(1, 1, 1), modality="CT", crop="none", patch=8).shape
        (8, 8, 8)
    """
    image = np.asarray(image)
    if image.ndim not in (3, 4) or min(image.shape) < 1:
        raise ValueError(f"image must be a non-empty 3D array (D, H, W) or 4D (D, H, W, C), got shape {image.shape}.")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"image must hold real numbers, got dtype {image.dtype}.")
    _check_spacing(spacing)
    if modality not in _MODALITIES:
        raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}.")
    if crop not in _CROPS:
        raise ValueError(f"crop must be one of {_CROPS}, got {crop!r}.")
    patch = check_positive_int(patch, "patch")
    margin = check_positive_int(margin, "margin", minimum=0)
    if len(hu_window) != 2 or not float(hu_window[0]) < float(hu_window[1]):
        raise ValueError(f"hu_window must be (low, high) with low < high, got {hu_window!r}.")
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape[:3]:
            raise ValueError(f"label must have the image's shape {image.shape[:3]} (its spatial axes), got {label.shape}.")
    if crop == "label" and label is None:
        raise ValueError("label is None, but crop='label' needs a label map; pass it or use crop='none'.")
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN or infinite values.")

    channels = [image] if image.ndim == 3 else [image[..., c] for c in range(image.shape[3])]
    box = label_bounding_box(label, margin) if crop == "label" else None  # type: ignore[arg-type]
    cubes = []
    for channel in channels:
        volume = _normalize_intensity(channel, modality, (float(hu_window[0]), float(hu_window[1])))
        if box is not None:
            (start, end) = box
            volume = volume[start[0] : end[0], start[1] : end[1], start[2] : end[2]]
        # Anti-aliasing smooths before shrinking, so a downsampled patch keeps the region's texture
        # statistics instead of a few aliased samples.
        resized = Resize(spatial_size=(patch, patch, patch), mode="trilinear", anti_aliasing=True)(volume[None])
        cubes.append(np.clip(np.asarray(resized, dtype=np.float32)[0], 0.0, 1.0))
    return cubes[0] if image.ndim == 3 else np.stack(cubes)


def prepare_volumes(
    cases: Iterable[tuple[np.ndarray, np.ndarray | None, Sequence[float]]],
    *,
    modality: str,
    crop: str,
    patch: int = 96,
    margin: int = 8,
    hu_window: tuple[float, float] = CT_HU_WINDOW,
    progress: bool = False,
) -> np.ndarray:
    """Apply :func:`prepare_volume` to each ``(image, label, spacing)`` case and stack the results.

    Cases are consumed one at a time, so an iterable that loads lazily keeps one case in memory.

    Args:
        cases: ``(image, label, spacing)`` tuples as taken by :func:`prepare_volume`.
        modality, crop, patch, margin, hu_window: as in :func:`prepare_volume`.
        progress: show a progress bar (its total is known only when ``cases`` has a length).

    Returns:
        ``(n, patch, patch, patch)`` float32 array in ``[0, 1]`` (``(n, C, patch, patch, patch)`` for
        ``C``-channel images).

    Raises:
        ValueError: when ``cases`` is empty, or as :func:`prepare_volume` for the first bad case (the
            message names its index).
    """
    total = len(cases) if hasattr(cases, "__len__") else 0  # type: ignore[arg-type]
    out: list[np.ndarray] = []
    for index, case in enumerate(track(cases, "Preparing volumes", total=total, enabled=progress, transient=False)):
        try:
            image, label, spacing = case
        except (TypeError, ValueError) as err:
            raise ValueError(f"cases[{index}] must be an (image, label, spacing) tuple.") from err
        try:
            out.append(
                prepare_volume(
                    image, label, spacing=spacing, modality=modality, crop=crop, patch=patch, margin=margin, hu_window=hu_window
                )
            )
        except ValueError as err:
            raise ValueError(f"cases[{index}]: {err}") from err
    if not out:
        raise ValueError("cases is empty; at least one (image, label, spacing) case is needed.")
    return np.stack(out)
