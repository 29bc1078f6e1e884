"""Exponential-tilt laws (analysis.laws): recovery of known tilts, coverage, model selection, Monte Carlo
error, collinearity, unbounded fits, the θ̂ trend along a scale ladder, and every error message.

Expected values come from closed forms: the tilt ``e^{θ t} N(0, 1)`` is ``N(θ, 1)`` and
``e^{θ t} Exp(1)`` is ``Exp(1 − θ)`` (θ < 1); the Fisher information of one endpoint is
``Var_θ(T)`` (1 and ``1/(1 − θ)²``), so ``se(θ̂) = 1/√(n Var_θ(T))``; for ``T ~ N(0, 1)`` and
``w = e^{θT}``, ``Var(w)/E[w]² = e^{θ²} − 1`` and the Kish ESS is ``M E[w]²/E[w²] = M e^{−θ²}``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from analysis import laws
from analysis.laws import compare_laws, fit_tilt, theta_trend
from dlnvolume.errors import InvalidArgumentError, NonFiniteError, ShapeError

SEED = 20261129


def _loglik(theta: float, t: np.ndarray, u: np.ndarray) -> float:
    """The definition ℓ(θ) = θ Σ t − n log mean exp(θ u), written independently of the module."""
    a = theta * u.reshape(-1)
    m = a.max()
    return theta * t.sum() - t.size * (m + np.log(np.mean(np.exp(a - m))))


def _ar1(rng: np.random.Generator, phi: float, chains: int, draws: int) -> np.ndarray:
    """Stationary Gaussian AR(1) chains with unit variance: x_k = φ x_{k−1} + √(1 − φ²) ε_k."""
    x = np.empty((chains, draws))
    x[:, 0] = rng.standard_normal(chains)
    eps = rng.standard_normal((chains, draws)) * math.sqrt(1 - phi**2)
    for k in range(1, draws):
        x[:, k] = phi * x[:, k - 1] + eps[:, k]
    return x


# --------------------------------------------------------------------------- recovery of a known tilt
def test_gaussian_tilt_recovered():
    g = np.random.default_rng([SEED, 1])
    n, M, theta0 = 200, 20000, 0.7
    u = g.standard_normal(M)
    t = g.normal(theta0, 1.0, n)  # e^{0.7 t} N(0, 1) = N(0.7, 1)
    fit = fit_tilt(t, u, statistic="T")
    se = 1 / math.sqrt(n)  # Var_θ(T) = 1
    assert abs(fit.theta - theta0) <= 4 * se
    # with the exact Z(θ) = e^{θ²/2} the MLE is mean(t); Ẑ from M draws moves it by the self-normalized
    # importance-sampling error of E_θ[T]: sd ≈ √(e^{θ²}(1 + θ²)/M) = 0.011, 4 sd = 0.045
    assert abs(fit.theta - t.mean()) <= 0.045
    lo, hi = fit.theta_ci
    assert lo < fit.theta < hi
    # profile interval ≈ θ̂ ± 1.96/√(n Var_θ̂ T) = θ̂ ± 1.96/√n (quadratic log-likelihood)
    assert (hi - lo) == pytest.approx(2 * 1.959964 / math.sqrt(n), rel=0.10)
    # the result is the definition: ℓ at θ̂, its maximum, the score equation and the χ² drop at the ends
    assert fit.loglik == pytest.approx(_loglik(fit.theta, t, u), rel=1e-9)
    assert _loglik(fit.theta + 0.01, t, u) < fit.loglik > _loglik(fit.theta - 0.01, t, u)
    w = np.exp(fit.theta * u)
    assert np.sum(w * u) / np.sum(w) == pytest.approx(t.mean(), abs=1e-9)
    for end in fit.theta_ci:
        assert 2 * (fit.loglik - _loglik(end, t, u)) == pytest.approx(3.841459, abs=1e-6)
    assert fit.aic == pytest.approx(-2 * fit.loglik + 2)
    assert fit.loglik_per_endpoint == pytest.approx(fit.loglik / n)
    # Monte Carlo error and Kish ESS against the lognormal closed forms
    assert fit.loglik_se == pytest.approx(n * math.sqrt((math.exp(fit.theta**2) - 1) / M), rel=0.15)
    assert fit.weight_ess == pytest.approx(M * math.exp(-fit.theta**2), rel=0.05)
    assert fit.reference_ess == M and fit.n_reference == M and fit.n_endpoints == n
    assert fit.reliable and not fit.unbounded and fit.note == "" and fit.delta_aic is None


def test_exponential_tilt_recovered():
    """Reference Exp(1); the tilt e^{−1.5 t} Exp(1) is Exp(2.5); se(θ̂) = 1/√(n Var_θ₀ T) = 2.5/√n."""
    g = np.random.default_rng([SEED, 2])
    n, M, theta0 = 200, 20000, -1.5
    u = g.exponential(1.0, M)
    t = g.exponential(1 / 2.5, n)
    fit = fit_tilt(t, u, statistic="E")
    se = (1 - theta0) / math.sqrt(n)  # 4/√n in the unit-variance Gaussian case
    assert abs(fit.theta - theta0) <= 4 * se
    # exact Z(θ) = 1/(1 − θ) gives the MLE 1 − 1/mean(t); the reference error of E_θ[T] has variance
    # E[w²(T − μ)²]/(M E[w]²) = 0.133/M, i.e. an sd of 0.0026/Var_θ(T) = 0.016 on θ̂; 4 sd = 0.065
    assert abs(fit.theta - (1 - 1 / t.mean())) <= 0.065
    assert fit.theta_ci[0] < fit.theta < fit.theta_ci[1]
    assert fit.loglik == pytest.approx(_loglik(fit.theta, t, u), rel=1e-9)
    assert fit.reliable


@pytest.mark.parametrize(
    "theta0, ref, quantile",
    [
        (0.7, lambda g, M: g.standard_normal(M), lambda p: stats.norm.ppf(p, loc=0.7)),
        (-1.5, lambda g, M: g.exponential(1.0, M), lambda p: stats.expon.ppf(p, scale=1 / 2.5)),
    ],
    ids=["gaussian", "exponential"],
)
def test_interval_contains_theta0_on_a_representative_sample(theta0, ref, quantile):
    """Endpoints at the quantiles (i − ½)/n of the tilted law: a sample without sampling luck (its mean is
    the law's mean up to O(log n / n²)), so θ̂ = θ₀ up to the reference error (4 sd ≤ 0.065, see above) and
    the 95 % interval must contain θ₀. Whether it does so 95 % of the time is test_coverage_… below."""
    n, M = 200, 20000
    t = quantile((np.arange(n) + 0.5) / n)
    fit = fit_tilt(t, ref(np.random.default_rng([SEED, 15]), M), statistic="T")
    assert abs(fit.theta - theta0) <= 0.075
    assert fit.theta_ci[0] < theta0 < fit.theta_ci[1]


def test_coverage_of_the_profile_interval():
    """40 seeds, θ₀ = 0.7, n = 200, M = 10000 i.i.d. reference draws: the 95 % interval must cover θ₀ in
    at least 32. With nominal coverage 0.95, P(Bin(40, 0.95) ≤ 31) = 1.3e-4 (scipy.stats.binom.cdf), so a
    calibrated interval fails this test about once in 8000 seeds; an interval of nominal 80 % fails it half
    the time (mean 32)."""
    covered = 0
    for k in range(40):
        g = np.random.default_rng([SEED, 3, k])
        fit = fit_tilt(g.normal(0.7, 1.0, 200), g.standard_normal(10000), statistic="T")
        covered += fit.theta_ci[0] <= 0.7 <= fit.theta_ci[1]
    assert covered >= 32, f"covered {covered}/40"


# --------------------------------------------------------------------------- negative controls
def test_negative_control_endpoints_from_the_reference():
    """θ₀ = 0: 2ℓ(θ̂) ~ χ²₁, so ΔAIC(tilt − base) = 2 − χ²₁ > −4 with probability 1 − P(χ²₁ > 6) = 0.986 and
    the interval covers 0 with probability 0.95. Over 20 seeds we require ≥ 18 and ≥ 16:
    P(Bin(20, 0.986) ≤ 17) = 0.0026 and P(Bin(20, 0.95) ≤ 15) = 0.0026."""
    aic_ok = covered = 0
    for k in range(20):
        g = np.random.default_rng([SEED, 4, k])
        cmp = compare_laws({"T": g.standard_normal(200)}, {"T": g.standard_normal(10000)}, iid=True)
        fit = cmp.fits["T"]
        aic_ok += (fit.aic - cmp.fits["reference"].aic) > -4
        covered += fit.theta_ci[0] <= 0.0 <= fit.theta_ci[1]
    assert aic_ok >= 18 and covered >= 16, (aic_ok, covered)


def test_negative_control_a_real_tilt_is_not_fitted_as_zero():
    """Endpoints from N(0.7, 1): E[2ℓ(θ̂)] ≈ n θ₀² = 98, so the tilt beats the base law by ~96 AIC units."""
    g = np.random.default_rng([SEED, 5])
    cmp = compare_laws({"T": g.normal(0.7, 1.0, 200)}, {"T": g.standard_normal(10000)})
    fit = cmp.fits["T"]
    assert fit.theta_ci[0] > 0.3
    assert fit.aic - cmp.fits["reference"].aic < -10
    assert cmp.best == "T"


# --------------------------------------------------------------------------- model selection
@pytest.mark.parametrize("true", ["T1", "T2"])
def test_compare_laws_picks_the_true_tilt(true):
    """(T1, T2) independent N(0, 1); the tilt by T_true with θ₀ = 0.5 makes T_true ~ N(0.5, 1) and leaves
    the other N(0, 1). The wrong law loses about n θ₀² = 50 AIC units."""
    g = np.random.default_rng([SEED, 6])
    n, M = 200, 20000
    ref = {"T1": g.standard_normal(M), "T2": g.standard_normal(M)}
    ends = {k: g.normal(0.5, 1.0, n) if k == true else g.standard_normal(n) for k in ("T1", "T2")}
    other = "T2" if true == "T1" else "T1"
    cmp = compare_laws(ends, ref, iid=True)
    assert cmp.best == true
    assert list(cmp.fits) == ["reference", "T1", "T2"]
    assert cmp.fits[true].delta_aic == 0.0
    assert cmp.fits[other].delta_aic > 10
    assert cmp.fits["reference"].delta_aic > 10
    assert cmp.fits["reference"].statistic == "none" and cmp.fits["reference"].aic == 0.0
    assert cmp.fits["reference"].theta == 0.0
    assert cmp.collinear == []
    d = cmp.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["best"] == true


def test_compare_laws_no_best_when_laws_are_indistinguishable():
    """T2 = T1 + tiny noise: both tilts fit alike (|ΔAIC| ≪ 2), so no law is separated; the pair is collinear."""
    g = np.random.default_rng([SEED, 7])
    u1 = g.standard_normal(5000)
    t1 = g.normal(0.5, 1.0, 200)
    ref = {"T1": u1, "T2": u1 + 1e-3 * g.standard_normal(5000)}
    ends = {"T1": t1, "T2": t1 + 1e-3 * g.standard_normal(200)}
    cmp = compare_laws(ends, ref)
    assert cmp.best is None
    assert "not more than" in cmp.note
    assert [(a, b) for a, b, _ in cmp.collinear] == [("T1", "T2")]


def test_compare_laws_no_best_when_a_fit_is_unbounded():
    g = np.random.default_rng([SEED, 8])
    cmp = compare_laws({"T": g.normal(10.0, 1.0, 50)}, {"T": g.standard_normal(500)})
    assert cmp.fits["T"].unbounded
    assert cmp.best is None and "unbounded" in cmp.note


# --------------------------------------------------------------------------- collinearity
def test_collinear_pairs():
    """Spearman ρ of a monotone transform is exactly ±1; of independent draws ≈ 0 (sd 1/√M)."""
    g = np.random.default_rng([SEED, 9])
    M = 3000
    u1 = g.standard_normal(M)
    ref = {"T1": u1, "expT1": np.exp(u1), "negT1": -u1**3, "indep": g.standard_normal(M)}
    ends = {k: g.standard_normal(100) for k in ref}
    cmp = compare_laws(ends, ref, iid=True)
    pairs = {(a, b): r for a, b, r in cmp.collinear}
    assert set(pairs) == {("T1", "expT1"), ("T1", "negT1"), ("expT1", "negT1")}
    assert pairs[("T1", "expT1")] == pytest.approx(1.0)
    assert pairs[("T1", "negT1")] == pytest.approx(-1.0)
    # a threshold of 1 reports nothing (|ρ| > 1 is impossible)
    assert compare_laws(ends, ref, iid=True, collinear_threshold=1.0).collinear == []


# --------------------------------------------------------------------------- unbounded MLE
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_unbounded_mle(side):
    g = np.random.default_rng([SEED, 10])
    u = g.standard_normal(1000)
    t = side * (u.max() if side > 0 else -u.min()) + side * g.uniform(0.1, 1.0, 30)  # all beyond the extreme
    fit = fit_tilt(t, u, statistic="T")
    assert fit.unbounded and not fit.reliable
    assert fit.theta == side * math.inf
    assert fit.theta_ci[1 if side > 0 else 0] == side * math.inf
    assert math.isfinite(fit.theta_ci[0 if side > 0 else 1])
    values = [v for v in fit.to_dict().values() if isinstance(v, float)]
    assert not any(math.isnan(v) for v in values + [fit.loglik, fit.loglik_se, fit.weight_ess, fit.aic])
    assert math.isfinite(fit.loglik)
    # a lower bound: ℓ keeps increasing beyond the reported edge
    edge = fit.theta_ci[0 if side > 0 else 1]  # a finite θ, on the way towards the edge
    assert _loglik(edge, t, u) < fit.loglik < _loglik(side * 1e3, t, u)
    assert "lower bound" in fit.note
    d = fit.to_dict()
    assert d["theta"] == ("inf" if side > 0 else "-inf")
    json.dumps(d, allow_nan=False)


def test_unbounded_when_mean_equals_the_extreme_draw():
    """mean t = max u exactly: ℓ'(θ) = n(t̄ − E_θ T) > 0 for every θ, so the MLE is at +inf."""
    u = np.arange(20, dtype=float)
    fit = fit_tilt(np.full(5, 19.0), u, statistic="T")
    assert fit.unbounded and fit.theta == math.inf


def test_finite_but_unreliable_fit():
    """mean t just inside the largest reference draw: the MLE is finite but the tilt weights sit on a few
    draws, so the fit is flagged and compare_laws names no best law."""
    g = np.random.default_rng([SEED, 16])
    u = g.standard_normal(200)
    t = np.full(10, np.sort(u)[-1] - 0.1) + np.linspace(-0.01, 0.01, 10)
    fit = fit_tilt(t, u, statistic="T")
    assert math.isfinite(fit.theta) and fit.theta > 2 and not fit.unbounded
    assert fit.weight_ess < 30 and not fit.reliable
    assert "Kish ESS of the tilt weights" in fit.note
    cmp = compare_laws({"T": t}, {"T": u})
    assert cmp.best is None and "unreliable" in cmp.note


# --------------------------------------------------------------------------- MCMC-shaped reference
def test_mcmc_reference_ess_and_monte_carlo_error():
    """4 chains × 500 draws of AR(1), φ = 0.9: ESS ≈ M(1 − φ)/(1 + φ) = 2000/19 ≈ 105. The MC s.e. of ℓ
    must be larger than for i.i.d. draws of the same size (by ≈ √19 ≈ 4.4; we require 2) and must match the
    spread of ℓ(θ̂) over independent reference replicates, which the i.i.d. formula underestimates."""
    g = np.random.default_rng([SEED, 11])
    t = g.normal(0.5, 1.0, 200)
    x = _ar1(g, 0.9, 4, 500)
    mc = fit_tilt(t, x, statistic="T")
    assert 40 < mc.reference_ess < 300
    iid = fit_tilt(t, g.standard_normal(2000), statistic="T")
    assert iid.reference_ess == 2000
    assert mc.loglik_se > 2 * iid.loglik_se
    assert fit_tilt(t, x, statistic="T", iid=True).reference_ess == 2000

    lls, ses, naive = [], [], []
    for k in range(40):
        gk = np.random.default_rng([SEED, 12, k])
        xk = _ar1(gk, 0.9, 4, 500)
        f = fit_tilt(t, xk, statistic="T")
        lls.append(f.loglik)
        ses.append(f.loglik_se)
        naive.append(fit_tilt(t, xk, statistic="T", iid=True).loglik_se)
    sd = float(np.std(lls, ddof=1))  # relative error of an sd from 40 replicates ≈ 1/√78 ≈ 11 %
    assert 0.6 < np.mean(ses) / sd < 1.6, (np.mean(ses), sd)
    assert np.mean(naive) / sd < 0.5


def test_iid_monte_carlo_error_matches_replicates():
    g = np.random.default_rng([SEED, 13])
    t = g.normal(0.7, 1.0, 200)
    lls, ses = [], []
    for k in range(40):
        f = fit_tilt(t, np.random.default_rng([SEED, 14, k]).standard_normal(5000), statistic="T")
        lls.append(f.loglik)
        ses.append(f.loglik_se)
    sd = float(np.std(lls, ddof=1))
    assert 0.6 < np.mean(ses) / sd < 1.6, (np.mean(ses), sd)


# --------------------------------------------------------------------------- θ̂ along a scale ladder
def test_theta_trend_collapsing_ladder():
    s = np.array([1.0, 0.5, 0.25, 0.125, 0.0625])
    r = theta_trend(s, 3.0 * s**-0.5)
    assert r["slope"] == pytest.approx(-0.5)
    assert r["collapsing"] is True
    assert r["ratio"] == pytest.approx(4.0)  # (1/0.0625)^0.5
    # order of the ladder does not matter; negative θ̂ collapse the same way
    assert theta_trend(s[::-1], -3.0 * s[::-1] ** -0.5)["collapsing"] is True


def test_theta_trend_constant_is_not_collapsing():
    s = np.array([1.0, 0.5, 0.25, 0.125])
    r = theta_trend(s, np.full(4, 1.3))
    assert r["slope"] == pytest.approx(0.0, abs=1e-12)
    assert r["collapsing"] is False and r["ratio"] == pytest.approx(1.0)


def test_theta_trend_rules():
    s = np.array([1.0, 0.5, 0.25, 0.125])
    # unbounded at the smallest scale
    assert theta_trend(s, [0.5, 1.0, 2.0, math.inf])["collapsing"] is True
    # grows 4x but not monotonically
    r = theta_trend(s, [0.5, 3.0, 1.0, 2.0])
    assert r["collapsing"] is False and "monotone" in r["note"]
    # monotone but only 1.5x
    assert theta_trend(s, [1.0, 1.1, 1.3, 1.5])["collapsing"] is False
    # overlapping intervals at the ends
    th = np.array([0.5, 1.0, 1.5, 2.5])
    wide = np.column_stack([th - 3, th + 3])
    assert theta_trend(s, th)["collapsing"] is True
    r = theta_trend(s, th, ci=wide)
    assert r["collapsing"] is False and "overlap" in r["note"]


# --------------------------------------------------------------------------- error messages
U = np.random.default_rng(0).standard_normal(50)
T = np.random.default_rng(1).standard_normal(10)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(endpoint_values=[1.0, np.nan], reference_values=U), NonFiniteError,
         r"endpoint_values has NaN or infinite entries; expected finite"),
        (dict(endpoint_values=T, reference_values=np.append(U, np.inf)), NonFiniteError,
         r"reference_values has NaN or infinite entries; expected finite"),
        (dict(endpoint_values=[1.0], reference_values=U), ShapeError,
         r"endpoint_values has shape \(1,\); expected \(n,\) with n >= 2"),
        (dict(endpoint_values=np.ones((2, 3)), reference_values=U), ShapeError,
         r"endpoint_values has shape \(2, 3\); expected \(n,\)"),
        (dict(endpoint_values=T, reference_values=U[:9]), ShapeError,
         r"reference_values has shape \(1, 9\), 9 draws; expected at least 10 draws"),
        (dict(endpoint_values=T, reference_values=np.ones((2, 3, 4))), ShapeError,
         r"reference_values has shape \(2, 3, 4\); expected \(chains, draws\) or \(M,\)"),
        (dict(endpoint_values=T, reference_values=U.reshape(25, 2)), ShapeError,
         r"2 draws per chain; expected at least 4 per chain .*iid=True"),
        (dict(endpoint_values=T, reference_values=np.ones(20)), InvalidArgumentError,
         r"reference_values is constant \(1.0\); expected a statistic that varies"),
        (dict(endpoint_values=["a", "b"], reference_values=U), ShapeError,
         r"endpoint_values could not be converted to a float array"),
        (dict(endpoint_values=T, reference_values=U, statistic=""), InvalidArgumentError,
         r"statistic='' is not a non-empty string"),
        (dict(endpoint_values=T, reference_values=U, statistic=3), InvalidArgumentError,
         r"statistic=3 is not a non-empty string"),
        (dict(endpoint_values=T, reference_values=U, iid="yes"), InvalidArgumentError,
         r"iid='yes' is not a bool; expected True or False"),
    ],
)
def test_fit_tilt_errors(kwargs, exc, match):
    kwargs.setdefault("statistic", "T")
    with pytest.raises(exc, match=match):
        fit_tilt(**kwargs)


def test_fit_tilt_accepts_mcmc_shape_with_iid():
    """2 draws per chain is fine when the draws are declared independent."""
    assert fit_tilt(T, U.reshape(25, 2), statistic="T", iid=True).reference_ess == 50


@pytest.mark.parametrize(
    "endpoints, reference, kwargs, exc, match",
    [
        ([1, 2], {"T": U}, {}, InvalidArgumentError, r"endpoints=\[1, 2\] is not a mapping"),
        ({"T": T}, U, {}, InvalidArgumentError, r"reference=array\(.* is not a mapping"),
        ({}, {}, {}, InvalidArgumentError, r"endpoints is empty; expected at least one statistic"),
        ({"T": T}, {"S": U}, {}, InvalidArgumentError,
         r"endpoints has statistics \['T'\] but reference has \['S'\]; expected the same names"),
        ({"reference": T}, {"reference": U}, {}, InvalidArgumentError, r"'reference'.*reserved for the base law"),
        ({"T": T, "S": T[:5]}, {"T": U, "S": U}, {}, ShapeError,
         r"endpoints arrays have lengths \[5, 10\]; expected the same n"),
        ({"T": T, "S": T}, {"T": U, "S": U[:20]}, {}, ShapeError,
         r"reference arrays have shapes .*; expected one shape"),
        ({"T": [np.nan, 1.0]}, {"T": U}, {}, NonFiniteError, r"endpoints\['T'\] has NaN or infinite entries"),
        ({"T": T}, {"T": np.full(20, np.nan)}, {}, NonFiniteError, r"reference\['T'\] has NaN or infinite"),
        ({"T": T}, {"T": U}, {"collinear_threshold": 0.0}, InvalidArgumentError,
         r"collinear_threshold=0.0; expected a number in \(0, 1\]"),
        ({"T": T}, {"T": U}, {"collinear_threshold": 1.5}, InvalidArgumentError,
         r"collinear_threshold=1.5; expected a number in \(0, 1\]"),
        ({"T": T}, {"T": U}, {"iid": 1}, InvalidArgumentError, r"iid=1 is not a bool"),
        ({3: T}, {3: U}, {}, InvalidArgumentError, r"statistic name=3 is not a non-empty string"),
    ],
)
def test_compare_laws_errors(endpoints, reference, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        compare_laws(endpoints, reference, **kwargs)


@pytest.mark.parametrize(
    "scales, thetas, ci, exc, match",
    [
        ([1.0], [1.0], None, ShapeError, r"scales has shape \(1,\); expected \(k,\) with k >= 2"),
        ([1.0, 0.5], [1.0, 2.0, 3.0], None, ShapeError, r"thetas has shape \(3,\); expected \(2,\), one per scale"),
        ([1.0, np.nan], [1.0, 2.0], None, NonFiniteError, r"scales has NaN or infinite entries"),
        ([1.0, 0.0], [1.0, 2.0], None, InvalidArgumentError, r"scales has entries <= 0 \(min 0.0\); expected scales > 0"),
        ([1.0, 1.0], [1.0, 2.0], None, InvalidArgumentError, r"scales has repeated values; expected distinct"),
        ([1.0, 0.5], [1.0, np.nan], None, NonFiniteError, r"thetas has NaN entries; expected finite values or \+-inf"),
        ([1.0, 0.5], [1.0, 2.0], [[0, 1]], ShapeError, r"ci has shape \(1, 2\); expected \(2, 2\)"),
        ([1.0, 0.5], [1.0, 2.0], [[0, 1], [np.nan, 3]], NonFiniteError, r"ci has NaN entries"),
        ([1.0, 0.5], [1.0, 2.0], [[0, 1], [3, 2]], InvalidArgumentError, r"ci has a row with low > high"),
        ([1.0, "x"], [1.0, 2.0], None, ShapeError, r"scales could not be converted to a float array"),
    ],
)
def test_theta_trend_errors(scales, thetas, ci, exc, match):
    with pytest.raises(exc, match=match):
        theta_trend(scales, thetas, ci=ci)


def test_module_constants():
    assert laws.CHI2_95 == pytest.approx(3.841458820694124)
