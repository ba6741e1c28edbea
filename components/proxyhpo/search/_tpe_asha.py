"""TPE with asynchronous successive halving: the pack's early stopping as the study's pruner, in the pipeline too."""

from __future__ import annotations

from proxyhpo.search._tpe import TPESearch

__all__ = ["TPEAshaSearch"]


class TPEAshaSearch(TPESearch):
    """Optuna's TPE sampler with asynchronous successive halving in its packs.

    The pruner is the pack's own early stopping (``search.early_stopping``:
    :class:`~proxyhpo.training.early_stopping.SuccessiveHalving`, the rule of Optuna's
    ``SuccessiveHalvingPruner``: at each rung ``min_epochs * reduction_factor**k`` a trial goes on only if
    its Dice is in the top ``1 / reduction_factor`` of those that reached the rung). It runs in the pack's
    process, so it prunes between pipeline tasks exactly as in ``proxyhpo bench search``; each stopped trial
    is told to TPE as pruned, with its validation curve.
    """

    name = "tpe+asha"
    requires_early_stopping = True
