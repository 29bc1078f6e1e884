"""Convergence diagnostics of ``(chain, draw)`` arrays: the package's one wrapper around ArviZ.

``ess`` (bulk or tail effective sample size) and ``rhat`` (rank-normalized split R-hat) are ArviZ's
estimators (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, *Rank-normalization, folding, and
localization: an improved R-hat*, Bayesian Analysis 16(2)), called on plain arrays. The call works with
ArviZ 0.23 (``arviz.ess(array)``) and ArviZ 1.x (``arviz_stats``, re-exported as ``arviz.ess``; the
array axes are passed explicitly there). Every other module of the package that needs an ESS or an
R-hat calls these functions; there is no hand-written estimator left.

What ArviZ leaves undefined is decided here, so that no ``nan`` leaves this module:

* zero variance over all draws (a deterministic quantity): ``ess = 1.0`` (nothing was learned from the
  repetition; callers should not diagnose constants) and ``rhat = 1.0``;
* every chain constant but chains at different values (stuck chains): ``ess = 1.0``, ``rhat = inf``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

from dlnvolume.errors import ShapeError

__all__ = ["ess", "rhat", "thin_to_ess", "arviz_major", "summarize", "attach_diagnostics", "ConvergenceWarning",
           "pareto_khat", "khat_max", "COVERAGE_MAX", "CONSISTENCY_Z_MAX", "MISSED_MAX"]

#: largest share of a replicate's walked draws (≈ the target) that may fall where its importance proposal has
#: no mass: the mass the proposal misses is about this share, and the replicate's weights cannot see it
COVERAGE_MAX = 0.01
#: largest |z| of a piece's share among a replicate's output draws against its weighted share
CONSISTENCY_Z_MAX = 4.0
#: largest share of the SMC stage's f/g weight (projected particles) that may sit in pieces (sign groups) the
#: importance sampling lost (less than a tenth of that share in its weights): a component the proposal missed
MISSED_MAX = 0.02

_METHODS = ("bulk", "tail")


def _az() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def arviz_major() -> int:
    """Major version of the installed ArviZ (0 for the 0.x ``InferenceData`` line, 1 for ``DataTree``)."""
    return int(str(_az().__version__).split(".")[0])


def _as_chains(x: Any, min_draws: int = 4) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"x could not be converted to a float array: {exc}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ShapeError(f"x has shape {x.shape}; expected (chains, draws) with chains >= 1, or (draws,)")
    if x.shape[1] < min_draws:
        raise ShapeError(f"x has {x.shape[1]} draws per chain; expected at least {min_draws}")
    if not np.all(np.isfinite(x)):
        raise ShapeError("x has NaN or infinite entries; expected finite draws")
    return x


def _degenerate(x: np.ndarray) -> tuple[float, float] | None:
    """(ess, rhat) for inputs ArviZ leaves undefined, else None."""
    if np.ptp(x) == 0:
        return 1.0, 1.0
    if np.all(np.ptp(x, axis=1) == 0):
        return 1.0, float("inf")
    return None


def _call(fn_name: str, x: np.ndarray, **kw: Any) -> float:
    az = _az()
    if arviz_major() >= 1:
        kw.update(chain_axis=0, draw_axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        before = logging.root.manager.disable
        if x.shape[0] < 2:  # ArviZ 0.x logs a shape warning for one chain (split R-hat and ESS are defined)
            logging.disable(max(before, logging.WARNING))
        try:
            value = float(np.asarray(getattr(az, fn_name)(x, **kw)).reshape(-1)[0])
        finally:
            logging.disable(before)
    return value


def ess(x: Any, method: str = "bulk") -> float:
    """Effective sample size of draws ``x`` with shape ``(chains, draws)`` (a 1-D array is one chain).

    Parameters
    ----------
    x : array_like, shape (chains, draws) or (draws,)
        Finite draws of one scalar quantity; at least 4 draws per chain.
    method : {"bulk", "tail"}
        ArviZ's rank-normalized bulk ESS, or the tail ESS (minimum over the 5 % and 95 % quantiles).

    Returns
    -------
    float
        About ``chains × draws`` for independent draws; can exceed it for antithetic chains; never
        ``nan`` (see the module docstring for constant input).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((4, 1000))
    >>> 3000 < ess(x) < 5000
    True
    """
    if method not in _METHODS:
        raise ShapeError(f"method={method!r}; expected one of {_METHODS}")
    x = _as_chains(x)
    deg = _degenerate(x)
    if deg is not None:
        return deg[0]
    kw: dict[str, Any] = {"method": method}
    if method == "tail" and arviz_major() >= 1:
        kw["prob"] = (0.05, 0.95)
    value = _call("ess", x, **kw)
    return value if np.isfinite(value) and value > 0 else 1.0


def rhat(x: Any) -> float:
    """Rank-normalized split R-hat of ``x`` with shape ``(chains, draws)`` (ArviZ's default method).

    Values above 1.01 indicate that the chains have not mixed (Vehtari et al. 2021). Never ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> rhat(rng.standard_normal((4, 1000))) < 1.01
    True
    >>> rhat(rng.standard_normal((4, 1000)) + np.arange(4)[:, None]) > 1.5
    True
    """
    x = _as_chains(x)
    deg = _degenerate(x)
    if deg is not None:
        return deg[1]
    value = _call("rhat", x)
    return value if np.isfinite(value) else float("inf")


def thin_to_ess(x: Any, *, ess_value: float | None = None) -> np.ndarray:
    """Thin each chain of ``x`` (chains, draws, ...) to about ``ESS`` roughly independent draws, pooled.

    Keeps every ``k``-th draw with ``k = ceil(chains·draws/ESS)`` (bulk ESS of the first scalar component
    unless ``ess_value`` is given); returns ``(n_kept, ...)``.
    """
    x = np.asarray(x, dtype=np.float64)
    C, n = x.shape[:2]
    e = ess(x.reshape(C, n, -1)[..., 0]) if ess_value is None else float(ess_value)
    k = max(1, int(np.ceil(C * n / max(e, 1.0))))
    return x[:, ::k].reshape((-1,) + x.shape[2:])


class ConvergenceWarning(UserWarning):
    """A sampler result with R-hat > 1.01 or ESS < 400 on some diagnosed statistic."""


RHAT_MAX = 1.01
ESS_MIN = 400.0


def pareto_khat(log_weights: Any) -> float:
    """Pareto-smoothed importance sampling shape estimate ``k̂`` of importance weights given as logs
    (Vehtari, Simpson, Gelman, Yao & Gabry 2024), by ArviZ: ``arviz.psislw`` (0.x) or
    ``arviz_stats.base.array_stats.pareto_khat`` of the right tail with ``r_eff = 1`` (1.x; independent draws). ``k̂ > khat_max(S)``: the weights' tail is too heavy for the
    estimate to be trusted. NaN for fewer than 10 finite weights.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> bool(pareto_khat(rng.normal(size=4000) * 0.3) < 0.5)   # light tail: lognormal weights, small σ
    True
    >>> bool(pareto_khat(rng.standard_cauchy(size=4000)) > 0.7)   # log-Cauchy weights: no moments
    True
    """
    lw = np.asarray(log_weights, dtype=np.float64).ravel()
    lw = lw[np.isfinite(lw)]
    if lw.size < 10:
        return float("nan")
    lw = lw - np.max(lw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on large k̂: the caller decides
        if arviz_major() >= 1:  # (1.x psislw returns NaN once exp(lw) underflows; pareto_khat works on the logs)
            from arviz_stats.base import array_stats

            k = array_stats.pareto_khat(lw[None, :], log_weights=True, tail="right", r_eff=1.0)
        else:
            _, k = _az().psislw(lw.copy())
    return float(np.asarray(k))


def khat_max(n: int) -> float:
    """The sample-size dependent threshold ``min(1 − 1/log10 S, 0.7)`` for ``k̂`` (Vehtari et al. 2024, §3.2.4)."""
    return min(1.0 - 1.0 / math.log10(max(n, 11)), 0.7)


def summarize(draws: Any, statistics: dict[str, Any] | None = None) -> dict[str, Any]:
    """R-hat and bulk/tail ESS of every statistic; the worst values and a ``converged`` flag.

    Parameters
    ----------
    draws : (chains, draws, m, n) array
        Default statistics: every entry ``X_ij`` (signed, so they tell components apart).
    statistics : dict[str, (chains, draws) array], optional
        Replaces the default statistics.

    Returns
    -------
    dict with ``rhat`` (max), ``ess_bulk``, ``ess_tail`` (min), ``per_statistic`` ``{name: (rhat, bulk,
    tail)}`` and ``converged`` (``rhat <= 1.01`` and both ESS ``>= 400``). Statistics that are constant
    (e.g. observed entries) are skipped.
    """
    x = np.asarray(draws, dtype=np.float64)
    if statistics is None:
        statistics = {f"X[{i},{j}]": x[:, :, i, j] for i in range(x.shape[2]) for j in range(x.shape[3])}
    per: dict[str, tuple[float, float, float]] = {}
    for name, v in statistics.items():
        v = np.asarray(v, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] < 4 or not np.all(np.isfinite(v)) or np.ptp(v) == 0:
            continue
        per[name] = (rhat(v), ess(v, "bulk"), ess(v, "tail"))
    if not per:
        return {"rhat": float("nan"), "ess_bulk": float("nan"), "ess_tail": float("nan"), "per_statistic": {},
                "converged": False}
    r = max(p[0] for p in per.values())
    b = min(p[1] for p in per.values())
    t = min(p[2] for p in per.values())
    return {"rhat": r, "ess_bulk": b, "ess_tail": t, "per_statistic": per,
            "converged": bool(r <= RHAT_MAX and b >= ESS_MIN and t >= ESS_MIN)}


def attach_diagnostics(chains: Any, *, free: Any = None, warn: bool = True) -> Any:
    """Return ``chains`` with :func:`summarize` of its free entries (``free`` (m, n) bool; default all)
    stored in ``chains.diagnostics``; warn in one line (:class:`ConvergenceWarning`) if not converged."""
    from dataclasses import replace

    x = np.asarray(chains.draws)
    m, n = x.shape[2:]
    free = np.ones((m, n), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    stats = {f"X[{i},{j}]": x[:, :, i, j] for i in range(m) for j in range(n) if free[i, j]}
    if not stats:
        stats = {f"X[{i},{j}]": x[:, :, i, j] for i in range(m) for j in range(n)}
    d = summarize(x, stats)
    # importance-sampling replicates (SolutionSetSampler SMC): R-hat and ESS cannot see a bias every replicate
    # shares, so the replicates' own checks count too (docs/samplers.md §4.2)
    failed = []
    if not d["rhat"] <= RHAT_MAX:
        failed.append(f"R-hat {d['rhat']:.3g} > {RHAT_MAX}")
    if not min(d["ess_bulk"], d["ess_tail"]) >= ESS_MIN:
        failed.append(f"ESS bulk/tail {d['ess_bulk']:.0f}/{d['ess_tail']:.0f} < {ESS_MIN:.0f}")
    nw = np.asarray(getattr(chains, "n_weights", np.zeros(0))).ravel()
    checks = {  # name: (limit, reason)
        "pareto_k": (khat_max(int(np.min(nw)) if nw.size else 4 * x.shape[1]),
                     "importance weights' Pareto k̂ {v:.2f} > {t:.2f}"),
        "uncovered": (COVERAGE_MAX, "a share {v:.3f} of a replicate's draws lies where its proposal has no mass (> {t:g})"),
        "consistency_z": (CONSISTENCY_Z_MAX, "output draws' piece shares off the weighted ones by {v:.1f} s.e. (> {t:g})"),
        "missed": (MISSED_MAX, "pieces holding a share {v:.3f} of the SMC stage's weight got no importance weight "
                               "(> {t:g})"),
    }
    for name, (limit, reason) in checks.items():
        v = np.asarray(getattr(chains, name, np.zeros(0)), dtype=np.float64).ravel()
        if v.size:  # the worst replicate; NaN (a check that could not be made) fails
            d[name] = float(np.max(v)) if np.all(np.isfinite(v)) else float("nan")
            if not d[name] <= limit:
                failed.append(reason.format(v=d[name], t=limit))
                d["converged"] = False
    if warn and not d["converged"]:
        why = "; ".join(failed) or "see Chains.diagnostics"
        warnings.warn(f"{chains.method}: not converged ({why}); see Chains.diagnostics",
                      ConvergenceWarning, stacklevel=3)
    return replace(chains, diagnostics=d)
