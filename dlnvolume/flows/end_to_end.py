"""The end-to-end flow ``dX/dt = −Ā_{N,X}(E'(X))`` (MATH.md §1.3, §2.1, §2.3): front end over the loop."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..validation import short_repr, check_depth, check_int, check_positive
from ..completion import CompletionTask
from ..errors import InvalidArgumentError
from . import loop
from ._checks import _check_bool, _check_task, _check_X0, _log_every, _loss_tol
from .bdf import Bdf
from .dopri5 import Dopri5
from .dopri_bdf import DopriBdf
from .field import EndToEndField
from .results import FlowResult, Trajectory
from .rosenbrock import FD_MAX, Rosenbrock
from .switching import Switching

__all__ = ["end_to_end", "INTEGRATORS", "STEPPERS", "resolve_integrator"]

#: ``t_max = inf`` is integrated up to this time (no run of finite speed gets there; see :func:`end_to_end`).
_T_HORIZON = 1e300
#: Registry of end-to-end steppers: a new integrator is one module plus one line here.
STEPPERS = {"dopri5": Dopri5, "rosenbrock": Rosenbrock, "switching": Switching, "bdf": Bdf, "dopri-bdf": DopriBdf}
INTEGRATORS = ("auto",) + tuple(STEPPERS)


#: "auto" uses the stiff stepper only up to this many observed entries (its dense ``|Ω|×|Ω|`` solve)
AUTO_MAX_OBSERVED = 400


def resolve_integrator(integrator: Any, depth: float, n_observed: int = 0,
                       shape: tuple[int, int] | None = None) -> str:
    """``"auto"`` → "dopri5" for ``N = 1`` (a linear, non-stiff flow) and for tasks with more than
    :data:`AUTO_MAX_OBSERVED` observed entries (the stiff steppers' dense solves would cost more than
    they save; matrix-free solves are not implemented); otherwise, for ``N >= 2`` (after a transition
    the learned multipliers ``σ^{2(N−1)/N}`` are large while the flow crawls, MATH.md §2.1),
    "dopri-bdf" (per run Dormand–Prince, BDF or ROS34PW2) where BDF's dense Jacobian fits
    (``4 < m·n <= FD_MAX``), and "switching" (Dormand–Prince / ROS34PW2 per run) for 2×2 tasks (no
    CMV run turned stiff: the BDF machinery only cost 6–9 %) and larger ones (docs/flows.md §3.4)."""
    if not isinstance(integrator, str) or integrator not in INTEGRATORS:
        raise InvalidArgumentError(
            f"integrator={short_repr(integrator)}; expected one of {', '.join(map(repr, INTEGRATORS))}"
        )
    if integrator == "auto":
        if depth == 1 or n_observed > AUTO_MAX_OBSERVED:
            return "dopri5"
        size = 0 if shape is None else shape[0] * shape[1]
        return "dopri-bdf" if 4 < size <= FD_MAX else "switching"
    return integrator


def end_to_end(
    task: CompletionTask,
    depth: float,
    X0: Any,
    *,
    normalized: bool = True,
    t_max: float = math.inf,
    loss_tol: float | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
    max_steps: int = 50_000,
    log_every: int | None = None,
    threshold: float = 0.5,
    first_step: float | None = None,
    n_log: int = 201,
    spectral_control: bool = True,
    integrator: str = "auto",
) -> FlowResult:
    """Integrate the end-to-end Riemannian gradient flow ``dX/dt = −Ā_{N,X}(E'(X))`` from ``X0``.

    MATH.md §1.3–§1.4 (flow), §2.1 (multipliers in the SVD basis), §2.3 (``N = ∞``). With
    ``X = U Σ Vᵀ`` (full SVD) the operator acts as ``A_X(G) = U (λ ⊙ UᵀGV) Vᵀ`` where
    ``λ_ij`` are the multipliers of :func:`dlnvolume.spectral.log_multipliers`. The batch is
    integrated together with per-run adaptive steps by a stepper (``integrator``): the linearly
    implicit Rosenbrock-W method ROS34PW2 (:mod:`dlnvolume.flows.rosenbrock`; stiff-stable, its W matrix
    a finite-difference or the frozen-metric Jacobian ``−Ā_X∘P_Ω``), Dormand–Prince 5(4)
    (:mod:`dlnvolume.flows.dopri5`), per-run switching between the two where the explicit step is
    stability-limited (:mod:`dlnvolume.flows.switching`), a variable-order BDF (:mod:`dlnvolume.flows.bdf`)
    or per-run Dormand–Prince / BDF / ROS34PW2 (:mod:`dlnvolume.flows.dopri_bdf`); "auto" picks one
    (``integrator`` below). See
    ``docs/flows.md`` for the schemes and the error control.

    Parameters
    ----------
    task : CompletionTask
        ``E = task.loss`` (``½‖P_Ω(X − M)‖²``).
    depth : int >= 1 or math.inf
    X0 : (m, n) or (B, m, n) array
        Initial matrices; a single matrix gives ``B = 1`` (outputs are not squeezed).
    normalized : bool, default True
        ``True``: ``Ā = A/N`` (CMV time ``τ``, required at ``N = ∞``). ``False``: ``A`` (time of the
        factor gradient flow; :func:`factor_descent` with learning rate ``lr`` approximates it at
        ``t = lr × steps``). The normalized solution at ``τ`` is the unnormalized one at ``t = τ/N``.
    t_max : float, default inf
        ``inf`` is integrated up to ``t = 1e300``: a run at a stationary point (the field is exactly
        0, e.g. ``X0 = 0`` for ``N >= 2``) ends there with status "max_time" (or "max_steps").
    loss_tol : float, optional
        Stop when ``task.loss(X) ≤ loss_tol``. Default ``1e-6·|Ω|/2`` (``task.mse ≤ 1e-6``).
    rtol, atol : float
        Per-run local error tolerance per step. Frobenius ``‖err‖_F ≤ rtol·‖X‖_F + atol``; with
        ``spectral_control`` the Rosenbrock stepper also requires every component in the SVD basis to
        be below ``rtol·max(σ_i, σ_j) + atol`` (each singular value and rotation relative to its own
        size; docs/flows.md).
    max_steps : int
        Accepted steps per run.
    log_every : int, optional
        Initial logging stride in accepted steps (default 1). The trajectory keeps at most ``n_log``
        records per run: when they are used up, every other record is dropped and the stride doubles,
        so the records span the whole run; the final state is always recorded.
    threshold : float, default 0.5
        Level for :attr:`Trajectory.crossing_times`.
    first_step : float, optional
        Initial step size (default: chosen from ``‖X0‖/‖f(X0)‖``).
    n_log : int >= 3, default 201
        ``K``, the number of trajectory slots per run.
    spectral_control : bool, default True
        For ``N >= 2``, also control the error of every singular value relative to itself
        (``|Δσ_i| ≤ 1e-2·σ_i + max(rtol·1e-4, 64·eps)·σ_1`` per step, so a small σ_i cannot jump
        through 0) and, for
        square tasks, reject steps that flip ``sign det X0`` while ``σ_min > 256·eps·σ_1``.
        This keeps the invariants of MATH.md §1.5 item 6 (rank, sign det) when a singular value decays
        towards 0 (rank-deficient limits, MATH.md §5.2–5.3); it costs one extra singular-value-only
        SVD per step. ``False``: Frobenius error control only. (Rosenbrock: the componentwise control
        of ``rtol, atol`` above, at no extra SVD; the sign-det guard is the same.)
    integrator : {"auto", "switching", "rosenbrock", "dopri5", "bdf", "dopri-bdf"}, default "auto"
        "auto" (:func:`resolve_integrator`) is "dopri-bdf" for ``N >= 2`` on tasks with
        ``4 < m·n <= 64``, "switching" for ``N >= 2`` on 2×2 and larger tasks, "dopri5" for ``N = 1``
        or more than 400 observed entries. "bdf": variable-order NDF/BDF with a reused Jacobian
        (:mod:`dlnvolume.flows.bdf`, ``m·n <= 64`` only). "dopri-bdf": per run Dormand–Prince, BDF or
        ROS34PW2 (:mod:`dlnvolume.flows.dopri_bdf`, ``m·n <= 64``): up to 3.5× faster than "switching"
        on well-conditioned small-initialization flows, 1.04–1.33× slower on ill-conditioned ones
        (products of 20 Gaussian factors; mostly runs that reach the step cap under both; docs/flows.md
        §3.4). :attr:`FlowResult.integrator` says which one ran.

    Returns
    -------
    FlowResult
        ``status``: "converged", "max_time", "max_steps", "nonfinite" (trial states stopped being
        finite and the step size underflowed; ``X`` is the last finite state) or "stalled" (the
        error control drove the step size to underflow).

    Notes
    -----
    For ``N >= 2`` the flow preserves rank and ``sign det`` (MATH.md §1.5 item 6); ``N = 1`` is the
    Euclidean gradient flow, whose limit is the projection ``X0 + P_Ω(M − X0)``.

    Examples
    --------
    >>> import numpy as np
    >>> from dlnvolume import tasks
    >>> res = end_to_end(tasks.diagonal_2x2(), 2, 0.01 * np.eye(2), normalized=False, t_max=3.0, rtol=1e-10)
    >>> round(float(res.X[0, 0, 0]), 6)   # μ/(1 + (μ/σ0 − 1)e^{−2μt}), MATH.md §8 item 17
    0.802957
    """
    task = _check_task(task)
    normalized = _check_bool(normalized, "normalized")
    N = check_depth(depth, normalized=normalized)
    X0 = _check_X0(task, X0)
    t_max = check_positive(t_max, "t_max", allow_inf=True)
    tol = _loss_tol(task, loss_tol)
    rtol = check_positive(rtol, "rtol")
    atol = check_positive(atol, "atol", allow_zero=True)
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    log_every, n_log = _log_every(log_every, n_log)
    threshold = check_positive(threshold, "threshold", allow_zero=True)
    spectral_control = _check_bool(spectral_control, "spectral_control")
    if first_step is not None:
        first_step = check_positive(first_step, "first_step")
    name = resolve_integrator(integrator, N, task.n_observed, task.shape)
    field = EndToEndField(task, N, normalized)
    stepper = STEPPERS[name](field, rtol, atol, spectral_control and N != 1)

    out = loop.run(
        stepper,
        task._loss,
        X0,
        # a finite horizon keeps the step size finite where the field vanishes exactly (e.g. X0 = 0 or
        # entries ~1e-300 whose multipliers underflow): with t_max = inf the initial step was inf and
        # the integrator looped forever on inf*0 = NaN trial states
        t_max=min(t_max, _T_HORIZON),
        loss_tol=tol,
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        log_every=log_every,
        n_log=n_log,
        threshold=threshold,
        h0=first_step,
        sign_det=spectral_control and N != 1,
    )
    traj = Trajectory(out.log_t, out.log_loss, out.log_sigma, out.crossing, threshold, out.n_logged)
    return FlowResult(
        X=out.Y,
        loss=out.loss,
        status=out.status,
        t=out.t,
        n_steps=out.n_steps,
        trajectory=traj,
        balancedness_drift=np.zeros(X0.shape[0]),
        X0=X0.copy(),
        depth=N,
        normalized=normalized,
        method="end_to_end",
        n_rejected=out.n_rejected,
        min_sigma_ratio=out.min_sigma_ratio,
        integrator=name,
    )


