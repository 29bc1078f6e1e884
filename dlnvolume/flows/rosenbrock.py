"""Linearly implicit Rosenbrock-W stepper ROS34PW2 for the stiff end-to-end flow.

**Method.** ROS34PW2 of Rang & Angermann (BIT 45:761–787, 2005): 4 stages, order 3 with an embedded
order-2 solution, stiffly accurate, L-stable, and a *W-method* — it keeps its order with any
approximation ``J`` of the Jacobian. Coefficients as tabulated in PETSc (``src/ts/impls/rosw/rosw.c``,
``TSROSWRA34PW2``), in the form ``Y_i = y_0 + h Σ_{j<i} a_ij k_j``,
``(I − hγJ) k_i = f(Y_i) + hJ Σ_{j<i} Γ_ij k_j``, ``y_1 = y_0 + h Σ b_i k_i``; this module uses the
equivalent transformed variables ``u_i = h Σ_{j<=i} Γ_ij k_j`` (Hairer & Wanner II, IV.7 (7.4')), which
need no products with ``J``::

    (I − hγJ) u_i = hγ f(y_0 + Σ_{j<i} α_ij u_j) + γ Σ_{j<i} c_ij u_j,
    α = AΓ⁻¹,  c = diag(1/γ) − Γ⁻¹,  y_1 = y_0 + Σ m_i u_i,  m = bᵀΓ⁻¹,  m̂ = b̂ᵀΓ⁻¹.

**W matrix** (``jacobian``). "fd" (``m·n <= FD_MAX``): the full Jacobian at ``y_0`` by forward
differences, one batched field call of ``m·n`` perturbed matrices, dense ``mn×mn`` inverse. "frozen"
(larger tasks): ``J = −Ā_{y_0} ∘ P_Ω``, the Jacobian with the metric frozen at the step's start (the
derivative of ``Ā`` with respect to ``X`` is dropped; it vanishes with the residual). With
``K = Ā_{y_0}`` (symmetric positive semidefinite on ``R^{m×n}``) and the 0/1 mask ``P``,
``(I + hγ K P) x = b`` reduces to the ``|Ω|×|Ω|`` SPD system ``(I + hγ K_ΩΩ) y = P b`` for ``y = P x``,
then ``x = b − hγ K y``. In the SVD basis ``y_0 = U Σ Vᵀ``, ``K_ΩΩ = T diag(λ) Tᵀ`` with
``T_{(ij),(ab)} = U_ia V_jb`` (MATH.md §2.1 multipliers ``λ``). One batched ``|Ω|×|Ω|`` factorization
per step serves all four stages.

**Error control** (``spectral_control=True``, the default): the error estimate ``E = Σ(m_i − m̂_i)u_i``
is measured in the SVD basis of ``y_1`` component by component,
``max_ij |(UᵀEV)_ij| / (rtol·max(σ_i, σ_j, SV_FLOOR·σ_1) + atol + 64·eps·σ_1) <= 1``: every singular
value and every rotation between two singular directions is resolved relative to its own size, down to
``SV_FLOOR·σ_1 = 1e-4·σ_1``. A small-initialization
flow starts at ``‖X_0‖ ~ 1e-7`` and crawls on plateaus where the small singular values grow by a factor
``e`` per long time interval; a relative (not absolute) control keeps their growth — and so the
transition times — accurate while the stiff, already learned directions impose no step limit. After
30 consecutive rejections the loop falls back to the Frobenius control
``‖E‖_F <= rtol·max(‖y_0‖_F, ‖y_1‖_F) + atol`` (the only one with ``spectral_control=False``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .field import EndToEndField
from .loop import SV_FLOOR, StepInfo, StepState, fro

__all__ = ["Rosenbrock", "ROS34PW2", "fd_jacobian", "spectral_tol", "componentwise"]

_EPS = float(np.finfo(float).eps)
#: finite-difference Jacobian up to this ``m·n`` (one batched field call of ``m·n`` matrices per step);
#: above it the frozen-metric Jacobian ``−Ā_X∘P_Ω`` and its reduced ``|Ω|×|Ω|`` solve
FD_MAX = 64
#: from this many observed entries on, the frozen-metric system is solved by Cholesky factors (per run)
#: instead of a batched explicit inverse
CHOLESKY_MIN = 100

#: ROS34PW2 (Rang & Angermann 2005) as tabulated in PETSc's TSROSWRA34PW2.
_G = 4.3586652150845900e-01
ROS34PW2 = {
    "gamma": _G,
    "A": np.array([
        [0.0, 0.0, 0.0, 0.0],
        [8.7173304301691801e-01, 0.0, 0.0, 0.0],
        [8.4457060015369423e-01, -1.1299064236484185e-01, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ]),
    "Gamma": np.array([
        [_G, 0.0, 0.0, 0.0],
        [-8.7173304301691801e-01, _G, 0.0, 0.0],
        [-9.0338057013044082e-01, 5.4180672388095326e-02, _G, 0.0],
        [2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01, _G],
    ]),
    "b": np.array([2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351020e+00, 4.3586652150845900e-01]),
    "bhat": np.array([3.7810903145819369e-01, -9.6042292212423178e-02, 5.0000000000000000e-01, 2.1793326075422950e-01]),
}


def _transformed(tab: dict) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    gamma = tab["gamma"]
    Gi = np.linalg.inv(tab["Gamma"])
    strict = lambda Z: np.where(np.abs(Z) < 1e-13, 0.0, np.tril(Z, -1))  # noqa: E731  (exact zeros stay zero)
    alpha = strict(tab["A"] @ Gi)
    c = strict(np.diag(np.full(len(Gi), 1.0 / gamma)) - Gi)
    return gamma, alpha, c, tab["b"] @ Gi, (tab["b"] - tab["bhat"]) @ Gi


def fd_jacobian(field: EndToEndField, Y: np.ndarray, F0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The Jacobian ``J (b, mn, mn)`` of ``field`` at ``Y (b, m, n)`` by forward differences, one batched
    field call of the ``m·n`` perturbed matrices (``m·n + 1`` with ``Y`` itself when ``F0``, the field at
    ``Y``, is not given: a difference quotient needs the exact ``F0``), and a bad-row flag. Steps
    ``sqrt(eps)·max(|Y_ij|, rms(Y))``. Shared by :class:`Rosenbrock` and :mod:`.bdf`."""
    b, m, n = Y.shape
    d = m * n
    scale = np.abs(Y).reshape(b, d)
    ref = np.sqrt(np.sum(scale * scale, axis=1, keepdims=True) / d)
    delta = np.sqrt(_EPS) * np.maximum(np.maximum(scale, ref), 1e-300)
    e = d if F0 is not None else d + 1
    Yp = np.repeat(Y.reshape(b, 1, d), e, axis=1)
    idx = np.arange(d)
    Yp[:, idx, idx] += delta
    dl = Yp[:, idx, idx] - Y.reshape(b, d)
    ev = field(Yp.reshape(b * e, m, n))
    Fp = ev.F.reshape(b, e, d)
    F0 = Fp[:, d:, :] if F0 is None else F0.reshape(b, 1, d)
    J = (Fp[:, :d, :] - F0) / dl[:, :, None]  # J[b, j, :] = ∂F/∂y_j
    J = np.swapaxes(J, -1, -2)
    bad = ~np.all(np.isfinite(J), axis=(-2, -1)) | ev.bad.reshape(b, e).any(axis=1)
    return np.where(bad[:, None, None], 0.0, J), bad


def spectral_tol(sigma: np.ndarray, shape: tuple[int, int], rtol: float, atol: float) -> np.ndarray:
    """The componentwise tolerance ``(b, m, n)`` in the SVD basis of a state with singular values
    ``sigma (b, k)``: ``rtol·max(σ_i, σ_j, SV_FLOOR·σ_1) + atol + 64·eps·σ_1`` (module docstring)."""
    m, n = shape
    k = sigma.shape[-1]
    if m == n == k:  # square: no zero padding (fewer array operations at batch size 1)
        w = np.maximum(sigma[..., :, None], sigma[..., None, :])
    else:
        si = np.zeros(sigma.shape[:-1] + (m,))
        sj = np.zeros(sigma.shape[:-1] + (n,))
        si[..., :k] = sigma
        sj[..., :k] = sigma
        w = np.maximum(si[..., :, None], sj[..., None, :])
    return rtol * np.maximum(w, SV_FLOOR * sigma[..., :1, None]) + (atol + 64 * _EPS * sigma[..., :1, None])


def componentwise(err: np.ndarray, U: np.ndarray, Vh: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """``max_ij |(Uᵀ err V)_ij| / tol_ij`` per run (``tol`` from :func:`spectral_tol`; exact zeros count 0,
    a zero tolerance with a nonzero error is ``|E|/1e-300`` (huge or inf), a non-finite error gives a
    non-finite ratio: both callers then reject the step)."""
    Eh = np.swapaxes(U, -1, -2) @ err @ np.swapaxes(Vh, -1, -2)
    with np.errstate(over="ignore"):
        return np.max(np.abs(Eh) / np.maximum(tol, 1e-300), axis=(-2, -1))


class Rosenbrock:
    """Batched ROS34PW2; ``cache = (F(Y), U, Vh, λ)`` at ``Y``.

    ``jacobian``: "fd" (forward differences of the field, one batched call of ``m·n`` perturbed
    matrices per step, dense ``mn×mn`` solves), "frozen" (``−Ā_X∘P_Ω``, reduced ``|Ω|×|Ω|`` solves) or
    "auto" ("fd" for ``m·n <= FD_MAX``). Both are valid W matrices; the finite-difference one is closer
    to the true Jacobian (it includes the derivative of the metric), which made the 6×6 endpoints at
    ``N = ∞`` 40× more accurate at the same tolerance (docs/flows.md).
    """

    name = "rosenbrock"
    order = 2  # the embedded solution: err ∝ h³

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool,
                 jacobian: str = "auto") -> None:
        m, n = field.shape
        self.jacobian = ("fd" if m * n <= FD_MAX else "frozen") if jacobian == "auto" else jacobian
        self.f, self.rtol, self.atol = field, rtol, atol
        self.spectral_control = spectral_control
        self.gamma, self.alpha, self.c, self.m, self.e = _transformed(ROS34PW2)
        rows, cols = np.nonzero(field.mask > 0)
        self.rows, self.cols = rows, cols
        m, n = field.shape
        self.flat = rows * n + cols  # Ω as indices of the flattened m×n matrix

    def init(self, Y: np.ndarray) -> StepState:
        e = self.f(Y, full=True)
        return StepState(Y, e.sigma, e.bad, (e.F, e.U, e.Vh, e.lam))

    # ------------------------------------------------------------------ the linear solves
    def _factor(self, state: StepState, hg: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
        """``T (b, |Ω|, mn)``, ``(I + hγK_ΩΩ)⁻¹ (b, |Ω|, |Ω|)`` (for ``|Ω| >= CHOLESKY_MIN`` a list of
        Cholesky factors instead) and a bad-row flag."""
        _, U, Vh, lam = state.cache[:4]
        b = U.shape[0]
        m, n = self.f.shape
        V = np.swapaxes(Vh, -1, -2)
        T = (U[:, self.rows, :, None] * V[:, self.cols, None, :]).reshape(b, self.rows.size, m * n)
        if self.rows.size >= CHOLESKY_MIN:  # S Sᵀ with S = T√λ: one symmetric rank-k update (BLAS syrk) per run
            S = T * np.sqrt(lam.reshape(b, 1, m * n))
            M = np.stack([Si @ Si.T for Si in S])
        else:
            M = (T * lam.reshape(b, 1, m * n)) @ np.swapaxes(T, -1, -2)
        M *= hg[:, None, None]
        d = np.arange(self.rows.size)
        M[:, d, d] += 1.0
        bad = ~np.isfinite(np.sum(M, axis=(-2, -1)))
        if bad.any():
            M[bad] = np.eye(self.rows.size)
        if self.rows.size < CHOLESKY_MIN:
            return T, np.linalg.inv(M), bad
        # I + hγK_ΩΩ is symmetric positive definite (λ >= 0): one Cholesky factorization per run, a
        # third of the flops of the explicit inverse
        factors = []
        for i in range(b):
            try:
                factors.append(cho_factor(M[i], lower=True, check_finite=False))
            except np.linalg.LinAlgError:
                bad[i] = True
                factors.append((np.eye(self.rows.size), True))
        return T, factors, bad

    def _solve(self, state: StepState, hg: np.ndarray, T: np.ndarray, Minv: Any, rhs: np.ndarray) -> np.ndarray:
        """``x`` with ``(I + hγ K P) x = rhs``."""
        _, U, Vh, lam = state.cache[:4]
        b, m, n = rhs.shape
        Pb = rhs.reshape(b, m * n)[:, self.flat]
        if isinstance(Minv, list):  # Cholesky factors
            y = np.stack([cho_solve(c, Pb[i], check_finite=False) for i, c in enumerate(Minv)])
        else:
            y = (Minv @ Pb[:, :, None])[:, :, 0]
        what = (y[:, None, :] @ T)[:, 0, :].reshape(b, m, n)  # Uᵀ (embedded y) V
        Ky = U @ (lam * what) @ Vh
        x = rhs - hg[:, None, None] * Ky
        x.reshape(b, m * n)[:, self.flat] = y  # P x = y exactly (no cancellation in the stiff part)
        return x

    def _fd_factor(self, state: StepState, hg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(I − hγJ)⁻¹`` with the full Jacobian ``J`` at the step's start by forward differences (one
        batched field call of ``m·n`` perturbed matrices)."""
        J, bad = fd_jacobian(self.f, state.Y, state.cache[0])
        d = J.shape[-1]
        M = -hg[:, None, None] * J
        M += np.eye(d)
        bad |= ~np.all(np.isfinite(M), axis=(-2, -1))
        if bad.any():
            M[bad] = np.eye(d)
        return np.linalg.inv(M), bad

    # ------------------------------------------------------------------ one step
    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        y0 = state.Y
        hg = h * self.gamma
        hb = hg[:, None, None]
        if self.jacobian == "fd":
            Minv, bad = self._fd_factor(state, hg)
            b_, m_, n_ = y0.shape
            solve = lambda r: (Minv @ r.reshape(b_, m_ * n_, 1)).reshape(b_, m_, n_)  # noqa: E731
        elif self.rows.size:
            T, Minv, bad = self._factor(state, hg)
            solve = lambda r: self._solve(state, hg, T, Minv, r)  # noqa: E731
        else:  # nothing observed: J = 0
            bad = np.zeros(y0.shape[0], dtype=bool)
            solve = lambda r: r  # noqa: E731
        us: list[np.ndarray] = []
        for i in range(4):
            if i == 0:
                Fi = state.cache[0]
            else:
                Yi = y0.copy()
                for j in range(i):
                    if self.alpha[i, j] != 0.0:
                        Yi += self.alpha[i, j] * us[j]
                ev = self.f(Yi)
                Fi, bad = ev.F, bad | ev.bad
            rhs = hb * Fi
            for j in range(i):
                if self.c[i, j] != 0.0:
                    rhs += (self.gamma * self.c[i, j]) * us[j]
            us.append(solve(rhs))
        y1 = y0.copy()
        err = np.zeros_like(y0)
        for i in range(4):
            y1 += self.m[i] * us[i]
            err += self.e[i] * us[i]
        ev = self.f(y1, full=True)
        bad = bad | ev.bad
        basic_tol = self.rtol * np.maximum(fro(y0), fro(y1)) + self.atol
        en = fro(err)
        with np.errstate(divide="ignore", invalid="ignore"):
            basic = np.where(en == 0, 0.0, en / basic_tol)
        ratio = basic
        if self.spectral_control:
            ratio = np.maximum(basic, componentwise(err, ev.U, ev.Vh,
                                                    spectral_tol(ev.sigma, y1.shape[1:], self.rtol, self.atol)))
        bad = bad | ~np.isfinite(ratio)
        trial = StepState(y1, ev.sigma, bad, (ev.F, ev.U, ev.Vh, ev.lam))
        return trial, StepInfo(np.where(bad, np.inf, ratio), bad, basic if self.spectral_control else None)
