"""Spectral formulas of the DLN metric, evaluated in log space from log singular values.

Everything here works on ``log σ`` so that entries of size 1e-150 or 1e+150 neither underflow nor
overflow, and uses ``expm1`` ratios so that coincident or nearly coincident singular values give no
0/0. These are the kernels behind :class:`dlnvolume.DLNMetric`; they trust their inputs.

Conventions (MATH.md §0, §2.1):

* ``x_i = σ_i^{2/N}``; unnormalized multiplier ``a_ij = Σ_{p=1}^N x_i^{N-p} y_j^{p-1}`` (``0^0 = 1``);
  normalized ``λ_ij = a_ij / N``; at ``N = ∞`` only the normalized form exists and
  ``λ_ij = L(σ_i², σ_j²)`` (logarithmic mean).
* With ``Δ = -|log σ_i - log σ_j| ≤ 0``, ``hi = max(log σ_i, log σ_j)`` and
  ``E(z) = log(expm1(z)/z)`` (``E(0) = 0``)::

      log λ_ij = (2(N-1)/N)·hi + E(2Δ) - E(2Δ/N)          (finite N; E(0)-term drops at N = ∞)

  which is ``log[(σ_i² - σ_j²) / (N(σ_i^{2/N} - σ_j^{2/N}))]`` without the cancellation.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "log_expm1_ratio",
    "log_singular_values",
    "log_multipliers",
    "log_volume_density_from_log_sigma",
    "chart_log_density_from_log_sigma",
    "euclidean_log_jacobian_from_log_sigma",
]


def log_expm1_ratio(z: np.ndarray) -> np.ndarray:
    """``log(expm1(z)/z)`` for real ``z`` (value 0 at ``z = 0``), stable for all signs and sizes.

    For ``z > 0`` uses ``expm1(z)/z = e^z · expm1(-z)/(-z)`` so nothing overflows.
    """
    z = np.asarray(z, dtype=np.float64)
    w = -np.abs(z)
    safe = np.where(w == 0.0, -1.0, w)
    ratio = np.where(w == 0.0, 1.0, np.expm1(safe) / safe)
    return np.maximum(z, 0.0) + np.log(ratio)


def log_singular_values(X: np.ndarray) -> np.ndarray:
    """Log singular values ``(..., min(m, n))`` in descending order; ``-inf`` for exact zeros.

    The matrix is divided by its largest absolute entry before the SVD, so entries near the
    limits of float64 (1e-300, 1e+300) are handled.
    """
    scale = np.max(np.abs(X), axis=(-2, -1), keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    s = np.linalg.svd(X / scale, compute_uv=False)
    with np.errstate(divide="ignore"):
        return np.log(s) + np.log(scale[..., 0])


def _extended(log_sigma: np.ndarray, size: int, rank: int) -> np.ndarray:
    """Extend ``log σ`` (..., k) to length ``size`` with ``-inf`` beyond ``rank``."""
    out = np.full(log_sigma.shape[:-1] + (size,), -np.inf)
    r = min(rank, log_sigma.shape[-1])
    out[..., :r] = log_sigma[..., :r]
    return out


def log_multipliers(
    log_sigma: np.ndarray,
    shape: tuple[int, int],
    rank: int,
    depth: float,
    normalized: bool = True,
) -> np.ndarray:
    """Log of the multipliers of ``A`` (or ``Ā``) in the SVD basis, shape ``(..., m, n)``.

    MATH.md §2.1 (all blocks, rectangular shapes). Singular values beyond ``rank`` are treated as
    zero (best rank-r approximation). Entries are ``-inf`` where the multiplier is zero.

    Parameters
    ----------
    log_sigma : (..., k) array
        Log singular values, descending (``-inf`` allowed).
    shape : (m, n)
    rank : int
        Singular values with index >= rank are set to zero.
    depth : int or math.inf
    normalized : bool
        ``λ = a/N`` if True, ``a`` otherwise (finite depth only).
    """
    m, n = shape
    N = depth
    li = _extended(log_sigma, m, rank)[..., :, None]
    lj = _extended(log_sigma, n, rank)[..., None, :]
    fi = np.isfinite(li)
    fj = np.isfinite(lj)
    both = fi & fj
    li0 = np.where(fi, li, 0.0)
    lj0 = np.where(fj, lj, 0.0)
    hi = np.maximum(li0, lj0)
    delta = -np.abs(li0 - lj0)
    if N == 1:
        return np.zeros(np.broadcast_shapes(li.shape, lj.shape))
    if math.isinf(N):
        inside = 2.0 * hi + log_expm1_ratio(2.0 * delta)
        mixed = np.full_like(inside, -np.inf)  # σ^{2(N-1)/N}/N -> 0
    else:
        inside = (2.0 * (N - 1) / N) * hi + log_expm1_ratio(2.0 * delta) - log_expm1_ratio(2.0 * delta / N)
        mixed = (2.0 * (N - 1) / N) * np.where(fi, li0, lj0)
        if normalized:
            mixed = mixed - math.log(N)
        else:
            inside = inside + math.log(N)
    out = np.where(both, inside, np.where(fi | fj, mixed, -np.inf))
    return out


def _pair_sum(values: np.ndarray) -> np.ndarray:
    """Sum over ``i < j`` of a symmetric ``(..., r, r)`` array."""
    r = values.shape[-1]
    if r < 2:
        return np.zeros(values.shape[:-2])
    iu = np.triu_indices(r, 1)
    return values[..., iu[0], iu[1]].sum(axis=-1)


def _pairs(log_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lo``, ``hi`` and ``|Δ|`` over the pairs ``i < j`` of ``(..., r)`` finite log σ."""
    r = log_sigma.shape[-1]
    iu0, iu1 = np.triu_indices(r, 1)
    a = log_sigma[..., iu0]
    b = log_sigma[..., iu1]
    return np.minimum(a, b), np.maximum(a, b), np.abs(a - b)


def log_volume_density_from_log_sigma(
    log_sigma: np.ndarray,
    shape: tuple[int, int],
    rank: int,
    depth: float,
    normalized: bool = True,
) -> np.ndarray:
    """``log ρ_N^{(r)}`` from the top-``rank`` log singular values, shape ``(...)``.

    ``ρ_N^{(r)} = Π_{(i,j) tangent} λ_ij^{-1/2}`` (MATH.md §3.2–§3.3): the density of the g_N-volume of
    the rank-r stratum w.r.t. its Frobenius Hausdorff measure. At ``N = ∞`` on a rectangular shape or
    a lower stratum the mixed multipliers ``σ_i^{2(N-1)/N}/N`` are renormalized to ``σ_i²``
    (the factor ``N^{r(m+n-2r)/2}`` of MATH.md §3.4 removed). ``+inf`` when a singular value inside the
    stratum is zero (N >= 2).
    """
    m, n = shape
    N = depth
    r = rank
    ls = log_sigma[..., :r]
    batch = ls.shape[:-1]
    if N == 1 or r == 0:
        return np.zeros(batch)
    zero = ~np.all(np.isfinite(ls), axis=-1)
    ls = np.where(np.isfinite(ls), ls, 0.0)
    c = m + n - 2 * r
    if math.isinf(N):
        diag = 2.0 * ls  # log λ_ii = 2 log σ
        mixed = 2.0 * ls  # renormalized
        lo, hi, ad = _pairs(ls)
        pair = 2.0 * hi + log_expm1_ratio(-2.0 * ad)
    else:
        e = 2.0 * (N - 1) / N
        diag = e * ls
        mixed = e * ls - math.log(N)
        lo, hi, ad = _pairs(ls)
        pair = e * hi + log_expm1_ratio(-2.0 * ad) - log_expm1_ratio(-2.0 * ad / N)
    total = -0.5 * np.sum(diag + c * mixed, axis=-1) - np.sum(pair, axis=-1)
    if not normalized:
        total = total - 0.5 * r * (m + n - r) * math.log(N)
    return np.where(zero, np.inf, total)


def euclidean_log_jacobian_from_log_sigma(log_sigma: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Log of the SVD-chart Jacobian of the Frobenius volume of M_r (MATH.md §3.1).

    ``Σ_i (m+n-2r) log σ_i + Σ_{i<j} log|σ_i² - σ_j²|`` with ``r = log_sigma.shape[-1]``.
    """
    m, n = shape
    r = log_sigma.shape[-1]
    lo, hi, ad = _pairs(log_sigma)
    # log|σ_i² - σ_j²| = 2 hi + log(-expm1(-2|Δ|))
    with np.errstate(divide="ignore"):
        pair = 2.0 * hi + np.log(-np.expm1(-2.0 * ad))
    return (m + n - 2 * r) * np.sum(log_sigma, axis=-1) + np.sum(pair, axis=-1)


def chart_log_density_from_log_sigma(
    log_sigma: np.ndarray,
    shape: tuple[int, int],
    depth: float,
    normalized: bool = True,
) -> np.ndarray:
    """Log density of the g_N-volume of M_r in SVD coordinates ``(σ, Q, R)``, ``r = log_sigma.shape[-1]``.

    Density w.r.t. ``dσ_1⋯dσ_r dQ_r dR_r`` (Muirhead measures on the Stiefel manifolds), i.e.
    ``ρ_N^{(r)} × (SVD Jacobian)`` of MATH.md §3.1, written without the ``1/van(σ²)`` cancellation
    (MATH.md §3.3, normalized: times ``N^{r(m+n-r)/2}``)::

        Σ_i ((m+n-2r+1-N)/N) log σ_i + Σ_{i<j} log(N |σ_i^{2/N} - σ_j^{2/N}|) + (r(m+n-2r)/2) log N

    At ``N = ∞``: ``-Σ log σ_i + Σ_{i<j} log|log σ_i² - log σ_j²|`` (MATH.md §3.4, renormalized off
    the square full-rank set). ``-inf`` at coincident singular values (the chart is singular there).
    Unnormalized: minus ``(r(m+n-r)/2) log N``.
    """
    m, n = shape
    N = depth
    r = log_sigma.shape[-1]
    c = m + n - 2 * r
    lo, hi, ad = _pairs(log_sigma)
    with np.errstate(divide="ignore"):
        log2ad = np.log(2.0 * ad)
    if math.isinf(N):
        per = -1.0 * np.sum(log_sigma, axis=-1)
        pair = log2ad
        const = 0.0
    else:
        per = ((c + 1.0 - N) / N) * np.sum(log_sigma, axis=-1)
        # log(N |x_i - x_j|) = (2/N) lo + log(2|Δ|) + E(2|Δ|/N)
        pair = (2.0 / N) * lo + log2ad + log_expm1_ratio(2.0 * ad / N)
        const = 0.5 * r * c * math.log(N)
        if not normalized:
            const -= 0.5 * r * (m + n - r) * math.log(N)
    return per + np.sum(pair, axis=-1) + const
