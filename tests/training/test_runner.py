"""Running trial plans end to end on tiny synthetic volumes (CPU)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from proxyhpo.config import HyperParameters, NetworkConfig, TrialPlan, TrialResults, TrialSpec, TrialState
from proxyhpo.errors import ConfigError, DataError
from proxyhpo.networks import build_network
from proxyhpo.training import ModelPack, run_trial_file, run_trials
from proxyhpo.training.data import cache_volumes
from proxyhpo.training.evaluation import evaluate_pack


def _plan(cases, recipe, trials, **kw) -> TrialPlan:
    args = dict(recipe=recipe, train=cases[:4], val=cases[4:6], epochs=2, trials=trials, device="cpu", num_workers=0)
    args.update(kw)
    return TrialPlan(**args)


def test_trial_file_learns_and_accounts(sphere_cases, tiny_recipe, tmp_path):
    """A few epochs raise validation Dice well above its start; the result file and weights are written."""
    plan = {
        "recipe": tiny_recipe.model_dump(mode="json"),
        "train": [c.model_dump() for c in sphere_cases[:4]],
        "val": [c.model_dump() for c in sphere_cases[4:6]],
        "internal_test": [sphere_cases[6].model_dump()],
        "test": [sphere_cases[7].model_dump()],
        "epochs": 7,
        "val_every": 2,
        "device": "cpu",
        "save_model_dir": "models",
        "trials": [{"trial_id": "t0", "hyperparameters": {"lr": 0.01, "optimizer": "adam"}, "seed": 1, "data_label": "full", "round": 2}],
    }
    f = tmp_path / "trial.yaml"
    f.write_text(yaml.safe_dump(plan))
    seen = []
    (r,) = run_trial_file(f, on_epoch=lambda tid, ep, d: seen.append((tid, ep, d)), progress=False)
    assert r.state is TrialState.COMPLETE and r.fail_reason is None
    assert r.val_epochs == [2, 4, 6, 7] and seen == [("t0", e, d) for e, d in zip(r.val_epochs, r.val_dice)]
    # The starting value: the same seeded network, untrained, on the same validation volumes.
    untrained = ModelPack([TrialSpec(trial_id="t0", hyperparameters=HyperParameters(lr=0.01), seed=1)])
    start = evaluate_pack(untrained, cache_volumes(sphere_cases[4:6], tiny_recipe, "cpu", training=False), tiny_recipe)[0]
    assert r.val_dice[-1] > 0.6 and r.val_dice[-1] > start + 0.3, (start, r.val_dice)
    assert r.best_val_dice == max(r.val_dice) and r.final_val_dice == r.val_dice[-1]
    assert r.test_dice is not None and r.test_dice > 0.5
    # the internal test set is scored once, with the best-validation weights, apart from the external one
    best = build_network(NetworkConfig.proxy(3))
    best.load_state_dict(torch.load(r.model_path))
    pack = ModelPack([TrialSpec(trial_id="t0", hyperparameters=HyperParameters(lr=0.01), seed=1)], models=[best])
    internal = evaluate_pack(pack, cache_volumes(sphere_cases[6:7], tiny_recipe, "cpu", training=False), tiny_recipe)[0]
    assert r.internal_test_dice == pytest.approx(internal, abs=1e-6) and r.internal_test_dice != r.test_dice
    assert r.epochs_run == 7 and r.network == "proxy-L3" and r.round == 2 and r.pack_size == 1
    assert r.process_hours > 0 and r.gpu_hours == 0 and r.peak_gpu_mem_bytes == 0 and r.device == "cpu"
    assert 0 < r.process_hours * 3600 <= r.wall_seconds * 1.01
    assert 0 <= r.data_wait_fraction < 1
    # Results JSON beside the plan, and the best weights loadable into a fresh network.
    assert TrialResults.read(tmp_path / "trial.results.json").results == (r,)
    assert json.loads((tmp_path / "trial.results.json").read_text())["schema_version"] == 1
    net = build_network(NetworkConfig.proxy(3))
    net.load_state_dict(torch.load(r.model_path))
    assert r.model_path == str(tmp_path / "models" / "t0.pt")


def test_patch_that_does_not_suit_the_network(sphere_cases, tiny_recipe):
    recipe = tiny_recipe.model_copy(update={"patch_size": (12, 12, 12)})
    plan = _plan(sphere_cases, recipe, [TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3), network=NetworkConfig.proxy(4))])
    with pytest.raises(ConfigError, match=r"recipe.patch_size \(12, 12, 12\) does not suit a 4-level U-Net"):
        run_trials(plan, progress=False)


def test_missing_data_file(sphere_cases, tiny_recipe, tmp_path):
    cases = list(sphere_cases)
    cases[1] = cases[1].model_copy(update={"label": str(tmp_path / "gone.nii.gz")})
    plan = _plan(cases, tiny_recipe, [TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3))])
    with pytest.raises(DataError, match=r"gone.nii.gz: train\[1\].label does not exist"):
        run_trials(plan, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_cuda_without_gpu(sphere_cases, tiny_recipe):
    plan = _plan(sphere_cases, tiny_recipe, [TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3))], device="cuda")
    with pytest.raises(ConfigError, match=r"^<plan>: key 'device': 'cuda' asks for CUDA, but no CUDA GPU is available here; fix: use device auto or cpu$"):
        run_trials(plan, progress=False)


def test_disk_cache_gives_the_same_trial(sphere_cases, tiny_recipe, tmp_path):
    trials = [TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-2), seed=7)]
    in_memory = run_trials(_plan(sphere_cases, tiny_recipe, trials, epochs=1), progress=False)[0]
    on_disk = run_trials(_plan(sphere_cases, tiny_recipe, trials, epochs=1, cache_dir=str(tmp_path / "cache")), progress=False)[0]
    assert list((tmp_path / "cache").glob("recipe-*/*.pt"))  # preprocessed volumes were written
    assert on_disk.val_dice == pytest.approx(in_memory.val_dice, abs=1e-6)


def test_an_unwritable_model_folder_is_refused_before_training(sphere_cases, tiny_recipe, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    plan = _plan(sphere_cases, tiny_recipe, [TrialSpec(trial_id="t", hyperparameters=HyperParameters(lr=1e-3))], save_model_dir=str(blocker / "models"))
    started = []
    with pytest.raises(ConfigError, match=r"<plan>: key 'save_model_dir': .*a-file/models' cannot be written .*fix: give a folder you can write to"):
        run_trials(plan, on_step=lambda *args: started.append(args), progress=False)
    assert started == []  # refused before the first step
