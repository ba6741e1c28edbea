"""Fixtures of the controller tests: a synthetic reward with a known optimum, and a tiny search space."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from proxyhpo.config import SearchSpace


def synthetic_dice(values: Mapping[str, Any]) -> float:
    """A stand-in for validation Dice: best at lr = 3e-3 with adam, falling off by |decades| / 2, 0.3 lower for other optimisers."""
    reward = 1.0 - abs(math.log10(values["lr"]) - math.log10(3e-3)) / 2.0
    if values["optimizer"] != "adam":
        reward -= 0.3
    return reward - 0.1 * abs(values["intensity_shift_prob"] - 0.3)


@pytest.fixture
def reward_fn() -> Callable[[Mapping[str, Any]], float]:
    return synthetic_dice


@pytest.fixture
def mixed_space() -> SearchSpace:
    """Every distribution type, with choices of several JSON types and a negative linear range."""
    return SearchSpace.model_validate(
        {
            "momentum": {"type": "uniform", "low": -2.5, "high": 0.5},
            "levels": {"type": "categorical", "choices": [3, 4, 5]},
            "weight_decay": {"type": "log_uniform", "low": 1e-6, "high": 1e-3},
            "amsgrad": {"type": "categorical", "choices": [True, False]},
            "loss": {"type": "categorical", "choices": ["dice"]},
        }
    )
