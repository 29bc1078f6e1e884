"""Tempered sequential Monte Carlo on a rank stratum (Gibbs targets) — the population sampler.

Why. Every target of this package with partial observations is multimodal at large ``β``: the solution
set ``S ∩ M_r`` has several components of unequal mass, and local MCMC started in one stays there.
Tempered SMC (Del Moral, Doucet & Jasra 2006; Chopin & Papaspiliopoulos 2020, ch. 17; the adaptive
schedule of blackjax's ``adaptive_tempered_smc``) moves a population of particles through a sequence of
distributions from one that is easy to sample to the target; importance weights, not where particles
were started, carry the relative masses of the modes.

Path (in the coordinates ``θ = (u, A, B)`` of :class:`samplers.GibbsTarget`)::

    log γ_s(θ) = (1 - λ) log q₀(θ) + λ · rest(θ) - β E(X(θ))
    s ∈ [0, 1]:  λ = s, β = s β₁            (bridge from q₀ to π_{β₁})
    s ∈ [1, 2]:  λ = 1, β = β₁ (β_end/β₁)^{s-1}   (geometric in β up to β_end)

``rest = log p_β + βE`` is the θ-density without the energy (chart density of the g_N-volume, Jacobian,
Gaussian radial parts of ``A``, ``B``, confinement); ``q₀`` is normalized: ``A``, ``B`` standard Gaussian
(the same factor as in ``rest``, so it cancels) and ``u`` i.i.d. ``N(μ, s²)``.

One stage. Given equally weighted particles at ``s``: (1) the next ``s'`` is the largest value with
``ESS(w) = α P`` for the incremental weights ``w_i = γ_{s'}(θ_i)/γ_s(θ_i)`` (bisection, α = 0.5 by
default); (2) ``log Z += log mean(w)``; (3) systematic resampling of the particles sorted by piece
(sign pattern of the unobserved entries; stable sort, so inside a piece particles stay in ancestor order
and descendants of one ancestor are contiguous, which the ArviZ ESS of the output then sees): the count
of a piece changes by at most one per stage, so the masses of separated components do not random-walk
through resampling noise; (4) ``K`` rejuvenation steps on ``γ_{s'}`` batched over particles, step size
adapted between steps towards acceptance 0.57: preconditioned MALA in θ (``kernel="diagonal"``, diagonal
preconditioner = particle variances) or, for rank 1, simplified manifold MALA (Girolami & Calderhead
2011, no Christoffel terms) in the factor chart ``φ = (A, z, w)``, ``X = (A/|A|) zᵀ``, with the
Gauss–Newton metric ``β JᵀJ + D^{-1}`` (``kernel="factor"``; ``"mixed"`` adds a θ-MALA sweep after every
fourth). At large ``β`` the target is a thin ridge around the solution set; in θ that ridge is curved and
the diagonal preconditioner cannot follow it, in the factor chart a segment of solutions along an
unobserved column is a straight line along which ``G^{-1}`` has the particle scale.

Result. ``log Z`` estimates ``log ∫ exp(log p_β(θ)) dθ`` of the target's θ-density (unbiased in ``Z``).
Independent replicates (one per chain, seeds from ``SeedSequence.spawn``) give the Monte Carlo
error of everything, including piece masses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dlnvolume.batching import part, tick
from dlnvolume.errors import InvalidArgumentError

from dlnvolume.spectral import log_volume_density_from_log_sigma

from .targets import GibbsTarget, polar, polar_grad, volume_log_density_grad

__all__ = ["ThetaPath", "SMCRun", "run_tempered_smc", "systematic_resample", "kish_ess", "mala_sweep",
           "default_path", "sample_gibbs", "sibling_order"]


def kish_ess(logw: np.ndarray) -> float:
    """Effective sample size ``(Σw)²/Σw²`` of importance weights given as logs (``-inf`` allowed)."""
    logw = np.asarray(logw, dtype=np.float64)
    top = np.max(logw)
    if not np.isfinite(top):
        return 0.0
    w = np.exp(logw - top)
    return float(np.sum(w) ** 2 / np.sum(w * w))


def systematic_resample(logw: np.ndarray, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Indices (nondecreasing) of ``n`` systematic-resampling draws from weights ``exp(logw)``."""
    logw = np.asarray(logw, dtype=np.float64)
    n = logw.size if n is None else n
    w = np.exp(logw - np.max(logw))
    c = np.cumsum(w / np.sum(w))
    c[-1] = 1.0
    u = (rng.uniform() + np.arange(n)) / n
    return np.minimum(np.searchsorted(c, u, side="right"), logw.size - 1)


@dataclass(eq=False)
class ThetaPath:
    """The tempering path ``γ_s`` of the module docstring for a :class:`GibbsTarget` (any stratum).

    ``target_a`` and ``target_b`` are the same target at two inverse temperatures ``β_a ≠ β_b``; from
    their θ-densities the energy is ``E = (log p_a - log p_b)/(β_b - β_a)`` and ``rest = log p_a + β_a E``
    (with gradients), so no improper β = 0 target is ever built.
    """

    target_a: GibbsTarget
    target_b: GibbsTarget
    beta1: float
    beta_end: float
    mu: np.ndarray  # (r,) mean of u under q₀
    sd: float  # standard deviation of u under q₀

    def piece_key(self, theta: np.ndarray) -> np.ndarray:
        """Integer code of the sign pattern of the unobserved entries of ``X(θ)`` (resampling order key)."""
        t = self.target_a
        X = t.to_matrix(theta)
        bits = X[:, ~t.task.mask] >= 0
        return bits.astype(np.int64) @ (2 ** np.arange(bits.shape[1], dtype=np.int64))

    def schedule(self, s: float) -> tuple[float, float]:
        """``(λ, β)`` at path parameter ``s ∈ [0, 2]``."""
        if s <= 1.0:
            return s, s * self.beta1
        if self.beta_end <= self.beta1:
            return 1.0, self.beta_end
        return 1.0, self.beta1 * (self.beta_end / self.beta1) ** (s - 1.0)

    @property
    def s_end(self) -> float:
        return 1.0 if self.beta_end <= self.beta1 else 2.0

    def sample_base(self, n: int, rng: np.random.Generator) -> np.ndarray:
        t = self.target_a
        m, n_ = t.shape
        r = t.rank
        u = self.mu + self.sd * rng.standard_normal((n, r))
        return np.concatenate([u, rng.standard_normal((n, (m + n_) * r))], axis=1)

    def parts(self, theta: np.ndarray, grad: bool) -> tuple[np.ndarray, ...]:
        """``(base, rest, E)`` and, with ``grad``, their θ-gradients."""
        r = self.target_a.rank
        la, ga = self.target_a._evaluate(theta, grad=grad)
        lb, gb = self.target_b._evaluate(theta, grad=grad)
        db = self.target_b.beta - self.target_a.beta
        with np.errstate(invalid="ignore"):
            E = np.where(np.isfinite(la) & np.isfinite(lb), (la - lb) / db, np.inf)
            rest = np.where(np.isfinite(la), la + self.target_a.beta * E, -np.inf)
        z = (theta[:, :r] - self.mu) / self.sd
        base = -0.5 * np.sum(z * z, axis=1) - 0.5 * np.sum(theta[:, r:] ** 2, axis=1)
        base = base - 0.5 * theta.shape[1] * math.log(2 * math.pi) - r * math.log(self.sd)
        if not grad:
            return base, rest, E
        gE = (ga - gb) / db
        grest = ga + self.target_a.beta * gE
        gbase = np.concatenate([-z / self.sd, -theta[:, r:]], axis=1)
        return base, rest, E, gbase, grest, gE

    @staticmethod
    def combine(lam: float, beta: float, base: np.ndarray, rest: np.ndarray, E: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            out = (1.0 - lam) * base + (lam * rest if lam > 0 else 0.0) - (beta * E if beta > 0 else 0.0)
        return np.where(np.isnan(out), -np.inf, out)

    def logp_grad(self, theta: np.ndarray, lam: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
        base, rest, E, gbase, grest, gE = self.parts(theta, grad=True)
        lp = self.combine(lam, beta, base, rest, E)
        g = (1.0 - lam) * gbase + lam * grest - beta * gE
        g = np.where(np.isfinite(g), g, 0.0)
        return lp, g


def mala_sweep(
    logp_grad: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    theta: np.ndarray, lp: np.ndarray, g: np.ndarray, h: float, scale: np.ndarray, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One preconditioned MALA step for every particle (rows of ``theta``); returns the new
    ``(theta, lp, g, accept_prob)``. Proposal ``θ' = θ + (h/2) M ∇log γ + √h M^{1/2} ξ``, ``M = diag(scale²)``."""
    M = scale * scale
    xi = rng.standard_normal(theta.shape)
    prop = theta + 0.5 * h * M * g + math.sqrt(h) * scale * xi
    lp2, g2 = logp_grad(prop)
    log_fwd = -0.5 * np.sum(xi * xi, axis=1)
    # a proposal whose gradient overflows has log_rev = -inf (or NaN): rejected below, silently
    with np.errstate(invalid="ignore", over="ignore"):
        back = theta - prop - 0.5 * h * M * g2
        log_rev = -0.5 * np.sum(back * back / M, axis=1) / h
        log_a = lp2 - lp + log_rev - log_fwd
    log_a = np.where(np.isnan(log_a), -np.inf, log_a)
    acc = np.exp(np.minimum(log_a, 0.0))
    take = np.log(rng.uniform(size=lp.shape)) < log_a
    theta = np.where(take[:, None], prop, theta)
    lp = np.where(take, lp2, lp)
    g = np.where(take[:, None], g2, g)
    return theta, lp, g, acc


# ----------------------------------------------------------------------------- rank-1 factor chart
def factor_from_theta(theta: np.ndarray, m: int, n: int) -> np.ndarray:
    """Rank 1: the factor chart ``φ = (A, z, w)`` of ``θ = (u, A, B)``: ``z = e^u B/|B|``, ``w = log|B|``.

    Then ``X(θ) = (A/|A|) zᵀ``: the scale sits in ``z``, so a solution set ``{â (t, b′)ᵀ}`` that is a
    straight segment in ``X`` along an unobserved column is a straight line in ``z`` (``A`` fixed), and the
    radial part of ``A`` (which ``X`` ignores) is a straight line too. Inverse: :func:`theta_from_factor`.
    """
    u = theta[:, 0]
    A = theta[:, 1:1 + m]
    B = theta[:, 1 + m:1 + m + n]
    nB = np.linalg.norm(B, axis=1)
    return np.concatenate([A, B * (np.exp(u) / nB)[:, None], np.log(nB)[:, None]], axis=1)


def theta_from_factor(phi: np.ndarray, m: int, n: int) -> np.ndarray:
    """``θ = (log|z|, A, e^w z/|z|)``."""
    z = phi[:, m:m + n]
    w = phi[:, m + n]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        nz = np.linalg.norm(z, axis=1)
        return np.concatenate([np.log(nz)[:, None], phi[:, :m], z * (np.exp(w) / nz)[:, None]], axis=1)


def factor_log_jacobian(phi: np.ndarray, m: int, n: int) -> np.ndarray:
    """``log |det ∂θ/∂φ| = n (w − log|z|)``.

    Why: ``A`` is unchanged; ``z`` and ``B`` share their direction, and in polar coordinates
    ``dB = |B|^n d log|B| dω = e^{nw} dw dω``, ``dz = |z|^n d log|z| dω = e^{nu} du dω``.
    """
    with np.errstate(divide="ignore"):
        return n * (phi[:, m + n] - np.log(np.linalg.norm(phi[:, m:m + n], axis=1)))


def factor_pullback(phi: np.ndarray, theta: np.ndarray, lp: np.ndarray, g: np.ndarray, m: int, n: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``log p_φ = log p_θ + log|det ∂θ/∂φ|`` and its φ-gradient, from ``(log p_θ, ∇_θ log p_θ)`` at
    ``θ = θ(φ)``."""
    z = phi[:, m:m + n]
    with np.errstate(all="ignore"):
        nz2 = np.sum(z * z, axis=1)
        zh = z / np.sqrt(nz2)[:, None]
        gu, gA, gB = g[:, 0], g[:, 1:1 + m], g[:, 1 + m:1 + m + n]
        B = theta[:, 1 + m:1 + m + n]
        kB = np.exp(phi[:, m + n]) / np.sqrt(nz2)
        gz = ((gu - n) / nz2)[:, None] * z + kB[:, None] * (gB - np.sum(zh * gB, axis=1)[:, None] * zh)
        gw = np.sum(B * gB, axis=1) + n
        out = np.concatenate([gA, gz, gw[:, None]], axis=1)
        lp = lp + factor_log_jacobian(phi, m, n)
    lp = np.where(np.isnan(lp), -np.inf, lp)
    out = np.where(np.isfinite(out), out, 0.0)
    return lp, out


def factor_logp_grad(fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], phi: np.ndarray, m: int, n: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log p_φ, ∇_φ log p_φ, aux)`` at ``φ`` from ``fn(θ) = (log p_θ, ∇_θ log p_θ)``;
    ``aux = [log p_θ, ∇_θ log p_θ]`` at ``θ(φ)`` (so a θ-kernel can continue without evaluating again)."""
    theta = theta_from_factor(phi, m, n)
    bad = ~np.all(np.isfinite(theta), axis=1)
    theta = np.where(bad[:, None], 1.0, theta)
    lpt, gt = fn(theta)
    lpt = np.where(bad, -np.inf, lpt)
    lp, out = factor_pullback(phi, theta, lpt, gt, m, n)
    return lp, out, np.concatenate([lpt[:, None], gt], axis=1)


def factor_orientation(mask: np.ndarray) -> bool:
    """Whether the factor kernel should use the chart of ``Xᵀ``: more fully unobserved rows than columns.

    The chart puts the scale in the column factor ``z``, so a solution set that runs along an unobserved
    column is straight in it; an unobserved row is straight in the chart of ``Xᵀ``.
    """
    mask = np.asarray(mask, dtype=bool)
    return int(np.sum(~mask.any(axis=1))) > int(np.sum(~mask.any(axis=0)))


def factor_gauss_newton(phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``JᵀJ`` of the observed residual ``P_Ω(Q zᵀ − M)``, ``Q = A/|A|``, w.r.t. ``φ = (A, z, w)``.

    ``∂X_ij/∂z_j = Q_i``, ``∂X_ij/∂A = z_j (I − QQᵀ)_i /|A|``; shape ``(P, m+n+1, m+n+1)``.
    """
    m, n = mask.shape
    Om = mask.astype(np.float64)
    A = phi[:, :m]
    z = phi[:, m:m + n]
    nA = np.linalg.norm(A, axis=1)
    Q = A / nA[:, None]
    Pr = np.eye(m) - Q[:, :, None] * Q[:, None, :]  # (P, m, m)
    d = m + n + 1
    G = np.zeros((phi.shape[0], d, d))
    wrow = (z * z) @ Om.T  # (P, m): Σ_j Ω_ij z_j²
    G[:, :m, :m] = np.einsum("pik,pi,pil->pkl", Pr, wrow, Pr) / (nA * nA)[:, None, None]
    ib = m + np.arange(n)
    G[:, ib, ib] = (Q * Q) @ Om
    C = np.einsum("pik,ij,pi->pkj", Pr, Om, Q) * (z / nA[:, None])[:, None, :]  # (P, m, n)
    G[:, :m, m:m + n] = C
    G[:, m:m + n, :m] = np.swapaxes(C, 1, 2)
    return G


def factor_metric(phi: np.ndarray, mask: np.ndarray, beta: float, prec: np.ndarray) -> np.ndarray:
    """``G(φ) = β JᵀJ + diag(prec)`` (Gauss–Newton in the factor chart plus the particle precisions)."""
    G = beta * factor_gauss_newton(phi, mask)
    d = prec.size
    G[:, np.arange(d), np.arange(d)] += prec
    return G


# ----------------------------------------------------------------------------- rank-r factor chart
def haar_orthogonal(P: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """``P`` Haar-distributed orthogonal ``r×r`` matrices (QR of a Gaussian with the signs of ``diag R``)."""
    Q, R = np.linalg.qr(rng.standard_normal((P, r, r)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[:, None, :]


def factor_r_from_theta(theta: np.ndarray, m: int, n: int, r: int, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Any rank: the factor chart ``φ = (A', Z)`` of ``θ = (u, A, B)`` and the kept part ``P_B = Rᵀ B`` of ``B``.

    ``A' = A O``, ``Z = R diag(e^u) O`` with ``O`` a fresh Haar orthogonal matrix per particle, so that
    ``X = polar(A') Zᵀ``. Under the θ-target at ``λ = 1`` (``X ~ π``; ``A``, ``B`` Gaussian given ``X``) the
    pair ``(A', Z)`` has the density of :func:`factor_r_logp_grad` and ``P_B`` its own law, independent
    (docs/samplers.md §3, "factor" at rank r >= 2). Inverse (up to the fibre variables): :func:`theta_from_factor_r`.
    """
    P = theta.shape[0]
    u = theta[:, :r]
    A = theta[:, r:r + m * r].reshape(P, m, r)
    B = theta[:, r + m * r:].reshape(P, n, r)
    R = polar(B)[0]
    PB = np.swapaxes(R, 1, 2) @ B
    O = haar_orthogonal(P, r, rng)
    Z = (R * np.exp(u)[:, None, :]) @ O
    return np.concatenate([(A @ O).reshape(P, -1), Z.reshape(P, -1)], axis=1), PB


def theta_from_factor_r(phi: np.ndarray, PB: np.ndarray, m: int, n: int, r: int, rng: np.random.Generator
                        ) -> np.ndarray:
    """``θ = (log s, U P_A, V P_B)`` from ``X = polar(A') Zᵀ = U diag(s) Vᵀ`` (thin SVD with a uniformly random
    order and signs of its ``r`` triplets, which the θ-target does not see), ``P_A = polar(A')ᵀ A'``."""
    P = phi.shape[0]
    A = phi[:, :m * r].reshape(P, m, r)
    Z = phi[:, m * r:].reshape(P, n, r)
    Q = polar(A)[0]
    PA = np.swapaxes(Q, 1, 2) @ A
    PA = 0.5 * (PA + np.swapaxes(PA, 1, 2))
    U, s, Vh = np.linalg.svd(Q @ np.swapaxes(Z, 1, 2), full_matrices=False)
    perm = np.argsort(rng.random((P, r)), axis=1)
    sign = rng.choice(np.array([-1.0, 1.0]), size=(P, r))
    U = np.take_along_axis(U[:, :, :r], perm[:, None, :], axis=2) * sign[:, None, :]
    V = np.take_along_axis(np.swapaxes(Vh, 1, 2)[:, :, :r], perm[:, None, :], axis=2) * sign[:, None, :]
    with np.errstate(divide="ignore"):
        u = np.log(np.take_along_axis(s[:, :r], perm, axis=1))
    return np.concatenate([u, (U @ PA).reshape(P, -1), (V @ PB).reshape(P, -1)], axis=1)


def factor_r_logp_grad(target: GibbsTarget, beta: float, transpose: bool, phi: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``log p_φ`` and its gradient in the factor chart ``φ = (A, Z)``, ``X_o = polar(A) Zᵀ`` (``X = X_o`` or, with
    ``transpose``, ``X_oᵀ``; ``X_o`` is ``m_o×n_o``)::

        log p_φ = log π_β(X) - ½‖A‖² + ((m_o - r)/2) log det(ZᵀZ),   log π_β = -βE + log ρ_N + log conf

    (``π_β`` w.r.t. the Hausdorff measure of ``M_r``). Why this density: with ``A = QP`` (polar), the Lebesgue
    measure is ``dA dZ ∝ J(P) dP dO dvol(X) / det(ZᵀZ)^{(m_o-r)/2}`` (``O`` the frame of ``col X`` in ``Q``,
    ``J(P) dP`` the law of the polar factor of a Gaussian matrix up to ``e^{-tr P²/2}``), so under ``p_φ`` the
    matrix ``X`` has law ``π_β``, independent of ``P`` and ``O`` (docs/samplers.md §3, "factor" at rank
    ``r >= 2``). Given ``A``, the residual is linear in ``Z``: a solution set is flat along ``Z``.
    """
    t = target
    m, n = t.shape
    r = t.rank
    mo, no = (n, m) if transpose else (m, n)
    P = phi.shape[0]
    A = phi[:, :mo * r].reshape(P, mo, r)
    Z = phi[:, mo * r:].reshape(P, no, r)
    Q, _, sA, VA = polar(A)
    Xo = Q @ np.swapaxes(Z, 1, 2)
    X = np.swapaxes(Xo, 1, 2) if transpose else Xo
    with np.errstate(all="ignore"):
        U, s, Vh = np.linalg.svd(X, full_matrices=False)
        U, s, Vh = U[:, :, :r], s[:, :r], Vh[:, :r, :]
        ls = np.log(s)
        resid = t.task._observed * (X - t.task.values)
        lpi = (-beta * 0.5 * np.sum(resid * resid, axis=(1, 2))
               + log_volume_density_from_log_sigma(ls, (m, n), r, t.depth, t.normalized)
               + t.confinement.log_density_sigma(s))
        gs = volume_log_density_grad(ls, (m, n), t.depth) / s + t.confinement.grad_sigma(s)
        GX = -beta * resid + (U * gs[:, None, :]) @ Vh
        Go = np.swapaxes(GX, 1, 2) if transpose else GX
        ZtZ = np.swapaxes(Z, 1, 2) @ Z
        sign, logdet = np.linalg.slogdet(ZtZ)
        gZ = np.swapaxes(Go, 1, 2) @ Q + (mo - r) * Z @ np.linalg.inv(ZtZ)
        gA = polar_grad(Go @ Z, Q, sA, VA) - A
        lp = lpi - 0.5 * np.sum(A * A, axis=(1, 2)) + 0.5 * (mo - r) * logdet
    lp = np.where(np.isnan(lp) | (sign <= 0), -np.inf, lp)
    g = np.concatenate([gA.reshape(P, -1), gZ.reshape(P, -1)], axis=1)
    return lp, np.where(np.isfinite(g), g, 0.0)


def factor_r_log_h(target: GibbsTarget, transpose: bool, Q: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``log h = log ρ_N(X) + log conf(X) + ((m_o - r)/2) log det(ZᵀZ)`` at ``X_o = Q Zᵀ``: the part of
    :func:`factor_r_logp_grad`'s ``log p_φ`` that is neither the energy nor ``-½‖A‖²``."""
    t = target
    m, n = t.shape
    r = t.rank
    mo = n if transpose else m
    Xo = Q @ np.swapaxes(Z, 1, 2)
    X = np.swapaxes(Xo, 1, 2) if transpose else Xo
    with np.errstate(all="ignore"):
        s = np.linalg.svd(X, compute_uv=False)[:, :r]
        sign, logdet = np.linalg.slogdet(np.swapaxes(Z, 1, 2) @ Z)
        out = (log_volume_density_from_log_sigma(np.log(s), (m, n), r, t.depth, t.normalized)
               + t.confinement.log_density_sigma(s) + 0.5 * (mo - r) * logdet)
    return np.where(np.isnan(out) | (sign <= 0), -np.inf, out)


def factor_r_z_conditional(Q: np.ndarray, mask_o: np.ndarray, M_o: np.ndarray, r: int
                           ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """For each row ``j`` of ``Z`` with at least ``r`` observed entries ``I_j`` in column ``j`` of ``X_o``:
    ``(j, μ_j, L_j)``, ``μ_j`` the least-squares solution of ``Q_{I_j} z = M_{I_j j}`` and ``L_j`` the Cholesky
    factor of ``Q_{I_j}ᵀ Q_{I_j}`` (batched over particles): given ``Q``, ``E = ½ Σ_j |Q_{I_j} Z_jᵀ - M_{I_j j}|²``
    is ``½ Σ_j (Z_j - μ_j) L_j L_jᵀ (Z_j - μ_j)ᵀ`` plus a constant."""
    out = []
    for j in range(mask_o.shape[1]):
        rows = np.flatnonzero(mask_o[:, j])
        if rows.size < r:
            continue
        Qj = Q[:, rows, :]
        G = np.swapaxes(Qj, 1, 2) @ Qj
        mu = np.linalg.solve(G, np.einsum("pkr,k->pr", Qj, M_o[rows, j])[..., None])[..., 0]
        out.append((j, mu, np.linalg.cholesky(G)))
    return out


def factor_r_z_gibbs(target: GibbsTarget, beta: float, transpose: bool, phi: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One Metropolis-within-Gibbs update of ``Z`` given ``A`` in the factor chart (:func:`factor_r_logp_grad`).

    Given ``A`` (so ``Q = polar(A)``), the energy is exactly quadratic in ``Z`` and splits over the rows of ``Z``:
    the observed entries of column ``j`` of ``X_o`` are ``Q_{I_j} Z_jᵀ``. The proposal draws every row with
    ``|I_j| >= r`` from its exact Gaussian ``N(μ_j, (β Q_{I_j}ᵀQ_{I_j})^{-1})`` (least-squares mean) and keeps the
    others; the Gaussian parts cancel in the acceptance ratio, which is ``h(Z')/h(Z)`` with
    ``h = ρ_N conf det(ZᵀZ)^{(m_o-r)/2}`` (the rest of ``p_φ``). At large ``β`` the proposal's width
    ``β^{-1/2}`` is far below the scale on which ``h`` varies: the normal directions of the ridge are drawn
    afresh in one step, whatever their curvature. Returns ``(φ, accept_prob)``.
    """
    t = target
    m, n = t.shape
    r = t.rank
    mo, no = (n, m) if transpose else (m, n)
    mask = t.task.mask.T if transpose else t.task.mask
    M = t.task.values.T if transpose else t.task.values
    P = phi.shape[0]
    A = phi[:, :mo * r].reshape(P, mo, r)
    Z = phi[:, mo * r:].reshape(P, no, r)
    Q = polar(A)[0]
    Z2 = Z.copy()
    for j, mu, L in factor_r_z_conditional(Q, mask, M, r):
        # Z_j = μ + β^{-1/2} L^{-T} ξ has covariance (β L Lᵀ)^{-1}
        xi = rng.standard_normal((P, r))
        Z2[:, j, :] = mu + np.linalg.solve(np.swapaxes(L, 1, 2), xi[..., None])[..., 0] / math.sqrt(beta)

    with np.errstate(invalid="ignore"):
        log_a = factor_r_log_h(t, transpose, Q, Z2) - factor_r_log_h(t, transpose, Q, Z)
    log_a = np.where(np.isnan(log_a), -np.inf, log_a)
    take = np.log(rng.uniform(size=P)) < log_a
    Z = np.where(take[:, None, None], Z2, Z)
    return np.concatenate([A.reshape(P, -1), Z.reshape(P, -1)], axis=1), np.exp(np.minimum(log_a, 0.0))


def factor_r_gauss_newton(phi: np.ndarray, mask_o: np.ndarray, r: int) -> np.ndarray:
    """``JᵀJ`` of the observed entries of ``X_o = polar(A) Zᵀ`` w.r.t. ``φ = (A, Z)``; shape ``(P, d, d)``.

    Row ``(i, j)`` of ``J`` is the gradient of ``X_o[i, j]``: ``∂/∂Z = e_j Q_{i,:}``, ``∂/∂A`` the pull-back of
    ``e_i e_jᵀ Z`` through the polar factor (:func:`~samplers.targets.polar_grad`).
    """
    mo, no = mask_o.shape
    P = phi.shape[0]
    A = phi[:, :mo * r].reshape(P, mo, r)
    Z = phi[:, mo * r:].reshape(P, no, r)
    Q, _, sA, VA = polar(A)
    I, J = np.nonzero(mask_o)
    k = I.size
    C = np.zeros((P, k, mo, r))
    C[:, np.arange(k), I, :] = Z[:, J, :]  # (e_i e_jᵀ) Z
    gA = polar_grad(C, Q[:, None], sA[:, None], VA[:, None]).reshape(P, k, mo * r)
    gZ = np.zeros((P, k, no, r))
    gZ[:, np.arange(k), J, :] = Q[:, I, :]
    Jm = np.concatenate([gA, gZ.reshape(P, k, no * r)], axis=2)
    return np.swapaxes(Jm, 1, 2) @ Jm


def _tri_solve(L: np.ndarray, b: np.ndarray, transpose: bool = False) -> np.ndarray:
    """Batched ``L y = b`` (or ``Lᵀ y = b``) for lower-triangular ``L`` (P, d, d) and ``b`` (P, d)."""
    d = L.shape[-1]
    y = np.zeros_like(b)
    rows = range(d - 1, -1, -1) if transpose else range(d)
    for i in rows:
        if transpose:
            acc = np.einsum("pk,pk->p", L[:, i + 1:, i], y[:, i + 1:])
        else:
            acc = np.einsum("pk,pk->p", L[:, i, :i], y[:, :i])
        y[:, i] = (b[:, i] - acc) / L[:, i, i]
    return y


def metric_cache(metric: Callable[[np.ndarray], np.ndarray], x: np.ndarray, g: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(L, G^{-1} g, log det G)`` at ``x`` with ``G = metric(x) = L Lᵀ`` (batched Cholesky)."""
    G = metric(x)
    ok = np.all(np.isfinite(G), axis=(1, 2))
    eye = np.eye(G.shape[-1])
    G = np.where(ok[:, None, None], G, eye)
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:  # numerically indefinite rows: clamp their eigenvalues
        lam, V = np.linalg.eigh(G)
        lam = np.maximum(lam, 1e-12 * np.max(np.abs(lam), axis=1, keepdims=True) + 1e-300)
        L = np.linalg.cholesky((V * lam[:, None, :]) @ np.swapaxes(V, 1, 2))
    drift = _tri_solve(L, _tri_solve(L, g), transpose=True)
    logdet = 2.0 * np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
    return L, drift, np.where(ok, logdet, np.nan)


def mmala_sweep(
    logp_grad: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    metric: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray, lp: np.ndarray, g: np.ndarray, cache: tuple[np.ndarray, np.ndarray, np.ndarray], h: float,
    rng: np.random.Generator, aux: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray,
           np.ndarray | None]:
    """One simplified manifold MALA step (Girolami & Calderhead 2011, no Christoffel terms) per particle.

    Proposal ``x' ~ N(x + (h/2) G(x)^{-1} ∇log γ(x), h G(x)^{-1})`` with ``G = metric`` (``cache`` =
    :func:`metric_cache` at the current points); Metropolis–Hastings with the proposal densities at both
    points, so exact for any position-dependent metric. ``logp_grad`` returns ``(lp, g)`` or ``(lp, g, aux)``
    (per-particle rows carried along with the accepted points). Returns ``(x, lp, g, cache, accept_prob, aux)``.
    """
    L, drift, logdet = cache
    xi = rng.standard_normal(x.shape)
    prop = x + 0.5 * h * drift + math.sqrt(h) * _tri_solve(L, xi, transpose=True)
    ok = np.all(np.isfinite(prop), axis=1)
    prop = np.where(ok[:, None], prop, x)
    out = logp_grad(prop)
    lp2, g2 = out[0], out[1]
    aux2 = out[2] if len(out) > 2 else None
    L2, drift2, logdet2 = metric_cache(metric, prop, g2)
    with np.errstate(invalid="ignore", over="ignore"):
        back = x - prop - 0.5 * h * drift2
        lb = np.einsum("pji,pj->pi", L2, back)  # L2ᵀ back
        log_rev = -0.5 * np.sum(lb * lb, axis=1) / h + 0.5 * logdet2
        log_fwd = -0.5 * np.sum(xi * xi, axis=1) + 0.5 * logdet
        log_a = lp2 - lp + log_rev - log_fwd
    log_a = np.where(np.isnan(log_a) | ~ok, -np.inf, log_a)
    acc = np.exp(np.minimum(log_a, 0.0))
    take = np.log(rng.uniform(size=lp.shape)) < log_a
    x = np.where(take[:, None], prop, x)
    lp = np.where(take, lp2, lp)
    g = np.where(take[:, None], g2, g)
    cache = (np.where(take[:, None, None], L2, L), np.where(take[:, None], drift2, drift),
             np.where(take, logdet2, logdet))
    if aux is not None and aux2 is not None:
        aux = np.where(take[:, None], aux2, aux)
    return x, lp, g, cache, acc, aux


@dataclass
class SMCRun:
    """One replicate of tempered SMC: equally weighted particles (ancestor order) and its record."""

    theta: np.ndarray  # (P, ndim)
    log_evidence: float
    n_stages: int
    schedule: list[tuple[float, float]] = field(default_factory=list)  # (λ, β) per stage
    accept: list[float] = field(default_factory=list)  # mean MALA acceptance per stage
    step_size: float = float("nan")
    n_evaluations: int = 0
    stage_ess: list[float] = field(default_factory=list)
    parents: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # last resampling


KERNELS = ("auto", "diagonal", "factor", "mixed")
MIXED_EVERY = 4  # kernel "mixed": one θ-MALA sweep after every 4th factor-chart sweep


def resolve_kernel(kernel: Any, rank: int) -> str:
    """``kernel`` checked (``InvalidArgumentError`` naming it) and ``"auto"`` resolved for ``rank``."""
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise InvalidArgumentError(f"kernel={kernel!r}; expected one of {', '.join(map(repr, KERNELS))}")
    if kernel == "auto":
        return "mixed" if rank == 1 else "diagonal"
    return kernel


def _next_s(path: ThetaPath, s: float, parts: tuple[np.ndarray, np.ndarray, np.ndarray], target_ess: float) -> tuple[float, np.ndarray]:
    """Bisection for the next path parameter (incremental weights' ESS = ``target_ess``)."""
    base, rest, E = parts
    lam0, beta0 = path.schedule(s)
    cur = ThetaPath.combine(lam0, beta0, base, rest, E)
    alive = np.isfinite(cur)

    def logw(s2: float) -> np.ndarray:
        lam, beta = path.schedule(s2)
        nxt = ThetaPath.combine(lam, beta, base, rest, E)
        out = np.full(cur.shape, -np.inf)
        out[alive] = nxt[alive] - cur[alive]
        return np.where(np.isnan(out), -np.inf, out)

    s_end = path.s_end if s < 1.0 or path.s_end > 1.0 else 1.0
    stop = min(1.0, s_end) if s < 1.0 else s_end
    w = logw(stop)
    if kish_ess(w) >= target_ess:
        return stop, w
    lo, hi = s, stop
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if kish_ess(logw(mid)) >= target_ess:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    nxt = max(lo, s + 1e-12)
    return nxt, logw(nxt)


def run_tempered_smc(
    path: ThetaPath,
    n_particles: int,
    rng: np.random.Generator,
    *,
    n_mcmc: int = 10,
    final_mcmc: int = 0,
    target_ess: float = 0.5,
    max_stages: int = 500,
    kernel: str = "diagonal",
) -> SMCRun:
    """Run adaptive tempered SMC along ``path`` to its end; see the module docstring.

    ``kernel`` (default ``"diagonal"`` here; :func:`sample_gibbs` defaults to ``"auto"``): see
    :func:`sample_gibbs`. ``"factor"`` and ``"mixed"`` move the particles in the factor chart
    ``φ = (A, z, w)`` (:func:`factor_from_theta`; of ``Xᵀ`` when :func:`factor_orientation` says so) by
    :func:`mmala_sweep` with metric ``G(φ) = β JᵀJ + D^{-1}`` (:func:`factor_metric`, ``D`` the particle
    variances of ``φ`` at the start of the stage, ``β`` the stage's).
    """
    if not 0 < target_ess < 1:
        raise InvalidArgumentError(f"target_ess={target_ess!r}; expected a fraction in (0, 1)")
    kernel = resolve_kernel(kernel, path.target_a.rank)
    m_, n_ = path.target_a.shape
    mask = path.target_a.task.mask
    perm = np.arange(path.target_a.ndim)
    m_o, n_o, mask_o = m_, n_, mask
    r_ = path.target_a.rank
    transposed = kernel in ("factor", "mixed") and factor_orientation(mask)
    if transposed:  # the chart of Xᵀ: θ_o = (u, B, A)
        perm = np.concatenate([np.arange(r_), r_ + m_ * r_ + np.arange(n_ * r_), r_ + np.arange(m_ * r_)])
        m_o, n_o, mask_o = n_, m_, mask.T
    inv = np.argsort(perm)
    P = n_particles
    theta = path.sample_base(P, rng)
    s = 0.0
    logZ = 0.0
    h = 0.5
    h_d = 0.5  # step of the θ-MALA sweeps of kernel "mixed"
    run = SMCRun(theta, 0.0, 0)
    n_eval = 2 * P
    for stage in range(max_stages):
        parts = path.parts(theta, grad=False)
        s_new, logw = _next_s(path, s, parts, target_ess * P)
        top = np.max(logw)
        if not np.isfinite(top):
            raise InvalidArgumentError(
                "tempered SMC lost every particle (all importance weights are 0): the starting law does not "
                "reach the target's support; check the confinement/window"
            )
        logZ += float(top + np.log(np.mean(np.exp(logw - top))))
        run.stage_ess.append(kish_ess(logw))
        # systematic resampling on particles sorted by piece (stable: ancestor order kept inside a piece):
        # a piece's count then changes by at most one per stage instead of by multinomial noise
        order = np.argsort(path.piece_key(theta), kind="stable")
        theta, logw = theta[order], logw[order]
        idx = systematic_resample(logw, rng)
        theta = theta[idx]
        run.parents = order[idx]
        s = s_new
        lam, beta = path.schedule(s)
        fn = lambda th, lam=lam, beta=beta: path.logp_grad(th, lam, beta)  # noqa: E731
        steps = n_mcmc + (final_mcmc if s >= path.s_end else 0)
        accs = []
        scale = np.std(theta, axis=0)
        scale = np.where(scale > 0, scale, 1.0)

        def fn_o(th: np.ndarray, fn: Any = fn) -> tuple[np.ndarray, np.ndarray]:  # θ_o = θ[:, perm] (orientation)
            lp_, g_ = fn(th[:, inv])
            return lp_, g_[:, perm]

        if kernel in ("factor", "mixed") and r_ > 1 and lam >= 1.0:
            # rank >= 2, on π_β (λ = 1): the factor chart φ = (A', Z) of X_o = X or Xᵀ (factor_r_from_theta), its
            # fibre variables refreshed on the way in (a Haar frame) and out (order and signs of the SVD)
            theta = theta[:, perm]
            scale = scale[perm]
            phi, PB = factor_r_from_theta(theta, m_o, n_o, r_, rng)
            var = np.var(phi, axis=0)
            prec = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 1.0)

            def ffn(x: np.ndarray, beta: float = beta) -> tuple[np.ndarray, np.ndarray]:
                return factor_r_logp_grad(path.target_a, beta, transposed, x)

            def metric(x: np.ndarray, beta: float = beta, prec: np.ndarray = prec) -> np.ndarray:
                G = beta * factor_r_gauss_newton(x, mask_o, r_)
                G[:, np.arange(prec.size), np.arange(prec.size)] += prec
                return G

            lp, g = ffn(phi)
            n_eval += 2 * P
            cache = metric_cache(metric, phi, g)
            for step in range(steps):
                phi, lp, g, cache, acc, _ = mmala_sweep(ffn, metric, phi, lp, g, cache, h, rng)
                n_eval += 2 * P
                a = float(np.mean(acc))
                accs.append(a)
                h = float(np.clip(h * math.exp(2.0 * (a - 0.57)), 1e-12, 4.0))
                phi, _ = factor_r_z_gibbs(path.target_a, beta, transposed, phi, rng)
                lp, g = ffn(phi)
                cache = metric_cache(metric, phi, g)
                n_eval += 2 * P
                if kernel == "mixed" and step % MIXED_EVERY == MIXED_EVERY - 1:
                    theta = theta_from_factor_r(phi, PB, m_o, n_o, r_, rng)
                    lpt, gt = fn_o(theta)
                    theta, lpt, gt, acc = mala_sweep(fn_o, theta, lpt, gt, h_d, scale, rng)
                    n_eval += 4 * P
                    h_d = float(np.clip(h_d * math.exp(2.0 * (float(np.mean(acc)) - 0.57)), 1e-12, 4.0))
                    phi, PB = factor_r_from_theta(theta, m_o, n_o, r_, rng)
                    lp, g = ffn(phi)
                    cache = metric_cache(metric, phi, g)
            theta = theta_from_factor_r(phi, PB, m_o, n_o, r_, rng)[:, inv]
        elif kernel in ("factor", "mixed") and r_ == 1:
            # oriented coordinates θ_o = (u, A, B) of X or of Xᵀ (factor_orientation), mapped back after the stage
            theta = theta[:, perm]
            scale = scale[perm]
            lpt, gt = fn_o(theta)
            n_eval += 2 * P
            phi = factor_from_theta(theta, m_o, n_o)
            var = np.var(phi, axis=0)
            prec = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 1.0)

            def ffn(x: np.ndarray, fn_o: Any = fn_o) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                return factor_logp_grad(fn_o, x, m_o, n_o)

            def metric(x: np.ndarray, beta: float = beta, prec: np.ndarray = prec) -> np.ndarray:
                return factor_metric(x, mask_o, beta, prec)

            lp, g = factor_pullback(phi, theta, lpt, gt, m_o, n_o)
            cache = metric_cache(metric, phi, g)
            for step in range(steps):
                aux = np.concatenate([lpt[:, None], gt], axis=1)
                phi, lp, g, cache, acc, aux = mmala_sweep(ffn, metric, phi, lp, g, cache, h, rng, aux)
                n_eval += 2 * P
                a = float(np.mean(acc))
                accs.append(a)
                h = float(np.clip(h * math.exp(2.0 * (a - 0.57)), 1e-12, 4.0))
                theta = theta_from_factor(phi, m_o, n_o)
                lpt, gt = aux[:, 0], aux[:, 1:]
                if kernel == "mixed" and step % MIXED_EVERY == MIXED_EVERY - 1:
                    theta, lpt, gt, acc = mala_sweep(fn_o, theta, lpt, gt, h_d, scale, rng)
                    n_eval += 2 * P
                    a = float(np.mean(acc))
                    h_d = float(np.clip(h_d * math.exp(2.0 * (a - 0.57)), 1e-12, 4.0))
                    phi = factor_from_theta(theta, m_o, n_o)
                    lp, g = factor_pullback(phi, theta, lpt, gt, m_o, n_o)
                    cache = metric_cache(metric, phi, g)
            theta = theta[:, inv]
        else:  # θ-MALA ("diagonal"; rank >= 2 "factor"/"mixed" before λ = 1, with the θ sweeps' own step)
            own = kernel != "diagonal"
            hk = h_d if own else h
            lp, g = fn(theta)
            n_eval += 2 * P
            for _ in range(steps):
                theta, lp, g, acc = mala_sweep(fn, theta, lp, g, hk, scale, rng)
                n_eval += 2 * P
                a = float(np.mean(acc))
                accs.append(a)
                hk = float(np.clip(hk * math.exp(2.0 * (a - 0.57)), 1e-12, 4.0))
            h_d, h = (hk, h) if own else (h_d, hk)
        run.schedule.append((lam, beta))
        run.accept.append(float(np.mean(accs)) if accs else float("nan"))
        tick(s / path.s_end if path.s_end > 0 else 1.0)
        if s >= path.s_end:
            break
    else:
        raise InvalidArgumentError(f"tempered SMC did not reach the target within max_stages={max_stages} stages")
    run.theta = theta
    run.log_evidence = logZ
    run.n_stages = len(run.schedule)
    run.step_size = h
    run.n_evaluations = n_eval
    return run


def default_path(target: GibbsTarget, beta_end: float | None = None, *, beta1: float | None = None,
                 confinement: Any = None) -> ThetaPath:
    """The path from ``q₀`` to ``target`` (or to ``beta_end`` with the target's depth, rank and confinement).

    ``β₁ = min(β_end, 1/s²)`` with ``s`` the RMS observed value (at least 1); ``q₀``'s ``u`` is centred at
    the log of a typical singular value (``‖M_Ω‖ √(mn/|Ω|)/r``, inside a Frobenius ball if there is
    one) with standard deviation 1.5.
    """
    from dataclasses import replace

    task = target.task
    conf = target.confinement if confinement is None else confinement
    b_end = target.beta if beta_end is None else float(beta_end)
    obs = task.values[task.mask]
    s2 = max(1.0, float(np.mean(obs**2)))
    b1 = min(b_end, 1.0 / s2) if beta1 is None else min(b_end, beta1)
    ta = GibbsTarget(task, target.depth, target.rank, b1, conf, target.normalized)
    tb = replace(ta, beta=b1 + 1.0 / s2)
    m, n = task.shape
    r = target.rank
    typical = math.sqrt(s2 * m * n) / r
    radius = min((getattr(p, "radius", math.inf) for p in getattr(conf, "parts", (conf,))), default=math.inf)
    if math.isfinite(radius):
        typical = min(typical, 0.5 * radius / math.sqrt(r))
    mu = np.full(r, math.log(typical))
    return ThetaPath(ta, tb, b1, b_end, mu, 1.5)


def sibling_order(parents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of the particles that keeps siblings (same ``parents`` entry) adjacent and shuffles the
    sibling groups: the ArviZ ESS of the output then sees the sibling correlation, not a blocking by piece."""
    parents = np.asarray(parents)
    _, first, counts = np.unique(parents, return_index=True, return_counts=True)
    order = np.argsort(parents, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    perm = rng.permutation(first.size)
    return np.concatenate([order[starts[g]:starts[g] + counts[g]] for g in perm])


def _gibbs_replicate(payload: dict[str, Any]) -> dict[str, Any]:
    """Picklable batch function: one tempered-SMC replicate per seed for a Gibbs target."""
    import time

    target: GibbsTarget = payload["target"]
    rows = []
    k = len(payload["seeds"])
    for j, seed in enumerate(payload["seeds"]):
        t0 = time.perf_counter()
        rng = np.random.default_rng(int(seed))
        path = default_path(target)
        with part(j / k, (j + 1) / k):
            run = run_tempered_smc(path, payload["n"], rng, n_mcmc=payload["n_mcmc"],
                                   final_mcmc=payload["final_mcmc"], target_ess=payload["target_ess"],
                                   kernel=payload["kernel"])
        perm = sibling_order(run.parents, rng)
        theta = run.theta[perm]
        X = target.to_matrix(theta)
        key = path.piece_key(theta)
        labels = np.array(["".join("+" if b else "-" for b in row) for row in (X[:, ~target.task.mask] >= 0)])
        rows.append({
            "draws": X, "log_density": target.log_target_matrix(X),
            "accept_prob": np.full(X.shape[0], run.accept[-1]), "step_size": np.array(run.step_size),
            "n_evaluations": np.array(run.n_evaluations, dtype=np.int64), "elapsed": np.array(time.perf_counter() - t0),
            "log_evidence": np.array(run.log_evidence), "weight_ess": np.array(run.stage_ess[-1]),
            "fractions": {str(k): float(np.mean(labels == k)) for k in np.unique(labels)},
            "failures_divergent": np.array(0), "failures_outside": np.array(0), "n_stages": np.array(run.n_stages),
            "_key": key,
        })
    return {"rows": rows}


def sample_gibbs(
    target: GibbsTarget,
    n_draws: int,
    *,
    n_chains: int = 4,
    rng: Any = None,
    executor: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    n_mcmc: int = 10,
    final_mcmc: int = 20,
    target_ess: float = 0.8,
    kernel: str = "auto",
) -> Any:
    """Tempered SMC for a :class:`GibbsTarget` on any stratum: one replicate of ``n_draws`` particles per chain.

    The path of the module docstring from ``q₀`` to ``π_β``; ``final_mcmc`` extra MALA sweeps at the end.
    ``target_ess`` 0.8 (more, smaller stages than blackjax's usual 0.5): on the 4×4 benchmark task at
    ``β = 10`` it cut the between-replicate spread of component masses from R-hat 1.145 to 1.001.
    The draws of a chain are its particles, siblings adjacent (:func:`sibling_order`). Component masses
    of a Gibbs target at large ``β`` come from the SMC weights only (no exact reweighting as for solution
    sets), so their Monte Carlo error grows with the number of stages after the components separate;
    ``Chains.pieces`` and the R-hat across replicates show it, unless the rejuvenation kernel moves
    particles between the components within a stage.

    ``kernel``: ``"auto"`` (default: ``"mixed"`` for rank 1, ``"diagonal"`` otherwise), ``"diagonal"``
    (MALA in θ with the particle standard deviations as preconditioner), ``"factor"`` (simplified manifold
    MALA in a factor chart with the Gauss–Newton metric ``β JᵀJ + D^{-1}``; rank 1: :func:`factor_from_theta`;
    rank ``r >= 2``: :func:`factor_r_from_theta` on the stages at ``λ = 1``, each sweep followed by the exact
    Gibbs step :func:`factor_r_z_gibbs`) or ``"mixed"`` (``"factor"`` plus one θ-MALA sweep after every
    ``MIXED_EVERY`` factor sweeps). ``InvalidArgumentError`` for any other value. See docs/samplers.md §3.
    """
    from dlnvolume.validation import check_int
    from dlnvolume.parallel import make_batches, run_batches, spawn_seeds

    from .chains import Chains
    from .diagnostics import attach_diagnostics

    n_draws = check_int(n_draws, "n_draws", minimum=2)
    n_chains = check_int(n_chains, "n_chains", minimum=1)
    n_mcmc = check_int(n_mcmc, "n_mcmc", minimum=1)
    final_mcmc = check_int(final_mcmc, "final_mcmc", minimum=0)
    resolve_kernel(kernel, target.rank)
    seeds = spawn_seeds(rng, n_chains)
    bs = check_int(batch_size if batch_size is not None else 1, "batch_size", minimum=1)
    payloads = [{"target": target, "seeds": [int(seeds[i]) for i in idx], "n": n_draws, "n_mcmc": n_mcmc,
                 "final_mcmc": final_mcmc, "target_ess": target_ess,
                 "kernel": kernel} for idx in make_batches(n_chains, bs)]
    results = run_batches(_gibbs_replicate, payloads, executor=executor, workers=workers, progress=progress,
                          desc="smc replicates")
    rows = [row for batch in results for row in batch["rows"]]
    labels = sorted({k for row in rows for k in row["fractions"]})
    cat = {k: np.stack([np.asarray(row[k]) for row in rows]) for k in rows[0] if k not in ("fractions", "_key")}
    chains = Chains(
        draws=cat["draws"], log_density=cat["log_density"], accept_prob=cat["accept_prob"], step_size=cat["step_size"],
        failures={k[len("failures_"):]: cat[k] for k in cat if k.startswith("failures_")}, target=target.describe(),
        method="smc", seeds=np.asarray(seeds, dtype=np.uint64), warmup=0, thin=1, n_evaluations=cat["n_evaluations"],
        elapsed=cat["elapsed"], log_evidence=cat["log_evidence"], weight_ess=cat["weight_ess"],
        pieces={k: np.array([row["fractions"].get(k, 0.0) for row in rows]) for k in labels},
        dimension=target.rank * (sum(target.shape) - target.rank),
    )
    return attach_diagnostics(chains, free=~target.task.mask if not np.all(target.task.mask) else None)
