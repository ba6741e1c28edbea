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
from typing import Literal

from pydantic import Field

from proxyhpo.config.base import Record, StrictModel
from proxyhpo.config.nas_controller import EpisodeStats, NasControllerConfig
from proxyhpo.config.nas_space import Architecture, NasSearchSpace, NasSpaceConfig

__all__ = ["NAS_SEARCH_DATA", "NasChildConfig", "NasConfig", "NasFold", "NasPlan", "NasFoldResult", "parse_search"]

#: What the NAS search trains its children on: every training case of a fold, the proxy data set chosen
#: from them (the two methods combined), or both side by side.
NAS_SEARCH_DATA = ("all", "proxy", "both")


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

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    batch_size: int = Field(2, ge=1)
    flip_prob: float = Field(0.5, ge=0, le=1)
    seed: int = Field(0, ge=0)


class NasConfig(StrictModel):
    """The ``nas:`` section of a study: what ``proxyhpo run CONFIG --pipeline nas`` searches and how.

    Args:
        space: the macro search space's options (channels, dilations, activations, poolings).
        controller: the LSTM controller's optimiser, entropy weight and baseline.
        child: the child networks' training.
        episodes: controller epochs; the paper's 150 (brain), 500 (heart, prostate).
        children_per_episode: children sampled, trained and rewarded per episode: 20.
        child_epochs: epochs each child trains the shared weights for: 3.
        episodes_per_task: episodes one pipeline task (one GPU pod) runs before it hands the supernet and the
            controller on; the shared weights make episodes sequential, so a study is a chain of such tasks,
            each checkpointed after every episode (this project's choice).
        folds: cross-validation folds over the search cases (the paper's 5): one search per fold, each
            evaluated on its held-out fold with its own final network.
        search_data: ``all`` (the paper), ``proxy`` (children train on the proxy data set chosen from the
            fold's training cases by ``selection``), or ``both`` side by side in one report.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    space: NasSpaceConfig = Field(default_factory=NasSpaceConfig)
    controller: NasControllerConfig = Field(default_factory=NasControllerConfig)
    child: NasChildConfig = Field(default_factory=NasChildConfig)
    episodes: int = Field(500, ge=1, le=100_000)
    children_per_episode: int = Field(20, ge=1, le=1_000)
    child_epochs: int = Field(3, ge=1)
    episodes_per_task: int = Field(25, ge=1)
    folds: int = Field(5, ge=2, le=20)
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
    """One cross-validation fold: the cases its children train on and the held-out cases that reward them."""

    fold: int = Field(ge=0)
    train_ids: tuple[str, ...] = Field(min_length=1)
    val_ids: tuple[str, ...] = Field(min_length=1)
    proxy_ids: tuple[str, ...] = ()
    proxy_selection_seconds: float = 0.0


class NasPlan(Record):
    """The NAS plan (nnU-Net's plans as data between stages): the search space resolved from the data and the folds.

    Written by the planning stage, read by every search, export and evaluation task.

    Attributes:
        space: the search space of the training images (patch candidates from their median shape,
            strides cut down for the smallest).
        folds: the cross-validation folds over the study's search cases.
        test_ids: the study's held-out cases: every fold's final network is also tested on them.
        proxy_method: how proxy data sets were chosen (``""`` when the search runs on all data).
    """

    WRITTEN_BY = "the NAS planning step (`proxyhpo run CONFIG --pipeline nas`)"

    space: NasSearchSpace
    folds: tuple[NasFold, ...] = Field(min_length=1)
    test_ids: tuple[str, ...] = ()
    proxy_method: str = ""

    def fold(self, index: int) -> NasFold:
        """Fold ``index``; ValueError naming the folds there are."""
        for fold in self.folds:
            if fold.fold == index:
                return fold
        raise ValueError(f"fold {index} is not in the plan (folds 0..{len(self.folds) - 1})")


class NasFoldResult(Record):
    """What one fold's search found and how its final network did: the evaluation task's record."""

    WRITTEN_BY = "the NAS evaluation step"

    fold: int
    arm: str
    architecture: Architecture
    val_dice: float | None = Field(description="patient-wise Dice of the final network on the fold's held-out cases")
    test_dice: float | None = Field(None, description="on the study's held-out cases, when it has some")
    val_case_dice: dict[str, float] = Field(default_factory=dict)
    search_gpu_hours: float = 0.0
    search_process_hours: float = 0.0
    search_wall_seconds: float = 0.0
    train_cases: int = 0
    episodes: tuple[EpisodeStats, ...] = ()


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
