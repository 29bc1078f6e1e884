"""Tests of the compiled variable-order BDF/NDF method (``integrator="bdf"``, :mod:`dlnvolume.flows.compiled`).

References are independent of the code under test: scipy's own ``bdf.py`` (coefficients, ``change_D``),
Dormand–Prince at a tight tolerance, and the exact ``t(σ)`` integral of the scalar ODE (MATH.md §8
item 17) by ``scipy.integrate.quad``. The closed-form, dopri5-agreement and ill-conditioned-start tests
of ``test_stiff_flows.py`` are parametrized over "bdf" as well.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.integrate._ivp import bdf as scipy_bdf

from dlnvolume import CompletionTask, flows, tasks
from dlnvolume.flows import compiled

SEED = 20261130


def _t_of_sigma(s0: float, s: float, mu: float, N: float) -> float:
    """Time to go from ``s0`` to ``s`` under ``σ̇ = σ^{2−2/N}(μ − σ)`` (normalized; MATH.md §8 item 17)."""
    p = 2.0 if math.isinf(N) else 2.0 - 2.0 / N
    val, _ = quad(lambda x: 1.0 / (x ** p * (mu - x)), s0, s, epsabs=0, epsrel=1e-13, limit=200)
    return val


# --------------------------------------------------------------------------- against scipy's bdf.py
def test_coefficients_and_change_D_match_scipy():
    """NDF coefficients (Shampine & Reichelt 1997, Table 1, as in scipy's BDF) and ``change_D`` (rescaling the
    differences to a new step) against scipy's own ``change_D``."""
    kappa = np.array([0, -0.1850, -1 / 9, -0.0823, -0.0415, 0])
    gamma = np.hstack((0, np.cumsum(1 / np.arange(1, scipy_bdf.MAX_ORDER + 1))))
    np.testing.assert_allclose(compiled.GAMMA, gamma, rtol=1e-15)
    np.testing.assert_allclose(compiled.ALPHA, (1 - kappa) * gamma, rtol=1e-15)
    np.testing.assert_allclose(compiled.ERROR_CONST, kappa * gamma + 1 / np.arange(1, scipy_bdf.MAX_ORDER + 2),
                               rtol=1e-15)
    rng = np.random.default_rng(SEED)
    for order in range(1, 6):
        for factor in (0.3, 0.5, 1.7, 2.0):
            D = rng.standard_normal((compiled.MAX_ORDER + 3, 7))
            ref = D.copy()
            scipy_bdf.change_D(ref, order, factor)
            ours = D.copy()
            compiled._change_D(ours, order, factor)
            np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- against Dormand–Prince
@pytest.mark.parametrize("N", [2, 3, 10, math.inf])
@pytest.mark.parametrize("shape,rank", [((3, 3), 1), ((3, 3), 2), ((4, 3), 2)])
def test_agrees_with_dopri5_at_tight_tolerance(N, shape, rank):
    """O(1) starts, two runs per batch (each its own order and step size). Local errors ``rtol = 1e-8``
    per step over a few hundred steps of a flow that contracts towards its limit: the global error stays
    within ``100·rtol`` of ‖X‖ (the dopri5 reference at 1e-11 is 1000× tighter)."""
    rng = np.random.default_rng(SEED + rank)
    m, n = shape
    task = tasks.random_low_rank(m, n, rank, m * n // 2 + 2, rng=rng)
    X0 = 0.3 * rng.standard_normal((2, m, n))
    kw = dict(t_max=4.0, loss_tol=0)
    ref = flows.end_to_end(task, N, X0, rtol=1e-11, integrator="dopri5", **kw)
    res = flows.end_to_end(task, N, X0, rtol=1e-8, integrator="bdf", **kw)
    assert list(res.status) == ["max_time"] * 2 and np.all(res.t == 4.0)
    scale = np.linalg.norm(ref.X, axis=(-2, -1))[:, None, None]
    np.testing.assert_allclose(res.X / scale, ref.X / scale, atol=1e-6)


@pytest.mark.parametrize("N,kw", [(1, {}), (2, {"normalized": False}), (3, {"spectral_control": False}),
                                  (math.inf, {"spectral_control": False}), (10, {"atol": 1e-8})])
def test_options_agree_with_dopri5(N, kw):
    """The linear N = 1 flow, the unnormalized time, the Frobenius-only control (Newton increments in the
    Frobenius norm) and atol > 0, on a rectangular 3×4 task: same ``100·rtol`` agreement as above."""
    rng = np.random.default_rng(SEED + 5)
    task = tasks.random_low_rank(3, 4, 2, 8, rng=rng)
    X0 = 0.3 * rng.standard_normal((2, 3, 4))
    ref = flows.end_to_end(task, N, X0, rtol=1e-11, integrator="dopri5", t_max=4.0, loss_tol=0, **kw)
    res = flows.end_to_end(task, N, X0, rtol=1e-8, integrator="bdf", t_max=4.0, loss_tol=0, **kw)
    scale = np.linalg.norm(ref.X, axis=(-2, -1))[:, None, None]
    np.testing.assert_allclose(res.X / scale, ref.X / scale, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("N", [3, math.inf])
def test_small_initialization_plateaus_against_dopri5(N):
    """The stiff regime the method is for: X0 ~ 1e-3, plateaus and transitions (σ_2/σ_1 ~ 1e-3 on the
    plateau). The endpoint after the transitions depends on the relative accuracy of the small singular
    values (docs/flows.md §4); at rtol 1e-7 it must agree with dopri5 at 1e-11 to 1e-4 of ‖X‖ (the
    6×6 benchmark measures endpoint errors ≈ 100·rtol at N = ∞)."""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(3, 3, 2, 7, rng=rng)
    X0 = 1e-3 * rng.standard_normal((1, 3, 3))
    T = 60.0 if N == 3 else 2250.0  # σ_2 crosses 0.1 at t ≈ 53 (N = 3) and ≈ 2114 (N = ∞)
    kw = dict(t_max=T, loss_tol=0, max_steps=500_000)
    ref = flows.end_to_end(task, N, X0, rtol=1e-11, integrator="dopri5", **kw)
    res = flows.end_to_end(task, N, X0, rtol=1e-7, integrator="bdf", **kw)
    s = np.linalg.svd(ref.X[0], compute_uv=False)
    assert s[1] > 0.1 * s[0]  # both transitions happened before T
    np.testing.assert_allclose(res.X[0], ref.X[0], atol=1e-4 * s[0])


# --------------------------------------------------------------------------- tolerance refinement
def test_error_decreases_with_rtol_against_the_exact_integral():
    """Diagonal 1×1 task at N = 3 and N = ∞ through the plateau and the transition: the time error
    ``|t(σ(T)) − T|`` (exact quadrature) shrinks with every 100× refinement of rtol, by more than 1e4 over
    1e-4 → 1e-10, and is below 1e-8·T at 1e-10. (Variable order 1–5 and signed errors that cancel: the
    error is not proportional to a fixed power of rtol, and single 10× refinements can fail to reduce it —
    measured for scipy's BDF as well, e.g. at N = 3 −1.9e-6 at 1e-7 and +1.2e-7 at 1e-8.)"""
    mu, s0 = 1.0, 0.05
    for N in (3, math.inf):
        T = _t_of_sigma(s0, 0.9, mu, N)
        errs = []
        for rtol in (1e-4, 1e-6, 1e-8, 1e-10):
            res = flows.end_to_end(CompletionTask(np.array([[mu]]), np.ones((1, 1), bool)), N, [[s0]], t_max=T,
                                   loss_tol=0, rtol=rtol, integrator="bdf")
            errs.append(abs(_t_of_sigma(s0, res.X[0, 0, 0], mu, N) - T))
        assert errs[0] > errs[1] > errs[2] > errs[3], (N, errs)
        assert errs[0] > 1e4 * errs[3] and errs[3] < 1e-8 * T, (N, errs)


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("integrator", ["bdf", "auto"])  # "auto" is "dopri-bdf-frozen"
@pytest.mark.parametrize("N", [2, 3, pytest.param(math.inf, marks=pytest.mark.slow)])
def test_invariants_on_ill_conditioned_3x3_start(N, integrator):
    """σ₃/σ₁ = 1e-10 at the start (a generic rotation): no NaN, loss non-increasing, and while σ_min stays
    resolvable (``min_sigma_ratio > 256·eps``) rank and sign det of X0 are kept (MATH.md §1.5 item 6).
    (At N = ∞ the run makes slow progress — 3000 steps reach t ≈ 100, "auto" t ≈ 900: Newton fails at
    the steps the error estimate allows while σ₃ is far below SV_FLOOR·σ₁, docs/flows.md §3.3.)"""
    rng = np.random.default_rng(SEED)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    R, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    X0 = (Q @ np.diag([1e-2, 3e-3, 1e-12]) @ R.T)[None]
    task = tasks.random_low_rank(3, 3, 2, 7, rng=rng)
    res = flows.end_to_end(task, N, X0, t_max=2e3, log_every=1, n_log=3000, max_steps=3000, integrator=integrator)
    assert res.integrator == ("bdf" if integrator == "bdf" else "dopri-bdf-frozen")
    assert res.status[0] in ("converged", "max_time", "max_steps")
    assert np.all(np.isfinite(res.X)) and not np.any(np.isnan(res.trajectory.loss))
    n = res.trajectory.n_logged[0]
    sig = res.trajectory.sigma[0, :n]
    assert np.all(np.isfinite(sig))
    if res.min_sigma_ratio[0] > 256 * np.finfo(float).eps:
        assert np.sign(np.linalg.det(res.X[0])) == np.sign(np.linalg.det(X0[0]))
        assert np.all(sig[:, -1] > 0)
    L = res.trajectory.loss[0, :n]
    assert np.all(np.diff(L) <= 1e-6 * L[:-1] + 1e-14)


# --------------------------------------------------------------------------- the Jacobian and the batch
def test_runs_are_independent_of_their_batch():
    """Every run keeps its own order, step size, Jacobian and Newton rate: a batch of seven gives each run
    exactly what it gets alone. (It did not, until the retry with a fresh Jacobian forgot the old rate
    in a copy that existed only when another run of the batch had changed its step: 261 vs 260 steps.)"""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(3, 3, 2, 6, rng=rng)
    X0 = np.concatenate([[1e-3 * rng.standard_normal((3, 3)), 0.3 * rng.standard_normal((3, 3))],
                         1e-2 * rng.standard_normal((5, 3, 3))])
    kw = dict(t_max=300.0, loss_tol=0, integrator="bdf", rtol=1e-6)
    both = flows.end_to_end(task, 3, X0, **kw)
    for i in range(len(X0)):
        one = flows.end_to_end(task, 3, X0[i], **kw)
        assert one.status[0] == both.status[i] == "max_time"
        assert one.n_steps[0] == both.n_steps[i]
        np.testing.assert_array_equal(one.X[0], both.X[i])


def test_zero_start_is_a_stationary_point():
    """X0 = 0 (N >= 2): the field vanishes; the run ends at the horizon without NaN."""
    res = flows.end_to_end(tasks.diagonal_2x2(), 3, np.zeros((2, 2)), integrator="bdf", max_steps=50)
    assert res.status[0] in ("max_time", "max_steps") and np.all(res.X == 0)
