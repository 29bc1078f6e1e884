"""Exact (quadrature) references for sampler tests (MATH.md §5.2, §4.4).

:class:`HyperbolaReference`
    The rank-1 solutions of the 2×2 diagonal task (observe ``X11 = X22 = 1``) are
    ``X(a) = [[1, a], [1/a, 1]]``, ``a ≠ 0`` (two branches), with ``σ_1 = |a| + 1/|a|`` and
    ``‖X(a)‖_F² = 2 + a² + 1/a²``; the window ``‖X‖_F ≤ R`` is ``σ_1 ≤ R``, i.e.
    ``|a| ∈ [t_R, 1/t_R]``, ``t_R = (R - √(R² - 4))/2``. Tangent ``X'(a) = [[0, 1], [-1/a², 0]]``.

    * ``measure="solution_set"``: the g_N-arclength ``√(g_N(X)(X', X'))`` on the rank-1 stratum
      (:meth:`dlnvolume.DLNMetric.inner` with ``rank=1``). At depth ``inf`` the mixed multipliers of
      ``Ā`` vanish and ``g_N`` blows up like ``N``; the limit of the *normalized* law as ``N → ∞`` is
      ``√(Ẑ_12² + Ẑ_21²)/σ_1`` (``Ẑ`` = ``X'`` in the singular frames of ``X``): with
      ``g_N(Z, Z) = σ^{-2(N-1)/N}(Ẑ_11² + N(Ẑ_12² + Ẑ_21²))`` only the ``N``-term survives.
    * ``measure="gibbs_limit"``: the ``β → ∞`` limit of ``π_β`` on ``M_1``. With the constraint map
      ``c(X) = (X11 - 1, X22 - 1)`` on ``M_1`` and ``E = ½|c|²``, the coarea formula on ``M_1`` gives
      ``∫ f e^{-βE} ρ dvol_{M_1} = ∫_{R²} e^{-β|y|²/2} ∫_{c^{-1}(y)} f ρ / J_c dH¹ dy`` with
      ``J_c = √det G``, ``G_kl = ⟨P_T E_kk, P_T E_ll⟩`` (``P_T`` = projection on ``T_X M_1``), so the
      limit law on the curve has density ``ρ_N^{(1)}(X)/√det G`` w.r.t. Frobenius arclength
      ``‖X'(a)‖_F da``. It differs from the solution-set volume by the normal Jacobian ``1/√det G``
      and by ``ρ`` versus the g_N arclength (ARCHITECTURE.md, "The measures").

:class:`ScalarGibbsReference`
    The 1×1 Gibbs target observing ``x = μ``: density ``∝ exp(-β(x-μ)²/2) |x|^{(1-N)/N}``
    (``|x|^{-1}`` at ``N = ∞``) times the confinement, on ``R``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import integrate, optimize  # noqa: F401  (quad in ScalarGibbsReference)

from dlnvolume import DLNMetric
from dlnvolume.validation import check_depth, check_int, check_matrix, check_positive, check_rng
from dlnvolume.errors import ImproperTargetError, InvalidArgumentError, NonFiniteError, ShapeError
from dlnvolume.strata import tangent_project

__all__ = ["HyperbolaReference", "ScalarGibbsReference", "hyperbola_matrices", "hyperbola_parameter"]


def _check_points(x: Any, name: str) -> np.ndarray:
    """Float array of evaluation points: NaN is refused (±inf is a valid CDF argument)."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"{name} could not be converted to a float array: {exc}") from None
    if np.any(np.isnan(arr)):
        raise NonFiniteError(f"{name} has NaN entries; expected real numbers (±inf allowed)")
    return arr


def _check_real(x: Any, name: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise InvalidArgumentError(f"{name}={x!r} is not a finite real number")
    return float(x)


def hyperbola_matrices(a: Any) -> np.ndarray:
    """``X(a) = [[1, a], [1/a, 1]]`` for each ``a`` (shape ``(len(a), 2, 2)``); ``a`` finite and nonzero."""
    a = np.atleast_1d(_check_points(a, "a"))
    with np.errstate(divide="ignore", over="ignore"):
        inv = 1.0 / a
    if not np.all(np.isfinite(a) & np.isfinite(inv)):
        raise InvalidArgumentError(
            "a has zero, infinite or subnormal entries (1/a overflows); expected finite nonzero hyperbola parameters"
        )
    X = np.empty(a.shape + (2, 2))
    X[..., 0, 0] = 1.0
    X[..., 1, 1] = 1.0
    X[..., 0, 1] = a
    X[..., 1, 0] = inv
    return X


def hyperbola_parameter(X: Any) -> np.ndarray:
    """The parameter ``a`` of matrices near the hyperbola: ``X12 / X11`` (``= X22/X21 = a`` on it).

    ``X`` (..., 2, 2) finite with ``X11 != 0``; returns shape ``(...)``.
    """
    X = check_matrix(X)
    if X.shape[-2:] != (2, 2):
        raise ShapeError(f"X has shape {X.shape}; expected 2×2 matrices (..., 2, 2)")
    if np.any(X[..., 0, 0] == 0):
        raise InvalidArgumentError("X has X11 = 0 entries; the hyperbola parameter X12/X11 needs X11 != 0")
    with np.errstate(over="ignore"):
        return X[..., 0, 1] / X[..., 0, 0]


def _tangent(a: float) -> np.ndarray:
    return np.array([[0.0, 1.0], [-1.0 / a**2, 0.0]])


class _AbsTable:
    """Normalized CDF of a positive smooth density ``f`` (vectorized) on ``[lo, hi]``.

    Integrates ``f(e^s) e^s`` over ``s = log y`` with a 24-point Gauss–Legendre rule on each of
    ``n_grid`` equal subintervals (exact to rounding for these smooth densities); ``cdf`` adds a
    Gauss–Legendre integral over the partial subinterval, ``ppf`` inverts by bracketed Newton steps.
    """

    def __init__(self, f: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, n_grid: int = 200):
        self.f = f
        self.lo, self.hi = lo, hi
        self.s_grid = np.linspace(math.log(lo), math.log(hi), n_grid + 1)
        self.nodes, self.weights = np.polynomial.legendre.leggauss(24)
        a, b = self.s_grid[:-1], self.s_grid[1:]
        pieces = self._integrate(a, b)
        self.cum = np.concatenate([[0.0], np.cumsum(pieces)])
        self.Z = float(self.cum[-1])

    def _g(self, s: np.ndarray) -> np.ndarray:
        y = np.exp(s)
        return self.f(y) * y

    def _integrate(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``∫_a^b g(s) ds`` for arrays ``a <= b`` inside one subinterval each."""
        half = 0.5 * (b - a)
        mid = 0.5 * (b + a)
        s = mid[..., None] + half[..., None] * self.nodes
        vals = self._g(s.ravel()).reshape(s.shape)
        return half * np.sum(vals * self.weights, axis=-1)

    def cdf(self, y: np.ndarray) -> np.ndarray:
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        out = np.empty(y.shape)
        below, above = y <= self.lo, y >= self.hi
        inside = ~(below | above)
        out[below], out[above] = 0.0, 1.0
        if np.any(inside):
            s = np.log(y[inside])
            k = np.clip(np.searchsorted(self.s_grid, s, side="right") - 1, 0, len(self.s_grid) - 2)
            out[inside] = (self.cum[k] + self._integrate(self.s_grid[k], s)) / self.Z
        return out

    def ppf(self, p: np.ndarray) -> np.ndarray:
        p = np.clip(np.atleast_1d(np.asarray(p, dtype=np.float64)), 0.0, 1.0)
        k = np.clip(np.searchsorted(self.cum / self.Z, p, side="right") - 1, 0, len(self.s_grid) - 2)
        lo, hi = self.s_grid[k].copy(), self.s_grid[k + 1].copy()
        s = 0.5 * (lo + hi)
        for _ in range(60):
            F = self.cdf(np.exp(s))
            if np.max(np.abs(F - p)) < 1e-12:
                break
            lo = np.where(F < p, s, lo)
            hi = np.where(F >= p, s, hi)
            step = (F - p) * self.Z / np.maximum(self._g(s), 1e-300)
            cand = s - step
            s = np.where((cand >= lo) & (cand <= hi), cand, 0.5 * (lo + hi))
        return np.exp(s)


@dataclass(eq=False)
class HyperbolaReference:
    """Exact law of the hyperbola parameter ``a`` for the 2×2 diagonal task (module docstring).

    Parameters
    ----------
    depth : int >= 1 or math.inf
    measure : {"solution_set", "gibbs_limit"}
    radius : float > 2
        Frobenius window ``‖X‖_F ≤ radius`` (``σ_1 ≤ radius``).
    normalized : bool, default True
        Only changes constants (the law is normalized).

    Examples
    --------
    >>> ref = HyperbolaReference(3, "solution_set", radius=4.0)
    >>> float(ref.cdf(0.0))
    0.5
    """

    depth: float
    measure: str = "solution_set"
    radius: float = 4.0
    normalized: bool = True
    _table: _AbsTable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.depth = check_depth(self.depth, normalized=self.normalized)
        if self.measure not in ("solution_set", "gibbs_limit"):
            raise InvalidArgumentError(f"measure={self.measure!r}; expected 'solution_set' or 'gibbs_limit'")
        R = check_positive(self.radius, "radius")
        if R <= 2.0:
            raise InvalidArgumentError(
                f"radius={R}; expected a number > 2 (the rank-1 solutions have ‖X‖_F >= 2, equality at the corners a = ±1)"
            )
        if R > 1e150:  # |a| up to R: the tangent entry 1/a² of X(a) underflows/overflows beyond ~1e154
            raise InvalidArgumentError(f"radius={R}; expected a number <= 1e150 (float64 range of X(a) and X'(a))")
        self.radius = R
        self.metric = DLNMetric(self.depth, self.normalized)
        self.t_min = (R - math.sqrt(R * R - 4.0)) / 2.0
        self._table = _AbsTable(self._density_abs, self.t_min, 1.0 / self.t_min)

    # ---------------------------------------------------------------- unnormalized density on a > 0
    def _density_abs(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        X = hyperbola_matrices(a)
        Xp = np.zeros_like(X)
        Xp[..., 0, 1] = 1.0
        Xp[..., 1, 0] = -1.0 / a**2
        if self.measure == "solution_set":
            if math.isinf(self.depth):
                U, s, Vh = np.linalg.svd(X)
                H = np.swapaxes(U, -1, -2) @ Xp @ np.swapaxes(Vh, -1, -2)
                return np.sqrt(H[..., 0, 1] ** 2 + H[..., 1, 0] ** 2) / s[..., 0]
            return np.sqrt(self.metric.inner(X, Xp, Xp, rank=1))
        log_rho = self.metric.log_volume_density(X, rank=1)
        P1 = tangent_project(X, np.array([[1.0, 0.0], [0.0, 0.0]]), rank=1)
        P2 = tangent_project(X, np.array([[0.0, 0.0], [0.0, 1.0]]), rank=1)
        g11 = np.sum(P1 * P1, axis=(-2, -1))
        g12 = np.sum(P1 * P2, axis=(-2, -1))
        g22 = np.sum(P2 * P2, axis=(-2, -1))
        return np.exp(log_rho) * np.linalg.norm(Xp, axis=(-2, -1)) / np.sqrt(g11 * g22 - g12 * g12)

    # ---------------------------------------------------------------- public API
    def pdf(self, a: Any) -> np.ndarray:
        """Normalized density of ``a`` over both branches, shape of ``a`` (0 outside the window)."""
        a = _check_points(a, "a")
        y = np.abs(a.ravel())
        inside = (y >= self.t_min) & (y <= 1.0 / self.t_min)
        out = np.zeros(y.shape)
        if np.any(inside):
            out[inside] = self._density_abs(y[inside]) / (2.0 * self._table.Z)
        return out.reshape(a.shape)

    def abs_cdf(self, y: Any) -> np.ndarray:
        """CDF of ``|a|``."""
        y = _check_points(y, "y")
        return self._table.cdf(y.ravel()).reshape(y.shape)

    def cdf(self, a: Any) -> np.ndarray:
        """CDF of ``a`` (both branches, each of mass ½)."""
        a = _check_points(a, "a")
        F = self.abs_cdf(np.abs(a))
        return np.where(a < 0, 0.5 * (1.0 - F), 0.5 + 0.5 * F)

    def sample(self, n: int, *, rng: Any = None) -> np.ndarray:
        """``n`` draws of ``a`` by inverse CDF (random sign, then ``|a|``)."""
        rng = check_rng(rng)
        n = check_int(n, "n", minimum=0)
        if n == 0:  # ppf's convergence test needs at least one point
            return np.zeros(0)
        u = rng.uniform(size=n)
        sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
        return sign * self._table.ppf(u)

    def matrices(self, a: Any) -> np.ndarray:
        """``X(a)``, shape ``(len(a), 2, 2)``."""
        return hyperbola_matrices(a)

    def _log_rho_of_sigma(self, s: float) -> float:
        return float(self.metric.log_volume_density(np.diag([s, 0.0]), rank=1))

    def log_volume_cdf(self, v: Any) -> np.ndarray:
        """CDF under this law of ``L = log ρ_N^{(1)}(X(a))`` (a function of ``σ_1 = |a| + 1/|a|``).

        On the rank-1 stratum of 2×2 matrices ``L = c_0 + c_1 log σ_1`` with ``c_1 = -3(N-1)/N``
        (``-3`` at ``inf``; ``0`` at ``N = 1``: a point mass). ``c_0, c_1`` are read off
        :meth:`dlnvolume.DLNMetric.log_volume_density` at two points and checked at a third.
        """
        v = _check_points(v, "v")
        L2, LR = self._log_rho_of_sigma(2.0), self._log_rho_of_sigma(self.radius)
        c1 = (LR - L2) / (math.log(self.radius) - math.log(2.0))
        c0 = L2 - c1 * math.log(2.0)
        mid = math.sqrt(2.0 * self.radius)
        if not math.isclose(self._log_rho_of_sigma(mid), c0 + c1 * math.log(mid), rel_tol=1e-9, abs_tol=1e-9):
            raise AssertionError("log ρ^(1) is not affine in log σ_1")  # pragma: no cover
        flat = v.ravel()
        if c1 == 0.0:
            return np.where(flat >= c0, 1.0, 0.0).reshape(v.shape)
        # L <= v  <=>  σ_1 >= s*  (c1 < 0)
        with np.errstate(over="ignore"):
            s_star = np.exp((flat - c0) / c1)
        s_star = np.clip(s_star, 2.0, self.radius)
        t = (s_star - np.sqrt(np.maximum(s_star * s_star - 4.0, 0.0))) / 2.0
        out = self._table.cdf(t) + 1.0 - self._table.cdf(1.0 / t)
        out = np.where(flat >= L2, 1.0, np.where(flat < LR, 0.0, out))
        return np.clip(out, 0.0, 1.0).reshape(v.shape)


@dataclass(eq=False)
class ScalarGibbsReference:
    """Exact law of the 1×1 Gibbs target ``∝ exp(-β(x-μ)²/2) |x|^{(1-N)/N} · conf(x)`` on ``R``.

    Parameters
    ----------
    depth : int >= 1 or math.inf
    beta : float >= 0
    mu : float
        Observed value.
    radius : float, optional
        ``|x| <= radius`` (FrobeniusBall).
    prior_scale : float, optional
        Extra factor ``exp(-x²/(2 s²))`` (GaussianPrior).
    floor : float, default 0
        ``|x| >= floor`` (SingularValueFloor); required at depth inf.
    """

    depth: float
    beta: float
    mu: float
    radius: float | None = None
    prior_scale: float | None = None
    floor: float = 0.0

    def __post_init__(self) -> None:
        self.depth = check_depth(self.depth)
        self.beta = check_positive(self.beta, "beta", allow_zero=True)
        self.mu = _check_real(self.mu, "mu")
        if self.radius is not None:
            self.radius = check_positive(self.radius, "radius")
        if self.prior_scale is not None:
            self.prior_scale = check_positive(self.prior_scale, "prior_scale")
        self.floor = check_positive(self.floor, "floor", allow_zero=True)
        self.alpha = -1.0 if math.isinf(self.depth) else (1.0 - self.depth) / self.depth
        if self.alpha <= -1.0 and self.floor == 0:  # depth inf, or a finite depth so large that α rounds to -1
            where = "depth inf" if math.isinf(self.depth) else f"depth {self.depth:g} (α = (1-N)/N rounds to -1)"
            raise ImproperTargetError(f"{where}: |x|^-1 is not integrable at 0; give floor > 0")
        inv = 0.0 if self.prior_scale is None else 1.0 / self.prior_scale
        prec = self.beta + inv * inv  # (not s**2: Python's float ** raises OverflowError / s**2 underflows to 0)
        if self.radius is None and prec == 0:
            raise ImproperTargetError("beta=0 without radius or prior_scale has infinite mass")
        bound = abs(self.mu) + 14.0 / math.sqrt(prec) if prec > 0 else math.inf
        self.bound = min(bound, self.radius if self.radius is not None else math.inf)
        if self.floor >= self.bound:
            raise ImproperTargetError(f"floor={self.floor} leaves no mass below the bound {self.bound}")
        self.Z = self._mass(-self.bound, self.bound)
        if not (math.isfinite(self.Z) and self.Z > 0):
            raise InvalidArgumentError(
                f"the law with depth={self.depth}, beta={self.beta}, mu={self.mu}, radius={self.radius}, "
                f"prior_scale={self.prior_scale}, floor={self.floor} has normalizing constant {self.Z} in float64; "
                "expected parameters whose mass is finite and positive"
            )

    def _h(self, x: float) -> float:
        d = x - self.mu
        val = -0.5 * self.beta * d * d  # products, not **: Python's float ** raises OverflowError
        if self.prior_scale is not None:
            z = x / self.prior_scale
            val -= 0.5 * z * z
        return math.exp(val)

    def _side(self, a: float, b: float, sign: float) -> float:
        """``∫_a^b h(sign·y) y^α dy`` for ``floor <= a <= b``."""
        a = max(a, self.floor)
        if b <= a:
            return 0.0
        if a == 0.0 and self.alpha < 0:
            return integrate.quad(lambda y: self._h(sign * y), 0.0, b, weight="alg", wvar=(self.alpha, 0.0),
                                  epsabs=0, epsrel=1e-11, limit=200)[0]
        return integrate.quad(lambda y: self._h(sign * y) * y**self.alpha, a, b, epsabs=0, epsrel=1e-11, limit=200)[0]

    def _mass(self, lo: float, hi: float) -> float:
        """Unnormalized mass of ``[lo, hi]``."""
        lo, hi = max(lo, -self.bound), min(hi, self.bound)
        if hi <= lo:
            return 0.0
        total = 0.0
        if hi > 0:
            total += self._side(max(lo, 0.0), hi, 1.0)
        if lo < 0:
            total += self._side(max(-hi, 0.0), -lo, -1.0)
        return total

    def pdf(self, x: Any) -> np.ndarray:
        x = _check_points(x, "x")
        def one(v: float) -> float:
            if abs(v) > self.bound or abs(v) < self.floor or v == 0:
                return 0.0
            h = self._h(v)
            if h == 0.0:
                return 0.0
            with np.errstate(over="ignore"):  # |v|^α near 0 may exceed float64: the density is then inf
                return float(h * np.float64(abs(v)) ** self.alpha / self.Z)
        return np.array([one(float(v)) for v in x.ravel()]).reshape(x.shape)

    def cdf(self, x: Any) -> np.ndarray:
        x = _check_points(x, "x")
        return np.array([min(1.0, self._mass(-self.bound, float(v)) / self.Z) for v in x.ravel()]).reshape(x.shape)

    def expect(self, g: Callable[[float], float]) -> float:
        """``E[g(x)]`` by quadrature (``g`` smooth)."""
        num = 0.0
        for sign in (1.0, -1.0):
            a = self.floor
            if a == 0.0 and self.alpha < 0:
                num += integrate.quad(lambda y: g(sign * y) * self._h(sign * y), 0.0, self.bound, weight="alg",
                                      wvar=(self.alpha, 0.0), epsabs=0, epsrel=1e-11, limit=200)[0]
            else:
                num += integrate.quad(lambda y: g(sign * y) * self._h(sign * y) * y**self.alpha, a, self.bound,
                                      epsabs=0, epsrel=1e-11, limit=200)[0]
        if math.isnan(num):  # e.g. ∫ x over [-1e300, 1e300]: inf - inf
            raise InvalidArgumentError(
                f"E[g(x)] is not representable in float64 for this law (the quadrature gives inf - inf); "
                f"expected g integrable in float64 on [-{self.bound}, {self.bound}]"
            )
        return num / self.Z
