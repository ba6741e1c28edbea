"""The headline figure (issue 12): proxy data + proxy network + packing + early stopping against the full search.

Runs the automl comparison's lever ladder (``bench/headline.yaml``: ``full-search``, ``plus-proxy-data``,
``plus-proxy-net``, ``plus-packing``, ``plus-early-stopping``) through the ``automl-comparison`` pipeline on
``kfp.local``, once per seed (the controller's, the trials', the final model's and the proxy split's seed), each
seed a parent run of its own in MLflow. From each run's MLflow data alone it takes the report's headline (the
full search's device-hours over all levers', each lever's share of it by the log-ratio decomposition along the
ladder, the final Dice of both and the 1% verdict: :mod:`proxyhpo.analysis.headline`), pools the seeds
(geometric mean speed-up, pooled shares, mean Dice) and writes ``bench/results/headline.json`` and
``bench/results/headline.png`` after every seed, so a long run stopped later keeps the seeds it finished.

On a CPU the device is the CPU: every trial is charged its share of the process's wall-clock hours, so the
machine's other load inflates them all, and a pack's step costs about what its models' steps cost one after
another (packing saves little). The bench samples the load average during the run and records, per arm, the
mean load while its trials ran: read the factors with it. The store and data live under ``--home``
(default ``.proxyhpo/bench-headline``), apart from ``make run``'s.

Usage: ``python bench/bench_headline.py [CONFIG] [--seeds 0 1 2] [--out bench/results] [--home DIR] [--runs SEED=RUN_ID ...]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds, with the wall-clock time in ms."""

    def __init__(self, every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((int(time.time() * 1000), os.getloadavg()[0]))
            self.stop.wait(self.every)

    def mean(self, start_ms: int, end_ms: int) -> float | None:
        """Mean load of the samples in ``[start_ms, end_ms]`` (the nearest sample when none falls inside)."""
        inside = [load for at, load in self.samples if start_ms <= at <= end_ms]
        if inside:
            return sum(inside) / len(inside)
        if not self.samples:
            return None
        return min(self.samples, key=lambda sample: abs(sample[0] - start_ms))[1]


def seeded(study: Any, seed: int) -> Any:
    """The study with every seed of a comparison run set to ``seed``: controller, trials, final models, proxy split."""
    from proxyhpo.config import StudyConfig

    document = study.model_dump(mode="json")
    document["search"]["controller"]["seed"] = seed
    document["training"]["seed"] = seed
    document["final"]["seed"] = seed
    document["selection"]["seed"] = seed
    return StudyConfig.model_validate(document)


def absolute_data(study: Any) -> Any:
    """The study with its relative data paths resolved against the repository root (not the current folder)."""
    update = {key.removeprefix("data."): str((ROOT / location).resolve()) for key, location in study.data.local_locations().items() if not Path(location).is_absolute()}
    return study.model_copy(update={"data": study.data.model_copy(update=update)}) if update else study


def seed_and_run(item: str) -> tuple[int, str]:
    """``--runs`` item ``SEED=RUN_ID`` as (seed, run id); argparse reports a malformed one in one line."""
    seed, sep, run_id = item.partition("=")
    if not sep or not run_id or not seed.isdigit():
        raise argparse.ArgumentTypeError(f"{item!r} is not SEED=RUN_ID (e.g. 0=a7ae9a5b619643eb8c89cc06dd03e88b)")
    return int(seed), run_id


def newest_parent(experiment: str, started_after_ms: int) -> Any:
    """The newest finished automl-comparison parent run of ``experiment`` started after ``started_after_ms``."""
    from proxyhpo import tracking

    client = tracking.client()
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{tracking.PIPELINE_TAG}` = 'automl-comparison' and attributes.start_time >= {started_after_ms}",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    runs = [run for run in runs if run.info.status == "FINISHED" and tracking.PARENT_TAG not in run.data.tags]
    if not runs:
        raise RuntimeError(f"no finished automl-comparison run of {experiment} started after {started_after_ms}")
    return runs[0]


def arm_rows(parent: Any, sampler: LoadSampler | None, previous: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per arm: its search's cost and work, trials, stopped trials, final Dice, and the mean load while its search trials ran.

    The seconds per trial-step of the arm's trials (their charged hours over their optimiser steps, validation and set-up
    included) show how the machine's load moved the charge: trials of one network and pack size do the same work per step.
    Without a ``sampler`` (a rebuild from MLflow), the load comes from ``previous``, the arm's row of an earlier headline.json.
    """
    from proxyhpo import tracking
    from proxyhpo.analysis._report_io import children
    from proxyhpo.tracking import names
    from proxyhpo.analysis.comparison_report import collect_searches

    searches = collect_searches(parent.info.run_id)
    runs = children(tracking.client(), parent)
    rows = {}
    for arm, search in searches.items():
        trials = [run for run in runs if run.data.tags.get(names.ARM_TAG) == arm and run.data.tags.get(names.ROLE_TAG) == names.ROLE_TRIAL]
        started = [run.info.start_time for run in trials if run.info.start_time]
        ended = [run.info.end_time for run in trials if run.info.end_time]
        per_step = sorted(
            run.data.metrics.get(names.PROCESS_HOURS, 0.0) * 3600 / run.data.metrics[names.STEPS_RUN]
            for run in trials if run.data.metrics.get(names.STEPS_RUN) and run.data.metrics.get(names.GPU_HOURS, 0.0) == 0.0
        )
        if sampler is not None:
            load = sampler.mean(min(started), max(ended)) if started and ended else None
        else:
            load = ((previous or {}).get(arm) or {}).get("mean_load_during_trials")
        rows[arm] = {
            "hours": search.cost.hours,
            "trial_hours": search.cost.trial_hours,
            "selection_hours": search.cost.selection_hours,
            "equal_pack_hours": search.cost.equal_pack_hours,
            "n_trials": search.trials.n_trials,
            "n_failed": search.trials.n_failed,
            "n_stopped": sum(tracking.STOPPED_TAG in run.data.tags for run in trials),
            "trial_epochs": sum(run.data.metrics.get(names.EPOCHS_RUN, 0.0) for run in trials),
            "trial_steps": sum(run.data.metrics.get(names.STEPS_RUN, 0.0) for run in trials),
            "seconds_per_trial_step": {"min": per_step[0], "median": per_step[len(per_step) // 2], "max": per_step[-1]} if per_step else None,
            "network": search.network,
            "train_cases": search.train_cases,
            "best_val_dice": search.best_val_dice,
            "hyperparameters": search.hyperparameters,
            "final_dice": search.internal_mean,
            "final_test_dice": search.external_mean,
            "mean_load_during_trials": load,
        }
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    """Device-hours per search along the ladder (log scale, one line per seed), and the final Dice of every arm per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = results["seeds"]
    arms = results["arms"]
    fig, (cost, dice) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in seeds:
        hours = [row["arms"].get(arm, {}).get("hours") for arm in arms]
        cost.plot(range(len(arms)), [h if h else math.nan for h in hours], marker="o", label=f"seed {row['seed']}: {row['headline']['speedup']:.1f}×")
        finals = [row["arms"].get(arm, {}).get("final_dice") for arm in arms]
        dice.plot(range(len(arms)), [d if d is not None else math.nan for d in finals], marker="o", linestyle=":", label=f"seed {row['seed']}")
    pooled = results.get("pooled")
    if pooled and pooled.get("dice_reference") is not None:
        reference = pooled["dice_reference"]
        dice.axhspan(reference * (1 - 0.01), reference * 1.01, color="grey", alpha=0.25, label="full search's mean Dice ± 1%")
    for axis in (cost, dice):
        axis.set_xticks(range(len(arms)), [arm.replace("plus-", "+ ") for arm in arms], rotation=20)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    cost.set_yscale("log")
    cost.set_ylabel(f"{results['unit']} per search")
    title = "lever ladder: device-hours per search"
    if pooled:
        title += f" (pooled speed-up {pooled['speedup']:.1f}×, goal 20×)"
    cost.set_title(title, fontsize=10)
    dice.set_ylabel("final model's internal Dice")
    final = results["config"]["final"]
    dice.set_title(f"each search's best trained as the final model ({final['network']} U-Net, {final['epochs']} epochs, all search cases)", fontsize=10)
    fig.tight_layout()
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=110)
    plt.close(fig)
    partial.replace(path)


def write(results: dict[str, Any], out: Path) -> None:
    """headline.json and headline.png, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "headline.json.partial"
    partial.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    partial.replace(out / "headline.json")
    plot(results, out / "headline.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(HERE / "headline.yaml"), help="the study (default: bench/headline.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one comparison run per seed (default: 0 1 2)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for headline.json and headline.png")
    parser.add_argument("--home", default=str(ROOT / ".proxyhpo" / "bench-headline"), help="PROXYHPO_HOME of the runs: their MLflow store, artifacts, logs")
    parser.add_argument(
        "--runs", nargs="+", metavar="SEED=RUN_ID", type=seed_and_run, default=None,
        help="rebuild the results from these finished comparison runs (in --home's store) instead of running; the load and wall time "
        "an earlier run recorded in --out's headline.json are kept",
    )
    args = parser.parse_args()
    missing = [name for name in ("mlflow", "kfp") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"bench_headline: skipped, {' and '.join(missing)} not installed (the pipeline runs on kfp.local and logs to MLflow)", file=sys.stderr)
        return 0
    home = Path(args.home).resolve()
    os.environ["PROXYHPO_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"  # this bench's own store, apart from make run's

    import torch

    from proxyhpo.analysis.comparison_report import collect_searches, ladder_headline
    from proxyhpo.analysis.headline import DICE_TOLERANCE, PAPER_SPEEDUP, SPEEDUP_GOAL, Headline, pool_headlines
    from proxyhpo.config import load_study
    from proxyhpo.launch import run_local

    from proxyhpo import tracking

    study = absolute_data(load_study(args.config))
    earlier_file = Path(args.out) / "headline.json"
    earlier = json.loads(earlier_file.read_text()) if args.runs and earlier_file.exists() else {}
    earlier_rows = {row["parent_run_id"]: row for row in earlier.get("seeds", [])}
    todo: list[tuple[int, str | None]] = list(args.runs) if args.runs else [(seed, None) for seed in args.seeds]
    sampler = LoadSampler()
    if not args.runs:
        sampler.start()
    results: dict[str, Any] = {
        "what": "the automl comparison's lever ladder: the full search against proxy data + proxy network + packing + early stopping",
        "goal": {"speedup_at_least": SPEEDUP_GOAL, "dice_tolerance": DICE_TOLERANCE, "paper_speedup": PAPER_SPEEDUP},
        "attribution": (
            "log-ratio decomposition along the ladder (full-search, + proxy data, + proxy net, + packing, + early stopping): a lever's share is "
            "log(hours before / hours after) / log(full search's hours / all levers'); the shares sum to 1 and depend on the order"
        ),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "load_average_at_start": os.getloadavg(),
        },
        "note": (
            "On a CPU every trial is charged its share of the process's wall-clock hours (training/runner.py), so other load on the machine "
            "inflates them, and a packed step costs about what its models' steps cost one after another: packing's factor here is not a GPU's. "
            "mean_load_during_trials is the 1-minute load average while the arm's search trials ran."
        ),
        "config": study.model_dump(mode="json"),
        "arms": list(study.studies.comparison.arms),
        "unit": None,
        "seeds": [],
        "pooled": None,
    }
    if earlier.get("machine"):
        results["machine"] = earlier["machine"]  # the machine as it was when the runs ran
    headlines: list[Headline] = []
    for seed, run_id in todo:
        old: dict[str, Any] = {}
        if run_id is None:
            run_study = seeded(study, seed)
            started_ms = int(time.time() * 1000)
            began = time.perf_counter()
            run_local(run_study, "automl-comparison")
            parent = newest_parent(run_study.name, started_ms - 1)
            wall, load = time.perf_counter() - began, sampler.mean(started_ms, int(time.time() * 1000))
        else:
            parent = tracking.client().get_run(run_id)
            old = earlier_rows.get(run_id, {})
            wall, load = old.get("wall_seconds"), old.get("mean_load")
        searches = collect_searches(parent.info.run_id)
        result = ladder_headline(searches)
        if result is None:
            print(f"bench_headline: seed {seed}: the ladder's full search or all-levers arm ran no trial; see run {parent.info.run_id}", file=sys.stderr)
            continue
        headlines.append(result)
        summary = parent.data.metrics
        results["unit"] = "GPU-hours" if summary.get("total_gpu_hours", 0.0) > 0 else "device wall-hours (CPU)"
        results["seeds"].append(
            {
                "seed": seed,
                "parent_run_id": parent.info.run_id,
                "wall_seconds": wall,
                "mean_load": load,
                "headline": result.model_dump(mode="json"),
                "arms": arm_rows(parent, None if run_id else sampler, old.get("arms")),
            }
        )
        results["pooled"] = pool_headlines(headlines).model_dump(mode="json")
        if run_id is None:
            results["machine"]["load_average_at_end"] = os.getloadavg()
        write(results, Path(args.out))
        steps = ", ".join(f"{s.lever} {s.factor:.2f}× ({s.share:.0%})" if s.share is not None else f"{s.lever} {s.factor:.2f}×" for s in result.steps)
        print(
            f"seed {seed}: speed-up {result.speedup:.1f}× ({steps}); final Dice full {result.dice_reference} vs levers {result.dice_levers}",
            flush=True,
        )
    sampler.stop.set()
    if not headlines:
        print("bench_headline: no seed produced a headline", file=sys.stderr)
        return 1
    pooled = results["pooled"]
    print(f"pooled over {pooled['n']} seeds: {pooled['speedup']:.1f}× (goal {SPEEDUP_GOAL:g}×), shares {pooled['shares']}, "
          f"Dice full {pooled['dice_reference']} vs levers {pooled['dice_levers']}; written to {Path(args.out) / 'headline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
