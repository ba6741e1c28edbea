"""Rank volumes by how similar they are to the rest, and choose a proxy data set.

The proxy-data paper scores each volume by its mean pairwise similarity to the others and keeps the
``B`` least similar ones: they cover the data set's variety best. Ties are broken by index, so a
selection is reproducible from the matrix alone.
"""

from __future__ import annotations


import numpy as np

from proxyhpo.similarity.pair_blocks import check_positive_int

__all__ = [
    "mean_similarity",
    "rank_least_similar",
    "select_least_similar",
    "select_random",
]


def _check_matrix(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 1:
        raise ValueError(f"matrix must be a non-empty square (n, n) array, got shape {m.shape}.")
    if m.dtype.kind not in "biuf" or not np.isfinite(m).all():
        raise ValueError("matrix must hold finite real numbers.")
    return m.astype(np.float64, copy=False)


def _check_budget(budget: int, n: int) -> int:
    budget = check_positive_int(budget, "budget")
    if budget > n:
        raise ValueError(f"budget must be between 1 and the number of volumes ({n}), got {budget}.")
    return budget


def mean_similarity(matrix: np.ndarray) -> np.ndarray:
    """Mean similarity of each volume to the *other* volumes (the diagonal is left out).

    Args:
        matrix: ``(n, n)`` similarity matrix.

    Returns:
        ``(n,)`` float64 array; for ``n == 1`` there are no others and the single entry is ``nan``.

    Raises:
        ValueError: when ``matrix`` is not a finite square array.
    """
    m = _check_matrix(matrix)
    n = m.shape[0]
    if n == 1:
        return np.array([np.nan])
    return (m.sum(axis=1) - np.diag(m)) / (n - 1)


def rank_least_similar(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order volumes from least to most similar to the rest.

    Args:
        matrix: ``(n, n)`` similarity matrix.

    Returns:
        ``(order, ranks)``: ``order[k]`` is the index of the volume at rank ``k + 1``; ``ranks[i]`` is
        volume ``i``'s rank, 1 for the least similar. Equal means are ordered by index.

    Raises:
        ValueError: when ``matrix`` is not a finite square array.

    Example:
        >>> m = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
        >>> rank_least_similar(m)
        (array([2, 0, 1]), array([2, 3, 1]))
    """
    scores = mean_similarity(matrix)
    n = scores.shape[0]
    # lexsort: last key is primary, so this sorts by score, then by index.
    order = np.lexsort((np.arange(n), scores))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(1, n + 1)
    return order.astype(np.int64), ranks


def select_least_similar(matrix: np.ndarray, budget: int) -> list[int]:
    """The paper's rule: the indices of the ``budget`` least similar volumes, least similar first.

    Raises:
        ValueError: when ``matrix`` is invalid, or ``budget`` is not an integer in ``1..n``.
    """
    order, _ = rank_least_similar(matrix)
    budget = _check_budget(budget, order.shape[0])
    return [int(i) for i in order[:budget]]


def select_random(n: int, budget: int, seed: int) -> list[int]:
    """The random baseline: ``budget`` distinct indices of ``range(n)``, in ascending order.

    The same ``(n, budget, seed)`` always gives the same indices (``numpy.random.default_rng(seed)``).

    Raises:
        ValueError: when ``n`` is not a positive integer, ``budget`` is not in ``1..n``, or ``seed`` is
            not a non-negative integer.
    """
    n = check_positive_int(n, "n")
    budget = _check_budget(budget, n)
    seed = check_positive_int(seed, "seed", minimum=0)
    chosen = np.random.default_rng(seed).choice(n, size=budget, replace=False)
    return sorted(int(i) for i in chosen)
