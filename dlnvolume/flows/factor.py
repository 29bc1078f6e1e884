"""Gradient descent on the factors ``W_N ⋯ W_1`` (MATH.md §1.1), batched over runs.

A fixed-step method on another state (the factors, not ``X``): it shares the result types, the
statuses, the trajectory :class:`~.loop.Recorder` and the crossing-time interpolation
(:func:`~.loop.update_crossings`) with the end-to-end loop, but keeps its own iteration (no step
control, no rejections; singular values only at the logged steps).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .. import parallel
from ..validation import short_repr, check_depth, check_int, check_positive
from ..completion import CompletionTask
from ..errors import InvalidArgumentError, InvalidDepthError, NonFiniteError, ShapeError
from ._checks import _check_task, _check_X0, _log_every, _loss_tol
from .initialization import INITS, _gram_differences, _init_factors, _product, _widths
from .loop import Recorder, update_crossings
from .results import FlowResult, Trajectory

__all__ = ["factor_descent"]


def factor_descent(
    task: CompletionTask,
    depth: int,
    *,
    n_runs: int = 1,
    init: str = "gaussian",
    init_scale: float = 1e-3,
    widths: Sequence[int] | None = None,
    X0: Any = None,
    initial_factors: Sequence[Any] | None = None,
    lr: float = 1e-2,
    max_steps: int = 100_000,
    loss_tol: float | None = None,
    t_max: float = math.inf,
    log_every: int | None = None,
    threshold: float = 0.5,
    n_log: int = 201,
    rng: Any = None,
) -> FlowResult:
    """Gradient descent on the factors ``W_N ⋯ W_1`` of a depth-``N`` linear network (MATH.md §1.1).

    ``W_p ← W_p − lr·∇_{W_p}L`` with ``∇_{W_p}L = (W_N⋯W_{p+1})ᵀ E'(X) (W_{p−1}⋯W_1)ᵀ``,
    ``E = task.loss``, vectorized over ``n_runs`` (stacked factors, batched matmul).

    **Time convention.** ``t = lr × steps`` is the time of the factor gradient flow, i.e. of the
    *unnormalized* end-to-end flow ``dX/dt = −A_{N,X}(E'(X))`` for balanced factors (MATH.md §1.3);
    compare with ``end_to_end(..., normalized=False)`` at ``t`` or with the normalized flow at
    ``τ = N·t``.

    Parameters
    ----------
    task : CompletionTask
    depth : int >= 1 (finite)
    n_runs : int >= 1
        Number of runs (ignored when ``X0`` or ``initial_factors`` carries a batch; must agree if given).
    init : {"gaussian", "balanced", "orthogonal"}
        "gaussian": entries ``N(0, (s^{1/N}/√n)²)``, ``n`` the input dimension (Arora et al. 2019,
        MATH.md §6.2; ``‖X0‖_F ≈ s√n`` for square tasks with hidden widths ``n``). "balanced": exactly
        balanced factors of the given ``X0`` (MATH.md §1.2 recipe, Haar-random ``Q_p``). "orthogonal":
        balanced factors of ``s·Q_L Q_R`` with Haar-random semi-orthogonal ``Q_L (m×k)``, ``Q_R (k×n)``
        (scaled orthogonal factors; ``‖X0‖_F = s√k``).
    init_scale : float > 0
        ``s`` (unused for "balanced" and with ``initial_factors``).
    widths : sequence of N−1 ints, optional
        Hidden widths ``d_1..d_{N−1}``; default ``max(m, n)`` each.
    X0 : (m, n) or (n_runs, m, n), optional
        Required for ``init="balanced"``.
    initial_factors : sequence of N arrays, optional
        ``[W_1, …, W_N]``, each ``(d_p, d_{p−1})`` or ``(B, d_p, d_{p−1})``; overrides ``init``.
    lr : float > 0
    max_steps : int
    loss_tol : float, optional
        Default ``1e-6·|Ω|/2`` (``task.mse ≤ 1e-6``).
    t_max : float, default inf
        Stop when ``lr × steps ≥ t_max``.
    log_every : int, optional
        Initial logging stride (default 1); singular values and balancedness are measured at the
        logged steps. At most ``n_log`` records per run: when full, every other record is dropped and
        the stride doubles.
    threshold : float
        Level for :attr:`Trajectory.crossing_times` (resolution: the logging stride).
    n_log : int >= 3, default 201
    rng : None, int or Generator
        Run ``i`` is initialized from ``default_rng(spawn_seeds(rng, n_runs)[i])``, so it matches run
        ``i`` of :func:`endpoints` with the same ``rng``.

    Returns
    -------
    FlowResult
        With ``factors0``/``factors`` (initial/final factors ``W_1..W_N``), ``normalized=False`` and
        ``balancedness_drift``. Status "nonfinite" keeps the last finite state.
    """
    task = _check_task(task)
    N = check_depth(depth)
    if math.isinf(N):
        raise InvalidDepthError("depth=inf is not possible for factor_descent; expected a finite integer depth >= 1")
    lr = check_positive(lr, "lr")
    max_steps = check_int(max_steps, "max_steps", minimum=1)
    tol = _loss_tol(task, loss_tol)
    t_max = check_positive(t_max, "t_max", allow_inf=True)
    log_every, n_log = _log_every(log_every, n_log)
    threshold = check_positive(threshold, "threshold", allow_zero=True)
    if not isinstance(init, str) or init not in INITS:
        raise InvalidArgumentError(f"init={short_repr(init)}; expected one of {', '.join(map(repr, INITS))}")
    n_runs = check_int(n_runs, "n_runs", minimum=1)
    dims = _widths(task, N, widths)
    m, n = task.shape

    if initial_factors is not None:
        factors0 = _check_factors(initial_factors, dims, N)
    else:
        init_scale = check_positive(init_scale, "init_scale")
        X0b = None
        if init == "balanced":
            if X0 is None:
                raise InvalidArgumentError("init='balanced' needs X0 (the product the balanced factors should have)")
            X0b = _check_X0(task, X0)
            if min(dims[1:-1], default=min(m, n)) < min(m, n):
                raise InvalidArgumentError(
                    f"widths={dims[1:-1]}: init='balanced' needs every hidden width >= min(m, n) = {min(m, n)}"
                )
            if X0b.shape[0] == 1 and n_runs > 1:
                X0b = np.broadcast_to(X0b, (n_runs, m, n))
            elif n_runs not in (1, X0b.shape[0]):
                raise InvalidArgumentError(f"n_runs={n_runs} but X0 holds {X0b.shape[0]} matrices; they must agree")
            n_runs = X0b.shape[0]
        elif X0 is not None:
            raise InvalidArgumentError(f"X0 is only used with init='balanced', not init={init!r}")
        elif init == "orthogonal" and min(dims[1:-1], default=min(m, n)) < min(m, n):
            raise InvalidArgumentError(
                f"widths={dims[1:-1]}: init='orthogonal' needs every hidden width >= min(m, n) = {min(m, n)}"
            )
        seeds = parallel.spawn_seeds(rng, n_runs)
        factors0 = _init_factors(init, dims, init_scale, X0b, seeds)
    with np.errstate(over="ignore", invalid="ignore"):
        finite0 = np.all(np.isfinite(_product(factors0)))
    if not finite0:  # no finite state to return: refuse instead of answering NaN
        source = "initial_factors" if initial_factors is not None else f"init_scale={short_repr(init_scale)}"
        raise NonFiniteError(
            f"{source}: the initial product W_N⋯W_1 overflows float64 (NaN or inf entries); expected initial "
            "factors whose product is finite"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return _descend(task, factors0, lr, max_steps, tol, t_max, log_every, n_log, threshold)


def _check_factors(factors: Sequence[Any], dims: list[int], N: int) -> list[np.ndarray]:
    try:
        Ws = [np.asarray(W, dtype=np.float64) for W in factors]
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"initial_factors could not be converted to float arrays: {exc}") from None
    if len(Ws) != N:
        raise ShapeError(f"initial_factors has {len(Ws)} matrices; depth {N} needs {N} ([W_1, ..., W_N])")
    Ws = [W[None] if W.ndim == 2 else W for W in Ws]
    B = max(W.shape[0] for W in Ws)
    out = []
    for p, W in enumerate(Ws, start=1):
        want = (dims[p], dims[p - 1])
        if W.ndim != 3 or W.shape[1:] != want or W.shape[0] not in (1, B):
            raise ShapeError(
                f"initial_factors[{p - 1}] (W_{p}) has shape {W.shape}; expected {want} or (B, {want[0]}, {want[1]})"
            )
        if not np.all(np.isfinite(W)):
            raise ShapeError(f"initial_factors[{p - 1}] has NaN or infinite entries; expected finite numbers")
        out.append(np.array(np.broadcast_to(W, (B,) + want)))
    return out


def _descend(
    task: CompletionTask,
    factors0: list[np.ndarray],
    lr: float,
    max_steps: int,
    tol: float,
    t_max: float,
    log_every: int,
    n_log: int,
    threshold: float,
) -> FlowResult:
    N = len(factors0)
    B = factors0[0].shape[0]
    m, n = task.shape
    k = min(m, n)
    mask, M = task._observed, task.values
    T = lambda A: np.swapaxes(A, -1, -2)  # noqa: E731

    G0 = _gram_differences(factors0)
    X0 = _product(factors0)
    Xout = np.empty((B, m, n))
    Wout = [np.empty_like(W) for W in factors0]
    loss_out = np.zeros(B)
    steps = np.zeros(B, dtype=np.int64)
    status = np.full(B, "", dtype=object)
    drift = np.zeros(B)
    rec = Recorder(B, n_log, k, log_every)
    crossing = np.full((B, k), np.inf)
    last_sig = np.zeros((B, k))
    last_t = np.zeros(B)
    n_time = t_max / lr - 1e-9  # may overflow to inf for t_max near 1e308 and a small lr
    step_limit = max_steps if not math.isfinite(n_time) else min(max_steps, math.ceil(n_time))

    def measure(g: np.ndarray, Ws: list[np.ndarray], X: np.ndarray, G0g: list[np.ndarray], tl: float) -> np.ndarray:
        """Singular values, crossings and balancedness drift of runs ``g`` at time ``tl``."""
        sig = np.linalg.svd(X, compute_uv=False)
        if tl == 0:
            crossing[g] = np.where(sig > threshold, 0.0, np.inf)
        else:
            update_crossings(crossing, g, threshold, last_t[g], last_sig[g], np.full(g.size, tl), sig)
        last_sig[g] = sig
        last_t[g] = tl
        d = np.zeros(g.size)
        for Gp, G0p in zip(_gram_differences(Ws), G0g):
            d = np.maximum(d, np.sqrt(np.sum((Gp - G0p) ** 2, axis=(-2, -1))))
        drift[g] = np.maximum(drift[g], d)
        return sig

    active = np.arange(B)
    Wa = [W.copy() for W in factors0]
    Wprev = Wa
    Lprev = np.full(B, np.inf)  # a run that is non-finite at step 0 has a finite X0 (checked) and loss inf
    G0a = G0
    s = 0  # common step counter: every active run has taken s steps
    while active.size:
        P = [Wa[0]]
        for W in Wa[1:]:
            P.append(W @ P[-1])
        X = P[-1]
        R = mask * (X - M)
        L = 0.5 * np.sum(R * R, axis=(-2, -1))
        finite = np.isfinite(L) & np.all(np.isfinite(X), axis=(-2, -1))
        new_status = np.full(active.size, "", dtype=object)
        new_status[~finite] = "nonfinite"
        new_status[finite & (L <= tol)] = "converged"
        new_status[(new_status == "") & (s >= step_limit)] = "max_steps" if s >= max_steps else "max_time"
        done = new_status != ""
        tl = lr * s
        due = finite & ((s % rec.stride[active] == 0) | done)
        if due.any():
            sel = np.flatnonzero(due)
            g = active[sel]
            sig = measure(g, [W[sel] for W in Wa], X[sel], [G[sel] for G in G0a], tl)
            run = ~done[sel]
            if run.any():
                rec.add(g[run], np.full(run.sum(), s), np.full(run.sum(), tl), L[sel][run], sig[run])
            if (~run).any():
                rec.final(g[~run], np.full((~run).sum(), tl), L[sel][~run], sig[~run])
        if done.any():
            fin = done & finite
            nf = ~finite
            gf, gn = active[fin], active[nf]
            status[active[done]] = new_status[done]
            for p in range(N):
                Wout[p][gf] = Wa[p][fin]
                Wout[p][gn] = Wprev[p][nf]
            Xout[gf] = X[fin]
            loss_out[gf] = L[fin]
            steps[gf] = s
            if nf.any():  # keep the last finite state (one step back)
                Xn = _product([Wprev[p][nf] for p in range(N)])
                Xout[gn] = Xn
                loss_out[gn] = Lprev[nf]
                steps[gn] = max(s - 1, 0)
                rec.final(gn, np.full(gn.size, lr * max(s - 1, 0)), Lprev[nf], np.linalg.svd(Xn, compute_uv=False))
            keep = ~done
            active = active[keep]
            if not active.size:
                break
            Wa = [W[keep] for W in Wa]
            R, L = R[keep], L[keep]
            P = [Pp[keep] for Pp in P]
            G0a = [G[keep] for G in G0a]
        # ∇_{W_p} L = (W_N⋯W_{p+1})ᵀ R (W_{p−1}⋯W_1)ᵀ, accumulated from the top
        Wnew: list[np.ndarray] = [np.empty(0)] * N
        Tm = R
        for p in range(N - 1, -1, -1):
            grad = Tm @ T(P[p - 1]) if p > 0 else Tm
            Wnew[p] = Wa[p] - lr * grad
            if p > 0:
                Tm = T(Wa[p]) @ Tm
        Wprev, Lprev = Wa, L
        Wa = Wnew
        s += 1

    times, loss_tab, sigma_tab, n_logged = rec.tables()
    traj = Trajectory(times, loss_tab, sigma_tab, crossing, threshold, n_logged)
    return FlowResult(
        X=Xout,
        loss=loss_out,
        status=status.astype(str),
        t=lr * steps.astype(np.float64),
        n_steps=steps,
        trajectory=traj,
        balancedness_drift=drift,
        X0=X0,
        depth=N,
        normalized=False,
        method="factor",
        n_rejected=np.zeros(B, dtype=np.int64),
        factors0=tuple(factors0),
        factors=tuple(Wout),
        integrator="factor",
    )


