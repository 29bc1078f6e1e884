import math

import numpy as np
import pytest

import dlnvolume as dv
import samplers
from dlnvolume.errors import ImproperTargetError, InvalidArgumentError, InvalidDepthError, InvalidRankError, ShapeError
from dlnvolume.spectral import chart_log_density_from_log_sigma
from samplers.targets import chart_log_density_grad

SEED = 20261129

CASES = [
    (3, 3, 3, 3),
    (3, 2, 2, 2),
    (2, 2, 1, 5),
    (4, 3, 2, math.inf),
    (2, 3, 2, 1),
    (1, 1, 1, 3),
]


def _task(m, n):
    rng = np.random.default_rng(SEED)
    mask = rng.uniform(size=(m, n)) < 0.7
    mask.flat[0] = True
    return dv.CompletionTask(rng.standard_normal((m, n)), mask)


def _fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = h
        g[k] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("m, n, r, N", CASES)
def test_gradient_equals_finite_differences(m, n, r, N):
    conf = [samplers.GaussianPrior(2.0), samplers.SingularValueFloor(1e-3)]
    t = samplers.GibbsTarget(_task(m, n), N, r, 1.3, conf)
    theta = np.random.default_rng(SEED + m + n + r).standard_normal(t.ndim)
    lp, g = t.log_density_and_grad(theta)
    fd = _fd_grad(lambda th: float(t.log_density(th)), theta)
    assert np.isfinite(lp)
    assert np.max(np.abs(fd - g)) <= 1e-6 * (1 + np.max(np.abs(g)))


@pytest.mark.parametrize("N", [1, 2, 3, 7, math.inf])
def test_chart_density_gradient(N):
    ls = np.array([0.7, -0.2, 0.1 + 1e-9, -1.5])
    g = chart_log_density_grad(ls, (5, 4), N)
    fd = _fd_grad(lambda x: float(chart_log_density_from_log_sigma(x, (5, 4), N)), ls, 1e-7)
    assert np.allclose(g[[0, 1, 3]], fd[[0, 1, 3]], rtol=1e-6, atol=1e-6)


def test_chart_density_is_volume_times_svd_jacobian():
    # independent route: log ρ_N^{(r)} (dlnvolume) + Euclidean SVD Jacobian (MATH.md §3.1)
    rng = np.random.default_rng(SEED)
    for m, n, r, N in [(3, 3, 3, 3), (4, 3, 2, 5), (3, 3, 1, 2)]:
        t = samplers.GibbsTarget(_task(m, n), N, r, 0.0, samplers.FrobeniusBall(100.0))
        theta = rng.standard_normal(t.ndim)
        X = t.to_matrix(theta)
        s = np.exp(theta[:r])
        expected = float(dv.DLNMetric(N).log_volume_density(X, rank=r)) + float(dv.strata.euclidean_log_jacobian(s, (m, n)))
        got = float(t.log_density(theta)) - np.sum(theta[:r]) + 0.5 * np.sum(theta[r:] ** 2)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_covering_preimages_have_equal_density():
    # sign flips of (q_i, r_i) and permutations of the triples give the same X and the same density
    t = samplers.GibbsTarget(_task(3, 3), 3, 3, 0.7, samplers.GaussianPrior(2.0))
    theta = np.random.default_rng(SEED).standard_normal(t.ndim)
    u, A, B = theta[:3], theta[3:12].reshape(3, 3), theta[12:].reshape(3, 3)
    perm = [2, 0, 1]
    signs = np.array([1.0, -1.0, -1.0])
    theta2 = np.concatenate([u[perm], (A[:, perm] * signs).ravel(), (B[:, perm] * signs).ravel()])
    assert np.allclose(t.to_matrix(theta), t.to_matrix(theta2))
    assert float(t.log_density(theta)) == pytest.approx(float(t.log_density(theta2)), rel=1e-12)


def test_initial_theta_round_trip_and_batched_evaluation():
    t = samplers.GibbsTarget(_task(3, 2), 3, 2, 1.0, samplers.FrobeniusBall(10.0))
    X = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]])
    theta = t.initial_theta(X, rng=SEED)
    assert theta.shape == (t.ndim,)
    assert np.allclose(t.to_matrix(theta), X, atol=1e-7)
    batch = np.stack([theta, theta + 0.01])
    lp = t.log_density(batch)
    assert lp.shape == (2,) and lp[0] == pytest.approx(float(t.log_density(theta)))
    assert t.to_matrix(batch[None]).shape == (1, 2, 3, 2)


def test_confinement_outside_gives_minus_inf():
    t = samplers.GibbsTarget(_task(2, 2), 3, 2, 1.0, samplers.FrobeniusBall(1.0))
    theta = t.initial_theta(np.diag([2.0, 1.0]), rng=1)
    assert float(t.log_density(theta)) == -math.inf


def test_describe():
    t = samplers.GibbsTarget(_task(2, 2), 3, 1, 2.0, [samplers.FrobeniusBall(4.0), samplers.SingularValueFloor(0.1)])
    d = t.describe()
    assert d["measure"] == "gibbs" and d["depth"] == 3 and d["rank"] == 1 and d["beta"] == 2.0
    assert d["confinement"] == "FrobeniusBall(radius=4.0) * SingularValueFloor(minimum=0.1)"


# ------------------------------------------------------------------ improper targets and bad input
def test_depth_inf_needs_floor(conditioned_3x3):
    with pytest.raises(ImproperTargetError, match=r"depth inf .* not integrable .* add SingularValueFloor"):
        samplers.GibbsTarget(conditioned_3x3, math.inf, 3, 1.0, samplers.FrobeniusBall(5.0))
    samplers.GibbsTarget(conditioned_3x3, math.inf, 3, 1.0, [samplers.FrobeniusBall(5.0), samplers.SingularValueFloor(0.01)])


def test_beta_zero_needs_bounded_confinement(conditioned_3x3):
    with pytest.raises(ImproperTargetError, match=r"beta=0 .* infinite mass at infinity .* FrobeniusBall\(radius\) or GaussianPrior"):
        samplers.GibbsTarget(conditioned_3x3, 3, 3, 0.0, samplers.SingularValueFloor(0.1))


def test_unobserved_entries_need_bounded_confinement():
    task = dv.tasks.diagonal_2x2()
    with pytest.raises(ImproperTargetError, match=r"flat along the 2 unobserved entries.* add FrobeniusBall\(radius\) or GaussianPrior"):
        samplers.GibbsTarget(task, 3, 2, 5.0, None)
    samplers.GibbsTarget(task, 3, 2, 5.0, samplers.GaussianPrior(3.0))


def test_fully_observed_positive_beta_is_proper(conditioned_3x3):
    samplers.GibbsTarget(conditioned_3x3, 3, 3, 1.0, None)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"depth": 0}, InvalidDepthError, r"depth=0 is below 1"),
        ({"rank": 3}, InvalidRankError, r"rank=3 is outside 0..2"),
        ({"rank": 0}, InvalidRankError, r"rank=0; a Gibbs target needs rank in 1..2"),
        ({"beta": -1.0}, InvalidArgumentError, r"beta=-1.0 is out of range; expected a number >= 0"),
        ({"beta": math.nan}, InvalidArgumentError, r"beta=nan is not finite"),
        ({"task": "diag"}, InvalidArgumentError, r"task='diag' has type str; expected a dlnvolume.CompletionTask"),
        ({"confinement": "ball"}, InvalidArgumentError, r"confinement='ball' has type str"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"task": dv.tasks.diagonal_2x2(), "depth": 3, "rank": 2, "beta": 1.0,
            "confinement": samplers.FrobeniusBall(3.0)}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        samplers.GibbsTarget(**args)


def test_theta_shape_checked():
    t = samplers.GibbsTarget(dv.tasks.diagonal_2x2(), 3, 1, 1.0, samplers.FrobeniusBall(3.0))
    with pytest.raises(ShapeError, match=r"theta has shape \(4,\); expected \(\.\.\., 5\)"):
        t.log_density(np.zeros(4))
    with pytest.raises(ShapeError, match=r"X has shape \(3, 3\); expected \(2, 2\)"):
        t.initial_theta(np.eye(3))
