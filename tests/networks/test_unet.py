"""Full and proxy U-Nets: architecture, parameter counts, patch size checks."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from proxyhpo.errors import ConfigError
from proxyhpo.config import NetworkConfig, check_patch_size
from proxyhpo.networks import build_network, count_parameters

CASES = [
    # config, channels, num_res_units
    (NetworkConfig.full(), (16, 32, 64, 128, 256), 2),
    (NetworkConfig.proxy(5), (4, 8, 16, 32, 64), 1),
    (NetworkConfig.proxy(4), (4, 8, 16, 32), 1),
    (NetworkConfig.proxy(3), (4, 8, 16), 1),
]


@pytest.mark.parametrize("cfg, channels, res_units", CASES, ids=lambda v: getattr(v, "name", None))
def test_network_matches_monai_unet(cfg, channels, res_units):
    net = build_network(cfg)
    assert cfg.channels == channels and cfg.num_res_units == res_units
    assert cfg.strides == (2,) * (len(channels) - 1)
    direct = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=channels, strides=cfg.strides, num_res_units=res_units)
    assert count_parameters(net) == count_parameters(direct)
    # Instance norm: no buffers, so the network can be packed with vmap.
    assert list(net.buffers()) == []
    side = cfg.divisor * 2
    out = net(torch.zeros(1, 1, side, side, side))
    assert out.shape == (1, 2, side, side, side)


def test_parameter_counts_shrink_with_levels():
    counts = [count_parameters(build_network(c)) for c, _, _ in CASES]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 4_000_000  # the full network: ~4.8 M parameters
    assert counts[-1] < 10_000  # 3-level proxy: ~9 k


def test_names():
    assert NetworkConfig.full().name == "full"
    assert NetworkConfig.proxy(3).name == "proxy-L3"
    custom = NetworkConfig(kind="proxy", levels=4, base_channels=8, num_res_units=1)
    assert custom.name == "proxy-L4-c8-r1"


def test_levels_out_of_range_rejected():
    with pytest.raises(ValueError, match="levels"):
        NetworkConfig.proxy(6)
    with pytest.raises(ValueError, match="levels"):
        NetworkConfig(kind="proxy", levels=2, base_channels=4, num_res_units=1)


def test_check_patch_size_accepts_paper_patches():
    check_patch_size((96, 96, 96), 5)
    check_patch_size((128, 128, 48), 5)
    check_patch_size((160, 160, 160), 5)
    check_patch_size((20, 20, 20), 3)


def test_check_patch_size_message_names_side_and_divisor():
    with pytest.raises(ConfigError) as err:
        check_patch_size((96, 96, 40), 5, what="recipe.patch_size", path="plan.yaml")
    msg = str(err.value)
    assert msg.startswith("plan.yaml: recipe.patch_size (96, 96, 40) does not suit a 5-level U-Net")
    assert "multiple of 2^(levels-1) = 16" in msg and "40 is not" in msg
    assert "96, 96, 48" in msg  # the suggested fix rounds up to a multiple
