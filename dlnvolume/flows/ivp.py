"""The end-to-end flow as a right-hand side and Jacobian for :func:`scipy.integrate.solve_ivp`.

For a researcher who wants one small flow with scipy's solvers (dense output, events, LSODA) rather than
:func:`.end_to_end`: ``fun(t, y)`` is the field ``−Ā_X(E'(X))`` of :class:`.field.EndToEndField` on the
flattened matrix (MATH.md §2.1; §2.3 for ``N = ∞``), and ``jac(t, y)`` its forward-difference Jacobian
computed in **one** batched field call of the ``m·n`` perturbed matrices
(:func:`.rosenbrock.fd_jacobian`) instead of the ``m·n`` separate calls a solver makes on its own. On the
6×6 task of issue 11 that made LSODA 1.3–1.8× faster (docs/flows.md §3.5; bench ``flows-stiff``). No
invariant guard and no spectral error control: the solver's own entrywise tolerances apply.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..validation import check_depth
from ._checks import _check_bool, _check_task
from .field import EndToEndField
from .rosenbrock import fd_jacobian

__all__ = ["scipy_ivp"]


def scipy_ivp(task: Any, depth: float, *, normalized: bool = True
              ) -> tuple[Callable[[float, np.ndarray], np.ndarray], Callable[[float, np.ndarray], np.ndarray]]:
    """``(fun, jac)`` of the end-to-end flow of ``task`` at ``depth`` for ``solve_ivp(fun, ..., jac=jac)``.

    ``y`` is ``X.ravel()`` (row-major, length ``m·n``); ``fun(t, y)`` returns ``dX/dt`` flattened, and
    ``jac(t, y)`` the ``(m·n, m·n)`` matrix ``∂f_i/∂y_j``. A non-finite ``y`` (or a field that overflows)
    gives an all-NaN result, so the solver rejects the step instead of integrating a wrong zero field.
    Arguments are validated as in :func:`.end_to_end` (``normalized=False`` needs a finite depth).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.integrate import solve_ivp
    >>> from dlnvolume import tasks
    >>> fun, jac = scipy_ivp(tasks.diagonal_2x2(), 2, normalized=False)
    >>> sol = solve_ivp(fun, (0.0, 3.0), 0.01 * np.eye(2).ravel(), method="LSODA", jac=jac,
    ...                 rtol=1e-10, atol=1e-14)
    >>> round(float(sol.y[0, -1]), 6)   # μ/(1 + (μ/σ0 − 1)e^{−2μt}), MATH.md §8 item 17
    0.802957
    """
    task = _check_task(task)
    normalized = _check_bool(normalized, "normalized")
    N = check_depth(depth, normalized=normalized)
    field = EndToEndField(task, N, normalized)
    m, n = task.shape

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        ev = field(np.asarray(y, dtype=float).reshape(1, m, n))
        return np.full(m * n, np.nan) if ev.bad[0] else ev.F.reshape(m * n)

    def jac(t: float, y: np.ndarray) -> np.ndarray:
        J, bad = fd_jacobian(field, np.asarray(y, dtype=float).reshape(1, m, n))
        return np.full((m * n, m * n), np.nan) if bad[0] else J[0]

    return fun, jac
