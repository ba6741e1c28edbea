"""``proxyhpo bench search CONFIG``: search strategies side by side on one trainer, data and device-hour budget.

Every strategy (:data:`proxyhpo.registry.SEARCH_STRATEGIES`) trains its proposals through the pipeline's own trial
training (:func:`~proxyhpo.training.study_trials.build_search_plan` for the plan,
:func:`~proxyhpo.training.run_trials` for the packs, :func:`~proxyhpo.tracking.trial_runs` for one MLflow child
run per trial), on the study's proxy data, network, recipe, schedule and pack size, for each seed. The
final model of each strategy's best hyper-parameters is the pipeline's final model
(:func:`~proxyhpo.training.study_trials.train_final_model`).

Accounting, precisely:

- **Cost.** A trial costs the device-hours its :class:`~proxyhpo.config.TrialResult` reports,
  ``gpu_hours + process_hours`` (one of them is 0): its share of its pack's wall-clock time on the device
  (1/K of each step while K models train together), its share of the pack's set-up and data caching, and
  its validations. A trial stopped early stops being charged when it stops.
- **Spend.** A strategy's trials are accounted in the order it proposed them; its spend after a trial is
  the sum of the costs of that trial and every earlier one.
- **Budget.** A trial *counts* when the spend after it is within the budget. Only counted trials enter
  the curve, the best trial and the final model, so the device-hours a strategy is credited with never
  exceed the budget, whatever the machine does. A trial that crosses the budget still cost its
  device-hours: they are reported as ``overrun_hours`` (the benchmark's waste, of no use to the strategy)
  and its run is tagged ``proxyhpo.bench.counted=false``.
- **Launch rule.** A strategy starts a batch of ``n`` proposals (``n`` at most ``proposals_per_batch``, the
  largest that fits) only when ``spend + n * epochs * rate * (1 + margin)`` is within the budget, where
  ``rate`` is the median device-hours per trial-epoch of the last four batches measured at the batch's
  pack size (the calibration's included; a pack size not measured yet takes the largest smaller one's,
  down to the calibration's single trial). Trials that may stop early are predicted at all their epochs,
  an upper bound. When no batch fits, the strategy is done. A batch that runs more than ``margin`` slower
  per trial-epoch than the median (the machine's load rose) may cross the budget: its trials past it are
  not counted. The median, not the highest: on a shared machine one slow batch would otherwise shrink
  every strategy's next four batches and leave budgets unspent.
- **Fairness.** Within a seed the strategies take turns batch by batch, the one that has spent least going
  next, so a change of the machine's load hits them alike; within a seed the k-th proposal of every
  strategy starts from the same initial weights and data order.
- **Calibration.** Before the strategies, one trial alone and one pack of the study's pack size train the
  study's whole schedule (logged as ``calibration`` runs under the benchmark's own run, charged to no
  strategy), after one epoch of one pack has warmed the data cache and the process (logged nowhere): the
  launch rule's first rates and ``budget.trials``' unit, a trial of the pack. A shorter calibration would
  overrate an epoch: a trial's set-up and validations weigh more on few epochs.

MLflow: one experiment (``<study>-search-bench`` unless the config names one); a run for the benchmark
(``proxyhpo.pipeline=search-bench``, ``proxyhpo.bench.role=bench``: the calibration's trials, the config, the
result JSON and the figure) and one parent run per strategy and seed (``proxyhpo.bench.role=search``, tags
``proxyhpo.bench.strategy`` and ``proxyhpo.bench.seed``), whose children are its trials (role ``trial``,
tagged ``proxyhpo.proposal_id``) and its final model (role ``final``); every run carries ``proxyhpo.bench.id``.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import platform
import statistics
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxyhpo import paths, storage, tracking
from proxyhpo.tracking import names
from proxyhpo.analysis.search_bench import best_trial, cost_unit, plot_search_bench, running_best, summary_markdown
from proxyhpo.config import Categorical, PackSpec, ProxyDataManifest, Proposal, StudyConfig, StudyData, TrialPlan, TrialResult, load_yaml, parse_config, resolve_pack_size
from proxyhpo.config.early_stopping import EarlyStoppingConfig
from proxyhpo.config.search_bench import BenchBatch, BenchTrial, Calibration, SearchBenchConfig, SearchBenchResult, StrategyRun
from proxyhpo.errors import ProxyHPOError
from proxyhpo.registry import SEARCH_STRATEGIES
from proxyhpo.search._base import Strategy, study_with

__all__ = ["PIPELINE", "bench_study", "CostModel", "SearchBench", "run_search_bench", "run_table_bench"]

logger = logging.getLogger(__name__)

PIPELINE = "search-bench"
#: Batches whose measured rate the launch rule remembers, per pack size.
RATE_WINDOW = 4


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` deep-merged into it (mappings merge key by key; anything else replaces)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def bench_study(config: SearchBenchConfig) -> StudyConfig:
    """The study the benchmark runs: the config's study with its overrides, named after the benchmark's experiment.

    Raises:
        ConfigError: naming the study file and the key when the merged study does not validate.
    """
    document = _merged(load_yaml(config.study), config.overrides)
    study = parse_config(StudyConfig, document, config.study)
    # every run of the benchmark, the final models' included, lands in the benchmark's experiment
    return study.model_copy(update={"name": config.experiment or f"{study.name}-search-bench", "data": study.data.with_absolute_paths()})


def _mean(values: Any) -> float | None:
    """The mean of the values that are not None; None when none is."""
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None


def cost_of(result: TrialResult) -> float:
    """A trial's device-hours: ``gpu_hours + process_hours`` (see :class:`~proxyhpo.config.TrialResult`)."""
    return float(result.gpu_hours) + float(result.process_hours)


class CostModel:
    """The launch rule's prediction of a batch's device-hours, from what batches measured per trial-epoch.

    Args:
        margin: predictions are multiplied by ``1 + margin``.
        window: measurements remembered per pack size.

    Example:
        >>> model = CostModel(margin=0.25)
        >>> model.observe(1, hours=0.01, trial_epochs=10)
        >>> round(model.predict(2, slots=1, epochs=5), 6)
        0.0125
    """

    def __init__(self, margin: float, window: int = RATE_WINDOW) -> None:
        self.margin = margin
        self.window = window
        self.rates: dict[int, list[float]] = {}

    def observe(self, slots: int, *, hours: float, trial_epochs: int) -> None:
        """Remember a batch trained ``slots`` at a time: ``hours`` over ``trial_epochs`` epochs of its trials."""
        if trial_epochs > 0 and hours > 0:
            self.rates.setdefault(slots, []).append(hours / trial_epochs)

    def rate(self, slots: int) -> float:
        """Device-hours per trial-epoch at pack size ``slots``: the median of the recent measurements at it, else at
        the largest measured size below it (fewer models in a pack rarely make a trial-epoch cheaper), else at the smallest.

        Raises:
            ValueError: when nothing was measured yet.
        """
        if not self.rates:
            raise ValueError("no batch was measured yet: calibrate first")
        below = [size for size in self.rates if size <= slots]
        size = max(below) if below else min(self.rates)
        return statistics.median(self.rates[size][-self.window :])

    def predict(self, n: int, *, slots: int, epochs: int) -> float:
        """Device-hours ``n`` trials of ``epochs`` epochs may cost, ``slots`` at a time, margin included."""
        return n * epochs * self.rate(slots) * (1.0 + self.margin)


@dataclass
class _Search:
    """One strategy in one seed while it runs: its MLflow parent run and its accounting so far."""

    strategy: Strategy
    order: int
    parent_run_id: str
    trials: list[BenchTrial] = field(default_factory=list)
    batches: list[BenchBatch] = field(default_factory=list)
    spent: float = 0.0  # every trial's device-hours, the overrun included
    done: bool = False


def _centre(study: StudyConfig) -> dict[str, Any]:
    """The middle of the search space (first choice of each categorical): the calibration's hyper-parameters."""
    return {name: dist.choices[0] if isinstance(dist, Categorical) else dist.from_unit(0.5) for name, dist in study.search.space.items()}


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "load_average_start": list(os.getloadavg()),
    }


class SearchBench:
    """The benchmark of one config: prepare the data once, calibrate, run every strategy in every seed, report.

    Args:
        config: the bench config (its ``study`` an absolute path, as :func:`load_search_bench` gives it).
        progress: print a line per batch to stderr.
        workdir: where controller states, results files and final models go (default: under the embedded
            home, ``bench/<bench id>``).

    Raises:
        ConfigError: when the study with the config's overrides does not validate.
        ProxyHPOError: when ``tpe+hyperband`` is asked for and Optuna is not installed.

    Example:
        >>> result = SearchBench(load_search_bench("bench/search.yaml")).run("bench/results")  # doctest: +SKIP
    """

    def __init__(self, config: SearchBenchConfig, *, progress: bool = True, workdir: str | os.PathLike[str] | None = None) -> None:
        for name in config.strategies:
            for package in SEARCH_STRATEGIES[name].requires_packages:
                if importlib.util.find_spec(package) is None:
                    raise ProxyHPOError(f"strategy {name} needs {package}, which is not installed; fix: pip install 'proxyhpo[{package}]', or drop it from strategies")
        self.config = config
        self.progress = progress
        self.bench_id = uuid.uuid4().hex[:12]
        self.study = bench_study(config)
        self.workdir = Path(workdir) if workdir else paths.proxyhpo_home() / "bench" / self.bench_id
        self.batch_size = config.proposals_per_batch or self.study.search.proposals_per_round
        training = self.study.training
        self.early_stopping = (
            config.early_stopping
            or self.study.search.early_stopping
            or EarlyStoppingConfig(min_epochs=training.val_every if training.val_every < training.epochs else 1)
        )
        self.startup_trials = config.tpe_startup_trials if config.tpe_startup_trials is not None else self.batch_size
        self.costs = CostModel(config.margin)
        self.budget_hours = 0.0
        self.slots = 1
        self.data: StudyData | None = None
        self.manifest: ProxyDataManifest | None = None
        self._client: Any = None

    @property
    def client(self) -> Any:
        """One MLflow client for the benchmark's own tags and metrics."""
        if self._client is None:
            self._client = tracking.client()
        return self._client

    # ------------------------------------------------------------------------------------------ output
    def _say(self, message: str) -> None:
        if self.progress:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(message)
        logger.info(message)

    # ---------------------------------------------------------------------------------------- training
    def _train(
        self,
        study: StudyConfig,
        proposals: Sequence[Proposal],
        *,
        batch: int,
        parent_run_id: str,
        queued: bool = False,
        role: str = names.ROLE_TRIAL,
    ) -> list[tuple[TrialResult, str]]:
        """Train ``proposals`` as the pipeline trains a round: grouped into packs, one MLflow child run per trial.

        Returns:
            ``(result, run id)`` per trial, in proposal order.
        """
        from proxyhpo.controller.rounds import split_into_packs
        from proxyhpo.training.study_trials import build_search_plan

        pack_size = resolve_pack_size(study.training.pack_size, trials=len(proposals), devices=study.resources.gpus)
        groups = split_into_packs(proposals, gpus=study.resources.gpus, pack_size=pack_size, queued=queued)
        trained: list[tuple[TrialResult, str]] = []
        for index, group in enumerate(groups):
            plan = build_search_plan(study, self.data, self.manifest, PackSpec(round=batch, pack_index=index, proposals=tuple(group)))  # type: ignore[arg-type]
            trained += self._run_logged(study, plan, parent_run_id=parent_run_id, role=role)
        return sorted(trained, key=lambda pair: int(pair[0].tags["proposal_id"]))

    def _run_logged(self, study: StudyConfig, plan: TrialPlan, *, parent_run_id: str, role: str) -> list[tuple[TrialResult, str]]:
        """Train one plan with live MLflow logging, as the pipeline's packs are (a crashed pack fails its trials only)."""
        from proxyhpo.signals import sigterm_ends_trials
        from proxyhpo.training.runner import run_trials
        from proxyhpo.training.study_trials import failed_result

        resolved = {"study": study.model_dump(mode="json"), "plan": plan.model_dump(mode="json"), "bench_id": self.bench_id}
        with sigterm_ends_trials(), tracking.trial_runs(
            study.name,
            plan.trials,
            parent_run_id=parent_run_id,
            data=plan.trials[0].data_label,
            resolved_config=resolved,
            role=role,
            hyperparameter_names=study.search.space.names,
            system_metrics=self.config.system_metrics,
        ) as runs:
            started = time.perf_counter()
            try:
                results = run_trials(plan, on_epoch=lambda trial_id, epoch, dice: runs[trial_id].log_epoch(epoch, dice), progress=False)
            except Exception as exc:  # a crashed pack fails its trials, never the benchmark; its wall time is still charged
                logger.exception("pack %s crashed", [spec.trial_id for spec in plan.trials])
                share = (time.perf_counter() - started) / 3600.0 / len(plan.trials)
                results = [failed_result(spec, f"pack crashed: {type(exc).__name__}: {exc}").model_copy(update={"process_hours": share}) for spec in plan.trials]
            for result in results:
                runs[result.trial_id].finish(result)
            run_ids = {trial_id: run.run_id for trial_id, run in runs.items()}
        return [(result, run_ids[result.trial_id]) for result in results]

    def _warm_up(self, plan: TrialPlan) -> None:
        """One epoch of ``plan``'s pack, logged nowhere and charged to no one: the search's volumes go into the disk
        cache and the process makes its first (slow) steps, batched ones included, so that neither inflates a rate."""
        from proxyhpo.training.runner import run_trials

        run_trials(plan.model_copy(update={"epochs": 1, "val_every": 1}), progress=False)

    @property
    def _unit(self) -> str:
        """The budget's unit, as the progress lines and the summary name it."""
        return cost_unit(self.config.cost)

    def _cost(self, result: TrialResult) -> float:
        """What a trial costs in the budget's unit: its device-hours, or its trial-steps (``cost: trial_steps``)."""
        return float(result.steps_run) if self.config.cost == "trial_steps" else cost_of(result)

    # ------------------------------------------------------------------------------------- calibration
    def _calibrate(self, run_id: str) -> Calibration:
        """One trial alone and one pack of the study's pack size, each the study's whole schedule: the first rates."""
        from proxyhpo.training.study_trials import build_search_plan

        study = study_with(self.study, "search", early_stopping=None)
        pack = resolve_pack_size(study.training.pack_size, trials=self.batch_size)
        centre = _centre(study)
        proposals = [Proposal(proposal_id=i, round=0 if i < pack else 1, hyperparameters=centre, log_prob=0.0) for i in range(pack + 1)]
        self._warm_up(build_search_plan(study, self.data, self.manifest, PackSpec(round=0, pack_index=0, proposals=tuple(proposals[:pack]))))  # type: ignore[arg-type]
        alone = self._train(study, proposals[pack:], batch=1, parent_run_id=run_id, role=names.ROLE_CALIBRATION)
        packed = self._train(study, proposals[:pack], batch=0, parent_run_id=run_id, role=names.ROLE_CALIBRATION)
        self.slots = max(result.pack_size for result, _ in packed)
        rates = {}
        for slots, trained in ((self.slots, packed), (1, alone)):
            hours = sum(self._cost(result) for result, _ in trained)
            trial_epochs = sum(result.epochs_run for result, _ in trained)
            self.costs.observe(slots, hours=hours, trial_epochs=trial_epochs)
            rates[str(slots)] = hours / max(trial_epochs, 1)
        total = sum(self._cost(result) for result, _ in packed + alone)
        full_trial = sum(self._cost(result) for result, _ in packed) / len(packed)
        return Calibration(epochs=study.training.epochs, rates=rates, device_hours=total, full_trial_hours=full_trial)

    # ---------------------------------------------------------------------------------------- searches
    def _open_search(self, name: str, order: int, seed: int, study: StudyConfig) -> _Search:
        factory = SEARCH_STRATEGIES[name]
        # a strategy that stops trials at rungs gets the bench's; the others train every trial all its epochs
        strategy = factory(study_with(study, "search", early_stopping=factory.bench_early_stopping(self.early_stopping)), seed, **startup_options(name, self.startup_trials))
        settings = {"strategy": name, "seed": seed, "budget_hours": self.budget_hours, "proposals_per_batch": self.batch_size, "bench_id": self.bench_id}
        run_id = tracking.start_parent_run(self.study.name, PIPELINE, config=settings, run_name=f"{name}-seed{seed}")
        for key, value in {names.BENCH_ID_TAG: self.bench_id, names.BENCH_ROLE_TAG: names.BENCH_ROLE_SEARCH, names.BENCH_STRATEGY_TAG: name, names.BENCH_SEED_TAG: str(seed)}.items():
            self.client.set_tag(run_id, key, value)
        return _Search(strategy=strategy, order=order, parent_run_id=run_id)

    def _next_batch(self, search: _Search) -> tuple[int, int, float] | None:
        """The largest batch (proposals, pack size, predicted hours) the launch rule lets ``search`` start; None: done."""
        remaining = self.budget_hours - search.spent
        for n in range(self.batch_size, 0, -1):
            slots = min(self.slots, n)
            predicted = self.costs.predict(n, slots=slots, epochs=search.strategy.study.training.epochs)
            if predicted <= remaining:
                return n, slots, predicted
        return None

    def _step(self, search: _Search) -> None:
        """Run ``search``'s next batch, or end it when none fits in its budget."""
        planned = self._next_batch(search)
        if planned is None:
            search.done = True
            return
        n, slots, predicted = planned
        strategy = search.strategy
        batch = len(search.batches)
        proposals = strategy.ask(n)
        by_id = {proposal.proposal_id: proposal for proposal in proposals}
        trained = self._train(strategy.study, proposals, batch=batch, parent_run_id=search.parent_run_id, queued=strategy.stops_early)
        hours = 0.0
        for result, run_id in trained:
            cost = self._cost(result)
            hours += cost
            search.spent += cost
            counted = search.spent <= self.budget_hours
            self.client.set_tag(run_id, names.BENCH_COUNTED_TAG, "true" if counted else "false")
            proposal = by_id[int(result.tags["proposal_id"])]
            search.trials.append(
                BenchTrial(
                    trial_id=result.trial_id,
                    proposal_id=proposal.proposal_id,
                    batch=batch,
                    hyperparameters=dict(proposal.hyperparameters),
                    state=result.state.value,
                    stopped_at_epoch=result.stopped_at_epoch,
                    epochs_run=result.epochs_run,
                    val_dice=result.final_val_dice,
                    device_hours=cost,
                    cumulative_hours=search.spent,
                    counted=counted,
                    run_id=run_id,
                )
            )
            if not counted:
                search.done = True
        strategy.tell([result for result, _ in trained])
        self.costs.observe(slots, hours=hours, trial_epochs=sum(result.epochs_run for result, _ in trained))
        search.batches.append(BenchBatch(batch=batch, proposals=n, slots=slots, predicted_hours=predicted, device_hours=hours))
        best = best_trial(search.trials)
        self._say(
            f"  {strategy.name:<14} batch {batch}: {n} trials, {sum(r.state.value == 'STOPPED' for r, _ in trained)} stopped, "
            f"{hours:.5f} {self._unit} (predicted {predicted:.5f}); spent {search.spent:.5f} of {self.budget_hours:.5f} {self._unit}; "
            f"best val Dice {'-' if best is None else f'{best.val_dice:.4f}'}"
        )

    def _finish(self, search: _Search, seed_study: StudyConfig) -> StrategyRun:
        """Train the final model of ``search``'s best counted trial, log the parent run's summary and close it."""
        from proxyhpo.training.study_trials import train_final_model

        best = best_trial(search.trials)
        finals: list[TrialResult] = []
        if best is not None and self.config.final:
            folder = self.workdir / f"seed{search.strategy.seed}" / search.strategy.name.replace("+", "-")
            self._say(f"  {search.strategy.name:<14} final model ({self.config.final_repeats}x): {best.hyperparameters}")
            for repeat in range(self.config.final_repeats):  # one initialisation each: study.final.seed + repeat
                suffix = f"-r{repeat}" if repeat else ""
                finals.append(train_final_model(
                    seed_study, self.data, dict(best.hyperparameters), parent_run_id=search.parent_run_id,  # type: ignore[arg-type]
                    results_out=folder / f"final{suffix}.results.json", model_dir=folder / f"final-model{suffix}", repeat=repeat,
                ))
        counted = [trial for trial in search.trials if trial.counted]
        run = StrategyRun(
            strategy=search.strategy.name,  # type: ignore[arg-type]
            seed=search.strategy.seed,
            parent_run_id=search.parent_run_id,
            budget_hours=self.budget_hours,
            device_hours=sum(trial.device_hours for trial in counted),
            overrun_hours=sum(trial.device_hours for trial in search.trials if not trial.counted),
            trials=tuple(search.trials),
            batches=tuple(search.batches),
            curve=running_best(search.trials),
            best_trial_id=best.trial_id if best else None,
            best_val_dice=best.val_dice if best else None,
            best_hyperparameters=dict(best.hyperparameters) if best else None,
            final_val_dice=_mean(final.final_val_dice for final in finals),
            final_internal_test_dice=_mean(final.internal_test_dice for final in finals),
            final_test_dice=_mean(final.test_dice for final in finals),
            final_device_hours=sum(cost_of(final) for final in finals) if finals else None,
            final_internal_test_dices=tuple(final.internal_test_dice for final in finals if final.internal_test_dice is not None),
        )
        metrics = {
            names.BUDGET_HOURS: run.budget_hours,
            names.DEVICE_HOURS: run.device_hours,
            names.OVERRUN_HOURS: run.overrun_hours,
            names.N_TRIALS: len(counted),
            names.N_STOPPED: sum(trial.state == names.STATE_STOPPED for trial in counted),
            names.TRIAL_EPOCHS: sum(trial.epochs_run for trial in counted),
            names.BEST_VAL_DICE: run.best_val_dice,
            names.FINAL_VAL_DICE: run.final_val_dice,
            names.FINAL_INTERNAL_TEST_DICE: run.final_internal_test_dice,
            names.FINAL_TEST_DICE: run.final_test_dice,
        }
        for key, value in metrics.items():
            if value is not None:
                self.client.log_metric(run.parent_run_id, key, float(value))
        self.client.log_dict(run.parent_run_id, run.model_dump(mode="json"), names.SEARCH_ARTIFACT)
        tracking.finish_run(run.parent_run_id)
        return run

    def seed_study(self, seed: int) -> StudyConfig:
        """The study of one seed: its training seed moved by the seed and, with ``vary_data``, its held-out split and
        proxy data too."""
        study = study_with(self.study, "training", seed=self.study.training.seed + 1000 * seed)
        if self.config.vary_data:
            study = study_with(study, "data", split_seed=self.study.data.split_seed + seed)
            study = study_with(study, "selection", seed=self.study.selection.seed + seed)
        return study

    def _run_seed(self, seed: int) -> list[StrategyRun]:
        """Every strategy in one seed, batch by batch in turns (least spent first), then their final models."""
        study = self.seed_study(seed)
        if self.config.vary_data:
            from proxyhpo.data.prepare import prepare_study_data
            from proxyhpo.similarity.proxy_data import select_for_study

            self.data = prepare_study_data(study)
            self.manifest = select_for_study(study, self.data)
        searches: list[_Search] = []
        runs: list[StrategyRun] = []
        try:
            for order, name in enumerate(self.config.strategies):
                searches.append(self._open_search(name, order, seed, study))
            while True:
                active = [search for search in searches if not search.done]
                if not active:
                    break
                self._step(min(active, key=lambda search: (search.spent, search.order)))
            for search in searches:
                runs.append(self._finish(search, study))
            return runs
        except BaseException:
            for search in searches[len(runs) :]:  # the parent runs not closed yet
                tracking.finish_run(search.parent_run_id, failed=True)
            raise

    # -------------------------------------------------------------------------------------------- run
    def run(self, out: str | os.PathLike[str]) -> SearchBenchResult:
        """Run the benchmark; write ``search.json``, ``search.png`` and ``search.md`` into ``out`` (after every seed, the seeds so far).

        Returns:
            the result, as written.

        Raises:
            ConfigError, DataError: for a study or data set that does not validate.
        """
        from proxyhpo.data.prepare import prepare_study_data
        from proxyhpo.similarity.proxy_data import select_for_study

        started = time.perf_counter()
        machine = _machine()
        out = Path(out)
        self._say(f"search benchmark {self.bench_id}: {', '.join(self.config.strategies)} x seeds {list(self.config.seeds)} on {self.study.name}")
        self.data = prepare_study_data(self.study)
        self.manifest = select_for_study(self.study, self.data)
        tracking.ensure_experiment(self.study.name)
        bench_run = tracking.start_parent_run(
            self.study.name, PIPELINE, config={"bench": self.config.model_dump(mode="json"), "study": self.study.model_dump(mode="json")}, run_name=f"search-bench-{self.bench_id}"
        )
        client = self.client
        client.set_tag(bench_run, names.BENCH_ID_TAG, self.bench_id)
        client.set_tag(bench_run, names.BENCH_ROLE_TAG, names.BENCH_ROLE_BENCH)
        try:
            calibration = self._calibrate(bench_run)
            self.budget_hours = self.config.budget.hours if self.config.budget.hours is not None else self.config.budget.trials * calibration.full_trial_hours  # type: ignore[operator]
            self._say(
                f"calibrated: {calibration.rates} {self._unit} per trial-epoch; a full trial {calibration.full_trial_hours:.5f} {self._unit}; "
                f"budget {self.budget_hours:.5f} {self._unit} per strategy and seed"
            )
            runs: list[StrategyRun] = []
            for seed in self.config.seeds:
                self._say(f"seed {seed}")
                runs += self._run_seed(seed)
                # written after every seed: a long benchmark stopped later keeps the seeds it finished
                machine["load_average_end"] = list(os.getloadavg())
                result = SearchBenchResult(
                    bench_id=self.bench_id,
                    experiment=self.study.name,
                    study=self.study.name,
                    config=self.config.model_dump(mode="json"),
                    machine=machine,
                    budget_hours=self.budget_hours,
                    calibration=calibration,
                    runs=tuple(runs),
                    wall_seconds=time.perf_counter() - started,
                )
                result.write(out / "search.json")
                plot_search_bench(result, out / "search.png")
                markdown = summary_markdown(result)
                storage.atomic_write_text(out / "search.md", markdown)
            for name in ("search.json", "search.png", "search.md"):
                client.log_artifact(bench_run, str(out / name))
            client.log_metric(bench_run, names.BUDGET_HOURS, self.budget_hours)
            client.log_metric(bench_run, names.CALIBRATION_HOURS, calibration.device_hours)
        except BaseException:
            tracking.finish_run(bench_run, failed=True)
            raise
        tracking.finish_run(bench_run)
        self._say(markdown)
        return result


def run_search_bench(config: str | os.PathLike[str] | SearchBenchConfig, out: str | os.PathLike[str] = "bench/results", *, progress: bool = True) -> SearchBenchResult:
    """``proxyhpo bench search CONFIG``: run the search benchmark of a bench config file; results into ``out``.

    Raises:
        ConfigError: naming the file and key of an invalid bench config or study.
    """
    from proxyhpo.config.search_bench import load_search_bench

    if not isinstance(config, SearchBenchConfig):
        config = load_search_bench(config)
    return SearchBench(config, progress=progress).run(out)


def startup_options(name: str, startup_trials: int) -> dict[str, Any]:
    """Keyword options of strategy ``name`` beyond (study, seed): an Optuna sampler's random start-up trials
    (``tpe_startup_trials`` of both benchmarks), none for a strategy without them."""
    import inspect

    factory = SEARCH_STRATEGIES[name]
    return {"startup_trials": startup_trials} if "startup_trials" in inspect.signature(factory.__init__).parameters else {}


# ------------------------------------------------------------------------------------------- the tabular benchmark
def _strategy_options(name: str, config: Any) -> dict[str, Any]:
    """The replay's :func:`startup_options` (default: one batch of proposals)."""
    return startup_options(name, config.tpe_startup_trials if config.tpe_startup_trials is not None else config.proposals_per_batch)


def run_table_bench(
    table_path: str | os.PathLike[str],
    config: Any = None,
    out: str | os.PathLike[str] = "bench/results",
    *,
    seeds: int | None = None,
    strategies: Sequence[str] | None = None,
    default: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``proxyhpo bench search --table TABLE``: every strategy's seeded searches replayed on a recorded table.

    Each strategy runs ``config.seeds`` searches (seeds ``0..n-1``; :func:`~proxyhpo.search.table.replay_search`),
    each until its trials have cost the largest budget; its regret is read at every budget
    (:func:`~proxyhpo.search.table.regrets`). Writes ``search-table-<table>.json`` (per strategy the median regret
    with its bootstrap interval at each budget, every seed's regrets, the default's paired Wilcoxon tests against
    random search and TPE) and ``search-table-<table>.png`` into ``out``.

    Args:
        table_path: the table (``proxyhpo bench table``).
        config: a :class:`~proxyhpo.config.search_bench.TableSearchConfig` (default: its defaults).
        seeds, strategies: override the config's.
        default: the strategy tested against the rivals (default: ``search.strategy``'s default of a study).

    Raises:
        DataError: when the table cannot be read.
        ProxyHPOError: when a strategy named needs a package that is not installed.
    """
    from proxyhpo.analysis.search_bench import plot_table_bench, table_bench_summary
    from proxyhpo.config.search_bench import TableSearchConfig
    from proxyhpo.config.study import SearchConfig
    from proxyhpo.search.table import Table, regrets, replay_search
    import numpy as np

    config = config or TableSearchConfig()
    if seeds is not None or strategies is not None:
        config = TableSearchConfig.model_validate(config.model_dump() | ({"seeds": seeds} if seeds is not None else {}) | ({"strategies": tuple(strategies)} if strategies is not None else {}))
    table = Table.read(table_path)
    names_ = list(config.strategies or [n for n in SEARCH_STRATEGIES.names() if all(importlib.util.find_spec(p) for p in SEARCH_STRATEGIES[n].requires_packages)])
    for name in names_:
        for package in SEARCH_STRATEGIES[name].requires_packages:
            if importlib.util.find_spec(package) is None:
                raise ProxyHPOError(f"strategy {name} needs {package}, which is not installed; fix: pip install 'proxyhpo[{package}]', or drop it from strategies")
    default = default or SearchConfig.model_fields["strategy"].default
    regret: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    trials: dict[str, float] = {}
    import hashlib
    import json

    # each strategy's regrets are kept beside the results, keyed by the table, the replay's settings and the strategy's
    # code version: processes that each run some strategies (--strategies) share them, and a rerun only adds the new
    key = hashlib.sha256(Path(table_path).read_bytes() + json.dumps(config.model_dump(mode="json", exclude={"strategies", "seeds", "seed_counts", "bootstrap"}), sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(out) / ".search-table-cache"
    for name in names_:
        started = time.process_time()
        n = config.seed_counts.get(name, config.seeds)
        kept = cache / f"{key}-{name.replace('+', '_')}-{n}.npz"
        if kept.exists():
            with np.load(kept) as saved:
                regret[name], seconds[name], trials[name] = saved["regret"], float(saved["seconds"]), float(saved["trials"])
            continue
        rows, counts = [], []
        for seed in range(n):
            replayed = replay_search(table, name, seed, config, options=_strategy_options(name, config))
            rows.append(regrets(table, replayed, config.budgets))
            counts.append(sum(t.cumulative_steps <= 20 * table.trial_steps for t in replayed))
        regret[name] = np.array(rows)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(kept, regret=regret[name], seconds=time.process_time() - started, trials=float(statistics.mean(counts)))
        seconds[name] = time.process_time() - started
        trials[name] = float(statistics.mean(counts))
        if progress:
            logger.warning("%s: %d searches in %.1f CPU s; median regret %s at budgets %s", name, n, seconds[name], [round(float(v), 4) for v in np.median(regret[name], axis=0)], list(config.budgets))
    summary = table_bench_summary(regret, config.budgets, default=default, resamples=config.bootstrap)
    k20 = min(range(len(config.budgets)), key=lambda k: abs(config.budgets[k] - 20))
    summary["per_seed_at_20"] = {name: [round(float(v), 5) for v in values[:, k20]] for name, values in regret.items()}
    summary |= {
        "table": str(table_path),
        "table_meta": {key: table.meta.get(key) for key in ("commit", "command", "epochs", "steps_per_epoch", "config")},
        "table_best_test_dice": float(table.config_test_dice().max()),
        "trial_steps_per_full_trial": table.trial_steps,
        "config": config.model_dump(mode="json"),
        "cpu_seconds": seconds,
        "mean_trials_within_20": trials,
        "regrets": {name: [[round(float(v), 5) for v in row] for row in values] for name, values in regret.items()},
    }
    out = Path(out)
    stem = f"search-table-{Path(table_path).stem.removeprefix('table-')}"
    storage_path = out / f"{stem}.json"
    from proxyhpo import storage

    storage.atomic_write_json(storage_path, summary)
    plot_table_bench(summary, out / f"{stem}.png", title=f"{Path(table_path).name}: regret against budget ({config.seeds} seeds)")
    return summary
