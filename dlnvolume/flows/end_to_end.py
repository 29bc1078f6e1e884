"""The end-to-end flow ``dX/dt = −Ā_{N,X}(E'(X))`` (MATH.md §1.3, §2.1, §2.3): front end over the compiled
integrator (:mod:`.compiled`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..validation import short_repr, check_depth, check_int, check_positive
from ..completion import CompletionTask
from ..errors import InvalidArgumentError
from . import compiled
from ._checks import _check_bool, _check_task, _check_X0, _log_every, _loss_tol
from .results import FlowResult, Trajectory

__all__ = ["end_to_end", "INTEGRATORS", "resolve_integrator"]

#: ``t_max = inf`` is integrated up to this time (no run of finite speed gets there; see :func:`end_to_end`).
_T_HORIZON = 1e300
#: "auto" and "switching" (the name of the per-run switching before it was compiled) are "dopri-bdf-frozen"
#: (or "svd-2x2" on 2×2 tasks)
INTEGRATORS = ("auto", "dopri-bdf-frozen", "dopri-bdf", "switching", "dopri-ros", "svd-2x2", "dopri5", "bdf",
               "rosenbrock")
#: up to this m·n "rosenbrock" uses the finite-difference Jacobian (m·n field calls, a dense LU); above it
#: the frozen-metric W-matrix with its reduced |Ω|×|Ω| solve
FD_MAX = 36
#: "bdf" holds a dense (m·n)×(m·n) Jacobian and its LU: refused above this m·n (41 MB)
STIFF_MAX = 1600


def resolve_integrator(integrator: Any, depth: float = 2, n_observed: int = 0,
                       shape: tuple[int, int] | None = None) -> str:
    """``"auto"`` (and ``"switching"``) → ``"dopri-bdf-frozen"``: the compiled per-run switching between
    Dormand–Prince and BDF (:mod:`dlnvolume.flows.compiled`) whose Newton matrix uses the frozen-metric
    Jacobian ``J = −Ā_X∘P_Ω``, solved through its ``|Ω|×|Ω|`` reduction (docs/flows.md §3.1–3.2).
    ``"dopri-bdf"`` is the same switching with dense finite-difference Jacobians (``m·n`` field
    calls and an ``(m·n)²`` LU each; up to :data:`STIFF_MAX`), ``"dopri-ros"`` Dormand–Prince and the
    frozen-metric ROS34PW2 without BDF: both lost to "dopri-bdf-frozen" on every measured task (8×8 rank 2,
    |Ω| = 24, N = 5, 16 runs: 1.1 s against 3.7 s and 8.8 s; 6×6 at N = ∞, 200 runs: 6.8 s against 10.2 s
    for "dopri-bdf"). ``"dopri5"``, ``"bdf"`` and ``"rosenbrock"`` run one method throughout (same loop,
    same controls; ``"bdf"`` only up to :data:`STIFF_MAX`; ``"rosenbrock"`` frozen-metric above
    :data:`FD_MAX`). On 2×2 tasks at ``N >= 2`` "auto" is ``"svd-2x2"``: the flow in singular-value
    coordinates ``(log σ_1, log σ_2, θ, φ)`` (:mod:`dlnvolume.flows.svd2`), which resolves a ``σ_2`` far
    below ``eps·σ_1``, as deep flows from a small initialization need; its runs that start with
    ``σ_2 = 0`` or ``σ_1 = σ_2`` run "dopri-bdf-frozen"."""
    if not isinstance(integrator, str) or integrator not in INTEGRATORS:
        raise InvalidArgumentError(
            f"integrator={short_repr(integrator)}; expected one of {', '.join(map(repr, INTEGRATORS))}"
        )
    if integrator in ("auto", "switching"):
        if shape == (2, 2) and depth >= 2:
            return "svd-2x2"
        return "dopri-bdf-frozen"
    if integrator == "svd-2x2" and (shape != (2, 2) or depth < 2):
        raise InvalidArgumentError(
            f"integrator='svd-2x2' on a {'?' if shape is None else f'{shape[0]}x{shape[1]}'} task at depth {depth}: "
            "accepted for 2x2 tasks at depth >= 2")
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
    ``λ_ij`` are the multipliers of :func:`dlnvolume.spectral.log_multipliers`. Each run is integrated
    on its own by the compiled integrator of :mod:`dlnvolume.flows.compiled` (numba): per run
    Dormand–Prince 5(4) where it is stable, a variable-order BDF with the frozen-metric Jacobian where the
    flow is stiff (other stiff variants below), all with the same error control and invariant guard
    (``integrator`` below; docs/flows.md). A run's numbers do
    not depend on which runs share its batch.

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
        Per-run local error tolerance per step: ``‖err‖_F ≤ rtol·max(‖X_0‖_F, ‖X_1‖_F) + atol`` and, with
        ``spectral_control``, every component of the error in the SVD basis of the new state below
        ``rtol·max(σ, min(1e-4·σ_1, σ·(σ_1/σ)^(2/N))) + atol + 64·eps·σ_1``, ``σ = max(σ_i, σ_j)`` (each
        singular value and rotation relative to its own size down to ``1e-4·σ_1``, below that to the
        accuracy at which it moves the multipliers of ``A_X`` by ``rtol``; a singular value may change by
        at most a tenth of itself per step; docs/flows.md §4). :func:`endpoints` checks the resulting
        endpoints at ``rtol/100``.
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
        For ``N >= 2``, the componentwise control above and, for square tasks, the rejection of steps
        that flip ``sign det X0`` while ``σ_min > 256·eps·σ_1`` before and after: the invariants of
        MATH.md §1.5 item 6 (rank, sign det) when a singular value decays towards 0 (rank-deficient
        limits, MATH.md §5.2–5.3). ``False``: Frobenius error control only.
    integrator : {"auto", "dopri-bdf-frozen", "dopri-bdf", "switching", "dopri-ros", "svd-2x2", "dopri5", "bdf", "rosenbrock"}, default "auto"
        "auto" (and "switching", its former name) is "dopri-bdf-frozen": per run Dormand–Prince,
        switching to BDF at a sustained stability limit (``h·ρ >= 3.2``, ``ρ = λ_11``) and back to
        Dormand–Prince when the stiff step would be stable explicitly (``h·ρ <= 1.5``), BDF's Newton
        matrix from the frozen-metric Jacobian ``−Ā_X∘P_Ω``; on 2×2 tasks at ``N >= 2``, "svd-2x2"
        (Dormand–Prince in singular-value coordinates). "dopri-bdf" (dense finite-difference Jacobians, and
        ROS34PW2 below ``σ_min = 1e-10·σ_1``) and "dopri-ros" (ROS34PW2 instead of BDF) are the switchings it
        replaced; "dopri5", "bdf", "rosenbrock" use one method throughout (see
        :func:`resolve_integrator`).
        :attr:`FlowResult.integrator` says which one ran.

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
    m, n = task.shape
    if name in ("bdf", "dopri-bdf") and m * n > STIFF_MAX:
        raise InvalidArgumentError(
            f"integrator={integrator!r} on a {m}x{n} task: BDF holds a dense (m·n)×(m·n) Jacobian, accepted "
            f"for m·n <= {STIFF_MAX}; use integrator='auto', 'dopri-bdf-frozen', 'dopri-ros', 'rosenbrock' or 'dopri5'")
    method = "rosenbrock-frozen" if name == "rosenbrock" and m * n > FD_MAX else name
    out, _ = compiled.run(task._observed, task.values, N, normalized, X0, t_max=min(t_max, _T_HORIZON),
                          loss_tol=tol, rtol=rtol, atol=atol, max_steps=max_steps, log_every=log_every,
                          n_log=n_log, threshold=threshold, h0=first_step, spectral=spectral_control and N != 1,
                          sign_guard=spectral_control and N != 1 and m == n, method=method)
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
        unresolved=out.unresolved,
        integrator=name,
    )
