"""Statistics vs closed forms (MATH.md §8 items 25, 26; §5.2; §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlnvolume as dv
from analysis import statistics as st
from dlnvolume.errors import InvalidDepthError, ShapeError

SEED = 20240


def _segment(a):
    """[[1, a], [a, 1]] for an array of a."""
    a = np.asarray(a, dtype=float)
    X = np.ones(a.shape + (2, 2))
    X[..., 0, 1] = a
    X[..., 1, 0] = a
    return X


def test_effective_rank_rank_one_and_identity():
    rng = np.random.default_rng(SEED)
    u, v = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    X = u[:, :, None] * v[:, None, :]  # (5, 4, 3) rank one
    np.testing.assert_allclose(st.effective_rank(X), np.ones(5), rtol=0, atol=1e-7)
    for d in (1, 2, 5):
        assert st.effective_rank(np.eye(d)) == pytest.approx(d, rel=1e-14)


def test_effective_rank_on_the_min_nuclear_segment():
    """MATH.md §8 item 25: erank = exp(H((1+|a|)/2, (1-|a|)/2)) on {a = b, |a| ≤ 1}."""
    a = np.linspace(-0.99, 0.99, 23)
    p, q = (1 + np.abs(a)) / 2, (1 - np.abs(a)) / 2
    expected = np.exp(-(p * np.log(p) + q * np.log(q)))
    np.testing.assert_allclose(st.effective_rank(_segment(a)), expected, rtol=1e-12)


def test_nuclear_norm_on_solution_set_closed_form_and_minimum():
    """MATH.md §8 item 26: on [[1, a], [b, 1]], ‖X‖_* = sqrt(2 + a² + b² + 2|1 − ab|) ≥ 2, = 2 iff a = b, |a| ≤ 1."""
    g = np.linspace(-2.5, 2.5, 41)
    A, B = np.meshgrid(g, g)
    X = np.ones(A.shape + (2, 2))
    X[..., 0, 1], X[..., 1, 0] = A, B
    nuc = st.nuclear_norm(X)
    closed = np.sqrt(2 + A**2 + B**2 + 2 * np.abs(1 - A * B))
    np.testing.assert_allclose(nuc, closed, rtol=1e-12)
    assert np.all(nuc >= 2 - 1e-12)
    on_segment = (np.abs(A - B) < 1e-12) & (np.abs(A) <= 1 + 1e-12)
    np.testing.assert_allclose(nuc[on_segment], 2.0, atol=1e-12)
    assert np.all(nuc[~on_segment] > 2 + 1e-6)


def test_norms_and_schatten():
    X = np.diag([2.0, 1.0])
    assert st.frobenius_norm(X) == pytest.approx(math.sqrt(5))
    # MATH.md §8 item 2: N g_N(X)(X, X) = Σ σ^{2/N}; diag(2,1), N = 3 -> 3 · 0.8624670173227331
    assert st.schatten_quasi_norm(X, 3) == pytest.approx(3 * 0.8624670173227331, rel=1e-14)
    assert st.schatten_quasi_norm(np.diag([2.0, 0.0]), math.inf) == 1.0
    np.testing.assert_allclose(st.singular_values(X), [2.0, 1.0])


def test_batch_shapes_never_squeeze():
    rng = np.random.default_rng(SEED)
    for shape in [(1, 3, 2), (4, 1, 3, 3), (2, 5, 2, 2)]:
        X = rng.standard_normal(shape)
        s = st.compute_statistics(X, 3)
        for name, v in s.scalars().items():
            assert np.shape(v) == shape[:-2], name
        assert s.singular_values.shape == shape[:-2] + (min(shape[-2:]),)


def test_log_volume_on_numerical_rank_stratum():
    """Nearly rank-1 matrices get the rank-1 density at their rank-1 projection, not the divergent full-rank one."""
    X = np.array([[1.0, 2.0], [0.5, 1.0 + 1e-9]])
    P = dv.strata.best_rank_approx(X, 1)
    for depth in (2, 5, math.inf):
        got = st.log_volume_density_on_stratum(X, depth, rtol=1e-6)
        assert got == pytest.approx(float(dv.log_volume_density(P, depth, rank=1)), rel=1e-9)
        # with the default (tight) tolerance it is full rank
        full = st.log_volume_density_on_stratum(X, depth)
        assert full == pytest.approx(float(dv.log_volume_density(X, depth)), rel=1e-9)
    # MATH.md §8 item 9: ρ̄_2(diag(2,1)) = √2/3
    assert math.exp(st.log_volume_density_on_stratum(np.diag([2.0, 1.0]), 2)) == pytest.approx(math.sqrt(2) / 3, rel=1e-12)


def test_hyperbola_position():
    # points on the hyperbola: distance 0, nearest parameter a
    a = np.array([0.5, 1.0, 2.0, -0.7, -3.0])
    X = np.ones((5, 2, 2))
    X[:, 0, 1], X[:, 1, 0] = a, 1 / a
    h = st.hyperbola_position(X)
    np.testing.assert_allclose(h.distance_to_hyperbola, 0, atol=1e-7)
    np.testing.assert_allclose(h.nearest_a, a, rtol=1e-7)
    np.testing.assert_allclose(h.defect, 0, atol=1e-14)
    np.testing.assert_array_equal(h.corner, [1, 1, 1, -1, -1])
    # the identity (a = b = 0): nearest points are the corners, distance √2
    h0 = st.hyperbola_position(np.eye(2)[None])
    assert h0.distance_to_hyperbola[0] == pytest.approx(math.sqrt(2), rel=1e-9)
    assert abs(h0.nearest_a[0]) == pytest.approx(1.0, rel=1e-7)
    # brute force against a dense parameter grid
    rng = np.random.default_rng(SEED)
    pts = rng.uniform(-3, 3, size=(30, 2))
    Y = np.ones((30, 2, 2))
    Y[:, 0, 1], Y[:, 1, 0] = pts[:, 0], pts[:, 1]
    h = st.hyperbola_position(Y)
    t = np.concatenate([np.geomspace(1e-3, 1e3, 200001), -np.geomspace(1e-3, 1e3, 200001)])
    brute = np.sqrt(np.min((pts[:, :1] - t) ** 2 + (pts[:, 1:] - 1 / t) ** 2, axis=1))
    assert np.all(h.distance_to_hyperbola <= brute + 1e-9)
    np.testing.assert_allclose(h.distance_to_hyperbola, brute, atol=1e-4)


def test_test_error_and_errors():
    W = np.arange(4.0).reshape(2, 2)
    assert st.test_error(W + 1, W) == pytest.approx(1.0)
    with pytest.raises(ShapeError, match="ground_truth has shape"):
        st.test_error(np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(ShapeError, match="hyperbola_position needs 2×2"):
        st.hyperbola_position(np.zeros((3, 3)))
    with pytest.raises(InvalidDepthError, match="depth=0"):
        st.compute_statistics(np.eye(2), 0)
