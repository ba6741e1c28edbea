"""Packed trials: the batched model equals separate models, each keeps its optimiser options, and failures stay local."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss
from torch import nn

from proxyhpo.config import OPTIMIZER_OPTIONS, FaultInjection, HyperParameters, NetworkConfig, TrialSpec
from proxyhpo.networks import build_network
from proxyhpo.training.pack import ModelPack, per_model_dice_ce

HYPERS = [
    HyperParameters(lr=1e-2, optimizer="adam"),
    HyperParameters(lr=3e-3, optimizer="novograd"),
    HyperParameters(lr=1e-3, optimizer="adam"),  # same optimiser as model 0, different lr
]


def _specs(hyperparameters: list[HyperParameters], ids: str = "abc", seeds: list[int] | None = None, **kw) -> list[TrialSpec]:
    """Trials ``ids`` with these hyper-parameters, seeded 0, 1, ... unless ``seeds`` says otherwise."""
    seeds = seeds if seeds is not None else list(range(len(hyperparameters)))
    ids = list(ids)[: len(hyperparameters)]
    return [TrialSpec(trial_id=i, hyperparameters=h, seed=s, **kw) for i, h, s in zip(ids, hyperparameters, seeds, strict=True)]


def _models(k: int, cfg: NetworkConfig = NetworkConfig.proxy(3)) -> list[nn.Module]:
    """The networks of trials seeded 0 .. k-1, built as a pack builds them."""
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_network(cfg, in_channels=1, out_channels=2))
    return out


def _batches(k: int, steps: int, n: int = 2, side: int = 16) -> list[dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(123)
    steps_out = []
    for _ in range(steps):
        step = {}
        for i in range(k):
            x = torch.rand(n, 1, side, side, side, generator=g)
            step[i] = (x, (x > 0.6).float())
        steps_out.append(step)
    return steps_out


def test_per_model_dice_ce_equals_monai_dicece():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 2, 8, 8, 8, generator=g)
    labels = (torch.rand(3, 2, 1, 8, 8, 8, generator=g) > 0.5).float()
    ours = per_model_dice_ce(logits, labels)
    ref = torch.stack([DiceCELoss(to_onehot_y=True, softmax=True)(logits[k], labels[k]) for k in range(3)])
    torch.testing.assert_close(ours, ref)


def test_packed_training_matches_separate_training():
    """Three models with different optimisers and learning rates, packed, equal three separate runs."""
    steps = _batches(3, 4)
    packed = ModelPack(_specs(HYPERS))
    packed_losses = [packed.train_step(b, step=s + 1) for s, b in enumerate(steps)]
    for i in range(3):
        alone = ModelPack(_specs(HYPERS[i : i + 1], ids=["x"], seeds=[i]))
        for s, b in enumerate(steps):
            loss = alone.train_step({0: b[i]}, step=s + 1)[0]
            assert loss == pytest.approx(packed_losses[s][i], rel=1e-4, abs=1e-5)
        # Convolution biases right before an instance norm have a true gradient of zero; their float
        # noise is scaled up by adaptive optimisers, so they drift apart without changing the function.
        # Compare every weight, and the functions themselves.
        for (name, p_alone), p_packed in zip(alone.models[0].named_parameters(), packed.models[i].parameters()):
            if not name.endswith("bias"):
                torch.testing.assert_close(p_packed, p_alone, rtol=1e-3, atol=1e-5, msg=name)
        x = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(9))
        with torch.no_grad():
            torch.testing.assert_close(packed.models[i](x), alone.models[0](x), rtol=1e-3, atol=1e-4)
    # The models really moved, differently (a test of equality between untrained models proves nothing).
    fresh = _models(3)
    for i in range(3):
        moved = max((p - q).abs().max().item() for p, q in zip(packed.models[i].parameters(), fresh[i].parameters()))
        assert moved > 1e-4


def _group_of(pack: ModelPack, i: int) -> dict:
    """The one optimiser parameter group that holds model ``i``'s parameters, checked to hold exactly those."""
    params = {id(p) for p in pack.models[i].parameters()}
    groups = [g for opt in pack.optimizers for g in opt.param_groups if params & {id(p) for p in g["params"]}]
    assert len(groups) == 1, f"model {i} is spread over {len(groups)} parameter groups"
    assert {id(p) for p in groups[0]["params"]} == params
    return groups[0]


def test_weight_decay_reaches_each_models_parameter_group():
    """Two models with one optimiser but different weight decays keep their own, as does a model of another optimiser."""
    assert OPTIMIZER_OPTIONS == ("lr", "weight_decay")
    hyperparameters = [
        HyperParameters(lr=1e-2, optimizer="adam", weight_decay=1e-2),
        HyperParameters(lr=3e-3, optimizer="adam", weight_decay=0.0),
        HyperParameters(lr=1e-3, optimizer="novograd", weight_decay=5e-4),
    ]
    pack = ModelPack(_specs(hyperparameters))
    assert len(pack.optimizers) == 2  # models 0 and 1 share one Adam, in two parameter groups
    for i, h in enumerate(hyperparameters):
        group = _group_of(pack, i)
        assert (group["lr"], group["weight_decay"]) == (h.lr, h.weight_decay)
    assert _group_of(pack, 0) is not _group_of(pack, 1)


def test_weight_decay_changes_the_step_of_its_model_only():
    """The same network on the same batch, with and without weight decay, differs after one step; each equals its run alone."""
    batch = _batches(1, 1)[0][0]
    hyperparameters = [HyperParameters(lr=1e-2, optimizer="adam"), HyperParameters(lr=1e-2, optimizer="adam", weight_decay=0.5)]
    pack = ModelPack(_specs(hyperparameters, ids=["plain", "decayed"], seeds=[0, 0]))  # identical initial weights
    losses = pack.train_step({0: batch, 1: batch}, step=1)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)  # the same forward pass: only the update differs
    weights = [{n: p for n, p in pack.models[i].named_parameters() if not n.endswith("bias")} for i in range(2)]
    assert max((weights[0][n] - weights[1][n]).abs().max().item() for n in weights[0]) > 1e-3
    for i, h in enumerate(hyperparameters):
        alone = ModelPack(_specs([h], ids=["x"]))
        alone.train_step({0: batch}, step=1)
        for (name, p_alone), p_packed in zip(alone.models[0].named_parameters(), pack.models[i].parameters()):
            if not name.endswith("bias"):  # see test_packed_training_matches_separate_training
                torch.testing.assert_close(p_packed, p_alone, rtol=1e-3, atol=1e-5, msg=name)


def test_nan_fault_fails_only_its_model():
    steps = _batches(3, 3)
    specs = _specs(HYPERS)
    specs[1] = specs[1].model_copy(update={"fault": FaultInjection(kind="nan", step=2)})
    pack = ModelPack(specs)
    pack.train_step(steps[0], step=1)
    frozen = [p.detach().clone() for p in pack.models[1].parameters()]
    losses = pack.train_step(steps[1], step=2)
    assert set(losses) == {0, 2}
    assert pack.failed == {1: "loss became nan at step 2"}
    losses = pack.train_step({i: steps[2][i] for i in pack.active}, step=3)
    assert set(losses) == {0, 2}
    # The failed model is no longer updated, and its parameters stay finite.
    for p, q in zip(pack.models[1].parameters(), frozen):
        assert torch.equal(p, q)


def test_oom_fault_fails_only_its_model_and_splits_the_pack():
    steps = _batches(3, 3)
    specs = _specs(HYPERS)
    specs[0] = specs[0].model_copy(update={"fault": FaultInjection(kind="oom", step=2)})
    pack = ModelPack(specs)
    assert set(pack.train_step(steps[0], step=1)) == {0, 1, 2}
    losses = pack.train_step(steps[1], step=2)
    assert set(losses) == {1, 2}
    assert list(pack.failed) == [0] and "out of memory" in pack.failed[0] and "trial a" in pack.failed[0]
    assert pack.chunk_size == 1  # halved twice while isolating the failing model
    # The survivors' step-2 update equals what they get without any fault.
    ref = ModelPack(_specs(HYPERS))
    ref.train_step(steps[0], step=1)
    ref_losses = ref.train_step(steps[1], step=2)
    for i in (1, 2):
        assert losses[i] == pytest.approx(ref_losses[i], rel=1e-4)
        for (name, p), q in zip(pack.models[i].named_parameters(), ref.models[i].parameters()):
            if not name.endswith("bias"):  # see test_packed_training_matches_separate_training
                torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5, msg=name)


def test_predict_stacks_models_on_channels():
    pack = ModelPack(_specs(HYPERS[:2]))
    x = torch.rand(1, 1, 16, 16, 16)
    out = pack.predict([0, 1], x)
    assert out.shape == (1, 4, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(out[:, 2:], pack.models[1](x), rtol=1e-4, atol=1e-5)


def test_pack_builds_each_trials_network_from_its_seed():
    """A pack's networks are its trials', initialised from their seeds, without touching the caller's random state."""
    torch.manual_seed(42)
    before = torch.rand(1)
    torch.manual_seed(42)
    pack = ModelPack(_specs(HYPERS[:2], seeds=[5, 6]))
    assert torch.equal(torch.rand(1), before)
    for model, expected in zip(pack.models, [_models(7)[5], _models(7)[6]], strict=True):
        for p, q in zip(model.parameters(), expected.parameters(), strict=True):
            assert torch.equal(p, q)
    assert [spec.trial_id for spec in pack.specs] == ["a", "b"]
    assert pack.add(TrialSpec(trial_id="c", hyperparameters=HYPERS[2], seed=5)) == 2
    for p, q in zip(pack.models[2].parameters(), pack.models[0].parameters(), strict=True):
        assert torch.equal(p, q)  # the same seed, the same initial weights


def test_pack_rejects_mixed_architectures_and_batch_norm():
    with pytest.raises(ValueError, match=r"models\[1\] \(b\) differs in architecture"):
        ModelPack([_specs(HYPERS[:1])[0], TrialSpec(trial_id="b", hyperparameters=HYPERS[1], network=NetworkConfig.proxy(4))])
    pack = ModelPack(_specs(HYPERS[:1]))
    with pytest.raises(ValueError, match="differs in architecture"):
        pack.add(TrialSpec(trial_id="b", hyperparameters=HYPERS[1], network=NetworkConfig.proxy(4)))
    assert len(pack.specs) == len(pack.models) == 1  # the refused trial left nothing behind
    bn = [nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2)) for _ in range(2)]
    with pytest.raises(ValueError, match="instance norm"):
        ModelPack(_specs(HYPERS[:2]), models=bn)
    with pytest.raises(ValueError, match="one network per spec, got 1 for 2 specs"):
        ModelPack(_specs(HYPERS[:2]), models=bn[:1])
    with pytest.raises(ValueError, match="specs must not be empty"):
        ModelPack([])
