"""Rank volumes by how similar they are to the rest, and choose a proxy data set.

The proxy-data paper scores each volume ``x_i`` by the mean of its pairwise measure over all pairs
``(x_i, x_1), ..., (x_i, x_n)`` -- the self-pair ``(x_i, x_i)`` included (section 3) -- and keeps the
``B`` least similar ones: they cover the data set's variety best. Leaving the self-pair out is an
option (``include_self=False``); it changes the ranking wherever the self-similarities differ (MI of a
volume with itself is its entropy). Ties are broken by index, so a selection is reproducible from the
matrix alone.
"""

from __future__ import annotations


import numpy as np

from proxyhpo.similarity.arguments import check_positive_int

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


def mean_similarity(matrix: np.ndarray, *, include_self: bool = True) -> np.ndarray:
    """Each volume's importance: its mean similarity over the pairs it is part of.

    Args:
        matrix: ``(n, n)`` similarity matrix.
        include_self: the paper's definition, the mean over all ``n`` pairs including ``(x_i, x_i)``;
            False averages over the ``n - 1`` other volumes only.

    Returns:
        ``(n,)`` float64 array; without the self-pair and ``n == 1`` there are no pairs and the single
        entry is ``nan``.

    Raises:
        ValueError: when ``matrix`` is not a finite square array.

    Example:
        >>> m = np.array([[2.0, 0.5], [0.5, 1.0]])
        >>> mean_similarity(m), mean_similarity(m, include_self=False)
        (array([1.25, 0.75]), array([0.5, 0.5]))
    """
    m = _check_matrix(matrix)
    n = m.shape[0]
    if include_self:
        return m.mean(axis=1)
    if n == 1:
        return np.array([np.nan])
    return (m.sum(axis=1) - np.diag(m)) / (n - 1)


def rank_least_similar(matrix: np.ndarray, *, include_self: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Order volumes from least to most similar to the rest.

    Args:
        matrix: ``(n, n)`` similarity matrix.
        include_self: whether a volume's importance includes its self-pair (see :func:`mean_similarity`).

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
    scores = mean_similarity(matrix, include_self=include_self)
    n = scores.shape[0]
    # lexsort: last key is primary, so this sorts by score, then by index.
    order = np.lexsort((np.arange(n), scores))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(1, n + 1)
    return order.astype(np.int64), ranks


def select_least_similar(matrix: np.ndarray, budget: int, *, include_self: bool = True) -> list[int]:
    """The paper's rule: the indices of the ``budget`` least similar volumes, least similar first.

    Raises:
        ValueError: when ``matrix`` is invalid, or ``budget`` is not an integer in ``1..n``.
    """
    order, _ = rank_least_similar(matrix, include_self=include_self)
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
