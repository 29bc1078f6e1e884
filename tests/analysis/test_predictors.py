"""analysis.predictors against answers computed here, independently of the module.

* 2×2 diagonal task (docs/math.md §5.2): closed forms — corners ``a = b = ±1`` on the hyperbola, the
  minimum-nuclear-norm segment ``a = b ∈ [−1, 1]`` and the distance to it by hand.
* The two-arc 3×3 rank-2 task (tests/samplers/exact_solution_sets.py, parametrization copied below): optima
  along each arc ``a ↦ X(a)`` by a dense grid and ``scipy.optimize.minimize_scalar``.
* Nuclear-norm minimization: the KKT conditions checked with a certificate found here (least squares on
  the affine set ``{Λ on Ω : P_T Λ = UVᵀ}``, then Nelder–Mead on ``‖P_T⊥Λ‖_op``), and weak duality for the value.
* Greedy low-rank learning: an independent two-stage integration of the factor flow (DOP853, rtol 1e-12).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, optimize

import dlnvolume as dv
from analysis import predictors
from analysis.predictors import DEPTH_INDEPENDENT, PREDICTORS, Prediction, predict
from dlnvolume.errors import InvalidArgumentError, InvalidDepthError, InvalidRankError, NonFiniteError, ShapeError

SEED = 20261201
CORNERS = np.array([[[1.0, 1.0], [1.0, 1.0]], [[1.0, -1.0], [-1.0, 1.0]]])


def _same_set(points: np.ndarray, expected: np.ndarray, tol: float) -> bool:
    if len(points) != len(expected):
        return False
    D = np.abs(points[:, None] - expected[None]).max(axis=(-2, -1))
    return bool(np.all(D.min(axis=1) <= tol) and np.all(D.min(axis=0) <= tol))


# ------------------------------------------------------------------------------------------- 2×2 diagonal
@pytest.fixture(scope="module")
def diag_predictions() -> dict[float, dict[str, Prediction]]:
    task = dv.tasks.diagonal_2x2()
    out = {2: predict(task, 2, 1, 3.0, n_starts=8, rng=SEED)}
    for N in (5, math.inf):
        out[N] = predict(task, N, 1, 3.0, names=["volume_max"], n_starts=8, rng=SEED)
    return out


@pytest.mark.parametrize("depth", [2, 5, math.inf])
def test_diagonal_volume_max_is_the_two_corners(diag_predictions, depth):
    p = diag_predictions[depth]["volume_max"]
    assert p.applies and p.rank == 1 and p.depth == depth
    assert _same_set(p.points, CORNERS, 1e-6)
    assert not p.on_boundary.any()
    # by the a ↔ −a symmetry both corners have the same density, the closed-form value at the corner
    assert np.allclose(p.values, dv.log_volume_density(CORNERS[0], depth, rank=1), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["nuclear_norm_min", "frobenius_min"])
def test_diagonal_norm_minima_on_the_hyperbola_are_the_corners(diag_predictions, name):
    p = diag_predictions[2][name]
    assert p.applies and p.depth is None and name in DEPTH_INDEPENDENT
    assert _same_set(p.points, CORNERS, 1e-6)
    # σ_1 = |a| + 1/|a| and ‖X‖_F² = 2 + a² + 1/a², both minimal at |a| = 1: ‖X‖_* = ‖X‖_F = 2
    assert np.allclose(p.values, 2.0, atol=1e-9)


def test_diagonal_convex_minimum_is_the_segment(diag_predictions):
    p = diag_predictions[2]["nuclear_norm_min_any_rank"]
    assert p.applies
    assert abs(p.values[0] - 2.0) <= 1e-8
    assert "NOT unique" in p.note and "dimension 1" in p.note
    # points: the least-Frobenius minimizer (the identity) and the two extreme points (the corners)
    assert np.allclose(p.points[0], np.eye(2), atol=1e-7)
    assert _same_set(p.points[1:], CORNERS, 1e-7)
    c = np.linspace(-1.0, 1.0, 9)
    seg = np.ones((9, 2, 2))
    seg[:, 0, 1] = seg[:, 1, 0] = c
    assert np.all(p.distance(seg) <= 1e-7)
    # by hand: project (a, b) onto {a = b, |a| <= 1} and the diagonal onto (1, 1)
    X = np.array([[[1.0, 0.5], [0.3, 1.0]], [[1.0, 2.0], [1.5, 1.0]], [[2.0, 0.0], [0.0, 1.0]]])
    expected = [math.hypot(0.1, 0.1), math.hypot(1.0, 0.5), 1.0]
    assert np.allclose(p.distance(X), expected, rtol=0, atol=1e-8)
    assert p.distance(X[None]).shape == (1, 3)


def test_diagonal_greedy_ends_at_the_corners_from_the_degenerate_first_step():
    task = dv.tasks.diagonal_2x2()
    p = predict(task, 2, 1, 3.0, names=["greedy_low_rank"], n_starts=8, rng=SEED)["greedy_low_rank"]
    # −∇E(0) = I: every unit a gives a top pair u = v = a; the rank-1 flow keeps X = w wᵀ with
    # w_i' = (1 − w_i²) w_i, so w → (sign a_1, sign a_2) and X → one of the corners
    assert p.applies and p.rank == 1
    assert _same_set(p.points, CORNERS, 1e-7)
    assert "degenerate" in p.note
    assert np.all(p.values <= 1e-18)
    p2 = predict(task, 2, 2, 3.0, names=["greedy_low_rank"], n_starts=4, rng=SEED)["greedy_low_rank"]
    assert not p2.applies and "rank 1, not 2" in p2.note


def test_greedy_reports_a_flow_that_never_converges():
    """Razin–Cohen 2×2 (docs/math.md §5.3): rank-1 matrices reach loss 0 only as |x| → ∞ ([[x, 1], [1, 1/x]]),
    so the first greedy stage has no limit and the prediction does not apply."""
    task = dv.tasks.razin_cohen_2x2()
    p = predict(task, 2, 2, 10.0, names=["greedy_low_rank"], n_starts=2, rng=SEED)["greedy_low_rank"]
    assert not p.applies and "the rank-1 flow did not reach a critical point" in p.note
    assert np.all(p.values > 0) and np.all(np.linalg.norm(p.points, axis=(1, 2)) > 10.0)


def test_local_distance_and_empty_prediction(diag_predictions):
    p = diag_predictions[2]["frobenius_min"]
    X = np.array([CORNERS[0], np.eye(2)])
    assert np.allclose(p.distance(X), [0.0, math.sqrt(2.0)], atol=1e-7)
    assert p.distance(np.zeros((2, 3, 2, 2))).shape == (2, 3)
    flat = predict(dv.tasks.diagonal_2x2(), 1, 1, 3.0, names=["volume_max"], rng=SEED)["volume_max"]
    assert not flat.applies and flat.rank == -1 and "ρ_1 ≡ 1" in flat.note
    assert flat.points.shape == (0, 2, 2)
    assert np.all(np.isnan(flat.distance(X)))


def test_to_dict_is_json_ready(diag_predictions):
    d = diag_predictions[math.inf]["volume_max"].to_dict()
    assert d["depth"] == "inf" and d["name"] == "volume_max"
    assert np.allclose(np.array(d["points"]), diag_predictions[math.inf]["volume_max"].points)
    json.dumps(d)
    assert diag_predictions[2]["frobenius_min"].to_dict()["depth"] is None
    assert set(d) >= {"name", "points", "values", "rank", "depth", "applies", "note"}


# ------------------------------------------------------------------------------------------- two arcs, 3×3
ARC_VALUES = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
ARC_MASK = np.array([[True, True, False], [True, True, True], [False, True, True]])


def _arc_b(a):
    return 3.0 - 5.0 / (a - 2.0)  # det X = 0 ⇔ b = 3 − 5/(a − 2)


def _arc_X(a):
    a = np.asarray(a, dtype=float)
    X = np.broadcast_to(ARC_VALUES, a.shape + (3, 3)).copy()
    X[..., 0, 2] = a
    X[..., 2, 0] = _arc_b(a)
    return X


def _arc_intervals(R: float) -> list[tuple[float, float]]:
    """The arcs ``{a : ‖X(a)‖_F <= R}`` on each branch (a < 2, a > 2); asserts one interval per branch."""
    h = lambda a: float(np.sum(_arc_X(a) ** 2)) - R * R  # noqa: E731
    out = []
    for grid in (np.linspace(-R, 2.0 - 1e-9, 40001), np.linspace(2.0 + 1e-9, R, 40001)):
        inside = np.sum(_arc_X(grid) ** 2, axis=(1, 2)) <= R * R
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            continue
        assert np.all(np.diff(idx) == 1), "the window must cut each branch in one arc"
        out.append((optimize.brentq(h, grid[idx[0] - 1], grid[idx[0]], xtol=1e-14),
                    optimize.brentq(h, grid[idx[-1]], grid[idx[-1] + 1], xtol=1e-14)))
    return out


def _arc_minima(fun, intervals) -> list[float]:
    """Interior local minima of ``fun(a)`` on each interval: dense grid, then a bounded 1-D refinement."""
    found = []
    for lo, hi in intervals:
        g = np.linspace(lo, hi, 20001)
        v = fun(g)
        for i in np.flatnonzero((v[1:-1] < v[:-2]) & (v[1:-1] < v[2:])) + 1:
            res = optimize.minimize_scalar(lambda a: float(fun(np.array([a]))[0]), bounds=(g[i - 1], g[i + 1]),
                                           method="bounded", options={"xatol": 1e-12})
            found.append(float(res.x))
    return sorted(found)


def _check_arc_points(p: Prediction, expected: list[float], values) -> None:
    inner = p.points[~p.on_boundary]
    a = np.sort(inner[:, 0, 2])
    assert len(a) == len(expected), (a, expected)
    assert np.allclose(a, expected, rtol=1e-5, atol=1e-5)
    # the points are on the arcs: the other free entry is b(a), the observed entries match
    assert np.allclose(inner, _arc_X(inner[:, 0, 2]), atol=1e-8)
    assert np.allclose(np.sort(p.values[~p.on_boundary]), np.sort(values(np.array(expected))), rtol=1e-8)


@pytest.fixture(scope="module")
def arcs_task() -> dv.CompletionTask:
    return dv.CompletionTask(ARC_VALUES, ARC_MASK)


@pytest.mark.parametrize("depth", [2, 3, math.inf])
def test_arcs_volume_maxima_match_quadrature(arcs_task, depth):
    R = 15.0
    intervals = _arc_intervals(R)
    assert len(intervals) == 2
    neg = lambda a: -dv.log_volume_density(_arc_X(a), depth, rank=2)  # noqa: E731
    expected = _arc_minima(neg, intervals)
    assert len(expected) == 2  # one interior maximum per arc
    p = predict(arcs_task, depth, 2, R, names=["volume_max"], n_starts=8, rng=SEED)["volume_max"]
    assert p.applies and p.rank == 2 and not p.on_boundary.any()
    _check_arc_points(p, expected, lambda a: -neg(a))
    assert p.values[0] >= p.values[-1]  # best first


@pytest.mark.parametrize("name, fun", [
    ("nuclear_norm_min", lambda a: np.linalg.svd(_arc_X(a), compute_uv=False).sum(axis=-1)),
    ("frobenius_min", lambda a: np.linalg.norm(_arc_X(a), axis=(-2, -1))),
])
def test_arcs_norm_minima_match_quadrature(arcs_task, name, fun):
    R = 15.0
    expected = _arc_minima(fun, _arc_intervals(R))
    p = predict(arcs_task, 3, 2, R, names=[name], n_starts=8, rng=SEED)[name]
    _check_arc_points(p, expected, fun)
    assert p.values[0] <= p.values[-1]


def test_arcs_volume_maximum_on_the_window_boundary(arcs_task):
    # R = 5.8 leaves only a short piece of the right arc, short of the interior maximum (a ≈ 3.63, ‖X‖ ≈ 5.85):
    # log ρ increases up to the arc's end, which is then the maximum over the window
    R = 5.8
    (lo, hi), = _arc_intervals(R)
    assert lo > 2.0 and hi < 3.6
    for depth in (3, math.inf):
        f = lambda a: dv.log_volume_density(_arc_X(np.array([a])), depth, rank=2)[0]  # noqa: E731
        assert f(hi) > f(hi - 1e-4) and f(hi) > f(lo)
        p = predict(arcs_task, depth, 2, R, names=["volume_max"], n_starts=8, rng=SEED)["volume_max"]
        assert len(p.points) == 1 and p.on_boundary.tolist() == [True]
        assert abs(p.points[0, 0, 2] - hi) <= 1e-7
        assert "window boundary" in p.note


def test_arcs_greedy_matches_an_independent_integration(arcs_task):
    """Two-stage greedy flow integrated here (DOP853, rtol 1e-12, fixed long horizons)."""
    M, Wm = ARC_VALUES, ARC_MASK.astype(float)
    eps = 1e-10 * np.linalg.norm(M)
    U, V, W = np.zeros((3, 0)), np.zeros((3, 0)), np.zeros((3, 3))
    for k, T in ((1, 300.0), (2, 600.0)):
        G = Wm * (M - W)
        Ug, sg, Vgh = np.linalg.svd(G)
        assert sg[0] > sg[1] * (1 + 1e-3)  # no degenerate step on this task
        U = np.c_[U, math.sqrt(eps) * Ug[:, 0]]
        V = np.c_[V, math.sqrt(eps) * Vgh[0]]

        def rhs(t, y, k=k):
            A, B = y[: 3 * k].reshape(3, k), y[3 * k:].reshape(3, k)
            R = Wm * (M - A @ B.T)
            return np.concatenate([(R @ B).ravel(), (R.T @ A).ravel()])

        sol = integrate.solve_ivp(rhs, (0.0, T), np.r_[U.ravel(), V.ravel()], method="DOP853", rtol=1e-12,
                                  atol=1e-16)
        y = sol.y[:, -1]
        assert np.linalg.norm(rhs(T, y)) < 1e-9  # converged
        U, V = y[: 3 * k].reshape(3, k), y[3 * k:].reshape(3, k)
        W = U @ V.T
    assert np.sum((Wm * (W - M)) ** 2) < 1e-18 and np.linalg.matrix_rank(W, tol=1e-8) == 2
    p = predict(arcs_task, 3, 2, 15.0, names=["greedy_low_rank"], rng=SEED)["greedy_low_rank"]
    assert p.applies and p.rank == 2 and len(p.points) == 1
    assert np.abs(p.points[0] - W).max() <= 1e-7


# ------------------------------------------------------------------------------------------- nuclear norm KKT
def _certificate_opnorm(task: dv.CompletionTask, X: np.ndarray) -> float:
    """Smallest ``‖P_T⊥Λ‖_op`` found over ``{Λ supported on Ω : P_T Λ = UVᵀ}`` (inf if that set is empty),
    ``T`` the tangent space at ``X`` of its rank (singular values above 1e-6 σ_1)."""
    m, n = task.shape
    U, s, Vh = np.linalg.svd(X)
    r = int(np.sum(s > 1e-6 * s[0]))
    PU, PV = U[:, :r] @ U[:, :r].T, Vh[:r].T @ Vh[:r]

    def pt(Z):
        return PU @ Z + Z @ PV - PU @ Z @ PV

    basis = []
    for i, j in np.argwhere(task.mask):
        E = np.zeros((m, n))
        E[i, j] = 1.0
        basis.append(E)
    basis = np.array(basis)
    A = np.stack([pt(E).ravel() for E in basis], axis=1)
    b = (U[:, :r] @ Vh[:r]).ravel()
    lam0 = np.linalg.lstsq(A, b, rcond=None)[0]
    if np.linalg.norm(A @ lam0 - b) > 1e-6:
        return math.inf
    _, S, Zt = np.linalg.svd(A)
    null = Zt[int(np.sum(S > 1e-10 * S[0])):].T

    def op(mu):
        L = np.einsum("k,kij->ij", lam0 + null @ mu, basis)
        return float(np.linalg.norm(L - pt(L), 2))

    mu0 = np.zeros(null.shape[1])
    if null.shape[1] == 0:
        return op(mu0)
    # start at the least-squares P_T⊥ part, then a derivative-free search of the convex op norm
    Ap = np.stack([(E - pt(E)).ravel() for E in basis], axis=1)
    mu0 = np.linalg.lstsq(Ap @ null, -Ap @ lam0, rcond=None)[0]
    res = optimize.minimize(op, mu0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    return min(op(mu0), float(res.fun))


@pytest.mark.parametrize("shape, rank, n_obs, seed", [((4, 5), 2, 12, 1), ((5, 5), 1, 12, 1), ((5, 5), 1, 20, 1)])
def test_nuclear_norm_minimum_satisfies_kkt(shape, rank, n_obs, seed):
    task = dv.tasks.random_low_rank(*shape, rank, n_obs, rng=seed)
    R = 3 * np.linalg.norm(task.ground_truth)
    ps = predict(task, 2, rank, R, names=["nuclear_norm_min_any_rank", "nuclear_norm_min"], n_starts=8, rng=SEED)
    p = ps["nuclear_norm_min_any_rank"]
    Xh = p.points[0]
    assert p.applies and "unique" in p.note
    assert np.max(np.abs((Xh - task.values)[task.mask])) <= 1e-9  # X̂ ∈ S
    nu = np.linalg.svd(Xh, compute_uv=False).sum()
    assert abs(p.values[0] - nu) <= 1e-9 * nu
    assert p.rank == np.linalg.matrix_rank(Xh, tol=1e-6 * np.linalg.norm(Xh, 2))
    op = _certificate_opnorm(task, Xh)
    assert op <= 1 + 1e-6
    # weak duality: Λ with ‖Λ‖_op <= 1 gives ⟨Λ, M⟩ <= ν*; here the certificate attains it (value to 1e-8)
    assert p.distance(Xh[None])[0] <= 1e-9
    # negative controls: feasible, not optimal, the same check must fail — the zero-filled completion, X̂ moved
    # off Ω, and (where the rank-r search finds them) local minima of ‖X‖_* on S ∩ M_r above ν*
    off = np.where(task.mask, 0.0, np.random.default_rng(SEED).standard_normal(task.shape))
    negatives = [task.values.copy(), Xh + 0.1 * off]
    negatives += [X for X in ps["nuclear_norm_min"].points if np.linalg.svd(X, compute_uv=False).sum() > nu + 1e-3]
    for X in negatives:
        assert np.linalg.svd(X, compute_uv=False).sum() > nu + 1e-3
        assert _certificate_opnorm(task, X) > 1 + 1e-3
    if n_obs == 12:
        assert len(negatives) > 2  # the M_r search found a non-optimal local minimum (rank(X̂) > r here)
    if n_obs == 20:  # over-sampled rank-1 task: exact recovery (ν* = ‖W*‖_* = ‖W*‖_F = 5)
        assert np.abs(Xh - task.ground_truth).max() <= 1e-8


def test_nuclear_norm_value_by_duality():
    """ν* to 1e-8: the certificate Λ of the test gives the lower bound ⟨Λ, M⟩/‖Λ‖_op."""
    task = dv.tasks.random_low_rank(4, 5, 2, 12, rng=1)
    p = predict(task, 2, 2, 30.0, names=["nuclear_norm_min_any_rank"], rng=SEED)["nuclear_norm_min_any_rank"]
    Xh = p.points[0]
    U, s, Vh = np.linalg.svd(Xh)
    r = int(np.sum(s > 1e-6 * s[0]))
    PU, PV = U[:, :r] @ U[:, :r].T, Vh[:r].T @ Vh[:r]
    obs = np.argwhere(task.mask)
    cols = []
    for i, j in obs:
        E = np.zeros(task.shape)
        E[i, j] = 1.0
        cols.append((PU @ E + E @ PV - PU @ E @ PV).ravel())
    lam = np.linalg.lstsq(np.stack(cols, axis=1), (U[:, :r] @ Vh[:r]).ravel(), rcond=None)[0]
    L = np.zeros(task.shape)
    L[obs[:, 0], obs[:, 1]] = lam
    lower = float(np.sum(L * task.values)) / np.linalg.norm(L, 2)
    assert lower <= p.values[0] + 1e-10
    assert p.values[0] - lower <= 1e-8 * p.values[0]


def test_nonunique_face_beyond_two_by_two():
    """An instance whose convex minimizer is not unique: the segment between the extreme points has constant
    nuclear norm ν* and stays feasible; beyond its ends the nuclear norm grows."""
    task = dv.tasks.random_low_rank(5, 5, 1, 15, rng=1)
    p = predict(task, 2, 1, 30.0, names=["nuclear_norm_min_any_rank"], rng=SEED)["nuclear_norm_min_any_rank"]
    assert "NOT unique" in p.note and "dimension 1" in p.note
    ends = p.points[-2:]
    assert np.abs(ends[0] - ends[1]).max() > 1e-3
    nuc = lambda t: np.linalg.svd((1 - t) * ends[0] + t * ends[1], compute_uv=False).sum()  # noqa: E731
    for t in np.linspace(0, 1, 6):
        X = (1 - t) * ends[0] + t * ends[1]
        assert abs(nuc(t) - p.values[0]) <= 1e-9 * p.values[0]
        assert np.abs((X - task.values)[task.mask]).max() <= 1e-9
        assert p.distance(X[None])[0] <= 1e-7
    assert nuc(-0.02) > p.values[0] + 1e-6 and nuc(1.02) > p.values[0] + 1e-6
    assert p.distance(((1.02) * ends[1] - 0.02 * ends[0])[None])[0] > 1e-4


# ------------------------------------------------------------------------------------------- misc behaviour
def test_unbounded_volume_is_reported():
    """Observed unit diagonal of a 3×3 matrix: rank-1 solutions lie in the closure of S ∩ M_2, where ρ^(2) → ∞."""
    task = dv.CompletionTask(np.eye(3), np.eye(3, dtype=bool))
    p = predict(task, 3, 2, 8.0, names=["volume_max"], n_starts=4, rng=SEED)["volume_max"]
    assert "left M_2" in p.note and "+inf" in p.note
    assert len(p.points) == 0 and not p.applies


def test_reproducible_and_independent_of_names(arcs_task):
    predictors._START_CACHE.clear()  # reproducibility must not come from the cache of starting points
    a = predict(arcs_task, 3, 2, 15.0, n_starts=6, rng=7)
    predictors._START_CACHE.clear()
    b = predict(arcs_task, 3, 2, 15.0, n_starts=6, rng=7)
    c = predict(arcs_task, 3, 2, 15.0, names=["frobenius_min"], n_starts=6, rng=7)
    assert list(a) == list(PREDICTORS)
    for name in a:
        assert np.array_equal(a[name].points, b[name].points)
        assert np.array_equal(a[name].values, b[name].values)
    assert np.array_equal(a["frobenius_min"].points, c["frobenius_min"].points)
    task = dv.tasks.diagonal_2x2()
    g1 = predict(task, 2, 1, 3.0, names=["greedy_low_rank"], n_starts=3, rng=np.random.default_rng(3))
    g2 = predict(task, 2, 1, 3.0, names=["greedy_low_rank"], n_starts=3, rng=np.random.SeedSequence(3))
    g3 = predict(task, 2, 1, 3.0, names=["greedy_low_rank"], n_starts=3, rng=3)
    assert np.array_equal(g1["greedy_low_rank"].points, g2["greedy_low_rank"].points)
    assert np.array_equal(g1["greedy_low_rank"].points, g3["greedy_low_rank"].points)


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, match", [
    ({"task": np.eye(2)}, InvalidArgumentError, r"task has type ndarray; expected a dlnvolume.CompletionTask"),
    ({"depth": 0}, InvalidDepthError, r"depth=0 is below 1; expected an integer >= 1 or math.inf"),
    ({"depth": 2.5}, InvalidDepthError, r"depth=2.5 is not an integer"),
    ({"rank": 0}, InvalidRankError, r"rank=0 is outside 1..2 for shape 2x2; expected an integer in 1..min\(m, n\)"),
    ({"rank": 3}, InvalidRankError, r"rank=3 is outside 1..2 for shape 2x2"),
    ({"rank": None}, InvalidRankError, r"rank=None is not an integer; expected an integer in 1..2"),
    ({"rank": 1.5}, InvalidRankError, r"rank=1.5 is not an integer"),
    ({"radius": -1.0}, InvalidArgumentError, r"radius=-1.0 is out of range; expected a number > 0"),
    ({"radius": 1.2}, InvalidArgumentError,
     r"radius=1.2 does not exceed ‖observed values‖_F = 1.41421, so the window .* expected radius > 1.41421"),
    ({"n_starts": 0}, InvalidArgumentError, r"n_starts=0 is out of range; expected an integer 1 or more"),
    ({"names": ["volume_max", "bogus"]}, InvalidArgumentError,
     r"names contains unknown predictor\(s\) \['bogus'\]; expected names from \['frobenius_min', 'greedy_depth', "
     r"'greedy_low_rank'"),
    ({"names": []}, InvalidArgumentError, r"names is empty; expected at least one of"),
    ({"names": 5}, InvalidArgumentError, r"names=5 is not an iterable of names; expected names from"),
    ({"rng": -1}, InvalidArgumentError, r"rng=-1 is negative; expected a seed >= 0"),
    ({"rng": "seed"}, InvalidArgumentError, r"rng='seed' has type str"),
])
def test_predict_validation_messages(kwargs, error, match):
    args = {"task": dv.tasks.diagonal_2x2(), "depth": 2, "rank": 1, "radius": 3.0}
    args.update(kwargs)
    task, depth, rank, radius = (args.pop(k) for k in ("task", "depth", "rank", "radius"))
    with pytest.raises(error, match=match):
        predict(task, depth, rank, radius, **args)


def test_distance_validation_messages(diag_predictions):
    p = diag_predictions[2]["frobenius_min"]
    with pytest.raises(ShapeError, match=r"X has shape \(3, 3\); expected \(\.\.\., 2, 2\) like the predicted points"):
        p.distance(np.zeros((3, 3)))
    with pytest.raises(NonFiniteError, match=r"X has NaN or infinite entries"):
        p.distance(np.full((2, 2), np.nan))
    with pytest.raises(ShapeError, match=r"X has shape \(2,\); expected a matrix"):
        p.distance(np.zeros(2))


# --------------------------------------------------------------------------- greedy low-rank learning at depth N
def _greedy_reference(task, N, eps=1e-10):
    """Independent transcription: stage k is the gradient flow of N balanced factors of width k (written out
    here, scipy Radau at rtol 1e-12), from W_{k-1} + eps·‖M‖·u vᵀ, run to t where the gradient has vanished."""
    from scipy.integrate import solve_ivp

    M, mask = task.values, task.mask
    m, n = M.shape
    scale = np.linalg.norm(M)
    W = np.zeros((m, n))
    for k in (1, 2):
        G = np.where(mask, M - W, 0.0)
        U, s, Vh = np.linalg.svd(G)
        X0 = W + eps * scale * np.outer(U[:, 0], Vh[0])
        U0, s0, V0h = np.linalg.svd(X0)
        r = s0[:k] ** (1.0 / N)
        shapes = [(k, n)] + [(k, k)] * (N - 2) + [(m, k)]
        facs = [r[:, None] * V0h[:k]] + [np.diag(r)] * (N - 2) + [U0[:, :k] * r]
        cuts = np.cumsum([0] + [a * b for a, b in shapes])

        def rhs(t, y):
            Ws = [y[cuts[i]:cuts[i + 1]].reshape(shapes[i]) for i in range(N)]
            X = Ws[0]
            for Wj in Ws[1:]:
                X = Wj @ X
            E = np.where(mask, X - M, 0.0)
            out = []
            for j in range(N):
                L = np.eye(n)
                for Wi in Ws[:j]:
                    L = Wi @ L
                R = np.eye(m)
                for Wi in reversed(Ws[j + 1:]):
                    R = R @ Wi
                out.append(-(R.T @ E @ L.T).ravel())
            return np.concatenate(out)

        sol = solve_ivp(rhs, (0, 1e7), np.concatenate([f.ravel() for f in facs]), method="LSODA", rtol=1e-12,
                        atol=1e-16)
        y = sol.y[:, -1]
        Ws = [y[cuts[i]:cuts[i + 1]].reshape(shapes[i]) for i in range(N)]
        W = Ws[0]
        for Wj in Ws[1:]:
            W = Wj @ W
        if task.loss(W) < 1e-20:
            break
    return W


def test_greedy_depth_two_is_li_luo_lyu_and_depth_three_matches_an_independent_flow():
    task = dv.CompletionTask(ARC_VALUES, ARC_MASK)
    p2 = predict(task, 2, 2, 15.0, names=["greedy_depth", "greedy_low_rank"], rng=0)
    # N = 2: balanced factors follow the depth-2 end-to-end flow, so the stage-wise flows are the same path
    np.testing.assert_allclose(p2["greedy_depth"].points, p2["greedy_low_rank"].points, atol=1e-6)
    p3 = predict(task, 3, 2, 15.0, names=["greedy_depth"], rng=0)["greedy_depth"]
    assert p3.applies and p3.rank == 2 and len(p3.points) == 1
    ref = _greedy_reference(task, 3)
    np.testing.assert_allclose(p3.points[0], ref, atol=1e-5)
    # negative control: the depth changes the point (N = 3 is not the depth-2 greedy point)
    assert np.linalg.norm(p3.points[0] - p2["greedy_low_rank"].points[0]) > 0.1


def test_greedy_depth_does_not_apply_at_infinite_depth():
    p = predict(dv.tasks.diagonal_2x2(), math.inf, 1, 3.0, names=["greedy_depth"], rng=0)["greedy_depth"]
    assert not p.applies and len(p.points) == 0 and "N = ∞" in p.note
    assert np.all(np.isnan(p.distance(np.eye(2)[None])))
