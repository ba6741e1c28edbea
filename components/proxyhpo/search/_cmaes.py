"""Optuna's CMA-ES sampler (Hansen's covariance matrix adaptation evolution strategy, via the ``cmaes`` package)."""

from __future__ import annotations

from typing import Any

from proxyhpo.search._optuna import OptunaStrategy

__all__ = ["CmaEsSearch"]


class CmaEsSearch(OptunaStrategy):
    """Optuna's CMA-ES sampler over the continuous parameters (its trials stopped only by the study's own early stopping, if any).

    CMA-ES models the continuous parameters only (the learning rate on its log scale, the intensity-shift
    probability): as in Optuna, a categorical one (the optimiser) falls back to independent sampling, here
    Optuna's seeded random sampler, and so is never learned. A generation of ``4 + 3 ln(d)`` trials (``d``
    continuous parameters) may span rounds; trials that early stopping stopped (told ``PRUNED``) are left out of
    the generations, Optuna's default. The CMA-ES state (mean, covariance, step size) lives in the trials'
    system attributes, so it is in the Optuna journal of :mod:`proxyhpo.search._optuna` with everything else.
    It needs the ``cmaes`` package.
    """

    name = "cmaes"
    requires_packages = ("optuna", "cmaes")

    def make_sampler(self, seed: int) -> Any:
        # categoricals are sampled independently by design (said above): Optuna's warning per trial would only repeat it
        return self._optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=self.startup_trials, warn_independent_sampling=False)
