"""What the tracking tests share: a fresh experiment name, trial specs and results, a metric's history, a run's artifacts."""

from __future__ import annotations

import time
import uuid

from proxyhpo import tracking
from proxyhpo.config import HyperParameters, NetworkConfig, TrialResult, TrialSpec, TrialState


def new_experiment() -> str:
    """A name no other test uses (the server backend is shared by the session)."""
    return f"study-{uuid.uuid4().hex[:10]}"


def make_spec(trial_id: str, *, lr: float = 1e-3, optimizer: str = "adam", shift: float = 0.25, round: int | None = 0) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        hyperparameters=HyperParameters(lr=lr, optimizer=optimizer, intensity_shift_prob=shift),
        network=NetworkConfig.proxy(3),
        data_label="mi-4",
        round=round,
    )


def make_result(
    spec: TrialSpec, dice: list[float], *, gpu_hours: float = 0.02, process_hours: float = 0.0, wall: float = 72.0, fail: str | None = None
) -> TrialResult:
    return TrialResult(
        trial_id=spec.trial_id,
        state=TrialState.FAILED if fail else TrialState.COMPLETE,
        fail_reason=fail,
        hyperparameters=spec.hyperparameters,
        network=spec.network.name,
        data_label=spec.data_label,
        round=spec.round,
        epochs_run=len(dice),
        val_epochs=list(range(1, len(dice) + 1)),
        val_dice=dice,
        final_val_dice=dice[-1] if dice else None,
        best_val_dice=max(dice) if dice else None,
        best_epoch=(dice.index(max(dice)) + 1) if dice else None,
        wall_seconds=wall,
        gpu_hours=gpu_hours,
        process_hours=process_hours,
    )


def metric_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def all_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files += all_artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return files


def started_after(uri: str, experiment: str) -> int:
    """A start time strictly after every run of ``experiment`` so far, and strictly before the next one."""
    tracking.ensure_experiment(experiment, uri)
    time.sleep(0.05)
    since = int(time.time() * 1000)
    time.sleep(0.05)
    return since

