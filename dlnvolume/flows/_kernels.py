"""Compiled (numba) kernels of the end-to-end flow: the field ``−Ā_{N,Y}(E'(Y))`` of one matrix, its
forward-difference Jacobian, and the sign of ``det``. One implementation, used by the compiled
integrator (:mod:`.compiled`), by :func:`.ivp.scipy_ivp` and by the benchmarks.

MATH.md §2.1 (multipliers in the SVD basis), §2.3 (``N = ∞``); docs/math.md §2. With the full SVD
``Y = U Σ Vᵀ`` the operator is ``Ā_Y(G) = U (λ ⊙ UᵀGV) Vᵀ``. For ``σ_i, σ_j > 0``, with
``h = max(log σ_i, log σ_j)`` and ``δ = −2|log σ_i − log σ_j|``::

    λ_ij = e^{2(N−1)h/N} · expm1(δ) / (N·expm1(δ/N))      (finite N; ×N when not normalized)
    λ_ij = e^{2h} · expm1(δ) / δ                           (N = ∞; the logarithmic mean of σ_i², σ_j²)

and for exactly one of ``σ_i, σ_j`` zero (or an index beyond ``k = min(m, n)``) ``σ^{2(N−1)/N}/N``
(finite N; without ``/N`` when not normalized) and 0 at ``N = ∞``; both zero: 0. ``N = 1``: λ = 1.

Depth is passed as a float (``math.inf`` for ``N = ∞``); every kernel is ``njit(cache=True)``, so a
process compiles it once per machine and later processes load it from numba's cache
(``__pycache__`` next to this file, or ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._lu import lu_inplace
from ._svd import svd_full, svd_full_warm
from ._svd import svdvals as _svdvals

__all__ = ["multipliers", "field_into", "field_full", "field", "fd_jacobian_into", "rho", "sign_det", "svdvals"]

_EPS = float(np.finfo(float).eps)
_SQRT_EPS = math.sqrt(_EPS)


@njit(cache=True, error_model="numpy")
def multipliers(s: np.ndarray, m: int, n: int, N: float, normalized: bool, lam: np.ndarray) -> None:
    """Fill ``lam (m, n)`` with the multipliers ``λ_ij`` of ``Ā`` (``A`` when not ``normalized``) at the
    descending singular values ``s (k,)`` (module docstring; MATH.md §2.1, §2.3)."""
    k = s.shape[0]
    if N == 1.0:
        lam[:, :] = 1.0
        return
    inf = math.isinf(N)
    c = 2.0 if inf else 2.0 * (N - 1.0) / N
    logN = 0.0 if inf else math.log(N)
    for i in range(m):
        si = s[i] if i < k else 0.0
        for j in range(n):
            sj = s[j] if j < k else 0.0
            if si > 0.0 and sj > 0.0:
                li = math.log(si)
                lj = math.log(sj)
                hi = max(li, lj)
                d2 = -2.0 * abs(li - lj)
                if inf:
                    den = d2
                    core = c * hi
                else:
                    den = N * math.expm1(d2 / N)
                    core = c * hi if normalized else c * hi + logN
                q = math.expm1(d2) / den if den != 0.0 else 1.0
                lam[i, j] = math.exp(core) * q
            elif si > 0.0 or sj > 0.0:
                if inf:
                    lam[i, j] = 0.0
                else:
                    sf = si if si > 0.0 else sj
                    v = math.exp(c * math.log(sf))
                    lam[i, j] = v / N if normalized else v
            else:
                lam[i, j] = 0.0


@njit(cache=True, error_model="numpy")
def _finite(Y: np.ndarray) -> bool:
    for v in Y.ravel():
        if not math.isfinite(v):
            return False
    return True


@njit(cache=True, error_model="numpy")
def field_into(Y: np.ndarray, mask: np.ndarray, M: np.ndarray, N: float, normalized: bool,
               F: np.ndarray, s_out: np.ndarray) -> bool:
    """``F = −Ā_{N,Y}(E'(Y)) = Ā_Y(P_Ω(M − Y))`` and ``s_out = σ(Y)`` (descending) in place; returns
    False (``F = 0``, ``s_out = 0``) when ``Y`` or ``F`` is not finite."""
    m, n = Y.shape
    if not _finite(Y):
        F[:, :] = 0.0
        s_out[:] = 0.0
        return False
    G = mask * (M - Y)
    if N == 1.0:
        F[:, :] = G
        s_out[:] = _svdvals(Y)
        return True
    U, s, Vh = svd_full(Y)
    lam = np.empty((m, n))
    multipliers(s, m, n, N, normalized, lam)
    H = (U.T @ G) @ Vh.T
    H *= lam
    F[:, :] = (U @ H) @ Vh
    s_out[:] = s
    if not _finite(F):
        F[:, :] = 0.0
        return False
    return True


@njit(cache=True, error_model="numpy")
def field_full(Y: np.ndarray, mask: np.ndarray, M: np.ndarray, N: float, normalized: bool, F: np.ndarray):
    """:func:`field_into` that also returns the full SVD of ``Y``: ``(ok, U (m, m), s (k,), Vh (n, n))``
    (zeros for a non-finite ``Y``)."""
    return field_full_warm(Y, mask, M, N, normalized, F, np.empty((0, 0)), np.empty((0, 0)))


@njit(cache=True, error_model="numpy")
def field_full_warm(Y: np.ndarray, mask: np.ndarray, M: np.ndarray, N: float, normalized: bool, F: np.ndarray,
                    U0: np.ndarray, Vh0: np.ndarray):
    """:func:`field_full` with the SVD started from the singular vectors ``U0``, ``Vh0`` of a nearby
    matrix (:func:`._svd.svd_full_warm`; empty ``U0``: a cold start). The integrator passes those of the
    step's start to its stages."""
    m, n = Y.shape
    if not _finite(Y):
        F[:, :] = 0.0
        return False, np.eye(m), np.zeros(min(m, n)), np.eye(n)
    if U0.shape[0] == m and Vh0.shape[0] == n:
        U, s, Vh = svd_full_warm(Y, U0, Vh0)
    else:
        U, s, Vh = svd_full(Y)
    G = mask * (M - Y)
    if N == 1.0:
        F[:, :] = G
        return True, U, s, Vh
    lam = np.empty((m, n))
    multipliers(s, m, n, N, normalized, lam)
    H = (U.T @ G) @ Vh.T
    H *= lam
    F[:, :] = (U @ H) @ Vh
    if not _finite(F):
        F[:, :] = 0.0
        return False, U, s, Vh
    return True, U, s, Vh


@njit(cache=True, error_model="numpy")
def rho(s: np.ndarray, N: float, normalized: bool) -> float:
    """``ρ = max_ij λ_ij = λ_11`` (the multipliers increase in both arguments, MATH.md §2.1): the stiffness
    indicator ``h·ρ`` (an upper bound of the spectral radius of ``Ā_X∘P_Ω``)."""
    s1 = s[0]
    if math.isinf(N):
        return s1 * s1
    if N == 1.0:
        return 1.0
    lam = math.exp(2.0 * (N - 1.0) / N * math.log(s1)) if s1 > 0 else 0.0
    return lam if normalized else N * lam


@njit(cache=True, error_model="numpy")
def field(Y: np.ndarray, mask: np.ndarray, M: np.ndarray, N: float, normalized: bool) -> np.ndarray:
    """The field at one matrix ``Y (m, n)`` (NaN entries when not finite: a solver then rejects the step)."""
    m, n = Y.shape
    F = np.empty((m, n))
    s = np.empty(min(m, n))
    if not field_into(np.ascontiguousarray(Y), mask, M, N, normalized, F, s):
        F[:, :] = np.nan
    return F


@njit(cache=True, error_model="numpy")
def fd_jacobian_into(Y: np.ndarray, F0: np.ndarray, mask: np.ndarray, M: np.ndarray, N: float,
                     normalized: bool, J: np.ndarray) -> bool:
    """``J (mn, mn)``, ``J[i, j] = ∂F_i/∂y_j`` (row-major flattening) by forward differences from the
    field ``F0`` at ``Y``: steps ``√eps·max(|y_j|, rms(Y))`` (the representable difference is used).
    Returns False (``J = 0``) when a perturbed field is not finite."""
    m, n = Y.shape
    d = m * n
    y = Y.reshape(d)
    ref = math.sqrt(np.sum(y * y) / d)
    Yp = Y.copy()
    yp = Yp.reshape(d)  # a view: perturbing yp perturbs Yp
    Fp = np.empty((m, n))
    s = np.empty(min(m, n))
    f0 = F0.reshape(d)
    for j in range(d):
        delta = _SQRT_EPS * max(abs(y[j]), ref, 1e-300)
        old = yp[j]
        yp[j] = old + delta
        dl = yp[j] - old
        ok = field_into(Yp, mask, M, N, normalized, Fp, s)
        yp[j] = old
        if not ok or dl == 0.0:
            J[:, :] = 0.0
            return False
        fp = Fp.reshape(d)
        for i in range(d):
            J[i, j] = (fp[i] - f0[i]) / dl
    return True


@njit(cache=True, error_model="numpy")
def svdvals(Y: np.ndarray) -> np.ndarray:
    """Singular values of one matrix, descending."""
    return _svdvals(np.ascontiguousarray(Y))


@njit(cache=True, error_model="numpy")
def sign_det(Y: np.ndarray) -> float:
    """``sign det Y`` by Gaussian elimination with partial pivoting (square ``Y``); 0 for a singular ``Y``."""
    sign, _, ok = lu_inplace(Y.copy(), np.empty(Y.shape[0], dtype=np.int64))
    return sign if ok else 0.0
