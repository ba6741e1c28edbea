"""The headline (issues 12 and 18): all levers against the full search, paired over independent seeds, judged by non-inferiority.

Runs the automl comparison (``bench/headline.yaml``) through the ``automl-comparison`` pipeline on
``kfp.local``, once per seed, each seed a parent run of its own in MLflow. By default two arms, the
headline's: ``full-search`` (all data, the full U-Net, one trial per device, no early stopping) and
``plus-early-stopping`` (proxy data, the proxy U-Net, packing, early stopping); ``--ladder`` runs the whole
lever ladder, one arm per lever, for each lever's share.

**Seeds vary everything random.** Seed ``s`` generates its own synthetic phantoms
(``data.synthetic.seed = s``, in a data folder of its own), draws its own held-out split
(``data.split_seed``), selection seed (the random baseline), controller seed, trial seeds and final-model
initialisations (``final.seed = 1000 s``, repeat ``r`` adding ``r``). Within a seed each arm gets its own
controller and trial seeds (:func:`proxyhpo.config.studies.arm_seed`), unless ``studies.comparison.paired``.

**The verdict is stated before running** (``studies.comparison.noninferiority``): per seed the difference of
the final models' internal test Dice (levers minus full search; each the mean over the seed's
``studies.comparison.repeats`` initialisations), the one-sided interval over seeds and the verdict
(:mod:`proxyhpo.analysis.noninferiority`). With ``paired: true`` the arms share candidates on purpose and
the bench reports, per seed, the proxy's rank correlation and regret on them instead.

**Cost.** On a GPU, GPU-hours. On a CPU the wall-clock hours move with the machine's other load, so each
search is also charged in fixed units of work: its trials' optimiser steps of a named network at the
recipe's patch, converted to device-hours by one calibration per network measured at the start of this
run (:func:`proxyhpo.analysis.costs.calibrate`) and recorded; the speed-up in the headline uses those
units, the wall-clock hours stand beside them. Each seed also records its wall and CPU seconds and the mean
load average while it ran.

**History.** Every run records its configuration and git commit in ``headline.json`` and appends one line
to ``headline-history.jsonl`` (when, commit, what changed: ``--change``, the result), so the configurations
tried stay beside the last one.

Usage: ``python bench/bench_headline.py [CONFIG] [--seeds 5] [--first-seed 0] [--ladder] [--out bench/results] [--home DIR] [--change TEXT]``
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
#: The headline's two arms: the full search and all four levers.
HEADLINE_ARMS = ("full-search", "plus-early-stopping")
#: Timed steps per network calibration (after one warm-up step).
CALIBRATION_STEPS = 5


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
    """The study with everything random drawn from ``seed``: phantoms, split, selection, controller, trials, final models.

    The data folders get a ``-s<seed>`` suffix so each seed's phantoms are its own; the study's name too, so
    each seed is an MLflow experiment of its own and no seed resumes another's runs.
    """
    from proxyhpo.config import StudyConfig

    document = study.model_dump(mode="json")
    document["name"] = f"{study.name}-s{seed}"
    data = document["data"]
    if data.get("synthetic") is not None:
        data["synthetic"]["seed"] = seed
        data["dataset"] = f"{data['dataset']}-s{seed}"
        if data.get("external"):
            data["external"] = f"{data['external']}-s{seed}"
    data["split_seed"] = seed
    document["selection"]["seed"] = seed
    document["search"]["controller"]["seed"] = seed
    document["training"]["seed"] = seed
    document["final"]["seed"] = 1000 * seed  # repeat r initialises with 1000 s + r: no two seeds share one
    return StudyConfig.model_validate(document)


def absolute_data(study: Any) -> Any:
    """The study with its relative data paths resolved against the repository root (not the current folder)."""
    update = {key.removeprefix("data."): str((ROOT / location).resolve()) for key, location in study.data.local_locations().items() if not Path(location).is_absolute()}
    return study.model_copy(update={"data": study.data.model_copy(update=update)}) if update else study


def git_state() -> dict[str, Any]:
    """The commit the bench ran at and the files that differed from it (tracked, modified)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line]
    return {"commit": git("rev-parse", "HEAD") or None, "modified_files": modified}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the pipeline's task processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


def calibrations(study: Any) -> dict[str, Any]:
    """One work-unit calibration per network the arms' trials train, at the recipe's patch and the trials' batch."""
    from proxyhpo.analysis.costs import calibrate
    from proxyhpo.config import NetworkConfig
    from proxyhpo.config.recipe import resolve_recipe

    recipe = resolve_recipe(study.training.recipe)
    batch = study.training.batch_size * recipe.num_samples
    family = study.training.network_family
    networks = {NetworkConfig.full(family), NetworkConfig.proxy(study.training.proxy_levels, family)}
    found = {}
    for network in sorted(networks, key=lambda n: n.name):
        calibration = calibrate(network, recipe.patch_size, batch, steps=CALIBRATION_STEPS)
        found[calibration.network] = calibration
    return found


def arm_rows(parent: Any, searches: dict[str, Any], sampler: LoadSampler, calibrated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per arm: its search's cost (wall-clock and work units), trials (failed and stopped apart), final Dice and the load.

    The work charge is the arm's trial-steps per network at their calibrated seconds per step, plus its data
    selection's measured seconds (the selection is no training step).
    """
    from proxyhpo import tracking
    from proxyhpo.analysis._report_io import children
    from proxyhpo.analysis.costs import work_hours
    from proxyhpo.tracking import names

    runs = children(tracking.client(), parent)
    rows = {}
    for arm, search in searches.items():
        trials = [run for run in runs if run.data.tags.get(names.ARM_TAG) == arm and run.data.tags.get(names.ROLE_TAG) == names.ROLE_TRIAL]
        finals = [run for run in runs if run.data.tags.get(names.ARM_TAG) == arm and run.data.tags.get(names.ROLE_TAG) == names.ROLE_FINAL]
        started = [run.info.start_time for run in trials if run.info.start_time]
        ended = [run.info.end_time for run in trials if run.info.end_time]
        steps: dict[str, float] = {}
        for run in trials:
            network = run.data.params.get(names.NETWORK_PARAM, "?")
            steps[network] = steps.get(network, 0.0) + run.data.metrics.get(names.STEPS_RUN, 0.0)
        on_gpu = any(run.data.metrics.get(names.GPU_HOURS, 0.0) > 0 for run in trials)
        work = None if on_gpu else work_hours(steps, calibrated) + search.cost.selection_hours
        rows[arm] = {
            "wall_hours": search.cost.hours,
            "trial_hours": search.cost.trial_hours,
            "selection_hours": search.cost.selection_hours,
            "work_hours": work,
            "trial_steps": steps,
            "n_trials": search.trials.n_trials,
            "n_finished": search.trials.n_finished,
            "n_failed": search.trials.n_failed,
            "n_stopped": search.trials.n_stopped,
            "network": search.network,
            "train_cases": search.train_cases,
            "val_cases": search.val_cases,
            "best_val_dice": search.best_val_dice,
            "hyperparameters": search.hyperparameters,
            "final_internal_test_dice": [run.data.metrics.get(names.INTERNAL_TEST_DICE) for run in finals],
            "final_dice": search.internal_mean,
            "final_dice_std": search.internal_std,
            "n_finals": search.finals.n_finished,
            "final_external_dice": search.external_mean,
            "mean_load_during_trials": sampler.mean(min(started), max(ended)) if started and ended else None,
        }
    return rows


def shared_candidates(parent: Any, study: Any, reference: str, levers: str) -> dict[str, Any]:
    """A paired seed's proxy check: the levers arm's rank correlation and regret on the settings both arms trained."""
    from proxyhpo import tracking
    from proxyhpo.analysis._report_io import children, dice_of
    from proxyhpo.analysis.comparison_report import _hyperparameters
    from proxyhpo.analysis.headline import paired_candidates
    from proxyhpo.tracking import names

    runs = children(tracking.client(), parent)

    def trials(arm: str) -> list[tuple[dict[str, Any], float | None]]:
        return [
            (_hyperparameters(run, study.search.space), dice_of(run, names.FINAL_VAL_DICE))
            for run in runs
            if run.data.tags.get(names.ARM_TAG) == arm and run.data.tags.get(names.ROLE_TAG) == names.ROLE_TRIAL
        ]

    return paired_candidates(trials(reference), trials(levers)).model_dump(mode="json")


def plot(results: dict[str, Any], path: Path) -> None:
    """Left: each seed's search cost of both arms (work units, log scale). Right: each seed's final Dice, paired by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = results["seeds"]
    reference, levers = results["reference_arm"], results["levers_arm"]
    key = "work_hours" if results["unit"].startswith("work") else "wall_hours"
    fig, (cost, dice) = plt.subplots(1, 2, figsize=(11, 4.5))
    for row in seeds:
        hours = [row["arms"].get(arm, {}).get(key) for arm in (reference, levers)]
        cost.plot([0, 1], [h if h else math.nan for h in hours], marker="o", label=f"seed {row['seed']}: {row['speedup']:.1f}×" if row.get("speedup") else f"seed {row['seed']}")
        finals = [row["arms"].get(arm, {}).get("final_dice") for arm in (reference, levers)]
        dice.plot([0, 1], [d if d is not None else math.nan for d in finals], marker="o", label=f"seed {row['seed']}")
    for axis in (cost, dice):
        axis.set_xticks([0, 1], [reference, levers])
        axis.set_xlim(-0.3, 1.3)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    cost.set_yscale("log")
    cost.set_ylabel(results["unit"])
    cost.set_title("search cost per seed", fontsize=10)
    dice.set_ylabel("final model's internal test Dice (mean over initialisations)")
    verdict = results.get("noninferiority")
    dice.set_title(f"non-inferiority: {verdict['verdict']}" if verdict else "final Dice per seed", fontsize=10)
    from proxyhpo.storage import atomic_output

    fig.tight_layout()
    with atomic_output(path) as partial:
        fig.savefig(partial, format="png", dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    """headline.md: what ran, every seed's row, the paired interval and the verdict."""
    reference, levers = results["reference_arm"], results["levers_arm"]
    lines = [
        f"# Headline: `{levers}` against `{reference}` ({len(results['seeds'])} seed{'' if len(results['seeds']) == 1 else 's'})",
        "",
        f"Commit `{results['git']['commit']}`" + (f" with {len(results['git']['modified_files'])} modified file(s)" if results["git"]["modified_files"] else "") + f"; started {results['started']}.",
        f"Speed-up unit: **{results['unit']}**" + (f" ({results['unit_detail']})" if results.get("unit_detail") else "") + "; wall-clock hours beside it.",
        f"Seeds: {results['seeding']}",
        "",
        "| seed | cost full | cost levers | speed-up | wall-clock speed-up | Dice full (n) | Dice levers (n) | difference | trials full: failed / stopped | trials levers: failed / stopped | wall s | CPU s | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    key = "work_hours" if results["unit"].startswith("work") else "wall_hours"

    def fmt(value: float | None, spec: str = ".4f") -> str:
        return "–" if value is None else format(value, spec)

    for row in results["seeds"]:
        ref, lev = row["arms"].get(reference, {}), row["arms"].get(levers, {})
        lines.append(
            f"| {row['seed']} | {fmt(ref.get(key), '.4g')} h | {fmt(lev.get(key), '.4g')} h | {fmt(row.get('speedup'), '.2f')}× | {fmt(row.get('speedup_wall'), '.2f')}× "
            f"| {fmt(ref.get('final_dice'))} ({ref.get('n_finals', 0)}) | {fmt(lev.get('final_dice'))} ({lev.get('n_finals', 0)}) | {fmt(row.get('dice_difference'), '+.4f')} "
            f"| {ref.get('n_failed', 0)} / {ref.get('n_stopped', 0)} | {lev.get('n_failed', 0)} / {lev.get('n_stopped', 0)} "
            f"| {fmt(row.get('wall_seconds'), '.0f')} | {fmt(row.get('cpu_seconds'), '.0f')} | {fmt(row.get('mean_load'), '.2f')} |"
        )
    verdict = results.get("noninferiority")
    if verdict:
        config = results["config"]["studies"]["comparison"]["noninferiority"]
        lines += [
            "",
            f"Non-inferiority (stated in the config before running: margin {config['margin']:g} Dice, {config['test']}, one-sided {config['confidence']:.0%}, "
            f"at least {config['min_seeds']} seeds): **{verdict['verdict']}**. Mean difference {fmt(verdict['mean_difference'], '+.4f')}, "
            f"lower bound {fmt(verdict['lower_bound'], '+.4f')} against -{config['margin']:g}.",
        ]
    if results.get("paired"):
        lines += ["", "Paired arms (shared seeds, shared candidates): per seed, the levers arm's Spearman rho and regret on the settings both trained:", ""]
        lines += [f"- seed {row['seed']}: {row.get('shared_candidates')}" for row in results["seeds"]]
    if results.get("speedup_geometric_mean"):
        lines += ["", f"Speed-up ({results['unit']}): geometric mean {results['speedup_geometric_mean']:.2f}× over {len(results['seeds'])} seed(s)."]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path) -> None:
    """headline.json, headline.md and headline.png, each written atomically."""
    from proxyhpo.storage import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "headline.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "headline.md", markdown(results))
    plot(results, out / "headline.png")


def history_line(results: dict[str, Any], change: str) -> dict[str, Any]:
    """One line of headline-history.jsonl: when, the commit, what changed, the configuration's digest and the result."""
    verdict = results.get("noninferiority") or {}
    return {
        "when": results["started"],
        "commit": results["git"]["commit"],
        "modified_files": results["git"]["modified_files"],
        "what_changed": change,
        "config_sha256": hashlib.sha256(json.dumps(results["config"], sort_keys=True).encode()).hexdigest(),
        "arms": [results["reference_arm"], results["levers_arm"]] if not results["ladder"] else results["arms"],
        "seeds": [row["seed"] for row in results["seeds"]],
        "unit": results["unit"],
        "result": {
            "speedup_geometric_mean": results.get("speedup_geometric_mean"),
            "per_seed": [
                {"seed": row["seed"], "speedup": row.get("speedup"), "dice_difference": row.get("dice_difference"), "shared_candidates": row.get("shared_candidates")}
                for row in results["seeds"]
            ],
            "verdict": verdict.get("verdict"),
            "lower_bound": verdict.get("lower_bound"),
            "mean_difference": verdict.get("mean_difference"),
        },
        "config": results["config"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(HERE / "headline.yaml"), help="the study (default: bench/headline.yaml)")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds, one comparison each (default: 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed; seeds are FIRST .. FIRST+N-1 (default: 0)")
    parser.add_argument("--ladder", action="store_true", help="run the whole lever ladder (one arm per lever) instead of the two headline arms")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for headline.json, .md, .png and headline-history.jsonl")
    parser.add_argument("--home", default=str(ROOT / ".proxyhpo" / "bench-headline"), help="PROXYHPO_HOME of the runs: their MLflow store, artifacts, logs")
    parser.add_argument("--change", default="", help="what this run changed against the last configuration tried (recorded in the history)")
    args = parser.parse_args()
    if args.seeds < 1 or args.first_seed < 0:
        print("bench_headline: --seeds must be >= 1 and --first-seed >= 0", file=sys.stderr)
        return 2
    missing = [name for name in ("mlflow", "kfp") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"bench_headline: skipped, {' and '.join(missing)} not installed (the pipeline runs on kfp.local and logs to MLflow)", file=sys.stderr)
        return 0
    home = Path(args.home).resolve()
    os.environ["PROXYHPO_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"  # this bench's own store, apart from make run's

    import torch

    from proxyhpo.analysis.comparison_report import collect
    from proxyhpo.analysis.noninferiority import noninferiority
    from proxyhpo.config import load_study
    from proxyhpo.config.studies import LEVER_ARMS
    from proxyhpo.errors import ConfigError
    from proxyhpo.launch import run_local

    try:
        study = absolute_data(load_study(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.ladder:
        document = study.model_dump(mode="json")
        document["studies"]["comparison"]["arms"] = list(LEVER_ARMS)
        study = type(study).model_validate(document)
    comparison = study.studies.comparison
    reference, levers = comparison.arms[0], comparison.arms[-1]
    out = Path(args.out)
    sampler = LoadSampler()
    sampler.start()
    began_cpu = cpu_seconds()
    calibrated = calibrations(study) if not torch.cuda.is_available() else {}
    calibration_cpu = cpu_seconds() - began_cpu
    on_cpu = not torch.cuda.is_available()
    results: dict[str, Any] = {
        "what": f"the automl comparison's headline: {levers} against {reference}, one comparison per seed, non-inferiority over seeds",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "command": sys.argv,
        "change": args.change,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "load_average_at_start": os.getloadavg(),
        },
        "unit": "work-hours (CPU): trial-steps at calibrated seconds per step" if on_cpu else "GPU-hours",
        "unit_detail": "; ".join(f"{c.unit} = {c.seconds_per_step:.4g} s" for c in calibrated.values()) or None,
        "calibrations": {name: c.model_dump(mode="json") | {"seconds_per_step": c.seconds_per_step} for name, c in calibrated.items()},
        "calibration_cpu_seconds": calibration_cpu,
        "seeding": (
            "seed s sets data.synthetic.seed, data.split_seed, selection.seed, search.controller.seed and training.seed to s and final.seed to 1000 s; "
            + ("the arms share their controller and trial seeds (paired: true)" if comparison.paired else "each arm's controller and trial seeds are arm_seed(s, arm)")
        ),
        "paired": comparison.paired,
        "ladder": args.ladder,
        "arms": list(comparison.arms),
        "reference_arm": reference,
        "levers_arm": levers,
        "config": study.model_dump(mode="json"),
        "seeds": [],
        "speedup_geometric_mean": None,
        "noninferiority": None,
    }
    write(results, out)  # the calibration and the configuration, before the first seed's hours
    for calibration in calibrated.values():
        print(f"calibration: {calibration.unit}: {calibration.seconds_per_step:.3f} s a step ({calibration.cpu_seconds / calibration.steps:.3f} CPU s)", flush=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        run_study = seeded(study, seed)
        started_ms = int(time.time() * 1000)
        began, cpu_before = time.perf_counter(), cpu_seconds()
        run_local(run_study, "automl-comparison")
        parent = newest_parent(run_study.name, started_ms - 1)
        wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu_before
        record = collect(parent.info.run_id)
        rows = arm_rows(parent, record.arms, sampler, calibrated)
        ref, lev = rows.get(reference, {}), rows.get(levers, {})
        key = "work_hours" if on_cpu else "wall_hours"
        row: dict[str, Any] = {
            "seed": seed,
            "parent_run_id": parent.info.run_id,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "mean_load": sampler.mean(started_ms, int(time.time() * 1000)),
            "speedup": ref[key] / lev[key] if ref.get(key) and lev.get(key) else None,
            "speedup_wall": ref["wall_hours"] / lev["wall_hours"] if ref.get("wall_hours") and lev.get("wall_hours") else None,
            "dice_difference": None,
            "ladder": record.ladder.model_dump(mode="json") if record.ladder is not None else None,
            "arms": rows,
        }
        if comparison.paired:
            row["shared_candidates"] = shared_candidates(parent, record.study, reference, levers)
        elif ref.get("final_dice") is not None and lev.get("final_dice") is not None:
            row["dice_difference"] = lev["final_dice"] - ref["final_dice"]
        results["seeds"].append(row)
        speedups = [r["speedup"] for r in results["seeds"] if r.get("speedup")]
        results["speedup_geometric_mean"] = math.exp(sum(map(math.log, speedups)) / len(speedups)) if speedups else None
        paired_rows = [r for r in results["seeds"] if r["dice_difference"] is not None]
        if not comparison.paired and paired_rows:
            results["noninferiority"] = noninferiority(
                [r["arms"][reference]["final_dice"] for r in paired_rows], [r["arms"][levers]["final_dice"] for r in paired_rows], comparison.noninferiority
            ).model_dump(mode="json")
        results["machine"]["load_average_at_end"] = os.getloadavg()
        write(results, out)
        print(
            f"seed {seed}: speed-up {row['speedup'] or float('nan'):.2f}× ({results['unit']}), wall-clock {row['speedup_wall'] or float('nan'):.2f}×; "
            f"final Dice full {ref.get('final_dice')} vs levers {lev.get('final_dice')}; {wall:.0f} s wall, {cpu:.0f} s CPU",
            flush=True,
        )
    sampler.stop.set()
    with (out / "headline-history.jsonl").open("a") as history:
        history.write(json.dumps(history_line(results, args.change)) + "\n")
    verdict = results["noninferiority"]
    print(
        f"{len(results['seeds'])} seed(s): speed-up {results['speedup_geometric_mean'] or float('nan'):.2f}× (geometric mean, {results['unit']}); "
        f"non-inferiority: {verdict['verdict'] if verdict else 'no verdict'}; written to {out / 'headline.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
