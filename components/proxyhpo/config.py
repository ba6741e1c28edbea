"""Pydantic models of everything a user writes, and YAML loading with precise errors.

A study config is one YAML file (see ``examples/``). Unknown keys are rejected: a misspelt key is an
error naming the key and the file, never silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxyhpo.errors import ConfigError

__all__ = [
    "StrictModel",
    "SyntheticDataConfig",
    "DataConfig",
    "SimilarityConfig",
    "SelectionConfig",
    "SelectionMethod",
    "SELECTION_METHODS",
    "load_yaml",
    "load_config",
    "parse_config",
]

SelectionMethod = Literal["mi", "ncc", "mi+labelcrop", "ncc+labelcrop", "random"]
SELECTION_METHODS: tuple[str, ...] = ("mi", "ncc", "mi+labelcrop", "ncc+labelcrop", "random")


class StrictModel(BaseModel):
    """Base of every user-facing model: unknown keys are errors and records are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticDataConfig(StrictModel):
    """Generate a synthetic phantom data set when the data set folder does not exist yet."""

    task: Literal["spleen", "prostate"] = "spleen"
    cases: int = Field(12, ge=2, description="number of training cases")
    size: int = Field(64, ge=32, le=512, description="in-plane matrix size of the phantoms")
    seed: int = 0
    external_cases: int = Field(6, ge=0, description="cases of the shifted external domain (0: none)")


class DataConfig(StrictModel):
    """The data set a study runs on.

    Attributes:
        dataset: MSD folder or its dataset.json, local or s3://.
        external: optional MSD data set of another domain, used only for testing (external validation).
        synthetic: when set and ``dataset`` does not exist, phantoms are generated there first.
        merge_labels: label values mapped to others before training (the prostate task merges 2 into 1).
        holdout_fraction: share of the cases held out of the search as the internal test set of the final model.
        val_fraction: share of the search cases (the proxy data set, or all non-held-out cases) used for
            validation Dice during the search; the paper splits proxy data 50/50.
        split_seed: seed of both splits.
    """

    dataset: str
    external: str | None = None
    synthetic: SyntheticDataConfig | None = None
    merge_labels: dict[int, int] = Field(default_factory=dict)
    holdout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    split_seed: int = 0


class SimilarityConfig(StrictModel):
    """How volumes are compared (paper section 3)."""

    metric: Literal["mi", "ncc"] = "mi"
    crop: Literal["label", "none"] = "label"
    patch: int = Field(96, ge=8, description="side of the cubic patch every volume is resampled to")
    bins: int = Field(32, ge=2, description="histogram bins for mutual information")
    window: int = Field(9, ge=3, description="local window side for NCC")
    margin: int = Field(8, ge=0, description="voxels kept around the label's bounding box with crop=label")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SelectionConfig(StrictModel):
    """Which cases form the proxy data set: the ``budget`` least similar by ``method``, or a seeded random draw."""

    method: SelectionMethod = "mi+labelcrop"
    budget: int = Field(8, ge=2)
    seed: int = Field(0, ge=0)

    @property
    def metric(self) -> Literal["mi", "ncc"] | None:
        """The similarity metric the method uses (None for random)."""
        return None if self.method == "random" else self.method.split("+")[0]  # type: ignore[return-value]

    @property
    def crop(self) -> Literal["label", "none"]:
        """Whether the method crops to the label's region of interest."""
        return "label" if self.method.endswith("+labelcrop") else "none"


M = TypeVar("M", bound=BaseModel)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping from ``path``.

    Raises:
        ConfigError: when the file is missing, is not valid YAML or is not a mapping.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, f"cannot be read ({exc.strerror})", "check the path of the config file") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(file, f"is not valid YAML{where}", "fix the YAML syntax") from exc
    if not isinstance(document, dict):
        raise ConfigError(file, f"holds a {type(document).__name__}, not a mapping", "write the config as 'key: value' pairs")
    return document


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    key = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return key, f"unknown key '{key}'"
    if error["type"] == "missing":
        return key, f"required key '{key}' is missing"
    if not key or isinstance(error.get("input"), dict):  # a check across keys: its message names them
        return key, f"{key + ': ' if key else ''}{message}"
    return key, f"key '{key}': {message} (got {error.get('input')!r})"


def parse_config(model: type[M], document: dict[str, Any], source: str | os.PathLike[str]) -> M:
    """Validate ``document`` as ``model``; errors name the key and ``source``.

    Raises:
        ConfigError: for the first invalid, missing or unknown key.
    """
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors()
        key, problem = _describe(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        fix = "remove or correct the key; see examples/ for every valid key" if "unknown key" in problem else "correct the value"
        raise ConfigError(source, problem + more, fix) from exc


def load_config(model: type[M], path: str | os.PathLike[str]) -> M:
    """Load the YAML file at ``path`` as ``model``.

    Example:
        >>> load_config(SelectionConfig, "selection.yaml")  # doctest: +SKIP
        SelectionConfig(method='mi+labelcrop', budget=8, seed=0)
    """
    return parse_config(model, load_yaml(path), path)




# --- the study: what `proxyhpo run CONFIG` reads -------------------------------------------------------------

from proxyhpo.controller.search_space import SearchSpace, default_search_space  # noqa: E402
from proxyhpo.controller.state import ControllerConfig  # noqa: E402
from proxyhpo.training.plan import Recipe  # noqa: E402

__all__ += ["SearchConfig", "TrialSettings", "FinalConfig", "ResourcesConfig", "StudyConfig", "load_study"]


class SearchConfig(StrictModel):
    """The RL search: R rounds of M proposals from the REINFORCE controller.

    Rounds are unrolled when the pipeline is compiled, so ``rounds`` fixes the pipeline's shape.
    """

    space: SearchSpace = Field(default_factory=default_search_space)
    rounds: int = Field(3, ge=1, le=100)
    proposals_per_round: int = Field(4, ge=1, le=256)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)


class TrialSettings(StrictModel):
    """How each searched trial is trained: proxy or full data, proxy or full network, schedule, recipe."""

    data: Literal["proxy", "full"] = "proxy"
    network: Literal["proxy", "full"] = "proxy"
    proxy_levels: int = Field(3, ge=3, le=5, description="levels of the proxy U-Net (5, 4 or 3)")
    recipe: str | Recipe = "demo"
    epochs: int = Field(10, ge=1)
    val_every: int = Field(1, ge=1)
    batch_size: int = Field(2, ge=1)
    pack_size: int | Literal["auto"] = "auto"
    seed: int = 0


class FinalConfig(StrictModel):
    """The final model: the best proposal trained on all training data with the full network."""

    network: Literal["proxy", "full"] = "full"
    epochs: int = Field(20, ge=1)
    seed: int = 0


class ResourcesConfig(StrictModel):
    """What each pod asks the cluster for (ignored by the local runner)."""

    gpus: int = Field(1, ge=1, description="packs trained at once: the ParallelFor parallelism, one GPU each")
    gpu_type: str = "nvidia.com/gpu"
    cpu: str = "4"
    memory: str = "16Gi"


class StudyConfig(StrictModel):
    """A whole study, as written in ``examples/*.yaml``.

    Example:
        >>> load_study("examples/demo.yaml").name  # doctest: +SKIP
        'demo-spleen'
    """

    name: str = Field(min_length=1, description="the MLflow experiment and the Kubeflow experiment")
    description: str = ""
    data: DataConfig
    similarity: SimilarityConfig = Field(default_factory=SimilarityConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    training: TrialSettings = Field(default_factory=TrialSettings)
    final: FinalConfig = Field(default_factory=FinalConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)


    @model_validator(mode="after")
    def _similarity_follows_selection(self) -> StudyConfig:
        # in a study the selection method decides the metric and the crop; a different explicit value would be ignored
        for key in ("metric", "crop"):
            if key in self.similarity.model_fields_set and getattr(self.similarity, key) != getattr(self.selection, key):
                raise ValueError(
                    f"similarity.{key} is {getattr(self.similarity, key)!r} but selection.method {self.selection.method!r} "
                    f"implies {getattr(self.selection, key)!r}; drop similarity.{key}: the selection method decides it"
                )
        return self

    @model_validator(mode="after")
    def _space_is_trainable(self) -> StudyConfig:
        from proxyhpo.controller.search_space import Categorical
        from proxyhpo.training.plan import HyperParameters

        known = HyperParameters.model_fields
        for name, distribution in self.search.space.items():
            if name not in known:
                raise ValueError(f"search.space.{name} is not a hyper-parameter the trainer knows; search only {sorted(known)}")
            values = distribution.choices if isinstance(distribution, Categorical) else (distribution.low, distribution.high)
            for value in values:
                try:
                    HyperParameters.model_validate({"lr": 1e-3, name: value})
                except ValidationError as exc:
                    raise ValueError(f"search.space.{name} allows {value!r}, which training rejects: {exc.errors()[0]['msg']}") from None
        return self

    @model_validator(mode="after")
    def _patches_suit_networks(self) -> StudyConfig:
        from proxyhpo.networks import check_patch_size
        from proxyhpo.training.plan import load_preset

        try:
            recipe = load_preset(self.training.recipe) if isinstance(self.training.recipe, str) else self.training.recipe
        except ConfigError as exc:
            raise ValueError(f"training.recipe: {exc.problem}; {exc.fix}") from None
        networks = {
            "training.network": (self.training.network, self.training.proxy_levels),
            "final.network": (self.final.network, self.training.proxy_levels),
        }
        for key, (kind, levels) in networks.items():
            levels = 5 if kind == "full" else levels
            for what, size in (("patch_size", recipe.patch_size), ("roi_size", recipe.roi_size)):
                try:
                    check_patch_size(size, levels, what=f"training.recipe.{what}")
                except ConfigError as exc:
                    raise ValueError(f"{exc.problem} (for {key}: {kind}); {exc.fix}") from None
        return self


def load_study(path: str | os.PathLike[str]) -> StudyConfig:
    """Load a study config; relative data paths are resolved against the current directory.

    Raises:
        ConfigError: naming the key and the file for the first invalid, missing or unknown key.
    """
    return load_config(StudyConfig, path)
