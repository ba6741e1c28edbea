"""Feeding trials: cached preprocessed volumes and per-trial random patch streams.

The deterministic part of a recipe (load, orient to RAS, resample, intensity window or normalisation,
label merge, foreground crop, pad, foreground/background voxel indices) runs once per volume and is
cached — in memory (``CacheDataset``) or on disk (``PersistentDataset``) — and the cached volumes are
moved to the training device. The random part (``RandCropByPosNegLabeld`` and ``RandShiftIntensityd``)
then only slices and shifts tensors already on the device, so on a GPU no volume crosses the bus during
training. Every trial has its own :class:`PatchStream` (own shuffling, own crop centres, own shift), so a
trial sees the same patches whether it trains alone or in a pack.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, PersistentDataset
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    FgBgToIndicesd,
    Lambdad,
    LoadImaged,
    MapLabelValued,
    NormalizeIntensityd,
    Orientationd,
    RandCropByPosNegLabeld,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from proxyhpo.config.base import brief
from proxyhpo.errors import DataError
from proxyhpo.config import DataItem, HUWindow, Recipe

__all__ = ["preprocess_transforms", "random_transforms", "cache_volumes", "image_channels", "PatchStream"]

_FG = "label_fg_indices"
_BG = "label_bg_indices"


def _select_channel(img: torch.Tensor, channel: int) -> torch.Tensor:
    # Keep one channel of a multi-channel volume (MSD prostate: 0 = T2); single-channel images pass.
    return img[channel : channel + 1] if img.shape[0] > 1 else img


def preprocess_transforms(recipe: Recipe, device: torch.device | str = "cpu", *, training: bool = True) -> Compose:
    """The deterministic, cacheable transforms of a recipe.

    Args:
        recipe: the data recipe.
        device: where the output tensors are placed.
        training: also compute the foreground/background voxel indices used by the patch sampler.

    Returns:
        a ``Compose`` mapping ``{"image": path, "label": path}`` to ``{"image": (C, D, H, W) float32,
        "label": (1, D, H, W) float32}`` tensors on ``device`` (plus index arrays when ``training``).
    """
    keys = ("image", "label")
    tf: list = [LoadImaged(keys=keys, image_only=True), EnsureChannelFirstd(keys=keys)]
    if recipe.channel is not None:
        tf.append(Lambdad(keys="image", func=functools.partial(_select_channel, channel=recipe.channel)))
    if recipe.label_merge:
        src = sorted(recipe.label_merge)
        tf.append(MapLabelValued(keys="label", orig_labels=src, target_labels=[recipe.label_merge[s] for s in src]))
    tf.append(Orientationd(keys=keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))))
    if recipe.spacing is not None:
        tf.append(Spacingd(keys=keys, pixdim=recipe.spacing, mode=("bilinear", "nearest")))
    if isinstance(recipe.intensity, HUWindow):
        tf.append(
            ScaleIntensityRanged(
                keys="image", a_min=recipe.intensity.a_min, a_max=recipe.intensity.a_max, b_min=0.0, b_max=1.0, clip=True
            )
        )
    else:
        tf.append(NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True))
    if recipe.crop_foreground:
        tf.append(CropForegroundd(keys=keys, source_key="image", allow_smaller=True))
    if recipe.pad:
        tf.append(SpatialPadd(keys=keys, spatial_size=recipe.patch_size))
    if training:
        tf.append(FgBgToIndicesd(keys="label"))
    # Plain tensors from here on: the random crops are then bare slicing, with no metadata bookkeeping.
    tf.append(EnsureTyped(keys=keys, dtype=torch.float32, device=torch.device(device), track_meta=False))
    return Compose(tf)


def random_transforms(recipe: Recipe, intensity_shift_prob: float) -> Compose:
    """The random part of a recipe: foreground/background patch sampling and the intensity shift.

    Args:
        recipe: the data recipe (patch size, samples per volume, pos/neg ratio, shift offset).
        intensity_shift_prob: probability of ``RandShiftIntensityd`` (the hyper-parameter).

    Returns:
        a ``Compose`` mapping a cached volume to a list of ``recipe.num_samples`` patch dicts.
    """
    if not 0.0 <= intensity_shift_prob <= 1.0:
        raise ValueError(f"intensity_shift_prob must be in [0, 1], got {intensity_shift_prob}")
    return Compose(
        [
            RandCropByPosNegLabeld(
                keys=("image", "label"),
                label_key="label",
                spatial_size=recipe.patch_size,
                pos=recipe.pos,
                neg=recipe.neg,
                num_samples=recipe.num_samples,
                fg_indices_key=_FG,
                bg_indices_key=_BG,
            ),
            RandShiftIntensityd(keys="image", offsets=recipe.intensity_shift_offset, prob=intensity_shift_prob),
        ]
    )


def _check_files(items: Sequence[DataItem], recipe: Recipe, what: str) -> None:
    """The data layer's checks on every case of a plan, before MONAI sees a file.

    A file MONAI cannot read may abort the process or be reported as a MONAI object; a NaN voxel or a
    fractional label trains without a word. :func:`proxyhpo.data.msd.read_volumes` refuses each with
    one line naming the file.
    """
    from proxyhpo.data.checks import check_resampled
    from proxyhpo.data.msd import read_volumes

    for i, it in enumerate(items):
        for key in ("image", "label"):
            p = getattr(it, key)
            if "\x00" in p or not os.path.isfile(p):
                raise DataError(p, f"{what}[{i}].{key} does not exist", "check the path in the trial plan")
        # without a channel to keep, every channel goes to the network: every case must have as many
        volumes = read_volumes(it.image, it.label, channel=recipe.channel, channels=None)
        check_resampled(volumes.image.shape, volumes.spacing, recipe, it.image)
        found = volumes.image.shape[3] if volumes.image.ndim == 4 else 1
        if i == 0:
            first = found
        elif found != first:
            raise DataError(
                it.image,
                f"({what}[{i}]) is {_channels_text(found)} but {what}[0] {items[0].image} is {_channels_text(first)}",
                "give every case the same channels (4D, channels last), or keep one with the recipe's channel",
            )


def _channels_text(channels: int) -> str:
    return f"4D with {channels} channels" if channels > 1 else "3D (one channel)"


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _preprocess_error(item: DataItem | None, what: str, exc: BaseException) -> DataError:
    cause = _root_cause(exc)
    problem = f"cannot be preprocessed by the plan's recipe ({type(cause).__name__}: {brief(str(cause).splitlines()[0] if str(cause) else '')})"
    if item is None:
        return DataError(f"<{what}>", f"a case {problem}", "check the NIfTI files and the recipe")
    return DataError(item.image, f"({what}) {problem}", "check the image and its label, and the recipe's spacing and patch size")


def cache_volumes(
    items: Sequence[DataItem],
    recipe: Recipe,
    device: torch.device | str,
    *,
    training: bool,
    cache_dir: str | None = None,
    num_workers: int = 2,
    what: str = "train",
    num_classes: int = 2,
) -> list[dict]:
    """Preprocess ``items`` once and return the cached volumes on ``device``.

    Args:
        items: the cases.
        recipe: the data recipe.
        device: the training device.
        training: include the patch sampler's voxel indices.
        cache_dir: when set, cache on disk there (``PersistentDataset``), keyed by the recipe, so later
            trials with the same recipe skip preprocessing.
        num_workers: threads for in-memory caching.
        what: name of the list in the plan, for error messages.
        num_classes: classes the networks segment, background included: label values must be below it.

    Returns:
        one dict per case with ``image`` ``(C, D, H, W)`` (every channel of a 4D image, or the recipe's
        ``channel``) and ``label`` ``(1, D, H, W)`` class-index tensors.

    Raises:
        DataError: when a file is missing or cannot be read, a label value is not one of the classes, or
            the cases differ in their channels.
    """
    _check_files(items, recipe, what)
    data = [{"image": it.image, "label": it.label} for it in items]
    # Cache on the CPU; move to the device afterwards (PersistentDataset pickles its cache to disk).
    tf = preprocess_transforms(recipe, "cpu", training=training)
    if cache_dir:
        key = hashlib.sha256(recipe.model_dump_json().encode() + bytes([training])).hexdigest()[:16]
        ds = PersistentDataset(data, transform=tf, cache_dir=Path(cache_dir) / f"recipe-{key}")
        out = []
        for i, it in enumerate(items):
            try:
                out.append(ds[i])
            except Exception as e:  # MONAI wraps reader and transform errors in RuntimeError
                raise _preprocess_error(it, what, e) from None
    else:
        try:
            ds = CacheDataset(data, transform=tf, cache_rate=1.0, num_workers=max(1, num_workers), progress=False)
            out = [ds[i] for i in range(len(ds))]
        except Exception as e:  # find the case that fails, to name its file rather than a MONAI object
            for it, d in zip(items, data):
                try:
                    tf(dict(d))
                except Exception as inner:
                    raise _preprocess_error(it, what, inner) from None
            raise _preprocess_error(None, what, e) from None
    for it, d in zip(items, out):
        top = float(d["label"].max()) if d["label"].numel() else 0.0
        if top > num_classes - 1:
            raise DataError(
                it.label,
                f"label values go up to {top:g} but the plan's networks segment {num_classes} classes (0..{num_classes - 1})",
                "list every class in the plan's 'classes' (a study takes them from dataset.json 'labels'), or merge values with the recipe's label_merge, e.g. {2: 1}",
            )

    # Volumes go to the device; the voxel indices stay on the CPU, where crop centres are drawn.
    dev = torch.device(device)
    return [{k: (v.to(dev) if k in ("image", "label") else v) for k, v in d.items()} for d in out]


def image_channels(volumes: dict[str, list[dict]]) -> int:
    """The image channels every cached set of a run shares: the networks' input width.

    Args:
        volumes: cached volumes by set (``train``, ``val``, ...), each from :func:`cache_volumes`.

    Raises:
        DataError: when two sets differ in their channels.
    """
    widths = {name: int(cached[0]["image"].shape[0]) for name, cached in volumes.items() if cached}
    if len(set(widths.values())) > 1:
        raise DataError("<plan>", f"its sets differ in image channels ({', '.join(f'{k} {v}' for k, v in widths.items())})", "give every set the same channels")
    return next(iter(widths.values()))


class PatchStream:
    """The training patches of one trial: its own case order, crop centres and intensity shifts.

    Args:
        volumes: cached training volumes from :func:`cache_volumes` (``training=True``).
        recipe: the data recipe.
        batch_size: volumes per step.
        intensity_shift_prob: probability of the random intensity shift.
        seed: seeds the case order and the random transforms.

    Example:
        >>> stream = PatchStream(volumes, recipe, batch_size=2, intensity_shift_prob=0.5, seed=7)
        >>> for image, label in stream.epoch():   # image, label: (batch_size * num_samples, C, *patch)
        ...     pass
    """

    def __init__(
        self, volumes: list[dict], recipe: Recipe, batch_size: int, intensity_shift_prob: float, seed: int
    ) -> None:
        if not volumes:
            raise ValueError("volumes must not be empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.volumes = volumes
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.transform = random_transforms(recipe, intensity_shift_prob)
        self.transform.set_random_state(seed=seed % (2**32))

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch: ``ceil(len(volumes) / batch_size)``."""
        return -(-len(self.volumes) // self.batch_size)

    def epoch(self):
        """Yield ``(image, label)`` batches for one epoch, each ``(N, C, *patch_size)``."""
        order = self.rng.permutation(len(self.volumes))
        for start in range(0, len(order), self.batch_size):
            patches: list[dict] = []
            for i in order[start : start + self.batch_size]:
                patches.extend(self.transform(self.volumes[int(i)]))
            yield torch.stack([p["image"] for p in patches]), torch.stack([p["label"] for p in patches])
