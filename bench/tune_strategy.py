"""Variants of Optuna's samplers (and registered strategies) replayed on a search table: regret at 10, 20, 40 and 60 trials.

    python bench/tune_strategy.py TABLE SEEDS '{"name": SPEC, ...}' [--keep DIR] [--budgets 10,15,20,...] [--first K]
    python bench/tune_strategy.py --oracle TABLE
    python bench/tune_strategy.py --judge DIR NAME [RIVAL ...] [--budgets 10,15,20,...]

A ``SPEC`` is ``null`` (random search), a registered strategy's name (``"tpe"``: replayed with the options
``proxyhpo bench search`` gives it), or a sampler setting::

    {"sampler": "TPESampler", "options": {"multivariate": true}, "startup_trials": 8, "startup": "sobol", "gamma": 0.25}

``sampler`` is one of ``optuna.samplers`` and ``options`` its keyword arguments (``seed`` and ``n_startup_trials``
are set by the search); ``startup_trials`` (default 8, one round) the random trials before the sampler models the
results; ``startup`` ``"sobol"`` or ``"lhs"`` enqueues that many points of a scrambled Sobol sequence or a Latin
hypercube over the ranges (:mod:`scipy.stats.qmc`), every categorical choice equally often, instead of random ones
(``"optuna-qmc"``: Optuna's :class:`~optuna.samplers.QMCSampler` for the start-up; it places a trial by the trials
told before it, so a round asked at once gets its independent, random sampler: the same proposals as random);
``gamma`` a fraction ``g``: TPE's "good" trials are the best ``ceil(g * n)`` of ``n`` (Optuna's default:
``ceil(0.1 * n)``). A variant is an :class:`~proxyhpo.search._optuna.OptunaStrategy` registered for the run only, so
it replays through :func:`~proxyhpo.search.table.replay_search` as a registered strategy does. The replay is
``bench/search-table.yaml``'s (batches of 8, 4 slots, no early stopping for these).

One line of JSON per variant on stdout (median and mean regret per budget, CPU seconds); ``--keep DIR`` also writes
every seed's regrets to ``DIR/<name>.npy`` (``(seeds, budgets)``); ``--budgets`` reads other budgets than
:data:`BUDGETS` (the largest sets how long a search runs: keep 60 to compare with ``proxyhpo bench search``);
``--first K`` runs seeds ``K..K+SEEDS-1``. ``--oracle`` prints the floor of a pick by validation Dice; ``--judge``
prints NAME's median with its bootstrap interval per budget and its paired Wilcoxon tests against each RIVAL
(:mod:`proxyhpo.analysis.search_bench`). ``bench/results/strategy-tuning.md`` records what was run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from proxyhpo.config import Categorical
from proxyhpo.config.search_bench import TableSearchConfig
from proxyhpo.registry import SEARCH_STRATEGIES
from proxyhpo.search._optuna import OptunaStrategy
from proxyhpo.search.table import Table, regrets, replay_search

BUDGETS = (10, 20, 40, 60)


def replay_config(budgets: tuple[int, ...] = BUDGETS) -> TableSearchConfig:
    """``bench/search-table.yaml``'s replay, read at ``budgets``."""
    document = yaml.safe_load((Path(__file__).parent / "search-table.yaml").read_text())
    document.pop("seed_counts", None)
    return TableSearchConfig(**{**document, "budgets": budgets, "strategies": None})


def variant_class(name: str, spec: dict[str, Any]) -> type[OptunaStrategy]:
    """An Optuna strategy with the sampler ``spec`` describes (see the module's docstring)."""
    sampler_name, options = spec["sampler"], dict(spec.get("options", {}))
    startup, gamma = spec.get("startup", "random"), spec.get("gamma")

    class Variant(OptunaStrategy):
        def make_sampler(self, seed: int) -> Any:
            samplers = self._optuna.samplers
            extra = dict(options)
            if gamma is not None:
                extra["gamma"] = lambda n: min(math.ceil(gamma * n), 25)
            if startup == "optuna-qmc" and self._told() < self.startup_trials:
                # one Sobol sequence for the whole start-up, seeded by the search (the journal keeps its position)
                return samplers.QMCSampler(
                    qmc_type="sobol",
                    scramble=True,
                    seed=self.seed,
                    independent_sampler=samplers.RandomSampler(seed=seed),
                    warn_independent_sampling=False,
                    warn_asynchronous_seeding=False,
                )
            return getattr(samplers, sampler_name)(seed=seed, n_startup_trials=self.startup_trials, **extra)

        def _told(self) -> int:
            if not hasattr(self, "optuna_study"):
                return 0
            states = self._optuna.trial.TrialState
            return len(self.optuna_study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL)))

        def ask(self, n: int) -> list[Any]:
            if startup in ("sobol", "lhs") and not self.optuna_study.get_trials(deepcopy=False):
                for params in designed_start(self.study, self.startup_trials, self.seed, startup):
                    self.optuna_study.enqueue_trial(params)
            return super().ask(n)

    Variant.name = f"tune:{name}"
    Variant.__doc__ = f"The tuning variant {name}: {json.dumps(spec)}."
    return Variant


def designed_start(study: Any, n: int, seed: int, design: str) -> list[dict[str, Any]]:
    """``n`` start-up points: a scrambled Sobol sequence (``design="sobol"``) or a Latin hypercube (``"lhs"``) over
    the ranges (on their scales), each categorical choice equally often, in a random order."""
    from scipy.stats import qmc

    space = study.search.space
    ranges = [name for name, dist in space.items() if not isinstance(dist, Categorical)]
    rng = np.random.default_rng([seed, 0x1A7])
    engine = qmc.Sobol(d=len(ranges), scramble=True, seed=rng) if design == "sobol" else qmc.LatinHypercube(d=len(ranges), seed=rng)
    units = engine.random(n)
    points: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, dist in space.items():
        if isinstance(dist, Categorical):
            choices = [dist.choices[i % dist.size] for i in rng.permutation(n)]
            for point, choice in zip(points, choices):
                point[name] = choice
        else:
            column = ranges.index(name)
            for point, u in zip(points, units[:, column]):
                point[name] = float(dist.from_unit(float(u)))
    return points


def strategy_of(name: str, spec: Any, config: TableSearchConfig) -> tuple[str, dict[str, Any]]:
    """The registered name and options that replay ``spec``."""
    from proxyhpo.search.bench import _strategy_options

    if spec is None:
        return "random", {}
    if isinstance(spec, str):
        return spec, _strategy_options(spec, config)
    registered = f"tune:{name}"
    if registered not in SEARCH_STRATEGIES.names():
        SEARCH_STRATEGIES.register(registered, variant_class(name, spec), f"tuning variant {name}")
    return registered, {"startup_trials": int(spec.get("startup_trials", config.proposals_per_batch))}


def main(
    table_path: str, seeds: int, variants: dict[str, Any], keep: str | None, budgets: tuple[int, ...] = BUDGETS, first: int = 0
) -> None:
    table = Table.read(table_path)
    config = replay_config(budgets)
    for name, spec in variants.items():
        started = time.process_time()
        strategy, options = strategy_of(name, spec, config)
        regret = np.array(
            [
                regrets(table, replay_search(table, strategy, seed, config, options=options), config.budgets)
                for seed in range(first, first + seeds)
            ]
        )
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            np.save(Path(keep) / f"{name}.npy", regret)
        print(
            json.dumps(
                {
                    "name": name,
                    "spec": spec,
                    "seeds": seeds,
                    "first_seed": first,
                    "median": dict(zip(map(str, budgets), np.median(regret, 0).round(4).tolist())),
                    "mean": dict(zip(map(str, budgets), regret.mean(0).round(4).tolist())),
                    "cpu_s": round(time.process_time() - started, 1),
                }
            ),
            flush=True,
        )


def oracle(table_path: str, draws: int = 2000) -> None:
    """The floor of a pick by validation Dice: an oracle that trains every configuration once, each on a training
    seed drawn at random as a replayed trial's is, and picks the one of highest final validation Dice."""
    table = Table.read(table_path)
    quality = table.config_test_dice()
    final = np.where(np.isfinite(table.val_dice[:, :, -1]), table.val_dice[:, :, -1], -np.inf)
    per_seed = [float(quality.max() - quality[final[:, s].argmax()]) for s in range(table.seeds)]
    rng = np.random.default_rng(0)
    drawn = np.array(
        [
            quality.max() - quality[final[np.arange(table.points), rng.integers(table.seeds, size=table.points)].argmax()]
            for _ in range(draws)
        ]
    )
    print(
        json.dumps(
            {
                "table": table_path,
                "best_test_dice": round(float(quality.max()), 4),
                "one_seed_for_all": [round(v, 4) for v in per_seed],
                "drawn_seeds": {
                    "median": round(float(np.median(drawn)), 4),
                    "mean": round(float(drawn.mean()), 4),
                    "quartiles": np.quantile(drawn, [0.25, 0.75]).round(4).tolist(),
                    "draws": draws,
                },
            }
        )
    )


def judge(folder: str, name: str, rivals: list[str], budgets: tuple[int, ...] = BUDGETS) -> None:
    """NAME's median regret with its bootstrap interval, and its paired tests against each rival, per budget."""
    from proxyhpo.analysis.search_bench import median_interval, paired_test

    ours = np.load(Path(folder) / f"{name}.npy")
    if ours.shape[1] != len(budgets):
        raise SystemExit(f"{folder}/{name}.npy holds {ours.shape[1]} budgets, not {len(budgets)}: give --budgets as the replay ran")
    out: dict[str, Any] = {"name": name, "seeds": len(ours), "median": {}, "mean": {}, "tests": {}}
    for k, budget in enumerate(budgets):
        out["median"][budget] = [round(v, 4) for v in median_interval(ours[:, k])]
        out["mean"][budget] = round(float(ours[:, k].mean()), 4)
    for rival in rivals:
        theirs = np.load(Path(folder) / f"{rival}.npy")
        n = min(len(ours), len(theirs))
        out["tests"][rival] = {budget: paired_test(ours[:n, k], theirs[:n, k]) for k, budget in enumerate(budgets)}
    print(json.dumps(out))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    chosen_budgets = BUDGETS
    if "--budgets" in arguments:
        at = arguments.index("--budgets")
        chosen_budgets = tuple(int(b) for b in arguments[at + 1].split(","))
        del arguments[at : at + 2]
    if arguments[0] == "--oracle":
        oracle(arguments[1])
    elif arguments[0] == "--judge":
        judge(arguments[1], arguments[2], arguments[3:], chosen_budgets)
    else:
        keep = arguments[arguments.index("--keep") + 1] if "--keep" in arguments else None
        first = int(arguments[arguments.index("--first") + 1]) if "--first" in arguments else 0
        main(arguments[0], int(arguments[1]), json.loads(arguments[2]), keep, chosen_budgets, first)
