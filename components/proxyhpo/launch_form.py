"""The launch form's typed fields: what a user tunes per run, as pipeline parameters of their own.

In the Kubeflow UI's *Create run* form each pipeline parameter is a typed field. The values a user changes
from one run to the next are parameters of their own (not keys inside the ``study_config`` JSON string):

=====================  =============================  ==========================================
field                  type                           study config key
=====================  =============================  ==========================================
``epochs``             int                            ``training.epochs``
``proposals_per_round``int                            ``search.proposals_per_round``
``budget``             int                            ``selection.budget`` (the proxy data's B)
``pack_size``          int, 0: auto                   ``training.pack_size``
``early_stopping``     bool                           ``search.early_stopping`` (the study's ASHA
                                                      settings, or the defaults; off: none)
=====================  =============================  ==========================================

Their defaults are the compiled study's; given, they win over ``study_config``'s, as ``dataset`` does. The
settings a pipeline is compiled for (its rounds, GPUs, pod placement, ...) are not fields: edited in
``study_config`` they are refused by the first task (:meth:`~proxyhpo.config.StudyConfig.check_compiled_shape`).

Example:
    >>> run_fields(StudyConfig.model_validate({"name": "s", "data": {"dataset": "d"}}))["pack_size"]  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxyhpo.config import StudyConfig

__all__ = ["RUN_FIELDS_DOC", "run_fields", "with_run_fields"]

#: What the fields mean, for the pipelines' docstrings (the Kubeflow UI shows them).
RUN_FIELDS_DOC = """            epochs: epochs of each searched trial (training.epochs).
            proposals_per_round: trials the search proposes per round (search.proposals_per_round).
            budget: cases of the proxy data set, B (selection.budget).
            pack_size: trials trained at once on one GPU; 0: as many as fit (training.pack_size: auto).
            early_stopping: stop the worse trials of a pack early (search.early_stopping; the study's settings or the defaults).
"""


def run_fields(study: StudyConfig) -> dict[str, Any]:
    """The fields' defaults: ``study``'s values."""
    pack_size = study.training.pack_size
    return {
        "epochs": study.training.epochs,
        "proposals_per_round": study.search.proposals_per_round,
        "budget": study.selection.budget,
        "pack_size": 0 if pack_size == "auto" else int(pack_size),
        "early_stopping": study.search.early_stopping is not None,
    }


def with_run_fields(study_config: str, *, epochs: int, proposals_per_round: int, budget: int, pack_size: int, early_stopping: bool) -> str:
    """``study_config`` (the JSON parameter) with the typed fields written in; the result is validated by the caller
    (:func:`proxyhpo.config.study_from_json`), so a bad value is one line naming its key.

    Raises:
        ConfigError: when ``study_config`` is not a JSON object.
    """
    from proxyhpo.config.early_stopping import EarlyStoppingConfig
    from proxyhpo.errors import ConfigError

    try:
        document = json.loads(study_config)
    except json.JSONDecodeError as exc:
        raise ConfigError("study_config", f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", "paste the study config as one JSON object") from None
    if not isinstance(document, dict):
        raise ConfigError("study_config", "is not a JSON object", "paste the study config as one JSON object")
    training = document.setdefault("training", {})
    search = document.setdefault("search", {})
    training["epochs"] = epochs
    training["pack_size"] = pack_size if pack_size > 0 else "auto"
    search["proposals_per_round"] = proposals_per_round
    document.setdefault("selection", {})["budget"] = budget
    if not early_stopping:
        search["early_stopping"] = None
    elif not search.get("early_stopping"):
        search["early_stopping"] = EarlyStoppingConfig().model_dump(mode="json")
    return json.dumps(document)
