"""Tests of the compiled one-sided Jacobi SVD :mod:`dlnvolume.flows._svd`.

Contract: ``svd_full(Y)`` follows ``np.linalg.svd(Y, full_matrices=True)`` (``U (m, m)``, ``s (k,)``
descending non-negative, ``Vh (n, n)``, ``Y = U[:, :k] diag(s) Vh[:k]``) to ``1e-13`` relative to
``σ_1``; exactly diagonal inputs give exact signed permutations; non-finite inputs give NaN; results are
bit-for-bit reproducible. Timings are not tested (module docstring).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dlnvolume.flows._svd import svd_full, svd_full_into, svd_full_warm, svdvals

TOL = 1e-13
SUB = 1e-322
SHAPES = [(1, 1), (1, 5), (5, 1), (2, 2), (3, 3), (4, 3), (3, 4), (6, 6), (8, 8), (9, 8), (12, 12), (20, 20)]


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((n, n)))
    return Q * np.sign(np.diag(R))


def check_svd(Y: np.ndarray, U: np.ndarray, s: np.ndarray, Vh: np.ndarray, tol: float = TOL) -> None:
    """Shapes, ordering, orthogonality and reconstruction of a full SVD; singular values against LAPACK."""
    m, n = Y.shape
    k = min(m, n)
    assert U.shape == (m, m) and s.shape == (k,) and Vh.shape == (n, n)
    assert np.all(np.isfinite(U)) and np.all(np.isfinite(s)) and np.all(np.isfinite(Vh))
    assert np.all(s >= 0.0) and np.all(np.diff(s) <= 0.0)
    np.testing.assert_allclose(U.T @ U, np.eye(m), rtol=0, atol=tol)
    np.testing.assert_allclose(Vh @ Vh.T, np.eye(n), rtol=0, atol=tol)
    scale = np.abs(Y).max()
    if scale == 0.0:
        assert np.all(s == 0.0)
        return
    Z = Y / scale  # LAPACK at unit scale (no under/overflow for entries near 1e±300)
    nz = np.linalg.norm(Z)
    s_ref = np.linalg.svd(Z, compute_uv=False) * scale
    # SUB: room for rounding when results are subnormal (e.g. σ(5e-324·[1, 1]) is not representable)
    np.testing.assert_allclose(s, s_ref, rtol=0, atol=tol * s_ref[0] + SUB)
    rec = (U[:, :k] * s) @ Vh[:k]
    assert np.abs(rec - Y).max() <= tol * scale * nz + SUB


def _is_signed_permutation(P: np.ndarray) -> bool:
    return bool(np.all((P == 0.0) | (np.abs(P) == 1.0)) and np.all(np.abs(P).sum(0) == 1)
                and np.all(np.abs(P).sum(1) == 1))


# --- 1. random matrices against LAPACK ---------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_random_against_lapack(shape, rng):
    for _ in range(20):
        Y = rng.standard_normal(shape)
        check_svd(Y, *svd_full(Y))


def test_random_scales_and_layouts(rng):
    """Uniform, heavy-tailed and row/column-graded entries; C, Fortran and strided inputs (same bits)."""
    for shape in [(3, 3), (7, 5), (5, 7), (10, 10)]:
        m, n = shape
        for Y in (rng.uniform(-1, 1, shape), rng.standard_cauchy(shape),
                  rng.standard_normal(shape) * np.logspace(0, -8, n),
                  np.logspace(0, -8, m)[:, None] * rng.standard_normal(shape)):
            out = svd_full(Y)
            check_svd(Y, *out)
            for other in (np.asfortranarray(Y), np.repeat(Y, 2, axis=1)[:, ::2]):
                for a, b in zip(out, svd_full(other)):
                    assert np.array_equal(a, b)


# --- 2. hard inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 6), (4, 3), (3, 4), (1, 5), (5, 1), (1, 1)])
def test_zero_matrix(shape):
    U, s, Vh = svd_full(np.zeros(shape))
    assert np.all(s == 0.0)
    assert np.array_equal(U, np.eye(shape[0])) and np.array_equal(Vh, np.eye(shape[1]))


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("shape", [(6, 6), (8, 5), (5, 8)])
def test_rank_deficient(rank, shape, rng):
    for _ in range(10):
        Y = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
        U, s, Vh = svd_full(Y)
        check_svd(Y, U, s, Vh)
        assert np.all(s[rank:] <= 1e-14 * s[0])


def test_exactly_dependent_columns():
    """Equal or proportional columns: one is rotated to (nearly) zero and its vectors are completed."""
    for Y in (np.ones((3, 3)), np.ones((4, 2)), np.ones((2, 4)), np.array([[1.0, 2.0], [2.0, 4.0]])):
        check_svd(Y, *svd_full(Y))


def test_coincident_singular_values(rng):
    for n in (2, 3, 6, 12):
        Q = _orthogonal(rng, n)
        for c in (1.0, -3.5, 1e-200, 1e200):
            Y = c * Q
            U, s, Vh = svd_full(Y)
            check_svd(Y, U, s, Vh)
            np.testing.assert_allclose(s, abs(c), rtol=1e-14)
    Y = np.diag([1.0, 1.0, 1e-8])
    U, s, Vh = svd_full(Y)
    assert np.array_equal(s, [1.0, 1.0, 1e-8])
    Q, R = _orthogonal(rng, 3), _orthogonal(rng, 3)
    Y = Q @ np.diag([1.0, 1.0, 1e-8]) @ R.T
    U, s, Vh = svd_full(Y)
    check_svd(Y, U, s, Vh)
    np.testing.assert_allclose(s, [1.0, 1.0, 1e-8], rtol=0, atol=1e-15)


def test_widely_spread_singular_values(rng):
    for _ in range(20):
        Q, R = _orthogonal(rng, 3), _orthogonal(rng, 3)
        Y = Q @ np.diag([1.0, 1e-6, 1e-12]) @ R.T
        U, s, Vh = svd_full(Y)
        check_svd(Y, U, s, Vh)
        # σ_min of a generic float64 matrix is determined only to about eps·σ_1 (absolute)
        assert abs(s[2] - 1e-12) <= 8 * np.finfo(float).eps


def _mp_svdvals(mpmath, Y: np.ndarray) -> np.ndarray:
    """Singular values of the float64 matrix ``Y`` at mpmath's working precision, descending."""
    return np.sort([float(x) for x in mpmath.svd_r(mpmath.matrix(Y.tolist()), compute_uv=False)])[::-1]


def test_small_singular_value_against_mpmath(rng):
    """σ_min of the stored ``Q diag(1, 1e-6, 1e-12) Rᵀ`` against a 50-digit SVD of the same float64
    matrix: absolute error a fraction of ``eps·σ_1`` (relative error ~1e-5, as LAPACK's)."""
    mpmath = pytest.importorskip("mpmath")
    eps = np.finfo(float).eps
    with mpmath.workdps(50):
        for _ in range(5):
            Q, R = _orthogonal(rng, 3), _orthogonal(rng, 3)
            Y = Q @ np.diag([1.0, 1e-6, 1e-12]) @ R.T
            ref = _mp_svdvals(mpmath, Y)
            s = svd_full(Y)[1]
            assert np.all(np.abs(s - ref) <= 2 * eps * ref[0])
        # column-graded Y = B·D with B well conditioned: Jacobi's σ are accurate to a few eps *relative*
        for _ in range(5):
            Y = rng.standard_normal((4, 4)) @ np.diag([1.0, 1e-5, 1e-10, 1e-15])
            ref = _mp_svdvals(mpmath, Y)
            s = svd_full(Y)[1]
            np.testing.assert_allclose(s, ref, rtol=1e-13)


@pytest.mark.parametrize("scale", [1e-300, 1e300, 5e-310])
def test_extreme_scales(scale, rng):
    for shape in [(2, 2), (4, 3), (3, 4), (20, 20)]:
        Y = rng.standard_normal(shape) * scale
        check_svd(Y, *svd_full(Y))


def test_power_of_two_scaling_is_exact(rng):
    """``svd(2^j·Y) = (U, 2^j·s, Vh)`` bit for bit: the kernel works on the same scaled copy."""
    for shape in [(3, 3), (6, 4), (4, 6)]:
        Y = rng.standard_normal(shape)
        U, s, Vh = svd_full(Y)
        for j in (-1000, -600, -1, 1, 600, 1000):
            U2, s2, Vh2 = svd_full(Y * 2.0**j)
            assert np.array_equal(U, U2) and np.array_equal(Vh, Vh2)
            assert np.array_equal(s * 2.0**j, s2)


def test_mixed_magnitudes(rng):
    """Entries from 1e-300 to 1e300 in one matrix; tiny columns are negligible, not lost to NaN."""
    Y = rng.standard_normal((5, 5)) * np.array([1e300, 1e-300, 1.0, 1e150, 1e-150])
    check_svd(Y, *svd_full(Y))
    check_svd(Y.T, *svd_full(Y.T))
    U, s, Vh = svd_full(np.diag([1.0, -1e-200]))
    assert np.array_equal(s, [1.0, 1e-200])
    assert _is_signed_permutation(U) and _is_signed_permutation(Vh)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (6, 6), (4, 3), (3, 4), (9, 8), (1, 5), (20, 20)])
def test_diagonal_gives_signed_permutations(shape, rng):
    m, n = shape
    k = min(m, n)
    for _ in range(5):
        d = rng.standard_normal(k) * rng.choice([0.0, 1.0, 1.0, 1.0], k)
        Y = np.zeros(shape)
        Y[np.arange(k), np.arange(k)] = d
        U, s, Vh = svd_full(Y)
        assert _is_signed_permutation(U) and _is_signed_permutation(Vh)
        assert np.array_equal(s, np.sort(np.abs(d))[::-1])
        assert np.array_equal((U[:, :k] * s) @ Vh[:k], Y)
        # a permuted diagonal (one non-zero per row and column) too
        Yp = Y[rng.permutation(m)][:, rng.permutation(n)]
        U, s, Vh = svd_full(Yp)
        assert _is_signed_permutation(U) and _is_signed_permutation(Vh)
        assert np.array_equal((U[:, :k] * s) @ Vh[:k], Yp)


def test_larger_than_the_target_range(rng):
    """No LAPACK fallback: Jacobi stays correct (and exact on diagonal inputs) beyond 20×20."""
    for shape in [(32, 32), (40, 6), (6, 40)]:
        Y = rng.standard_normal(shape)
        check_svd(Y, *svd_full(Y))
    Y = np.diag(rng.standard_normal(32))
    U, s, Vh = svd_full(Y)
    assert _is_signed_permutation(U) and _is_signed_permutation(Vh)
    assert np.array_equal((U * s) @ Vh, Y)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7),
                  elements=st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, -1e300, 5e-324, 2.5]),
                                     st.floats(min_value=-1e300, max_value=1e300, allow_subnormal=True))))
def test_property_finite_inputs(Y):
    """Any finite matrix: finite outputs, orthogonal factors, descending ``s``, and a reconstruction
    within ``1e-13·‖Y‖`` (entries below ``eps·‖Y‖`` are noise at that scale)."""
    U, s, Vh = svd_full(Y)
    check_svd(Y, U, s, Vh)
    assert np.array_equal(svdvals(Y), s)


# --- 3. non-finite input -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 2), (2, 4), (25, 3)])
def test_non_finite_gives_nan(bad, shape, rng):
    Y = rng.standard_normal(shape)
    Y[-1, 0] = bad
    U, s, Vh = svd_full(Y)
    assert np.all(np.isnan(U)) and np.all(np.isnan(s)) and np.all(np.isnan(Vh))
    assert np.all(np.isnan(svdvals(Y)))
    m, n = shape
    k = min(m, n)
    out = (np.zeros((m, m)), np.zeros(k), np.zeros((n, n)), np.zeros((k, m + n)))
    assert svd_full_into(Y, *out) is False
    assert np.all(np.isnan(out[0])) and np.all(np.isnan(out[1])) and np.all(np.isnan(out[2]))


# --- 4. determinism, the in-place variant and svdvals ---------------------------------------------------


DIGEST_CODE = """
import hashlib
import numpy as np
from dlnvolume.flows._svd import svd_full

def digest(shapes):
    rng = np.random.default_rng(7)
    h = hashlib.sha256()
    for shape in shapes:
        for _ in range(3):
            for a in svd_full(rng.standard_normal(shape)):
                h.update(a.tobytes())
    return h.hexdigest()
"""


def test_deterministic_across_calls(rng):
    for shape in SHAPES:
        Y = rng.standard_normal(shape)
        first = svd_full(Y)
        for _ in range(3):
            for a, b in zip(first, svd_full(Y)):
                assert a.tobytes() == b.tobytes()


def test_deterministic_across_processes():
    """Another process, which loads the compiled code from numba's cache where this one may have just
    compiled it, gives the same bits (no compile-path-dependent contraction into FMAs)."""
    ns: dict = {}
    exec(DIGEST_CODE, ns)
    code = DIGEST_CODE + f"\nprint(digest({SHAPES!r}))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == ns["digest"](SHAPES)


def test_into_matches_and_reuses_buffers(rng):
    for shape in SHAPES:
        m, n = shape
        k = min(m, n)
        U, s, Vh = np.full((m, m), np.nan), np.full(k, np.nan), np.full((n, n), np.nan)
        work = np.full((k, m + n), np.nan)
        for _ in range(3):
            Y = rng.standard_normal(shape)
            Y0 = Y.copy()
            assert svd_full_into(Y, U, s, Vh, work) is True
            assert np.array_equal(Y, Y0)
            for a, b in zip((U, s, Vh), svd_full(Y)):
                assert np.array_equal(a, b)


def test_into_rejects_wrong_shapes():
    Y = np.ones((3, 2))
    good = dict(U=np.empty((3, 3)), s=np.empty(2), Vh=np.empty((2, 2)), work=np.empty((2, 5)))
    wrong = [("U", np.empty((2, 2))), ("s", np.empty(3)), ("Vh", np.empty((3, 3))), ("work", np.empty((2, 4)))]
    for name, bad in wrong:
        args = {**good, name: bad}
        with pytest.raises(ValueError):
            svd_full_into(Y, args["U"], args["s"], args["Vh"], args["work"])


@pytest.mark.parametrize("shape", SHAPES)
def test_svdvals_matches_svd_full(shape, rng):
    for _ in range(10):
        Y = rng.standard_normal(shape)
        assert np.array_equal(svdvals(Y), svd_full(Y)[1])


# --- warm start (the integrator's stages start from the step's singular vectors) ----------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("eps", [0.0, 1e-8, 1e-3, 1.0])
def test_warm_start_gives_the_same_svd(shape, eps, rng):
    """Started from the singular vectors of ``Y0``, the SVD of ``Y0 + eps·E`` meets the same contract as a
    cold one (against LAPACK), whether the start is exact (eps 0), close or unrelated (eps 1)."""
    for _ in range(3):
        Y0 = rng.standard_normal(shape) @ np.diag(np.logspace(0, -6, shape[1]))
        U0, _, Vh0 = svd_full(Y0)
        Y = Y0 + eps * rng.standard_normal(shape)
        check_svd(Y, *svd_full_warm(Y, U0, Vh0))


def test_warm_start_keeps_diagonal_exact(rng):
    """A diagonal flow stays exactly diagonal: from signed-permutation factors the warm start returns exact
    signed permutations again."""
    for shape in [(3, 3), (6, 6), (4, 6), (6, 4)]:
        m, n = shape
        k = min(m, n)
        Y0 = np.zeros(shape)
        Y0[np.arange(k), np.arange(k)] = rng.uniform(0.1, 2.0, k)
        U0, _, Vh0 = svd_full(Y0)
        Y = 1.3 * Y0
        Y[0, 0] *= -0.5
        U, s, Vh = svd_full_warm(Y, U0, Vh0)
        assert _is_signed_permutation(U) and _is_signed_permutation(Vh)
        np.testing.assert_array_equal(np.sort(s)[::-1], np.sort(np.abs(np.diag(Y)))[::-1])


def test_warm_start_non_finite_gives_nan(rng):
    U0, _, Vh0 = svd_full(rng.standard_normal((6, 6)))
    Y = rng.standard_normal((6, 6))
    Y[2, 3] = np.nan
    assert all(np.all(np.isnan(a)) for a in svd_full_warm(Y, U0, Vh0))
