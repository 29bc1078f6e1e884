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

import functools
import math

import numpy as np

__all__ = [
    "log_expm1_ratio",
    "log_singular_values",
    "log_multipliers",
    "log_volume_density_from_log_sigma",
    "log_volume_density_from_sigma",
    "scaled_singular_values",
    "chart_log_density_from_log_sigma",
    "euclidean_log_jacobian_from_log_sigma",
]


def log_expm1_ratio(z: np.ndarray) -> np.ndarray:
    """``log(expm1(z)/z)`` for real ``z`` (value 0 at ``z = 0``), stable for all signs and sizes.

    For ``z > 0`` uses ``expm1(z)/z = e^z · expm1(-z)/(-z)`` so nothing overflows.
    """
    z = np.asarray(z, dtype=np.float64)
    return np.maximum(z, 0.0) + _log_expm1_ratio_nonpositive(-np.abs(z))


def scaled_singular_values(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values of ``X / scale`` (descending) and ``log scale``, ``scale = max |X_ij|`` (1 for 0).

    Dividing by the largest entry first keeps the SVD finite for entries near 1e-300 or 1e+300.
    """
    scale = np.max(np.abs(X), axis=(-2, -1))
    if X.ndim == 2:
        scale = float(scale) if scale > 0 else 1.0
        if 1e-100 < scale < 1e100:
            return np.linalg.svd(X, compute_uv=False) / scale, np.log(scale)
        return np.linalg.svd(X / scale, compute_uv=False), np.log(scale)
    scale = np.where(scale > 0, scale, 1.0)
    if np.all((scale > 1e-100) & (scale < 1e100)):
        s = np.linalg.svd(X, compute_uv=False) / scale[..., None]
    else:
        s = np.linalg.svd(X / scale[..., None, None], compute_uv=False)
    return s, np.log(scale)


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


def _log_expm1_ratio_nonpositive(z: np.ndarray) -> np.ndarray:
    """:func:`log_expm1_ratio` for ``z <= 0`` (fewer passes; the flows call it at every step)."""
    zero = z == 0.0
    safe = np.where(zero, -1.0, z)
    r = np.expm1(safe)
    r /= safe
    r[zero] = 1.0
    return np.log(r)


def _log_multipliers_positive(log_sigma: np.ndarray, shape: tuple[int, int], N: float,
                              normalized: bool) -> np.ndarray:
    """:func:`log_multipliers` when every singular value is positive and kept (``rank >= k``), the case of
    every flow step: the same formulas without the masks for zero singular values."""
    m, n = shape
    k = log_sigma.shape[-1]
    li = log_sigma[..., :, None]
    lj = log_sigma[..., None, :]
    hi = np.maximum(li, lj)
    d2 = np.abs(li - lj)
    d2 *= -2.0
    # log of expm1(d2)/(N·expm1(d2/N)) (finite N) or expm1(d2)/d2 (N = ∞), 1 at d2 = 0: one quotient
    # instead of two log_expm1_ratio calls (the flows call this at every field evaluation)
    if math.isinf(N):
        core = 2.0 * hi
        den = d2
    else:
        core = (2.0 * (N - 1) / N) * hi
        den = np.expm1(d2 / N)
        den *= N
        if not normalized:
            core += math.log(N)
    # 1 where den = 0: d2 = 0 (or |d2|/N below the smallest subnormal, where the quotient is 1)
    q = np.divide(np.expm1(d2), den, out=np.ones_like(d2), where=den != 0.0)
    core += np.log(q)
    if m == n == k:
        return core
    out = np.full(log_sigma.shape[:-1] + (m, n), -np.inf)
    out[..., :k, :k] = core
    if not math.isinf(N):  # one singular value beyond the rank (zero): σ^{2(N-1)/N}/N of the other
        mixed = (2.0 * (N - 1) / N) * log_sigma
        if normalized:
            mixed -= math.log(N)
        out[..., k:, :k] = mixed[..., None, :]
        out[..., :k, k:] = mixed[..., :, None]
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
    if depth != 1 and rank >= log_sigma.shape[-1] and np.isfinite(log_sigma).all():
        return _log_multipliers_positive(log_sigma, shape, depth, normalized)
    return _log_multipliers_general(log_sigma, shape, rank, depth, normalized)


def _log_multipliers_general(log_sigma: np.ndarray, shape: tuple[int, int], rank: int, depth: float,
                             normalized: bool) -> np.ndarray:
    """:func:`log_multipliers` for any input (zero singular values, ``rank < k``)."""
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


def _pairs(log_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lo``, ``hi`` and ``|Δ|`` over the pairs ``i < j`` of ``(..., r)`` finite log σ."""
    r = log_sigma.shape[-1]
    iu0, iu1 = np.triu_indices(r, 1)
    a = log_sigma[..., iu0]
    b = log_sigma[..., iu1]
    return np.minimum(a, b), np.maximum(a, b), np.abs(a - b)


@functools.lru_cache(maxsize=64)
def _circulant_index(r: int) -> np.ndarray:
    """``idx[k-1, i] = (i + k) mod r`` for ``k = 1..⌊r/2⌋``: every unordered pair once (twice for k = r/2)."""
    h = r // 2
    idx = (np.arange(r)[None, :] + np.arange(1, h + 1)[:, None]) % r
    idx.setflags(write=False)
    return idx


def _pair_log_q_sum(s: np.ndarray, depth: float) -> np.ndarray:
    """``Σ_{i<j} log q_ij`` with ``q_ij = expm1(−2t)/(N·expm1(−2t/N))``, ``t = |log σ_i − log σ_j|``.

    ``q_ij = λ_ij / σ_hi^{2(N−1)/N}`` is the normalized multiplier without its scale (MATH.md §2.1); at
    ``N = ∞`` it is ``−expm1(−2t)/(2t)``, the logarithmic-mean ratio. Numerator and denominator are
    both functions of the same ``t``, so nearly coincident singular values give ``q → 1`` without 0/0
    or cancellation; for integer ``N ≤ 32`` the same ``q`` is evaluated as the mean of ``u^k``,
    ``k = 0..N−1``, ``u = exp(−2t/N)`` (one exp per pair instead of two expm1: the d = 100 volume
    density costs ~1.2× the SVD instead of ~1.5×). Each unordered pair is visited once through a cached circulant index
    (pairs ``(i, i+k mod r)``, ``k = 1..⌊r/2⌋``). Logs are taken of products of at most 64 factors:
    ``q(N) ≥ q(∞) = (1 − ρ²)/(2|log ρ|) ≥ 1/1490`` for every float64 ratio ``ρ = σ_lo/σ_hi > 0``
    (``|log ρ| ≤ 745``) and ``q ≤ 1``, so a product of 64 factors stays above 1e-203.
    ``s``: (..., r) positive, any order.
    """
    r = s.shape[-1]
    if r < 2:
        return np.zeros(s.shape[:-1])
    h = r // 2
    ls = np.log(s)
    t = np.abs(ls[..., None, :] - ls[..., _circulant_index(r)])
    if not math.isinf(depth) and depth <= 32 and depth == int(depth):
        # integer N: q = (1 + u + … + u^{N−1}) / N with u = exp(−2t/N) ∈ (0, 1] — a sum of positive
        # terms (Horner), exact at t = 0 and free of cancellation; one exp instead of two expm1
        u = np.exp((-2.0 / depth) * t)
        q = np.ones_like(u)
        for _ in range(int(depth) - 1):
            q *= u
            q += 1.0
        q /= depth
    else:
        zero = t == 0.0
        num = np.expm1(-2.0 * t)
        if math.isinf(depth):
            den = -2.0 * t
        else:
            den = depth * np.expm1((-2.0 / depth) * t)
        q = np.ones_like(num)
        np.divide(num, den, out=q, where=~zero)
    if r % 2 == 0:  # the shift k = r/2 visits every pair twice: count it once
        q[..., -1, :] = np.sqrt(q[..., -1, :])
    if h <= 64:
        return np.sum(np.log(np.prod(q, axis=-2)), axis=-1)
    total = np.zeros(s.shape[:-1])
    for start in range(0, h, 64):
        total = total + np.sum(np.log(np.prod(q[..., start : start + 64, :], axis=-2)), axis=-1)
    return total


def log_volume_density_from_sigma(
    sigma_scaled: np.ndarray,
    log_scale: np.ndarray | float,
    shape: tuple[int, int],
    rank: int,
    depth: float,
    normalized: bool = True,
) -> np.ndarray:
    """``log ρ_N^{(r)}`` from singular values ``σ = sigma_scaled · exp(log_scale)`` (descending).

    ``ρ_N^{(r)} = Π_{(i,j) tangent} λ_ij^{-1/2}`` (MATH.md §3.2–§3.3): the density of the g_N-volume of
    the rank-r stratum w.r.t. its Frobenius Hausdorff measure. With ``l = log σ`` (descending),
    ``e = 2(N−1)/N`` and ``c = m + n − 2r``::

        log ρ = −½ [ e Σ_i l_i + 2 Σ_{i<j} (e·max(l_i, l_j) + log q_ij) + c Σ_i (e l_i − log N) ]

    and ``Σ_{i<j} max(l_i, l_j) = Σ_i (r−1−i) l_i`` for sorted ``l``. At ``N = ∞`` on a rectangular
    shape or a lower stratum the mixed multipliers ``σ_i^{2(N−1)/N}/N`` are renormalized to ``σ_i²``
    (the factor ``N^{r(m+n−2r)/2}`` of MATH.md §3.4 removed). ``+inf`` when a singular value inside the
    stratum is zero (N >= 2); 0 at ``N = 1``.
    """
    m, n = shape
    N = depth
    r = rank
    s = sigma_scaled[..., :r]
    batch = s.shape[:-1]
    if N == 1 or r == 0:
        return np.zeros(batch)
    positive = s > 0
    zero = ~np.all(positive, axis=-1)
    if zero.any():
        s = np.where(positive, s, 1.0)
    l = np.log(s) + np.asarray(log_scale)[..., None]
    c = m + n - 2 * r
    e = 2.0 if math.isinf(N) else 2.0 * (N - 1) / N
    weights = 1.0 + 2.0 * (r - 1 - np.arange(r))  # diagonal + twice the pairs where l_i is the max
    total = e * np.sum(l * weights, axis=-1) + 2.0 * _pair_log_q_sum(s, N)
    if c:
        mixed = e * np.sum(l, axis=-1)
        if not math.isinf(N):
            mixed = mixed - r * math.log(N)
        total = total + c * mixed
    total = -0.5 * total
    if not normalized:
        total = total - 0.5 * r * (m + n - r) * math.log(N)
    return np.where(zero, np.inf, total)


def log_volume_density_from_log_sigma(
    log_sigma: np.ndarray,
    shape: tuple[int, int],
    rank: int,
    depth: float,
    normalized: bool = True,
) -> np.ndarray:
    """``log ρ_N^{(r)}`` from log singular values (descending, ``-inf`` for zeros).

    See :func:`log_volume_density_from_sigma`; the values are rescaled by their maximum first.
    """
    ls = log_sigma[..., :rank]
    if rank == 0:
        return np.zeros(ls.shape[:-1])
    top = np.max(np.where(np.isfinite(ls), ls, -np.inf), axis=-1)
    top = np.where(np.isfinite(top), top, 0.0)
    return log_volume_density_from_sigma(np.exp(ls - top[..., None]), top, shape, rank, depth, normalized)


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
