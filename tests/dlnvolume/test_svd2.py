"""The 2×2 flow in singular-value coordinates (:mod:`dlnvolume.flows.svd2`, ``integrator="svd-2x2"``).

References: Dormand–Prince in Cartesian coordinates at rtol 1e-11 where ``σ_2/σ_1`` stays far above eps
(the equations), and where it does not (deep flows from a small ill-conditioned start, ``σ_2/σ_1`` down
to 1e-14, which a float64 matrix does not resolve) an independent numpy implementation of the same
coordinates (``analysis.bench_stiff.svd2_reference``: SVD by LAPACK, multipliers by their defining sums,
angle rates by a linear solve) integrated by scipy's LSODA and DOP853 at rtol 1e-12, which must agree
with each other first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.bench_stiff import svd2_reference
from dlnvolume import CompletionTask, errors, flows, tasks
from dlnvolume.flows import compiled

SEED = 20261207


def _reference(task, N, X0, loss_tol, method):
    """scipy in the same coordinates, written independently (analysis.bench_stiff.svd2_reference), rtol 1e-12."""
    return svd2_reference(task, N, X0, loss_tol, method=method, rtol=1e-12)


def _rot(a):
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


@pytest.mark.parametrize("N,normalized", [(2, True), (3, False), (20, True), (math.inf, True)])
@pytest.mark.parametrize("which", ["diagonal", "random"])
def test_against_cartesian_dopri5_when_well_conditioned(N, normalized, which):
    rng = np.random.default_rng([SEED, int(min(N, 99)), len(which)])
    task = tasks.diagonal_2x2() if which == "diagonal" else tasks.random_low_rank(2, 2, 1, 3, rng=rng)
    X0 = 0.05 * rng.standard_normal((4, 2, 2))
    kw = dict(t_max=15.0, loss_tol=0, normalized=normalized)
    res = flows.end_to_end(task, N, X0, rtol=1e-10, **kw)
    assert res.integrator == "svd-2x2" and np.all(res.status == "max_time")
    ref = flows.end_to_end(task, N, X0, rtol=1e-11, integrator="dopri5", max_steps=10**6, **kw)
    assert np.max(np.abs(res.X - ref.X)) <= 1e-9 * max(1.0, np.abs(ref.X).max())
    np.testing.assert_array_equal(np.sign(np.linalg.det(res.X)), np.sign(np.linalg.det(X0)))


def test_deep_ill_conditioned_flows_against_the_reference():
    """cmv-like: the diagonal 2×2 task at N = 20 from ``Q diag(1e-6, 1e-12) Rᵀ``-sized starts (σ_2/σ_1 falls
    to ~1e-13 on the way). The two scipy references agree to 1e-8; the default rtol must be within 1e-4 of
    them; negative control: the endpoint at N = 10 is far."""
    rng = np.random.default_rng(SEED)
    task = tasks.diagonal_2x2()
    X0 = np.array([_rot(a) @ np.diag([1e-6, 1e-6 * c]) @ _rot(b).T @ np.diag([1, sg])
                   for a, b, c, sg in zip(rng.uniform(0, 6.3, 4), rng.uniform(0, 6.3, 4), [1e-6, 1e-4, 1e-3, 1e-5],
                                          [1, -1, 1, -1])])
    res = flows.end_to_end(task, 20, X0, loss_tol=1e-12)
    assert res.integrator == "svd-2x2" and np.all(res.status == "converged")
    assert np.all(res.min_sigma_ratio < 1e-9)  # the regime a float64 matrix does not resolve
    for i in range(4):
        a = _reference(task, 20, X0[i], 1e-12, "LSODA")
        b = _reference(task, 20, X0[i], 1e-12, "DOP853")
        assert np.abs(a - b).max() <= 1e-8
        assert np.abs(res.X[i] - a).max() <= 1e-4, i
        other = _reference(task, 10, X0[i], 1e-12, "LSODA")
        assert np.abs(other - a).max() > 1e-2


def test_singular_or_coincident_starts_run_cartesian():
    """σ_2 = 0 or σ_1 = σ_2 (the coordinates' singular set): those runs are "dopri-bdf-frozen"'s, bit for bit, and
    the others of the batch are unchanged by their presence."""
    rng = np.random.default_rng(SEED + 1)
    task = tasks.random_low_rank(2, 2, 1, 3, rng=rng)
    X0 = np.stack([0.01 * rng.standard_normal((2, 2)), 0.01 * np.eye(2), np.outer([1e-2, 2e-2], [1.0, -0.5]),
                   0.01 * rng.standard_normal((2, 2))])
    X0[2, :, 1] = 0.0
    res = flows.end_to_end(task, 5, X0)
    cart = flows.end_to_end(task, 5, X0[1:3], integrator="dopri-bdf-frozen")
    np.testing.assert_array_equal(res.X[1:3], cart.X)
    alone = flows.end_to_end(task, 5, X0[[0, 3]])
    np.testing.assert_array_equal(res.X[[0, 3]], alone.X)


def test_records_and_validation():
    task = tasks.diagonal_2x2()
    res = flows.end_to_end(task, 3, np.diag([0.02, 0.01]), threshold=0.5)
    n = res.trajectory.n_logged[0]
    L = res.trajectory.loss[0, :n]
    assert n >= 3 and np.all(np.diff(L) <= 1e-12) and np.all(np.isfinite(res.trajectory.crossing_times))
    np.testing.assert_allclose(res.X[0], np.diag(np.diag(res.X[0])), atol=1e-15)  # diagonal stays diagonal
    for bad, depth in ((tasks.random_low_rank(3, 3, 1, 4, rng=0), 3), (task, 1)):
        with pytest.raises(errors.InvalidArgumentError, match="integrator='svd-2x2' on a .* accepted for 2x2 tasks"):
            flows.end_to_end(bad, depth, 0.1 * np.ones(bad.shape), integrator="svd-2x2")
    assert flows.end_to_end(task, 1, 0.1 * np.eye(2)).integrator == "dopri-bdf-frozen"
    assert isinstance(task, CompletionTask)


def test_cartesian_runs_below_float64_resolution_are_flagged(tmp_path):
    """The same deep cmv-like runs in matrix coordinates: σ_2/σ_1 falls below 1e-10 (1e-11…1e-14), where a
    float64 matrix holds σ_2 only to ~1e-5 of itself while the multipliers depend on it through
    ``(σ_2/σ_1)^(1/10) ≈ 0.08``; the endpoint is not determined (up to 2e-2 off the reference):
    ``unresolved``, hence ``Endpoints.flagged``, and every endpoint more than 1e-3 off is among them.
    Negative controls: the same runs in singular-value coordinates; 6×6 flows from a Gaussian start
    (σ_min/σ_1 >= 1e-8 on the way); and at N = 3 a σ_2/σ_1 below 1e-10 that stays there (it enters the
    multipliers at ~1e-8), whose endpoint agrees with the exact one."""
    task = tasks.diagonal_2x2()
    kw = dict(rng=1, workers=1, progress=False, loss_tol=1e-12, check_accuracy=False)
    cart = flows.endpoints(task, 20, 6, 1e-4, integrator="dopri-bdf-frozen", **kw)
    assert np.all(cart.min_sigma_ratio < compiled.RESOLVE) and np.all(cart.unresolved) and np.all(cart.flagged)
    many = flows.endpoints(task, 20, 24, 1e-4, integrator="dopri-bdf-frozen", **kw)
    ref = flows.endpoints(task, 20, 24, 1e-4, **kw)
    err = np.abs(many.X - ref.X).reshape(24, -1).max(axis=1) / np.abs(ref.X).reshape(24, -1).max(axis=1)
    assert np.any(err > 1e-3) and np.all(many.flagged[err > 1e-3])
    rank1 = CompletionTask(np.diag([1.0, 0.0]), np.array([[True, False], [False, False]]))  # σ_2 stays small
    X0 = np.array([[[1e-2, 1e-4], [2e-4, 2e-6 + 1e-12]]])
    shallow = flows.end_to_end(rank1, 3, X0, integrator="dopri-bdf-frozen", loss_tol=1e-12)
    exact3 = flows.end_to_end(rank1, 3, X0, integrator="svd-2x2", loss_tol=1e-12)
    assert shallow.min_sigma_ratio[0] < compiled.RESOLVE and not shallow.unresolved[0]
    np.testing.assert_allclose(shallow.X, exact3.X, atol=2e-6)  # both stop at |X11 − 1| <= 1e-6
    cart.save(tmp_path / "ep.npz")
    np.testing.assert_array_equal(flows.Endpoints.load(tmp_path / "ep.npz").flagged, cart.flagged)
    exact = flows.endpoints(task, 20, 6, 1e-4, **kw)
    assert exact.integrator == "svd-2x2" and not np.any(exact.unresolved) and not np.any(exact.flagged)
    rng = np.random.default_rng(SEED)
    t6 = tasks.random_low_rank(6, 6, 2, 12, rng=1)
    res = flows.end_to_end(t6, math.inf, 1e-3 * rng.standard_normal((4, 6, 6)) / math.sqrt(6))
    assert np.all(res.min_sigma_ratio > 1e-8) and not np.any(res.unresolved)
