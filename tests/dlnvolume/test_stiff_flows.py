"""Tests of the compiled end-to-end integrator's stiff methods (:mod:`dlnvolume.flows.compiled`): ROS34PW2
(``integrator="rosenbrock"``), BDF (``"bdf"``) and the per-run switchings (``"dopri-bdf-frozen"``, the default, and ``"dopri-bdf"``).

References are independent of the code under test: the exact ``t(σ)`` integral of the scalar ODE
(MATH.md §8 items 17–18) by ``scipy.integrate.quad``, Dormand–Prince at a tight tolerance, and a
fixed-step order measurement against the same quadrature.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from dlnvolume import CompletionTask, errors, flows, tasks
from dlnvolume.flows import compiled

SEED = 20261130
STIFF = ["rosenbrock", "bdf", "dopri-bdf", "dopri-bdf-frozen"]


def _diag_task(mu):
    mu = np.asarray(mu, dtype=float)
    return CompletionTask(np.diag(mu), np.eye(mu.size, dtype=bool), name="diag")


def _t_of_sigma(s0: float, s: float, mu: float, N: float) -> float:
    """Time to go from ``s0`` to ``s`` under ``σ̇ = σ^{2−2/N}(μ − σ)`` (normalized; MATH.md §8 item 17)."""
    p = 2.0 if math.isinf(N) else 2.0 - 2.0 / N
    val, _ = quad(lambda x: 1.0 / (x ** p * (mu - x)), s0, s, epsabs=0, epsrel=1e-13, limit=200)
    return val


# --------------------------------------------------------------------------- closed forms (§8 items 17, 18)
@pytest.mark.parametrize("integrator", STIFF)
@pytest.mark.parametrize("N", [2, 3, 10, math.inf])
def test_diagonal_task_matches_scalar_integral(integrator, N):
    """Diagonal observations and diagonal X0: each diagonal entry follows the scalar ODE with its own μ
    (item 18); the time at which the integrator reports σ_i must equal the exact ∫ dσ/σ̇ (item 17).
    ``T`` is the exact time for the first entry to reach 0.9μ (through the plateau and the transition)."""
    mu, s0 = np.array([2.0, 0.7]), np.array([0.05, 0.02])
    T = _t_of_sigma(s0[0], 0.9 * mu[0], mu[0], N)
    res = flows.end_to_end(_diag_task(mu), N, np.diag(s0), t_max=T, loss_tol=0, rtol=1e-8, integrator=integrator)
    assert res.status[0] == "max_time" and res.integrator == integrator
    sig = np.diag(res.X[0])
    np.testing.assert_allclose(res.X[0] - np.diag(sig), 0.0, atol=1e-14)  # stays diagonal
    assert sig[0] == pytest.approx(0.9 * mu[0], rel=1e-5)
    assert 0 < sig[1] < mu[1]
    assert _t_of_sigma(s0[1], sig[1], mu[1], N) == pytest.approx(T, rel=1e-5)


@pytest.mark.parametrize("integrator", STIFF)
def test_unnormalized_depth2_logistic(integrator):
    """N = 2 unnormalized: σ = μ/(1 + (μ/σ0 − 1)e^{−2μt}) (MATH.md §8 item 17, reference values)."""
    res = flows.end_to_end(tasks.diagonal_2x2(), 2, 0.01 * np.eye(2), normalized=False, t_max=3.0, rtol=1e-9,
                           loss_tol=0, integrator=integrator)
    np.testing.assert_allclose(np.diag(res.X[0]), 0.80295715, rtol=2e-7)


# --------------------------------------------------------------------------- against Dormand–Prince
@pytest.mark.parametrize("integrator", STIFF)
@pytest.mark.parametrize("N,shape", [(2, (3, 3)), (3, (3, 4)), (10, (4, 3)), (math.inf, (3, 3))])
def test_agrees_with_dopri5_at_tight_tolerance(integrator, N, shape):
    rng = np.random.default_rng(SEED)
    m, n = shape
    task = tasks.random_low_rank(m, n, 1, m * n // 2 + 1, rng=rng)
    X0 = 0.3 * rng.standard_normal((2, m, n))
    kw = dict(t_max=4.0, loss_tol=0)
    ref = flows.end_to_end(task, N, X0, rtol=1e-11, integrator="dopri5", **kw)
    res = flows.end_to_end(task, N, X0, rtol=1e-8, integrator=integrator, **kw)
    scale = np.linalg.norm(ref.X, axis=(-2, -1))[:, None, None]
    np.testing.assert_allclose(res.X / scale, ref.X / scale, atol=1e-6)


def test_error_decreases_with_rtol():
    """Tolerance refinement: the error against the exact integral shrinks as rtol does."""
    mu, s0 = 1.0, 0.05
    T = _t_of_sigma(s0, 0.9, mu, 3)
    errs = []
    for rtol in (1e-4, 1e-6, 1e-8):
        res = flows.end_to_end(_diag_task([mu]), 3, [[s0]], t_max=T, loss_tol=0, rtol=rtol, integrator="rosenbrock")
        errs.append(abs(_t_of_sigma(s0, res.X[0, 0, 0], mu, 3) - T))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-4 * T


@pytest.mark.parametrize("integrator", ["dopri-bdf", "dopri-bdf-frozen"])
@pytest.mark.parametrize("N", [3, math.inf])
def test_stiff_component_is_detected_and_the_slow_one_refines(integrator, N):
    """Diagonal task ``μ = (1, 50)`` from ``σ = (0.05, 0.05)``: the fast component sits at its fixed point
    (Jacobian eigenvalue ``−50^{2−2/N}``) while the slow one crosses its plateau, so Dormand–Prince is
    stability-limited the whole time. The switching steppers must detect it (fewer than half the
    steps of "dopri5" at rtol 1e-6; with strikes counted in a row they never switched: 17,898 steps at
    N = ∞, the same as "dopri5") and the slow component's time error against the exact integral must
    shrink with every 100× refinement of rtol, by more than 1e4 over 1e-4 → 1e-10, below 1e-8·T at 1e-10."""
    mu, s0 = 1.0, 0.05
    T = _t_of_sigma(s0, 0.9, mu, N)
    task = _diag_task([mu, 50.0])
    X0 = np.diag([s0, s0])
    kw = dict(t_max=T, loss_tol=0, max_steps=10**5)
    explicit = flows.end_to_end(task, N, X0, rtol=1e-6, integrator="dopri5", **kw)
    errs = []
    for rtol in (1e-4, 1e-6, 1e-8, 1e-10):
        res = flows.end_to_end(task, N, X0, rtol=rtol, integrator=integrator, **kw)
        assert res.status[0] == "max_time"
        if rtol == 1e-6:
            assert res.n_steps[0] + res.n_rejected[0] < 0.5 * (explicit.n_steps[0] + explicit.n_rejected[0])
        assert res.X[0, 1, 1] == pytest.approx(50.0, rel=1e-6) and res.X[0, 0, 1] == res.X[0, 1, 0] == 0.0
        errs.append(abs(_t_of_sigma(s0, res.X[0, 0, 0], mu, N) - T))
    assert errs[0] > errs[1] > errs[2] > errs[3], errs
    assert errs[0] > 1e4 * errs[3] and errs[3] < 1e-8 * T, errs


def test_coefficients_are_a_stiffly_accurate_order_three_tableau():
    """ROS34PW2 as tabulated: b is the last row of A + Γ, Σb = Σb̂ = 1, order-2 condition bᵀ(A+Γ)1 = 1/2, and
    the transformed coefficients the compiled steps use reproduce ``m = bᵀΓ⁻¹``, ``α = AΓ⁻¹``."""
    A, G, b, bh = compiled._ROS_A, compiled._ROS_G, compiled._ROS_B, compiled._ROS_BH
    np.testing.assert_allclose(b, (A + G)[-1], atol=1e-15)
    assert b.sum() == pytest.approx(1.0, abs=1e-14) and bh.sum() == pytest.approx(1.0, abs=1e-14)
    assert b @ (A + G).sum(axis=1) == pytest.approx(0.5, abs=1e-14)
    alpha = A.sum(axis=1)
    assert b @ alpha ** 2 == pytest.approx(1 / 3, abs=1e-14)  # order-3 condition Σ b_i α_i² = 1/3
    np.testing.assert_allclose(compiled.ROS_M @ G, b, atol=1e-14)
    np.testing.assert_allclose(compiled.ROS_ALPHA @ G, A, atol=1e-14)
    # Dormand–Prince: rows of A sum to the nodes c, b (last row) and b̂ = b − e sum to 1
    c = np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1])
    np.testing.assert_allclose(compiled.DP_A.sum(axis=1), c, atol=1e-14)
    assert compiled.DP_E.sum() == pytest.approx(0.0, abs=1e-15)


# --------------------------------------------------------------------------- invariants, ill-conditioned X0
@pytest.mark.parametrize("integrator", ["dopri-bdf-frozen", "dopri-bdf", "dopri5", "bdf",
                                        pytest.param("rosenbrock", marks=pytest.mark.slow)])
@pytest.mark.parametrize("N", [2, 3, 10, math.inf])
@pytest.mark.parametrize("kind", ["aligned", "generic"])
def test_invariants_on_ill_conditioned_start(integrator, N, kind):
    """σ₂/σ₁ = 1e-10 at the start: rank and sign det kept (MATH.md §1.5 item 6) as long as σ_min stays
    resolvable in float64 (``min_sigma_ratio > 256·eps``; the generic start at N = 3 dips to 4e-14, where
    float64 cannot know the sign: documented in FlowResult), loss non-increasing within the tolerance,
    no NaN."""
    rng = np.random.default_rng(SEED)
    if kind == "generic":
        Q, _ = np.linalg.qr(rng.standard_normal((2, 2)))
        R, _ = np.linalg.qr(rng.standard_normal((2, 2)))
    else:
        Q = R = np.eye(2)
    X0 = (Q @ np.diag([1e-2, 1e-12]) @ R.T)[None]
    task = tasks.diagonal_2x2()
    # σ₂ = 1e-12 escapes only after t ~ 1/σ₂ at N = ∞: integrate a bounded time, check the invariants
    res = flows.end_to_end(task, N, X0, t_max=1e4, log_every=1, n_log=2000, max_steps=2000, integrator=integrator)
    assert res.status[0] in ("converged", "max_time", "max_steps")
    assert np.all(np.isfinite(res.X)) and not np.any(np.isnan(res.trajectory.loss))
    n = res.trajectory.n_logged[0]
    sig = res.trajectory.sigma[0, :n]
    assert res.min_sigma_ratio[0] == pytest.approx(np.min(sig[:, -1] / sig[:, 0]))
    if kind == "aligned":
        assert res.min_sigma_ratio[0] > 256 * np.finfo(float).eps
    if res.min_sigma_ratio[0] > 256 * np.finfo(float).eps:
        assert np.sign(np.linalg.det(res.X[0])) == np.sign(np.linalg.det(X0[0]))
        assert sig[-1, -1] > 0
    L = res.trajectory.loss[0, :n]
    assert np.all(np.diff(L) <= 1e-6 * L[:-1] + 1e-14)


# --------------------------------------------------------------------------- options and records
def test_integrator_choice_is_recorded_and_validated():
    task = tasks.diagonal_2x2()
    # "auto" (and its former name "switching") is the compiled per-run switching on every task and depth
    for integ, name in (("auto", "svd-2x2"), ("switching", "svd-2x2"), ("bdf", "bdf"), ("dopri5", "dopri5")):
        assert flows.end_to_end(task, 3, 0.1 * np.eye(2), max_steps=3, integrator=integ).integrator == name
    # every other task and depth: the switching with frozen-metric Jacobians
    for (m, n) in ((3, 3), (6, 6), (8, 8), (9, 8), (1, 5)):
        t = tasks.random_low_rank(m, n, 1, min(m * n, 5), rng=0)
        assert flows.end_to_end(t, math.inf, 0.1 * np.ones((m, n)), max_steps=2).integrator == "dopri-bdf-frozen"
        assert flows.end_to_end(t, 1, 0.1 * np.ones((m, n)), max_steps=2).integrator == "dopri-bdf-frozen"
    # on 2×2 tasks at N >= 2: singular-value coordinates (test_svd2.py)
    assert flows.end_to_end(task, 1, 0.1 * np.eye(2), max_steps=3).integrator == "dopri-bdf-frozen"
    big = tasks.random_low_rank(41, 40, 1, 5, rng=0)
    for integ in ("bdf", "dopri-bdf"):
        with pytest.raises(errors.InvalidArgumentError, match=rf"integrator='{integ}' on a 41x40 task: .* m·n <= 1600"):
            flows.end_to_end(big, 3, 0.1 * np.ones((41, 40)), integrator=integ)
    for integ in ("auto", "rosenbrock", "dopri-ros"):  # the frozen-metric W-matrix has no dense Jacobian
        res = flows.end_to_end(big, 3, 0.1 * np.ones((41, 40)), integrator=integ, max_steps=2)
        assert res.integrator == ("dopri-bdf-frozen" if integ == "auto" else integ) and np.all(np.isfinite(res.X))
    with pytest.raises(errors.InvalidArgumentError, match=r"integrator='rk4'; expected one of 'auto', "):
        flows.end_to_end(task, 3, 0.1 * np.eye(2), integrator="rk4")
    with pytest.raises(errors.InvalidArgumentError, match=r"integrator=3; expected one of"):
        flows.end_to_end(task, 3, 0.1 * np.eye(2), integrator=3)


@pytest.mark.parametrize("law", ["gaussian_factors", "gaussian_matrix", "orthogonal"])
def test_init_laws_record_realized_scale(law, tmp_path):
    task = tasks.diagonal_2x2()
    ep = flows.endpoints(task, 4, 6, 1e-2, init_law=law, rng=SEED, workers=1, progress=False, max_steps=5)
    norms = np.linalg.norm(ep.X0, axis=(-2, -1))
    s = np.linalg.svd(ep.X0, compute_uv=False)
    np.testing.assert_allclose(ep.x0_norm, norms, rtol=1e-12)
    np.testing.assert_allclose(ep.x0_sigma_ratio, s[:, -1] / s[:, 0], rtol=1e-12)
    if law == "gaussian_matrix":
        np.testing.assert_allclose(norms, 1e-2, rtol=1e-12)
    if law == "orthogonal":
        np.testing.assert_allclose(s, 1e-2, rtol=1e-12)
    assert ep.init_law == law
    ep.save(tmp_path / "ep.npz")
    back = flows.Endpoints.load(tmp_path / "ep.npz")
    np.testing.assert_array_equal(back.x0_norm, ep.x0_norm)
    assert back.init_law == law and back.integrator == ep.integrator


def test_default_init_law_shrinks_with_depth():
    """The documented caveat of the default law: products of 20 Gaussian 2×2 factors are far below s√n."""
    task = tasks.diagonal_2x2()
    ep = flows.endpoints(task, 20, 64, 1e-3, rng=SEED, workers=1, progress=False, max_steps=1)
    assert np.median(ep.x0_norm) < 1e-4 < 1e-3 * math.sqrt(2) / 10


def test_bad_init_law():
    with pytest.raises(errors.InvalidArgumentError, match=r"init_law='uniform'; expected one of 'gaussian_factors'"):
        flows.endpoints(tasks.diagonal_2x2(), 2, 2, 1e-3, init_law="uniform", workers=1, progress=False)


@pytest.mark.parametrize("integrator", ["dopri5"] + STIFF)
@pytest.mark.parametrize("shape,rank,n_obs", [((3, 3), 2, 6), ((4, 5), 2, 12)])
def test_a_run_does_not_depend_on_its_batch(integrator, shape, rank, n_obs):
    """Bit for bit: each run alone, and a sub-batch, give what the whole batch gives (the same seed gives
    the same numbers whatever the workers and batch sizes). A matrix product over the stacked runs
    (Dormand–Prince's stage sums as one BLAS call) broke this on 3×3 tasks: BLAS rounds a column
    differently depending on the length of the array."""
    rng = np.random.default_rng(SEED)
    task = tasks.random_low_rank(*shape, rank, n_obs, rng=rng)
    X0 = 1e-2 * rng.standard_normal((5,) + shape)
    kw = dict(t_max=40.0, integrator=integrator)
    whole = flows.end_to_end(task, 5, X0, **kw)
    for i in range(5):
        one = flows.end_to_end(task, 5, X0[i], **kw)
        assert one.n_steps[0] == whole.n_steps[i]
        np.testing.assert_array_equal(one.X[0], whole.X[i])
    part = flows.end_to_end(task, 5, X0[1:4], **kw)
    np.testing.assert_array_equal(part.X, whole.X[1:4])


# --------------------------------------------------------------------------- the frozen-metric W-matrix (m·n > 64)
@pytest.mark.parametrize("integrator", ["auto", "rosenbrock", "dopri-ros"])
@pytest.mark.parametrize("N,T", [(3, 60.0), (math.inf, 1000.0)])
def test_frozen_metric_rosenbrock_against_dopri5(integrator, N, T):
    """Above ``m·n = 36`` ROS34PW2 runs with ``J = −Ā_X∘P_Ω`` and the reduced ``|Ω|×|Ω|`` solve; "auto"
    ("dopri-bdf-frozen") uses the same ``J`` as BDF's Newton matrix, "dopri-ros" switches between
    Dormand–Prince and that ROS34PW2. On a 9×8 rank-2 task with 50 observed entries, through
    the plateaus of a small initialization (at N = ∞ up to T = 1000, where the loss is 0.3–2.7), rtol 1e-7
    must agree with Dormand–Prince at 1e-11 to ``100·rtol`` of ``max|X|``; negative control: the endpoint of
    another depth is far (> 1e-2)."""
    rng = np.random.default_rng([SEED, 98])
    task = tasks.random_low_rank(9, 8, 2, 50, rng=4)
    X0 = 1e-3 * rng.standard_normal((3, 9, 8)) / 3
    kw = dict(t_max=T, loss_tol=0)
    res = flows.end_to_end(task, N, X0, rtol=1e-7, integrator=integrator, **kw)
    assert res.integrator == {"auto": "dopri-bdf-frozen"}.get(integrator, integrator)
    ref = flows.end_to_end(task, N, X0, rtol=1e-11, integrator="dopri5", max_steps=10**6, **kw)
    assert np.all(res.status == "max_time") and np.all(ref.status == "max_time")
    scale = np.abs(ref.X).max(axis=(1, 2))
    err = np.abs(res.X - ref.X).max(axis=(1, 2)) / scale
    assert np.all(err <= 1e-5), err
    other = flows.end_to_end(task, 2 if N == 3 else 10, X0, rtol=1e-7, **kw)
    assert np.all(np.abs(other.X - ref.X).max(axis=(1, 2)) / scale > 1e-2)


# --------------------------------------------------------------------------- rank-deficient plateau at N = 20
#: a state of a flow of ``tasks.random_low_rank(5, 5, 2, 12, rng=1)`` at N = 20 from the default Gaussian-factor
#: initialization, at t ≈ 1711: rank one to working accuracy (σ = 82.8, 9.6e-5, 2.4e-7, 2.3e-8, 4.8e-9) while σ_1
#: runs off to infinity along the rank-1 plateau (docs/flows.md §4.2)
PLATEAU = [[1.0764020220038777, 81.88498307543142, 0.7627892012691723, 9.091688118019944, -1.1006791209437046],
           [0.10551570345739832, 8.02785777543737, 0.07478597934689303, 0.8913651403515397, -0.10795699051523887],
           [-0.02280188576287117, -1.7337057700200347, -0.016146801410123174, -0.19246354211301062,
            0.023259194764088862],
           [0.008637726692277014, 0.6564830778271803, 0.006113059135806624, 0.07286890783849115,
            -0.008793453632792212],
           [-0.013955122929567578, -1.061049391998167, -0.009881928743176302, -0.11778968015729545,
            0.01423418007493157]]
#: σ_1..σ_3 at t = 100 from PLATEAU: scipy's Radau at rtol 1e-9, atol 1e-16 (457,655 steps, 400 s) with the
#: compiled field of ``flows.scipy_ivp`` (itself tested against the dense reference of test_dense_reference.py)
PLATEAU_RADAU_T100 = [3.00755022e+02, 9.58595516e-05, 2.35206911e-07]


@pytest.mark.parametrize("integrator,good", [("auto", True), ("dopri-ros", False)])
def test_rank_deficient_plateau_against_radau(integrator, good):
    """Below ``σ_min = 1e-10·σ_1`` the default ran ROS34PW2 with the frozen-metric ``J``; BDF with the same ``J``
    (its Newton iteration converges there) takes 1800 steps instead of 20,965 from PLATEAU to t = 100 and keeps
    the small singular values: σ_1, σ_2 within 1e-5 of Radau and σ_3 within 1e-3 (measured 0, 0, 8.6e-5).
    Negative control: ROS34PW2 ("dopri-ros") fails the same bounds (measured 1.8e-5, 5.6e-5, 5.9e-3)."""
    task = tasks.random_low_rank(5, 5, 2, 12, rng=1)
    res = flows.end_to_end(task, 20, np.array([PLATEAU]), rtol=1e-6, t_max=100.0, loss_tol=0.0,
                           integrator=integrator, max_steps=10**5)
    assert res.status[0] == "max_time"
    rel = np.abs(np.linalg.svd(res.X[0], compute_uv=False)[:3] / PLATEAU_RADAU_T100 - 1.0)
    assert bool(np.all(rel <= [1e-5, 1e-5, 1e-3])) == good, rel
    if good:
        assert res.n_steps[0] <= 4000, res.n_steps
