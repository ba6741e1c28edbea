"""Similarity between training volumes and the proxy data sets chosen from it.

- :func:`mutual_information_matrix` and :func:`local_ncc_matrix`: all-pairs engines, CPU or CUDA.
- :func:`prepare_volume` / :func:`prepare_volumes`: intensity scaling, optional label crop, cubic patch.
- :func:`mean_similarity`, :func:`rank_least_similar`, :func:`select_least_similar`,
  :func:`select_random`: ranking and selection.

The names load on first use (PEP 562): a pipeline task that only ranks, splits or plans cases imports this
package without loading torch and MONAI (about 4 CPU seconds a task process).
"""

from __future__ import annotations

from proxyhpo.lazy import lazy_exports

#: Each exported name and the module that defines it.
_HOMES = {
    "mutual_information_matrix": "mutual_information",
    "local_ncc_matrix": "local_ncc",
    "prepare_volume": "preprocess",
    "prepare_volumes": "preprocess",
    "label_bounding_box": "preprocess",
    "CT_HU_WINDOW": "preprocess",
    "mean_similarity": "ranking",
    "rank_least_similar": "ranking",
    "select_least_similar": "ranking",
    "select_random": "ranking",
}

__all__ = list(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
