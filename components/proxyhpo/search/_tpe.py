"""Optuna's TPE sampler; trials stopped by the pack's early stopping, if the study sets it, are told as pruned."""

from __future__ import annotations

from typing import Any

from proxyhpo.search._optuna import OptunaStrategy

__all__ = ["TPESearch"]


class TPESearch(OptunaStrategy):
    """Optuna's TPE sampler (its trials stopped only by the study's own early stopping, if any).

    A round's trials are asked at once: ``constant_liar`` keeps them apart (TPE otherwise proposes nearly
    the same point for every trial of a round, none of them told yet). Its state is the Optuna journal
    of :mod:`proxyhpo.search._optuna`.

    Example:
        >>> search = TPESearch(study, seed=0)  # doctest: +SKIP
        >>> search.tell(results_of(search.ask(4)))  # doctest: +SKIP
        >>> search.save("search.journal")  # doctest: +SKIP
    """

    name = "tpe"

    def make_sampler(self, seed: int) -> Any:
        return self._optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup_trials, constant_liar=True)
