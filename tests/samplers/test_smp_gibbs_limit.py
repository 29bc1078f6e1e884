"""π_β on M_1 of the 2×2 diagonal task approaches the Gibbs-limit reference as β → ∞.

Deterministic check of GibbsTarget's density (chart density, Jacobian, Gaussian polar trick) against
the independently derived Laplace limit of samplers.reference: the exact law of ``a = X12/X11``
under π_β is computed by quadrature of the target density in the coordinates ``(u, φ, ψ)``
(``A = (cos φ, sin φ)``, ``B = (cos ψ, sin ψ)``, ``a = tan ψ``), where the radial parts of ``A`` and
``B`` integrate out to a constant.
"""

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import cumulative_trapezoid

import dlnvolume as dv
import samplers
from samplers.reference import HyperbolaReference

R = 4.0


def _law_of_a(target, grid, beta):
    x, w = np.polynomial.legendre.leggauss(32)
    L = 9.0 / math.sqrt(beta)  # ±9 standard deviations of (X11 - 1, X22 - 1)
    Y1, Y2 = np.meshgrid(L * x, L * x, indexing="ij")
    W = np.outer(w, w) * L * L
    dens = []
    for a in grid:
        u0, phi0, psi = math.log(a + 1 / a), math.atan(1 / a), math.atan(a)
        J = np.array([[1.0, -1.0 / a], [1.0, a]])  # d(X11, X22)/d(u, φ) on the curve
        Ji = np.linalg.inv(J)
        u = u0 + Ji[0, 0] * Y1 + Ji[0, 1] * Y2
        ph = phi0 + Ji[1, 0] * Y1 + Ji[1, 1] * Y2
        theta = np.stack([u, np.cos(ph), np.sin(ph), np.full_like(u, math.cos(psi)), np.full_like(u, math.sin(psi))], -1)
        lp = target.log_density(theta.reshape(-1, 5)).reshape(u.shape)
        dens.append(np.sum(W * np.exp(lp)) / abs(np.linalg.det(J)) / (1 + a * a))
    dens = np.array(dens)
    F = cumulative_trapezoid(dens * grid, np.log(grid), initial=0.0)
    return F / F[-1]


@pytest.mark.parametrize("depth", [3, math.inf])
def test_gibbs_target_approaches_gibbs_limit(depth):
    t = (R - math.sqrt(R * R - 4)) / 2
    grid = np.exp(np.linspace(math.log(t), -math.log(t), 121))
    conf = [samplers.FrobeniusBall(R)] + ([samplers.SingularValueFloor(0.5)] if math.isinf(depth) else [])
    limit = HyperbolaReference(depth, "gibbs_limit", radius=R).abs_cdf(grid)
    volume = HyperbolaReference(depth, "solution_set", radius=R).abs_cdf(grid)
    dist = {}
    for beta in (1e2, 1e4):
        target = samplers.GibbsTarget(dv.tasks.diagonal_2x2(), depth, 1, beta, conf)
        F = _law_of_a(target, grid, beta)
        dist[beta] = float(np.max(np.abs(F - limit)))
        # negative control: the solution-set volume is a different law
        assert np.max(np.abs(F - volume)) > 0.02
    assert dist[1e4] < 0.003
    assert dist[1e4] < dist[1e2] / 3


# ---------------------------------------------------------------------------------------------- every task: the
# Gibbs limit as a measure of SolutionSetSampler (measure="gibbs_limit"; registry methods solution_smc and walk)
from shares import draws_share_z, mass_z  # noqa: E402
from exact_solution_sets import UnitPoleArcs3x3Rank2, gibbs_limit_factor  # noqa: E402
from samplers.diagnostics import ConvergenceWarning, thin_to_ess  # noqa: E402

ARCS_R = 15.0


def _arc_points(n=9):
    ref = UnitPoleArcs3x3Rank2(3, ARCS_R)
    a = np.concatenate([np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), n) for lo, hi in ref.intervals])
    return a, UnitPoleArcs3x3Rank2.matrices(a)[0]


@pytest.mark.parametrize("depth", [1, 3, 20])
def test_gibbs_limit_density_matches_an_independent_formula(depth):
    """The sampler's log g against ρ_N/√pdet(L Lᵀ) built from DLNMetric.inner on an orthonormal basis of T M_2
    (tests/samplers/exact_solution_sets.py), up to one constant, at 18 points of the two arcs; and log f − log g
    is the sampler's own log_gibbs_ratio."""
    a, X = _arc_points()
    s = samplers.SolutionSetSampler(UnitPoleArcs3x3Rank2.task(), depth, 2, window=samplers.FrobeniusBall(ARCS_R),
                                    measure="gibbs_limit")
    log_g = np.array([s.log_density(x) for x in X])
    diff = log_g - np.log(gibbs_limit_factor(X, UnitPoleArcs3x3Rank2.mask, depth, 2))
    assert np.ptp(diff) < 1e-8, diff
    f = samplers.SolutionSetSampler(UnitPoleArcs3x3Rank2.task(), depth, 2, window=samplers.FrobeniusBall(ARCS_R))
    log_f = np.array([f.log_density(x) for x in X])
    assert np.allclose(log_f - log_g, s.log_gibbs_ratio(X), atol=1e-10)
    assert np.allclose(s.log_gibbs_ratio(X), f.log_gibbs_ratio(X), atol=1e-12)  # the ratio is the same law-free map
    if depth > 1:  # negative control: the two laws differ (the ratio is not constant on the set)
        assert np.ptp(log_f - log_g) > 0.1


def test_gibbs_limit_measure_is_validated():
    with pytest.raises(dv.errors.InvalidArgumentError, match="measure='gibbs'.*'solution_set', 'gibbs_limit'"):
        samplers.SolutionSetSampler(UnitPoleArcs3x3Rank2.task(), 3, 2, window=samplers.FrobeniusBall(ARCS_R),
                                    measure="gibbs")
    from samplers import registry

    assert "gibbs_limit" in registry.get("solution_smc").measures and "gibbs_limit" in registry.get("walk").measures


@pytest.mark.slow
@pytest.mark.parametrize("depth,wrong", [(3, "solution_set"), (20, "solution_set")])
def test_gibbs_limit_arc_masses_match_quadrature(depth, wrong):
    """The issue-21 two-arc set under the Gibbs limit at N = 3 and 20 (exact left-arc mass 0.3033 and 0.1306):
    ESS floor and every importance check first, then the signed left-arc mass per replicate from the output draws
    and from the weights within 4 s.e. of quadrature, KS on the thinned sample; negative control: the solution-set
    volume's mass and law at the same depth are rejected."""
    s = samplers.SolutionSetSampler(UnitPoleArcs3x3Rank2.task(), depth, 2, window=samplers.FrobeniusBall(ARCS_R),
                                    measure="gibbs_limit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ch = s.sample(1000, n_chains=6, rng=20261207, workers=2, progress=False)
    a = ch.draws[..., 0, 1]
    e = samplers.ess(a)
    assert ch.converged and e >= 400, (ch.diagnostics, e)
    ref, other = UnitPoleArcs3x3Rank2(depth, ARCS_R, "gibbs_limit"), UnitPoleArcs3x3Rank2(depth, ARCS_R, wrong)
    right, se = ch.piece_masses()["++"]
    left = (a < 1.0).astype(float)
    for z, z_other in ((draws_share_z(left, ref.arc_fractions[0]), draws_share_z(left, other.arc_fractions[0])),
                       (mass_z((1 - right, se), ref.arc_fractions[0]), mass_z((1 - right, se), other.arc_fractions[0]))):
        assert abs(z) <= 4, (z, np.mean(left, axis=1), 1 - right, se, ref.arc_fractions[0])
        assert abs(z_other) > 4, z_other
    thin = thin_to_ess(a, ess_value=e)
    assert stats.kstest(thin, ref.cdf_table()).pvalue > 0.01
    assert stats.kstest(thin, other.cdf_table()).pvalue < 0.01
