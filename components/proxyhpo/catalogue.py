"""The pipeline catalogue: which pipelines ship, compiled for which example study.

``proxyhpo compile`` (without study configs), ``proxyhpo upload`` and ``make deploy`` compile and upload
exactly these; the Kubeflow UI lists them as ``proxyhpo-<name>``. A catalogue entry pairs a registered study
pipeline (:data:`proxyhpo.registry.STUDY_PIPELINES`) with one of the example studies shipped in the package
(``components/proxyhpo/examples/``, also under ``examples/``).

Example:
    >>> SHIPPED_PIPELINES["trust-spleen"]
    ShippedPipeline(kind='trust', example='spleen')
    >>> sorted({entry.kind for entry in SHIPPED_PIPELINES.values()}) == sorted(STUDY_PIPELINES.names())
    True
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, NamedTuple

from proxyhpo.registry import STUDY_PIPELINES

if TYPE_CHECKING:
    from proxyhpo.config import StudyConfig

__all__ = ["ShippedPipeline", "SHIPPED_PIPELINES", "shipped_study", "shipped_experiments"]


class ShippedPipeline(NamedTuple):
    """One shipped pipeline: the study pipeline it is (a :data:`~proxyhpo.registry.STUDY_PIPELINES` name) and
    the example study it is compiled for (``examples/<example>.yaml``)."""

    kind: str
    example: str


#: The example studies each study pipeline ships compiled for, in upload order. The comparison unrolls arms x
#: rounds: at the paper's 20 rounds it outgrows what a cluster stores per workflow, so only the demo ships
#: (compile a study's own with ``proxyhpo compile STUDY.yaml --pipeline automl-comparison``).
_EXAMPLES = {
    "hpo": ("demo", "spleen", "prostate"),
    "proxy-data-study": ("demo-studies", "spleen", "prostate"),
    "proxy-net-study": ("demo-studies", "spleen", "prostate"),
    "trust": ("demo-studies", "spleen", "prostate"),
    "automl-comparison": ("demo-studies",),
    "nas": ("nas-demo", "nas-brain", "nas-heart", "nas-prostate"),
}


def _file_name(kind: str, example: str) -> str:
    """``<kind>-<example>``, without repeating the kind an example's name already starts with (``nas-demo``)."""
    return example if example.startswith(f"{kind}-") else f"{kind}-{example}"


#: The pipelines ``proxyhpo compile`` and ``make deploy`` ship: file name (``<name>.yaml``, uploaded as
#: ``proxyhpo-<name>``) -> (study pipeline, example study).
SHIPPED_PIPELINES: dict[str, ShippedPipeline] = {
    _file_name(kind, example): ShippedPipeline(STUDY_PIPELINES.check(kind), example) for kind, examples in _EXAMPLES.items() for example in examples
}


def shipped_study(example: str) -> StudyConfig:
    """The example study ``example`` shipped in the package (``demo``, ``spleen``, ``nas-demo``, ...), as validated config.

    Raises:
        ConfigError: when the example is not valid (a packaging mistake, caught by the catalogue's tests).
    """
    import yaml

    from proxyhpo.config import StudyConfig, parse_config

    source = resources.files("proxyhpo").joinpath("examples", f"{example}.yaml")
    return parse_config(StudyConfig, yaml.safe_load(source.read_text(encoding="utf-8")), f"examples/{example}.yaml")


def shipped_experiments() -> list[str]:
    """The MLflow and KFP experiment names of the shipped pipelines' studies (``make deploy`` creates them), sorted."""
    return sorted({shipped_study(entry.example).name for entry in SHIPPED_PIPELINES.values()})
