"""Networks: the families a trial trains (:data:`proxyhpo.registry.NETWORK_FAMILIES`; the paper's residual U-Net and
its proxies), built from :class:`proxyhpo.config.NetworkConfig`, and the NAS supernet of :class:`proxyhpo.config.NasSearchSpace`.

Names are imported on first use: the schema layer reads a family's declared sizes (``networks/<family>.py``)
without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["NetworkFamily", "build_network", "instantiate", "count_parameters", "Supernet", "estimate_memory", "feature_sizes", "memory_breakdown", "path_parameter_count"]

_WHERE = {
    "NetworkFamily": "_base",
    "build_network": "_base",
    "instantiate": "_base",
    "count_parameters": "unet",
    **{name: "supernet" for name in ("Supernet", "estimate_memory", "feature_sizes", "memory_breakdown", "path_parameter_count")},
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"proxyhpo.networks.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'proxyhpo.networks' has no attribute {name!r}")
