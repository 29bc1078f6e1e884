"""Effective sample size (Geyer's initial monotone sequence estimator) for ``(chain, draw)`` arrays.

Multi-chain autocorrelation as in Stan's reference manual ("Effective sample size"), without rank
normalization: with ``W`` the mean within-chain variance, ``B/n`` the variance of the chain means
and ``var⁺ = (n-1)/n W + B/n``, ``ρ_t = 1 - (W - mean_c γ_{c,t}) / var⁺``; the sum of
``ρ`` is truncated by Geyer's initial positive sequence and made monotone (Geyer 1992, Statist.
Sci. 7(4), §3.3), ``ESS = C n / τ`` with ``τ = -1 + 2 Σ_{k} P_k``, ``P_k = ρ_{2k} + ρ_{2k+1}``.
arviz is deliberately not imported here (samplers imports dlnvolume only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlnvolume.errors import ShapeError

__all__ = ["ess", "autocovariance", "thin_to_ess"]


def autocovariance(x: np.ndarray) -> np.ndarray:
    """Biased autocovariance of each row of ``x`` (chains, draws) by FFT, shape ``(chains, draws)``."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    y = x - x.mean(axis=-1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(y, size, axis=-1)
    acov = np.fft.irfft(f * np.conj(f), size, axis=-1)[..., :n] / n
    return acov


def ess(x: Any) -> float:
    """Effective sample size of draws ``x`` with shape ``(chains, draws)`` (a 1-D array is one chain).

    Returns ``chains × draws`` for i.i.d. draws (up to noise) and can exceed it for antithetic chains;
    ``nan`` is never returned: constant draws give ``1.0``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((4, 1000))
    >>> 3000 < ess(x) < 5000
    True
    """
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"x could not be converted to a float array: {exc}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ShapeError(f"x has shape {x.shape}; expected (chains, draws) with chains >= 1, or (draws,)")
    C, n = x.shape
    if n < 4:
        raise ShapeError(f"x has {n} draws per chain; expected at least 4")
    if not np.all(np.isfinite(x)):
        raise ShapeError("x has NaN or infinite entries; expected finite draws")
    acov = autocovariance(x)
    chain_mean = x.mean(axis=1)
    W = np.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = W * (n - 1.0) / n
    if C > 1:
        var_plus = var_plus + np.var(chain_mean, ddof=1)
    if var_plus <= 0:
        return 1.0
    rho = 1.0 - (W - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Geyer initial positive sequence on pair sums, then monotone
    npairs = n // 2
    P = rho[: 2 * npairs].reshape(npairs, 2).sum(axis=1)
    k = 0
    while k < npairs and P[k] > 0:
        k += 1
    P = P[:k]
    if k == 0:
        return float(C * n)
    P = np.minimum.accumulate(P)
    tau = -1.0 + 2.0 * np.sum(P)
    tau = max(tau, 1.0 / np.log10(C * n + 10))  # Stan's cap against absurd antithetic values
    return float(C * n / tau)


def thin_to_ess(x: Any, *, ess_value: float | None = None) -> np.ndarray:
    """Thin each chain of ``x`` (chains, draws, ...) to about ``ESS`` roughly independent draws, pooled.

    Keeps every ``k``-th draw with ``k = ceil(chains·draws/ESS)``; returns ``(n_kept, ...)``.
    """
    x = np.asarray(x, dtype=np.float64)
    C, n = x.shape[:2]
    e = ess(x.reshape(C, n, -1)[..., 0]) if ess_value is None else float(ess_value)
    k = max(1, int(np.ceil(C * n / max(e, 1.0))))
    return x[:, ::k].reshape((-1,) + x.shape[2:])
