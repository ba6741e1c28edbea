"""Checkpoints of a pack: a trial killed part-way and run again resumes where it stopped, as if never stopped."""

from __future__ import annotations

import pytest
import torch

import io
import logging

from proxyhpo.config import PACK_CHECKPOINT_VERSION, HyperParameters, PackCheckpoint, TrialPlan, TrialSpec
from proxyhpo.training import run_trials
from proxyhpo.training.checkpoint import load_checkpoint


class Killed(Exception):
    """Stands in for a preempted pod."""


def _plan(cases, recipe, tmp_path, **kw) -> TrialPlan:
    trials = [
        TrialSpec(trial_id="a", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam", intensity_shift_prob=0.5), seed=1),
        TrialSpec(trial_id="b", hyperparameters=HyperParameters(lr=3e-3, optimizer="novograd", weight_decay=1e-4), seed=2),
    ]
    args = dict(recipe=recipe, train=cases[:4], val=cases[4:6], epochs=4, val_every=1, trials=trials, device="cpu", num_workers=0, pack_size=2)
    return TrialPlan(**(args | kw))


def _kill_after(epoch: int):
    def on_epoch(trial_id: str, at: int, dice: float) -> None:
        if at == epoch and trial_id == "b":
            raise Killed(f"killed after epoch {at}")

    return on_epoch


def test_a_killed_pack_resumes_exactly(sphere_cases, tiny_recipe, tmp_path) -> None:
    torch.set_num_threads(1)  # the comparison below is exact: one thread, one summation order
    uninterrupted = run_trials(_plan(sphere_cases, tiny_recipe, tmp_path), progress=False)

    checkpoint = str(tmp_path / "ckpt" / "pack.pt")
    plan = _plan(sphere_cases, tiny_recipe, tmp_path, checkpoint=checkpoint, checkpoint_every=2)
    with pytest.raises(Killed):
        run_trials(plan, on_epoch=_kill_after(3), progress=False)  # killed during epoch 3's validation
    saved = load_checkpoint(checkpoint, ["a", "b"])
    assert saved is not None and saved.record.epoch == 2  # the last checkpoint: after epoch 2

    resumed_epochs: list[int] = []
    resumed = run_trials(plan, on_epoch=lambda trial, epoch, dice: resumed_epochs.append(epoch), progress=False)
    assert sorted(set(resumed_epochs)) == [3, 4]  # epochs 1 and 2 were not trained again
    for before, after in zip(uninterrupted, resumed, strict=True):
        assert after.val_epochs == before.val_epochs == [1, 2, 3, 4]
        assert after.val_dice == pytest.approx(before.val_dice, abs=1e-6)
        assert after.best_epoch == before.best_epoch
        assert after.steps_run == before.steps_run
    assert load_checkpoint(checkpoint, ["a", "b"]).record.epoch == 4


def test_a_checkpoint_of_other_trials_is_not_resumed(sphere_cases, tiny_recipe, tmp_path) -> None:
    checkpoint = str(tmp_path / "pack.pt")
    run_trials(_plan(sphere_cases, tiny_recipe, tmp_path, epochs=1, checkpoint=checkpoint), progress=False)
    assert load_checkpoint(checkpoint, ["a", "b"]) is not None
    assert load_checkpoint(checkpoint, ["a", "c"]) is None  # another pack: training starts over
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    assert load_checkpoint(str(tmp_path / "garbage.pt"), ["a", "b"]) is None
    assert load_checkpoint(str(tmp_path / "missing.pt"), ["a", "b"]) is None


def test_a_checkpoint_is_a_versioned_record_beside_its_tensors(sphere_cases, tiny_recipe, tmp_path) -> None:
    """What the pack stood at is the record; weights, optimisers, streams and best weights are one entry per admitted trial."""
    checkpoint = str(tmp_path / "pack.pt")
    results = run_trials(_plan(sphere_cases, tiny_recipe, tmp_path, epochs=2, checkpoint=checkpoint), progress=False)
    saved = load_checkpoint(checkpoint, ["a", "b"])
    record = saved.record
    assert record.schema_version == PACK_CHECKPOINT_VERSION == 3
    assert (record.trial_ids, record.epoch, record.admitted, record.retired, record.failed) == (["a", "b"], 2, 2, [0, 1], {})
    assert record.step == sum(r.steps_run for r in results) // 2  # both trials took part in every step
    for trial, result in zip(record.trials, results, strict=True):
        assert (trial.trial_id, trial.val_epochs, trial.val_dice, trial.best_epoch) == (result.trial_id, result.val_epochs, result.val_dice, result.best_epoch)
        assert trial.done and trial.stopped_at is None
    assert len(saved.models) == len(saved.streams) == len(saved.best_weights) == 2 and len(saved.optimizers) == 2  # adam, novograd
    raw = torch.load(checkpoint, weights_only=True)
    assert PackCheckpoint.model_validate_json(raw["record"]) == record  # the record travels as its JSON text


def test_a_checkpoint_of_an_older_version_starts_over(sphere_cases, tiny_recipe, tmp_path, caplog) -> None:
    """A version-2 checkpoint (a dictionary written by hand) of the same trials is not resumed: training starts over, and says so."""
    checkpoint = tmp_path / "pack.pt"
    buffer = io.BytesIO()
    torch.save({"version": 2, "trial_ids": ["a", "b"], "epoch": 3, "admitted": 2, "models": [], "trials": []}, buffer)
    checkpoint.write_bytes(buffer.getvalue())
    with caplog.at_level(logging.WARNING, logger="proxyhpo.training.checkpoint"):
        assert load_checkpoint(str(checkpoint), ["a", "b"]) is None
    assert "has another layout (version 2); training starts over" in caplog.text

    epochs: list[int] = []
    results = run_trials(_plan(sphere_cases, tiny_recipe, tmp_path, epochs=1, checkpoint=str(checkpoint)), on_epoch=lambda t, e, d: epochs.append(e), progress=False)
    assert epochs == [1, 1] and all(r.epochs_run == 1 for r in results)  # trained from epoch 1, not resumed at 3
    assert load_checkpoint(str(checkpoint), ["a", "b"]).record.epoch == 1  # rewritten in the new layout

    buffer = io.BytesIO()  # a record of another schema_version is another layout too
    torch.save({"record": '{"schema_version": 4}', "models": [], "optimizers": [], "streams": [], "best_weights": []}, buffer)
    checkpoint.write_bytes(buffer.getvalue())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="proxyhpo.training.checkpoint"):
        assert load_checkpoint(str(checkpoint), ["a", "b"]) is None
    assert "has another layout or version" in caplog.text and "schema_version" in caplog.text
