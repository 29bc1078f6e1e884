"""Hypothesis tests: do flow endpoints follow a volume measure? (docs/math.md §7)

Three families:

(a) *distribution match*, endpoints vs draws of a reference measure, per scalar statistic
    (two-sample Kolmogorov–Smirnov and k-sample Anderson–Darling, permutation p-values) and for
    vector statistics (energy distance, permutation p-value); MCMC draws are thinned to their
    effective sample size first; Benjamini–Hochberg across statistics.
(b) *volume percentiles*: for each endpoint the reference probability of a higher volume density;
    uniform under the null, piled near 0 under the high-volume hypothesis.
(c) *against a null measure* (e.g. Euclidean volume, depth 1): one-sided Mann–Whitney on the log
    volume density, AUC as the effect size.

Every test returns a frozen :class:`TestResult`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from dlnvolume.validation import check_int, check_rng
from dlnvolume.errors import InvalidArgumentError, ShapeError
from samplers.diagnostics import ess as _samplers_ess

__all__ = [
    "TestResult",
    "ess",
    "thin_to_ess",
    "ks_test",
    "ad_test",
    "energy_test",
    "benjamini_hochberg",
    "distribution_match",
    "VolumePercentileResult",
    "volume_percentile_test",
    "null_measure_test",
]


@dataclass(frozen=True)
class TestResult:
    """Outcome of one test.

    Attributes
    ----------
    name : test name (e.g. ``"ks:log_volume_density"``)
    statistic : test statistic
    p_value : p-value (permutation p-values are ``(1 + #{T* ≥ T}) / (1 + B)``, never 0)
    effect_size : test-specific effect size (KS: D; AD: Wasserstein-1 / pooled sd; energy: energy
        distance; Mann–Whitney: AUC = P(X > Y) + ½P(X = Y); percentile tests: mean percentile)
    n_x, n_y : sample sizes actually used (``n_y`` after thinning to the ESS)
    measure_x, measure_y : labels of the two samples
    ess_used : effective sample size of the ``y`` sample before thinning (None for i.i.d. input)
    notes : free text
    p_adjusted : Benjamini–Hochberg adjusted p-value when part of a family, else None
    effect_name : what ``effect_size`` is ("KS D", "W1/sd", "energy distance", "AUC", "mean percentile")
    effect_ci : 95 % confidence interval of the effect size (KS D: percentile bootstrap, 200 resamples,
        biased upward when the two distributions are close, so D itself may lie below it; AUC:
        Hanley & McNeil 1982 standard error; mean percentile: Student t), or None
    n_perm : permutations behind a permutation p-value (its floor is ``1/(n_perm+1)``), else None
    floor : the smallest p-value the test can claim when it is not a permutation test (the percentile
        tests against ``n`` reference draws: ``1/(n+1)``, the resolution of an empirical CDF), else None
    """

    __test__ = False  # not a pytest class

    name: str
    statistic: float
    p_value: float
    effect_size: float
    n_x: int
    n_y: int
    measure_x: str
    measure_y: str
    ess_used: float | None
    notes: str = ""
    p_adjusted: float | None = None
    effect_name: str = ""
    effect_ci: tuple[float, float] | None = None
    n_perm: int | None = None
    floor: float | None = None

    @property
    def p_floor(self) -> float | None:
        """Smallest attainable p-value: ``1/(n_perm+1)`` of a permutation test, ``floor`` when set, else None."""
        if self.floor is not None:
            return self.floor
        return None if self.n_perm is None else 1.0 / (self.n_perm + 1)

    @property
    def at_floor(self) -> bool:
        """The permutation p-value is its floor: no permutation reached the observed statistic."""
        return self.p_floor is not None and self.p_value <= self.p_floor * (1 + 1e-9)


# --------------------------------------------------------------------------- ESS and thinning
def ess(x: Any) -> float:
    """Bulk effective sample size of draws ``x`` with shape ``(chains, draws)``.

    ArviZ's rank-normalized estimator through the package's one wrapper,
    :func:`samplers.diagnostics.ess`; this front end only insists on a 2-D ``(chains, draws)`` array.
    """
    x = _as_float(x, "x")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 4:
        raise ShapeError(f"x has shape {x.shape}; expected (chains, draws) with chains >= 1 and draws >= 4")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError("x has NaN or infinite entries; expected finite draws")
    return _samplers_ess(x)


def thin_to_ess(x: Any, ess_value: float | None = None) -> tuple[np.ndarray, float]:
    """Thin ``(chains, draws, ...)`` draws to about their effective sample size.

    Takes every ``k``-th draw of each chain with ``k = ceil(chains·draws / ESS)`` (ESS of the first
    scalar component when ``x`` has trailing axes, unless given). Returns ``(flat draws, ESS)`` with
    the flat array of shape ``(n_kept, ...)``.
    """
    x = _as_float(x, "x")
    if x.ndim < 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ShapeError(f"x has shape {x.shape}; expected (chains, draws, ...) with chains, draws >= 1")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError("x has NaN or infinite entries; expected finite draws")
    if ess_value is not None and not (isinstance(ess_value, (int, float, np.floating, np.integer))
                                      and not isinstance(ess_value, bool) and float(ess_value) > 0):
        raise InvalidArgumentError(f"ess_value={ess_value!r}; expected a number > 0 or None")
    C, n = x.shape[:2]
    if ess_value is None:
        scalar = x.reshape(C, n, -1)[..., 0]
        if n < 4 or np.ptp(scalar) == 0:  # constant statistic: nothing to thin
            ess_value = float(C * n)
        else:
            ess_value = _samplers_ess(scalar)
    k = max(1, int(math.ceil(C * n / max(ess_value, 1.0))))
    kept = x[:, ::k]
    return kept.reshape((-1,) + x.shape[2:]), float(ess_value)


# --------------------------------------------------------------------------- permutation machinery
def _rng(rng: Any) -> np.random.Generator:
    return check_rng(rng)


def _as_float(x: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} could not be converted to a float array: {exc}") from None


def _check_n_perm(n_perm: Any) -> int:
    return check_int(n_perm, "n_perm", minimum=1)


def _check_sample(x: Any, name: str, ndim: int = 1) -> np.ndarray:
    arr = _as_float(x, name)
    if arr.ndim != ndim or arr.shape[0] < 2:
        raise ShapeError(f"{name} has shape {arr.shape}; expected {ndim}-d with at least 2 observations")
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"{name} has NaN or infinite entries; expected finite values")
    return arr


def _perm_labels(n_x: int, n: int, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """(n_perm, n) boolean matrices with exactly n_x True (the 'x' group) per row."""
    base = np.zeros((n_perm, n), dtype=bool)
    base[:, :n_x] = True
    return rng.permuted(base, axis=1)


def _perm_p(observed: float, permuted: np.ndarray) -> float:
    # relative tolerance guards against round-off ties between identical statistics
    hits = np.sum(permuted >= observed - 1e-12 * max(1.0, abs(observed)))
    return float((1 + hits) / (1 + permuted.size))


def _ks_stat_labels(pooled_sorted_labels: np.ndarray, n_x: int, n_y: int, block_ends: np.ndarray) -> np.ndarray:
    """KS D for label rows over the sorted pooled sample, evaluated at the ends of tie blocks."""
    cx = np.cumsum(pooled_sorted_labels, axis=-1)[..., block_ends] / n_x
    cy = np.cumsum(~pooled_sorted_labels, axis=-1)[..., block_ends] / n_y
    return np.max(np.abs(cx - cy), axis=-1)


def ks_test(
    x: Any, y: Any, *, n_perm: int = 999, rng: Any = None, measure_x: str = "x", measure_y: str = "y",
    name: str = "ks", ess_used: float | None = None,
) -> TestResult:
    """Two-sample Kolmogorov–Smirnov test with a permutation p-value.

    ``D = sup |F_x − F_y|`` (as :func:`scipy.stats.ks_2samp`); the p-value is the fraction of
    ``n_perm`` label permutations with ``D* ≥ D`` (plus one). Effect size: ``D``.
    """
    x = _check_sample(x, "x")
    y = _check_sample(y, "y")
    g = _rng(rng)
    n_perm = _check_n_perm(n_perm)
    n_x, n_y = x.size, y.size
    pooled = np.concatenate([x, y])
    order = np.argsort(pooled, kind="stable")
    ps = pooled[order]
    ends = np.flatnonzero(np.append(ps[1:] != ps[:-1], True))
    obs = np.zeros((1, n_x + n_y), dtype=bool)
    obs[0, :n_x] = True
    D = float(_ks_stat_labels(obs[:, order], n_x, n_y, ends)[0])  # equals scipy.stats.ks_2samp's D
    labels = _perm_labels(n_x, n_x + n_y, n_perm, g)
    # permuting labels over the pooled sorted sample == permuting the data
    Dp = _ks_stat_labels(labels[:, order], n_x, n_y, ends)
    p = _perm_p(D, Dp)
    return TestResult(name, D, p, D, n_x, n_y, measure_x, measure_y, ess_used,
                      f"permutation p-value, {n_perm} permutations", effect_name="KS D",
                      effect_ci=_ks_bootstrap_ci(x, y, g), n_perm=n_perm)


def _ks_d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KS D of sorted rows ``x`` (B, n_x) against sorted rows ``y`` (B, n_y)."""
    pooled = np.concatenate([x, y], axis=1)
    fx = np.stack([np.searchsorted(a, b, side="right") for a, b in zip(x, pooled)]) / x.shape[1]
    fy = np.stack([np.searchsorted(a, b, side="right") for a, b in zip(y, pooled)]) / y.shape[1]
    return np.max(np.abs(fx - fy), axis=1)


def _ks_bootstrap_ci(x: np.ndarray, y: np.ndarray, g: np.random.Generator, n_boot: int = 200) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of KS D (both samples resampled with replacement)."""
    bx = np.sort(x[g.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    by = np.sort(y[g.integers(0, y.size, size=(n_boot, y.size))], axis=1)
    lo, hi = np.percentile(_ks_d(bx, by), [2.5, 97.5])
    return float(lo), float(hi)


def ad_test(
    x: Any, y: Any, *, n_perm: int = 999, rng: Any = None, measure_x: str = "x", measure_y: str = "y",
    name: str = "ad", ess_used: float | None = None,
) -> TestResult:
    """k-sample Anderson–Darling test (k = 2) with a permutation p-value.

    :func:`scipy.stats.anderson_ksamp` (``variant="continuous"``) with
    ``method=scipy.stats.PermutationMethod(n_resamples=n_perm, rng=...)``. Effect size: the
    Wasserstein-1 distance divided by the pooled standard deviation.
    """
    x = _check_sample(x, "x")
    y = _check_sample(y, "y")
    g = _rng(rng)
    n_perm = _check_n_perm(n_perm)
    if np.all(x == x[0]) and np.all(y == x[0]):  # scipy raises its own ValueError here
        raise InvalidArgumentError(
            f"x and y are constant and equal ({x[0]!r}): the Anderson–Darling test needs at least two distinct "
            "values in the pooled sample"
        )
    res = stats.anderson_ksamp(
        [x, y], variant="continuous", method=stats.PermutationMethod(n_resamples=n_perm, rng=g)
    )
    pooled_sd = float(np.std(np.concatenate([x, y]), ddof=1))
    w1 = float(stats.wasserstein_distance(x, y))
    eff = w1 / pooled_sd if pooled_sd > 0 else 0.0
    return TestResult(name, float(res.statistic), float(res.pvalue), eff, x.size, y.size, measure_x, measure_y,
                      ess_used, f"permutation p-value, {n_perm} permutations", effect_name="W1/sd", n_perm=n_perm)


def energy_test(
    x: Any, y: Any, *, n_perm: int = 999, rng: Any = None, measure_x: str = "x", measure_y: str = "y",
    name: str = "energy", ess_used: float | None = None,
) -> TestResult:
    """Energy-distance two-sample test for vectors ``x`` (n_x, d), ``y`` (n_y, d), permutation p-value.

    Statistic ``E = 2 mean‖X − Y‖ − mean‖X − X'‖ − mean‖Y − Y'‖`` (Székely & Rizzo; V-statistic),
    computed for all permutations from one pooled distance matrix. Effect size: ``E``.
    """
    x = _as_float(x, "x")
    y = _as_float(y, "y")
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    x = _check_sample(x, "x", 2)
    y = _check_sample(y, "y", 2)
    if x.shape[1] != y.shape[1]:
        raise ShapeError(f"x has {x.shape[1]} components but y has {y.shape[1]}; expected equal")
    g = _rng(rng)
    n_perm = _check_n_perm(n_perm)
    n_x, n_y = len(x), len(y)
    Z = np.concatenate([x, y])
    # E is homogeneous of degree 1: compute on Z / max|Z| (squared distances of entries ~1e300 overflowed,
    # and inf - inf made the statistic NaN), scale back at the end; p-values are scale-free
    scale = float(np.max(np.abs(Z)))
    scale = scale if scale > 0 else 1.0
    Z = Z / scale
    D = np.sqrt(np.maximum(np.sum((Z[:, None, :] - Z[None, :, :]) ** 2, axis=-1), 0.0))
    total = D.sum()

    def stat(L: np.ndarray) -> np.ndarray:
        Lf = L.astype(np.float64)
        DL = Lf @ D
        sxx = np.sum(DL * Lf, axis=-1)
        sxy = np.sum(DL * (1.0 - Lf), axis=-1)
        syy = total - 2.0 * sxy - sxx
        return 2.0 * sxy / (n_x * n_y) - sxx / n_x**2 - syy / n_y**2

    obs_L = np.zeros((1, n_x + n_y), dtype=bool)
    obs_L[0, :n_x] = True
    E = float(stat(obs_L)[0])
    Ep = np.concatenate([stat(chunk) for chunk in np.array_split(_perm_labels(n_x, n_x + n_y, n_perm, g),
                                                                  max(1, n_perm // 200))])
    p = _perm_p(E, Ep)
    with np.errstate(over="ignore"):
        E = float(np.float64(E) * scale)
    return TestResult(name, E, p, E, n_x, n_y, measure_x, measure_y, ess_used,
                      f"permutation p-value, {n_perm} permutations", effect_name="energy distance", n_perm=n_perm)


def benjamini_hochberg(results: Sequence[TestResult]) -> list[TestResult]:
    """Return copies with ``p_adjusted`` set by Benjamini–Hochberg across ``results``."""
    if not results:
        return []
    adj = stats.false_discovery_control([r.p_value for r in results], method="bh")
    return [replace(r, p_adjusted=float(a)) for r, a in zip(results, adj)]


def distribution_match(
    endpoints: Mapping[str, Any],
    draws: Mapping[str, Any],
    *,
    vector: Mapping[str, tuple[Any, Any]] | None = None,
    n_perm: int = 499,
    max_n: int = 1000,
    tests: Sequence[str] = ("ks", "ad"),
    measure_x: str = "endpoints",
    measure_y: str = "reference",
    iid: bool = False,
    rng: Any = None,
) -> list[TestResult]:
    """Family (a): endpoints vs reference draws, per scalar statistic, BH-adjusted.

    Parameters
    ----------
    endpoints : name -> (runs,) array of a scalar statistic of the flow endpoints
    draws : name -> (chains, draws) array of the same statistic on the reference draws
    vector : name -> (endpoints (runs, d), draws (chains, draws, d)) vector statistics (energy test)
    n_perm : permutations per test
    max_n : the reference sample is subsampled (evenly) to at most ``max_n`` after thinning
    tests : subset of ``("ks", "ad")``
    iid : the draws are exact independent samples (no thinning; ``ess_used`` is None)
    """
    g = _rng(rng)
    n_perm = _check_n_perm(n_perm)
    max_n = check_int(max_n, "max_n", minimum=2)
    if isinstance(tests, str) or not all(isinstance(t, str) and t in ("ks", "ad") for t in tests):
        raise InvalidArgumentError(f"tests={tests!r}; expected a sequence of 'ks' and/or 'ad'")
    out: list[TestResult] = []
    for key in endpoints:
        if key not in draws:
            continue
        x = _as_float(endpoints[key], f"endpoints[{key!r}]").reshape(-1)
        ychains = _as_float(draws[key], f"draws[{key!r}]")
        if iid:
            y, e = ychains.reshape(-1), None
        else:
            y, e = thin_to_ess(ychains)
        if y.size > max_n:
            y = y[np.linspace(0, y.size - 1, max_n).astype(int)]
        x = _check_sample(x, f"endpoints[{key!r}]")
        y = _check_sample(y, f"draws[{key!r}]")
        if np.ptp(np.concatenate([x, y])) == 0:
            out.append(TestResult(f"ks:{key}", 0.0, 1.0, 0.0, x.size, y.size, measure_x, measure_y, e,
                                  "both samples constant and equal: no test", effect_name="KS D",
                                  effect_ci=(0.0, 0.0)))
            continue
        for t in tests:
            fn = {"ks": ks_test, "ad": ad_test}[t]
            r = fn(x, y, n_perm=n_perm, rng=g, measure_x=measure_x, measure_y=measure_y,
                   name=f"{t}:{key}", ess_used=e)
            if y.size < 50:
                r = replace(r, notes=r.notes + f"; only {y.size} reference draws after thinning to the ESS")
            out.append(r)
    for key, (xv, yv) in (vector or {}).items():
        xv = _as_float(xv, f"vector[{key!r}][0]")
        yv = _as_float(yv, f"vector[{key!r}][1]")
        if xv.ndim not in (1, 2) or xv.shape[0] < 2 or yv.ndim < 1 or yv.size == 0:
            raise ShapeError(
                f"vector[{key!r}] has shapes {xv.shape} and {yv.shape}; expected endpoints (runs >= 2, d) and "
                "draws (chains, draws, d) (or (n, d) with iid=True)"
            )
        if iid:
            yflat, e = yv.reshape((-1,) + yv.shape[2:]), None
        else:
            yflat, e = thin_to_ess(yv)
        if len(yflat) > max_n:
            yflat = yflat[np.linspace(0, len(yflat) - 1, max_n).astype(int)]
        out.append(energy_test(xv.reshape(len(xv), -1), yflat.reshape(len(yflat), -1), n_perm=n_perm, rng=g,
                               measure_x=measure_x, measure_y=measure_y, name=f"energy:{key}", ess_used=e))
    return benjamini_hochberg(out)


# --------------------------------------------------------------------------- (b) percentiles
@dataclass(frozen=True)
class VolumePercentileResult:
    """Family (b): percentiles ``u_i = P_ref(log ρ > log ρ(endpoint_i))``.

    Attributes
    ----------
    percentiles : (runs,) array in [0, 1]
    uniform : KS test of the percentiles against U(0, 1) (two-sided)
    small : one-sided KS (empirical CDF above the uniform one: percentiles piled near 0, higher volume)
    large : one-sided KS the other way (percentiles piled near 1, lower volume)
    counts, edges : histogram of the percentiles (``bins`` equal bins on [0, 1])
    """

    percentiles: np.ndarray
    uniform: TestResult
    small: TestResult
    counts: np.ndarray
    edges: np.ndarray
    large: TestResult | None = None

    def direction(self, alpha: float) -> str:
        """``"higher"`` only when the percentiles are stochastically smaller than uniform: the lower-tail
        test rejects at ``alpha``, the upper-tail test does not, and the 95 % interval of the mean
        percentile lies below ½; ``"lower"`` symmetrically; ``"mixed"`` when both tails reject (mass piled
        at both ends); ``"not shown"`` otherwise.

        >>> u = np.r_[np.full(40, 0.01), np.full(60, 0.5)]
        >>> r = volume_percentile_test(-u, reference_cdf=lambda v: 1 + v)
        >>> r.direction(0.05)
        'higher'
        >>> volume_percentile_test(-np.r_[u, np.full(30, 0.99)], reference_cdf=lambda v: 1 + v).direction(0.05)
        'mixed'
        """
        lo = self.small.p_value <= alpha
        hi = self.large is not None and self.large.p_value <= alpha
        ci = self.small.effect_ci or (self.small.effect_size, self.small.effect_size)
        if lo and hi:
            return "mixed"
        if lo and ci[1] < 0.5:
            return "higher"
        if hi and ci[0] > 0.5:
            return "lower"
        return "mixed" if (lo or hi) else "not shown"


def volume_percentile_test(
    endpoint_log_volume: Any,
    *,
    reference_draws: Any = None,
    reference_cdf: Callable[[np.ndarray], np.ndarray] | None = None,
    bins: int = 10,
    measure_x: str = "endpoints",
    measure_y: str = "reference",
    iid: bool = True,
) -> VolumePercentileResult:
    """Family (b): where do endpoint volume densities fall in the reference distribution?

    ``u_i = 1 − F(v_i)`` with ``F`` the reference CDF of the log-volume density (``reference_cdf``,
    exact) or the mid-rank empirical CDF of ``reference_draws`` (``(#{> v} + ½#{= v}) / n``;
    ``(chains, draws)`` input is thinned to its ESS unless ``iid``). Under the null the ``u_i`` are
    uniform; the high-volume hypothesis predicts small ``u_i``.
    """
    v = _check_sample(_as_float(endpoint_log_volume, "endpoint_log_volume").reshape(-1), "endpoint_log_volume")
    e: float | None = None
    if (reference_draws is None) == (reference_cdf is None):
        raise InvalidArgumentError("give exactly one of reference_draws= or reference_cdf=")
    bins = check_int(bins, "bins", minimum=1)
    if reference_cdf is not None:
        F = _as_float(reference_cdf(v), "reference_cdf(endpoint_log_volume)")
        if F.shape != v.shape or not np.all((F >= -1e-12) & (F <= 1 + 1e-12)):  # NaN fails too
            raise InvalidArgumentError(
                f"reference_cdf returned shape {F.shape} with values in [{np.min(F) if F.size else 0}, "
                f"{np.max(F) if F.size else 0}]; expected shape {v.shape} with values in [0, 1]"
            )
        u = 1.0 - F
        n_ref = 0
        note = "exact reference CDF"
    else:
        r = _as_float(reference_draws, "reference_draws")
        if r.ndim == 2 and not iid:
            r, e = thin_to_ess(r)
        r = _check_sample(r.reshape(-1), "reference_draws")
        r = np.sort(r)
        n_ref = r.size
        greater = n_ref - np.searchsorted(r, v, side="right")
        equal = np.searchsorted(r, v, side="right") - np.searchsorted(r, v, side="left")
        u = (greater + 0.5 * equal) / n_ref
        note = f"empirical reference CDF from {n_ref} draws"
    u = np.clip(u, 0.0, 1.0)
    ks2 = stats.kstest(u, "uniform")
    ks1 = stats.kstest(u, "uniform", alternative="greater")
    ks3 = stats.kstest(u, "uniform", alternative="less")
    # an empirical CDF of n draws resolves probabilities to 1/(n+1): no p-value below that is claimed
    floor = 1.0 / (n_ref + 1) if n_ref else None

    def p(x: float) -> float:
        return float(x) if floor is None else max(float(x), floor)
    counts, edges = np.histogram(u, bins=bins, range=(0.0, 1.0))
    mean_u = float(u.mean())
    half = float(stats.t.ppf(0.975, u.size - 1) * np.std(u, ddof=1) / math.sqrt(u.size))
    ci = (max(0.0, mean_u - half), min(1.0, mean_u + half))
    uni = TestResult("percentile:uniform", float(ks2.statistic), p(ks2.pvalue), mean_u, v.size, n_ref,
                     measure_x, measure_y, e, note + "; KS vs U(0,1)", effect_name="mean percentile", effect_ci=ci,
                     floor=floor)
    small = TestResult("percentile:small", float(ks1.statistic), p(ks1.pvalue), mean_u, v.size, n_ref,
                       measure_x, measure_y, e, note + "; one-sided KS, alternative: percentiles near 0",
                       effect_name="mean percentile", effect_ci=ci, floor=floor)
    large = TestResult("percentile:large", float(ks3.statistic), p(ks3.pvalue), mean_u, v.size, n_ref,
                       measure_x, measure_y, e, note + "; one-sided KS, alternative: percentiles near 1",
                       effect_name="mean percentile", effect_ci=ci, floor=floor)
    return VolumePercentileResult(u, uni, small, counts, edges, large)


# --------------------------------------------------------------------------- (c) null measure
def null_measure_test(
    endpoint_log_volume: Any,
    null_log_volume: Any,
    *,
    measure_x: str = "endpoints",
    measure_y: str = "euclidean",
    iid: bool = True,
) -> TestResult:
    """Family (c): one-sided Mann–Whitney, are endpoint log-volume densities larger than under the null?

    ``null_log_volume``: the depth-``N`` log-volume density evaluated at draws of the null measure
    (Euclidean volume, depth 1, on the same set); ``(chains, draws)`` input is thinned to its ESS
    unless ``iid``. Effect size: AUC ``= U / (n_x n_y) = P(X > Y) + ½ P(X = Y)``.
    """
    x = _check_sample(_as_float(endpoint_log_volume, "endpoint_log_volume").reshape(-1), "endpoint_log_volume")
    y = _as_float(null_log_volume, "null_log_volume")
    e: float | None = None
    if y.ndim == 2 and not iid:
        y, e = thin_to_ess(y)
    y = _check_sample(y.reshape(-1), "null_log_volume")
    res = stats.mannwhitneyu(x, y, alternative="greater")
    auc = float(res.statistic) / (x.size * y.size)
    # Hanley & McNeil (1982) standard error of the AUC
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = math.sqrt(max(auc * (1 - auc) + (x.size - 1) * (q1 - auc * auc) + (y.size - 1) * (q2 - auc * auc), 0.0)
                   / (x.size * y.size))
    return TestResult("mannwhitney:log_volume_density", float(res.statistic), float(res.pvalue), auc, x.size,
                      y.size, measure_x, measure_y, e, "one-sided (endpoints larger); effect size AUC",
                      effect_name="AUC", effect_ci=(max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)))
