"""Search strategies side by side: one ``ask``/``tell`` interface, and the benchmark that runs them on one trainer.

- :mod:`proxyhpo.search.strategies`: random search, the REINFORCE controller (with and without successive
  halving in its packs) and Optuna's TPE sampler with its Hyperband pruner, behind :class:`Strategy`.
- :mod:`proxyhpo.search.bench`: ``proxyhpo bench search CONFIG``: every strategy on the same trainer, data
  and device-hour budget, for several seeds, logged to MLflow; results under ``bench/results/``.
"""

from proxyhpo.search.strategies import Strategy, make_strategy

__all__ = ["Strategy", "make_strategy"]
