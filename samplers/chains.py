"""The result of a sampler run: :class:`Chains` (contracts.md, "samplers")."""

from __future__ import annotations

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
        replicate; :meth:`piece_masses` gives mean and Monte Carlo standard error across replicates.
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
        """``{piece: (mean fraction, Monte Carlo standard error)}`` across independent replicates (chains)."""
        out = {}
        for k, v in self.pieces.items():
            v = np.asarray(v, dtype=np.float64)
            se = float(np.std(v, ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
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
