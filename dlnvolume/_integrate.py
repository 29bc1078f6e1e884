"""Batched Dormand–Prince 5(4) integrator with per-run step control (private to :mod:`dlnvolume.flows`).

The state is a stack ``Y`` of shape ``(B, m, n)``; each of the ``B`` runs has its own time, step
size and stopping rule, but all active runs are advanced together with one call of the vector
field per stage (one batched SVD for the end-to-end flow). Finished runs are removed from the
active set, so a run that stops early costs nothing afterwards.

Error control is per run in the Frobenius norm, ``‖err‖_F ≤ rtol·max(‖Y‖_F, ‖Y_new‖_F) + atol``,
which is invariant under ``Y ↦ UYVᵀ`` (the flows are equivariant, MATH.md §1.5). On a plateau
of a small-initialization flow the relative rate of change is small, so the controller takes
long steps: the number of steps grows like ``log(1/σ_0)·rtol^{-1/5}``, not like the plateau length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["integrate_batch", "IntegrationOutput", "Recorder"]

# Dormand & Prince (1980), RK5(4)7M; FSAL.
_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_EPS = float(np.finfo(float).eps)
_E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])

# A vector field: Y (b, m, n) -> (F (b, m, n), sigma (b, k), bad (b,) bool).
# ``bad`` flags rows where Y or F is not finite (the caller's F rows there are arbitrary finite).
VectorField = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
Loss = Callable[[np.ndarray], np.ndarray]


@dataclass
class IntegrationOutput:
    Y: np.ndarray  # (B, m, n) final (last finite) states
    t: np.ndarray  # (B,)
    loss: np.ndarray  # (B,)
    n_steps: np.ndarray  # (B,) accepted steps
    n_rejected: np.ndarray  # (B,)
    status: np.ndarray  # (B,) str
    log_t: np.ndarray  # (B, K)
    log_loss: np.ndarray  # (B, K)
    log_sigma: np.ndarray  # (B, K, k)
    n_logged: np.ndarray  # (B,)
    crossing: np.ndarray  # (B, k)
    min_sigma_ratio: np.ndarray  # (B,) min over accepted states of σ_min/σ_1


class Recorder:
    """Per-run trajectory buffer of fixed capacity ``K`` with stride doubling.

    A run is recorded at step 0 and at every step that is a multiple of its stride (initially
    ``log_every``). When its ``K − 1`` periodic slots are full, every other record is dropped and the
    stride doubles, so the records always span the whole run evenly in step index; the last slot holds
    the final state. Shapes depend only on ``K``.
    """

    def __init__(self, B: int, K: int, k: int, log_every: int) -> None:
        self.K = K
        self.C = K - 1
        self.t = np.zeros((B, K))
        self.loss = np.zeros((B, K))
        self.sigma = np.zeros((B, K, k))
        self.n = np.zeros(B, dtype=np.int64)
        self.stride = np.full(B, log_every, dtype=np.int64)

    def add(self, g: np.ndarray, steps: np.ndarray, t: np.ndarray, loss: np.ndarray, sigma: np.ndarray) -> None:
        """Record runs ``g`` (global indices) at step counts ``steps`` if they are due."""
        due = steps % self.stride[g] == 0
        full = due & (self.n[g] >= self.C)
        if full.any():
            gf = g[full]
            keep = np.arange(0, self.C, 2)
            self.t[gf, : keep.size] = self.t[gf][:, keep]
            self.loss[gf, : keep.size] = self.loss[gf][:, keep]
            self.sigma[gf, : keep.size] = self.sigma[gf][:, keep]
            self.n[gf] = keep.size
            self.stride[gf] *= 2
            due &= steps % self.stride[g] == 0
        if due.any():
            gd = g[due]
            slot = self.n[gd]
            self.t[gd, slot] = t[due]
            self.loss[gd, slot] = loss[due]
            self.sigma[gd, slot] = sigma[due]
            self.n[gd] = slot + 1

    def final(self, g: np.ndarray, t: np.ndarray, loss: np.ndarray, sigma: np.ndarray) -> None:
        """Record the final state of runs ``g`` unless their last record is already at time ``t``."""
        last = self.t[g, np.maximum(self.n[g] - 1, 0)]
        fresh = (self.n[g] == 0) | (last != t)
        if fresh.any():
            gf = g[fresh]
            slot = np.minimum(self.n[gf], self.K - 1)
            self.t[gf, slot] = t[fresh]
            self.loss[gf, slot] = loss[fresh]
            self.sigma[gf, slot] = sigma[fresh]
            self.n[gf] = slot + 1

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``times, loss, sigma, n_logged``, rows after a run's last record repeating it."""
        idx = np.minimum(np.arange(self.K)[None, :], np.maximum(self.n - 1, 0)[:, None])
        rows = np.arange(self.t.shape[0])[:, None]
        return self.t[rows, idx], self.loss[rows, idx], self.sigma[rows, idx], self.n.copy()


def _fro(Z: np.ndarray) -> np.ndarray:
    """Frobenius norm over the last two axes, scaled by ``max|Z_ij|`` so that finite entries above
    ~1e154 do not overflow the sum of squares (an infinite norm of a finite field made the step-size
    checks ``h·‖F‖ <= eps·‖Y‖`` never true, and the step loop never ended). Rows whose plain sum of
    squares is finite and not tiny keep the plain arithmetic."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.sqrt(np.sum(Z * Z, axis=(-2, -1)))  # the plain (fast, original) arithmetic first
    out = np.asarray(out, dtype=np.float64).reshape(Z.shape[:-2])
    redo = ~np.isfinite(out) | (out < 1e-150)
    if redo.any():  # overflowed, underflowed or non-finite: rescale those rows by max |Z_ij|
        Zr = Z[redo]
        s = np.max(np.abs(Zr), axis=(-2, -1))
        ok = np.isfinite(s) & (s > 0)
        safe = np.where(ok, s, 1.0)
        W = Zr / safe[..., None, None]
        out[redo] = np.where(ok, safe * np.sqrt(np.sum(W * W, axis=(-2, -1))), s)
    return out


def integrate_batch(
    f: VectorField,
    loss_fn: Loss,
    Y0: np.ndarray,
    *,
    t_max: float,
    loss_tol: float,
    rtol: float,
    atol: float,
    max_steps: int,
    log_every: int,
    n_log: int,
    threshold: float,
    h0: float | None = None,
    spectral_control: bool = False,
    sign_det: bool = False,
    sv_rtol: float = 1e-2,
) -> IntegrationOutput:
    """Integrate ``dY/dt = f(Y)`` for every run of ``Y0`` (B, m, n) until its own stopping rule fires.

    Stopping (per run, checked after every accepted step): ``loss ≤ loss_tol`` → "converged";
    ``t ≥ t_max`` → "max_time"; ``max_steps`` accepted steps → "max_steps"; the step size fell
    below ``eps·‖Y‖/‖f(Y)‖`` (a step that cannot change the state) because trial states were not finite → "nonfinite", or because the
    error estimate kept failing → "stalled". The returned state is always the last accepted (finite) one.

    Trajectory: the initial state, every ``stride``-th accepted step and the final state in a
    :class:`Recorder` of ``K = n_log`` slots (``stride`` starts at ``log_every`` and doubles whenever
    the buffer fills); rows after a run's final record repeat it (``n_logged`` counts the real ones).
    Crossing times of ``threshold`` by each singular value are detected at every accepted step and
    located by linear interpolation in time.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _integrate(
            f, loss_fn, Y0, t_max, loss_tol, rtol, atol, max_steps, log_every, n_log, threshold, h0, spectral_control, sign_det, sv_rtol
        )


def _spectral_ratio(
    Ya: np.ndarray,
    Ynew: np.ndarray,
    errm: np.ndarray,
    sig_new: np.ndarray,
    bad: np.ndarray,
    sv_rtol: float,
    atol: float,
    ref_sign: np.ndarray | None,
    sig_old: np.ndarray,
) -> np.ndarray:
    """Error ratio of the singular values, each relative to itself, and a sign-det guard.

    ``|σ_i(Y5) − σ_i(Y4)| ≤ sv_rtol·σ_i + 64·eps·σ_1 + atol`` (``Y4`` the embedded 4th-order solution):
    small singular values are resolved relative to their own size down to the SVD's resolution, so
    rank-preserving flows (N >= 2) do not push a small σ_i through zero. With ``sign_det`` (square, N >= 2)
    a step that flips ``sign det`` while ``σ_min`` is resolvable (> 64·eps·σ_1) is rejected (MATH.md §1.5 item 6); resolvable means σ_min > 256·eps·σ_1.
    """
    out = np.zeros(Ya.shape[0])
    ok = ~bad
    if not ok.any():
        return out
    s5 = sig_new[ok]
    s4 = np.linalg.svd(Ynew[ok] - errm[ok], compute_uv=False)
    floor = 64 * _EPS * s5[:, :1] + atol
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(s5 - s4) / (sv_rtol * s5 + floor)
    r = np.where(np.isfinite(r), r, 0.0)
    out[ok] = np.max(r, axis=-1)
    if ref_sign is not None:
        resolvable = s5[:, -1] > 256 * _EPS * s5[:, 0]
        ref = ref_sign[ok]
        so = sig_old[ok]
        was = so[:, -1] > 256 * _EPS * so[:, 0]  # a flip inside the unresolvable zone is not refused later
        flip = resolvable & was & (ref != 0) & (np.sign(np.linalg.det(Ynew[ok])) != ref)
        out[np.flatnonzero(ok)[flip]] = np.inf
    return out


def _integrate(f, loss_fn, Y0, t_max, loss_tol, rtol, atol, max_steps, log_every, n_log, threshold, h0, spectral_control, sign_det, sv_rtol):  # noqa: C901,E501
    B, m, n = Y0.shape
    k = min(m, n)

    Y = Y0.copy()
    F, sig, bad0 = f(Y)
    L = loss_fn(Y)
    t = np.zeros(B)
    steps = np.zeros(B, dtype=np.int64)
    rejected = np.zeros(B, dtype=np.int64)
    status = np.full(B, "", dtype=object)

    rec = Recorder(B, n_log, k, log_every)
    rec.add(np.arange(B), steps, t, L, sig)
    crossing = np.where(sig > threshold, 0.0, np.inf)
    prev_sig = sig.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        min_ratio = np.where(sig[:, 0] > 0, sig[:, -1] / sig[:, 0], 0.0)

    # initial step (Hairer–Nørsett–Wanner, simplified): 1% of the relative scale of Y over |f|
    nY = _fro(Y)
    nF = _fro(F)
    scale = rtol * nY + atol
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(nF > 0, 0.01 * np.where(scale > 0, nY + atol / max(rtol, 1e-300), 1.0) / nF, t_max)
    if h0 is not None:
        h = np.full(B, float(h0))
    h = np.minimum(np.where(np.isfinite(h) & (h > 0), h, t_max), t_max)

    # runs already done at t = 0
    status[(L <= loss_tol)] = "converged"
    status[bad0 & (status == "")] = "nonfinite"
    if t_max <= 0:
        status[status == ""] = "max_time"
    if max_steps <= 0:
        status[status == ""] = "max_steps"

    active = np.flatnonzero(status == "")
    Ya, Fa, ha, ta, La = Y[active], F[active], h[active], t[active], L[active]
    tc = np.zeros(active.size)  # Kahan compensation of the time sums
    n_spec = np.zeros(active.size, dtype=np.int64)  # consecutive rejections by the spectral checks
    ref_sign = None
    if sign_det and m == n:
        s0 = sig  # sign det X0 where σ_min(X0) is resolvable, else 0 (not enforced)
        ref_all = np.where(s0[:, -1] > 256 * _EPS * s0[:, 0], np.sign(np.linalg.det(Y)), 0.0)
        ref_sign = ref_all[active]
    # consecutive non-finite rejections, per active run
    nonfin = np.zeros(active.size, dtype=bool)

    while active.size:
        ha = np.minimum(ha, t_max - ta)
        hb = ha[:, None, None]
        Ks = [Fa]
        bad = np.zeros(active.size, dtype=bool)
        for s in range(1, 7):
            Ys = Ya.copy()
            for j, a in enumerate(_A[s]):
                if a != 0.0:
                    Ys += (hb * a) * Ks[j]
            Fs, sig_s, bad_s = f(Ys)
            Ks.append(Fs)
            bad |= bad_s
        Ynew = Ys  # stage 7 is evaluated at the 5th-order solution (FSAL)
        Fnew, sig_new = Ks[6], sig_s
        errm = np.zeros_like(Ya)
        for j in range(7):
            if _E[j] != 0.0:
                errm += _E[j] * Ks[j]
        errm *= hb
        err = _fro(errm)
        tol = rtol * np.maximum(_fro(Ya), _fro(Ynew)) + atol
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(err == 0, 0.0, err / tol)
        bad |= ~np.isfinite(ratio)
        spec_rej = np.zeros(active.size, dtype=bool)
        if spectral_control:
            rs_ = _spectral_ratio(Ya, Ynew, errm, sig_new, bad, sv_rtol, atol, ref_sign, prev_sig[active])
            # after 30 consecutive rejections by the spectral checks alone, fall back to the Frobenius
            # control for this step (at the float64 resolution of σ_min the checks cannot be met)
            spec_rej = (rs_ > 1.0) & (ratio <= 1.0) & ~bad
            use = n_spec < 30
            ratio = np.where(use, np.maximum(ratio, rs_), ratio)
        accept = (~bad) & (ratio <= 1.0)
        n_spec = np.where(accept, 0, np.where(spec_rej, n_spec + 1, n_spec))
        Lnew = np.full(active.size, np.inf)
        if accept.any():
            Lnew[accept] = loss_fn(Ynew[accept])
            bad_loss = accept & ~np.isfinite(Lnew)
            accept &= ~bad_loss
            bad |= bad_loss
        # step-size update
        with np.errstate(divide="ignore"):
            fac = np.where(ratio == 0, 5.0, 0.9 * ratio ** (-0.2))
        fac = np.clip(fac, 0.2, 5.0)
        fac = np.where(bad, 0.25, fac)
        h_next = ha * fac
        nonfin = np.where(bad, True, np.where(accept, False, nonfin))

        gi = active  # global indices
        acc_g = gi[accept]
        if acc_g.size:
            t_old = ta[accept]
            # compensated (Kahan) time sum: plateaus of length 1e15 must not swallow steps of size 1
            y = ha[accept] - tc[accept]
            ta_acc = t_old + y
            tc[accept] = (ta_acc - t_old) - y
            ta[accept] = ta_acc
            Ya[accept] = Ynew[accept]
            Fa[accept] = Fnew[accept]
            if ref_sign is not None:  # follow the sign through states where σ_min is resolvable
                sn_ = sig_new[accept]
                res_ = sn_[:, -1] > 256 * _EPS * sn_[:, 0]
                rs = ref_sign[accept]
                rs[res_] = np.sign(np.linalg.det(Ynew[accept][res_]))
                ref_sign[accept] = rs
            La[accept] = Lnew[accept]
            steps[acc_g] += 1
            # crossings (linear interpolation between the two accepted steps)
            sp = prev_sig[acc_g]
            sn = sig_new[accept]
            newly = (sn > threshold) & ~np.isfinite(crossing[acc_g])
            if newly.any():
                t0 = t_old[:, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    frac = np.clip((threshold - sp) / (sn - sp), 0.0, 1.0)
                tcr = t0 + frac * ha[accept][:, None]
                cr = crossing[acc_g]
                cr[newly] = tcr[newly]
                crossing[acc_g] = cr
            prev_sig[acc_g] = sn
            with np.errstate(divide="ignore", invalid="ignore"):
                q_ = np.where(sn[:, 0] > 0, sn[:, -1] / sn[:, 0], 0.0)
            min_ratio[acc_g] = np.minimum(min_ratio[acc_g], q_)
        rejected[gi[~accept]] += 1

        # stopping rules for accepted runs
        done = np.zeros(active.size, dtype=bool)
        new_status = np.full(active.size, "", dtype=object)
        conv = accept & (Lnew <= loss_tol)
        new_status[conv] = "converged"
        tm = accept & ~conv & (ta >= t_max * (1 - 1e-14))
        new_status[tm] = "max_time"
        ms = accept & ~conv & ~tm & (steps[gi] >= max_steps)
        new_status[ms] = "max_steps"
        # no progress possible: the step would not change the state in float64
        # h_next <= 0: repeated rejections (factor 0.25 each) underflowed the step, which ends every
        # run after at most ~1100 rejections even when ‖F‖ is inf or the product is NaN
        tiny = (h_next * _fro(Fa) <= _EPS * _fro(Ya)) | (h_next <= 0)
        new_status[tiny & ~accept & nonfin] = "nonfinite"
        new_status[tiny & ~accept & ~nonfin] = "stalled"
        done = new_status != ""

        # logging: every stride-th accepted step, and the final state
        running = accept & ~done
        if running.any():
            rec.add(gi[running], steps[gi[running]], ta[running], Lnew[running], sig_new[running])
        if done.any():
            rec.final(gi[done], ta[done], La[done], prev_sig[gi[done]])

        if done.any():
            g = gi[done]
            status[g] = new_status[done]
            Y[g] = Ya[done]
            t[g] = ta[done]
            keep = ~done
            active, Ya, Fa, ta, La, tc = gi[keep], Ya[keep], Fa[keep], ta[keep], La[keep], tc[keep]
            if ref_sign is not None:
                ref_sign = ref_sign[keep]
            ha, nonfin, n_spec = h_next[keep], nonfin[keep], n_spec[keep]
        else:
            ha = h_next

    L = loss_fn(Y)
    log_t, log_loss, log_sigma, n_logged = rec.tables()
    return IntegrationOutput(
        Y=Y,
        t=t,
        loss=L,
        n_steps=steps,
        n_rejected=rejected,
        status=status.astype(str),
        log_t=log_t,
        log_loss=log_loss,
        log_sigma=log_sigma,
        n_logged=n_logged,
        crossing=crossing,
        min_sigma_ratio=min_ratio,
    )
