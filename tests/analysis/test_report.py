"""The study report, built from trial runs logged through proxyhpo.tracking into a real SQLite MLflow store."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.analysis.report import build_report, collect_trials, summarise
from proxyhpo.config import DataConfig, StudyConfig
from proxyhpo.networks import NetworkConfig
from proxyhpo.training.plan import HyperParameters, TrialSpec
from proxyhpo.training.result import TrialResult, TrialState

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: trial id -> (round, lr, optimizer, shift prob, val Dice per epoch or None when it failed, GPU-hours)
TRIALS = {
    "r0-p0": (0, 1e-3, "adam", 0.2, [0.30, 0.52], 0.010),
    "r0-p1": (0, 3e-3, "rmsprop", 0.7, [0.41, 0.66], 0.015),
    "r1-p0": (1, 5e-1, "adamax", 0.1, None, 0.002),
    "r1-p1": (1, 2e-4, "novograd", 0.9, [0.25, 0.61], 0.020),
}
FINAL = (4e-3, [0.70, 0.83], 0.5, 0.77)  # lr, val Dice per epoch, GPU-hours, external test Dice


def _spec(trial_id: str, round: int | None, lr: float, optimizer: str, shift: float, network: NetworkConfig) -> TrialSpec:
    return TrialSpec(trial_id=trial_id, hyper=HyperParameters(lr=lr, optimizer=optimizer, intensity_shift_prob=shift), network=network, data_label="mi-4", round=round)


def _result(spec: TrialSpec, dice: list[float] | None, gpu_hours: float, test_dice: float | None = None) -> TrialResult:
    return TrialResult(
        trial_id=spec.trial_id,
        state=TrialState.COMPLETE if dice else TrialState.FAILED,
        fail_reason=None if dice else "loss became NaN at step 2",
        hyper=spec.hyper,
        network=spec.network.name,
        round=spec.round,
        epochs_run=len(dice or []),
        val_epochs=list(range(1, len(dice or []) + 1)),
        val_dice=dice or [],
        final_val_dice=dice[-1] if dice else None,
        best_val_dice=max(dice) if dice else None,
        test_dice=test_dice,
        gpu_hours=gpu_hours,
        cpu_hours=gpu_hours / 2,
        wall_seconds=gpu_hours * 3600,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (its schema migration takes seconds); tests use their own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def study() -> StudyConfig:
    return StudyConfig(name="report-study", description="A study to report on.", data=DataConfig(dataset="/data/spleen"))


@pytest.fixture(scope="module")
def logged_study(study: StudyConfig, store: str) -> tuple[str, str]:
    """A parent run with four search trials (one failed) and a final run; returns (tracking URI, parent run id)."""
    uri = store
    parent = tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), tracking_uri=uri)
    specs = {tid: _spec(tid, rnd, lr, opt, shift, NetworkConfig.proxy(3)) for tid, (rnd, lr, opt, shift, _, _) in TRIALS.items()}
    for round in (0, 1):
        mine = [spec for spec in specs.values() if spec.round == round]
        with tracking.trial_runs(study.name, mine, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
            for spec in mine:
                _, _, _, _, dice, gpu = TRIALS[spec.trial_id]
                runs[spec.trial_id].finish(_result(spec, dice, gpu))
    lr, dice, gpu, test = FINAL
    final = _spec("final", None, lr, "rmsprop", 0.7, NetworkConfig.full())
    with tracking.trial_runs(study.name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role="final") as runs:
        runs["final"].finish(_result(final, dice, gpu, test_dice=test))
    # a trial of another pipeline run in the same experiment must not be counted
    other = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    stray = _spec("stray", 0, 1e-3, "adam", 0.0, NetworkConfig.proxy(3))
    with tracking.trial_runs(study.name, [stray], parent_run_id=other, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["stray"].finish(_result(stray, [0.99], 7.0))
    return uri, parent


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])  # the header chunk's checksum
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return width, height


def test_collect_trials_reads_back_children(logged_study: tuple[str, str]) -> None:
    uri, parent = logged_study
    rows = {row.trial_id: row for row in collect_trials(parent, uri)}
    assert set(rows) == {*TRIALS, "final"}
    assert rows["final"].role == "final"
    assert rows["r1-p0"].status == "FAILED" and rows["r1-p0"].val_dice is None
    for trial_id, (rnd, lr, opt, shift, dice, gpu) in TRIALS.items():
        row = rows[trial_id]
        assert (row.role, row.round, row.optimizer, row.network, row.data) == ("trial", rnd, opt, "proxy-L3", "mi-4")
        assert row.lr == pytest.approx(lr) and row.intensity_shift_prob == pytest.approx(shift)
        assert row.gpu_hours == pytest.approx(gpu)
        if dice:
            assert row.val_dice == pytest.approx(dice[-1])


def test_build_report(study: StudyConfig, logged_study: tuple[str, str], tmp_path: Path) -> None:
    uri, parent = logged_study
    out = tmp_path / "report"
    summary, markdown = build_report(study, parent, out, tracking_uri=uri)

    # the summary
    assert summary.n_trials == 4
    assert summary.n_failed == 1
    assert summary.best_trial == "r0-p1"
    assert summary.best_val_dice == pytest.approx(0.66)
    assert summary.best_values == {"lr": pytest.approx(3e-3), "optimizer": "rmsprop", "intensity_shift_prob": pytest.approx(0.7)}
    assert summary.final_val_dice == pytest.approx(0.83)
    assert summary.final_test_dice == pytest.approx(0.77)
    search_gpu = sum(gpu for *_, gpu in TRIALS.values())
    assert summary.search_gpu_hours == pytest.approx(search_gpu)
    assert summary.total_gpu_hours == pytest.approx(search_gpu + FINAL[2])  # failed trials and the final model count
    assert summary.total_cpu_hours == pytest.approx((search_gpu + FINAL[2]) / 2)

    # report.md
    text = (out / "report.md").read_text()
    assert text == markdown
    assert text.startswith("# Study `report-study`")
    assert "A study to report on." in text
    best_table = text.split("## Best hyper-parameters", 1)[1].split("##", 1)[0]
    assert "| lr | 0.003 |" in best_table
    assert "| optimizer | rmsprop |" in best_table
    assert "| intensity_shift_prob | 0.7 |" in best_table
    assert "Best search trial: `r0-p1` with validation Dice 0.6600." in text
    assert "| internal (held out) | 0.8300 |" in text
    assert "| external | 0.7700 |" in text
    assert "4 trials (1 failed)" in text
    trials_table = text.split("## Trials", 1)[1]
    rows = [line for line in trials_table.splitlines() if line.startswith("| r")]
    assert [line.split("|")[1].strip() for line in rows] == list(TRIALS)  # oldest first, final and stray excluded
    assert "| r0-p1 | 0 | rmsprop | 0.00300 | 0.70 | 0.6600 | FINISHED |" in rows
    assert "| r1-p0 | 1 | adamax | 0.50000 | 0.10 | – | FAILED |" in rows
    assert "stray" not in text

    # search.png and summary.json
    width, height = _png_size((out / "search.png").read_bytes())
    assert width > 1000 and height > 300  # three panels side by side
    assert json.loads((out / "summary.json").read_text())["best_trial"] == "r0-p1"
    assert not list(out.glob("*.partial"))

    # the parent run holds the summary and the artifacts, and is closed
    client = tracking.client(uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["best_val_dice"] == pytest.approx(0.66)
    assert run.data.metrics["total_gpu_hours"] == pytest.approx(search_gpu + FINAL[2])
    assert run.data.metrics["n_failed_trials"] == 1
    assert {info.path for info in client.list_artifacts(parent)} >= {"report.md", "search.png", "summary.json", "best_hyperparameters.json"}
    best = json.loads(Path(client.download_artifacts(parent, "best_hyperparameters.json", str(tmp_path / "dl"))).read_text())
    assert best["optimizer"] == "rmsprop"


def test_report_when_every_trial_failed(study: StudyConfig, store: str, tmp_path: Path) -> None:
    uri = store
    study = study.model_copy(update={"name": "all-failed"})
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    specs = [_spec(f"r0-p{i}", 0, 1e-1, "adam", 0.0, NetworkConfig.proxy(3)) for i in range(2)]
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        for spec in specs:
            runs[spec.trial_id].finish(_result(spec, None, 0.001))
    summary, markdown = build_report(study, parent, tmp_path / "report", tracking_uri=uri)
    assert (summary.n_trials, summary.n_failed, summary.best_trial, summary.best_val_dice) == (2, 2, None, None)
    assert summary.total_gpu_hours == pytest.approx(0.002)
    assert "validation Dice –" in markdown
    _png_size((tmp_path / "report" / "search.png").read_bytes())
    run = tracking.client(uri).get_run(parent)
    assert run.info.status == "FINISHED"
    assert "best_val_dice" not in run.data.metrics
    assert run.data.metrics["total_gpu_hours"] == pytest.approx(0.002)


def test_summarise_of_no_rows() -> None:
    summary = summarise([])
    assert (summary.n_trials, summary.n_failed, summary.best_trial, summary.total_gpu_hours) == (0, 0, None, 0.0)
    assert summary.metrics() == {"total_gpu_hours": 0.0, "total_cpu_hours": 0.0, "search_gpu_hours": 0.0, "search_cpu_hours": 0.0, "n_trials": 0.0, "n_failed_trials": 0.0}
