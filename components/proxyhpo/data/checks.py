"""Checks that refuse a volume nothing could train on, before its voxels are read or as soon as they are.

:mod:`proxyhpo.data.msd` reads a case; these are the refusals that need no more than the NIfTI header (a
voxel count past what memory holds, complex voxels, a singular or non-finite affine), the voxels (a
constant image) or the data set's folder (a file that is a symbolic link out of it). Each raises one
:class:`~proxyhpo.errors.DataError` naming the file and the fix; a volume that passes costs a few
microseconds more.

Example:
    >>> check_header(nib.load("imagesTr/spleen_2.nii.gz"), "imagesTr/spleen_2.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from proxyhpo.errors import DataError

__all__ = ["MAX_VOLUME_VOXELS", "check_header", "check_not_constant", "check_inside", "check_resampled"]

#: Most voxels of one volume (all channels): 2^29 float32 voxels are 2 GiB, decompressed before anything
#: else can be done with them. A CT of 512 x 512 x 1,000 slices is half of it.
MAX_VOLUME_VOXELS = 2**29

#: Smallest |determinant| of an affine's 3x3 part, in mm^3 per voxel: below it the volume has no extent
#: along some axis (a singular affine), and resampling divides by zero.
MIN_VOXEL_VOLUME_MM3 = 1e-9


def check_header(image: Any, path: str | os.PathLike[str]) -> None:
    """Refuse a NIfTI volume from its header alone: too many voxels, complex voxels, a singular or non-finite affine.

    Args:
        image: a loaded ``nibabel`` NIfTI image (its voxels not read yet).
        path: its file, for the message.

    Raises:
        DataError: naming the file, what is wrong and the fix.
    """
    shape = tuple(int(n) for n in image.shape)
    voxels = math.prod(shape)
    if voxels > MAX_VOLUME_VOXELS:
        # checked before get_fdata: a 5 MB .nii.gz of zeros can decompress to 1024^3 voxels (4 GiB of float32)
        raise DataError(path, f"holds {voxels:,} voxels (shape {shape}), more than the {MAX_VOLUME_VOXELS:,} one volume may", "crop or downsample the volume")
    dtype = image.header.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating):
        raise DataError(path, f"holds complex voxels ({dtype})", "save the magnitude (or the real part) as a real-valued image")
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise DataError(path, "has NaN or infinite values in its affine", "save the volume with a valid affine (spacing, origin and orientation)")
    if abs(float(np.linalg.det(affine[:3, :3]))) < MIN_VOXEL_VOLUME_MM3:
        raise DataError(path, "has a singular affine (a voxel of no volume)", "save the volume with a valid affine: positive spacing along every axis")


def check_not_constant(image: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Refuse an image whose voxels all hold one value: normalisation divides by its zero spread, and it shows no organ.

    Raises:
        DataError: naming the file and the value.
    """
    if image.size and float(image.min()) == float(image.max()):
        raise DataError(path, f"is constant (every voxel is {float(image.min()):g})", "replace it with the real scan, or remove the case")


def check_inside(root: str | os.PathLike[str], given: str | os.PathLike[str], resolved: str | os.PathLike[str]) -> None:
    """Refuse a file of the data set that resolves (through a symbolic link) to a file outside the data set's folder.

    Links are not followed out of a data set: a shared or downloaded data set could otherwise hand the
    trainer, or an upload, any file the user can read. A link to a file inside the folder is followed.

    Args:
        root: the data set's folder (the one holding ``dataset.json``).
        given: the file as ``dataset.json`` names it, joined to ``root``.
        resolved: the same file with every link resolved.

    Raises:
        DataError: naming the file and where it leads.
    """
    real_root = Path(root).resolve()
    if not Path(resolved).is_relative_to(real_root):
        raise DataError(
            given, f"leads (through a symbolic link) to {resolved}, outside the data set {real_root}: links out of a data set are refused", "copy the file into the data set's folder"
        )


def check_resampled(shape: tuple[int, ...], spacing: tuple[float, ...], recipe: Any, path: str | os.PathLike[str]) -> None:
    """Estimate a volume's size at the recipe's spacing before it is resampled, and its thickness there.

    Args:
        shape: the volume's spatial shape ``(X, Y, Z)`` (channels, if any, after it).
        spacing: its voxel spacing in mm ``(x, y, z)``.
        recipe: the :class:`~proxyhpo.config.recipe.Recipe` (its ``spacing``, ``patch_size`` and ``pad``).
        path: the file.

    Raises:
        DataError: when the resampled volume would hold more than :data:`MAX_VOLUME_VOXELS` voxels (naming
            ``recipe.spacing``), or would be thinner than two voxels along an axis: a patch cropped from it
            would be padding, with nothing of the volume along that axis.
    """
    target = recipe.spacing
    ratio = [1.0] * 3 if target is None else [s / t for s, t in zip(spacing[:3], target)]
    resampled = [n * r for n, r in zip(shape[:3], ratio)]
    voxels = math.prod(resampled) * math.prod(shape[3:])
    if voxels > MAX_VOLUME_VOXELS:
        raise DataError(
            path,
            f"would hold {voxels:,.0f} voxels resampled from {tuple(round(s, 3) for s in spacing[:3])} mm to recipe.spacing {tuple(target)} mm, more than the {MAX_VOLUME_VOXELS:,} one volume may",
            "choose a coarser recipe.spacing",
        )
    for axis, size in enumerate(resampled):
        if size < 2:
            raise DataError(
                path,
                f"is {size:.3g} voxels thick along axis {axis} at the recipe's spacing (shape {tuple(shape[:3])}), against a patch of {tuple(recipe.patch_size)}",
                "give volumes at least two voxels thick on every axis at the recipe's spacing, or remove the case",
            )
