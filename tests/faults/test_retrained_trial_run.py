"""A trial trained again because its data changed (a new trial_key) gets a clean MLflow run: the new key, its own
per-epoch curve, one run per trial, not the old run's key and curve (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyhpo import tracking
from proxyhpo.config import HyperParameters, TrialResult, TrialSpec, TrialState
from proxyhpo.tracking import names


def _train(parent: str, key: str, dice: list[float]) -> None:
    spec = TrialSpec(trial_id="r0-t000", hyperparameters=HyperParameters(lr=0.01), seed=0, tags={"trial_key": key})
    with tracking.trial_runs("retrained", [spec], parent_run_id=parent, data="full", resolved_config={}, system_metrics=False) as runs:
        for epoch, value in enumerate(dice, start=1):
            runs[spec.trial_id].log_epoch(epoch, value)
        result = TrialResult.of(spec, TrialState.COMPLETE, final_val_dice=dice[-1], epochs_run=len(dice), val_epochs=list(range(1, len(dice) + 1)), val_dice=dice)
        runs[spec.trial_id].finish(result)


def test_a_trial_retrained_on_changed_data_has_a_clean_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracking.client()
    parent = client.create_run(tracking.ensure_experiment("retrained")).info.run_id
    _train(parent, "a" * 64, [0.1, 0.2, 0.3])
    _train(parent, "b" * 64, [0.5, 0.6])  # the same trial id, its data changed: trained again
    experiment = client.get_run(parent).info.experiment_id
    (run,) = client.search_runs([experiment], filter_string=f"tags.`{names.PARENT_TAG}` = '{parent}'")
    assert run.data.tags[names.TRIAL_KEY_TAG] == "b" * 64
    history = sorted((point.step, point.value) for point in client.get_metric_history(run.info.run_id, names.VAL_DICE))
    assert history == [(1, 0.5), (2, 0.6)]
    assert run.info.status == "FINISHED"
