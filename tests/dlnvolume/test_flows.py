"""Tests of dlnvolume.flows: exact solutions (MATH.md §8 items 17–20, §5.2), invariants, agreement of the
two training methods, reproducibility of seeded endpoints, and input validation.

Every test runs once per end-to-end method (the autouse ``integrator`` fixture makes
``integrator="auto"`` mean that method)."""

from __future__ import annotations

import importlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.integrate import quad

from dlnvolume import CompletionTask, errors, flows, tasks

SEED = 20231129


@pytest.fixture(params=["dopri-bdf-frozen", "dopri5", pytest.param("dopri-bdf", marks=pytest.mark.slow),
                        pytest.param("bdf", marks=pytest.mark.slow), pytest.param("rosenbrock", marks=pytest.mark.slow)],
                autouse=True)
def integrator(request, monkeypatch):
    """Run every test of this module with ``integrator="auto"`` resolved to each method of the compiled
    integrator in turn (for ``N >= 2``). Pure BDF and ROS34PW2 are in the slow suite (the switching default
    uses both where the flow is stiff): the tolerances here (down to ``rtol=1e-11``) were set for an
    order-5 method."""
    mod = importlib.import_module("dlnvolume.flows.end_to_end")
    real = mod.resolve_integrator
    monkeypatch.setattr(mod, "resolve_integrator",
                        lambda integ, depth, *rest: real(request.param if integ == "auto" and depth != 1 else integ,
                                                         depth, *rest))
    return request.param


def _diag_task(mu):
    mu = np.asarray(mu, dtype=float)
    return CompletionTask(np.diag(mu), np.eye(mu.size, dtype=bool), name="diag")


# --------------------------------------------------------------------------- exact solutions (§8 items 17, 18)
@pytest.mark.parametrize("t, ref", [(1.0, 0.06945316), (3.0, 0.80295715), (6.0, 0.99939209)])
def test_depth2_logistic_reference_values(t, ref):
    # MATH.md §8 item 17: N = 2, μ = 1, σ0 = 0.01, unnormalized; closed form checked against the listed values
    closed = 1.0 / (1.0 + (1.0 / 0.01 - 1.0) * math.exp(-2.0 * t))
    assert closed == pytest.approx(ref, abs=5e-9)
    res = flows.end_to_end(tasks.diagonal_2x2(), 2, 0.01 * np.eye(2), normalized=False, t_max=t, rtol=1e-10, loss_tol=0)
    assert res.status.tolist() == ["max_time"]
    assert res.t[0] == pytest.approx(t, rel=1e-14)
    np.testing.assert_allclose(np.diag(res.X[0]), closed, rtol=1e-6)
    np.testing.assert_array_equal(res.X[0, [0, 1], [1, 0]], 0.0)  # stays diagonal (§8 item 18)


def test_depth1_and_depth2_diagonal_two_targets():
    mu = np.array([1.0, 2.0])
    s0 = np.array([0.01, 0.03])
    task = _diag_task(mu)
    t = 1.7
    r1 = flows.end_to_end(task, 1, np.diag(s0), t_max=t, rtol=1e-10, loss_tol=0)
    np.testing.assert_allclose(np.diag(r1.X[0]), mu + (s0 - mu) * np.exp(-t), rtol=1e-6)
    r2 = flows.end_to_end(task, 2, np.diag(s0), normalized=False, t_max=t, rtol=1e-10, loss_tol=0)
    np.testing.assert_allclose(np.diag(r2.X[0]), mu / (1 + (mu / s0 - 1) * np.exp(-2 * mu * t)), rtol=1e-6)


def _t_of_sigma(N, mu, s0, s):
    """t = (1/N) ∫_{s0}^{s} du / (u^{2−2/N} (μ − u)) (MATH.md §8 item 17, unnormalized)."""
    val, _ = quad(lambda u: 1.0 / (u ** (2 - 2 / N) * (mu - u)), s0, s, epsabs=0, epsrel=1e-13, limit=200)
    return val / N


@pytest.mark.parametrize("N", [3, 5])
def test_general_depth_quadrature(N):
    mu, s0 = 1.0, 0.01
    targets = [0.2, 0.9]
    for target in targets:
        t = _t_of_sigma(N, mu, s0, target)
        res = flows.end_to_end(_diag_task([mu]), N, [[s0]], normalized=False, t_max=t, rtol=1e-11, loss_tol=0)
        assert res.X[0, 0, 0] == pytest.approx(target, rel=1e-6)
        # normalized flow at τ = N t is the same point (Ā = A/N)
        res_n = flows.end_to_end(_diag_task([mu]), N, [[s0]], normalized=True, t_max=N * t, rtol=1e-11, loss_tol=0)
        assert res_n.X[0, 0, 0] == pytest.approx(target, rel=1e-6)


def test_infinite_depth_implicit_solution():
    mu, s0 = 2.0, 0.01
    F = lambda s: -1.0 / (mu * s) + mu**-2 * math.log(s / (mu - s))  # noqa: E731
    for target in [0.5, 1.9]:
        t = F(target) - F(s0)
        res = flows.end_to_end(_diag_task([mu, mu]), math.inf, s0 * np.eye(2), t_max=t, rtol=1e-11, loss_tol=0)
        np.testing.assert_allclose(np.diag(res.X[0]), target, rtol=1e-6)


def test_depth1_ends_at_projection():
    rng = np.random.default_rng(SEED)
    mask = rng.random((3, 4)) < 0.5
    mask[0, 0] = True
    task = CompletionTask(rng.standard_normal((3, 4)), mask)
    X0 = rng.standard_normal((2, 3, 4))
    # loss ≤ 1e-20 means |P_Ω(X − M)| ≤ 1.5e-10 entrywise; the unobserved entries must not move
    res = flows.end_to_end(task, 1, X0, loss_tol=1e-20, rtol=1e-12, max_steps=5000)
    assert res.status.tolist() == ["converged", "converged"]
    np.testing.assert_allclose(res.X, task.project_to_solutions(X0), rtol=0, atol=2e-10)
    np.testing.assert_array_equal(res.X[:, ~task.mask], X0[:, ~task.mask])


# --------------------------------------------------------------------------- invariants (§8 item 20)
@pytest.mark.parametrize("depth", [2, 3, math.inf])
def test_loss_monotone_and_sign_det_preserved(depth, integrator):
    X0 = np.array([[0.02, 0.01], [0.015, -0.03]])  # det < 0
    # pure ROS34PW2 (order 3, σ-relative control) needs 5798 steps at N = 2 where Dormand–Prince needs 89
    cap = 20000 if integrator == "rosenbrock" else 5000
    res = flows.end_to_end(
        tasks.diagonal_2x2(), depth, X0, log_every=1, n_log=cap + 1000, rtol=1e-8, max_steps=cap, loss_tol=1e-10
    )
    assert res.status[0] == "converged"
    n = res.trajectory.n_logged[0]
    loss = res.trajectory.loss[0, :n]
    assert n == res.n_steps[0] + 1
    assert np.all(np.diff(loss) <= 1e-14 * loss[:-1])
    assert loss[-1] < 1e-3 * loss[0]
    assert np.linalg.det(res.X[0]) < 0
    assert np.all(res.trajectory.sigma[0, :n, 1] > 0)


@pytest.mark.parametrize("depth", [3, 4])
def test_rank_preserved_for_rank_deficient_start(depth):
    # Exact flow: rank 2 forever (MATH.md §1.5 item 6). Runge–Kutta stages leave the rank-2 set at the
    # level of the local error, so the normal part must be below rtol·σ1 and shrink with rtol.
    rng = np.random.default_rng(SEED)
    mask = rng.random((4, 4)) < 0.6
    task = CompletionTask(rng.standard_normal((4, 4)), mask)
    X0 = 0.1 * rng.standard_normal((4, 2)) @ rng.standard_normal((2, 4))
    worst = []
    for rtol in [1e-6, 1e-8]:
        res = flows.end_to_end(task, depth, X0, t_max=30.0, n_log=3000, rtol=rtol, spectral_control=False)
        sig = res.trajectory.sigma[0, : res.trajectory.n_logged[0]]
        assert sig[-1, 0] > 2 * sig[0, 0]  # it did move
        worst.append(np.max(sig[:, 2] / sig[:, 0]))
        assert worst[-1] <= rtol
    assert worst[1] < 0.1 * worst[0]
    # the spectral error control (default) resolves the small singular values relative to themselves
    res = flows.end_to_end(task, depth, X0, t_max=30.0, n_log=3000, rtol=1e-6)
    sig = res.trajectory.sigma[0, : res.trajectory.n_logged[0]]
    assert np.max(sig[:, 2] / sig[:, 0]) < worst[0]
    assert res.min_sigma_ratio[0] == pytest.approx(np.min(sig[:, -1] / sig[:, 0]))
    # a depth-1 flow from the same point leaves the rank-2 set (negative control)
    res1 = flows.end_to_end(task, 1, X0, t_max=30.0)
    assert res1.trajectory.sigma[0, -1, 2] > 1e-3


# --------------------------------------------------------------------------- factor descent
def test_balancedness_drift_linear_in_lr():
    task = tasks.diagonal_2x2()
    drifts = []
    for lr in [0.02, 0.01, 0.005]:
        res = flows.factor_descent(task, 3, n_runs=3, init_scale=0.3, widths=[3, 3], lr=lr, t_max=4.0, loss_tol=0, rng=SEED)
        assert np.all(res.t == pytest.approx(4.0))
        drifts.append(res.balancedness_drift)
    drifts = np.array(drifts)
    assert np.all(drifts > 0)
    ratios = drifts[1:] / drifts[:-1]
    assert np.all((ratios > 0.35) & (ratios < 0.65)), ratios


def test_balanced_init_is_balanced_and_has_product_X0():
    rng = np.random.default_rng(SEED)
    task = CompletionTask(rng.standard_normal((3, 4)), rng.random((3, 4)) < 0.5)
    X0 = rng.standard_normal((2, 3, 4))
    res = flows.factor_descent(task, 3, init="balanced", X0=X0, widths=[4, 3], lr=1e-3, max_steps=1, loss_tol=0, rng=1)
    np.testing.assert_allclose(res.X0, X0, atol=1e-12)
    W = res.factors0
    for p in range(2):
        G = np.swapaxes(W[p + 1], -1, -2) @ W[p + 1] - W[p] @ np.swapaxes(W[p], -1, -2)
        np.testing.assert_allclose(G, 0.0, atol=1e-12)


def test_end_to_end_matches_balanced_factor_descent_as_lr_shrinks():
    rng = np.random.default_rng(SEED)
    mask = rng.random((3, 3)) < 0.6
    mask[0, 0] = True
    task = CompletionTask(rng.standard_normal((3, 3)), mask)
    X0 = 0.3 * rng.standard_normal((3, 3))
    N, T = 3, 2.0
    refs = {
        tm: flows.end_to_end(task, N, X0, normalized=False, t_max=tm, rtol=1e-11, loss_tol=0).X[0] for tm in (T / 2, T)
    }
    # normalized time τ = N t gives the same point
    Xn = flows.end_to_end(task, N, X0, normalized=True, t_max=N * T, rtol=1e-11, loss_tol=0).X[0]
    np.testing.assert_allclose(Xn, refs[T], rtol=1e-7, atol=1e-9)
    errs = []
    for lr in [4e-3, 2e-3, 1e-3]:
        e = 0.0
        for tm, ref in refs.items():
            fd = flows.factor_descent(task, N, init="balanced", X0=X0, lr=lr, t_max=tm, loss_tol=0, rng=SEED)
            e = max(e, np.linalg.norm(fd.X[0] - ref) / np.linalg.norm(ref))
        errs.append(e)
    assert errs[1] < 0.6 * errs[0] and errs[2] < 0.6 * errs[1], errs
    assert errs[2] < 1e-2


def test_rectangular_end_to_end_matches_balanced_factor_descent():
    # MATH.md §1.3: the end-to-end identity holds for rectangular X and hidden widths >= rank
    rng = np.random.default_rng(SEED)
    task = CompletionTask(rng.standard_normal((3, 5)), rng.random((3, 5)) < 0.6)
    X0 = 0.3 * rng.standard_normal((3, 5))
    ref = flows.end_to_end(task, 3, X0, normalized=False, t_max=2.0, rtol=1e-11, loss_tol=0).X[0]
    errs = []
    for lr in [2e-3, 1e-3]:
        fd = flows.factor_descent(task, 3, init="balanced", X0=X0, widths=[4, 4], lr=lr, t_max=2.0, loss_tol=0, rng=SEED)
        errs.append(np.linalg.norm(fd.X[0] - ref) / np.linalg.norm(ref))
    assert errs[1] < 0.6 * errs[0] and errs[1] < 1e-2, errs


@pytest.mark.parametrize("h", [2, 3, 6])
def test_depth2_cosine_closed_form(h):
    # MATH.md §5.2 / §8 item 19: X(∞) = [[1, c], [c, 1]], c = cos∠(s1, s2), s_i = W2[i,:] + W1[:,i]
    res = flows.factor_descent(
        tasks.diagonal_2x2(), 2, n_runs=4, init_scale=1e-4, widths=[h], lr=0.05, loss_tol=1e-14, rng=SEED + h
    )
    assert np.all(res.status == "converged")
    W1, W2 = res.factors0
    s1 = W2[:, 0, :] + W1[:, :, 0]
    s2 = W2[:, 1, :] + W1[:, :, 1]
    c = np.sum(s1 * s2, axis=1) / (np.linalg.norm(s1, axis=1) * np.linalg.norm(s2, axis=1))
    np.testing.assert_allclose(res.X[:, 0, 1], c, atol=1e-3)
    np.testing.assert_allclose(res.X[:, 1, 0], c, atol=1e-3)


def test_orthogonal_init_is_balanced_scaled_orthogonal():
    task = CompletionTask(np.zeros((3, 3)), np.ones((3, 3), dtype=bool))
    res = flows.factor_descent(task, 3, n_runs=2, init="orthogonal", init_scale=0.1, lr=1e-3, max_steps=1, loss_tol=0, rng=SEED)
    for X in res.X0:
        np.testing.assert_allclose(X @ X.T, 0.01 * np.eye(3), atol=1e-14)
    W = res.factors0
    for p in range(2):
        G = np.swapaxes(W[p + 1], -1, -2) @ W[p + 1] - W[p] @ np.swapaxes(W[p], -1, -2)
        np.testing.assert_allclose(G, 0.0, atol=1e-14)


def test_gaussian_init_scale():
    task = CompletionTask(np.zeros((30, 30)), np.ones((30, 30), dtype=bool))
    res = flows.factor_descent(task, 3, n_runs=4, init_scale=1e-3, lr=1e-3, max_steps=1, loss_tol=0, rng=SEED)
    norms = np.linalg.norm(res.X0, axis=(1, 2))
    assert np.all(np.abs(norms / (1e-3 * math.sqrt(30)) - 1) < 0.5)


# --------------------------------------------------------------------------- statuses and shapes
def test_statuses_and_last_finite_state():
    task = tasks.diagonal_2x2()
    X0 = np.stack([0.01 * np.eye(2), 0.5 * np.eye(2), 1e200 * np.eye(2)])
    res = flows.end_to_end(task, 2, X0, normalized=False, t_max=1.0, max_steps=1000)
    assert res.status.tolist() == ["max_time", "max_time", "nonfinite"]
    assert np.all(np.isfinite(res.X))
    res = flows.end_to_end(task, 3, 0.01 * np.eye(2), max_steps=3)
    assert res.status.tolist() == ["max_steps"] and res.n_steps[0] == 3
    fd = flows.factor_descent(task, 2, n_runs=2, init_scale=1.0, widths=[2], lr=5.0, max_steps=200, rng=SEED)
    assert np.all(fd.status == "nonfinite")
    assert np.all(np.isfinite(fd.X)) and np.all(np.isfinite(fd.loss))
    fd = flows.factor_descent(task, 2, init_scale=1e-3, lr=0.01, max_steps=10, rng=SEED)
    assert fd.status.tolist() == ["max_steps"] and fd.n_steps[0] == 10


def test_shapes_do_not_depend_on_values():
    task = tasks.diagonal_2x2()
    a = flows.end_to_end(task, 3, 0.01 * np.eye(2), n_log=15)
    b = flows.end_to_end(task, 3, 0.9 * np.eye(2), n_log=15)
    assert a.n_steps[0] > 3 * b.n_steps[0]
    for r in (a, b):
        assert r.X.shape == (1, 2, 2) and r.loss.shape == (1,) and r.status.shape == (1,)
        assert r.trajectory.times.shape == (1, 15) and r.trajectory.sigma.shape == (1, 15, 2)
        assert r.trajectory.crossing_times.shape == (1, 2)
        tr = r.trajectory
        n = tr.n_logged[0]
        # records span the run: from t = 0 to the final time, increasing; padding repeats the last one
        assert tr.times[0, 0] == 0 and tr.times[0, n - 1] == r.t[0] and np.all(np.diff(tr.times[0, :n]) > 0)
        assert tr.loss[0, n - 1] == pytest.approx(r.loss[0]) and np.all(tr.times[0, n:] == r.t[0])
    assert a.trajectory.n_logged[0] > 7  # thinning keeps at least half of the slots
    f = flows.factor_descent(task, 2, init_scale=1e-2, lr=0.1, max_steps=100, n_log=12, rng=0)
    assert f.X.shape == (1, 2, 2) and f.trajectory.times.shape == (1, 12) and f.balancedness_drift.shape == (1,)
    n = f.trajectory.n_logged[0]
    assert f.trajectory.times[0, n - 1] == pytest.approx(f.t[0]) and np.all(np.diff(f.trajectory.times[0, :n]) > 0)


def test_crossing_times_match_closed_form():
    # N = 2, μ = 1: σ(t) = 1/(1 + 99 e^{−2t}) crosses 1/2 at t = log(99)/2
    res = flows.end_to_end(tasks.diagonal_2x2(), 2, np.diag([0.01, 0.01]), normalized=False, rtol=1e-10, loss_tol=1e-12)
    np.testing.assert_allclose(res.trajectory.crossing_times[0], math.log(99) / 2, rtol=1e-3)


# --------------------------------------------------------------------------- endpoints
def test_endpoints_reproducible_across_batching_and_workers():
    task = tasks.diagonal_2x2()
    kw = dict(rng=SEED, progress=False, t_max=1e4)
    a = flows.endpoints(task, 3, 7, 1e-2, batch_size=1, workers=1, **kw)
    b = flows.endpoints(task, 3, 7, 1e-2, batch_size=7, workers=1, **kw)
    c = flows.endpoints(task, 3, 7, 1e-2, batch_size=3, workers=2, **kw)
    with ThreadPoolExecutor(2) as ex:  # any concurrent.futures.Executor
        d = flows.endpoints(task, 3, 7, 1e-2, batch_size=2, executor=ex, **kw)
    for other in (b, c, d):
        np.testing.assert_array_equal(a.X, other.X)
        np.testing.assert_array_equal(a.X0, other.X0)
        np.testing.assert_array_equal(a.seeds, other.seeds)
        np.testing.assert_array_equal(a.status, other.status)
    assert a.X.shape == (7, 2, 2) and a.seeds.dtype == np.uint64 and a.status.shape == (7,)
    assert set(a.status) <= set(flows.STATUSES)
    assert a.crossing_times.shape == (7, 2) and a.threshold == 0.5
    single = flows.end_to_end(task, 3, a.X0[:1], t_max=1e4)
    np.testing.assert_array_equal(single.trajectory.crossing_times[0], a.crossing_times[0])
    # the factor method starts from the same X0 for the same seeds
    f = flows.endpoints(task, 3, 7, 1e-2, method="factor", batch_size=4, workers=1, rng=SEED, progress=False, lr=0.05)
    np.testing.assert_allclose(f.X0, a.X0, rtol=1e-12)
    fd = flows.factor_descent(task, 3, n_runs=7, init_scale=1e-2, lr=0.05, rng=SEED)
    np.testing.assert_array_equal(fd.X, f.X)
    # balanced factors of the same Gaussian product: same X0 again
    fb = flows.endpoints(task, 3, 7, 1e-2, method="factor", init="balanced", workers=1, rng=SEED, progress=False, lr=0.05)
    np.testing.assert_allclose(fb.X0, a.X0, rtol=1e-10, atol=1e-16)
    assert np.all(fb.status == "converged")


def test_endpoints_checkpoint_resume(tmp_path):
    task = tasks.diagonal_2x2()
    kw = dict(rng=SEED, progress=False, workers=1, batch_size=2, t_max=1e4)
    full = flows.endpoints(task, 4, 6, 1e-2, **kw)
    ck = tmp_path / "ck"
    half = flows.endpoints(task, 4, 3, 1e-2, checkpoint=ck, **kw)
    first = ck / "batch-00000.npz"
    stamp = os.stat(first).st_mtime_ns
    resumed = flows.endpoints(task, 4, 6, 1e-2, checkpoint=ck, **kw)
    assert os.stat(first).st_mtime_ns == stamp  # batch 0 reused, not recomputed
    np.testing.assert_array_equal(half.X, full.X[:3])
    np.testing.assert_array_equal(resumed.X, full.X)
    np.testing.assert_array_equal(resumed.status, full.status)
    with pytest.raises(errors.InvalidArgumentError, match="different run"):
        flows.endpoints(task, 3, 6, 1e-2, checkpoint=ck, **kw)


def test_endpoints_checkpoint_of_other_integrator_code_is_refused(tmp_path, monkeypatch):
    """Batches written by another version of the integrator are not mixed with this one's on resume."""
    ep_mod = importlib.import_module("dlnvolume.flows.endpoints")  # the module (the package exports the function)

    task = tasks.diagonal_2x2()
    kw = dict(rng=SEED, progress=False, workers=1, batch_size=2, t_max=1e4)
    ck = tmp_path / "ck"
    flows.endpoints(task, 4, 2, 1e-2, checkpoint=ck, **kw)
    assert flows.endpoints(task, 4, 4, 1e-2, checkpoint=ck, **kw).n_runs == 4  # same code: resumes
    digest = ep_mod.integrator_digest()
    assert len(digest) == 16
    monkeypatch.setattr(ep_mod, "integrator_digest", lambda: "0" * 16)
    with pytest.raises(errors.InvalidArgumentError, match="different run"):
        flows.endpoints(task, 4, 6, 1e-2, checkpoint=ck, **kw)
    factor_ck = tmp_path / "factor"  # factor descent does not use the compiled integrator: not part of its key
    flows.endpoints(task, 2, 2, 1e-1, method="factor", checkpoint=factor_ck, rng=SEED, progress=False, workers=1)
    monkeypatch.setattr(ep_mod, "integrator_digest", lambda: digest)
    flows.endpoints(task, 2, 2, 1e-1, method="factor", checkpoint=factor_ck, rng=SEED, progress=False, workers=1)


def test_endpoints_keep_failed_runs_and_save_load(tmp_path):
    task = tasks.diagonal_2x2()
    ep = flows.endpoints(task, math.inf, 5, 1e-3, rng=SEED, progress=False, workers=1, max_steps=5)
    assert ep.X.shape == (5, 2, 2) and np.all(ep.status == "max_steps")
    ep.save(tmp_path / "ep.npz")
    back = flows.Endpoints.load(tmp_path / "ep.npz")
    assert back.depth == math.inf and back.method == "end_to_end" and back.task_name == "diagonal_2x2"
    for name in ("X", "X0", "seeds", "status", "loss", "t", "n_steps", "crossing_times", "min_sigma_ratio"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ep, name))
    assert back.seeds.dtype == np.uint64


# --------------------------------------------------------------------------- input validation
def test_error_messages():
    task = tasks.diagonal_2x2()
    X0 = 0.01 * np.eye(2)
    with pytest.raises(errors.InvalidArgumentError, match="(?s)task=.*has type ndarray; expected a dlnvolume.CompletionTask"):
        flows.end_to_end(np.eye(2), 2, X0)
    with pytest.raises(errors.InvalidDepthError, match="depth=0 is below 1"):
        flows.end_to_end(task, 0, X0)
    with pytest.raises(errors.InvalidDepthError, match="normalized=False"):
        flows.end_to_end(task, math.inf, X0, normalized=False)
    with pytest.raises(errors.ShapeError, match=r"X0 has shape \(3, 3\); expected \(m, n\) = \(2, 2\)"):
        flows.end_to_end(task, 2, np.eye(3))
    with pytest.raises(errors.NonFiniteError, match="X0 has NaN"):
        flows.end_to_end(task, 2, np.full((2, 2), np.nan))
    with pytest.raises(errors.InvalidArgumentError, match="rtol=0.0 is out of range"):
        flows.end_to_end(task, 2, X0, rtol=0.0)
    with pytest.raises(errors.InvalidArgumentError, match="init='uniform'; expected one of 'gaussian'"):
        flows.factor_descent(task, 2, init="uniform")
    with pytest.raises(errors.InvalidArgumentError, match="init_scale=-1.0 is out of range"):
        flows.factor_descent(task, 2, init_scale=-1.0)
    with pytest.raises(errors.InvalidArgumentError, match="lr=0.0 is out of range"):
        flows.factor_descent(task, 2, lr=0.0)
    with pytest.raises(errors.InvalidArgumentError, match="n_runs=0 is out of range"):
        flows.factor_descent(task, 2, n_runs=0)
    with pytest.raises(errors.InvalidArgumentError, match="init='balanced' needs X0"):
        flows.factor_descent(task, 2, init="balanced")
    with pytest.raises(errors.InvalidArgumentError, match="needs every hidden width >= min"):
        flows.factor_descent(task, 2, init="balanced", X0=X0, widths=[1])
    with pytest.raises(errors.InvalidArgumentError, match="n_runs=3 but X0 holds 2 matrices"):
        flows.factor_descent(task, 2, init="balanced", X0=np.stack([X0, X0]), n_runs=3)
    with pytest.raises(errors.InvalidArgumentError, match="n_log=2 is out of range"):
        flows.end_to_end(task, 2, X0, n_log=2)
    with pytest.raises(errors.InvalidArgumentError, match="X0 is only used with init='balanced'"):
        flows.factor_descent(task, 2, X0=X0)
    with pytest.raises(errors.InvalidArgumentError, match="depth 3 needs 2 hidden widths"):
        flows.factor_descent(task, 3, widths=[2])
    with pytest.raises(errors.InvalidDepthError, match="depth=inf is not possible for factor_descent"):
        flows.factor_descent(task, math.inf)
    with pytest.raises(errors.ShapeError, match=r"initial_factors\[1\] \(W_2\) has shape"):
        flows.factor_descent(task, 2, initial_factors=[np.ones((2, 2)), np.ones((3, 2))])
    with pytest.raises(errors.InvalidArgumentError, match="method='sgd'; expected one of"):
        flows.endpoints(task, 2, 3, 1e-3, method="sgd")
    with pytest.raises(errors.InvalidArgumentError, match="n_runs=0 is out of range"):
        flows.endpoints(task, 2, 0, 1e-3)
    with pytest.raises(errors.InvalidArgumentError, match="init_scale=0.0 is out of range"):
        flows.endpoints(task, 2, 3, 0.0)
    with pytest.raises(errors.InvalidDepthError, match="depth=inf is not possible with method='factor'"):
        flows.endpoints(task, math.inf, 3, 1e-3, method="factor")
    with pytest.raises(errors.InvalidArgumentError, match="'X0' cannot be passed"):
        flows.endpoints(task, 2, 3, 1e-3, X0=X0)

