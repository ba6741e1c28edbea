"""Non-inferiority of the levers' final Dice against the full search's, paired over seeds (issue 18).

The headline claims "the same final Dice for a fraction of the device-hours". "The same" is a
non-inferiority claim, stated before running in ``studies.comparison.noninferiority``
(:class:`~proxyhpo.config.studies.NonInferiorityConfig`): a margin ``m`` (0.01 Dice by default), a test
and a one-sided confidence. Each seed ``i`` is one complete comparison (its own data, split, controllers
and initialisations) and gives one paired difference

    ``d_i = Dice_i(levers arm) - Dice_i(full search)``,

each Dice the final models' internal test Dice averaged over the seed's initialisations. The levers are
**non-inferior** only when the one-sided interval's lower bound of the mean difference lies above ``-m``;
otherwise non-inferiority is **not shown** (which is not a proof of inferiority). With fewer than
``min_seeds`` seeds the verdict is **too few seeds**, whatever the interval says.

Tests (``test``):

- ``paired-t``: the lower bound ``mean(d) - t_(confidence, n-1) * sd(d) / sqrt(n)``
  (:func:`scipy.stats.t.ppf`), exact when the ``d_i`` are normal.
- ``paired-bootstrap``: the ``1 - confidence`` percentile of the mean over resamples of the seeds
  (:func:`scipy.stats.bootstrap`, one-sided ``alternative="greater"``), seeded for reproducibility.

Example:
    >>> result = noninferiority([0.80, 0.81, 0.79, 0.80, 0.82], [0.801, 0.812, 0.788, 0.803, 0.818])
    >>> result.verdict, round(result.mean_difference, 4), result.lower_bound > -0.01
    ('non-inferior', 0.0004, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

from proxyhpo.config.base import StrictModel
from proxyhpo.config.studies import NonInferiorityConfig

__all__ = ["NON_INFERIOR", "NOT_SHOWN", "TOO_FEW_SEEDS", "NonInferiority", "noninferiority"]

NON_INFERIOR = "non-inferior"
NOT_SHOWN = "not shown"
TOO_FEW_SEEDS = "too few seeds"
Verdict = Literal["non-inferior", "not shown", "too few seeds"]


class NonInferiority(StrictModel):
    """The paired non-inferiority test of the levers' Dice against the reference's.

    Attributes:
        test, margin, confidence, min_seeds: as configured.
        n: seeds with both Dice.
        differences: per seed, levers minus reference, in the seeds' order (shape ``(n,)``).
        mean_difference: their mean; sd_difference: their sample std (None for n < 2).
        lower_bound: the one-sided ``confidence`` lower bound of the mean difference (None for n < 2; the mean
            itself when every difference is the same).
        p_value: the one-sided p-value of H0 ``mean d <= -margin`` (paired t only; None otherwise).
        verdict: ``non-inferior`` when ``n >= min_seeds`` and ``lower_bound > -margin``; ``too few seeds``
            below ``min_seeds``; ``not shown`` otherwise.
    """

    test: str
    margin: float
    confidence: float
    min_seeds: int
    n: int
    differences: tuple[float, ...]
    mean_difference: float | None
    sd_difference: float | None
    lower_bound: float | None
    p_value: float | None
    verdict: Verdict

    def sentence(self) -> str:
        """One line: the verdict with its interval and margin."""
        if self.lower_bound is None:
            return f"{self.verdict}: {self.n} paired seed(s), no interval (margin {self.margin:g} Dice)"
        return (
            f"{self.verdict}: mean difference {self.mean_difference:+.4f} Dice over {self.n} seeds, one-sided {self.confidence:.0%} "
            f"lower bound {self.lower_bound:+.4f} ({self.test}) against the margin -{self.margin:g}"
        )


def noninferiority(reference: Sequence[float], levers: Sequence[float], config: NonInferiorityConfig | None = None) -> NonInferiority:
    """The paired one-sided non-inferiority test of ``levers`` against ``reference`` (one value per seed).

    Args:
        reference: per seed, the full search's final Dice (mean over its initialisations), shape ``(n,)``.
        levers: per seed, the levers arm's, the same seeds in the same order, shape ``(n,)``.
        config: margin, test, confidence, minimum seeds (default: :class:`NonInferiorityConfig`'s).

    Raises:
        ValueError: when the two lengths differ or a value is not finite.
    """
    config = config or NonInferiorityConfig()
    if len(reference) != len(levers):
        raise ValueError(f"reference and levers must have one Dice per seed each, got {len(reference)} and {len(levers)}")
    d = np.asarray(levers, dtype=float) - np.asarray(reference, dtype=float)
    if not np.all(np.isfinite(d)):
        raise ValueError(f"every Dice must be a finite number, got reference {list(reference)} and levers {list(levers)}")
    n = int(d.size)
    mean = float(d.mean()) if n else None
    sd = float(d.std(ddof=1)) if n > 1 else None
    lower: float | None = None
    p_value: float | None = None
    if n > 1 and sd == 0.0:
        lower = mean  # no spread: the interval is the point (scipy's t and bootstrap are undefined here)
    elif n > 1 and config.test == "paired-t":
        lower = mean - float(stats.t.ppf(config.confidence, n - 1)) * sd / math.sqrt(n)
        p_value = float(stats.ttest_1samp(d, -config.margin, alternative="greater").pvalue)
    elif n > 1:
        result = stats.bootstrap(
            (d,), np.mean, confidence_level=config.confidence, alternative="greater", n_resamples=config.bootstrap_samples,
            method="percentile", random_state=np.random.default_rng(0),
        )
        lower = float(result.confidence_interval.low)
    if n < config.min_seeds:
        verdict: Verdict = TOO_FEW_SEEDS
    elif lower is not None and lower > -config.margin:
        verdict = NON_INFERIOR
    else:
        verdict = NOT_SHOWN
    return NonInferiority(
        test=config.test,
        margin=config.margin,
        confidence=config.confidence,
        min_seeds=config.min_seeds,
        n=n,
        differences=tuple(float(x) for x in d),
        mean_difference=mean,
        sd_difference=sd,
        lower_bound=lower,
        p_value=p_value,
        verdict=verdict,
    )
