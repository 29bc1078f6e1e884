"""The compiled end-to-end integrator: one flow per call, the whole step loop in numba (docs/flows.md §3–4).

**Methods, per run** (``method``; ``-1`` switches per run, LSODA's idea, Petzold 1983):

* Dormand–Prince 5(4) (Dormand & Prince 1980, RK5(4)7M, FSAL) where it is stable;
* variable-order BDF (orders 1–5) in the NDF form of Shampine & Reichelt, *The MATLAB ODE Suite*, SIAM
  J. Sci. Comput. 18 (1997) 1–22, as in scipy's ``scipy/integrate/_ivp/bdf.py`` (same coefficients,
  modified divided differences ``D`` and ``change_D``; order and step chosen after ``k + 1`` steps of
  equal size), where the flow is stiff (with the finite-difference Jacobian only while ``σ_min >= COND·σ_1``).
  Each step solves
  ``d − c·f(y_p + d) + ψ = 0`` (``c = h/α_k``) by simplified Newton iterations with a factor of
  ``I − c_LU·J``: in "dopri-bdf-frozen" (the default) ``J = −Ā_Y∘P_Ω``, the Jacobian with the metric
  frozen (exact up to the term ``(DĀ_Y)[·](P_Ω(Y − M))``, which vanishes on the solution set), factored
  through its ``|Ω|×|Ω|`` reduction (:func:`_frozen_factor`); in "dopri-bdf" the forward-difference
  Jacobian of the compiled field (:func:`._kernels.fd_jacobian_into`, ``m·n`` field calls) and a dense
  LU. ``J`` is recomputed only when Newton fails with a stale ``J`` (scipy's rule); the factor is reused
  while ``|c/c_LU − 1| <= 0.3`` with the correction scaled by ``2/(1 + c/c_LU)`` (CVODE's ``dgmax`` and
  ``γ``-ratio rules); one correction suffices when the last measured rate ``ρ``
  gives ``ρ·‖Δ‖ < tol·(1 − ρ)`` (CVODE's test), otherwise scipy's rate test, at most 4 iterations,
  tolerance ``max(10·eps/rtol, min(0.03, √rtol))``;
* ROS34PW2 (Rang & Angermann 2005), a Rosenbrock-W method of order 3(2) that keeps its order with any
  ``J``: in "dopri-bdf" where the flow is stiff and ill-conditioned (a finite-difference Jacobian cannot
  linearize the field there: it is not Lipschitz in a small singular value at finite depth), and in the
  "rosenbrock" and "dopri-ros" variants; its Jacobian is reused for ROS_JAC_AGE steps. The frozen-metric
  Jacobian has no such trouble (its Newton iteration converges below COND), and there BDF needs 12–20× fewer
  steps than ROS34PW2 (docs/flows.md §3.1).

A run turns stiff at its STRIKES-th accepted explicit step with ``h·ρ >= STIFF`` (``ρ = λ_11``,
:func:`._kernels.rho`), and returns to Dormand–Prince after a stiff step with ``h·ρ <= NONSTIFF``.

**Error control**: ``‖err‖_F <= rtol·max(‖y_0‖_F, ‖y_1‖_F) + atol`` and, with ``spectral``, every
component of ``Uᵀ·err·V`` in the SVD basis of ``y_1`` below ``rtol·max(σ, min(SV_FLOOR·σ_1,
σ·(σ_1/σ)^(2/N))) + atol + 64·eps·σ_1``, ``σ = max(σ_i, σ_j)`` (each singular value and rotation relative to its own
size, below the floor to the accuracy at which it moves the multipliers by ``rtol``), the diagonal at most
``SIGMA_STEP·σ_i + atol + 64·eps·σ_1`` (a small singular value cannot jump through 0). Newton increments
are measured in the same norm (without the cap) at the step's start. After 30 consecutive rejections the
Frobenius test alone decides.

**Loop** (the rules the numpy loop had, compiled): stop when ``loss <= loss_tol`` ("converged"),
``t >= t_max`` ("max_time"), after ``max_steps`` accepted steps ("max_steps"), or when after repeated
rejections the step can no longer change the state (``h·‖f‖ <= eps·‖y‖``): "nonfinite" if the last
attempt was not finite, else "stalled". With ``sign_guard`` (square, ``N >= 2``) a step that flips
``sign det`` while ``σ_min > 256·eps·σ_1`` before and after is rejected (MATH.md §1.5 item 6). Time is
summed with Kahan compensation. The trajectory buffer (``K`` slots, stride doubling) and the crossing
times are those of :class:`.loop.Recorder` and :func:`.loop.update_crossings`.

A batch is a loop of independent single-run integrations, so each run's numbers do not depend on which
runs share its batch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._svd import svd_full
from ._kernels import fd_jacobian_into, field_full, field_full_warm, field_into, multipliers, rho, sign_det

__all__ = ["integrate", "STATUS_CODES", "NSTAT"]

_EPS = float(np.finfo(float).eps)
_RES = 256.0 * _EPS
SV_FLOOR = 1e-4
#: largest relative change of a singular value far below SV_FLOOR·σ_1 in one step (:func:`_spectral_tol`)
SIGMA_STEP = 0.1
MAX_ORDER = 5
NEWTON_MAXITER = 4
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
DGMAX = 0.3

KAPPA = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])
GAMMA = np.concatenate((np.zeros(1), np.cumsum(1.0 / np.arange(1, MAX_ORDER + 1))))
ALPHA = (1.0 - KAPPA) * GAMMA
ERROR_CONST = KAPPA * GAMMA + 1.0 / np.arange(1, MAX_ORDER + 2)

#: Dormand–Prince 5(4) (Dormand & Prince 1980, RK5(4)7M): stages and the error weights b − b̂
DP_A = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1 / 5, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3 / 40, 9 / 40, 0.0, 0.0, 0.0, 0.0],
    [44 / 45, -56 / 15, 32 / 9, 0.0, 0.0, 0.0],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0.0, 0.0],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0.0],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
])
DP_E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])

#: ROS34PW2 (Rang & Angermann, BIT 45 (2005) 761–787; PETSc's TSROSWRA34PW2) in the transformed variables
#: ``u_i = h Σ_{j<=i} Γ_ij k_j`` of Hairer & Wanner II, IV.7 (7.4'): ``(I − hγJ) u_i = hγ f(y_0 + Σ α_ij u_j)
#: + γ Σ c_ij u_j``, ``y_1 = y_0 + Σ m_i u_i``, error ``Σ e_i u_i``; ``α = AΓ⁻¹``, ``c = diag(1/γ) − Γ⁻¹``,
#: ``m = bᵀΓ⁻¹``, ``e = (b − b̂)ᵀΓ⁻¹``. A W-method: order 3 with any ``J``.
ROS_GAMMA = 4.3586652150845900e-01
_ROS_A = np.array([[0.0, 0.0, 0.0, 0.0], [8.7173304301691801e-01, 0.0, 0.0, 0.0],
                   [8.4457060015369423e-01, -1.1299064236484185e-01, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
_ROS_G = np.array([[ROS_GAMMA, 0.0, 0.0, 0.0], [-8.7173304301691801e-01, ROS_GAMMA, 0.0, 0.0],
                   [-9.0338057013044082e-01, 5.4180672388095326e-02, ROS_GAMMA, 0.0],
                   [2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01, ROS_GAMMA]])
_ROS_B = np.array([2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351020e+00, 4.3586652150845900e-01])
_ROS_BH = np.array([3.7810903145819369e-01, -9.6042292212423178e-02, 5.0000000000000000e-01, 2.1793326075422950e-01])
_ROS_GI = np.linalg.inv(_ROS_G)
ROS_ALPHA = np.where(np.abs(_ROS_A @ _ROS_GI) < 1e-13, 0.0, np.tril(_ROS_A @ _ROS_GI, -1))
ROS_C = np.where(np.abs(np.diag(np.full(4, 1.0 / ROS_GAMMA)) - _ROS_GI) < 1e-13, 0.0,
                 np.tril(np.diag(np.full(4, 1.0 / ROS_GAMMA)) - _ROS_GI, -1))
ROS_M = _ROS_B @ _ROS_GI
ROS_E = (_ROS_B - _ROS_BH) @ _ROS_GI

#: methods of a run, and the switching thresholds (module docstring): Dormand–Prince is stable for ``h·ρ`` up to
#: about 3.3 on the negative real axis; a run turns stiff at its STRIKES-th accepted explicit step with
#: ``h·ρ >= STIFF`` (RESET steps in a row below clear the strikes: Hairer & Wanner's DOPRI5 rule), returns
#: to the explicit method after an accepted stiff step with ``h·ρ <= NONSTIFF`` (from BDF after at least
#: MIN_STIFF BDF steps), and uses BDF while ``σ_min >= COND·σ_1``, ROS34PW2 below (back above COND_BACK)
EXPLICIT, BDF, ROS = 0, 1, 2
#: method codes of the frozen-metric W-matrix (ROS34PW2 with ``J = −Ā_Y∘P_Ω`` and the reduced
#: ``|Ω|×|Ω|`` solve, :func:`_frozen_factor`): throughout, and switched per run with Dormand–Prince
ROS_FROZEN, SWITCH_FROZEN = 3, -2
#: per-run switching between Dormand–Prince, BDF and ROS34PW2, both stiff methods with the frozen-metric
#: Jacobian: BDF's simplified Newton iteration with ``I + c·Ā_Y∘P_Ω`` as its Newton matrix (the default)
SWITCH_FROZEN_BDF = -3
#: method names of :func:`run` and their codes (-1, -2: per-run switching)
METHODS = {"dopri-bdf": -1, "dopri5": EXPLICIT, "bdf": BDF, "rosenbrock": ROS, "dopri-ros": SWITCH_FROZEN,
           "rosenbrock-frozen": ROS_FROZEN, "dopri-bdf-frozen": SWITCH_FROZEN_BDF}
STIFF = 3.2
NONSTIFF = 1.5
STRIKES = 16
RESET = 6
MIN_STIFF = 30
COND = 1e-10
COND_BACK = 1e-9
#: ROS34PW2 reuses its finite-difference Jacobian for up to this many accepted steps (a W-method keeps its
#: order with any J), refreshed after a rejection
ROS_JAC_AGE = 10
#: stage SVDs start from the singular vectors of the step's start from this ``min(m, n)`` on (20×20: 4–5
#: one-sided Jacobi sweeps instead of 5–8; below 6×6 the starting product costs what it saves)
WARM_MIN = 6

#: status codes of :func:`integrate` (index into :data:`.results.STATUSES`)
STATUS_CODES = {"converged": 0, "max_time": 1, "max_steps": 2, "nonfinite": 3, "stalled": 4}
#: counters returned in ``istats``: steps, rejected, status, n_logged, field calls, Jacobians, LUs, Newton
#: failures (steps rejected because Newton did not converge), steps rejected by the error test, accepted
#: BDF steps, accepted ROS34PW2 steps
NSTAT = 11


@njit(cache=True, error_model="numpy")
def _fro(Z: np.ndarray) -> float:
    """Frobenius norm, scaled by ``max|z|`` when the plain sum of squares would over/underflow."""
    s = 0.0
    for v in Z.ravel():
        s += v * v
    if 1e-290 < s < 1e290:
        return math.sqrt(s)
    mx = 0.0
    for v in Z.ravel():
        mx = max(mx, abs(v))
    if mx == 0.0 or not math.isfinite(mx):
        return mx
    s = 0.0
    for v in Z.ravel():
        w = v / mx
        s += w * w
    return mx * math.sqrt(s)


@njit(cache=True, error_model="numpy")
def _spectral_tol(s: np.ndarray, m: int, n: int, rtol: float, atol: float, sigma_rel: bool, expo: float,
                  tol: np.ndarray) -> None:
    """``tol_ij = rtol·max(σ, min(SV_FLOOR·σ_1, σ·(σ_1/σ)^expo)) + atol + 64·eps·σ_1`` with
    ``σ = max(σ_i, σ_j)`` and ``expo = 2/N`` (0 at N = ∞): a singular value far below the floor is still
    held to the relative accuracy ``rtol·(σ_1/σ)^(2/N)`` at which it changes the multipliers of ``A_X`` by
    ``rtol`` (they depend on it through ``(σ_j/σ_i)^(2/N)``, docs/flows.md §4). With ``sigma_rel`` the
    diagonal (the singular values themselves) at most ``SIGMA_STEP·σ_i + atol + 64·eps·σ_1``, so that a
    singular value cannot change by more than a tenth of itself in one step (nor jump through 0)."""
    k = s.shape[0]
    s1 = s[0] if k > 0 else 0.0
    floor = SV_FLOOR * s1
    add = atol + 64.0 * _EPS * s1
    # per singular value (k powers, not m·n): rtol·max(σ_i, its floor); σ_i = 0 beyond k
    base = np.zeros(max(m, n))
    for i in range(k):
        si = s[i]
        fl = floor
        if si < floor:
            fl = min(si * (s1 / si) ** expo, floor) if si > 0.0 else 0.0
        base[i] = rtol * max(si, fl)
    for i in range(m):
        si = s[i] if i < k else 0.0
        for j in range(n):
            sj = s[j] if j < k else 0.0
            t = base[i] if si >= sj else base[j]
            if sigma_rel and i == j:
                t = min(t, SIGMA_STEP * si)
            tol[i, j] = t + add


@njit(cache=True, error_model="numpy")
def _componentwise(E: np.ndarray, U: np.ndarray, Vh: np.ndarray, tol: np.ndarray) -> float:
    """``max_ij |(Uᵀ E V)_ij| / tol_ij`` (module docstring)."""
    H = (U.T @ E) @ Vh.T
    r = 0.0
    m, n = E.shape
    for i in range(m):
        for j in range(n):
            v = abs(H[i, j]) / max(tol[i, j], 1e-300)
            if not (v <= r):  # NaN propagates
                r = v
    return r


@njit(cache=True, error_model="numpy")
def _compute_R(order: int, factor: float) -> np.ndarray:
    M = np.zeros((order + 1, order + 1))
    for j in range(order + 1):
        M[0, j] = 1.0
    for i in range(1, order + 1):
        for j in range(1, order + 1):
            M[i, j] = (i - 1 - factor * j) / i
    for i in range(1, order + 1):  # cumulative product down the columns
        for j in range(order + 1):
            M[i, j] *= M[i - 1, j]
    return M


@njit(cache=True, error_model="numpy")
def _change_D(D: np.ndarray, order: int, factor: float) -> None:
    """scipy's ``change_D``: rescale the differences from step ``h`` to ``factor·h`` (in place)."""
    R = _compute_R(order, factor)
    U = _compute_R(order, 1.0)
    RU = R @ U
    D[: order + 1] = RU.T @ D[: order + 1]


@njit(cache=True, error_model="numpy")
def _lu(A: np.ndarray, piv: np.ndarray) -> bool:
    """In-place LU with partial pivoting (Doolittle); False if singular."""
    n = A.shape[0]
    for k in range(n):
        p = k
        mx = abs(A[k, k])
        for i in range(k + 1, n):
            v = abs(A[i, k])
            if v > mx:
                mx = v
                p = i
        piv[k] = p
        if mx == 0.0 or not math.isfinite(mx):
            return False
        if p != k:
            for j in range(n):
                tmp = A[k, j]
                A[k, j] = A[p, j]
                A[p, j] = tmp
        inv = 1.0 / A[k, k]
        for i in range(k + 1, n):
            A[i, k] *= inv
            a = A[i, k]
            if a != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= a * A[k, j]
    return True


@njit(cache=True, error_model="numpy")
def _lu_solve(LU: np.ndarray, piv: np.ndarray, b: np.ndarray) -> None:
    n = LU.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= LU[i, j] * b[j]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, n):
            s -= LU[i, j] * b[j]
        b[i] = s / LU[i, i]


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _dot3(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """``Σ x_i·y_i·z_i`` (reassociated, vectorized; the same bits in every process that runs this code)."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * y[i] * z[i]
    return acc


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _dot(x: np.ndarray, y: np.ndarray, n: int) -> float:
    acc = 0.0
    for i in range(n):
        acc += x[i] * y[i]
    return acc


@njit(cache=True, error_model="numpy")
def _frozen_jacobian(U: np.ndarray, s: np.ndarray, Vh: np.ndarray, N: float, normalized: bool, oi: np.ndarray,
                     oj: np.ndarray, lam: np.ndarray, Uj: np.ndarray, Vhj: np.ndarray, UT: np.ndarray, V: np.ndarray,
                     B: np.ndarray) -> bool:
    """The frozen-metric Jacobian ``J = −Ā_Y∘P_Ω`` at ``Y = U diag(s) Vh`` (docs/flows.md §3.2), stored
    as what its W-matrix solves need: ``lam`` (the multipliers ``λ``), ``Uj, Vhj`` (copies of ``U, Vh``),
    ``UT = Uᵀ``, ``V = Vhᵀ`` (contiguous, for the matrix products) and the reduced
    ``B = P_Ω Ā_Y P_Ωᵀ`` (``|Ω|×|Ω|``, ``Ω = {(a_e, b_e)} = {(oi[e], oj[e])}``)::

        B[e, f] = Σ_ij λ_ij U[a_e, i] U[a_f, i] V[b_e, j] V[b_f, j] = Σ_i U[a_e, i] U[a_f, i] K[b_e, b_f, i],
        K[b, d, i] = Σ_j λ_ij V[b, j] V[d, j]

    (``m·n³/2 + |Ω|²·m/2`` multiply-adds, no BLAS call, so the bits do not depend on a thread count).
    False when it is not finite."""
    m = U.shape[0]
    n = Vh.shape[0]
    multipliers(s, m, n, N, normalized, lam)
    Uj[:, :] = U
    Vhj[:, :] = Vh
    UT[:, :] = U.T
    V[:, :] = Vh.T
    K = np.empty((n, n, m))
    for b in range(n):
        for d in range(b + 1):
            vbd = V[b] * V[d]
            for i in range(m):
                K[b, d, i] = _dot(lam[i], vbd, n)
            K[d, b] = K[b, d]
    p = oi.shape[0]
    for e in range(p):
        ue = Uj[oi[e]]
        for f in range(e + 1):
            v = _dot3(ue, Uj[oi[f]], K[oj[e], oj[f]])
            B[e, f] = v
            B[f, e] = v
    for v in B.ravel():
        if not math.isfinite(v):
            return False
    return True


@njit(cache=True, error_model="numpy")
def _frozen_factor(B: np.ndarray, hg: float, Lc: np.ndarray, Lt: np.ndarray) -> bool:
    """``Lc``: the Cholesky factor of ``I + hg·B`` (positive definite for ``hg >= 0``; row-oriented
    Cholesky–Crout, dot products of contiguous rows), ``Lt = Lcᵀ`` (for the back substitution)."""
    p = B.shape[0]
    if not (math.isfinite(hg) and hg >= 0.0):
        return False
    for i in range(p):
        for j in range(i + 1):
            a = hg * B[i, j] + (1.0 if i == j else 0.0) - _dot(Lc[i], Lc[j], j)
            if i == j:
                if not a > 0.0:
                    return False
                Lc[i, i] = math.sqrt(a)
            else:
                Lc[i, j] = a / Lc[j, j]
        for j in range(i + 1, p):
            Lc[i, j] = 0.0
    Lt[:, :] = Lc.T
    return True


@njit(cache=True, error_model="numpy")
def _frozen_solve(Lc: np.ndarray, Lt: np.ndarray, hg: float, oi: np.ndarray, oj: np.ndarray, lam: np.ndarray, Uj: np.ndarray,
                  Vhj: np.ndarray, UT: np.ndarray, V: np.ndarray, r: np.ndarray) -> None:
    """Solve ``(I + hg·Ā_Y∘P_Ω) u = r`` in place (``r (m·n,)``, row-major): ``z = P_Ω u`` solves the
    reduced ``(I + hg·B) z = P_Ω r`` (Cholesky ``Lc``), then ``u = r − hg·Ā_Y(P_Ωᵀ z)``."""
    m = UT.shape[0]
    n = V.shape[0]
    p = oi.shape[0]
    z = np.empty(p)
    for e in range(p):
        z[e] = r[oi[e] * n + oj[e]]
    for i in range(p):  # Lc y = z
        z[i] = (z[i] - _dot(Lc[i], z, i)) / Lc[i, i]
    for i in range(p - 1, -1, -1):  # Lcᵀ x = y
        z[i] = (z[i] - _dot(Lt[i, i + 1:], z[i + 1:], p - i - 1)) / Lt[i, i]
    Z = np.zeros((m, n))
    for e in range(p):
        Z[oi[e], oj[e]] = z[e]
    H = (UT @ Z) @ V
    H *= lam
    A = (Uj @ H) @ Vhj
    a = A.ravel()
    for i in range(m * n):
        r[i] -= hg * a[i]


@njit(cache=True, error_model="numpy")
def _record(step: int, t: float, loss: float, s: np.ndarray, log_t: np.ndarray, log_loss: np.ndarray,
            log_sigma: np.ndarray, state: np.ndarray) -> None:
    """:meth:`.loop.Recorder.add` for one run; ``state = [n, stride]``."""
    K = log_t.shape[0]
    C = K - 1
    n = state[0]
    stride = state[1]
    due = step % stride == 0
    if due and n >= C:
        i = 0
        for j in range(0, C, 2):
            log_t[i] = log_t[j]
            log_loss[i] = log_loss[j]
            log_sigma[i] = log_sigma[j]
            i += 1
        n = i
        stride *= 2
        due = step % stride == 0
    if due:
        log_t[n] = t
        log_loss[n] = loss
        log_sigma[n] = s
        n += 1
    state[0] = n
    state[1] = stride


@njit(cache=True, error_model="numpy")
def _record_final(t: float, loss: float, s: np.ndarray, log_t: np.ndarray, log_loss: np.ndarray,
                  log_sigma: np.ndarray, state: np.ndarray) -> None:
    n = state[0]
    K = log_t.shape[0]
    if n == 0 or log_t[max(n - 1, 0)] != t:
        slot = min(n, K - 1)
        log_t[slot] = t
        log_loss[slot] = loss
        log_sigma[slot] = s
        state[0] = slot + 1


@njit(cache=True, error_model="numpy")
def _loss(Y: np.ndarray, mask: np.ndarray, M: np.ndarray) -> float:
    R = mask * (Y - M)
    return 0.5 * np.sum(R * R)


@njit(cache=True, error_model="numpy")
def _stage(y: np.ndarray, coef: np.ndarray, st: int, K: np.ndarray, out: np.ndarray) -> None:
    """``out = y + Σ_{j<st} coef[st, j]·K[j]`` (a Runge–Kutta or Rosenbrock stage argument; zero
    coefficients skipped)."""
    for i in range(y.shape[0]):
        acc = y[i]
        for j in range(st):
            a = coef[st, j]
            if a != 0.0:
                acc += a * K[j, i]
        out[i] = acc


@njit(cache=True, error_model="numpy")
def _crossings(s_prev: np.ndarray, s_new: np.ndarray, t_old: float, t: float, threshold: float,
               crossing: np.ndarray) -> None:
    """:func:`.loop.update_crossings` for one accepted step ``(t_old, s_prev) → (t, s_new)``."""
    for i in range(s_new.shape[0]):
        if s_new[i] > threshold and not math.isfinite(crossing[i]):
            sp = s_prev[i]
            if sp > threshold:
                crossing[i] = t_old
            else:
                fr_ = min(max((threshold - sp) / (s_new[i] - sp), 0.0), 1.0)
                crossing[i] = t_old + fr_ * (t - t_old)


@njit(cache=True, error_model="numpy")
def _finish(Y: np.ndarray, mask: np.ndarray, M: np.ndarray, cnt: np.ndarray, steps: int, status: int, rec: np.ndarray,
            t: float, min_ratio: float, Y_out: np.ndarray, istats: np.ndarray, fstats: np.ndarray) -> None:
    """Write a run's outputs (:func:`integrate`'s ``Y_out``, ``istats``, ``fstats``)."""
    Y_out[:, :] = Y
    cnt[0] = steps
    cnt[2] = status
    cnt[3] = rec[0]
    istats[:] = cnt
    fstats[0] = t
    fstats[1] = min_ratio
    fstats[2] = _loss(Y, mask, M)


@njit(cache=True, error_model="numpy")
def _sign_det_resolved(Y: np.ndarray, s: np.ndarray) -> float:
    """``sign det Y`` where ``σ_min > 256·eps·σ_1``, else 0."""
    if s[s.shape[0] - 1] > _RES * s[0]:
        return sign_det(Y)
    return 0.0


@njit(cache=True, error_model="numpy")
def _controller(ratio: float, q: int, after_reject: bool) -> float:
    """The step-size factor ``clip(0.9·ratio^{−1/(q+1)}, 0.2, 5)`` (Hairer–Nørsett–Wanner I, II.4); no growth
    right after a rejection."""
    fac = 5.0 if ratio <= 0.0 else min(5.0, max(0.2, 0.9 * ratio ** (-1.0 / (q + 1))))
    if after_reject:
        fac = min(fac, 1.0)
    return fac


@njit(cache=True, error_model="numpy")
def _error_ratio(E, nY0, nY1, U1, s1, Vh1, rtol, atol, spectral, expo, tolm):
    """``(ratio, basic)``: the Frobenius test and, with ``spectral``, the componentwise one in the SVD basis of
    the new state (module docstring)."""
    m, n = E.shape
    en = _fro(E)
    basic = 0.0 if en == 0.0 else en / (rtol * max(nY0, nY1) + atol)
    ratio = basic
    if spectral:
        _spectral_tol(s1, m, n, rtol, atol, True, expo, tolm)
        ratio = max(ratio, _componentwise(E, U1, Vh1, tolm))
    if not math.isfinite(ratio):
        return np.inf, np.inf
    return ratio, basic


@njit(cache=True, error_model="numpy")
def integrate(Y0, mask, M, N, normalized, t_max, loss_tol, rtol, atol, max_steps, log_every, threshold,  # noqa: C901
              h0, spectral, sign_guard, method, Y_out, log_t, log_loss, log_sigma, crossing, istats, fstats, min_r):
    """Integrate one flow from ``Y0 (m, n)``; outputs in place (module docstring): ``Y_out``, the
    trajectory buffers ``log_t (K,)``, ``log_loss (K,)``, ``log_sigma (K, k)``, ``crossing (k,)``,
    ``istats`` (:data:`NSTAT` counters), ``fstats = [t, min σ_min/σ_1, loss]`` and ``min_r (k,)``, the
    smallest ``σ_i/σ_1`` of every index over the accepted states. ``h0 <= 0``: the
    initial step is chosen from ``‖Y0‖/‖f(Y0)‖``. ``method``: -1 per-run switching, or one of
    ``EXPLICIT``, ``BDF``, ``ROS`` throughout."""
    m, n = Y0.shape
    k = min(m, n)
    d = m * n
    cnt = np.zeros(NSTAT, dtype=np.int64)  # steps, rejected, status, n_logged, fev, jac, lu, newton fails, err rej
    Y = Y0.copy()
    F = np.empty((m, n))
    ok, U0, s, Vh0 = field_full(Y, mask, M, N, normalized, F)
    cnt[4] += 1
    L = _loss(Y, mask, M)
    rec = np.zeros(2, dtype=np.int64)
    rec[1] = log_every
    _record(0, 0.0, L, s, log_t, log_loss, log_sigma, rec)
    for i in range(k):
        crossing[i] = 0.0 if s[i] > threshold else np.inf
    min_ratio = s[k - 1] / s[0] if s[0] > 0 else 0.0
    for i in range(k):
        min_r[i] = s[i] / s[0] if s[0] > 0 else 0.0
    t = 0.0
    tc = 0.0
    status = -1
    if L <= loss_tol:
        status = 0
    elif not ok:
        status = 3
    elif t_max <= 0:
        status = 1
    elif max_steps <= 0:
        status = 2

    nY = _fro(Y)
    nF = _fro(F)
    if h0 > 0:
        h = h0
    elif nF > 0:
        h = 0.01 * ((nY + atol / max(rtol, 1e-300)) if (rtol * nY + atol) > 0 else 1.0) / nF
    else:
        h = t_max
    if not (math.isfinite(h) and h > 0):
        h = t_max
    h = min(h, t_max)

    # ---- workspaces
    tolm = np.empty((m, n))
    tolm1 = np.empty((m, n))
    Kst = np.zeros((7, d))  # Dormand–Prince stages h·k_j
    Ys = np.empty((m, n))
    Fs = np.empty((m, n))
    F1 = np.empty((m, n))
    E = np.empty((m, n))
    ys = Ys.reshape(d)
    fs = Fs.reshape(d)
    e = E.reshape(d)
    us = np.zeros((4, d))  # ROS34PW2 stages
    D = np.zeros((MAX_ORDER + 3, d))  # BDF differences
    fbdf = method == SWITCH_FROZEN_BDF  # BDF with the frozen-metric Newton matrix where σ_min >= COND·σ_1
    if fbdf:
        method = SWITCH_FROZEN
    # BDF with the frozen-metric Newton matrix runs at any conditioning; with a finite-difference Jacobian it
    # hands states below COND·σ_1 to ROS34PW2 (docs/flows.md §3.1)
    bdf_cond = -1.0 if fbdf else COND
    bdf_back = -1.0 if fbdf else COND_BACK
    frozen = method == ROS_FROZEN or method == SWITCH_FROZEN
    expo = 2.0 / N if math.isfinite(N) and N > 0 else 0.0  # the spectral tolerance's depth exponent
    warm = k >= WARM_MIN
    Uw = np.empty((0, 0))
    Vhw = np.empty((0, 0))
    # the frozen-metric W-matrix: observed entries, multipliers, SVD factors, reduced B and its Cholesky
    po = 0
    for v in mask.ravel():
        if v != 0.0:
            po += 1
    pf = po if frozen else 1
    oi = np.zeros(pf, dtype=np.int64)
    oj = np.zeros(pf, dtype=np.int64)
    if frozen:
        e_ = 0
        for i in range(m):
            for j in range(n):
                if mask[i, j] != 0.0:
                    oi[e_] = i
                    oj[e_] = j
                    e_ += 1
    lamj = np.zeros((m, n))
    Uj = np.zeros((m, m))
    Vhj = np.zeros((n, n))
    UTj = np.zeros((m, m))
    Vj = np.zeros((n, n))
    Bf = np.zeros((pf, pf))
    Lc = np.zeros((pf, pf))
    Lt = np.zeros((pf, pf))
    hg_f = np.nan  # hγ of the factor in Lc
    if method == ROS_FROZEN:
        method = ROS
    dj = 1 if (method == EXPLICIT or frozen) else d  # no dense Jacobian for the explicit method alone
    J = np.zeros((dj, dj))
    LU = np.empty((dj, dj))
    piv = np.zeros(d, dtype=np.int64)
    ynew = np.empty(d)
    dacc = np.empty(d)
    rhs = np.empty(d)
    psi = np.empty(d)
    ypred = np.empty(d)
    fy = np.empty((m, n))
    sy = np.empty(k)
    Fcur = F.copy()  # the field at Y (exact when fvalid; BDF's Newton value otherwise)
    fvalid = True
    prev_s = s.copy()
    U1, s1, Vh1 = U0, s.copy(), Vh0
    ref_sign = _sign_det_resolved(Y, s) if sign_guard else 0.0
    mode = EXPLICIT if method < 0 else method
    strikes = 0
    clear = 0
    n_stiff = 0
    bdf_fresh = True  # BDF must start afresh (order 1, new J) at its next step
    hD = h
    order = 1
    neq = 0
    jfresh = False
    cLU = np.nan
    rate_mem = np.nan
    newton_tol = max(10.0 * _EPS / rtol, min(0.03, math.sqrt(rtol)))
    n_rej = 0
    nonfin = False
    steps = 0
    jok = True
    j_age = 0  # accepted ROS34PW2 steps since its Jacobian
    j_ros = False  # J holds a Jacobian ROS34PW2 may reuse (BDF computes its own)
    while status < 0:
        h = min(h, t_max - t)
        y = Y.reshape(d)
        if not fvalid and mode != BDF:
            ok, U0, s_, Vh0 = field_full(Y, mask, M, N, normalized, Fcur)
            cnt[4] += 1
            fvalid = True
        fcur = Fcur.reshape(d)
        # stages start their SVD from the step's start (k >= WARM_MIN)
        if warm:
            Uw = U0
            Vhw = Vh0
        converged = True
        bad = False
        ratio = np.inf
        basic = np.inf
        n_iter = 1
        rate = rate_mem
        c = 0.0
        nY1 = nY
        q = 4
        if mode == EXPLICIT:
            # ---- Dormand–Prince 5(4), FSAL: stage 7 is the field at the new state
            for i in range(d):
                Kst[0, i] = h * fcur[i]
            for st in range(1, 7):
                _stage(y, DP_A, st, Kst, ys)
                if st < 6:
                    okf = field_full_warm(Ys, mask, M, N, normalized, Fs, Uw, Vhw)[0]
                else:
                    okf, U1, s1, Vh1 = field_full_warm(Ys, mask, M, N, normalized, Fs, Uw, Vhw)
                cnt[4] += 1
                if not okf:
                    bad = True
                    break
                for i in range(d):
                    Kst[st, i] = h * fs[i]
            if not bad:
                ynew[:] = ys
                F1[:, :] = Fs
                for i in range(d):
                    acc = 0.0
                    for j in range(7):
                        acc += DP_E[j] * Kst[j, i]
                    e[i] = acc
                nY1 = _fro(Ys)
                ratio, basic = _error_ratio(E, nY, nY1, U1, s1, Vh1, rtol, atol, spectral, expo, tolm1)
                bad = not math.isfinite(ratio)
        elif mode == ROS:
            # ---- ROS34PW2 with a fresh finite-difference Jacobian at the step's start
            q = 2
            jnew = j_age >= ROS_JAC_AGE or (n_rej > 0 and j_age > 0) or not j_ros
            if jnew:
                if frozen:
                    jok = _frozen_jacobian(U0, prev_s, Vh0, N, normalized, oi, oj, lamj, Uj, Vhj, UTj, Vj, Bf)
                else:
                    jok = fd_jacobian_into(Y, Fcur, mask, M, N, normalized, J)
                    cnt[4] += d
                cnt[5] += 1
                j_age = 0
                j_ros = True
            hg = h * ROS_GAMMA
            if frozen:
                # a W-method keeps its order with J̃ = (h̃/h)·J: the factor of I + h̃γ·B is reused while
                # |h/h̃ − 1| <= DGMAX (CVODE's rule for its Newton matrix)
                if jnew or not (abs(hg / hg_f - 1.0) <= DGMAX):
                    fok = jok and _frozen_factor(Bf, hg, Lc, Lt)
                    hg_f = hg
                    cnt[6] += 1
                else:
                    fok = jok
            else:
                LU[:, :] = -hg * J
                for i in range(d):
                    LU[i, i] += 1.0
                fok = jok and _lu(LU, piv)
                cnt[6] += 1
            if not fok:
                bad = True
            else:
                for st in range(4):
                    if st == 0:
                        fs[:] = fcur
                    else:
                        _stage(y, ROS_ALPHA, st, us, ys)
                        okf = field_full_warm(Ys, mask, M, N, normalized, Fs, Uw, Vhw)[0]
                        cnt[4] += 1
                        if not okf:
                            bad = True
                            break
                    for i in range(d):
                        acc = hg * fs[i]
                        for j in range(st):
                            cc = ROS_C[st, j]
                            if cc != 0.0:
                                acc += ROS_GAMMA * cc * us[j, i]
                        rhs[i] = acc
                    if frozen:
                        _frozen_solve(Lc, Lt, hg_f, oi, oj, lamj, Uj, Vhj, UTj, Vj, rhs)
                    else:
                        _lu_solve(LU, piv, rhs)
                    us[st] = rhs
            if not bad:
                for i in range(d):
                    acc = y[i]
                    ea = 0.0
                    for j in range(4):
                        acc += ROS_M[j] * us[j, i]
                        ea += ROS_E[j] * us[j, i]
                    ynew[i] = acc
                    e[i] = ea
                okf, U1, s1, Vh1 = field_full_warm(ynew.reshape(m, n), mask, M, N, normalized, F1, Uw, Vhw)
                cnt[4] += 1
                if not okf:
                    bad = True
                else:
                    nY1 = _fro(ynew.reshape(m, n))
                    ratio, basic = _error_ratio(E, nY, nY1, U1, s1, Vh1, rtol, atol, spectral, expo, tolm1)
                    bad = not math.isfinite(ratio)
        else:
            # ---- variable-order BDF (NDF), simplified Newton
            if bdf_fresh:
                D[:, :] = 0.0
                D[0] = y
                for i in range(d):
                    D[1, i] = fcur[i] * h
                hD = h
                order = 1
                neq = 0
                if frozen:
                    jok = _frozen_jacobian(U0, prev_s, Vh0, N, normalized, oi, oj, lamj, Uj, Vhj, UTj, Vj, Bf)
                else:
                    jok = fd_jacobian_into(Y, Fcur, mask, M, N, normalized, J)
                    cnt[4] += d
                cnt[5] += 1
                jfresh = True
                cLU = np.nan
                rate_mem = np.nan
                bdf_fresh = False
            if h != hD:
                _change_D(D, order, h / hD)
                hD = h
                neq = 0
            ypred[:] = 0.0
            for i in range(order + 1):
                ypred += D[i]
            psi[:] = 0.0
            for i in range(1, order + 1):
                psi += GAMMA[i] * D[i]
            psi /= ALPHA[order]
            c = h / ALPHA[order]
            if spectral:
                _spectral_tol(prev_s, m, n, rtol, atol, False, expo, tolm)
            itol = 1.0 / max(rtol * nY + atol, 1e-300)
            converged = False
            fbad = False
            for attempt in range(3):  # 0: as is; 1: refactored; 2: refactored with a fresh J
                if attempt == 1 and cLU == c:
                    continue
                if attempt == 2:
                    if jfresh:
                        break
                    if frozen:
                        jok = _frozen_jacobian(U0, prev_s, Vh0, N, normalized, oi, oj, lamj, Uj, Vhj, UTj, Vj, Bf)
                    else:
                        field_into(Y, mask, M, N, normalized, fy, sy)
                        cnt[4] += 1
                        fd_jacobian_into(Y, fy, mask, M, N, normalized, J)
                        cnt[4] += d
                    cnt[5] += 1
                    jfresh = True
                    rate_mem = np.nan
                if attempt > 0 or not (abs(c / cLU - 1.0) <= DGMAX):
                    if frozen:
                        fok = jok and _frozen_factor(Bf, c, Lc, Lt)
                        hg_f = c
                    else:
                        LU[:, :] = -c * J
                        for i in range(d):
                            LU[i, i] += 1.0
                        fok = _lu(LU, piv)
                    cnt[6] += 1
                    if not fok:
                        if attempt == 0 and not frozen:
                            # a singular LU: the identity (explicit corrections; the step size decides)
                            LU[:, :] = 0.0
                            for i in range(d):
                                LU[i, i] = 1.0
                                piv[i] = i
                        elif attempt == 1:
                            continue
                        else:
                            break
                    if attempt == 0 and math.isfinite(cLU) and math.isfinite(rate_mem):
                        rate_mem = rate_mem * max(1.0, c / cLU)
                    cLU = c
                rate = rate_mem
                corr = 2.0 / (1.0 + c / cLU)
                ynew[:] = ypred
                dacc[:] = 0.0
                dn_old = 1.0
                converged = False
                fbad = False
                for it in range(NEWTON_MAXITER):
                    okf = field_full_warm(ynew.reshape(m, n), mask, M, N, normalized, fy, Uw, Vhw)[0]
                    cnt[4] += 1
                    n_iter = it + 1
                    if not okf:
                        fbad = True
                        break
                    fr = fy.reshape(d)
                    for i in range(d):
                        rhs[i] = c * fr[i] - psi[i] - dacc[i]
                    if frozen:
                        _frozen_solve(Lc, Lt, hg_f, oi, oj, lamj, Uj, Vhj, UTj, Vj, rhs)
                    else:
                        _lu_solve(LU, piv, rhs)
                    if corr != 1.0:
                        rhs *= corr
                    if spectral:
                        dn = _componentwise(rhs.reshape(m, n), U0, Vh0, tolm)
                    else:
                        dn = _fro(rhs.reshape(m, n)) * itol
                    if not math.isfinite(dn):
                        fbad = True
                        break
                    if it == 0:
                        ynew += rhs
                        dacc += rhs
                        if dn == 0.0 or (math.isfinite(rate) and rate * dn < newton_tol * (1.0 - rate)):
                            converged = True
                            break
                    else:
                        rate = dn / dn_old
                        tr = newton_tol * (1.0 - rate)
                        if rate ** (NEWTON_MAXITER - it) * dn > tr:
                            break
                        ynew += rhs
                        dacc += rhs
                        if rate * dn < tr:
                            converged = True
                            break
                    dn_old = dn
                if converged or fbad:
                    break
            bad = fbad
            if converged and not bad:
                finite = True
                for v in ynew:
                    if not math.isfinite(v):
                        finite = False
                        break
                if not finite:
                    bad = True
                else:
                    Y1v = ynew.reshape(m, n)
                    U1, s1, Vh1 = svd_full(Y1v)
                    nY1 = _fro(Y1v)
                    for i in range(d):
                        e[i] = ERROR_CONST[order] * dacc[i]
                    ratio, basic = _error_ratio(E, nY, nY1, U1, s1, Vh1, rtol, atol, spectral, expo, tolm1)
                    bad = not math.isfinite(ratio)

        # ---- the loop's part: fallback control, invariant guard, acceptance
        if n_rej >= 30 and spectral:
            ratio = basic
        sd_trial = 0.0
        if sign_guard and not bad and ratio <= 1.0:
            sd_trial = _sign_det_resolved(ynew.reshape(m, n), s1)
            if sd_trial != 0.0 and prev_s[k - 1] > _RES * prev_s[0] and ref_sign != 0.0 and sd_trial != ref_sign:
                ratio = np.inf
        Lnew = np.inf
        accept = (not bad) and converged and ratio <= 1.0
        if accept:
            Lnew = _loss(ynew.reshape(m, n), mask, M)
            if not math.isfinite(Lnew):
                accept = False
                bad = True
        safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + max(n_iter, 2))
        if accept:
            yk = h - tc
            t_new = t + yk
            tc = (t_new - t) - yk
            t_old = t
            t = t_new
            steps += 1
            if mode == BDF:
                cnt[9] += 1
            elif mode == ROS:
                cnt[10] += 1
            if mode == BDF:
                rate_mem = rate
                jfresh = False
                D[order + 2] = dacc - D[order + 1]
                D[order + 1] = dacc
                for i in range(order, -1, -1):
                    D[i] += D[i + 1]
                neq += 1
                h_next = h
                if neq >= order + 1:
                    em = np.inf
                    ep = np.inf
                    if order > 1:
                        for i in range(d):
                            e[i] = ERROR_CONST[order - 1] * D[order, i]
                        em = _error_ratio(E, nY, nY1, U1, s1, Vh1, rtol, atol, spectral, expo, tolm1)[0]
                    if order < MAX_ORDER:
                        for i in range(d):
                            e[i] = ERROR_CONST[order + 1] * D[order + 2, i]
                        ep = _error_ratio(E, nY, nY1, U1, s1, Vh1, rtol, atol, spectral, expo, tolm1)[0]
                    best = -1
                    fbest = -1.0
                    for qq in range(3):
                        ev = em if qq == 0 else (ratio if qq == 1 else ep)
                        fq = np.inf if ev == 0.0 else ev ** (-1.0 / (order + qq))
                        if fq > fbest:
                            fbest = fq
                            best = qq
                    order += best - 1
                    h_next = h * min(MAX_FACTOR, safety * fbest)
                    neq = 0
                for i in range(d):
                    fcur[i] = (psi[i] + dacc[i]) / c
                fvalid = False
                n_stiff += 1
            else:
                h_next = h * _controller(ratio, q, n_rej > 0)
                Fcur[:, :] = F1
                fvalid = True
                j_age += 1
            if sign_guard and sd_trial != 0.0:
                ref_sign = sd_trial
            Y[:, :] = ynew.reshape(m, n)
            U0 = U1
            Vh0 = Vh1
            nY = nY1
            L = Lnew
            _crossings(prev_s, s1, t_old, t, threshold, crossing)
            prev_s[:] = s1
            q_ = s1[k - 1] / s1[0] if s1[0] > 0 else 0.0
            min_ratio = min(min_ratio, q_)
            for i in range(k):
                min_r[i] = min(min_r[i], s1[i] / s1[0] if s1[0] > 0 else 0.0)
            n_rej = 0
            nonfin = False
            if Lnew <= loss_tol:
                status = 0
            elif t >= t_max * (1 - 1e-14):
                status = 1
            elif steps >= max_steps:
                status = 2
            if status >= 0:
                _record_final(t, L, prev_s, log_t, log_loss, log_sigma, rec)
                break
            _record(steps, t, L, prev_s, log_t, log_loss, log_sigma, rec)
            # ---- method switching (per run; the thresholds of the module docstring)
            hr = h * rho(s1, N, normalized)
            cond = s1[k - 1] / s1[0] if s1[0] > 0 else 0.0
            if method >= 0:
                pass
            elif mode == EXPLICIT:
                if hr >= STIFF:
                    strikes += 1
                    clear = 0
                else:
                    clear += 1
                    if clear >= RESET:
                        strikes = 0
                if strikes >= STRIKES:
                    strikes = 0
                    clear = 0
                    n_stiff = 0
                    if cond >= bdf_cond and (fbdf or not frozen):
                        mode = BDF
                        bdf_fresh = True
                    else:
                        mode = ROS
                        j_ros = False
            elif mode == BDF:
                if n_stiff >= MIN_STIFF and hr <= NONSTIFF:
                    mode = EXPLICIT
                elif cond < bdf_cond:
                    mode = ROS
                    j_ros = False
                    h_next = h
            else:
                if hr <= NONSTIFF:
                    mode = EXPLICIT
                elif cond > bdf_back and (fbdf or not frozen):
                    mode = BDF
                    bdf_fresh = True
                    n_stiff = 0
            h = h_next
        else:
            cnt[1] += 1
            n_rej += 1
            nonfin = bad
            if not converged:
                cnt[7] += 1
            elif ratio > 1.0:
                cnt[8] += 1
            if mode == BDF:
                if bad:
                    h_next = 0.25 * h
                elif not converged:
                    h_next = 0.5 * h
                else:
                    h_next = h * max(MIN_FACTOR, safety * ratio ** (-1.0 / (order + 1)))
            else:
                h_next = 0.25 * h if bad else h * _controller(ratio, q, False)
            if n_rej >= 2 and (h_next * _fro(Fcur) <= _EPS * nY or h_next <= 0):
                status = 3 if nonfin else 4
                _record_final(t, L, prev_s, log_t, log_loss, log_sigma, rec)
                break
            h = h_next
    _finish(Y, mask, M, cnt, steps, status, rec, t, min_ratio, Y_out, istats, fstats)


@njit(cache=True, error_model="numpy")
def integrate_batch(Y0, mask, M, N, normalized, t_max, loss_tol, rtol, atol, max_steps, log_every, threshold,
                    h0, spectral, sign_guard, method, Y_out, log_t, log_loss, log_sigma, crossing, istats, fstats, min_r):
    """:func:`integrate` for each run of a stack ``Y0 (B, m, n)`` (outputs with a leading ``B`` axis)."""
    for b in range(Y0.shape[0]):
        integrate(np.ascontiguousarray(Y0[b]), mask, M, N, normalized, t_max, loss_tol, rtol, atol, max_steps,
                  log_every, threshold, h0, spectral, sign_guard, method, Y_out[b], log_t[b], log_loss[b], log_sigma[b],
                  crossing[b], istats[b], fstats[b], min_r[b])


def run(mask: np.ndarray, values: np.ndarray, depth: float, normalized: bool, Y0: np.ndarray, *, t_max: float,
        loss_tol: float, rtol: float, atol: float, max_steps: int, log_every: int, n_log: int, threshold: float,
        h0: float | None, spectral: bool, sign_guard: bool, method: str = "dopri-bdf-frozen"):
    """Integrate every run of ``Y0 (B, m, n)``; returns a :class:`.loop.LoopOutput` and the counters
    ``(B, NSTAT)`` (steps, rejected, status code, records, field evaluations, Jacobians, LUs)."""
    from .loop import LoopOutput
    from .results import STATUSES

    B, m, n = Y0.shape
    k = min(m, n)
    K = int(n_log)
    Y_out = np.empty((B, m, n))
    log_t = np.zeros((B, K))
    log_loss = np.zeros((B, K))
    log_sigma = np.zeros((B, K, k))
    crossing = np.zeros((B, k))
    istats = np.zeros((B, NSTAT), dtype=np.int64)
    fstats = np.zeros((B, 3))
    min_r = np.zeros((B, k))
    exact = np.zeros(B, dtype=bool)  # runs in singular-value coordinates (σ resolved at any ratio)
    Y0 = np.ascontiguousarray(Y0, dtype=np.float64)
    mask = np.ascontiguousarray(mask, dtype=np.float64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    common = (float(depth), bool(normalized), float(t_max), float(loss_tol), float(rtol), float(atol),
              np.int64(min(max_steps, 2**62)), np.int64(min(log_every, 2**62)), float(threshold), float(h0 or 0.0))
    rest = np.ones(B, dtype=bool)
    if method == "svd-2x2":
        from . import svd2

        use = svd2.applicable(Y0, depth)
        svd2.integrate_batch(use, Y0, mask, values, *common, Y_out, log_t, log_loss, log_sigma, crossing, istats,
                             fstats)
        rest = ~use
        exact = use
        method = "dopri-bdf-frozen"
    if rest.any():
        idx = np.flatnonzero(rest)
        arrays = (Y_out, log_t, log_loss, log_sigma, crossing, istats, fstats, min_r)
        outs = arrays if idx.size == B else tuple(a[idx] for a in arrays)
        integrate_batch(np.ascontiguousarray(Y0[idx]), mask, values, *common, bool(spectral),
                        bool(sign_guard), np.int64(METHODS[method]), *outs)
        if idx.size != B:
            for a, o in zip(arrays, outs):
                a[idx] = o
    n_logged = istats[:, 3]
    idx = np.minimum(np.arange(K)[None, :], np.maximum(n_logged - 1, 0)[:, None])
    rows = np.arange(B)[:, None]
    status = np.asarray(STATUSES, dtype=object)[istats[:, 2]].astype(str)
    out = LoopOutput(Y=Y_out, t=fstats[:, 0], loss=fstats[:, 2], n_steps=istats[:, 0].copy(),
                     n_rejected=istats[:, 1].copy(), status=status, log_t=log_t[rows, idx],
                     log_loss=log_loss[rows, idx], log_sigma=log_sigma[rows, idx], n_logged=n_logged.copy(),
                     crossing=crossing, min_sigma_ratio=fstats[:, 1],
                     unresolved=unresolved(min_r, Y_out, depth) & ~exact)
    return out, istats


#: a run is "unresolved" when a singular value went below RESOLVE·σ_1 (docs/flows.md §3.4): a float64 matrix
#: holds σ_i only to eps·σ_1, and the flow depends on it (1) when it later grows by more than GROWTH (the
#: time it takes to grow depends on its value), or (2) through the multipliers of ``A_X``, which depend on
#: ``(σ_i/σ_1)^(2/N)`` (through ``1/log(σ_1/σ_i)`` at N = ∞), when that exceeds INFLUENCE: errors along the
#: solution set, which the flow never corrects, then accumulate. Measured on Cartesian cmv-2x2 flows at N = 20
#: (rtol 1e-6, 40 runs, against the singular-value-coordinate reference): min σ_2/σ_1 from 1e-11 to 4e-11
#: without growth gave endpoint errors up to 1.6e-2 (13 of 30 above 1e-3); the 3 runs above 1e-10,
#: at most 6.7e-5. At N = 3 a σ_i/σ_1 of 1e-11 enters the multipliers at 5e-8: not flagged unless it grows.
RESOLVE = 1e-10
GROWTH = 100.0
INFLUENCE = 1e-3


def unresolved(min_r: np.ndarray, Y: np.ndarray, depth: float) -> np.ndarray:
    """``(B,)``: runs with an index ``i`` whose smallest ``σ_i/σ_1`` along the run was below
    :data:`RESOLVE` and either whose final ``σ_i/σ_1`` is more than :data:`GROWTH` times that, or
    whose ``(σ_i/σ_1)^(2/N)`` (1 at ``N = ∞``) exceeds :data:`INFLUENCE` (never at ``N = 1``, whose flow is
    linear in ``X``)."""
    if depth == 1 or Y.shape[0] == 0:
        return np.zeros(Y.shape[0], dtype=bool)
    s = np.linalg.svd(Y, compute_uv=False)
    expo = 0.0 if math.isinf(depth) else 2.0 / depth
    with np.errstate(invalid="ignore", divide="ignore"):
        final = s / s[:, :1]
        influence = np.power(np.maximum(min_r, 0.0), expo)
    return np.any((min_r < RESOLVE) & ((final > GROWTH * min_r) | (influence > INFLUENCE)), axis=1)


def warm_up() -> None:
    """Compile the integrator (or load it from numba's cache) in this process: called before worker
    processes start, so that they load the cached code instead of each compiling it (the first compile
    takes about a minute of CPU; loading, under a second)."""
    # the first run has coincident singular values: "svd-2x2" hands it to the Cartesian integrator, so one
    # call compiles both
    Y0 = np.array([[[1e-2, 0.0], [0.0, 1e-2]], [[2e-2, 0.0], [0.0, 1e-2]]])
    run(np.eye(2, dtype=bool), np.eye(2), 2.0, True, Y0, t_max=1.0, loss_tol=0.0, rtol=1e-6, atol=0.0, max_steps=2,
        log_every=1, n_log=3, threshold=0.5, h0=None, spectral=True, sign_guard=True, method="svd-2x2")
