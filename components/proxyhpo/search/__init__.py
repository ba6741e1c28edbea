"""Search strategies behind one ``ask``/``tell`` protocol, and the benchmark that runs them on one trainer.

- :mod:`proxyhpo.search._base`: the protocol (:class:`Strategy`); each strategy is a file of its own,
  registered once in :data:`proxyhpo.registry.SEARCH_STRATEGIES`: random search (``_random``), the
  paper's REINFORCE controller with and without successive halving in its packs (``_reinforce``), and
  Optuna's samplers, each study in an Optuna journal file (``_optuna``): TPE (``_tpe``), TPE with the
  packs' asynchronous successive halving as its pruner (``_tpe_asha``), the Gaussian-process sampler
  (``_gp``), the CMA-ES sampler over the continuous parameters (``_cmaes``), and TPE with Hyperband's
  brackets of successive halving in its packs (``_tpe_hyperband``).
- :mod:`proxyhpo.search.bench`: ``proxyhpo bench search CONFIG``: every strategy on the same trainer, data
  and device-hour budget, for several seeds, logged to MLflow; results under ``bench/results/``.
"""

from proxyhpo.search._base import Strategy, outcome_of, strategy_class, study_with

__all__ = ["Strategy", "outcome_of", "strategy_class", "study_with"]
