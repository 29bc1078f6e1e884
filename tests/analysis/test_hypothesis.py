"""Calibration (uniform p-values under the null), power against shifts, ESS, error messages."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis import hypothesis as hyp
from dlnvolume.errors import InvalidArgumentError, ShapeError

SEED = 777
REPS = 200
N = 25
B = 99  # permutations; a permutation p-value <= 0.05 has probability exactly 5/100 under the null


def _binom_ok(k: int, n: int, p: float = 0.05) -> float:
    return stats.binomtest(k, n, p).pvalue


def _null_rejections(fn, rng) -> int:
    k = 0
    for _ in range(REPS):
        if fn(rng) <= 0.05:
            k += 1
    return k


CASES = {
    "ks": lambda g: hyp.ks_test(g.standard_normal(N), g.standard_normal(N + 7), n_perm=B, rng=g).p_value,
    "ad": lambda g: hyp.ad_test(g.standard_normal(N), g.standard_normal(N + 7), n_perm=B, rng=g).p_value,
    "energy": lambda g: hyp.energy_test(g.standard_normal((N, 2)), g.standard_normal((N + 7, 2)), n_perm=B, rng=g).p_value,
    "mannwhitney": lambda g: hyp.null_measure_test(g.standard_normal(N), g.standard_normal(N + 7)).p_value,
    "percentile_small": lambda g: hyp.volume_percentile_test(g.standard_normal(N), reference_cdf=stats.norm.cdf).small.p_value,
    "percentile_uniform": lambda g: hyp.volume_percentile_test(g.standard_normal(N), reference_cdf=stats.norm.cdf).uniform.p_value,
}

SHIFTED = {
    "ks": lambda g: hyp.ks_test(g.standard_normal(N) + 1.5, g.standard_normal(N + 7), n_perm=B, rng=g).p_value,
    "ad": lambda g: hyp.ad_test(g.standard_normal(N) + 1.5, g.standard_normal(N + 7), n_perm=B, rng=g).p_value,
    "energy": lambda g: hyp.energy_test(g.standard_normal((N, 2)) + [1.5, 0], g.standard_normal((N + 7, 2)), n_perm=B, rng=g).p_value,
    "mannwhitney": lambda g: hyp.null_measure_test(g.standard_normal(N) + 1.5, g.standard_normal(N + 7)).p_value,
    # higher log volume than the reference -> percentiles near 0
    "percentile_small": lambda g: hyp.volume_percentile_test(g.standard_normal(N) + 1.5, reference_cdf=stats.norm.cdf).small.p_value,
    "percentile_uniform": lambda g: hyp.volume_percentile_test(g.standard_normal(N) + 1.5, reference_cdf=stats.norm.cdf).uniform.p_value,
}


@pytest.mark.parametrize("name", list(CASES))
def test_calibration_rejection_rate(name):
    """Same distribution for both samples: P(p ≤ 0.05) = 0.05; binomial test of the count over 200 repetitions."""
    rng = np.random.default_rng([SEED, list(CASES).index(name)])
    k = _null_rejections(CASES[name], rng)
    assert _binom_ok(k, REPS) > 0.001, f"{name}: {k}/{REPS} rejections at 5%"


@pytest.mark.parametrize("name", list(SHIFTED))
def test_power_against_shift(name):
    """Shift of 1.5 sd, n = 25 vs 32: every test rejects in at least 80% of 50 repetitions.

    (Power of the t-test here is > 0.99; the rank/distance tests lose some, none below ~0.9.)
    """
    rng = np.random.default_rng([SEED, 100 + list(SHIFTED).index(name)])
    k = sum(SHIFTED[name](rng) <= 0.05 for _ in range(50))
    assert k >= 40, f"{name}: power {k}/50"


def test_negative_direction_is_not_rejected_by_one_sided_tests():
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal(40) - 1.5
    assert hyp.null_measure_test(x, rng.standard_normal(40)).p_value > 0.5
    assert hyp.volume_percentile_test(x, reference_cdf=stats.norm.cdf).small.p_value > 0.5


def test_ks_statistic_matches_scipy_with_ties():
    rng = np.random.default_rng(SEED)
    x, y = rng.integers(0, 4, 30).astype(float), rng.integers(0, 4, 41).astype(float)
    assert hyp.ks_test(x, y, n_perm=19, rng=1).statistic == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)
    x, y = rng.standard_normal(30), rng.standard_normal(41)
    assert hyp.ks_test(x, y, n_perm=19, rng=1).statistic == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)


def test_energy_statistic_matches_scipy_in_one_dimension():
    """scipy.stats.energy_distance = sqrt(2E|X-Y| - E|X-X'| - E|Y-Y'|) = sqrt(E) (V-statistics)."""
    rng = np.random.default_rng(SEED)
    x, y = rng.standard_normal(20), rng.standard_normal(30) + 0.5
    E = hyp.energy_test(x, y, n_perm=19, rng=1).statistic
    assert np.sqrt(E) == pytest.approx(stats.energy_distance(x, y), rel=1e-10)


def _ar1(phi, chains, n, rng):
    x = np.empty((chains, n))
    x[:, 0] = rng.standard_normal(chains) / np.sqrt(1 - phi**2)
    e = rng.standard_normal((chains, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def test_ess_of_ar1_matches_theory():
    """AR(1): ESS = C n (1 − φ)/(1 + φ); iid: ESS ≈ C n. Tolerance 20% (sd of the estimator is ~5% here)."""
    rng = np.random.default_rng(SEED)
    for phi in (0.0, 0.5, 0.9):
        x = _ar1(phi, 4, 5000, rng)
        expected = 4 * 5000 * (1 - phi) / (1 + phi)
        assert hyp.ess(x) == pytest.approx(expected, rel=0.2)


def test_thin_to_ess_and_distribution_match():
    rng = np.random.default_rng(SEED)
    y = _ar1(0.9, 4, 2000, rng)
    kept, e = hyp.thin_to_ess(y)
    assert kept.ndim == 1 and abs(kept.size - e) <= 4 + 0.1 * e
    res = hyp.distribution_match({"s": rng.standard_normal(50)}, {"s": y / np.sqrt(1 / (1 - 0.81))},
                                 vector={"v": (rng.standard_normal((50, 2)), rng.standard_normal((4, 100, 2)))},
                                 n_perm=99, rng=1)
    assert [r.name for r in res] == ["ks:s", "ad:s", "energy:v"]
    for r in res:
        assert r.p_adjusted is not None and r.p_adjusted >= r.p_value - 1e-15
        assert r.ess_used is not None and r.ess_used > 0


def test_percentiles_from_draws_agree_with_exact_cdf():
    rng = np.random.default_rng(SEED)
    v = rng.standard_normal(30)
    ref = rng.standard_normal(20000)
    a = hyp.volume_percentile_test(v, reference_draws=ref).percentiles
    b = hyp.volume_percentile_test(v, reference_cdf=stats.norm.cdf).percentiles
    # binomial sd of an empirical tail probability with 20000 draws is <= 0.0036
    np.testing.assert_allclose(a, b, atol=4 * 0.0036)
    r = hyp.volume_percentile_test(v, reference_cdf=stats.norm.cdf, bins=5)
    assert r.counts.sum() == 30 and r.counts.shape == (5,)


def test_errors_name_the_argument():
    with pytest.raises(ShapeError, match="x has shape"):
        hyp.ks_test([1.0], [1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match="y has NaN"):
        hyp.ad_test([1.0, 2.0], [np.nan, 1.0])
    with pytest.raises(InvalidArgumentError, match="exactly one of reference_draws= or reference_cdf="):
        hyp.volume_percentile_test([1.0, 2.0])
    with pytest.raises(ShapeError, match="expected equal"):
        hyp.energy_test(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ShapeError, match="expected \\(chains, draws\\)"):
        hyp.ess(np.zeros(10))
