"""The comparison studies' report, built from child runs logged into a real SQLite MLflow store, checked
against numbers recomputed by hand (scipy) from the same runs."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.entities import Metric
from scipy import stats

from proxyhpo import tracking
from proxyhpo.analysis import StudyReport, build_study_report, collect_cells, latest_study_run, read_plan, render_report, write_study_report
from proxyhpo.analysis._grid import PLAN_ARTIFACT
from proxyhpo.config import (
    DataConfig,
    NetworkConfig,
    ProxyDataStudyConfig,
    ProxyNetStudyConfig,
    StudiesConfig,
    StudyCell,
    StudyConfig,
    TrustConfig,
    grid_points,
)
from proxyhpo.errors import InputError, ProxyHPOError
from proxyhpo.tracking import names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID = {"optimizer": ("adam", "rmsprop"), "lr": (0.001, 0.0001)}
POINTS = [p.point_id for p in grid_points(GRID)]  # adam/0.001, adam/0.0001, rmsprop/0.001, rmsprop/0.0001
#: the reference's true external Dice per point: adam/0.001 is best; its internal Dice prefers rmsprop/0.001
TRUTH = dict(zip(POINTS, (0.80, 0.62, 0.71, 0.50), strict=True))
INTERNAL_TRUTH = dict(zip(POINTS, (0.70, 0.60, 0.90, 0.50), strict=True))
N_CASES = 16
SELECTION_SECONDS = {"mi+labelcrop": 360.0, "random": 0.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _cell(kind: str, arm: str, repeat: int, network: NetworkConfig, cases: int, seconds: float = 0.0, device: str = "cpu") -> dict[str, Any]:
    ids = [f"case{i:02d}" for i in range(cases)]
    return StudyCell(
        study=kind, arm=arm, repeat=repeat, network=network, train_ids=tuple(ids[: cases // 2]), val_ids=tuple(ids[cases // 2 :]),
        data_fraction=cases / N_CASES, selection_seconds=seconds, selection_device=device,
    ).model_dump(mode="json")


def _log_study(uri: str, study: StudyConfig, kind: str, plan: list[dict[str, Any]], trials: list[dict[str, Any]]) -> str:
    """A comparison study's parent run (study.json, cells.json) and one child run per trial, tagged and logged as the pipeline does."""
    parent = tracking.start_parent_run(study.name, kind, config=study.model_dump(mode="json"), tracking_uri=uri)
    client = tracking.client(uri)
    client.log_dict(parent, plan, PLAN_ARTIFACT)
    experiment_id = client.get_run(parent).info.experiment_id
    now = int(time.time() * 1000)
    for trial in trials:
        tags = {
            names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL, names.STUDY_TAG: kind, names.ARM_TAG: trial["arm"],
            names.REPEAT_TAG: str(trial["repeat"]), names.POINT_TAG: trial["point"],
        }
        run = client.create_run(experiment_id, run_name=f"{trial['arm']}-r{trial['repeat']}-{trial['point']}", tags=tags)
        keys = (names.FINAL_VAL_DICE, names.TEST_DICE, names.GPU_HOURS, names.PROCESS_HOURS, names.STEPS_RUN, names.PACK_SIZE)
        metrics = {key: trial[key] for key in keys if trial.get(key) is not None}
        client.log_batch(run.info.run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()])
        if trial.get("stopped"):
            client.set_tag(run.info.run_id, names.STATE_TAG, names.STATE_STOPPED)
            client.set_tag(run.info.run_id, names.STOPPED_TAG, "3")
        client.set_terminated(run.info.run_id, status="FAILED" if trial.get("failed") else "KILLED" if trial.get("stopped") else "FINISHED")
    return parent


def _trial(arm: str, repeat: int, point: str, internal: float | None, external: float | None, gpu: float, process: float, pack: int | None = None,
           failed: bool = False, stopped: bool = False) -> dict[str, Any]:
    return {
        "arm": arm, "repeat": repeat, "point": point, "failed": failed, "stopped": stopped, names.GPU_HOURS: gpu, names.PROCESS_HOURS: process,
        names.STEPS_RUN: 100, names.PACK_SIZE: pack, names.FINAL_VAL_DICE: internal, names.TEST_DICE: external,
    }


# ------------------------------------------------------------------------------------------ the proxy data study

PD_METHODS, PD_BUDGETS, PD_REPEATS = ("mi+labelcrop", "random"), (4, 8), 3
FAILED = {("full", 1, POINTS[3]), ("mi+labelcrop-8", 2, POINTS[1])}


def _proxy_data_study() -> StudyConfig:
    studies = StudiesConfig(grid=GRID, proxy_data=ProxyDataStudyConfig(methods=PD_METHODS, budgets=PD_BUDGETS, repeats=PD_REPEATS))
    return StudyConfig(name="pd-study", description="Two methods, two budgets.", data=DataConfig(dataset="/data/spleen"), studies=studies)


def _proxy_data_trials() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(7)
    plan, trials = [], []
    arms = {"full": (None, N_CASES)} | {f"{m}-{b}": (m, b) for m in PD_METHODS for b in PD_BUDGETS}
    for arm, (method, cases) in arms.items():
        for repeat in range(PD_REPEATS):
            seconds = SELECTION_SECONDS[method] if method else 0.0
            plan.append(_cell("proxy-data-study", arm, repeat, NetworkConfig.full(), cases, seconds, "cuda" if seconds else "cpu"))
            for point in POINTS:
                if method is None:  # all data, on a GPU, alone
                    internal, external, gpu, pack = INTERNAL_TRUTH[point], TRUTH[point] + rng.normal(0, 0.01), 0.020 + 0.001 * repeat, None
                elif method == "mi+labelcrop":  # tracks the reference, lower
                    internal, external, gpu, pack = 0.6, 0.8 * TRUTH[point] + rng.normal(0, 0.01), 0.004, 4
                else:  # random: ranks the grid the other way round
                    internal, external, gpu, pack = 0.6, 0.9 - 0.8 * TRUTH[point] + rng.normal(0, 0.03), 0.004, 4
                failed = (arm, repeat, point) in FAILED  # a failed trial that had logged a (bogus) Dice: it must count nowhere
                external = 0.99 if failed else float(np.clip(external, 0, 1))
                trials.append(_trial(arm, repeat, point, 0.99 if failed else internal, external, gpu, 0.5, pack, failed=failed))
    return plan, trials


@pytest.fixture(scope="module")
def proxy_data(store: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The study logged, then its report written (metrics and artifacts on the parent, which is closed)."""
    study = _proxy_data_study()
    plan, trials = _proxy_data_trials()
    parent = _log_study(store, study, "proxy-data-study", plan, trials)
    out = tmp_path_factory.mktemp("pd-report")
    report = write_study_report(parent, markdown=out / "report.md", html=out / "report.html", tracking_uri=store)
    return {"uri": store, "parent": parent, "study": study, "plan": plan, "trials": trials, "report": report, "out": out}


def _runs_by_arm(uri: str, parent: str) -> dict[str, list[Any]]:
    """The parent's child runs as MLflow holds them, by arm."""
    client = tracking.client(uri)
    experiment_id = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent}'", max_results=1000)
    by_arm: dict[str, list[Any]] = {}
    for run in runs:
        by_arm.setdefault(run.data.tags[names.ARM_TAG], []).append(run)
    return by_arm


def _point_means(runs: list[Any], metric: str) -> dict[str, float]:
    """Mean of ``metric`` per grid point over the FINISHED runs."""
    values: dict[str, list[float]] = {}
    for run in runs:
        if run.info.status == "FINISHED" and metric in run.data.metrics:
            values.setdefault(run.data.tags[names.POINT_TAG], []).append(run.data.metrics[metric])
    return {point: float(np.mean(v)) for point, v in values.items()}


def _by_hand(proxy: list[Any], reference: list[Any], metric: str) -> dict[str, float]:
    x, y = _point_means(proxy, metric), _point_means(reference, metric)
    points = sorted(x.keys() & y.keys())
    a, b = [x[p] for p in points], [y[p] for p in points]
    return {"pearson_r": stats.pearsonr(a, b)[0], "spearman_rho": stats.spearmanr(a, b)[0], "kendall_tau": stats.kendalltau(a, b)[0]}


def _cost_by_hand(runs: list[Any], plan: list[dict[str, Any]], arm: str) -> tuple[float, float]:
    """(hours per search as run, at equal pack size), from the runs' hours and the plan's selection seconds."""
    repeats = sorted({int(run.data.tags[names.REPEAT_TAG]) for run in runs})
    selection = np.mean([c["selection_seconds"] / 3600 for c in plan if c["arm"] == arm and c["repeat"] in repeats])

    def hours(run: Any) -> float:
        gpu = run.data.metrics.get("gpu_hours", 0.0)
        return gpu if gpu > 0 else run.data.metrics.get("process_hours", 0.0)

    as_run = np.mean([sum(hours(r) for r in runs if int(r.data.tags[names.REPEAT_TAG]) == k) for k in repeats]) + selection
    packed = np.mean([sum(hours(r) * r.data.metrics.get("pack_size", 1) for r in runs if int(r.data.tags[names.REPEAT_TAG]) == k) for k in repeats])
    return float(as_run), float(packed + selection)


def test_collect_cells_and_plan(proxy_data: dict[str, Any]) -> None:
    cells = collect_cells(proxy_data["parent"], tracking_uri=proxy_data["uri"])
    assert sorted(cells) == sorted(["full", "mi+labelcrop-4", "mi+labelcrop-8", "random-4", "random-8"])
    assert all(len(arm) == PD_REPEATS * len(POINTS) for arm in cells.values())
    failed = {(c.arm, c.repeat, c.point) for arm in cells.values() for c in arm if c.failed}
    assert failed == FAILED
    cell = next(c for c in cells["mi+labelcrop-8"] if (c.repeat, c.point) == (0, POINTS[0]))
    assert (cell.device_hours, cell.pack_size, cell.steps) == (pytest.approx(0.004), 4, 100)
    assert cell.external_dice is not None and cell.internal_dice == pytest.approx(0.6)
    assert next(c for c in cells["full"] if c.repeat == 0).pack_size == 1  # no pack_size metric: 1
    study, plan = read_plan(proxy_data["parent"], tracking_uri=proxy_data["uri"])
    assert study == proxy_data["study"]
    assert [c.model_dump(mode="json") for c in plan] == proxy_data["plan"]


def test_correlations_equal_scipy_on_the_runs(proxy_data: dict[str, Any]) -> None:
    report: StudyReport = proxy_data["report"]
    runs = _runs_by_arm(proxy_data["uri"], proxy_data["parent"])
    for arm in ("mi+labelcrop-4", "mi+labelcrop-8", "random-4", "random-8"):
        expected = _by_hand(runs[arm], runs["full"], "test_dice")  # failed runs left out
        key = arm.replace("+", "_")
        for name, value in expected.items():
            assert report.metrics[f"{name}.{key}"] == pytest.approx(value, abs=1e-9), (arm, name)
            low, high = report.metrics[f"{name}_low.{key}"], report.metrics[f"{name}_high.{key}"]
            assert -1 <= low <= high <= 1
    # the headline arm is the study's own selection at Table 1's budget
    headline = _by_hand(runs["mi+labelcrop-8"], runs["full"], "test_dice")
    for name, value in headline.items():
        assert report.metrics[name] == pytest.approx(value, abs=1e-9)
    assert report.metrics["spearman_rho"] == pytest.approx(1.0) and report.metrics["spearman_rho.random-8"] == pytest.approx(-1.0)


def test_speedups_equal_hand_computation(proxy_data: dict[str, Any]) -> None:
    report: StudyReport = proxy_data["report"]
    runs = _runs_by_arm(proxy_data["uri"], proxy_data["parent"])
    full, full_packed = _cost_by_hand(runs["full"], proxy_data["plan"], "full")
    for arm in ("mi+labelcrop-4", "mi+labelcrop-8", "random-4", "random-8"):
        hours, packed = _cost_by_hand(runs[arm], proxy_data["plan"], arm)
        key = arm.replace("+", "_")
        assert report.metrics[f"speedup_vs_full.{key}"] == pytest.approx(full / hours)
        assert report.metrics[f"speedup_vs_full_equal_pack.{key}"] == pytest.approx(full_packed / packed)
        assert report.metrics[f"device_hours_per_repeat.{key}"] == pytest.approx(hours)
    hours, packed = _cost_by_hand(runs["mi+labelcrop-8"], proxy_data["plan"], "mi+labelcrop-8")
    assert report.metrics["speedup_vs_full"] == pytest.approx(full / hours)
    assert report.metrics["speedup_vs_full_equal_pack"] == pytest.approx(full_packed / packed)
    # 4 trials of 0.02-0.022 h per full search; the selection's 0.1 h per search is charged to MI+Labelcrop, not to random
    assert report.metrics["speedup_vs_full"] == pytest.approx(0.084 / (0.016 + 0.1))
    assert report.metrics["speedup_vs_full.random-8"] == pytest.approx(0.084 / 0.016)
    assert "GPU-hours" in report.markdown and "device wall-hours (CPU)" not in report.markdown


def test_table_one_at_the_reference_best_point(proxy_data: dict[str, Any]) -> None:
    report: StudyReport = proxy_data["report"]
    best = POINTS[0]  # best by external Dice; internal would pick rmsprop/0.001
    assert f"Best grid point of `full` by mean external Dice over repeats: `{best}`" in report.markdown
    runs = _runs_by_arm(proxy_data["uri"], proxy_data["parent"])
    table = report.markdown.split("## Table 1", 1)[1].split("\n## ", 1)[0]
    for label, arm in (("MI+Labelcrop", "mi+labelcrop-8"), ("Random baseline", "random-8"), ("Full Dataset", "full")):
        values = [r.data.metrics["test_dice"] for r in runs[arm] if r.data.tags[names.POINT_TAG] == best and r.info.status == "FINISHED"]
        row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        assert f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in row, row
    assert "| MI+Labelcrop | 8 cases (50%) | 0.6000 ± 0.0000 |" in table
    summary = json.loads((Path(tracking.client(proxy_data["uri"]).download_artifacts(proxy_data["parent"], "summary.json", str(proxy_data["out"])))).read_text())
    assert summary["best_point"] == best and summary["dice"] == "external" and summary["headline_arm"] == "mi+labelcrop-8"
    assert summary["n_trials"] == 60 and summary["n_failed"] == 2


def test_parent_holds_metrics_and_artifacts_and_is_finished(proxy_data: dict[str, Any]) -> None:
    client = tracking.client(proxy_data["uri"])
    parent = client.get_run(proxy_data["parent"])
    assert parent.info.status == "FINISHED"
    metrics = parent.data.metrics
    for key in ("pearson_r", "pearson_r_low", "pearson_r_high", "spearman_rho", "spearman_rho_low", "spearman_rho_high", "kendall_tau",
                "kendall_tau_low", "kendall_tau_high", "speedup_vs_full", "speedup_vs_full_equal_pack", "spearman_rho.mi_labelcrop-8",
                "kendall_tau_high.random-4", "total_gpu_hours", "total_process_hours", "n_trials", "n_failed_trials"):
        assert key in metrics, key
    assert metrics["n_trials"] == 60 and metrics["n_failed_trials"] == 2
    gpu = sum(t["gpu_hours"] for t in proxy_data["trials"])
    assert metrics["total_gpu_hours"] == pytest.approx(gpu)
    assert metrics == pytest.approx(proxy_data["report"].metrics)
    artifacts = {entry.path for entry in client.list_artifacts(proxy_data["parent"])}
    assert {"report.md", "summary.json", "study.json", "cells.json", "fig4_data_usage.png", "fig2_mi_labelcrop-8.png", "fig2_random-8.png"} <= artifacts


def test_markdown_and_html_files(proxy_data: dict[str, Any]) -> None:
    report: StudyReport = proxy_data["report"]
    out: Path = proxy_data["out"]
    text = (out / "report.md").read_text()
    assert text == report.markdown
    assert text.startswith("# Proxy data study `pd-study`")
    for heading in ("## What was run", "## Table 1", "## Correlation with the full data (external Dice; Fig. 2)", "## Dice against data used", "## Cost", "## Plots"):
        assert heading in text
    assert "60 trials, 2 failed" in text
    assert "- `mi+labelcrop-8`: 4 grid points, mean external Dice over 3 repeats per arm; 95% expanded-percentile bootstrap interval over repeats" in text
    assert "[fig2_mi_labelcrop-8.png](fig2_mi_labelcrop-8.png)" in text
    page = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == len(report.plots) == 3
    assert all(base64.b64decode(image)[:8] == PNG_SIGNATURE for image in images)
    assert "<pre>" in page and "# Proxy data study `pd-study`" in page
    assert [p.name for p in out.iterdir() if "partial" in p.name or p.name.startswith(".")] == []


# ------------------------------------------------------------------------------------------ the proxy network study


def test_proxy_net_study(store: str, tmp_path: Path) -> None:
    studies = StudiesConfig(grid=GRID, proxy_net=ProxyNetStudyConfig(levels=(5, 4, 3), repeats=2))
    study = StudyConfig(name="pn-study", data=DataConfig(dataset="/data/spleen"), studies=studies)
    rng = np.random.default_rng(3)
    plan, trials = [], []
    noise = {"full": 0.0, "proxy-L5": 0.01, "proxy-L4": 0.05, "proxy-L3": 0.2}
    for arm, network in (("full", NetworkConfig.full()), *((f"proxy-L{n}", NetworkConfig.proxy(n)) for n in (5, 4, 3))):
        for repeat in range(2):
            plan.append(_cell("proxy-net-study", arm, repeat, network, N_CASES))
            for point in POINTS:  # on the CPU: no GPU-hours, each trial's share of the wall-clock hours
                dice = float(np.clip(TRUTH[point] + rng.normal(0, noise[arm]), 0, 1))
                trials.append(_trial(arm, repeat, point, dice, None, 0.0, 0.01 if arm == "full" else 0.004))
    parent = _log_study(store, study, "proxy-net-study", plan, trials)
    report = build_study_report(parent, tmp_path, tracking_uri=store)
    assert report.kind == "proxy-net-study" and report.verdict is None
    runs = _runs_by_arm(store, parent)
    for arm in ("proxy-L5", "proxy-L4", "proxy-L3"):
        for name, value in _by_hand(runs[arm], runs["full"], "final_val_dice").items():  # internal Dice
            assert report.metrics[f"{name}.{arm}"] == pytest.approx(value, abs=1e-9)
    assert report.metrics["pearson_r"] == report.metrics["pearson_r.proxy-L5"]  # headline: the deepest proxy
    assert report.metrics["speedup_vs_full"] == pytest.approx(0.04 / 0.016)
    assert report.metrics["total_gpu_hours"] == 0 and report.metrics["total_process_hours"] == pytest.approx(8 * 0.01 + 24 * 0.004)
    assert set(report.plots) == {"fig3_proxy_networks"} and Path(report.plots["fig3_proxy_networks"]).read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / "report.md").read_text() == report.markdown
    assert report.markdown.startswith("# Proxy network study `pn-study`")
    assert "Hours are **device wall-hours (CPU)**" in report.markdown and "selection, per search" not in report.markdown
    assert "## Correlation with the full network (validation Dice; Fig. 3)" in report.markdown
    assert tracking.client(store).get_run(parent).info.status == "RUNNING"  # building logs nothing, closes nothing

    # the record: every number above, and the figure drawn from it
    from proxyhpo.analysis import proxy_net_report

    record = proxy_net_report.collect(parent, tracking_uri=store)
    assert (record.metric, record.headline, record.proxies) == ("internal", "proxy-L5", ("proxy-L5", "proxy-L4", "proxy-L3"))
    assert record.costs["full"].hours == pytest.approx(0.04) and record.costs["proxy-L3"].hours == pytest.approx(0.016)
    assert record.costs["proxy-L3"].selection_hours == 0 and record.run.hours.unit == "device wall-hours (CPU)"
    assert [row.arm for row in record.table] == ["proxy-L5", "proxy-L4", "proxy-L3", "full"]
    figure = proxy_net_report.render(record).figures["fig3_proxy_networks"]
    assert [axis.get_ylabel() for axis in figure.axes] == [f"proxy-L{n}: validation Dice, mean over 2 repeats" for n in (5, 4, 3)]
    # one dot per grid point (the table's unit), titled with the table's Pearson r
    for axis, arm in zip(figure.axes, record.proxies, strict=True):
        (dots,) = [line for line in axis.get_lines() if line.get_marker() == "o"]
        assert len(dots.get_xdata()) == len(POINTS) and axis.get_title().startswith(f"{arm}: r = {record.correlations[arm]['pearson'].value:.2f} [")


# ------------------------------------------------------------------------------------------ the trust check

LRS = (0.002, 0.001, 0.0006, 0.0004, 0.0002, 0.0001)  # six: the fewest on which spearman >= 0.5 at 95% can pass


def _trust_study(name: str, dice: str) -> tuple[StudyConfig, list[str]]:
    trust = TrustConfig(grid={"lr": LRS}, repeats=2, metric="spearman", dice=dice, threshold=0.5)
    study = StudyConfig(name=name, data=DataConfig(dataset="/data/spleen"), studies=StudiesConfig(grid=GRID, trust=trust))
    return study, [p.point_id for p in grid_points({"lr": LRS})]


def _log_trust(store: str, study: StudyConfig, points: list[str], proxy_dice: list[float]) -> str:
    plan, trials = [], []
    for repeat in range(2):
        plan.append(_cell("trust", "full", repeat, NetworkConfig.full(), N_CASES))
        plan.append(_cell("trust", "proxy", repeat, NetworkConfig.proxy(3), 8, 36.0, "cpu"))
        for i, point in enumerate(points):
            trials.append(_trial("full", repeat, point, (0.8, 0.7, 0.6, 0.5, 0.4, 0.3)[i] + 0.01 * repeat, None, 0.0, 0.01))
            trials.append(_trial("proxy", repeat, point, proxy_dice[i] + 0.01 * repeat, None, 0.0, 0.001))
    return _log_study(store, study, "trust", plan, trials)


def test_trust_passes(store: str, tmp_path: Path) -> None:
    study, points = _trust_study("trust-pass", "internal")
    parent = _log_trust(store, study, points, [0.6, 0.55, 0.5, 0.3, 0.25, 0.2])
    report = write_study_report(parent, markdown=tmp_path / "r.md", html=tmp_path / "r.html", tracking_uri=store)
    verdict = report.verdict
    assert verdict is not None and verdict.passed is True
    assert (verdict.metric, verdict.dice, verdict.threshold) == ("spearman", "internal", 0.5)
    assert verdict.value == pytest.approx(1.0) and verdict.low is not None and verdict.high is not None
    assert verdict.lower == pytest.approx(0.746, abs=1e-3) and verdict.confidence == 0.95
    assert verdict.message == "proxy trusted: spearman 1.00 over 6 grid points, one-sided 95% interval [0.75, 1] >= 0.5 (validation Dice of each setting)"
    assert "\n" not in verdict.message
    metrics = tracking.client(store).get_run(parent).data.metrics
    assert metrics["trust_passed"] == 1 and metrics["trust_value"] == pytest.approx(1.0) and metrics["spearman_rho"] == pytest.approx(1.0)
    assert metrics["trust_lower_bound"] == pytest.approx(verdict.lower) and metrics["trust_confidence"] == 0.95
    assert metrics["spearman_rho.proxy"] == pytest.approx(1.0)
    # selection: 36 s per search = 0.01 h on top of 6 x 0.001 h of trials
    assert metrics["speedup_vs_full"] == pytest.approx(0.06 / (0.006 + 0.01))
    assert f"**Verdict: {verdict.message}.**" in report.markdown
    assert "trust_proxy_vs_full" in report.plots


def test_trust_fails_and_falls_back_to_internal_dice(store: str, tmp_path: Path) -> None:
    study, points = _trust_study("trust-fail", "external")  # asked for external Dice, but none is logged
    parent = _log_trust(store, study, points, [0.2, 0.25, 0.3, 0.5, 0.55, 0.6])  # ranks the grid the other way round
    report = write_study_report(parent, markdown=tmp_path / "r.md", html=tmp_path / "r.html", tracking_uri=store)
    verdict = report.verdict
    assert verdict is not None and verdict.passed is False and verdict.dice == "internal"
    assert verdict.over.startswith("validation Dice of each setting (external was asked, but the study logged no external Dice); 6 grid points")
    assert verdict.message.startswith("proxy not trusted: spearman -1.00 over 6 grid points, one-sided 95% interval [-")
    assert verdict.message.endswith("< 0.5 (validation Dice of each setting)")
    run = tracking.client(store).get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["trust_passed"] == 0 and run.data.metrics["trust_value"] == pytest.approx(-1.0)


def test_trust_undecided_when_the_proxy_is_flat(store: str, tmp_path: Path) -> None:
    study, points = _trust_study("trust-flat", "internal")
    parent = _log_trust(store, study, points, [0.5] * 6)
    report = build_study_report(parent, tmp_path, tracking_uri=store)
    assert report.verdict is not None and report.verdict.passed is None and report.verdict.value is None
    assert report.verdict.message.startswith("proxy trust undecided: spearman over 6 grid points (validation Dice of each setting) is undefined")
    assert "trust_passed" not in report.metrics and "trust_value" not in report.metrics and "spearman_rho" not in report.metrics


# ------------------------------------------------------------------------------------------ proxyhpo report


def test_render_report_for_an_experiment(proxy_data: dict[str, Any], store: str) -> None:
    text = render_report("pd-study", tracking_uri=store)
    assert latest_study_run("pd-study", tracking_uri=store) == proxy_data["parent"]
    assert text == proxy_data["report"].markdown  # built again from MLflow alone, the same
    assert render_report(proxy_data["parent"], tracking_uri=store) == text


def test_render_report_of_an_hpo_run_is_its_logged_report(store: str) -> None:
    study = StudyConfig(name="hpo-render", data=DataConfig(dataset="/data/spleen"))
    parent = tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), tracking_uri=store)
    with pytest.raises(ProxyHPOError, match=r"has no report.md yet"):
        render_report("hpo-render", tracking_uri=store)
    tracking.client(store).log_text(parent, "# Study `hpo-render`\n", "report.md")
    assert render_report("hpo-render", tracking_uri=store) == "# Study `hpo-render`\n"
    with pytest.raises(ProxyHPOError, match=r"is a hpo run, not one of the comparison studies this report covers"):
        build_study_report(parent, "unused", tracking_uri=store)


def test_missing_experiment_run_or_study(store: str, tmp_path, monkeypatch) -> None:
    tracking.ensure_experiment("empty-exp", tracking_uri=store)
    with pytest.raises(ProxyHPOError, match=r"^'no-such-thing' is no run id, and no experiment 'no-such-thing' in .* \(it holds: .*empty-exp.*\)$"):
        render_report("no-such-thing", tracking_uri=store)
    with pytest.raises(ProxyHPOError, match=r"; did you mean 'empty-exp'\?$"):  # a near miss (issue 22)
        render_report("empty-epx", tracking_uri=store)
    monkeypatch.setenv("PROXYHPO_HOME", str(tmp_path / "elsewhere"))  # no study ran there: a report creates no store
    with pytest.raises(InputError, match=r"mlflow.db: does not exist: no study has run with the home folder \$PROXYHPO_HOME"):
        render_report("empty-exp")
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(ProxyHPOError, match=r"^no MLflow experiment 'nowhere' in "):
        latest_study_run("nowhere", tracking_uri=store)
    with pytest.raises(ProxyHPOError, match=r"holds no study run"):
        latest_study_run("empty-exp", tracking_uri=store)


def test_a_retried_cell_keeps_its_finished_run_and_running_trials_are_not_failures(store: str, tmp_path: Path) -> None:
    study, points = _trust_study("trust-retry", "internal")
    plan = [_cell("trust", arm, 0, NetworkConfig.full(), N_CASES) for arm in ("full", "proxy")]
    trials = [_trial("full", 0, p, 0.8 - 0.1 * i, None, 0.0, 0.01) for i, p in enumerate(points)]
    trials += [_trial("proxy", 0, points[0], None, None, 0.0, 0.001, failed=True)]  # the first attempt failed ...
    trials += [_trial("proxy", 0, p, 0.7 - 0.1 * i, None, 0.0, 0.001) for i, p in enumerate(points[:5])]  # ... its retry finished
    parent = _log_study(store, study, "trust", plan, trials)
    client = tracking.client(store)
    tags = {names.PARENT_TAG: parent, names.ROLE_TAG: names.ROLE_TRIAL, names.ARM_TAG: "proxy", names.REPEAT_TAG: "0", names.POINT_TAG: points[5]}
    client.create_run(client.get_run(parent).info.experiment_id, tags=tags)  # still running
    cells = collect_cells(parent, tracking_uri=store)
    assert {c.point: c.internal_dice for c in cells["proxy"]} == {p: pytest.approx(0.7 - 0.1 * i) for i, p in enumerate(points[:5])} | {points[5]: None}
    report = build_study_report(parent, tmp_path, tracking_uri=store)
    assert "12 trials, 0 failed, 1 still running" in report.markdown
    assert report.metrics["n_trials"] == 12 and report.metrics["n_failed_trials"] == 0
    # a perfect ranking of the 5 finished points has a 95% lower bound of 0.41: not enough for 0.5
    assert report.verdict is not None and report.verdict.passed is False and "over 5 grid points" in report.verdict.message


# ------------------------------------------------------------------------------------------ the records and what render draws


def test_the_proxy_data_record_holds_the_numbers(proxy_data: dict[str, Any]) -> None:
    from proxyhpo.analysis import proxy_data_report

    record = proxy_data_report.collect(proxy_data["parent"], tracking_uri=proxy_data["uri"])
    assert isinstance(record, proxy_data_report.ProxyDataRecord) and record.model_config.get("frozen")
    assert (record.metric, record.headline, record.point) == ("external", "mi+labelcrop-8", POINTS[0])
    counts = record.run.counts
    assert (counts.n_trials, counts.n_finished, counts.n_failed, counts.n_stopped, counts.n_running) == (60, 58, 2, 0, 0)
    runs = _runs_by_arm(proxy_data["uri"], proxy_data["parent"])
    for arm in record.arms:
        hours, packed = _cost_by_hand(runs[arm], proxy_data["plan"], arm)
        cost = record.costs[arm]
        assert (cost.searches, cost.n_trials, cost.hours, cost.equal_pack_hours) == (PD_REPEATS, 12, pytest.approx(hours), pytest.approx(packed)), arm
    assert record.costs["mi+labelcrop-8"].selection_device == "cuda" and record.costs["random-8"].selection_device is None
    assert record.costs["full"].speedup == pytest.approx(1.0)
    assert [(u.method, u.budget, u.fraction) for u in record.usage] == [(m, b, b / N_CASES) for m in PD_METHODS for b in PD_BUDGETS]
    assert [row.arm for row in record.table] == ["MI+Labelcrop", "Random baseline", "Full Dataset"]
    assert record.metrics == pytest.approx(proxy_data["report"].metrics)

    rendered = proxy_data_report.render(record)
    assert rendered.markdown == proxy_data["report"].markdown
    assert list(rendered.figures) == ["fig4_data_usage", "fig2_mi_labelcrop-8", "fig2_random-8"]
    (fig2,) = rendered.figures["fig2_mi_labelcrop-8"].axes
    assert fig2.get_xlabel() == "full: external Dice, mean over 3 repeats" and fig2.get_ylabel() == "mi+labelcrop-8: external Dice, mean over 3 repeats"
    assert fig2.get_title().startswith("MI+Labelcrop, B = 8 (50% of the data) vs all data\nper grid point")
    (fig4,) = rendered.figures["fig4_data_usage"].axes
    lines = {container.get_label(): container.lines[0] for container in fig4.containers}
    assert sorted(lines) == ["MI+Labelcrop", "Random baseline"]
    mi = [u for u in record.usage if u.method == "mi+labelcrop"]
    assert list(lines["MI+Labelcrop"].get_xdata()) == pytest.approx([100 * u.fraction for u in mi])
    assert list(lines["MI+Labelcrop"].get_ydata()) == pytest.approx([u.mean for u in mi])
    assert f"at the reference's best grid point {POINTS[0]}" in fig4.get_title()


def test_the_trust_record_and_its_scatter(store: str) -> None:
    from proxyhpo.analysis import trust_report

    study, points = _trust_study("trust-record", "internal")
    parent = _log_trust(store, study, points, [0.6, 0.55, 0.5, 0.3, 0.25, 0.2])
    record = trust_report.collect(parent, tracking_uri=store)
    assert isinstance(record, trust_report.TrustRecord)
    assert record.verdict.passed is True and record.metrics["trust_threshold"] == 0.5 and record.point == points[0]
    assert record.costs["proxy"].selection_hours == pytest.approx(0.01) and record.costs["proxy"].hours == pytest.approx(0.016)
    (axis,) = trust_report.render(record).figures["trust_proxy_vs_full"].axes
    assert axis.get_title().startswith("trust check: proxy trusted\n(spearman's 95% lower bound >= 0.5 needed)")
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("full: validation Dice, mean over 2 repeats", "proxy: validation Dice, mean over 2 repeats")


def test_a_stopped_trial_of_a_grid_study_is_counted_stopped_not_failed(store: str, tmp_path: Path) -> None:
    study, points = _trust_study("trust-stopped", "internal")
    plan = [_cell("trust", arm, 0, NetworkConfig.full(), N_CASES) for arm in ("full", "proxy")]
    trials = [_trial("full", 0, p, 0.8 - 0.1 * i, None, 0.0, 0.01) for i, p in enumerate(points)]
    trials += [_trial("proxy", 0, p, 0.7 - 0.1 * i, None, 0.0, 0.001) for i, p in enumerate(points[1:])]
    # stopped early at the reference's best point: its early Dice is no final one
    trials += [_trial("proxy", 0, points[0], 0.9, None, 0.0, 0.001, stopped=True)]
    parent = _log_study(store, study, "trust", plan, trials)
    cells = collect_cells(parent, tracking_uri=store)
    assert next(c for c in cells["proxy"] if c.point == points[0]).internal_dice is None
    report = build_study_report(parent, tmp_path, tracking_uri=store)
    assert "12 trials, 0 failed, 1 stopped early (failed, stopped and unfinished trials are left out" in report.markdown
    assert "| trials | failed | stopped early |" in report.markdown and "| 6 | 0 | 1 |" in report.markdown
    assert report.metrics["n_failed_trials"] == 0 and report.metrics["n_stopped_trials"] == 1
    # the Dice table at the reference's best point counts the stopped trial as stopped, not failed
    assert "| validation Dice | external Dice | trials | failed | stopped early |" in report.markdown
    assert re.search(r"^\| proxy \| .* \| 1 \| 0 \| 1 \|$", report.markdown, re.MULTILINE)
    assert report.verdict is not None and "over 5 grid points" in report.verdict.message
