"""Similarity between training volumes and the proxy data sets chosen from it.

- :func:`mutual_information_matrix` and :func:`local_ncc_matrix`: all-pairs engines, CPU or CUDA.
- :func:`prepare_volume` / :func:`prepare_volumes`: intensity scaling, optional label crop, cubic patch.
- :func:`mean_similarity`, :func:`rank_least_similar`, :func:`select_least_similar`,
  :func:`select_random`: ranking and selection.
"""

from proxyhpo.similarity.local_ncc import local_ncc_matrix
from proxyhpo.similarity.mutual_information import mutual_information_matrix
from proxyhpo.similarity.preprocess import CT_HU_WINDOW, label_bounding_box, prepare_volume, prepare_volumes
from proxyhpo.similarity.ranking import (
    mean_similarity,
    rank_least_similar,
    select_least_similar,
    select_random,
)

__all__ = [
    "mutual_information_matrix",
    "local_ncc_matrix",
    "prepare_volume",
    "prepare_volumes",
    "label_bounding_box",
    "CT_HU_WINDOW",
    "mean_similarity",
    "rank_least_similar",
    "select_least_similar",
    "select_random",
]
