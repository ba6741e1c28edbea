"""The NAS encoder/decoder: option indices (what the controller emits) to a supernet path and back.

The controller knows decisions only as ``(kind, option_count)`` pairs and emits one option index per
decision; the :class:`~proxyhpo.networks.Supernet` runs an :class:`~proxyhpo.config.Architecture`. This
module turns one into the other. It walks the one declaration of the decisions,
:data:`proxyhpo.config.nas_space.DECISION_LAYOUT`: each entry's kind (with its axis, stage, operation or
skip pair) says which entry of the architecture it sets, so a decision is read and written in exactly
one place, :func:`_read` and :func:`_write`. The parts the paper fixes (stride 2 after encoder stages 1
and 2, dilation 1 at ``enc1``) are filled in by :func:`decode` and checked by :func:`encode`.

Imports no torch itself (importing it through :mod:`proxyhpo.networks` loads the supernet's).

Example:
    >>> from proxyhpo.config import NasSearchSpace, NasSpaceConfig
    >>> space = NasSearchSpace.from_shapes(NasSpaceConfig(), [(155, 240, 240)] * 4, in_channels=4)
    >>> arch = largest(space)
    >>> arch.patch_size, encode(space, arch) == (0,) * len(space.decisions)
    ((144, 240, 240), True)
    >>> decode(space, encode(space, arch)) == arch
    True
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from proxyhpo.config.base import brief
from proxyhpo.config.nas_space import (
    DECISION_LAYOUT,
    FIXED_DILATION,
    FIXED_DILATION_OPERATIONS,
    FIXED_STRIDE,
    STRIDE_STAGES,
    Architecture,
    DecisionSlot,
    NasSearchSpace,
    Option,
)
from proxyhpo.errors import InputError

__all__ = ["decode", "encode", "largest"]

#: Positions in ``(D, H, W)`` that a patch or stride decision of each axis kind sets (H and W together).
_POSITIONS: dict[str, tuple[int, ...]] = {"d": (0,), "hw": (1, 2)}


def decode(space: NasSearchSpace, choices: Sequence[int]) -> Architecture:
    """The architecture of one option index per decision of ``space``.

    Args:
        space: the search space.
        choices: ``choices[k]`` indexes ``space.decisions[k].options`` (what the controller samples).

    Returns:
        the path through the supernet those options make.

    Raises:
        InputError: when ``choices`` has the wrong length, or an entry is not an integer in range
            (the message names the entry's decision and its number of options).

    Example:
        >>> decode(space, [0] * len(space.decisions)) == largest(space)  # default config  # doctest: +SKIP
        True
    """
    where = "nas_encoding.decode"
    picks = list(choices)
    if len(picks) != len(space.decisions):
        raise InputError(
            where, f"argument 'choices' has {len(picks)} entries, expected {len(space.decisions)} (one per decision)", "pass one option index per decision of space.decisions"
        )
    values: list[Option] = []
    for k, (index, d) in enumerate(zip(picks, space.decisions)):
        try:
            if isinstance(index, bool):
                raise TypeError
            index = operator.index(index)
        except TypeError:
            raise InputError(where, f"argument 'choices'[{k}] ({d.name}) is {brief(index)}, expected an integer index", "pass integer option indices") from None
        if not 0 <= index < len(d.options):
            raise InputError(
                where,
                f"argument 'choices'[{k}] ({d.name}) is {index}, expected an index in 0..{len(d.options) - 1} ({len(d.options)} options)",
                "sample each index below option_counts[k]",
            )
        values.append(d.options[index])
    return _build(values)


def encode(space: NasSearchSpace, arch: Architecture) -> tuple[int, ...]:
    """The option indices of ``arch`` in ``space``, the inverse of :func:`decode`.

    The supernet calls it to check that a path belongs to its space.

    Raises:
        InputError: when ``arch`` is not a path through ``space`` (naming the decision and its options).
    """
    where = "nas_encoding.encode"
    if not isinstance(arch, Architecture):
        raise InputError(where, f"argument 'arch' is a {type(arch).__name__}, expected an Architecture", "pass an Architecture")
    fixed = _fixed_violation(arch)
    if fixed:
        raise InputError(where, f"argument 'arch' {fixed}", "use an architecture decoded from this space")
    out = []
    for slot, d in zip(DECISION_LAYOUT, space.decisions, strict=True):
        value = _read(arch, slot)
        match = [i for i, o in enumerate(d.options) if type(o) is type(value) and o == value]
        if not match:
            raise InputError(
                where,
                f"argument 'arch' has {d.name} = {value!r}, expected one of {d.options}",
                "use an architecture decoded from this space (another data set's architecture may not fit)",
            )
        out.append(match[0])
    return tuple(out)


def largest(space: NasSearchSpace) -> Architecture:
    """The paper's first child: the largest network of ``space``.

    The maximum patch size, every operation kept and every skip on, stride 2 wherever the space
    allows it (the strongest down-sampling, hence the largest receptive field), the smallest
    dilation rate (1 by default; the supernet's plain convolution), and the first activation and
    pooling type of the config (``relu`` and ``max`` by default). With the default config this is
    ``decode(space, [0] * len(space.decisions))``.
    """
    values: list[Option] = []
    for d in space.decisions:
        if d.kind in ("patch_size", "stride"):
            values.append(max(d.options))  # type: ignore[type-var]
        elif d.kind == "dilation":
            values.append(min(d.options))  # type: ignore[type-var]
        elif d.kind in ("keep", "skip"):
            values.append(True if True in d.options else d.options[0])
        else:
            values.append(d.options[0])
    return _build(values)


def _read(arch: Architecture, slot: DecisionSlot) -> Option:
    """The value ``arch`` holds for the decision ``slot`` (the inverse of :func:`_write`)."""
    if slot.kind == "patch_size":
        return arch.patch_size[_POSITIONS[slot.axis][0]]
    if slot.kind == "stride":
        return arch.strides[slot.stage - 1][_POSITIONS[slot.axis][0]]
    if slot.kind == "dilation":
        return arch.dilations[slot.operation]
    if slot.kind == "keep":
        return arch.keep[slot.operation]
    if slot.kind == "skip":
        return slot.skip in arch.skips
    return getattr(arch, slot.kind)  # activation, pooling: network-wide


def _write(fields: dict[str, Any], slot: DecisionSlot, value: Option) -> None:
    """Set the entry of the architecture's ``fields`` that the decision ``slot`` decides to ``value``."""
    if slot.kind == "patch_size":
        for position in _POSITIONS[slot.axis]:
            fields["patch_size"][position] = value
    elif slot.kind == "stride":
        for position in _POSITIONS[slot.axis]:
            fields["strides"][slot.stage - 1][position] = value
    elif slot.kind == "dilation":
        fields["dilations"][slot.operation] = value
    elif slot.kind == "keep":
        fields["keep"][slot.operation] = value
    elif slot.kind == "skip":
        if value:
            fields["skips"].append(slot.skip)
    else:  # activation, pooling: network-wide
        fields[slot.kind] = value


def _build(values: Sequence[Option]) -> Architecture:
    """The architecture of one option value per entry of the layout, the fixed parts filled in."""
    fields: dict[str, Any] = {
        "patch_size": [0, 0, 0],
        "strides": [[FIXED_STRIDE] * 3 for _ in range(len(STRIDE_STAGES) + 2)],
        "dilations": dict.fromkeys(FIXED_DILATION_OPERATIONS, FIXED_DILATION),
        "keep": {},
        "skips": [],
    }
    for slot, value in zip(DECISION_LAYOUT, values, strict=True):
        _write(fields, slot, value)
    fields["patch_size"] = tuple(fields["patch_size"])
    fields["strides"] = tuple(tuple(stride) for stride in fields["strides"])
    fields["skips"] = tuple(fields["skips"])
    return Architecture(**fields)


def _fixed_violation(arch: Architecture) -> str | None:
    """What in ``arch`` breaks a rule every path follows (None when nothing does)."""
    d, h, w = arch.patch_size
    if h != w:
        return f"has patch_size {arch.patch_size} with H != W, expected equal in-plane sides"
    for stage, stride in enumerate(arch.strides, start=1):
        if stage not in STRIDE_STAGES and stride != (FIXED_STRIDE,) * 3:
            return f"has stride {stride} after stage {stage}, expected {(FIXED_STRIDE,) * 3} (fixed by the paper)"
        if stride[1] != stride[2]:
            return f"has stride {stride} after stage {stage} with H != W, expected equal in-plane strides"
    for op in FIXED_DILATION_OPERATIONS:
        if arch.dilations[op] != FIXED_DILATION:
            return f"has dilation {arch.dilations[op]} at {op}, expected {FIXED_DILATION} (fixed by the paper)"
    return None
