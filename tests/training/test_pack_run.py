"""One pack's training loop: packing changes a trial's cost, not its outcome, and a failure stays with its trial."""

from __future__ import annotations

import pytest
import torch

from proxyhpo.config import FaultInjection, HyperParameters, TrialPlan, TrialSpec, TrialState
from proxyhpo.training import run_trials


def _plan(cases, recipe, trials, **kw) -> TrialPlan:
    args = dict(recipe=recipe, train=cases[:4], val=cases[4:6], epochs=2, trials=trials, device="cpu", num_workers=0)
    args.update(kw)
    return TrialPlan(**args)


def test_packed_run_matches_one_by_one(sphere_cases, tiny_recipe):
    """Same seeds: a pack of 3 sees the same patches and takes the same steps as 3 separate runs."""
    trials = [
        TrialSpec(trial_id="a", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam", intensity_shift_prob=0.5), seed=3),
        TrialSpec(trial_id="b", hyperparameters=HyperParameters(lr=3e-3, optimizer="novograd", intensity_shift_prob=1.0), seed=4),
        TrialSpec(trial_id="c", hyperparameters=HyperParameters(lr=1e-3, optimizer="rmsprop"), seed=5),
    ]
    losses: dict[int, dict] = {1: {}, 3: {}}
    results = {}
    for k in (1, 3):
        plan = _plan(sphere_cases, tiny_recipe, trials, pack_size=k)
        results[k] = run_trials(plan, on_step=lambda t, s, v, k=k: losses[k].__setitem__((t, s), v), progress=False)
    assert [r.pack_size for r in results[1]] == [1, 1, 1] and [r.pack_size for r in results[3]] == [3, 3, 3]
    assert len(losses[3]) == 3 * 4  # 4 steps each
    for key, v in losses[1].items():
        assert losses[3][key] == pytest.approx(v, rel=1e-3), key
    for alone, packed in zip(results[1], results[3]):
        assert packed.val_dice == pytest.approx(alone.val_dice, abs=1e-2)


def test_faults_fail_only_their_trials(sphere_cases, tiny_recipe, tmp_path):
    hyper = HyperParameters(lr=1e-2)
    trials = [
        TrialSpec(trial_id="ok", hyperparameters=hyper, seed=0),
        TrialSpec(trial_id="nan", hyperparameters=hyper, seed=1, fault=FaultInjection(kind="nan", step=2)),
        TrialSpec(trial_id="oom", hyperparameters=hyper, seed=2, fault=FaultInjection(kind="oom", step=3)),
        TrialSpec(trial_id="ok2", hyperparameters=HyperParameters(lr=1e-2, optimizer="adamax"), seed=3),
    ]
    ok, nan, oom, ok2 = run_trials(_plan(sphere_cases, tiny_recipe, trials, pack_size=4), progress=False)
    for r in (ok, ok2):
        assert r.state is TrialState.COMPLETE and r.epochs_run == 2 and len(r.val_dice) == 2
    assert nan.state is TrialState.FAILED and nan.fail_reason == "loss became nan at step 2"
    assert nan.epochs_run == 0 and nan.val_dice == [] and nan.final_val_dice is None
    assert oom.state is TrialState.FAILED and "out of memory during training step 3 even alone" in oom.fail_reason
    assert oom.epochs_run == 1 and len(oom.val_dice) == 1  # step 3 is the first step of epoch 2
    assert nan.wall_seconds < ok.wall_seconds and oom.process_hours < ok.process_hours


def test_out_of_memory_in_the_test_fails_the_trial_and_saves_no_weights(sphere_cases, tiny_recipe, tmp_path, monkeypatch):
    """A trial that runs out of memory during the external test leaves the pack: FAILED, and its weights are not saved."""
    from proxyhpo.training import pack_run

    original = pack_run.evaluate_pack_by_class

    def evaluate(pack, volumes, recipe, what="validation", members=None):
        if what == "test":
            predict = pack.predict

            def predict_or_oom(chunk, x):
                if any(pack.specs[i].trial_id == "b" for i in chunk):
                    raise torch.OutOfMemoryError("simulated out-of-memory (testing)")
                return predict(chunk, x)

            monkeypatch.setattr(pack, "predict", predict_or_oom)
        return original(pack, volumes, recipe, what, members)

    monkeypatch.setattr(pack_run, "evaluate_pack_by_class", evaluate)
    trials = [TrialSpec(trial_id=t, hyperparameters=HyperParameters(lr=1e-2), seed=s) for s, t in enumerate("ab")]
    plan = _plan(sphere_cases, tiny_recipe, trials, epochs=1, pack_size=2, test=sphere_cases[6:], save_model_dir=str(tmp_path / "models"))
    a, b = run_trials(plan, progress=False)
    assert a.state is TrialState.COMPLETE and a.test_dice is not None and a.model_path == str(tmp_path / "models" / "a.pt")
    assert b.state is TrialState.FAILED and "out of memory during test even alone" in b.fail_reason
    assert b.test_dice is None and b.model_path is None and b.final_val_dice is None and b.val_epochs == [1]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["a.pt"]


def test_a_trial_is_the_same_alone_in_any_pack_and_beside_a_failing_mate(sphere_cases, tiny_recipe):
    """Issue 23: each packed model draws its batches from its own trial-seeded stream, so its pack-mates (other
    hyper-parameters, other seeds, one that diverges at its first step) change neither its losses nor its Dice."""
    target = TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-2, optimizer="adam", intensity_shift_prob=0.5), seed=11)
    mates = {
        "alone": [target],
        "mixed, one failing": [
            TrialSpec(trial_id="m1", hyperparameters=HyperParameters(lr=3e-4, optimizer="rmsprop", intensity_shift_prob=1.0), seed=2),
            target,
            TrialSpec(trial_id="bad", hyperparameters=HyperParameters(lr=1e-2), seed=5, fault=FaultInjection(kind="nan", step=1)),
        ],
    }
    losses: dict[str, dict[int, float]] = {}
    dice = {}
    for name, trials in mates.items():
        losses[name] = {}
        results = run_trials(_plan(sphere_cases, tiny_recipe, trials, pack_size=len(trials)),
                             on_step=lambda t, s, v, name=name: losses[name].__setitem__(s, v) if t == "t" else None, progress=False)
        (result,) = [r for r in results if r.trial_id == "t"]
        assert result.state is TrialState.COMPLETE
        dice[name] = result.val_dice
    assert len(losses["alone"]) == 4
    for name in ("mixed, one failing",):
        assert sorted(losses[name]) == sorted(losses["alone"]), name
        for step, value in losses["alone"].items():
            assert losses[name][step] == pytest.approx(value, rel=1e-3), (name, step)
        assert dice[name] == pytest.approx(dice["alone"], abs=1e-3), name
