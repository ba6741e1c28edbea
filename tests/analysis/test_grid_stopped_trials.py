"""The proxy data and proxy network reports over real trial runs with early-stopped, failed and finished trials.

Every trial is an MLflow child run opened and closed by :func:`proxyhpo.tracking.trial_runs` as the study's
train step logs it (a stopped trial: KILLED, tagged ``STOPPED`` and its epoch), in a real SQLite store.
The reports must count stopped trials apart from failed ones everywhere they count (header, arms table,
the table at the best point, the figures' titles, the parent's metrics), leave both out of every Dice, and
give one correlation per comparison: the figure quotes the table's coefficient over the same unit (grid
points, each arm's Dice averaged over its repeats).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from proxyhpo import tracking
from proxyhpo.analysis import build_study_report, proxy_data_report, proxy_net_report
from proxyhpo.analysis._grid import PLAN_ARTIFACT
from proxyhpo.config import (
    DataConfig,
    HyperParameters,
    NetworkConfig,
    ProxyDataStudyConfig,
    ProxyNetStudyConfig,
    StudiesConfig,
    StudyCell,
    StudyConfig,
    TrialResult,
    TrialSpec,
    TrialState,
    grid_points,
)
from proxyhpo.tracking import names

GRID = {"optimizer": ("adam", "rmsprop"), "lr": (0.001, 0.0001)}
POINTS = [p.point_id for p in grid_points(GRID)]
#: the full setting's Dice per grid point: POINTS[0] is the best
TRUTH = dict(zip(POINTS, (0.82, 0.60, 0.71, 0.48), strict=True))
REPEATS = 3
N_CASES = 16
EARLY_DICE = 0.99  # what a stopped trial logged at its stop: no final Dice, so it must count in no mean


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _log_grid_study(
    uri: str,
    study: StudyConfig,
    kind: str,
    arms: dict[str, tuple[NetworkConfig, int]],
    dice: Any,
    ends: dict[tuple[str, int, str], str],
    *,
    classes: Any = None,
    repeats: int = REPEATS,
) -> str:
    """A grid study's parent run (study.json, cells.json) and its trials, logged through ``tracking.trial_runs``.

    Args:
        arms: arm -> (its network, its cases).
        dice: (arm, repeat, point) -> (validation Dice, external Dice or None).
        ends: (arm, repeat, point) -> ``stopped`` or ``failed``; every other trial completes.
        classes: a multi-class task: (arm, repeat, point) -> (validation Dice per class, external Dice per class or
            None), logged by the trial as the pipeline's train step does (a stopped trial logs ``EARLY_DICE`` per class).
        repeats: repeats per arm.
    """
    parent = tracking.start_parent_run(study.name, kind, config=study.model_dump(mode="json"), tracking_uri=uri)
    plan = []
    ids = [f"case{i:02d}" for i in range(N_CASES)]
    for arm, (network, cases) in arms.items():
        for repeat in range(repeats):
            cell = StudyCell(
                study=kind, arm=arm, repeat=repeat, network=network, train_ids=tuple(ids[: cases // 2]), val_ids=tuple(ids[cases // 2 : cases]),
                data_fraction=cases / N_CASES,
            )
            plan.append(cell.model_dump(mode="json"))
            specs = [
                TrialSpec(
                    trial_id=f"{arm}-r{repeat}-p{index:02d}",
                    hyperparameters=HyperParameters(**point.hyperparameters),
                    network=network,
                    data_label=arm,
                    tags={names.STUDY_KEY: kind, names.ARM_KEY: arm, names.REPEAT_KEY: str(repeat), names.POINT_KEY: point.point_id},
                )
                for index, point in enumerate(grid_points(GRID))
            ]
            with tracking.trial_runs(
                study.name, specs, parent_run_id=parent, data=arm, resolved_config={}, tracking_uri=uri, system_metrics=False, hyperparameter_names=tuple(GRID)
            ) as runs:
                for spec in specs:
                    point = spec.tags[names.POINT_KEY]
                    validation, external = dice(arm, repeat, point)
                    end = ends.get((arm, repeat, point))
                    common: dict[str, Any] = {"gpu_hours": 0.0, "process_hours": 0.002, "steps_run": 40}
                    per_class, per_class_external = classes(arm, repeat, point) if classes else ({}, None)
                    if end == "failed":
                        result = TrialResult.of(spec, TrialState.FAILED, fail_reason="loss became NaN at step 3", **common)
                    elif end == "stopped":  # stopped at epoch 2 of 4 with an early Dice
                        result = TrialResult.of(
                            spec, TrialState.STOPPED, stopped_at_epoch=2, epochs_run=2, val_epochs=[1, 2], val_dice=[0.5, EARLY_DICE],
                            final_val_dice=EARLY_DICE, best_val_dice=EARLY_DICE, test_dice=EARLY_DICE if external is not None else None,
                            val_class_dice=[{name: 0.5 for name in per_class}, {name: EARLY_DICE for name in per_class}] if per_class else [],
                            test_class_dice={name: EARLY_DICE for name in per_class_external or {}}, **common,
                        )
                    else:
                        result = TrialResult.of(
                            spec, TrialState.COMPLETE, epochs_run=4, val_epochs=[2, 4], val_dice=[validation / 2, validation],
                            final_val_dice=validation, best_val_dice=validation, test_dice=external,
                            val_class_dice=[{name: d / 2 for name, d in per_class.items()}, per_class] if per_class else [],
                            test_class_dice=per_class_external or {}, **common,
                        )
                    runs[spec.trial_id].finish(result)
    tracking.client(uri).log_dict(parent, plan, PLAN_ARTIFACT)
    return parent


def _means(cells: Any, metric: str) -> dict[str, float]:
    """Each grid point's mean Dice over the cells that have one, by hand."""
    found: dict[str, list[float]] = {}
    for cell in cells:
        value = cell.dice(metric)
        if value is not None:
            found.setdefault(cell.point, []).append(value)
    return {point: float(np.mean(values)) for point, values in found.items()}


# ------------------------------------------------------------------------------------------ the proxy network study

PN_STOPPED = {("proxy-L5", 0, POINTS[0]), ("full", 1, POINTS[2]), ("proxy-L3", 2, POINTS[0])}
PN_FAILED = {("proxy-L3", 1, POINTS[0])}


@pytest.fixture(scope="module")
def proxy_net(store: str) -> proxy_net_report.ProxyNetRecord:
    studies = StudiesConfig(grid=GRID, proxy_net=ProxyNetStudyConfig(levels=(5, 3), repeats=REPEATS))
    study = StudyConfig(name="pn-stopped", data=DataConfig(dataset="/data/spleen"), studies=studies)
    rng = np.random.default_rng(11)
    noise = {"full": 0.01, "proxy-L5": 0.03, "proxy-L3": 0.08}
    arms = {"full": (NetworkConfig.full(), N_CASES), "proxy-L5": (NetworkConfig.proxy(5), N_CASES), "proxy-L3": (NetworkConfig.proxy(3), N_CASES)}

    def dice(arm: str, repeat: int, point: str) -> tuple[float, None]:
        return float(np.clip(TRUTH[point] - (0.0 if arm == "full" else 0.1) + rng.normal(0, noise[arm]), 0, 1)), None

    ends = {key: "stopped" for key in PN_STOPPED} | {key: "failed" for key in PN_FAILED}
    parent = _log_grid_study(store, study, "proxy-net-study", arms, dice, ends)
    return proxy_net_report.collect(parent, tracking_uri=store)


def test_proxy_net_counts_stopped_trials_apart_from_failed_ones(proxy_net: proxy_net_report.ProxyNetRecord, store: str, tmp_path: Path) -> None:
    run = proxy_net.run
    assert (run.counts.n_trials, run.counts.n_finished, run.counts.n_stopped, run.counts.n_failed, run.counts.n_running) == (36, 32, 3, 1, 0)
    assert {arm: (c.n_failed, c.n_stopped) for arm, c in run.by_arm.items()} == {"full": (0, 1), "proxy-L3": (1, 1), "proxy-L5": (0, 1)}
    # the stopped trials' early Dice is in no cell
    stopped = [cell for arm, cells in run.cells.items() for cell in cells if (arm, cell.repeat, cell.point) in PN_STOPPED]
    assert len(stopped) == 3 and all(cell.internal_dice is None for cell in stopped)

    # the table at the full network's best point: failed and stopped counted apart, the means over the finished repeats
    assert proxy_net.point == POINTS[0]
    rows = {row.arm: row for row in proxy_net.table}
    assert (rows["proxy-L5"].n, rows["proxy-L5"].n_failed, rows["proxy-L5"].n_stopped) == (3, 0, 1)  # type: ignore[attr-defined]
    assert (rows["proxy-L3"].n, rows["proxy-L3"].n_failed, rows["proxy-L3"].n_stopped) == (3, 1, 1)  # type: ignore[attr-defined]
    assert (rows["full"].n_failed, rows["full"].n_stopped) == (0, 0)  # type: ignore[attr-defined]
    assert rows["proxy-L5"].internal_mean == pytest.approx(_means(run.cells["proxy-L5"], "internal")[POINTS[0]])
    assert rows["proxy-L5"].internal_mean < EARLY_DICE - 0.1

    rendered = proxy_net_report.render(proxy_net)
    markdown = rendered.markdown
    assert "36 trials, 1 failed, 3 stopped early (failed, stopped and unfinished trials are left out" in markdown
    assert "| trials | failed | stopped early |" in markdown
    assert "| `proxy-L3` | 3 levels, 4 channels, 1 residual unit | proxy-L3 | 16 (8 train / 8 val) | 100% | 3 (3) | 12 | 1 | 1 |" in markdown
    assert "| network | data used | validation Dice | external Dice | trials | failed | stopped early |" in markdown
    assert any(line.startswith("| proxy-L3 | all (100%) |") and line.endswith("| 3 | 1 | 1 |") for line in markdown.splitlines())
    assert "Failed and early-stopped trials count: they used the device." in markdown
    assert (rendered.metrics[names.N_FAILED_TRIALS], rendered.metrics[names.N_STOPPED_TRIALS]) == (1.0, 3.0)
    assert (rendered.summary["n_failed"], rendered.summary["n_stopped"]) == (1, 3)

    figure = rendered.figures["fig3_proxy_networks"]
    titles = {axis.get_ylabel().split(":")[0]: axis.get_title() for axis in figure.axes}
    assert titles["proxy-L5"].endswith("\nleft out: 1 stopped early")
    assert titles["proxy-L3"].endswith("\nleft out: 1 failed, 1 stopped early")
    assert figure.get_suptitle().endswith("; left out: full 1 stopped early")

    # the report built from the same runs writes the same
    report = build_study_report(run.parent_run_id, tmp_path, tracking_uri=store)
    assert report.markdown == markdown


def test_proxy_net_figure_and_table_give_one_correlation_over_grid_points(proxy_net: proxy_net_report.ProxyNetRecord) -> None:
    run = proxy_net.run
    rendered = proxy_net_report.render(proxy_net)
    figure = rendered.figures["fig3_proxy_networks"]
    for axis, arm in zip(figure.axes, proxy_net.proxies, strict=True):
        (dots,) = [line for line in axis.get_lines() if line.get_marker() == "o"]
        x, y = np.asarray(dots.get_xdata(), float), np.asarray(dots.get_ydata(), float)
        proxy_means, full_means = _means(run.cells[arm], "internal"), _means(run.cells["full"], "internal")
        points = sorted(proxy_means.keys() & full_means.keys())
        # one dot per grid point, at the means over repeats (stopped and failed cells left out)
        assert list(x) == pytest.approx([full_means[p] for p in points]) and list(y) == pytest.approx([proxy_means[p] for p in points])
        pearson = proxy_net.correlations[arm]["pearson"]
        assert pearson.n_points == len(points) == len(x)
        assert pearson.value == pytest.approx(stats.pearsonr(x, y)[0])  # the table's r is the r over the figure's dots
        shown = f"{pearson.value:.2f} [{pearson.low:.2f}, {pearson.high:.2f}]"
        assert axis.get_title().startswith(f"{arm}: r = {shown} over {len(points)} grid points")
        assert any(line.startswith(f"| `{arm}` |") and f"| {shown} |" in line for line in rendered.markdown.splitlines())
        assert "mean validation Dice over 3 repeats per arm" in pearson.over
    markdown = rendered.markdown
    assert "Unit: the grid point." in markdown and "one dot per grid point (mean over repeats)" in markdown
    # the Dice is named by its set: each repeat's validation cases, never "internal"
    assert "## Correlation with the full network (validation Dice; Fig. 3)" in markdown
    assert "internal Dice" not in markdown and all("internal" not in axis.get_xlabel() + axis.get_ylabel() for axis in figure.axes)


# ------------------------------------------------------------------------------------------ the proxy data study

PD_METHODS, PD_BUDGETS = ("mi+labelcrop", "random"), (4, 8)
PD_STOPPED = {("mi+labelcrop-8", 1, POINTS[0]), ("random-4", 0, POINTS[3]), ("full", 2, POINTS[1])}
PD_FAILED = {("random-8", 0, POINTS[0])}


@pytest.fixture(scope="module")
def proxy_data(store: str) -> proxy_data_report.ProxyDataRecord:
    studies = StudiesConfig(grid=GRID, proxy_data=ProxyDataStudyConfig(methods=PD_METHODS, budgets=PD_BUDGETS, repeats=REPEATS))
    study = StudyConfig(name="pd-stopped", data=DataConfig(dataset="/data/spleen"), studies=studies)
    rng = np.random.default_rng(5)
    arms = {"full": (NetworkConfig.full(), N_CASES)} | {f"{m}-{b}": (NetworkConfig.full(), b) for m in PD_METHODS for b in PD_BUDGETS}

    def dice(arm: str, repeat: int, point: str) -> tuple[float, float]:
        shift = 0.0 if arm == "full" else 0.15
        external = float(np.clip(TRUTH[point] - shift + rng.normal(0, 0.02 if arm == "full" else 0.05), 0, 1))
        return 0.6 + 0.1 * rng.random(), external

    ends = {key: "stopped" for key in PD_STOPPED} | {key: "failed" for key in PD_FAILED}
    parent = _log_grid_study(store, study, "proxy-data-study", arms, dice, ends)
    return proxy_data_report.collect(parent, tracking_uri=store)


def test_proxy_data_counts_stopped_trials_apart_from_failed_ones(proxy_data: proxy_data_report.ProxyDataRecord) -> None:
    run = proxy_data.run
    assert (run.counts.n_trials, run.counts.n_stopped, run.counts.n_failed) == (60, 3, 1)
    assert (run.by_arm["mi+labelcrop-8"].n_stopped, run.by_arm["mi+labelcrop-8"].n_failed) == (1, 0)
    assert (run.by_arm["random-8"].n_stopped, run.by_arm["random-8"].n_failed) == (0, 1)
    assert proxy_data.metric == "external" and proxy_data.point == POINTS[0]
    rows = {row.arm: row for row in proxy_data.table}
    assert (rows["MI+Labelcrop"].n, rows["MI+Labelcrop"].n_failed, rows["MI+Labelcrop"].n_stopped) == (3, 0, 1)  # type: ignore[attr-defined]
    assert (rows["Random baseline"].n, rows["Random baseline"].n_failed, rows["Random baseline"].n_stopped) == (3, 1, 0)  # type: ignore[attr-defined]
    assert rows["MI+Labelcrop"].external_mean == pytest.approx(_means(run.cells["mi+labelcrop-8"], "external")[POINTS[0]])

    rendered = proxy_data_report.render(proxy_data)
    markdown = rendered.markdown
    assert "60 trials, 1 failed, 3 stopped early" in markdown
    assert any(line.startswith("| MI+Labelcrop | 8 cases (50%) |") and line.endswith("| 3 | 0 | 1 |") for line in markdown.splitlines())
    assert any(line.startswith("| Random baseline | 8 cases (50%) |") and line.endswith("| 3 | 1 | 0 |") for line in markdown.splitlines())
    assert (rendered.metrics[names.N_FAILED_TRIALS], rendered.metrics[names.N_STOPPED_TRIALS]) == (1.0, 3.0)
    (fig2,) = rendered.figures["fig2_mi_labelcrop-8"].axes
    assert fig2.get_title().endswith("\nleft out: mi+labelcrop-8 1 stopped early; full 1 stopped early")
    (random2,) = rendered.figures["fig2_random-8"].axes
    assert random2.get_title().endswith("\nleft out: random-8 1 failed; full 1 stopped early")


def test_proxy_data_figure_and_table_give_one_correlation_over_grid_points(proxy_data: proxy_data_report.ProxyDataRecord) -> None:
    rendered = proxy_data_report.render(proxy_data)
    for method in PD_METHODS:
        arm = f"{method}-8"
        (axis,) = rendered.figures[f"fig2_{arm.replace('+', '_')}"].axes
        (dots,) = [line for line in axis.get_lines() if line.get_marker() == "o"]
        x, y = np.asarray(dots.get_xdata(), float), np.asarray(dots.get_ydata(), float)
        pearson = proxy_data.correlations[arm]["pearson"]
        assert pearson.n_points == len(x) and pearson.value == pytest.approx(stats.pearsonr(x, y)[0])
        legend = [text.get_text() for text in axis.get_legend().get_texts()]
        assert f"r = {pearson.value:.2f} [{pearson.low:.2f}, {pearson.high:.2f}]" in legend
        assert "per grid point (mean over repeats)" in axis.get_title()
    assert "Unit: the grid point." in rendered.markdown and "## Correlation with the full data (external Dice; Fig. 2)" in rendered.markdown


# ------------------------------------------------------------------------------------------ a multi-class task

CLASSES = ("edema", "enhancing tumour")  # the second's metric name is enhancing_tumour
MC_STOPPED, MC_FAILED = {("proxy-L3", 1, POINTS[0])}, {("proxy-L3", 2, POINTS[0])}


def _class_dice(arm: str, repeat: int, point: str) -> dict[str, float]:
    """Each class's Dice of a trial: the second class 0.3 below the first, every arm and repeat its own."""
    edema = TRUTH[point] - (0.0 if arm == "full" else 0.1) - 0.02 * repeat
    return {"edema": edema, "enhancing tumour": edema - 0.3}


def _by_hand(arm: str, point: str, repeats: range, slug: str, shift: float = 0.0) -> tuple[float, float | None]:
    """A class's mean and sample std over the repeats that finished, by hand."""
    name = {"edema": "edema", "enhancing_tumour": "enhancing tumour"}[slug]
    values = [_class_dice(arm, r, point)[name] + shift for r in repeats]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def test_a_multi_class_proxy_net_study_reports_each_networks_dice_per_class(store: str, tmp_path: Path) -> None:
    """The table at the full network's best point gives each network's validation Dice per class (the classes' last
    validation, as the trials logged them), over the repeats that finished: a stopped or failed trial's count nowhere."""
    studies = StudiesConfig(grid=GRID, proxy_net=ProxyNetStudyConfig(levels=(3,), repeats=REPEATS))
    study = StudyConfig(name="pn-classes", data=DataConfig(dataset="/data/brain"), studies=studies)
    arms = {"full": (NetworkConfig.full(), N_CASES), "proxy-L3": (NetworkConfig.proxy(3), N_CASES)}

    def dice(arm: str, repeat: int, point: str) -> tuple[float, None]:
        return float(np.mean(list(_class_dice(arm, repeat, point).values()))), None

    ends = {key: "stopped" for key in MC_STOPPED} | {key: "failed" for key in MC_FAILED}
    parent = _log_grid_study(store, study, "proxy-net-study", arms, dice, ends, classes=lambda *key: (_class_dice(*key), None))
    record = proxy_net_report.collect(parent, tracking_uri=store)

    # the numbers record: one ClassRow per class, means and stds by hand over the finished repeats
    assert record.point == POINTS[0]
    rows = {row.arm: row for row in record.table}
    assert [c.name for c in rows["full"].classes] == ["edema", "enhancing_tumour"]  # type: ignore[attr-defined]
    for arm, finished in (("full", range(3)), ("proxy-L3", range(1))):
        for c in rows[arm].classes:  # type: ignore[attr-defined]
            mean, std = _by_hand(arm, POINTS[0], finished, c.name)
            assert c.internal_mean == pytest.approx(mean) and (c.internal_std == pytest.approx(std) if std is not None else c.internal_std is None)
            assert c.external_mean is None and c.external_std is None  # no external per-class Dice was logged
    assert rows["proxy-L3"].classes[0].internal_mean < EARLY_DICE - 0.1  # type: ignore[attr-defined]
    # the record's cells carry the same per-class Dice, empty for the trials without a Dice
    stopped = [found for cell, found in zip(record.run.cells["proxy-L3"], record.run.class_dice["proxy-L3"]) if (cell.repeat, cell.point) == (1, POINTS[0])]
    assert stopped == [{}]

    rendered = proxy_net_report.render(record)
    lines = rendered.markdown.splitlines()
    full_edema = _by_hand("full", POINTS[0], range(3), "edema")
    assert f"| &nbsp;&nbsp;class edema | | {full_edema[0]:.4f} ± {full_edema[1]:.4f} | – | | | |" in lines
    l3 = _by_hand("proxy-L3", POINTS[0], range(1), "enhancing_tumour")[0]
    assert f"| &nbsp;&nbsp;class enhancing_tumour | | {l3:.4f} | – | | | |" in lines
    # each class's row sits under its network's row
    at = lines.index(next(line for line in lines if line.startswith("| proxy-L3 | all (100%) |")))
    assert lines[at + 1].startswith("| &nbsp;&nbsp;class edema |") and lines[at + 2].startswith("| &nbsp;&nbsp;class enhancing_tumour |")
    assert "Rows `class <name>`: a multi-class task's Dice of each class" in rendered.markdown
    assert rendered.summary["table"][0]["classes"][0]["name"] == "edema"


def test_a_multi_class_proxy_data_study_reports_each_arms_external_dice_per_class(store: str) -> None:
    """Table 1 of a multi-class proxy data study gives every arm's validation and external Dice per class."""
    studies = StudiesConfig(grid=GRID, proxy_data=ProxyDataStudyConfig(methods=("mi+labelcrop",), budgets=(4,), repeats=2))
    study = StudyConfig(name="pd-classes", data=DataConfig(dataset="/data/brain"), studies=studies)
    arms = {"full": (NetworkConfig.full(), N_CASES), "mi+labelcrop-4": (NetworkConfig.full(), 4)}
    external_shift = -0.05

    def dice(arm: str, repeat: int, point: str) -> tuple[float, float]:
        mean = float(np.mean(list(_class_dice(arm, repeat, point).values())))
        return mean, mean + external_shift

    def classes(arm: str, repeat: int, point: str) -> tuple[dict[str, float], dict[str, float]]:
        per_class = _class_dice(arm, repeat, point)
        return per_class, {name: value + external_shift for name, value in per_class.items()}

    parent = _log_grid_study(store, study, "proxy-data-study", arms, dice, {}, classes=classes, repeats=2)
    record = proxy_data_report.collect(parent, tracking_uri=store)
    assert record.metric == "external" and record.point == POINTS[0]
    rows = {row.arm: row for row in record.table}
    for arm, label in (("full", "Full Dataset"), ("mi+labelcrop-4", "MI+Labelcrop")):
        assert [c.name for c in rows[label].classes] == ["edema", "enhancing_tumour"]  # type: ignore[attr-defined]
        for c in rows[label].classes:  # type: ignore[attr-defined]
            assert (c.internal_mean, c.internal_std) == pytest.approx(_by_hand(arm, POINTS[0], range(2), c.name))
            assert (c.external_mean, c.external_std) == pytest.approx(_by_hand(arm, POINTS[0], range(2), c.name, external_shift))
    markdown = proxy_data_report.render(record).markdown
    external = _by_hand("mi+labelcrop-4", POINTS[0], range(2), "edema", external_shift)
    assert any(line.startswith("| &nbsp;&nbsp;class edema | |") and f"| {external[0]:.4f} ± {external[1]:.4f} |" in line for line in markdown.splitlines())


def test_a_binary_grid_study_has_no_class_rows(proxy_net: proxy_net_report.ProxyNetRecord, proxy_data: proxy_data_report.ProxyDataRecord) -> None:
    assert all(not row.classes for row in (*proxy_net.table, *proxy_data.table))  # type: ignore[attr-defined]
    for markdown in (proxy_net_report.render(proxy_net).markdown, proxy_data_report.render(proxy_data).markdown):
        assert "&nbsp;&nbsp;class " not in markdown and "Rows `class <name>`" not in markdown


def test_a_multi_class_trust_check_reports_each_arms_dice_per_class(store: str) -> None:
    """The trust check's table at the reference's best point gives both arms' Dice per class, as the grid studies' do."""
    from proxyhpo.analysis import trust_report

    study = StudyConfig(name="trust-classes", data=DataConfig(dataset="/data/brain"), studies=StudiesConfig(grid=GRID))
    arms = {"full": (NetworkConfig.full(), N_CASES), "proxy": (NetworkConfig.proxy(3), 4)}

    def dice(arm: str, repeat: int, point: str) -> tuple[float, None]:
        return float(np.mean(list(_class_dice("full" if arm == "full" else "proxy-L3", repeat, point).values()))), None

    def classes(arm: str, repeat: int, point: str) -> tuple[dict[str, float], None]:
        return _class_dice("full" if arm == "full" else "proxy-L3", repeat, point), None

    parent = _log_grid_study(store, study, "trust", arms, dice, {}, classes=classes, repeats=2)
    record = trust_report.collect(parent, tracking_uri=store)
    rows = {row.arm: row for row in record.table}
    (edema, enhancing) = rows["proxy"].classes  # type: ignore[attr-defined]
    assert (edema.name, enhancing.name) == ("edema", "enhancing_tumour")
    assert (enhancing.internal_mean, enhancing.internal_std) == pytest.approx(_by_hand("proxy-L3", record.point, range(2), "enhancing_tumour"))
    assert "| &nbsp;&nbsp;class edema | |" in trust_report.render(record).markdown
