"""A pack's memory counted on the meta device (issue 23: estimate before allocate)."""

from __future__ import annotations

import pytest
import torch

from proxyhpo.config import NetworkConfig
from proxyhpo.errors import ConfigError
from proxyhpo.networks import build_network
from proxyhpo.training.memory import check_pack_fits, model_training_bytes


def test_the_count_follows_the_batch_the_patch_and_the_network() -> None:
    proxy = NetworkConfig.proxy(3)
    one, two = (model_training_bytes(proxy, 1, 2, (32, 32, 32), batch) for batch in (1, 2))
    parameters = 16 * sum(p.numel() for p in build_network(proxy, 1, 2).parameters())
    # activations scale with the batch and the patch (the weights each convolution saves do not: hence not exactly)
    assert two - parameters == pytest.approx(2 * (one - parameters), rel=0.02)
    assert model_training_bytes(proxy, 1, 2, (64, 64, 64), 1) - parameters == pytest.approx(8 * (one - parameters), rel=0.05)
    assert model_training_bytes(NetworkConfig.full(), 1, 2, (32, 32, 32), 1) > 3 * one  # the full U-Net is much larger
    for family in ("dynunet", "segresnet"):
        assert model_training_bytes(NetworkConfig.proxy(3, family).for_data((32, 32, 32), (1.0, 1.0, 1.0)), 4, 4, (32, 32, 32), 1) > 0
    assert model_training_bytes(NetworkConfig.proxy(3, "swinunetr"), 1, 2, (32, 32, 32), 1) is None  # its forward reads values: not counted


def test_a_pack_larger_than_the_free_memory_is_refused_naming_pack_size_and_what_fits() -> None:
    proxy = NetworkConfig.proxy(3)
    per_model = model_training_bytes(proxy, 1, 2, (32, 32, 32), 2)
    shape = dict(in_channels=1, out_channels=2, patch_size=(32, 32, 32), batch_size=2, device=torch.device("cpu"), where="plan.yaml")
    check_pack_fits(proxy, 4, available=4 * per_model, **shape)  # exactly fits
    with pytest.raises(ConfigError) as caught:
        check_pack_fits(proxy, 4, available=3 * per_model + 1, **shape)
    message = str(caught.value)
    assert message.startswith("plan.yaml: pack_size 4 needs at least") and "proxy-L3 models" in message and "set pack_size to at most 3 or to auto" in message
    with pytest.raises(ConfigError, match="one model does not fit"):
        check_pack_fits(proxy, 2, available=per_model - 1, **shape)
