"""Tests of the variable-order BDF/NDF stepper (``integrator="bdf"``, :mod:`dlnvolume.flows.bdf`).

References are independent of the code under test: scipy's own ``bdf.py`` (coefficients, ``change_D``
and the difference update), Dormand–Prince at a tight tolerance, and the exact ``t(σ)`` integral of the
scalar ODE (MATH.md §8 item 17) by ``scipy.integrate.quad``. The closed-form, dopri5-agreement and
ill-conditioned-start tests of ``test_stiff_flows.py`` are parametrized over "bdf" as well.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.integrate._ivp import bdf as scipy_bdf

from dlnvolume import CompletionTask, errors, flows, tasks
from dlnvolume.flows import loop
from dlnvolume.flows.bdf import ALPHA, ERROR_CONST, GAMMA, MAX_ORDER, Bdf, _T, change_D
from dlnvolume.flows.field import EndToEndField
from dlnvolume.flows.rosenbrock import fd_jacobian

SEED = 20261130


def _t_of_sigma(s0: float, s: float, mu: float, N: float) -> float:
    """Time to go from ``s0`` to ``s`` under ``σ̇ = σ^{2−2/N}(μ − σ)`` (normalized; MATH.md §8 item 17)."""
    p = 2.0 if math.isinf(N) else 2.0 - 2.0 / N
    val, _ = quad(lambda x: 1.0 / (x ** p * (mu - x)), s0, s, epsabs=0, epsrel=1e-13, limit=200)
    return val


# --------------------------------------------------------------------------- against scipy's bdf.py
def test_coefficients_match_scipy():
    """κ, γ, α and the error constants are scipy's (Shampine & Reichelt 1997 NDF)."""
    sol = scipy_bdf.BDF(lambda t, y: -y, 0.0, np.ones(1), 1.0)
    np.testing.assert_allclose(GAMMA, sol.gamma, rtol=1e-15)
    np.testing.assert_allclose(ALPHA, sol.alpha, rtol=1e-15)
    np.testing.assert_allclose(ERROR_CONST, sol.error_const, rtol=1e-15)


def test_batched_change_D_matches_scipy_per_run():
    """Per-run orders and factors in one call equal scipy's ``change_D`` run by run (rows > order kept)."""
    rng = np.random.default_rng(SEED)
    orders = np.array([1, 2, 3, 4, 5, 3])
    factors = np.array([0.5, 2.0, 1.0, 0.3, 7.5, 1.7])
    D = rng.standard_normal((orders.size, MAX_ORDER + 3, 5))
    out = change_D(D, orders, factors)
    for i, (k, f) in enumerate(zip(orders, factors)):
        ref = D[i].copy()
        scipy_bdf.change_D(ref, int(k), float(f))
        np.testing.assert_allclose(out[i], ref, rtol=1e-13, atol=1e-13)


def test_difference_update_matches_scipys_loop():
    """The tabulated update ``D ← upd[k] D + upd_d[k] d`` is scipy's in-place loop after an accepted step."""
    rng = np.random.default_rng(SEED)
    for k in range(1, MAX_ORDER + 1):
        D = rng.standard_normal((MAX_ORDER + 3, 4))
        d = rng.standard_normal(4)
        ref = D.copy()
        ref[k + 2] = d - ref[k + 1]
        ref[k + 1] = d
        for i in reversed(range(k + 1)):
            ref[i] += ref[i + 1]
        out = _T["upd"][k] @ D + _T["upd_d"][k][:, None] * d[None, :]
        np.testing.assert_allclose(out[: k + 3], ref[: k + 3], rtol=1e-14, atol=1e-14)


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
@pytest.mark.parametrize("integrator", ["bdf", "auto"])  # "auto" is "dopri-bdf" on 3×3 tasks
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
    assert res.integrator == ("bdf" if integrator == "bdf" else "dopri-bdf")
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
def _run(stepper, task, X0, **kw):
    args = dict(t_max=math.inf, loss_tol=1e-6 * task.n_observed / 2, rtol=stepper.rtol, atol=0.0,
                max_steps=100_000, log_every=1, n_log=10, threshold=0.5, sign_det=True)
    args.update(kw)
    return loop.run(stepper, task.loss, X0, **args)


def test_jacobian_is_reused_over_many_steps():
    """The error estimate does not involve J, so J is recomputed only when Newton fails with a stale one:
    on a small-initialization 4×3 flow at N = ∞, far fewer Jacobians than steps."""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(4, 3, 2, 8, rng=rng)
    X0 = 1e-3 * rng.standard_normal((1, 4, 3))
    st = Bdf(EndToEndField(task, math.inf, True), 1e-6, 0.0, True)
    out = _run(st, task, X0, t_max=1e5)
    assert out.status[0] == "converged"
    assert st.n_jac <= out.n_steps[0] / 5, (st.n_jac, out.n_steps[0])
    assert st.n_lu < out.n_steps[0]


def test_newton_failure_refreshes_the_jacobian_of_the_input_state():
    """A step far too long for the stale J: Newton fails, J is recomputed at the state's Y and written into
    the input state's cache (so the loop's retry of that state keeps it)."""
    task = tasks.diagonal_2x2()
    field = EndToEndField(task, 3, True)
    st = Bdf(field, 1e-6, 0.0, True)
    state = st.init(np.array([[[0.5, 0.1], [0.0, 0.3]]]))
    h = np.array([1e-3])
    for _ in range(3):  # move away from X0, so that the cached J is stale
        state, info = st.step(state, h)
        h = info.h_next
    assert not state.cache[10][0]
    jac0 = st.n_jac
    trial, info = st.step(state, np.array([50.0]))
    if st.n_jac == jac0:
        pytest.skip("Newton converged with the stale J")
    assert state.cache[10][0]  # j_fresh, in place
    J_ref, _ = fd_jacobian(field, state.Y)
    np.testing.assert_allclose(state.cache[7], J_ref, rtol=1e-12, atol=1e-12)


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


def test_large_tasks_are_refused():
    """Only m·n <= 64 (dense finite-difference Jacobian): a clear error otherwise."""
    task = tasks.random_low_rank(9, 9, 2, 30, rng=1)
    with pytest.raises(errors.InvalidArgumentError, match=r"integrator='bdf' supports tasks with m·n <= 64"):
        flows.end_to_end(task, 3, 1e-3 * np.ones((9, 9)), integrator="bdf")
    assert isinstance(errors.InvalidArgumentError("x"), ValueError)


def test_zero_start_is_a_stationary_point():
    """X0 = 0 (N >= 2): the field vanishes; the run ends at the horizon without NaN."""
    res = flows.end_to_end(tasks.diagonal_2x2(), 3, np.zeros((2, 2)), integrator="bdf", max_steps=50)
    assert res.status[0] in ("max_time", "max_steps") and np.all(res.X == 0)
