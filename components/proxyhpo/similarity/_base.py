"""The similarity metric's protocol: an all-pairs engine behind one method.

A metric turns a stack of preprocessed volumes into the symmetric matrix of their pairwise similarity;
ranking and proxy selection (:mod:`proxyhpo.similarity.ranking`) read only that matrix. Each metric is
a file of its own, registered once in :data:`proxyhpo.registry.SIMILARITY_METRICS`; the proxy data
methods (``NAME`` and ``NAME+labelcrop``) follow from the registry (:mod:`proxyhpo.config.selection`).

Example:
    >>> engine = SIMILARITY_METRICS["mi"](SimilarityConfig())  # doctest: +SKIP
    >>> engine.matrix(volumes).shape  # volumes: (n, D, H, W) in [0, 1]  # doctest: +SKIP
    (n, n)
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from proxyhpo.config import SimilarityConfig

__all__ = ["SimilarityMetric"]


class SimilarityMetric(abc.ABC):
    """An all-pairs similarity engine: larger means more alike.

    Args:
        config: the engine settings of the study (``similarity``: patch, bins, window, device).
    """

    #: the metric's name in configs, manifests and reports (its registry name)
    name: ClassVar[str]

    def __init__(self, config: SimilarityConfig | None = None) -> None:
        self.config = config or SimilarityConfig()

    @abc.abstractmethod
    def matrix(self, volumes: Any, *, device: Any = "auto", progress: bool = False) -> np.ndarray:
        """The symmetric ``(n, n)`` float64 similarity of every pair of ``volumes``.

        Args:
            volumes: an array or tensor ``(n, D, H, W)`` of preprocessed volumes with values in [0, 1].
            device: ``auto``, ``cpu``, ``cuda`` or a ``torch.device``.
            progress: show the pairs done on stderr.
        """
