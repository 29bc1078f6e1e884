"""The compiled field and Jacobian (:mod:`dlnvolume.flows._kernels`), numba's cache, and the endpoints'
accuracy check (issue 23).

References are independent of the code under test: the dense operator of ``test_dense_reference``
(fractional matrix powers by ``eigh``, Gauss–Legendre for ``N = ∞``; no singular-value formula) and
central differences of the field.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from test_dense_reference import dense_A

from dlnvolume import CompletionTask, flows, tasks
from dlnvolume.flows import _kernels, compiled

SEED = 20261207


def _task(m, n, n_obs, rng):
    mask = np.zeros(m * n, dtype=bool)
    mask[rng.choice(m * n, n_obs, replace=False)] = True
    return CompletionTask(rng.standard_normal((m, n)) * mask.reshape(m, n), mask.reshape(m, n))


def _matrix(kind, m, n, rng):
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    if kind == "random":
        s = np.sort(rng.uniform(0.2, 3.0, k))[::-1]
    elif kind == "coincident":  # two equal singular values (X0 = c·Q-like)
        s = np.full(k, 0.7)
        s[-1] = 0.3 if k > 2 else 0.7
    else:  # an exactly zero singular value: a zero column (rank <= k − 1 in float64 too; a product
        # U·diag(s, 0)·Vᵀ has σ_min ~ 1e-16, not 0, and at N = 20 or ∞ the multipliers of σ^{2/N} or
        # 1/log σ see the difference: the field is that of the stored matrix)
        s = np.sort(rng.uniform(0.2, 3.0, k))[::-1]
    S = np.zeros((m, n))
    S[:k, :k] = np.diag(s)
    Y = U @ S @ V.T
    if kind == "zero":
        Y[:, -1] = 0.0
    return Y


@pytest.mark.parametrize("N", [1, 2, 3, 20, math.inf])
@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (4, 3), (2, 5), (6, 6)])
@pytest.mark.parametrize("kind", ["random", "coincident", "zero"])
def test_field_against_the_dense_operator(N, shape, kind):
    """``F = Ā_{N,Y}(P_Ω(M − Y))`` against the dense ``mn×mn`` operator (normalized; unnormalized at N = 3)."""
    rng = np.random.default_rng([SEED, shape[0], shape[1], int(min(N, 99)), len(kind)])
    m, n = shape
    task = _task(m, n, max(1, m * n // 2), rng)
    Y = _matrix(kind, m, n, rng)
    mask, M = task._observed.astype(float), task.values
    for normalized in (True, False) if N == 3 else (True,):
        G = (mask * (M - Y)).ravel()
        ref = (dense_A(Y, N, normalized) @ G).reshape(m, n) if N != 1 else G.reshape(m, n)
        got = _kernels.field(Y, mask, M, float(N), normalized)
        assert np.max(np.abs(got - ref)) <= 1e-9 * max(1.0, np.max(np.abs(ref))), (N, shape, kind)


@pytest.mark.parametrize("N", [2, 3, math.inf])
@pytest.mark.parametrize("shape", [(2, 2), (3, 4), (6, 6)])
def test_jacobian_against_central_differences(N, shape):
    """The forward-difference Jacobian of one compiled call against central differences (step 1e-5)."""
    rng = np.random.default_rng([SEED, shape[0], shape[1], int(min(N, 99))])
    m, n = shape
    task = _task(m, n, max(1, m * n // 2), rng)
    Y = _matrix("random", m, n, rng)
    mask, M = task._observed.astype(float), task.values
    F0 = _kernels.field(Y, mask, M, float(N), True)
    J = np.empty((m * n, m * n))
    assert _kernels.fd_jacobian_into(Y, F0, mask, M, float(N), True, J)
    h = 1e-5
    ref = np.empty_like(J)
    for j in range(m * n):
        E = np.zeros(m * n)
        E[j] = h
        E = E.reshape(m, n)
        ref[:, j] = ((_kernels.field(Y + E, mask, M, float(N), True)
                      - _kernels.field(Y - E, mask, M, float(N), True)) / (2 * h)).ravel()
    assert np.max(np.abs(J - ref)) <= 1e-5 * max(1.0, np.max(np.abs(ref)))
    # negative control: the Jacobian of another depth is measurably different
    J2 = np.empty_like(J)
    _kernels.fd_jacobian_into(Y, _kernels.field(Y, mask, M, 7.0, True), mask, M, 7.0, True, J2)
    assert np.max(np.abs(J2 - ref)) > 1e-3 * np.max(np.abs(ref))


@pytest.mark.parametrize("N,normalized", [(2, True), (3, False), (20, True), (math.inf, True)])
@pytest.mark.parametrize("shape,n_obs", [((3, 3), 5), ((5, 6), 14), ((9, 8), 40)])
def test_frozen_metric_solve_against_the_dense_operator(N, normalized, shape, n_obs):
    """The W-matrix solve of the frozen-metric ROS34PW2, ``(I + hγ·Ā_Y∘P_Ω) u = r`` through the reduced
    ``|Ω|×|Ω|`` Cholesky system, against a dense solve with the dense operator of test_dense_reference;
    negative control: the solve without the reduction's correction (``u = r``) is far."""
    rng = np.random.default_rng([SEED, shape[0], shape[1], int(min(N, 99)), int(normalized)])
    m, n = shape
    task = _task(m, n, n_obs, rng)
    Y = _matrix("random", m, n, rng)
    mask = task._observed.astype(float)
    from dlnvolume.flows._svd import svd_full
    U, s, Vh = svd_full(Y)
    oi, oj = (a.astype(np.int64) for a in np.nonzero(task._observed))
    p = oi.size
    lam, Uj, UT, Vhj, V = np.zeros((m, n)), np.zeros((m, m)), np.zeros((m, m)), np.zeros((n, n)), np.zeros((n, n))
    B, Lc, Lt = np.zeros((p, p)), np.zeros((p, p)), np.zeros((p, p))
    assert compiled._frozen_jacobian(U, s, Vh, float(N), normalized, oi, oj, lam, Uj, Vhj, UT, V, B)
    A = dense_A(Y, N, normalized) @ np.diag(mask.ravel())
    for hg in (1e-3, 0.7, 50.0):
        assert compiled._frozen_factor(B, hg, Lc, Lt)
        r = rng.standard_normal(m * n)
        u = r.copy()
        compiled._frozen_solve(Lc, Lt, hg, oi, oj, lam, Uj, Vhj, UT, V, u)
        ref = np.linalg.solve(np.eye(m * n) + hg * A, r)
        assert np.max(np.abs(u - ref)) <= 1e-9 * np.max(np.abs(ref)), hg
        if hg >= 0.7:
            assert np.max(np.abs(r - ref)) > 1e-2 * np.max(np.abs(ref))
    assert not compiled._frozen_factor(B, np.nan, Lc, Lt) and not compiled._frozen_factor(B, -1.0, Lc, Lt)


def test_nonfinite_input_gives_nan_not_an_exception():
    task = tasks.diagonal_2x2()
    mask, M = task._observed.astype(float), task.values
    assert np.all(np.isnan(_kernels.field(np.array([[np.nan, 0.0], [0.0, 1.0]]), mask, M, 3.0, True)))
    F = _kernels.field(np.full((2, 2), 5e-324), mask, M, 3.0, True)  # subnormal entries: finite, no ZeroDivision
    assert np.all(np.isfinite(F))


def test_a_second_process_loads_the_compiled_integrator_from_the_cache():
    """Compile time is paid once: after this process has run the integrator, a new process finds it in
    numba's cache (hits, no misses) instead of compiling it again."""
    compiled.warm_up()
    code = ("from dlnvolume.flows import compiled, svd2; compiled.warm_up(); "
            "ds = (compiled.integrate_batch, svd2.integrate_batch); "
            "print(min(sum(d.stats.cache_hits.values()) for d in ds), sum(sum(d.stats.cache_misses.values()) for d in ds))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, out.stderr
    hits, misses = map(int, out.stdout.split())
    assert hits >= 1 and misses == 0


# --------------------------------------------------------------------------- the accuracy check of endpoints
def test_accuracy_check_tightens_a_loose_tolerance():
    """At rtol 1e-2 the 6×6 endpoints at N = ∞ are not the flow's: the check sees it, redoes the runs once at
    1e-4, closer to the flow, and flags the checked runs that still move. Negative control: at the default
    tolerance nothing is redone."""
    task = tasks.random_low_rank(6, 6, 2, 12, rng=1)
    loose = flows.endpoints(task, math.inf, 24, 1e-3, rng=3, workers=1, progress=False, rtol=1e-2)
    rounds = loose.accuracy["rounds"]
    assert rounds[0]["rtol"] == 1e-2 and rounds[0]["n_checked"] >= 1
    assert rounds[0]["n_moved"] >= 1 and len(rounds) == 2 and rounds[1]["rtol"] == pytest.approx(1e-4)
    assert rounds[1]["max_err"] < rounds[0]["max_err"]  # the redo is closer to the flow
    assert rounds[1]["max_steps"] == 4 * rounds[0]["max_steps"]  # with the step budget of the check's runs
    assert np.sum(~np.isnan(loose.check_err)) == rounds[-1]["n_checked"]
    assert int(loose.flagged.sum()) == rounds[-1]["n_moved"]  # what still moves is flagged, not kept silently
    default = flows.endpoints(task, math.inf, 24, 1e-3, rng=3, workers=1, progress=False)
    assert len(default.accuracy["rounds"]) == 1 and not default.flagged.any()
    assert default.accuracy["rounds"][0]["max_err"] < 1e-3
    off = flows.endpoints(task, math.inf, 4, 1e-3, rng=3, workers=1, progress=False, check_accuracy=False)
    assert off.accuracy == {} and np.all(np.isnan(off.check_err))


def test_accuracy_check_leaves_out_runs_that_did_not_converge():
    """A run stopped by max_steps has no endpoint: the check does not compare it (two states on the way differ by
    construction) and it cannot send the call back to rtol/100; converged runs of the same call are checked."""
    task = tasks.random_low_rank(6, 6, 2, 12, rng=1)
    capped = flows.endpoints(task, math.inf, 16, 1e-3, rng=3, workers=1, progress=False, max_steps=30)
    assert set(capped.status) == {"max_steps"}
    assert np.all(np.isnan(capped.check_err)) and len(capped.accuracy["rounds"]) == 1
    assert capped.accuracy["rounds"][0]["n_checked"] == 0 and not capped.flagged.any()
    full = flows.endpoints(task, math.inf, 16, 1e-3, rng=3, workers=1, progress=False)
    conv = np.asarray(full.status) == "converged"
    assert np.sum(~np.isnan(full.check_err)) == np.sum(conv & (full.seeds % 8 == 0)) >= 1


def test_accuracy_check_leaves_out_unresolved_runs():
    """A run flagged ``unresolved`` is dropped whatever the check says, and two integrations of a state float64
    cannot hold differ at every tolerance, so it is not checked and cannot send the call back to rtol/100
    (docs/flows.md §3.4, §4.1). The 2×2 diagonal task at N = 20 in matrix coordinates: 33 of 40 runs unresolved,
    4 of the 5 checked seeds among them (all 5 were compared before). Control: the resolved one is checked."""
    task = tasks.diagonal_2x2()
    ep = flows.endpoints(task, 20, 40, 1e-3, rng=1, workers=1, progress=False, integrator="dopri-bdf-frozen")
    chk = (ep.seeds % 8 == 0) & (np.asarray(ep.status) == "converged")
    assert (chk & ep.unresolved).sum() >= 1 and (chk & ~ep.unresolved).sum() >= 1
    assert np.all(np.isnan(ep.check_err[ep.unresolved]))
    assert np.all(np.isfinite(ep.check_err[chk & ~ep.unresolved]))
    assert ep.accuracy["rounds"][0]["n_checked"] == int((chk & ~ep.unresolved).sum())


def test_accuracy_check_does_not_depend_on_batches():
    task = tasks.random_low_rank(3, 3, 1, 5, rng=2)
    a = flows.endpoints(task, 3, 20, 1e-2, rng=4, workers=1, batch_size=20, progress=False)
    b = flows.endpoints(task, 3, 20, 1e-2, rng=4, workers=1, batch_size=3, progress=False)
    np.testing.assert_array_equal(a.check_err, b.check_err)
    np.testing.assert_array_equal(a.X, b.X)
    assert np.sum(~np.isnan(a.check_err)) == np.sum(a.seeds % 8 == 0)
