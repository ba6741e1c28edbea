"""Optuna's Gaussian-process sampler (Bayesian optimisation with log expected improvement)."""

from __future__ import annotations

from typing import Any

from proxyhpo.search._optuna import OptunaStrategy

__all__ = ["GPSearch"]


class GPSearch(OptunaStrategy):
    """Optuna's Gaussian-process sampler (its trials stopped only by the study's own early stopping, if any).

    The GP models the trials that trained to the end; it places the trials still running in a round
    (those asked before it, none told yet) in its acquisition as Optuna does, so a round's trials differ.
    It needs torch and scipy (both are the trainer's). Its state is the Optuna journal of
    :mod:`proxyhpo.search._optuna`.
    """

    name = "gp"

    def make_sampler(self, seed: int) -> Any:
        return self._optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.startup_trials)
