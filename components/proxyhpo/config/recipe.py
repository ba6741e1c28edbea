"""The data recipe of a task (preprocessing, patch sampling, inference window) and its shipped presets.

Presets are YAML files in ``proxyhpo/presets``; every value the paper does not state is marked there as
this project's choice.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from proxyhpo.config.base import MAX_BATCH, MAX_SPACING_MM, MIN_SPACING_MM, StrictModel, check_patch_voxels, parse_config
from proxyhpo.errors import ConfigError

__all__ = ["HUWindow", "Normalize", "Recipe", "PRESETS", "load_preset", "resolve_recipe"]

#: Names of the recipe presets shipped in ``proxyhpo/presets``.
PRESETS = ("spleen", "prostate", "demo")


class HUWindow(StrictModel):
    """CT intensities: clip to the HU window ``[a_min, a_max]`` and scale to ``[0, 1]``."""

    kind: Literal["hu_window"] = "hu_window"
    a_min: float = Field(allow_inf_nan=False)
    a_max: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> HUWindow:
        if not self.a_min < self.a_max:
            raise ValueError(f"a_min must be below a_max, got a_min={self.a_min}, a_max={self.a_max}")
        return self


class Normalize(StrictModel):
    """MR intensities: zero mean, unit variance over the non-zero voxels of each channel."""

    kind: Literal["normalize"] = "normalize"


Size3 = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]


class Recipe(StrictModel):
    """The data recipe of a task: preprocessing, patch sampling and inference window.

    Args:
        name: recipe label (the preset name for presets).
        spacing: target voxel spacing in mm ``(x, y, z)`` after RAS orientation; ``None`` keeps the
            native spacing.
        intensity: :class:`HUWindow` (CT) or :class:`Normalize` (MR).
        channel: image channel to keep when volumes have several (prostate: 0 = T2); ``None`` keeps all.
        patch_size: training patch ``(D, H, W)``; each side a multiple of ``2**(levels-1)``.
        num_samples: patches drawn from each volume per step (a batch holds
            ``batch_size * num_samples`` patches).
        pos, neg: ratio of foreground-centred to background-centred patches.
        roi_size: sliding-window inference window for validation and test.
        sw_batch_size: windows per network call during sliding-window inference.
        label_merge: label values mapped to others, e.g. ``{2: 1}`` merges zone 2 into 1.
        pad: pad volumes to at least ``patch_size`` (``SpatialPadd``).
        crop_foreground: crop to the bounding box of non-zero intensities (``CropForegroundd``).
        intensity_shift_offset: offset range of the random intensity shift; its probability is the
            hyper-parameter ``intensity_shift_prob``.
    """

    schema_version: Literal[1] = 1
    name: str = "custom"
    spacing: tuple[float, float, float] | None = None
    intensity: HUWindow | Normalize = Field(discriminator="kind")
    channel: int | None = Field(default=None, ge=0, le=MAX_BATCH)
    patch_size: Size3
    num_samples: int = Field(default=4, ge=1, le=MAX_BATCH)
    pos: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    neg: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    roi_size: Size3 = (160, 160, 160)
    sw_batch_size: int = Field(default=4, ge=1, le=MAX_BATCH)
    label_merge: dict[int, int] = Field(default_factory=dict)
    pad: bool = True
    crop_foreground: bool = True
    intensity_shift_offset: float = Field(default=0.1, ge=0, allow_inf_nan=False)

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        # a spacing of 1e-6 mm would resample a CT to billions of voxels; NaN compares false with everything
        if v is not None and not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in v):
            raise ValueError(f"every spacing must be a number of mm from {MIN_SPACING_MM} to {MAX_SPACING_MM}, got {v}")
        return v

    @field_validator("patch_size", "roi_size")
    @classmethod
    def _patch_fits(cls, v: tuple[int, int, int], info: ValidationInfo) -> tuple[int, int, int]:
        return check_patch_voxels(v, info.field_name or "patch_size")

    @model_validator(mode="after")
    def _some_patches(self) -> Recipe:
        if self.pos + self.neg <= 0:
            raise ValueError("pos + neg must be > 0")
        return self


def load_preset(name: str) -> Recipe:
    """Load a recipe preset shipped with proxyhpo.

    Args:
        name: one of :data:`PRESETS` (``spleen``, ``prostate``, ``demo``).

    Returns:
        the validated :class:`Recipe`.

    Raises:
        ConfigError: when ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise ConfigError("<recipe>", f"recipe preset {name!r} does not exist", f"use one of {', '.join(PRESETS)}")
    source = resources.files("proxyhpo").joinpath("presets", f"{name}.yaml")
    return parse_config(Recipe, yaml.safe_load(source.read_text(encoding="utf-8")), f"presets/{name}.yaml")


def resolve_recipe(recipe: str | Recipe) -> Recipe:
    """The recipe itself: the preset loaded when ``recipe`` is a preset name."""
    return load_preset(recipe) if isinstance(recipe, str) else recipe
