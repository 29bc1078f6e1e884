"""The geometry core against an independent dense reference (MATH.md §1.3, §2.3, §3; §8 items 9, 14).

The reference never uses singular-value formulas. It builds the operator

    A_{N,X}(Z) = Σ_{p=1}^N (XXᵀ)^{(N−p)/N} Z (XᵀX)^{(p−1)/N}            (0^0 := 1)

as an ``mn × mn`` matrix from fractional matrix powers computed with ``numpy.linalg.eigh`` of
``P = XXᵀ`` and ``Q = XᵀX`` (eigenvalues below ``ZERO_RTOL · λ_max`` are exact zeros), and the
infinite-depth operator ``Ā_∞(Z) = ∫₀¹ P^{1−s} Z Q^s ds`` by Gauss–Legendre quadrature. The tangent
space of the rank-r stratum ``M_r`` is spanned numerically by ``{X B + C X}`` (random ``B``, ``C``),
and the volume density of ``M_r`` w.r.t. its Frobenius Hausdorff measure is ``−½ log det`` of ``A``
restricted to that space (orthonormal basis).

Vectorisation is row-major: ``(P Z Q).ravel() == kron(P, Qᵀ) @ Z.ravel()``.

Tolerance: ``|got − ref| ≤ 1e-9 · max(1, |ref|)``, i.e. 1e-9 relative on the log value, and 1e-9
absolute where the log is of size ≤ 1 (near 0). The dense operators here have condition numbers
≤ ~1e3, so float64 rounding in ``slogdet``/``eigh`` is ~1e-13, far below this tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlnvolume as dv
from dlnvolume import strata

ZERO_RTOL = 1e-10   # eigenvalues of XXᵀ below this · λ_max are exact zeros
GL_NODES = 48       # Gauss–Legendre nodes for the infinite-depth integral (convergence tested below)
TOL = 1e-9


def close(got, ref, tol=TOL):
    got = np.asarray(got, dtype=float)
    ref = np.asarray(ref, dtype=float)
    return np.all(np.abs(got - ref) <= tol * np.maximum(1.0, np.abs(ref)))


# ------------------------------------------------------------------------------------------------
# independent dense reference
# ------------------------------------------------------------------------------------------------
def _eig_psd(S):
    mu, V = np.linalg.eigh(0.5 * (S + S.T))
    zero = mu <= ZERO_RTOL * max(mu.max(), 0.0)
    return mu, V, zero


def frac_power(S, alpha):
    """``S^alpha`` for PSD ``S`` via eigh, with ``0^0 = 1`` and ``0^alpha = 0`` for ``alpha > 0``."""
    mu, V, zero = _eig_psd(S)
    safe = np.where(zero, 1.0, mu)
    p = np.where(zero, 1.0 if alpha == 0 else 0.0, safe**alpha)
    return (V * p) @ V.T


def range_projector(S):
    mu, V, zero = _eig_psd(S)
    W = V[:, ~zero]
    return W @ W.T


def dense_A(X, depth, normalized=True, nodes=GL_NODES):
    """The mn×mn matrix of A_{N,X} (or A/N, or Ā_∞ for depth inf)."""
    P = X @ X.T
    Q = X.T @ X
    if math.isinf(depth):
        x, w = np.polynomial.legendre.leggauss(nodes)
        s = 0.5 * (x + 1.0)
        w = 0.5 * w
        return sum(wk * np.kron(frac_power(P, 1.0 - sk), frac_power(Q, sk)) for sk, wk in zip(s, w))
    N = depth
    A = sum(np.kron(frac_power(P, (N - p) / N), frac_power(Q, (p - 1) / N)) for p in range(1, N + 1))
    return A / N if normalized else A


def dense_A_renormalized_inf(X, nodes=GL_NODES):
    """Ā_∞ plus the renormalized mixed blocks of MATH.md §3.4.

    At N = ∞ the normalized multipliers of the mixed blocks (row inside / column outside the
    singular subspaces, and vice versa) are σ_i^{2(N−1)/N}/N → 0, so the induced metric on a lower
    stratum or a rectangular shape degenerates. The package returns the renormalized density
    (the constant N^{r(m+n−2r)/2} removed), which replaces each mixed multiplier σ_i^{2(N−1)/N}/N by
    N · σ_i^{2(N−1)/N}/N → σ_i². Basis-free, that is the operator
        Z ↦ Ā_∞(Z) + P Z (I − Π_Q) + (I − Π_P) Z Q,
    with Π_P, Π_Q the orthogonal projectors onto range P, range Q: on the inside block both extra
    terms vanish, on the mixed blocks Ā_∞ vanishes (Q^s, P^{1−s} kill the kernels for 0 < s < 1) and
    the extra term multiplies by σ_i². On square full-rank X the extra terms are zero.
    """
    m, n = X.shape
    P = X @ X.T
    Q = X.T @ X
    extra = np.kron(P, np.eye(n) - range_projector(Q)) + np.kron(np.eye(m) - range_projector(P), Q)
    return dense_A(X, math.inf, nodes=nodes) + extra


def tangent_basis(X, r, rng):
    """Orthonormal basis (mn × r(m+n−r)) of T_X M_r, spanned numerically by {X B + C X}."""
    m, n = X.shape
    dim = r * (m + n - r)
    if dim == 0:
        return np.zeros((m * n, 0))
    vecs = [(X @ rng.standard_normal((n, n)) + rng.standard_normal((m, m)) @ X).ravel() for _ in range(dim + 6)]
    U, s, _ = np.linalg.svd(np.array(vecs).T, full_matrices=False)
    assert s[dim - 1] > 1e-6 * s[0], "tangent vectors do not span r(m+n-r) dimensions"
    if dim < len(s):
        assert s[dim] < 1e-10 * s[0], "tangent vectors span more than r(m+n-r) dimensions"
    return U[:, :dim]


def dense_log_density(A, T):
    sign, logdet = np.linalg.slogdet(T.T @ A @ T)
    assert sign > 0
    return -0.5 * logdet


def random_orthogonal(k, rng):
    Qm, Rm = np.linalg.qr(rng.standard_normal((k, k)))
    return Qm * np.sign(np.diag(Rm))


def random_rank_r(m, n, r, rng, lo=0.3, hi=3.0):
    """Exactly rank-r m×n matrix with singular values uniform in [lo, hi] (distinct a.s.)."""
    sigma = np.sort(rng.uniform(lo, hi, size=r))[::-1]
    Qm = random_orthogonal(m, rng)[:, :r]
    Rn = random_orthogonal(n, rng)[:, :r]
    return (Qm * sigma) @ Rn.T


# (m, n, r): square, rectangular (both orientations), rank-deficient
CASES = [(3, 3, 3), (2, 2, 2), (4, 3, 3), (3, 4, 3), (2, 5, 2), (4, 4, 2), (5, 3, 1), (3, 4, 2), (3, 3, 1)]
DEPTHS = [1, 2, 3, 7, math.inf]


def _case_matrix(m, n, r, rng):
    return random_rank_r(m, n, r, rng)


# ------------------------------------------------------------------------------------------------
# sanity of the reference itself
# ------------------------------------------------------------------------------------------------
def test_reference_vectorisation_convention(rng):
    P = rng.standard_normal((3, 3))
    Z = rng.standard_normal((3, 4))
    Qm = rng.standard_normal((4, 4))
    np.testing.assert_allclose(np.kron(P, Qm.T) @ Z.ravel(), (P @ Z @ Qm).ravel(), rtol=1e-13, atol=1e-13)


def test_reference_fractional_powers(rng):
    X = random_rank_r(4, 3, 2, rng)
    P = X @ X.T
    # P^{1/2} P^{1/2} = P; P^0 = I (0^0 = 1); P^{1/3} has rank 2
    H = frac_power(P, 0.5)
    np.testing.assert_allclose(H @ H, P, atol=1e-12)
    np.testing.assert_allclose(frac_power(P, 0.0), np.eye(4), atol=1e-14)
    assert np.linalg.matrix_rank(frac_power(P, 1 / 3), tol=1e-8) == 2


@pytest.mark.parametrize("m,n,r", [(3, 3, 3), (4, 3, 2)])
def test_gauss_legendre_converged(m, n, r, rng):
    """The infinite-depth quadrature is converged: 24, 48 and 96 nodes agree to 1e-13."""
    X = random_rank_r(m, n, r, rng, lo=0.2, hi=4.0)
    A24, A48, A96 = (dense_A(X, math.inf, nodes=k) for k in (24, 48, 96))
    scale = np.abs(A96).max()
    assert np.abs(A48 - A96).max() <= 1e-13 * scale
    assert np.abs(A24 - A96).max() <= 1e-12 * scale


def test_reference_infinite_depth_is_large_depth_limit(rng):
    """Independent check of the quadrature operator: normalized A_N → Ā_∞ (error O(1/N))."""
    X = random_rank_r(3, 3, 3, rng)
    Ainf = dense_A(X, math.inf)
    e1 = np.abs(dense_A(X, 50) - Ainf).max()
    e2 = np.abs(dense_A(X, 400) - Ainf).max()
    assert e2 < e1 / 5  # first order: the ratio is ~8


# ------------------------------------------------------------------------------------------------
# log volume density vs −½ log det of the restricted dense operator
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,n,r", CASES)
@pytest.mark.parametrize(  # depth inf exists only normalized (refusal tested in test_input_errors)
    "depth,normalized", [(d, nz) for d in DEPTHS for nz in (True, False) if nz or not math.isinf(d)]
)
def test_log_volume_density_vs_dense(m, n, r, depth, normalized, rng):
    X = _case_matrix(m, n, r, rng)
    T = tangent_basis(X, r, rng)
    if math.isinf(depth):
        A = dense_A_renormalized_inf(X)  # equals Ā_∞ for square full rank; see its docstring
    else:
        A = dense_A(X, depth, normalized)
    ref = dense_log_density(A, T)
    got = dv.log_volume_density(X, depth, rank=r, normalized=normalized)
    assert np.shape(got) == ()
    assert close(got, ref), (m, n, r, depth, normalized, float(got), ref)


@pytest.mark.parametrize("depth", [2, 3, 7, math.inf])
def test_log_volume_density_at_best_rank_approximation(depth, rng):
    """rank=r < rank X evaluates at the best rank-r approximation (documented)."""
    X = rng.standard_normal((4, 3))
    Xr = strata.best_rank_approx(X, 2)
    U, s, Vt = np.linalg.svd(X)
    Xr_indep = (U[:, :2] * s[:2]) @ Vt[:2]
    T = tangent_basis(Xr_indep, 2, rng)
    A = dense_A_renormalized_inf(Xr_indep) if math.isinf(depth) else dense_A(Xr_indep, depth)
    ref = dense_log_density(A, T)
    assert close(dv.log_volume_density(X, depth, rank=2), ref)
    assert close(dv.log_volume_density(Xr, depth, rank=2), ref)
    # the operators at rank=2 are those of the truncated matrix as well
    Z = rng.standard_normal((4, 3))
    A_r = dense_A(Xr_indep, depth)
    metric = dv.DLNMetric(depth)
    np.testing.assert_allclose(metric.apply(X, Z, rank=2), (A_r @ Z.ravel()).reshape(4, 3), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.sort(metric.multipliers(X, rank=2).ravel()), np.linalg.eigvalsh(A_r),
                               rtol=0, atol=1e-10)


def test_infinite_depth_rectangular_unrenormalized_is_degenerate(rng):
    """Why the package renormalizes: Ā_∞ itself is singular on T M_r off the square full-rank set."""
    X = random_rank_r(4, 3, 3, rng)
    A = dense_A(X, math.inf)
    T = tangent_basis(X, 3, rng)
    ev = np.linalg.eigvalsh(T.T @ A @ T)
    assert ev.min() < 1e-12 * ev.max()
    # exactly r(m+n-2r) = 3 mixed directions vanish
    assert np.sum(ev < 1e-12 * ev.max()) == 3


@pytest.mark.parametrize("m,n,r", [(3, 3, 3), (4, 3, 3), (4, 4, 2)])
def test_renormalized_inf_is_limit_of_rescaled_finite_depth(m, n, r, rng):
    """MATH.md §3.4: log ρ̄_N − (r(m+n−2r)/2) log N → log ρ̄_∞(renormalized); dense on both sides."""
    X = random_rank_r(m, n, r, rng)
    T = tangent_basis(X, r, rng)
    ref_inf = dense_log_density(dense_A_renormalized_inf(X), T)
    errs = []
    for N in (40, 320):
        ren = dense_log_density(dense_A(X, N), T) - 0.5 * r * (m + n - 2 * r) * math.log(N)
        errs.append(abs(ren - ref_inf))
    assert errs[1] < errs[0] / 4  # O(1/N): the ratio is ~8
    assert close(dv.log_volume_density(X, math.inf, rank=r), ref_inf)


# ------------------------------------------------------------------------------------------------
# DLNMetric methods vs the dense operator
# ------------------------------------------------------------------------------------------------
def _operator(X, depth, normalized, r):
    if math.isinf(depth):
        return dense_A(X, math.inf)
    return dense_A(X, depth, normalized)


METRIC_CASES = [(3, 3, 3), (4, 3, 3), (2, 4, 2), (4, 4, 2), (3, 5, 1)]
METRIC_DEPTHS = [(1, True), (2, True), (3, False), (7, True), (7, False), (math.inf, True)]


@pytest.mark.parametrize("m,n,r", METRIC_CASES)
@pytest.mark.parametrize("depth,normalized", METRIC_DEPTHS)
def test_apply_vs_dense(m, n, r, depth, normalized, rng):
    X = random_rank_r(m, n, r, rng)
    A = _operator(X, depth, normalized, r)
    metric = dv.DLNMetric(depth, normalized)
    Z = rng.standard_normal((m, n))
    ref = (A @ Z.ravel()).reshape(m, n)
    got = metric.apply(X, Z, rank=r)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL * max(1.0, np.abs(ref).max()))
    if r == min(m, n):  # rank=None is the full-rank stratum
        np.testing.assert_allclose(metric.apply(X, Z), ref, rtol=0, atol=TOL * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("m,n,r", METRIC_CASES)
@pytest.mark.parametrize("depth,normalized", METRIC_DEPTHS)
def test_multipliers_vs_dense(m, n, r, depth, normalized, rng):
    X = random_rank_r(m, n, r, rng)
    A = _operator(X, depth, normalized, r)
    metric = dv.DLNMetric(depth, normalized)
    a = metric.multipliers(X, rank=r)
    assert a.shape == (m, n)
    scale = np.abs(A).max()
    # basis-free: the multipliers are the eigenvalues of the dense operator
    np.testing.assert_allclose(np.sort(a.ravel()), np.linalg.eigvalsh(A), rtol=0, atol=TOL * scale)
    # entry (i, j) is the Rayleigh quotient at Q E_ij Rᵀ (full singular frames, descending σ)
    U, _, Vt = np.linalg.svd(X)
    for i in range(m):
        for j in range(n):
            E = np.outer(U[:, i], Vt[j])
            assert abs(E.ravel() @ A @ E.ravel() - a[i, j]) <= TOL * scale


@pytest.mark.parametrize(  # Ā_∞ is degenerate on T M_r off the square full-rank set (see test_input_errors)
    "m,n,r,depth,normalized",
    [c + d for c in METRIC_CASES for d in [(2, True), (3, False), (7, True), (math.inf, True)]
     if not math.isinf(d[0]) or c[0] == c[1] == c[2]],
)
def test_solve_inner_sqrt_vs_dense(m, n, r, depth, normalized, rng):
    X = random_rank_r(m, n, r, rng)
    A = _operator(X, depth, normalized, r)
    T = tangent_basis(X, r, rng)
    AT = T.T @ A @ T
    metric = dv.DLNMetric(depth, normalized)
    Z1 = rng.standard_normal((m, n))
    Z2 = rng.standard_normal((m, n))
    t2 = T.T @ Z2.ravel()
    # solve on a tangent vector
    Zt = (T @ t2).reshape(m, n)
    ref = (T @ np.linalg.solve(AT, t2)).reshape(m, n)
    got = metric.solve(X, Zt, rank=r)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL * max(1.0, np.abs(ref).max()))
    # A(solve(Z)) = Z on tangent vectors
    np.testing.assert_allclose((A @ got.ravel()).reshape(m, n), Zt, rtol=0, atol=1e-10 * max(1.0, np.abs(Zt).max()))
    # inner: normal parts ignored, g(Z1, Z2) = ⟨P_T Z1, A_T^{-1} P_T Z2⟩
    ref_inner = (T.T @ Z1.ravel()) @ np.linalg.solve(AT, t2)
    assert close(metric.inner(X, Z1, Z2, rank=r), ref_inner)
    # symmetric and positive
    assert close(metric.inner(X, Z2, Z1, rank=r), ref_inner)
    assert metric.inner(X, Z1, Z1, rank=r) > 0
    # sqrt: A^{1/2} via eigh of the dense (restricted) operator; A kills the normal space
    mu, W = np.linalg.eigh(AT)
    sqrtAT = (W * np.sqrt(mu)) @ W.T
    ref_sqrt = (T @ (sqrtAT @ (T.T @ Z1.ravel()))).reshape(m, n)
    got_sqrt = metric.sqrt_apply(X, Z1, rank=r)
    np.testing.assert_allclose(got_sqrt, ref_sqrt, rtol=0, atol=TOL * max(1.0, np.abs(ref_sqrt).max()))


@pytest.mark.parametrize("depth,normalized", [(2, True), (3, False), (math.inf, True)])
def test_sqrt_apply_full_dense_eigh(depth, normalized, rng):
    """Full-rank X: sqrt_apply equals the symmetric square root of the full dense matrix."""
    X = rng.standard_normal((3, 3))
    A = _operator(X, depth, normalized, 3)
    mu, W = np.linalg.eigh(0.5 * (A + A.T))
    assert mu.min() > 0
    S = (W * np.sqrt(mu)) @ W.T
    Z = rng.standard_normal((3, 3))
    np.testing.assert_allclose(dv.DLNMetric(depth, normalized).sqrt_apply(X, Z), (S @ Z.ravel()).reshape(3, 3),
                               rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# MATH.md §8 item 9 (brute force) and item 14 (Gram determinant of the SVD chart)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [2, 3, 10, math.inf])
def test_item9_brute_force_diag21(depth):
    X = np.diag([2.0, 1.0])
    ref = -0.5 * np.linalg.slogdet(dense_A(X, depth))[1]
    expected = {2: 0.47140452079103173, 3: 0.37003947505256335, 10: 0.2656182513477054,
                math.inf: 0.23104906018664842}[depth]
    assert abs(math.exp(ref) - expected) <= 1e-12   # the reference reproduces MATH.md §8 item 9
    assert close(dv.log_volume_density(X, depth), math.log(expected))


def chart_jacobian(sigma, Qf, Rf, r):
    """Columns: vec of ∂X/∂(chart coordinate) at (σ, Q, R), coordinates with unit Muirhead density.

    ``X = Q[:, :r] diag(σ) R[:, :r]ᵀ``; Q-coordinates ω_aj (a > j, j < r) with dQ_r = Q dΩ[:, :r],
    Ω skew, so (Qᵀ dQ)_aj = dω_aj; the same for R.
    """
    m, n = Qf.shape[0], Rf.shape[0]
    S = np.diag(sigma)
    cols = [np.outer(Qf[:, k], Rf[:, k]).ravel() for k in range(r)]
    for size, left in ((m, True), (n, False)):
        for j in range(r):
            for a in range(j + 1, size):
                Om = np.zeros((size, size))
                Om[a, j] = 1.0
                Om[j, a] = -1.0
                if left:
                    dX = Qf @ Om[:, :r] @ S @ Rf[:, :r].T
                else:
                    dX = Qf[:, :r] @ S @ (Rf @ Om[:, :r]).T
                cols.append(dX.ravel())
    return np.array(cols).T


@pytest.mark.parametrize("m,n,r", [(3, 3, 3), (4, 3, 2), (5, 4, 2), (4, 4, 1), (3, 5, 2), (4, 3, 3), (2, 2, 2)])
@pytest.mark.parametrize("depth,normalized", [(1, True), (2, True), (3, False), (5, True), (math.inf, True)])
def test_item14_chart_density_vs_gram_determinant(m, n, r, depth, normalized, rng):
    sigma = np.sort(rng.uniform(0.3, 3.0, size=r))[::-1]
    Qf, Rf = random_orthogonal(m, rng), random_orthogonal(n, rng)
    X = (Qf[:, :r] * sigma) @ Rf[:, :r].T
    J = chart_jacobian(sigma, Qf, Rf, r)
    assert J.shape[1] == r * (m + n - r) == strata.dimension(m, n, r)
    # Euclidean: ½ log det(JᵀJ) = SVD Jacobian of MATH.md §3.1
    eu = 0.5 * np.linalg.slogdet(J.T @ J)[1]
    assert close(strata.euclidean_log_jacobian(sigma, (m, n)), eu)
    # g_N: Gram matrix Jᵀ A_T^{-1} J (J's columns are tangent)
    T = tangent_basis(X, r, rng)
    A = dense_A_renormalized_inf(X) if math.isinf(depth) else dense_A(X, depth, normalized)
    JT = T.T @ J
    G = JT.T @ np.linalg.solve(T.T @ A @ T, JT)
    ref = 0.5 * np.linalg.slogdet(G)[1]
    got = dv.DLNMetric(depth, normalized).chart_log_density(sigma, (m, n), rank=r)
    assert close(got, ref), (m, n, r, depth, float(got), ref)
