"""Variants of ``reinforce``'s settings replayed on a search table: median and mean regret at 10, 20, 40 and 60 trials.

    python bench/tune_reinforce.py TABLE SEEDS '{"name": {settings}, "random": null, ...}'

A variant's settings replace ``reinforce``'s own (:data:`proxyhpo.search._reinforce.OURS`; ``{}``: the paper's);
``null`` runs random search instead, the reference. The replay is ``bench/search-table.yaml``'s (its rungs, batches
and slots); one line of JSON per variant on stdout. ``bench/results/reinforce-tuning.md`` records what was run
and what was chosen.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from proxyhpo.config.search_bench import TableSearchConfig
from proxyhpo.search import _reinforce
from proxyhpo.search.table import Table, regrets, replay_search

BUDGETS = (10, 20, 40, 60)


def main(table_path: str, seeds: int, variants: dict[str, dict | None]) -> None:
    table = Table.read(table_path)
    document = yaml.safe_load((Path(__file__).parent / "search-table.yaml").read_text())
    document.pop("seed_counts", None)
    config = TableSearchConfig(**{**document, "budgets": BUDGETS, "strategies": None})
    for name, settings in variants.items():
        started = time.process_time()
        if settings is not None:
            _reinforce.ReinforceSearch.settings = settings
        strategy = "random" if settings is None else "reinforce"
        regret = np.array([regrets(table, replay_search(table, strategy, seed, config), config.budgets) for seed in range(seeds)])
        print(json.dumps({
            "name": name, "settings": settings, "seeds": seeds,
            "median": dict(zip(map(str, BUDGETS), np.median(regret, 0).round(4).tolist())),
            "mean": dict(zip(map(str, BUDGETS), regret.mean(0).round(4).tolist())),
            "cpu_s": round(time.process_time() - started, 1),
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]))
