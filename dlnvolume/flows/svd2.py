"""The end-to-end flow of a 2×2 task in singular-value coordinates (docs/flows.md §3.3).

Why: a small initialization at large depth passes through ``σ_2/σ_1`` of 1e-11 to 1e-14 (``σ_1`` grows by
orders of magnitude while ``σ̇_2 ∝ σ_2^{2−2/N}`` keeps ``σ_2`` where it was), and a float64 matrix holds
``σ_2`` only to ``eps·σ_1``. The time at which ``σ_2`` later escapes depends on its value, so the endpoint
of a Cartesian integration is wrong by an amount no tolerance removes: on the built-in cmv-2x2 flows at
N = 20, 16 of 40 endpoints were off by more than 1e-3 (up to 1.2e-2) at rtol 1e-6 and at 1e-7 alike,
against an independent reference (LSODA, Radau and DOP853 in these coordinates, which agree to 1e-9).

Coordinates: ``X = R(θ) diag(σ_1, σ_2) (R(φ) D)ᵀ`` with ``R`` the rotation, ``D = diag(1, d)``,
``d = sign det X0`` (kept by the flow, MATH.md §1.5 item 6), state ``y = (log σ_1, log σ_2, θ, φ)``.
With ``U = R(θ)``, ``V = R(φ) D`` and ``g = Uᵀ P_Ω(M − X) V`` the flow ``UᵀẊV = λ ⊙ g`` (MATH.md §2.1;
the multipliers of :func:`._kernels.multipliers`) reads::

    d log σ_i/dt = λ_ii g_ii / σ_i = σ_i^{(N−2)/N} g_ii                     (N = ∞: σ_i g_ii)
    dθ/dt = w (σ_2 g_12 + σ_1 g_21),   dφ/dt = d·w (σ_1 g_12 + σ_2 g_21),   w = λ_12/(σ_1² − σ_2²)
    w = 1/(N (σ_1^{2/N} − σ_2^{2/N}))                                     (N = ∞: 1/(2 log(σ_1/σ_2)))

(times ``N`` without ``normalized``: ``λ`` is ``N·λ̄``). The off-diagonal equations come from
``UᵀẊV = θ̇ JΣ + Σ̇ + φ̇ ΣDJᵀD``, ``J = [[0, −1], [1, 0]]``. The coordinates are singular where
``σ_2 = 0`` or ``σ_1 = σ_2``; runs that start there use the Cartesian integrator (:func:`applicable`).

Integration: Dormand–Prince 5(4) with the error of every coordinate below ``rtol + atol`` (absolute in
``log σ`` is relative in ``σ``; the angles are of order one), the controller and stopping rules of
:mod:`.compiled` (loss, ``t_max``, ``max_steps``, step underflow), its trajectory records and crossings.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .compiled import DP_A, DP_E, NSTAT, _controller, _crossings, _finish, _loss, _record, _record_final, _stage

__all__ = ["applicable", "integrate_batch", "COINCIDENT"]

#: runs whose ``σ_1 − σ_2 <= COINCIDENT·σ_1`` at the start (or ``σ_2 = 0``) are left to the Cartesian path
COINCIDENT = 1e-6


def applicable(Y0: np.ndarray, depth: float) -> np.ndarray:
    """Per run of ``Y0 (B, 2, 2)``: may it run in these coordinates (``N >= 2``, ``σ_2 > 0``, ``σ_1`` and
    ``σ_2`` not coincident)?"""
    if Y0.shape[1:] != (2, 2) or depth < 2:
        return np.zeros(Y0.shape[0], dtype=bool)
    # the closed form of :func:`_state` (LAPACK may return a subnormal σ_2 where it gives exactly 0)
    a, b, c, e = Y0[:, 0, 0], Y0[:, 0, 1], Y0[:, 1, 0], Y0[:, 1, 1]
    d = np.where(a * e - b * c >= 0, 1.0, -1.0)
    h1 = np.hypot(0.5 * (a + e * d), 0.5 * (c - b * d))
    h2 = np.hypot(0.5 * (a - e * d), 0.5 * (c + b * d))
    s1, s2 = h1 + h2, np.abs(h1 - h2)
    return (s2 > 0) & (s1 - s2 > COINCIDENT * s1)


@njit(cache=True, error_model="numpy")
def _to_X(y: np.ndarray, d: float, X: np.ndarray) -> None:
    s1 = math.exp(y[0])
    s2 = math.exp(y[1])
    ct, st = math.cos(y[2]), math.sin(y[2])
    cp, sp = math.cos(y[3]), math.sin(y[3])
    # U = [[ct, −st], [st, ct]], V = [[cp, −d·sp], [sp, d·cp]]; X = U diag(s) Vᵀ
    X[0, 0] = ct * s1 * cp + (-st) * s2 * (-d * sp)
    X[0, 1] = ct * s1 * sp + (-st) * s2 * (d * cp)
    X[1, 0] = st * s1 * cp + ct * s2 * (-d * sp)
    X[1, 1] = st * s1 * sp + ct * s2 * (d * cp)


@njit(cache=True, error_model="numpy")
def _rhs(y: np.ndarray, d: float, mask: np.ndarray, M: np.ndarray, N: float, normalized: bool,
         X: np.ndarray, f: np.ndarray) -> bool:
    """``f = dy/dt`` (module docstring); ``X`` receives the matrix. False when not finite."""
    _to_X(y, d, X)
    l1, l2 = y[0], y[1]
    s1 = math.exp(l1)
    s2 = math.exp(l2)
    ct, st = math.cos(y[2]), math.sin(y[2])
    cp, sp = math.cos(y[3]), math.sin(y[3])
    G00 = mask[0, 0] * (M[0, 0] - X[0, 0])
    G01 = mask[0, 1] * (M[0, 1] - X[0, 1])
    G10 = mask[1, 0] * (M[1, 0] - X[1, 0])
    G11 = mask[1, 1] * (M[1, 1] - X[1, 1])
    # A = Uᵀ G, g = A V with U columns (ct, st), (−st, ct) and V columns (cp, sp), (−d·sp, d·cp)
    a00 = ct * G00 + st * G10
    a01 = ct * G01 + st * G11
    a10 = -st * G00 + ct * G10
    a11 = -st * G01 + ct * G11
    g00 = a00 * cp + a01 * sp
    g01 = d * (-a00 * sp + a01 * cp)
    g10 = a10 * cp + a11 * sp
    g11 = d * (-a10 * sp + a11 * cp)
    scale = 1.0 if normalized or math.isinf(N) else N
    if math.isinf(N):
        e1, e2 = s1, s2
        dl = l1 - l2
        w = 0.5 / dl if dl != 0.0 else math.inf
    else:
        # σ^{(N-2)/N}; σ^0 = 1 also at σ = 0 (l = -inf, where 0·l is NaN)
        e1 = math.exp((N - 2.0) / N * l1) if N != 2.0 else 1.0
        e2 = math.exp((N - 2.0) / N * l2) if N != 2.0 else 1.0
        if l2 == -math.inf:  # rank <= 1: σ_1^{2/N} − 0
            den = N * math.exp(2.0 * l1 / N)
        else:  # σ_1^{2/N} − σ_2^{2/N} = e^{2 l_2/N}·expm1(2(l_1 − l_2)/N), without cancellation
            den = N * math.exp(2.0 * l2 / N) * math.expm1(2.0 * (l1 - l2) / N)
        w = 1.0 / den if den != 0.0 else math.inf
    f[0] = scale * e1 * g00
    f[1] = scale * e2 * g11
    f[2] = scale * w * (s2 * g01 + s1 * g10)
    f[3] = scale * d * w * (s1 * g01 + s2 * g10)
    for i in range(4):
        if not math.isfinite(f[i]):
            return False
    return True


@njit(cache=True, error_model="numpy")
def _state(Y0: np.ndarray, y: np.ndarray) -> float:
    """``y`` from ``Y0`` (its SVD by the closed form of 2×2 matrices); returns ``d = sign det Y0``."""
    a, b, c, e = Y0[0, 0], Y0[0, 1], Y0[1, 0], Y0[1, 1]
    det = a * e - b * c
    d = 1.0 if det >= 0 else -1.0
    # Y0·diag(1, d) = R(θ) diag(σ_1, σ_2) R(φ)ᵀ with det >= 0: Y0 D = [[p, −q], [q, p]] + [[r, s], [s, −r]]
    b2, e2 = b * d, e * d
    p = 0.5 * (a + e2)
    q = 0.5 * (c - b2)
    r = 0.5 * (a - e2)
    s = 0.5 * (c + b2)
    h1 = math.hypot(p, q)
    h2 = math.hypot(r, s)
    s1 = h1 + h2
    s2 = abs(h1 - h2)
    alpha = math.atan2(q, p)  # rotation part: angle θ − φ
    beta = math.atan2(s, r)  # reflection part: angle θ + φ
    y[0] = math.log(s1)
    y[1] = math.log(s2) if s2 > 0 else -math.inf
    # Y0·D = R(θ) Σ R(φ')ᵀ, so Y0 = R(θ) Σ (D R(φ'))ᵀ and D R(φ') = R(d·φ') D: φ = d·φ'
    y[2] = 0.5 * (beta + alpha)
    y[3] = d * 0.5 * (beta - alpha)
    return d


@njit(cache=True, error_model="numpy")
def integrate(Y0, mask, M, N, normalized, t_max, loss_tol, rtol, atol, max_steps, log_every, threshold, h0,
              Y_out, log_t, log_loss, log_sigma, crossing, istats, fstats):
    """One flow from ``Y0 (2, 2)`` (outputs as :func:`.compiled.integrate`)."""
    cnt = np.zeros(NSTAT, dtype=np.int64)
    y = np.empty(4)
    d = _state(Y0, y)
    X = np.empty((2, 2))
    f = np.empty(4)
    ok = _rhs(y, d, mask, M, N, normalized, X, f)
    cnt[4] += 1
    sv = np.empty(2)
    sv[0] = math.exp(max(y[0], y[1]))
    sv[1] = math.exp(min(y[0], y[1]))
    L = _loss(X, mask, M)
    rec = np.zeros(2, dtype=np.int64)
    rec[1] = log_every
    _record(0, 0.0, L, sv, log_t, log_loss, log_sigma, rec)
    for i in range(2):
        crossing[i] = 0.0 if sv[i] > threshold else np.inf
    min_ratio = sv[1] / sv[0]
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
    tol = rtol + atol
    nf = 0.0
    for i in range(4):
        nf = max(nf, abs(f[i]))
    h = h0 if h0 > 0 else (0.01 / nf if nf > 0 else t_max)
    if not (math.isfinite(h) and h > 0):
        h = t_max
    h = min(h, t_max)
    K = np.zeros((7, 4))
    ys = np.empty(4)
    fs = np.empty(4)
    Xs = np.empty((2, 2))
    ynew = np.empty(4)
    steps = 0
    n_rej = 0
    nonfin = False
    prev = sv.copy()
    s_new = np.empty(2)
    while status < 0:
        h = min(h, t_max - t)
        for i in range(4):
            K[0, i] = h * f[i]
        bad = False
        for st in range(1, 7):
            _stage(y, DP_A, st, K, ys)
            okf = _rhs(ys, d, mask, M, N, normalized, Xs, fs)
            cnt[4] += 1
            if not okf:
                bad = True
                break
            for i in range(4):
                K[st, i] = h * fs[i]
        ratio = np.inf
        if not bad:
            ynew[:] = ys
            ratio = 0.0
            for i in range(4):
                e = 0.0
                for j in range(7):
                    e += DP_E[j] * K[j, i]
                ratio = max(ratio, abs(e) / tol)
        accept = (not bad) and ratio <= 1.0
        Lnew = np.inf
        if accept:
            Lnew = _loss(Xs, mask, M)
            if not math.isfinite(Lnew):
                accept = False
                bad = True
        if accept:
            yk = h - tc
            t_new = t + yk
            tc = (t_new - t) - yk
            t_old = t
            t = t_new
            steps += 1
            y[:] = ynew
            f[:] = fs
            X[:, :] = Xs
            L = Lnew
            s_new[0] = math.exp(max(y[0], y[1]))
            s_new[1] = math.exp(min(y[0], y[1]))
            _crossings(prev, s_new, t_old, t, threshold, crossing)
            prev[:] = s_new
            min_ratio = min(min_ratio, s_new[1] / s_new[0])
            h_next = h * _controller(ratio, 4, n_rej > 0)
            n_rej = 0
            nonfin = False
            if L <= loss_tol:
                status = 0
            elif t >= t_max * (1 - 1e-14):
                status = 1
            elif steps >= max_steps:
                status = 2
            if status >= 0:
                _record_final(t, L, prev, log_t, log_loss, log_sigma, rec)
                break
            _record(steps, t, L, prev, log_t, log_loss, log_sigma, rec)
            h = h_next
        else:
            cnt[1] += 1
            cnt[8] += 1
            n_rej += 1
            nonfin = bad
            h_next = 0.25 * h if bad else h * _controller(ratio, 4, False)
            nf = 0.0
            for i in range(4):
                nf = max(nf, abs(f[i]))
            if n_rej >= 2 and (h_next * nf <= 1e-16 * max(1.0, abs(y[0]), abs(y[1])) or h_next <= 0):
                status = 3 if nonfin else 4
                _record_final(t, L, prev, log_t, log_loss, log_sigma, rec)
                break
            h = h_next
    _finish(X, mask, M, cnt, steps, status, rec, t, min_ratio, Y_out, istats, fstats)


@njit(cache=True, error_model="numpy")
def integrate_batch(use, Y0, mask, M, N, normalized, t_max, loss_tol, rtol, atol, max_steps, log_every, threshold,
                    h0, Y_out, log_t, log_loss, log_sigma, crossing, istats, fstats):
    """:func:`integrate` for the runs ``b`` of ``Y0 (B, 2, 2)`` with ``use[b]``."""
    for b in range(Y0.shape[0]):
        if use[b]:
            integrate(np.ascontiguousarray(Y0[b]), mask, M, N, normalized, t_max, loss_tol, rtol, atol, max_steps,
                      log_every, threshold, h0, Y_out[b], log_t[b], log_loss[b], log_sigma[b], crossing[b],
                      istats[b], fstats[b])
