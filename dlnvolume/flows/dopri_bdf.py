"""Per-run switching between :mod:`.dopri5` and :mod:`.bdf` (LSODA's pairing, Petzold 1983, with
Dormand–Prince in place of Adams): the explicit method where it is stable, the variable-order BDF with a
reused Jacobian where the explicit step is stability-limited.

Same stiffness indicator and thresholds as :mod:`.switching` (``h·ρ``, ``ρ = max_ij λ_ij = λ_11`` the
largest multiplier of ``Ā_X``, MATH.md §2.1): a run turns stiff after ``STRIKES`` accepted explicit
steps in a row with ``h·ρ >= STIFF`` and returns to Dormand–Prince after an accepted BDF step with
``h·ρ <= NONSTIFF``, once it has taken ``MIN_STIFF`` BDF steps (the first, at order 1, are short). A
run turning stiff starts BDF afresh at its new state (order 1, a new finite-difference Jacobian:
:meth:`.Bdf.init`); a run turning explicit evaluates the field at its state (the BDF's cached field is
the Newton value, not ``f(Y)``). Where BDF's Newton iteration cannot converge its step collapses,
``h·ρ`` falls below ``NONSTIFF`` and the run continues explicitly: the fallback is the return rule
itself. BDF needs ``m·n <= 64`` (its dense finite-difference Jacobian).

The BDF runs choose their own next step (:attr:`StepInfo.h_next`); the explicit runs leave it to the
loop's controller (``NaN`` in ``h_next``, exponent ``order = 4`` of Dormand–Prince's estimate).
"""

from __future__ import annotations

import math

import numpy as np

from .bdf import Bdf
from .dopri5 import Dopri5
from .field import EndToEndField
from .loop import StepInfo, StepState
from .switching import NONSTIFF, STIFF, STRIKES

#: accepted BDF steps before a run may return to the explicit method (steps on the 6×6 task of issue 11
#: at N = 3 / 10 / 100 / ∞ with 0: —, 10: 321 / 758 / 848 / 860, 30: 439 / 674 / 788 / 785; on a 4×4
#: rank-2 task at N = 10 / ∞: 3266 / 2008 (0), 1164 / 1834 (10), 1014 / 1354 (30 and 100))
MIN_STIFF = 30

__all__ = ["DopriBdf"]


class DopriBdf:
    """Per-run :class:`Dopri5` / :class:`Bdf`; ``cache`` = the :class:`Bdf` cache (stale for explicit
    runs except its first entry, the field at ``Y``) followed by ``mode``: ``1 + j`` (BDF, ``j`` its
    accepted BDF steps, counted up to ``MIN_STIFF``), 0 (explicit) or ``−j`` (explicit, the last ``j``
    accepted steps at ``h·ρ >= STIFF``). Counters ``n_to_stiff``, ``n_to_explicit``: switches of trial
    steps (per run)."""

    name = "dopri-bdf"
    order = 4  # the loop's controller serves the explicit runs (Dormand–Prince's h^5 estimate)

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool) -> None:
        self.f = field
        self.dp = Dopri5(field, rtol, atol, spectral_control)
        self.bdf = Bdf(field, rtol, atol, spectral_control)
        self.n_to_stiff = self.n_to_explicit = 0  # switches (counted per run, on trial steps)

    def rho(self, sigma: np.ndarray) -> np.ndarray:
        """``max_ij λ_ij = λ_11`` from ``σ_1`` (the multipliers increase in both arguments)."""
        N = self.f.depth
        s1 = sigma[:, 0]
        if math.isinf(N):
            return s1 * s1
        lam = s1 ** (2.0 * (N - 1) / N)
        return lam if self.f.normalized else N * lam

    def init(self, Y: np.ndarray) -> StepState:
        e = self.f(Y)
        b = Y.shape[0]
        proto = self.bdf.init(Y[:1])  # shapes of the BDF cache (filled when a run turns stiff)
        cache = [np.zeros((b,) + c.shape[1:], dtype=c.dtype) for c in proto.cache]
        cache[0] = e.F
        return StepState(Y, e.sigma, e.bad, tuple(cache) + (np.zeros(b, dtype=np.int64),))

    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        mode = state.cache[-1]
        stiff = mode >= 1
        b = mode.size
        nc = len(state.cache) - 1
        ratio = np.empty(b)
        basic = np.empty(b)
        h_next = np.full(b, np.nan)
        if not stiff.any():
            parts = [(slice(None), 0)]
        elif stiff.all():
            parts = [(slice(None), 1)]
        else:
            parts = [(np.flatnonzero(~stiff), 0), (np.flatnonzero(stiff), 1)]
        if len(parts) == 1:  # one method for the whole batch (the common case): no partitioning, no copies
            which = parts[0][1]
            if which == 0:
                tr, info = self.dp.step(StepState(state.Y, state.sigma, state.bad, state.cache[:1]), h)
                cache = [tr.cache[0]] + list(state.cache[1:nc])  # BDF entries stay stale (shared)
            else:
                tr, info = self.bdf.step(StepState(state.Y, state.sigma, state.bad, state.cache[:nc]), h)
                cache = list(tr.cache)
                h_next = info.h_next.copy()
            Y, sig, bad = tr.Y, tr.sigma, tr.bad | info.bad
            ratio = info.ratio
            basic = info.ratio_basic if info.ratio_basic is not None else info.ratio
        else:
            Y = np.empty_like(state.Y)
            sig = np.empty_like(state.sigma)
            bad = np.empty_like(state.bad)
            cache = [c.copy() for c in state.cache[:nc]]
            for idx, which in parts:
                if which == 0:
                    sub = StepState(state.Y[idx], state.sigma[idx], state.bad[idx], (state.cache[0][idx],))
                    tr, info = self.dp.step(sub, h[idx])
                    cache[0][idx] = tr.cache[0]
                else:
                    sub = StepState(state.Y[idx], state.sigma[idx], state.bad[idx],
                                    tuple(c[idx] for c in state.cache[:nc]))
                    tr, info = self.bdf.step(sub, h[idx])
                    # BDF refreshes J, its factorization and its rate in the state it is given (in place):
                    # keep that in this state too, for a rejection
                    for j, c in enumerate(sub.cache):
                        state.cache[j][idx] = c
                    for j, c in enumerate(tr.cache):
                        cache[j][idx] = c
                    h_next[idx] = info.h_next
                Y[idx], sig[idx], bad[idx] = tr.Y, tr.sigma, tr.bad | info.bad
                ratio[idx] = info.ratio
                basic[idx] = info.ratio_basic if info.ratio_basic is not None else info.ratio
        hr = h * self.rho(sig)
        strikes = np.where(hr >= STIFF, np.minimum(mode, 0) - 1, 0)
        # a BDF run counts its steps (mode 1 + count) and may return only after MIN_STIFF of them: its
        # first steps, at order 1, are short, and an immediate return made runs alternate between the
        # methods at every step (4×4 task, N = 10: 153 switches each way in 3266 steps)
        back = (hr <= NONSTIFF) & (mode >= 1 + MIN_STIFF)
        new_mode = np.where(stiff, np.where(back, 0, np.minimum(mode + 1, 1 + MIN_STIFF)),
                            np.where(strikes <= -STRIKES, 1, strikes))
        ok = ~bad & (ratio <= 1)
        to_stiff = np.flatnonzero(~stiff & (new_mode >= 1) & ok)
        if to_stiff.size:  # BDF afresh at the new state (order 1, a new Jacobian)
            self.n_to_stiff += to_stiff.size
            st = self.bdf.init(Y[to_stiff])
            for j, c in enumerate(st.cache):
                if len(parts) == 1:  # shared with the input state: copy before writing
                    cache[j] = cache[j].copy()
                cache[j][to_stiff] = c
        to_explicit = np.flatnonzero(stiff & (new_mode == 0) & ok)
        if to_explicit.size:  # Dormand–Prince needs f(Y) itself (BDF caches the Newton value)
            self.n_to_explicit += to_explicit.size
            cache[0] = cache[0].copy()
            cache[0][to_explicit] = self.f(Y[to_explicit]).F
            h_next[to_explicit] = np.nan
        trial = StepState(Y, sig, bad, tuple(cache) + (np.asarray(new_mode, dtype=np.int64),))
        return trial, StepInfo(ratio, bad, basic, h_next=h_next)
