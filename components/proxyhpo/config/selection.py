"""The proxy data methods: each registered similarity metric, alone or on the label crop, and a random draw.

The names come from :data:`proxyhpo.registry.SIMILARITY_METRICS`, read when a config is validated, so a
metric registered once (``ssim``) is at once a method (``ssim``, ``ssim+labelcrop``) for configs, the
CLI and the proxy-data study.

Example:
    >>> selection_methods()
    ('mi', 'ncc', 'mi+labelcrop', 'ncc+labelcrop', 'random')
    >>> check_selection_method("mi+labelcrop")
    'mi+labelcrop'
"""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import AfterValidator

from proxyhpo.registry import SIMILARITY_METRICS

__all__ = ["LABELCROP", "RANDOM", "SelectionMethod", "selection_methods", "check_selection_method", "method_metric", "method_crop"]

#: The suffix of a method that crops every volume to its label's region of interest first.
LABELCROP = "+labelcrop"
#: The method that draws the proxy cases at random (seeded), the paper's baseline.
RANDOM = "random"


def selection_methods() -> tuple[str, ...]:
    """Every proxy data method: each similarity metric, then each on the label crop, then ``random``."""
    metrics = SIMILARITY_METRICS.names()
    return (*metrics, *(metric + LABELCROP for metric in metrics), RANDOM)


def check_selection_method(name: str) -> str:
    """``name`` itself when it is a proxy data method (a pydantic validator and argparse ``type``).

    Raises:
        ValueError: naming the unknown method, the closest one and every choice.
    """
    methods = selection_methods()
    if name in methods:
        return name
    close = difflib.get_close_matches(str(name), methods, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown proxy data method {name!r}{hint} (choices: {', '.join(methods)})")


def method_metric(method: str) -> str | None:
    """The similarity metric a method ranks by (None for ``random``)."""
    return None if method == RANDOM else method.removesuffix(LABELCROP)


def method_crop(method: str) -> str:
    """``"label"`` when the method crops to the label's region of interest, else ``"none"``."""
    return "label" if method.endswith(LABELCROP) else "none"


#: A proxy data method's name, checked against the registry when a config is validated.
SelectionMethod = Annotated[str, AfterValidator(check_selection_method)]
