"""A kept trial result edited on disk is not trusted on resume: it must agree with MLflow's record of the trial (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxyhpo import resume, tracking
from proxyhpo.config import DataItem, HyperParameters, TrialPlan, TrialResult, TrialSpec, TrialState
from proxyhpo.tracking import names


def _plan() -> TrialPlan:
    items = [DataItem(image=f"/d/i{i}.nii.gz", label=f"/d/l{i}.nii.gz") for i in range(3)]
    trials = [TrialSpec(trial_id=f"r0-t00{i}", hyperparameters=HyperParameters(lr=0.01 * (i + 1)), seed=i) for i in range(2)]
    return resume.with_trial_keys(TrialPlan(recipe="demo", train=items[:2], val=items[2:], epochs=2, trials=trials))


def test_a_kept_result_edited_on_disk_trains_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PROXYHPO_CHECKPOINT_ROOT", str(tmp_path / "checkpoints"))
    client = tracking.client()
    experiment = tracking.ensure_experiment("kept-study")
    parent = client.create_run(experiment).info.run_id
    plan = _plan()
    for spec, dice in zip(plan.trials, (0.31, 0.42)):  # what the trials' own MLflow runs recorded
        child = client.create_run(experiment, tags={names.PARENT_TAG: parent, names.TRIAL_KEY_TAG: spec.tags["trial_key"]}).info.run_id
        client.log_metric(child, names.FINAL_VAL_DICE, dice)
        resume.keep_result(parent, TrialResult.of(spec, TrialState.COMPLETE, final_val_dice=dice, epochs_run=2))
    assert sorted(resume.finished_results(parent, plan)) == ["r0-t000", "r0-t001"]

    (kept,) = [p for p in (tmp_path / "checkpoints").rglob("r0-t000-*.json")]
    document = json.loads(kept.read_text())
    document["final_val_dice"] = 0.999  # valid JSON, a better Dice than the trial ever had
    kept.write_text(json.dumps(document))
    assert sorted(resume.finished_results(parent, plan)) == ["r0-t001"]  # the edited one trains again
