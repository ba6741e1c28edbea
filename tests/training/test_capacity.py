"""``pack_size: auto`` where the device is at hand: the trainer measures what the device holds (4 on a CPU)."""

from __future__ import annotations

import torch

from proxyhpo.config import HyperParameters, NetworkConfig, TrialPlan, TrialSpec
from proxyhpo.training import pack_capacity, run_trials
from proxyhpo.training.capacity import CPU_PACK_SIZE


def test_a_cpu_holds_its_fixed_pack(tiny_recipe) -> None:
    assert pack_capacity(NetworkConfig.proxy(3), tiny_recipe, 2, torch.device("cpu")) == CPU_PACK_SIZE == 4
    assert pack_capacity(NetworkConfig.proxy(3), tiny_recipe, 2, torch.device("cpu"), limit=2) == 2


def test_auto_packs_a_plan_by_what_the_device_holds(sphere_cases, tiny_recipe) -> None:
    """Five trials, ``auto`` on a CPU: a pack of 4, then one of 1 (each result says the size of its pack)."""
    trials = [TrialSpec(trial_id=f"t{i}", hyperparameters=HyperParameters(lr=1e-2), seed=i) for i in range(5)]
    plan = TrialPlan(recipe=tiny_recipe, train=sphere_cases[:2], val=sphere_cases[4:5], epochs=1, trials=trials, device="cpu", num_workers=0)
    assert plan.pack_size == "auto"
    assert [r.pack_size for r in run_trials(plan, progress=False)] == [4, 4, 4, 4, 1]
