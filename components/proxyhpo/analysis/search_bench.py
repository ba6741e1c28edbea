"""The search benchmark's analysis: running best against device-hours, the best trial, the table and the figure.

Pure functions over the benchmark's records (:mod:`proxyhpo.config.search_bench`). The curve of a
strategy is defined on its *counted* trials (within the budget), in the order the strategy proposed them:
after each, the device-hours spent so far and the best validation Dice of the trials so far that trained
all their epochs. Trials stopped early (successive halving, a pruner) cost device-hours but are no
candidates: their Dice is an earlier epoch's, not comparable with a finished trial's (Optuna's best trial
and the REINFORCE controller's final choice exclude them alike).

Example:
    >>> curve = running_best(run.trials)  # doctest: +SKIP
    >>> plot_search_bench(result, "bench/results/search.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from proxyhpo import storage
from proxyhpo.config.search_bench import BenchTrial, CurvePoint, SearchBenchResult, StrategyRun

__all__ = ["running_best", "best_trial", "summary_rows", "cost_unit", "paired_finals", "summary_markdown", "plot_search_bench", "median_interval", "paired_test", "table_bench_summary", "plot_table_bench"]

_DPI = 110
_COLOURS = {"random": "#7f7f7f", "reinforce": "#1f77b4", "reinforce+sh": "#2ca02c", "tpe+hyperband": "#d62728"}
#: Colours for the strategies without one of their own, in the order they appear (tab10's, less the four above).
_SPARE_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#000000")


def _strategy_colours(strategies: Sequence[str]) -> dict[str, str]:
    """One colour per strategy, the same for all its seeds: its own, else the next spare one."""
    spare = iter(_SPARE_COLOURS * (1 + len(strategies) // len(_SPARE_COLOURS)))
    return {strategy: _COLOURS.get(strategy) or next(spare) for strategy in strategies}


def _candidate(trial: BenchTrial) -> bool:
    return trial.counted and trial.state == "COMPLETE" and trial.val_dice is not None and math.isfinite(trial.val_dice)


def running_best(trials: Sequence[BenchTrial]) -> tuple[CurvePoint, ...]:
    """One point per counted trial: its cumulative device-hours and the best Dice of the finished trials so far.

    Args:
        trials: a strategy's trials in proposal order.

    Returns:
        the curve (with the trial-epochs trained so far, too); ``best_val_dice`` is None until a trial has
        trained all its epochs.
    """
    best: float | None = None
    epochs = 0
    points = []
    for trial in trials:
        if not trial.counted:
            continue
        epochs += trial.epochs_run
        if _candidate(trial) and (best is None or trial.val_dice > best):  # type: ignore[operator]
            best = trial.val_dice
        points.append(CurvePoint(trial_id=trial.trial_id, hours=trial.cumulative_hours, trial_epochs=epochs, best_val_dice=best))
    return tuple(points)


def best_trial(trials: Sequence[BenchTrial]) -> BenchTrial | None:
    """The counted trial with the highest Dice among those that trained all their epochs (the earliest on ties)."""
    best: BenchTrial | None = None
    for trial in trials:
        if _candidate(trial) and (best is None or trial.val_dice > best.val_dice):  # type: ignore[operator]
            best = trial
    return best


def summary_rows(result: SearchBenchResult) -> list[dict[str, object]]:
    """One row per strategy and seed: device-hours, trials, the best validation Dice and the final model's Dice."""
    rows = []
    for run in result.runs:
        counted = run.counted
        rows.append(
            {
                "strategy": run.strategy,
                "seed": run.seed,
                "device_hours": run.device_hours,
                "budget_hours": run.budget_hours,
                "overrun_hours": run.overrun_hours,
                "trials": len(counted),
                "stopped": sum(trial.state == "STOPPED" for trial in counted),
                "failed": sum(trial.state == "FAILED" for trial in counted),
                "trial_epochs": sum(trial.epochs_run for trial in counted),
                "best_val_dice": run.best_val_dice,
                "final_internal_test_dice": run.final_internal_test_dice,
                "final_test_dice": run.final_test_dice,
            }
        )
    return rows


def cost_unit(cost: str | None) -> str:
    """What a live benchmark's budget and costs count, by its ``cost`` setting: ``trial-steps`` or ``device-hours``."""
    return "trial-steps" if cost == "trial_steps" else "device-hours"


def paired_finals(result: SearchBenchResult, baseline: str = "random") -> list[dict[str, object]]:
    """Each strategy's final internal test Dice against ``baseline``'s, paired by seed (the seed draws the data).

    Returns one record per other strategy: ``differences`` (strategy minus baseline, per seed, in seed order),
    their mean, the two-sided 95% paired-t interval and p-value (None below two seeds). Empty when the
    baseline did not run.
    """
    from scipy import stats

    finals = {(run.strategy, run.seed): run.final_internal_test_dice for run in result.runs}
    if not any(strategy == baseline for strategy, _ in finals):
        return []
    records = []
    for strategy in dict.fromkeys(run.strategy for run in result.runs):
        if strategy == baseline:
            continue
        seeds = sorted(seed for (name, seed), dice in finals.items() if name == strategy and dice is not None and finals.get((baseline, seed)) is not None)
        differences = [finals[(strategy, seed)] - finals[(baseline, seed)] for seed in seeds]  # type: ignore[operator]
        mean = float(np.mean(differences)) if differences else None
        low = high = p = None
        if len(differences) >= 2 and np.std(differences) > 0:
            test = stats.ttest_1samp(differences, 0.0)
            low, high = (float(v) for v in test.confidence_interval(0.95))
            p = float(test.pvalue)
        records.append({"strategy": strategy, "baseline": baseline, "seeds": seeds, "differences": differences, "mean": mean, "low": low, "high": high, "p": p})
    return records


def _number(value: object, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"  # type: ignore[str-format]


def summary_markdown(result: SearchBenchResult) -> str:
    """The results table (strategy, seed, device-hours, trials, best validation Dice, final Dice) and per-strategy means.

    The strategies are compared on the final model's internal test Dice: the held-out cases that no search,
    early stopping or checkpoint choice read (its validation Dice chose its checkpoint, so it is not shown).
    """
    unit = cost_unit(result.config.get("cost"))
    lines = [
        f"Budget {result.budget_hours:.5f} {unit} per strategy and seed ({result.calibration.full_trial_hours:.5f} per full trial at calibration).",
        "",
        f"| strategy | seed | {unit} | trials (stopped) | trial-epochs | best val Dice | final internal test Dice | final external Dice |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = summary_rows(result)
    for row in rows:
        lines.append(
            f"| {row['strategy']} | {row['seed']} | {_number(row['device_hours'], 5)} | {row['trials']} ({row['stopped']}) | {row['trial_epochs']} "
            f"| {_number(row['best_val_dice'])} | {_number(row['final_internal_test_dice'])} | {_number(row['final_test_dice'])} |"
        )
    lines += ["", f"| strategy | mean best val Dice | mean final internal test Dice | mean {unit} | seeds |", "|---|---:|---:|---:|---:|"]
    for strategy in dict.fromkeys(row["strategy"] for row in rows):
        mine = [row for row in rows if row["strategy"] == strategy]

        def mean(key: str) -> float | None:
            values = [row[key] for row in mine if row[key] is not None]
            return float(np.mean(values)) if values else None  # type: ignore[arg-type]

        lines.append(f"| {strategy} | {_number(mean('best_val_dice'))} | {_number(mean('final_internal_test_dice'))} | {_number(mean('device_hours'), 5)} | {len(mine)} |")
    paired = paired_finals(result)
    if paired:
        lines += ["", "Final internal test Dice minus random search's, paired by seed (two-sided 95% paired-t interval):", "",
                  "| strategy | per seed | mean | 95% interval | p |", "|---|---|---:|---|---:|"]
        for record in paired:
            per_seed = ", ".join(f"{seed}: {difference:+.4f}" for seed, difference in zip(record["seeds"], record["differences"]))  # type: ignore[call-overload]
            interval = "-" if record["low"] is None else f"[{record['low']:+.4f}, {record['high']:+.4f}]"
            lines.append(f"| {record['strategy']} | {per_seed} | {_number(record['mean'])} | {interval} | {_number(record['p'], 3)} |")
    return "\n".join(lines) + "\n"


def _steps(run: StrategyRun, x: str = "hours") -> tuple[list[float], list[float]]:
    """The curve as a step function from 0: x (``hours`` or ``trial_epochs``) and y for ``step(where="post")``
    (NaN before the first finished trial)."""
    xs, ys = [0.0], [math.nan]
    for point in run.curve:
        xs.append(float(getattr(point, x)))
        ys.append(math.nan if point.best_val_dice is None else point.best_val_dice)
    return xs, ys


def plot_search_bench(result: SearchBenchResult, out: str | os.PathLike[str]) -> Path:
    """Best validation Dice found against device-hours spent (a line per strategy and seed), and the final models' Dice.

    Left: each strategy's running best over its counted trials, one line per seed, the budget as a dashed
    line. Middle: the same against the trial-epochs trained (on a shared machine a device-hour buys a varying
    amount of work). Right: the final model's Dice on the held-out cases for each strategy's best hyper-parameters
    (the mean of its initialisations), one dot per seed and the mean as a bar. Written atomically as a PNG.
    """
    figure = Figure(figsize=(15, 4.2), constrained_layout=True)
    FigureCanvasAgg(figure)
    curves, work, finals = figure.subplots(1, 3, gridspec_kw={"width_ratios": [2, 1.6, 1]})
    strategies = list(dict.fromkeys(run.strategy for run in result.runs))
    colours = _strategy_colours(strategies)
    seeds = sorted({run.seed for run in result.runs})
    for axis, x in ((curves, "hours"), (work, "trial_epochs")):
        for run in result.runs:
            xs, ys = _steps(run, x)
            colour = colours[run.strategy]
            label = run.strategy if run.seed == min(r.seed for r in result.runs if r.strategy == run.strategy) else None
            axis.step(xs, ys, where="post", color=colour, alpha=0.85, linewidth=1.4, label=label)
            stopped = [point for point, trial in zip(run.curve, run.counted) if trial.state == "STOPPED"]
            if stopped:
                axis.plot([getattr(p, x) for p in stopped], [p.best_val_dice or 0.0 for p in stopped], "x", color=colour, alpha=0.5, markersize=4)
        axis.grid(alpha=0.3)
    curves.axvline(result.budget_hours, color="black", linestyle="--", linewidth=1, label="budget")
    curves.set_xlabel("trial-steps spent" if cost_unit(result.config.get("cost")) == "trial-steps" else "device-hours spent (GPU-hours on a GPU, process-hours on a CPU)")
    curves.set_ylabel("best validation Dice found (trials trained to the end)")
    curves.set_title(f"{result.study}: running best, {len(seeds)} seed{'s' if len(seeds) != 1 else ''} (x: a trial stopped early)")
    curves.legend(loc="best", fontsize=8)
    work.set_xlabel("trial-epochs trained (the work, whatever the machine's load)")
    work.set_title("the same against the work done")
    for k, strategy in enumerate(strategies):
        values = [run.final_internal_test_dice for run in result.runs if run.strategy == strategy and run.final_internal_test_dice is not None]
        colour = colours[strategy]
        if values:
            finals.bar(k, float(np.mean(values)), color=colour, alpha=0.35)
            finals.plot([k] * len(values), values, "o", color=colour)
    finals.set_xticks(range(len(strategies)))
    finals.set_xticklabels(strategies, rotation=20 if len(strategies) <= 4 else 45, ha="right", rotation_mode="anchor", fontsize=8)
    finals.set_ylabel("final model's internal test Dice (held-out cases)")
    initialisations = max((len(run.final_internal_test_dices) for run in result.runs), default=0)
    per_seed = f"mean of {initialisations} initialisations, a dot per seed" if initialisations > 1 else "a dot per seed"
    finals.set_title(f"final model of each strategy's pick\n({per_seed})", fontsize=10)
    finals.grid(alpha=0.3, axis="y")
    with storage.atomic_output(out) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return Path(out)


# ------------------------------------------------------------------------------------------- the tabular benchmark
def median_interval(values: np.ndarray, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """The median of ``values`` and its percentile-bootstrap interval (resampling the seeds).

    Args:
        values: ``(n,)`` one regret per search seed.

    Returns:
        ``(median, low, high)``.
    """
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(len(values), size=(resamples, len(values)))], axis=1)
    tail = (1.0 - confidence) / 2.0
    return float(np.median(values)), float(np.quantile(medians, tail)), float(np.quantile(medians, 1.0 - tail))


#: regrets closer than this are tied: half the last of the 5 decimals the results files keep
TIE = 5e-6


def paired_test(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float | int | None]:
    """Wilcoxon's signed-rank test (scipy) of paired regrets, one-sided: is ``ours`` lower than ``theirs``?

    Seeds where both regrets are equal carry no information about the direction and are dropped (Wilcoxon's own
    rule, ``zero_method="wilcox"``); ``n`` counts the rest. With none left the p-value is None. Equal means equal to
    the 5 decimals the results keep (:data:`TIE`), so regrets read back from a results file test as they were.

    Returns:
        ``{"p": p, "n": seeds that differ, "wins": seeds where ours is lower, "losses": ...}``.
    """
    from scipy import stats

    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    differ = ~np.isclose(ours, theirs, rtol=0.0, atol=TIE)
    wins, losses = int(np.sum(differ & (ours < theirs))), int(np.sum(differ & (ours > theirs)))
    if differ.sum() == 0:
        return {"p": None, "n": 0, "wins": 0, "losses": 0}
    p = float(stats.wilcoxon(ours[differ], theirs[differ], alternative="less").pvalue)
    return {"p": p, "n": int(differ.sum()), "wins": wins, "losses": losses}


def table_bench_summary(regret: dict[str, np.ndarray], budgets: Sequence[float], *, default: str, rivals: Sequence[str] = ("random", "tpe"), resamples: int = 2000) -> dict:
    """Per strategy and budget: the median regret with its bootstrap interval and the mean; each strategy's paired
    tests against ``rivals`` at each budget (the seeds both ran; ``paired_tests[default]`` are the goals').

    Args:
        regret: strategy -> ``(seeds, budgets)`` regrets.
    """
    strategies: dict[str, dict] = {}
    for name, values in regret.items():
        rows = []
        for k, budget in enumerate(budgets):
            median, low, high = median_interval(values[:, k], resamples=resamples)
            rows.append({"budget_trials": float(budget), "median": median, "low": low, "high": high, "mean": float(values[:, k].mean())})
        strategies[name] = {"seeds": int(values.shape[0]), "regret": rows}
    # every strategy against each rival (the default's are the ones the goals read), paired by search seed
    tests: dict[str, dict[str, list]] = {}
    for name in regret:
        for rival in rivals:
            if rival == name or rival not in regret:
                continue
            n = min(regret[name].shape[0], regret[rival].shape[0])
            tests.setdefault(name, {})[rival] = [{"budget_trials": float(b)} | paired_test(regret[name][:n, k], regret[rival][:n, k]) for k, b in enumerate(budgets)]
    return {"default": default, "budgets_trials": [float(b) for b in budgets], "strategies": strategies, "paired_tests": tests}


_LINES = ["-", "--", "-.", ":"]


def plot_table_bench(summary: dict, out: str | os.PathLike[str], *, title: str) -> Path:
    """Median regret against budget (full trials' worth of trial-steps) per strategy with its bootstrap interval
    (left, log scale), and the regret at 20 trials per seed as box plots (right). ~1100 px wide at 110 dpi."""
    figure = Figure(figsize=(10, 4.2), constrained_layout=True)
    FigureCanvasAgg(figure)
    curves, boxes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    names = list(summary["strategies"])
    colours = _strategy_colours(names)  # the live benchmark's colours: a strategy looks the same in both plots
    for k, name in enumerate(names):
        rows = summary["strategies"][name]["regret"]
        x = [row["budget_trials"] for row in rows]
        colour = colours[name]
        width = 2.6 if name == summary["default"] else 1.4
        curves.plot(x, [max(row["median"], 1e-4) for row in rows], _LINES[k % 4], marker="o", markersize=3, color=colour, linewidth=width, label=f"{name} ({summary['strategies'][name]['seeds']} seeds)")
        curves.fill_between(x, [max(row["low"], 1e-4) for row in rows], [max(row["high"], 1e-4) for row in rows], color=colour, alpha=0.12)
    curves.set_yscale("log")
    curves.set_xlabel("budget: trial-steps, in full trials (all epochs)")
    curves.set_ylabel("median regret (best test Dice - picked), 95% CI")
    curves.set_title(title, fontsize=10)
    curves.grid(alpha=0.3, which="both")
    curves.legend(fontsize=7, loc="upper right")
    per_seed = summary.get("per_seed_at_20", {})
    if per_seed:
        data = [per_seed[name] for name in names if name in per_seed]
        boxes.boxplot(data, showfliers=True, flierprops={"markersize": 2})
        boxes.set_xticks(range(1, len(data) + 1))
        boxes.set_xticklabels([name for name in names if name in per_seed], rotation=35, fontsize=7, ha="right")
        boxes.set_ylabel("regret at 20 trials, one point per seed")
        boxes.set_title("spread over seeds at 20 trials", fontsize=10)
        boxes.grid(alpha=0.3, axis="y")
    with storage.atomic_output(out) as tmp:
        figure.savefig(tmp, format="png", dpi=_DPI)
    return Path(out)
