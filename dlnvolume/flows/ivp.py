"""The end-to-end flow as a right-hand side and Jacobian for :func:`scipy.integrate.solve_ivp`.

For a researcher who wants one small flow with scipy's solvers (dense output, events, LSODA) rather than
:func:`.end_to_end`: ``fun(t, y)`` is the compiled field ``−Ā_X(E'(X))`` of :mod:`._kernels` on the
flattened matrix (MATH.md §2.1; §2.3 for ``N = ∞``), the same kernel the package's integrator calls, and
``jac(t, y)`` its forward-difference Jacobian computed in **one** compiled call
(:func:`._kernels.fd_jacobian_into`) instead of the ``m·n`` separate Python calls a solver makes on its
own. No invariant guard and no spectral error control: the solver's own entrywise tolerances apply.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..validation import check_depth
from ._checks import _check_bool, _check_task
from . import _kernels

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
    m, n = task.shape
    mask = np.ascontiguousarray(task._observed, dtype=np.float64)
    M = np.ascontiguousarray(task.values, dtype=np.float64)
    Nf = float(N)

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        return _kernels.field(np.asarray(y, dtype=np.float64).reshape(m, n), mask, M, Nf, normalized).reshape(m * n)

    def jac(t: float, y: np.ndarray) -> np.ndarray:
        Y = np.ascontiguousarray(np.asarray(y, dtype=np.float64).reshape(m, n))
        F0 = _kernels.field(Y, mask, M, Nf, normalized)
        J = np.empty((m * n, m * n))
        if not (np.isfinite(F0).all() and _kernels.fd_jacobian_into(Y, F0, mask, M, Nf, normalized, J)):
            J[:] = np.nan
        return J

    return fun, jac
