"""CompletionTask and the task generators (MATH.md §5.1–§5.3, §6.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlnvolume as dv
from dlnvolume import tasks


def make_task(rng, m=3, n=4, p=0.5):
    mask = rng.uniform(size=(m, n)) < p
    mask[0, 0] = True
    values = np.where(mask, rng.standard_normal((m, n)), np.nan)  # unobserved entries may be NaN
    return dv.CompletionTask(values, mask), values, mask


def test_loss_grad_mse(rng):
    task, values, mask = make_task(rng)
    X = rng.standard_normal((3, 4))
    res = np.where(mask, X - np.nan_to_num(values), 0.0)
    assert abs(task.loss(X) - 0.5 * np.sum(res**2)) <= 1e-14
    np.testing.assert_array_equal(task.grad(X), res)
    np.testing.assert_array_equal(task.residual(X), res)
    assert abs(task.mse(X) - np.mean((X - values)[mask] ** 2)) <= 1e-14
    assert task.n_observed == int(mask.sum())
    assert task.solution_dim == 12 - int(mask.sum())
    assert task.shape == (3, 4)
    assert np.all(np.isfinite(task.values))


def test_grad_vs_finite_differences(rng):
    task, _, _ = make_task(rng, 4, 3)
    X = rng.standard_normal((4, 3))
    G = task.grad(X)
    h = 1e-6
    fd = np.zeros_like(X)
    for i in range(4):
        for j in range(3):
            E = np.zeros_like(X)
            E[i, j] = h
            fd[i, j] = (task.loss(X + E) - task.loss(X - E)) / (2 * h)
    # the loss is quadratic: central differences are exact up to rounding (~eps·|E|/h)
    np.testing.assert_allclose(G, fd, rtol=0, atol=1e-8)


def test_project_to_solutions(rng):
    task, values, mask = make_task(rng)
    X = rng.standard_normal((3, 4))
    P = task.project_to_solutions(X)
    assert task.loss(P) == 0.0
    np.testing.assert_array_equal(P[~mask], X[~mask])       # unobserved entries untouched
    np.testing.assert_array_equal(P[mask], values[mask])
    np.testing.assert_array_equal(task.project_to_solutions(P), P)   # idempotent
    # Euclidean projection: X − P is orthogonal to the direction space span{E_ij : (i, j) ∉ Ω}
    assert np.all((X - P)[~mask] == 0)
    # and P is the closest solution: any other solution is farther
    for _ in range(5):
        S = P + np.where(mask, 0.0, rng.standard_normal((3, 4)))
        assert task.loss(S) == 0.0
        assert np.sum((X - S) ** 2) >= np.sum((X - P) ** 2)


def test_batched_evaluation(rng):
    task, _, _ = make_task(rng)
    Xb = rng.standard_normal((2, 5, 3, 4))
    L, G, M, P = task.loss(Xb), task.grad(Xb), task.mse(Xb), task.project_to_solutions(Xb)
    assert L.shape == M.shape == (2, 5)
    assert G.shape == P.shape == (2, 5, 3, 4)
    for i in range(2):
        for j in range(5):
            assert L[i, j] == task.loss(Xb[i, j])
            assert M[i, j] == task.mse(Xb[i, j])
            np.testing.assert_array_equal(G[i, j], task.grad(Xb[i, j]))
            np.testing.assert_array_equal(P[i, j], task.project_to_solutions(Xb[i, j]))
    assert task.loss(Xb[:1, :1]).shape == (1, 1)
    assert np.shape(task.loss(Xb[0, 0])) == ()


def test_task_is_immutable_copy(rng):
    task, values, mask = make_task(rng)
    mask_before = mask.copy()
    mask[:] = False
    np.testing.assert_array_equal(task.mask, mask_before)
    with pytest.raises(ValueError):
        task.values[0, 0] = 5.0


def test_test_error_with_ground_truth(rng):
    W = rng.standard_normal((3, 3))
    mask = np.eye(3, dtype=bool)
    task = dv.CompletionTask(W, mask, ground_truth=W)
    X = rng.standard_normal((3, 3))
    assert abs(task.test_error(X) - np.mean((X - W) ** 2)) <= 1e-15
    assert task.test_error(W) == 0.0


# ------------------------------------------------------------------------------------------------
def test_diagonal_2x2(rng):
    task = tasks.diagonal_2x2()
    np.testing.assert_array_equal(task.mask, np.eye(2, dtype=bool))
    assert task.n_observed == 2 and task.solution_dim == 2
    for a, b in rng.standard_normal((5, 2)):
        X = np.array([[1.0, a], [b, 1.0]])
        assert task.loss(X) == 0.0
        assert abs(np.linalg.det(X) - (1 - a * b)) <= 1e-12
    # E(X) = ½[(X11 − 1)² + (X22 − 1)²]
    X = rng.standard_normal((2, 2))
    assert abs(task.loss(X) - 0.5 * ((X[0, 0] - 1) ** 2 + (X[1, 1] - 1) ** 2)) <= 1e-15
    # rank-1 solutions on the hyperbola ab = 1; the corners a = b = ±1 have σ_1 = 2
    for a in (0.5, 1.0, -2.0):
        X = np.array([[1.0, a], [1 / a, 1.0]])
        assert task.loss(X) == 0.0
        s = np.linalg.svd(X, compute_uv=False)
        assert s[1] <= 1e-14 and abs(s[0] - (abs(a) + 1 / abs(a))) <= 1e-14


def test_razin_cohen_2x2(rng):
    task = tasks.razin_cohen_2x2()
    np.testing.assert_array_equal(task.mask, [[False, True], [True, True]])
    assert task.n_observed == 3 and task.solution_dim == 1
    for x in rng.standard_normal(5) * 10:
        X = np.array([[x, 1.0], [1.0, 0.0]])
        assert task.loss(X) == 0.0
        assert abs(np.linalg.det(X) + 1.0) <= 1e-12   # every solution has det = −1
    assert task.loss(np.zeros((2, 2))) == 1.0


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n,r,k", [(5, 5, 1, 10), (6, 4, 2, 20), (3, 7, 3, 21), (4, 4, 2, 16), (2, 3, 1, 1)])
def test_random_low_rank(m, n, r, k):
    task = tasks.random_low_rank(m, n, r, k, rng=123)
    W = task.ground_truth
    assert W.shape == (m, n) and task.shape == (m, n)
    assert np.linalg.matrix_rank(W) == r
    assert abs(math.sqrt(np.mean(W**2)) - 1.0) <= 1e-12          # RMS entry 1
    assert task.n_observed == k == int(task.mask.sum())          # exactly k distinct observed entries
    np.testing.assert_array_equal(task.values[task.mask], W[task.mask])
    assert task.loss(W) == 0.0
    assert task.solution_dim == m * n - k


def test_random_low_rank_reproducible():
    t1 = tasks.random_low_rank(6, 5, 2, 12, rng=7)
    t2 = tasks.random_low_rank(6, 5, 2, 12, rng=7)
    t3 = tasks.random_low_rank(6, 5, 2, 12, rng=8)
    t4 = tasks.random_low_rank(6, 5, 2, 12, rng=np.random.default_rng(7))
    t5 = tasks.random_low_rank(6, 5, 2, 12, rng=np.random.default_rng(7))
    for a, b in ((t1, t2), (t4, t5)):
        np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(t1.ground_truth, t3.ground_truth)
    # a Generator is consumed: two calls with one Generator give two different tasks
    g = np.random.default_rng(7)
    a, b = tasks.random_low_rank(6, 5, 2, 12, rng=g), tasks.random_low_rank(6, 5, 2, 12, rng=g)
    assert not np.array_equal(a.ground_truth, b.ground_truth)


def test_random_low_rank_mask_is_uniform():
    """Each entry is observed with probability k/(mn): binomial bound over 400 tasks."""
    m, n, k, reps = 3, 4, 5, 400
    counts = np.zeros((m, n))
    for s in range(reps):
        counts += tasks.random_low_rank(m, n, 1, k, rng=s).mask
    p = k / (m * n)
    sd = math.sqrt(reps * p * (1 - p))
    assert np.all(np.abs(counts - reps * p) <= 4.5 * sd)  # 12 cells, 4.5 sd: family-wise false alarm < 1e-4


def test_random_low_rank_too_many_observations():
    with pytest.raises(dv.errors.InvalidArgumentError, match="n_observed"):
        tasks.random_low_rank(3, 3, 1, 10, rng=0)
    task = tasks.random_low_rank(3, 3, 1, 9, rng=0)   # all entries is allowed
    assert task.n_observed == 9 and task.solution_dim == 0
