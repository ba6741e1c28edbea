"""What a trial runs with: the data recipe, the hyper-parameters, and the trial plan file.

A :class:`TrialPlan` is what ``proxyhpo train TRIAL.yaml`` reads. It names a :class:`Recipe` (a preset
from ``proxyhpo/presets/*.yaml`` or an inline one), the train / validation / optional external test
cases, the schedule, and one or more :class:`TrialSpec` (several make a pack that is trained at once).
Every model here is frozen, versioned and rejects unknown keys.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from proxyhpo.errors import ConfigError
from proxyhpo.networks import NetworkConfig

__all__ = [
    "HUWindow",
    "Normalize",
    "Recipe",
    "HyperParameters",
    "FaultInjection",
    "TrialSpec",
    "DataItem",
    "TrialPlan",
    "PRESETS",
    "load_preset",
    "validation_error_to_config_error",
]

#: Names of the recipe presets shipped in ``proxyhpo/presets``.
PRESETS = ("spleen", "prostate", "demo")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HUWindow(_Record):
    """CT intensities: clip to the HU window ``[a_min, a_max]`` and scale to ``[0, 1]``."""

    kind: Literal["hu_window"] = "hu_window"
    a_min: float
    a_max: float

    @model_validator(mode="after")
    def _ordered(self) -> HUWindow:
        if not self.a_min < self.a_max:
            raise ValueError(f"a_min must be below a_max, got a_min={self.a_min}, a_max={self.a_max}")
        return self


class Normalize(_Record):
    """MR intensities: zero mean, unit variance over the non-zero voxels of each channel."""

    kind: Literal["normalize"] = "normalize"


Size3 = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]


class Recipe(_Record):
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
    channel: int | None = Field(default=None, ge=0)
    patch_size: Size3
    num_samples: int = Field(default=4, ge=1)
    pos: float = Field(default=1.0, ge=0)
    neg: float = Field(default=1.0, ge=0)
    roi_size: Size3 = (160, 160, 160)
    sw_batch_size: int = Field(default=4, ge=1)
    label_merge: dict[int, int] = Field(default_factory=dict)
    pad: bool = True
    crop_foreground: bool = True
    intensity_shift_offset: float = Field(default=0.1, ge=0)

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, v: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if v is not None and any(s <= 0 for s in v):
            raise ValueError(f"every spacing must be > 0 mm, got {v}")
        return v

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
    text = resources.files("proxyhpo").joinpath("presets", f"{name}.yaml").read_text()
    return Recipe.model_validate(yaml.safe_load(text))


class HyperParameters(_Record):
    """The searched hyper-parameters of a trial (the paper's HPO space).

    Args:
        lr: learning rate, > 0.
        optimizer: ``adam``, ``rmsprop``, ``adamax`` (torch) or ``novograd`` (MONAI).
        intensity_shift_prob: probability of the random intensity shift augmentation, in [0, 1].
    """

    lr: float = Field(gt=0)
    optimizer: Literal["adam", "rmsprop", "adamax", "novograd"] = "adam"
    intensity_shift_prob: float = Field(default=0.0, ge=0, le=1)

    @field_validator("lr")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"lr must be finite, got {v}")
        return v


class FaultInjection(_Record):
    """FOR TESTING ONLY: make a trial fail on purpose to exercise the failure path of a pack.

    ``kind="nan"`` turns the trial's loss into NaN at optimiser step ``step`` (1-based, counted over
    the whole run); ``kind="oom"`` raises ``torch.OutOfMemoryError`` from that step on whenever the
    trial's model is part of the computation, as a real out-of-memory would.
    """

    kind: Literal["nan", "oom"]
    step: int = Field(default=1, ge=1)


class TrialSpec(_Record):
    """One trial: its id, hyper-parameters, network and seed.

    Args:
        trial_id: unique id within the plan (used in result files and MLflow run names).
        hyper: the hyper-parameters.
        network: the network config (full or proxy).
        seed: seeds the network initialisation, the data order and the random augmentations; the
            same seed gives the same trial whether it is trained alone or in a pack.
        data_label: label of the training data (e.g. ``full``, ``mi-8``), recorded in the result.
        round: controller round that proposed the trial, if any.
        tags: free-form string tags copied into the result.
        fault: testing only, see :class:`FaultInjection`.
    """

    trial_id: str = Field(min_length=1)
    hyper: HyperParameters
    network: NetworkConfig = Field(default_factory=lambda: NetworkConfig.proxy(3))
    seed: int = Field(default=0, ge=0)
    data_label: str = "full"
    round: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    fault: FaultInjection | None = None


class DataItem(_Record):
    """One case: image and label NIfTI paths (absolute, or relative to the plan file)."""

    image: str
    label: str


class TrialPlan(_Record):
    """The input of ``proxyhpo train``: data, recipe, schedule, and one trial or a pack of trials.

    Args:
        recipe: a preset name (see :data:`PRESETS`) or an inline :class:`Recipe`.
        train: training cases.
        val: validation cases (Dice is reported on these).
        test: optional external test cases, evaluated once after training with the best-validation
            weights.
        epochs: training epochs (one epoch visits every training volume once).
        val_every: validate every this many epochs (and always after the last).
        batch_size: volumes per step; each gives ``recipe.num_samples`` patches.
        trials: the trials; several are trained together as packs.
        pack_size: models per pack, or ``"auto"`` (from free GPU memory; 4 on a CPU).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        cache_dir: when set, preprocessed volumes are cached on disk there (``PersistentDataset``) and
            reused across trials; otherwise they are cached in memory for the run (``CacheDataset``).
        save_model_dir: when set, each trial's best-validation weights are saved there as
            ``<trial_id>.pt`` (a ``state_dict``).
        num_workers: threads used to preprocess volumes into the cache.
    """

    schema_version: Literal[1] = 1
    recipe: str | Recipe = "demo"
    train: list[DataItem] = Field(min_length=1)
    val: list[DataItem] = Field(min_length=1)
    test: list[DataItem] = Field(default_factory=list)
    epochs: int = Field(default=10, ge=1)
    val_every: int = Field(default=1, ge=1)
    batch_size: int = Field(default=2, ge=1)
    trials: list[TrialSpec] = Field(min_length=1)
    pack_size: int | Literal["auto"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str | None = None
    save_model_dir: str | None = None
    num_workers: int = Field(default=2, ge=0)

    @field_validator("recipe")
    @classmethod
    def _known_preset(cls, v: str | Recipe) -> str | Recipe:
        if isinstance(v, str) and v not in PRESETS:
            raise ValueError(f"recipe preset {v!r} does not exist; use one of {', '.join(PRESETS)} or an inline recipe")
        return v

    @field_validator("pack_size")
    @classmethod
    def _positive_pack(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"pack_size must be >= 1 or 'auto', got {v}")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> TrialPlan:
        ids = [t.trial_id for t in self.trials]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"trial_id values must be unique, repeated: {', '.join(dupes)}")
        return self

    def resolved_recipe(self) -> Recipe:
        """The recipe itself: the preset loaded when ``recipe`` is a name."""
        return load_preset(self.recipe) if isinstance(self.recipe, str) else self.recipe

    def with_paths_relative_to(self, folder: str | Path) -> TrialPlan:
        """A copy whose relative data paths (and cache/model folders) are resolved against ``folder``."""
        base = Path(folder).absolute()

        def fix(p: str | None) -> str | None:
            if p is None or "://" in p:
                return p
            return str(p if Path(p).is_absolute() else base / p)

        def items(lst: list[DataItem]) -> list[DataItem]:
            return [DataItem(image=fix(i.image), label=fix(i.label)) for i in lst]

        return self.model_copy(
            update={
                "train": items(self.train),
                "val": items(self.val),
                "test": items(self.test),
                "cache_dir": fix(self.cache_dir),
                "save_model_dir": fix(self.save_model_dir),
            }
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrialPlan:
        """Read and validate a plan file; relative paths in it are resolved against its folder.

        Raises:
            ConfigError: naming the file and the offending key when the YAML is malformed or invalid.
        """
        path = Path(path)
        try:
            raw: Any = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(path, "file does not exist", "give the path of a trial plan YAML file") from None
        except yaml.YAMLError as e:
            raise ConfigError(path, f"is not valid YAML ({' '.join(str(e).split())})", "fix the YAML syntax") from None
        if not isinstance(raw, dict):
            raise ConfigError(path, f"top level is a {type(raw).__name__}, expected a mapping", "write key: value pairs")
        try:
            plan = cls.model_validate(raw)
        except ValidationError as e:
            raise validation_error_to_config_error(e, path) from None
        return plan.with_paths_relative_to(path.parent)


def validation_error_to_config_error(err: ValidationError, path: str | Path) -> ConfigError:
    """Turn the first pydantic error into a :class:`ConfigError` that names the key (dotted path)."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<top level>"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        return ConfigError(path, f"key '{key}' is not known", "remove it or check its spelling")
    if first["type"] == "missing":
        return ConfigError(path, f"key '{key}' is missing", f"add '{key}'")
    got = first.get("input")
    shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
    more = f" and {err.error_count() - 1} more problem(s)" if err.error_count() > 1 else ""
    return ConfigError(path, f"key '{key}': {msg}{shown}{more}", f"correct '{key}'")
