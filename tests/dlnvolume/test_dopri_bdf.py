"""The per-run Dormand–Prince / BDF switching stepper (``integrator="dopri-bdf"``, flows/dopri_bdf.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dlnvolume import CompletionTask, flows, tasks
from dlnvolume.flows import loop
from dlnvolume.flows.dopri_bdf import MIN_STIFF, DopriBdf
from dlnvolume.flows.field import EndToEndField
from dlnvolume.flows.rosenbrock import fd_jacobian
from dlnvolume.flows.switching import NONSTIFF, STIFF, STRIKES, strike_counter

SEED = 20261130


def _at_solution(N: float = 3.0):
    """A fully observed 3×3 task and a batch of two copies of its solution: the field is exactly 0, so
    every step is accepted with error 0 whatever its size (the switching rule alone decides)."""
    rng = np.random.default_rng(SEED)
    M = rng.standard_normal((3, 3))
    task = CompletionTask(mask=np.ones((3, 3), dtype=bool), values=M)
    stepper = DopriBdf(EndToEndField(task, N, True), 1e-6, 0.0, True)
    return task, stepper, np.stack([M, M])


def test_turns_stiff_after_strikes_with_a_fresh_bdf_state():
    task, st, Y = _at_solution()
    s0 = st.init(Y)
    rho = st.f.rho(s0.sigma)
    assert rho[0] == pytest.approx(np.linalg.svd(Y[0], compute_uv=False)[0] ** (4 / 3))  # λ_11 at N = 3
    h = np.array([STIFF * 1.01 / rho[0], 0.5 * STIFF / rho[1]])  # run 0 at the limit, run 1 below it
    mode = np.array([strike_counter(STRIKES - 1), strike_counter(STRIKES - 1)])
    state = loop.StepState(s0.Y, s0.sigma, s0.bad, s0.cache[:-1] + (mode,))
    trial, info = st.step(state, h)
    # accepted (the error is round-off: two SVD paths of one matrix) and explicit: the controller's step
    assert np.all(info.ratio < 1e-10) and np.all(np.isnan(info.h_next))
    # the STRIKES-th strike switches; a step below the limit keeps the strikes (one clear step of RESET)
    assert list(trial.cache[-1]) == [1, strike_counter(STRIKES - 1, 1)]
    D, order, J = trial.cache[3], trial.cache[5], trial.cache[7]
    np.testing.assert_array_equal(D[0, 0], trial.Y[0])  # BDF afresh at the new state: order 1, D_0 = Y,
    np.testing.assert_array_equal(D[0, 1], trial.cache[0][0])  # D_1 = f(Y) (spacing 1), a new Jacobian
    assert order[0] == 1 and st.n_to_stiff == 1
    np.testing.assert_allclose(J[0], fd_jacobian(st.f, trial.Y[:1])[0][0], rtol=0, atol=1e-12)


def test_returns_to_explicit_only_after_min_stiff_bdf_steps():
    task, st, Y = _at_solution()
    b0 = st.bdf.init(Y)
    rho = st.f.rho(b0.sigma)
    h = 0.5 * NONSTIFF / rho  # both below the return threshold
    mode = np.array([1, 1 + MIN_STIFF])  # run 0 has just turned stiff, run 1 has taken MIN_STIFF BDF steps
    lam = st.f(Y, full=True).lam
    state = loop.StepState(b0.Y, b0.sigma, b0.bad, b0.cache + (lam, np.full(2, np.inf), mode))
    trial, info = st.step(state, h)
    assert list(trial.cache[-1]) == [2, 0]
    assert np.isfinite(info.h_next[0]) and np.isnan(info.h_next[1])  # BDF's own step; then the controller's
    F = st.f(trial.Y[1:]).F[0]  # a run turning explicit carries f(Y) itself, not BDF's Newton value
    np.testing.assert_array_equal(trial.cache[0][1], F)
    assert st.n_to_explicit == 1


@pytest.mark.parametrize("N,T", [(3, 100.0), pytest.param(10, 870.0, marks=pytest.mark.slow)])
def test_switches_both_ways_and_agrees_with_dopri5(N, T):
    """A small-initialization 4×4 run through a plateau and two transitions (crossings of 0.5 at t ≈ 4.6
    and 57 for N = 3, 33 and 846 for N = 10): Dormand–Prince, BDF and back; the endpoint at a fixed time
    against Dormand–Prince alone at rtol 1e-10."""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(4, 4, 2, 10, rng=rng)
    X0 = 1e-3 * rng.standard_normal((1, 4, 4))
    st = DopriBdf(EndToEndField(task, N, True), 1e-8, 0.0, True)
    out = loop.run(st, task._loss, X0, t_max=T, loss_tol=0.0, rtol=1e-8, atol=0.0, max_steps=100_000,
                   log_every=1, n_log=8, threshold=0.5, sign_det=True)
    assert out.status[0] == "max_time" and st.n_to_stiff >= 1 and st.n_to_explicit >= 1
    ref = flows.end_to_end(task, N, X0, t_max=T, loss_tol=0, rtol=1e-10, integrator="dopri5", max_steps=10**6)
    scale = np.linalg.norm(ref.X[0])
    np.testing.assert_allclose(out.Y[0] / scale, ref.X[0] / scale, atol=1e-6)


def test_ill_conditioned_stiff_runs_use_ros34pw2_and_agree_with_dopri5():
    """σ_2/σ_1 ≈ 1e-10 at the start (a rank-1 3×3 task): where the run is stability-limited it is below
    COND, so it goes to ROS34PW2, not BDF (whose Newton iteration fails there), and back; the endpoint
    against Dormand–Prince alone at rtol 1e-10."""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(3, 3, 1, 5, rng=rng)
    u, v = rng.standard_normal(3), rng.standard_normal(3)
    X0 = (1e-2 * np.outer(u, v) + 1e-12 * rng.standard_normal((3, 3)))[None]
    st = DopriBdf(EndToEndField(task, 3, True), 1e-8, 0.0, True)
    out = loop.run(st, task._loss, X0, t_max=300.0, loss_tol=0.0, rtol=1e-8, atol=0.0, max_steps=100_000,
                   log_every=1, n_log=8, threshold=0.5, sign_det=True)
    assert out.status[0] == "max_time" and st.n_to_ros >= 1 and st.n_to_explicit >= 1 and st.n_to_bdf == 0
    ref = flows.end_to_end(task, 3, X0, t_max=300.0, loss_tol=0, rtol=1e-10, integrator="dopri5")
    scale = np.linalg.norm(ref.X[0])
    np.testing.assert_allclose(out.Y[0] / scale, ref.X[0] / scale, atol=1e-6)


@pytest.mark.parametrize("depth,normalized", [(2, True), (3, False), (20, True), (float("inf"), True)])
@pytest.mark.parametrize("shape", [(3, 3), (3, 5), (4, 2)])
def test_stiffness_indicator_is_the_largest_multiplier(depth, normalized, shape):
    """``EndToEndField.rho`` (the ``h·ρ`` indicator of "switching" and "dopri-bdf", from ``σ_1`` alone)
    against the largest entry of the full multiplier array of :func:`dlnvolume.spectral.log_multipliers`,
    on rectangular shapes and singular values spread over 1e-6…1e2."""
    from dlnvolume.spectral import log_multipliers

    rng = np.random.default_rng(SEED)
    task = CompletionTask(mask=np.ones(shape, dtype=bool), values=np.zeros(shape))
    f = EndToEndField(task, depth, normalized)
    k = min(shape)
    sigma = -np.sort(-10.0 ** rng.uniform(-6, 2, (20, k)), axis=1)
    lam = np.exp(log_multipliers(np.log(sigma), shape, k, depth, normalized))
    np.testing.assert_allclose(f.rho(sigma), lam.reshape(20, -1).max(axis=1), rtol=1e-12)
    assert not np.allclose(f.rho(sigma), lam.reshape(20, -1).min(axis=1), rtol=1e-3)  # not any multiplier
