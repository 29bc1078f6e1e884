"""Automatic stiffness switching between :mod:`.dopri5` and :mod:`.rosenbrock`, per run (LSODA's idea,
Petzold 1983, with an explicit/linearly implicit pair instead of Adams/BDF).

The stiffness indicator of a run is ``h·ρ`` with ``ρ = max_ij λ_ij`` the largest multiplier of ``Ā_X``
(MATH.md §2.1), an upper bound of the spectral radius of the frozen-metric Jacobian ``Ā_X∘P_Ω``.
Dormand–Prince is stable for ``h·ρ`` up to about 3.3 on the negative real axis: a run switches to
Rosenbrock after ``STRIKES = 16`` accepted explicit steps in a row with ``h·ρ >= STIFF`` (the step
size is stability-limited for a sustained stretch, not in passing: a Rosenbrock step, accuracy-limited
at order 3 and with the finite-difference Jacobian, costs about twice an explicit one, and on the
benchmark tasks the explicit method near its stability limit was the cheaper of the two except on the
long plateaus; steps with 1 / 2 / 4 / 8 / 16 / 32 strikes: 6×6 at ``N = ∞`` 1956 / 1914 / 1890 / 1866 /
1836 / 1791, 20×20 4175 / 3567 / 3242 / 3011 / 2880 / 2694, and from 8 on the batched 2×2 CMV runs never
switch, which made "auto" as fast as "dopri5" there; docs/flows.md)
and back to Dormand–Prince after an accepted Rosenbrock step with ``h·ρ <= NONSTIFF`` (an explicit step
of that size is stable and its order 5 makes it cheaper). Each run's step is checked by the error
control of the stepper that took it.
"""

from __future__ import annotations

import numpy as np

from .dopri5 import Dopri5
from .field import EndToEndField
from .loop import StepInfo, StepState, step_factor
from .rosenbrock import Rosenbrock

__all__ = ["Switching", "count_strikes"]

STIFF = 3.2
NONSTIFF = 1.5
STRIKES = 16


def count_strikes(mode: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """``−j``: the explicit steps in a row at the stability limit (``h·ρ >= STIFF``) including this one
    (``mode <= 0`` carries ``−j`` of the previous step), 0 when this step is below the limit. Shared with
    :mod:`.dopri_bdf`."""
    return np.where(hr >= STIFF, np.minimum(mode, 0) - 1, 0)


class Switching:
    """Per-run choice of :class:`Dopri5` / :class:`Rosenbrock`; ``cache = (F, U, Vh, λ, h_ros, mode)``
    with ``mode`` 1 (stiff), 0 (explicit) or ``−j`` (explicit, the last ``j`` accepted steps at
    ``h·ρ >= STIFF``) and ``h_ros`` the step size the run's last Rosenbrock step
    proposed for its successor.

    A run that turns stiff starts its Rosenbrock steps at ``min(h, h_ros)`` (:attr:`StepInfo.h_max`): the
    explicit step that triggered the switch sits at Dormand–Prince's stability limit and, with the
    order-3 method, had error ratios of 50–300 (median) on the 20×20 task, one rejected step per
    switch."""

    name = "auto"
    order = 2  # the loop's controller exponent; refined per run below

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool) -> None:
        self.dp = Dopri5(field, rtol, atol, spectral_control, full=True)
        self.ros = Rosenbrock(field, rtol, atol, spectral_control)

    def init(self, Y: np.ndarray) -> StepState:
        st = self.ros.init(Y)
        b = Y.shape[0]
        return StepState(st.Y, st.sigma, st.bad, st.cache + (np.full(b, np.inf), np.zeros(b, dtype=np.int64)))

    def _next_mode(self, mode: np.ndarray, h: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        hr = h * self.dp.f.rho(sigma)
        strikes = count_strikes(mode, hr)
        return np.where(mode == 1, np.where(hr > NONSTIFF, 1, 0), np.where(strikes <= -STRIKES, 1, strikes))

    def _part(self, which: int, state: StepState, h: np.ndarray) -> tuple[StepState, np.ndarray, np.ndarray]:
        """One step of the explicit (0) or stiff (1) stepper: the trial state with ``h_ros`` appended,
        the error ratio for the loop's ``h³`` controller and the Frobenius-only ratio."""
        sub = StepState(state.Y, state.sigma, state.bad, state.cache[:4])
        if which == 0:
            tr, info = self.dp.step(sub, h)
            # the explicit stepper's error ratio is for h^5; express it for the loop's h^3 controller
            # exponent (same accept test ratio <= 1)
            ratio = np.where(info.ratio > 0, info.ratio ** (3.0 / 5.0), 0.0)
            h_ros = state.cache[4]
        else:
            tr, info = self.ros.step(sub, h)
            ratio = info.ratio
            h_ros = h * step_factor(ratio, self.ros.order)
        basic = info.ratio_basic if info.ratio_basic is not None else info.ratio
        trial = StepState(tr.Y, tr.sigma, tr.bad | info.bad, tr.cache + (h_ros,))
        return trial, ratio, basic

    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        mode = state.cache[-1]
        stiff = mode == 1
        if not stiff.any() or stiff.all():  # every run in one mode (the common case): no partitioning
            trial, ratio, basic = self._part(int(stiff.all()), state, h)
            Y, sig, bad, cache = trial.Y, trial.sigma, trial.bad, list(trial.cache)
            cache.append(None)
        else:
            Y, sig, bad = state.Y.copy(), state.sigma.copy(), state.bad.copy()
            cache = [c.copy() for c in state.cache]
            ratio = np.zeros(mode.size)
            basic = np.zeros(mode.size)
            for which in (0, 1):
                idx = np.flatnonzero(stiff == which)
                if not idx.size:
                    continue
                tr, ratio[idx], basic[idx] = self._part(which, state.take(idx), h[idx])
                Y[idx], sig[idx], bad[idx] = tr.Y, tr.sigma, tr.bad
                for j, c in enumerate(tr.cache):
                    cache[j][idx] = c
        new_mode = self._next_mode(mode, h, sig)
        cache[-1] = new_mode
        h_max = np.where(~stiff & (new_mode == 1), cache[4], np.inf)
        return StepState(Y, sig, bad, tuple(cache)), StepInfo(ratio, bad, basic, h_max)
