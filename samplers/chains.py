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
