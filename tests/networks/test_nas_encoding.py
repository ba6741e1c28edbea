"""The NAS encoder/decoder: option indices to a supernet path and back, the largest child, errors."""

from __future__ import annotations

import random

import pytest

from proxyhpo.config import NasSearchSpace, NasSpaceConfig
from proxyhpo.config.nas_space import DECISION_LAYOUT, SKIP_PAIRS
from proxyhpo.errors import InputError
from proxyhpo.networks.nas_encoding import decode, encode, largest

# The paper's three MSD tasks, (D, H, W) of a few training images spanning the stated ranges.
BRAIN = [(155, 240, 240)] * 3  # 4 x 155 x 240 x 240
HEART = [(90, 320, 320), (100, 320, 320), (110, 320, 320), (120, 320, 320), (130, 320, 320)]  # 1 x [90-130] x 320 x 320
PROSTATE = [(11, 256, 256), (15, 320, 320), (20, 320, 320), (24, 384, 384)]  # 2 x [11-24] x [256-384]^2


def space_of(shapes, **config) -> NasSearchSpace:
    return NasSearchSpace.from_shapes(NasSpaceConfig(**config), shapes, in_channels=1)


def test_decode_encode_round_trip():
    space = space_of(HEART)
    rng = random.Random(0)
    for _ in range(50):
        choices = tuple(rng.randrange(n) for n in space.option_counts)
        arch = decode(space, choices)
        assert encode(space, arch) == choices
        assert decode(space, encode(space, arch)) == arch
    # every option of every decision
    for k, n in enumerate(space.option_counts):
        for option in range(n):
            choices = [0] * len(space.option_counts)
            choices[k] = option
            assert encode(space, decode(space, choices))[k] == option


def test_each_decision_sets_its_own_part_of_the_architecture():
    # changing one decision's option changes the architecture, and no other decision's value
    space = space_of(HEART)
    base = decode(space, [0] * len(space.decisions))
    for k, (slot, n) in enumerate(zip(DECISION_LAYOUT, space.option_counts)):
        if n == 1:
            continue
        choices = [0] * len(space.decisions)
        choices[k] = 1
        arch = decode(space, choices)
        assert arch != base, slot.name
        assert [i for i, (a, b) in enumerate(zip(encode(space, arch), encode(space, base))) if a != b] == [k]


def test_decode_reads_each_kind_into_the_architecture():
    space = space_of(HEART)
    names = [d.name for d in space.decisions]
    choices = [0] * len(names)
    for name, index in {"patch_hw": 1, "patch_d": 4, "stride_d.3": 1, "dilation.enc2": 2, "keep.dec1": 1, "skip.enc1-dec3": 1, "activation": 2, "pooling": 1}.items():
        choices[names.index(name)] = index
    arch = decode(space, choices)
    assert arch.patch_size == (32, 304, 304)
    assert arch.strides == ((2, 2, 2), (2, 2, 2), (1, 2, 2), (2, 2, 2))
    assert arch.dilations["enc2"] == 3 and arch.dilations["enc1"] == 1
    assert arch.keep["dec1"] is False and sum(arch.keep.values()) == 8
    assert (1, 3) not in arch.skips and len(arch.skips) == 15
    assert (arch.activation, arch.pooling) == ("elu", "avg")


def test_largest_is_the_papers_first_child():
    space = space_of(BRAIN)
    big = largest(space)
    assert big.patch_size == (144, 240, 240)
    assert big.strides == ((2, 2, 2),) * 4
    assert set(big.dilations.values()) == {1}
    assert all(big.keep.values()) and set(big.skips) == set(SKIP_PAIRS)
    assert decode(space, [0] * len(space.decisions)) == big  # option 0 everywhere with the default config
    custom = space_of(BRAIN, dilations=(3, 2), activations=("elu", "relu"))
    assert set(largest(custom).dilations.values()) == {1, 2} and largest(custom).activation == "elu"


@pytest.mark.parametrize("shapes", [pytest.param([(96, 96, 96)] * 2, id="isotropic"), pytest.param(HEART, id="heart"), pytest.param(PROSTATE, id="prostate")])
def test_largest_takes_the_largest_patch_and_every_stride_2_the_space_allows(shapes):
    space = space_of(shapes)
    hw, d = space.decision("patch_hw").options, space.decision("patch_d").options
    assert largest(space).patch_size == (d[0], hw[0], hw[0])
    strides = largest(space).strides
    assert strides[:2] == ((2, 2, 2), (2, 2, 2))
    for stage in (3, 4):
        assert strides[stage - 1] == (max(space.decision(f"stride_d.{stage}").options), *(2 * (max(space.decision(f"stride_hw.{stage}").options),)))


def test_prostate_keeps_depth_stride_1_at_stages_3_and_4():
    assert largest(space_of(PROSTATE)).strides == ((2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))


def test_a_space_read_back_from_json_decodes_the_same(tmp_path):
    space = space_of(PROSTATE, channels=(8, 16, 32, 64, 128))
    back = NasSearchSpace.read(space.write(tmp_path / "space.json"))
    assert decode(back, [0] * len(back.decisions)) == largest(space)
    choices = [random.Random(3).randrange(n) for n in space.option_counts]
    assert decode(back, choices) == decode(space, choices) and decode(back, choices).key == decode(space, choices).key


def test_decode_and_encode_errors_name_the_argument_and_the_decision():
    space = space_of(PROSTATE)
    n = len(space.decisions)
    with pytest.raises(InputError, match=rf"argument 'choices' has {n - 1} entries, expected {n} \(one per decision\)"):
        decode(space, [0] * (n - 1))
    bad = [0] * n
    bad[1] = 1  # patch_d has a single option here
    with pytest.raises(InputError, match=r"argument 'choices'\[1\] \(patch_d\) is 1, expected an index in 0\.\.0 \(1 options\)"):
        decode(space, bad)
    bad[1] = -1
    with pytest.raises(InputError, match=r"\(patch_d\) is -1"):
        decode(space, bad)
    for wrong in (0.0, True, "0"):
        bad[1] = wrong
        with pytest.raises(InputError, match=r"argument 'choices'\[1\] \(patch_d\) is .*expected an integer index"):
            decode(space, bad)
    heart_arch = largest(space_of(HEART))
    with pytest.raises(InputError, match=r"argument 'arch' has patch_hw = 320, expected one of \(320, 304|argument 'arch' has patch_d = 96, expected one of \(16,\)"):
        encode(space, heart_arch)
    shifted = largest(space).model_copy(update={"strides": ((1, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))})
    with pytest.raises(InputError, match=r"stride \(1, 2, 2\) after stage 1, expected \(2, 2, 2\)"):
        encode(space, shifted)
    with pytest.raises(InputError, match=r"with H != W"):
        encode(space, largest(space).model_copy(update={"patch_size": (16, 320, 256)}))
    with pytest.raises(InputError, match=r"dilation 2 at enc1, expected 1 \(fixed by the paper\)"):
        encode(space, largest(space).model_copy(update={"dilations": {**largest(space).dilations, "enc1": 2}}))
    with pytest.raises(InputError, match="argument 'arch' is a tuple, expected an Architecture"):
        encode(space, (0,) * n)
    assert str(pytest.raises(InputError, decode, space, []).value).startswith("nas_encoding.decode: ")
