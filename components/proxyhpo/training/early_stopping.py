"""Early stopping inside packs: the rule that stops trials while a pack trains, behind a one-method interface.

A pack (:func:`proxyhpo.training.run_trials`) asks its :class:`EarlyStopper` after each validation which
of the trials just validated should stop; those leave the batched model and their slots take queued
trials. :class:`SuccessiveHalving` is the stopper a plan's ``early_stopping`` settings make: asynchronous
successive halving (ASHA, Li et al., MLSys 2020) in its stopping form, where a trial is judged when it
reaches a rung against every trial that reached the same rung before it or with it, so no trial waits
for a rung to fill up and the slots never idle. With ``schedule: hyperband`` they make a :class:`Hyperband`:
the trials are spread over Hyperband's brackets, each bracket one such successive halving that starts at a
later rung. Any other rule (a tuner's pruner driven through the same
trainer) plugs in by implementing the two methods of :class:`EarlyStopper`.

Imports no torch: the rule is plain bookkeeping.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from proxyhpo.config.early_stopping import EarlyStoppingConfig

__all__ = ["EpochReport", "EarlyStopper", "SuccessiveHalving", "Hyperband", "make_stopper"]


@dataclass(frozen=True)
class EpochReport:
    """One trial's validation at one of its epochs, as a pack hands it to its stopper.

    Attributes:
        trial_id: the trial.
        epoch: the trial's own epoch (1-based; a trial that took a freed slot counts from its start).
        val_dice: its mean validation Dice after that epoch.
        train_loss: its mean training loss over that epoch (None when unknown).
        order: its position in the pack's queue (the proposal order), the last tie-breaker.
    """

    trial_id: str
    epoch: int
    val_dice: float
    train_loss: float | None = None
    order: int = 0


@runtime_checkable
class EarlyStopper(Protocol):
    """What a pack asks about its trials while they train.

    A pack validates every trial at each epoch of :meth:`decision_epochs` (besides its ``val_every``
    epochs and its last), then hands :meth:`stop` the reports of the trials it just validated, together:
    trials that reach an epoch at the same time are judged with each other.
    """

    def decision_epochs(self) -> Collection[int]:
        """The epochs at which the stopper may stop a trial: the pack validates every trial there."""
        ...

    def stop(self, reports: Sequence[EpochReport]) -> set[str]:
        """The ids, among ``reports``, of the trials that stop now (a trial's last epoch is never a decision)."""
        ...


class SuccessiveHalving:
    """Asynchronous successive halving among the trials of one pack (or of one :func:`run_trials` call).

    At each rung (:meth:`EarlyStoppingConfig.rungs`), every trial reaching it is recorded first; then
    each of them goes on only when it ranks within ``max(1, ceil(n / reduction_factor))`` of the ``n``
    trials recorded at that rung so far, itself and its simultaneous arrivals included. Ranking: higher
    Dice first; equal Dice (early rungs often score every trial 0) by lower training loss of the rung's
    epoch, then by arrival, then by queue order. Stopped trials stay in the record: they are what later
    arrivals must beat.

    Why this form: ``ceil`` keeps at least 1/η of a rung, so a pack smaller than η still keeps its best
    trial at each rung, and the first arrival at a rung always goes on (there is nothing to judge it
    against); recording simultaneous arrivals before judging makes a synchronous pack (all trials
    started together) exactly synchronous successive halving, keeping its top ``ceil(K/η)``.

    Args:
        config: reduction factor and minimum epochs.
        epochs: the trials' epochs (rungs lie below them).

    Example:
        >>> halving = SuccessiveHalving(EarlyStoppingConfig(reduction_factor=2, min_epochs=1), epochs=4)
        >>> sorted(halving.stop([EpochReport("a", 1, 0.5), EpochReport("b", 1, 0.2)]))
        ['b']
    """

    def __init__(self, config: EarlyStoppingConfig, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        self.config = config
        self.epochs = epochs
        self.rungs = config.rungs(epochs)
        # per rung: (-dice, loss, arrival, order) of every trial that reached it; sorted, the best first
        self._records: dict[int, list[tuple[float, float, int, int]]] = {rung: [] for rung in self.rungs}
        self._arrivals = 0

    def decision_epochs(self) -> Collection[int]:
        """The rungs."""
        return self.rungs

    def keep(self, n: int) -> int:
        """How many of ``n`` trials recorded at a rung go on: ``max(1, ceil(n / reduction_factor))``."""
        return max(1, math.ceil(n / self.config.reduction_factor))

    def stop(self, reports: Sequence[EpochReport]) -> set[str]:
        """Record the reports at rungs and return the trials among them that fall outside their rung's top share."""
        arrived: dict[str, tuple[int, tuple[float, float, int, int]]] = {}
        for report in sorted((r for r in reports if r.epoch in self._records), key=lambda r: r.order):
            dice = report.val_dice if math.isfinite(report.val_dice) else -math.inf
            loss = report.train_loss if report.train_loss is not None and math.isfinite(report.train_loss) else math.inf
            key = (-dice, loss, self._arrivals, report.order)
            self._arrivals += 1
            self._records[report.epoch].append(key)
            arrived[report.trial_id] = (report.epoch, key)
        stopped = set()
        for trial_id, (rung, key) in arrived.items():
            ranking = sorted(self._records[rung])
            if ranking.index(key) >= self.keep(len(ranking)):
                stopped.add(trial_id)
        return stopped

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume the same decisions (plain values)."""
        return {"arrivals": self._arrivals, "records": {str(rung): [list(key) for key in keys] for rung, keys in self._records.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._arrivals = int(state["arrivals"])
        for rung, keys in state["records"].items():
            if int(rung) in self._records:
                self._records[int(rung)] = [(float(a), float(b), int(c), int(d)) for a, b, c, d in keys]


class Hyperband:
    """Hyperband's brackets inside a pack: each trial is given a bracket, each bracket is a :class:`SuccessiveHalving`.

    Bracket ``s`` (``0 <= s < n``, ``n = floor(log_eta(epochs / min_epochs)) + 1``, Optuna's
    ``HyperbandPruner`` count) halves from ``min_epochs * eta**s`` on, judging a trial only against the
    trials of its own bracket; a bracket whose first rung is not below ``epochs`` trains its trials to the
    end. A trial's bracket follows from its id alone (a CRC-32 of it), so the pipeline's packs, a resumed pack
    and the benchmark's replay give it the same one; the brackets share the trials as Hyperband does (and
    as Optuna allocates them): bracket ``s`` in proportion to ``ceil(n * eta**(n - 1 - s) / (n - s))``, the
    most aggressive bracket taking the most trials, since each of them costs the least.

    Why brackets: plain successive halving bets that a good configuration already leads at the first rung;
    on a task whose curves are flat early (every trial near 0 Dice at the first rung) it stops good
    configurations by chance, and the later brackets hedge that bet.

    Args:
        config: reduction factor ``eta`` and minimum epochs.
        epochs: the trials' epochs.

    Example:
        >>> hyperband = Hyperband(EarlyStoppingConfig(reduction_factor=3, min_epochs=1, schedule="hyperband"), epochs=9)
        >>> [bracket.rungs for bracket in hyperband.brackets]
        [(1, 3), (3,), ()]
    """

    def __init__(self, config: EarlyStoppingConfig, epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        eta = config.reduction_factor
        count = 1
        while config.min_epochs * eta**count <= epochs:
            count += 1
        self.brackets = [SuccessiveHalving(config.model_copy(update={"min_epochs": config.min_epochs * eta**s}), epochs) for s in range(count)]
        self.shares = [math.ceil(count * eta ** (count - 1 - s) / (count - s)) for s in range(count)]

    def bracket_of(self, trial_id: str) -> int:
        """The bracket of trial ``trial_id``: its CRC-32 modulo the total share, counted off bracket by bracket."""
        ticket = zlib.crc32(trial_id.encode()) % sum(self.shares)
        for bracket, share in enumerate(self.shares):
            if ticket < share:
                return bracket
            ticket -= share
        raise AssertionError("unreachable: the ticket is below the total share")

    def decision_epochs(self) -> Collection[int]:
        """Every bracket's rungs."""
        return tuple(sorted({rung for bracket in self.brackets for rung in bracket.rungs}))

    def stop(self, reports: Sequence[EpochReport]) -> set[str]:
        """Hand each report to its trial's bracket (reports at another bracket's rungs are not decisions for it)."""
        by_bracket: dict[int, list[EpochReport]] = {}
        for report in reports:
            by_bracket.setdefault(self.bracket_of(report.trial_id), []).append(report)
        stopped: set[str] = set()
        for bracket, mine in sorted(by_bracket.items()):
            stopped |= self.brackets[bracket].stop(mine)
        return stopped

    def state_dict(self) -> dict[str, Any]:
        """Every bracket's :meth:`SuccessiveHalving.state_dict`, in bracket order."""
        return {"brackets": [bracket.state_dict() for bracket in self.brackets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for bracket, saved in zip(self.brackets, state["brackets"], strict=True):
            bracket.load_state_dict(saved)


def make_stopper(config: EarlyStoppingConfig | None, epochs: int) -> SuccessiveHalving | Hyperband | None:
    """The stopper of a plan's ``early_stopping`` settings (None: no early stopping)."""
    if config is None:
        return None
    return Hyperband(config, epochs) if config.schedule == "hyperband" else SuccessiveHalving(config, epochs)
