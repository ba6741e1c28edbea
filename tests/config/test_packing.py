"""``pack_size``: one rule resolves ``"auto"``, for the controller (no device at hand) and the trainer (measuring it)."""

from __future__ import annotations

import math

import pytest

from proxyhpo.config import Proposal, resolve_pack_size


@pytest.mark.parametrize(
    "pack_size, trials, devices, capacity, expected",
    [
        (4, 10, 1, None, 4),  # a number is taken as given
        (4, 10, 3, None, 4),  # ... whatever the devices
        (4, 3, 1, None, 3),  # but never more slots than trials
        (4, 0, 1, None, 1),  # at least one
        ("auto", 10, 1, None, 10),  # no device at hand: one pack per device
        ("auto", 10, 4, None, 3),  # ... each holding its even share
        ("auto", 3, 8, None, 1),
        ("auto", 10, 1, 4, 4),  # the device at hand holds 4 (a CPU)
        ("auto", 3, 1, 64, 3),  # ... or 64, but there are only 3 trials
        ("auto", 10, 4, 6, 6),  # a measured capacity decides, not the devices
    ],
)
def test_resolve_pack_size(pack_size, trials: int, devices: int, capacity: int | None, expected: int) -> None:
    measure = None if capacity is None else (lambda: capacity)
    assert resolve_pack_size(pack_size, trials=trials, devices=devices, capacity=measure) == expected


def test_the_device_is_measured_for_auto_only() -> None:
    def measure() -> int:
        raise AssertionError("measured for a fixed pack size")

    assert resolve_pack_size(2, trials=5, capacity=measure) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pack_size": 0, "trials": 4}, "pack_size must be a number >= 1 or 'auto', got 0"),
        ({"pack_size": "big", "trials": 4}, "pack_size must be a number >= 1 or 'auto', got 'big'"),
        ({"pack_size": True, "trials": 4}, "pack_size must be a number >= 1 or 'auto', got True"),
        ({"pack_size": 2, "trials": -1}, "trials must be >= 0, got -1"),
        ({"pack_size": "auto", "trials": 4, "devices": -2}, "devices must be >= 0, got -2"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        resolve_pack_size(**kwargs)


@pytest.mark.parametrize("queued", [False, True])
@pytest.mark.parametrize("gpus", [1, 2, 3, 5])
@pytest.mark.parametrize("proposals", [1, 4, 7, 12])
def test_a_round_with_auto_packs_fills_its_gpus_evenly(proposals: int, gpus: int, queued: bool) -> None:
    """The controller's packs under ``auto``: at most one per GPU, each its even share of the round."""
    from proxyhpo.controller.rounds import split_into_packs

    round_ = [Proposal(proposal_id=i, round=0, hyperparameters={"lr": 1e-3}, log_prob=0.0) for i in range(proposals)]
    size = resolve_pack_size("auto", trials=proposals, devices=gpus)
    packs = split_into_packs(round_, gpus=gpus, pack_size=size, queued=queued)
    share = math.ceil(proposals / gpus)
    assert len(packs) == min(gpus, math.ceil(proposals / share))
    assert all(len(pack) <= share for pack in packs) and sum(len(pack) for pack in packs) == proposals
