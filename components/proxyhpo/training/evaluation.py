"""Scoring a pack's models: Dice per foreground class and their mean over whole volumes, by sliding-window inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from monai.inferers import sliding_window_inference
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from proxyhpo.config import Recipe
from proxyhpo.training.pack import ModelPack

__all__ = ["ClassDice", "evaluate_pack", "evaluate_pack_by_class"]


class ClassDice(NamedTuple):
    """One model's Dice on a set of volumes.

    Attributes:
        mean: the mean over the foreground classes of ``per_class`` (those scored on at least one
            volume); for a binary task the one class's Dice, as before classes existed.
        per_class: ``(K,)`` Dice of classes ``1..K``, each the mean over the volumes whose label holds
            that class (0 when none does).
    """

    mean: float
    per_class: tuple[float, ...]


def evaluate_pack_by_class(
    pack: ModelPack, volumes: Sequence[dict], recipe: Recipe, what: str = "validation", members: Sequence[int] | None = None
) -> dict[int, ClassDice]:
    """Dice of models of a pack over ``volumes``, per foreground class and their mean, by sliding-window inference.

    All models of a chunk share each window: one batched forward gives every model's logits. The
    prediction is the argmax over the softmax's classes (``pack.out_channels`` of them, background
    included); MONAI's ``DiceMetric(include_background=False, reduction="none", ignore_empty=True)`` scores
    each class of each volume, a class absent from a volume's label is left out of that class's mean.

    Args:
        pack: the pack.
        volumes: cached volumes with ``image`` ``(C, D, H, W)`` and ``label`` ``(1, D, H, W)`` class indices.
        recipe: inference window (``roi_size``) and windows per call (``sw_batch_size``).
        what: name used in failure messages.
        members: the models to score (default: every active one).

    Returns:
        ``{model index: ClassDice}``; failed models are left out.

    Example:
        >>> evaluate_pack_by_class(pack, cache_volumes(plan.val, recipe, "cpu", training=False), recipe)  # doctest: +SKIP
        {0: ClassDice(mean=0.61, per_class=(0.72, 0.43, 0.68)), 1: ...}
    """
    classes = pack.out_channels
    scores: dict[int, ClassDice] = {}

    def work(chunk: list[int]) -> None:
        metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
        k = len(chunk)
        for vol in volumes:
            image, label = vol["image"][None], vol["label"][None]
            logits = sliding_window_inference(
                image, recipe.roi_size, recipe.sw_batch_size, lambda w: pack.predict(chunk, w), overlap=0.25
            )  # (1, k * classes, D, H, W)
            pred = logits.reshape(k, classes, *logits.shape[2:]).argmax(dim=1, keepdim=True)
            metric(y_pred=one_hot(pred, classes), y=one_hot(label, classes).expand(k, -1, -1, -1, -1))
        # rows: volumes x models (volume-major), columns: foreground classes; NaN where a volume lacks a class
        per_case = metric.aggregate().reshape(len(volumes), k, classes - 1)
        for j, i in enumerate(chunk):
            scored = ~torch.isnan(per_case[:, j])
            counts = scored.sum(dim=0)
            sums = torch.where(scored, per_case[:, j], torch.zeros_like(per_case[:, j])).sum(dim=0)
            per_class = [float(s / n) if n else 0.0 for s, n in zip(sums, counts)]
            present = [d for d, n in zip(per_class, counts) if n]
            scores[i] = ClassDice(sum(present) / len(present) if present else 0.0, tuple(per_class))

    pack.run_chunked(work, what, members)
    return {i: v for i, v in scores.items() if i not in pack.failed}


def evaluate_pack(
    pack: ModelPack, volumes: Sequence[dict], recipe: Recipe, what: str = "validation", members: Sequence[int] | None = None
) -> dict[int, float]:
    """Mean foreground Dice of models of a pack over ``volumes`` (see :func:`evaluate_pack_by_class`).

    Returns:
        ``{model index: mean Dice}``: for a binary task the mean over the volumes whose label is not empty;
        with several classes the mean over the classes of each class's Dice. A model with no scored
        volume gets 0.

    Example:
        >>> evaluate_pack(pack, cache_volumes(plan.val, recipe, "cpu", training=False), recipe)  # doctest: +SKIP
        {0: 0.71, 1: 0.64}
    """
    return {i: dice.mean for i, dice in evaluate_pack_by_class(pack, volumes, recipe, what, members).items()}
