"""The NAS search space of the resource-optimised macro search (torch-free).

The paper (``papers/resource-optimized-nas-3d-segmentation.md``, section 2.1, Table 1 and Fig. 2) searches one path
through a U-Net supernet of 5 encoder stages (``enc1`` .. ``enc5``, ``enc5`` the bottleneck) and 4
decoder stages (``dec4`` .. ``dec1``; decoder stage j works at encoder stage j's resolution). This is the
schema of that search, and imports no torch:

- :class:`NasSpaceConfig`: what a user writes (channels, dilation rates, activations, pooling types,
  number of patch-size candidates). The paper's text gives the counts (three activation functions, two
  pooling types, five patch candidates) and fixes encoder stage 1's dilation to 1; the activations,
  pooling types, dilation rates and channels it does not name are ours.
- :data:`DECISION_LAYOUT`: the decisions, in the controller's order, each with its kind and the part of
  the network it sets; declared once, here. Every other place (the resolved space's check, option
  resolution, the encoder/decoder :mod:`proxyhpo.networks.nas_encoding`) iterates it.
- :class:`NasSearchSpace`: the space resolved from the training images' shapes by the planning stage
  (patch-size candidates from the median shape, pooling strides from the smallest one), one
  :class:`Decision` (name, kind, options) per entry of the layout; every later stage reads it.
- :class:`Architecture`: one path through the supernet (one option per decision), readable on its own
  as the exported network config. Turning option indices into an architecture and back is the
  network's business: :func:`proxyhpo.networks.nas_encoding.decode` and ``encode``.

Example:
    >>> space = NasSearchSpace.from_shapes(NasSpaceConfig(), [(155, 240, 240)] * 4, in_channels=4)
    >>> space.decision("patch_hw").options, space.decision("patch_d").options
    ((240, 224, 208, 192, 176), (144, 128, 112, 96, 80))
    >>> [slot.name for slot in DECISION_LAYOUT[:3]], len(space.decisions) == len(DECISION_LAYOUT)
    (['patch_hw', 'patch_d', 'stride_hw.3'], True)
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from pydantic import Field, field_validator, model_validator

from proxyhpo.config.base import Record, StrictModel, brief
from proxyhpo.errors import InputError

__all__ = [
    "ACTIVATIONS",
    "AXES",
    "DECISION_KINDS",
    "DECISION_LAYOUT",
    "OPERATIONS",
    "PATCH_STEP",
    "POOLINGS",
    "SKIP_PAIRS",
    "STRIDE_STAGES",
    "Architecture",
    "Decision",
    "DecisionSlot",
    "NasSearchSpace",
    "NasSpaceConfig",
    "patch_size_candidates",
    "stride_options",
]

#: Every kind of decision (:attr:`NasSearchSpace.kinds` lists a space's kinds in decision order).
DECISION_KINDS: tuple[str, ...] = ("patch_size", "stride", "dilation", "keep", "skip", "activation", "pooling")

#: The searchable residual 3x3x3 convolutions, one per stage, in the order the network runs them.
OPERATIONS: tuple[str, ...] = ("enc1", "enc2", "enc3", "enc4", "enc5", "dec4", "dec3", "dec2", "dec1")

#: Candidate skip connections ``(encoder stage i, decoder stage j)``, i and j in 1..4, in decision order.
SKIP_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for j in (4, 3, 2, 1) for i in (1, 2, 3, 4))

#: Activations the supernet implements (MONAI ``Act`` names; parameter-free, so switching costs nothing). The paper
#: searches "three activation functions" without naming them: these three are ours.
ACTIVATIONS: tuple[str, ...] = ("relu", "leakyrelu", "elu")

#: Pooling types (MONAI ``Pool`` names): max and average pooling. The paper searches "two pooling operation types"
#: without naming them: these two are ours.
POOLINGS: tuple[str, ...] = ("max", "avg")

#: S^4 of eqs. (1) and (2): stride S = 2 over 4 poolings. Patch candidates are multiples of it.
PATCH_STEP = 16

#: Pooling stride of stages 1 and 2, fixed by the paper.
FIXED_STRIDE = 2

#: Encoder stages after which the pooling stride is searched; the others (1 and 2) pool by :data:`FIXED_STRIDE`.
STRIDE_STAGES: tuple[int, ...] = (3, 4)

#: Axis kinds of patch and stride decisions: ``hw`` in-plane (H and W together, always equal), ``d`` depth.
AXES: tuple[str, ...] = ("hw", "d")

#: Operations whose dilation rate is fixed to :data:`FIXED_DILATION` by the paper (encoder stage 1): not decisions.
FIXED_DILATION_OPERATIONS: tuple[str, ...] = ("enc1",)
FIXED_DILATION = 1

#: Largest pooling size (and stride): a stride is removed where it would take a feature below this.
LARGEST_POOL = 2

#: Depth (or side) below which eqs. (1)/(2) leave no candidate: fall back to a multiple of this
#: (the product of the fixed strides of stages 1 and 2).
FALLBACK_STEP = FIXED_STRIDE * FIXED_STRIDE

_STAGES = 5


def _op_stage(op: str) -> tuple[str, int]:
    return op[:3], int(op[3:])


class DecisionSlot(NamedTuple):
    """One entry of :data:`DECISION_LAYOUT`: a decision's name, its kind and the part of the network it sets.

    Attributes:
        name: unique within the layout (``patch_hw``, ``stride_d.3``, ``dilation.enc2``, ``keep.dec1``,
            ``skip.enc1-dec3``, ``activation``, ``pooling``).
        kind: one of :data:`DECISION_KINDS`; with the fields below it says which entry of an
            :class:`Architecture` the decision sets.
        axis: ``hw`` or ``d`` (:data:`AXES`) for a ``patch_size`` or ``stride`` decision, else ``""``.
        stage: the encoder stage (:data:`STRIDE_STAGES`) a ``stride`` decision pools after, else 0.
        operation: the searchable convolution (:data:`OPERATIONS`) of a ``dilation`` or ``keep`` decision,
            else ``""``.
        skip: the ``(encoder stage, decoder stage)`` pair (:data:`SKIP_PAIRS`) of a ``skip`` decision, else
            ``None``.
    """

    name: str
    kind: str
    axis: str = ""
    stage: int = 0
    operation: str = ""
    skip: tuple[int, int] | None = None


def _declare_layout() -> tuple[DecisionSlot, ...]:
    layout = [DecisionSlot(f"patch_{axis}", "patch_size", axis=axis) for axis in AXES]
    layout += [DecisionSlot(f"stride_{axis}.{stage}", "stride", axis=axis, stage=stage) for stage in STRIDE_STAGES for axis in AXES]
    for op in OPERATIONS:
        if op not in FIXED_DILATION_OPERATIONS:
            layout.append(DecisionSlot(f"dilation.{op}", "dilation", operation=op))
        layout.append(DecisionSlot(f"keep.{op}", "keep", operation=op))
        side, stage = _op_stage(op)
        if side == "dec":
            layout += [DecisionSlot(f"skip.enc{i}-dec{j}", "skip", skip=(i, j)) for i, j in SKIP_PAIRS if j == stage]
    layout += [DecisionSlot("activation", "activation"), DecisionSlot("pooling", "pooling")]
    return tuple(layout)


#: The decisions of every space, in the controller's order (``kind`` in brackets); the one declaration
#: that the resolved space's check, option resolution and the encoder/decoder
#: (:mod:`proxyhpo.networks.nas_encoding`) iterate. Reordering it changes every saved controller state's
#: meaning: its ``(kind, option_count)`` pairs follow this order.
#:
#: 1. ``patch_hw``, ``patch_d`` [patch_size]: in-plane (H = W) and depth patch sizes, eqs. (1) and (2).
#: 2. ``stride_hw.3``, ``stride_d.3``, ``stride_hw.4``, ``stride_d.4`` [stride]: pooling stride after
#:    encoder stages 3 and 4, in-plane (H and W together) and in depth; options ``(2, 1)`` or ``(1,)``.
#:    Stages 1 and 2 always pool by 2 (the paper fixes them), so they are not decisions.
#: 3. Per operation in :data:`OPERATIONS` order: ``dilation.<op>`` [dilation] (not for ``enc1``: its rate
#:    is fixed to 1), ``keep.<op>`` [keep] (``False`` = the zero operation on the stage's searchable conv)
#:    and, for a decoder stage ``decJ``, ``skip.encI-decJ`` [skip] for I = 1..4 (the 1x1x1 skip connection
#:    from encoder stage I into decoder stage J, on or off: the zero operation on skips).
#: 4. ``activation`` [activation] and ``pooling`` [pooling], each one network-wide choice.
#:
#: Option 0 of every decision belongs to the largest child with the default config: the largest patch,
#: stride 2, dilation 1, every operation kept, every skip on, ``relu``, ``max``.
DECISION_LAYOUT: tuple[DecisionSlot, ...] = _declare_layout()


def patch_size_candidates(median: float, count: int = 5, step: int = PATCH_STEP) -> tuple[int, ...]:
    """Patch-size candidates along one axis, eqs. (1)/(2) of the paper, largest first.

    ``floor(median / step) * step - step * {0, 1, .., count - 1}``; non-positive candidates are dropped.
    When none remains (``median < step``), the one candidate is the largest multiple of
    :data:`FALLBACK_STEP` (4: the fixed strides of stages 1 and 2) not above the median, at least 4.

    Args:
        median: the training images' median extent along the axis (``max(H, W)`` for the in-plane one).
        count: number of candidates asked for (the paper: 5).
        step: ``S^4`` (16).

    Example:
        >>> patch_size_candidates(320), patch_size_candidates(20), patch_size_candidates(11)
        ((320, 304, 288, 272, 256), (16,), (8,))
    """
    top = math.floor(median / step) * step
    kept = tuple(top - step * k for k in range(count) if top - step * k > 0)
    if kept:
        return kept
    return (max(FALLBACK_STEP, math.floor(median / FALLBACK_STEP) * FALLBACK_STEP),)


def stride_options(smallest: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Pooling-stride options after encoder stages 3 and 4 along one axis kind.

    Stride 2 is allowed at a stage only while ``smallest / P >= 2`` (the largest pooling size), where
    ``P`` is the largest possible product of strides up to and including that stage (stages 1 and 2
    pool by 2; stage 4's product counts stage 3's stride only where 2 is allowed there).

    Args:
        smallest: the smallest training image's extent along the axis (in-plane: ``min(H, W)``).

    Returns:
        options of stage 3 and of stage 4: ``(2, 1)``, or ``(1,)`` where 2 is removed.

    Example:
        >>> stride_options(11)  # the paper's prostate depth
        ((1,), (1,))
        >>> stride_options(24), stride_options(240)
        (((2, 1), (1,)), ((2, 1), (2, 1)))
    """
    product = FIXED_STRIDE * FIXED_STRIDE
    out = []
    for _stage in STRIDE_STAGES:
        if smallest / (product * 2) >= LARGEST_POOL:
            out.append((2, 1))
            product *= 2
        else:
            out.append((1,))
    return out[0], out[1]


class NasSpaceConfig(StrictModel):
    """What a user writes about the NAS search space.

    Attributes:
        channels: output channels of encoder stages 1..5 (decoder stages 1..4 mirror stages 1..4); ours:
            the paper's text states no widths.
        dilations: dilation rates the controller chooses from for each searchable 3x3x3 convolution
            (encoder stage 1's is fixed to 1, as the paper fixes it); the rates 1, 2, 3 are ours: the paper
            says the controller selects the dilation rate but not from which rates.
        activations: activation functions (one network-wide choice); see :data:`ACTIVATIONS` (the paper's
            count, three; the functions are ours).
        poolings: pooling types (one network-wide choice); see :data:`POOLINGS` (the paper's count, two;
            the types are ours).
        patch_candidates: candidates per patch axis in eqs. (1)/(2) (the paper: 5).

    Example:
        >>> NasSpaceConfig().channels
        (16, 32, 64, 128, 256)
        >>> NasSpaceConfig(channels=(2, 4, 4, 8, 8), dilations=(1, 2)).dilations
        (1, 2)
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    dilations: tuple[int, ...] = (1, 2, 3)
    activations: tuple[str, ...] = ("relu", "leakyrelu", "elu")
    poolings: tuple[str, ...] = ("max", "avg")
    patch_candidates: int = Field(5, ge=1, le=32)

    @field_validator("channels")
    @classmethod
    def _five_positive_channels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) != _STAGES:
            raise ValueError(f"needs exactly {_STAGES} entries (one per encoder stage), got {len(value)}: {value}")
        if any(c < 1 for c in value):
            raise ValueError(f"every entry must be a positive channel count, got {value}")
        return value

    @field_validator("dilations")
    @classmethod
    def _positive_unique_dilations(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one dilation rate, got ()")
        if any(d < 1 for d in value):
            raise ValueError(f"every dilation rate must be >= 1, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"dilation rates must be distinct, got {value}")
        return value

    @field_validator("activations")
    @classmethod
    def _known_activations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known("activation", value, ACTIVATIONS)

    @field_validator("poolings")
    @classmethod
    def _known_poolings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known("pooling type", value, POOLINGS)


def _known(what: str, value: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError(f"needs at least one {what}, got ()")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r} in {value}; expected some of {allowed}")
    if len(set(value)) != len(value):
        raise ValueError(f"{what}s must be distinct, got {value}")
    return value


Option = int | str | bool

#: What an option of each kind of decision may be (a resolved space read from JSON is checked against it).
_VALID_OPTION: dict[str, Callable[[Any], bool]] = {
    "patch_size": lambda v: type(v) is int and v > 0,
    "stride": lambda v: type(v) is int and v in (1, FIXED_STRIDE),
    "dilation": lambda v: type(v) is int and v > 0,
    "keep": lambda v: type(v) is bool,
    "skip": lambda v: type(v) is bool,
    "activation": lambda v: v in ACTIVATIONS,
    "pooling": lambda v: v in POOLINGS,
}


class Decision(StrictModel):
    """One choice the controller makes: a name, a kind and the options it picks an index from.

    Attributes:
        name: unique within a space (``patch_hw``, ``stride_d.3``, ``dilation.enc2``, ``keep.dec1``,
            ``skip.enc1-dec3``, ``activation``, ``pooling``).
        kind: one of :data:`DECISION_KINDS`.
        options: at least one option; a decision with one option stays in the space (its entropy is 0).
    """

    name: str = Field(min_length=1)
    kind: str
    options: tuple[Option, ...] = Field(min_length=1)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in DECISION_KINDS:
            raise ValueError(f"unknown decision kind {value!r}; expected one of {DECISION_KINDS}")
        return value

    @field_validator("options")
    @classmethod
    def _distinct(cls, value: tuple[Option, ...]) -> tuple[Option, ...]:
        if len({(type(v), v) for v in value}) != len(value):
            raise ValueError(f"options must be distinct, got {value}")
        return value


Triple = tuple[int, int, int]


class Architecture(Record):
    """One path through the supernet: a child network, readable on its own as an exported config.

    Attributes:
        patch_size: training patch ``(D, H, W)`` (H = W).
        strides: pooling strides ``(D, H, W)`` after encoder stages 1..4 (stages 1 and 2: ``(2, 2, 2)``).
        dilations: dilation rate of the searchable 3x3x3 convolution of each stage, keyed by
            :data:`OPERATIONS` (``enc1`` .. ``enc5``, ``dec4`` .. ``dec1``; ``enc1`` is always 1).
        keep: whether each stage's searchable convolution is kept (``False``: the zero operation, the
            stage's residual branch is removed), keyed by :data:`OPERATIONS`.
        skips: the enabled skip connections ``(encoder stage i, decoder stage j)``, sorted.
        activation: the network-wide activation (:data:`ACTIVATIONS`).
        pooling: the network-wide pooling type (:data:`POOLINGS`).

    Example:
        >>> arch.key, arch.name  # doctest: +SKIP
        ('3f9c0a1b2d4e', '144x240x240-relu-max-o9-s16-3f9c0a')
    """

    WRITTEN_BY: ClassVar[str] = "the NAS search (proxyhpo.networks.nas_encoding.decode)"

    patch_size: Triple
    strides: tuple[Triple, ...]
    dilations: dict[str, int]
    keep: dict[str, bool]
    skips: tuple[tuple[int, int], ...]
    activation: str
    pooling: str

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, value: Triple) -> Triple:
        if any(s < 1 for s in value):
            raise ValueError(f"every side must be positive, got {value}")
        return value

    @field_validator("strides")
    @classmethod
    def _four_strides(cls, value: tuple[Triple, ...]) -> tuple[Triple, ...]:
        if len(value) != _STAGES - 1:
            raise ValueError(f"needs {_STAGES - 1} strides (after encoder stages 1..4), got {len(value)}")
        if any(s not in (1, 2) for stride in value for s in stride):
            raise ValueError(f"every stride must be 1 or 2, got {value}")
        return value

    @field_validator("dilations")
    @classmethod
    def _dilation_per_op(cls, value: dict[str, int]) -> dict[str, int]:
        value = _per_operation("dilations", value)
        if any(d < 1 for d in value.values()):
            raise ValueError(f"every dilation rate must be >= 1, got {value}")
        return value

    @field_validator("keep")
    @classmethod
    def _keep_per_op(cls, value: dict[str, bool]) -> dict[str, bool]:
        return _per_operation("keep", value)

    @field_validator("skips")
    @classmethod
    def _known_skips(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        bad = [pair for pair in value if pair not in SKIP_PAIRS]
        if bad:
            raise ValueError(f"skip {bad[0]} is not an (encoder stage, decoder stage) pair with both in 1..4")
        if len(set(value)) != len(value):
            raise ValueError(f"skips must be distinct, got {value}")
        return tuple(sorted(value))

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str) -> str:
        if value not in ACTIVATIONS:
            raise ValueError(f"unknown activation {value!r}; expected one of {ACTIVATIONS}")
        return value

    @field_validator("pooling")
    @classmethod
    def _known_pooling(cls, value: str) -> str:
        if value not in POOLINGS:
            raise ValueError(f"unknown pooling type {value!r}; expected one of {POOLINGS}")
        return value

    def __hash__(self) -> int:  # dict fields: hash the canonical key instead
        return hash(self.key)

    @property
    def key(self) -> str:
        """Stable short hash (12 hex digits) of the architecture: equal architectures, equal keys."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    @property
    def name(self) -> str:
        """Short human label: patch, activation, pooling, kept operations, skips and the key's start.

        Example: ``144x240x240-relu-max-o9-s16-3f9c0a`` (9 operations kept, 16 skips on).
        """
        d, h, w = self.patch_size
        kept = sum(self.keep.values())
        return f"{d}x{h}x{w}-{self.activation}-{self.pooling}-o{kept}-s{len(self.skips)}-{self.key[:6]}"


def _per_operation(field: str, value: dict[str, Any]) -> dict[str, Any]:
    if set(value) != set(OPERATIONS):
        missing = [op for op in OPERATIONS if op not in value]
        extra = [op for op in value if op not in OPERATIONS]
        raise ValueError(f"needs one entry per operation {OPERATIONS}; missing {missing}, unknown {extra}")
    return {op: value[op] for op in OPERATIONS}


class NasSearchSpace(Record):
    """The search space resolved from the training images; written by the planning stage, read by every later one.

    Build it with :meth:`from_shapes`. ``decisions`` is the controller's sequence, one per entry of
    :data:`DECISION_LAYOUT` and in its order; :func:`proxyhpo.networks.nas_encoding.decode` turns one
    option index per decision into an :class:`Architecture`, ``encode`` does the reverse.

    Attributes:
        config: the user's settings it was resolved from.
        in_channels: image channels (modalities).
        out_channels: output channels (logits) of the network.
        median_shape: median ``(D, H, W)`` of the training images (patch candidates, eqs. (1)/(2)).
        smallest_shape: smallest ``(D, H, W)`` of the training images, each axis on its own (strides).
        decisions: the decisions, in the controller's order.
    """

    WRITTEN_BY: ClassVar[str] = "the NAS planning stage (NasSearchSpace.from_shapes)"

    config: NasSpaceConfig
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    median_shape: tuple[float, float, float]
    smallest_shape: Triple
    decisions: tuple[Decision, ...]

    @model_validator(mode="after")
    def _layout(self) -> NasSearchSpace:
        got = tuple((d.name, d.kind) for d in self.decisions)
        expected = tuple((slot.name, slot.kind) for slot in DECISION_LAYOUT)
        if got != expected:
            first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            seen = got[first] if first < len(got) else "nothing"
            wanted = expected[first] if first < len(expected) else "nothing"
            raise ValueError(f"decision {first} is {seen}, expected {wanted} (name, kind); decisions must follow the supernet's layout")
        for d in self.decisions:
            bad = [v for v in d.options if not _VALID_OPTION[d.kind](v)]
            if bad:
                raise ValueError(f"decision {d.name!r} has option {bad[0]!r}, which is not a valid {d.kind}")
        return self

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_shapes(
        cls, config: NasSpaceConfig, shapes: Sequence[tuple[int, int, int]], in_channels: int, out_channels: int = 1
    ) -> NasSearchSpace:
        """Resolve the search space from the training images' spatial shapes.

        Patch candidates come from the median shape: in-plane (H = W) from ``max(median H, median W)``
        by eq. (1), depth from the median D by eq. (2) (:func:`patch_size_candidates`, with its fallback
        for extents below 16). Strides of stages 3 and 4 come from the smallest extent per axis kind
        (depth: the smallest D; in-plane: the smallest of every H and W), because whole images are
        inferred in one shot (:func:`stride_options`). A patch side may exceed a small image's (the
        paper's prostate: depth 16 against a smallest depth of 11): the training stage pads such images
        to the patch.

        Args:
            config: the user's settings.
            shapes: ``(D, H, W)`` of every training image (at least one; positive integers).
            in_channels: image channels (modalities), at least 1.
            out_channels: output channels of the network, at least 1.

        Raises:
            InputError: naming the argument, when ``shapes`` is empty or holds a shape that is not three
                positive integers, or when a channel count is below 1.

        Example:
            >>> heart = [(90, 320, 320), (110, 320, 320), (130, 320, 320)]
            >>> space = NasSearchSpace.from_shapes(NasSpaceConfig(), heart, in_channels=1)
            >>> space.decision("patch_d").options
            (96, 80, 64, 48, 32)
        """
        where = "NasSearchSpace.from_shapes"
        if not isinstance(config, NasSpaceConfig):
            raise InputError(where, f"argument 'config' is a {type(config).__name__}, expected a NasSpaceConfig", "pass NasSpaceConfig(...)")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if type(value) is not int or value < 1:
                raise InputError(where, f"argument {name!r} is {brief(value)}, expected an integer >= 1", f"pass a positive {name}")
        checked = []
        for index, shape in enumerate(shapes):
            try:
                triple = tuple(shape)
            except TypeError:
                triple = ()
            if len(triple) != 3 or any(type(s) is not int or s < 1 for s in triple):
                raise InputError(
                    where,
                    f"argument 'shapes'[{index}] is {brief(shape)}, expected three positive integers (D, H, W)",
                    "pass the spatial shape of every training image, without the channel axis",
                )
            checked.append(triple)
        if not checked:
            raise InputError(where, "argument 'shapes' is empty, expected the (D, H, W) of at least one training image", "pass the training images' shapes")
        median = tuple(float(statistics.median(s[axis] for s in checked)) for axis in range(3))
        smallest = tuple(min(s[axis] for s in checked) for axis in range(3))
        return cls(
            config=config,
            in_channels=in_channels,
            out_channels=out_channels,
            median_shape=median,  # type: ignore[arg-type]
            smallest_shape=smallest,  # type: ignore[arg-type]
            decisions=_resolve_decisions(config, median, smallest),  # type: ignore[arg-type]
        )

    # -- reading ----------------------------------------------------------------------------------

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of encoder stages 1..5 (decoder stage j has ``channels[j - 1]``)."""
        return self.config.channels

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct kinds of the decisions, in decision order."""
        return tuple(dict.fromkeys(d.kind for d in self.decisions))

    @property
    def option_counts(self) -> tuple[int, ...]:
        """Number of options of each decision, in decision order."""
        return tuple(len(d.options) for d in self.decisions)

    def decision(self, name: str) -> Decision:
        """The decision called ``name``.

        Raises:
            InputError: when there is none of that name.
        """
        for d in self.decisions:
            if d.name == name:
                return d
        raise InputError("NasSearchSpace.decision", f"argument 'name' is {name!r}, which names no decision", f"use one of {', '.join(d.name for d in self.decisions)}")


def _resolve_decisions(config: NasSpaceConfig, median: Sequence[float], smallest: Sequence[int]) -> tuple[Decision, ...]:
    md, mh, mw = median
    sd, sh, sw = smallest
    patch = {"hw": patch_size_candidates(max(mh, mw), config.patch_candidates), "d": patch_size_candidates(md, config.patch_candidates)}
    stride = {"hw": dict(zip(STRIDE_STAGES, stride_options(min(sh, sw)))), "d": dict(zip(STRIDE_STAGES, stride_options(sd)))}
    options_of: dict[str, Callable[[DecisionSlot], tuple[Option, ...]]] = {
        "patch_size": lambda slot: patch[slot.axis],
        "stride": lambda slot: stride[slot.axis][slot.stage],
        "dilation": lambda slot: config.dilations,
        "keep": lambda slot: (True, False),
        "skip": lambda slot: (True, False),
        "activation": lambda slot: config.activations,
        "pooling": lambda slot: config.poolings,
    }
    return tuple(Decision(name=slot.name, kind=slot.kind, options=options_of[slot.kind](slot)) for slot in DECISION_LAYOUT)
