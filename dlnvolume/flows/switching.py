"""Automatic stiffness switching between :mod:`.dopri5` and :mod:`.rosenbrock`, per run (LSODA's idea,
Petzold 1983, with an explicit/linearly implicit pair instead of Adams/BDF).

The stiffness indicator of a run is ``h·ρ`` with ``ρ = max_ij λ_ij`` the largest multiplier of ``Ā_X``
(MATH.md §2.1), an upper bound of the spectral radius of the frozen-metric Jacobian ``Ā_X∘P_Ω``.
Dormand–Prince is stable for ``h·ρ`` up to about 3.3 on the negative real axis. The counting rule is
that of Hairer and Wanner's DOPRI5 code (automatic stiffness detection, Hairer & Wanner II, IV.2): an
accepted explicit step with ``h·ρ >= STIFF`` is a strike, ``RESET = 6`` accepted steps in a row below
the limit clear the strikes, and a run switches to Rosenbrock at its ``STRIKES``-th strike (the step size is
stability-limited for a sustained stretch, not in passing: a Rosenbrock step, accuracy-limited at order
3 and with the finite-difference Jacobian, costs about twice an explicit one). Strikes in a row, the rule
before, never switched a stiff run: at the stability limit the step-size controller oscillates, and on
a diagonal task with a fast component (``μ = (1, 50)``, N = 3 and ∞) accepted steps had ``h·ρ`` between
3.0 and 3.7, 54 % of them at or above 3.2 but never more than 4 in a row, and the run took the 17,898
steps of Dormand–Prince alone at N = ∞ (264 now; docs/flows.md §3.2). Only the counting is theirs:
the indicator stays ``ρ = λ_11`` (their stage-based estimate, tried, switched the CMV plateaus).
A run goes back to Dormand–Prince after an accepted Rosenbrock step with ``h·ρ <= NONSTIFF`` (an explicit
step of that size is stable and its order 5 makes it cheaper). Each run's step is checked by the error
control of the stepper that took it.
"""

from __future__ import annotations

import numpy as np

from .dopri5 import Dopri5
from .field import EndToEndField
from .loop import StepInfo, StepState, step_factor
from .rosenbrock import Rosenbrock

__all__ = ["Switching", "count_strikes", "n_strikes", "strike_counter"]

STIFF = 3.2
NONSTIFF = 1.5
STRIKES = 16
RESET = 6
_Q = 8  # an explicit run's counter is −(_Q·j + q): j strikes since the last reset, q (<= RESET) clear steps in a row


def strike_counter(j: np.ndarray | int, q: np.ndarray | int = 0) -> np.ndarray:
    """The ``mode`` value (``<= 0``) of an explicit run with ``j`` strikes and ``q`` accepted steps in a
    row below the limit since its last strike."""
    return -(_Q * np.asarray(j, dtype=np.int64) + np.minimum(q, RESET))


def n_strikes(counter: np.ndarray) -> np.ndarray:
    """The strikes ``j`` of :func:`strike_counter` values (0 for stiff runs, ``mode >= 1``)."""
    return (-np.minimum(counter, 0)) // _Q


def count_strikes(mode: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """The counter after an accepted explicit step at ``h·ρ = hr`` (module docstring; ``mode >= 1``, a run
    that was stiff, counts from 0). Shared with :mod:`.dopri_bdf`."""
    c = -np.minimum(mode, 0)
    j, q = c // _Q, c % _Q
    at = hr >= STIFF
    q = np.where(at, 0, np.minimum(q + 1, RESET))
    j = np.where(at, j + 1, np.where(q >= RESET, 0, j))
    return -(_Q * j + q)


class Switching:
    """Per-run choice of :class:`Dopri5` / :class:`Rosenbrock`; ``cache = (F, U, Vh, λ, h_ros, mode)``
    with ``mode`` 1 (stiff) or ``<= 0`` (explicit, the strike counter of :func:`strike_counter`) and
    ``h_ros`` the step size the run's last Rosenbrock step proposed for its successor.

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
        return np.where(mode == 1, np.where(hr > NONSTIFF, 1, 0), np.where(n_strikes(strikes) >= STRIKES, 1, strikes))

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
