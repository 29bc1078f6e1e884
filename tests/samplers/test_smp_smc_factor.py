"""The rank-1 factor chart and the simplified manifold MALA kernel of samplers.smc (kernels "factor", "mixed")."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import dlnvolume as dv
import samplers
from dlnvolume.errors import InvalidArgumentError
from samplers import smc
from samplers.diagnostics import ConvergenceWarning

SEED = 20261130


def _task_target(beta: float = 100.0) -> tuple[dv.CompletionTask, samplers.GibbsTarget]:
    task = dv.tasks.random_low_rank(4, 4, 1, 8, rng=2)
    window = samplers.FrobeniusBall(3.0 * float(np.linalg.norm(task.ground_truth)))
    return task, samplers.GibbsTarget(task, 3, 1, beta, window)


def _random_theta(rng: np.random.Generator, k: int, m: int, n: int) -> np.ndarray:
    return np.concatenate([rng.normal(size=(k, 1)), rng.normal(size=(k, m + n))], axis=1)


def test_factor_chart_round_trip_matrix_and_log_jacobian():
    rng = np.random.default_rng(0)
    m, n = 4, 3
    task = dv.CompletionTask(np.zeros((m, n)), np.ones((m, n), dtype=bool))
    target = samplers.GibbsTarget(task, 3, 1, 1.0)
    theta = _random_theta(rng, 6, m, n)
    phi = smc.factor_from_theta(theta, m, n)
    assert np.allclose(smc.theta_from_factor(phi, m, n), theta, rtol=0, atol=1e-12)
    A, z = phi[:, :m], phi[:, m:m + n]
    X = (A / np.linalg.norm(A, axis=1, keepdims=True))[:, :, None] * z[:, None, :]
    assert np.allclose(X, target.to_matrix(theta), atol=1e-12)
    for p in phi:  # log |det ∂θ/∂φ| against a central-difference Jacobian
        J = np.empty((p.size, p.size))
        for k in range(p.size):
            d = np.zeros(p.size)
            d[k] = 1e-6
            J[:, k] = (smc.theta_from_factor((p + d)[None], m, n)[0]
                       - smc.theta_from_factor((p - d)[None], m, n)[0]) / 2e-6
        assert np.linalg.slogdet(J)[1] == pytest.approx(smc.factor_log_jacobian(p[None], m, n)[0], abs=1e-6)


def test_factor_log_density_gradient_and_gauss_newton():
    task, target = _task_target(100.0)
    m, n = task.shape
    rng = np.random.default_rng(1)
    phi = smc.factor_from_theta(_random_theta(rng, 3, m, n), m, n)
    fn = target.log_density_and_grad
    lp, g, aux = smc.factor_logp_grad(fn, phi, m, n)
    lpt, gt = fn(smc.theta_from_factor(phi, m, n))
    assert np.allclose(aux[:, 0], lpt) and np.allclose(aux[:, 1:], gt)
    assert np.allclose(lp, lpt + smc.factor_log_jacobian(phi, m, n))
    for i, p in enumerate(phi):
        num = np.empty(p.size)
        for k in range(p.size):
            d = np.zeros(p.size)
            d[k] = 1e-6
            num[k] = (smc.factor_logp_grad(fn, (p + d)[None], m, n)[0][0]
                      - smc.factor_logp_grad(fn, (p - d)[None], m, n)[0][0]) / 2e-6
        assert np.allclose(num, g[i], rtol=1e-5, atol=1e-4 * max(1.0, float(np.max(np.abs(g[i])))))

        def resid(q: np.ndarray) -> np.ndarray:
            return np.outer(q[:m] / np.linalg.norm(q[:m]), q[m:m + n])[task.mask]

        J = np.empty((int(task.mask.sum()), p.size))
        for k in range(p.size):
            d = np.zeros(p.size)
            d[k] = 1e-6
            J[:, k] = (resid(p + d) - resid(p - d)) / 2e-6
        assert np.allclose(smc.factor_gauss_newton(p[None], task.mask)[0], J.T @ J, atol=1e-7)


def test_mmala_sweep_keeps_a_gaussian_invariant_under_a_position_dependent_metric():
    # exact draws of N(0, Σ) stay N(0, Σ) after 40 sweeps with G(x) = I + x xᵀ (a wrong MH correction
    # of the position-dependent proposal shows as a shrunk or inflated variance)
    rng = np.random.default_rng(2)
    S = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    Sinv = np.linalg.inv(S)
    C = np.linalg.cholesky(S)

    def logp_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return -0.5 * np.einsum("pi,ij,pj->p", x, Sinv, x), -x @ Sinv

    def metric(x: np.ndarray) -> np.ndarray:
        return np.eye(3) + x[:, :, None] * x[:, None, :]

    x = rng.standard_normal((20000, 3)) @ C.T
    lp, g = logp_grad(x)
    cache = smc.metric_cache(metric, x, g)
    accs = []
    for _ in range(40):
        x, lp, g, cache, acc, _ = smc.mmala_sweep(logp_grad, metric, x, lp, g, cache, 1.0, rng)
        accs.append(float(np.mean(acc)))
    assert 0.3 < np.mean(accs) < 0.99
    cov = np.cov(x.T)
    assert np.allclose(cov, S, atol=0.05)
    assert stats.kstest(x[:, 0], "norm").pvalue > 0.001
    # negative control: dropping the reverse-proposal density (plain forward-only acceptance) is detected
    y = rng.standard_normal((20000, 3)) @ C.T
    for _ in range(40):
        L, drift, _ = smc.metric_cache(metric, y, logp_grad(y)[1])
        prop = y + 0.5 * drift + smc._tri_solve(L, rng.standard_normal(y.shape), transpose=True)
        take = np.log(rng.uniform(size=len(y))) < logp_grad(prop)[0] - logp_grad(y)[0]
        y = np.where(take[:, None], prop, y)
    assert not np.allclose(np.cov(y.T), S, atol=0.05)


def test_factor_orientation_follows_the_unobserved_lines():
    mask = np.ones((3, 4), dtype=bool)
    assert not smc.factor_orientation(mask)
    mask[:, 0] = False
    assert not smc.factor_orientation(mask)
    assert smc.factor_orientation(mask.T)


def test_kernel_option_is_validated_and_registered():
    task, target = _task_target(10.0)
    assert "kernel" in samplers.registry.REGISTRY["smc"].options
    with pytest.raises(InvalidArgumentError, match=r"kernel='newton'; expected one of 'auto', 'diagonal'"):
        samplers.sample(target, "smc", 10, n_chains=1, rng=0, workers=1, progress=False, kernel="newton")
    with pytest.raises(ValueError, match=r"kernel=3"):
        samplers.sample(target, "smc", 10, n_chains=1, rng=0, workers=1, progress=False, kernel=3)
    assert smc.resolve_kernel("auto", 1) == "mixed" and smc.resolve_kernel("auto", 2) == "diagonal"


@pytest.mark.parametrize("kernel", ["mixed", "factor"])
def test_factor_kernels_are_reproducible(kernel):
    _, target = _task_target(100.0)
    runs = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            runs.append(samplers.sample(target, "smc", 60, n_chains=2, rng=SEED, workers=1, progress=False,
                                        kernel=kernel, n_mcmc=3, final_mcmc=2))
    assert np.array_equal(runs[0].draws, runs[1].draws)
    assert np.array_equal(runs[0].log_evidence, runs[1].log_evidence)
    assert math.isfinite(float(runs[0].log_evidence[0]))
