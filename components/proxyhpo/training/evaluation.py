"""Scoring a pack's models: mean foreground Dice over whole volumes, by sliding-window inference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.inferers import sliding_window_inference
from monai.metrics import DiceMetric
from monai.networks.utils import one_hot

from proxyhpo.config import Recipe
from proxyhpo.training.pack import NUM_CLASSES, ModelPack

__all__ = ["evaluate_pack"]


def evaluate_pack(
    pack: ModelPack, volumes: Sequence[dict], recipe: Recipe, what: str = "validation", members: Sequence[int] | None = None
) -> dict[int, float]:
    """Mean foreground Dice of models of a pack over ``volumes``, by sliding-window inference.

    All models of a chunk share each window: one batched forward gives every model's logits.

    Args:
        pack: the pack.
        volumes: cached volumes with ``image`` ``(C, D, H, W)`` and ``label`` ``(1, D, H, W)``.
        recipe: inference window (``roi_size``) and windows per call (``sw_batch_size``).
        what: name used in failure messages.
        members: the models to score (default: every active one).

    Returns:
        ``{model index: mean Dice}`` over the volumes (``DiceMetric(include_background=False)``); volumes
        whose label is empty are skipped, and a model with no scored volume gets 0.

    Example:
        >>> evaluate_pack(pack, cache_volumes(plan.val, recipe, "cpu", training=False), recipe)  # doctest: +SKIP
        {0: 0.71, 1: 0.64}
    """
    scores: dict[int, float] = {}

    def work(chunk: list[int]) -> None:
        metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
        k = len(chunk)
        for vol in volumes:
            image, label = vol["image"][None], vol["label"][None]
            logits = sliding_window_inference(
                image, recipe.roi_size, recipe.sw_batch_size, lambda w: pack.predict(chunk, w), overlap=0.25
            )  # (1, k * NUM_CLASSES, D, H, W)
            pred = logits.reshape(k, NUM_CLASSES, *logits.shape[2:]).argmax(dim=1, keepdim=True)
            metric(y_pred=one_hot(pred, NUM_CLASSES), y=one_hot(label, NUM_CLASSES).expand(k, -1, -1, -1, -1))
        per_case = metric.aggregate().reshape(len(volumes), k)  # rows: volumes, columns: models
        for j, i in enumerate(chunk):
            col = per_case[:, j]
            col = col[~torch.isnan(col)]
            scores[i] = float(col.mean()) if col.numel() else 0.0

    pack.run_chunked(work, what, members)
    return {i: v for i, v in scores.items() if i not in pack.failed}
