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


def test_the_launch_progress_gives_the_final_model_its_own_line_and_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from proxyhpo.catalogue import shipped_study
    from proxyhpo.launch import _StudyProgress

    uri = f"sqlite:///{tmp_path / 'progress.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    study = shipped_study("demo")
    parent = tracking.start_parent_run(study.name, "hpo", config={}, tracking_uri=uri)
    specs = [make_spec(f"r0-p{i}") for i in range(2)]
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False) as runs:
        for spec in specs:
            runs[spec.trial_id].finish(make_result(spec, [0.5]))
    shown = io.StringIO()
    progress = _StudyProgress(study, parent, Console(file=shown, force_terminal=False, width=160))
    progress.start()
    final = make_spec("final", round=None)
    with tracking.trial_runs(study.name, [final], parent_run_id=parent, data="full", resolved_config={}, tracking_uri=uri, system_metrics=False, role=names.ROLE_FINAL) as runs:
        time.sleep(3.0)  # one poll (every 2 s) sees the final model's run
        runs["final"].finish(make_result(final, [0.8]))
    progress.succeeded = True
    progress.stopped.set()
    progress.join(timeout=30)
    lines = shown.getvalue().splitlines()
    search = next(line for line in lines if line.startswith("search: 2 trials"))
    assert f"2/{study.planned_trials('hpo')}" in search
    final_line = next(line for line in lines if line.startswith("training the final model (full network, search-train cases)"))
    assert "1/1" in final_line


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
