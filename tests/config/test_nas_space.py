"""The NAS search space schema: patch and stride candidates from the data, the decision layout, records, errors.

Turning decisions into architectures and back is tested beside the supernet, in
``tests/networks/test_nas_encoding.py``.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys

import pytest
from pydantic import ValidationError

from proxyhpo.config import DECISION_KINDS, Architecture, Decision, NasSearchSpace, NasSpaceConfig, parse_config
from proxyhpo.config.nas_space import DECISION_LAYOUT, OPERATIONS, SKIP_PAIRS, patch_size_candidates, stride_options
from proxyhpo.errors import ConfigError, InputError

# The paper's three MSD tasks, (D, H, W) of a few training images spanning the stated ranges.
BRAIN = [(155, 240, 240)] * 3  # 4 x 155 x 240 x 240
HEART = [(90, 320, 320), (100, 320, 320), (110, 320, 320), (120, 320, 320), (130, 320, 320)]  # 1 x [90-130] x 320 x 320
PROSTATE = [(11, 256, 256), (15, 320, 320), (20, 320, 320), (24, 384, 384)]  # 2 x [11-24] x [256-384]^2


def equation(median: float) -> tuple[int, ...]:
    """Eqs. (1)/(2) written out: floor(m / S^4) * S^4 - S^4 * {0..4}, S = 2, positives kept."""
    top = math.floor(median / 2**4) * 2**4
    return tuple(c for c in (top - 2**4 * k for k in range(5)) if c > 0)


def space_of(shapes, **config) -> NasSearchSpace:
    return NasSearchSpace.from_shapes(NasSpaceConfig(**config), shapes, in_channels=1)


def options(space: NasSearchSpace, name: str) -> tuple:
    return space.decision(name).options


def an_architecture(**update) -> Architecture:
    """A hand-written path (no decoder): prostate-like strides, mixed dilations, one operation and two skips off."""
    fields = {
        "patch_size": (16, 320, 320),
        "strides": ((2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 1, 1)),
        "dilations": {op: 1 if op == "enc1" else 1 + k % 3 for k, op in enumerate(OPERATIONS)},
        "keep": {op: op != "dec2" for op in OPERATIONS},
        "skips": tuple(pair for pair in SKIP_PAIRS if pair not in ((1, 2), (4, 1))),
        "activation": "leakyrelu",
        "pooling": "avg",
    }
    return Architecture(**{**fields, **update})


# -- patch-size candidates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shapes, hw, d",
    [
        pytest.param([(96, 96, 96)] * 2, (96, 80, 64, 48, 32), (96, 80, 64, 48, 32), id="isotropic"),
        pytest.param(BRAIN, (240, 224, 208, 192, 176), (144, 128, 112, 96, 80), id="brain"),
        pytest.param(HEART, (320, 304, 288, 272, 256), (96, 80, 64, 48, 32), id="heart-anisotropic"),  # median depth 110
        pytest.param(PROSTATE, (320, 304, 288, 272, 256), (16,), id="prostate-small-depth"),  # median depth 17.5
        pytest.param([(40, 50, 70), (40, 60, 90), (41, 200, 100)], (80, 64, 48, 32, 16), (32, 16), id="h-ne-w"),
    ],
)
def test_patch_candidates_follow_equations_1_and_2(shapes, hw, d):
    space = space_of(shapes)
    median_d = statistics.median(s[0] for s in shapes)
    assert options(space, "patch_hw") == hw
    assert options(space, "patch_d") == d == equation(median_d)
    # eq. (1) takes max(median H, median W): in the last case median H = 60 and median W = 90
    assert options(space, "patch_hw") == equation(max(space.median_shape[1:]))


def test_patch_candidates_count_and_fallback_below_16():
    assert patch_size_candidates(130, count=3) == (128, 112, 96)
    assert space_of(HEART, patch_candidates=2).decision("patch_d").options == (96, 80)
    assert patch_size_candidates(47) == (32, 16)  # fewer than 5 remain: keep those
    # median below S^4 = 16: the largest multiple of 4 (stages 1-2 strides) not above it, at least 4
    assert patch_size_candidates(15.5) == (12,)
    assert patch_size_candidates(11) == (8,)
    assert patch_size_candidates(3) == (4,)
    assert options(space_of([(10, 64, 64), (13, 64, 64)]), "patch_d") == (8,)  # median 11.5


# -- pooling strides ------------------------------------------------------------------------------


def test_prostate_smallest_depth_11_leaves_depth_stride_1_at_stages_3_and_4():
    space = space_of(PROSTATE)
    assert space.smallest_shape == (11, 256, 256)
    assert options(space, "stride_d.3") == (1,) and options(space, "stride_d.4") == (1,)
    assert options(space, "stride_hw.3") == (2, 1) and options(space, "stride_hw.4") == (2, 1)
    # a single-option decision stays in the space (entropy 0)
    assert space.option_counts[[d.name for d in space.decisions].index("stride_d.3")] == 1


@pytest.mark.parametrize(
    "smallest, stage3, stage4",
    [
        (11, (1,), (1,)),  # 11 / 8 < 2
        (16, (2, 1), (1,)),  # 16 / 8 = 2 is allowed; 16 / 16 < 2
        (31, (2, 1), (1,)),
        (32, (2, 1), (2, 1)),  # 32 / 16 = 2
        (155, (2, 1), (2, 1)),
    ],
)
def test_stride_2_removed_below_the_largest_pooling_size(smallest, stage3, stage4):
    assert stride_options(smallest) == (stage3, stage4)


def test_in_plane_strides_use_the_smallest_of_h_and_w_over_all_images():
    space = space_of([(64, 200, 24), (64, 30, 300), (64, 200, 200)])
    assert space.smallest_shape == (64, 30, 24)
    assert options(space, "stride_hw.3") == (2, 1) and options(space, "stride_hw.4") == (1,)  # 24 / 16 < 2
    assert options(space, "stride_d.3") == (2, 1) and options(space, "stride_d.4") == (2, 1)


# -- decisions ------------------------------------------------------------------------------------


def test_decisions_layout():
    space = space_of(BRAIN)
    names = [d.name for d in space.decisions]
    assert len(names) == len(set(names)) == 2 + 4 + 8 + 9 + 16 + 2
    assert names[:6] == ["patch_hw", "patch_d", "stride_hw.3", "stride_d.3", "stride_hw.4", "stride_d.4"]
    assert names[-2:] == ["activation", "pooling"]
    assert "dilation.enc1" not in names  # stage 1 of the encoder is fixed to dilation 1
    assert {f"dilation.{op}" for op in OPERATIONS[1:]} <= set(names)
    assert {f"keep.{op}" for op in OPERATIONS} <= set(names)
    assert {f"skip.enc{i}-dec{j}" for i, j in SKIP_PAIRS} <= set(names) and len(SKIP_PAIRS) == 16
    assert set(space.kinds) == set(DECISION_KINDS) and space.kinds[:2] == ("patch_size", "stride")
    assert space.option_counts == tuple(len(d.options) for d in space.decisions)
    assert options(space, "activation") == ("relu", "leakyrelu", "elu") and options(space, "pooling") == ("max", "avg")
    assert options(space, "dilation.dec1") == (1, 2, 3) and options(space, "keep.enc1") == (True, False)


#: The layout every saved controller state depends on: its (kind, option_count) pairs follow this order.
PINNED_LAYOUT = """
patch_hw patch_d stride_hw.3 stride_d.3 stride_hw.4 stride_d.4
keep.enc1 dilation.enc2 keep.enc2 dilation.enc3 keep.enc3 dilation.enc4 keep.enc4 dilation.enc5 keep.enc5
dilation.dec4 keep.dec4 skip.enc1-dec4 skip.enc2-dec4 skip.enc3-dec4 skip.enc4-dec4
dilation.dec3 keep.dec3 skip.enc1-dec3 skip.enc2-dec3 skip.enc3-dec3 skip.enc4-dec3
dilation.dec2 keep.dec2 skip.enc1-dec2 skip.enc2-dec2 skip.enc3-dec2 skip.enc4-dec2
dilation.dec1 keep.dec1 skip.enc1-dec1 skip.enc2-dec1 skip.enc3-dec1 skip.enc4-dec1
activation pooling
""".split()
KIND_OF_PREFIX = {"patch": "patch_size", "stride": "stride", "dilation": "dilation", "keep": "keep", "skip": "skip", "activation": "activation", "pooling": "pooling"}


def test_the_layout_is_declared_once_and_pinned():
    assert [slot.name for slot in DECISION_LAYOUT] == PINNED_LAYOUT
    assert [slot.kind for slot in DECISION_LAYOUT] == [KIND_OF_PREFIX[name.split(".")[0].split("_")[0]] for name in PINNED_LAYOUT]
    assert {slot.kind for slot in DECISION_LAYOUT} == set(DECISION_KINDS)
    # every resolved space is the layout with options, whatever the data
    for shapes in (BRAIN, HEART, PROSTATE):
        space = space_of(shapes)
        assert [(d.name, d.kind) for d in space.decisions] == [(slot.name, slot.kind) for slot in DECISION_LAYOUT]
    # each slot names the part of the network it sets, and only that
    for slot in DECISION_LAYOUT:
        assert (slot.axis != "") == (slot.kind in ("patch_size", "stride"))
        assert (slot.stage != 0) == (slot.kind == "stride")
        assert (slot.operation != "") == (slot.kind in ("dilation", "keep"))
        assert (slot.skip is not None) == (slot.kind == "skip")
    assert [slot.skip for slot in DECISION_LAYOUT if slot.kind == "skip"] == list(SKIP_PAIRS)


# -- records --------------------------------------------------------------------------------------


def test_architecture_json_round_trip_and_key(tmp_path):
    arch = an_architecture()
    path = arch.write(tmp_path / "arch.json")
    back = Architecture.read(path)
    assert back == arch and back.key == arch.key and hash(back) == hash(arch)
    assert len(arch.key) == 12 and arch.name.startswith(f"{arch.patch_size[0]}x{arch.patch_size[1]}x{arch.patch_size[2]}-")
    assert arch.name.endswith(arch.key[:6])
    assert an_architecture(activation="elu").key != arch.key
    assert '"dilations": {' in path.read_text()  # readable: named per operation
    reordered = an_architecture(skips=tuple(reversed(arch.skips)), keep=dict(reversed(arch.keep.items())))
    assert reordered == arch and reordered.key == arch.key and len({reordered, arch}) == 1  # canonical order


def test_space_json_round_trip(tmp_path):
    space = space_of(PROSTATE, channels=(8, 16, 32, 64, 128))
    back = NasSearchSpace.read(space.write(tmp_path / "space.json"))
    assert back == space and back.decisions == space.decisions
    assert type(back.decision("keep.enc1").options[0]) is bool  # JSON true stays a bool, not 1


def test_space_json_with_a_broken_layout_is_refused(tmp_path):
    path = space_of(HEART).write(tmp_path / "space.json")
    text = path.read_text().replace('"patch_hw"', '"patch_xy"', 1)
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        NasSearchSpace.read(path)
    assert "decision 0 is ('patch_xy', 'patch_size'), expected ('patch_hw', 'patch_size')" in str(err.value)
    assert "regenerate it with the NAS planning stage" in str(err.value)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document, key, text",
    [
        ({"channels": [16, 32, 64, 128]}, "channels", "exactly 5 entries"),
        ({"channels": [16, 32, 0, 128, 256]}, "channels", "positive channel count"),
        ({"dilations": [1, 0]}, "dilations", "must be >= 1"),
        ({"dilations": []}, "dilations", "at least one"),
        ({"activations": ["relu", "swish"]}, "activations", "unknown activation 'swish'"),
        ({"poolings": ["max", "max"]}, "poolings", "distinct"),
        ({"patch_candidates": 0}, "patch_candidates", "greater than or equal to 1"),
        ({"channel": [1]}, "channel", "unknown key"),
    ],
)
def test_bad_config_names_the_key(document, key, text):
    with pytest.raises(ConfigError) as err:
        parse_config(NasSpaceConfig, document, "study.yaml", prefix="nas")
    message = str(err.value)
    assert message.startswith("study.yaml: ") and f"nas.{key}" in message and text in message
    with pytest.raises(ValidationError):
        NasSpaceConfig(**document)


@pytest.mark.parametrize(
    "shapes, kwargs, text",
    [
        ([], {}, "argument 'shapes' is empty"),
        ([[16, 16]], {}, "argument 'shapes'[0] is [16, 16]"),
        ([(16, 16, 16), (16, 0, 16)], {}, "argument 'shapes'[1] is (16, 0, 16), expected three positive integers"),
        ([(16, 16, 16.5)], {}, "argument 'shapes'[0]"),
        ([(16, 16, 16)], {"in_channels": 0}, "argument 'in_channels' is 0, expected an integer >= 1"),
        ([(16, 16, 16)], {"out_channels": 0}, "argument 'out_channels' is 0"),
    ],
)
def test_bad_shapes_name_the_argument(shapes, kwargs, text):
    args = {"in_channels": 1, **kwargs}
    with pytest.raises(InputError) as err:
        NasSearchSpace.from_shapes(NasSpaceConfig(), shapes, **args)
    assert str(err.value).startswith("NasSearchSpace.from_shapes: ") and text in str(err.value)


def test_an_unknown_decision_name_is_named():
    with pytest.raises(InputError, match="argument 'name' is 'patch_x', which names no decision"):
        space_of(PROSTATE).decision("patch_x")


def test_bad_architecture_records_are_refused():
    good = an_architecture().model_dump()
    for update, text in [
        ({"strides": [[2, 2, 2]] * 3}, "needs 4 strides"),
        ({"strides": [[2, 2, 2]] * 3 + [[3, 2, 2]]}, "1 or 2"),
        ({"skips": [[5, 1]]}, "not an (encoder stage, decoder stage) pair"),
        ({"dilations": {op: 1 for op in OPERATIONS[:-1]}}, "missing ['dec1']"),
        ({"keep": {**good["keep"], "dec0": True}}, "unknown ['dec0']"),
        ({"activation": "tanh"}, "unknown activation 'tanh'"),
        ({"patch_size": [0, 32, 32]}, "positive"),
    ]:
        with pytest.raises(ValidationError, match=text.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            Architecture.model_validate({**good, **update})
    with pytest.raises(ValidationError, match="unknown decision kind"):
        Decision(name="x", kind="width", options=(1,))
    with pytest.raises(ValidationError):
        Decision(name="x", kind="keep", options=())


def test_schema_module_imports_no_torch():
    code = "import sys, proxyhpo.config.nas_space; assert 'torch' not in sys.modules and 'monai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
