"""Scalar and vector statistics of matrices: ranks, norms, volume density, position on the hyperbola.

Everything broadcasts over leading batch axes: ``(runs, m, n)`` endpoints give ``(runs,)`` arrays,
``(chain, draw, m, n)`` draws give ``(chain, draw)`` arrays. Output shapes never depend on values.

References: effective rank (Roy & Vetterli 2007; docs/math.md §6.2), volume density on the rank-``r``
stratum (docs/math.md §3.2–3.4), the 2×2 diagonal task and its hyperbola ``ab = 1`` (docs/math.md §5.2),
closed-form checks docs/math.md §8 items 25–26.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

import dlnvolume as dv
from dlnvolume import strata
from dlnvolume.validation import check_depth, check_matrix, check_positive
from dlnvolume.errors import ShapeError

__all__ = [
    "singular_values",
    "effective_rank",
    "numerical_rank",
    "nuclear_norm",
    "frobenius_norm",
    "schatten_quasi_norm",
    "log_volume_density_on_stratum",
    "test_error",
    "HyperbolaPosition",
    "hyperbola_position",
    "MatrixStatistics",
    "compute_statistics",
    "SCALAR_STATISTICS",
]

SCALAR_STATISTICS = (
    "effective_rank",
    "numerical_rank",
    "nuclear_norm",
    "schatten_quasi_norm",
    "frobenius_norm",
    "log_volume_density",
)


def singular_values(X: Any) -> np.ndarray:
    """Singular values in decreasing order, shape ``(..., min(m, n))``."""
    X = check_matrix(X)
    return np.linalg.svd(X, compute_uv=False)


def effective_rank(X: Any) -> np.ndarray:
    """Effective rank ``exp(H(p))``, ``p_i = σ_i / Σ_j σ_j`` (Roy & Vetterli 2007; docs/math.md §6.2).

    Uses ``0 log 0 = 0`` (no ``1e-10`` fudge as in the Arora et al. code). ``1 ≤ erank ≤ rank`` for
    nonzero ``X``; the zero matrix gets 0 by convention. Shape ``(...)``.

    Examples
    --------
    >>> round(float(effective_rank(np.eye(3))), 12)
    3.0
    """
    s = singular_values(X)
    total = s.sum(axis=-1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    p = s / safe
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    H = -plogp.sum(axis=-1)
    return np.where(total[..., 0] > 0, np.exp(H), 0.0)


def numerical_rank(X: Any, rtol: float | None = None) -> np.ndarray:
    """Number of ``σ_i > rtol · σ_1`` (:func:`dlnvolume.strata.numerical_rank`; default ``rtol = max(m, n)·eps``)."""
    return strata.numerical_rank(X, rtol)


def nuclear_norm(X: Any) -> np.ndarray:
    """``‖X‖_* = Σ σ_i``, shape ``(...)``."""
    return singular_values(X).sum(axis=-1)


def frobenius_norm(X: Any) -> np.ndarray:
    """``‖X‖_F``, shape ``(...)``."""
    X = check_matrix(X)
    return np.sqrt(np.sum(X * X, axis=(-2, -1)))


def schatten_quasi_norm(X: Any, depth: float) -> np.ndarray:
    """``Σ σ_i^{2/N}`` (the Schatten-``2/N`` quasi-norm to the power ``2/N``; docs/math.md §8 item 2).

    ``N·g_N(X)(X, X)`` unnormalized. For ``depth = inf`` the limit ``σ^{0}`` is 1 for ``σ > 0`` and
    0 for ``σ = 0``: the value is the number of exactly nonzero singular values.
    """
    N = check_depth(depth)
    s = singular_values(X)
    if N == math.inf:
        return np.sum(s > 0, axis=-1).astype(np.float64)
    return np.sum(s ** (2.0 / N), axis=-1)


def log_volume_density_on_stratum(
    X: Any, depth: float, *, rank: int | None = None, rtol: float | None = None, normalized: bool = True
) -> np.ndarray:
    """``log ρ_N^{(r)}`` at the rank-``r`` projection of ``X`` (docs/math.md §3.2–3.4).

    Parameters
    ----------
    X : (..., m, n) array
    depth : int >= 1 or math.inf
    rank : int, optional
        Stratum for every matrix. Default: each matrix's numerical rank (tolerance ``rtol``), so a
        matrix that is rank 1 up to round-off is evaluated on ``M_1`` instead of getting the
        divergent full-rank density.
    rtol : float, optional
        Relative tolerance of :func:`numerical_rank`.

    Returns
    -------
    (...) array. ``dlnvolume.log_volume_density`` evaluates at the top-``r`` singular values, i.e.
    at the best rank-``r`` approximation (Eckart–Young). Rank 0 (a point stratum) gives 0.
    """
    X = check_matrix(X)
    N = check_depth(depth, normalized=normalized)
    m, n = X.shape[-2:]
    if rank is not None:
        return np.asarray(dv.log_volume_density(X, N, rank=rank, normalized=normalized), dtype=np.float64)
    ranks = np.asarray(numerical_rank(X, rtol))
    out = np.zeros(X.shape[:-2], dtype=np.float64)
    for r in np.unique(ranks):
        sel = ranks == r
        out[sel] = dv.log_volume_density(X[sel], N, rank=int(r), normalized=normalized)
    return out


def test_error(X: Any, ground_truth: Any) -> np.ndarray:
    """Mean over all entries of ``(X − W*)²`` (Arora et al. 2019; docs/math.md §6.2), shape ``(...)``."""
    X = check_matrix(X)
    W = check_matrix(ground_truth, name="ground_truth", batch=False)
    if W.shape != X.shape[-2:]:
        raise ShapeError(f"ground_truth has shape {W.shape}; expected {X.shape[-2:]} to match X")
    D = X - W
    return np.mean(D * D, axis=(-2, -1))


test_error.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@dataclass(frozen=True)
class HyperbolaPosition:
    """Position of 2×2 matrices ``[[x11, a], [b, x22]]`` relative to the rank-1 solutions (docs/math.md §5.2).

    All arrays have the batch shape of the input.

    Attributes
    ----------
    a, b : unobserved entries ``X12``, ``X21``
    defect : ``1 − ab`` (``det X`` on the solution set; 0 on the hyperbola)
    nearest_a : parameter ``t`` of the point ``(t, 1/t)`` of the hyperbola closest to ``(a, b)``
    distance_to_hyperbola : Euclidean distance of ``(a, b)`` to ``{ab = 1}``
    distance_to_corner : distance to the nearer corner ``±(1, 1)``
    corner : +1 or −1, the nearer corner
    log_abs_a : ``log|nearest_a|`` (the corners are 0; symmetric under ``a ↔ 1/a``)
    """

    a: np.ndarray
    b: np.ndarray
    defect: np.ndarray
    nearest_a: np.ndarray
    distance_to_hyperbola: np.ndarray
    distance_to_corner: np.ndarray
    corner: np.ndarray
    log_abs_a: np.ndarray


def hyperbola_position(X: Any) -> HyperbolaPosition:
    """Distances of ``(a, b) = (X12, X21)`` to the hyperbola ``ab = 1`` and its corners ``±(1, 1)``.

    The nearest hyperbola point ``(t, 1/t)`` solves ``t⁴ − a t³ + b t − 1 = 0`` (stationarity of
    ``(a − t)² + (b − 1/t)²``); all real roots are tried (companion-matrix eigenvalues, batched).
    """
    X = check_matrix(X)
    if X.shape[-2:] != (2, 2):
        raise ShapeError(f"X has shape {X.shape}; hyperbola_position needs 2×2 matrices (..., 2, 2)")
    a = X[..., 0, 1]
    b = X[..., 1, 0]
    flat_a = a.reshape(-1)
    flat_b = b.reshape(-1)
    P = flat_a.size
    # companion matrix of t^4 + c3 t^3 + c2 t^2 + c1 t + c0 with c3 = -a, c2 = 0, c1 = b, c0 = -1
    C = np.zeros((P, 4, 4))
    C[:, 1, 0] = C[:, 2, 1] = C[:, 3, 2] = 1.0
    C[:, 0, 3] = 1.0
    C[:, 1, 3] = -flat_b
    C[:, 2, 3] = 0.0
    C[:, 3, 3] = flat_a
    roots = np.linalg.eigvals(C) if P else np.zeros((0, 4), dtype=complex)
    t = roots.real
    real = np.abs(roots.imag) <= 1e-7 * np.maximum(1.0, np.abs(roots))
    # the product of the roots is -1, so no root is 0; guard anyway
    t = np.where(np.abs(t) > 1e-300, t, 1e-300)
    d2 = (flat_a[:, None] - t) ** 2 + (flat_b[:, None] - 1.0 / t) ** 2
    d2 = np.where(real, d2, np.inf)
    # the distance is attained (the function is coercive on each branch), so a real root exists
    best = np.argmin(d2, axis=1)
    idx = np.arange(P)
    nearest = t[idx, best].reshape(a.shape)
    dist = np.sqrt(d2[idx, best]).reshape(a.shape)
    dp = np.hypot(a - 1.0, b - 1.0)
    dm = np.hypot(a + 1.0, b + 1.0)
    corner = np.where(dp <= dm, 1, -1)
    return HyperbolaPosition(
        a=a.copy(),
        b=b.copy(),
        defect=1.0 - a * b,
        nearest_a=nearest,
        distance_to_hyperbola=dist,
        distance_to_corner=np.minimum(dp, dm),
        corner=corner,
        log_abs_a=np.log(np.abs(nearest)),
    )


@dataclass(frozen=True)
class StatisticsContext:
    """What every statistic of a batch is computed with: the experiment's stratum and tolerance.

    Attributes
    ----------
    depth : depth of the volume density
    rtol : relative tolerance of the numerical rank
    rank : stratum of the volume density (``None``: each matrix's numerical rank)
    ground_truth : (m, n) array or None
    normalized : normalization of the metric
    sigma : (..., min(m, n)) singular values of the batch (computed once)
    """

    depth: float
    rtol: float
    rank: int | None
    ground_truth: Any
    normalized: bool
    sigma: np.ndarray


def _erank_from_sigma(X: np.ndarray, c: StatisticsContext) -> np.ndarray:
    s = c.sigma
    total = s.sum(axis=-1, keepdims=True)
    p = s / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.where(total[..., 0] > 0, np.exp(-plogp.sum(axis=-1)), 0.0)


def _schatten_from_sigma(X: np.ndarray, c: StatisticsContext) -> np.ndarray:
    if c.depth == math.inf:
        return np.sum(c.sigma > 0, axis=-1).astype(np.float64)
    return np.sum(c.sigma ** (2.0 / c.depth), axis=-1)


#: The registry of scalar statistics ``{name: function(X, context) -> (...) array}``. Each is computed
#: once per batch of matrices (:func:`compute_statistics`) with the experiment's stratum and tolerance;
#: the same arrays feed the tests, the figures, ``results.nc`` and ``tests.json``. A new statistic is one
#: function plus one line here (and a field of :class:`MatrixStatistics`).
STATISTICS: dict[str, Any] = {
    "effective_rank": _erank_from_sigma,
    "numerical_rank": lambda X, c: np.asarray(numerical_rank(X, c.rtol)).astype(np.int64),
    "nuclear_norm": lambda X, c: c.sigma.sum(axis=-1),
    "schatten_quasi_norm": _schatten_from_sigma,
    "frobenius_norm": lambda X, c: frobenius_norm(X),
    "log_volume_density": lambda X, c: log_volume_density_on_stratum(X, c.depth, rank=c.rank, rtol=c.rtol,
                                                                     normalized=c.normalized),
}


@dataclass(frozen=True)
class MatrixStatistics:
    """Statistics of a batch of matrices; every scalar statistic has the batch shape ``(...)``.

    ``singular_values`` has shape ``(..., min(m, n))``; ``hyperbola`` is set for 2×2 input,
    ``test_error`` when a ground truth is given.
    """

    effective_rank: np.ndarray
    numerical_rank: np.ndarray
    nuclear_norm: np.ndarray
    schatten_quasi_norm: np.ndarray
    frobenius_norm: np.ndarray
    log_volume_density: np.ndarray
    singular_values: np.ndarray
    depth: float
    rtol: float
    test_error: np.ndarray | None = None
    hyperbola: HyperbolaPosition | None = None
    volume_rank: int | None = None

    @property
    def stratum(self) -> str:
        """``"M_r"`` (the stratum of the log volume density) or ``"numerical rank"``."""
        return "numerical rank" if self.volume_rank is None else f"M_{self.volume_rank}"

    def scalars(self) -> dict[str, np.ndarray]:
        """Scalar statistics by name (with ``test_error`` and hyperbola coordinates when present)."""
        out = {name: getattr(self, name) for name in SCALAR_STATISTICS}
        if self.test_error is not None:
            out["test_error"] = self.test_error
        if self.hyperbola is not None:
            for f in fields(self.hyperbola):
                if f.name != "corner":
                    out[f"hyperbola_{f.name}"] = getattr(self.hyperbola, f.name)
        return out


def compute_statistics(
    X: Any,
    depth: float,
    *,
    rtol: float | None = None,
    ground_truth: Any = None,
    rank: int | None = None,
    normalized: bool = True,
) -> MatrixStatistics:
    """All statistics of :class:`MatrixStatistics` for ``X`` of shape ``(..., m, n)``.

    The log-volume density is taken on the stratum of each matrix's numerical rank (or ``rank``),
    at depth ``depth`` (docs/math.md §3); ``rtol`` is the stated relative tolerance of the numerical rank
    (default ``max(m, n)·eps``).
    """
    X = check_matrix(X)
    N = check_depth(depth, normalized=normalized)
    m, n = X.shape[-2:]
    tol = strata.default_rtol(m, n) if rtol is None else check_positive(rtol, "rtol")
    ctx = StatisticsContext(N, tol, rank, ground_truth, normalized, np.linalg.svd(X, compute_uv=False))
    values = {name: fn(X, ctx) for name, fn in STATISTICS.items()}
    return MatrixStatistics(
        **values,
        singular_values=ctx.sigma,
        depth=N,
        rtol=tol,
        test_error=None if ground_truth is None else test_error(X, ground_truth),
        hyperbola=hyperbola_position(X) if (m, n) == (2, 2) else None,
        volume_rank=rank,
    )
