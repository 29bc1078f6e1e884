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

import warnings
from typing import Any

import numpy as np

from dlnvolume.errors import ShapeError

__all__ = ["ess", "rhat", "thin_to_ess", "arviz_major", "summarize", "attach_diagnostics", "ConvergenceWarning"]

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
        value = float(np.asarray(getattr(az, fn_name)(x, **kw)).reshape(-1)[0])
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
    if warn and not d["converged"]:
        failed = []
        if not d["rhat"] <= RHAT_MAX:
            failed.append(f"R-hat {d['rhat']:.3g} > {RHAT_MAX}")
        if not min(d["ess_bulk"], d["ess_tail"]) >= ESS_MIN:
            failed.append(f"ESS bulk/tail {d['ess_bulk']:.0f}/{d['ess_tail']:.0f} < {ESS_MIN:.0f}")
        why = "; ".join(failed) or "see Chains.diagnostics"
        warnings.warn(f"{chains.method}: not converged ({why}); see Chains.diagnostics",
                      ConvergenceWarning, stacklevel=3)
    return replace(chains, diagnostics=d)
