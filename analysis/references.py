"""Vectorized grid version of :class:`samplers.reference.HyperbolaReference` (adapter for speed).

The samplers' reference computes every draw by adaptive quadrature plus root finding (about 20 ms
per draw and 2–4 s per construction here), which is exact but too slow for thousands of reference
draws at five depths within the run-time budget. :class:`GridHyperbolaReference` evaluates the
*same unnormalized densities* (formulas in the samplers.reference module docstring: g_N-arclength for
``"solution_set"``, ``ρ_N^{(1)} ‖X'‖_F / √det G`` for ``"gibbs_limit"``; docs/math.md §5.2, ARCHITECTURE.md
"The measures") batched on a grid of ``u = log|a|`` and integrates with the trapezoid rule.
``tests/analysis/test_references.py`` checks pdf, cdf and ``log_volume_cdf`` against the samplers'
quadrature to 1e-6.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlnvolume import DLNMetric
from dlnvolume.validation import check_depth, check_int, check_positive, check_rng
from dlnvolume.errors import InvalidArgumentError
from dlnvolume.strata import tangent_project
from samplers.reference import _check_points

__all__ = ["GridHyperbolaReference", "hyperbola_matrices"]


def hyperbola_matrices(a: Any) -> np.ndarray:
    """``X(a) = [[1, a], [1/a, 1]]``, shape ``(len(a), 2, 2)``."""
    a = np.atleast_1d(_check_points(a, "a"))
    with np.errstate(divide="ignore", over="ignore"):
        inv = 1.0 / a
    if not np.all(np.isfinite(a) & np.isfinite(inv)):
        raise InvalidArgumentError(
            "a has zero, infinite or subnormal entries (1/a overflows); expected finite nonzero hyperbola parameters"
        )
    X = np.ones(a.shape + (2, 2))
    X[..., 0, 1] = a
    X[..., 1, 0] = 1.0 / a
    return X


class GridHyperbolaReference:
    """Law of the hyperbola parameter ``a`` of the 2×2 diagonal task inside ``‖X‖_F ≤ radius``.

    Same interface as :class:`samplers.reference.HyperbolaReference` (``pdf``, ``cdf``, ``sample``,
    ``matrices``, ``log_volume_cdf``). Symmetric in ``a ↔ −a`` (each branch has mass ½) and
    ``a ↔ 1/a``.

    Parameters
    ----------
    depth : int >= 1 or math.inf
    measure : {"solution_set", "gibbs_limit"}
    radius : float > 2
    n_grid : int, default 8001
        Grid nodes on ``u = log|a| ∈ [log t_R, −log t_R]``, ``t_R = (R − √(R² − 4))/2``.
    """

    def __init__(self, depth: float, measure: str = "solution_set", radius: float = 4.0, *, n_grid: int = 8001,
                 normalized: bool = True) -> None:
        self.depth = check_depth(depth, normalized=normalized)
        if measure not in ("solution_set", "gibbs_limit"):
            raise InvalidArgumentError(f"measure={measure!r}; expected 'solution_set' or 'gibbs_limit'")
        R = check_positive(radius, "radius")
        if R <= 2.0:
            raise InvalidArgumentError(f"radius={R}; expected a number > 2 (rank-1 solutions have ‖X‖_F >= 2)")
        if R > 1e150:  # |a| up to R: the tangent entry 1/a² of X(a) underflows/overflows beyond ~1e154
            raise InvalidArgumentError(f"radius={R}; expected a number <= 1e150 (float64 range of X(a) and X'(a))")
        n_grid = check_int(n_grid, "n_grid", minimum=101)
        self.measure, self.radius, self.normalized = measure, R, normalized
        self.metric = DLNMetric(self.depth, normalized)
        self.t_min = (R - math.sqrt(R * R - 4.0)) / 2.0
        self.u = np.linspace(math.log(self.t_min), -math.log(self.t_min), n_grid)
        a = np.exp(self.u)
        dens_u = self._density_abs(a) * a  # density of u = log|a|
        cells = 0.5 * (dens_u[1:] + dens_u[:-1]) * np.diff(self.u)
        self.Z = float(cells.sum())
        self.F = np.concatenate([[0.0], np.cumsum(cells)]) / self.Z  # CDF of u (|a| law)
        self.log_rho = np.asarray(self.metric.log_volume_density(hyperbola_matrices(a), rank=1), dtype=np.float64)

    def _density_abs(self, a: np.ndarray) -> np.ndarray:
        """Unnormalized density of ``|a|`` (w.r.t. ``da``), batched."""
        X = hyperbola_matrices(a)
        Xp = np.zeros_like(X)
        Xp[..., 0, 1] = 1.0
        Xp[..., 1, 0] = -1.0 / a**2
        if self.measure == "solution_set":
            if math.isinf(self.depth):
                U, s, Vh = np.linalg.svd(X)
                H = np.swapaxes(U, -1, -2) @ Xp @ np.swapaxes(Vh, -1, -2)
                return np.sqrt(H[..., 0, 1] ** 2 + H[..., 1, 0] ** 2) / s[..., 0]
            return np.sqrt(np.asarray(self.metric.inner(X, Xp, Xp, rank=1)))
        log_rho = np.asarray(self.metric.log_volume_density(X, rank=1))
        E1 = np.broadcast_to(np.array([[1.0, 0.0], [0.0, 0.0]]), X.shape)
        E2 = np.broadcast_to(np.array([[0.0, 0.0], [0.0, 1.0]]), X.shape)
        P1 = tangent_project(X, E1, rank=1)
        P2 = tangent_project(X, E2, rank=1)
        g11 = np.sum(P1 * P1, axis=(-2, -1))
        g12 = np.sum(P1 * P2, axis=(-2, -1))
        g22 = np.sum(P2 * P2, axis=(-2, -1))
        return np.exp(log_rho) * np.sqrt(np.sum(Xp * Xp, axis=(-2, -1))) / np.sqrt(g11 * g22 - g12 * g12)

    def pdf(self, a: Any) -> np.ndarray:
        """Normalized density of ``a`` over both branches (0 outside the window)."""
        a = _check_points(a, "a")
        y = np.abs(a)
        inside = (y >= self.t_min) & (y <= 1.0 / self.t_min)
        ys = np.where(inside, y, 1.0)
        return np.where(inside, self._density_abs(ys.reshape(-1)).reshape(a.shape) / (2.0 * self.Z), 0.0)

    def abs_cdf(self, y: Any) -> np.ndarray:
        """CDF of ``|a|`` (linear interpolation of the trapezoid cumulative in ``log|a|``)."""
        y = _check_points(y, "y")
        with np.errstate(divide="ignore"):
            u = np.log(np.maximum(y, 0.0))
        return np.interp(u, self.u, self.F, left=0.0, right=1.0)

    def cdf(self, a: Any) -> np.ndarray:
        """CDF of ``a`` (each branch has mass ½)."""
        a = _check_points(a, "a")
        F = self.abs_cdf(np.abs(a))
        return np.where(a < 0, 0.5 * (1.0 - F), 0.5 + 0.5 * F)

    def sample(self, n: int, *, rng: Any = None) -> np.ndarray:
        """``n`` draws of ``a`` by inverse CDF (random sign, then ``|a|``)."""
        n = check_int(n, "n", minimum=0)
        g = check_rng(rng)
        p = g.uniform(size=n)
        sign = np.where(g.uniform(size=n) < 0.5, -1.0, 1.0)
        return sign * np.exp(np.interp(p, self.F, self.u))

    def matrices(self, a: Any) -> np.ndarray:
        return hyperbola_matrices(a)

    def log_volume_cdf(self, v: Any) -> np.ndarray:
        """CDF of ``L = log ρ_N^{(1)}(X(a))`` under this law.

        ``L`` depends on ``σ_1 = |a| + 1/|a|`` only and decreases in ``|log|a||`` for ``N ≥ 2``; so
        ``P(L ≤ v) = P(|u| ≥ u*)`` with ``L(u*) = v`` (interpolated on the grid). ``N = 1``: a point
        mass at the constant value.
        """
        v = _check_points(v, "v")
        half = self.u >= 0
        uh, Lh = self.u[half], self.log_rho[half]
        if np.ptp(Lh) == 0:
            return np.where(v >= Lh[0], 1.0, 0.0)
        # L decreasing in u >= 0: interpolate u*(v) on the reversed (increasing) arrays
        ustar = np.interp(v, Lh[::-1], uh[::-1], left=uh[-1], right=0.0)
        Fu = np.interp(ustar, self.u, self.F)
        Fm = np.interp(-ustar, self.u, self.F)
        out = 1.0 - (Fu - Fm)
        out = np.where(v >= Lh[0], 1.0, np.where(v < Lh[-1], 0.0, out))
        return np.clip(out, 0.0, 1.0)
