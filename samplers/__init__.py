"""Monte Carlo over targets built from :mod:`dlnvolume` (ARCHITECTURE.md "The measures").

* Confinements: :class:`FrobeniusBall`, :class:`GaussianPrior`, :class:`SingularValueFloor`
  (:meth:`Confinement.combine` or a list).
* :class:`GibbsTarget` ``π_β ∝ exp(-βE) ρ_N^{(r)} conf`` on ``M_r``; :func:`sample` with
  ``method="rmala"`` (Riemannian MALA, full rank), ``"emcee"`` (ensemble on SVD coordinates), ``"smc"``
  (tempered SMC with batched MALA, any stratum; :mod:`samplers.smc`) or ``"smc_factor"`` (its factor-chart
  kernel at every rank).
* :class:`SolutionSetSampler`: the g_N-volume of ``S ∩ M_r`` inside a window (SMC-placed kernel mixture,
  exact importance weights, constrained random walk; :mod:`samplers.solution_set`).
* :mod:`samplers.registry`: ``{method: MethodSpec}`` (supported measures and strata, how to run);
  :class:`Kernel`: the kernel Protocol of the driver loop.
* :mod:`samplers.reference`: exact quadrature references (2×2 hyperbola, 1×1 Gibbs targets).
* :func:`ess`, :func:`rhat`: ArviZ's estimators through :mod:`samplers.diagnostics` (one wrapper).

Imports :mod:`dlnvolume` only.
"""

from __future__ import annotations

from . import benchmark, diagnostics, reference, registry, smc
from .chains import Chains, StepInfo
from .confinement import (
    CombinedConfinement,
    Confinement,
    FrobeniusBall,
    GaussianPrior,
    NoConfinement,
    SingularValueFloor,
)
from .diagnostics import ConvergenceWarning, ess, rhat
from .kernels import Kernel
from .driver import sample
from .solution_set import ConstrainedWalkKernel, SolutionSetSampler
from .targets import GibbsTarget

__all__ = [
    "Chains",
    "StepInfo",
    "Confinement",
    "CombinedConfinement",
    "NoConfinement",
    "FrobeniusBall",
    "GaussianPrior",
    "SingularValueFloor",
    "GibbsTarget",
    "sample",
    "SolutionSetSampler",
    "reference",
    "diagnostics",
    "benchmark",
    "ess",
    "rhat",
    "ConvergenceWarning",
    "Kernel",
    "ConstrainedWalkKernel",
    "registry",
    "smc",
]
