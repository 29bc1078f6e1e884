"""The solution-set SMC replicates check their own importance sampling (issue 21 item 1; docs/samplers.md §4.2):
PSIS k̂ of the weights, the share of walked draws where the proposal has no mass, and the output draws' piece
shares against the weighted ones. A proposal that misses mass must come out ``converged = False``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import samplers
from samplers import solution_set as ss
from samplers.diagnostics import COVERAGE_MAX, CONSISTENCY_Z_MAX, MISSED_MAX, ConvergenceWarning, khat_max

from exact_solution_sets import HyperbolaArcs3x3Rank2

DEPTH, RADIUS = 3.0, 15.0


def _sample(n_draws=500, n_chains=2):
    s = samplers.SolutionSetSampler(HyperbolaArcs3x3Rank2.task(), DEPTH, 2, window=samplers.FrobeniusBall(RADIUS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ch = s.sample(n_draws, n_chains=n_chains, rng=3, workers=1, progress=False)
    return ch, [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_the_checks_pass_where_the_sampler_is_exact():
    """Positive control: the two-arc set at N = 3, whose left-arc mass the sampler matches (exact quadrature)."""
    ch, _ = _sample()
    assert ch.diagnostics["ess_bulk"] >= 400  # the ESS floor before any statistic
    assert np.all(ch.pareto_k <= khat_max(int(np.min(ch.n_weights)))), ch.pareto_k
    assert np.all(ch.uncovered <= COVERAGE_MAX) and np.all(ch.consistency_z <= CONSISTENCY_Z_MAX)
    assert np.all(ch.missed == 0.0)
    exact = HyperbolaArcs3x3Rank2(DEPTH, RADIUS).arc_fractions[0]
    left = np.mean(ch.draws[:, :, 0, 2] < 2.0, axis=1)
    se = np.sqrt(exact * (1 - exact) / (ch.diagnostics["ess_bulk"] / ch.n_chains))
    assert np.all(np.abs(left - exact) <= 4 * se), (left, exact, se)  # signed shares, per replicate
    assert ch.converged
    from analysis.runner import SampleSet  # the report's summary carries the same numbers, not a recomputation

    summary = SampleSet.from_chains(ch).summary()
    assert summary["importance"] == {k: ch.diagnostics[k] for k in ("pareto_k", "uncovered", "consistency_z", "missed")}
    assert summary["converged"] is True


def test_a_proposal_that_misses_mass_is_not_converged(monkeypatch):
    """Negative control: the kernel centres of the upper half of the set (in X_13) are dropped before the
    importance sampling, so only the defensive kernels' tails reach half of f's mass; R-hat and ESS see nothing,
    the replicates' checks must. The weights there are few and heavy: PSIS k̂ 1.17 and 1.65 (the draws' piece
    shares agree with the weighted ones within the weights' own uncertainty, z 0.7 and 1.6)."""
    original = ss.SolutionSetSampler._mixture_is

    def missing(self, C, n, h, rng, cut=2.5):
        a = C.X[:, 0, 2]
        keep = np.flatnonzero(a < np.quantile(a, 0.5))
        return original(self, C.take(keep[rng.integers(keep.size, size=a.size)]), n, h, rng, cut)

    monkeypatch.setattr(ss.SolutionSetSampler, "_mixture_is", missing)
    ch, messages = _sample()
    assert not ch.converged
    fired = ((ch.pareto_k > khat_max(int(np.min(ch.n_weights)))) | (ch.consistency_z > CONSISTENCY_Z_MAX)
             | (ch.uncovered > COVERAGE_MAX))
    assert np.all(fired), (ch.pareto_k, ch.consistency_z, ch.uncovered)
    assert any("not converged" in m and ("piece shares" in m or "no mass" in m or "k̂" in m) for m in messages), messages


def test_weights_wrong_on_one_arc_fail_the_consistency_check(monkeypatch):
    """Negative control of the consistency check alone: the proposal density is overstated 4× on the left arc
    of the unit-pole two-arc set (N = 5), so the weights put ~0.18 there instead of 0.47, smoothly (k̂ 0.45–0.60
    measured, coverage 0). The final walk is exact for f and crosses between the arcs (step ≈ 8), so the output
    draws move back towards the true share (0.43–0.45 measured): their piece shares disagree with the weighted
    ones, which must fail every replicate."""
    from exact_solution_sets import UnitPoleArcs3x3Rank2

    original = ss.SolutionSetSampler._proposal_log_q

    def overstated(C, G, h, cut=2.5):
        return original(C, G, h, cut) + np.where(G.X[:, 0, 1] < 1.0, np.log(4.0), 0.0)

    monkeypatch.setattr(ss.SolutionSetSampler, "_proposal_log_q", staticmethod(overstated))
    s = samplers.SolutionSetSampler(UnitPoleArcs3x3Rank2.task(), 5.0, 2, window=samplers.FrobeniusBall(RADIUS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ch = s.sample(500, n_chains=2, rng=3, workers=1, progress=False)
    assert np.all(ch.consistency_z > CONSISTENCY_Z_MAX) and not ch.converged, ch.consistency_z
    assert np.all(np.asarray(ch.pieces["++"]) > 0.7)  # the weights are wrong: the right arc's exact share is 0.53
    assert any("piece shares" in str(w.message) for w in caught)


def test_a_proposal_that_misses_a_whole_component_is_not_converged(monkeypatch):
    """Negative control of the "missed" check: every kernel centre on the right arc (a = X_13 > 2, a whole
    component) is dropped before the importance sampling. The SMC stage saw the right arc: its piece "+-"
    (2 < a < 3.67, b < 0; exact mass 0.19 at N = 3) holds that share of the stage's weight and gets almost no
    importance weight, which must fail the replicate whatever the other checks say."""
    original = ss.SolutionSetSampler._mixture_is

    def left_only(self, C, n, h, rng, cut=2.5):
        keep = np.flatnonzero(C.X[:, 0, 2] < 2.0)
        return original(self, C.take(keep[rng.integers(keep.size, size=C.X.shape[0])]), n, h, rng, cut)

    monkeypatch.setattr(ss.SolutionSetSampler, "_mixture_is", left_only)
    ch, messages = _sample()
    assert np.all(ch.missed > 0.1) and ch.diagnostics["missed"] > MISSED_MAX and not ch.converged, ch.missed
    assert any("got no importance weight" in m for m in messages), messages


@pytest.mark.arviz
@pytest.mark.parametrize("logw,expect_large", [(np.random.default_rng(1).normal(size=2000) * 0.5, False),
                                               (np.random.default_rng(2).standard_cauchy(size=2000), True)])
def test_pareto_khat_tells_light_from_heavy_tails(logw, expect_large):
    k = samplers.diagnostics.pareto_khat(logw)
    assert (k > khat_max(logw.size)) == expect_large, k


def test_proposal_density_equals_the_direct_sum_over_kernels():
    """``_proposal_log_q`` evaluates every (point, centre) pair through matrix products and a compiled
    determinant; it must equal the direct sum ``log Σ_f s_f (1/P) Σ_j φ_h(w_j) |det T_jᵀ T_Y| / P(χ²_d <= cut²)``
    over the kernels whose sheet holds the point, written here with per-pair differences and ``np.linalg.det``."""
    import math
    from types import SimpleNamespace

    from scipy import stats

    rng = np.random.default_rng(7)
    P, M, d, m, n, cut = 40, 30, 3, 3, 4, 2.5
    CX = rng.normal(size=(P, m, n))
    CT = np.linalg.qr(rng.normal(size=(P, m * n, d)))[0].transpose(0, 2, 1).reshape(P, d, m, n)
    GX = CX[rng.integers(P, size=M)] + 0.3 * rng.normal(size=(M, m, n))
    GT = np.linalg.qr(rng.normal(size=(M, m * n, d)))[0].transpose(0, 2, 1).reshape(M, d, m, n)
    h = ss.centre_bandwidths(CX)
    got = ss.SolutionSetSampler._proposal_log_q(SimpleNamespace(X=CX, T=CT), SimpleNamespace(X=GX, T=GT), h, cut)
    log_chi = math.log(stats.chi2.cdf(cut * cut, d))
    want = np.full(M, -np.inf)
    for i in range(M):
        total = 0.0
        for f, share in enumerate(ss.KERNEL_SHARES):
            for j in range(P):
                D = (GX[i] - CX[j]).ravel()
                w = CT[j].reshape(d, -1) @ D
                hk = h[f, j]
                if w @ w <= (cut * hk) ** 2 and np.linalg.norm(D) <= 1.5 * cut * hk:
                    det = abs(np.linalg.det(CT[j].reshape(d, -1) @ GT[i].reshape(d, -1).T))
                    total += share / P * math.exp(-0.5 * (w @ w) / hk**2 - log_chi) * det / (2 * math.pi * hk * hk) ** (d / 2)
        want[i] = math.log(total) if total > 0 else -np.inf
    assert np.sum(np.isfinite(want)) >= M // 2  # the check sees points inside some kernels
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-10, atol=1e-10)


def test_a_piece_the_stage_overweighted_is_not_called_lost():
    """Positive control of the "missed" check: on a 5×5 rank-2 set (12 observations, N = 5) the SMC stage of this
    replicate put 111 particles and a share 0.239 of its f/g weight into the piece ``+------+++---``, whose share
    the importance sampling puts at 0.006–0.0135 in 12 replicates (this one 0.0135, with its draws there). The
    piece was covered, not lost: the check failed this replicate before it counted the importance draws."""
    from analysis.tasks import default_radius
    import dlnvolume as dv

    task = dv.tasks.random_low_rank(5, 5, 2, 12, rng=1)
    s = samplers.SolutionSetSampler(task, 5.0, 2, window=samplers.FrobeniusBall(default_radius(task)))
    r = s.smc_replicate(2000, 23)
    assert 0.005 <= r["fractions"]["+------+++---"] <= 0.02
    assert r["missed"] <= MISSED_MAX and r["pareto_k"] <= khat_max(int(r["n_weights"]))
