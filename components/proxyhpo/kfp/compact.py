"""Compiled pipelines without copies: one executor and one component for every task that runs the same thing.

The KFP compiler gives every task its own component and executor, so a search of R rounds carries R
copies of each round's components, embedded source code included: a 50-round study compiles to about
850 KB, and Argo expands the Workflow further at run time, towards etcd's 1.5 MiB limit on one object.
Tasks that run the same container with the same platform settings (Secret, ConfigMap, labels,
tolerations) can share one executor and one component: the pipeline spec allows any number of tasks
to reference a component by name. :func:`deduplicate` rewrites the compiled spec that way; the tasks,
their names, inputs, dependencies and retries are untouched.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["deduplicate"]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _dags(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every task table of the spec: the root's and each sub-DAG's (exit handler, loops, conditions)."""
    tables = [spec["root"]["dag"]["tasks"]]
    tables += [component["dag"]["tasks"] for component in spec["components"].values() if "dag" in component]
    return tables


def deduplicate(spec: dict[str, Any], platform: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Merge identical executors, then identical components, until none is left; return the rewritten documents.

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
    components = spec["components"]
    for component in components.values():
        if component.get("executorLabel") in renamed:
            component["executorLabel"] = renamed[component["executorLabel"]]
    while True:  # merging leaf components can make the DAGs that use them identical in turn
        kept, merged = {}, {}
        for name in list(components):
            key = _key(components[name])
            if key in kept:
                merged[name] = kept[key]
                del components[name]
            else:
                kept[key] = name
        if not merged:
            return spec, platform
        for tasks in _dags(spec):
            for task in tasks.values():
                reference = task["componentRef"]
                reference["name"] = merged.get(reference["name"], reference["name"])
