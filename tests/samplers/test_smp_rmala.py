import math

import numpy as np
import pytest
from scipy import stats

import dlnvolume as dv
import samplers
from dlnvolume.errors import DegenerateMetricError, InvalidArgumentError
from samplers.diagnostics import thin_to_ess
from samplers.reference import ScalarGibbsReference
from samplers.rmala import RMALAKernel, ito_drift_correction

SEED = 20261129


def _dense_operator(metric, X):
    m, n = X.shape
    cols = []
    for k in range(m * n):
        E = np.zeros(m * n)
        E[k] = 1.0
        cols.append(metric.apply(X, E.reshape(m, n)).ravel())
    return np.array(cols).T


@pytest.mark.parametrize("m, n, N", [(3, 3, 3), (4, 2, 3), (2, 3, 2), (3, 3, math.inf), (2, 2, 1)])
def test_ito_drift_identity(m, n, N):
    """div Ā + Ā ∇log ρ̄ = ((N-1)/N)(XXᵀ)^{-1/N} X by finite differences (MATH.md §4.4, §8 item 22)."""
    metric = dv.DLNMetric(N)
    X = np.random.default_rng(SEED + m * n).standard_normal((m, n)) + 2.0 * np.eye(m, n)
    h = 1e-5
    div = np.zeros((m, n))
    grad = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            E = np.zeros((m, n))
            E[i, j] = 1.0
            div += (metric.apply(X + h * E, E) - metric.apply(X - h * E, E)) / (2 * h)
            grad[i, j] = (metric.log_volume_density(X + h * E) - metric.log_volume_density(X - h * E)) / (2 * h)
    lhs = div + metric.apply(X, grad)
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    rhs = ito_drift_correction(U, s, Vh.T, N)
    assert np.allclose(lhs, rhs, atol=1e-6 * (1 + np.abs(rhs).max()))
    if N == 2:  # polar factor / 2 for the normalized metric
        assert np.allclose(rhs, 0.5 * U @ Vh)


@pytest.mark.parametrize("local_step", [True, False])
def test_proposal_density_is_the_exact_gaussian(conditioned_3x3, local_step):
    target = samplers.GibbsTarget(conditioned_3x3, 3, 3, 2.0, samplers.GaussianPrior(4.0))
    kernel = RMALAKernel(target, 0.07, local_step)
    X = conditioned_3x3.values + 0.3 * np.random.default_rng(SEED).standard_normal((3, 3))
    state = kernel.init(X)
    Y = X + 0.05 * np.random.default_rng(SEED + 1).standard_normal((3, 3))
    h = state.h
    # independent: dense covariance 2h Ā, drift from the formula with dlnvolume's operator
    metric = dv.DLNMetric(3)
    A = _dense_operator(metric, X)
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    G = -2.0 * conditioned_3x3.grad(X) - X / 16.0
    mean = X + h * (metric.apply(X, G) + ito_drift_correction(U, s, Vh.T, 3))
    expected = stats.multivariate_normal(mean.ravel(), 2 * h * A).logpdf(Y.ravel())
    got = RMALAKernel._log_q(Y, state) - 0.5 * 9 * math.log(4 * math.pi)
    assert got == pytest.approx(expected, rel=1e-9)
    assert float(state.log_density) == pytest.approx(float(target.log_target_matrix(X)))
    if local_step:
        assert state.local == pytest.approx((s[-1] / s[0]) ** (2 / 3))


@pytest.mark.parametrize("N, other", [(1, math.inf), (3, 1), (math.inf, 1)])
def test_rmala_matches_scalar_quadrature(scalar_task, N, other):
    beta, R, floor = 16.0, 3.0, 0.05
    conf = [samplers.FrobeniusBall(R)] + ([samplers.SingularValueFloor(floor)] if math.isinf(N) else [])
    target = samplers.GibbsTarget(scalar_task, N, 1, beta, conf)
    ref = ScalarGibbsReference(N, beta, 1.0, radius=R, floor=floor if math.isinf(N) else 0.0)
    assert ref.cdf(0.0) < 1e-3  # rmala does not cross x = 0 (det = 0) on this target; its mass there is negligible
    chains = samplers.sample(target, "rmala", 1500, n_chains=4, rng=SEED, workers=1, progress=False)
    x = chains.draws[..., 0, 0]
    e = samplers.ess(x)
    assert e > 400
    mean, sd = ref.expect(lambda v: v), math.sqrt(ref.expect(lambda v: v * v) - ref.expect(lambda v: v) ** 2)
    assert abs(x.mean() - mean) <= 4 * sd / math.sqrt(e)
    xs = thin_to_ess(x, ess_value=e)
    assert stats.kstest(xs, ref.cdf).pvalue > 0.01
    wrong = ScalarGibbsReference(other, beta, 1.0, radius=R, floor=floor if math.isinf(other) else 0.0)
    assert stats.kstest(xs, wrong.cdf).pvalue < 0.01


def test_rmala_refuses_lower_strata_and_rectangular_inf():
    task = dv.tasks.diagonal_2x2()
    t = samplers.GibbsTarget(task, 3, 1, 1.0, samplers.FrobeniusBall(4.0))
    with pytest.raises(InvalidArgumentError, match=r"method='rmala' samples the full-rank set only .* got rank=1"):
        samplers.sample(t, "rmala", 10, progress=False)
    rect = dv.CompletionTask(np.ones((3, 2)), np.ones((3, 2), dtype=bool))
    t = samplers.GibbsTarget(rect, math.inf, 2, 1.0, samplers.SingularValueFloor(0.1))
    with pytest.raises(DegenerateMetricError, match=r"depth inf needs a square shape \(got 3x2\)"):
        samplers.sample(t, "rmala", 10, progress=False)
