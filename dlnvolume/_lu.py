"""Compiled LU factorization with partial pivoting for small dense matrices (one place for every kernel that needs
a determinant's sign, a log-determinant or a solve inside a numba loop, where a LAPACK call per small matrix costs
more than the arithmetic): the flows' sign of ``det`` (:func:`dlnvolume.flows._kernels.sign_det`), the
solution-set proposal's ``log |det|`` of tangent-frame blocks and the Newton projection's solves (:mod:`samplers`).

Examples
--------
>>> import numpy as np
>>> A = np.array([[0.0, 2.0], [3.0, 1.0]])
>>> LU, piv = A.copy(), np.empty(2, dtype=np.int64)
>>> sign, logabs, ok = lu_inplace(LU, piv)
>>> float(sign), round(float(np.exp(logabs)), 12), bool(ok)  # det A = -6
(-1.0, 6.0, True)
>>> x = np.array([[2.0], [4.0]])
>>> lu_solve(LU, piv, x)
>>> bool(np.allclose(A @ x, [[2.0], [4.0]]))
True
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["lu_inplace", "lu_solve"]


@njit(cache=True, error_model="numpy")
def lu_inplace(A: np.ndarray, piv: np.ndarray) -> tuple[float, float, bool]:
    """Factor the square ``A`` in place as ``P A = L U`` (unit ``L`` below the diagonal, ``U`` on and above;
    ``piv[k]`` the row swapped with ``k`` at step ``k``). Returns ``(sign det A, log |det A|, ok)``; ``ok`` is
    False (and the sign 0, the log ``-inf``) at an exactly zero pivot column. NaN entries propagate."""
    n = A.shape[0]
    sign = 1.0
    logabs = 0.0
    for k in range(n):
        p = k
        mx = abs(A[k, k])
        for i in range(k + 1, n):
            if abs(A[i, k]) > mx:
                mx = abs(A[i, k])
                p = i
        piv[k] = p
        if mx == 0.0:
            return 0.0, -np.inf, False
        if p != k:
            sign = -sign
            for j in range(n):
                tmp = A[k, j]
                A[k, j] = A[p, j]
                A[p, j] = tmp
        if A[k, k] < 0:
            sign = -sign
        logabs += math.log(mx)
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            f = A[i, k] * inv
            A[i, k] = f
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= f * A[k, j]
    return sign, logabs, True


@njit(cache=True, error_model="numpy")
def lu_solve(LU: np.ndarray, piv: np.ndarray, B: np.ndarray) -> None:
    """Overwrite ``B`` (n×c) with ``A⁻¹B`` from :func:`lu_inplace`'s factors."""
    n, c = B.shape
    for k in range(n):
        p = piv[k]
        if p != k:
            for j in range(c):
                tmp = B[k, j]
                B[k, j] = B[p, j]
                B[p, j] = tmp
    for k in range(n):
        for i in range(k + 1, n):
            f = LU[i, k]
            if f != 0.0:
                for j in range(c):
                    B[i, j] -= f * B[k, j]
    for k in range(n - 1, -1, -1):
        for j in range(c):
            acc = B[k, j]
            for i in range(k + 1, n):
                acc -= LU[k, i] * B[i, j]
            B[k, j] = acc / LU[k, k]
