"""Variable-order BDF stepper (orders 1–5, NDF form) with simplified Newton iterations, batched over runs.

**Method.** The numerical differentiation formulas (NDF) of Shampine & Reichelt, *The MATLAB ODE Suite*,
SIAM J. Sci. Comput. 18 (1997) 1–22, in the quasi-constant step size, backward-difference form of
scipy's ``scipy/integrate/_ivp/bdf.py`` (same coefficients: Klopfenstein–Shampine ``κ``,
``γ_k = Σ_{j<=k} 1/j``, ``α_k = (1 − κ_k)γ_k``, error constants ``κ_k γ_k + 1/(k+1)``). Per run: the
modified divided differences ``D (8, m, n)`` at spacing ``h_D``, the order ``k``, the count of steps of
equal size. A step of size ``h`` predicts ``y_p = Σ_{i<=k} D_i``, solves
``d − c·f(y_p + d) + ψ = 0`` (``c = h/α_k``, ``ψ = Σ_{i=1}^{k} γ_i D_i / α_k``) by simplified Newton
iterations with ``(I − cJ)⁻¹`` (at most ``NEWTON_MAXITER = 4``, convergence-rate test of scipy; also
converged after one iteration when the run's last measured rate ``ρ`` — scaled by ``max(1, c/c_old)``
after a new factorization, forgotten with a new ``J`` — gives ``ρ·‖Δ‖ < tol·(1 − ρ)``, CVODE's test;
``remember_rate = False`` switches it off), and
estimates the local error as ``error_const[k]·d``: the estimate does not involve ``J``, so ``J`` and the
factorization are reused over many steps. After ``k + 1`` steps of equal size the orders ``k − 1, k,
k + 1`` are compared (scipy's rule) and the next step size is chosen with the order; the stepper returns
it as :attr:`StepInfo.h_next` (the loop's controller is not used). When called with an ``h`` different
from ``h_D`` (a rejection, the loop clipping at ``t_max``) it rescales ``D`` (scipy's ``change_D``).

**Jacobian.** ``J`` by forward differences of the field (:func:`.rosenbrock.fd_jacobian`, one batched
field call of ``m·n + 1`` matrices) at the state's ``Y``; recomputed only when Newton fails to converge
with a stale ``J`` (then the same step is retried), like scipy's ``current_jac``. ``(I − cJ)⁻¹`` (a batched
explicit inverse, ``m·n <= 64``) is recomputed when ``c`` changes. Only tasks with ``m·n <= FD_MAX = 64``
are supported (``InvalidArgumentError`` otherwise): the frozen-metric reduced solve of
:mod:`.rosenbrock` is not wired in.

**Cache mutation.** A refreshed ``J`` and a new factorization are written *in place* into the input
state's cache arrays (they are caches keyed by the state's ``Y`` and by ``c``, consistent with the state
whatever the loop decides): a rejected step does not lose them.

**Error control** as in :mod:`.rosenbrock`: ``‖err‖_F <= rtol·max(‖y_0‖_F, ‖y_1‖_F) + atol`` and, with
``spectral_control``, componentwise in the SVD basis of ``y_1`` (:func:`.rosenbrock.componentwise`,
every singular value and rotation relative to its own size down to ``SV_FLOOR·σ_1``). The Newton
increments are measured in the same scaled norm (in the SVD basis of ``y_0``), with scipy's tolerance
``max(10·eps/rtol, min(0.03, √rtol))``: the small singular directions are converged relative to their own
size, not to ``‖y‖``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError
from .field import EndToEndField
from .loop import StepInfo, StepState, fro
from .rosenbrock import FD_MAX, componentwise, fd_jacobian, spectral_tol

__all__ = ["Bdf"]

_EPS = float(np.finfo(float).eps)
MAX_ORDER = 5
NEWTON_MAXITER = 4
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0

#: NDF coefficients (Shampine & Reichelt 1997, Table 1; scipy's ``kappa``)
KAPPA = np.array([0, -0.1850, -1 / 9, -0.0823, -0.0415, 0])
GAMMA = np.hstack((0, np.cumsum(1 / np.arange(1, MAX_ORDER + 1))))
ALPHA = (1 - KAPPA) * GAMMA
ERROR_CONST = KAPPA * GAMMA + 1 / np.arange(1, MAX_ORDER + 2)

_K = MAX_ORDER + 1  # D rows rescaled by change_D
_ND = MAX_ORDER + 3  # rows of D


def _compute_R(order: int, factor: float) -> np.ndarray:
    """scipy's ``compute_R`` (the matrix for changing the differences array)."""
    i = np.arange(1, order + 1)[:, None]
    j = np.arange(1, order + 1)
    M = np.zeros((order + 1, order + 1))
    M[1:, 1:] = (i - 1 - factor * j) / i
    M[0] = 1
    return np.cumprod(M, axis=0)


def _tables() -> dict[str, np.ndarray]:
    """Per-order (index ``k = 0..5``; 0 unused) weights of the predictor, ``ψ``, the update of ``D`` and
    the block masks of ``change_D``, so that a batch with per-run orders is one gather plus one product."""
    pred = np.zeros((_K, _K))
    psi = np.zeros((_K, _K))
    upd = np.zeros((_K, _ND, _ND))
    upd_d = np.zeros((_K, _ND))
    block = np.zeros((_K, _K, _K), dtype=bool)
    for k in range(1, MAX_ORDER + 1):
        pred[k, : k + 1] = 1.0
        psi[k, 1: k + 1] = GAMMA[1: k + 1] / ALPHA[k]
        # scipy: D[k+2] = d − D[k+1]; D[k+1] = d; D[i] += D[i+1] for i = k..0, i.e.
        # D_i ← Σ_{j=i}^{k} D_j + d (i <= k), D_{k+1} ← d, D_{k+2} ← d − D_{k+1}, the rest kept
        for i in range(k + 1):
            upd[k, i, i: k + 1] = 1.0
            upd_d[k, i] = 1.0
        upd_d[k, k + 1] = 1.0
        if k + 2 < _ND:
            upd[k, k + 2, k + 1] = -1.0
            upd_d[k, k + 2] = 1.0
        for i in range(k + 3, _ND):
            upd[k, i, i] = 1.0
        block[k, : k + 1, : k + 1] = True
    return {"pred": pred, "psi": psi, "upd": upd, "upd_d": upd_d, "block": block}


_T = _tables()
_U5 = _compute_R(MAX_ORDER, 1.0)
_I = np.arange(1, _K)[:, None].astype(float)
_J = np.arange(1, _K)[None, :].astype(float)
_EYE = np.eye(_K)


def change_D(D: np.ndarray, order: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """scipy's ``change_D`` for a batch: ``D (b, 8, d)`` rescaled from step ``h`` to ``factor·h`` with
    per-run orders and factors (rows ``> order`` kept). Returns a new array."""
    b = D.shape[0]
    M = np.zeros((b, _K, _K))
    M[:, 0, :] = 1.0
    M[:, 1:, 1:] = (_I - 1.0 - factor[:, None, None] * _J) / _I
    RU = np.cumprod(M, axis=1) @ np.repeat(_U5[None], b, axis=0)  # stacked, not one product over the batch
    RU = np.where(_T["block"][order], RU, _EYE)
    out = D.copy()
    out[:, :_K] = np.swapaxes(RU, -1, -2) @ D[:, :_K]
    return out


class Bdf:
    """Batched variable-order NDF/BDF; ``cache = (F, U, Vh, D, h_D, order, n_equal, J, Minv, c_inv,
    j_fresh, itol, ‖Y‖_F, rate)``: the field at ``Y`` (after a step the Newton value ``(ψ + d)/c``), the full SVD of ``Y``,
    the differences ``D (b, 8, m, n)`` at spacing ``h_D``, the order, the number of steps since the last
    change of step size or order, ``J (b, mn, mn)``, ``(I − c_inv·J)⁻¹`` and whether ``J`` was
    computed at this ``Y``, and the inverted Newton scale at ``Y`` (:meth:`_itol`). ``n_fev`` / ``n_fmat`` / ``n_jac`` / ``n_lu`` count batched field calls,
    matrices evaluated (Jacobians included), Jacobians and factorizations (per run)."""

    name = "bdf"
    order = 1  # the loop's controller is only used where the loop itself rejects (sign-det guard)

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool) -> None:
        m, n = field.shape
        if m * n > FD_MAX:
            raise InvalidArgumentError(
                f"integrator='bdf' supports tasks with m·n <= {FD_MAX} (dense finite-difference Jacobian); "
                f"got a {m}×{n} task; use integrator='auto' or 'rosenbrock'")
        self.f, self.rtol, self.atol = field, rtol, atol
        self.spectral_control = spectral_control
        self.newton_tol = max(10 * _EPS / rtol, min(0.03, rtol ** 0.5))
        self.n_fev = self.n_fmat = self.n_jac = self.n_lu = 0
        self.remember_rate = True

    def _jac(self, Y: np.ndarray, F: np.ndarray | None = None) -> np.ndarray:
        self.n_fev += 1
        self.n_jac += Y.shape[0]
        self.n_fmat += Y.shape[0] * (Y.shape[1] * Y.shape[2] + (F is None))
        return fd_jacobian(self.f, Y, F)[0]  # a non-finite J is 0: Newton then fails and h shrinks

    def init(self, Y: np.ndarray) -> StepState:
        e = self.f(Y, full=True)
        self.n_fev += 1
        self.n_fmat += Y.shape[0]
        b, m, n = Y.shape
        D = np.zeros((b, _ND, m, n))
        D[:, 0] = Y
        D[:, 1] = e.F  # at spacing h_D = 1
        J = self._jac(Y, e.F)
        nY = fro(Y)
        return StepState(Y, e.sigma, e.bad, (e.F, e.U, e.Vh, D, np.ones(b), np.ones(b, dtype=np.int64),
                                             np.zeros(b, dtype=np.int64), J, np.zeros_like(J), np.full(b, np.nan),
                                             np.ones(b, dtype=bool), self._itol(e.sigma, nY, (m, n)), nY,
                                             np.full(b, np.nan)))

    # ------------------------------------------------------------------ pieces
    def _norm(self, Z: np.ndarray, U: np.ndarray, Vh: np.ndarray, tolm: np.ndarray | None,
              ftol: np.ndarray) -> np.ndarray:
        """The scaled norm of ``Z (s, m, n)``: Frobenius over ``ftol``, and with ``tolm`` also the
        componentwise one in the basis ``U, Vh`` (the max of the two)."""
        zn = fro(Z)
        r = np.where(zn == 0, 0.0, zn / ftol)
        if tolm is not None:
            r = np.maximum(r, componentwise(Z, U, Vh, tolm))
        return r

    def _factor(self, J: np.ndarray, Minv: np.ndarray, cinv: np.ndarray, c: np.ndarray, rows) -> None:
        """``Minv[rows] = (I − c·J)⁻¹``, in place (``rows`` an index array or ``slice(None)``)."""
        Mx = -c[rows][:, None, None] * J[rows]
        d = Mx.shape[-1]
        Mx += np.eye(d)
        ok = np.all(np.isfinite(Mx), axis=(-2, -1))
        if not ok.all():
            Mx[~ok] = np.eye(d)
        try:
            Minv[rows] = np.linalg.inv(Mx)
        except np.linalg.LinAlgError:  # a singular I − cJ (J with an eigenvalue 1/c): that run's Newton
            Minv[rows] = np.linalg.pinv(Mx)  # iteration fails and h shrinks (c changes)
        cinv[rows] = c[rows]
        self.n_lu += Mx.shape[0]

    def _newton(self, rows, y_pred, psi, c, Minv, Ut, V, itol, crate):
        """Simplified Newton on runs ``rows`` (scipy's ``solve_bdf_system``, batched): ``(converged,
        n_iter, y, d, f_bad)``, ``y``/``d`` flat ``(s, mn)``. The increments are measured by
        ``max |Uᵀ dy V| · itol`` (the componentwise tolerance at ``y_0``, inverted) or, with ``Ut = None``,
        by ``‖dy‖_F · itol`` (``itol (s,)``)."""
        sel = (lambda a: a) if isinstance(rows, slice) else (lambda a: a[rows])  # noqa: E731
        y = sel(y_pred).copy()
        s, dim = y.shape
        m, n = self.f.shape
        psi, c, Minv, itol = sel(psi), sel(c)[:, None], sel(Minv), sel(itol)
        rate0 = sel(crate)
        crate = rate0.copy()
        if Ut is not None:
            Ut, V = sel(Ut), sel(V)
        d = np.zeros_like(y)
        conv = np.zeros(s, dtype=bool)
        fbad = np.zeros(s, dtype=bool)
        n_iter = np.zeros(s, dtype=np.int64)
        dn_old = np.ones(s)
        it: slice | np.ndarray = slice(None)  # runs still iterating
        tol = self.newton_tol
        for k in range(NEWTON_MAXITER):
            full = isinstance(it, slice)
            g = (lambda a: a) if full else (lambda a: a[it])  # noqa: E731
            ev = self.f(g(y).reshape(-1, m, n))
            self.n_fev += 1
            self.n_fmat += ev.F.shape[0]
            rhs = g(c) * ev.F.reshape(-1, dim) - g(psi) - g(d)
            dy = (g(Minv) @ rhs[:, :, None])[:, :, 0]
            if Ut is None:
                dn = np.sqrt(np.einsum("ij,ij->i", dy, dy)) * g(itol)
            else:
                dn = np.max(np.abs(g(Ut) @ dy.reshape(-1, m, n) @ g(V)) * g(itol), axis=(-2, -1))
            bad_k = ev.bad  # a non-finite dn: not converged, and a non-finite y1 is caught in the step
            if k == 0:
                stop = bad_k
                # converged at once if the remembered rate says the next correction is below tol
                cv = ~bad_k & ((dn == 0) | (self.remember_rate & (rate0 * dn < tol * (1 - rate0))))
            else:  # scipy's tests (rate >= 1 makes the right-hand sides <= 0)
                rate = dn / g(dn_old)
                tr = tol * (1 - rate)
                stop = bad_k | (rate ** (NEWTON_MAXITER - k) * dn > tr)
                cv = ~stop & (rate * dn < tr)
                if full:
                    crate[:] = rate
                else:
                    crate[it] = rate
            if stop.any():
                dy[stop] = 0.0
            if full:
                y += dy
                d += dy
                n_iter[:] = k + 1
                conv[:] = cv
                fbad[:] = bad_k
                dn_old[:] = dn
            else:
                y[it] += dy
                d[it] += dy
                n_iter[it] = k + 1
                conv[it] = cv
                fbad[it] = bad_k
                dn_old[it] = dn
            still = ~stop & ~cv
            if not still.any():
                break
            idx = np.arange(s) if full else it
            it = idx[still]
        return conv, n_iter, y, d, fbad, crate

    def _itol(self, sigma: np.ndarray, nY: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The inverted Newton scale of states with singular values ``sigma``: ``1/spectral_tol`` (a zero
        tolerance, ``Y = 0`` with ``atol = 0``, becomes 1e300), or ``1/(rtol·‖Y‖_F + atol)``."""
        t = spectral_tol(sigma, shape, self.rtol, self.atol) if self.spectral_control else self.rtol * nY + self.atol
        return 1.0 / np.maximum(t, 1e-300)

    # ------------------------------------------------------------------ one step
    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return self._step(state, h)

    def _step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        Y0 = state.Y
        _, U0, Vh0, D, hD, order, neq, J, Minv, cinv, jfresh, itol0, nY0, crate0 = state.cache
        b, m, n = Y0.shape
        dim = m * n
        Dflat = D.reshape(b, _ND, dim)
        factor = h / hD
        changed = factor != 1.0
        if changed.any():  # rescale D to the step asked for (scipy's change_D), per run
            Dn = change_D(Dflat, order, factor)
            Dflat = Dn if changed.all() else np.where(changed[:, None, None], Dn, Dflat)
            neq = np.where(changed, 0, neq)
        D6 = Dflat[:, :_K]
        y_pred = (_T["pred"][order][:, None, :] @ D6)[:, 0]
        psi = (_T["psi"][order][:, None, :] @ D6)[:, 0]
        c = h / ALPHA[order]
        need = c != cinv
        if need.any():  # the remembered Newton rate scales at most like c (conservative when stiff)
            crate0 = np.where(need, crate0 * np.maximum(1.0, c / cinv), crate0)
            self._factor(J, Minv, cinv, c, slice(None) if need.all() else np.flatnonzero(need))
        # contiguous, so that the full batch and its subsets use the same matmul kernels (round-off equal)
        Ut, V = ((np.ascontiguousarray(np.swapaxes(U0, -1, -2)), np.ascontiguousarray(np.swapaxes(Vh0, -1, -2)))
                 if self.spectral_control else (None, None))

        conv, n_iter, y, d, fbad, crate = self._newton(slice(None), y_pred, psi, c, Minv, Ut, V, itol0, crate0)
        retry = ~conv & ~fbad & ~jfresh
        if retry.any():  # stale J: refresh it at Y0 (in place in the input state) and solve again
            r = np.flatnonzero(retry)
            J[r] = self._jac(Y0[r])
            jfresh[r] = True
            self._factor(J, Minv, cinv, c, r)
            # forget the rate of the old J, here and (like J itself) in the input state; a local copy
            # otherwise: whether crate0 is the state's array must not depend on the other runs of the batch
            crate0 = crate0.copy()
            crate0[r] = np.nan
            state.cache[13][r] = np.nan
            cv2, ni2, y2, d2, fb2, cr2 = self._newton(r, y_pred, psi, c, Minv, Ut, V, itol0, crate0)
            conv[r], n_iter[r], y[r], d[r], fbad[r], crate[r] = cv2, ni2, y2, d2, fb2, cr2

        Y1 = y.reshape(b, m, n)
        bad = fbad | ~np.all(np.isfinite(Y1), axis=(-2, -1))
        Ys = np.where(bad[:, None, None], 0.0, Y1) if bad.any() else Y1
        U1, s1, Vh1 = self.f.svd(Ys)
        ec = ERROR_CONST[order][:, None, None]
        err = ec * d.reshape(b, m, n)
        nY1 = fro(Ys)
        ftol1 = self.rtol * np.maximum(nY0, nY1) + self.atol
        tolm1 = spectral_tol(s1, (m, n), self.rtol, self.atol) if self.spectral_control else None
        itol1 = 1.0 / np.maximum(tolm1 if self.spectral_control else self.rtol * nY1 + self.atol, 1e-300)
        en = fro(err)
        basic = np.where(en == 0, 0.0, en / ftol1)
        ratio = basic if tolm1 is None else np.maximum(basic, componentwise(err, U1, Vh1, tolm1))
        bad |= ~np.isfinite(ratio)
        failed = bad | ~conv
        ratio = np.where(failed, np.inf, ratio)
        basic = np.where(failed, np.inf, basic)

        # accepted: update the differences; after k + 1 equal steps choose order and step (scipy)
        Dnew = _T["upd"][order] @ Dflat + _T["upd_d"][order][:, :, None] * d[:, None, :]
        neq1 = neq + 1
        safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + np.maximum(n_iter, 2))
        h_acc = h.copy()
        new_order = order.copy()
        due = (neq1 >= order + 1) & ~failed
        if due.any():
            q = np.flatnonzero(due)
            k = order[q]
            rq = np.arange(q.size)
            km, kp = np.maximum(k - 1, 1), np.minimum(k + 1, MAX_ORDER)
            sub = lambda a: a[q]  # noqa: E731
            e_m = ERROR_CONST[km][:, None] * Dnew[q, k]  # the next-lower order's estimate
            e_p = ERROR_CONST[kp][:, None] * Dnew[q, k + 2]
            E2 = np.concatenate([e_m, e_p]).reshape(2 * q.size, m, n)
            r2 = self._norm(E2, np.concatenate([sub(U1)] * 2), np.concatenate([sub(Vh1)] * 2),
                            None if tolm1 is None else np.concatenate([sub(tolm1)] * 2),
                            np.concatenate([sub(ftol1)] * 2))
            nm = np.where(k > 1, r2[: q.size], np.inf)
            npl = np.where(k < MAX_ORDER, r2[q.size:], np.inf)
            norms = np.stack([nm, ratio[q], npl], axis=1)
            facs = norms ** (-1.0 / (k[:, None] + np.arange(3)[None, :]))
            delta = np.argmax(facs, axis=1) - 1
            new_order[q] = k + delta
            h_acc[q] = h[q] * np.minimum(MAX_FACTOR, safety[q] * facs[rq, delta + 1])
            neq1[q] = 0
        h_rej = h * np.maximum(MIN_FACTOR, safety * ratio ** (-1.0 / (order + 1)))
        h_next = np.where(bad, 0.25 * h, np.where(~conv, 0.5 * h, np.where(ratio <= 1, h_acc, h_rej)))

        F1 = ((psi + d) / c[:, None]).reshape(b, m, n)
        trial = StepState(Y1, s1, bad, (F1, U1, Vh1, Dnew.reshape(b, _ND, m, n), h.copy(), new_order, neq1, J,
                                        Minv, cinv, np.zeros(b, dtype=bool), itol1, nY1, crate))
        return trial, StepInfo(ratio, bad, basic if self.spectral_control else None, h_next=h_next)
