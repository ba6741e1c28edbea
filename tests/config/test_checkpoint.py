"""The record of a pack's checkpoint: what it refuses, and what its JSON keeps."""

from __future__ import annotations

import math

import pytest

from proxyhpo.config import PackCheckpoint, TrialCheckpoint


def _trial(trial_id: str = "a", **kw) -> TrialCheckpoint:
    return TrialCheckpoint.model_validate({"trial_id": trial_id, "charged_seconds": 1.0, "admitted_after": 0.0, "first_tick": 0, "epochs_run": 1, "steps_run": 2} | kw)


def test_the_record_keeps_infinities_of_the_stopping_rule() -> None:
    """Successive halving ranks a trial without a finite loss as +inf: the record's JSON keeps it."""
    trial = _trial(epoch_loss=math.nan)
    stopper = {"arrivals": 1, "records": {"1": [[-math.inf, math.inf, 0, 0]]}}
    record = PackCheckpoint(trial_ids=["a"], epoch=1, step=2, elapsed=1.0, chunk_size=1, stopper=stopper, trials=[trial])
    back = PackCheckpoint.model_validate_json(record.model_dump_json())
    assert back.stopper == stopper and math.isnan(back.trials[0].epoch_loss)


@pytest.mark.parametrize(
    "document, reason",
    [
        ({"val_epochs": [1, 2]}, "val_epochs and val_dice must pair up, got 2 epochs and 1 Dice"),
        ({"best_dice": 0.5}, "best_dice and best_epoch are set together"),
    ],
)
def test_a_trial_record_refuses_what_does_not_add_up(document, reason) -> None:
    base = {"trial_id": "a", "charged_seconds": 1.0, "admitted_after": 0.0, "first_tick": 0, "epochs_run": 2, "steps_run": 4, "val_epochs": [1], "val_dice": [0.1]}
    with pytest.raises(ValueError, match=reason):
        TrialCheckpoint.model_validate(base | document)


@pytest.mark.parametrize(
    "document, reason",
    [
        ({"trials": [_trial("b")]}, r"trials must be the queue's first 1 trial_ids in order, got \['b'\]"),
        ({"failed": {1: "loss became nan at step 3"}}, r"failed and retired name models \[1\], but 1 were admitted"),
        ({"retired": [-1]}, r"failed and retired name models \[-1\], but 1 were admitted"),
        ({"schema_version": 2}, "Input should be 3"),
    ],
)
def test_a_pack_record_refuses_what_does_not_add_up(document, reason) -> None:
    base = {"trial_ids": ["a", "b"], "epoch": 1, "step": 2, "elapsed": 1.0, "chunk_size": 2, "trials": [_trial("a")]}
    assert PackCheckpoint.model_validate(base).admitted == 1
    with pytest.raises(ValueError, match=reason):
        PackCheckpoint.model_validate(base | document)
