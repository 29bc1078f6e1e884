"""Exact (quadrature) references for solution-set volumes beyond 2×2, independent of the sampler code.

Both references compute the g_N-Hausdorff measure of ``S ∩ M_r`` inside a Frobenius window from an
explicit parametrization ``t ↦ X(t)``: its density w.r.t. ``dt`` is ``√det G(t)``,
``G_kl = g_N(X)(∂_k X, ∂_l X)`` evaluated with :meth:`dlnvolume.DLNMetric.inner` (finite ``N``) or
with the N → ∞ limit of the normalized law (``N = ∞``, :func:`limit_gram`). Nothing here calls
:mod:`samplers`.

``Diagonal3x3Rank1``
    Observe the diagonal of a 3×3 matrix equal to 1; rank 1. ``S ∩ M_1 = {X_ij = s_i s_j e^{t_i - t_j}}``
    with ``t_1 = 0``, ``s_1 = +1`` (the map is invariant under ``t ↦ t + c`` and ``s ↦ -s``): four
    components ``(s_2, s_3) ∈ {±1}²`` of equal mass (isometry ``X ↦ DXD``). The window
    ``‖X‖_F² = (Σ e^{2t_i})(Σ e^{-2t_i}) ≤ R²`` is, for fixed ``t_2``, an interval of ``t_3`` with
    closed-form end points, and ``|t_2| ≤ arccosh((R-1)/2)`` (minimizing over ``t_3`` gives
    ``(2 cosh t_2 + 1)² ≤ R²``). Signed statistics: ``X_12 = s_2 e^{-t_2}``, ``X_13 = s_3 e^{-t_3}``.

``HyperbolaArcs3x3Rank2``
    Observe seven entries of a 3×3 matrix, ``X = [[1, 2, a], [3, 1, 1], [b, 1, 2]]``; rank 2 means
    ``det X = -ab + 3a + 2b - 11 = 0``, i.e. ``b = 3 - 5/(a - 2)``: two branches ``a < 2`` and
    ``a > 2``, each cut by the window ``21 + a² + b² ≤ R²`` to one arc. Tangent ``E_13 + b'(a) E_31``,
    ``b'(a) = 5/(a-2)²``. The arcs have unequal masses that move with depth; each arc crosses a sign
    change of ``a`` or ``b``, so sign groups are not components.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize

import dlnvolume as dv


def limit_gram(X: np.ndarray, Z: np.ndarray, rank: int) -> np.ndarray:
    """Gram matrices ``(..., d, d)`` of the N → ∞ limit law on a lower stratum or rectangular shape.

    ``X`` (..., m, n) rank ``r``; ``Z`` (..., d, m, n) tangent vectors. With ``Ẑ = Qᵀ Z R``, the normalized
    metric is ``Σ_inside Ẑ_ij²/L(σ_i², σ_j²) + N Σ_mixed Ẑ_ij²/σ_i^{2(N-1)/N} + O(...)`` (MATH.md §2.1);
    when the mixed part ``M`` of the Gram matrix has full rank ``d``, ``N^{-d} det G_N → det M`` with
    ``M_kl = Σ_{i<r<=j or j<r<=i} Ẑ_k,ij Ẑ_l,ij / σ_min(i,j)²`` (only the mixed directions survive).
    """
    U, s, Vh = np.linalg.svd(X)
    V = np.swapaxes(Vh, -1, -2)
    H = np.swapaxes(U, -1, -2)[..., None, :, :] @ Z @ V[..., None, :, :]
    m, n = X.shape[-2:]
    r = rank
    w = np.zeros(X.shape[:-2] + (m, n))
    for i in range(m):
        for j in range(n):
            if (i < r) != (j < r):
                w[..., i, j] = 1.0 / s[..., min(i, j)] ** 2
    return np.einsum("...kij,...lij,...ij->...kl", H, H, w)


def _gram(X: np.ndarray, Z: np.ndarray, depth: float, rank: int) -> np.ndarray:
    """Gram matrix ``g_N(X)(Z_k, Z_l)`` for ``Z`` (..., d, m, n); ``depth = inf`` uses :func:`limit_gram`."""
    if math.isinf(depth):
        return limit_gram(X, Z, rank)
    metric = dv.DLNMetric(depth)
    d = Z.shape[-3]
    G = np.empty(X.shape[:-2] + (d, d))
    for k in range(d):
        for l in range(k, d):
            G[..., k, l] = G[..., l, k] = metric.inner(X, Z[..., k, :, :], Z[..., l, :, :], rank=rank)
    return G


def gibbs_limit_factor(X: np.ndarray, mask: np.ndarray, depth: float, rank: int) -> np.ndarray:
    """``ρ_N(X) / √pdet(L Lᵀ)`` at points ``X`` (P, m, n) of ``M_r`` (finite depth), up to a constant factor.

    ``ρ_N = √det G`` with ``G_kl = g_N(X)(E_k, E_l)`` (:meth:`dlnvolume.DLNMetric.inner`) on the Frobenius-
    orthonormal basis ``E = {u_i v_jᵀ : i <= r or j <= r}`` of ``T_X M_r``; ``L`` is the observation map
    ``Z ↦ Z_Ω`` on that basis. The Gibbs limit's density w.r.t. the Euclidean Hausdorff measure of ``S ∩ M_r``
    is this factor (coarea formula; MATH.md "Gibbs limit vs solution-set volume"): multiply by the arclength
    element for a law in a coordinate.
    """
    X = np.asarray(X, dtype=float)
    m, n = X.shape[-2:]
    U, _, Vh = np.linalg.svd(X)
    pairs = [(i, j) for i in range(m) for j in range(n) if i < rank or j < rank]
    E = np.stack([U[:, :, i, None] * Vh[:, j, None, :] for i, j in pairs], axis=1)  # (P, d, m, n)
    G = _gram(X, E, depth, rank)
    L = E[:, :, mask]  # (P, d, |Ω|): L Lᵀ = Lt^T Lt
    ev = np.linalg.eigvalsh(np.einsum("pko,pkq->poq", L, L))
    big = ev > 1e-10 * ev[:, -1:]
    log_pdet = np.sum(np.where(big, np.log(np.where(big, ev, 1.0)), 0.0), axis=1)
    return np.exp(0.5 * np.linalg.slogdet(G)[1] - 0.5 * log_pdet)


class Diagonal3x3Rank1:
    """Exact law of ``S ∩ M_1`` (3×3, observed diagonal = 1) under the g_N-volume inside ``‖X‖_F ≤ R``."""

    def __init__(self, depth: float, radius: float, n_t2: int = 801, n_t3: int = 48):
        self.depth, self.R = depth, float(radius)
        self.T = math.acosh((self.R - 1.0) / 2.0)
        # ψ-substitution t2 = -T cos ψ removes the square-root behaviour of the marginal at ±T
        psi = np.linspace(0.0, math.pi, n_t2)
        t2 = -self.T * np.cos(psi)
        nodes, weights = np.polynomial.legendre.leggauss(n_t3)
        lo, hi = self.t3_interval(t2)
        half = 0.5 * (hi - lo)
        t3 = 0.5 * (hi + lo)[:, None] + half[:, None] * nodes[None, :]
        dens = self.density(np.broadcast_to(t2[:, None], t3.shape), t3)
        marg = np.sum(dens * weights[None, :], axis=1) * half  # ∫ density dt3 at each t2
        g = marg * self.T * np.sin(psi)  # integrand in ψ
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(psi))])
        # Simpson correction would be nicer; the trapezoid on 801 ψ points is accurate to ~1e-6 here
        self.t2_grid, self.cum = t2, cum / cum[-1]
        self.component_mass = float(cum[-1])  # mass of one sign component (all four are equal)

    def t3_interval(self, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End points of ``{t3 : ‖X(t2, t3)‖_F ≤ R}``: roots of ``b v² + (ab + 1 - R²) v + a`` in ``v = e^{2t3}``."""
        u = np.exp(2.0 * t2)
        a, b = 1.0 + u, 1.0 + 1.0 / u
        B = a * b + 1.0 - self.R**2
        disc = np.maximum(B * B - 4.0 * a * b, 0.0)
        v_lo = (-B - np.sqrt(disc)) / (2.0 * b)
        v_hi = (-B + np.sqrt(disc)) / (2.0 * b)
        return 0.5 * np.log(v_lo), 0.5 * np.log(v_hi)

    @staticmethod
    def matrices(t2: np.ndarray, t3: np.ndarray, s2: float = 1.0, s3: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``X(t)`` (..., 3, 3) and its two tangent vectors ``∂X/∂t2, ∂X/∂t3`` (..., 2, 3, 3)."""
        t = np.stack([np.zeros_like(t2), t2, t3], axis=-1)
        sg = np.array([1.0, s2, s3])
        X = sg[:, None] * sg[None, :] * np.exp(t[..., :, None] - t[..., None, :])
        Z = np.empty(X.shape[:-2] + (2, 3, 3))
        for k, idx in enumerate((1, 2)):
            e = np.zeros(3)
            e[idx] = 1.0
            Z[..., k, :, :] = X * (e[:, None] - e[None, :])
        return X, Z

    def density(self, t2: np.ndarray, t3: np.ndarray, s2: float = 1.0, s3: float = 1.0) -> np.ndarray:
        """g_N-area density w.r.t. ``dt2 dt3`` (no window)."""
        X, Z = self.matrices(t2, t3, s2, s3)
        return np.sqrt(np.linalg.det(_gram(X, Z, self.depth, 1)))

    def abs_x12_cdf(self, y: np.ndarray) -> np.ndarray:
        """``P(|X_12| <= y) = P(t2 >= -log y)``."""
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore"):
            t = -np.log(np.maximum(y, 0.0))
        F_t2 = np.interp(t, self.t2_grid, self.cum, left=0.0, right=1.0)  # P(t2 <= t)
        return 1.0 - F_t2

    def x12_cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of the signed ``X_12`` (``±e^{-t2}`` with probability ½ each; the same law holds for ``X_13``)."""
        x = np.asarray(x, dtype=float)
        pos = 0.5 + 0.5 * self.abs_x12_cdf(np.abs(x))
        neg = 0.5 - 0.5 * self.abs_x12_cdf(np.abs(x))
        return np.where(x >= 0, pos, neg)

    def mean_abs_x12(self) -> float:
        w = np.diff(self.cum)
        mid = 0.5 * (self.t2_grid[1:] + self.t2_grid[:-1])
        return float(np.sum(w * np.exp(-mid)))


class HyperbolaArcs3x3Rank2:
    """Exact law of ``a`` on the two hyperbola arcs of the 3×3 rank-2 task (module docstring).

    Subclasses change the observed values, the two unobserved entries ``a`` (at ``entry_a``) and ``b`` (at
    ``entry_b``), and the branch ``b(a)`` with its derivative and pole; the left arc is ``a < pole``.
    """

    values = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    mask = np.array([[True, True, False], [True, True, True], [False, True, True]])
    entry_a, entry_b, pole = (0, 2), (2, 0), 2.0
    name = "hyperbola_arcs_3x3"

    def __init__(self, depth: float, radius: float, measure: str = "solution_set"):
        assert measure in ("solution_set", "gibbs_limit")
        self.depth, self.R, self.measure = depth, float(radius), measure
        rho2 = self.R**2 - float(np.sum(self.values[self.mask] ** 2))
        h = lambda a: a * a + self.b(a) ** 2 - rho2  # noqa: E731  (<= 0 inside the window)
        # left branch a < pole: the window cuts an interval [l0, l1]; right branch a > pole: [r0, r1]
        grid_l = np.linspace(-self.R, self.pole - 1e-9, 200001)
        grid_r = np.linspace(self.pole + 1e-9, self.R, 200001)
        self.intervals = []
        for grid in (grid_l, grid_r):
            inside = h(grid) <= 0
            idx = np.flatnonzero(inside)
            assert idx.size and np.all(np.diff(idx) == 1), "the window must cut each branch in one arc"
            lo = optimize.brentq(h, grid[idx[0] - 1], grid[idx[0]], xtol=1e-14)
            hi = optimize.brentq(h, grid[idx[-1]], grid[idx[-1] + 1], xtol=1e-14)
            self.intervals.append((lo, hi))
        self.masses = np.array([integrate.quad(self.pdf_unnormalized, lo, hi, epsabs=0, epsrel=1e-11, limit=200)[0]
                                for lo, hi in self.intervals])
        self.total = float(self.masses.sum())

    @staticmethod
    def b(a: np.ndarray) -> np.ndarray:
        return 3.0 - 5.0 / (a - 2.0)

    @staticmethod
    def db(a: np.ndarray) -> np.ndarray:
        return 5.0 / (a - 2.0) ** 2

    @classmethod
    def task(cls) -> dv.CompletionTask:
        return dv.CompletionTask(cls.values, cls.mask, name=cls.name)

    @classmethod
    def matrices(cls, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(a, dtype=float)
        X = np.broadcast_to(cls.values, a.shape + (3, 3)).copy()
        X[(...,) + cls.entry_a] = a
        X[(...,) + cls.entry_b] = cls.b(a)
        Z = np.zeros(a.shape + (1, 3, 3))
        Z[(..., 0) + cls.entry_a] = 1.0
        Z[(..., 0) + cls.entry_b] = cls.db(a)
        return X, Z

    def pdf_unnormalized(self, a: float) -> float:
        return float(self.density(np.array([a]))[0])

    def density(self, a: np.ndarray) -> np.ndarray:
        """Unnormalized density of the law of ``a`` (window excluded): ``√g_N(X')`` for the solution-set volume,
        ``ρ_N(X) ‖X'‖_F / √pdet(L Lᵀ)`` for the Gibbs limit (:func:`gibbs_limit_factor`)."""
        X, Z = self.matrices(np.asarray(a, dtype=float))
        if self.measure == "solution_set":
            return np.sqrt(_gram(X, Z, self.depth, 2)[..., 0, 0])
        return gibbs_limit_factor(X, self.mask, self.depth, 2) * np.linalg.norm(Z[..., 0, :, :], axis=(-2, -1))

    def min_sigma2(self, n: int = 20001) -> float:
        """Smallest second singular value on the two arcs (a floor below it leaves the law unchanged)."""
        a = np.concatenate([np.linspace(lo, hi, n) for lo, hi in self.intervals])
        return float(np.min(np.linalg.svd(self.matrices(a)[0], compute_uv=False)[:, 1]))

    @property
    def arc_fractions(self) -> np.ndarray:
        """Masses of the left (``a < pole``) and right (``a > pole``) arcs, normalized."""
        return self.masses / self.total

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of the signed statistic ``a = X_13``."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        out = np.empty(x.shape)
        for k, v in enumerate(x.ravel()):
            tot = 0.0
            for lo, hi in self.intervals:
                if v > lo:
                    tot += integrate.quad(self.pdf_unnormalized, lo, min(v, hi), epsabs=0, epsrel=1e-9, limit=200)[0]
            out.ravel()[k] = tot / self.total
        return out

    def cdf_table(self, n: int = 4001):
        """Vectorized CDF by interpolation on ``n`` points per arc (accurate to ~1e-8)."""
        xs, Fs, acc = [], [], 0.0
        for (lo, hi), mass in zip(self.intervals, self.masses):
            g = lo + (hi - lo) * (1 - np.cos(np.linspace(0, math.pi, n))) / 2
            f = self.density(g)
            c = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(g))])
            c = c / c[-1] * mass
            xs.append(g)
            Fs.append((acc + c) / self.total)
            acc += mass
        xs, Fs = np.concatenate(xs), np.concatenate(Fs)
        return lambda x: np.interp(x, xs, Fs, left=0.0, right=1.0)


class UnitPoleArcs3x3Rank2(HyperbolaArcs3x3Rank2):
    """The issue-21 two-arc set: ``X = [[2, a, 1], [b, 2, 1], [1, 1, 1]]``, ``det X = a + b − ab``, so rank 2 means
    ``b = a/(a − 1)``: branches ``a < 1`` (the left arc, sign groups ``-+`` for ``a < 0`` and ``+-`` for
    ``0 < a < 1``) and ``a > 1`` (sign group ``++``), tangent ``E_12 − (a − 1)^{-2} E_21``. The left arc is
    lighter and its mass falls with depth; both arcs run out to the window along the asymptotes, where the
    density is thin (the case the kernel bandwidths had to cover)."""

    values = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    mask = np.array([[True, False, True], [False, True, True], [True, True, True]])
    entry_a, entry_b, pole = (0, 1), (1, 0), 1.0
    name = "unit_pole_arcs_3x3"

    @staticmethod
    def b(a: np.ndarray) -> np.ndarray:
        return a / (a - 1.0)

    @staticmethod
    def db(a: np.ndarray) -> np.ndarray:
        return -1.0 / (a - 1.0) ** 2


def volume_density(X: np.ndarray, depth: float, rank: int) -> np.ndarray:
    """``ρ_N(X) = √det G`` (finite ``N``), ``G_kl = g_N(X)(E_k, E_l)`` on the Frobenius-orthonormal basis
    ``E = {u_i v_jᵀ : i <= r or j <= r}`` of ``T_X M_r`` (:meth:`dlnvolume.DLNMetric.inner`): the density of the
    g_N-volume w.r.t. the Euclidean Hausdorff measure of ``M_r``, for points ``X`` (P, m, n)."""
    m, n = X.shape[-2:]
    U, _, Vh = np.linalg.svd(X)
    pairs = [(i, j) for i in range(m) for j in range(n) if i < rank or j < rank]
    E = np.stack([U[:, :, i, None] * Vh[:, j, None, :] for i, j in pairs], axis=1)
    return np.exp(0.5 * np.linalg.slogdet(_gram(X, E, depth, rank))[1])


class GibbsUnitPoleArcs3x3Rank2:
    """Exact arc masses of the finite-β Gibbs law ``∝ exp(-βE) ρ_N 1[‖X‖_F <= R]`` on ``M_2`` for the task of
    :class:`UnitPoleArcs3x3Rank2` (issue 21 item 4).

    In 3×3, ``M_2`` is the hypersurface ``det X = 0`` (rank-1 points have measure 0). Write ``y`` for the seven
    observed entries, ``a = X_12``, ``b = X_21``: ``det X = γab + pa + qb + c`` is bilinear in ``(a, b)`` with
    coefficients depending on ``y``, so ``(a - a*)(b - b*) = κ`` with ``a* = -q/γ``, ``b* = -p/γ``,
    ``κ = (pq - γc)/γ²``: two branches ``a = a* + σe^s``, ``b = b* + σκe^{-s}`` (``σ = -1``: the left arc
    ``a < a*``). On the graph ``b = b(y, a)`` the Hausdorff measure is ``‖∇det‖/|∂_b det| dy da`` (``∇det`` the
    cofactor matrix, ``∂_b det = γa + q = γσe^s``) and ``da = e^s ds``, so an arc's mass is
    ``∫ dy e^{-β|y - M_Ω|²/2} ∫ ρ_N(X) ‖cof X‖_F / |γ| ds`` over the window's interval of ``s``. The ``y``-integral
    is Gauss–Hermite (``n_gh`` nodes per coordinate around ``M_Ω``, width ``β^{-1/2}``; the integrand is smooth),
    the ``s``-integral Gauss–Legendre (``n_s`` nodes); ``ρ_N`` from :func:`volume_density`. Nothing here calls
    :mod:`samplers` or the package's closed-form volume density. Measured at N = 3: left-arc mass with 2 / 3
    Gauss–Hermite nodes 0.30005 / 0.29960 at β = 100, 0.302932 / 0.302926 at β = 1000; 64 and 128 Legendre nodes
    agree to 1e-8; one node at β = 1e8 gives the Gibbs limit of :class:`UnitPoleArcs3x3Rank2` (0.30330451, an
    independent formula: ``ρ_N/√pdet(LLᵀ)`` there, the cofactor here).
    """

    base = UnitPoleArcs3x3Rank2

    def __init__(self, depth: float, beta: float, radius: float, n_gh: int = 3, n_s: int = 64):
        mask, M = self.base.mask, self.base.values
        k = int(mask.sum())
        z, wz = np.polynomial.hermite_e.hermegauss(n_gh)  # weight e^{-z²/2}
        grids = np.meshgrid(*([z] * k), indexing="ij")
        xi = np.stack([g.ravel() for g in grids], axis=1)
        wy = np.prod(np.stack(np.meshgrid(*([wz] * k), indexing="ij"), axis=0).reshape(k, -1), axis=0)
        Y = M[mask][None, :] + xi / math.sqrt(beta)
        self.depth, self.beta, self.R = depth, float(beta), float(radius)
        t, wt = np.polynomial.legendre.leggauss(n_s)
        masses = np.zeros(2)
        for lo in range(0, Y.shape[0], 256):
            yb, wb = Y[lo:lo + 256], wy[lo:lo + 256]
            g, p, q, c = self.coefficients(yb)
            a0, b0, kap = -q / g, -p / g, (p * q - g * c) / g**2
            rho2 = self.R**2 - np.sum(yb * yb, axis=1)
            for side, sig in enumerate((-1.0, 1.0)):
                s_lo, s_hi = self._interval(a0, b0, kap, sig, rho2)
                s = 0.5 * (s_lo + s_hi)[:, None] + 0.5 * (s_hi - s_lo)[:, None] * t[None, :]
                X = np.broadcast_to(self.fill(yb), (s.shape[1],) + (yb.shape[0], 3, 3)).transpose(1, 0, 2, 3).copy()
                X[..., 0, 1] = a0[:, None] + sig * np.exp(s)
                X[..., 1, 0] = b0[:, None] + sig * kap[:, None] * np.exp(-s)
                flat = X.reshape(-1, 3, 3)
                cof = _cofactors(flat)
                f = (volume_density(flat, depth, 2) * np.linalg.norm(cof, axis=(1, 2))).reshape(s.shape)
                f = f / np.abs(g)[:, None]
                masses[side] += float(np.sum(wb * 0.5 * (s_hi - s_lo) * (f @ wt)))
        self.masses = masses
        self.arc_fractions = masses / masses.sum()

    @classmethod
    def fill(cls, y: np.ndarray) -> np.ndarray:
        """Matrices with observed entries ``y`` (P, 7) and zeros at ``a``, ``b``."""
        X = np.zeros((y.shape[0], 3, 3))
        X[:, cls.base.mask] = y
        return X

    @classmethod
    def coefficients(cls, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(γ, p, q, c)`` of ``det X = γab + pa + qb + c`` for observed entries ``y`` (P, 7)."""
        X = cls.fill(y)
        ea, eb = cls.base.entry_a, cls.base.entry_b

        def det(a: float, b: float) -> np.ndarray:
            Z = X.copy()
            Z[(slice(None),) + ea] = a
            Z[(slice(None),) + eb] = b
            return np.linalg.det(Z)

        c = det(0.0, 0.0)
        p, q = det(1.0, 0.0) - c, det(0.0, 1.0) - c
        return det(1.0, 1.0) - p - q - c, p, q, c

    @classmethod
    def left_arc(cls, X: np.ndarray) -> np.ndarray:
        """Whether each matrix ``X`` (..., 3, 3) lies on the left arc ``a < a*`` (``a*`` from its own observed entries)."""
        X = np.asarray(X, dtype=float)
        flat = X.reshape(-1, 3, 3)
        g, _, q, _ = cls.coefficients(flat[:, cls.base.mask])
        return (flat[(slice(None),) + cls.base.entry_a] < -q / g).reshape(X.shape[:-2])

    @staticmethod
    def _interval(a0: np.ndarray, b0: np.ndarray, kap: np.ndarray, sig: float, rho2: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The ``s``-interval of one branch inside ``a² + b² <= rho2`` (one interval per row, by bisection from the
        minimum of ``a² + b²`` on a grid)."""
        grid = np.linspace(-8.0, 8.0, 4001)

        def h(s: np.ndarray, i: slice = slice(None)) -> np.ndarray:
            a = a0[i, None] + sig * np.exp(s)
            b = b0[i, None] + sig * kap[i, None] * np.exp(-s)
            return a * a + b * b - rho2[i, None]

        H = h(grid[None, :])
        inside = H <= 0
        assert np.all(inside.any(axis=1)) and not np.any(inside[:, [0, -1]]), "the window must cut each branch"
        assert np.all(np.abs(np.diff(inside.astype(int), axis=1)).sum(axis=1) == 2), "one interval per branch"
        first = np.argmax(inside, axis=1)
        last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
        ends = []
        for lo, hi in ((grid[first - 1], grid[first]), (grid[last], grid[last + 1])):
            lo, hi = lo.copy(), hi.copy()
            f_lo = h(lo[:, None])[:, 0]
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                f_mid = h(mid[:, None])[:, 0]
                same = np.sign(f_mid) == np.sign(f_lo)
                lo, f_lo = np.where(same, mid, lo), np.where(same, f_mid, f_lo)
                hi = np.where(same, hi, mid)
            ends.append(0.5 * (lo + hi))
        return ends[0], ends[1]


def _cofactors(X: np.ndarray) -> np.ndarray:
    """Cofactor matrices of 3×3 matrices ``X`` (P, 3, 3): ``C_ij = ∂det/∂X_ij``."""
    C = np.empty_like(X)
    for i in range(3):
        for j in range(3):
            r = [k for k in range(3) if k != i]
            c = [k for k in range(3) if k != j]
            C[:, i, j] = (-1) ** (i + j) * (X[:, r[0], c[0]] * X[:, r[1], c[1]] - X[:, r[0], c[1]] * X[:, r[1], c[0]])
    return C
