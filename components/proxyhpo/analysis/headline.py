"""The headline figure (issue 12): the full search's device-hours over those of all four levers, each lever's share, and the Dice.

The automl comparison's lever ladder (:data:`~proxyhpo.config.studies.LEVER_ARMS`) runs the full search
(``full-search``: all data, the full network, one trial per device, no early stopping), then adds one lever
per arm: proxy data, a proxy network, packing, early stopping. The headline is the full search's
device-hours over the last arm's (all levers), with the final Dice of both (their best hyper-parameters
trained in full); the goal is at least :data:`SPEEDUP_GOAL` times fewer hours at a final Dice within
:data:`DICE_TOLERANCE` of the full search's (the paper reached 4.4 times with proxy data and network alone).

**Shares: the log-ratio decomposition along the ladder.** The total speed-up is the product of the
ladder's steps, ``S = h_0 / h_n = prod_i h_(i-1) / h_i``, so ``log S = sum_i log(h_(i-1) / h_i)``, and
lever ``i``'s share is ``log(h_(i-1) / h_i) / log S``. The shares sum to exactly 1 and each step's factor
``h_(i-1) / h_i`` is what its lever multiplied the saving by. A share is negative when a lever made the
search dearer (packing on a CPU can), above 1 when the others together saved less than nothing.

The order matters: the levers interact, so a lever's factor is what it saves *given the levers before it*.
Packing a proxy network saves more than packing the full one on a GPU (small networks leave the device
idle), and early stopping saves a fraction of whatever a trial still costs. Another order gives other
shares with the same total; Shapley values (a lever's factor averaged over every order) would need all
2^4 combinations of levers, 16 searches instead of 5. The ladder's order follows the paper's Table 2 columns
(proxy data, then the proxy network), followed by what this project adds.

**The Dice criterion is one-sided and relative**: the levers' final Dice must be at least
``(1 - DICE_TOLERANCE)`` times the full search's (a better Dice passes). Both are means over the final
models' repeats; the report says when their spread is larger than the tolerance (the verdict is then
within noise).

Example:
    >>> steps = lever_steps([("full-search", 8.0), ("plus-proxy-data", 2.0), ("plus-proxy-net", 1.0)])
    >>> [(s.lever, round(s.factor, 2), round(s.share, 3)) for s in steps]
    [('proxy-data', 4.0, 0.667), ('proxy-net', 2.0, 0.333)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field

from proxyhpo.analysis._report_io import TrialCounts
from proxyhpo.config.base import StrictModel
from proxyhpo.config.studies import LEVER_ARMS, LEVERS, arm_levers
from proxyhpo.tracking import names

__all__ = [
    "DICE_TOLERANCE",
    "PAPER_SPEEDUP",
    "SPEEDUP_GOAL",
    "Headline",
    "LeverStep",
    "PairedCandidates",
    "PooledHeadline",
    "dice_gap",
    "dice_within",
    "headline",
    "headline_metrics",
    "lever_key",
    "lever_steps",
    "paired_candidates",
    "pool_headlines",
]

#: The goal: the full search's device-hours over all levers' at least this.
SPEEDUP_GOAL = 20.0
#: The goal: the levers' final Dice at least ``1 - DICE_TOLERANCE`` times the full search's.
DICE_TOLERANCE = 0.01
#: The paper's best speed-up (proxy data and a proxy network), for comparison.
PAPER_SPEEDUP = 4.4
#: Below this |log S| the total saving is nil and has no shares.
_NO_SAVING = 1e-9


class LeverStep(StrictModel):
    """One step of the ladder: the arm that adds a lever, and what it did to the device-hours.

    Attributes:
        lever: the lever the step adds (``proxy-data``, ``proxy-net``, ``packing``, ``early-stopping``); levers
            joined by ``+`` when the arms between were not run (their saving is then shared as one).
        arm: the ladder arm that adds it.
        hours_before, hours_after: device-hours per search of the arm before and of this arm.
        factor: ``hours_before / hours_after``: how many times fewer hours the lever left.
        share: ``log(factor) / log(total speed-up)``; None when the total speed-up is 1 (nothing to share).
    """

    lever: str
    arm: str
    hours_before: float = Field(gt=0.0)
    hours_after: float = Field(gt=0.0)
    factor: float
    share: float | None


def lever_key(lever: str) -> str:
    """A lever (or levers joined by ``+``) as an MLflow metric name part: ``proxy-net+packing`` -> ``proxy_net_and_packing``."""
    return lever.replace("+", "_and_").replace("-", "_")


def _added(before: str, after: str) -> str:
    """The levers ``after`` has and ``before`` has not, in the ladder's order, joined by ``+``."""
    had, has = set(arm_levers(before) or ()), set(arm_levers(after) or ())
    added = [lever for lever in LEVERS if lever in has - had]
    if not added:
        raise ValueError(f"ladder arm {after!r} adds no lever to {before!r}: give the arms in the order of LEVER_ARMS")
    return "+".join(added)


def lever_steps(ladder: Sequence[tuple[str, float]]) -> list[LeverStep]:
    """The ladder's steps and each lever's share of the total speed-up (the log-ratio decomposition).

    Args:
        ladder: ``(arm, device-hours per search)`` of the ladder arms that ran, in the order of
            :data:`~proxyhpo.config.studies.LEVER_ARMS`, the first the reference (normally ``full-search``).
            An arm left out merges its lever with the next arm's.

    Returns:
        One step per arm after the first; the shares sum to 1 (or are all None when the total speed-up is 1).

    Raises:
        ValueError: for fewer than two arms, hours that are not finite and > 0, an arm not of the ladder or out of order.

    Example:
        >>> [(s.lever, s.share) for s in lever_steps([("full-search", 4.0), ("plus-proxy-net", 1.0)])]
        [('proxy-data+proxy-net', 1.0)]
    """
    if len(ladder) < 2:
        raise ValueError(f"ladder needs the reference and at least one more arm, got {list(ladder)}")
    order = list(LEVER_ARMS)
    for arm, hours in ladder:
        if arm not in LEVER_ARMS:
            raise ValueError(f"ladder arm must be one of {', '.join(order)}, got {arm!r}")
        if not (math.isfinite(hours) and hours > 0):
            raise ValueError(f"ladder hours must be finite and > 0, got {hours!r} for {arm!r}")
    total = math.log(ladder[0][1] / ladder[-1][1])
    steps = []
    for (before, hours_before), (arm, hours_after) in zip(ladder, ladder[1:], strict=False):
        if order.index(arm) <= order.index(before):
            raise ValueError(f"ladder arms must follow the order of LEVER_ARMS ({', '.join(order)}): {arm!r} came after {before!r}")
        factor = hours_before / hours_after
        share = math.log(factor) / total if abs(total) > _NO_SAVING else None
        steps.append(LeverStep(lever=_added(before, arm), arm=arm, hours_before=hours_before, hours_after=hours_after, factor=factor, share=share))
    return steps


def dice_gap(reference: float | None, candidate: float | None) -> float | None:
    """The candidate's relative Dice shortfall: ``(reference - candidate) / reference`` (negative: better); None without both or with a reference of 0.

    Example:
        >>> round(dice_gap(0.80, 0.79), 4)
        0.0125
    """
    if reference is None or candidate is None or reference <= 0:
        return None
    return (reference - candidate) / reference


def dice_within(reference: float | None, candidate: float | None, tolerance: float = DICE_TOLERANCE) -> bool | None:
    """Whether the candidate's Dice is at least ``(1 - tolerance)`` times the reference's (one-sided: a better Dice passes).

    Example:
        >>> dice_within(0.80, 0.793), dice_within(0.80, 0.79), dice_within(0.80, 0.95), dice_within(None, 0.9)
        (True, False, True, None)
    """
    gap = dice_gap(reference, candidate)
    # a gap of exactly the tolerance passes: 1e-12 absorbs the rounding of (r - c) / r
    return None if gap is None else gap <= tolerance + 1e-12


class Headline(StrictModel):
    """The headline of one automl comparison: the full search against all levers, in device-hours and final Dice.

    Attributes:
        reference_arm, levers_arm: the full search (``full-search``) and the ladder's last arm that ran.
        levers: the levers ``levers_arm`` has.
        reference_hours, levers_hours: their device-hours per search (trials and data selection, as run).
        speedup: ``reference_hours / levers_hours``.
        steps: the ladder's steps and shares (:func:`lever_steps`).
        dice_reference, dice_levers: their final models' internal Dice, mean over repeats (None without a
            finished final model); ``*_std``: sample std over repeats (None with fewer than two).
        n_reference_finals, n_levers_finals: final models with a Dice.
        dice_gap: :func:`dice_gap` of the two means; dice_within_tolerance: :func:`dice_within`.
        dice_noisy: whether either std exceeds the tolerance times the reference Dice (the verdict is then within noise).
        speedup_goal_met: ``speedup >= SPEEDUP_GOAL``; goal_met: both criteria (None when the Dice is missing).
        reference_trials, levers_trials: how the two searches' trials ended; a trial early stopping ended is
            counted stopped, not failed (its hours count in the cost all the same).
    """

    reference_arm: str
    levers_arm: str
    levers: tuple[str, ...]
    reference_hours: float
    levers_hours: float
    speedup: float
    steps: tuple[LeverStep, ...]
    dice_reference: float | None
    dice_reference_std: float | None
    dice_levers: float | None
    dice_levers_std: float | None
    n_reference_finals: int
    n_levers_finals: int
    dice_gap: float | None
    dice_within_tolerance: bool | None
    dice_noisy: bool | None
    speedup_goal_met: bool
    goal_met: bool | None
    reference_trials: TrialCounts = TrialCounts()
    levers_trials: TrialCounts = TrialCounts()


def _noisy(reference: float | None, *stds: float | None) -> bool | None:
    if reference is None or all(std is None for std in stds):
        return None
    return any(std is not None and std > DICE_TOLERANCE * reference for std in stds)


def headline(
    ladder: Sequence[tuple[str, float]],
    dice: dict[str, tuple[float | None, float | None, int]],
    trials: dict[str, TrialCounts] | None = None,
) -> Headline:
    """The headline from the ladder's device-hours and the final Dice of its first and last arm.

    Args:
        ladder: as for :func:`lever_steps`.
        dice: arm -> (mean internal Dice of its final models, their sample std, how many) for at least the
            first and last arm of ``ladder``.
        trials: arm -> how its search trials ended (stopped apart from failed); empty counts when left out.

    Raises:
        ValueError: as :func:`lever_steps`.
    """
    steps = lever_steps(ladder)
    (reference, reference_hours), (levers_arm, levers_hours) = ladder[0], ladder[-1]
    dice_ref, std_ref, n_ref = dice.get(reference, (None, None, 0))
    dice_lev, std_lev, n_lev = dice.get(levers_arm, (None, None, 0))
    speedup = reference_hours / levers_hours
    within = dice_within(dice_ref, dice_lev)
    return Headline(
        reference_arm=reference,
        levers_arm=levers_arm,
        levers=arm_levers(levers_arm) or (),
        reference_hours=reference_hours,
        levers_hours=levers_hours,
        speedup=speedup,
        steps=tuple(steps),
        dice_reference=dice_ref,
        dice_reference_std=std_ref,
        dice_levers=dice_lev,
        dice_levers_std=std_lev,
        n_reference_finals=n_ref,
        n_levers_finals=n_lev,
        dice_gap=dice_gap(dice_ref, dice_lev),
        dice_within_tolerance=within,
        dice_noisy=_noisy(dice_ref, std_ref, std_lev),
        speedup_goal_met=speedup >= SPEEDUP_GOAL,
        goal_met=None if within is None else within and speedup >= SPEEDUP_GOAL,
        reference_trials=(trials or {}).get(reference, TrialCounts()),
        levers_trials=(trials or {}).get(levers_arm, TrialCounts()),
    )


def _flag(value: bool | None) -> float | None:
    return None if value is None else float(value)


def headline_metrics(result: Headline) -> dict[str, float | None]:
    """The parent run's headline metrics: ``headline_*`` and, per step, ``lever_share_<lever>`` and ``lever_speedup_<lever>``."""
    metrics: dict[str, float | None] = {
        names.HEADLINE_SPEEDUP: result.speedup,
        names.HEADLINE_HOURS_FULL: result.reference_hours,
        names.HEADLINE_HOURS_LEVERS: result.levers_hours,
        names.HEADLINE_DICE_FULL: result.dice_reference,
        names.HEADLINE_DICE_LEVERS: result.dice_levers,
        names.HEADLINE_DICE_GAP: result.dice_gap,
        names.HEADLINE_DICE_WITHIN_TOLERANCE: _flag(result.dice_within_tolerance),
        names.HEADLINE_SPEEDUP_GOAL_MET: _flag(result.speedup_goal_met),
        names.HEADLINE_GOAL_MET: _flag(result.goal_met),
        names.HEADLINE_FAILED_TRIALS_FULL: float(result.reference_trials.n_failed),
        names.HEADLINE_STOPPED_TRIALS_FULL: float(result.reference_trials.n_stopped),
        names.HEADLINE_FAILED_TRIALS_LEVERS: float(result.levers_trials.n_failed),
        names.HEADLINE_STOPPED_TRIALS_LEVERS: float(result.levers_trials.n_stopped),
    }
    for step in result.steps:
        metrics[f"lever_share_{lever_key(step.lever)}"] = step.share
        metrics[f"lever_speedup_{lever_key(step.lever)}"] = step.factor
    return metrics


class PooledHeadline(StrictModel):
    """The headline over several comparisons (seeds): geometric means of the speed-ups, pooled shares, mean Dice.

    Attributes:
        n: comparisons pooled.
        speedup: the geometric mean of their speed-ups; speedup_min, speedup_max: their range.
        levers: the steps' levers (the same in every comparison).
        factors: per lever, the geometric mean of its step factor.
        shares: per lever, ``mean log(factor) / mean log(speed-up)``: sums to 1 over the levers (None when the
            pooled speed-up is 1); the same decomposition applied to the geometric means.
        dice_reference, dice_levers: mean over comparisons of each one's mean final Dice (comparisons
            without it left out); ``*_std``: sample std over comparisons.
        dice_gap, dice_within_tolerance, speedup_goal_met, goal_met: as in :class:`Headline`, of the pooled numbers.
        goal_met_count: how many of the comparisons met the goal on their own.
    """

    n: int
    speedup: float
    speedup_min: float
    speedup_max: float
    levers: tuple[str, ...]
    factors: dict[str, float]
    shares: dict[str, float | None]
    dice_reference: float | None
    dice_reference_std: float | None
    dice_levers: float | None
    dice_levers_std: float | None
    dice_gap: float | None
    dice_within_tolerance: bool | None
    speedup_goal_met: bool
    goal_met: bool | None
    goal_met_count: int


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return mean, std


def pool_headlines(results: Sequence[Headline]) -> PooledHeadline:
    """Pool the headlines of several comparisons (one per seed) of the same ladder.

    Raises:
        ValueError: without a headline, or when their ladders differ (other steps).
    """
    if not results:
        raise ValueError("results must hold at least one headline")
    levers = tuple(step.lever for step in results[0].steps)
    for result in results[1:]:
        if tuple(step.lever for step in result.steps) != levers:
            raise ValueError(f"the headlines' ladders differ: {list(levers)} against {[s.lever for s in result.steps]}")
    n = len(results)
    log_total = math.fsum(math.log(r.speedup) for r in results) / n
    log_steps = {lever: math.fsum(math.log(r.steps[i].factor) for r in results) / n for i, lever in enumerate(levers)}
    shares = {lever: (value / log_total if abs(log_total) > _NO_SAVING else None) for lever, value in log_steps.items()}
    dice_ref, std_ref = _mean_std([r.dice_reference for r in results if r.dice_reference is not None])
    dice_lev, std_lev = _mean_std([r.dice_levers for r in results if r.dice_levers is not None])
    speedup = math.exp(log_total)
    within = dice_within(dice_ref, dice_lev)
    return PooledHeadline(
        n=n,
        speedup=speedup,
        speedup_min=min(r.speedup for r in results),
        speedup_max=max(r.speedup for r in results),
        levers=levers,
        factors={lever: math.exp(value) for lever, value in log_steps.items()},
        shares=shares,
        dice_reference=dice_ref,
        dice_reference_std=std_ref,
        dice_levers=dice_lev,
        dice_levers_std=std_lev,
        dice_gap=dice_gap(dice_ref, dice_lev),
        dice_within_tolerance=within,
        speedup_goal_met=speedup >= SPEEDUP_GOAL,
        goal_met=None if within is None else within and speedup >= SPEEDUP_GOAL,
        goal_met_count=sum(bool(r.goal_met) for r in results),
    )


class PairedCandidates(StrictModel):
    """A paired comparison (``studies.comparison.paired``): how the levers arm ranks the candidates both arms trained.

    With shared seeds both arms' controllers propose the same first round, so some settings are trained by
    both searches: the full search's Dice on them is the truth the proxy's ranking is judged against.

    Attributes:
        n_shared: settings both arms trained to the end (stopped or failed trials in either arm left out).
        spearman_rho: Spearman's rank correlation of the levers arm's validation Dice with the full search's over
            the shared settings (None for fewer than 3, or a constant column).
        regret: the full search's best Dice over the shared settings minus its Dice on the setting the levers
            arm ranks first (0: the proxy picked the full search's best); None without a shared setting.
    """

    n_shared: int
    spearman_rho: float | None
    regret: float | None


def _setting_key(setting: dict[str, float | str | None]) -> tuple[tuple[str, str], ...]:
    """A setting as a hashable key; numbers to 9 significant digits (a param logged as text and read back)."""
    return tuple(sorted((name, f"{value:.9g}" if isinstance(value, float) else str(value)) for name, value in setting.items()))


def paired_candidates(
    reference: Sequence[tuple[dict[str, float | str | None], float | None]],
    levers: Sequence[tuple[dict[str, float | str | None], float | None]],
) -> PairedCandidates:
    """The levers arm's rank correlation with, and regret against, the full search on the settings both trained.

    Args:
        reference, levers: each arm's trials as (setting, validation Dice; None when the trial was stopped or
            failed). A setting trained twice in an arm counts once, with its mean Dice.

    Example:
        >>> full = [({"lr": 0.1}, 0.7), ({"lr": 0.01}, 0.8), ({"lr": 0.001}, 0.6)]
        >>> proxy = [({"lr": 0.1}, 0.5), ({"lr": 0.01}, 0.4), ({"lr": 0.001}, 0.3)]
        >>> result = paired_candidates(full, proxy)
        >>> result.n_shared, result.spearman_rho, round(result.regret, 3)
        (3, 0.5, 0.1)
    """
    import numpy as np
    from scipy import stats

    def means(trials: Sequence[tuple[dict[str, float | str | None], float | None]]) -> dict[tuple[tuple[str, str], ...], float]:
        found: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for setting, dice in trials:
            if dice is not None:
                found.setdefault(_setting_key(setting), []).append(dice)
        return {key: float(np.mean(values)) for key, values in found.items()}

    full, proxy = means(reference), means(levers)
    shared = sorted(set(full) & set(proxy))
    if not shared:
        return PairedCandidates(n_shared=0, spearman_rho=None, regret=None)
    truth = np.array([full[key] for key in shared])
    ranked = np.array([proxy[key] for key in shared])
    rho = None
    if len(shared) >= 3 and np.ptp(truth) > 0 and np.ptp(ranked) > 0:
        rho = float(stats.spearmanr(ranked, truth).statistic)
    return PairedCandidates(n_shared=len(shared), spearman_rho=rho, regret=float(truth.max() - truth[int(np.argmax(ranked))]))
