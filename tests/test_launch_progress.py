"""proxyhpo.launch: what a local launch shows while the study runs (its progress, read from MLflow) and when it ends.

Moved here from tests/tracking/ (they test launch, not tracking); tests/test_launch.py holds the other launch tests.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tracking"))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import make_result, make_spec  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402


def test_the_plain_display_prints_a_line_per_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal (CI, nohup): a line per round, per trial that ended (how, its Dice, whether the best so far,
    the trial-epochs left and an ETA) and for the final model; chosen by itself for a stream that is no terminal."""
    import io

    from proxyhpo.catalogue import shipped_study
    from proxyhpo.progress import StudyDisplay

    uri = f"sqlite:///{tmp_path / 'progress.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = shipped_study("demo")
    epochs = study.training.epochs
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    shown = io.StringIO()
    display = StudyDisplay(study, parent, shown, poll_s=0.2)
    assert display.live is False
    specs = [make_spec(f"r0-p{i}", lr=10 ** -(i + 3)) for i in range(3)]
    display.start()
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        runs["r0-p0"].log_epoch(1, 0.3)
        time.sleep(0.5)
        runs["r0-p0"].finish(make_result(specs[0], [0.3] * epochs))
        stopped = make_result(specs[1], [0.1, 0.2]).model_copy(update={"stopped_at_epoch": 2})
        runs["r0-p1"].finish(stopped)
        runs["r0-p2"].finish(make_result(specs[2], [0.5] * epochs))
        time.sleep(0.6)
    final = make_spec("final", round=None)
    with tracking.trial_runs(study.name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role=names.ROLE_FINAL) as runs:
        time.sleep(0.6)
        runs["final"].finish(make_result(final, [0.8]))
    display.succeeded = True
    display.stopped.set()
    display.join(timeout=30)
    lines = [line.split(" ", 1)[1] for line in shown.getvalue().splitlines()]  # after the time of day
    planned = study.planned_trials("hpo") * epochs
    assert lines[0] == f"round 1/{study.search.rounds} started"
    assert lines[1].startswith("trial r0-p0 finished, val Dice 0.300 (best so far) [lr 1.0e-03, optimizer adam, intensity_shift_prob 0.25]; ")
    assert lines[2].startswith("trial r0-p1 stopped early at epoch 2, val Dice 0.200 [lr 1.0e-04,")
    assert f"; {2 * epochs + 2}/{planned - (epochs - 2)} trial-epochs (−{epochs - 2} stopped early), ETA" in lines[3]
    assert lines[3].startswith("trial r0-p2 finished, val Dice 0.500 (best so far)")
    assert lines[4].startswith(f"search done (round 1/{study.search.rounds} · trials 3/{study.planned_trials('hpo')} (1 stopped early)); training the final model")
    assert len(lines) == 5


def test_the_live_display_shows_trial_epochs_eta_and_the_best_so_far(tmp_path: Path) -> None:
    from proxyhpo.catalogue import shipped_study
    from proxyhpo.progress import StudyDisplay, format_duration
    from proxyhpo.tracking.progress import StudySnapshot, TrialSnapshot

    study = shipped_study("demo")
    display = StudyDisplay(study, "parent", io_stream := __import__("io").StringIO(), live=True)
    epochs = study.training.epochs
    trials = (
        TrialSnapshot("r0-t000", 0, "FINISHED", "STOPPED", 2, 2, 0.4, {"lr": "0.0003", "optimizer": "sgd"}),
        TrialSnapshot("r0-t001", 0, "RUNNING", None, 3, None, 0.45, {"lr": "0.02", "optimizer": "adam"}),
        TrialSnapshot("r0-t002", 0, "FAILED", "FAILED", 0, None, None, {}, fail_reason="interrupted (SIGINT)"),  # trained again
    )
    snapshot = StudySnapshot(trials=trials, final_started=False, epochs_per_trial=epochs)
    assert display.describe(snapshot) == f"round 1/{study.search.rounds} · trials 1/{study.planned_trials('hpo')} (1 stopped early)"
    assert display.count(snapshot) == f"5/{study.planned_trials('hpo') * epochs - (epochs - 2)} trial-epochs (−{epochs - 2} stopped early)"
    assert display.best_line(snapshot) == "best val Dice so far 0.450 (r0-t001, running): lr 0.02, optimizer adam"
    display.rate.update(10, 100.0)
    display.rate.update(20, 110.0)  # one trial-epoch a second
    assert format_duration(display._eta(snapshot)) == format_duration(study.planned_trials("hpo") * epochs - (epochs - 2) - 5)
    assert io_stream.getvalue() == ""


@pytest.mark.parametrize("stopped", [0, 20])
def test_the_run_summary_shows_what_early_stopping_saved(tmp_path: Path, stopped: int) -> None:
    import io

    from rich.console import Console

    from proxyhpo.catalogue import shipped_study
    from proxyhpo.launch import _print_summary

    summary = {
        "best_hyperparameters": {"lr": 0.0055, "optimizer": "rmsprop"},
        "best_val_dice": 0.56, "final_val_dice": 0.66, "final_test_dice": 0.67,
        "n_trials": 24, "n_failed": 0, "n_stopped": stopped, "trial_epochs_run": 520.0, "trial_epochs_saved": 920.0 if stopped else 0.0,
        "total_gpu_hours": 0.0, "total_process_hours": 0.02,
    }
    shown = io.StringIO()
    _print_summary(shipped_study("demo"), summary, tmp_path / "run.log", Console(file=shown, force_terminal=False, width=160))
    rows = [line for line in shown.getvalue().splitlines() if "stopped early" in line]
    assert [("20 (920 of 1440)" in row) for row in rows] == ([True] if stopped else [])
    # on a CPU the hours are CPU-hours: no "GPU-hours 0.0000" (issue 22)
    assert "GPU-hours" not in shown.getvalue() and any("CPU-hours (no GPU ran)" in line and "0.0200" in line for line in shown.getvalue().splitlines())
