"""Gibbs targets ``π_β ∝ exp(-βE(X)) · ρ_N^{(r)}(X) · confinement(X)`` on a rank stratum ``M_r``.

Coordinates (ARCHITECTURE.md "The measures", MATH.md §3.1–§3.4)
----------------------------------------------------------------
A point of the sampler is ``θ = (u, A, B)`` with ``u ∈ R^r``, ``A ∈ R^{m×r}``, ``B ∈ R^{n×r}``:

* ``σ = exp(u)`` (positive singular values, unordered),
* ``Q = polar(A) = A (AᵀA)^{-1/2}``, ``R = polar(B)``,
* ``X = Q diag(σ) Rᵀ``.

``log p(θ) = -βE(X) + c_N(u) + Σ u - ½‖A‖² - ½‖B‖² + log conf(σ)`` where ``c_N`` is the chart log
density of the g_N-volume in SVD coordinates (:func:`dlnvolume.spectral.chart_log_density_from_log_sigma`,
density w.r.t. ``dσ dQ dR``), ``Σu`` the Jacobian of ``σ = e^u`` and the Gaussian terms make ``A`` and
``B`` standard Gaussian matrices.

Why this is the target. The polar factor of a standard Gaussian ``m×r`` matrix is Haar distributed
on the Stiefel manifold and independent of its radial part ``(AᵀA)^{1/2}`` (the Gaussian law is
invariant under ``A ↦ UA``, ``U ∈ O(m)``). Hence under ``p`` the marginal law of ``(σ, Q, R)`` has
density ``∝ exp(-βE) · chart density · conf`` w.r.t. ``dσ dQ dR``, and the chart density is
``ρ_N^{(r)}`` times the Jacobian of the SVD chart (MATH.md §3.1), so ``X`` has law ``π_β``.

Covering degree. The chart ``(σ, Q, R) ↦ Q diag(σ) Rᵀ`` on unordered positive ``σ`` covers every
matrix with distinct nonzero singular values exactly ``2^r · r!`` times (simultaneous sign flips of
paired columns ``q_i, r_i``; permutations of the triples ``(σ_i, q_i, r_i)``). All preimages of one
``X`` carry the same density (``c_N`` is symmetric in ``σ``; ``E`` and the confinement depend on ``X``
only; the Gaussian terms are invariant under column permutations and sign changes of ``A``, ``B``),
so the pushforward to ``X`` is ``π_β`` divided by the constant ``2^r r!``: the law of ``X`` is unchanged.
Matrices with coincident singular values have chart density 0 (measure zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlnvolume import CompletionTask, DLNMetric
from dlnvolume.validation import check_depth, check_matrix, check_positive, check_rank, check_rng
from dlnvolume.errors import ImproperTargetError, InvalidArgumentError, InvalidRankError, NonFiniteError, ShapeError
from dlnvolume.spectral import chart_log_density_from_log_sigma, log_volume_density_from_log_sigma

from .confinement import Confinement, as_confinement

__all__ = ["GibbsTarget", "chart_log_density_grad", "polar", "polar_grad"]


# ----------------------------------------------------------------------------- polar factor
def polar(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Polar factor of ``A`` (..., m, r) via its thin SVD ``A = U S Vᵀ``: returns ``(Q, U, s, V)``, ``Q = U Vᵀ``.

    ``r = 1``: ``U = Q = A/|A|``, ``s = |A|``, ``V = 1`` directly (no batched SVD).
    """
    if A.shape[-1] == 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.sqrt(np.sum(A * A, axis=-2))  # (..., 1)
            Q = A / s[..., None, :]
        return Q, Q, s, np.ones(A.shape[:-2] + (1, 1))
    U, s, Vh = np.linalg.svd(A, full_matrices=False)
    V = np.swapaxes(Vh, -1, -2)
    return U @ Vh, U, s, V


def polar_grad(C: np.ndarray, Q: np.ndarray, s: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Pull back a gradient ``C = ∂f/∂Q`` through ``Q = polar(A)``: returns ``∂f/∂A``.

    With ``A = Q P``, ``P = V diag(s) Vᵀ``: ``dQ = Q Ω + (I - QQᵀ) dA P^{-1}`` with ``Ω`` skew solving
    ``ΩP + PΩ = QᵀdA - dAᵀQ``. The adjoint is
    ``∂f/∂A = Q V [ (Vᵀ(M - Mᵀ)V) / (s_i + s_j) ] Vᵀ + (I - QQᵀ) C P^{-1}``, ``M = QᵀC``.
    """
    Qt = np.swapaxes(Q, -1, -2)
    Vt = np.swapaxes(V, -1, -2)
    M = Qt @ C
    K = Vt @ (M - np.swapaxes(M, -1, -2)) @ V
    W = V @ (K / (s[..., :, None] + s[..., None, :])) @ Vt
    Pinv = (V / s[..., None, :]) @ Vt
    normal = (C - Q @ M) @ Pinv
    return Q @ W + normal


def chart_log_density_grad(log_sigma: np.ndarray, shape: tuple[int, int], depth: float) -> np.ndarray:
    """Gradient of :func:`~dlnvolume.spectral.chart_log_density_from_log_sigma` w.r.t. ``log σ``.

    Finite ``N``: ``(c+1-N)/N + Σ_{j≠i} (2/N)/(1 - exp(2(ℓ_j - ℓ_i)/N))`` with ``c = m+n-2r``;
    ``N = ∞``: ``-1 + Σ_{j≠i} 1/(ℓ_i - ℓ_j)`` (MATH.md §3.3, §3.4).
    """
    m, n = shape
    r = log_sigma.shape[-1]
    c = m + n - 2 * r
    d = log_sigma[..., :, None] - log_sigma[..., None, :]  # ℓ_i - ℓ_j
    eye = np.eye(r, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        if math.isinf(depth):
            terms = 1.0 / np.where(eye, 1.0, d)
            base = -1.0
        else:
            N = depth
            terms = (2.0 / N) / (-np.expm1(np.where(eye, 1.0, -2.0 * d / N)))
            base = (c + 1.0 - N) / N
    terms = np.where(eye, 0.0, terms)
    return base + np.sum(terms, axis=-1)


def volume_log_density_grad(log_sigma: np.ndarray, shape: tuple[int, int], depth: float) -> np.ndarray:
    """Gradient of ``log ρ_N^{(r)}`` (:func:`~dlnvolume.spectral.log_volume_density_from_log_sigma`, the density
    w.r.t. the Hausdorff measure of ``M_r``) w.r.t. ``ℓ = log σ``.

    It is the chart density's gradient (:func:`chart_log_density_grad`) minus that of the SVD Jacobian
    ``Σ c ℓ_i + Σ_{i<j} log|σ_i² - σ_j²|`` (MATH.md §3.1), written so that the ``1/(ℓ_i - ℓ_j)`` poles of the
    two cancel: with ``φ(x) = x/(1 - e^{-x})`` (``φ(0) = 1``, ``φ'(0) = 1/2``) and ``d = ℓ_i - ℓ_j``,
    finite ``N``: ``(c+1-N)/N - c + Σ_{j≠i} (φ(2d/N) - φ(2d))/d``; ``N = ∞``: ``-1 - c + Σ_{j≠i} (1 - φ(2d))/d``.
    """
    m, n = shape
    r = log_sigma.shape[-1]
    c = m + n - 2 * r
    d = log_sigma[..., :, None] - log_sigma[..., None, :]
    off = ~np.eye(r, dtype=bool)

    def phi(x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(np.abs(x) < 1e-300, 1.0, x / -np.expm1(-x))

    small = np.abs(d) < 1e-6
    safe = np.where(small, 1.0, d)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if math.isinf(depth):
            base = -1.0 - c
            terms = np.where(small, -1.0, (1.0 - phi(2.0 * safe)) / safe)
        else:
            N = depth
            base = (c + 1.0 - N) / N - c
            terms = np.where(small, 1.0 / N - 1.0, (phi(2.0 * safe / N) - phi(2.0 * safe)) / safe)
    return base + np.sum(np.where(off, terms, 0.0), axis=-1)


def _finite_svd(X: np.ndarray, **kw: Any) -> Any:
    """``np.linalg.svd(X, **kw)``; :class:`InvalidArgumentError` when it overflows (entries near the float64
    limit, e.g. 1e308: the singular values are inf and every density of them NaN)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.linalg.svd(X, **kw)
    parts = out if isinstance(out, tuple) else (out,)
    if not all(np.all(np.isfinite(p)) for p in parts):
        raise InvalidArgumentError(f"X has entries up to {float(np.max(np.abs(X))):.3g}: its SVD overflows in float64; "
                                   "expected entries of moderate size")
    return out


@dataclass(frozen=True, eq=False)
class GibbsTarget:
    """Gibbs target ``π_β ∝ exp(-βE) ρ_N^{(r)} conf`` on ``M_r`` in the coordinates ``θ = (u, A, B)``.

    Parameters
    ----------
    task : dlnvolume.CompletionTask
        Defines ``E(X) = ½‖P_Ω(X - M)‖²`` (MATH.md §5.1).
    depth : int >= 1 or math.inf
    rank : int in 1..min(m, n)
    beta : float >= 0
        Inverse temperature; ``0`` gives the (confined) volume measure itself.
    confinement : Confinement, list of Confinement, or None
    normalized : bool, default True
        Normalized metric ``Ā = A/N`` (only changes a constant for the density).

    Raises
    ------
    dlnvolume.errors.ImproperTargetError
        If the density cannot be normalized (MATH.md §3.5, §4.4): depth ``inf`` without a
        :class:`SingularValueFloor` (the density ``∝ σ_r^{-1}`` near lower strata is not integrable);
        ``β = 0`` or unobserved entries without a :class:`FrobeniusBall` or :class:`GaussianPrior`
        (the volume, or the flat directions of ``E``, have infinite mass at infinity).

    Notes
    -----
    See the module docstring for the coordinates and why the ``2^r r!``-fold covering of the SVD
    chart does not change the law of ``X``.
    """

    task: CompletionTask
    depth: float
    rank: int
    beta: float
    confinement: Any = None
    normalized: bool = True
    metric: DLNMetric = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.task, CompletionTask):
            raise InvalidArgumentError(
                f"task={self.task!r} has type {type(self.task).__name__}; expected a dlnvolume.CompletionTask"
            )
        depth = check_depth(self.depth, normalized=bool(self.normalized))
        m, n = self.task.shape
        rank = check_rank(self.rank, m, n)
        if rank < 1:
            raise InvalidRankError(f"rank={rank}; a Gibbs target needs rank in 1..{min(m, n)} (M_0 is a point)")
        beta = check_positive(self.beta, "beta", allow_zero=True)
        conf = as_confinement(self.confinement)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "confinement", conf)
        object.__setattr__(self, "normalized", bool(self.normalized))
        object.__setattr__(self, "metric", DLNMetric(depth, self.normalized))
        self._check_proper()

    # ------------------------------------------------------------------ properness
    def _check_proper(self) -> None:
        conf: Confinement = self.confinement
        m, n = self.task.shape
        where = f"(depth={self.depth}, rank={self.rank}, beta={self.beta}, shape={m}x{n}, confinement={conf.describe()})"
        if math.isinf(self.depth) and conf.floor <= 0:
            raise ImproperTargetError(
                f"improper target {where}: at depth inf the volume density behaves like σ_r^(-1) near the lower-rank "
                "strata, which is not integrable (MATH.md §3.5); add SingularValueFloor(minimum) to the confinement"
            )
        if not conf.bounded:
            if self.beta == 0:
                raise ImproperTargetError(
                    f"improper target {where}: with beta=0 the target is the g_N-volume, which has infinite mass at "
                    "infinity (volume of a ball of radius R grows like R^(dim/N), MATH.md §3.5); add FrobeniusBall(radius) "
                    "or GaussianPrior(scale) to the confinement"
                )
            if not bool(np.all(self.task.mask)):
                raise ImproperTargetError(
                    f"improper target {where}: E is flat along the {int((~self.task.mask).sum())} unobserved entries, so "
                    "exp(-beta E) volume need not have finite mass (MATH.md §4.4 caveat); add FrobeniusBall(radius) or "
                    "GaussianPrior(scale) to the confinement"
                )

    # ------------------------------------------------------------------ coordinates
    @property
    def shape(self) -> tuple[int, int]:
        return self.task.shape

    @property
    def ndim(self) -> int:
        """Number of coordinates ``r + m r + n r`` of ``θ``."""
        m, n = self.shape
        r = self.rank
        return r + m * r + n * r

    def _split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m, n = self.shape
        r = self.rank
        lead = theta.shape[:-1]
        u = theta[..., :r]
        A = theta[..., r : r + m * r].reshape(lead + (m, r))
        B = theta[..., r + m * r :].reshape(lead + (n, r))
        return u, A, B

    def _check_theta(self, theta: Any) -> np.ndarray:
        try:
            theta = np.asarray(theta, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"theta could not be converted to a float array: {exc}") from None
        if theta.ndim < 1 or theta.shape[-1] != self.ndim:
            raise ShapeError(f"theta has shape {theta.shape}; expected (..., {self.ndim}) for this target")
        if not np.all(np.isfinite(theta)):
            raise NonFiniteError("theta has NaN or infinite entries; expected finite coordinates")
        return theta

    def to_matrix(self, theta: Any) -> np.ndarray:
        """``X = polar(A) diag(exp u) polar(B)ᵀ`` for ``θ`` of shape ``(..., ndim)``; returns ``(..., m, n)``."""
        theta = self._check_theta(theta)
        u, A, B = self._split(theta)
        Q = polar(A)[0]
        R = polar(B)[0]
        with np.errstate(over="ignore", invalid="ignore"):
            X = (Q * np.exp(u)[..., None, :]) @ np.swapaxes(R, -1, -2)
        if not np.all(np.isfinite(X)):
            raise NonFiniteError(
                f"theta has log singular values up to {float(np.max(u)):.6g}; X = Q diag(exp u) Rᵀ overflows "
                "float64 (expected u < 709)"
            )
        return X

    def sigma(self, theta: Any) -> np.ndarray:
        theta = self._check_theta(theta)
        return np.exp(theta[..., : self.rank])

    # ------------------------------------------------------------------ density
    def log_density(self, theta: Any) -> np.ndarray:
        """``log p(θ)`` (unnormalized), shape ``(...)``; ``-inf`` outside the confinement."""
        return self._evaluate(self._check_theta(theta), grad=False)[0]

    def log_density_and_grad(self, theta: Any) -> tuple[np.ndarray, np.ndarray]:
        """``log p(θ)`` and its exact gradient in ``θ`` (shape ``(..., ndim)``)."""
        return self._evaluate(self._check_theta(theta), grad=True)  # type: ignore[return-value]

    def __call__(self, theta: Any) -> np.ndarray:
        return self.log_density(theta)

    def _evaluate(self, theta: np.ndarray, grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        m, n = self.shape
        r = self.rank
        u, A, B = self._split(theta)
        Q, _, sA, VA = polar(A)
        R, _, sB, VB = polar(B)
        conf: Confinement = self.confinement
        # E and E' without task.loss's finiteness check: a finite θ whose X overflows (u > ~709, or
        # entries of A, B near 1e154) has density 0 (log p = -inf below), not an input error
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            sigma = np.exp(u)
            X = (Q * sigma[..., None, :]) @ np.swapaxes(R, -1, -2)
            chart = chart_log_density_from_log_sigma(u, (m, n), self.depth, self.normalized)
            resid = self.task._observed * (X - self.task.values)
            logp = (
                -self.beta * (0.5 * np.sum(resid * resid, axis=(-2, -1)))
                + chart
                + np.sum(u, axis=-1)
                - 0.5 * np.sum(A * A, axis=(-2, -1))
                - 0.5 * np.sum(B * B, axis=(-2, -1))
                + conf.log_density_sigma(sigma)
            )
        logp = np.where(np.isnan(logp), -np.inf, logp)
        if not grad:
            return logp, None
        with np.errstate(all="ignore"):  # non-finite components are set to 0 below
            G = -self.beta * resid  # ∂(-βE)/∂X
            GR = G @ R  # (m, r)
            diag = np.sum(Q * GR, axis=-2)  # (QᵀGR)_ii
            gu = sigma * diag + chart_log_density_grad(u, (m, n), self.depth) + 1.0
            gu = gu + sigma * conf.grad_sigma(sigma)
            CQ = GR * sigma[..., None, :]
            CR = (np.swapaxes(G, -1, -2) @ Q) * sigma[..., None, :]
            gA = polar_grad(CQ, Q, sA, VA) - A
            gB = polar_grad(CR, R, sB, VB) - B
        lead = theta.shape[:-1]
        g = np.concatenate([gu, gA.reshape(lead + (m * r,)), gB.reshape(lead + (n * r,))], axis=-1)
        g = np.where(np.isfinite(g), g, 0.0)
        return logp, g

    def log_volume_density(self, X: Any) -> np.ndarray:
        """``log ρ_N^{(r)}(X)`` of matrices (statistic used in diagnostics), shape ``(...)``."""
        X = check_matrix(X)
        s = _finite_svd(X, compute_uv=False)
        with np.errstate(divide="ignore"):
            ls = np.log(s)
        return log_volume_density_from_log_sigma(ls, self.shape, self.rank, self.depth, self.normalized)

    def log_target_matrix(self, X: Any) -> np.ndarray:
        """``-βE(X) + log ρ_N^{(r)}(X) + log conf(X)``: the target log density in ``X`` (w.r.t. Hausdorff measure of M_r)."""
        X = check_matrix(X)
        s = np.linalg.svd(X, compute_uv=False)[..., : self.rank]
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            ls = np.log(s)
            energy = 0.0 if self.beta == 0 else -self.beta * self.task.loss(X)  # (0·inf would be NaN)
            logp = (
                energy
                + log_volume_density_from_log_sigma(ls, self.shape, self.rank, self.depth, self.normalized)
                + self.confinement.log_density_sigma(s)
            )
        # NaN only arises as inf - inf: off the stratum (σ_r = 0, log ρ = +inf) and outside an indicator
        # confinement (-inf), where the density is 0 (as in the θ coordinates)
        return np.where(np.isnan(logp), -np.inf, logp)

    # ------------------------------------------------------------------ starting points
    def default_initial(self, *, rng: Any = None) -> np.ndarray:
        """A random starting matrix of rank ``r`` inside the confinement, shape ``(m, n)``.

        The observed values plus small Gaussian noise, truncated to rank ``r``; singular values are
        pushed above the floor and the matrix shrunk into a Frobenius ball if needed.
        """
        rng = check_rng(rng)
        m, n = self.shape
        scale = max(1.0, float(np.sqrt(np.mean(self.task.values[self.task.mask] ** 2))))
        X = self.task.values + 0.3 * scale * rng.standard_normal((m, n))
        return self._into_confinement(X)

    def _into_confinement(self, X: np.ndarray) -> np.ndarray:
        r = self.rank
        U, s, Vh = _finite_svd(X, full_matrices=False)
        s = s[:r].copy()
        floor = float(self.confinement.floor)
        top = max(float(s[0]), 1e-3)
        s = np.maximum(s, max(1e-3 * top, 1.05 * floor))
        # distinct singular values (the chart density vanishes on coincidences)
        s = s * (1.0 + 1e-6 * np.arange(r, 0, -1))
        for part in getattr(self.confinement, "parts", (self.confinement,)):
            radius = getattr(part, "radius", None)
            if radius is not None and np.sqrt(np.sum(s * s)) > 0.9 * radius:
                s = s * (0.9 * radius / np.sqrt(np.sum(s * s)))
        if np.any(s < floor):
            raise ImproperTargetError(
                f"confinement {self.confinement.describe()} leaves no room for rank {r}: the floor and the ball are "
                "incompatible; use a larger radius or a smaller minimum"
            )
        return (U[:, :r] * s) @ Vh[:r]

    def initial_theta(self, X: Any, *, rng: Any = None) -> np.ndarray:
        """A ``θ`` with ``to_matrix(θ) = X_r`` (top-``r`` SVD of ``X``); radial parts of ``A``, ``B`` random.

        The radial parts are those of standard Gaussian matrices, i.e. drawn from the conditional law
        of ``(A, B)`` given their polar factors. Zero or coincident singular values are nudged apart.
        """
        rng = check_rng(rng)
        X = check_matrix(X, batch=False)
        if X.shape != self.shape:
            raise ShapeError(f"X has shape {X.shape}; expected {self.shape} for this target")
        r = self.rank
        U, s, Vh = _finite_svd(X, full_matrices=False)
        s = s[:r].copy()
        top = max(float(s[0]), 1e-12)
        s = np.maximum(s, 1e-6 * top)
        log_s = np.log(s) + np.log1p(1e-9 * np.arange(r, 0, -1))  # (a product could overflow near 1.8e308)
        m, n = self.shape
        _, _, sa, Va = polar(rng.standard_normal((m, r)))
        _, _, sb, Vb = polar(rng.standard_normal((n, r)))
        PA = (Va * sa) @ Va.T
        PB = (Vb * sb) @ Vb.T
        A = U[:, :r] @ PA
        B = Vh[:r].T @ PB
        return np.concatenate([log_s, A.ravel(), B.ravel()])

    def describe(self) -> dict[str, Any]:
        """The ``Chains.target`` dictionary."""
        return {
            "measure": "gibbs",
            "depth": self.depth,
            "rank": self.rank,
            "beta": self.beta,
            "normalized": self.normalized,
            "confinement": self.confinement.describe(),
            "task": self.task.name,
        }
