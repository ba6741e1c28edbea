"""The headline's seeds: arms draw independent streams unless the comparison is paired, and the bench varies every seed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from proxyhpo.config import load_study
from proxyhpo.config.studies import arm_seed

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_headline", ROOT / "bench" / "bench_headline.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_arms_draw_their_own_controller_and_trial_seeds_unless_paired() -> None:
    study = load_study(ROOT / "bench" / "headline.yaml")
    full, levers = study.for_search_arm("full-search"), study.for_search_arm("plus-early-stopping")
    assert full.search.controller.seed == arm_seed(study.search.controller.seed, "full-search")
    assert full.search.controller.seed != levers.search.controller.seed
    assert full.training.seed != levers.training.seed
    assert full.final.seed == levers.final.seed == study.final.seed  # a repeat's initialisation is the arms' common one
    paired = study.model_copy(update={"studies": study.studies.model_copy(update={"comparison": study.studies.comparison.model_copy(update={"paired": True})})})
    shared = {(paired.for_search_arm(arm).search.controller.seed, paired.for_search_arm(arm).training.seed) for arm in ("full-search", "plus-early-stopping")}
    assert shared == {(study.search.controller.seed, study.training.seed)}


def test_every_seed_varies_data_split_selection_controller_trials_and_final_models() -> None:
    bench = _bench()
    study = bench.absolute_data(load_study(ROOT / "bench" / "headline.yaml"))
    one, two = bench.seeded(study, 1), bench.seeded(study, 2)
    for seeded, seed in ((one, 1), (two, 2)):
        assert seeded.data.synthetic.seed == seeded.data.split_seed == seeded.selection.seed == seed
        assert seeded.search.controller.seed == seeded.training.seed == seed and seeded.final.seed == 1000 * seed
        assert seeded.data.dataset.endswith(f"-s{seed}") and seeded.name.endswith(f"-s{seed}")  # its own phantoms and runs
    # a seed's arms differ from each other and from the other seed's
    streams = {(s.for_search_arm(arm).search.controller.seed, s.for_search_arm(arm).training.seed) for s in (one, two) for arm in ("full-search", "plus-early-stopping")}
    assert len(streams) == 4
    # the config states the test before anything runs
    test = study.studies.comparison.noninferiority
    assert (test.margin, test.test, test.confidence, test.min_seeds, study.studies.comparison.repeats) == (0.01, "paired-t", 0.95, 5, 3)
