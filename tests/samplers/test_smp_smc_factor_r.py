"""The rank-r factor chart φ = (A, Z), X = polar(A) Zᵀ, of samplers.smc and its exact Gibbs step for Z given A
(issue 21 item 4; docs/samplers.md §3, kernel "factor" at rank r >= 2). References: central differences, the energy itself, and for the
law the exact finite-β arc masses of :class:`GibbsUnitPoleArcs3x3Rank2` (Gauss–Hermite × Gauss–Legendre)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import dlnvolume as dv
import samplers
from samplers import smc
from samplers.diagnostics import ConvergenceWarning

from exact_solution_sets import GibbsUnitPoleArcs3x3Rank2, UnitPoleArcs3x3Rank2

CASES = [  # (task, rank, depth)
    (UnitPoleArcs3x3Rank2.task(), 2, 3.0),
    (dv.tasks.random_low_rank(4, 5, 2, 12, rng=1), 2, math.inf),
    (dv.tasks.random_low_rank(5, 3, 3, 9, rng=2), 3, 20.0),
]


def _target(task, r, N, beta=50.0):
    conf = [samplers.FrobeniusBall(15.0), samplers.SingularValueFloor(1e-3)] if math.isinf(N) else samplers.FrobeniusBall(15.0)
    return samplers.GibbsTarget(task, N, r, beta, conf)


def _split(phi, mo, no, r):
    return phi[:, :mo * r].reshape(-1, mo, r), phi[:, mo * r:].reshape(-1, no, r)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("transpose", [False, True])
def test_factor_r_density_gradient_and_gauss_newton_against_central_differences(case, transpose):
    task, r, N = CASES[case]
    t = _target(task, r, N)
    m, n = task.shape
    mo, no = (n, m) if transpose else (m, n)
    rng = np.random.default_rng(case)
    phi = 0.7 * rng.standard_normal((3, (mo + no) * r))
    lp, g = smc.factor_r_logp_grad(t, 50.0, transpose, phi)
    assert np.all(np.isfinite(lp))

    def f(p):
        return smc.factor_r_logp_grad(t, 50.0, transpose, p)[0]

    num = np.stack([(f(phi + e) - f(phi - e)) / 2e-6 for e in 1e-6 * np.eye(phi.shape[1])], axis=1)
    assert np.allclose(g, num, rtol=1e-6, atol=1e-6 * np.max(np.abs(g)))
    # log p_φ = -βE - ½‖A‖² + log h, with log ρ_N, conf and det(ZᵀZ) in h
    A, Z = _split(phi, mo, no, r)
    Q = smc.polar(A)[0]
    Xo = Q @ np.swapaxes(Z, 1, 2)
    X = np.swapaxes(Xo, 1, 2) if transpose else Xo
    assert np.allclose(lp, -50.0 * task.loss(X) - 0.5 * np.sum(A * A, axis=(1, 2)) + smc.factor_r_log_h(t, transpose, Q, Z))
    mask_o = task.mask.T if transpose else task.mask

    def obs(p):
        a, z = _split(p[None], mo, no, r)
        return (smc.polar(a)[0] @ np.swapaxes(z, 1, 2))[0][mask_o]

    G = smc.factor_r_gauss_newton(phi, mask_o, r)
    for i in range(phi.shape[0]):
        J = np.stack([(obs(phi[i] + e) - obs(phi[i] - e)) / 2e-6 for e in 1e-6 * np.eye(phi.shape[1])], axis=1)
        assert np.allclose(G[i], J.T @ J, atol=1e-7 * max(1.0, np.max(np.abs(G[i]))))


@pytest.mark.parametrize("case", range(len(CASES)))
def test_factor_r_chart_keeps_the_matrix_and_refreshes_only_the_fibre(case):
    task, r, N = CASES[case]
    t = _target(task, r, N)
    m, n = task.shape
    rng = np.random.default_rng(10 + case)
    theta = np.concatenate([rng.standard_normal((5, r)), rng.standard_normal((5, (m + n) * r))], axis=1)
    phi, PB = smc.factor_r_from_theta(theta, m, n, r, rng)
    A, Z = _split(phi, m, n, r)
    assert np.allclose(smc.polar(A)[0] @ np.swapaxes(Z, 1, 2), t.to_matrix(theta), atol=1e-12)
    back = smc.theta_from_factor_r(phi, PB, m, n, r, rng)
    assert np.allclose(t.to_matrix(back), t.to_matrix(theta), atol=1e-12)
    # A keeps its polar factor's size: |A'| = |A| (A' = A O), and B's symmetric factor is kept
    assert np.allclose(np.linalg.norm(A, axis=(1, 2)), np.linalg.norm(theta[:, r:r + m * r], axis=1))
    Bb = back[:, r + m * r:].reshape(5, n, r)
    assert np.allclose(np.linalg.svd(Bb, compute_uv=False), np.linalg.svd(theta[:, r + m * r:].reshape(5, n, r), compute_uv=False))
    O = smc.haar_orthogonal(4000, 2, rng)  # Haar on O(2): both determinants, uniform angle
    assert np.allclose(O @ np.swapaxes(O, 1, 2), np.eye(2), atol=1e-12)
    assert abs(np.mean(np.linalg.det(O))) < 0.05 and abs(np.mean(O[:, 0, 0])) < 0.05


def test_z_gibbs_proposal_is_the_exact_energy_conditional():
    """Given Q, -βE(QZᵀ) and the proposal's log density differ by a constant in Z (so the Gaussian parts cancel
    in the acceptance ratio); rows of Z with fewer than r observed entries are not proposed."""
    task = UnitPoleArcs3x3Rank2.task()
    mask = task.mask.copy()
    mask[0, 1] = mask[2, 1] = False  # column 1 now has one observed entry (< r = 2): its row of Z is kept
    task = dv.CompletionTask(task.values, mask)
    rng = np.random.default_rng(3)
    Q = smc.polar(rng.standard_normal((2, 3, 2)))[0]
    conds = smc.factor_r_z_conditional(Q, mask, task.values, 2)
    assert [j for j, _, _ in conds] == [0, 2]
    beta = 37.0
    diffs = []
    for _ in range(5):
        Z = rng.standard_normal((2, 3, 2))
        quad = sum(np.sum((np.einsum("pkr,pr->pk", np.swapaxes(L, 1, 2), Z[:, j] - mu)) ** 2, axis=1)
                   for j, mu, L in conds)
        E_free = 0.5 * np.sum(mask[:, 1] * (Q @ np.swapaxes(Z, 1, 2) - task.values)[:, :, 1] ** 2, axis=1)
        diffs.append(-beta * (task.loss(Q @ np.swapaxes(Z, 1, 2)) - E_free) + 0.5 * beta * quad)
    diffs = np.array(diffs)
    assert np.allclose(diffs, diffs[0], atol=1e-9 * beta)
    t = samplers.GibbsTarget(task, 3.0, 2, beta, samplers.FrobeniusBall(15.0))
    phi = np.concatenate([rng.standard_normal((2, 6)), rng.standard_normal((2, 6))], axis=1)
    new, acc = smc.factor_r_z_gibbs(t, beta, False, phi, rng)
    assert np.array_equal(new[:, :6], phi[:, :6])  # A unchanged
    assert np.array_equal(new.reshape(2, 2, 3, 2)[:, 1, 1], phi.reshape(2, 2, 3, 2)[:, 1, 1])  # kept row
    assert np.all((acc >= 0) & (acc <= 1))


def test_factor_kernel_runs_at_rank_two_and_is_reproducible():
    t = _target(UnitPoleArcs3x3Rank2.task(), 2, 3.0, beta=20.0)
    kw = dict(n_chains=2, rng=5, workers=1, progress=False, kernel="factor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = samplers.sample(t, "smc", 50, **kw)
        b = samplers.sample(t, "smc", 50, **kw)
    assert np.array_equal(a.draws, b.draws)
    assert np.allclose(np.linalg.det(a.draws), 0.0, atol=1e-9 * np.max(np.abs(a.draws)) ** 3)  # rank 2
    assert smc.resolve_kernel("factor", 2) == "factor" and smc.resolve_kernel("auto", 2) == "diagonal"
    with warnings.catch_warnings():  # the registry method of configs (references[i].method = "smc_factor")
        warnings.simplefilter("ignore", ConvergenceWarning)
        c = samplers.sample(t, "smc_factor", 50, **{k: v for k, v in kw.items() if k != "kernel"})
    assert np.array_equal(a.draws, c.draws)
    with pytest.raises(ValueError, match=r"options \['kernel'\] are not accepted by method='smc_factor'"):
        samplers.sample(t, "smc_factor", 50, **kw)


def test_finite_beta_reference_tends_to_the_gibbs_limit():
    """The finite-β quadrature (cofactor form) at β = 1e8 against the Gibbs limit's (ρ_N/√pdet form), N = 3 and 20."""
    for depth in (3.0, 20.0):
        ref = GibbsUnitPoleArcs3x3Rank2(depth, 1e8, 15.0, n_gh=1)
        limit = UnitPoleArcs3x3Rank2(depth, 15.0, "gibbs_limit")
        assert ref.arc_fractions == pytest.approx(limit.arc_fractions, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("beta", [100.0, 1000.0])
def test_factor_kernel_arcs_masses_at_large_finite_beta(beta):
    """The issue-21 two-arc target at finite β (N = 3, ‖X‖_F <= 15): the left-arc mass of 8 replicates within
    4 s.e. of the exact value; the ESS floor first; negative control: N = 20's mass (exact, same quadrature)."""
    exact = GibbsUnitPoleArcs3x3Rank2(3.0, beta, 15.0).arc_fractions[0]
    other = GibbsUnitPoleArcs3x3Rank2(20.0, beta, 15.0).arc_fractions[0]
    t = samplers.GibbsTarget(UnitPoleArcs3x3Rank2.task(), 3.0, 2, beta, samplers.FrobeniusBall(15.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ch = samplers.sample(t, "smc", 2000, n_chains=8, rng=20261207, workers=2, progress=False, kernel="factor")
    left = GibbsUnitPoleArcs3x3Rank2.left_arc(ch.draws).astype(float)
    assert samplers.ess(left) >= 400
    per = left.mean(axis=1)
    se = per.std(ddof=1) / math.sqrt(per.size)  # replicate spread: the SMC weight noise included
    assert abs(per.mean() - exact) <= 4 * se, (per, exact, se)
    assert abs(per.mean() - other) > 4 * se, (per, other, se)
