"""What ``pack_size`` means: how many trials one device trains at once, ``"auto"`` resolved by one rule.

Torch-free, like the rest of the schema layer: the controller groups a round's proposals with it before
any GPU is seen, and the trainer sizes its packs with it on the device, where it also measures what the
device holds (:func:`proxyhpo.training.capacity.pack_capacity`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

__all__ = ["PackSize", "resolve_pack_size"]

#: A study's or plan's ``pack_size``: a number of trials, or ``"auto"``.
PackSize = int | Literal["auto"]


def resolve_pack_size(pack_size: PackSize, *, trials: int, devices: int = 1, capacity: Callable[[], int] | None = None) -> int:
    """Slots of a pack: the most trials one device trains at once, as one batched model.

    The rule, for everyone who reads ``pack_size``:

    - a number is taken as given: at most that many trials at once on a device;
    - ``"auto"`` is as many as the device holds. Where the device is at hand (the trainer), that is
      ``capacity()``: the models of the pack's network its free memory holds, measured, or 4 on a CPU
      (:func:`proxyhpo.training.capacity.pack_capacity`). Where it is not (the controller grouping a
      round's proposals for GPUs it never sees), the device is taken to hold its even share of the
      trials, ``ceil(trials / devices)``: one pack per device, and the trainer then fits that pack to
      the device it lands on.

    Either way the result lies between 1 and ``trials``: a pack never has more slots than trials.

    Args:
        pack_size: the setting (``training.pack_size`` of a study, ``pack_size`` of a trial plan).
        trials: the trials to be packed (a round's proposals; one network's trials of a plan).
        devices: the devices the trials are spread over (``resources.gpus``); used by ``"auto"`` only
            when ``capacity`` is not given.
        capacity: measures how many models the device holds; called only for ``"auto"``.

    Returns:
        the number of slots, ``1 <= slots <= max(1, trials)``.

    Raises:
        ValueError: when ``pack_size`` is neither a positive number nor ``"auto"``, or ``trials`` or
            ``devices`` is negative.

    Example:
        >>> resolve_pack_size(4, trials=10)
        4
        >>> resolve_pack_size("auto", trials=10, devices=4)
        3
        >>> resolve_pack_size("auto", trials=10, capacity=lambda: 16)
        10
    """
    if trials < 0:
        raise ValueError(f"trials must be >= 0, got {trials}")
    if devices < 0:
        raise ValueError(f"devices must be >= 0, got {devices}")
    if pack_size == "auto":
        size = capacity() if capacity is not None else math.ceil(trials / max(1, devices))
    elif isinstance(pack_size, int) and not isinstance(pack_size, bool) and pack_size >= 1:
        size = pack_size
    else:
        raise ValueError(f"pack_size must be a number >= 1 or 'auto', got {pack_size!r}")
    return max(1, min(size, trials))
