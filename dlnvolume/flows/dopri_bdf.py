"""Per-run choice between :mod:`.dopri5`, :mod:`.bdf` and :mod:`.rosenbrock` (LSODA's idea, Petzold
1983, with Dormand–Prince in place of Adams and two stiff methods): the explicit method where it is
stable; where it is stability-limited, the variable-order BDF with a reused Jacobian while the state is
well-conditioned (``σ_min >= COND·σ_1``), ROS34PW2 (fresh Jacobian every step, error per singular
direction) below.

Stiffness indicator and thresholds of :mod:`.switching` (``h·ρ``, ``ρ = max_ij λ_ij = λ_11``, MATH.md
§2.1): a run turns stiff at its ``STRIKES``-th accepted explicit step with ``h·ρ >= STIFF`` (strikes are
cleared by ``RESET`` steps in a row below the limit, Hairer's DOPRI5 rule) and
returns to Dormand–Prince after an accepted stiff step with ``h·ρ <= NONSTIFF`` (from BDF only once it
has taken ``MIN_STIFF`` BDF steps: its first steps, at order 1, are short). A run entering BDF starts it
afresh (order 1, a new finite-difference Jacobian: :meth:`.Bdf.init`); a run leaving BDF evaluates the
field at its state (BDF caches the Newton value, not ``f(Y)``). A stiff run moves between BDF and
ROS34PW2 with its conditioning (to ROS34PW2 below ``COND``, back to BDF above ``COND_BACK``). Why
``COND``: BDF's Newton iteration fails where ``σ_min/σ_1`` is far below ``√eps`` (the iterates move
``σ_min`` by more than itself; docs/flows.md §3.3–3.4): rejected BDF attempts, by ``σ_min/σ_1`` of the
state, on a rank-1 3×3 task at ``N = ∞`` and a rank-1 4×4 task at ``N = 20`` from Gaussian factors:
52–61 % below 1e-7, 23 % in [1e-7, 1e-5), 4 % above 1e-5; the 6×6 task of issue 11 runs BDF at
6e-6…3e-5.

The BDF runs choose their own next step (:attr:`StepInfo.h_next`); the others leave it NaN (the loop's
controller, exponent ``order = 4`` of Dormand–Prince's estimate; ROS34PW2's ``h³`` ratio is converted).
A run entering ROS34PW2 starts at most at the step its last ROS34PW2 step proposed (``h_max``, as in
:mod:`.switching`). BDF needs ``m·n <= 64`` (its dense finite-difference Jacobian).
"""

from __future__ import annotations

import numpy as np

from .bdf import Bdf
from .dopri5 import Dopri5
from .field import EndToEndField
from .loop import StepInfo, StepState, step_factor
from .rosenbrock import Rosenbrock
from .switching import NONSTIFF, STRIKES, count_strikes, n_strikes

#: accepted BDF steps before a run may return to the explicit method (steps on the 6×6 task of issue 11
#: at N = 3 / 10 / 100 / ∞ with 10: 321 / 758 / 848 / 860, 30: 439 / 674 / 788 / 785; on a 4×4 rank-2
#: task at N = 10 / ∞: 3266 / 2008 (0), 1164 / 1834 (10), 1014 / 1354 (30 and 100))
MIN_STIFF = 30
#: a stiff run uses BDF while ``σ_min >= COND·σ_1``, ROS34PW2 below; back to BDF above ``COND_BACK``
COND = 1e-7
COND_BACK = 1e-6
#: ``mode`` of a run on ROS34PW2
ROS = 1000

__all__ = ["DopriBdf"]


class DopriBdf:
    """Per-run :class:`Dopri5` / :class:`Bdf` / :class:`Rosenbrock`. ``cache`` = the :class:`Bdf` cache
    (its entries 0–2, ``F, U, Vh``, exact at ``Y`` except ``F`` on BDF runs; the rest stale off BDF),
    ``λ`` at ``Y`` (exact off BDF), ``h_ros`` (the step the run's last ROS34PW2 step proposed) and
    ``mode``: ``ROS``, ``1 + j`` (BDF, ``j`` its accepted BDF steps, counted up to ``MIN_STIFF``)
    or ``<= 0`` (explicit, the strike counter of :func:`.switching.strike_counter`). Counters
    ``n_to_stiff``, ``n_to_explicit``, ``n_to_ros``, ``n_to_bdf``: switches of trial steps (per run)."""

    name = "dopri-bdf"
    order = 4  # the loop's controller serves the explicit and ROS34PW2 runs

    def __init__(self, field: EndToEndField, rtol: float, atol: float, spectral_control: bool) -> None:
        self.f = field
        self.dp = Dopri5(field, rtol, atol, spectral_control, full=True)
        self.bdf = Bdf(field, rtol, atol, spectral_control)
        self.ros = Rosenbrock(field, rtol, atol, spectral_control)
        self.n_to_stiff = self.n_to_explicit = self.n_to_ros = self.n_to_bdf = 0

    def init(self, Y: np.ndarray) -> StepState:
        e = self.f(Y, full=True)
        b = Y.shape[0]
        proto = self.bdf.init(Y[:1])  # shapes of the BDF cache (filled when a run turns to BDF)
        cache = [np.zeros((b,) + c.shape[1:], dtype=c.dtype) for c in proto.cache]
        cache[0], cache[1], cache[2] = e.F, e.U, e.Vh
        return StepState(Y, e.sigma, e.bad, tuple(cache) + (e.lam, np.full(b, np.inf), np.zeros(b, dtype=np.int64)))

    # cache layout: 0..nb-1 the BDF cache, then λ, h_ros, mode
    def _run_part(self, which: int, state: StepState, idx, h: np.ndarray, nb: int):
        """One step of runs ``idx`` with method ``which`` (0 explicit, 1 BDF, 2 ROS34PW2): the trial
        ``(Y, σ, bad)``, the cache entries it sets ``{position: array}``, ratio, basic, h_next (NaN: the
        controller's), h_ros."""
        Y, sig, bad = state.Y[idx], state.sigma[idx], state.bad[idx]
        c = state.cache
        if which == 0:
            tr, info = self.dp.step(StepState(Y, sig, bad, (c[0][idx], c[1][idx], c[2][idx], c[nb][idx])), h)
            F, U, Vh, lam = tr.cache
            return tr, {0: F, 1: U, 2: Vh, nb: lam}, info.ratio, info.ratio_basic, np.full(h.size, np.nan), c[nb + 1][idx]
        if which == 2:
            tr, info = self.ros.step(StepState(Y, sig, bad, (c[0][idx], c[1][idx], c[2][idx], c[nb][idx])), h)
            F, U, Vh, lam = tr.cache
            # ROS34PW2's ratio is for h^3: express it for the loop's h^5 controller (same accept test)
            ratio = info.ratio ** (5.0 / 3.0)
            basic = None if info.ratio_basic is None else info.ratio_basic ** (5.0 / 3.0)
            return tr, {0: F, 1: U, 2: Vh, nb: lam}, ratio, basic, np.full(h.size, np.nan), h * step_factor(info.ratio, self.ros.order)
        sub = StepState(Y, sig, bad, tuple(a[idx] for a in c[:nb]))
        tr, info = self.bdf.step(sub, h)
        if not isinstance(idx, slice):  # BDF refreshes J, its factorization and rate in the state it is
            for j, a in enumerate(sub.cache):  # given (in place): keep that here too, for a rejection
                c[j][idx] = a
        return tr, dict(enumerate(tr.cache)), info.ratio, info.ratio_basic, info.h_next, c[nb + 1][idx]

    @staticmethod
    def _next_mode(which, kinds, mode, hr, cond, good, stiff_now, strikes) -> np.ndarray:
        """The mode after this step (class docstring), per method, for the methods present only."""
        new_mode = np.empty(mode.size, dtype=np.int64)
        parts = {
            0: lambda: np.where(stiff_now, np.where(cond, 1, ROS), strikes),
            1: lambda: np.where((hr <= NONSTIFF) & (mode >= 1 + MIN_STIFF), 0,
                                np.where(cond, np.minimum(mode + 1, 1 + MIN_STIFF), ROS)),
            2: lambda: np.where(hr <= NONSTIFF, 0, np.where(good, 1, ROS)),
        }
        if kinds.size == 1:
            return parts[int(kinds[0])]()
        for k in kinds:
            sel = which == k
            new_mode[sel] = parts[int(k)]()[sel]
        return new_mode

    def step(self, state: StepState, h: np.ndarray) -> tuple[StepState, StepInfo]:
        nb = len(state.cache) - 3
        mode = state.cache[-1]
        which = np.where(mode == ROS, 2, np.where(mode >= 1, 1, 0))
        b = mode.size
        kinds = np.unique(which)
        if kinds.size == 1:  # one method for the whole batch (the common case): no partitioning
            tr, setc, ratio, basic, h_next, h_ros = self._run_part(int(kinds[0]), state, slice(None), h, nb)
            Y, sig, bad = tr.Y, tr.sigma, tr.bad
            cache = list(state.cache[:nb + 2])  # entries not set stay those of the state (shared)
            for j, a in setc.items():
                cache[j] = a
            cache[nb + 1] = h_ros
            basic = ratio if basic is None else basic
        else:
            Y, sig, bad = np.empty_like(state.Y), np.empty_like(state.sigma), np.empty_like(state.bad)
            cache = [a.copy() for a in state.cache[:nb + 2]]
            ratio, basic, h_next = np.empty(b), np.empty(b), np.full(b, np.nan)
            for k in kinds:
                idx = np.flatnonzero(which == k)
                tr, setc, r_, b_, hn, hr_ = self._run_part(int(k), state, idx, h[idx], nb)
                Y[idx], sig[idx], bad[idx] = tr.Y, tr.sigma, tr.bad
                for j, a in setc.items():
                    cache[j][idx] = a
                cache[nb + 1][idx] = hr_
                ratio[idx], basic[idx], h_next[idx] = r_, (r_ if b_ is None else b_), hn
        bad = bad | ~np.isfinite(ratio)
        hr = h * self.f.rho(sig)
        ok = ~bad & (ratio <= 1)
        cond = sig[:, -1] >= COND * sig[:, 0]
        good = sig[:, -1] >= COND_BACK * sig[:, 0]
        strikes = count_strikes(mode, hr)
        new_mode = self._next_mode(which, kinds, mode, hr, cond, good, n_strikes(strikes) >= STRIKES, strikes)
        h_max = None
        shared = kinds.size == 1
        to_bdf = np.flatnonzero((which != 1) & (new_mode >= 1) & (new_mode != ROS) & ok)
        if to_bdf.size:  # BDF afresh at the new state (order 1, a new Jacobian)
            self.n_to_bdf += to_bdf.size
            self.n_to_stiff += int(np.sum(which[to_bdf] == 0))
            st = self.bdf.init(Y[to_bdf])
            for j, a in enumerate(st.cache):
                if shared:
                    cache[j] = cache[j].copy()
                cache[j][to_bdf] = a
            h_next[to_bdf] = np.nan
        from_bdf = np.flatnonzero((which == 1) & ((new_mode == 0) | (new_mode == ROS)) & ok)
        if from_bdf.size:  # the others need f(Y), and ROS34PW2 the operator, at Y (BDF caches the Newton value)
            self.n_to_explicit += int(np.sum(new_mode[from_bdf] == 0))
            self.n_to_ros += int(np.sum(new_mode[from_bdf] == ROS))
            e = self.f(Y[from_bdf], full=True)
            for j, a in ((0, e.F), (1, e.U), (2, e.Vh), (nb, e.lam)):
                if shared:
                    cache[j] = cache[j].copy()
                cache[j][from_bdf] = a
            h_next = h_next.copy()
            h_next[from_bdf] = np.nan
        to_ros = (which == 0) & (new_mode == ROS) & ok
        if to_ros.any():  # the first ROS34PW2 step at most the last one's proposal (as in .switching)
            self.n_to_stiff += int(to_ros.sum())
            self.n_to_ros += int(to_ros.sum())
            h_max = np.where(to_ros, cache[nb + 1], np.inf)
        self.n_to_explicit += int(np.sum((which == 2) & (new_mode == 0) & ok))
        trial = StepState(Y, sig, bad, tuple(cache) + (np.asarray(new_mode, dtype=np.int64),))
        return trial, StepInfo(ratio, bad, basic, h_max=h_max, h_next=h_next)
