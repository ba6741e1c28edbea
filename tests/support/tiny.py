"""The tiny recipe the CPU tests train with: spleen-like CT phantoms at their own spacing, one 16³ patch a step.

One definition for every test that trains (``pythonpath`` in pyproject.toml puts this folder on the path):
a test states only how it departs from it, e.g. ``tiny_recipe(patch_size=[32, 32, 32])`` where the full
U-Net's instance norm needs one side of 32 at its deepest level.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TINY_RECIPE", "tiny_recipe"]

#: A recipe document (``training.recipe``): no resampling, the CT window of the spleen task, a 32³ inference window.
TINY_RECIPE: dict[str, Any] = {
    "name": "tiny",
    "spacing": None,
    "intensity": {"kind": "hu_window", "a_min": -57.0, "a_max": 164.0},
    "patch_size": [16, 16, 16],
    "num_samples": 1,
    "roi_size": [32, 32, 32],
    "sw_batch_size": 1,
}


def tiny_recipe(**changes: Any) -> dict[str, Any]:
    """A fresh copy of :data:`TINY_RECIPE` with ``changes`` applied (keys of :class:`proxyhpo.config.Recipe`)."""
    return {**TINY_RECIPE, "intensity": dict(TINY_RECIPE["intensity"]), **changes}
