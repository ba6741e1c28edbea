"""The NAS settings of a study (the ``nas:`` section), and the records the NAS pipeline's stages hand on.

Resource-optimised NAS (RONASMIS, ``papers/resource-optimized-nas-3d-segmentation.md``) searches a
macro space of U-Net variants with an LSTM controller and one supernet of shared weights, and uses the
controller's most likely child as is, without retraining. The defaults below are the paper's; a value
the paper does not state is marked as this project's choice.

The study's other sections keep their meaning: ``data`` (the data set, its held-out cases, synthetic
phantoms), ``training.recipe`` (the preprocessing: spacing, intensity, channel; NAS searches the patch
size and infers whole images, so the recipe's patch and window are not used), ``similarity`` and
``selection`` (the proxy data set, when the search runs on it) and ``resources``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from proxyhpo.config.base import MAX_BATCH, MAX_EPOCHS, MAX_SEED, Record, StrictModel
from proxyhpo.config.nas_controller import EpisodeStats, NasControllerConfig
from proxyhpo.config.nas_space import Architecture, NasSearchSpace, NasSpaceConfig
from proxyhpo.errors import ConfigError

__all__ = ["NAS_SEARCH_DATA", "NAS_PROTOCOL", "NasChildConfig", "NasConfig", "NasFold", "NasPlan", "NasFoldResult", "check_protocol", "nested_folds", "parse_search"]

#: What the NAS search trains its children on: every training case of a fold, the proxy data set chosen
#: from them (the two methods combined), or both side by side.
NAS_SEARCH_DATA = ("all", "proxy", "both")
#: How the NAS study's cross-validated Dice is measured, as the report states it.
NAS_PROTOCOL = (
    "nested cross-validation: each outer fold's test part is held out of that fold's search; the search trains on the "
    "fold's search-train cases and rewards the controller on its search-validation cases; the final network's Dice on the "
    "test part, averaged over the folds, is the cross-validated Dice"
)


class NasChildConfig(StrictModel):
    """How the child networks (paths through the shared supernet) are trained: the paper's settings.

    Args:
        lr: Adam's learning rate, fixed (no decay schedule): 0.001.
        weight_decay: Adam's weight decay: 1e-5.
        batch_size: patches per step; the paper's 2 (brain), 1 (heart), 4 (prostate) by available memory.
        flip_prob: probability of the only augmentation, a horizontal flip in the axial plane (this
            project's choice of 0.5; the paper names the flip, not its probability).
        seed: seeds the supernet's initial weights and the patch sampling.
    """

    lr: float = Field(1e-3, gt=0, le=10.0)
    weight_decay: float = Field(1e-5, ge=0, le=10.0, allow_inf_nan=False)
    batch_size: int = Field(2, ge=1, le=MAX_BATCH)
    flip_prob: float = Field(0.5, ge=0, le=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class NasConfig(StrictModel):
    """The ``nas:`` section of a study: what ``proxyhpo run CONFIG --pipeline nas`` searches and how.

    Args:
        space: the macro search space's options (channels, dilations, activations, poolings: the paper gives only
            their counts and stage 1's fixed dilation; the values are ours).
        controller: the LSTM controller's optimiser, entropy weight and baseline.
        child: the child networks' training.
        episodes: controller epochs; the paper's 150 (brain), 500 (heart, prostate).
        children_per_episode: children sampled, trained and rewarded per episode: 20.
        child_epochs: epochs each child trains the shared weights for: 3.
        episodes_per_task: episodes one pipeline task (one GPU pod) runs before it hands the supernet and the
            controller on; the shared weights make episodes sequential, so a study is a chain of such tasks,
            each checkpointed after every episode (this project's choice).
        folds: outer cross-validation folds over the search cases (the paper's 5): one search per fold, each
            evaluated on the fold's test part with its own final network. The test part is held out of the
            fold's search (nested cross-validation, this project's protocol; the paper rewards the controller
            on the fold it reports, which measures the Dice on the cases that chose the architecture).
        validation_fraction: the share of a fold's remaining search cases (those outside its test part) that
            reward the controller, its search-validation cases; the rest are its search-train cases. 0.25
            (this project's choice) makes them the size of one fold of 5, as the paper's reward set is. 0 would
            reward the controller on the test part, as the paper does: the planner refuses it.
        search_data: ``all`` (the paper), ``proxy`` (children train on the proxy data set chosen from the
            fold's training cases by ``selection``), or ``both`` side by side in one report.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    space: NasSpaceConfig = Field(default_factory=NasSpaceConfig)
    controller: NasControllerConfig = Field(default_factory=NasControllerConfig)
    child: NasChildConfig = Field(default_factory=NasChildConfig)
    episodes: int = Field(500, ge=1, le=100_000)
    children_per_episode: int = Field(20, ge=1, le=1_000)
    child_epochs: int = Field(3, ge=1, le=MAX_EPOCHS)
    episodes_per_task: int = Field(25, ge=1, le=100_000)
    folds: int = Field(5, ge=2, le=20)
    validation_fraction: float = Field(0.25, ge=0.0, lt=1.0)
    search_data: Literal["all", "proxy", "both"] = "all"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def tasks(self) -> int:
        """Search tasks chained per fold and arm: ``ceil(episodes / episodes_per_task)``."""
        return math.ceil(self.episodes / self.episodes_per_task)

    def task_episodes(self, task: int) -> range:
        """The episodes (0-based) search task ``task`` runs."""
        if not 0 <= task < self.tasks:
            raise ValueError(f"task must be in 0..{self.tasks - 1}, got {task}")
        start = task * self.episodes_per_task
        return range(start, min(self.episodes, start + self.episodes_per_task))

    @property
    def arms(self) -> tuple[str, ...]:
        """The searches of each fold: ``("all",)``, ``("proxy",)`` or ``("all", "proxy")``."""
        return ("all", "proxy") if self.search_data == "both" else (self.search_data,)


class NasFold(StrictModel):
    """One outer cross-validation fold: three disjoint sets of the study's search cases.

    Attributes:
        fold: the fold's index.
        search_train_ids: the cases the children train the shared weights on (the search-train set).
        search_validation_ids: the cases whose Dice rewards the controller (the search-validation set).
        test_ids: the fold's test part: held out of the search; the final network's cross-validated Dice is
            measured on it and on nothing else.
        proxy_ids: the proxy data set, chosen from ``search_train_ids`` (empty when no proxy search runs).
        proxy_selection_seconds: how long choosing it took.
    """

    fold: int = Field(ge=0)
    search_train_ids: tuple[str, ...] = Field(min_length=1)
    search_validation_ids: tuple[str, ...] = Field(min_length=1)
    test_ids: tuple[str, ...] = Field(min_length=1)
    proxy_ids: tuple[str, ...] = ()
    proxy_selection_seconds: float = 0.0

    @model_validator(mode="after")
    def _sets_are_disjoint(self) -> NasFold:
        # the test part rewards nothing: a fold whose search reads it measures its Dice on what chose the network
        searched = set(self.search_train_ids) | set(self.search_validation_ids) | set(self.proxy_ids)
        if searched & set(self.test_ids):
            raise ValueError(f"fold {self.fold}: the search reads test cases {sorted(searched & set(self.test_ids))[:5]}")
        if set(self.search_train_ids) & set(self.search_validation_ids):
            raise ValueError(f"fold {self.fold}: search-train and search-validation cases overlap")
        if not set(self.proxy_ids) <= set(self.search_train_ids):
            raise ValueError(f"fold {self.fold}: the proxy data set must be chosen from the search-train cases")
        return self

    def search_ids(self, arm: str) -> tuple[str, ...]:
        """The cases ``arm``'s children train on: the proxy data set (``proxy``) or every search-train case (``all``)."""
        return self.proxy_ids if arm == "proxy" else self.search_train_ids


class NasPlan(Record):
    """The NAS plan (nnU-Net's plans as data between stages): the search space resolved from the data and the folds.

    Written by the planning stage, read by every search, export and evaluation task.

    Attributes:
        space: the search space of the training images (patch candidates from their median shape,
            strides cut down for the smallest).
        folds: the outer cross-validation folds over the study's search cases; their test parts split the
            search cases exactly (:data:`NAS_PROTOCOL`).
        internal_test_ids: the study's held-out cases (the untouched internal test set): no fold's search
            reads them; every fold's final network is also tested on them.
        proxy_method: how proxy data sets were chosen (``""`` when the search runs on all data).
    """

    WRITTEN_BY = "the NAS planning step (`proxyhpo run CONFIG --pipeline nas`)"

    space: NasSearchSpace
    folds: tuple[NasFold, ...] = Field(min_length=1)
    internal_test_ids: tuple[str, ...] = ()
    proxy_method: str = ""

    @model_validator(mode="after")
    def _internal_test_is_untouched(self) -> NasPlan:
        for fold in self.folds:
            read = (set(fold.search_train_ids) | set(fold.search_validation_ids) | set(fold.test_ids)) & set(self.internal_test_ids)
            if read:
                raise ValueError(f"fold {fold.fold} reads the study's held-out cases {sorted(read)[:5]}")
        parts = [case for fold in self.folds for case in fold.test_ids]
        if len(parts) != len(set(parts)):
            raise ValueError("the folds' test parts overlap: each search case is tested by one fold only")
        return self

    def fold(self, index: int) -> NasFold:
        """Fold ``index``; ValueError naming the folds there are."""
        for fold in self.folds:
            if fold.fold == index:
                return fold
        raise ValueError(f"fold {index} is not in the plan (folds 0..{len(self.folds) - 1})")


class NasFoldResult(Record):
    """What one fold's search found and how its final network did: the evaluation task's record.

    ``test_dice`` (the fold's test part, which rewarded nothing) is the cross-validated Dice's term;
    ``search_validation_dice`` is on the cases that rewarded the controller, optimistic by construction,
    reported beside it only to show the gap.
    """

    WRITTEN_BY = "the NAS evaluation step"

    fold: int
    arm: str
    architecture: Architecture
    test_dice: float | None = Field(description="patient-wise Dice of the final network on the fold's test part (held out of its search)")
    test_case_dice: dict[str, float] = Field(default_factory=dict)
    search_validation_dice: float | None = Field(None, description="on the fold's search-validation cases, which rewarded the controller")
    internal_test_dice: float | None = Field(None, description="on the study's held-out cases (the internal test set), when it has some")
    test_class_dice: dict[str, float] = Field(default_factory=dict, description="a multi-class task's test-part Dice per class (test_dice is their mean)")
    internal_test_class_dice: dict[str, float] = Field(default_factory=dict, description="a multi-class task's held-out Dice per class")
    failed_children: int = Field(0, ge=0, description="children that ran out of memory or diverged (rewarded 0)")
    search_gpu_hours: float = 0.0
    search_process_hours: float = 0.0
    search_wall_seconds: float = 0.0
    train_cases: int = 0
    search_validation_cases: int = 0
    test_cases: int = 0
    episodes: tuple[EpisodeStats, ...] = ()


def check_protocol(nas: NasConfig, n_search_cases: int) -> None:
    """Refuse a NAS config whose search would read a fold's test part, or leave one of its sets empty.

    The cross-validated Dice is measured on each fold's test part; the controller is rewarded on the
    fold's search-validation cases. ``nas.validation_fraction: 0`` would reward it on the test part (the
    paper's protocol), so the Dice would be measured on the cases that chose the architecture.

    Raises:
        ConfigError: naming ``nas.validation_fraction`` or ``nas.folds`` and the fix.
    """
    if nas.validation_fraction <= 0:
        raise ConfigError(
            "nas.validation_fraction",
            "is 0: the controller would be rewarded on each fold's test part, the cases its cross-validated Dice is measured on",
            "set nas.validation_fraction to a share in (0, 1), e.g. 0.25, so that the search is rewarded on cases held out of the test part",
        )
    remaining = n_search_cases - math.ceil(n_search_cases / nas.folds)  # the smallest outer fold's search cases
    validation = _validation_count(remaining, nas.validation_fraction)
    if validation >= remaining:
        raise ConfigError(
            "nas.validation_fraction",
            f"{nas.validation_fraction} leaves no search-train case out of {remaining} search cases per fold ({nas.folds} folds of {n_search_cases})",
            "lower nas.validation_fraction or nas.folds, or use more cases",
        )


def _validation_count(n_cases: int, fraction: float) -> int:
    # at least one case rewards the controller
    return max(1, round(fraction * n_cases))


def nested_folds(case_ids: Sequence[str], folds: int, validation_fraction: float, seed: int) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """The outer folds of nested cross-validation as ``(search_train, search_validation, test)`` case ids.

    A seeded shuffle is cut into ``folds`` near-equal test parts; the cases outside a fold's test part are
    split again, by a generator seeded with ``(seed, fold)``, into ``validation_fraction`` search-validation
    cases (at least one) and search-train cases. No fold's search reads its test part.
    """
    import numpy as np

    order = [case_ids[i] for i in np.random.default_rng(seed).permutation(len(case_ids))]
    parts = [tuple(part.tolist()) for part in np.array_split(np.array(order, dtype=object), folds)]
    cut = []
    for index, test in enumerate(parts):
        held_out = set(test)
        remaining = [case for case in order if case not in held_out]
        chosen = set(np.random.default_rng([seed, index]).choice(len(remaining), _validation_count(len(remaining), validation_fraction), replace=False).tolist())
        validation = tuple(case for i, case in enumerate(remaining) if i in chosen)
        train = tuple(case for i, case in enumerate(remaining) if i not in chosen)
        cut.append((train, validation, test))
    return cut


def parse_search(search: str) -> tuple[str, int]:
    """``"<arm>/<fold>"`` (a NAS pipeline's loop item) as ``(arm, fold)``.

    Example:
        >>> parse_search("proxy/3")
        ('proxy', 3)
    """
    arm, _, fold = search.partition("/")
    if arm not in ("all", "proxy") or not fold.isdigit():
        raise ValueError(f"search must be '<all|proxy>/<fold>', got {search!r}")
    return arm, int(fold)
