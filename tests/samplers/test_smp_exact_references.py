"""SolutionSetSampler against exact quadrature references beyond 2×2 (tests/samplers/exact_solution_sets.py).

Order of the checks (STYLE.md item 9): ESS floor first, then signed statistics (which tell the components
apart) against the exact answers — KS on an ESS-thinned sample, means within 4 sd/√ESS, component masses
within 4 Monte Carlo standard errors (across independent replicates) — and a negative control each.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import dlnvolume as dv
import samplers
from shares import draws_share_z, mass_z
from exact_solution_sets import Diagonal3x3Rank1, HyperbolaArcs3x3Rank2
from samplers.diagnostics import ConvergenceWarning, thin_to_ess

SEED = 20261130
R_DIAG = 12.0
R_ARCS = 7.0


def _diag_task() -> dv.CompletionTask:
    return dv.CompletionTask(np.eye(3), np.eye(3, dtype=bool), name="diagonal_3x3")


def _run(sampler: samplers.SolutionSetSampler, n_draws: int, n_chains: int):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the default runs must converge
        return sampler.sample(n_draws, n_chains=n_chains, rng=SEED, workers=1, progress=False)


def _wrong_mass_cdf(cdf, p_pos: float):
    """CDF of a signed statistic whose positive half has mass ``p_pos`` instead of the exact one."""
    F0 = float(cdf(np.array([0.0]))[0])
    return lambda x: np.where(x < 0, cdf(x) * (1 - p_pos) / F0, (1 - p_pos) + (cdf(x) - F0) * p_pos / (1 - F0))


# ---------------------------------------------------------------------------------------------- the references
def test_reference_infinite_depth_is_the_limit_of_the_normalized_laws():
    lim, big = Diagonal3x3Rank1(math.inf, 6.0), Diagonal3x3Rank1(10**6, 6.0)
    x = np.linspace(-6, 6, 41)
    assert np.max(np.abs(lim.x12_cdf(x) - big.x12_cdf(x))) < 1e-5
    assert big.component_mass / 10**6 == pytest.approx(lim.component_mass, rel=1e-5)  # N^{-d/2} f_N -> f_inf, d = 2
    arcs_lim, arcs_big = HyperbolaArcs3x3Rank2(math.inf, R_ARCS), HyperbolaArcs3x3Rank2(10**6, R_ARCS)
    assert np.allclose(arcs_lim.arc_fractions, arcs_big.arc_fractions, atol=1e-5)


def test_reference_components_are_isometric_and_arcs_unequal():
    ref = Diagonal3x3Rank1(3, 6.0)
    t2, t3 = np.array([0.3, -0.7]), np.array([-0.2, 1.1])
    base = ref.density(t2, t3)
    for s2, s3 in [(1, -1), (-1, 1), (-1, -1)]:
        assert np.allclose(ref.density(t2, t3, s2, s3), base, rtol=1e-12)
    arcs = HyperbolaArcs3x3Rank2(3, R_ARCS)
    assert arcs.arc_fractions[0] == pytest.approx(0.37318, abs=1e-4)
    X, _ = arcs.matrices(np.array([-1.0, 3.0, 4.0]))
    assert np.allclose(np.linalg.det(X), 0.0, atol=1e-12)  # on M_2
    lo, hi = arcs.intervals[1]
    assert arcs.b(lo) < 0 < arcs.b(hi)  # the right arc crosses a sign change of b: sign groups are not components


# ---------------------------------------------------------------------------------------------- 3×3 diagonal, rank 1
@pytest.mark.parametrize("depth", [3, pytest.param(1, marks=pytest.mark.slow), pytest.param(10, marks=pytest.mark.slow),
                                   pytest.param(math.inf, marks=pytest.mark.slow)])
def test_diagonal_3x3_rank1_four_components(depth):
    sampler = samplers.SolutionSetSampler(_diag_task(), depth, 1, window=samplers.FrobeniusBall(R_DIAG))
    assert sampler.dim == 2
    ch = _run(sampler, 300, 6)
    X = ch.draws * np.sign(ch.draws[..., :1, :1])  # X = s sᵀ∘…: fix the overall sign by X_11 = +1 (it is 1)
    assert np.max(np.abs(_diag_task().residual(ch.draws))) < 1e-9
    ref = Diagonal3x3Rank1(depth, R_DIAG)
    x12, x13 = X[..., 0, 1], X[..., 0, 2]
    e12, e13 = samplers.ess(x12), samplers.ess(x13)
    assert min(e12, e13) >= 400 and ch.diagnostics["rhat"] <= 1.01
    for x, e in ((x12, e12), (x13, e13)):
        thin = thin_to_ess(x, ess_value=e)
        assert stats.kstest(thin, ref.x12_cdf).pvalue > 0.01
        assert stats.kstest(thin, _wrong_mass_cdf(ref.x12_cdf, 0.6)).pvalue < 0.01  # negative control: masses
    absx = np.abs(x12)
    sd = float(np.std(absx))
    assert abs(float(np.mean(absx)) - ref.mean_abs_x12()) <= 4 * sd / math.sqrt(samplers.ess(absx))
    wrong = Diagonal3x3Rank1(1 if depth in (10, math.inf) else math.inf, R_DIAG).mean_abs_x12()  # negative control: depth
    assert abs(float(np.mean(absx)) - wrong) > 4 * sd / math.sqrt(samplers.ess(absx))
    masses = ch.piece_masses()
    assert len(masses) == 4
    for mean, se in masses.values():
        assert abs(mean - 0.25) <= 4 * se
    worst = max(abs(mean - 0.4) / se for mean, se in masses.values())
    assert worst > 4  # negative control: a wrong mass is rejected


# ---------------------------------------------------------------------------------------------- two arcs, unequal mass
@pytest.mark.parametrize("depth", [3, pytest.param(1, marks=pytest.mark.slow), pytest.param(10, marks=pytest.mark.slow)])
def test_hyperbola_arcs_unequal_masses(depth):
    task = HyperbolaArcs3x3Rank2.task()
    sampler = samplers.SolutionSetSampler(task, depth, 2, window=samplers.FrobeniusBall(R_ARCS))
    assert sampler.dim == 1
    ch = _run(sampler, 300, 6)
    ref = HyperbolaArcs3x3Rank2(depth, R_ARCS)
    a = ch.draws[..., 0, 2]
    e = samplers.ess(a)
    assert e >= 400 and ch.diagnostics["rhat"] <= 1.01
    thin = thin_to_ess(a, ess_value=e)
    assert stats.kstest(thin, ref.cdf_table()).pvalue > 0.01
    assert stats.kstest(thin, HyperbolaArcs3x3Rank2(1 if depth != 1 else 10, 9.0).cdf_table()).pvalue < 0.01
    left = (a < 2).astype(float)  # the left arc's share of the draws (standard error from its ESS)
    assert abs(draws_share_z(left, ref.arc_fractions[0])) <= 4
    assert abs(draws_share_z(left, 0.5)) > 4  # negative control: equal arc masses are rejected
    # the sign-group masses come with their Monte Carlo errors; the left arc is one sign group here
    mass = ch.piece_masses()["-+"]
    assert abs(mass_z(mass, ref.arc_fractions[0])) <= 4 and abs(mass_z(mass, 0.5)) > 4


# ---------------------------------------------------------------------------------------------- non-transversal
def _cycle_rank(mask: np.ndarray) -> int:
    """``|E| - |V| + #components`` of the bipartite row/column graph of the observed entries."""
    m, n = mask.shape
    parent = list(range(m + n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    rows, cols = np.nonzero(mask)
    used = set(rows.tolist()) | {m + c for c in cols.tolist()}
    for i, j in zip(rows, cols):
        parent[find(int(i))] = find(m + int(j))
    comps = len({find(v) for v in used})
    return len(rows) - len(used) + comps


def test_non_transversal_rank1_dimension_is_nominal_plus_cycle_rank():
    task = dv.tasks.random_low_rank(4, 4, 1, 5, rng=3)
    sampler = samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(3 * np.linalg.norm(task.ground_truth)))
    assert sampler.nominal_dim == 2 and _cycle_rank(task.mask) == 1
    assert sampler.dim == sampler.nominal_dim + _cycle_rank(task.mask) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ch = sampler.sample(100, n_chains=2, rng=SEED, workers=1, progress=False)
    assert ch.dimension == 3
    X = ch.draws
    assert np.max(np.abs(task.residual(X))) < 1e-9
    s = np.linalg.svd(X, compute_uv=False)
    assert np.max(s[..., 1] / s[..., 0]) < 1e-9  # rank 1
    assert np.all(np.isfinite(ch.log_density))


def test_nominal_dimension_zero_that_is_a_curve():
    # 3x3 rank 1 observing a 2x2 block and two more entries: nominal 5 - 6 = -1, but the block's rank-1
    # condition is implied, so S ∩ M_1 is a curve (cycle rank 1 + ... see _cycle_rank)
    values = np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    mask = np.array([[True, True, False], [True, True, False], [False, False, False]])
    task = dv.CompletionTask(values, mask)
    sampler = samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(20.0))
    assert sampler.nominal_dim == 1 and sampler.dim == 2 == sampler.nominal_dim + _cycle_rank(mask)


def test_gibbs_ratio_is_sqrt_det_L_Abar_Lt():
    task = HyperbolaArcs3x3Rank2.task()
    sampler = samplers.SolutionSetSampler(task, 3, 2, window=samplers.FrobeniusBall(R_ARCS))
    X, _ = HyperbolaArcs3x3Rank2.matrices(np.array([-1.3]))
    X = X[0]
    # L: observation map on T M_2; Ā from the package's metric; √det(L Ā Lᵀ) with Lᵀ the adjoint
    U, s, Vh = np.linalg.svd(X)
    basis = []
    for i in range(3):
        for j in range(3):
            if i < 2 or j < 2:
                basis.append(np.outer(U[:, i], Vh[j]))
    B = np.array(basis)  # orthonormal basis of T M_2 (8 matrices)
    metric = dv.DLNMetric(3)
    A = np.array([[np.sum(B[k] * metric.apply(X, B[l], rank=2)) for l in range(8)] for k in range(8)])
    L = B[:, task.mask].T  # (7, 8)
    expected = 0.5 * np.linalg.slogdet(L @ A @ L.T)[1]
    assert sampler.log_gibbs_ratio(X) == pytest.approx(expected, rel=1e-9, abs=1e-9)
