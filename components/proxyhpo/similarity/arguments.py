"""Argument checks shared by the similarity engines, the preprocessing and the ranking.

Kept apart from :mod:`proxyhpo.similarity.pair_blocks` (which needs torch): the ranking is imported by
tasks that only choose or split cases, and they should not load torch for an integer check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_positive_int"]


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking that it is an integer ``>= minimum``.

    Raises:
        ValueError: when ``value`` is not an integer (bools are refused) or is below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)
