"""The registered families: nnU-Net's plan for DynUNet, each family's declared full and proxy sizes, read without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from proxyhpo.config import NetworkConfig
from proxyhpo.networks import build_network, count_parameters
from proxyhpo.networks.dynunet import plan_kernels_and_strides
from proxyhpo.networks.segresnet import blocks_down
from proxyhpo.networks.swinunetr import swin_depths
from proxyhpo.registry import NETWORK_FAMILIES


def test_dynunet_plans_kernels_and_strides_as_nnunet():
    """An axis 3x coarser is neither convolved across nor pooled until the others' spacing reaches it; no map falls below 4."""
    kernels, strides = plan_kernels_and_strides((64, 64, 16), (0.8, 0.8, 2.5), 6)
    assert strides == [(1, 1, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1)]  # z: 16 -> 8 -> 4, then no more
    assert kernels == [(3, 3, 1), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)]  # after one pooling z is within 2x
    # isotropic: every axis pools until the map would fall below 4 voxels, whatever the levels allow
    assert plan_kernels_and_strides((16, 16, 16), None, 5)[1] == [(1, 1, 1), (2, 2, 2), (2, 2, 2)]
    assert plan_kernels_and_strides((64, 64, 64), None, 3)[1] == [(1, 1, 1), (2, 2, 2), (2, 2, 2)]


def test_each_family_declares_its_full_network_and_how_its_proxy_shrinks():
    assert (NetworkConfig.full("dynunet").levels, NetworkConfig.full("dynunet").base_channels) == (5, 32)  # nnU-Net's
    assert blocks_down(NetworkConfig.full("segresnet").levels, NetworkConfig.full("segresnet").num_res_units) == (1, 2, 2, 4)  # MONAI's default
    assert swin_depths(NetworkConfig.full("swinunetr").levels, NetworkConfig.full("swinunetr").num_res_units) == (2, 2, 2, 2)  # MONAI's default
    assert swin_depths(3, NetworkConfig.proxy(3, "swinunetr").num_res_units) == (1, 1, 0, 0)  # the deeper stages only merge patches
    for family in ("unet", "dynunet", "segresnet", "swinunetr"):
        sizes = [count_parameters(build_network(NetworkConfig.proxy(levels, family))) for levels in (5, 4, 3)]
        full = count_parameters(build_network(NetworkConfig.full(family).for_data((32, 32, 32), None)))
        assert full > sizes[0] > sizes[1] > sizes[2], family  # the proxy-net study's sweep shrinks the network
    assert NetworkConfig.proxy(4, "dynunet").name == "dynunet:proxy-L4"
    assert NetworkConfig.full("segresnet").for_data((32, 32, 32), (1.0, 1.0, 1.0)).name == "segresnet:full"
    planned = NetworkConfig.full("dynunet").for_data((32, 32, 16), (1.0, 1.0, 3.0))
    assert (planned.patch_size, planned.spacing, planned.name) == ((32, 32, 16), (1.0, 1.0, 3.0), "dynunet:full")


@pytest.mark.parametrize("family, side", [("dynunet", 16), ("segresnet", 16), ("swinunetr", 32)])
def test_a_family_maps_any_channels_to_any_classes(family: str, side: int):
    net = build_network(NetworkConfig.proxy(3, family), in_channels=4, out_channels=3).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 4, side, side, side)).shape == (1, 3, side, side, side)
    # a family that packs keeps nothing torch.func could not stack; one that does not, says so
    assert (list(net.buffers()) == []) == NETWORK_FAMILIES[family].packable


def test_a_familys_sizes_are_read_without_torch():
    code = "import sys; from proxyhpo.config import NetworkConfig; NetworkConfig.full('dynunet'); NetworkConfig.proxy(3, 'segresnet'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_studys_family_reaches_its_search_final_model_and_proxy_net_sweep(tmp_path):
    """training.network_family: the search's proxy, the final model and the proxy-net study's networks are the family's, planned for the recipe."""
    from proxyhpo.config import StudyConfig, parse_config, resolve_recipe
    from proxyhpo.similarity.study_cells import full_network, proxy_network, study_network
    from proxyhpo.training.study_trials import _network

    study = parse_config(StudyConfig, {"name": "s", "data": {"dataset": str(tmp_path)}, "training": {"network_family": "dynunet", "recipe": "spleen"}}, "s.yaml")
    recipe = resolve_recipe("spleen")
    networks = [study_network(study), full_network(study), *(proxy_network(study, levels) for levels in (5, 4, 3)), _network(study, "full"), _network(study, "proxy")]
    assert [n.name for n in networks] == ["dynunet:proxy-L3", "dynunet:full", "dynunet:proxy-L5", "dynunet:proxy-L4", "dynunet:proxy-L3", "dynunet:full", "dynunet:proxy-L3"]
    assert {(n.patch_size, n.spacing) for n in networks} == {(tuple(recipe.patch_size), tuple(recipe.spacing))}


def test_a_swinunetr_study_needs_patch_sides_that_are_multiples_of_32_whatever_its_levels(tmp_path, capsys):
    """SwinUNETR halves every side five times: a 3-level proxy on 48³ patches suits a U-Net, not it (caught at the config, exit 2)."""
    from proxyhpo.cli import main

    recipe = {"name": "r", "spacing": None, "intensity": {"kind": "hu_window", "a_min": -57.0, "a_max": 164.0}, "patch_size": [48, 48, 48], "roi_size": [64, 64, 64]}
    document = {"name": "s", "data": {"dataset": str(tmp_path / "data")}, "training": {"recipe": recipe, "proxy_levels": 3}}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(document))
    out = tmp_path / "compiled"
    assert main(["compile", str(config), "--out", str(out)]) == 0  # the U-Net's 3 levels need multiples of 4
    config.write_text(yaml.safe_dump({**document, "training": {**document["training"], "network_family": "swinunetr"}}))
    capsys.readouterr()
    assert main(["compile", str(config), "--out", str(out / "again")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(config) in line and "training.recipe.patch_size (48, 48, 48) does not suit a swinunetr network" in line
    assert "multiple of 32" in line and "use sides such as 64, 64, 64" in line


def test_training_network_may_name_its_family_kind_and_levels_in_one_mapping(tmp_path, capsys):
    """``training.network: {family, kind, levels}`` is the same study as the flat keys; a key given twice or unknown is one line, exit 2."""
    from proxyhpo.cli import main
    from proxyhpo.config import StudyConfig, parse_config

    def study(training: dict) -> StudyConfig:
        return parse_config(StudyConfig, {"name": "s", "data": {"dataset": str(tmp_path)}, "training": {"recipe": "spleen", **training}}, "s.yaml")

    nested = study({"network": {"family": "dynunet", "kind": "proxy", "levels": 4}})
    assert nested.training == study({"network": "proxy", "network_family": "dynunet", "proxy_levels": 4}).training
    assert study({"network": {"family": "segresnet"}}).training.network == "proxy"  # kind defaults to the proxy, as network does
    for training, words in (
        ({"network": {"family": "dynunet"}, "network_family": "unet"}, "network.family and network_family both given"),
        ({"network": {"famly": "dynunet"}}, "network has no key 'famly'"),
    ):
        config = tmp_path / "study.yaml"
        config.write_text(yaml.safe_dump({"name": "s", "data": {"dataset": str(tmp_path)}, "training": {"recipe": "spleen", **training}}))
        capsys.readouterr()
        assert main(["compile", str(config), "--out", str(tmp_path / "out")]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert str(config) in line and words in line, line


def test_the_cost_calibration_times_a_deep_supervised_network():
    """A dynunet returns its heads in training: the work calibration trains on every head, as a trial does."""
    from proxyhpo.analysis.costs import calibrate

    assert calibrate(NetworkConfig.proxy(3, "dynunet"), (16, 16, 16), batch=1, steps=1, rounds=1).seconds > 0


def test_an_unplanned_network_dumps_as_before_so_its_trials_keep_their_identity():
    """Only a network planned from data carries patch_size and spacing: a U-Net trial's key (resume) is unchanged."""
    assert set(NetworkConfig.proxy(3).model_dump(mode="json")) == {"schema_version", "family", "kind", "levels", "base_channels", "num_res_units"}
    planned = NetworkConfig.proxy(3, "dynunet").for_data((32, 32, 16), (1.0, 1.0, 3.0))
    assert NetworkConfig.model_validate_json(planned.model_dump_json()) == planned
