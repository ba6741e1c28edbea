"""Checkpoints of a pack: a trial killed part-way and run again resumes where it stopped, as if never stopped."""

from __future__ import annotations

import pytest
import torch

from proxyhpo.config import HyperParameters, TrialPlan, TrialSpec
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
    assert saved is not None and saved["epoch"] == 2  # the last checkpoint: after epoch 2

    resumed_epochs: list[int] = []
    resumed = run_trials(plan, on_epoch=lambda trial, epoch, dice: resumed_epochs.append(epoch), progress=False)
    assert sorted(set(resumed_epochs)) == [3, 4]  # epochs 1 and 2 were not trained again
    for before, after in zip(uninterrupted, resumed, strict=True):
        assert after.val_epochs == before.val_epochs == [1, 2, 3, 4]
        assert after.val_dice == pytest.approx(before.val_dice, abs=1e-6)
        assert after.best_epoch == before.best_epoch
        assert after.steps_run == before.steps_run
    assert load_checkpoint(checkpoint, ["a", "b"])["epoch"] == 4


def test_a_checkpoint_of_other_trials_is_not_resumed(sphere_cases, tiny_recipe, tmp_path) -> None:
    checkpoint = str(tmp_path / "pack.pt")
    run_trials(_plan(sphere_cases, tiny_recipe, tmp_path, epochs=1, checkpoint=checkpoint), progress=False)
    assert load_checkpoint(checkpoint, ["a", "b"]) is not None
    assert load_checkpoint(checkpoint, ["a", "c"]) is None  # another pack: training starts over
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    assert load_checkpoint(str(tmp_path / "garbage.pt"), ["a", "b"]) is None
    assert load_checkpoint(str(tmp_path / "missing.pt"), ["a", "b"]) is None
