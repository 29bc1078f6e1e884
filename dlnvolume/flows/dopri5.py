"""Dormand–Prince 5(4) stepper (explicit; Dormand & Prince 1980, RK5(4)7M, FSAL).

Error control per run in the Frobenius norm, ``‖err‖_F ≤ rtol·max(‖Y‖_F, ‖Y_new‖_F) + atol``, which is
invariant under ``Y ↦ UYVᵀ`` (the flows are equivariant, MATH.md §1.5). With ``spectral_control`` also
``|σ_i(Y5) − σ_i(Y4)| ≤ sv_rtol·σ_i + max(rtol·SV_FLOOR, 64·eps)·σ_1 + atol`` (``Y4`` the embedded
solution), so a small singular value cannot jump through 0. The floor ``rtol·SV_FLOOR·σ_1`` is the one
of the Rosenbrock control; with ``64·eps·σ_1`` alone (before) a run whose ``σ_2/σ_1`` sits near 1e-11 (a
deep product of Gaussian factors, e.g. the CMV 2×2 runs at ``N = 20``) was held to round-off-level
steps: 2.3× more steps, same corner fractions (docs/flows.md). Stability-limited where the learned
singular values make the flow stiff (N >= 3 plateaus): see :mod:`.rosenbrock`.
"""

from __future__ import annotations

import numpy as np

from .field import EndToEndField
from .loop import SV_FLOOR, StepInfo, StepState, fro

__all__ = ["Dopri5"]

_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])
_EPS = float(np.finfo(float).eps)


class Dopri5:
    """Batched Dormand–Prince 5(4); ``cache = (F(Y),)``."""

    name = "dopri5"
    order = 4

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool,
                 sv_rtol: float = 1e-2, full: bool = False) -> None:
        self.full = full  # cache (F, U, Vh, λ) at the new state (for :mod:`.switching`)
        self.f, self.rtol, self.atol = field, rtol, atol
        self.spectral_control, self.sv_rtol = spectral_control, sv_rtol

    def init(self, Y: np.ndarray) -> StepState:
        e = self.f(Y, full=self.full)
        return StepState(Y, e.sigma, e.bad, (e.F, e.U, e.Vh, e.lam) if self.full else (e.F,))

    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        # elementwise sums only: a matrix product over the stacked runs (one BLAS call) rounds differently
        # with the length of the batch, and a run's numbers must not depend on its batch
        Ya, hb = state.Y, h[:, None, None]
        HK = [hb * state.cache[0]]  # h·k_j
        bad = np.zeros(Ya.shape[0], dtype=bool)
        for s in range(1, 7):
            Ys = Ya.copy()
            for a, hk in zip(_A[s], HK):
                if a != 0.0:
                    Ys += a * hk
            e = self.f(Ys, full=self.full and s == 6)
            HK.append(hb * e.F)
            bad |= e.bad
        Ynew, sig_new = Ys, e.sigma  # stage 7 is evaluated at the 5th-order solution (FSAL)
        errm = _E[0] * HK[0]
        for j in range(2, 7):
            errm += _E[j] * HK[j]
        err = fro(errm)
        tol = self.rtol * np.maximum(fro(Ya), fro(Ynew)) + self.atol
        with np.errstate(divide="ignore", invalid="ignore"):
            basic = np.where(err == 0, 0.0, err / tol)
        bad |= ~np.isfinite(basic)
        ratio = basic
        if self.spectral_control:
            ratio = np.maximum(basic, self._spectral_ratio(Ynew, errm, sig_new, bad))
        trial = StepState(Ynew, sig_new, bad, (e.F, e.U, e.Vh, e.lam) if self.full else (e.F,))
        return trial, StepInfo(ratio, bad, basic if self.spectral_control else None)

    def _spectral_ratio(self, Ynew: np.ndarray, errm: np.ndarray, sig_new: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """``max_i |σ_i(Y5) − σ_i(Y4)| / (sv_rtol·σ_i + max(rtol·SV_FLOOR, 64·eps)·σ_1 + atol)``."""
        out = np.zeros(Ynew.shape[0])
        ok = ~bad
        if not ok.any():
            return out
        s5 = sig_new[ok]
        s4 = self.f.svdvals(Ynew[ok] - errm[ok])
        floor = max(self.rtol * SV_FLOOR, 64 * _EPS) * s5[:, :1] + self.atol
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(s5 - s4) / (self.sv_rtol * s5 + floor)
        r = np.where(np.isfinite(r), r, 0.0)
        out[ok] = np.max(r, axis=-1)
        return out
