"""Compiled pipelines without copies: one executor for every component that runs the same container.

The KFP compiler gives every task its own component and executor, so a search of R rounds carries R
copies of each round's components, embedded source code included: a 50-round study compiles to about
850 KB, and Argo expands the Workflow further at run time, towards etcd's 1.5 MiB limit on one object.
Components that run the same container with the same platform settings (Secret, ConfigMap, labels,
tolerations) can share one executor: the pipeline spec allows any number of components to name the same
executor label. :func:`deduplicate` rewrites the compiled spec that way; the tasks, their components,
names, inputs, dependencies and retries are untouched. Components themselves are not merged: KFP's local
runner keeps a task's outputs in a folder named after its component, so two tasks sharing one component
would overwrite each other's outputs there.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["deduplicate"]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def deduplicate(spec: dict[str, Any], platform: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Merge identical executors and point every component at the one kept; return the rewritten documents.

    Args:
        spec: the compiled pipeline spec (the YAML's first document), changed in place.
        platform: the platform spec (the second document, kfp-kubernetes settings per executor), changed
            in place; executors merge only when their platform settings are equal too.

    Returns:
        ``(spec, platform)``.
    """
    executors = spec["deploymentSpec"]["executors"]
    settings = (platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
    kept: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for name in list(executors):
        key = _key([executors[name], settings.get(name)])
        if key in kept:
            renamed[name] = kept[key]
            del executors[name]
            settings.pop(name, None)
        else:
            kept[key] = name
    for component in spec["components"].values():
        if component.get("executorLabel") in renamed:
            component["executorLabel"] = renamed[component["executorLabel"]]
    return spec, platform
