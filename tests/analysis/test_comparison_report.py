"""The automl comparison's report (Table 2, Fig. 4C/D), built from a synthetic comparison logged into a real
SQLite MLflow store the way the pipeline logs it, checked against numbers recomputed by hand from the same runs."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.entities import Metric

from proxyhpo import tracking
from proxyhpo.analysis import comparison_report
from proxyhpo.analysis.comparison_report import MANIFESTS_FOLDER, ArmSearch, ComparisonRecord, collect, collect_searches, read_manifests, render
from proxyhpo.analysis.costs import SearchCost
from proxyhpo.analysis.study_report import StudyReport, build_study_report, render_report, write_study_report
from proxyhpo.config import DataConfig, ProxyDataManifest, SearchConfig, SearchSpace, StudiesConfig, StudyConfig
from proxyhpo.config.studies import ComparisonConfig
from proxyhpo.tracking import names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPACE = {"lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-2}, "intensity_shift_prob": {"type": "uniform", "low": 0.0, "high": 1.0}}
ARMS = ("all-data", "proxy-data-net", "random-data")
ROUNDS, PROPOSALS, REPEATS = 2, 2, 2
#: each arm's data: (method, cases, selection seconds, device); the proxy's selection costs 0.1 h per search
DATA = {"all-data": ("full", 12, 0.0, "cpu"), "proxy-data-net": ("mi+labelcrop", 8, 360.0, "cuda"), "random-data": ("random", 8, 0.0, "cpu")}
NETWORK = {"all-data": "full", "proxy-data-net": "proxy-L3", "random-data": "full", "proxy-data": "full", "proxy-net": "proxy-L3"}
#: per arm, its trials in start order: (round, lr, intensity_shift_prob, final_val_dice, gpu_hours, pack_size, failed)
TRIALS: dict[str, list[tuple[int, float, float, float | None, float, int, bool]]] = {
    "all-data": [
        (0, 0.001, 0.5, 0.70, 0.05, 1, False),
        (0, 0.0001, 0.1, 0.40, 0.05, 1, False),
        (1, 0.002, 0.3, 0.85, 0.06, 1, False),  # the best
        (1, 0.0003, 0.9, 0.60, 0.04, 1, False),
    ],
    "proxy-data-net": [
        (0, 0.001, 0.2, 0.50, 0.010, 4, False),
        (0, 0.004, 0.4, 0.66, 0.010, 4, False),  # the best finished
        (1, 0.0002, 0.8, 0.99, 0.012, 4, True),  # failed (with a bogus Dice): never the best, yet it cost device time
        (1, 0.003, 0.5, 0.61, 0.008, 4, False),
    ],
    "random-data": [
        (0, 0.0001, 1.0, 0.55, 0.04, 2, False),
        (0, 0.01, 0.0, 0.72, 0.04, 2, False),  # tied best, started first: the best
        (1, 0.005, 0.6, 0.72, 0.04, 2, False),  # tied best, started later
        (1, 0.0005, 0.7, 0.30, 0.04, 2, False),
    ],
}
#: per arm, its final models' (internal, external) Dice per repeat
FINALS = {
    "all-data": [(0.91, 0.80), (0.93, 0.84)],
    "proxy-data-net": [(0.92, 0.86), (0.95, 0.83)],
    "random-data": [(0.88, 0.75), (0.86, 0.79)],
}
FINAL_GPU_HOURS = 0.1


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _study(name: str, arms: tuple[str, ...], *, external: bool = True) -> StudyConfig:
    return StudyConfig(
        name=name,
        description="Three searches, two final models each.",
        data=DataConfig(dataset="/data/spleen", external="/data/btcv" if external else None),
        search=SearchConfig(space=SearchSpace.model_validate(SPACE), rounds=ROUNDS, proposals_per_round=PROPOSALS),
        studies=StudiesConfig(comparison=ComparisonConfig(arms=arms, repeats=REPEATS)),
    )


def _manifest(method: str, cases: int, seconds: float, device: str) -> dict[str, Any]:
    ids = tuple(f"case{i:02d}" for i in range(cases))
    train = ids[: cases * 3 // 4] if method == "full" else ids[: cases // 2]
    return ProxyDataManifest(
        method=method, budget=cases, seed=0, dataset="/data/spleen", dataset_sha256="0" * 64, case_ids=ids,
        cases=tuple({"image": f"imagesTr/{i}.nii.gz", "label": f"labelsTr/{i}.nii.gz"} for i in ids), scores=(None,) * cases,
        train_ids=train, val_ids=ids[len(train):], selection_seconds=seconds, selection_device=device,
    ).model_dump(mode="json")


class _Logger:
    """Logs child runs of one parent with strictly increasing start times (so "earliest started" is defined)."""

    def __init__(self, uri: str, parent: str) -> None:
        self.client = tracking.client(uri)
        self.parent = parent
        self.experiment_id = self.client.get_run(parent).info.experiment_id
        self.clock = int(time.time() * 1000)

    def run(self, tags: dict[str, str], params: dict[str, str], metrics: dict[str, float | None], status: str) -> str:
        self.clock += 1000
        run = self.client.create_run(self.experiment_id, start_time=self.clock, tags={names.PARENT_TAG: self.parent, **tags})
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        self.client.log_batch(run_id, metrics=[Metric(key, float(value), self.clock, 0) for key, value in metrics.items() if value is not None])
        self.client.set_terminated(run_id, status=status)
        return run_id


def _log_comparison(
    uri: str, study: StudyConfig, trials: dict[str, list[tuple[int, float, float, float | None, float, int, bool]]],
    finals: dict[str, list[tuple[float, float | None]]], *, manifests: dict[str, tuple[str, int, float, str]], cpu: bool = False,
    final_params: dict[str, dict[str, str]] | None = None, stopped: dict[str, dict[int, str]] | None = None,
    class_dice: dict[str, list[dict[str, float]]] | None = None,
) -> str:
    """The comparison's parent run (study.json, manifests/<arm>.json), its search trials and its final models.

    ``stopped``: arm -> {index of a trial in its rows: the run status} of trials early stopping ended (tagged as the
    pipeline tags them: ``proxyhpo.state=STOPPED`` and ``proxyhpo.stopped_at_epoch``). ``class_dice``: arm -> per repeat,
    a multi-class final model's internal Dice by class (logged as the trainer logs them).
    """
    parent = tracking.start_parent_run(study.name, "automl-comparison", config=study.model_dump(mode="json"), tracking_uri=uri)
    log = _Logger(uri, parent)
    for arm, data in manifests.items():
        log.client.log_dict(parent, _manifest(*data), f"{MANIFESTS_FOLDER}/{arm}.json")
    best: dict[str, dict[str, str]] = {}
    for arm, rows in trials.items():
        counters: dict[int, int] = {}
        top = -1.0
        for position, (round_, lr, shift, dice, hours, pack, failed) in enumerate(rows):
            index = counters[round_] = counters.get(round_, -1) + 1
            params = {"lr": str(lr), "intensity_shift_prob": str(shift), names.NETWORK_PARAM: NETWORK.get(arm, "full"), names.DATA_PARAM: arm}
            tags = {names.ROLE_TAG: names.ROLE_TRIAL, names.ARM_TAG: arm, names.ROUND_TAG: str(round_), names.TRIAL_ID_TAG: f"{arm}-r{round_}-p{index}"}
            metrics = {
                names.FINAL_VAL_DICE: dice, names.GPU_HOURS: 0.0 if cpu else hours, names.PROCESS_HOURS: hours if cpu else hours / 2,
                names.STEPS_RUN: 50, names.PACK_SIZE: pack,
            }
            status = "FAILED" if failed else "FINISHED"
            if position in (stopped or {}).get(arm, {}):
                tags |= {names.STATE_TAG: names.STATE_STOPPED, names.STOPPED_TAG: "2"}
                status = stopped[arm][position]  # type: ignore[index]
            log.run(tags, params, metrics, status)
            if status == "FINISHED" and names.STATE_TAG not in tags and dice is not None and dice > top:
                top, best[arm] = dice, {"lr": str(lr), "intensity_shift_prob": str(shift)}
    for arm, rows in finals.items():
        for repeat, (internal, external) in enumerate(rows):
            params = (final_params or {}).get(arm) or best.get(arm, {})
            tags = {names.ROLE_TAG: names.ROLE_FINAL, names.ARM_TAG: arm, names.REPEAT_TAG: str(repeat), names.TRIAL_ID_TAG: f"final-{arm}-r{repeat}"}
            metrics = {
                names.INTERNAL_TEST_DICE: internal, names.FINAL_VAL_DICE: internal - 0.1, names.TEST_DICE: external, names.GPU_HOURS: 0.0 if cpu else FINAL_GPU_HOURS, names.PROCESS_HOURS: FINAL_GPU_HOURS,
            }
            for name, dice in ((class_dice or {}).get(arm) or [{}] * len(rows))[repeat].items():
                metrics[names.class_dice(names.INTERNAL_TEST_DICE, name)] = dice
            log.run(tags, {**params, names.NETWORK_PARAM: "full", names.DATA_PARAM: "full"}, metrics, "FINISHED")
    return parent


@pytest.fixture(scope="module")
def comparison(store: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The comparison logged, then its report written (metrics and artifacts on the parent, which is closed)."""
    study = _study("automl-cmp", ARMS)
    # random-data's final models were trained with other values than its best trial's: the report must say so
    parent = _log_comparison(store, study, TRIALS, FINALS, manifests=DATA, final_params={"random-data": {"lr": "0.005", "intensity_shift_prob": "0.6"}})
    out = tmp_path_factory.mktemp("cmp-report")
    report = write_study_report(parent, markdown=out / "report.md", html=out / "report.html", tracking_uri=store)
    return {"uri": store, "parent": parent, "study": study, "report": report, "out": out}


def _runs(uri: str, parent: str, role: str) -> dict[str, list[Any]]:
    """The parent's child runs of ``role`` as MLflow holds them, by arm."""
    client = tracking.client(uri)
    experiment_id = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent}' and tags.`{names.ROLE_TAG}` = '{role}'", max_results=1000)
    by_arm: dict[str, list[Any]] = {}
    for run in runs:
        by_arm.setdefault(run.data.tags[names.ARM_TAG], []).append(run)
    return by_arm


def _search_cost_by_hand(runs: list[Any], manifest: dict[str, Any]) -> tuple[float, float]:
    """(hours per search as run, at equal pack size): every trial's GPU-hours (failed too) plus the manifest's selection."""
    selection = manifest["selection_seconds"] / 3600
    as_run = sum(run.data.metrics["gpu_hours"] for run in runs)
    packed = sum(run.data.metrics["gpu_hours"] * run.data.metrics["pack_size"] for run in runs)
    return as_run + selection, packed + selection


def _unit(lr: float, shift: float) -> np.ndarray:
    """A setting on the unit square: lr on its log scale over [1e-4, 1e-2], the probability as is."""
    return np.array([(math.log10(lr) + 4) / 2, shift])


def test_speedups_equal_hand_computation_from_runs_and_manifests(comparison: dict[str, Any]) -> None:
    report: StudyReport = comparison["report"]
    assert report.kind == "automl-comparison" and report.verdict is None
    trials = _runs(comparison["uri"], comparison["parent"], names.ROLE_TRIAL)
    manifests = {arm: json.loads(json.dumps(m.model_dump(mode="json"))) for arm, m in read_manifests(comparison["parent"], comparison["uri"]).items()}
    assert sorted(manifests) == sorted(ARMS) and manifests["proxy-data-net"]["selection_seconds"] == 360.0
    full, full_packed = _search_cost_by_hand(trials["all-data"], manifests["all-data"])
    for arm in ("proxy-data-net", "random-data"):
        hours, packed = _search_cost_by_hand(trials[arm], manifests[arm])
        assert report.metrics[f"speedup_vs_full.{arm}"] == pytest.approx(full / hours)
        assert report.metrics[f"speedup_vs_full_equal_pack.{arm}"] == pytest.approx(full_packed / packed)
        assert report.metrics[f"device_hours_per_search.{arm}"] == pytest.approx(hours)
    # by the numbers: all data 0.20 h; proxy data & net 0.04 h of trials (the failed one too) + 0.1 h of selection
    assert report.metrics["speedup_vs_full"] == pytest.approx(0.20 / 0.14)
    assert report.metrics["speedup_vs_full_equal_pack"] == pytest.approx(0.20 / (0.04 * 4 + 0.1))
    assert report.metrics["speedup_vs_full.random-data"] == pytest.approx(0.20 / 0.16)
    assert report.metrics["selection_hours.proxy-data-net"] == pytest.approx(0.1)
    assert "speedup_vs_full.all-data" not in report.metrics and "hp_distance.all-data" not in report.metrics
    assert "Hours are **GPU-hours**" in report.markdown and "device wall-hours (CPU)" not in report.markdown
    cost = report.markdown.split("## Cost", 1)[1]
    assert "| `proxy-data-net` | Proxy Data&Net | 0.04 | 0.1 (cuda) | 0.14 | 1.43× | 0.26 | 0.77× |" in cost


def test_table_two_means_and_stds_by_hand(comparison: dict[str, Any]) -> None:
    report: StudyReport = comparison["report"]
    finals = _runs(comparison["uri"], comparison["parent"], names.ROLE_FINAL)
    table = report.markdown.split("## Table 2", 1)[1].split("\n## ", 1)[0]
    assert "| HP from: | All Data | Proxy Data&Net | Random Data |" in table
    internal_row = next(line for line in table.splitlines() if line.startswith("| MSD Dice (internal) |"))
    external_row = next(line for line in table.splitlines() if line.startswith("| External Dice |"))
    for arm in ARMS:
        internal = [run.data.metrics["internal_test_dice"] for run in finals[arm]]
        external = [run.data.metrics["test_dice"] for run in finals[arm]]
        assert f"{np.mean(internal):.4f} ± {np.std(internal, ddof=1):.4f}" in internal_row, arm
        assert f"{np.mean(external):.4f} ± {np.std(external, ddof=1):.4f}" in external_row, arm
        key = arm
        assert report.metrics[f"internal_test_dice.{key}"] == pytest.approx(np.mean(internal))
        assert report.metrics[f"internal_test_dice_std.{key}"] == pytest.approx(np.std(internal, ddof=1))
        assert report.metrics[f"final_test_dice.{key}"] == pytest.approx(np.mean(external))
        assert report.metrics[f"final_test_dice_std.{key}"] == pytest.approx(np.std(external, ddof=1))
    # the headline (proxy-data-net) goes unprefixed
    # the final models' search-validation Dice (final_val_dice, logged 0.1 lower) is no internal Dice: it chose their checkpoint
    assert report.metrics["internal_test_dice"] == pytest.approx(0.935) and "final_val_dice" not in report.metrics and report.metrics["final_test_dice"] == pytest.approx(0.845)
    assert "| GPU-hours per search | 0.2 | 0.14 | 0.16 |" in table
    assert "| speed-up vs `all-data` | 1.00× | 1.43× | 1.25× |" in table


def test_best_trial_and_distance_by_hand(comparison: dict[str, Any]) -> None:
    report: StudyReport = comparison["report"]
    searches = collect_searches(comparison["parent"], tracking_uri=comparison["uri"])
    assert list(searches) == list(ARMS) and all(isinstance(s, ArmSearch) for s in searches.values())
    reference = searches["all-data"]
    assert (reference.best_trial, reference.best_round, reference.best_val_dice) == ("all-data-r1-p0", 1, pytest.approx(0.85))
    assert reference.hyperparameters == {"lr": pytest.approx(0.002), "intensity_shift_prob": pytest.approx(0.3)}
    assert reference.distance == 0.0
    pdn = searches["proxy-data-net"]  # the failed trial's bogus 0.99 is not its best
    assert (pdn.best_trial, pdn.best_val_dice, pdn.trials.n_trials, pdn.trials.n_failed, pdn.trials.n_stopped) == ("proxy-data-net-r0-p1", pytest.approx(0.66), 4, 1, 0)
    assert pdn.network == "proxy-L3" and (pdn.method, pdn.budget, pdn.train_cases, pdn.val_cases) == ("mi+labelcrop", 8, 4, 4)
    rnd = searches["random-data"]  # a tie at 0.72: the earlier started trial wins
    assert rnd.best_trial == "random-data-r0-p1" and rnd.hyperparameters == {"lr": pytest.approx(0.01), "intensity_shift_prob": pytest.approx(0.0)}
    ref = _unit(0.002, 0.3)
    for arm, (lr, shift) in (("proxy-data-net", (0.004, 0.4)), ("random-data", (0.01, 0.0))):
        expected = float(np.linalg.norm(_unit(lr, shift) - ref) / math.sqrt(2))
        assert searches[arm].distance == pytest.approx(expected), arm
        assert report.metrics[f"hp_distance.{arm}"] == pytest.approx(expected)
    assert report.metrics["hp_distance"] == pytest.approx(searches["proxy-data-net"].distance)
    assert report.metrics["best_val_dice"] == pytest.approx(0.66)
    # the final models' logged hyper-parameters are checked against the best trial's
    assert pdn.final_matches_best is True and rnd.final_matches_best is False
    section = report.markdown.split("## Hyper-parameters found (Fig. 4C/D)", 1)[1].split("\n## ", 1)[0]
    assert "| lr | intensity_shift_prob | distance to `all-data` |" in section
    row = next(line for line in section.splitlines() if line.startswith("| `proxy-data-net` |"))
    assert f"| `proxy-data-net-r0-p1` | 0 | 0.6600 | 0.004 | 0.4 | {searches['proxy-data-net'].distance:.3f} | the best trial's |" in row
    assert "other values: lr = 0.005, intensity_shift_prob = 0.6" in section
    assert set(report.plots) == {"fig4_hp_distance"}


def test_parent_metrics_artifacts_and_status(comparison: dict[str, Any]) -> None:
    client = tracking.client(comparison["uri"])
    parent = client.get_run(comparison["parent"])
    assert parent.info.status == "FINISHED"
    metrics = parent.data.metrics
    for key in ("speedup_vs_full", "speedup_vs_full_equal_pack", "internal_test_dice", "final_test_dice", "hp_distance", "best_val_dice",
                "speedup_vs_full.random-data", "internal_test_dice.all-data", "device_hours_per_search.all-data", "hp_distance.proxy-data-net",
                "total_gpu_hours", "total_process_hours", "n_trials", "n_failed_trials", "n_final_models", "n_failed_final_models"):
        assert key in metrics, key
    assert metrics == pytest.approx(comparison["report"].metrics)
    assert (metrics["n_trials"], metrics["n_failed_trials"], metrics["n_final_models"], metrics["n_failed_final_models"]) == (12, 1, 6, 0)
    trial_gpu = sum(row[4] for rows in TRIALS.values() for row in rows)
    assert metrics["total_gpu_hours"] == pytest.approx(trial_gpu + 6 * FINAL_GPU_HOURS)  # searches and final models
    artifacts = {entry.path for entry in client.list_artifacts(comparison["parent"])}
    assert {"report.md", "summary.json", "study.json", "manifests", "fig4_hp_distance.png"} <= artifacts
    summary = json.loads(Path(client.download_artifacts(comparison["parent"], "summary.json", str(comparison["out"]))).read_text())
    assert summary["kind"] == "automl-comparison" and summary["headline_arm"] == "proxy-data-net" and summary["reference_arm"] == "all-data"
    assert summary["n_trials"] == 12 and summary["n_failed"] == 1 and summary["arms"]["random-data"]["best_trial"] == "random-data-r0-p1"
    assert summary["plots"] == ["fig4_hp_distance.png"]


def test_markdown_html_and_render_report(comparison: dict[str, Any], store: str) -> None:
    report: StudyReport = comparison["report"]
    out: Path = comparison["out"]
    text = (out / "report.md").read_text()
    assert text == report.markdown and text.startswith("# AutoML comparison `automl-cmp`")
    for heading in ("## What was run", "## Table 2", "## Hyper-parameters found (Fig. 4C/D)", "## Cost", "## Plots"):
        assert heading in text
    assert "12 search trials, 1 failed; 6 final models, 0 failed" in text
    assert "2 rounds × 2 proposals = 4 trials per arm" in text and "lr ∈ [0.0001, 0.01] (log scale)" in text
    assert "| `proxy-data-net` | Proxy Data&Net | MI+Labelcrop, B = 8 | 8 (4 / 4) | proxy-L3 | 2 | 4 (4) | 1 | 2 (2) | 0 |" in text
    assert "| `all-data` | All Data | all data | 12 (9 / 3) | full |" in text
    assert "Headline arm (the parent run's unprefixed metrics): `proxy-data-net`." in text
    assert "[fig4_hp_distance.png](fig4_hp_distance.png)" in text
    page = (out / "report.html").read_text()
    assert "<pre>" in page and "data:image/png;base64," in page
    assert render_report("automl-cmp", tracking_uri=store) == text  # built again from MLflow alone, the same
    assert render_report(comparison["parent"], tracking_uri=store) == text


def test_cpu_comparison_without_reference_result_or_external_set(store: str, tmp_path: Path) -> None:
    """On the CPU, no external set, every all-data trial failed, one arm without a manifest; headline: the first proxy arm."""
    study = _study("automl-cpu", ("all-data", "proxy-data", "proxy-net"), external=False)
    trials = {
        "all-data": [(0, 0.001, 0.5, None, 0.05, 1, True), (0, 0.0001, 0.1, None, 0.05, 1, True)],
        "proxy-data": [(0, 0.001, 0.5, 0.6, 0.01, 2, False), (1, 0.003, 0.2, 0.7, 0.01, 2, False)],
        "proxy-net": [(0, 0.002, 0.5, 0.65, 0.02, 1, False)],
    }
    finals = {"proxy-data": [(0.9, None), (0.8, None)]}
    manifests = {"all-data": DATA["all-data"], "proxy-data": ("mi+labelcrop", 8, 72.0, "cpu")}
    parent = _log_comparison(store, study, trials, finals, manifests=manifests, cpu=True)
    report = build_study_report(parent, tmp_path, tracking_uri=store)
    assert report.kind == "automl-comparison"
    assert "Hours are **device wall-hours (CPU)**" in report.markdown and "| device wall-hours (CPU) per search |" in report.markdown
    # the reference cost 0.1 h though nothing finished: speed-ups stand, distances do not
    assert report.metrics["speedup_vs_full"] == pytest.approx(0.1 / (0.02 + 0.02))  # proxy-data: 2 trials + 72 s of selection
    assert report.metrics["speedup_vs_full.proxy-net"] == pytest.approx(0.1 / 0.02)
    assert "hp_distance" not in report.metrics and "final_test_dice" not in report.metrics
    assert report.metrics["internal_test_dice"] == pytest.approx(0.85) and report.metrics["total_gpu_hours"] == 0
    assert report.plots == {} and "No plot: no search other than `all-data` has a distance to it." in report.markdown
    assert "No `all-data` trial finished: there is no reference to measure distances from." in report.markdown
    assert "| `proxy-net` | Proxy Net | – (no manifest logged) | – | proxy-L3 |" in report.markdown
    assert "| `all-data` | All Data | no finished trial |" in report.markdown
    assert "no external set configured" in report.markdown
    assert tracking.client(store).get_run(parent).info.status == "RUNNING"  # building logs nothing, closes nothing


# ------------------------------------------------------------------------------------------ the record and what render draws


def test_the_record_holds_every_number_the_report_shows(comparison: dict[str, Any]) -> None:
    record = collect(comparison["parent"], tracking_uri=comparison["uri"])
    assert isinstance(record, ComparisonRecord) and record.model_config.get("frozen")
    assert (record.reference, record.headline, record.ladder) == ("all-data", "proxy-data-net", None)
    assert (record.trials.n_trials, record.trials.n_finished, record.trials.n_failed, record.trials.n_stopped, record.trials.n_running) == (12, 11, 1, 0, 0)
    assert (record.finals.n_trials, record.finals.n_failed) == (6, 0)
    # the one cost model: the proxy search's trials (0.01 + 0.01 + 0.012 + 0.008 h, the failed one too) and its 360 s of selection
    cost = record.arms["proxy-data-net"].cost
    assert isinstance(cost, SearchCost) and cost.model_dump() == {
        "arm": "proxy-data-net", "searches": 1, "n_trials": 4, "trial_hours": pytest.approx(0.04), "selection_hours": pytest.approx(0.1),
        "selection_device": "cuda", "hours": pytest.approx(0.14), "equal_pack_hours": pytest.approx(0.26), "total_hours": pytest.approx(0.04),
        "speedup": pytest.approx(0.20 / 0.14), "speedup_equal_pack": pytest.approx(0.20 / 0.26),
    }
    assert record.arms["all-data"].cost.speedup == pytest.approx(1.0) and record.arms["all-data"].cost.selection_device is None
    assert record.hours.unit == "GPU-hours" and record.hours.n_on_gpu == 12
    assert record.metrics == pytest.approx(comparison["report"].metrics)
    # render is a function of the record alone: the same Markdown as the published report
    rendered = render(record)
    assert rendered.markdown == comparison["report"].markdown and rendered.kind == comparison_report.KIND


def test_fig4_draws_one_dot_per_search_other_than_the_reference(comparison: dict[str, Any]) -> None:
    record = collect(comparison["parent"], tracking_uri=comparison["uri"])
    figure = render(record).figures["fig4_hp_distance"]
    (axis,) = figure.axes
    labels = [tick.get_text() for tick in axis.get_xticklabels()]
    assert labels == ["Proxy Data&Net\n(proxy-data-net)\n(n = 1)", "Random Data\n(random-data)\n(n = 1)"]
    dots = [collection.get_offsets() for collection in axis.collections]
    assert [float(points[0][1]) for points in dots] == pytest.approx([record.arms["proxy-data-net"].distance, record.arms["random-data"].distance])
    assert axis.get_ylabel().startswith("relative distance to the full search's hyper-parameters")
    assert "distance to all-data's" in axis.get_title() and "(lr, intensity_shift_prob)" in axis.get_title()


def test_a_stopped_trial_is_counted_stopped_not_failed(store: str, tmp_path: Path) -> None:
    """Early stopping ended two proxy trials (one KILLED, as the trial writer closes it; one FINISHED, as DESIGN's contract has
    it): they count as stopped, not failed; their Dice (even the highest) is never the search's best; their hours count."""
    study = _study("automl-stopped", ARMS)
    trials = dict(TRIALS) | {
        "proxy-data-net": [
            (0, 0.001, 0.2, 0.50, 0.010, 4, False),
            (0, 0.004, 0.4, 0.66, 0.010, 4, False),
            (1, 0.0002, 0.8, 0.97, 0.006, 4, False),  # stopped at epoch 2 (KILLED): its early Dice is no final one
            (1, 0.003, 0.5, 0.61, 0.004, 4, False),  # stopped at epoch 2 (FINISHED, tagged stopped)
        ]
    }
    parent = _log_comparison(store, study, trials, FINALS, manifests=DATA, stopped={"proxy-data-net": {2: "KILLED", 3: "FINISHED"}})
    record = collect(parent, tracking_uri=store)
    pdn = record.arms["proxy-data-net"]
    assert (pdn.trials.n_trials, pdn.trials.n_finished, pdn.trials.n_stopped, pdn.trials.n_failed) == (4, 2, 2, 0)
    assert (record.trials.n_stopped, record.trials.n_failed) == (2, 0)
    assert (pdn.best_trial, pdn.best_val_dice) == ("proxy-data-net-r0-p1", pytest.approx(0.66))
    assert pdn.cost.trial_hours == pytest.approx(0.03)  # stopped trials used the device
    assert record.metrics["n_failed_trials"] == 0 and record.metrics["n_stopped_trials"] == 2
    report = write_study_report(parent, markdown=tmp_path / "r.md", html=tmp_path / "r.html", tracking_uri=store)
    assert "12 search trials, 0 failed, 2 stopped early; 6 final models, 0 failed" in report.markdown
    assert "| trials (planned) | failed | stopped | final models (planned) | failed |" in report.markdown
    assert "| `proxy-data-net` | Proxy Data&Net | MI+Labelcrop, B = 8 | 8 (4 / 4) | proxy-L3 | 2 | 4 (4) | 0 | 2 | 2 (2) | 0 |" in report.markdown
    summary = json.loads(Path(tracking.client(store).download_artifacts(parent, names.SUMMARY_ARTIFACT, str(tmp_path))).read_text())
    assert (summary["n_failed"], summary["n_stopped"]) == (0, 2)


def test_a_paired_comparison_reports_the_shared_candidates_instead_of_a_dice_gap(store: str, tmp_path: Path) -> None:
    """With ``paired: true`` both arms trained the lrs 0.001 and 0.01 (and proxy-data-net 0.003 alone): the report gives
    the rank correlation and regret on the two shared settings and no Dice gap."""
    study = _study("automl-paired", ("all-data", "proxy-data-net"))
    study = study.model_copy(update={"studies": study.studies.model_copy(update={"comparison": study.studies.comparison.model_copy(update={"paired": True})})})
    trials = {
        "all-data": [(0, 0.001, 0.5, 0.70, 0.05, 1, False), (0, 0.01, 0.1, 0.80, 0.05, 1, False)],
        "proxy-data-net": [(0, 0.001, 0.5, 0.60, 0.01, 1, False), (0, 0.01, 0.1, 0.50, 0.01, 1, False), (0, 0.003, 0.3, 0.90, 0.01, 1, False)],
    }
    finals = {arm: FINALS[arm] for arm in trials}
    parent = _log_comparison(store, study, trials, finals, manifests={arm: DATA[arm] for arm in trials})
    record = collect(parent, store)
    shared = record.shared["proxy-data-net"]
    # two shared settings, ranked the other way round (a rho needs three); the proxy's first (lr 0.001) is 0.1 below the full search's best
    assert (shared.n_shared, shared.spearman_rho, shared.regret) == (2, None, pytest.approx(0.10))  # rho needs 3 settings
    report = render(record)
    assert "## Paired arms: the proxy's ranking of the shared candidates" in report.markdown
    assert "| `proxy-data-net` | 2 | – | 0.1000 |" in report.markdown
    assert report.metrics["shared_regret.proxy-data-net"] == pytest.approx(0.10)
    assert "headline_dice_gap" not in report.metrics and report.summary["paired"] is True


def test_a_multi_class_comparison_reports_each_arms_internal_dice_per_class(store: str, tmp_path: Path) -> None:
    """Table 2 gives a multi-class task's internal Dice per class under their mean: each class averaged over an arm's final models."""
    study = _study("automl-classes", ARMS)
    finals = {arm: [(0.6, 0.5), (0.7, 0.6)] for arm in ARMS}
    per_class = {arm: [{"edema": 0.8, "enhancing tumour": 0.4}, {"edema": 0.9, "enhancing tumour": 0.5}] for arm in ARMS}
    per_class["proxy-data-net"] = [{"edema": 0.7, "enhancing tumour": 0.3}, {"edema": 0.5, "enhancing tumour": 0.7}]
    parent = _log_comparison(store, study, TRIALS, finals, manifests=DATA, class_dice=per_class)
    record = collect(parent, tracking_uri=store)
    assert record.arms["all-data"].internal_class_mean == pytest.approx({"edema": 0.85, "enhancing_tumour": 0.45})
    assert record.arms["proxy-data-net"].internal_class_mean == pytest.approx({"edema": 0.6, "enhancing_tumour": 0.5})
    report = write_study_report(parent, markdown=tmp_path / "r.md", html=tmp_path / "r.html", tracking_uri=store)
    rows = [line for line in report.markdown.splitlines() if line.startswith("| &nbsp;&nbsp;class ")]
    assert [row.split(" | ")[0] for row in rows] == ["| &nbsp;&nbsp;class edema", "| &nbsp;&nbsp;class enhancing_tumour"]
    assert "0.8500" in rows[0] and "0.6000" in rows[0] and "0.4500" in rows[1]
    # a binary comparison has no such rows
    assert "class " not in write_study_report(_log_comparison(store, _study("automl-binary", ARMS), TRIALS, FINALS, manifests=DATA), markdown=tmp_path / "b.md", html=tmp_path / "b.html", tracking_uri=store).markdown.split("## Table 2")[1].split("##")[0]
