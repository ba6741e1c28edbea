"""TPE with Hyperband's brackets of successive halving in its packs: the pack's early stopping as the study's pruner."""

from __future__ import annotations

from proxyhpo.search._tpe import TPESearch

__all__ = ["TPEHyperbandSearch"]


class TPEHyperbandSearch(TPESearch):
    """Optuna's TPE sampler with Hyperband in its packs.

    The pruner is the pack's own early stopping with ``search.early_stopping.schedule: hyperband``
    (:class:`~proxyhpo.training.early_stopping.Hyperband`: Optuna's ``HyperbandPruner`` brackets and their
    share of the trials, each bracket an asynchronous successive halving among its own trials). It runs in the
    pack's process, between pipeline tasks as in ``proxyhpo bench search``, so the study's state stays its
    journal; each stopped trial is told to TPE as pruned, with its validation curve, as ``tpe+asha``'s are.
    """

    name = "tpe+hyperband"
    requires_early_stopping = True
    early_stopping_schedule = "hyperband"
