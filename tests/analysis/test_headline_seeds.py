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


def test_the_bench_reports_every_seeds_row_the_verdict_and_a_history_line(tmp_path: Path) -> None:
    from proxyhpo.analysis.noninferiority import noninferiority

    bench = _bench()
    study = load_study(ROOT / "bench" / "headline.yaml")
    full, levers = [0.80, 0.81, 0.79, 0.80, 0.82], [0.78, 0.80, 0.76, 0.79, 0.80]  # two points below in most seeds
    rows = [
        {
            "seed": seed, "speedup": 10.0 + seed, "speedup_wall": 9.0, "dice_difference": lev - ref, "wall_seconds": 600.0, "cpu_seconds": 1100.0, "mean_load": 1.9,
            "arms": {
                "full-search": {"work_hours": 0.5, "wall_hours": 0.4, "final_dice": ref, "n_finals": 3, "n_failed": 0, "n_stopped": 0},
                "plus-early-stopping": {"work_hours": 0.05, "wall_hours": 0.04, "final_dice": lev, "n_finals": 3, "n_failed": 1, "n_stopped": 5},
            },
        }
        for seed, (ref, lev) in enumerate(zip(full, levers, strict=True))
    ]
    verdict = noninferiority(full, levers, study.studies.comparison.noninferiority)
    results = {
        "started": "2026-12-06T07:00:00+00:00", "git": {"commit": "abc123", "modified_files": []}, "unit": "work-hours (CPU): trial-steps at calibrated seconds per step",
        "unit_detail": "trial-steps of full at 32x32x32 (batch 2) = 0.5 s", "seeding": "seed s ...", "paired": False, "ladder": False,
        "arms": ["full-search", "plus-early-stopping"], "reference_arm": "full-search", "levers_arm": "plus-early-stopping",
        "config": study.model_dump(mode="json"), "seeds": rows, "speedup_geometric_mean": 12.0, "noninferiority": verdict.model_dump(mode="json"),
    }
    text = bench.markdown(results)
    for seed in range(5):
        assert f"| {seed} | 0.5 h | 0.05 h | {10 + seed:.2f}× |" in text
    assert "| 0 / 0 | 1 / 5 |" in text  # failed and stopped trials apart
    assert "**not shown**" in text and "margin 0.01 Dice, paired-t, one-sided 95%, at least 5 seeds" in text
    line = bench.history_line(results, "a smaller phantom")
    assert (line["commit"], line["what_changed"], line["result"]["verdict"], len(line["result"]["per_seed"])) == ("abc123", "a smaller phantom", "not shown", 5)
    assert line["config"] == results["config"]
    bench.write(results, tmp_path)
    assert {path.name for path in tmp_path.iterdir()} == {"headline.json", "headline.md", "headline.png"}
