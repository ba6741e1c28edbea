"""The search benchmark: strategies side by side on one trainer, data and device-hour budget (``make bench``).

Runs ``proxyhpo bench search`` on ``bench/search.yaml`` (or the config given): random search, the REINFORCE
controller, REINFORCE with successive halving inside its packs and Optuna's TPE sampler with its Hyperband
pruner, each for every seed, every trial an MLflow child run; writes ``bench/results/search.json`` (per
strategy and seed: the trials, their device-hours, the running best validation Dice, the final model's
Dice) and ``bench/results/search.png``. See :mod:`proxyhpo.search.bench` for the accounting.

It needs MLflow (every trial is a run) and Optuna (``pip install 'proxyhpo[optuna]'``); where either is missing
(the GPU machine's bare environment) it says so and exits 0, so ``make bench`` goes on.

Usage: ``python bench/bench_search.py [CONFIG] [--out bench/results] [--seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(HERE / "search.yaml"), help="bench config (default: bench/search.yaml)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for search.json and search.png")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="the seeds to run instead of the config's")
    args = parser.parse_args()
    missing = [name for name in ("mlflow", "optuna") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"bench_search: skipped, {' and '.join(missing)} not installed (pip install -e '.[optuna]')", file=sys.stderr)
        return 0
    from proxyhpo.cli import main as cli

    seeds = ["--seeds", *map(str, args.seeds)] if args.seeds else []
    return cli(["bench", "search", args.config, "--out", args.out, *seeds])


if __name__ == "__main__":
    sys.exit(main())
