"""The NAS supernet: every option runs, a path uses only its parameters, any input size, memory estimate."""

from __future__ import annotations

import random

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action

from proxyhpo.config import NasSearchSpace, NasSpaceConfig
from proxyhpo.errors import InputError
from proxyhpo.networks import Supernet, estimate_memory, feature_sizes, memory_breakdown, path_parameter_count
from proxyhpo.networks.nas_encoding import decode, encode, largest

TINY = NasSpaceConfig(channels=(2, 4, 4, 8, 8))


@pytest.fixture(scope="module")
def space() -> NasSearchSpace:
    # median 32^3: patch candidates 32 and 16 on both axes; smallest 32 keeps stride 2 at stages 3 and 4
    return NasSearchSpace.from_shapes(TINY, [(32, 32, 32)], in_channels=2, out_channels=3)


@pytest.fixture(scope="module")
def net(space) -> Supernet:
    torch.manual_seed(0)
    return Supernet(space)


def covering(space: NasSearchSpace) -> list:
    """Architectures that together take every option of every decision (the k-th takes option k mod n)."""
    return [decode(space, [k % n for n in space.option_counts]) for k in range(max(space.option_counts))]


def test_tiny_space_has_the_expected_options(space):
    assert space.decision("patch_hw").options == (32, 16) and space.decision("patch_d").options == (32, 16)
    assert all(space.decision(f"stride_{a}.{s}").options == (2, 1) for a in ("hw", "d") for s in (3, 4))


def test_every_option_of_every_decision_runs_on_its_patch(space, net):
    rng = random.Random(0)
    archs = [largest(space), *covering(space)] + [decode(space, [rng.randrange(n) for n in space.option_counts]) for _ in range(4)]
    seen = [set() for _ in space.decisions]
    with torch.no_grad():
        for arch in archs:
            for k, index in enumerate(encode(space, arch)):
                seen[k].add(index)
            out = net(torch.randn(1, 2, *arch.patch_size), arch)
            assert out.shape == (1, 3, *arch.patch_size)
            assert torch.isfinite(out).all()
    assert [len(s) for s in seen] == list(space.option_counts)


def test_the_largest_child_uses_every_parameter(space, net):
    names = {name for name, _ in net.named_parameters()}
    assert net.parameter_names(largest(space)) == names
    assert path_parameter_count(space, largest(space)) == sum(p.numel() for p in net.parameters())
    assert list(net.buffers()) == []  # instance norm without running statistics


def _zeroing(space):
    """The largest child with stage enc3's and dec2's operations zeroed and the skips enc1->dec2, enc4->dec1 off."""
    names = [d.name for d in space.decisions]
    choices = list(encode(space, largest(space)))
    for name in ("keep.enc3", "keep.dec2", "skip.enc1-dec2", "skip.enc4-dec1"):
        choices[names.index(name)] = space.decision(name).options.index(False)
    choices[names.index("dilation.dec1")] = 2
    return decode(space, choices)


def test_the_zero_operation_removes_the_path(space):
    torch.manual_seed(1)
    net = Supernet(space)
    arch = _zeroing(space)
    used = net.parameter_names(arch)
    removed = {"ops.enc3.conv.weight", "ops.dec2.conv.weight", "skips.enc1-dec2.conv.weight", "skips.enc1-dec2.conv.bias", "skips.enc4-dec1.conv.weight"}
    assert removed.isdisjoint(used)
    assert "ops.dec1.conv.weight" in used and "skips.enc1-dec1.conv.weight" in used
    out = net(torch.randn(2, 2, *arch.patch_size), arch)
    out.square().mean().backward()
    params = dict(net.named_parameters())
    for name, p in params.items():
        if name in used:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or not p.grad.any(), name
    assert sum(params[n].numel() for n in used) == path_parameter_count(space, arch)


def test_dilation_rates_share_one_kernel(space, net):
    big = largest(space)
    names = [d.name for d in space.decisions]
    choices = list(encode(space, big))
    choices[names.index("dilation.enc2")] = 2
    dilated = decode(space, choices)
    assert dilated.dilations["enc2"] == 3
    assert net.parameter_names(dilated) == net.parameter_names(big)
    x = torch.randn(1, 2, *big.patch_size)
    with torch.no_grad():
        assert not torch.allclose(net(x, dilated), net(x, big))


@pytest.mark.parametrize("spatial", [(17, 19, 23), (11, 33, 32), (3, 5, 7), (1, 9, 6), (40, 24, 24)])
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_whole_images_of_any_size_keep_their_size(space, net, spatial, pooling):
    names = [d.name for d in space.decisions]
    for arch in (largest(space), covering(space)[1]):
        choices = list(encode(space, arch))
        choices[names.index("pooling")] = space.decision("pooling").options.index(pooling)
        arch = decode(space, choices)
        with torch.no_grad():
            out = net(torch.randn(1, 2, *spatial), arch)
        assert out.shape == (1, 3, *spatial) and torch.isfinite(out).all()


def test_feature_sizes_round_up():
    assert feature_sizes((3, 5, 7), [(2, 2, 2)] * 4) == ((3, 5, 7), (2, 3, 4), (1, 2, 2), (1, 1, 1), (1, 1, 1))


def test_bad_inputs_name_the_argument(space, net):
    arch = largest(space)
    with pytest.raises(InputError, match=r"argument 'x' has shape \(1, 1, 16, 16, 16\), expected \(B, 2, D, H, W\)"):
        net(torch.zeros(1, 1, 16, 16, 16), arch)
    with pytest.raises(InputError, match="argument 'x' has shape"):
        net(torch.zeros(2, 16, 16, 16), arch)
    other = largest(NasSearchSpace.from_shapes(TINY, [(64, 64, 64)], in_channels=2))
    with pytest.raises(InputError, match=r"argument 'arch' has patch_hw = 64, expected one of \(32, 16\)"):
        net(torch.zeros(1, 2, 16, 16, 16), other)
    with pytest.raises(InputError, match="argument 'space' is a NasSpaceConfig"):
        Supernet(TINY)  # type: ignore[arg-type]
    for kwargs, text in [
        ({"batch_size": 0}, "argument 'batch_size' is 0, expected an integer >= 1"),
        ({"batch_size": 1, "bytes_per_value": 0}, "argument 'bytes_per_value' is 0"),
        ({"batch_size": 1, "spatial_size": (16, 16)}, "argument 'spatial_size' is (16, 16), expected three positive integers"),
    ]:
        with pytest.raises(InputError, match=text.replace("(", r"\(").replace(")", r"\)")):
            estimate_memory(space, arch, **kwargs)


# -- memory estimate ------------------------------------------------------------------------------


def _saved_activation_bytes(net: Supernet, x: torch.Tensor, arch) -> int:
    """Bytes autograd saves for backward in a forward pass, parameters excluded (each storage once)."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x, arch)
    return sum(seen.values())


def test_estimate_counts_exactly_what_autograd_saves(space, net):
    rng = random.Random(2)
    for arch in [largest(space), _zeroing(space), *(decode(space, [rng.randrange(n) for n in space.option_counts]) for _ in range(4))]:
        for batch in (1, 3):
            measured = _saved_activation_bytes(net, torch.randn(batch, 2, *arch.patch_size), arch)
            estimated = memory_breakdown(space, arch, batch)["saved"]
            # instance norm's per-channel mean and inverse std (a few hundred bytes) are not counted
            assert 0.99 * measured <= estimated <= measured, (arch.name, batch, estimated, measured)


def _peak_bytes(fn) -> int:
    """Peak of the bytes of every tensor alive while ``fn`` runs (CPU profiler's memory timeline)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    live = peak = 0
    for _, action, _, size in prof._memory_profile().timeline:
        live += size if action in (Action.PREEXISTING, Action.CREATE) else -size if action == Action.DESTROY else 0
        peak = max(peak, live)
    return peak


def test_estimate_matches_the_measured_peak_within_15_percent():
    """Training step (forward, backward, Adam) and inference, measured on the CPU by the profiler.

    Channels are multiples of 16: the CPU's oneDNN pads fewer channels to 16 in its convolution buffers,
    which the estimate does not model (a 2- or 4-channel convolution would be underestimated).
    """
    space = NasSearchSpace.from_shapes(NasSpaceConfig(channels=(16,) * 5), [(16, 32, 32)], in_channels=1)
    torch.manual_seed(0)
    net = Supernet(space)
    names = [d.name for d in space.decisions]
    choices = [0] * len(names)
    for name in ("keep.enc2", "keep.dec3", "skip.enc1-dec3", "skip.enc2-dec1", "pooling"):
        choices[names.index(name)] = 1
    for arch, batch in ((largest(space), 2), (decode(space, choices), 2)):
        x = torch.randn(batch, 1, *arch.patch_size)
        used = net.parameter_names(arch)
        optimiser = torch.optim.Adam([p for n, p in net.named_parameters() if n in used])

        def step():
            optimiser.zero_grad(set_to_none=True)
            net(x, arch).square().mean().backward()
            optimiser.step()

        step()  # Adam's state exists from the first step on
        trained = _peak_bytes(step)
        with torch.no_grad():
            inferred = _peak_bytes(lambda: net(x, arch))
        for estimated, measured in ((estimate_memory(space, arch, batch), trained), (estimate_memory(space, arch, batch, training=False), inferred)):
            assert abs(estimated - measured) <= 0.15 * measured, (arch.name, estimated, measured)
        assert net.parameter_names(arch) and path_parameter_count(space, arch) * 4 == memory_breakdown(space, arch, batch)["parameters"]


def test_estimate_grows_with_the_architecture(space):
    big = largest(space)
    small = decode(space, [n - 1 for n in space.option_counts])
    assert estimate_memory(space, big, 2) > estimate_memory(space, small, 2)
    assert estimate_memory(space, big, 2) > estimate_memory(space, big, 1) > estimate_memory(space, big, 1, training=False)
    assert estimate_memory(space, big, 1, bytes_per_value=2) < estimate_memory(space, big, 1)
    whole = estimate_memory(space, big, 1, training=False, spatial_size=(64, 64, 64))
    assert whole > estimate_memory(space, big, 1, training=False)
