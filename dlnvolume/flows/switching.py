"""Automatic stiffness switching between :mod:`.dopri5` and :mod:`.rosenbrock`, per run (LSODA's idea,
Petzold 1983, with an explicit/linearly implicit pair instead of Adams/BDF).

The stiffness indicator of a run is ``h·ρ`` with ``ρ = max_ij λ_ij`` the largest multiplier of ``Ā_X``
(MATH.md §2.1), an upper bound of the spectral radius of the frozen-metric Jacobian ``Ā_X∘P_Ω``.
Dormand–Prince is stable for ``h·ρ`` up to about 3.3 on the negative real axis: a run switches to
Rosenbrock after an accepted explicit step with ``h·ρ >= STIFF`` (the step size is stability-limited)
and back to Dormand–Prince after an accepted Rosenbrock step with ``h·ρ <= NONSTIFF`` (an explicit step
of that size is stable and its order 5 makes it cheaper). Each run's step is checked by the error
control of the stepper that took it.
"""

from __future__ import annotations

import numpy as np

from .dopri5 import Dopri5
from .field import EndToEndField
from .loop import StepInfo, StepState
from .rosenbrock import Rosenbrock

__all__ = ["Switching"]

STIFF = 3.2
NONSTIFF = 1.5


class Switching:
    """Per-run choice of :class:`Dopri5` / :class:`Rosenbrock`; ``cache = (F, U, Vh, λ, mode)``
    with ``mode`` 0 (explicit) or 1 (stiff)."""

    name = "auto"
    order = 2  # the loop's controller exponent; refined per run below

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool) -> None:
        self.dp = Dopri5(field, rtol, atol, spectral_control, full=True)
        self.ros = Rosenbrock(field, rtol, atol, spectral_control)

    def init(self, Y: np.ndarray) -> StepState:
        st = self.ros.init(Y)
        return StepState(st.Y, st.sigma, st.bad, st.cache + (np.zeros(Y.shape[0], dtype=np.int64),))

    def _next_mode(self, mode: np.ndarray, h: np.ndarray, lam: np.ndarray) -> np.ndarray:
        hr = h * np.max(lam.reshape(lam.shape[0], -1), axis=1)
        return np.where(mode == 0, (hr >= STIFF).astype(np.int64), (hr > NONSTIFF).astype(np.int64))

    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        mode = state.cache[-1]
        b = mode.size
        if not mode.any():  # every run explicit (the common case): no partitioning
            tr, info = self.dp.step(StepState(state.Y, state.sigma, state.bad, state.cache[:4]), h)
            ratio = np.where(info.ratio > 0, info.ratio ** (3.0 / 5.0), 0.0)
            basic = info.ratio_basic if info.ratio_basic is not None else info.ratio
            new_mode = self._next_mode(mode, h, tr.cache[3])
            return StepState(tr.Y, tr.sigma, tr.bad | info.bad, tr.cache + (new_mode,)), StepInfo(ratio, tr.bad | info.bad, basic)
        Y, sig, bad = state.Y.copy(), state.sigma.copy(), state.bad.copy()
        cache = [c.copy() for c in state.cache]
        ratio = np.zeros(b)
        basic = np.zeros(b)
        for which, stepper in ((0, self.dp), (1, self.ros)):
            idx = np.flatnonzero(mode == which)
            if not idx.size:
                continue
            sub = state.take(idx)
            sub = StepState(sub.Y, sub.sigma, sub.bad, sub.cache[:4])
            tr, info = stepper.step(sub, h[idx])
            Y[idx], sig[idx], bad[idx] = tr.Y, tr.sigma, tr.bad | info.bad
            for j, c in enumerate(tr.cache):
                cache[j][idx] = c
            if which == 1:
                # the explicit stepper's error ratio is for h^5; express it for the loop's h^3
                # controller exponent (same accept test ratio <= 1)
                ratio[idx] = info.ratio
            else:
                ratio[idx] = np.where(info.ratio > 0, info.ratio ** (3.0 / 5.0), 0.0)
            basic[idx] = info.ratio_basic if info.ratio_basic is not None else info.ratio
        cache[-1] = self._next_mode(mode, h, cache[3])
        return StepState(Y, sig, bad, tuple(cache)), StepInfo(ratio, bad, basic)
