"""The result of a sampler run: :class:`Chains` (contracts.md, "samplers")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Chains", "StepInfo"]


@dataclass(frozen=True)
class StepInfo:
    """Per-step diagnostics returned by a kernel ``step(state, rng) -> (state, info)``."""

    accept_prob: float
    log_density: float
    failures: dict[str, int] = field(default_factory=dict)
    n_evaluations: int = 1


@dataclass(frozen=True, eq=False)
class Chains:
    """Draws of one sampler run.

    Attributes
    ----------
    draws : (n_chains, n_draws, m, n) array
        Matrices ``X`` after warm-up and thinning.
    log_density : (n_chains, n_draws) array
        Target log density of each draw in matrix coordinates (Gibbs: ``-βE + log ρ_N^{(r)} + log conf``,
        up to a constant; solution set: log of the g_N-volume density w.r.t. the Euclidean Hausdorff
        measure of ``S ∩ M_r``).
    accept_prob : (n_chains, n_draws) array in [0, 1]
        Metropolis–Hastings acceptance probability (emcee: fraction of walkers moved), averaged over
        the ``thin`` steps that lead to each draw.
    step_size : (n_chains,) array
        Step size used after warm-up (emcee: the stretch scale ``a``).
    failures : dict[str, (n_chains,) int array]
        Counts during the sampling phase: "projection", "reverse_check", "divergent", "outside".
    target : dict
        ``measure``, ``depth``, ``rank``, ``beta``, ``normalized``, ``confinement`` (string), ...
    method : str
    seeds : (n_chains,) uint64 array
        ``np.random.default_rng(seeds[i])`` reproduces chain ``i``.
    warmup, thin : int
    n_evaluations : (n_chains,) int array
        Target (log density) evaluations including warm-up; emcee counts every walker.
    elapsed : (n_chains,) float array
        Wall-clock seconds per chain (warm-up included).
    log_evidence : (n_chains,) float array
        Population methods: log normalizing constant estimated by each replicate (``nan`` otherwise).
    weight_ess : (n_chains,) float array
        Population methods: Kish ESS ``(Σw)²/Σw²`` of the final importance weights of each replicate.
    pieces : dict[str, (n_chains,) array]
        Population methods: weighted fraction of each piece (sign group of the unobserved entries) per
        replicate; :meth:`piece_masses` gives mean and Monte Carlo standard error.
    piece_variances : dict[str, (n_chains,) array]
        Importance-sampling replicates: the delta-method variance of each weighted fraction within its
        replicate (:func:`samplers.solution_set.share_variances`; NaN where unknown).
    dimension : int or None
        Actual dimension of the sampled manifold (solution sets).
    pareto_k, uncovered, consistency_z, missed, n_weights : (n_chains,) arrays
        Importance-sampling replicates (solution-set SMC): the PSIS ``k̂`` of the final weights, the share of
        the walked output draws where the proposal has no mass, the largest |z| of a piece's share among the
        output draws against its weighted share, the SMC stage's share of the pieces the importance sampling
        lost, and the number of finite weights (docs/samplers.md §4.2).
    diagnostics : dict
        :func:`samplers.diagnostics.summarize`: ``rhat``, ``ess_bulk``, ``ess_tail`` (worst over the
        diagnosed statistics), per-statistic values and ``converged``.
    """

    draws: np.ndarray
    log_density: np.ndarray
    accept_prob: np.ndarray
    step_size: np.ndarray
    failures: dict[str, np.ndarray]
    target: dict[str, Any]
    method: str
    seeds: np.ndarray
    warmup: int
    thin: int
    n_evaluations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    elapsed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    log_evidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weight_ess: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pieces: dict[str, np.ndarray] = field(default_factory=dict)
    piece_variances: dict[str, np.ndarray] = field(default_factory=dict)
    dimension: int | None = None
    pareto_k: np.ndarray = field(default_factory=lambda: np.zeros(0))
    uncovered: np.ndarray = field(default_factory=lambda: np.zeros(0))
    consistency_z: np.ndarray = field(default_factory=lambda: np.zeros(0))
    missed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """``R-hat <= 1.01`` and bulk and tail ESS ``>= 400`` on every diagnosed statistic, and the importance
        checks of each replicate pass where there are any (False if not diagnosed)."""
        return bool(self.diagnostics.get("converged", False))

    def piece_masses(self) -> dict[str, tuple[float, float]]:
        """``{piece: (mean fraction, Monte Carlo standard error)}`` over the independent replicates (chains).

        The standard error is the larger of two estimates of the same quantity: the spread of the ``R``
        replicates (``sd/√R``, with ``R − 1`` degrees of freedom only) and, where :attr:`piece_variances` has it,
        the replicates' own delta-method variances (``√(mean v)/√R``). On the 3×3 two-arc set at N = 3 six
        replicates once spread by 0.0062 where 48 replicates spread by 0.018 (the left-arc share, 4.9 "standard
        errors" from quadrature with the spread alone, 1.7 with the true one).

        Examples
        --------
        >>> import numpy as np
        >>> ch = Chains(draws=np.zeros((2, 1, 1, 1)), log_density=np.zeros((2, 1)), accept_prob=np.ones((2, 1)),
        ...             step_size=np.ones(2), failures={}, target={}, method="smc", seeds=np.arange(2), warmup=0,
        ...             thin=1, pieces={"+": np.array([0.50, 0.51])},
        ...             piece_variances={"+": np.array([0.01**2, 0.01**2])})
        >>> mean, se = ch.piece_masses()["+"]
        >>> round(mean, 3), round(se, 4)  # the spread says 0.005, the replicates' variances 0.0071
        (0.505, 0.0071)
        """
        out = {}
        for k, v in self.pieces.items():
            v = np.asarray(v, dtype=np.float64)
            se = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
            var = np.asarray(self.piece_variances.get(k, np.full(v.size, np.nan)), dtype=np.float64)
            if var.size == v.size and np.all(np.isfinite(var)):
                inner = float(np.sqrt(np.mean(var) / v.size))
                se = inner if not math.isfinite(se) else max(se, inner)
            out[k] = (float(np.mean(v)), se)
        return out

    @property
    def n_chains(self) -> int:
        return int(self.draws.shape[0])

    @property
    def n_draws(self) -> int:
        return int(self.draws.shape[1])

    def __repr__(self) -> str:
        return (
            f"Chains(method={self.method!r}, draws={self.draws.shape}, target={self.target}, "
            f"mean accept={float(np.mean(self.accept_prob)) if self.accept_prob.size else float('nan'):.3f})"
        )
