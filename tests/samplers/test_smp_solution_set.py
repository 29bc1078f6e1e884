import math
import re

import numpy as np
import pytest
from scipy import stats

import dlnvolume as dv
import samplers
from dlnvolume.errors import DegenerateMetricError, ImproperTargetError, InvalidArgumentError
from samplers.diagnostics import thin_to_ess
from samplers.reference import HyperbolaReference, hyperbola_matrices, hyperbola_parameter

SEED = 20261129
R = 4.0
R_KS = 10.0


@pytest.mark.parametrize(
    "depth, other",
    [pytest.param(1, 10, marks=pytest.mark.slow), (3, 1), pytest.param(10, 1, marks=pytest.mark.slow)],
)
def test_hyperbola_law_matches_reference(depth, other):
    # window R_KS = 10: the laws of |a| for depths 1, 3, 10 differ by KS distance 0.07-0.17 there
    # (0.03-0.09 at R = 4), so ~300 effective draws separate them
    R = R_KS
    sampler = samplers.SolutionSetSampler(dv.tasks.diagonal_2x2(), depth, 1, window=samplers.FrobeniusBall(R))
    chains = sampler.sample(1500, n_chains=4, warmup=500, rng=SEED, workers=1, progress=False)
    a = hyperbola_parameter(chains.draws)
    assert np.allclose(hyperbola_matrices(a.ravel()), chains.draws.reshape(-1, 2, 2), atol=1e-9)  # on S ∩ M_1
    absa = np.abs(a)
    e = samplers.ess(absa)
    assert e > 200
    sample = thin_to_ess(absa, ess_value=e)
    assert stats.kstest(sample, HyperbolaReference(depth, "solution_set", radius=R).abs_cdf).pvalue > 0.01
    assert stats.kstest(sample, HyperbolaReference(other, "solution_set", radius=R).abs_cdf).pvalue < 0.01
    assert set(chains.failures) >= {"projection", "reverse_check"}
    assert chains.target["measure"] == "solution_set" and chains.target["depth"] == depth


def test_starts_on_both_branches():
    sampler = samplers.SolutionSetSampler(dv.tasks.diagonal_2x2(), 3, 1, window=samplers.FrobeniusBall(R))
    starts, labels = sampler.find_starts(4, rng=SEED)
    a = hyperbola_parameter(starts)
    assert sorted(labels.tolist()) == [0, 0, 1, 1]
    assert np.sum(a > 0) == 2 and np.sum(a < 0) == 2
    assert np.all(np.abs(a) + 1 / np.abs(a) <= R)


def test_density_is_the_g_arclength_over_euclidean_arclength():
    sampler = samplers.SolutionSetSampler(dv.tasks.diagonal_2x2(), 3, 1, window=samplers.FrobeniusBall(R))
    metric = dv.DLNMetric(3)
    a = np.array([-2.0, -0.5, 0.4, 1.0, 1.7, 3.0])
    X = hyperbola_matrices(a)
    Xp = np.zeros_like(X)
    Xp[:, 0, 1] = 1.0
    Xp[:, 1, 0] = -1 / a**2
    expected = 0.5 * np.log(metric.inner(X, Xp, Xp, rank=1)) - np.log(np.linalg.norm(Xp, axis=(1, 2)))
    got = np.array([sampler.log_density(x) for x in X])
    assert np.allclose(got, expected, atol=1e-10)


def test_two_dimensional_solution_set_stays_on_constraints():
    task = dv.tasks.random_low_rank(3, 3, 2, 6, rng=SEED)
    sampler = samplers.SolutionSetSampler(task, 3, 2, window=samplers.FrobeniusBall(3 * np.linalg.norm(task.ground_truth)))
    assert sampler.dim == 2
    chains = sampler.sample(30, n_chains=2, warmup=20, rng=SEED, workers=1, progress=False)
    X = chains.draws
    assert np.max(np.abs(task.residual(X))) < 1e-9
    s = np.linalg.svd(X, compute_uv=False)
    assert np.max(s[..., 2] / s[..., 0]) < 1e-9
    assert chains.draws.shape == (2, 30, 3, 3) and chains.failures["projection"].shape == (2,)
    assert np.all((chains.accept_prob >= 0) & (chains.accept_prob <= 1))


def test_solution_set_errors():
    task = dv.tasks.diagonal_2x2()
    with pytest.raises(ImproperTargetError, match=r"window=none: the solution set S ∩ M_r is unbounded"):
        samplers.SolutionSetSampler(task, 3, 1)
    # depth inf on a lower stratum is the N -> inf limit law now (tests/samplers/test_smp_exact_references.py)
    obs3 = dv.CompletionTask(np.ones((2, 2)), np.array([[True, True], [True, False]]))
    point = samplers.SolutionSetSampler(obs3, 3, 1, window=samplers.FrobeniusBall(R))  # nominal dimension 0
    with pytest.raises(InvalidArgumentError, match=r"has dimension 0 at the points found \(nominal r\(m\+n-r\) - \|Ω\| = 0\)"):
        point.dim
    sampler = samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(R))
    with pytest.raises(InvalidArgumentError, match=r"initial matrix is not on S ∩ M_r"):
        sampler.sample(5, n_chains=1, initial=np.array([[1.0, 2.0], [1.0, 1.0]]), workers=1, progress=False)


def test_a_window_without_solutions_says_which_radius_would_work():
    """The rank-1 solutions of the 2x2 diagonal task have ‖X‖_F² = 2 + a² + 1/a² >= 4: a window of radius 1.8 contains
    none; the error names the nearest solution found (‖X‖_F = 2) and a radius that contains it, which works."""
    task = dv.tasks.diagonal_2x2()
    with pytest.raises(InvalidArgumentError, match=r"inside window FrobeniusBall\(radius=1\.8\); enlarge the window: "
                                                   r"the solutions found lie outside it, the nearest at ‖X‖_F = 2; a "
                                                   r"Frobenius radius of (3\.\d) contains it") as info:
        samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(1.8)).find_starts(1, rng=0)
    radius = float(re.search(r"radius of (\S+) contains", str(info.value)).group(1))
    X, _ = samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(radius)).find_starts(2, rng=0)
    assert np.all(np.linalg.norm(X, axis=(1, 2)) <= radius)


def test_an_empty_solution_set_is_not_blamed_on_the_window():
    """Rank 1 for 12 entries of a random 5x5 rank-2 matrix: nominal dimension 9 - 12 = -3, no rank-1 completion
    exists; the error says so (and names the rank) instead of only asking for a larger window."""
    task = dv.tasks.random_low_rank(5, 5, 2, 12, rng=1)
    sampler = samplers.SolutionSetSampler(task, 3, 1, window=samplers.FrobeniusBall(50.0))
    with pytest.raises(InvalidArgumentError, match=r"no rank-1 matrix matching the observed entries was found anywhere "
                                                   r"\(nominal dimension r\(m\+n-r\) - \|Ω\| = -3: generically there is "
                                                   r"none\); check the rank"):
        sampler.find_starts(1, rng=0, n_candidates=4)


def test_gram_density_on_a_two_dimensional_solution_set():
    task = dv.tasks.random_low_rank(3, 3, 2, 6, rng=SEED)
    sampler = samplers.SolutionSetSampler(task, 4, 2, window=samplers.FrobeniusBall(100.0))
    X = sampler.find_starts(1, rng=SEED)[0][0]
    state = sampler.init(X)
    T = state.T
    assert T.shape == (2, 3, 3)
    assert np.allclose(np.einsum("kij,lij->kl", T, T), np.eye(2), atol=1e-12)  # orthonormal
    assert np.allclose(T[:, task.mask], 0.0, atol=1e-12)  # tangent to S
    assert np.allclose(dv.strata.normal_project(np.broadcast_to(X, T.shape), T, rank=2), 0.0, atol=1e-10)  # to M_2
    metric = dv.DLNMetric(4)
    G = np.array([[metric.inner(X, T[k], T[l], rank=2) for l in range(2)] for k in range(2)])
    assert state.log_density == pytest.approx(0.5 * np.log(np.linalg.det(G)), rel=1e-10, abs=1e-10)
