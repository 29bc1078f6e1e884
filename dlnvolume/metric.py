"""The DLN metric ``g_N`` and its volume forms (MATH.md §1.3–§3.5).

``A_{N,X}(Z) = Σ_{p=1}^N (XXᵀ)^{(N-p)/N} Z (XᵀX)^{(p-1)/N}`` is diagonal in the SVD basis
``{Q E_ij Rᵀ}`` with multipliers ``a_ij`` (MATH.md §2.1). ``g_N(X)(Z1, Z2) = ⟨Z1, A^{-1} Z2⟩``.
The default is CMV's normalized operator ``Ā = A/N`` (``normalized=True``), which has a finite
``N → ∞`` limit with multipliers ``L(σ_i², σ_j²)`` (MATH.md §2.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .validation import check_depth, check_matrix, check_rank
from .errors import DegenerateMetricError, InvalidArgumentError, ShapeError
from .spectral import (
    chart_log_density_from_log_sigma,
    log_multipliers,
    log_singular_values,
    log_volume_density_from_sigma,
    scaled_singular_values,
)

__all__ = ["DLNMetric", "log_volume_density"]


def _check_pair(X: np.ndarray, Z: Any, name: str) -> np.ndarray:
    Z = check_matrix(Z, name=name)
    if Z.shape[-2:] != X.shape[-2:]:
        raise ShapeError(f"{name} has shape {Z.shape}; expected (..., {X.shape[-2]}, {X.shape[-1]}) to match X")
    try:
        np.broadcast_shapes(X.shape[:-2], Z.shape[:-2])
    except ValueError:
        raise ShapeError(f"batch shapes of X {X.shape} and {name} {Z.shape} do not broadcast") from None
    return Z


@dataclass(frozen=True)
class DLNMetric:
    """The Riemannian metric ``g_N`` of the depth-``N`` deep linear network on ``R^{m×n}``.

    Parameters
    ----------
    depth : int >= 1 or math.inf
        Number of factors ``N``.
    normalized : bool, default True
        Use ``Ā = A/N`` (CMV convention, time ``τ = N t``). ``False`` gives the raw operator of the
        factor gradient flow; refused at infinite depth.

    Notes
    -----
    The geometry holds only the structure (depth, normalization); points are passed to each method.
    All methods broadcast over leading batch axes ``(..., m, n)``.

    Examples
    --------
    >>> import numpy as np
    >>> metric = DLNMetric(depth=3, normalized=False)
    >>> a = metric.multipliers(np.diag([2.0, 1.0]))
    >>> round(float(a[0, 1]), 12)   # 3/(2^{2/3} - 1), MATH.md §8 item 3
    5.107243151758
    """

    depth: float = 1
    normalized: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.normalized, (bool, np.bool_)):
            raise InvalidArgumentError(f"normalized={self.normalized!r}; expected True or False")
        object.__setattr__(self, "depth", check_depth(self.depth, normalized=bool(self.normalized)))
        object.__setattr__(self, "normalized", bool(self.normalized))

    # ------------------------------------------------------------------ spectral data
    def _svd(self, X: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full SVD ``U, log σ, V`` with ``U`` (..., m, m), ``V`` (..., n, n)."""
        scale = np.max(np.abs(X), axis=(-2, -1), keepdims=True)
        scale = np.where(scale > 0, scale, 1.0)
        U, s, Vh = np.linalg.svd(X / scale, full_matrices=True)
        with np.errstate(divide="ignore"):
            ls = np.log(s) + np.log(scale[..., 0])
        return U, ls, np.swapaxes(Vh, -1, -2)

    def log_multipliers(self, X: Any, rank: int | None = None) -> np.ndarray:
        """Log of :meth:`multipliers` (``-inf`` where a multiplier is zero)."""
        X = check_matrix(X)
        m, n = X.shape[-2:]
        r = check_rank(rank, m, n)
        return log_multipliers(log_singular_values(X), (m, n), r, self.depth, self.normalized)

    def multipliers(self, X: Any, rank: int | None = None) -> np.ndarray:
        """Multipliers ``a_ij`` (or ``λ_ij = a_ij/N`` if normalized) of ``A_{N,X}`` in the SVD basis.

        MATH.md §2.1, all blocks including the rectangular ones. Shape ``(..., m, n)``; entry
        ``(i, j)`` belongs to the basis vector ``Q E_ij Rᵀ`` where ``Q``, ``R`` are the full singular
        frames of ``X`` (singular values in descending order). ``rank=r`` evaluates at the best
        rank-r approximation of ``X``; ``None`` uses ``X`` as it is.
        """
        X = check_matrix(X)
        m, n = X.shape[-2:]
        r = check_rank(rank, m, n)
        with np.errstate(over="ignore"):  # beyond the float64 range: inf (IEEE), never NaN
            return np.exp(log_multipliers(log_singular_values(X), (m, n), r, self.depth, self.normalized))

    def _hat(self, X: np.ndarray, Zs: list[np.ndarray], rank: int | None):
        m, n = X.shape[-2:]
        r = check_rank(rank, m, n)
        U, ls, V = self._svd(X, r)
        lm = log_multipliers(ls, (m, n), r, self.depth, self.normalized)
        hats = []
        for Z in Zs:  # Ẑ = Uᵀ Z V of Z / max|Z|, with log max|Z| added to the log multipliers
            zs = np.max(np.abs(Z), axis=(-2, -1), keepdims=True)
            zs = np.where(zs > 0, zs, 1.0)
            hats.append((np.swapaxes(U, -1, -2) @ (Z / zs) @ V, np.log(zs)))
        return U, V, lm, hats, r

    @staticmethod
    def _tangent_mask(m: int, n: int, r: int) -> np.ndarray:
        i = np.arange(m)[:, None]
        j = np.arange(n)[None, :]
        return (i < r) | (j < r)

    # ------------------------------------------------------------------ operators
    @staticmethod
    def _sandwich(U: np.ndarray, log_mult: np.ndarray, hat: tuple[np.ndarray, np.ndarray], V: np.ndarray) -> np.ndarray:
        """``U (exp(log_mult) ⊙ H) Vᵀ`` without overflow turning into NaN.

        The hat-space product is formed in log space and divided by its largest entry before the two
        matrix products; the scale is multiplied back at the end, so an overflowing result is ±inf
        (IEEE) and a zero result is exactly 0, never NaN (inf·0).
        """
        H, log_zscale = hat
        with np.errstate(divide="ignore"):
            la = np.where(H == 0, -np.inf, log_mult + log_zscale + np.log(np.abs(H)))
        top = np.max(la, axis=(-2, -1), keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        W = np.sign(H) * np.exp(la - top)
        Y = U @ W @ np.swapaxes(V, -1, -2)
        with np.errstate(over="ignore"):
            factor = np.exp(top)
            return np.where(Y == 0, 0.0, Y * factor)

    def apply(self, X: Any, Z: Any, rank: int | None = None) -> np.ndarray:
        """``A_{N,X}(Z)`` (or ``Ā``), shape ``(..., m, n)``.

        For ``rank=None`` the operator at ``X`` itself; on a rank-deficient ``X`` it annihilates the
        normal space (MATH.md §1.5 item 6). Results beyond the float64 range are ±inf, never NaN.
        """
        X = check_matrix(X)
        Z = _check_pair(X, Z, "Z")
        U, V, lm, (hat,), _ = self._hat(X, [Z], rank)
        return self._sandwich(U, lm, hat, V)

    def sqrt_apply(self, X: Any, Z: Any, rank: int | None = None) -> np.ndarray:
        """``A_{N,X}^{1/2}(Z) = Q [√a_ij Ẑ_ij] Rᵀ`` (MATH.md §4.4)."""
        X = check_matrix(X)
        Z = _check_pair(X, Z, "Z")
        U, V, lm, (hat,), _ = self._hat(X, [Z], rank)
        return self._sandwich(U, 0.5 * lm, hat, V)

    def _inverse_log_multipliers(self, lm: np.ndarray, m: int, n: int, r: int) -> np.ndarray:
        mask = self._tangent_mask(m, n, r)
        if np.any(np.isneginf(lm) & mask):
            raise DegenerateMetricError(
                f"the metric at X is degenerate on the tangent space of the rank-{r} stratum "
                f"(depth={self.depth}): a multiplier is zero, so g_N is infinite there. This happens when X has "
                "fewer than `rank` nonzero singular values, or at depth inf on a rectangular shape or a lower "
                "stratum (MATH.md §2.3); pass the rank of X's stratum or use a finite depth"
            )
        return np.where(mask, -lm, -np.inf)

    def solve(self, X: Any, Z: Any, rank: int | None = None) -> np.ndarray:
        """Inverse of ``A`` on ``T_X M_r``: ``A^+(Z)`` (the normal part of ``Z`` is dropped).

        ``rank=None`` means the full-rank stratum ``r = min(m, n)``. Raises
        :class:`~dlnvolume.errors.DegenerateMetricError` where a tangent multiplier vanishes.
        """
        X = check_matrix(X)
        Z = _check_pair(X, Z, "Z")
        m, n = X.shape[-2:]
        U, V, lm, (hat,), r = self._hat(X, [Z], rank)
        return self._sandwich(U, self._inverse_log_multipliers(lm, m, n, r), hat, V)

    def inner(self, X: Any, Z1: Any, Z2: Any, rank: int | None = None) -> np.ndarray:
        """``g_N(X)(Z1, Z2) = ⟨Z1, A^{-1} Z2⟩_F`` for tangent vectors of ``M_r``, shape ``(...)``.

        Normal components are ignored (``Z`` is projected onto ``T_X M_r``). Summed in log space with
        a common scale, so a value beyond the float64 range is ±inf, never NaN.
        """
        X = check_matrix(X)
        Z1 = _check_pair(X, Z1, "Z1")
        Z2 = _check_pair(X, Z2, "Z2")
        m, n = X.shape[-2:]
        U, V, lm, ((H1, l1), (H2, l2)), r = self._hat(X, [Z1, Z2], rank)
        inv = self._inverse_log_multipliers(lm, m, n, r) + l1 + l2
        P = H1 * H2
        with np.errstate(divide="ignore"):
            la = np.where(P == 0, -np.inf, inv + np.log(np.abs(H1)) + np.log(np.abs(H2)))
        top = np.max(la, axis=(-2, -1))
        top = np.where(np.isfinite(top), top, 0.0)
        total = np.sum(np.sign(P) * np.exp(la - top[..., None, None]), axis=(-2, -1))
        with np.errstate(over="ignore"):
            return np.where(total == 0, 0.0, total * np.exp(top))

    # ------------------------------------------------------------------ volume
    def log_volume_density(self, X: Any, rank: int | None = None) -> np.ndarray:
        """``log ρ_N^{(r)}(X)``: log density of the g_N-volume of ``M_r`` w.r.t. its Frobenius Hausdorff measure.

        ``ρ = Π_{(i,j) ∈ tangent} λ_ij^{-1/2}`` (MATH.md §3.2, §3.3; normalized §3.2 "CMV Theorem 1.1"
        divided by the Jacobian ``van(Σ²)``). Only singular values are computed.

        Parameters
        ----------
        X : (..., m, n) array
        rank : int, optional
            Stratum ``M_r``; default ``min(m, n)``. If ``X`` has larger numerical rank than ``r`` the
            density is evaluated at its best rank-r approximation (top ``r`` singular values).

        Returns
        -------
        (...) array. ``+inf`` where a singular value inside the stratum is zero and ``N >= 2``
        (the density diverges there, MATH.md §3.5); 0 for ``N = 1``. At infinite depth on a
        rectangular shape or a lower stratum: the renormalized density of MATH.md §3.4 (the
        constant ``N^{r(m+n-2r)/2}`` removed).
        """
        X = check_matrix(X)
        m, n = X.shape[-2:]
        r = check_rank(rank, m, n)
        s, log_scale = scaled_singular_values(X)
        return log_volume_density_from_sigma(s, log_scale, (m, n), r, self.depth, self.normalized)

    def chart_log_density(self, sigma: Any, shape: tuple[int, int], rank: int | None = None) -> np.ndarray:
        """Log density of the g_N-volume of ``M_r`` in SVD coordinates ``(σ, Q, R)``.

        The density w.r.t. ``dσ_1⋯dσ_r dQ dR`` (Muirhead measures, MATH.md §0): the volume density
        times the SVD Jacobian of MATH.md §3.1, computed without the ``1/van(σ²)`` cancellation
        (MATH.md §3.3; §3.4 at infinite depth, renormalized off the square full-rank set).

        Parameters
        ----------
        sigma : (..., r) array of positive singular values (any order)
        shape : (m, n)
        rank : int, optional; must equal ``sigma.shape[-1]`` if given
        """
        sigma = np.asarray(sigma, dtype=np.float64)
        try:
            m, n = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise ShapeError(f"shape={shape!r}; expected a pair (m, n) of positive integers") from None
        if m < 1 or n < 1:
            raise ShapeError(f"shape={shape!r}; expected a pair (m, n) of positive integers")
        if sigma.ndim < 1:
            raise ShapeError(f"sigma has shape {sigma.shape}; expected (..., r)")
        r = check_rank(sigma.shape[-1] if rank is None else rank, m, n)
        if sigma.shape[-1] != r:
            raise ShapeError(f"sigma has {sigma.shape[-1]} entries per matrix but rank={r}")
        if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
            raise InvalidArgumentError(
                "sigma has entries that are not finite and > 0; expected the positive singular values of a rank-r matrix"
            )
        return chart_log_density_from_log_sigma(np.log(sigma), (m, n), self.depth, self.normalized)


def log_volume_density(X: Any, depth: float, rank: int | None = None, normalized: bool = True) -> np.ndarray:
    """``log ρ_N^{(r)}(X)``; see :meth:`DLNMetric.log_volume_density`.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(np.exp(log_volume_density(np.diag([2.0, 1.0]), depth=2))), 14)   # √2/3, MATH.md §8 item 9
    0.47140452079103
    """
    return DLNMetric(depth, normalized).log_volume_density(X, rank)
