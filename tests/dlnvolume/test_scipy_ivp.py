"""``dlnvolume.flows.scipy_ivp``: the end-to-end flow as ``(fun, jac)`` for ``scipy.integrate.solve_ivp``.

References are independent of the code under test: the scalar ODE of a diagonal task (MATH.md §8 item 17),
central differences of ``fun`` for the Jacobian, and :func:`end_to_end` with Dormand–Prince at rtol 1e-11
(a different integrator and loop) for whole trajectories.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dlnvolume import CompletionTask, errors, flows, tasks

SEED = 20261130


@pytest.mark.parametrize("N", [1, 2, 3, 20, math.inf])
def test_field_of_a_diagonal_task_is_the_scalar_ode(N):
    """Fully observed diagonal task, diagonal X: ``σ̇_i = σ_i^{2−2/N}(μ_i − σ_i)`` (normalized; ``σ²`` at
    N = ∞), off-diagonal derivative 0."""
    mu, s = np.array([2.0, 0.5, 1.5]), np.array([0.3, 0.02, 1.7])
    fun, _ = flows.scipy_ivp(CompletionTask(np.diag(mu), np.eye(3, dtype=bool)), N)
    p = 2.0 if math.isinf(N) else 2.0 - 2.0 / N
    np.testing.assert_allclose(fun(0.0, np.diag(s).ravel()), np.diag(s ** p * (mu - s)).ravel(),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("N,normalized", [(2, True), (3, False), (10, True), (math.inf, True)])
def test_jacobian_agrees_with_central_differences(N, normalized):
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(3, 4, 2, 8, rng=rng)
    fun, jac = flows.scipy_ivp(task, N, normalized=normalized)
    y = rng.standard_normal(12)
    J = jac(0.0, y)
    ref = np.empty((12, 12))
    for j in range(12):
        e = np.zeros(12)
        e[j] = 1e-5
        ref[:, j] = (fun(0.0, y + e) - fun(0.0, y - e)) / 2e-5
    assert J.shape == (12, 12)
    np.testing.assert_allclose(J, ref, rtol=0, atol=2e-6 * np.abs(ref).max())
    J[0, 0] += 1e-3 * np.abs(ref).max()  # negative control: the comparison sees a 1e-3 change
    assert not np.allclose(J, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


@pytest.mark.parametrize("N", [3, math.inf])
def test_lsoda_with_the_batched_jacobian_follows_end_to_end(N):
    """A small-initialization 3×3 rank-2 flow to a fixed time through a transition: LSODA with
    ``jac`` at rtol 1e-10 against :func:`end_to_end` (Dormand–Prince, rtol 1e-11)."""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(3, 3, 2, 6, rng=rng)
    X0 = 1e-2 * rng.standard_normal((3, 3))
    T = 60.0
    ref = flows.end_to_end(task, N, X0, t_max=T, loss_tol=0, rtol=1e-11, integrator="dopri5", max_steps=10**6)
    fun, jac = flows.scipy_ivp(task, N)
    sol = solve_ivp(fun, (0.0, T), X0.ravel(), method="LSODA", jac=jac, rtol=1e-10, atol=1e-14)
    # LSODA calls jac only once it switches to its stiff method (scipy 1.17 stays with Adams at N = 3 here:
    # njev = 0), so jac itself is exercised through BDF, which always uses it
    assert sol.success
    bdf = solve_ivp(fun, (0.0, T), X0.ravel(), method="BDF", jac=jac, rtol=1e-10, atol=1e-14)
    assert bdf.success and bdf.njev > 0
    scale = np.abs(ref.X[0]).max()
    assert task.loss(ref.X[0]) < 0.2 * task.loss(X0)  # through a transition (ratio 0.17 at N = ∞, 3e-14 at N = 3)
    np.testing.assert_allclose(sol.y[:, -1].reshape(3, 3) / scale, ref.X[0] / scale, atol=1e-6)
    np.testing.assert_allclose(bdf.y[:, -1].reshape(3, 3) / scale, ref.X[0] / scale, atol=1e-6)


def test_non_finite_state_gives_nan_not_zero():
    fun, jac = flows.scipy_ivp(tasks.diagonal_2x2(), 3)
    y = np.array([0.1, np.nan, 0.0, 0.2])
    assert np.all(np.isnan(fun(0.0, y))) and np.all(np.isnan(jac(0.0, y)))
    assert np.all(np.isfinite(fun(0.0, np.nan_to_num(y))))


def test_bad_arguments_are_named():
    task = tasks.diagonal_2x2()
    with pytest.raises(errors.InvalidDepthError, match="depth=0"):
        flows.scipy_ivp(task, 0)
    with pytest.raises(errors.InvalidArgumentError, match="normalized"):
        flows.scipy_ivp(task, 3, normalized="yes")
    with pytest.raises(ValueError, match="depth"):
        flows.scipy_ivp(task, math.inf, normalized=False)
    with pytest.raises(errors.InvalidArgumentError, match="task"):
        flows.scipy_ivp(np.eye(2), 3)
