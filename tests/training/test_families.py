"""Every registered network family packs where it can: packed training equals one-by-one training, and a family
that torch.func cannot stack trains one model per slot, said once in the log."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from proxyhpo.config import HyperParameters, NetworkConfig, TrialSpec
from proxyhpo.networks import NetworkFamily
from proxyhpo.registry import NETWORK_FAMILIES
from proxyhpo.training import pack as pack_module
from proxyhpo.training.pack import ModelPack

HYPERS = [HyperParameters(lr=1e-2, optimizer="adam"), HyperParameters(lr=3e-3, optimizer="novograd")]
PACKING = [name for name in NETWORK_FAMILIES.names() if NETWORK_FAMILIES[name].packable]


def _specs(network: NetworkConfig, ids: str = "ab", seeds: tuple[int, ...] = (0, 1), hypers=HYPERS) -> list[TrialSpec]:
    return [TrialSpec(trial_id=i, hyperparameters=h, seed=s, network=network) for i, h, s in zip(ids, hypers, seeds)]


def _steps(k: int, steps: int, side: int = 16) -> list[dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(steps):
        batch = {}
        for i in range(k):
            x = torch.rand(2, 1, side, side, side, generator=g)
            batch[i] = (x, (x > 0.6).float())
        out.append(batch)
    return out


def test_the_new_families_are_registered_and_pack_where_they_can():
    assert {"unet", "dynunet", "segresnet"} <= set(PACKING)
    assert "swinunetr" in NETWORK_FAMILIES and "swinunetr" not in PACKING  # Swin blocks keep a buffer: one model per slot


@pytest.mark.parametrize("family", PACKING)
def test_packed_training_equals_one_by_one_for_every_family_that_packs(family: str):
    """Two models of the family's 3-level proxy (different optimisers), packed, equal each trained alone: losses, weights, outputs."""
    network = NetworkConfig.proxy(3, family)
    steps = _steps(2, 2)
    packed = ModelPack(_specs(network))
    assert packed.stacked
    packed_losses = [packed.train_step(b, step=s + 1) for s, b in enumerate(steps)]
    x = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(9))
    both = packed.predict([0, 1], x)  # (1, 2 * classes, ...): the stacked forward in eval mode
    for i in range(2):
        alone = ModelPack(_specs(network, ids="x", seeds=(i,), hypers=HYPERS[i : i + 1]))
        for s, b in enumerate(steps):
            assert alone.train_step({0: b[i]}, step=s + 1)[0] == pytest.approx(packed_losses[s][i], rel=1e-4, abs=1e-5)
        # biases right before a normalisation have no true gradient, and Adam scales a near-zero gradient's float
        # noise up to a step of lr (1e-2) where the deepest level's few voxels leave a weight's gradient near zero:
        # weights agree to 5% of one such step, and the functions themselves to 1e-4
        for (name, p_alone), p_packed in zip(alone.models[0].named_parameters(), packed.models[i].parameters()):
            if not name.endswith("bias"):
                torch.testing.assert_close(p_packed, p_alone, rtol=1e-3, atol=5e-4, msg=f"{family}: {name}")
        torch.testing.assert_close(both[:, 2 * i : 2 * i + 2], alone.predict([0], x), rtol=1e-3, atol=1e-4)
    assert packed_losses[1][0] != pytest.approx(packed_losses[0][0], abs=1e-6)  # the models really trained


def test_a_deep_supervised_network_trains_on_all_heads_and_predicts_its_main_output():
    """DynUNet returns (N, S, C, ...) in training, weighted in the loss, and its main output alone when it predicts."""
    network = NetworkConfig.proxy(4, "dynunet")
    pack = ModelPack(_specs(network)[:1])
    x = torch.rand(1, 1, 32, 32, 32)
    assert pack.forward([0], x[None]).shape == (1, 1, 3, 2, 32, 32, 32)  # main output and 2 heads
    assert pack.predict([0], x).shape == (1, 2, 32, 32, 32)
    assert pack.models[0].training  # back in training mode after predicting


class _BufferedFamily(NetworkFamily):
    """A convolution that keeps a constant buffer, as Swin's relative positions do: torch.func cannot stack it."""

    name = "buffered"
    packable = False

    def build(self, cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
        net = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        net.register_buffer("offsets", torch.zeros(1))
        return net


def test_a_family_that_cannot_pack_trains_one_model_per_slot_said_once(caplog: pytest.LogCaptureFixture):
    with NETWORK_FAMILIES.temporary("buffered", _BufferedFamily, "A convolution that keeps a constant buffer."):
        pack_module._told_unstacked.discard("buffered")
        network = NetworkConfig.proxy(3, "buffered")
        steps = _steps(2, 2)
        with caplog.at_level(logging.INFO, logger="proxyhpo.training.pack"):
            packs = [ModelPack(_specs(network)), ModelPack(_specs(network))]
        assert [p.stacked for p in packs] == [False, False]
        assert sum("does not support torch.func stacking" in r.getMessage() for r in caplog.records) == 1
        losses = [packs[0].train_step(b, step=s + 1) for s, b in enumerate(steps)]
        for i in range(2):
            alone = ModelPack(_specs(network, ids="x", seeds=(i,), hypers=HYPERS[i : i + 1]))
            for s, b in enumerate(steps):
                assert alone.train_step({0: b[i]}, step=s + 1)[0] == pytest.approx(losses[s][i], rel=1e-5)


@pytest.mark.parametrize("family", ["dynunet", "segresnet", "swinunetr"])
def test_a_family_trains_as_proxy_and_full_network_through_the_runner(family: str, sphere_cases, tiny_recipe):
    """One epoch of the family's 3-level proxy and its full network (planned for the recipe), each a result with a Dice."""
    from proxyhpo.config import TrialPlan, TrialState
    from proxyhpo.training import run_trials

    recipe = tiny_recipe.model_copy(update={"patch_size": (32, 32, 32), "num_samples": 1})
    networks = [NetworkConfig.proxy(3, family), NetworkConfig.full(family)]
    networks = [n.for_data(recipe.patch_size, (1.0, 1.0, 1.0)) for n in networks]
    specs = [TrialSpec(trial_id=n.kind, hyperparameters=HyperParameters(lr=1e-2), network=n, seed=0) for n in networks]
    plan = TrialPlan(recipe=recipe, train=list(sphere_cases[:2]), val=list(sphere_cases[4:5]), epochs=1, trials=specs, device="cpu", num_workers=0)
    results = run_trials(plan, progress=False)
    assert [r.network for r in results] == [f"{family}:proxy-L3", f"{family}:full"]
    assert all(r.state == TrialState.COMPLETE and r.final_val_dice is not None for r in results)
