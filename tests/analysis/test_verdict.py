"""Verdict rows: answers at alpha, the permutation floor, caveats (off-stratum endpoints, non-converged
runs, references failing R-hat / ESS), and the effect-size intervals of the tests behind them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import hypothesis as hyp
from analysis.experiment import parse_config
from analysis.runner import SampleSet
from analysis.statistics import compute_statistics
from analysis.verdict import convergence_advice, format_lines, reference_checks, verdicts

CFG = {"name": "v", "task": {"kind": "diagonal_2x2"}, "flows": {"depths": [3]},
       "references": [{"name": "mc", "measure": "solution_set", "method": "mcmc"}],
       "statistics": {"rtol": 1e-4, "volume_rank": 1}, "tests": {"n_perm": 99, "alpha": 0.05}}


def _hyperbola(a):
    X = np.ones(np.shape(a) + (2, 2))
    X[..., 0, 1], X[..., 1, 0] = a, 1 / np.asarray(a)
    return X


def _res(stuck=False, n_rank2=0, statuses=None):
    cfg = parse_config(CFG)
    rng = np.random.default_rng(0)
    a = rng.uniform(0.6, 1.6, size=(4, 500))
    if stuck:
        a = a + np.arange(4)[:, None]
    draws = _hyperbola(a)
    ss = SampleSet(draws, np.zeros((4, 500)), np.full((4, 500), 0.5), np.full(4, 0.1), {}, {}, "mcmc",
                   np.arange(4, dtype=np.uint64), 100, 1)
    X = _hyperbola(rng.uniform(0.9, 1.1, size=30))
    X[:n_rank2, 0, 1] += 0.5  # det != 0: rank 2, off the rank-1 stratum
    status = np.array(statuses if statuses is not None else ["converged"] * 30)
    keep = status == "converged"
    est = compute_statistics(X, 3, rtol=1e-4, rank=1)
    sst = compute_statistics(draws, 3, rtol=1e-4, rank=1)
    tests = {("distribution", "mc", 3): hyp.distribution_match(
        {"log_volume_density": est.log_volume_density[keep]}, {"log_volume_density": sst.log_volume_density},
        n_perm=99, rng=1)}
    pr = hyp.volume_percentile_test(est.log_volume_density[keep], reference_draws=sst.log_volume_density, iid=False)
    tests[("percentile", "mc", 3)] = [pr.uniform, pr.small]
    return SimpleNamespace(config=cfg, keep={3: keep}, endpoint_stats={3: est},
                           endpoints={3: SimpleNamespace(status=status)}, samples={("mc", 3): ss},
                           sample_stats={("mc", 3): sst}, tests=tests, percentiles={("mc", 3): pr})


def test_converged_reference_gives_answers_and_floor():
    rows = verdicts(_res())
    assert [r.question for r in rows] == ["do endpoints follow the mc measure?",
                                          "do endpoints sit at higher g_N-volume than the mc measure?"]
    follow, high = rows
    assert follow.trusted and follow.reject and follow.answer == "no"
    assert follow.p_floor == pytest.approx(0.01) and follow.at_floor and "(floor)" in follow.p_text()
    assert follow.effect_name == "KS D" and follow.effect_ci[0] <= follow.effect <= follow.effect_ci[1]
    # percentiles from n reference draws resolve probabilities to 1/(n+1): that is the p-value floor
    assert high.effect_name == "mean percentile" and high.p_floor == pytest.approx(1 / (high.n_reference + 1))
    assert follow.caveats == ()
    assert rows[0].ess is not None and rows[0].ess >= 400 and rows[0].rhat <= 1.01


def test_unconverged_reference_is_inconclusive_not_silently_used():
    rows = verdicts(_res(stuck=True))
    for r in rows:
        assert r.answer == "inconclusive" and not r.trusted
        assert any(c.startswith("reference mc failed its convergence check (R-hat") for c in r.caveats)
    chk = reference_checks(_res(stuck=True))[("mc", 3)]
    assert not chk.passed and chk.rhat > 1.01
    # the row says what to change, from what the diagnostics saw (issue 21 item 5)
    assert any("; to fix: the chains sit in different places (R-hat 2.84): longer runs rarely fix that; a tempering "
               "method does (method = 'solution_smc')" in c for c in rows[0].caveats), rows[0].caveats


def test_advice_names_what_failed():
    """Each failing diagnostic gets its own advice; a passing one gets none."""
    ok = SimpleNamespace(method="smc", target={"measure": "solution_set"}, extras={
        "worst_pareto_k": 0.3, "worst_uncovered": 0.0, "worst_consistency_z": 1.0})
    bad = SimpleNamespace(method="smc", target={"measure": "solution_set"}, extras={
        "worst_pareto_k": 0.95, "worst_uncovered": 0.04, "worst_consistency_z": 9.0})
    text = convergence_advice(bad, 1.002, 2000.0, (4, 1000))
    assert "k̂ 0.95" in text and "misses 4.0 %" in text and "|z| 9.0" in text and "R-hat" not in text
    assert convergence_advice(ok, 1.002, 2000.0, (4, 1000)) == "raise draws and warmup"
    rep = convergence_advice(ok, 1.03, 250.0, (4, 500))
    assert rep.startswith("the replicates disagree (R-hat 1.03): raise draws (draws = 1000") and "k̂" not in rep
    assert "ESS 250 < 400: raise draws (e.g. draws = 1000)" in convergence_advice(ok, 1.0, 250.0, (4, 500))
    assert "draws = 5000" in convergence_advice(ok, 1.0, 3.0, (4, 500))  # at most 10 times more


def test_off_stratum_and_non_converged_runs_are_caveats():
    statuses = ["converged"] * 27 + ["max_steps"] * 3
    rows = verdicts(_res(n_rank2=4, statuses=statuses))
    cav = rows[0].caveats
    assert any(c.startswith("N=3: 4 of 27 endpoints are off the tested stratum M_1 (rank 2: 4") for c in cav)
    assert "N=3: 3 of 30 runs did not converge (max_steps: 3); 3 excluded" in cav
    # the old "on M_1 alone" re-test was a selection of runs (on the 2x2 task at N = 2 exactly the det X0 < 0
    # runs), not a check: the stratum answer of the init-scale ladder replaces it (test_no_volume_answer_off_stratum)
    assert not any("alone" in c for c in rows[1].caveats)
    lines = format_lines(rows, parse_config(CFG))
    assert lines[0].startswith("verdict at α = 0.05 (permutation tests: n_perm = 99, floor p = 0.01")
    assert lines[1] == "  N=3\n    caveat: " + cav[0] + "\n    caveat: " + cav[1]


def test_no_tests_says_so():
    assert format_lines([], parse_config(CFG)) == [
        "verdict: no hypothesis test was run (no references or no test families in this experiment)"]


def test_effect_intervals_of_the_tests():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.5, 1, 200), rng.normal(0, 1, 300)
    ks = hyp.ks_test(x, y, n_perm=99, rng=1)
    assert ks.effect_name == "KS D" and ks.effect_ci[0] < ks.effect_size < ks.effect_ci[1] and ks.n_perm == 99
    mw = hyp.null_measure_test(x, y)
    assert mw.effect_name == "AUC" and mw.effect_ci[0] < mw.effect_size < mw.effect_ci[1]
    # the AUC of N(0.5, 1) against N(0, 1) is Φ(0.5/√2) = 0.638
    assert mw.effect_ci[0] < 0.638 < mw.effect_ci[1]
    same = hyp.ks_test(y[:150], y[150:], n_perm=99, rng=1)
    assert not same.at_floor and same.p_value > 0.01


def test_too_short_reference_fails_its_check():
    res = _res()
    ss = res.samples[("mc", 3)]
    short = SampleSet(ss.draws[:, :3], ss.log_density[:, :3], ss.accept_prob[:, :3], ss.step_size, {}, {}, "mcmc",
                      ss.seeds, 0, 1)
    res.samples[("mc", 3)] = short
    res.sample_stats[("mc", 3)] = compute_statistics(short.draws, 3, rtol=1e-4, rank=1)
    chk = reference_checks(res)[("mc", 3)]
    assert not chk.passed and chk.reason == "fewer than 4 draws per chain or non-finite log ρ: no R-hat/ESS"
    assert all(r.answer == "inconclusive" for r in verdicts(res))


def test_fields_a_sampler_adds_later_are_used(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class FutureChains:  # Chains with the fields the samplers will add
        draws: np.ndarray
        log_density: np.ndarray
        accept_prob: np.ndarray
        step_size: np.ndarray
        failures: dict
        target: dict
        method: str
        seeds: np.ndarray
        warmup: int
        thin: int
        rhat: np.ndarray
        converged: np.ndarray
        weights: np.ndarray
        elapsed: np.ndarray  # wall-clock seconds per chain: never kept (two identical runs would differ)

    res = _res()
    ss = res.samples[("mc", 3)]
    ch = FutureChains(ss.draws, ss.log_density, ss.accept_prob, ss.step_size, {}, {}, "mcmc", ss.seeds, 1, 1,
                      np.array([1.05]), np.array([True, False, True, True]), np.ones((4, 500)), np.ones(4))
    s2 = SampleSet.from_chains(ch)
    assert set(s2.extras) == {"rhat", "converged", "weights"}
    s2.save(tmp_path / "s.npz")
    back = SampleSet.load(tmp_path / "s.npz", {}, "mcmc", 1, 1)
    np.testing.assert_array_equal(back.extras["converged"], ch.converged)
    res.samples[("mc", 3)] = back
    chk = reference_checks(res)[("mc", 3)]
    assert not chk.passed and "R-hat 1.050 > 1.01" in chk.reason and "the sampler reports it did not converge" in chk.reason
    from analysis.diagnostics import reference_tree

    tree = reference_tree({3: back}, {3: res.sample_stats[("mc", 3)]}, exact=False, volume_rank=1, rtol=1e-4)
    assert tree["sample_stats"]["weights"].dims == ("depth", "chain", "draw")


def test_reference_note_is_a_caveat():
    res = _res()
    cfg = parse_config({**CFG, "references": [{**CFG["references"][0], "note": "not validated beyond 2x2"}]})
    res.config = cfg
    assert all("reference mc: not validated beyond 2x2" in r.caveats for r in verdicts(res))


def _bias(reached):
    from analysis.ladder import StratumAnswer

    return SimpleNamespace(stratum=StratumAnswer(1, reached, {True: "tends to M_1", False: "ends off M_1",
                                                             None: "undetermined"}[reached]), rank=1)


@settings(max_examples=40, deadline=None)
@given(reached=st.sampled_from([False, None]), shift=st.floats(-0.5, 0.5), seed=st.integers(0, 2**16))
def test_no_volume_answer_off_stratum(reached, shift, seed):
    """Property: whatever the endpoints look like, endpoints that do not reach M_r get no volume answer."""
    res = _res()
    rng = np.random.default_rng(seed)
    X = _hyperbola(rng.uniform(0.9, 1.1, size=30) + shift + 0.6)
    est = compute_statistics(X, 3, rtol=1e-4, rank=1)
    sst = res.sample_stats[("mc", 3)]
    pr = hyp.volume_percentile_test(est.log_volume_density, reference_draws=sst.log_volume_density, iid=False)
    res.tests[("percentile", "mc", 3)] = [pr.uniform, pr.small, pr.large]
    res.percentiles[("mc", 3)] = pr
    res.endpoint_stats[3] = est
    res.bias = {3: _bias(reached)}
    rows = verdicts(res)
    assert rows and all(r.answer == "not asked" for r in rows)
    assert all(any("no volume answer" in c for c in r.caveats) for r in rows)


def test_volume_answer_on_the_stratum_can_go_both_ways():
    """Negative control of the property above: on the stratum the same rows answer, and differently."""
    res = _res()
    res.bias = {3: _bias(True)}
    high = next(r for r in verdicts(res) if r.question.startswith("do endpoints sit"))
    assert high.answer == "yes"
    # endpoints at the low-volume end of the reference: lower, not higher
    X = _hyperbola(np.random.default_rng(1).uniform(1.55, 1.6, size=30))
    est = compute_statistics(X, 3, rtol=1e-4, rank=1)
    pr = hyp.volume_percentile_test(est.log_volume_density, reference_draws=res.sample_stats[("mc", 3)].log_volume_density,
                                    iid=False)
    res.percentiles[("mc", 3)] = pr
    res.tests[("percentile", "mc", 3)] = [pr.uniform, pr.small, pr.large]
    res.endpoint_stats[3] = est
    low = next(r for r in verdicts(res) if r.question.startswith("do endpoints sit"))
    assert low.answer == "no (lower)"


def test_mixed_percentiles_are_not_higher():
    """Issue case: many endpoints in the lowest decile and many in the highest: 'mixed', not 'yes'."""
    u = np.r_[np.full(22, 0.02), np.full(25, 0.5), np.full(13, 0.97)]
    pr = hyp.volume_percentile_test(-u, reference_cdf=lambda v: 1 + v)
    assert pr.small.p_value <= 0.05 and pr.large.p_value <= 0.05
    assert pr.direction(0.05) == "mixed"
    # the reference resolution bounds the p-values: 600 draws cannot give p < 1/601
    r = hyp.volume_percentile_test(np.full(50, 10.0), reference_draws=np.linspace(0, 1, 600))
    assert r.small.p_value == pytest.approx(1 / 601) and r.small.at_floor


def test_many_excluded_runs_make_the_test_conditional():
    """Above CONDITIONAL_SHARE of a depth's runs excluded, the caveat says that the test sees a selection and what
    to raise; at or below it, only the count (3 of 30 is exactly 10 %)."""
    cav = verdicts(_res(statuses=["converged"] * 26 + ["max_steps"] * 4))[0].caveats
    line = next(c for c in cav if "did not converge" in c)
    assert line.startswith("N=3: 4 of 30 runs did not converge (max_steps: 4); 4 excluded; the test sees only the 26")
    assert "a selection" in line and line.endswith("give them more steps, [flows.options] max_steps (now 50000)")
    cav = verdicts(_res(statuses=["converged"] * 27 + ["max_steps"] * 3))[0].caveats
    assert "N=3: 3 of 30 runs did not converge (max_steps: 3); 3 excluded" in cav


def test_default_keeps_only_converged_runs():
    """A run stopped by max_steps or max_time is a state on the way, not an endpoint: excluded unless the config
    keeps it (razin-cohen-2x2 does, on purpose)."""
    from analysis.runner import _kept

    X = np.ones((4, 2, 2))
    ep = SimpleNamespace(status=np.array(["converged", "max_steps", "max_time", "stalled"]), X=X, flagged=None)
    cfg = parse_config({"name": "k", "task": {"kind": "diagonal_2x2"}, "flows": {"depths": [3]}})
    assert _kept(cfg, ep).tolist() == [True, False, False, False]
    cfg = parse_config({"name": "k", "task": {"kind": "diagonal_2x2"},
                        "flows": {"depths": [3], "keep_status": ["converged", "max_steps"]}})
    assert _kept(cfg, ep).tolist() == [True, True, False, False]


def test_a_depth_without_kept_runs_is_named_in_the_verdict():
    """A depth whose runs were all left out (5×5 rank 2 at N = 20: 98 converged but unresolved in float64, 102 at
    max_steps) gets a line saying why there is no test, instead of going missing from the printed verdict."""
    import dataclasses

    res = _res()
    rows = verdicts(res)
    cfg = dataclasses.replace(res.config, depths=(3, 20))
    status = np.array(["converged"] * 10 + ["max_steps"] * 12)
    res.keep[20] = np.zeros(22, dtype=bool)
    res.endpoints[20] = SimpleNamespace(status=status, flagged=status == "converged")
    lines = format_lines(rows, cfg, res=res)
    assert lines[-1] == ("  N=20: no test — 0 of 22 runs kept (converged: 10, max_steps: 12; 10 converged runs flagged "
                         "(unresolved in float64, or moved at a tighter rtol: the report's notes say which))")
    # most converged runs unresolved: the advice names the init law (measured: 32 of 32 resolved with it)
    res.endpoints[20].unresolved = status == "converged"
    assert format_lines(rows, cfg, res=res)[-1].endswith(
        'most converged runs are unresolved: [flows.options] init_law = "gaussian_matrix" starts every depth at '
        "σ_min/σ_1 far above 1e-10)")
    assert sum("no test" in x for x in lines) == 1  # N=3 has its answers
    only = format_lines([], dataclasses.replace(cfg, depths=(20,)), res=res)
    assert only[0].startswith("verdict at α = 0.05: no depth has runs to test") and only[1].startswith("  N=20: no test")
