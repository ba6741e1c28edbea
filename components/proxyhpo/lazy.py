"""Package names that load on first use (PEP 562), for the packages whose modules need torch and MONAI.

A pipeline task is a process of its own: one that only plans, ranks or reuses kept results should not
pay the 4 to 5 CPU seconds of ``import monai`` because its package's ``__init__`` re-exports a trainer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` that import each name from its module when first asked for.

    Args:
        package: the package's ``__name__``.
        homes: each exported name and the submodule (relative to ``package``) that defines it.

    Example::

        __getattr__, __dir__ = lazy_exports(__name__, {"run_trials": "runner"})
    """

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        setattr(importlib.import_module(package), name, value)  # found once
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(homes))

    return __getattr__, __dir__
