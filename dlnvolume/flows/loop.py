"""The one loop of the flows: stopping rules, step-size control, trajectory records, crossing times,
invariant guards and statuses; a method is a :class:`Stepper` (one module each: :mod:`.dopri5`,
:mod:`.rosenbrock`).

The state is a stack ``Y`` of shape ``(B, m, n)``; each of the ``B`` runs has its own time, step size
and stopping rule, but all active runs are advanced together (one batched SVD per field evaluation).
Finished runs leave the active set, so a run that stops early costs nothing afterwards.

Stepper contract (blackjax/mici style: the stepper is pure, the loop owns everything else)::

    state = stepper.init(Y0)                     # StepState: Y, sigma, bad, cache (stepper's own arrays)
    trial, info = stepper.step(state, h)         # one attempted step of sizes h (b,) for every run
    # info.ratio (b,): error / tolerance (accept iff <= 1); info.bad (b,): trial not finite

``stepper.order`` is the exponent ``q`` of the local error estimate (``err ∝ h^{q+1}``), used by the
step-size controller ``h ← h·clip(0.9·ratio^{−1/(q+1)}, 0.2, 5)`` (Hairer–Nørsett–Wanner I, II.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from .results import STATUSES

__all__ = ["SV_FLOOR", "StepState", "StepInfo", "Stepper", "Recorder", "update_crossings", "LoopOutput", "run", "fro",
           "step_factor"]

_EPS = float(np.finfo(float).eps)
_RES = 256 * _EPS  # σ_min/σ_1 above which σ_min (and sign det) are resolvable in float64
#: the steppers' singular-value error controls resolve ``σ_i`` relative to itself down to ``SV_FLOOR·σ_1``
#: and relative to ``SV_FLOOR·σ_1`` below (docs/flows.md): a singular value 1e-12·σ_1 is followed to
#: ``rtol·1e-4·σ_1``, not to float64 round-off, and cannot pass through 0 unseen (the sign-det guard)
SV_FLOOR = 1e-4
assert set(STATUSES) == {"converged", "max_time", "max_steps", "nonfinite", "stalled"}


@dataclass(frozen=True)
class StepState:
    """A batch of states: ``Y (b, m, n)``, its singular values ``sigma (b, k)``, ``bad (b,)`` (Y or its
    field not finite), and ``cache``: the stepper's per-run arrays (leading axis ``b``), e.g. the field
    at ``Y`` and its SVD, reused by the next step."""

    Y: np.ndarray
    sigma: np.ndarray
    bad: np.ndarray
    cache: tuple[np.ndarray, ...] = ()

    def take(self, idx: np.ndarray) -> "StepState":
        return StepState(self.Y[idx], self.sigma[idx], self.bad[idx], tuple(c[idx] for c in self.cache))

    def put(self, mask: np.ndarray, other: "StepState") -> "StepState":
        """Rows ``mask`` replaced by those of ``other`` (same batch size)."""
        def w(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            if a is b:  # an entry the step passed through unchanged (e.g. a Jacobian kept for reuse)
                return a
            return np.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), b, a)

        return StepState(w(self.Y, other.Y), w(self.sigma, other.sigma), w(self.bad, other.bad),
                         tuple(w(a, b) for a, b in zip(self.cache, other.cache)))


@dataclass(frozen=True)
class StepInfo:
    """Per-run diagnostics of one attempted step: error ratio (accept iff ``<= 1``), non-finite flag, and
    ``ratio_basic``: the ratio of the plain Frobenius control, which the loop uses instead of ``ratio``
    after 30 consecutive rejections (the σ-relative checks cannot be met at the float64 resolution of
    ``σ_min``); ``h_max``: a cap on the next step size after an accepted step (a stepper that changes
    method, :mod:`.switching`); ``h_next``: the next step size of every run, accepted or rejected, chosen
    by the stepper itself (a variable-order multistep method, :mod:`.bdf`); it overrides the controller
    except for runs the loop rejects on its own (sign-det guard, non-finite loss) and where it is NaN
    (runs of a per-run switching stepper that are on an explicit method, :mod:`.dopri_bdf`)."""

    ratio: np.ndarray
    bad: np.ndarray
    ratio_basic: np.ndarray | None = None
    h_max: np.ndarray | None = None  # if the step is accepted, the next step is at most this
    h_next: np.ndarray | None = None  # if given, the next step size of every run (overrides the controller)


class Stepper(Protocol):
    """One integration method (see the module docstring)."""

    name: str
    order: int

    def init(self, Y: np.ndarray) -> StepState: ...

    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]: ...


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


def update_crossings(
    crossing: np.ndarray, g: np.ndarray, threshold: float,
    t_prev: np.ndarray, s_prev: np.ndarray, t_new: np.ndarray, s_new: np.ndarray,
) -> None:
    """First time each singular value exceeds ``threshold``, linear interpolation in time between two
    checks ``(t_prev, s_prev) → (t_new, s_new)`` of runs ``g``; fills ``crossing[g]`` in place where it is
    still ``inf``. The single definition used by every flow (end_to_end: every accepted step; factor
    descent: every logged step)."""
    newly = (s_new > threshold) & ~np.isfinite(crossing[g])
    if not newly.any():
        return
    tp = t_prev[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip((threshold - s_prev) / (s_new - s_prev), 0.0, 1.0)
    tc = np.where(s_prev > threshold, tp, tp + frac * (t_new[:, None] - tp))
    cr = crossing[g]
    cr[newly] = tc[newly]
    crossing[g] = cr


def step_factor(ratio: np.ndarray, order: int) -> np.ndarray:
    """The step-size controller: ``clip(0.9·ratio^{−1/(q+1)}, 0.2, 5)`` (5 at ``ratio = 0``), ``q = order``
    (Hairer–Nørsett–Wanner I, II.4). The loop's, and :mod:`.switching`'s for its Rosenbrock proposals."""
    fac = np.maximum(ratio, 1e-300)  # ratio 0 → a huge factor, clipped to 5, without a division by 0
    fac **= -1.0 / (order + 1)
    fac *= 0.9
    return np.clip(fac, 0.2, 5.0, out=fac)


def fro(Z: np.ndarray) -> np.ndarray:
    """Frobenius norm over the last two axes, scaled by ``max|Z_ij|`` where the plain sum of squares
    overflows or underflows (an infinite norm of a finite field made the step-size checks
    ``h·‖F‖ <= eps·‖Y‖`` never true, and the step loop never ended). One ``einsum`` when every norm is in
    range (a quarter of the cost of the general path at batch size 1; every stepper calls it per step)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.sqrt(np.einsum("...ij,...ij->...", Z, Z))
    out = np.asarray(out, dtype=np.float64).reshape(Z.shape[:-2])
    if out.size and out.min() >= 1e-150 and out.max() < np.inf:
        return out
    redo = ~np.isfinite(out) | (out < 1e-150)
    if redo.any():
        Zr = Z[redo]
        s = np.max(np.abs(Zr), axis=(-2, -1))
        ok = np.isfinite(s) & (s > 0)
        safe = np.where(ok, s, 1.0)
        W = Zr / safe[..., None, None]
        out[redo] = np.where(ok, safe * np.sqrt(np.sum(W * W, axis=(-2, -1))), s)
    return out


@dataclass
class LoopOutput:
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


def _sign_det(Y: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """``sign det Y`` where ``σ_min`` is resolvable (> 256·eps·σ_1), else 0."""
    res = sig[:, -1] > _RES * sig[:, 0]
    if Y.shape[1:] == (2, 2):  # ad − bc: right in sign where σ_min is resolvable (|det| > 256·eps·σ_1²)
        det = Y[:, 0, 0] * Y[:, 1, 1] - Y[:, 0, 1] * Y[:, 1, 0]
        odd = ~np.isfinite(det) | (det == 0)  # products over/underflowed: LAPACK's LU as before
        if odd.any():
            det[odd] = np.linalg.det(Y[odd])
        return np.where(res, np.sign(det), 0.0)
    out = np.zeros(Y.shape[0])
    if res.any():
        out[res] = np.sign(np.linalg.det(Y[res]))
    return out


def run(
    stepper: Stepper,
    loss_fn: Callable[[np.ndarray], np.ndarray],
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
    sign_det: bool = False,
) -> LoopOutput:
    """Integrate every run of ``Y0`` (B, m, n) with ``stepper`` until its own stopping rule fires.

    Stopping (per run, checked after every accepted step): ``loss ≤ loss_tol`` → "converged";
    ``t ≥ t_max`` → "max_time"; ``max_steps`` accepted steps → "max_steps"; the step size fell below
    ``eps·‖Y‖/‖f(Y)‖`` (a step that cannot change the state) because trial states were not finite →
    "nonfinite", or because the error estimate kept failing → "stalled". The returned state is always
    the last accepted (finite) one.

    Guards: with ``sign_det`` (square, N >= 2) a step that flips ``sign det`` while ``σ_min`` is
    resolvable before and after is rejected (MATH.md §1.5 item 6). Time is summed with Kahan
    compensation (plateaus of length 1e15 must not swallow steps of size 1).

    Trajectory: the initial state, every ``stride``-th accepted step and the final state in a
    :class:`Recorder` of ``K = n_log`` slots; crossing times of ``threshold`` by each singular value
    are detected at every accepted step (:func:`update_crossings`).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _run(stepper, loss_fn, Y0, t_max, loss_tol, rtol, atol, max_steps, log_every, n_log, threshold,
                    h0, sign_det)


def _run(stepper, loss_fn, Y0, t_max, loss_tol, rtol, atol, max_steps, log_every, n_log, threshold, h0,  # noqa: C901
         sign_det):
    B, m, n = Y0.shape
    k = min(m, n)
    state = stepper.init(Y0.copy())
    sig = state.sigma
    Y = Y0.copy()
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
    nY = fro(Y)
    nF = fro(state.cache[0])
    scale = rtol * nY + atol
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(nF > 0, 0.01 * np.where(scale > 0, nY + atol / max(rtol, 1e-300), 1.0) / nF, t_max)
    if h0 is not None:
        h = np.full(B, float(h0))
    h = np.minimum(np.where(np.isfinite(h) & (h > 0), h, t_max), t_max)

    status[(L <= loss_tol)] = "converged"
    status[state.bad & (status == "")] = "nonfinite"
    if t_max <= 0:
        status[status == ""] = "max_time"
    if max_steps <= 0:
        status[status == ""] = "max_steps"

    active = np.flatnonzero(status == "")
    st = state.take(active)
    ha, ta, La = h[active], t[active], L[active]
    tc = np.zeros(active.size)  # Kahan compensation of the time sums
    ref_sign = _sign_det(Y[active], sig[active]) if (sign_det and m == n) else None
    nonfin = np.zeros(active.size, dtype=bool)  # the last attempt was not finite
    n_rej = np.zeros(active.size, dtype=np.int64)  # consecutive rejections

    while active.size:
        ha = np.minimum(ha, t_max - ta)
        trial, info = stepper.step(st, ha)
        ratio, bad = info.ratio, info.bad | trial.bad
        if info.ratio_basic is not None:
            ratio = np.where(n_rej < 30, ratio, info.ratio_basic)
        if ref_sign is not None:  # invariant guard: no sign flip while σ_min is resolvable (before and after)
            was = prev_sig[active]
            sd_trial = _sign_det(trial.Y, trial.sigma)  # 0 where σ_min of the trial is not resolvable
            chk = (sd_trial != 0) & (was[:, -1] > _RES * was[:, 0]) & (ref_sign != 0) & ~bad
            flip = chk & (sd_trial != ref_sign)
            if flip.any():
                ratio = np.where(flip, np.inf, ratio)
        accept = (~bad) & (ratio <= 1.0)
        all_acc = accept.all()
        if all_acc:
            Lnew = loss_fn(trial.Y)
            if not np.isfinite(Lnew).all():
                bad_loss = ~np.isfinite(Lnew)
                accept &= ~bad_loss
                bad |= bad_loss
                all_acc = False
        elif accept.any():
            Lnew = np.full(active.size, np.inf)
            Lnew[accept] = loss_fn(trial.Y[accept])
            bad_loss = accept & ~np.isfinite(Lnew)
            accept &= ~bad_loss
            bad |= bad_loss
        else:
            Lnew = np.full(active.size, np.inf)
        fac = step_factor(ratio, stepper.order)
        # no growth on the step right after a rejection (Hairer–Nørsett–Wanner I, II.4)
        fac = np.where(accept & (n_rej > 0), np.minimum(fac, 1.0), fac)
        fac = np.where(bad, 0.25, fac)
        h_next = ha * fac
        if info.h_max is not None:
            h_next = np.where(accept, np.minimum(h_next, info.h_max), h_next)
        if info.h_next is not None:  # the stepper's own choice, unless the loop overruled its verdict
            own = (accept | ~(info.ratio <= 1) | info.bad) & ~np.isnan(info.h_next)  # NaN: the controller's
            h_next = np.where(own, info.h_next, h_next)
        nonfin = np.where(bad, True, np.where(accept, False, nonfin))
        n_rej = np.where(accept, 0, n_rej + 1)

        gi = active
        sel = slice(None) if all_acc else accept  # a view instead of boolean indexing when all accept
        acc_g = gi[sel]
        if acc_g.size:
            t_old = ta[accept]  # a copy (ta is updated below)
            y = ha[sel] - tc[sel]
            ta_acc = t_old + y
            tc[sel] = (ta_acc - t_old) - y
            ta[sel] = ta_acc
            st = trial if all_acc else st.put(accept, trial)
            if ref_sign is not None:  # follow the sign through states where σ_min is resolvable
                rs = sd_trial[sel]
                ref_sign[sel] = np.where(rs != 0, rs, ref_sign[sel])
            La[sel] = Lnew[sel]
            steps[acc_g] += 1
            sn = trial.sigma[sel]
            update_crossings(crossing, acc_g, threshold, t_old, prev_sig[acc_g], ta_acc, sn)
            prev_sig[acc_g] = sn
            with np.errstate(divide="ignore", invalid="ignore"):
                q_ = np.where(sn[:, 0] > 0, sn[:, -1] / sn[:, 0], 0.0)
            min_ratio[acc_g] = np.minimum(min_ratio[acc_g], q_)
        if not all_acc:
            rejected[gi[~accept]] += 1

        conv = accept & (Lnew <= loss_tol)
        tm = accept & ~conv & (ta >= t_max * (1 - 1e-14))
        ms = accept & ~conv & ~tm & (steps[gi] >= max_steps)
        done = conv | tm | ms
        # no progress possible: the step would not change the state in float64; h_next <= 0: repeated
        # rejections underflowed the step (ends every run after at most ~1100 rejections)
        tiny = None
        if (n_rej >= 2).any():  # only runs rejected (twice in a row, so rarely checked) end this way
            tiny = (h_next * fro(st.cache[0]) <= _EPS * fro(st.Y)) | (h_next <= 0)
            tiny &= n_rej >= 2
            done |= tiny
        if done.any():
            new_status = np.full(active.size, "", dtype=object)
            new_status[conv] = "converged"
            new_status[tm] = "max_time"
            new_status[ms] = "max_steps"
            if tiny is not None:
                new_status[tiny & nonfin] = "nonfinite"
                new_status[tiny & ~nonfin] = "stalled"

        running = accept & ~done
        if running.any():
            rec.add(gi[running], steps[gi[running]], ta[running], Lnew[running], trial.sigma[running])
        if done.any():
            rec.final(gi[done], ta[done], La[done], prev_sig[gi[done]])
            g = gi[done]
            status[g] = new_status[done]
            Y[g] = st.Y[done]
            t[g] = ta[done]
            keep = ~done
            active, ta, La, tc = gi[keep], ta[keep], La[keep], tc[keep]
            st = st.take(keep)
            if ref_sign is not None:
                ref_sign = ref_sign[keep]
            ha, nonfin, n_rej = h_next[keep], nonfin[keep], n_rej[keep]
        else:
            ha = h_next

    L = loss_fn(Y)
    log_t, log_loss, log_sigma, n_logged = rec.tables()
    return LoopOutput(Y=Y, t=t, loss=L, n_steps=steps, n_rejected=rejected, status=status.astype(str),
                      log_t=log_t, log_loss=log_loss, log_sigma=log_sigma, n_logged=n_logged,
                      crossing=crossing, min_sigma_ratio=min_ratio)
