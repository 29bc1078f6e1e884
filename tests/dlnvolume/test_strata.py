"""Rank strata M_r: dimension, numerical rank, best rank-r approximation, tangent projection, SVD chart
(MATH.md §3.1, §5.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlnvolume import strata


def random_orthogonal(k, rng):
    Qm, Rm = np.linalg.qr(rng.standard_normal((k, k)))
    return Qm * np.sign(np.diag(Rm))


def rank_r(m, n, r, rng):
    return rng.standard_normal((m, r)) @ rng.standard_normal((r, n))


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n", [(1, 1), (2, 2), (3, 5), (6, 2), (4, 4)])
def test_dimension(m, n):
    for r in range(min(m, n) + 1):
        assert strata.dimension(m, n, r) == r * (m + n - r)
    assert strata.dimension(m, n, min(m, n)) == m * n
    assert isinstance(strata.dimension(m, n, 1), int)


def test_dimension_matches_tangent_space_numerically(rng):
    """r(m+n−r) = dim span{X B + C X} at a rank-r X (independent of the formula)."""
    for m, n, r in [(3, 4, 1), (4, 4, 2), (5, 3, 3), (2, 6, 2)]:
        X = rank_r(m, n, r, rng)
        V = np.array([(X @ rng.standard_normal((n, n)) + rng.standard_normal((m, m)) @ X).ravel()
                      for _ in range(m * n + 3)])
        assert np.linalg.matrix_rank(V, tol=1e-9 * np.abs(V).max()) == strata.dimension(m, n, r)


# ------------------------------------------------------------------------------------------------
def test_numerical_rank_default_rtol():
    eps = np.finfo(np.float64).eps
    assert strata.default_rtol(3, 5) == 5 * eps
    assert int(strata.numerical_rank(np.diag([1.0, 1e-20]))) == 1
    assert int(strata.numerical_rank(np.diag([1.0, 1e-10]))) == 2
    assert int(strata.numerical_rank(np.zeros((3, 2)))) == 0
    assert int(strata.numerical_rank(np.eye(4))) == 4
    # the documented threshold is σ_i > rtol·σ_1 with rtol = max(m, n)·eps
    thr = 2 * eps
    assert int(strata.numerical_rank(np.diag([1.0, 4 * thr]))) == 2
    assert int(strata.numerical_rank(np.diag([1.0, thr / 4]))) == 1


def test_numerical_rank_rtol_and_scale_invariance(rng):
    X = np.diag([3.0, 1e-5, 1e-9])
    assert int(strata.numerical_rank(X, rtol=1e-7)) == 2
    assert int(strata.numerical_rank(X, rtol=1e-3)) == 1
    assert int(strata.numerical_rank(X, rtol=1e-12)) == 3
    for c in (1e-200, 1e200):
        assert int(strata.numerical_rank(c * X, rtol=1e-7)) == 2
    for m, n, r in [(4, 3, 2), (5, 5, 1), (3, 6, 3)]:
        X = rank_r(m, n, r, rng)
        assert int(strata.numerical_rank(X)) == r == np.linalg.matrix_rank(X)
        assert int(strata.numerical_rank(1e-250 * X)) == r


def test_numerical_rank_batched(rng):
    Xb = np.stack([rank_r(4, 3, r, rng) for r in (1, 2, 3)] + [np.zeros((4, 3))])
    out = strata.numerical_rank(Xb)
    assert out.shape == (4,)
    np.testing.assert_array_equal(out, [1, 2, 3, 0])
    assert strata.numerical_rank(Xb[:1]).shape == (1,)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n", [(4, 4), (5, 3), (2, 6)])
def test_best_rank_approx_eckart_young(m, n, rng):
    X = rng.standard_normal((m, n))
    s = np.linalg.svd(X, compute_uv=False)
    for r in range(min(m, n) + 1):
        Xr = strata.best_rank_approx(X, r)
        assert Xr.shape == (m, n)
        assert np.linalg.matrix_rank(Xr, tol=1e-10) == r
        # Frobenius error² = Σ_{i>r} σ_i², spectral error = σ_{r+1}
        assert abs(np.sum((X - Xr) ** 2) - np.sum(s[r:] ** 2)) <= 1e-12 * np.sum(s**2)
        spec = np.linalg.norm(X - Xr, 2)
        assert abs(spec - (s[r] if r < len(s) else 0.0)) <= 1e-12 * s[0]
        # no random rank-r matrix does better
        for _ in range(5):
            Y = rank_r(m, n, r, rng) if r else np.zeros((m, n))
            assert np.sum((X - Y) ** 2) >= np.sum((X - Xr) ** 2) - 1e-12


def test_best_rank_approx_batched(rng):
    Xb = rng.standard_normal((2, 3, 4, 3))
    out = strata.best_rank_approx(Xb, 1)
    assert out.shape == Xb.shape
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], strata.best_rank_approx(Xb[i, j], 1), atol=1e-13)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n,r", [(3, 3, 1), (4, 3, 2), (3, 5, 2), (4, 4, 4), (5, 2, 1), (3, 3, 0)])
def test_tangent_project(m, n, r, rng):
    X = rank_r(m, n, r, rng) if r else np.zeros((m, n))
    if r == 0:
        X = rng.standard_normal((m, n))  # rank=0: the tangent space of {0} is {0}
    P = lambda Z: strata.tangent_project(X, Z, rank=r)  # noqa: E731
    Z1, Z2 = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    PZ1 = P(Z1)
    np.testing.assert_allclose(P(PZ1), PZ1, atol=1e-12)                       # idempotent
    assert abs(np.sum(PZ1 * Z2) - np.sum(Z1 * P(Z2))) <= 1e-12                 # self-adjoint
    # range dimension r(m+n−r): matrix of P in the basis E_ij
    M = np.array([P(np.eye(m * n)[k].reshape(m, n)).ravel() for k in range(m * n)]).T
    assert np.linalg.matrix_rank(M, tol=1e-9) == r * (m + n - r)
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    # kills the normal space U_⊥ W V_⊥ᵀ, fixes tangent vectors X B + C X
    U, _, Vt = np.linalg.svd(X)
    Un, Vn = U[:, r:], Vt[r:].T
    N = Un @ rng.standard_normal((m - r, n - r)) @ Vn.T
    np.testing.assert_allclose(P(N), 0, atol=1e-12)
    if r:
        T = X @ rng.standard_normal((n, n)) + rng.standard_normal((m, m)) @ X
        np.testing.assert_allclose(P(T), T, atol=1e-11)
    np.testing.assert_allclose(strata.normal_project(X, Z1, rank=r), Z1 - PZ1, atol=1e-13)
    np.testing.assert_allclose(strata.normal_project(X, N, rank=r), N, atol=1e-12)


def test_tangent_project_default_is_full_rank(rng):
    X = rank_r(4, 3, 1, rng)  # documented: rank=None means min(m, n), whose tangent space is everything
    Z = rng.standard_normal((4, 3))
    np.testing.assert_allclose(strata.tangent_project(X, Z), Z, atol=1e-12)


def test_tangent_project_batched(rng):
    Xb = rng.standard_normal((3, 4, 3))
    Zb = rng.standard_normal((3, 4, 3))
    out = strata.tangent_project(Xb, Zb, rank=1)
    assert out.shape == (3, 4, 3)
    for k in range(3):
        np.testing.assert_allclose(out[k], strata.tangent_project(Xb[k], Zb[k], rank=1), atol=1e-13)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n,r", [(3, 3, 3), (4, 3, 2), (2, 5, 1)])
def test_svd_chart(m, n, r, rng):
    sigma = rng.uniform(0.5, 2.0, size=r)
    Q = random_orthogonal(m, rng)[:, :r]
    R = random_orthogonal(n, rng)[:, :r]
    X = strata.svd_chart(sigma, Q, R)
    assert X.shape == (m, n)
    np.testing.assert_allclose(X, Q @ np.diag(sigma) @ R.T, atol=1e-14)
    np.testing.assert_allclose(np.linalg.svd(X, compute_uv=False)[:r], np.sort(sigma)[::-1], rtol=1e-13)
    assert int(strata.numerical_rank(X)) == r
    # batched
    sb = rng.uniform(0.5, 2.0, size=(2, r))
    Qb = np.stack([Q, Q])
    Rb = np.stack([R, R])
    Xb = strata.svd_chart(sb, Qb, Rb)
    assert Xb.shape == (2, m, n)
    for k in range(2):
        np.testing.assert_allclose(Xb[k], Q @ np.diag(sb[k]) @ R.T, atol=1e-14)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n,r", [(3, 3, 3), (4, 3, 2), (5, 4, 2), (2, 6, 1), (4, 4, 4)])
def test_euclidean_log_jacobian_closed_form(m, n, r, rng):
    """∏σ_i^{m+n−2r} van(σ²) (MATH.md §3.1); the Gram-determinant check is in test_dense_reference."""
    sigma = rng.uniform(0.1, 3.0, size=r)
    iu = np.triu_indices(r, 1)
    ref = (m + n - 2 * r) * np.sum(np.log(sigma)) + np.sum(np.log(np.abs(sigma[iu[0]] ** 2 - sigma[iu[1]] ** 2)))
    got = strata.euclidean_log_jacobian(sigma, (m, n))
    assert abs(got - ref) <= 1e-12 * max(1.0, abs(ref))
    # batched, and −inf at coincident σ (documented)
    out = strata.euclidean_log_jacobian(np.stack([sigma, sigma[::-1]]), (m, n))
    assert out.shape == (2,)
    np.testing.assert_allclose(out, [ref, ref], rtol=1e-12)
    if r >= 2:
        assert strata.euclidean_log_jacobian(np.ones(r), (m, n)) == -math.inf


def test_euclidean_log_jacobian_extreme_scale():
    """Log-space evaluation: σ of size 1e±150 give the exact scaling (m+n−2r)r + r(r−1) times log c."""
    sigma = np.array([2.0, 1.0])
    base = strata.euclidean_log_jacobian(sigma, (4, 3))
    for c in (1e-150, 1e150):
        got = strata.euclidean_log_jacobian(c * sigma, (4, 3))
        ref = base + (3 * 2 + 2) * math.log(c)
        assert abs(got - ref) <= 1e-12 * abs(ref)
