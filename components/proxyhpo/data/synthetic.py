"""Synthetic phantoms in the Medical Segmentation Decathlon layout: CT spleen, T2 MR prostate, 4-channel MR brain.

The phantoms stand in for MSD Task09 (spleen, CT), Task05 (prostate, MR) and Task01 (brain tumour,
multi-parametric MR: FLAIR, T1w, T1gd, T2w; three tumour classes) when the real data are not at
hand. They are built to carry the properties the proxy-data method reacts to:

- **Varying anatomy**: organ size, shape (deformed ellipsoids), position and texture differ per case, and
  so do the body outline, the neighbouring organs and the part of the body the scan covers (lung bases in
  some CT scans, bladder in some MR scans), so pairwise similarities spread out and a ranking means something.
- **Anisotropic, varying grids**: each case has its own in-plane pixel size, slice spacing (always coarser
  than in-plane) and slice count, written in the NIfTI affine, so whole volumes differ in field of view and
  the label-ROI crop ("Labelcrop") differs from the whole-volume view.
- **Modality-like intensities**: CT in Hounsfield units (air -1000, fat -100, soft tissue 40, enhanced
  organs, bone) stored as int16; MR in arbitrary units with a smooth bias field, an optional endorectal-coil
  hot spot, Rician noise and a per-case intensity scale (MR has no absolute unit), stored as int16.
- **Several channels and classes** (brain): each class is told apart by another channel's contrast, as in
  BraTS: oedema is bright in FLAIR, the enhancing rim in T1gd only, the non-enhancing core dark in T1 and
  bright in T2; the image is 4-D with the modality axis last, as MSD Task01 stores it.
- **An external domain** (``external=True``): another "scanner": other intensity calibration, noise
  level, reconstruction blur, slice thickness and pixel size, other case-name prefix, for external validation.

Geometry is physical and consistent with the header: anatomy is drawn in millimetres at real size, and a
case's pixel size is its field of view divided by ``size`` (so a 64-pixel matrix has coarse pixels, as
if a real scan had been down-sampled in plane). Slices are at least 1.3 times thicker than pixels.

Every case is drawn from its own generator seeded by ``(seed, task, domain, case index)``: the same call
writes the same voxels, and case ``i`` does not depend on how many cases are written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage

from proxyhpo import storage
from proxyhpo.progress import track
from proxyhpo.errors import ConfigError, DataError

__all__ = ["SyntheticCase", "TASKS", "synthetic_case", "write_synthetic_dataset"]

Task = Literal["spleen", "prostate", "brain"]

#: Per task: dataset.json fields and case-name prefixes (internal domain, external domain).
TASKS: dict[str, dict] = {
    "spleen": {
        "name": "SyntheticSpleen",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "spleen"},
        "prefix": ("spleen", "btcv_like"),
        "about": "CT phantoms (HU, int16) of the abdomen with a spleen-like organ, after MSD Task09_Spleen",
        "about_external": "CT phantoms from another 'scanner' (calibration offset, noise, blur, thicker slices), after BTCV",
    },
    "prostate": {
        "name": "SyntheticProstate",
        "modality": {"0": "T2"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "prefix": ("prostate", "prostatex_like"),
        "about": "T2-weighted MR phantoms (arbitrary units, int16) of the pelvis with a two-zone prostate, after MSD Task05_Prostate",
        "about_external": "T2 MR phantoms from another 'scanner' (no endorectal coil, other scale, noise, slices), after PROSTATEx",
    },
    "brain": {
        "name": "SyntheticBrainTumour",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "prefix": ("BRATS", "brats_other_site"),
        "about": "4-channel MR phantoms (FLAIR, T1w, T1gd, T2w; channels last, int16) of a skull-stripped brain with a three-class tumour, after MSD Task01_BrainTumour",
        "about_external": "4-channel MR brain phantoms from another 'site' (other scale per channel, noise, blur, thicker slices)",
    },
}
_TASK_CODE = {"spleen": 9, "prostate": 5, "brain": 1}  # MSD task numbers, used only to seed the generators apart
MIN_SIZE, MAX_SIZE = 32, 512


class SyntheticCase(NamedTuple):
    """One phantom.

    Attributes:
        image: (X, Y, Z) int16 volume, Z the slice axis (HU for CT, arbitrary units for MR); (X, Y, Z, C)
            for a multi-channel task (brain: C = 4, the modality axis last as in MSD Task01).
        label: (X, Y, Z) uint8 label map with the task's label values.
        spacing: voxel size in mm along X, Y, Z.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]


# ---------------------------------------------------------------------------------------------------
# Geometry helpers. Coordinates are millimetres from the volume centre, RAS: X the patient's left (-) to
# right (+), Y posterior (-) to anterior (+), Z caudal (-) to cranial (+). Arrays are indexed (x, y, z).
# ---------------------------------------------------------------------------------------------------


class _Grid(NamedTuple):
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    x: np.ndarray  # (nx, 1, 1) mm
    y: np.ndarray  # (1, ny, 1) mm
    z: np.ndarray  # (1, 1, nz) mm


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> _Grid:
    axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s) for n, s in zip(shape, spacing)]
    return _Grid(shape, spacing, axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])


def _linear_upsampler(n: int, c: int) -> np.ndarray:
    """(n, c) matrix that interpolates ``c`` lattice values linearly onto ``n`` points spanning the same extent."""
    position = np.clip((np.arange(n) + 0.5) * c / n - 0.5, 0, c - 1)
    low = np.minimum(position.astype(int), c - 2)
    weight = (position - low).astype(np.float32)
    matrix = np.zeros((n, c), dtype=np.float32)
    matrix[np.arange(n), low] = 1 - weight
    matrix[np.arange(n), low + 1] = weight
    return matrix


def _smooth_field(rng: np.random.Generator, grid: _Grid, length_mm: float) -> np.ndarray:
    """A smooth random field of zero mean and unit standard deviation, correlated over about ``length_mm``.

    White noise on a coarse lattice (one node per ``length_mm``), smoothed there and interpolated up
    axis by axis (three small matrix products): far cheaper than filtering at full resolution.
    """
    coarse = [max(2, math.ceil(n * s / length_mm) + 2) for n, s in zip(grid.shape, grid.spacing)]
    field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 0.7, mode="wrap")
    (nx, ny, nz), (cx, cy, cz) = grid.shape, coarse
    field = field @ _linear_upsampler(nz, cz).T  # (cx, cy, nz)
    field = _linear_upsampler(ny, cy) @ field  # (cx, ny, nz), broadcast over x
    field = (_linear_upsampler(nx, cx) @ field.reshape(cx, -1)).reshape(nx, ny, nz)
    field -= field.mean()
    return field / (field.std() + 1e-6)


def _rotation(yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Rotation about Z by ``yaw`` then about X by ``pitch`` (radians)."""
    cz, sz, cx, sx = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=np.float32)
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=np.float32)
    return about_x @ about_z


def _ellipsoid(
    grid: _Grid,
    centre: tuple[float, float, float],
    semi: tuple[float, float, float],
    rotation: np.ndarray | None = None,
    warp: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of an ellipsoid, optionally rotated and with its level set displaced by ``warp``.

    ``warp`` (a field of the grid's shape) adds to the normalised radius, so a value of 0.2 moves the
    surface out by about a fifth of the semi-axis there: a smooth, organ-like deformation.
    Only the ellipsoid's bounding box is evaluated.
    """
    reach = max(semi) * (1.5 if warp is not None else 1.0) + max(grid.spacing)
    boxes = []
    for axis, (coords, c) in enumerate(zip((grid.x, grid.y, grid.z), centre)):
        flat = coords.reshape(-1)
        inside = np.nonzero(np.abs(flat - c) <= reach)[0]
        if inside.size == 0:
            return np.zeros(grid.shape, dtype=bool)
        boxes.append(slice(int(inside[0]), int(inside[-1]) + 1))
    dx = grid.x[boxes[0]] - centre[0]
    dy = grid.y[:, boxes[1]] - centre[1]
    dz = grid.z[:, :, boxes[2]] - centre[2]
    if rotation is not None:
        # Coordinates in the ellipsoid's own frame: R^T (p - c).
        u = rotation[0, 0] * dx + rotation[1, 0] * dy + rotation[2, 0] * dz
        v = rotation[0, 1] * dx + rotation[1, 1] * dy + rotation[2, 1] * dz
        w = rotation[0, 2] * dx + rotation[1, 2] * dy + rotation[2, 2] * dz
    else:
        u, v, w = dx, dy, dz
    radius = np.sqrt((u / semi[0]) ** 2 + (v / semi[1]) ** 2 + (w / semi[2]) ** 2)
    if warp is not None:
        radius = radius - warp[boxes[0], boxes[1], boxes[2]]
    mask = np.zeros(grid.shape, dtype=bool)
    mask[boxes[0], boxes[1], boxes[2]] = np.broadcast_to(radius <= 1.0, mask[boxes[0], boxes[1], boxes[2]].shape)
    return mask


def _elliptic_cylinder(grid: _Grid, cx: float, cy: float, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Mask of an elliptic cross-section extruded along Z; ``a`` and ``b`` may vary with Z (shape (1, 1, nz))."""
    inside = ((grid.x - cx) / a) ** 2 + ((grid.y - cy) / b) ** 2 <= 1.0
    return np.broadcast_to(inside, grid.shape)


def _blur(volume: np.ndarray, sigma_mm: tuple[float, float, float], spacing: tuple[float, float, float]) -> np.ndarray:
    return ndimage.gaussian_filter(volume, [s / p for s, p in zip(sigma_mm, spacing)], mode="nearest")


def _slices(rng: np.random.Generator, pixel: float, thickness: tuple[float, float], extent: tuple[float, float], min_ratio: float) -> tuple[float, float]:
    """Slice spacing and z field of view: a real slice thickness, but never finer than ``min_ratio`` x the pixel."""
    dz = max(rng.uniform(*thickness), min_ratio * pixel * rng.uniform(1.0, 1.4))
    return dz, rng.uniform(*extent)


# ---------------------------------------------------------------------------------------------------
# CT spleen
# ---------------------------------------------------------------------------------------------------


def _spleen_case(rng: np.random.Generator, size: int, external: bool) -> SyntheticCase:
    # Grid: a real abdominal field of view (0.6-1.0 mm pixels at 512) on a size x size matrix.
    fov = rng.uniform(0.55, 0.8) * 512 if external else rng.uniform(0.6, 1.0) * 512
    pixel = fov / size
    dz, z_extent = _slices(rng, pixel, (2.5, 5.0) if external else (1.5, 5.0), (220.0, 520.0), 2.0 if external else 1.3)
    lo = max(16, size // 2 if size <= 96 else size // 3)
    nz = int(np.clip(round(z_extent / dz), lo, size))
    grid = _grid((size, size, nz), (pixel, pixel, dz))
    z_top = grid.z.max()

    # Contrast phase: enhancement added to the organs (portal venous phase in MSD; stronger here in BTCV-like).
    enhance = rng.uniform(50, 100) if external else rng.uniform(0, 70)
    hu = np.full(grid.shape, -1000.0, dtype=np.float32)

    # Body: an elliptic cylinder whose outline drifts slowly along Z; subcutaneous fat, then muscle and viscera.
    a0, b0 = rng.uniform(0.38, 0.47) * fov, rng.uniform(0.29, 0.36) * fov
    cx, cy = rng.uniform(-0.03, 0.03) * fov, rng.uniform(-0.04, 0.02) * fov
    phase, period = rng.uniform(0, 2 * math.pi), rng.uniform(400, 900)
    a = a0 * (1 + 0.05 * np.sin(2 * math.pi * grid.z / period + phase))
    b = b0 * (1 + 0.04 * np.sin(2 * math.pi * grid.z / period + phase + 1.0))
    body = _elliptic_cylinder(grid, cx, cy, a, b)
    fat_layer = rng.uniform(8, 35)
    inner = _elliptic_cylinder(grid, cx, cy, a - fat_layer, b - fat_layer)
    hu[body] = rng.uniform(-110, -85)
    soft = rng.uniform(35, 50)
    hu[inner] = soft
    # Visceral fat threaded between the organs.
    fat_mix = _smooth_field(rng, grid, rng.uniform(20, 35)) > rng.uniform(0.3, 1.0)
    hu[inner & fat_mix] = -95

    # Table under the patient (shifts with the body, absent in some scans).
    if rng.random() < 0.8:
        top = cy - b0 - rng.uniform(5, 20)
        table = (grid.y <= top) & (grid.y > top - rng.uniform(8, 15)) & (np.abs(grid.x) < 0.45 * fov)
        hu[np.broadcast_to(table, grid.shape)] = rng.uniform(-300, 100)

    # Spleen geometry first: the other organs are placed around it.
    scale = rng.uniform(0.75, 1.45)  # volume varies about 7x (MSD includes enlarged spleens)
    semi = (rng.uniform(30, 45) * scale, rng.uniform(17, 26) * scale, rng.uniform(45, 65) * scale)
    # Mostly inside the scanned range, as in MSD, though a short scan may cut its top or bottom.
    margin = min(0.85 * semi[2], 0.9 * z_top)
    sz = rng.uniform(-z_top + margin, z_top - margin)
    sx = cx - rng.uniform(0.35, 0.5) * a0  # the patient's left is -x in RAS
    sy = cy - rng.uniform(0.25, 0.45) * b0
    spleen_rot = _rotation(rng.uniform(0.3, 1.0), rng.uniform(-0.3, 0.3))

    # Lung bases above the diaphragm dome, which sits a little above the spleen's top.
    dome = sz + semi[2] * rng.uniform(0.6, 1.1)
    for side in (-1, 1):
        lx, ly = cx + side * 0.45 * a0, cy - 0.1 * b0
        lung = _elliptic_cylinder(grid, lx, ly, 0.42 * a0, 0.75 * b0) & inner
        curve = dome + 60 * (((grid.x - lx) / (0.42 * a0)) ** 2 + ((grid.y - ly) / (0.75 * b0)) ** 2) - 30
        hu[lung & (grid.z > curve)] = rng.uniform(-880, -820)

    # Liver on the other side, large, overlapping the spleen's levels.
    liver_hu = rng.uniform(50, 65) + 0.8 * enhance
    liver_warp = 0.12 * _smooth_field(rng, grid, 40)
    liver = _ellipsoid(
        grid,
        (cx + 0.45 * a0, cy + 0.05 * b0, sz + rng.uniform(-30, 10)),
        (0.42 * a0, 0.7 * b0, rng.uniform(80, 110)),
        _rotation(rng.uniform(-0.3, 0.3)),
        liver_warp,
    )
    hu[liver & inner & (hu > -500)] = liver_hu

    # Kidneys, posterior and a little caudal; aorta in front of the spine.
    kidney_hu = rng.uniform(30, 40) + 1.8 * enhance
    kz = sz - rng.uniform(20, 60)
    for side in (-1, 1):
        kidney = _ellipsoid(grid, (cx + side * 0.33 * a0, cy - 0.48 * b0, kz + side * 10), (22, 28, 50), _rotation(side * 0.4))
        hu[kidney & inner] = kidney_hu
    spine_x, spine_y = cx, cy - 0.62 * b0
    aorta = _elliptic_cylinder(grid, spine_x + 10, spine_y + 35, 11.0, 11.0) & inner
    hu[aorta] = 40 + 2.5 * enhance

    # Spine: vertebral bodies (cancellous bone) with discs every ~30 mm, cortical rim, spinal canal behind.
    vert = _elliptic_cylinder(grid, spine_x, spine_y, 20.0, 17.0)
    cortex = vert & ~_elliptic_cylinder(grid, spine_x, spine_y, 17.0, 14.0)
    disc = np.cos(2 * math.pi * (grid.z - rng.uniform(0, 30)) / rng.uniform(28, 34)) > 0.8
    hu[vert] = rng.uniform(180, 260)
    hu[cortex] = rng.uniform(600, 800)
    hu[vert & disc] = 90
    hu[_elliptic_cylinder(grid, spine_x, spine_y - 28, 8.0, 8.0)] = 15
    for side in (-1, 1):  # posterior elements
        hu[_elliptic_cylinder(grid, spine_x + side * 14, spine_y - 30, 5.0, 12.0) & ~disc] = 450

    # Bowel: a few gas and fluid pockets anteriorly.
    for _ in range(int(rng.integers(3, 8))):
        centre = (cx + rng.uniform(-0.4, 0.4) * a0, cy + rng.uniform(0.1, 0.6) * b0, rng.uniform(-z_top, z_top))
        pocket = _ellipsoid(grid, centre, tuple(rng.uniform(8, 25, 3)), _rotation(rng.uniform(0, math.pi))) & inner
        hu[pocket & (hu < 150)] = -950 if rng.random() < 0.5 else rng.uniform(0, 30)

    # The spleen: a deformed ellipsoid tucked against the posterolateral wall, with a concave hilum.
    warp = rng.uniform(0.08, 0.18) * _smooth_field(rng, grid, rng.uniform(18, 30))
    spleen = _ellipsoid(grid, (sx, sy, sz), semi, spleen_rot, warp)
    hilum = _ellipsoid(grid, (sx + 0.9 * semi[0], sy + 0.6 * semi[1], sz), (0.6 * semi[0], 0.8 * semi[1], 0.7 * semi[2]))
    spleen &= inner & ~hilum
    if not spleen.any():  # organ squeezed out of the field of view: put a minimal one at its centre
        spleen = _ellipsoid(grid, (sx, sy, 0.0), (semi[0], semi[1], max(semi[2], 2 * dz))) & inner
    spleen_hu = rng.uniform(45, 60) + enhance
    texture = _smooth_field(rng, grid, rng.uniform(4, 10)) * rng.uniform(4, 10)
    hu[spleen] = spleen_hu + texture[spleen]
    # Fat around the organ, so it is not fused with the liver in every case.
    box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in np.nonzero(spleen))
    rim = np.zeros_like(spleen)
    rim[box] = ndimage.binary_dilation(spleen[box])
    rim &= ~spleen & inner & (hu > -500)
    hu[rim] = -90.0 if rng.random() < 0.5 else soft

    # Acquisition: reconstruction blur (partial volume), correlated noise, calibration.
    blur = (0.5 * pixel * (1.6 if external else 1.0), 0.5 * pixel * (1.6 if external else 1.0), 0.35 * dz)
    hu = _blur(hu, blur, grid.spacing)
    noise_sd = rng.uniform(22, 38) if external else rng.uniform(8, 20)
    noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape).astype(np.float32), 0.6)
    hu += noise * (noise_sd / noise.std())
    if external:  # another scanner's calibration: water is not exactly 0 HU
        hu = hu * rng.uniform(0.92, 1.0) + rng.uniform(25, 45)
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return SyntheticCase(image, spleen.astype(np.uint8), grid.spacing)


# ---------------------------------------------------------------------------------------------------
# MR prostate (T2)
# ---------------------------------------------------------------------------------------------------


def _prostate_case(rng: np.random.Generator, size: int, external: bool) -> SyntheticCase:
    # Grid: a small-FOV T2 prostate acquisition (PI-RADS: 12-20 cm), 3-4 mm slices.
    fov = rng.uniform(170, 240) if external else rng.uniform(130, 200)
    pixel = fov / size
    dz, z_extent = _slices(rng, pixel, (3.6, 4.5) if external else (3.0, 4.0), (66.0, 100.0), 1.3)
    nz = int(np.clip(round(z_extent / dz), 12, size))
    grid = _grid((size, size, nz), (pixel, pixel, dz))
    z_top = grid.z.max()

    # Tissue signal relative to fat = 1 (T2-weighted: fluid brightest, muscle dark, PZ bright, TZ mid).
    fat, muscle, fluid = 1.0, rng.uniform(0.2, 0.3), rng.uniform(1.4, 1.9)
    pz_signal = rng.uniform(0.45, 0.65) if external else rng.uniform(0.6, 0.9)
    tz_signal = rng.uniform(0.3, 0.45)
    signal = np.zeros(grid.shape, dtype=np.float32)

    # Pelvis: often wider than the small field of view, so cut at the sides.
    a0, b0 = rng.uniform(0.45, 0.65) * fov, rng.uniform(0.35, 0.45) * fov
    cx, cy = rng.uniform(-0.05, 0.05) * fov, rng.uniform(-0.02, 0.08) * fov
    body = _elliptic_cylinder(grid, cx, cy, a0, b0)
    inner = _elliptic_cylinder(grid, cx, cy, a0 - rng.uniform(15, 35), b0 - rng.uniform(12, 30))
    signal[body] = fat
    signal[inner] = 0.5 * (fat + muscle)
    mix = _smooth_field(rng, grid, rng.uniform(12, 25))
    signal[inner & (mix > 0.2)] = fat  # ischiorectal and periprostatic fat
    signal[inner & (mix < -0.6)] = muscle

    # Gland geometry (mm): varies in size (BPH) and position.
    enlarge = rng.uniform(0.8, 1.45)
    semi = (rng.uniform(18, 24) * enlarge, rng.uniform(13, 17) * enlarge, rng.uniform(15, 21) * enlarge)
    px, py = cx + rng.uniform(-4, 4), cy - 0.1 * b0 + rng.uniform(-6, 6)
    pz_c = rng.uniform(-0.25, 0.15) * z_top
    rot = _rotation(rng.uniform(-0.15, 0.15), rng.uniform(-0.35, 0.05))

    # Obturator internus and levator muscles either side; femoral heads further out.
    for side in (-1, 1):
        ox = px + side * (semi[0] + rng.uniform(15, 25))
        signal[_ellipsoid(grid, (ox, py, pz_c), (10, 30, 60))] = muscle
        head_centre = (px + side * rng.uniform(75, 95), py + 10, pz_c + rng.uniform(10, 30))
        head = _ellipsoid(grid, head_centre, (24, 24, 24))
        marrow = _ellipsoid(grid, head_centre, (20, 20, 20))
        signal[head] = 0.05
        signal[head & marrow] = rng.uniform(0.7, 0.9)
    # Pubic symphysis in front of the gland.
    signal[_ellipsoid(grid, (px, py + semi[1] + rng.uniform(20, 30), pz_c + 10), (25, 10, 25))] = 0.08

    # Rectum behind the gland: dark wall, lumen with gas or content; bladder above, bright fluid.
    ry = py - semi[1] - rng.uniform(12, 18)
    rectum = _elliptic_cylinder(grid, px, ry, rng.uniform(14, 20), rng.uniform(10, 15))
    lumen = _elliptic_cylinder(grid, px, ry, 8.0, 5.0)
    signal[rectum] = muscle
    coil = (not external) and rng.random() < 0.6
    signal[lumen] = 0.02 if coil or rng.random() < 0.5 else 0.5
    bz = pz_c + semi[2] + rng.uniform(15, 35)
    bsemi = tuple(rng.uniform(25, 45, 3))
    signal[_ellipsoid(grid, (px, py + 5, bz), tuple(s + 3 for s in bsemi))] = muscle
    signal[_ellipsoid(grid, (px, py + 5, bz), bsemi)] = fluid

    # The gland: capsule (dark rim), transition zone (anterior, superior, heterogeneous) and peripheral zone.
    warp = rng.uniform(0.05, 0.12) * _smooth_field(rng, grid, rng.uniform(12, 20))
    gland = _ellipsoid(grid, (px, py, pz_c), semi, rot, warp)
    capsule = _ellipsoid(grid, (px, py, pz_c), tuple(s + 1.5 for s in semi), rot, warp)
    # Benign hyperplasia grows the transition zone: bigger glands have a larger share of TZ.
    tz_scale = min(0.9, rng.uniform(0.55, 0.72) + 0.3 * (enlarge - 0.8))
    tz_semi = (semi[0] * tz_scale, semi[1] * tz_scale, semi[2] * tz_scale)
    tz = _ellipsoid(grid, (px, py + semi[1] * rng.uniform(0.2, 0.35), pz_c + semi[2] * rng.uniform(0.05, 0.25)), tz_semi, rot, warp * 0.8)
    tz &= gland
    pz = gland & ~tz
    if not pz.any() or not tz.any():  # thin slab missed a zone: make the zones split the gland front/back
        tz = gland & (grid.y > py)
        pz = gland & ~tz
    signal[capsule] = 0.15
    nodules = _smooth_field(rng, grid, rng.uniform(4, 8))
    signal[pz] = pz_signal * (1 + 0.08 * nodules[pz])
    signal[tz] = tz_signal * (1 + rng.uniform(0.15, 0.3) * nodules[tz])

    # Acquisition: blur, bias field (body coil drift; endorectal coil hot spot), Rician noise, arbitrary scale.
    signal = _blur(signal, (0.45 * pixel, 0.45 * pixel, 0.3 * dz), grid.spacing)
    bias = np.exp(rng.uniform(0.15, 0.35) * _smooth_field(rng, grid, rng.uniform(120, 200)))
    if coil:
        dist = np.sqrt((grid.x - px) ** 2 + (grid.y - ry) ** 2 + ((grid.z - pz_c) / 1.5) ** 2)
        bias = bias * (1 + rng.uniform(1.0, 3.0) * np.exp(-dist / rng.uniform(20, 35)))
    signal = signal * bias
    noise_sd = rng.uniform(0.05, 0.09) if external else rng.uniform(0.02, 0.05)
    real = signal + noise_sd * rng.standard_normal(grid.shape, dtype=np.float32)
    imag = noise_sd * rng.standard_normal(grid.shape, dtype=np.float32)
    magnitude = np.sqrt(real**2 + imag**2)
    scale = 10 ** (rng.uniform(1.6, 2.4) if external else rng.uniform(2.3, 3.2))
    image = np.clip(np.rint(magnitude * scale), 0, 32767).astype(np.int16)
    label = np.zeros(grid.shape, dtype=np.uint8)
    label[pz] = 1
    label[tz] = 2
    return SyntheticCase(image, label, grid.spacing)


# ---------------------------------------------------------------------------------------------------
# MR brain tumour (FLAIR, T1w, T1gd, T2w), after BraTS as MSD Task01 ships it: skull-stripped, 4 channels
# ---------------------------------------------------------------------------------------------------

#: Relative signal of each tissue in (FLAIR, T1w, T1gd, T2w). Each tumour class differs from the brain and from
#: the other classes in another channel, so a network needs every channel (as with real BraTS data).
_BRAIN_SIGNAL = {
    "white": (0.50, 0.85, 0.85, 0.35),
    "grey": (0.62, 0.62, 0.64, 0.52),
    "csf": (0.12, 0.18, 0.20, 1.00),
    "edema": (1.00, 0.50, 0.52, 0.85),  # label 1: bright FLAIR
    "core": (0.55, 0.30, 0.34, 0.95),  # label 2: dark T1, bright T2, no enhancement
    "enhancing": (0.70, 0.55, 1.00, 0.60),  # label 3: bright T1gd only
}


def _brain_case(rng: np.random.Generator, size: int, external: bool) -> SyntheticCase:
    # Grid: BraTS volumes are 240 x 240 x 155 mm at 1 mm; here the matrix is size x size, slices as thick or thicker.
    fov = rng.uniform(220, 250)
    pixel = fov / size
    dz = pixel * (rng.uniform(1.3, 2.0) if external else rng.uniform(1.0, 1.3))
    nz = int(np.clip(round(rng.uniform(140, 160) / dz), 16, size))
    grid = _grid((size, size, nz), (pixel, pixel, dz))
    z_top = float(grid.z.max())

    # Brain: a warped ellipsoid (skull-stripped: zero outside), grey matter cortex, white matter inside,
    # two ventricles near the midline.
    semi = (rng.uniform(62, 72), rng.uniform(78, 90), min(rng.uniform(55, 68), 0.95 * z_top))
    centre = (rng.uniform(-6, 6), rng.uniform(-8, 8), rng.uniform(-0.1, 0.1) * z_top)
    rotation = _rotation(rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15))
    warp = 0.06 * _smooth_field(rng, grid, 40)
    brain = _ellipsoid(grid, centre, semi, rotation, warp)
    white = _ellipsoid(grid, centre, tuple(s * rng.uniform(0.72, 0.82) for s in semi), rotation, warp + 0.08 * _smooth_field(rng, grid, 15)) & brain
    tissue = np.zeros(grid.shape, dtype=np.uint8)  # 0 outside, 1 grey, 2 white, 3 CSF
    tissue[brain] = 1
    tissue[white] = 2
    for side in (-1, 1):
        ventricle = _ellipsoid(
            grid, (centre[0] + side * rng.uniform(6, 12), centre[1] + rng.uniform(-5, 10), centre[2] + rng.uniform(0, 12)),
            (rng.uniform(4, 8), rng.uniform(18, 28), rng.uniform(8, 14)), rotation,
        )
        tissue[ventricle & brain] = 3

    # Tumour in one hemisphere: oedema (label 1) around a core; the core's rim enhances (label 3), its inside
    # is necrotic or non-enhancing (label 2). Sizes vary about 5x in volume between cases.
    radius = rng.uniform(16, 28)
    side = rng.choice((-1, 1))
    tumour_c = (
        centre[0] + side * rng.uniform(0.25, 0.5) * semi[0],
        centre[1] + rng.uniform(-0.45, 0.45) * semi[1],
        centre[2] + rng.uniform(-0.35, 0.35) * semi[2],
    )
    tumour_rot = _rotation(rng.uniform(0, math.pi), rng.uniform(-0.5, 0.5))
    tumour_warp = rng.uniform(0.1, 0.2) * _smooth_field(rng, grid, rng.uniform(8, 14))
    stretch = rng.uniform(0.75, 1.3, 3)
    core_semi = tuple(radius * s for s in stretch)
    # every class at least a voxel thick on the coarsest grid, so no phantom misses a class
    thick = max(pixel, dz)
    core = _ellipsoid(grid, tumour_c, core_semi, tumour_rot, tumour_warp) & brain
    inner_semi = tuple(max(s * rng.uniform(0.55, 0.75), thick) for s in core_semi)
    necrosis = _ellipsoid(grid, tumour_c, inner_semi, tumour_rot, tumour_warp * 0.5) & core
    oedema_semi = tuple(s * rng.uniform(1.4, 1.9) + thick for s in core_semi)
    oedema = _ellipsoid(grid, tumour_c, oedema_semi, tumour_rot, 1.5 * tumour_warp) & brain
    label = np.zeros(grid.shape, dtype=np.uint8)
    label[oedema] = 1
    label[core] = 3
    label[necrosis] = 2
    for value, fallback in ((1, oedema), (3, core), (2, necrosis)):
        if not (label == value).any():  # a slab grid missed a class: mark its centre voxel, so every class is present
            index = tuple(int(np.argmin(np.abs(a.reshape(-1) - c))) for a, c in zip((grid.x, grid.y, grid.z), tumour_c))
            offset = {1: 2, 3: 1, 2: 0}[value]
            label[index[0] + offset, index[1], index[2]] = value

    # Signals: tissue classes, then the tumour classes on top, with texture; per channel a bias field,
    # blur, Rician noise and its own arbitrary scale (MR has no absolute unit; BraTS sites differ).
    channels = []
    texture = _smooth_field(rng, grid, rng.uniform(3, 6))
    names = ("grey", "white", "csf")
    for channel in range(4):
        signal = np.zeros(grid.shape, dtype=np.float32)
        for code, name in enumerate(names, start=1):
            signal[tissue == code] = _BRAIN_SIGNAL[name][channel] * rng.uniform(0.95, 1.05)
        for value, name in ((1, "edema"), (2, "core"), (3, "enhancing")):
            signal[label == value] = _BRAIN_SIGNAL[name][channel] * rng.uniform(0.92, 1.08)
        signal = signal * (1 + 0.06 * texture) * brain
        signal = _blur(signal, (0.4 * pixel, 0.4 * pixel, 0.3 * dz), grid.spacing)
        signal = signal * np.exp(rng.uniform(0.05, 0.2) * _smooth_field(rng, grid, rng.uniform(100, 180)))
        noise_sd = rng.uniform(0.04, 0.07) if external else rng.uniform(0.015, 0.035)
        real = signal + noise_sd * rng.standard_normal(grid.shape, dtype=np.float32)
        imag = noise_sd * rng.standard_normal(grid.shape, dtype=np.float32)
        magnitude = np.sqrt(real**2 + imag**2) * brain  # skull-stripped: zero outside the brain
        scale = 10 ** (rng.uniform(1.8, 2.5) if external else rng.uniform(2.5, 3.2))
        channels.append(np.clip(np.rint(magnitude * scale), 0, 32767).astype(np.int16))
    return SyntheticCase(np.stack(channels, axis=-1), label, grid.spacing)


_MAKERS: dict[str, Callable[[np.random.Generator, int, bool], SyntheticCase]] = {
    "spleen": _spleen_case,
    "prostate": _prostate_case,
    "brain": _brain_case,
}


def synthetic_case(task: Task, index: int, *, size: int = 64, seed: int = 0, external: bool = False) -> SyntheticCase:
    """Draw one phantom, exactly as :func:`write_synthetic_dataset` writes case ``index``.

    Args:
        task: ``"spleen"`` (CT, label 1 spleen), ``"prostate"`` (T2 MR, labels 1 PZ and 2 TZ) or
            ``"brain"`` (4-channel MR, labels 1 oedema, 2 non-enhancing core, 3 enhancing tumour).
        index: the case number (0-based); each case has its own generator, seeded by
            ``(seed, task, external, index)``.
        size: in-plane matrix size X = Y; the slice count Z varies per case.
        seed: the data set's seed.
        external: draw from the shifted "other scanner" domain.

    Returns:
        The (X, Y, Z) int16 image ((X, Y, Z, 4) for ``brain``), the uint8 label (never empty; a brain
        phantom holds every class) and the spacing in mm.

    Example:
        >>> case = synthetic_case("spleen", 0, size=32)
        >>> case.image.shape[:2], int(case.label.max())
        ((32, 32), 1)

    Raises:
        ValueError: for an unknown ``task``, or ``index``, ``size`` or ``seed`` out of range.
    """
    if task not in _MAKERS:
        raise ValueError(f"task must be one of {sorted(_MAKERS)}, got {task!r}")
    if index < 0 or seed < 0 or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"need index >= 0, seed >= 0 and {MIN_SIZE} <= size <= {MAX_SIZE}; got index={index}, seed={seed}, size={size}")
    rng = np.random.default_rng([seed, _TASK_CODE[task], int(external), index])
    return _MAKERS[task](rng, size, external)


def _check_arguments(task: str, out: Path, cases: int, size: int, seed: int) -> None:
    if task not in TASKS:
        raise ConfigError(out, f"task must be one of {sorted(TASKS)}, got {task!r}", "choose spleen, prostate or brain")
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ConfigError(out, f"cases must be an integer >= 1, got {cases!r}", "pass --cases 1 or more")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(out, f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}", f"pass --size between {MIN_SIZE} and {MAX_SIZE} (96-128 looks realistic)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(out, f"seed must be a non-negative integer, got {seed!r}", "pass --seed 0 or another non-negative integer")


def _save_nifti(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    # Origin at the volume centre, axes aligned with RAS; qform and sform both "scanner", as MSD files carry.
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(array.shape[:3]) - 1) / 2 * np.asarray(spacing)  # a 4th axis holds channels
    image = nib.Nifti1Image(array, affine, dtype=array.dtype)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    with storage.naming_failed_writes(path):  # a full disk fails gzip's write() without a file name
        nib.save(image, path)


def write_synthetic_dataset(
    task: Task,
    out: str | os.PathLike[str],
    *,
    cases: int = 12,
    size: int = 64,
    seed: int = 0,
    external: bool = False,
    progress: bool = False,
) -> Path:
    """Write a Medical Segmentation Decathlon folder of synthetic phantoms.

    The folder holds ``dataset.json``, ``imagesTr/<prefix>_<i>.nii.gz`` and ``labelsTr/<prefix>_<i>.nii.gz``
    (``i`` from 1; prefix ``spleen``/``prostate``/``BRATS``, or ``btcv_like``/``prostatex_like``/
    ``brats_other_site`` for the external domain). It is built in a temporary sibling folder and renamed into place, so a reader never sees a
    partial data set and a failure leaves nothing behind.

    Args:
        task: ``"spleen"`` (CT, ``labels`` 0 background, 1 spleen), ``"prostate"`` (single-channel T2 MR,
            ``labels`` 0 background, 1 PZ, 2 TZ) or ``"brain"`` (4-D images of 4 MR channels, modality axis
            last, ``modality`` FLAIR, T1w, t1gd, T2w; ``labels`` 0 background, 1 edema, 2 non-enhancing
            tumor, 3 enhancing tumour; ``tensorImageSize`` "4D").
        out: the folder to create; it must not exist or be empty.
        cases: number of training cases.
        size: in-plane matrix size (X = Y); slice counts vary per case. 64 is quick, 96-128 realistic.
        seed: seed; the same arguments give the same voxels.
        external: write the shifted "other scanner" domain for external validation.
        progress: show a progress bar.

    Returns:
        The path of the written ``dataset.json``.

    Raises:
        ConfigError: for a task, case count, size or seed out of range.
        DataError: if ``out`` exists and is not an empty folder.

    Example:
        >>> import pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "spleen"
        >>> path = write_synthetic_dataset("spleen", out, cases=2, size=32)
        >>> path.name, sorted(p.name for p in out.iterdir())
        ('dataset.json', ['dataset.json', 'imagesTr', 'labelsTr'])
    """
    out = Path(out)
    _check_arguments(task, out, cases, size, seed)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "already exists and is not empty", "choose a new --out or delete it")
    spec = TASKS[task]
    prefix = spec["prefix"][int(external)]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the data set is not
        (staging / "imagesTr").mkdir()
        (staging / "labelsTr").mkdir()
        training = []
        for index in track(range(cases), f"writing {cases} synthetic {task} cases", enabled=progress):
            case = synthetic_case(task, index, size=size, seed=seed, external=external)
            name = f"{prefix}_{index + 1}.nii.gz"
            _save_nifti(case.image, case.spacing, staging / "imagesTr" / name)
            _save_nifti(case.label, case.spacing, staging / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        document = {
            "name": spec["name"] + ("External" if external else ""),
            "description": (spec["about_external"] if external else spec["about"]) + "; generated by proxyhpo synth",
            "reference": "proxyhpo synthetic phantoms (not patient data)",
            "licence": "CC0-1.0",
            "tensorImageSize": "4D" if len(spec["modality"]) > 1 else "3D",
            "modality": spec["modality"],
            "labels": spec["labels"],
            "numTraining": cases,
            "numTest": 0,
            "training": training,
            "test": [],
            "proxyhpo_synthetic": {"task": task, "cases": cases, "size": size, "seed": seed, "external": external},
        }
        (staging / "dataset.json").write_text(json.dumps(document, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a directory on every platform
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "dataset.json"
