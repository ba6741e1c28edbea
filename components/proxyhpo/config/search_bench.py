"""The search benchmark: what ``proxyhpo bench search CONFIG`` reads, and the result record it writes.

The benchmark runs several search strategies side by side on one study's trainer, data and budget
(:mod:`proxyhpo.search.bench`). Its config names the study and says what differs from it for the
benchmark; its result (``bench/results/search.json``) holds, for every strategy and seed, the trials in
the order they were proposed, what each cost, the running best validation Dice against device-hours, and
the final model's Dice. Torch-free, like the rest of the schema layer.

Example config::

    study: ../examples/demo.yaml        # the trainer, data and search space (relative to this file)
    overrides: {training: {epochs: 20}} # deep-merged into the study for the benchmark only
    budget: {trials: 8}                 # or {hours: 0.05}: device-hours per strategy and seed
    seeds: [0, 1, 2]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field, model_validator

from proxyhpo.config.base import Record, StrictModel, load_yaml, parse_config
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.config.search_space import Choice
from proxyhpo.registry import SEARCH_STRATEGIES

__all__ = [
    "StrategyName",
    "BudgetConfig",
    "SearchBenchConfig",
    "load_search_bench",
    "BenchTrial",
    "BenchBatch",
    "CurvePoint",
    "StrategyRun",
    "Calibration",
    "SearchBenchResult",
    "TableGridConfig",
    "TableConfig",
    "load_table_config",
    "TableSearchConfig",
]

#: A registered search strategy's name (:data:`proxyhpo.registry.SEARCH_STRATEGIES`).
StrategyName = Annotated[str, AfterValidator(SEARCH_STRATEGIES.check)]


class BudgetConfig(StrictModel):
    """Device-hours each strategy may spend in each seed: given in hours, or in full trials.

    Attributes:
        hours: the budget in device-hours (GPU-hours on a GPU, process-hours on a CPU, as
            :class:`~proxyhpo.config.TrialResult` accounts them).
        trials: the budget as this many trials of the study's schedule (all epochs, in a full pack),
            converted to hours with the benchmark's calibration: the same search size on a fast or a slow
            machine. Give exactly one of the two.
    """

    hours: float | None = Field(default=None, gt=0)
    trials: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> BudgetConfig:
        if (self.hours is None) == (self.trials is None):
            raise ValueError(f"give exactly one of budget.hours and budget.trials, got hours={self.hours}, trials={self.trials}")
        return self


class SearchBenchConfig(StrictModel):
    """What ``proxyhpo bench search CONFIG`` runs.

    Attributes:
        study: the study config (a path, relative to the bench config's folder): its data, proxy data
            selection, search space, trainer (network, recipe, schedule, pack size) and final model.
        overrides: a mapping deep-merged into the study's document for the benchmark (a shorter schedule,
            a cheaper final model); the merged study is validated like any study config.
        experiment: the MLflow experiment; default ``<study name>-search-bench``.
        strategies: which strategies run, each once per seed.
        seeds: one repetition per seed: it seeds every strategy and the trials' initialisation (the same
            for every strategy within a seed: the k-th proposal of each starts from the same weights).
        budget: device-hours per strategy and seed.
        proposals_per_batch: proposals a strategy trains at once, in the study's packs (a REINFORCE round);
            default ``search.proposals_per_round``.
        margin: a batch starts only when its predicted cost times ``1 + margin`` fits in what is left of
            the budget (see :mod:`proxyhpo.search.bench`).
        early_stopping: the rungs of the strategies that stop trials: ``reinforce+sh`` and ``tpe+asha``
            (successive halving in packs) and ``tpe+hyperband`` (Hyperband's brackets in packs, ``min_epochs``
            its minimum resource, ``reduction_factor`` its η);
            default: the study's ``search.early_stopping``, else ``min_epochs = training.val_every``, η = 3.
        tpe_startup_trials: random trials before an Optuna sampler (``tpe``, ``tpe+asha``, ``tpe+hyperband``, ``gp``,
            ``cmaes``) models the results; default ``proposals_per_batch``
            (the REINFORCE controller's first round is as good as random too).
        final: train the final model (``final`` of the study: search-train cases, its checkpoint chosen on search-validation, tested on the held-out cases) with
            each strategy's best hyper-parameters; ``final_repeats``: that many initialisations of it (the study's
            ``final.seed`` plus 0, 1, ...), their Dice averaged.
        system_metrics: sample CPU and memory into every trial's run (threads that share the cores the
            trials are timed on: off by default).
        cost: what a trial costs and the budget counts: ``device_hours`` (its share of the device's time, which a
            shared machine's load distorts) or ``trial_steps`` (its optimiser steps: the work, whatever the load;
            ``budget.trials`` then buys that many full trials' steps, ``budget.hours`` is refused). The fields named
            ``*_hours`` of the result then hold trial-steps.
        vary_data: each seed also draws its own data: the held-out split (``data.split_seed``) and the proxy data
            (``selection.seed``) move by the seed, so the seeds sample the data as well as the searches.
    """

    study: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    experiment: str | None = Field(default=None, min_length=1)
    strategies: tuple[StrategyName, ...] = Field(default_factory=SEARCH_STRATEGIES.names)
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: BudgetConfig
    proposals_per_batch: int | None = Field(default=None, ge=1, le=256)
    margin: float = Field(default=0.25, ge=0.0, le=10.0)
    early_stopping: EarlyStoppingConfig | None = None
    tpe_startup_trials: int | None = Field(default=None, ge=0)
    final: bool = True
    final_repeats: int = Field(default=1, ge=1, le=10)
    system_metrics: bool = False
    cost: Literal["device_hours", "trial_steps"] = "device_hours"
    vary_data: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> SearchBenchConfig:
        if self.cost == "trial_steps" and self.budget.hours is not None:
            raise ValueError("budget.hours cannot be counted in trial-steps: give budget.trials with cost: trial_steps")
        for key, values in (("strategies", self.strategies), ("seeds", self.seeds)):
            if not values:
                raise ValueError(f"{key} must list at least one value, got none")
            if len(set(values)) != len(values):
                raise ValueError(f"{key} must not repeat a value, got {list(values)}")
        if any(seed < 0 for seed in self.seeds):
            raise ValueError(f"seeds must be >= 0, got {list(self.seeds)}")
        return self


#: A config with a ``study`` path relative to its own file (the live benchmark's, a table's).
_StudyRelative = TypeVar("_StudyRelative", bound=StrictModel)

def _load_beside_study(model: type[_StudyRelative], path: str | os.PathLike[str]) -> _StudyRelative:
    """Parse ``path`` as ``model``; its ``study`` path becomes absolute, against the config's folder."""
    config = parse_config(model, load_yaml(path), path)
    study = Path(config.study)
    if not study.is_absolute():
        study = (Path(path).absolute().parent / study).resolve()
    return config.model_copy(update={"study": str(study)})

def load_search_bench(path: str | os.PathLike[str]) -> SearchBenchConfig:
    """Load a bench config; its ``study`` path becomes absolute, against the bench config's folder.

    Raises:
        ConfigError: naming the file and the key for the first invalid, missing or unknown key.
    """
    return _load_beside_study(SearchBenchConfig, path)


class BenchTrial(StrictModel):
    """One trial of a strategy, as the benchmark accounted it.

    Attributes:
        trial_id, proposal_id, batch: the trial, its proposal (the strategy's order), the batch it trained in.
        hyperparameters: the searched values.
        state: ``COMPLETE`` (all epochs), ``STOPPED`` (early, by successive halving or the pruner), ``FAILED``.
        stopped_at_epoch, epochs_run: where it stopped; the epochs it trained.
        val_dice: its validation Dice at its last validation (None when it failed).
        device_hours: what it cost (``gpu_hours + process_hours`` of its result).
        cumulative_hours: the strategy's device-hours up to and including this trial, in proposal order.
        counted: whether ``cumulative_hours`` is within the budget; a trial that is not counted cost device
            time but the strategy gets nothing from it (its Dice is not in the curve, not a candidate).
        run_id: its MLflow run.
    """

    trial_id: str
    proposal_id: int = Field(ge=0)
    batch: int = Field(ge=0)
    hyperparameters: dict[str, Choice]
    state: Literal["COMPLETE", "STOPPED", "FAILED"]
    stopped_at_epoch: int | None = None
    epochs_run: int = Field(ge=0)
    val_dice: float | None = None
    device_hours: float = Field(ge=0)
    cumulative_hours: float = Field(ge=0)
    counted: bool
    run_id: str | None = None


class BenchBatch(StrictModel):
    """One batch of a strategy: what the launch rule predicted and what it cost.

    Attributes:
        batch: its index within the strategy's run.
        proposals: trials in it; ``slots``: trained at once (the pack size).
        predicted_hours: the launch rule's prediction, margin included; ``device_hours``: what it cost.
    """

    batch: int = Field(ge=0)
    proposals: int = Field(ge=1)
    slots: int = Field(ge=1)
    predicted_hours: float = Field(ge=0)
    device_hours: float = Field(ge=0)


class CurvePoint(StrictModel):
    """The best validation Dice found after a trial, against the device-hours spent up to it.

    Attributes:
        trial_id: the trial.
        hours: the strategy's device-hours up to and including it (what the budget counts).
        trial_epochs: its epochs of training up to and including it: the work done, whatever the machine's load
            (on a shared CPU a device-hour buys more or fewer epochs as other processes come and go).
        best_val_dice: the best validation Dice of the trials so far that trained all their epochs.
    """

    trial_id: str
    hours: float = Field(ge=0)
    trial_epochs: int = Field(default=0, ge=0)
    best_val_dice: float | None


class StrategyRun(StrictModel):
    """One strategy in one seed.

    Attributes:
        strategy, seed: which.
        parent_run_id: its MLflow parent run (every trial and the final model are its children).
        budget_hours: the budget; ``device_hours``: the counted trials' device-hours (never above the
            budget); ``overrun_hours``: device-hours of trials that crossed the budget (not counted).
        trials: every trial, in proposal order; ``batches``: the batches, in order.
        curve: the running best of the counted trials' validation Dice (trials that trained all epochs),
            one point per counted trial.
        best_trial_id, best_val_dice, best_hyperparameters: the best counted trial that trained all epochs.
        final_val_dice, final_internal_test_dice, final_test_dice, final_device_hours: the final model
            trained with them: its Dice on the search-validation cases (which chose its checkpoint), on the
            untouched held-out cases and on the external set, and its cost (None when there is none); with
            ``final_repeats`` initialisations, the means of theirs and the sum of their costs.
        final_internal_test_dices: each initialisation's Dice on the held-out cases, in seed order.
    """

    strategy: StrategyName
    seed: int
    parent_run_id: str
    budget_hours: float
    device_hours: float
    overrun_hours: float
    trials: tuple[BenchTrial, ...]
    batches: tuple[BenchBatch, ...]
    curve: tuple[CurvePoint, ...]
    best_trial_id: str | None = None
    best_val_dice: float | None = None
    best_hyperparameters: dict[str, Choice] | None = None
    final_val_dice: float | None = None
    final_internal_test_dice: float | None = None
    final_test_dice: float | None = None
    final_device_hours: float | None = None
    final_internal_test_dices: tuple[float, ...] = ()

    @property
    def counted(self) -> tuple[BenchTrial, ...]:
        """The trials within the budget."""
        return tuple(trial for trial in self.trials if trial.counted)


class Calibration(StrictModel):
    """The cost measurements the launch rule starts from, made once before the strategies run.

    Attributes:
        epochs: epochs each calibration trial trained (the study's schedule).
        rates: device-hours per trial-epoch measured at each pack size (``"1"``, ``"<pack size>"``).
        device_hours: what the calibration cost (charged to no strategy).
        full_trial_hours: the mean cost of a trial of the calibration's full pack: the unit of ``budget.trials``.
    """

    epochs: int
    rates: dict[str, float]
    device_hours: float
    full_trial_hours: float


class SearchBenchResult(Record):
    """``bench/results/search.json``: the whole benchmark.

    Attributes:
        bench_id: tags every MLflow run of this benchmark (``proxyhpo.bench.id``).
        experiment: the MLflow experiment; ``study``: the (merged) study's name.
        config: the bench config as run.
        machine: platform, torch, threads, device, load averages at the start and the end.
        budget_hours: the budget every strategy and seed had.
        calibration: see :class:`Calibration`.
        runs: every strategy in every seed.
        wall_seconds: how long the benchmark took.
    """

    WRITTEN_BY = "proxyhpo bench search"

    bench_id: str
    experiment: str
    study: str
    config: dict[str, Any]
    machine: dict[str, Any]
    budget_hours: float
    calibration: Calibration
    runs: tuple[StrategyRun, ...]
    wall_seconds: float = 0.0


# ------------------------------------------------------------------------------------------------ tabular benchmark
class TableGridConfig(StrictModel):
    """The grid a tabular benchmark trains: every categorical's choices times ``points`` values of each range.

    Attributes:
        points: values per continuous hyper-parameter of the study's search space, spread evenly on its scale
            (log-spaced for a ``log_uniform``), both ends included; a continuous one not named here gets 5.
        seeds: training seeds per grid point (each an independent initialisation and data order).
        pack_size: trials trained at once in one pack (the study's packs; the cost of a trial, not its curve).
    """

    points: dict[str, int] = Field(default_factory=lambda: {"lr": 12, "intensity_shift_prob": 5})
    seeds: int = Field(default=3, ge=1, le=64)
    pack_size: int = Field(default=16, ge=1, le=256)

    @model_validator(mode="after")
    def _enough_points(self) -> TableGridConfig:
        for name, n in self.points.items():
            if n < 2:
                raise ValueError(f"points.{name} must be at least 2 (both ends of the range), got {n}")
        return self


class TableConfig(StrictModel):
    """What ``proxyhpo bench table CONFIG --out TABLE`` records.

    Attributes:
        study: the study config (a path, relative to this config's folder): data, proxy data, search space,
            trainer (network, recipe, batch size) and schedule (``training.epochs``). Every trial is validated
            and tested on the untouched held-out cases after every epoch.
        overrides: deep-merged into the study's document (a smaller phantom, fewer epochs).
        grid: see :class:`TableGridConfig`.

    Example config::

        study: ../components/proxyhpo/examples/demo.yaml
        overrides: {training: {epochs: 12}}
        grid: {points: {lr: 12, intensity_shift_prob: 5}, seeds: 3, pack_size: 16}
    """

    study: str = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    grid: TableGridConfig = Field(default_factory=TableGridConfig)


def load_table_config(path: str | os.PathLike[str]) -> TableConfig:
    """Load a table config; its ``study`` path becomes absolute, against the config's folder.

    Raises:
        ConfigError: naming the file and the key for the first invalid, missing or unknown key.
    """
    return _load_beside_study(TableConfig, path)


class TableSearchConfig(StrictModel):
    """How ``proxyhpo bench search --table TABLE`` replays the strategies on a recorded table.

    Attributes:
        strategies: which registered strategies run (default: all whose packages are installed).
        seeds: searches per strategy (seed ``0 .. seeds - 1``); a search's seed seeds the strategy and the
            draw of the table's training seed for each of its trials.
        budgets: the budgets the regret is read at, in full trials (one trial trained all its epochs: the
            table's ``epochs * steps_per_epoch`` trial-steps); a search runs to the largest.
        proposals_per_batch: proposals a strategy asks for at once (a REINFORCE round), trained as one queue.
        pack_slots: trials trained at once in the replayed pack (a stopped trial's slot takes the next).
        val_every: a trial is validated every ``val_every`` epochs, at its rungs and at its last epoch (what
            a strategy is told of its curve; validations cost nothing in trial-steps).
        early_stopping: the rungs of the strategies that stop trials (successive halving, Optuna's pruners).
        tpe_startup_trials: random trials before an Optuna sampler (TPE, GP, CMA-ES) models the results (default
            ``proposals_per_batch``).
        bootstrap: resamples of the bootstrap interval of the median regret.
        seed_counts: fewer (or more) searches for a strategy than ``seeds`` (a slow sampler such as ``gp``).
    """

    strategies: tuple[StrategyName, ...] | None = None
    seeds: int = Field(default=200, ge=1, le=100_000)
    budgets: tuple[float, ...] = (5, 10, 15, 20, 30, 40, 50, 60)
    proposals_per_batch: int = Field(default=8, ge=1, le=256)
    pack_slots: int = Field(default=4, ge=1, le=256)
    val_every: int = Field(default=5, ge=1)
    early_stopping: EarlyStoppingConfig | None = None
    tpe_startup_trials: int | None = Field(default=None, ge=0)
    bootstrap: int = Field(default=2000, ge=100, le=100_000)
    seed_counts: dict[StrategyName, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _budgets(self) -> TableSearchConfig:
        if not self.budgets or any(b <= 0 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"budgets must be positive and increasing, got {list(self.budgets)}")
        return self
