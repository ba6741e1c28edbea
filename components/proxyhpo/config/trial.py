"""What a trial runs with and what it ends with: hyper-parameters, the trial plan, and trial results.

A :class:`TrialPlan` is what ``proxyhpo train TRIAL.yaml`` reads: a recipe, the train / validation /
optional external test cases, the schedule, and one or more :class:`TrialSpec` (several make a pack
that is trained at once), optionally with early stopping. A :class:`TrialResult` is what each trial ends
with, ``COMPLETE``, ``STOPPED`` early, or ``FAILED`` with the reason, never an exception that kills a
pack or a study.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from proxyhpo.config.base import MAX_BATCH, MAX_EPOCHS, MAX_SEED, Record, StrictModel, load_yaml, parse_config
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.config.network import NetworkConfig
from proxyhpo.config.recipe import PRESETS, Recipe, resolve_recipe
from proxyhpo.names import TRIAL_ID_MAX, check_trial_id

__all__ = [
    "OPTIMIZER_OPTIONS",
    "HyperParameters",
    "FaultInjection",
    "TrialSpec",
    "DataItem",
    "TrialPlan",
    "TrialState",
    "TrialResult",
    "TrialResults",
]


#: Hyper-parameters that are options of the optimiser's parameter group (``torch.optim`` keywords).
OPTIMIZER_OPTIONS = ("lr", "weight_decay")


class HyperParameters(StrictModel):
    """Every hyper-parameter the trainer accepts, with the value a trial uses when the search leaves it alone.

    Which of them a study searches is the search space's business (``search.space`` names them); a
    search space may name any field here, and only those it names become MLflow params and report
    columns. Fields listed in :data:`OPTIMIZER_OPTIONS` reach the optimiser's parameter group as is.

    Args:
        lr: learning rate, > 0.
        optimizer: ``adam``, ``rmsprop``, ``adamax`` (torch) or ``novograd`` (MONAI).
        intensity_shift_prob: probability of the random intensity shift augmentation, in [0, 1].
        weight_decay: L2 penalty of the optimiser, >= 0 (every optimiser above accepts it).
    """

    lr: float = Field(gt=0, le=10.0)
    optimizer: Literal["adam", "rmsprop", "adamax", "novograd"] = "adam"
    intensity_shift_prob: float = Field(default=0.0, ge=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0, le=10.0, allow_inf_nan=False)

    @field_validator("lr")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"lr must be finite, got {v}")
        return v


class FaultInjection(StrictModel):
    """FOR TESTING ONLY: make a trial fail on purpose to exercise the failure path of a pack.

    ``kind="nan"`` turns the trial's loss into NaN at optimiser step ``step`` (1-based, counted over
    the whole run); ``kind="oom"`` raises ``torch.OutOfMemoryError`` from that step on whenever the
    trial's model is part of the computation, as a real out-of-memory would.
    """

    kind: Literal["nan", "oom"]
    step: int = Field(default=1, ge=1)


class TrialSpec(StrictModel):
    """One trial: its id, hyper-parameters, network and seed.

    Args:
        trial_id: unique id within the plan (used in result files and MLflow run names).
        hyperparameters: the hyper-parameters.
        network: the network config (full or proxy).
        seed: seeds the network initialisation, the data order and the random augmentations; the
            same seed gives the same trial whether it is trained alone or in a pack.
        data_label: label of the training data (e.g. ``full``, ``mi-8``), recorded in the result.
        round: controller round that proposed the trial, if any.
        tags: free-form string tags copied into the result.
        fault: testing only, see :class:`FaultInjection`.
    """

    trial_id: str = Field(min_length=1, max_length=TRIAL_ID_MAX)
    hyperparameters: HyperParameters
    network: NetworkConfig = Field(default_factory=lambda: NetworkConfig.proxy(3))
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    data_label: str = "full"
    round: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    fault: FaultInjection | None = None

    @field_validator("trial_id")
    @classmethod
    def _safe_file_name(cls, v: str) -> str:
        # it becomes <save_model_dir>/<trial_id>.pt, a checkpoint key and a run name (proxyhpo.names)
        return check_trial_id(v)


class DataItem(StrictModel):
    """One case: image and label NIfTI paths (absolute, or relative to the plan file)."""

    image: str
    label: str


class TrialPlan(Record):
    """The input of ``proxyhpo train``: data, recipe, schedule, and one trial or a pack of trials.

    Args:
        recipe: a preset name (see :data:`PRESETS`) or an inline :class:`Recipe`.
        train: training cases.
        val: validation cases (Dice is reported on these).
        internal_test: optional untouched internal test cases (a study's held-out cases), evaluated once
            after training with the best-validation weights; nothing during training reads them.
        test: optional external test cases, evaluated once after training with the best-validation
            weights.
        epochs: training epochs (one epoch visits every training volume once).
        val_every: validate every this many epochs (and always after the last, and at the rungs of ``early_stopping``).
        batch_size: volumes per step; each gives ``recipe.num_samples`` patches.
        trials: the trials; several are trained together as packs.
        pack_size: models per pack, or ``"auto"`` (from free GPU memory; 4 on a CPU; see
            :func:`~proxyhpo.config.resolve_pack_size`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        cache_dir: when set, preprocessed volumes are cached on disk there (``PersistentDataset``) and
            reused across trials; otherwise they are cached in memory for the run (``CacheDataset``).
        save_model_dir: when set, each trial's best-validation weights are saved there as
            ``<trial_id>.pt`` (a ``state_dict``).
        num_workers: threads used to preprocess volumes into the cache.
        checkpoint: when set, where each pack saves a checkpoint (a local file or an ``s3://`` object; the
            k-th pack of a plan with several appends ``-p<k>``) and resumes from when it finds one for its
            trials: a retried task (a preempted pod) continues where the killed one stopped.
        checkpoint_every: epochs between checkpoints (and after the last one).
        early_stopping: when set, successive halving among the trials of each pack: trials are validated
            at every rung (besides every ``val_every`` epochs and the last), the worse ones stop there, and
            each of the ``pack_size`` slots takes the next queued trial when its trial stops or ends. None:
            every trial trains all its epochs, in packs of ``pack_size`` one after another.
        classes: the classes the networks segment after the recipe's ``label_merge``, value -> name, values
            ``0..K`` (0 the background): one output channel each, Dice per foreground class by name. Empty:
            background and one foreground (a binary task, as before).
    """

    WRITTEN_BY = "a study's training step, or by hand (see examples in the README)"

    recipe: str | Recipe = "demo"
    train: list[DataItem] = Field(min_length=1)
    val: list[DataItem] = Field(min_length=1)
    internal_test: list[DataItem] = Field(default_factory=list)
    test: list[DataItem] = Field(default_factory=list)
    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    val_every: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(default=2, ge=1, le=MAX_BATCH)
    trials: list[TrialSpec] = Field(min_length=1)
    pack_size: int | Literal["auto"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str | None = None
    save_model_dir: str | None = None
    num_workers: int = Field(default=2, ge=0, le=256)
    checkpoint: str | None = None
    checkpoint_every: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    classes: dict[int, str] = Field(default_factory=dict)
    early_stopping: EarlyStoppingConfig | None = None

    @field_validator("recipe")
    @classmethod
    def _known_preset(cls, v: str | Recipe) -> str | Recipe:
        if isinstance(v, str) and v not in PRESETS:
            raise ValueError(f"recipe preset {v!r} does not exist; use one of {', '.join(PRESETS)} or an inline recipe")
        return v

    @field_validator("pack_size")
    @classmethod
    def _positive_pack(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= MAX_BATCH:
            raise ValueError(f"pack_size must be from 1 to {MAX_BATCH} or 'auto', got {v}")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> TrialPlan:
        ids = [t.trial_id for t in self.trials]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"trial_id values must be unique, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _test_sets_untouched(self) -> TrialPlan:
        # a Dice reported on a test set is only a test when no training step or checkpoint choice read it
        read_in_training = {item.image for item in (*self.train, *self.val)}
        for name in ("internal_test", "test"):
            leaked = sorted(item.image for item in getattr(self, name) if item.image in read_in_training)
            if leaked:
                raise ValueError(f"{name} shares cases with train or val ({', '.join(leaked[:3])}): a test set must be untouched by training and validation")
        return self

    @field_validator("classes")
    @classmethod
    def _classes_numbered(cls, v: dict[int, str]) -> dict[int, str]:
        if v and (sorted(v) != list(range(len(v))) or len(v) < 2):
            raise ValueError(f"classes must be numbered 0..K with K >= 1 (0 the background), got {sorted(v)}")
        return v

    @property
    def num_classes(self) -> int:
        """Output channels of the networks: one per class, background included (2 for a binary task)."""
        return len(self.classes) or 2

    def resolved_recipe(self) -> Recipe:
        """The recipe itself: the preset loaded when ``recipe`` is a name."""
        return resolve_recipe(self.recipe)

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
                "internal_test": items(self.internal_test),
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
        return parse_config(cls, load_yaml(path), path).with_paths_relative_to(Path(path).parent)


class TrialState(str, enum.Enum):
    """How a trial ended."""

    COMPLETE = "COMPLETE"
    #: stopped early by the pack's early stopping (successive halving): it has a Dice, at an earlier epoch
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class TrialResult(StrictModel):
    """What one trial produced and what it cost.

    Attributes:
        trial_id, hyperparameters, network, data_label, seed, round, tags: copied from the :class:`TrialSpec`
            (``network`` is the network's name, e.g. ``full`` or ``proxy-L3``).
        state, fail_reason: ``COMPLETE``; ``STOPPED`` by early stopping (its Dice are those up to the stop);
            or ``FAILED`` with a one-line reason.
        stopped_at_epoch: for a ``STOPPED`` trial, the rung epoch at which it stopped (its last validation);
            None otherwise.
        epochs_run: epochs completed (fewer than planned when the trial failed or stopped).
        steps_run: optimiser steps the trial took part in.
        val_epochs, val_dice: the epochs at which validation ran (1-based) and the mean validation
            Dice (foreground only) at each.
        final_val_dice: Dice at the last validation; ``best_val_dice`` / ``best_epoch`` the best one.
        internal_test_dice: mean Dice on the untouched internal test set (the plan's ``internal_test``) with
            the best-validation weights, if any.
        test_dice: mean Dice on the external test set with the best-validation weights, if any.
        val_class_dice, internal_test_class_dice, test_class_dice: with several foreground classes, the Dice
            of each (by class name) at each validation and on the test sets (``val_dice`` and the others are
            then the mean over the classes); empty for a binary task, where they would repeat the mean.
        wall_seconds: wall time from the start of the pack to the end of this trial.
        gpu_hours: GPU wall-clock time times this trial's share of the GPU (1/K while in a pack of K);
            0 on a CPU, where ``process_hours`` holds the same share of the process's wall-clock time.
        process_hours: on a CPU, the trial's share of the training process's wall-clock hours (not
            CPU time: a process may use several cores); 0 on a GPU.
        peak_gpu_mem_bytes: peak GPU memory allocated by the pack this trial ran in (0 on a CPU).
        data_wait_fraction: fraction of training step time spent producing the batch.
        pack_size: models in the pack when it started; ``device``: where it ran.
        model_path: where the best weights were saved, if asked.
    """

    schema_version: Literal[1] = 1
    trial_id: str
    state: TrialState
    fail_reason: str | None = None
    stopped_at_epoch: int | None = Field(default=None, ge=1)
    hyperparameters: HyperParameters
    network: str
    data_label: str = "full"
    seed: int = 0
    round: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    epochs_run: int = 0
    steps_run: int = 0
    val_epochs: list[int] = Field(default_factory=list)
    val_dice: list[float] = Field(default_factory=list)
    final_val_dice: float | None = None
    best_val_dice: float | None = None
    best_epoch: int | None = None
    internal_test_dice: float | None = None
    test_dice: float | None = None
    val_class_dice: list[dict[str, float]] = Field(default_factory=list)
    internal_test_class_dice: dict[str, float] = Field(default_factory=dict)
    test_class_dice: dict[str, float] = Field(default_factory=dict)
    wall_seconds: float = 0.0
    gpu_hours: float = 0.0
    process_hours: float = 0.0
    peak_gpu_mem_bytes: int = 0
    data_wait_fraction: float = 0.0
    pack_size: int = 1
    device: str = "cpu"
    model_path: str | None = None

    @model_validator(mode="after")
    def _stop_has_its_epoch(self) -> TrialResult:
        if (self.state == TrialState.STOPPED) != (self.stopped_at_epoch is not None):
            raise ValueError(f"stopped_at_epoch is set exactly when state is STOPPED, got state {self.state.value} and stopped_at_epoch {self.stopped_at_epoch}")
        return self

    @classmethod
    def of(cls, spec: TrialSpec, state: TrialState, **outcome: Any) -> TrialResult:
        """The result of ``spec``: the trial's identity copied from its spec, ``outcome`` the rest.

        Example:
            >>> TrialResult.of(spec, TrialState.FAILED, fail_reason="pack crashed")  # doctest: +SKIP
        """
        identity = {
            "trial_id": spec.trial_id,
            "hyperparameters": spec.hyperparameters,
            "network": spec.network.name,
            "data_label": spec.data_label,
            "seed": spec.seed,
            "round": spec.round,
            "tags": dict(spec.tags),
        }
        return cls(state=state, **identity, **outcome)


class TrialResults(Record):
    """The result file of a plan or a pack: every trial's result, in plan order."""

    WRITTEN_BY = "proxyhpo train, or the training step that wrote it"

    results: tuple[TrialResult, ...]
