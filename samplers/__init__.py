"""Monte Carlo over targets built from :mod:`dlnvolume` (ARCHITECTURE.md "The measures").

* Confinements: :class:`FrobeniusBall`, :class:`GaussianPrior`, :class:`SingularValueFloor`
  (:meth:`Confinement.combine` or a list).
* :class:`GibbsTarget` ``π_β ∝ exp(-βE) ρ_N^{(r)} conf`` on ``M_r``; :func:`sample` with
  ``method="rmala"`` (Riemannian MALA, full rank) or ``"emcee"`` (ensemble on SVD coordinates).
* :class:`SolutionSetSampler`: the g_N-volume of ``S ∩ M_r`` inside a window (constrained random walk).
* :mod:`samplers.reference`: exact quadrature references (2×2 hyperbola, 1×1 Gibbs targets).
* :func:`ess`: Geyer initial-monotone effective sample size.

Imports :mod:`dlnvolume` only.
"""

from __future__ import annotations

from . import benchmark, diagnostics, reference
from .chains import Chains, StepInfo
from .confinement import (
    CombinedConfinement,
    Confinement,
    FrobeniusBall,
    GaussianPrior,
    NoConfinement,
    SingularValueFloor,
)
from .diagnostics import ess
from .driver import sample
from .solution_set import SolutionSetSampler
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
]
