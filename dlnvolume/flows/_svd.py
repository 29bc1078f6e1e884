"""Full SVD of small dense float64 matrices by one-sided Jacobi, compiled with numba.

``svd_full(Y)`` returns ``U (m, m)``, ``s (k,)``, ``Vh (n, n)`` (``k = min(m, n)``) with the conventions
of ``np.linalg.svd(Y, full_matrices=True)``: ``U`` and ``Vh`` orthogonal, ``s`` descending and
non-negative, ``Y = U[:, :k] @ diag(s) @ Vh[:k]``. It is meant for the per-step SVD of the end-to-end
flow (2×2 up to about 20×20), where numba's ``np.linalg.svd`` (LAPACK ``dgesdd``: workspace query,
allocations and a copy to Fortran order on every call) costs 2.4 µs even for a 2×2 matrix.

Method
------
One-sided Jacobi (Hestenes 1958) on the ``q = k`` columns of ``A = Y`` (of ``A = Yᵀ`` when ``m < n``),
each of length ``p = max(m, n)``; the columns are stored as contiguous rows of a work array, next to
the rows of the accumulated rotation ``J (q, q)``, so that one loop rotates both.

1. ``Y`` is multiplied by the power of two ``2^-e`` that brings ``max|y_ij|`` into ``[1/2, 1)`` (exact,
   no under/overflow in the squared norms; undone exactly on ``s`` at the end).
2. Row-cyclic sweeps over the pairs ``i < j`` with de Rijk's pivoting (de Rijk 1989; LAPACK ``dgesvj``):
   before row ``i`` the column of largest norm among ``i..q-1`` is swapped into place. A pair is rotated
   when ``|a_iᵀa_j| > p·eps·‖a_i‖‖a_j‖`` (``dgesvj``'s default for singular values only; its ``√p·eps``
   for vectors costs an extra sweep now and then here, and the orthogonality below is reached without
   it). The rotation is the symmetric Schur rotation of ``[[‖a_i‖², g], [g, ‖a_j‖²]]`` (Rutishauser
   1966; Golub & Van Loan, *Matrix Computations*, §8.5, ``symSchur2``), the smaller angle, so the larger
   column (the pivot, for equal norms) grows; squared norms are updated (``d_i − t·g``, ``d_j + t·g``)
   and recomputed after a loss of more than 3 decimal digits and at the start of every sweep. Stop after
   a sweep without rotations (at most 30 sweeps, as ``dgesvj``). Random matrices take 2 (2×2), 4 (3×3),
   6 (6×6) and 7–8 (20×20) sweeps, the last one without rotations.
3. ``σ_j = ‖a_j‖`` and ``u_j = a_j/σ_j``, sorted descending; ``V = J``.
4. The missing columns of the larger orthogonal factor (``U`` for ``m > n``, ``Vh`` for ``m < n``, and
   the vectors of zero singular values) are the complement from a Householder LQ factorization of the
   computed orthonormal vectors (columns ``r..p-1`` of ``H_1⋯H_r``).

A column whose squared norm falls below ``2^-500`` (after the scaling of step 1, i.e. a column of norm
below ``≈5.5e-76·max|y_ij|``) is not rotated: its norm is reported as its singular value and its
singular vector comes from the completion, which changes ``Y`` by less than ``2·σ_j``, far below
``eps·σ_1``. An exactly zero matrix gives ``s = 0``, ``U = I``, ``Vh = I``.

An exactly diagonal input, and more generally any matrix with at most one non-zero in every row and
every column (a scaled signed permutation), has exactly orthogonal columns of the form ``±c·e_i``: no
rotation is applied, every ``u_j`` is ``±e_i`` exactly (``y/|y| = ±1``), the completion of such vectors
is exact, and ``U``, ``Vh`` are exact signed permutation matrices (entries exactly 0 or ±1), so a
diagonal flow stays exactly diagonal.

There is no fallback to LAPACK for larger matrices: Jacobi is at par with ``np.linalg.svd`` at 24×24
(table below) and still correct beyond, and calling ``np.linalg.svd`` from this module would more than
double its compilation time (about 11 s of CPU time, for a branch the flows never take).

Accuracy
--------
Backward stable (Demmel & Veselić 1992): the computed factors are the exact SVD of ``Y + δY`` with
``‖δY‖ = O(p·eps)·‖Y‖``, and ``U``, ``V`` are orthogonal to ``O(p·eps)``; hence
``|σ̂_i − σ_i| = O(p·eps)·σ_1``, as for ``dgesdd``. Jacobi gives more: for ``Y = B·D`` with ``D``
diagonal and ``B`` well conditioned the singular values have small *relative* errors, which
bidiagonalization does not guarantee (Demmel & Veselić 1992). Measured against ``np.linalg.svd`` on
200 random Gaussian matrices per shape from 1×1 to 20×20: singular values agree to ``≤ 2.6e-15·σ_1``, the
reconstruction to ``≤ 1.5e-15·‖Y‖₂``, ``UᵀU − I`` to ``≤ 4.5e-15`` and ``Vh Vhᵀ − I`` to ``≤ 5.1e-15``
(max-norm). For ``Y = Q diag(1, 1e-6, 1e-12) Rᵀ`` (3×3, ``Q``, ``R`` random orthogonal, ``Y`` stored in
float64), against a 60-digit mpmath SVD of the stored matrix, the relative error of ``σ_min`` is
6e-6 median, 2e-5 max over 20 matrices (LAPACK: 1.2e-5, 6e-5), i.e. at most ``0.1·eps·σ_1`` absolute:
``σ_min`` of a generic matrix is only determined to about ``eps·σ_1`` by its float64 entries. For
column-graded ``B·diag(1, 1e-5, 1e-10, 1e-15)`` all four singular values come out with relative errors
``≤ 1.3e-15`` (LAPACK: ``1.3e-14``).

Non-finite input (NaN or ±inf anywhere) returns NaN in every output (``svd_full_into`` returns False)
after one scan of ``Y``; nothing iterates on it. Results are bit-for-bit deterministic: no threads, no
randomness, and the only relaxed floating point is the reassociation of the dot products (no FMA
contraction, whose use differed between a fresh compilation and numba's cached object code), so a
process that loads the cache gets the same bits as the one that compiled it. ``svdvals(Y)`` returns the
same bits as ``svd_full(Y)[1]``.

Speed
-----
µs per call from inside an njit loop (Python dispatch excluded), ``OMP_NUM_THREADS=1``, 20 random
Gaussian matrices per shape, minimum over 25 repeats; 2-core AMD EPYC VM shared with other work, so
the table gives the minimum over 3–4 runs and the ratio the median of the per-run ratios (the load
moved single numbers by up to 2×, the ratios by about ±0.1):

=======  ===================  ============  ===================  ===========  =====================
shape    ``np.linalg.svd``    ``svd_full``  ``svd_full_into``    ``svdvals``  svd_full / np.linalg
=======  ===================  ============  ===================  ===========  =====================
2×2      2.4                  0.34          0.22                 0.21         0.12
3×3      3.6                  0.79          0.64                 0.60         0.19
6×6      8.6                  3.6           3.5                  3.7          0.41
8×8      13.3                 6.5           6.3                  7.4          0.47
12×12    26.3                 16.9          16.1                 18.7         0.59
20×20    74                   73            71                   72           0.84
24×24    100                  97            96                   85           0.90
4×3      3.9                  1.05          0.90                 0.77         0.25
1×5      2.2                  0.37          0.24                 0.11         0.15
9×8      14.1                 7.8           7.7                  7.8          0.53
20×5     10.8                 7.1           6.9                  2.9          0.66
=======  ===================  ============  ===================  ===========  =====================

The cost is that of 4–8 sweeps of ``q(q−1)/2`` dependent rotations; the column norms decide the
rotation angles, so a matrix with a few large and many tiny singular values is no cheaper. LAPACK
deflates such spectra: for ``Q diag(logspace(0, −15, 20)) Rᵀ`` (20×20) ``np.linalg.svd`` takes 40 µs
against 58 µs here (12×12: 17 against 14 µs), and for a rank-1 20×20 matrix the two are even. A QR
with column pivoting before the sweeps (``dgejsv``, Drmač & Veselić 2008) halves the rotations on
graded 20×20 inputs but its cost made random matrices 5–15 % slower at every size, so it is not used.

Compilation: the functions compile lazily, on the first call for each array layout of ``Y``: about
8.5 s of CPU time for ``svd_full`` (with ``svd_full_into``) and 0.9 s more for ``svdvals``, written to
numba's cache (``__pycache__`` next to this file, or ``NUMBA_CACHE_DIR``); a later process loads each in
about 0.02 s (plus numba's one-time initialization, 0.3–0.8 s, paid by the first numba function a
process loads, whichever it is).

References
----------
M. R. Hestenes, Inversion of matrices by biorthogonalization and related results, J. SIAM 6 (1958) 51–90.
H. Rutishauser, The Jacobi method for real symmetric matrices, Numer. Math. 9 (1966) 1–10.
P. P. M. de Rijk, A one-sided Jacobi algorithm for computing the singular value decomposition on a
vector computer, SIAM J. Sci. Stat. Comput. 10 (1989) 359–371.
J. Demmel, K. Veselić, Jacobi's method is more accurate than QR, SIAM J. Matrix Anal. Appl. 13 (1992)
1204–1245.
Z. Drmač, K. Veselić, New fast and accurate Jacobi SVD algorithm I, II, SIAM J. Matrix Anal. Appl. 29
(2008) 1322–1342, 1343–1362.
LAPACK ``dgesvj`` (Drmač): row-cyclic one-sided Jacobi with de Rijk's pivoting, tolerance
``CTOL·eps`` with ``CTOL = √M`` (vectors) or ``M`` (values only), at most 30 sweeps.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["svd_full", "svd_full_into", "svd_full_warm", "svdvals"]

_EPS = 2.0**-52
_TINY = 2.0**-500  # squared column norm (scaled) below which a column is negligible
_UP = 2.0**300
_DOWN = 2.0**-300
_MAX_SWEEPS = 30
_BIG = 1.7976931348623157e308


@njit(cache=True, error_model="numpy")
def _mul_pow2(x: float, e: int) -> float:
    """``x·2^e`` exactly unless the result under/overflows (``2^e`` itself may not be representable)."""
    if -1000 <= e <= 1000:
        return x * math.ldexp(1.0, e)
    h = e // 2
    return (x * math.ldexp(1.0, h)) * math.ldexp(1.0, e - h)


@njit(cache=True, error_model="numpy")
def _swap_rows(A: np.ndarray, i: int, j: int, ncol: int) -> None:
    for r in range(ncol):
        t = A[i, r]
        A[i, r] = A[j, r]
        A[j, r] = t


@njit(cache=True, error_model="numpy")
def _rotate_rows(A: np.ndarray, i: int, j: int, c: float, sn: float, ncol: int) -> None:
    for r in range(ncol):
        x = A[i, r]
        y = A[j, r]
        A[i, r] = c * x - sn * y
        A[j, r] = sn * x + c * y


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _dot_rows(A: np.ndarray, i: int, j: int, ncol: int) -> float:
    acc = 0.0
    for r in range(ncol):
        acc += A[i, r] * A[j, r]
    return acc


@njit(cache=True, error_model="numpy")
def _jacobi(W: np.ndarray, d: np.ndarray, q: int, p: int, ncol: int) -> int:
    """Orthogonalize the rows ``W[:q, :p]`` in place (rotating ``W[:q, :ncol]``); ``d[:q]`` receives the
    squared row norms. Returns the number of sweeps (the last one without rotations)."""
    tol2 = (p * _EPS) ** 2
    for sweep in range(_MAX_SWEEPS):
        for i in range(q):
            d[i] = _dot_rows(W, i, i, p)
        rotated = False
        for i in range(q - 1):
            piv = i
            best = d[i]
            for j in range(i + 1, q):
                if d[j] > best:
                    best = d[j]
                    piv = j
            if piv != i:
                _swap_rows(W, i, piv, ncol)
                d[piv] = d[i]
                d[i] = best
            for j in range(i + 1, q):
                di = d[i]
                dj = d[j]
                if dj < _TINY or di < _TINY:
                    continue
                g = _dot_rows(W, i, j, p)
                if not g * g > tol2 * di * dj:
                    continue
                rotated = True
                # the smaller angle, sign(t) = sign(ζ), ζ = (d_j − d_i)/(2g); for d_i = d_j the one that
                # makes column i (the pivot) grow
                sg = math.copysign(1.0, g)
                sgn = -sg if di >= dj else sg
                zeta = (dj - di) / (2.0 * g)
                az = abs(zeta)
                if az > 2.0**27:  # 1 + ζ² rounds to ζ²: t = 1/(2ζ), c = 1
                    t = 0.5 / zeta
                    c = 1.0
                    sn = t
                else:
                    # t = sgn/u, u = |ζ| + √(1+ζ²); c = 1/√(1+t²) = u·|s|, |s| = 1/√(2u√(1+ζ²))
                    rr = math.sqrt(1.0 + zeta * zeta)
                    u = az + rr
                    sa = 1.0 / math.sqrt(2.0 * rr * u)
                    c = u * sa
                    sn = sgn * sa
                    t = sn / c
                _rotate_rows(W, i, j, c, sn, ncol)
                di2 = di - t * g
                dj2 = dj + t * g
                if di2 < 1e-3 * di:
                    di2 = _dot_rows(W, i, i, p)
                if dj2 < 1e-3 * dj:
                    dj2 = _dot_rows(W, j, j, p)
                d[i] = di2
                d[j] = dj2
        if not rotated:
            return sweep + 1
    for i in range(q):
        d[i] = _dot_rows(W, i, i, p)
    return _MAX_SWEEPS


@njit(cache=True, error_model="numpy")
def _norms_sorted(W: np.ndarray, s: np.ndarray, q: int, p: int, ncol: int) -> None:
    """Squared norms ``s[:q]`` to norms, negated for negligible rows (their norm recomputed with a
    scaling); rows of ``W[:q, :ncol]`` and ``s`` sorted by descending ``|s|``."""
    for k in range(q):
        if s[k] >= _TINY:
            s[k] = math.sqrt(s[k])
        else:
            acc = 0.0
            for r in range(p):
                x = W[k, r] * _UP
                acc += x * x
            s[k] = -math.sqrt(acc) * _DOWN
    for i in range(q - 1):
        piv = i
        best = abs(s[i])
        for j in range(i + 1, q):
            if abs(s[j]) > best:
                best = abs(s[j])
                piv = j
        if piv != i:
            _swap_rows(W, i, piv, ncol)
            t = s[i]
            s[i] = s[piv]
            s[piv] = t


@njit(cache=True, error_model="numpy")
def _complete(B: np.ndarray, s: np.ndarray, q: int, p: int, H: np.ndarray) -> None:
    """Fill the rows ``k`` of ``B (p, p)`` with ``k >= q`` or ``s[k] <= 0`` with an orthonormal basis of
    the complement of the other (orthonormal) rows: Householder LQ of those rows in ``H[:r, :p]``
    (``τ`` in ``H[:r, p]``), then columns ``r..p-1`` of ``H_1⋯H_r``."""
    r = 0
    for k in range(q):
        if s[k] > 0.0:
            r += 1
    if r == p:
        return
    i = 0
    for k in range(q):
        if s[k] > 0.0:
            for c in range(p):
                H[i, c] = B[k, c]
            i += 1
    for j in range(r):
        alpha = H[j, j]
        xn2 = 0.0
        for c in range(j + 1, p):
            xn2 += H[j, c] * H[j, c]
        if xn2 == 0.0:
            H[j, p] = 0.0
            continue
        beta = -math.copysign(math.sqrt(alpha * alpha + xn2), alpha)
        tau = (beta - alpha) / beta
        H[j, p] = tau
        sc = 1.0 / (alpha - beta)
        for c in range(j + 1, p):
            H[j, c] *= sc
        for i2 in range(j + 1, r):
            w = H[i2, j]
            for c in range(j + 1, p):
                w += H[i2, c] * H[j, c]
            w *= tau
            H[i2, j] -= w
            for c in range(j + 1, p):
                H[i2, c] -= w * H[j, c]
    col = r
    for k in range(p):
        if k < q and s[k] > 0.0:
            continue
        for c in range(p):
            B[k, c] = 0.0
        B[k, col] = 1.0
        for j in range(r - 1, -1, -1):
            tau = H[j, p]
            if tau == 0.0:
                continue
            w = B[k, j]
            for c in range(j + 1, p):
                w += H[j, c] * B[k, c]
            w *= tau
            B[k, j] -= w
            for c in range(j + 1, p):
                B[k, c] -= w * H[j, c]
        col += 1


@njit(cache=True, error_model="numpy")
def _scan(Y: np.ndarray) -> tuple[bool, int]:
    """(all entries finite, ``e`` with ``max|y_ij|·2^-e`` in ``[1/2, 1)``; 0 for a zero matrix)."""
    m, n = Y.shape
    amax = 0.0
    for i in range(m):
        for j in range(n):
            a = abs(Y[i, j])
            if not a <= _BIG:
                return False, 0
            if a > amax:
                amax = a
    if amax == 0.0:
        return True, 0
    return True, math.frexp(amax)[1]


@njit(cache=True, error_model="numpy")
def _load(Y: np.ndarray, W: np.ndarray, e: int, transpose: bool) -> None:
    """``W[:q, :p] = 2^-e·Yᵀ`` (``transpose``) or ``2^-e·Y``."""
    m, n = Y.shape
    if -1022 <= -e <= 1023:
        f = math.ldexp(1.0, -e)
        if transpose:
            for j in range(n):
                for r in range(m):
                    W[j, r] = Y[r, j] * f
        else:
            for i in range(m):
                for r in range(n):
                    W[i, r] = Y[i, r] * f
    elif transpose:
        for j in range(n):
            for r in range(m):
                W[j, r] = _mul_pow2(Y[r, j], -e)
    else:
        for i in range(m):
            for r in range(n):
                W[i, r] = _mul_pow2(Y[i, r], -e)


@njit(cache=True, error_model="numpy")
def svd_full_into(Y: np.ndarray, U: np.ndarray, s: np.ndarray, Vh: np.ndarray, work: np.ndarray) -> bool:
    """Full SVD ``Y = U[:, :k] @ diag(s) @ Vh[:k]`` written into preallocated arrays.

    Parameters
    ----------
    Y : ndarray, shape (m, n)
        Real matrix, any layout; not modified and not overlapping the outputs.
    U : ndarray, shape (m, m)
        Output: orthogonal, columns the left singular vectors.
    s : ndarray, shape (k,), ``k = min(m, n)``
        Output: singular values, descending, non-negative.
    Vh : ndarray, shape (n, n)
        Output: orthogonal, rows the right singular vectors.
    work : ndarray, shape (k, m + n)
        Workspace (float64); its content on return is unspecified.

    Returns
    -------
    bool
        False when ``Y`` has a NaN or infinite entry: then ``U``, ``s`` and ``Vh`` are all NaN.

    Raises
    ------
    ValueError
        On output or workspace shapes that do not match ``Y``.

    Notes
    -----
    Allocates nothing. Method, accuracy and timings: the module docstring.
    """
    m, n = Y.shape
    k = min(m, n)
    if (U.shape[0] != m or U.shape[1] != m or Vh.shape[0] != n or Vh.shape[1] != n or s.shape[0] != k
            or work.shape[0] < k or work.shape[1] < m + n):
        raise ValueError("svd_full_into: U must be (m, m), s (min(m, n),), Vh (n, n), work (min(m, n), m + n)")
    return _svd_core(Y, U, s, Vh, work, U, Vh, False)


@njit(cache=True, error_model="numpy")
def _svd_core(Y: np.ndarray, U: np.ndarray, s: np.ndarray, Vh: np.ndarray, work: np.ndarray, U0: np.ndarray,
              Vh0: np.ndarray, warm: bool) -> bool:
    """:func:`svd_full_into`; with ``warm`` the rotation starts from ``R0 = Vh0`` (``m >= n``) or
    ``R0 = U0ᵀ`` (``m < n``) instead of ``I``: the rows ``R0·Yᵀ`` (``R0·Y``) are orthogonalized (outputs
    must not overlap ``U0``, ``Vh0``)."""
    m, n = Y.shape
    k = min(m, n)
    ok, e = _scan(Y)
    if not ok:
        U[:, :] = np.nan
        s[:] = np.nan
        Vh[:, :] = np.nan
        return False
    tall = m >= n
    p = m if tall else n
    q = k
    _load(Y, work, e, tall)
    if warm:
        # rows i of R0·(2^-e·Yᵀ) (tall) or R0·(2^-e·Y): rows of R0 are the rows of Vh0 or the columns of U0
        tmp = np.empty(p)
        rows = np.empty((q, p))
        for i in range(q):
            for r in range(p):
                rows[i, r] = work[i, r]
        for i in range(q):
            tmp[:] = 0.0
            for j in range(q):
                rij = Vh0[i, j] if tall else U0[j, i]
                if rij != 0.0:
                    for r in range(p):
                        tmp[r] += rij * rows[j, r]
            for r in range(p):
                work[i, r] = tmp[r]
            for j in range(q):
                work[i, p + j] = Vh0[i, j] if tall else U0[j, i]
    else:
        for i in range(q):
            for j in range(q):
                work[i, p + j] = 0.0
            work[i, p + i] = 1.0
    _jacobi(work, s, q, p, p + q)
    _norms_sorted(work, s, q, p, p + q)
    B = U if tall else Vh  # rows: the singular vectors of length p (Uᵀ when tall)
    for i in range(q):
        si = s[i]
        if si > 0.0:
            for r in range(p):
                B[i, r] = work[i, r] / si
    if tall:
        for i in range(q):
            for j in range(q):
                Vh[i, j] = work[i, p + j]
    else:
        for i in range(q):
            for j in range(q):
                U[j, i] = work[i, p + j]
    _complete(B, s, q, p, work)
    if tall:
        for i in range(p):
            for j in range(i + 1, p):
                t = U[i, j]
                U[i, j] = U[j, i]
                U[j, i] = t
    for i in range(k):
        s[i] = _mul_pow2(abs(s[i]), e)
    return True


@njit(cache=True, error_model="numpy")
def svd_full_warm(Y: np.ndarray, U0: np.ndarray, Vh0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`svd_full` started from the singular vectors ``U0 (m, m)``, ``Vh0 (n, n)`` of a nearby
    matrix: the one-sided Jacobi sweeps run on ``Y·Vh0ᵀ`` (``U0ᵀ·Y`` when ``m < n``), whose columns are
    already nearly orthogonal, so they stop after 2–3 sweeps instead of 7–8 for a 20×20 matrix. Same
    outputs, accuracy (backward stable: the starting rotation is orthogonal) and conventions."""
    m, n = Y.shape
    k = min(m, n)
    U = np.empty((m, m))
    s = np.empty(k)
    Vh = np.empty((n, n))
    work = np.empty((k, m + n))
    _svd_core(Y, U, s, Vh, work, U0, Vh0, True)
    return U, s, Vh


@njit(cache=True, error_model="numpy")
def svd_full(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full SVD with the conventions of ``np.linalg.svd(Y, full_matrices=True)``.

    Parameters
    ----------
    Y : ndarray, shape (m, n)
        Real matrix, any layout; not modified.

    Returns
    -------
    U : ndarray, shape (m, m)
        Orthogonal; columns the left singular vectors.
    s : ndarray, shape (min(m, n),)
        Singular values, descending, non-negative.
    Vh : ndarray, shape (n, n)
        Orthogonal; rows the right singular vectors. ``Y = U[:, :k] @ diag(s) @ Vh[:k]``.

    Notes
    -----
    NaN in all three outputs for non-finite ``Y`` (``np.linalg.svd`` raises instead). See
    :func:`svd_full_into` to reuse the outputs and the workspace, and the module docstring for the
    method, accuracy and timings.
    """
    m, n = Y.shape
    k = min(m, n)
    U = np.empty((m, m))
    s = np.empty(k)
    Vh = np.empty((n, n))
    work = np.empty((k, m + n))
    svd_full_into(Y, U, s, Vh, work)
    return U, s, Vh


@njit(cache=True, error_model="numpy")
def svdvals(Y: np.ndarray) -> np.ndarray:
    """Singular values of ``Y (m, n)``, descending: bit-identical to ``svd_full(Y)[1]``.

    The same Jacobi iteration without accumulating the rotations or forming the vectors (on the Jacobi
    path). NaN for non-finite ``Y``.
    """
    m, n = Y.shape
    k = min(m, n)
    s = np.empty(k)
    ok, e = _scan(Y)
    if not ok:
        s[:] = np.nan
        return s
    tall = m >= n
    p = m if tall else n
    work = np.empty((k, p))
    _load(Y, work, e, tall)
    _jacobi(work, s, k, p, p)
    _norms_sorted(work, s, k, p, p)
    for i in range(k):
        s[i] = _mul_pow2(abs(s[i]), e)
    return s
