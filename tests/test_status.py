"""`proxyhpo status` and `proxyhpo --version` (issue 22): a study's progress from any shell, on a real SQLite MLflow store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tracking"))  # --import-mode=importlib puts no test folder on sys.path

from tracking_helpers import make_result, make_spec  # noqa: E402

from proxyhpo import tracking  # noqa: E402
from proxyhpo.cli import main  # noqa: E402
from proxyhpo.tracking import names  # noqa: E402


def test_status_shows_a_running_study_and_how_to_resume_it(isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxyhpo.catalogue import shipped_study

    study = shipped_study("demo")
    epochs = study.training.epochs
    uri = f"sqlite:///{isolated_home / 'mlflow.db'}"
    isolated_home.mkdir(parents=True)
    parent = tracking.start_parent_run(study.name, "hpo", config=study.model_dump(mode="json"), tracking_uri=uri)
    tracking.client(uri).set_tag(parent, names.COMMAND_TAG, "cd /work && proxyhpo run demo.yaml")
    specs = [make_spec(f"r0-t00{i}", lr=10 ** -(i + 3)) for i in range(4)]
    with tracking.trial_runs(study.name, specs, parent_run_id=parent, data="mi-4", resolved_config={}, tracking_uri=uri, system_metrics=False,
                             hyperparameter_names=study.search.space.names) as runs:
        runs["r0-t000"].finish(make_result(specs[0], [0.5] * epochs, gpu_hours=0.0, process_hours=0.01))
        runs["r0-t001"].finish(make_result(specs[1], [0.6, 0.7], gpu_hours=0.0, process_hours=0.002).model_copy(update={"stopped_at_epoch": 2}))
        runs["r0-t002"].finish(make_result(specs[2], [], fail="loss became NaN", gpu_hours=0.0))
        runs["r0-t003"].log_epoch(1, 0.2)
        runs["r0-t003"].log_epoch(2, 0.3)
        assert main(["status"]) == 0
        shown = capsys.readouterr().out.splitlines()
    planned = study.planned_trials("hpo")
    assert shown[0] == f"store: {uri}; experiments: {study.name}"
    assert shown[2].startswith(f"{study.name}: hpo run {parent} ({study.name} hpo ") and shown[2].endswith(": running (process " + shown[2].split("process ")[1])
    assert shown[3].startswith(
        f"  round 1/{study.search.rounds} · trials 3/{planned} done (1 stopped early, 1 failed) · {epochs + 2 + 0 + 2}/{planned * epochs - (epochs - 2) - epochs} trial-epochs · ETA "
    )
    assert shown[4] == "  best val Dice 0.7000 (r0-t001): lr 1.0e-04, optimizer adam, intensity_shift_prob 0.25"
    assert shown[5] == "  trials' device time: 0.012 CPU-hours (no GPU)"  # GPU-hours only where a GPU ran
    assert shown[6] == "  resume: cd /work && proxyhpo run demo.yaml"


def test_status_and_report_never_create_a_store_and_suggest_a_near_name(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (["status"], ["report", "demo"]):
        assert main(command) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert f"{isolated_home / 'mlflow.db'}: does not exist: no study has run with the home folder $PROXYHPO_HOME" in line
    assert not isolated_home.exists() and not (tmp_path / ".proxyhpo").exists()

    tracking.ensure_experiment("spleen-study", f"sqlite:///{isolated_home / 'mlflow.db'}")
    assert main(["status", "spleen-stduy"]) == 1
    assert capsys.readouterr().err.strip().endswith("no experiment 'spleen-stduy' in " f"sqlite:///{isolated_home / 'mlflow.db'} (it holds: spleen-study); did you mean 'spleen-study'?")
    assert main(["status", "spleen-study"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["no study run yet"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from proxyhpo import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"proxyhpo {__version__}\n"
