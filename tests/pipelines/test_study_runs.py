"""The comparison studies and the trust check run end to end by kfp.local.SubprocessRunner at a tiny size.

The report each run ends with is checked against the MLflow runs it summarises: a correlation recomputed
from the child runs equals the reported one, and so does a speed-up recomputed from their hours.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from scipy import stats

from proxyhpo import paths
from proxyhpo.cli import main
from proxyhpo.config import StudyConfig, parse_config
from proxyhpo.launch import run_local
from proxyhpo.tracking import names
from tiny import tiny_recipe

pytestmark = pytest.mark.slow

#: The brain phantom's tumour classes, as their metrics name them.
BRAIN_CLASSES = ("edema", "non_enhancing_tumor", "enhancing_tumour")

#: The trust check's grid: six points, the fewest on which spearman's 95% lower bound can reach the default 0.5.
TRUST_LRS = (0.1, 0.03, 0.01, 0.003, 0.001, 0.0003)


def tiny_studies(root: Path, **studies) -> StudyConfig:
    document = {
        "name": "tiny-studies",
        "data": {
            "dataset": str(root / "tiny"),
            "external": str(root / "tiny-external"),
            "synthetic": {"task": "spleen", "cases": 8, "size": 32, "seed": 3, "external_cases": 2},
            "holdout_fraction": 0.25,
        },
        "similarity": {"patch": 16},
        "selection": {"method": "mi+labelcrop", "budget": 4},
        "training": {
            "network": "proxy",
            "proxy_levels": 3,
            "recipe": tiny_recipe(patch_size=[32, 32, 32]),
            "epochs": 1,
            "pack_size": 4,
            "batch_size": 1,
        },
        "studies": {
            "grid": {"optimizer": ["adam", "rmsprop"], "lr": [0.01, 0.001]},
            "proxy_data": {"methods": ["mi+labelcrop"], "budgets": [4], "repeats": 2, "network": "proxy"},
            "proxy_net": {"levels": [3], "repeats": 2},
            "trust": {"grid": {"lr": list(TRUST_LRS)}, "repeats": 1},
            **studies,
        },
    }
    return parse_config(StudyConfig, document, "<test>")


def _on_the_brain_phantom(document: dict, root: Path) -> None:
    """Point a study document at 8 brain phantoms (4 MR channels, 3 tumour classes), MR-normalised, no external set."""
    document["data"].update(dataset=str(root / "brain"), external=None, synthetic={"task": "brain", "cases": 8, "size": 32, "seed": 3, "external_cases": 0})
    document["training"]["recipe"]["intensity"] = {"kind": "normalize"}


def _class_names(run, metric: str) -> set[str]:
    """The classes whose Dice ``run`` logged as ``<metric>_class_<name>``."""
    return {key.removeprefix(f"{metric}_class_") for key in run.data.metrics if key.startswith(f"{metric}_class_")}


def _runs(kind: str):
    client = mlflow.MlflowClient(paths.tracking_uri())
    experiment = client.get_experiment_by_name("tiny-studies")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [run for run in runs if run.data.tags.get(names.PIPELINE_TAG) == kind]
    children = [run for run in runs if run.data.tags.get(names.PARENT_TAG) == parent.info.run_id]
    # a cell's trials train as one pack: the machine's system metrics are its pack's run's, never a trial's
    packs = [run for run in children if run.data.tags.get(names.ROLE_TAG) == names.ROLE_PACK]
    trained = [run for run in children if run not in packs]
    assert packs and all(run.info.status == "FINISHED" and len(run.data.tags[names.PACK_TRIALS_TAG].split(",")) > 1 for run in packs)
    assert not [run for run in trained if run.data.tags.get(names.ROLE_TAG) == names.ROLE_TRIAL and any(key.startswith("system/") for key in run.data.metrics)]
    return client, parent, trained


def _mean_dice_by_point(children, arm: str, metric: str) -> dict[str, float]:
    by_point: dict[str, list[float]] = {}
    for run in children:
        if run.data.tags[names.ARM_TAG] == arm and run.info.status == "FINISHED":
            by_point.setdefault(run.data.tags[names.POINT_TAG], []).append(run.data.metrics[metric])
    return {point: float(np.mean(values)) for point, values in by_point.items()}


def test_proxy_data_study(tmp_path: Path, isolated_home: Path) -> None:
    run_local(tiny_studies(tmp_path), "proxy-data-study")
    client, parent, children = _runs("proxy-data-study")
    assert parent.info.status == "FINISHED"
    # (all data + 1 method x 1 budget) x 2 repeats x 4 grid points (random selection: tests/similarity/test_proxy_data.py)
    assert len(children) == 2 * 2 * 4
    assert {run.data.tags[names.ARM_TAG] for run in children} == {"full", "mi+labelcrop-4"}
    assert {run.data.tags[names.REPEAT_TAG] for run in children} == {"0", "1"}
    for run in children:
        assert {"lr", "optimizer", names.NETWORK_PARAM, names.DATA_PARAM} <= set(run.data.params)
        assert {names.FINAL_VAL_DICE, names.TEST_DICE, names.PROCESS_HOURS, names.STEPS_RUN} <= set(run.data.metrics)

    # the reported correlation is the one recomputed from the child runs
    reference = _mean_dice_by_point(children, "full", names.TEST_DICE)
    proxy = _mean_dice_by_point(children, "mi+labelcrop-4", names.TEST_DICE)
    points = sorted(set(reference) & set(proxy))
    assert len(points) == 4 and len(set(reference.values())) > 1 and len(set(proxy.values())) > 1  # the four models differ: rho is defined
    expected = stats.spearmanr([proxy[p] for p in points], [reference[p] for p in points]).statistic
    assert parent.data.metrics[names.SPEARMAN_RHO] == pytest.approx(expected, abs=1e-9)
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "cells.json", "study.json"} <= artifacts
    cells = json.loads(Path(client.download_artifacts(parent.info.run_id, "cells.json")).read_text())
    assert len(cells) == 4 and all(cell["selection_seconds"] > 0 for cell in cells if cell["arm"] == "mi+labelcrop-4")

    # the speed-up as run is recomputed from the runs' hours and the selection's cost
    def hours(arm: str) -> float:
        return sum(run.data.metrics[names.PROCESS_HOURS] for run in children if run.data.tags[names.ARM_TAG] == arm) / 2

    selection = next(cell["selection_seconds"] for cell in cells if cell["arm"] == "mi+labelcrop-4") / 3600
    assert parent.data.metrics[names.SPEEDUP_VS_FULL] == pytest.approx(hours("full") / (hours("mi+labelcrop-4") + selection), rel=1e-6)


def test_proxy_net_study_on_a_multi_class_multi_channel_task(tmp_path: Path, isolated_home: Path) -> None:
    # the brain phantom (4 MR channels, background and 3 tumour classes), end to end through KFP: every network's trials
    # and the report carry each class's Dice; two grid points are enough to check the arms and their shared splits
    # (the grid studies' statistics are checked above)
    # one repeat: the repeats' own splits are the proxy-data study's check above
    document = tiny_studies(tmp_path, grid={"optimizer": ["adam"], "lr": [0.01, 0.001]}, proxy_net={"levels": [3], "repeats": 1}).model_dump(mode="json")
    _on_the_brain_phantom(document, tmp_path)
    run_local(parse_config(StudyConfig, document, "<test>"), "proxy-net-study")
    client, parent, children = _runs("proxy-net-study")
    assert parent.info.status == "FINISHED"
    assert {run.data.tags[names.ARM_TAG] for run in children} == {"full", "proxy-L3"}
    assert {run.data.params["network"] for run in children} == {"full", "proxy-L3"}
    assert len(children) == 2 * 1 * 2 and {run.data.tags[names.REPEAT_TAG] for run in children} == {"0"}
    for run in children:  # the Dice per class beside their mean
        assert _class_names(run, names.VAL_DICE) == set(BRAIN_CLASSES), run.data.metrics
    report = Path(client.download_artifacts(parent.info.run_id, "report.md")).read_text()
    rows = [line for line in report.splitlines() if line.startswith("| &nbsp;&nbsp;class ")]
    assert {row.split(" | ")[0].removeprefix("| &nbsp;&nbsp;class ") for row in rows} == set(BRAIN_CLASSES)


def test_a_faithful_proxy_is_trusted_from_the_command_line(tmp_path: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the faithful side of the trust check, run for real: the study's "proxy" is the full setting itself (all data, the full
    # network), whose trials are the reference's (same split, seed and network per repeat and point): a perfect ranking.
    # The useless side (a proxy with no relation to the full setting) is tests/analysis/test_trust_check.py's.
    document = tiny_studies(tmp_path).model_dump(mode="json")
    document["training"]["data"], document["training"]["network"] = "full", "full"
    # 32x16x16 patches (the full U-Net needs one side of 32 for instance norm at its deepest level): a quarter of a 32^3 patch
    document["training"]["recipe"].update(patch_size=[32, 16, 16], roi_size=[32, 16, 16])
    document["training"]["pack_size"] = len(TRUST_LRS)  # each arm's grid in one pack: two training tasks, not four
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(document))
    code = main(["trust", str(config)])
    verdict_line = capsys.readouterr().out.strip().splitlines()[-1]
    _, parent, children = _runs("trust")
    assert parent.info.status == "FINISHED"
    assert len(children) == 2 * 1 * 6 and all(run.info.status == "FINISHED" for run in children)
    assert {run.data.params["lr"] for run in children} == {str(lr) for lr in TRUST_LRS}
    assert {run.data.params["network"] for run in children} == {"full"}

    # the two arms trained the same models, and the models differ between learning rates: the ranking is defined and perfect
    reference = _mean_dice_by_point(children, "full", names.FINAL_VAL_DICE)
    proxy = _mean_dice_by_point(children, "proxy", names.FINAL_VAL_DICE)
    assert proxy == pytest.approx(reference, abs=1e-9) and len(set(reference.values())) > 1
    metrics = parent.data.metrics
    assert metrics[names.TRUST_VALUE] == pytest.approx(1.0) and metrics[names.TRUST_PASSED] == 1.0
    # six perfectly ranked points: the one-sided 95% interval's lower bound is 0.75 (>= the default threshold 0.5)
    assert metrics[names.TRUST_LOWER_BOUND] == pytest.approx(0.746, abs=1e-3) and metrics[names.TRUST_CONFIDENCE] == 0.95
    assert code == 0 and verdict_line.startswith("proxy trusted: spearman 1.00 over 6 grid points, one-sided 95% interval [0.75, 1] >= 0.5")

    # the report is printed from MLflow alone, and is the one the run logged
    assert main(["report", "tiny-studies", "--markdown"]) == 0
    printed = capsys.readouterr().out
    client = mlflow.MlflowClient(paths.tracking_uri())
    logged = Path(client.download_artifacts(parent.info.run_id, "report.md")).read_text()
    assert printed == logged and "**Verdict: proxy trusted: spearman 1.00 over 6 grid points" in printed


def test_automl_comparison_on_a_multi_class_multi_channel_task(tmp_path: Path, isolated_home: Path) -> None:
    # two arms, one final model each: the other arms differ only in the data and network they pass on
    study = tiny_studies(tmp_path, comparison={"arms": ["all-data", "proxy-data"], "repeats": 1})
    document = study.model_dump(mode="json")
    document["search"] = {"rounds": 1, "proposals_per_round": 2}
    document["final"] = {"epochs": 1, "network": "proxy"}
    # both arms search with the full U-Net: 32x16x16 patches (as the trust check's) are a quarter of the 32^3 patch's work
    document["training"]["recipe"].update(patch_size=[32, 16, 16], roi_size=[32, 16, 16])
    _on_the_brain_phantom(document, tmp_path)  # the HPO searches and final models on a multi-class, multi-channel task
    run_local(parse_config(StudyConfig, document, "<test>"), "automl-comparison")
    client, parent, children = _runs("automl-comparison")
    assert parent.info.status == "FINISHED"
    trials = [run for run in children if run.data.tags[names.ROLE_TAG] == names.ROLE_TRIAL]
    finals = [run for run in children if run.data.tags[names.ROLE_TAG] == names.ROLE_FINAL]
    assert sorted(run.data.tags[names.ARM_TAG] for run in trials) == ["all-data"] * 2 + ["proxy-data"] * 2
    assert {run.data.params["data"] for run in trials} == {"full", "mi+labelcrop-4"}
    assert sorted((run.data.tags[names.ARM_TAG], run.data.tags[names.REPEAT_TAG]) for run in finals) == [("all-data", "0"), ("proxy-data", "0")]
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id, "manifests")}
    assert artifacts == {f"manifests/{arm}.json" for arm in ("all-data", "proxy-data")}
    # independent streams: each arm's trials draw their own seeds (arm_seed), so arms never share an initialisation
    seeds = {arm: {run.data.params[names.SEED_PARAM] for run in trials if run.data.tags[names.ARM_TAG] == arm} for arm in ("all-data", "proxy-data")}
    assert len(seeds["all-data"]) == 2 and not seeds["all-data"] & seeds["proxy-data"], seeds
    # the final models' internal Dice is their internal test Dice (held-out cases), as the parent run reports it
    assert all(names.INTERNAL_TEST_DICE in run.data.metrics for run in finals)
    for run in trials:
        assert _class_names(run, names.VAL_DICE) == set(BRAIN_CLASSES), run.data.metrics
    for run in finals:
        assert _class_names(run, names.INTERNAL_TEST_DICE) == set(BRAIN_CLASSES), run.data.metrics
    assert parent.data.metrics[f"{names.INTERNAL_TEST_DICE}.all-data"] == pytest.approx(
        next(run.data.metrics[names.INTERNAL_TEST_DICE] for run in finals if run.data.tags[names.ARM_TAG] == "all-data")
    )

    # the speed-up as run is recomputed from the searches' hours and the proxy selection's cost
    def search_hours(arm: str) -> float:
        return sum(run.data.metrics[names.PROCESS_HOURS] for run in trials if run.data.tags[names.ARM_TAG] == arm)

    manifest = json.loads(Path(client.download_artifacts(parent.info.run_id, "manifests/proxy-data.json")).read_text())
    expected = search_hours("all-data") / (search_hours("proxy-data") + manifest["selection_seconds"] / 3600)
    assert parent.data.metrics[names.SPEEDUP_VS_FULL] == pytest.approx(expected, rel=1e-6)
