"""DLNMetric and log_volume_density: MATH.md §8 items 1–7, 10–13, 15, 16, 28, the depth → ∞ rate,
numerical soundness, batching and the chart density (MATH.md §1.5, §2, §3).

Reference numbers are typed in from MATH.md §8; everything else is computed independently in the
test (fractional matrix powers by eigh, closed forms written out with numpy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import multigammaln

import dlnvolume as dv
from dlnvolume import strata

TOL = 1e-9


def close(got, ref, tol=TOL):
    got = np.asarray(got, dtype=float)
    ref = np.asarray(ref, dtype=float)
    return bool(np.all(np.abs(got - ref) <= tol * np.maximum(1.0, np.abs(ref))))


def psd_power(S, alpha):
    """``S^alpha`` for symmetric PSD ``S`` by eigh (0^0 = 1, tiny eigenvalues are zeros)."""
    mu, V = np.linalg.eigh(0.5 * (S + S.T))
    zero = mu <= 1e-12 * max(mu.max(), 0.0)
    p = np.where(zero, 1.0 if alpha == 0 else 0.0, np.where(zero, 1.0, mu) ** alpha)
    return (V * p) @ V.T


def random_orthogonal(k, rng):
    Qm, Rm = np.linalg.qr(rng.standard_normal((k, k)))
    return Qm * np.sign(np.diag(Rm))


def van_log(v):
    """Σ_{i<j} log|v_i − v_j|."""
    v = np.asarray(v, dtype=float)
    iu = np.triu_indices(len(v), 1)
    return float(np.sum(np.log(np.abs(v[iu[0]] - v[iu[1]]))))


def log_mean(u, v):
    return u if u == v else (u - v) / (math.log(u) - math.log(v))


# ------------------------------------------------------------------------------------------------
# item 1: N = 1 is Euclidean
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("shape,rank", [((3, 3), None), ((4, 2), None), ((3, 3), 1), ((2, 5), 2)])
def test_item1_depth_one_is_euclidean(normalized, shape, rank, rng):
    X = rng.standard_normal(shape)
    Z1, Z2 = rng.standard_normal(shape), rng.standard_normal(shape)
    metric = dv.DLNMetric(1, normalized)
    np.testing.assert_allclose(metric.multipliers(X, rank=rank), np.ones(shape), rtol=0, atol=1e-12)
    np.testing.assert_allclose(metric.apply(X, Z1), Z1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metric.sqrt_apply(X, Z1), Z1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metric.solve(X, Z1), Z1, rtol=0, atol=1e-12)
    assert close(metric.inner(X, Z1, Z2), np.sum(Z1 * Z2))
    assert dv.log_volume_density(X, 1, rank=rank, normalized=normalized) == 0.0
    # ρ_1 ≡ 1 also at rank-deficient points and zero
    assert dv.log_volume_density(np.zeros(shape), 1, normalized=normalized) == 0.0


# ------------------------------------------------------------------------------------------------
# item 2: radial identity
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [2, 3, 5])
@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 3)])
def test_item2_radial_identity(N, shape, rng):
    X = rng.standard_normal(shape)
    metric = dv.DLNMetric(N, normalized=False)
    left = N * psd_power(X @ X.T, (N - 1) / N) @ X
    right = N * X @ psd_power(X.T @ X, (N - 1) / N)
    np.testing.assert_allclose(left, right, rtol=0, atol=1e-12)
    np.testing.assert_allclose(metric.apply(X, X), left, rtol=0, atol=1e-11)
    sv = np.linalg.svd(X, compute_uv=False)
    assert close(metric.inner(X, X, X), np.sum(sv ** (2 / N)) / N)
    assert close(dv.DLNMetric(N).inner(X, X, X), np.sum(sv ** (2 / N)))  # normalized: Schatten 2/N


def test_item2_radial_example():
    X = np.diag([2.0, 1.0])
    assert abs(dv.DLNMetric(3, normalized=False).inner(X, X, X) - 0.8624670173227331) <= 1e-14


# ------------------------------------------------------------------------------------------------
# item 3: spectral action and reference multipliers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "N,a11,a22,a12",
    [(2, 4.0, 2.0, 3.0), (3, 7.559526299369239, 3.0, 5.107243151757947),
     (10, 34.822022531844965, 10.0, 20.175071876617714)],
)
def test_item3_multipliers_diag21(N, a11, a22, a12):
    X = np.diag([2.0, 1.0])
    metric = dv.DLNMetric(N, normalized=False)
    a = metric.multipliers(X)
    np.testing.assert_allclose(a, [[a11, a12], [a12, a22]], rtol=1e-13, atol=0)
    np.testing.assert_allclose(dv.DLNMetric(N).multipliers(X), a / N, rtol=1e-13, atol=0)
    # spectral action: A(E_ij) = a_ij E_ij (here Q = R = I)
    for i in range(2):
        for j in range(2):
            E = np.zeros((2, 2))
            E[i, j] = 1.0
            np.testing.assert_allclose(metric.apply(X, E), a[i, j] * E, rtol=0, atol=1e-12)


def test_item3_rectangular_multipliers():
    X = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    a = dv.DLNMetric(3, normalized=False).multipliers(X)
    assert a.shape == (3, 2)
    assert abs(a[2, 0] - 2.5198420997897464) <= 1e-14
    assert abs(a[2, 1] - 1.0) <= 1e-14
    np.testing.assert_allclose(a[:2, :2], [[7.559526299369239, 5.107243151757947], [5.107243151757947, 3.0]],
                               rtol=1e-13)


@pytest.mark.parametrize("depth,normalized", [(2, False), (3, True), (7, False), (math.inf, True)])
def test_item3_spectral_action_random(depth, normalized, rng):
    X = rng.standard_normal((4, 3))
    metric = dv.DLNMetric(depth, normalized)
    a = metric.multipliers(X)
    U, _, Vt = np.linalg.svd(X)
    for i in range(4):
        for j in range(3):
            E = np.outer(U[:, i], Vt[j])
            np.testing.assert_allclose(metric.apply(X, E), a[i, j] * E, rtol=0, atol=1e-11)


# ------------------------------------------------------------------------------------------------
# item 4: rank-deficient
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [2, 3, 6])
def test_item4_rank_deficient(N):
    X = np.diag([1.0, 0.0])
    metric = dv.DLNMetric(N, normalized=False)
    np.testing.assert_allclose(metric.multipliers(X), [[N, 1.0], [1.0, 0.0]], rtol=1e-13, atol=0)
    E22 = np.array([[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(metric.apply(X, E22), np.zeros((2, 2)))
    # matrix of A in the basis E_ij: rank 3, range = T_X M_1 = {Z : Z_22 = 0}, kernel = span{E_22}
    cols = []
    for k in range(4):
        E = np.zeros(4)
        E[k] = 1.0
        cols.append(metric.apply(X, E.reshape(2, 2)).ravel())
    M = np.array(cols).T
    assert np.linalg.matrix_rank(M, tol=1e-10) == 3
    np.testing.assert_array_equal(M[3], np.zeros(4))        # every output has Z_22 = 0
    np.testing.assert_array_equal(M[:, 3], np.zeros(4))     # E_22 is in the kernel


# ------------------------------------------------------------------------------------------------
# item 5: self-adjoint, PSD, equivariance, transpose, homogeneity
# ------------------------------------------------------------------------------------------------
PROPS = [(2, False), (3, True), (5, False), (math.inf, True)]


@pytest.mark.parametrize("depth,normalized", PROPS)
@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 5)])
def test_item5_structural_properties(depth, normalized, shape, rng):
    m, n = shape
    metric = dv.DLNMetric(depth, normalized)
    X = rng.standard_normal(shape)
    Y, Z = rng.standard_normal(shape), rng.standard_normal(shape)
    AY, AZ = metric.apply(X, Y), metric.apply(X, Z)
    assert abs(np.sum(Y * AZ) - np.sum(AY * Z)) <= 1e-11 * (1 + abs(np.sum(Y * AZ)))
    assert np.sum(Z * AZ) > 0
    # PSD also at a rank-deficient point
    Xd = np.outer(rng.standard_normal(m), rng.standard_normal(n))
    assert np.sum(Z * metric.apply(Xd, Z, rank=1)) >= -1e-12
    U, V = random_orthogonal(m, rng), random_orthogonal(n, rng)
    np.testing.assert_allclose(metric.apply(U @ X @ V.T, U @ Z @ V.T), U @ AZ @ V.T, rtol=0, atol=1e-11)
    np.testing.assert_allclose(metric.apply(X.T, Z.T), AZ.T, rtol=0, atol=1e-11)
    expo = 2.0 if math.isinf(depth) else 2.0 * (depth - 1) / depth
    for c in (2.5, -0.3):
        np.testing.assert_allclose(metric.apply(c * X, Z), abs(c) ** expo * AZ, rtol=1e-11, atol=1e-12)
    # entries of size 1e±150: the operators scale exactly (no overflow at these sizes)
    if m == n or not math.isinf(depth):
        SZ = metric.solve(X, Z)
        for c in (1e-150, 1e150):
            k = abs(c) ** expo
            np.testing.assert_allclose(metric.apply(c * X, Z) / k, AZ, rtol=1e-10, atol=1e-10 * np.abs(AZ).max())
            np.testing.assert_allclose(metric.solve(c * X, Z) * k, SZ, rtol=1e-10, atol=1e-10 * np.abs(SZ).max())
            assert close(metric.inner(c * X, Z, Z) * k, metric.inner(X, Z, Z), tol=1e-10)


# ------------------------------------------------------------------------------------------------
# item 6: N = 2 ; item 7: single output
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4)])
def test_item6_depth_two(shape, rng):
    X = rng.standard_normal(shape)
    Z = rng.standard_normal(shape)
    ref = psd_power(X @ X.T, 0.5) @ Z + Z @ psd_power(X.T @ X, 0.5)
    np.testing.assert_allclose(dv.DLNMetric(2, normalized=False).apply(X, Z), ref, rtol=0, atol=1e-11)
    np.testing.assert_allclose(dv.DLNMetric(2).apply(X, Z), ref / 2, rtol=0, atol=1e-11)


@pytest.mark.parametrize("N", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_item7_single_output(N, n, rng):
    w = rng.standard_normal((1, n))
    z = rng.standard_normal((1, n))
    nw = np.linalg.norm(w)
    wh = w / nw
    ref = nw ** (2 - 2 / N) * (z + (N - 1) * np.sum(z * wh) * wh)
    np.testing.assert_allclose(dv.DLNMetric(N, normalized=False).apply(w, z), ref, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# items 9–11: reference densities, CMV Theorem 1.1, diagonal X
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "N,normalized,value",
    [(2, True, 0.47140452079103173), (3, True, 0.37003947505256335), (10, True, 0.2656182513477054),
     (math.inf, True, 0.23104906018664842), (2, False, 0.11785113019775792), (3, False, 0.04111549722806259)],
)
def test_item9_reference_values(N, normalized, value):
    got = dv.log_volume_density(np.diag([2.0, 1.0]), N, normalized=normalized)
    assert abs(got - math.log(value)) <= 1e-13
    assert abs(dv.DLNMetric(N, normalized).log_volume_density(np.diag([2.0, 1.0])) - math.log(value)) <= 1e-13


def test_item9_log_mean_value():
    assert abs(log_mean(4.0, 1.0) - 2.1640425613334453) <= 1e-15
    assert abs(1 / (2 * 2.1640425613334453) - 0.23104906018664842) <= 1e-16


def cmv_log(sigma, N):
    """log of N^{d(d−1)/2} ∏σ_i^{(1−N)/N} van(Σ^{2/N}) (CMV Theorem 1.1, MATH.md §3.2)."""
    d = len(sigma)
    return (d * (d - 1) / 2) * math.log(N) + ((1 - N) / N) * np.sum(np.log(sigma)) + van_log(sigma ** (2 / N))


@pytest.mark.parametrize("N", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_item10_cmv_theorem(N, d, rng):
    sigma = np.sort(rng.uniform(0.2, 4.0, size=d))[::-1]
    U, V = random_orthogonal(d, rng), random_orthogonal(d, rng)
    X = (U * sigma) @ V.T
    lhs = dv.log_volume_density(X, N) + van_log(sigma**2)
    assert close(lhs, cmv_log(sigma, N))
    assert close(dv.DLNMetric(N).chart_log_density(sigma, (d, d)), cmv_log(sigma, N))
    if N == 1:
        assert dv.log_volume_density(X, N) == 0.0


@pytest.mark.parametrize("N", [2, 3, 10])
def test_item11_diagonal(N, rng):
    x = np.array([-2.5, 0.7, 1.9, -0.2])
    s = np.abs(x)
    iu = np.triu_indices(4, 1)
    ref = (6 * math.log(N) + ((1 - N) / N) * np.sum(np.log(s))
           + np.sum(np.log((s[iu[0]] ** (2 / N) - s[iu[1]] ** (2 / N)) / (s[iu[0]] ** 2 - s[iu[1]] ** 2))))
    assert close(dv.log_volume_density(np.diag(x), N), ref)
    assert close(dv.log_volume_density(np.diag(x), N, normalized=False), ref - 8 * math.log(N))


# ------------------------------------------------------------------------------------------------
# item 12: homogeneity and invariance of the volume (incl. 1e-150 / 1e+150 entries)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,normalized", [(2, True), (3, False), (7, True), (math.inf, True)])
@pytest.mark.parametrize("shape,rank", [((3, 3), 3), ((4, 2), 2), ((2, 3), 2), ((4, 4), 2), ((3, 5), 1)])
@pytest.mark.parametrize("c", [-3.0, 0.01, 1e-150, 1e150])
def test_item12_homogeneity(depth, normalized, shape, rank, c, rng):
    m, n = shape
    X = rng.standard_normal(shape)
    if rank < min(m, n):
        X = strata.best_rank_approx(X, rank)
    dim = rank * (m + n - rank)
    expo = -dim if math.isinf(depth) else dim / depth - dim
    f0 = dv.log_volume_density(X, depth, rank=rank, normalized=normalized)
    f1 = dv.log_volume_density(c * X, depth, rank=rank, normalized=normalized)
    ref = f0 + expo * math.log(abs(c))
    assert np.isfinite(f1)
    assert close(f1, ref), (float(f1), ref)


@pytest.mark.parametrize("depth", [2, 5, math.inf])
@pytest.mark.parametrize("c", [1e-150, 1e150])
def test_log_multipliers_extreme_scale(depth, c, rng):
    X = rng.standard_normal((3, 2))
    metric = dv.DLNMetric(depth)
    expo = 2.0 if math.isinf(depth) else 2.0 * (depth - 1) / depth
    lm0 = metric.log_multipliers(X)
    lm1 = metric.log_multipliers(c * X)
    fin = np.isfinite(lm0)
    np.testing.assert_array_equal(np.isfinite(lm1), fin)
    np.testing.assert_allclose(lm1[fin], lm0[fin] + expo * math.log(c), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("depth", [2, 3, math.inf])
def test_item12_invariance(depth, rng):
    X = rng.standard_normal((4, 3))
    U, V = random_orthogonal(4, rng), random_orthogonal(3, rng)
    f = dv.log_volume_density(X, depth)
    assert close(dv.log_volume_density(U @ X @ V.T, depth), f)
    assert close(dv.log_volume_density(X.T, depth), f)


# ------------------------------------------------------------------------------------------------
# item 13 and the depth → ∞ rate
# ------------------------------------------------------------------------------------------------
def test_item13_multipliers_converge_to_log_mean(rng):
    X = rng.standard_normal((3, 3))
    s = np.linalg.svd(X, compute_uv=False)
    L = np.array([[log_mean(a * a, b * b) for b in s] for a in s])
    lam_inf = dv.DLNMetric(math.inf).multipliers(X)
    # the SVD basis pairs indices with σ in descending order
    np.testing.assert_allclose(lam_inf, L, rtol=1e-12)
    prev = None
    for N in (10, 100, 1000, 10**4):
        err = np.abs(dv.DLNMetric(N).multipliers(X) - L).max()
        if prev is not None:
            assert 7 < prev / err < 13  # O(1/N)
        prev = err


def test_depth_to_infinity_rate(rng):
    """N·(f(N) − f(∞)) = d·log|det X| + Σ_{i,j}Δ_ij²/(12 N) − Σ_{i,j}Δ_ij⁴/(360 N³) + O(N⁻⁵).

    Derivation (for this test, from MATH.md §2.1), l = log σ, Δ_ij = l_i − l_j:
    log λ_ij^{(N)} − log L(σ_i², σ_j²) = −(2/N)·max(l_i, l_j) − E(−2|Δ_ij|/N) with
    E(z) = log(expm1(z)/z) = z/2 + z²/24 − z⁴/2880 + O(z⁶), i.e.
    = −(l_i + l_j)/N − Δ_ij²/(6N²) + Δ_ij⁴/(180 N⁴) + O(N⁻⁶); and f = −½ Σ_{i,j} log λ_ij.
    """
    d = 3
    sigma = np.array([4.0, 2.2, 1.5])
    U, V = random_orthogonal(d, rng), random_orthogonal(d, rng)
    X = (U * sigma) @ V.T
    l = np.log(sigma)
    c1 = d * l.sum()
    c2 = np.sum((l[:, None] - l[None, :]) ** 2) / 12
    c3 = np.sum((l[:, None] - l[None, :]) ** 4) / 360
    finf = dv.log_volume_density(X, math.inf)
    scaled = []
    for N in (10, 100, 1000, 10**4, 10**5, 10**6):
        y = N * (dv.log_volume_density(X, N) - finf)
        scaled.append(y)
        # float64 error of f is ~1e-15·|f| per evaluation, magnified by N
        assert abs(y - c1 - c2 / N + c3 / N**3) <= 1e-4 / N**3 + 1e-13 * N, (N, y, c1 + c2 / N - c3 / N**3)
    scaled = np.array(scaled)
    assert np.all(np.abs(scaled - c1) <= 0.01 * abs(c1))  # bounded and roughly constant


# ------------------------------------------------------------------------------------------------
# numerical soundness
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,normalized", [(2, True), (3, False), (10, True), (math.inf, True)])
def test_coincident_singular_values(depth, normalized):
    f = lambda X: float(dv.log_volume_density(X, depth, normalized=normalized))  # noqa: E731
    base = f(np.eye(2))
    # identity: all multipliers equal 1 (normalized) or N (unnormalized)
    ref = 0.0 if normalized else -0.5 * 4 * math.log(depth)
    assert close(base, ref)
    assert close(f(np.eye(3)), 0.0 if normalized else -0.5 * 9 * math.log(depth))
    # c·I: λ = c^{2(N−1)/N}
    e = 2.0 if math.isinf(depth) else 2.0 * (depth - 1) / depth
    assert close(f(2.0 * np.eye(3)), -0.5 * 9 * e * math.log(2.0) + (ref * 9 / 4))
    # continuity: values at distance h differ by O(h) (the derivative is O(1) here)
    for h in (1e-12, 1e-9, 1e-6, 1e-3):
        v = f(np.diag([1.0, 1.0 + h]))
        assert np.isfinite(v)
        assert abs(v - base) <= 3 * h, (h, v, base)
    # three nearly coincident values, rotated
    v3 = f(np.diag([1.0 + 2e-13, 1.0 + 1e-13, 1.0]))
    assert abs(v3 - f(np.eye(3))) <= 1e-11


@pytest.mark.parametrize("depth", [2, 3, 10, math.inf])
def test_nearly_coincident_matches_multiplier_product(depth):
    """Near-coincident σ: the density equals −½ Σ log λ_ij built from the multipliers' sum form."""
    sigma = np.array([1.0 + 1e-10, 1.0, 0.5])
    X = np.diag(sigma)
    if math.isinf(depth):
        lam = np.array([[log_mean(a * a, b * b) for b in sigma] for a in sigma])
    else:
        N = depth
        x = sigma ** (2 / N)
        lam = np.array([[sum(xi ** (N - p) * xj ** (p - 1) for p in range(1, N + 1)) / N for xj in x] for xi in x])
    assert close(dv.log_volume_density(X, depth), -0.5 * np.sum(np.log(lam)), tol=1e-12)


@pytest.mark.parametrize("depth,normalized", [(2, True), (3, False), (7, True), (math.inf, True)])
@pytest.mark.parametrize("X", [np.diag([1.0, 0.0]), np.zeros((2, 2)), np.array([[1.0, 2.0], [2.0, 4.0]]),
                               np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])])
def test_zero_singular_values_give_inf(depth, normalized, X):
    got = dv.log_volume_density(X, depth, normalized=normalized)
    # [[1, 2], [2, 4]] has a rounding-level σ_2 (~1e-17) rather than an exact 0: then the value is
    # finite but huge; either way never NaN and never below the value at a well-conditioned point
    assert not np.isnan(got)
    assert got > 10.0 or got == np.inf
    if np.count_nonzero(X) <= 1:  # exact zero singular value
        assert got == np.inf
    assert dv.log_volume_density(X, 1, normalized=normalized) == 0.0
    # on the rank-1 stratum the non-zero rank-1 matrices have a finite density
    if np.any(X):
        assert np.isfinite(dv.log_volume_density(X, depth, rank=1, normalized=normalized))


# ------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,normalized", [(3, True), (4, False), (math.inf, True)])
def test_batching_matches_loop(depth, normalized, rng):
    Xb = rng.standard_normal((2, 3, 4, 3))
    Zb = rng.standard_normal((2, 3, 4, 3))
    Wb = rng.standard_normal((2, 3, 4, 3))
    metric = dv.DLNMetric(depth, normalized)
    f = dv.log_volume_density(Xb, depth, normalized=normalized)
    assert f.shape == (2, 3)
    mult = metric.multipliers(Xb)
    app = metric.apply(Xb, Zb)
    sol = metric.solve(Xb, Zb) if not math.isinf(depth) else None
    inn = metric.inner(Xb, Zb, Wb) if not math.isinf(depth) else None
    sq = metric.sqrt_apply(Xb, Zb)
    f2 = dv.log_volume_density(Xb, depth, rank=2, normalized=normalized)
    assert mult.shape == app.shape == sq.shape == (2, 3, 4, 3)
    for i in range(2):
        for j in range(3):
            X, Z, W = Xb[i, j], Zb[i, j], Wb[i, j]
            assert close(f[i, j], dv.log_volume_density(X, depth, normalized=normalized), tol=1e-12)
            assert close(f2[i, j], dv.log_volume_density(X, depth, rank=2, normalized=normalized), tol=1e-12)
            np.testing.assert_allclose(mult[i, j], metric.multipliers(X), rtol=1e-12)
            np.testing.assert_allclose(app[i, j], metric.apply(X, Z), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(sq[i, j], metric.sqrt_apply(X, Z), rtol=1e-12, atol=1e-12)
            if sol is not None:
                np.testing.assert_allclose(sol[i, j], metric.solve(X, Z), rtol=1e-12, atol=1e-12)
                assert close(inn[i, j], metric.inner(X, Z, W), tol=1e-12)


def test_batch_of_one_not_squeezed(rng):
    X = rng.standard_normal((1, 3, 2))
    Z = rng.standard_normal((1, 3, 2))
    metric = dv.DLNMetric(3)
    assert dv.log_volume_density(X, 3).shape == (1,)
    assert dv.log_volume_density(X[None], 3).shape == (1, 1)
    assert dv.log_volume_density(X[0], 3).shape == ()
    assert metric.multipliers(X).shape == (1, 3, 2)
    assert metric.apply(X, Z).shape == (1, 3, 2)
    assert metric.inner(X, Z, Z).shape == (1,)
    assert metric.chart_log_density(np.array([[2.0, 1.0]]), (3, 2)).shape == (1,)
    # 1×1 matrices and a single batch entry of 1×1
    assert dv.log_volume_density(np.ones((1, 1, 1)), 3).shape == (1,)


def test_batch_broadcast_of_Z(rng):
    """Z with a batch shape broadcasting against X's."""
    X = rng.standard_normal((3, 3))
    Zb = rng.standard_normal((4, 3, 3))
    metric = dv.DLNMetric(2)
    out = metric.apply(X, Zb)
    assert out.shape == (4, 3, 3)
    for k in range(4):
        np.testing.assert_allclose(out[k], metric.apply(X, Zb[k]), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# chart_log_density (MATH.md §3.1–§3.4)
# ------------------------------------------------------------------------------------------------
def chart_closed_form(sigma, m, n, N, normalized):
    """§3.3 (finite N, normalized: × N^{r(m+n−r)/2}) and §3.4 (N = ∞, renormalized)."""
    r = len(sigma)
    if math.isinf(N):
        return -np.sum(np.log(sigma)) + van_log(np.log(sigma**2))
    val = (-(r / 2) * math.log(N) + ((m + n - 2 * r + 1 - N) / N) * np.sum(np.log(sigma))
           + van_log(sigma ** (2 / N)))
    if normalized:
        val += (r * (m + n - r) / 2) * math.log(N)
    return val


CHART_CASES = [(3, 3, 3), (2, 2, 2), (4, 3, 3), (3, 4, 3), (4, 3, 2), (5, 4, 2), (4, 4, 1), (3, 5, 2), (2, 6, 1)]
CHART_DEPTHS = [(1, True), (2, True), (2, False), (3, True), (7, False), (40, True), (math.inf, True)]


@pytest.mark.parametrize("m,n,r", CHART_CASES)
@pytest.mark.parametrize("depth,normalized", CHART_DEPTHS)
def test_chart_log_density(m, n, r, depth, normalized, rng):
    sigma = rng.uniform(0.2, 5.0, size=r)  # any order
    metric = dv.DLNMetric(depth, normalized)
    got = metric.chart_log_density(sigma, (m, n), rank=r)
    assert close(got, chart_closed_form(np.sort(sigma)[::-1], m, n, depth, normalized))
    assert close(metric.chart_log_density(sigma, (m, n)), got, tol=1e-14)
    # = volume density at Q diag(σ) Rᵀ + Euclidean SVD Jacobian (MATH.md §3.1)
    Qm = random_orthogonal(m, rng)[:, :r]
    Rn = random_orthogonal(n, rng)[:, :r]
    X = strata.svd_chart(sigma, Qm, Rn)
    jac = strata.euclidean_log_jacobian(sigma, (m, n))
    ref_jac = (m + n - 2 * r) * np.sum(np.log(sigma)) + van_log(sigma**2)
    assert close(jac, ref_jac)
    assert close(got, metric.log_volume_density(X, rank=r) + jac)


def test_chart_density_square_is_cmv_and_rectangular_formula(rng):
    """§3.2 rectangular full rank (unnormalized): N^{−k/2} ∏σ^{(|m−n|+1−N)/N} van(Σ^{2/N})."""
    sigma = np.array([3.0, 1.7, 0.4])
    N = 4
    ref = -1.5 * math.log(N) + ((2 + 1 - N) / N) * np.sum(np.log(sigma)) + van_log(sigma ** (2 / N))
    assert close(dv.DLNMetric(N, normalized=False).chart_log_density(sigma, (5, 3)), ref)
    assert close(dv.DLNMetric(N, normalized=False).chart_log_density(sigma, (3, 5)), ref)
    # §3.4 square: 2^{d(d−1)/2} det(Σ)^{−1} van(log Σ)
    ref_inf = 3 * math.log(2) - np.sum(np.log(sigma)) + van_log(np.log(sigma))
    assert close(dv.DLNMetric(math.inf).chart_log_density(sigma, (3, 3)), ref_inf)


def test_chart_density_batched(rng):
    sig = rng.uniform(0.5, 2.0, size=(2, 4, 2))
    metric = dv.DLNMetric(3)
    out = metric.chart_log_density(sig, (3, 4))
    assert out.shape == (2, 4)
    for i in range(2):
        for j in range(4):
            assert close(out[i, j], metric.chart_log_density(sig[i, j], (3, 4)), tol=1e-13)


def test_chart_density_coincident_is_minus_inf():
    """The chart is singular at coincident σ (documented −inf), never NaN."""
    for depth in (2, math.inf):
        v = dv.DLNMetric(depth).chart_log_density(np.array([1.0, 1.0]), (2, 2))
        assert v == -np.inf


# ------------------------------------------------------------------------------------------------
# item 15: balanced-manifold dimensions (no package function; checked numerically here)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d,N", [(2, 2), (3, 3), (2, 4), (3, 2)])
def test_item15_balanced_manifold_dimensions(d, N, rng):
    """dim M = d² + (N−1)d(d−1)/2 and fibre dim (N−1)d(d−1)/2 (MATH.md §1.2, §4.1).

    M is the zero set of G_p = W_{p+1}ᵀW_{p+1} − W_pW_pᵀ (p = 1..N−1); at a balanced point with
    full-rank X the differential of G is surjective (rank (N−1)d(d+1)/2), so dim M = N d² − that, and
    the product map restricted to T M is onto R^{d×d}, so the fibre has dim M − d² dimensions.
    """
    sigma = rng.uniform(0.5, 2.0, size=d)
    Qs = [random_orthogonal(d, rng) for _ in range(N + 1)]   # Q_0 = R, Q_N = Q, Q_1..Q_{N-1} free
    Lam = np.diag(sigma ** (1 / N))
    W = [Qs[p] @ Lam @ Qs[p - 1].T for p in range(1, N + 1)]  # W[0] = W_1, ..., W[N-1] = W_N
    X = W[-1]
    for Wp in W[-2::-1]:
        X = X @ Wp
    np.testing.assert_allclose(X, Qs[N] @ np.diag(sigma) @ Qs[0].T, atol=1e-12)
    for p in range(N - 1):
        np.testing.assert_allclose(W[p + 1].T @ W[p + 1] - W[p] @ W[p].T, 0, atol=1e-12)

    iu = np.triu_indices(d)
    dG_rows, dphi_rows = [], []
    cols_G, cols_phi = [], []
    for q in range(N):
        for k in range(d * d):
            dW = [np.zeros((d, d)) for _ in range(N)]
            dW[q].flat[k] = 1.0
            g = []
            for p in range(N - 1):
                dGp = dW[p + 1].T @ W[p + 1] + W[p + 1].T @ dW[p + 1] - dW[p] @ W[p].T - W[p] @ dW[p].T
                g.append(dGp[iu])
            cols_G.append(np.concatenate(g))
            # d(W_N ⋯ W_1) = Σ_p W_N⋯W_{p+1} dW_p W_{p−1}⋯W_1
            left = np.eye(d)
            for Wp in W[:q:-1]:
                left = left @ Wp
            right = np.eye(d)
            for Wp in W[q - 1::-1] if q > 0 else []:
                right = right @ Wp
            cols_phi.append((left @ dW[q] @ right).ravel())
    JG = np.array(cols_G).T
    Jphi = np.array(cols_phi).T
    rank_G = np.linalg.matrix_rank(JG, tol=1e-9)
    assert rank_G == (N - 1) * d * (d + 1) // 2
    dim_M = N * d * d - rank_G
    assert dim_M == d * d + (N - 1) * d * (d - 1) // 2
    # tangent space of M = kernel of dG; product map restricted to it has rank d²
    _, s, Vt = np.linalg.svd(JG)
    K = Vt[rank_G:].T
    assert K.shape[1] == dim_M
    assert np.linalg.matrix_rank(Jphi @ K, tol=1e-9) == d * d
    assert dim_M - d * d == (N - 1) * d * (d - 1) // 2


# ------------------------------------------------------------------------------------------------
# item 16: orbit volume (tridiagonal identity; §4.2 formula through the package multipliers a_12)
# ------------------------------------------------------------------------------------------------
def tridiag_det(x, y, size):
    if size == 0:
        return 1.0
    J = np.diag(np.full(size, 2 * (x + y))) + np.diag(np.full(size - 1, -2 * math.sqrt(x * y)), 1) \
        + np.diag(np.full(size - 1, -2 * math.sqrt(x * y)), -1)
    return np.linalg.det(J)


@pytest.mark.parametrize("N", [2, 3, 4, 6, 9])
def test_item16_tridiagonal_identity(N, rng):
    for _ in range(5):
        x, y = rng.uniform(0.1, 3.0, size=2)
        ref = 2 ** (N - 1) * (x**N - y**N) / (x - y)
        assert abs(tridiag_det(x, y, N - 1) - ref) <= 1e-11 * ref


@pytest.mark.parametrize("N,value", [(1, 1.0), (2, 1.7320508075688772), (3, 2.2599210498948734)])
def test_item16_orbit_volume_diag21(N, value):
    """vol(O_X)/c_2^{N−1} = √((σ_1²−σ_2²)/(σ_1^{2/N}−σ_2^{2/N})) = √a_12 (unnormalized multiplier)."""
    a = dv.DLNMetric(N, normalized=False).multipliers(np.diag([2.0, 1.0]))
    assert abs(math.sqrt(a[0, 1]) - value) <= 1e-14
    x, y = 2.0 ** (2 / N), 1.0
    # per-sector volume √det J; c_d carries 2^{(N−1)/4·d(d−1)}: divide by 2^{(N−1)/2} per pair
    assert abs(math.sqrt(tridiag_det(x, y, N - 1) / 2 ** (N - 1)) - value) <= 1e-13


def test_item16_orthogonal_group_volumes():
    """c_d = 2^{d(d−1)/4}·2^d π^{d²/2}/Γ_d(d/2) (MATH.md §0): c_1 = 2, c_2 = 4√2π, c_3 ≈ 446.647."""
    c = lambda d: math.exp(d * (d - 1) / 4 * math.log(2) + d * math.log(2) + d * d / 2 * math.log(math.pi)  # noqa: E731
                           - multigammaln(d / 2, d))
    assert abs(c(1) - 2.0) <= 1e-13
    assert abs(c(2) - 17.771531752633468) <= 1e-12
    assert abs(4 * math.sqrt(2) * math.pi - 17.771531752633468) <= 1e-12
    assert abs(c(3) - 446.647) <= 1e-3


# ------------------------------------------------------------------------------------------------
# item 28: Stolarsky form
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [2, 3, 7, 25])
def test_item28_stolarsky(N, rng):
    X = rng.standard_normal((4, 4))
    s = np.linalg.svd(X, compute_uv=False)
    p = 1 / N

    def S(u, v):
        if u == v:
            return u
        return ((u**p - v**p) / (p * (u - v))) ** (1 / (p - 1))

    lam = np.array([[S(a * a, b * b) ** (1 - 1 / N) for b in s] for a in s])
    np.testing.assert_allclose(dv.DLNMetric(N).multipliers(X), lam, rtol=1e-11)


@pytest.mark.parametrize("depth,normalized", [(2, True), (3, False), (7.5, True), (100, True), (math.inf, True)])
@pytest.mark.parametrize("shape", [(3, 3), (2, 4), (5, 3), (1, 4)])
def test_log_multipliers_positive_path_matches_general_path(depth, normalized, shape, rng):
    """The fast path for positive singular values (every flow step) against the masked general formulas,
    on spreads of 1e±40, coincident and nearly coincident singular values."""
    from dlnvolume.spectral import _log_multipliers_general, log_multipliers

    m, n = shape
    k = min(m, n)
    ls = np.sort(rng.normal(0.0, 30.0, (5, k)), axis=-1)[:, ::-1].copy()
    ls[0, :] = ls[0, 0]  # all coincident
    ls[1, -1] = ls[1, 0] - 1e-13 if k > 1 else ls[1, 0]
    fast = log_multipliers(ls, shape, k, depth, normalized)
    ref = _log_multipliers_general(ls, shape, k, depth, normalized)
    np.testing.assert_array_equal(np.isfinite(fast), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(fast[fin], ref[fin], rtol=1e-13, atol=1e-12)
    assert np.isfinite(ref).any()
