r"""Rival laws of the endpoints as exponential tilts of the reference measure (docs/math.md §7).

The high-volume bias hypothesis says that flow endpoints concentrate where the volume density is
large; rivals say they concentrate where the nuclear norm, the Frobenius norm or the distance to a
predicted point is small. Each hypothesis is modelled as a one-parameter exponential tilt of the
reference law ``p_ref`` (the solution-set volume measure) by a scalar statistic ``T``:

.. math::  p_\theta(X) = \exp(\theta\,T(X))\, p_{ref}(X) / Z(\theta), \qquad Z(\theta) = E_{ref}[e^{\theta T}],

with ``T`` in {``log ρ_N`` (volume), ``−‖X‖_*``, ``−‖X‖_F``, ``−dist(X, X_pred)``, ...}. ``θ = 0`` is the
reference law itself; ``θ → ±∞`` collapses the law onto the extreme of ``T``.

Statistics
----------
Endpoints ``x_1..x_n`` give ``t_i = T(x_i)``; reference draws ``y_1..y_M`` (i.i.d., or MCMC with shape
``(chains, draws)``) give ``u_j = T(y_j)``.

* **Partition function.** ``Ẑ(θ) = (1/M) Σ_j exp(θ u_j)``, computed as a log-sum-exp.
* **Log-likelihood ratio against the base law** (θ = 0):
  ``ℓ(θ) = θ Σ_i t_i − n log Ẑ(θ)``. The common term ``Σ_i log p_ref(x_i)`` cancels between laws of the
  same base measure, so laws with different ``T`` are compared without knowing ``p_ref``'s density.
* **MLE.** ``ℓ`` is concave (``ℓ''(θ) = −n Var_θ(T) ≤ 0``); the MLE solves ``mean_i t_i = E_θ[T]``
  with the self-normalized reweighted reference mean ``E_θ[T] = Σ_j w_j u_j / Σ_j w_j``,
  ``w_j = exp(θ u_j)``. It is finite iff ``min_j u_j < mean_i t_i < max_j u_j``. Otherwise the
  likelihood increases without end (the tilt pushes all mass onto the extreme draw): the fit reports
  ``unbounded = True``, ``θ̂ = ±inf`` and ``loglik = ℓ(θ_edge)`` at the edge ``θ_edge`` of the estimable
  range (below), a *lower bound* of ``sup_θ ℓ(θ)``.
* **AIC** ``= −2 ℓ(θ̂) + 2`` (one parameter); the base law has ``ℓ = 0`` and AIC 0.
* **Monte Carlo error** (delta method). At fixed ``θ``,
  ``Var(log Ẑ(θ)) ≈ Var_ref(w) / (M_eff · mean(w)²)``, ``w = exp(θ u)``, with ``M_eff = M`` for i.i.d.
  draws and the bulk ESS of the ``(chains, draws)`` sequence of ``w`` for MCMC draws
  (:func:`samplers.diagnostics.ess`). Hence ``loglik_se = n · se(log Ẑ(θ̂))``. This ignores the
  upward bias of a maximized noisy likelihood (of order ``1/2`` for one parameter at large ``M``).
* **Weight ESS** (Kish) of the tilt weights at ``θ̂``: ``(Σ w)² / Σ w²``. Below
  :data:`RELIABLE_WEIGHT_ESS` (= 30) the fit rests on a few reference draws: ``reliable = False``.
  For MCMC draws it counts draws, not independent draws; the autocorrelation enters ``loglik_se``.
* **Estimable range.** ``log Kish(θ) = 2 A(θ) − A(2θ)`` with ``A(θ) = log Σ_j e^{θ u_j}`` is maximal
  (``= log M``) at ``θ = 0`` and decreases in ``|θ|`` (its derivative ``2(E_θ[T] − E_{2θ}[T])`` has the
  sign of ``−θ``), so ``{θ : Kish(θ) ≥ min(10, M/2)}`` is an interval ``[θ_-, θ_+] ∋ 0``; outside it
  ``Ẑ`` is carried by fewer than ten draws.
* **Profile interval** (95 %): ``{θ : 2(ℓ(θ̂) − ℓ(θ)) ≤ χ²₁(0.95) = 3.841}``, by root finding on each
  side of ``θ̂`` within the estimable range; an end is ``±inf`` when ``ℓ`` does not drop that far within
  it (the note says so). For an unbounded fit the interval is computed from the lower bound
  ``ℓ(θ_edge)`` and so contains the true profile set (conservative).

:func:`compare_laws` fits every statistic on the same endpoints and the same reference draws, adds the
base law (``"reference"``, statistic ``"none"``, θ = 0, AIC 0), fills in ``ΔAIC = AIC − min AIC``, picks
a best law only when it is reliable and separated from the runner-up, and reports pairs of statistics
whose Spearman correlation on the reference draws exceeds a threshold (hypotheses this task cannot tell
apart). :func:`theta_trend` follows ``θ̂`` along an initialization-scale ladder: a tilt that grows
without bound as the scale shrinks means the endpoints collapse onto the extreme of ``T``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
from scipy import optimize, stats

from dlnvolume.errors import InvalidArgumentError, NonFiniteError, ShapeError
from dlnvolume.validation import short_repr
from samplers.diagnostics import ess as _samplers_ess

__all__ = [
    "TiltFit",
    "LawComparison",
    "fit_tilt",
    "compare_laws",
    "theta_trend",
    "CHI2_95",
    "RELIABLE_WEIGHT_ESS",
    "RANGE_WEIGHT_ESS",
]

CHI2_95: float = float(stats.chi2.ppf(0.95, 1))  # 3.841...
"""χ²₁(0.95): the drop ``2(ℓ(θ̂) − ℓ(θ))`` that bounds the 95 % profile interval."""
RELIABLE_WEIGHT_ESS: float = 30.0
"""A fit whose Kish ESS of the tilt weights is below this is flagged ``reliable = False``."""
RANGE_WEIGHT_ESS: float = 10.0
"""Edge of the estimable range: Kish ESS ``min(10, M/2)``."""

_MIN_ENDPOINTS = 2
_MIN_REFERENCE = 10
_THETA_CAP = 1e6  # in units of 1/sd(u): beyond it every weight but the largest has underflowed
_BASE = "reference"


# --------------------------------------------------------------------------- results
def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


@dataclass(frozen=True)
class TiltFit:
    """Maximum-likelihood fit of the tilt ``p_θ ∝ exp(θ T) p_ref`` (module docstring for the formulas).

    Attributes
    ----------
    statistic : name of ``T`` (``"none"`` for the base law)
    theta : MLE ``θ̂`` (``±inf`` when ``unbounded``)
    theta_ci : 95 % profile-likelihood interval ``{θ : 2(ℓ(θ̂) − ℓ(θ)) ≤ 3.841}``; an end is ``±inf``
        when the likelihood does not drop enough within the estimable range
    loglik : ``ℓ(θ̂) = θ̂ Σ t_i − n log Ẑ(θ̂)``, summed over endpoints (a lower bound of the supremum
        when ``unbounded``)
    loglik_per_endpoint : ``loglik / n``
    aic : ``−2 ℓ(θ̂) + 2`` (0 for the base law)
    delta_aic : ``AIC − min AIC`` over the laws compared together (set by :func:`compare_laws`), else None
    loglik_se : Monte Carlo standard error of ``ℓ(θ̂)``: ``n · sqrt(Var_ref(w) / (M_eff mean(w)²))``
    weight_ess : Kish ESS ``(Σw)²/Σw²`` of the tilt weights ``w = exp(θ̂ u)`` (at ``θ_edge`` when unbounded)
    reference_ess : ESS of the reference draws of ``T`` (``M`` for i.i.d. draws)
    n_endpoints, n_reference : ``n`` and ``M``
    unbounded : the MLE is at infinity (``mean t`` outside ``(min u, max u)``)
    reliable : not unbounded and ``weight_ess ≥ 30``
    note : why a fit is unreliable, which interval end is open, and similar caveats
    """

    statistic: str
    theta: float
    theta_ci: tuple[float, float]
    loglik: float
    loglik_per_endpoint: float
    aic: float
    delta_aic: float | None
    loglik_se: float
    weight_ess: float
    reference_ess: float
    n_endpoints: int
    n_reference: int
    unbounded: bool
    reliable: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field.

        Infinite floats (``theta`` and ``theta_ci`` ends of unbounded fits or open intervals) become the
        strings ``"inf"`` / ``"-inf"`` (so the sign survives ``json.dumps(..., allow_nan=False)``);
        ``delta_aic`` is ``None`` until set by :func:`compare_laws`; ``theta_ci`` is a list. No field is
        ever NaN.

        Examples
        --------
        >>> import json
        >>> g = np.random.default_rng(1)
        >>> fit = fit_tilt(g.normal(5.0, 1.0, 20), g.standard_normal(200), statistic="T")
        >>> fit.unbounded, fit.to_dict()["theta"]
        (True, 'inf')
        >>> _ = json.dumps(fit.to_dict(), allow_nan=False)
        """
        return {
            "statistic": self.statistic,
            "theta": _json_float(self.theta),
            "theta_ci": [_json_float(self.theta_ci[0]), _json_float(self.theta_ci[1])],
            "loglik": _json_float(self.loglik),
            "loglik_per_endpoint": _json_float(self.loglik_per_endpoint),
            "aic": _json_float(self.aic),
            "delta_aic": _json_float(self.delta_aic),
            "loglik_se": _json_float(self.loglik_se),
            "weight_ess": _json_float(self.weight_ess),
            "reference_ess": _json_float(self.reference_ess),
            "n_endpoints": int(self.n_endpoints),
            "n_reference": int(self.n_reference),
            "unbounded": bool(self.unbounded),
            "reliable": bool(self.reliable),
            "note": self.note,
        }


@dataclass(frozen=True)
class LawComparison:
    """Tilts by several statistics, and the base law, fitted to the same endpoints and reference draws.

    Attributes
    ----------
    fits : name -> :class:`TiltFit` with ``delta_aic`` filled in; ``"reference"`` (statistic ``"none"``,
        θ = 0, ℓ = 0, AIC 0) is included as a law and comes first, then the statistics in the order of
        ``endpoints``
    best : the law with the smallest AIC, or None when its ΔAIC lead over the runner-up is not more than
        ``2 + 2·(se_best + se_runner)`` (``se`` = ``loglik_se``; the sum bounds the s.e. of the
        log-likelihood difference whatever the correlation of the two estimates, which share the
        reference draws), when it is unreliable, or when any fit is unbounded (an unbounded law's AIC is
        only an upper bound, so the ranking is undetermined)
    collinear : ``(a, b, ρ)`` for the pairs of statistics whose Spearman ``|ρ|`` on the reference draws
        exceeds the threshold: those hypotheses cannot be told apart on this task
    note : why ``best`` is None, and whether the best law is in a collinear pair
    """

    fits: dict[str, TiltFit]
    best: str | None
    collinear: list[tuple[str, str, float]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``fits`` as :meth:`TiltFit.to_dict` dicts, ``collinear`` as ``[a, b, ρ]`` lists."""
        return {
            "fits": {k: f.to_dict() for k, f in self.fits.items()},
            "best": self.best,
            "collinear": [[a, b, float(r)] for a, b, r in self.collinear],
            "note": self.note,
        }


# --------------------------------------------------------------------------- validation
def _as_float(x: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} could not be converted to a float array: {exc}") from None


def _check_endpoints(x: Any, name: str) -> np.ndarray:
    t = _as_float(x, name)
    if t.ndim != 1 or t.size < _MIN_ENDPOINTS:
        raise ShapeError(f"{name} has shape {t.shape}; expected (n,) with n >= {_MIN_ENDPOINTS} endpoints")
    if not np.all(np.isfinite(t)):
        raise NonFiniteError(f"{name} has NaN or infinite entries; expected finite statistic values")
    return t


def _check_reference(x: Any, name: str, iid: bool) -> tuple[np.ndarray, bool]:
    """(array (chains, draws), iid) after validation; 1-D input becomes one i.i.d. 'chain'."""
    u = _as_float(x, name)
    if u.ndim == 1:
        u, iid = u[None, :], True
    if u.ndim != 2:
        raise ShapeError(f"{name} has shape {u.shape}; expected (chains, draws) or (M,)")
    if u.size < _MIN_REFERENCE:
        raise ShapeError(f"{name} has shape {u.shape}, {u.size} draws; expected at least {_MIN_REFERENCE} draws")
    if not iid and u.shape[1] < 4:
        raise ShapeError(
            f"{name} has shape {u.shape}: {u.shape[1]} draws per chain; expected at least 4 per chain for an "
            "MCMC effective sample size (or pass iid=True)"
        )
    if not np.all(np.isfinite(u)):
        raise NonFiniteError(f"{name} has NaN or infinite entries; expected finite statistic values")
    if np.ptp(u) == 0:
        raise InvalidArgumentError(
            f"{name} is constant ({float(u.flat[0])!r}); expected a statistic that varies over the reference draws "
            "(a tilt by a constant is the reference law itself)"
        )
    return u, iid


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name}={short_repr(value)} is not a bool; expected True or False")
    return bool(value)


def _check_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{name}={short_repr(value)} is not a non-empty string; expected a name")
    return value


# --------------------------------------------------------------------------- the tilt of one statistic
def _lse(a: np.ndarray) -> float:
    """``log Σ exp(a)`` for a finite 1-D array (scipy's logsumexp is 5x slower on this hot path)."""
    m = float(np.max(a))
    return m + math.log(float(np.sum(np.exp(a - m))))


class _Tilt:
    """ℓ, E_θ[T] and Kish ESS on standardized values ``t' = (t − c)/s``, ``u' = (u − c)/s``; θ' = θ s.

    ℓ is invariant under the shift (θ c n cancels between the two terms) and θ' ↦ θ'/s undoes the scale.
    """

    def __init__(self, t: np.ndarray, u: np.ndarray) -> None:
        self.c = float(np.mean(u))
        self.s = float(np.std(u))
        self.t = (t - self.c) / self.s
        self.u = (u.reshape(-1) - self.c) / self.s
        self.n = t.size
        self.M = self.u.size
        self.tsum = float(np.sum(self.t))
        self.tbar = self.tsum / self.n
        self.logM = math.log(self.M)

    def log_z(self, th: float) -> float:
        return float(_lse(th * self.u)) - self.logM

    def loglik(self, th: float) -> float:
        return th * self.tsum - self.n * self.log_z(th)

    def weights(self, th: float) -> np.ndarray:
        a = th * self.u
        return np.exp(a - np.max(a))

    def mean(self, th: float) -> float:
        w = self.weights(th)
        return float(np.sum(w * self.u) / np.sum(w))

    def log_kish(self, th: float) -> float:
        a = th * self.u
        return 2.0 * float(_lse(a)) - float(_lse(2.0 * a))

    def _expand(self, fn: Any, sign: float) -> tuple[float, float, bool]:
        """Smallest doubling ``b = sign·2^k`` (from 1) with ``fn(b) > 0``; (previous, b, found before the cap)."""
        a, b = 0.0, sign
        while fn(b) <= 0:
            if abs(b) >= _THETA_CAP:
                return a, b, False
            a, b = b, 2.0 * b
        return a, b, True

    def edge(self, sign: float, floor: float) -> float:
        """End of the estimable range on the side ``sign``: log Kish(θ') = log floor (or the cap)."""
        lf = math.log(floor)
        fn = lambda th: lf - self.log_kish(th)  # noqa: E731  increasing in |θ'|
        a, b, found = self._expand(fn, sign)
        if not found:
            return b
        lo, hi = (a, b) if a < b else (b, a)
        return float(optimize.brentq(fn, lo, hi, xtol=1e-10, rtol=1e-12))

    def mle(self) -> float:
        """Root of E_θ'[u'] = t̄' (finite case only)."""
        sign = 1.0 if self.tbar > self.mean(0.0) else -1.0
        fn = lambda th: sign * (self.mean(th) - self.tbar)  # noqa: E731  increasing in sign·θ'
        if fn(0.0) >= 0:
            return 0.0
        a, b, _ = self._expand(fn, sign)
        lo, hi = (a, b) if a < b else (b, a)
        return float(optimize.brentq(fn, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps))


def _mc_se_log_z(w: np.ndarray, shape: tuple[int, int], iid: bool) -> float:
    """Delta-method s.e. of log Ẑ: sqrt(Var(w) / (M_eff mean(w)²)); M_eff = M (iid) or the ESS of w."""
    if np.ptp(w) == 0:
        return 0.0
    m_eff = float(w.size) if iid else _samplers_ess(w.reshape(shape))
    return math.sqrt(float(np.var(w)) / (m_eff * float(np.mean(w)) ** 2))


def fit_tilt(endpoint_values: Any, reference_values: Any, *, statistic: str, iid: bool = False) -> TiltFit:
    """Fit the exponential tilt ``p_θ ∝ exp(θ T) p_ref`` of the reference law to endpoint values of ``T``.

    Maximizes ``ℓ(θ) = θ Σ t_i − n log Ẑ(θ)``, ``Ẑ(θ) = mean_j exp(θ u_j)`` (module docstring): the MLE
    solves ``mean t = E_θ[T]`` and is finite iff ``min u < mean t < max u``.

    Parameters
    ----------
    endpoint_values : array_like, shape (n,)
        ``T`` at the flow endpoints, ``n ≥ 2``, finite.
    reference_values : array_like, shape (chains, draws) or (M,)
        ``T`` at the reference draws, ``M ≥ 10``, finite and not constant. A 1-D array is i.i.d.
    statistic : str
        Name of ``T`` (stored in the result).
    iid : bool
        The draws are independent (``M_eff = M``); else a ``(chains, draws)`` MCMC array whose ESS (via
        :func:`samplers.diagnostics.ess`, at least 4 draws per chain) enters the Monte Carlo error.

    Returns
    -------
    TiltFit
        ``delta_aic`` is None (filled in by :func:`compare_laws`).

    Raises
    ------
    ShapeError, NonFiniteError, InvalidArgumentError
        Wrong shapes or too few values; NaN/inf; a constant reference statistic, a bad ``statistic`` or
        ``iid``.

    Examples
    --------
    Reference ``T ~ N(0, 1)``; endpoints from the tilt ``e^{0.7 t} N(0, 1) = N(0.7, 1)``:

    >>> g = np.random.default_rng(0)
    >>> fit = fit_tilt(g.normal(0.7, 1.0, 500), g.standard_normal(20000), statistic="T")
    >>> bool(abs(fit.theta - 0.7) < 0.2), fit.theta_ci[0] < 0.7 < fit.theta_ci[1], fit.reliable
    (True, True, True)
    """
    statistic = _check_name(statistic, "statistic")
    iid = _check_bool(iid, "iid")
    t = _check_endpoints(endpoint_values, "endpoint_values")
    u, iid = _check_reference(reference_values, "reference_values", iid)
    return _fit(t, u, statistic, iid)


def _fit(t: np.ndarray, u: np.ndarray, statistic: str, iid: bool) -> TiltFit:
    tilt = _Tilt(t, u)
    n, M = tilt.n, tilt.M
    ref_ess = float(M) if iid else _samplers_ess(u)
    floor = min(RANGE_WEIGHT_ESS, 0.5 * M)
    lo_edge, hi_edge = tilt.edge(-1.0, floor), tilt.edge(1.0, floor)
    notes: list[str] = []

    umin, umax = float(np.min(tilt.u)), float(np.max(tilt.u))
    unbounded = not (umin < tilt.tbar < umax)
    if unbounded:
        side = 1.0 if tilt.tbar >= umax else -1.0
        th = hi_edge if side > 0 else lo_edge
        theta = side * math.inf
        ll = tilt.loglik(th)
        where = "above the largest" if side > 0 else "below the smallest"
        notes.append(
            f"unbounded MLE: the mean endpoint value is {where} reference value, so the tilt pushes all mass "
            f"onto the extreme draw; loglik is l(theta) at the edge of the estimable range theta = "
            f"{th / tilt.s:.4g} (Kish ESS {floor:.3g}), a lower bound of the supremum"
        )
    else:
        th = tilt.mle()
        theta = th / tilt.s
        ll = tilt.loglik(th)
        if not lo_edge <= th <= hi_edge:
            notes.append("the MLE lies outside the estimable range (tilt weights carried by < "
                         f"{floor:.3g} reference draws)")

    # profile interval, each side within the estimable range
    target = ll - 0.5 * CHI2_95
    fn = lambda x: tilt.loglik(x) - target  # noqa: E731  > 0 inside the interval
    ci = []
    for side, edge in ((-1.0, lo_edge), (1.0, hi_edge)):
        if unbounded and side * theta > 0:
            ci.append(side * math.inf)  # the MLE itself is at this end
        elif side * (edge - th) <= 0 or fn(edge) > 0:
            ci.append(side * math.inf)
            notes.append(
                f"the {'lower' if side < 0 else 'upper'} end of the interval is {'-' if side < 0 else '+'}inf: "
                f"the likelihood does not drop by {CHI2_95 / 2:.3g} within the range where Z is estimable"
            )
        else:
            lo, hi = (edge, th) if side < 0 else (th, edge)
            ci.append(float(optimize.brentq(fn, lo, hi, xtol=1e-12, rtol=4 * np.finfo(float).eps)) / tilt.s)
    if unbounded:
        notes.append("the interval is computed from the lower bound of the supremum and so is conservative")

    w = tilt.weights(th)
    kish = float(np.sum(w) ** 2 / np.sum(w * w))
    se = n * _mc_se_log_z(w, u.shape, iid)
    reliable = (not unbounded) and kish >= RELIABLE_WEIGHT_ESS
    if kish < RELIABLE_WEIGHT_ESS:
        notes.insert(0, f"unreliable: Kish ESS of the tilt weights is {kish:.3g} < {RELIABLE_WEIGHT_ESS:.0f}, "
                        "the fit rests on a few reference draws")
    return TiltFit(
        statistic=statistic, theta=float(theta), theta_ci=(ci[0], ci[1]), loglik=float(ll),
        loglik_per_endpoint=float(ll) / n, aic=-2.0 * float(ll) + 2.0, delta_aic=None, loglik_se=float(se),
        weight_ess=kish, reference_ess=float(ref_ess), n_endpoints=n, n_reference=M, unbounded=unbounded,
        reliable=reliable, note="; ".join(notes),
    )


# --------------------------------------------------------------------------- several laws
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    rho = float(stats.spearmanr(a, b).statistic)
    return 0.0 if math.isnan(rho) else rho


def compare_laws(
    endpoints: Mapping[str, Any],
    reference: Mapping[str, Any],
    *,
    iid: bool = False,
    collinear_threshold: float = 0.99,
) -> LawComparison:
    """Fit the tilt by every statistic, add the base law, rank by AIC and flag collinear statistics.

    Parameters
    ----------
    endpoints : mapping name -> array (n,)
        Values of each statistic at the same ``n`` endpoints (the log-likelihoods are summed over the
        same endpoints, so the AICs are comparable).
    reference : mapping name -> array (chains, draws) or (M,)
        The same statistics at the same reference draws (equal shapes; the name ``"reference"`` is
        reserved for the base law).
    iid : bool
        The reference draws are independent (see :func:`fit_tilt`).
    collinear_threshold : float in (0, 1]
        Pairs with Spearman ``|ρ|`` above it on the reference draws are reported in ``collinear``.

    Returns
    -------
    LawComparison
        ``best`` is the smallest-AIC law when it is reliable and its lead over the runner-up exceeds
        ``2 + 2·(se_best + se_runner)`` and no fit is unbounded; else None, with the reason in ``note``.

    Examples
    --------
    Endpoints tilted by ``T1`` (``N(0.5, 1)``) while ``T2`` is independent of ``T1``:

    >>> g = np.random.default_rng(0)
    >>> ref = {"T1": g.standard_normal(5000), "T2": g.standard_normal(5000)}
    >>> ends = {"T1": g.normal(0.5, 1.0, 300), "T2": g.standard_normal(300)}
    >>> cmp = compare_laws(ends, ref)
    >>> cmp.best, cmp.fits["reference"].aic, cmp.fits["T2"].delta_aic > 10, cmp.collinear
    ('T1', 0.0, True, [])
    """
    if not isinstance(endpoints, Mapping):
        raise InvalidArgumentError(f"endpoints={short_repr(endpoints)} is not a mapping; expected name -> array")
    if not isinstance(reference, Mapping):
        raise InvalidArgumentError(f"reference={short_repr(reference)} is not a mapping; expected name -> array")
    iid = _check_bool(iid, "iid")
    if (isinstance(collinear_threshold, (bool, np.bool_)) or not isinstance(collinear_threshold, numbers.Real)
            or not 0.0 < float(collinear_threshold) <= 1.0):
        raise InvalidArgumentError(
            f"collinear_threshold={short_repr(collinear_threshold)}; expected a number in (0, 1]")
    names = list(endpoints)
    if not names:
        raise InvalidArgumentError("endpoints is empty; expected at least one statistic")
    if set(names) != set(reference):
        raise InvalidArgumentError(
            f"endpoints has statistics {sorted(map(str, names))} but reference has {sorted(map(str, reference))}; "
            "expected the same names"
        )
    if _BASE in names:
        raise InvalidArgumentError(f"a statistic is named {_BASE!r}; that name is reserved for the base law")
    for k in names:
        _check_name(k, "statistic name")
    ts = {k: _check_endpoints(endpoints[k], f"endpoints[{k!r}]") for k in names}
    us: dict[str, np.ndarray] = {}
    for k in names:
        us[k], iid_k = _check_reference(reference[k], f"reference[{k!r}]", iid)
    n_set = {v.size for v in ts.values()}
    if len(n_set) > 1:
        raise ShapeError(f"endpoints arrays have lengths {sorted(n_set)}; expected the same n for every statistic")
    shapes = {np.shape(reference[k]) for k in names}
    if len(shapes) > 1:
        raise ShapeError(f"reference arrays have shapes {sorted(shapes)}; expected one shape (the same draws)")

    fits: dict[str, TiltFit] = {}
    for k in names:
        fits[k] = _fit(ts[k], us[k], k, iid_k)
    n, M = next(iter(ts.values())).size, next(iter(us.values())).size
    base = TiltFit(
        statistic="none", theta=0.0, theta_ci=(0.0, 0.0), loglik=0.0, loglik_per_endpoint=0.0, aic=0.0,
        delta_aic=None, loglik_se=0.0, weight_ess=float(M), reference_ess=float(M), n_endpoints=n,
        n_reference=M, unbounded=False, reliable=True,
        note="the base law p_ref (theta = 0): log-likelihood ratio 0 by definition; reference_ess is M "
             "(nothing is estimated from the draws)",
    )
    fits = {_BASE: base, **fits}
    amin = min(f.aic for f in fits.values())
    fits = {k: replace(f, delta_aic=f.aic - amin) for k, f in fits.items()}

    flat = {k: v.reshape(-1) for k, v in us.items()}
    collinear = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rho = _spearman(flat[a], flat[b])
            if abs(rho) > float(collinear_threshold):
                collinear.append((a, b, rho))

    order = sorted(fits, key=lambda k: fits[k].aic)
    best_k, runner = order[0], order[1]
    fb, fr = fits[best_k], fits[runner]
    need = 2.0 + 2.0 * (fb.loglik_se + fr.loglik_se)
    lead = fr.aic - fb.aic
    notes = []
    unb = [k for k, f in fits.items() if f.unbounded]
    best: str | None = best_k
    if unb:
        best = None
        notes.append(f"no best law: unbounded fit(s) {unb}, whose AIC is only an upper bound")
    elif not fb.reliable:
        best = None
        notes.append(f"no best law: the smallest AIC ({best_k!r}) comes from an unreliable fit")
    elif not lead > need:
        best = None
        notes.append(f"no best law: {best_k!r} leads {runner!r} by {lead:.3g} AIC units, not more than "
                     f"2 + 2(se_best + se_runner) = {need:.3g}")
    if best is not None:
        partners = [b if a == best else a for a, b, _ in collinear if best in (a, b)]
        if partners:
            notes.append(f"{best!r} is collinear with {partners} on the reference draws: those hypotheses "
                         "cannot be told apart on this task")
    return LawComparison(fits=fits, best=best, collinear=collinear, note="; ".join(notes))


# --------------------------------------------------------------------------- θ̂ along a scale ladder
def theta_trend(scales: Any, thetas: Any, *, ci: Any = None) -> dict[str, Any]:
    """Does the fitted tilt grow without bound as the initialization scale shrinks?

    Rule (``s`` the scales, sorted ascending; ``s_min``, ``s_max`` the ends):

    * ``slope`` = least-squares slope of ``log|θ̂|`` against ``log s`` over the finite, nonzero ``θ̂``
      (None when fewer than two such points): ``θ̂ ∝ s^{-a}`` gives ``slope = −a``.
    * ``collapsing`` is True when ``θ̂(s_min)`` is ``±inf`` (unbounded fit at the smallest scale), or when
      all of: ``|θ̂|`` is non-increasing in ``s`` (monotone: it never shrinks as ``s`` shrinks),
      ``|θ̂(s_min)| > 2 |θ̂(s_max)|``, ``slope < 0``, and, when ``ci`` is given, the intervals at
      ``s_min`` and ``s_max`` are disjoint.

    Parameters
    ----------
    scales : array_like, shape (k,)
        Initialization scales, ``> 0``, distinct, ``k ≥ 2``; any order.
    thetas : array_like, shape (k,)
        ``θ̂`` at each scale; ``±inf`` allowed (unbounded fits), NaN not.
    ci : array_like, shape (k, 2), optional
        Profile intervals of ``θ̂`` (``±inf`` ends allowed).

    Returns
    -------
    dict
        ``slope`` (float or None), ``collapsing`` (bool), ``ratio`` (``|θ̂(s_min)| / |θ̂(s_max)|``, a float
        that is ``inf`` when the denominator is 0 or the numerator infinite) and ``note`` (the verdict and
        which condition failed).

    Examples
    --------
    >>> s = np.array([1.0, 0.5, 0.25, 0.125])
    >>> r = theta_trend(s, 2.0 * s ** -0.5)
    >>> round(r["slope"], 6), r["collapsing"]
    (-0.5, True)
    >>> theta_trend(s, np.full(4, 1.3))["collapsing"]
    False
    """
    s = _as_float(scales, "scales")
    th = _as_float(thetas, "thetas")
    if s.ndim != 1 or s.size < 2:
        raise ShapeError(f"scales has shape {s.shape}; expected (k,) with k >= 2")
    if th.shape != s.shape:
        raise ShapeError(f"thetas has shape {th.shape}; expected {s.shape}, one per scale")
    if not np.all(np.isfinite(s)):
        raise NonFiniteError("scales has NaN or infinite entries; expected finite scales > 0")
    if np.any(s <= 0):
        raise InvalidArgumentError(f"scales has entries <= 0 (min {float(np.min(s))!r}); expected scales > 0")
    if np.unique(s).size != s.size:
        raise InvalidArgumentError("scales has repeated values; expected distinct scales")
    if np.any(np.isnan(th)):
        raise NonFiniteError("thetas has NaN entries; expected finite values or +-inf for unbounded fits")
    order = np.argsort(s)
    s, th = s[order], th[order]
    c = None
    if ci is not None:
        c = _as_float(ci, "ci")
        if c.shape != (s.size, 2):
            raise ShapeError(f"ci has shape {c.shape}; expected ({s.size}, 2), one (low, high) per scale")
        if np.any(np.isnan(c)):
            raise NonFiniteError("ci has NaN entries; expected finite values or +-inf")
        if np.any(c[:, 0] > c[:, 1]):
            raise InvalidArgumentError("ci has a row with low > high; expected (low, high) with low <= high")
        c = c[order]

    a = np.abs(th)
    ok = np.isfinite(a) & (a > 0)
    slope: float | None = None
    if np.count_nonzero(ok) >= 2:
        slope = float(np.polyfit(np.log(s[ok]), np.log(a[ok]), 1)[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(a[0] / a[-1]) if a[-1] > 0 else math.inf
    if math.isnan(ratio):  # inf / inf
        ratio = math.inf
    notes = []
    if math.isinf(th[0]):
        collapsing = True
        notes.append(f"unbounded fit at the smallest scale s = {s[0]:.4g}")
    else:
        monotone = bool(np.all(np.diff(a) <= 0))
        grows = ratio > 2.0
        neg = slope is not None and slope < 0
        separated = True
        if c is not None:
            separated = bool(c[0, 1] < c[-1, 0] or c[-1, 1] < c[0, 0])
        collapsing = monotone and grows and neg and separated
        if not monotone:
            notes.append("|theta| is not monotone along the ladder")
        if not grows:
            notes.append(f"|theta| at the smallest scale is {ratio:.3g}x that at the largest (needs > 2)")
        if not separated:
            notes.append("the intervals at the smallest and largest scales overlap")
    finite = th[np.isfinite(th) & (th != 0)]
    if finite.size and np.any(np.sign(finite) != np.sign(finite[0])):
        notes.append("theta changes sign along the ladder")
    notes.insert(0, "collapsing" if collapsing else "not collapsing")
    return {"slope": slope, "collapsing": bool(collapsing), "ratio": ratio, "note": "; ".join(notes)}
