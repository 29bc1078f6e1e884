"""Gradient flows of the deep linear network on a matrix completion task (MATH.md §1, §2, §5).

Two ways to train, one result type:

* :func:`end_to_end` integrates the Riemannian gradient flow of the end-to-end matrix,
  ``dX/dt = −Ā_{N,X}(E'(X))`` (``normalized=True``, CMV time ``τ``) or ``dX/dt = −A_{N,X}(E'(X))``
  (``normalized=False``, the time ``t`` of the factor gradient flow), for finite ``N`` and
  ``N = math.inf`` (normalized only), MATH.md §1.3, §2.1, §2.3. Since ``Ā = A/N``, the normalized
  flow at time ``τ`` equals the unnormalized one at ``t = τ/N``.
* :func:`factor_descent` runs plain gradient descent on the factors ``W_N ⋯ W_1`` (MATH.md §1.1),
  batched over runs; with learning rate ``lr`` and ``k`` steps it approximates the factor gradient
  flow at ``t = lr·k`` (the **unnormalized** end-to-end flow for balanced factors, MATH.md §1.3).
* :func:`endpoints` runs many seeded small-initialization runs of either method, in batches, on any
  :class:`concurrent.futures.Executor`, with checkpoints, and returns :class:`Endpoints`.

Layout (one concept per module; docs/flows.md has the formulas):

==================  =====================================================================
``results``         :class:`Trajectory`, :class:`FlowResult`, :class:`Endpoints`, :data:`STATUSES`
``initialization``  initial laws (:data:`INIT_LAWS`), :func:`gaussian_factors`, :func:`balanced_factors`
``_kernels``        the compiled (numba) field ``−Ā_X(E'(X))`` of one matrix and its finite-difference Jacobian
``compiled``        the compiled integrator: per-run Dormand–Prince / BDF / ROS34PW2, stopping, error
                    control, invariant guard, records (one flow per call)
``loop``            the trajectory recorder and crossing times shared with factor descent
``end_to_end``      front end; ``integrator="auto" | "dopri-bdf-frozen" | "dopri-bdf" | "dopri5" | ...``
``factor``          factor gradient descent
``endpoints``       batches of seeded runs
``ivp``             the flow as ``(fun, jac)`` for :func:`scipy.integrate.solve_ivp` (batched Jacobian)
==================  =====================================================================

Loss convention: ``E = task.loss = ½‖P_Ω(X − M)‖²``. The default ``loss_tol`` is
``1e-6·|Ω|/2``, i.e. ``task.mse ≤ 1e-6`` (the Arora et al. 2019 stopping rule, MATH.md §6.2).
"""

from __future__ import annotations

from .end_to_end import INTEGRATORS, end_to_end
from .endpoints import METHODS, endpoints
from .factor import factor_descent
from .initialization import INIT_LAWS, INITS, balanced_factors, gaussian_factors
from .results import STATUSES, Endpoints, FlowResult, Trajectory
from .ivp import scipy_ivp

__all__ = [
    "Trajectory",
    "FlowResult",
    "Endpoints",
    "end_to_end",
    "factor_descent",
    "endpoints",
    "scipy_ivp",
    "gaussian_factors",
    "balanced_factors",
    "STATUSES",
    "INITS",
    "INIT_LAWS",
    "INTEGRATORS",
    "METHODS",
]
