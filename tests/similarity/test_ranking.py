"""Tests of ranking and proxy selection."""

from __future__ import annotations

import numpy as np
import pytest

from proxyhpo.similarity import (
    mean_similarity,
    rank_least_similar,
    select_least_similar,
    select_random,
)

# Means over the others: v0 (0.8+0.1+0.3)/3=0.4, v1 (0.8+0.2+0.5)/3=0.5, v2 (0.1+0.2+0.0)/3=0.1,
# v3 (0.3+0.5+0.0)/3=0.2667. Over all pairs (the paper's): v0 1.2/4=0.3, v1 1.5/4=0.375, v2 9.3/4=2.325,
# v3 9.8/4=2.45: the large diagonal reverses the order.
MATRIX = np.array(
    [
        [0.0, 0.8, 0.1, 0.3],
        [0.8, 0.0, 0.2, 0.5],
        [0.1, 0.2, 9.0, 0.0],
        [0.3, 0.5, 0.0, 9.0],
    ]
)


def _paper_importance(matrix: np.ndarray, include_self: bool) -> list[float]:
    """A direct transcription of section 3: the mean of the measure over the pairs {(x_i, x_1), ..., (x_i, x_n)}."""
    n = len(matrix)
    scores = []
    for i in range(n):
        pairs = [matrix[i][j] for j in range(n) if include_self or j != i]
        scores.append(sum(pairs) / len(pairs))
    return scores


@pytest.mark.parametrize("include_self", [True, False])
def test_importance_is_the_papers_formula(include_self):
    rng = np.random.default_rng(4)
    for n in (2, 3, 7):
        m = rng.random((n, n))
        m = (m + m.T) / 2 + np.diag(rng.random(n) * 3)  # self-similarities differ, as MI's entropies do
        np.testing.assert_allclose(mean_similarity(m, include_self=include_self), _paper_importance(m, include_self), rtol=1e-12)
    np.testing.assert_allclose(mean_similarity(MATRIX, include_self=include_self), _paper_importance(MATRIX, include_self))


def test_the_self_pair_is_included_by_default():
    np.testing.assert_allclose(mean_similarity(MATRIX), [0.3, 0.375, 2.325, 2.45])
    np.testing.assert_allclose(mean_similarity(MATRIX, include_self=False), [0.4, 0.5, 0.1, 0.8 / 3])


def test_rank_known_order():
    order, ranks = rank_least_similar(MATRIX)
    assert order.tolist() == [0, 1, 2, 3]
    order, ranks = rank_least_similar(MATRIX, include_self=False)
    assert order.tolist() == [2, 3, 0, 1]
    assert ranks.tolist() == [3, 4, 1, 2]


def test_ties_are_broken_by_index():
    m = np.ones((5, 5))
    m[3, :] = m[:, 3] = 0.5  # volume 3 least similar, the rest tie
    order, ranks = rank_least_similar(m)
    assert order.tolist() == [3, 0, 1, 2, 4]
    assert select_least_similar(m, 3) == [3, 0, 1]


def test_select_least_similar_budgets():
    assert select_least_similar(MATRIX, 1, include_self=False) == [2]
    assert select_least_similar(MATRIX, 2, include_self=False) == [2, 3]
    assert select_least_similar(MATRIX, 4, include_self=False) == [2, 3, 0, 1]
    assert select_least_similar(MATRIX, 2) == [0, 1]


def test_single_volume():
    m = np.array([[1.0]])
    assert np.isnan(mean_similarity(m, include_self=False)[0])
    assert mean_similarity(m).tolist() == [1.0]
    order, ranks = rank_least_similar(m)
    assert order.tolist() == [0] and ranks.tolist() == [1]
    assert select_least_similar(m, 1) == [0]


@pytest.mark.parametrize("budget", [0, 5, -1, 2.0, True])
def test_select_least_similar_rejects_budget(budget):
    with pytest.raises(ValueError, match="budget must be"):
        select_least_similar(MATRIX, budget)


def test_select_random_is_seeded_and_valid():
    a = select_random(41, 10, seed=3)
    assert a == select_random(41, 10, seed=3)
    assert a != select_random(41, 10, seed=4)
    assert len(set(a)) == 10 and all(0 <= i < 41 for i in a) and a == sorted(a)
    assert select_random(5, 5, seed=0) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("args", "message"),
    [((5, 6, 0), "budget must be between 1 and"), ((0, 1, 0), "n must be an integer >= 1"), ((5, 2, -1), "seed must be")],
)
def test_select_random_rejects(args, message):
    with pytest.raises(ValueError, match=message):
        select_random(*args)


@pytest.mark.parametrize(
    "matrix", [np.zeros((2, 3)), np.zeros((0, 0)), np.array([[1.0, np.nan], [np.nan, 1.0]]), np.zeros(3)]
)
def test_rejects_bad_matrix(matrix):
    with pytest.raises(ValueError, match="matrix must"):
        rank_least_similar(matrix)

