"""Riemannian MALA on the full-rank set with the DLN operator ``Ā`` as preconditioner (MATH.md §4.4).

Target (density w.r.t. ``dX`` on ``R^{m×n}``, ``r = min(m, n)``)::

    log π(X) = -βE(X) + log ρ̄_N(X) + log conf(X)

Proposal (Euler step of the Riemannian Langevin equation at temperature 1 with diffusion matrix
``Ā = A/N``)::

    Y = X + h·μ(X) + √(2h) Ā_X^{1/2} ξ,     ξ ~ N(0, I_{m×n}),
    μ(X) = -β Ā_X(E'(X)) + Ā_X(∇ log conf(X)) + ((N-1)/N) (XXᵀ)^{-1/N} X

The last term is ``div Ā + Ā ∇ log ρ̄`` (MATH.md §4.4 for ``A``, divided by ``N``; ``= X`` at
``N = ∞``; ``0`` at ``N = 1``, plain MALA). The proposal density is Gaussian with covariance
``2h Ā_X``; ``log det Ā_X = Σ_ij log λ_ij`` in closed form and the quadratic form uses
``Ā_X^{-1}`` in the SVD basis (the operation :meth:`dlnvolume.DLNMetric.solve` performs). One SVD per
proposal serves the target, the drift, the noise and the reverse density. The step ``h`` is adapted
during warm-up by dual averaging (:mod:`samplers.adaptation`) to acceptance 0.57 and fixed afterwards.

Local step factor (``local_step=True``, default). Near the rank-deficient set the Euler step is
unstable for finite ``N >= 2``: along ``σ_min`` the drift ``h((N-1)/N)σ^{1-2/N}`` outgrows the noise
``√(2h)σ^{1-1/N}`` once ``σ ≲ h^{N/2}``, proposals overshoot, and a chain that wandered close to the
(integrable) singularity of ``ρ̄_N`` stays there. The kernel therefore uses the position-dependent
step ``h·c(X)`` with ``c(X) = (σ_min/σ_max)^{2/N} ≤ 1``, i.e. the preconditioner ``h c(X) Ā_X``; the
Metropolis–Hastings ratio uses the exact Gaussian densities with ``h c(X)`` forward and ``h c(Y)``
backward (including the ``-(mn/2) log(h c)`` normalizing terms), so the target is unchanged. With it,
``log σ_min`` performs a random walk with step ``≈ √(2h) σ_max^{-1/N}`` near the singular set instead
of freezing. ``local_step=False`` gives the plain scheme. Even so, rmala does not cross ``det X = 0``
in practice (the proposal covariance vanishes there): it samples the target restricted to the
``sign det`` component of its start (MATH.md §5.1: the flow preserves it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dlnvolume.errors import DegenerateMetricError, InvalidArgumentError
from dlnvolume.spectral import log_multipliers, log_volume_density_from_log_sigma

from .chains import StepInfo
from .targets import GibbsTarget

__all__ = ["RMALAKernel", "RMALAState", "ito_drift_correction"]


def ito_drift_correction(U: np.ndarray, s: np.ndarray, V: np.ndarray, depth: float) -> np.ndarray:
    """``((N-1)/N) (XXᵀ)^{-1/N} X = Q diag(((N-1)/N) σ^{1-2/N}) Rᵀ`` (MATH.md §4.4, normalized metric).

    ``U`` (m, k), ``V`` (n, k) thin singular frames, ``s`` (k,) positive singular values.
    """
    if math.isinf(depth):
        w = s
    else:
        N = depth
        w = ((N - 1.0) / N) * s ** (1.0 - 2.0 / N)
    return (U * w) @ V.T


@dataclass(frozen=True, eq=False)
class RMALAState:
    """Position, its target log density, drift and the spectral data of ``Ā_X`` (cached)."""

    X: np.ndarray
    log_density: float
    drift: np.ndarray
    U: np.ndarray  # (m, m) full left singular frame
    V: np.ndarray  # (n, n)
    log_mult: np.ndarray  # (m, n) log λ_ij in that frame
    step_size: float
    local: float = 1.0  # position-dependent step factor c(X) (1 if local_step=False)

    @property
    def h(self) -> float:
        """Effective step ``h·c(X)`` of proposals from this state."""
        return self.step_size * self.local


@dataclass(frozen=True, eq=False)
class RMALAKernel:
    """Pure kernel ``step(state, rng) -> (state, info)`` of Riemannian MALA for a full-rank :class:`GibbsTarget`."""

    target: GibbsTarget
    initial_step_size: float = 0.05
    local_step: bool = True

    name = "rmala"
    adaptive = True
    target_accept = 0.57
    stats = ("accept_prob", "divergent", "outside")

    def __post_init__(self) -> None:
        t = self.target
        if not isinstance(t, GibbsTarget):
            raise InvalidArgumentError(f"target has type {type(t).__name__}; rmala needs a samplers.GibbsTarget")
        m, n = t.shape
        if t.rank != min(m, n):
            raise InvalidArgumentError(
                f"method='rmala' samples the full-rank set only (rank={min(m, n)} for shape {m}x{n}), got "
                f"rank={t.rank}; use method='emcee' for lower strata"
            )
        if math.isinf(t.depth) and m != n:
            raise DegenerateMetricError(
                f"method='rmala' at depth inf needs a square shape (got {m}x{n}): the mixed multipliers of Ā_inf "
                "vanish, so the preconditioner is singular (MATH.md §2.3); use a finite depth or method='emcee'"
            )

    # ------------------------------------------------------------------ geometry at a point
    def _local(self, s: np.ndarray) -> float:
        """``c(X) = (σ_min/σ_max)^{2/N}`` (1 at ``N = 1``, ``inf`` or with ``local_step=False``)."""
        N = self.target.depth
        if not self.local_step or N == 1 or math.isinf(N) or s[-1] <= 0:
            return 1.0
        return float((s[-1] / s[0]) ** (2.0 / N))

    def _geometry(self, X: np.ndarray) -> tuple[float, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, float]:
        t = self.target
        m, n = t.shape
        k = min(m, n)
        U, s, Vh = np.linalg.svd(X, full_matrices=True)
        V = Vh.T
        with np.errstate(divide="ignore"):
            ls = np.log(s)
        conf = t.confinement
        logp = float(
            -t.beta * t.task.loss(X)
            + log_volume_density_from_log_sigma(ls, (m, n), k, t.depth, t.normalized)
            + conf.log_density_sigma(s)
        )
        lm = log_multipliers(ls, (m, n), k, t.depth, t.normalized)
        if not math.isfinite(logp) or np.any(s <= 0):
            return -math.inf, None, U, V, lm, 1.0
        Uk, Vk = U[:, :k], V[:, :k]
        G = -t.beta * t.task.grad(X) + (Uk * conf.grad_sigma(s)) @ Vk.T
        drift = U @ (np.exp(lm) * (U.T @ G @ V)) @ V.T + ito_drift_correction(Uk, s, Vk, t.depth)
        if not np.all(np.isfinite(drift)):
            return -math.inf, None, U, V, lm, 1.0
        return logp, drift, U, V, lm, self._local(s)

    def init(self, X0: np.ndarray, rng: Any = None) -> RMALAState:
        X0 = np.asarray(X0, dtype=np.float64)
        logp, drift, U, V, lm, c = self._geometry(X0)
        if drift is None:
            raise InvalidArgumentError(
                f"initial matrix has target log density {logp} (outside the confinement "
                f"{self.target.confinement.describe()} or rank deficient); start inside the support"
            )
        return RMALAState(X0, logp, drift, U, V, lm, float(self.initial_step_size), c)

    @staticmethod
    def with_step_size(state: RMALAState, step_size: float) -> RMALAState:
        return replace(state, step_size=float(step_size))

    @staticmethod
    def matrix(state: RMALAState) -> np.ndarray:
        return state.X

    # ------------------------------------------------------------------ proposal density
    @staticmethod
    def _log_q(to: np.ndarray, frm: RMALAState) -> float:
        """``log N(to; frm.X + h μ, 2h Ā)``, ``h = frm.h``, without the constant ``-(mn/2) log(4π)``."""
        h = frm.h
        D = to - frm.X - h * frm.drift
        H = frm.U.T @ D @ frm.V
        quad = float(np.sum(np.exp(-frm.log_mult) * H * H))
        return -0.5 * D.size * math.log(h) - 0.5 * float(np.sum(frm.log_mult)) - quad / (4.0 * h)

    def step(self, state: RMALAState, rng: np.random.Generator) -> tuple[RMALAState, StepInfo]:
        h = state.h
        m, n = state.X.shape
        xi = rng.standard_normal((m, n))
        noise = state.U @ (np.exp(0.5 * state.log_mult) * xi) @ state.V.T
        Y = state.X + h * state.drift + math.sqrt(2.0 * h) * noise
        failures = {"divergent": 0, "outside": 0}
        log_u = math.log(rng.uniform())
        if not np.all(np.isfinite(Y)):
            failures["divergent"] = 1
            return state, StepInfo(0.0, state.log_density, failures)
        logp_y, drift_y, U, V, lm, c_y = self._geometry(Y)
        if drift_y is None:
            failures["outside"] = 1
            return state, StepInfo(0.0, state.log_density, failures)
        prop = RMALAState(Y, logp_y, drift_y, U, V, lm, state.step_size, c_y)
        if not (h > 0 and prop.h > 0):  # h·c(X) underflowed (step_size ~ 5e-324): no valid proposal density
            failures["divergent"] = 1
            return state, StepInfo(0.0, state.log_density, failures)
        # the forward quadratic form is exactly ||xi||^2/2
        log_fwd = -0.5 * xi.size * math.log(h) - 0.5 * float(np.sum(state.log_mult)) - 0.5 * float(np.sum(xi * xi))
        log_rev = self._log_q(state.X, prop)
        log_alpha = logp_y + log_rev - state.log_density - log_fwd
        if not math.isfinite(log_alpha):
            failures["divergent"] = 1
            return state, StepInfo(0.0, state.log_density, failures)
        accept = min(1.0, math.exp(min(log_alpha, 0.0)))
        if log_u < log_alpha:
            return prop, StepInfo(accept, logp_y, failures)
        return state, StepInfo(accept, state.log_density, failures)
