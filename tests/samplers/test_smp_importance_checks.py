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
    importance sampling, so the proposal has no mass where half of f's mass is; R-hat and ESS see nothing
    (both replicates make the same error), the replicates' checks must."""
    original = ss.SolutionSetSampler._mixture_is

    def missing(self, C, n, h, rng, cut=2.5):
        a = C.X[:, 0, 2]
        keep = np.flatnonzero(a < np.quantile(a, 0.5))
        return original(self, C.take(keep[rng.integers(keep.size, size=a.size)]), n, h, rng, cut)

    monkeypatch.setattr(ss.SolutionSetSampler, "_mixture_is", missing)
    ch, messages = _sample()
    assert not ch.converged
    assert ch.diagnostics["consistency_z"] > CONSISTENCY_Z_MAX or ch.diagnostics["uncovered"] > COVERAGE_MAX
    assert any("not converged" in m and ("piece shares" in m or "no mass" in m or "k̂" in m) for m in messages), messages


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
