"""Rank strata ``M_r`` of ``R^{m×n}``: dimension, numerical rank, projections, the SVD chart.

MATH.md §3.1 and §5.1. All functions broadcast over leading batch axes ``(..., m, n)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .validation import check_int, check_matrix, check_positive, check_rank
from .errors import InvalidArgumentError, NonFiniteError, ShapeError
from .spectral import euclidean_log_jacobian_from_log_sigma

__all__ = [
    "dimension",
    "default_rtol",
    "numerical_rank",
    "best_rank_approx",
    "tangent_project",
    "normal_project",
    "svd_chart",
    "euclidean_log_jacobian",
]


def dimension(m: int, n: int, rank: int) -> int:
    """``dim M_r = r(m + n - r)`` (MATH.md §3.1).

    Examples
    --------
    >>> dimension(2, 2, 1)
    3
    """
    m = check_int(m, "m", minimum=1)
    n = check_int(n, "n", minimum=1)
    r = check_rank(rank, m, n)
    return r * (m + n - r)


def default_rtol(m: int, n: int) -> float:
    """Default relative tolerance of :func:`numerical_rank`: ``max(m, n) · eps`` (numpy's convention)."""
    return max(m, n) * float(np.finfo(np.float64).eps)


def numerical_rank(X: Any, rtol: float | None = None) -> np.ndarray:
    """Number of singular values ``σ_i > rtol · σ_1``; an integer array of shape ``(...)``.

    ``rtol`` defaults to ``max(m, n) · eps`` (as ``numpy.linalg.matrix_rank``). The zero matrix has
    rank 0.

    Examples
    --------
    >>> int(numerical_rank(np.diag([1.0, 1e-20])))
    1
    """
    X = check_matrix(X)
    m, n = X.shape[-2:]
    tol = default_rtol(m, n) if rtol is None else check_positive(rtol, "rtol")
    scale = np.max(np.abs(X), axis=(-2, -1), keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    s = np.linalg.svd(X / scale, compute_uv=False)
    return np.sum(s > tol * s[..., :1], axis=-1)


def best_rank_approx(X: Any, rank: int) -> np.ndarray:
    """Best rank-``rank`` approximation (truncated SVD, Eckart–Young), same shape as ``X``."""
    X = check_matrix(X)
    m, n = X.shape[-2:]
    r = check_rank(rank, m, n)
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    return (U[..., :, :r] * s[..., None, :r]) @ Vh[..., :r, :]


def _frames(X: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    U, _, Vh = np.linalg.svd(X, full_matrices=False)
    return U[..., :, :rank], np.swapaxes(Vh[..., :rank, :], -1, -2)


def tangent_project(X: Any, Z: Any, rank: int | None = None) -> np.ndarray:
    """Frobenius-orthogonal projection of ``Z`` onto ``T_X M_r``: ``P_U Z + Z P_V - P_U Z P_V``.

    ``U``, ``V`` are the top-``rank`` singular frames of ``X`` (rank=None: the numerical rank of each
    matrix is *not* used; the default is ``min(m, n)``, whose tangent space is everything).
    """
    X = check_matrix(X)
    Z = check_matrix(Z, name="Z")
    m, n = X.shape[-2:]
    if Z.shape[-2:] != (m, n):
        raise ShapeError(f"Z has shape {Z.shape}; expected (..., {m}, {n}) to match X")
    r = check_rank(rank, m, n)
    U, V = _frames(X, r)
    UZ = U @ (np.swapaxes(U, -1, -2) @ Z)
    ZV = (Z @ V) @ np.swapaxes(V, -1, -2)
    UZV = U @ (np.swapaxes(U, -1, -2) @ Z @ V) @ np.swapaxes(V, -1, -2)
    return UZ + ZV - UZV


def normal_project(X: Any, Z: Any, rank: int | None = None) -> np.ndarray:
    """``Z - tangent_project(X, Z, rank)``: the component normal to ``M_r`` at ``X``."""
    Z = check_matrix(Z, name="Z")
    return Z - tangent_project(X, Z, rank)


def svd_chart(sigma: Any, Q: Any, R: Any) -> np.ndarray:
    """The SVD chart ``(σ, Q, R) ↦ Q diag(σ) Rᵀ`` with ``Q`` (..., m, r), ``R`` (..., n, r)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    if Q.ndim < 2 or R.ndim < 2 or sigma.ndim < 1:
        raise ShapeError(f"shapes sigma {sigma.shape}, Q {Q.shape}, R {R.shape}; expected (..., r), (..., m, r), (..., n, r)")
    for label, arr in (("sigma", sigma), ("Q", Q), ("R", R)):
        if not np.all(np.isfinite(arr)):
            raise NonFiniteError(f"{label} has NaN or infinite entries; expected finite numbers")
    r = sigma.shape[-1]
    if Q.shape[-1] != r or R.shape[-1] != r:
        raise ShapeError(
            f"Q has shape {Q.shape} and R has shape {R.shape}; both need r={r} columns to match sigma"
        )
    return (Q * sigma[..., None, :]) @ np.swapaxes(R, -1, -2)


def euclidean_log_jacobian(sigma: Any, shape: tuple[int, int]) -> np.ndarray:
    """Log Jacobian of the SVD chart of ``M_r`` for the Frobenius Hausdorff measure (MATH.md §3.1).

    ``dvol_F|_{M_r} = Π_i σ_i^{m+n-2r} · van(σ²) · dσ dQ dR`` with ``r = len(sigma)``; ``-inf`` at
    coincident singular values.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    m, n = (check_int(v, "shape entry", minimum=1) for v in shape)
    if sigma.ndim < 1 or sigma.shape[-1] > min(m, n):
        raise ShapeError(f"sigma has shape {sigma.shape}; expected (..., r) with r <= min(m, n) = {min(m, n)}")
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        raise InvalidArgumentError("sigma must be finite and > 0 (singular values of a rank-r matrix)")
    return euclidean_log_jacobian_from_log_sigma(np.log(sigma), (m, n))
