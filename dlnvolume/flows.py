"""Gradient flows of the deep linear network on a matrix completion task (MATH.md §1, §2, §5).

Two ways to train, one result type:

* :func:`end_to_end` integrates the Riemannian gradient flow of the end-to-end matrix,
  ``dX/dt = −Ā_{N,X}(E'(X))`` (``normalized=True``, CMV time ``τ``) or ``dX/dt = −A_{N,X}(E'(X))``
  (``normalized=False``, the time ``t`` of the factor gradient flow), for finite ``N`` and
  ``N = math.inf`` (normalized only), MATH.md §1.3, §2.1, §2.3. ``A_X(G) = U (λ ⊙ UᵀGV) Vᵀ`` with
  one batched SVD per Runge–Kutta stage. Since ``Ā = A/N``, the normalized flow at time ``τ`` equals
  the unnormalized one at ``t = τ/N``.
* :func:`factor_descent` runs plain gradient descent on the factors ``W_N ⋯ W_1`` (MATH.md §1.1),
  batched over runs. With learning rate ``lr`` and ``k`` steps it approximates the factor gradient flow
  at time ``t = lr·k``, which for balanced factors is the **unnormalized** end-to-end flow at ``t``
  (MATH.md §1.3) and therefore the normalized flow at ``τ = N·t``.
* :func:`endpoints` runs many seeded small-initialization runs of either method, in batches, on any
  :class:`concurrent.futures.Executor`, with checkpoints, and returns :class:`Endpoints`.

Loss convention: ``E = task.loss = ½‖P_Ω(X − M)‖²``. The default ``loss_tol`` is
``1e-6·|Ω|/2``, i.e. ``task.mse ≤ 1e-6`` (the Arora et al. 2019 stopping rule, MATH.md §6.2).
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import parallel
from ._integrate import Recorder, integrate_batch
from ._validation import _short, check_depth, check_int, check_matrix, check_positive
from .completion import CompletionTask
from .errors import InvalidArgumentError, InvalidDepthError, NonFiniteError, ShapeError
from .spectral import log_multipliers, scaled_singular_values

__all__ = [
    "Trajectory",
    "FlowResult",
    "Endpoints",
    "end_to_end",
    "factor_descent",
    "endpoints",
    "gaussian_factors",
    "balanced_factors",
    "STATUSES",
]

STATUSES = ("converged", "max_time", "max_steps", "nonfinite", "stalled")
INITS = ("gaussian", "balanced", "orthogonal")
METHODS = ("end_to_end", "factor")
#: ``t_max = inf`` is integrated up to this time (no run of finite speed gets there; see :func:`end_to_end`).
_T_HORIZON = 1e300
_LOG_MAX = 1023 * math.log(2.0)  # largest singular value accepted in X0: 2**1023 ≈ 9e307 (half of float64's max)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class Trajectory:
    """Compact record of a batch of runs.

    Attributes
    ----------
    times, loss : (B, K) arrays
        Time and loss at the logged points: the initial state, every ``log_every``-th step and the
        final state. ``K`` depends only on the arguments (``max_steps // log_every + 2``); rows after a
        run's last record repeat that record.
    sigma : (B, K, k) array
        Singular values (descending) at the logged points, ``k = min(m, n)``.
    crossing_times : (B, k) array
        First time singular value ``i`` exceeds ``threshold`` (``inf`` if never; 0 if already at the
        start); linear interpolation between consecutive checks (every accepted step for
        :func:`end_to_end`, every logged point for :func:`factor_descent`).
    threshold : float
    n_logged : (B,) int array
        Number of real (not repeated) records per run.
    """

    times: np.ndarray
    loss: np.ndarray
    sigma: np.ndarray
    crossing_times: np.ndarray
    threshold: float
    n_logged: np.ndarray


@dataclass(frozen=True, eq=False)
class FlowResult:
    """Result of :func:`end_to_end` or :func:`factor_descent` for a batch of ``B`` runs.

    Attributes
    ----------
    X : (B, m, n) final matrices (the last finite state for status "nonfinite")
    loss : (B,) ``task.loss(X)``
    status : (B,) str array, one of :data:`STATUSES`
    t : (B,) time reached. :func:`end_to_end`: flow time in the chosen normalization.
        :func:`factor_descent`: ``lr × steps``, the time of the *unnormalized* flow (``τ = N t``).
    n_steps : (B,) int, accepted steps (end_to_end) or gradient steps (factor_descent)
    trajectory : :class:`Trajectory`
    balancedness_drift : (B,) max over logged points and ``p`` of ``‖G_p(t) − G_p(0)‖_F``,
        ``G_p = W_{p+1}ᵀW_{p+1} − W_pW_pᵀ`` (MATH.md §1.2); 0 for :func:`end_to_end`.
    X0 : (B, m, n) initial matrices
    depth : int or math.inf
    normalized : bool (time convention of ``t``; ``False`` for factor descent)
    method : "end_to_end" or "factor"
    n_rejected : (B,) int, rejected Runge–Kutta steps (0 for factor descent)
    factors0, factors : tuple of N arrays ``(B, d_p, d_{p−1})`` ordered ``W_1, …, W_N``
        (initial and final factors; ``None`` for end_to_end)
    min_sigma_ratio : (B,) array or None
        end_to_end: smallest ``σ_min/σ_1`` over the accepted states. Below ``~1e-13`` float64 cannot
        resolve ``σ_min`` (nor ``sign det``): rank and ``sign det`` are then no longer guaranteed.
    """

    X: np.ndarray
    loss: np.ndarray
    status: np.ndarray
    t: np.ndarray
    n_steps: np.ndarray
    trajectory: Trajectory
    balancedness_drift: np.ndarray
    X0: np.ndarray | None = None
    depth: float = 1
    normalized: bool = True
    method: str = "end_to_end"
    n_rejected: np.ndarray | None = None
    factors0: tuple[np.ndarray, ...] | None = None
    factors: tuple[np.ndarray, ...] | None = None
    min_sigma_ratio: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Endpoints:
    """Endpoints of many seeded runs (:func:`endpoints`).

    Attributes
    ----------
    X, X0 : (n_runs, m, n) final and initial matrices
    seeds : (n_runs,) uint64; run ``i`` is reproduced from ``np.random.default_rng(seeds[i])``
    status : (n_runs,) str (non-converged runs are kept and flagged, never dropped)
    loss, t : (n_runs,)
    n_steps : (n_runs,) int
    depth : int or math.inf
    method : "end_to_end" or "factor"
    init_scale : float
    task_name : str
    normalized : bool, time convention of ``t``
    min_sigma_ratio : (n_runs,) smallest ``σ_min/σ_1`` along each end_to_end run (NaN for
        method="factor"); values below ~1e-13 mean the rank/sign-det invariants were not resolvable.
    crossing_times : (n_runs, k) first time each singular value exceeds ``threshold`` (inf if never),
        as in :class:`Trajectory` (for method="factor" resolved only at the logged steps: start and end)
    threshold : float
    """

    X: np.ndarray
    X0: np.ndarray
    seeds: np.ndarray
    status: np.ndarray
    loss: np.ndarray
    t: np.ndarray
    depth: float
    method: str
    init_scale: float
    task_name: str
    n_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    normalized: bool = True
    min_sigma_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    crossing_times: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    threshold: float = 0.5

    @property
    def n_runs(self) -> int:
        return int(self.X.shape[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (``.npz``) atomically (temporary file + ``os.replace``)."""
        parallel.atomic_save_npz(
            path,
            X=self.X,
            X0=self.X0,
            seeds=self.seeds,
            status=np.asarray(self.status, dtype=str),
            loss=self.loss,
            t=self.t,
            n_steps=self.n_steps,
            depth=np.float64(self.depth),
            method=np.str_(self.method),
            init_scale=np.float64(self.init_scale),
            task_name=np.str_(self.task_name),
            normalized=np.bool_(self.normalized),
            min_sigma_ratio=self.min_sigma_ratio,
            crossing_times=self.crossing_times,
            threshold=np.float64(self.threshold),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Endpoints":
        """Read a file written by :meth:`save`."""
        d = parallel.load_npz(path)
        depth = float(d["depth"])
        return cls(
            X=d["X"],
            X0=d["X0"],
            seeds=d["seeds"].astype(np.uint64),
            status=d["status"].astype(str),
            loss=d["loss"],
            t=d["t"],
            depth=math.inf if math.isinf(depth) else int(depth),
            method=str(d["method"]),
            init_scale=float(d["init_scale"]),
            task_name=str(d["task_name"]),
            n_steps=d["n_steps"],
            normalized=bool(d["normalized"]),
            min_sigma_ratio=d.get("min_sigma_ratio", np.zeros(0)),
            crossing_times=d.get("crossing_times", np.zeros((0, 0))),
            threshold=float(d.get("threshold", 0.5)),
        )


# --------------------------------------------------------------------------- validation
def _check_task(task: Any) -> CompletionTask:
    if not isinstance(task, CompletionTask):
        raise InvalidArgumentError(
            f"task={_short(task)} has type {type(task).__name__}; expected a dlnvolume.CompletionTask"
        )
    return task


def _check_X0(task: CompletionTask, X0: Any, name: str = "X0") -> np.ndarray:
    X0 = check_matrix(X0, name=name)
    if X0.ndim > 3:
        raise ShapeError(f"{name} has shape {X0.shape}; expected (m, n) or a batch (B, m, n)")
    if X0.shape[-2:] != task.shape:
        raise ShapeError(
            f"{name} has shape {X0.shape}; expected (m, n) = {task.shape} or (B, {task.shape[0]}, {task.shape[1]}) for this task"
        )
    if X0.ndim == 2:
        X0 = X0[None]
    if X0.shape[0] == 0:
        raise ShapeError(f"{name} has shape {X0.shape}; expected at least one matrix")
    # finite entries whose largest singular value overflows float64 (entries ~1e308): the state's
    # spectrum and loss cannot be represented, so there is no finite trajectory to report
    s, log_scale = scaled_singular_values(X0)
    with np.errstate(divide="ignore"):
        log_top = np.log(s[..., 0]) + log_scale
    if np.any(log_top > _LOG_MAX):
        i = int(np.argmax(log_top))
        raise NonFiniteError(
            f"{name}[{i}] has largest singular value exp({float(log_top[i]):.6g}), beyond 2**1023 ≈ 9e307; "
            "expected a matrix whose singular values stay representable in float64 (entries well below 1e307)"
        )
    return X0


def _loss_tol(task: CompletionTask, loss_tol: Any) -> float:
    if loss_tol is None:
        return 1e-6 * task.n_observed / 2.0
    return check_positive(loss_tol, "loss_tol", allow_zero=True)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name}={_short(value)}; expected True or False")
    return bool(value)


def _log_every(log_every: Any, n_log: Any) -> tuple[int, int]:
    le = 1 if log_every is None else check_int(log_every, "log_every", minimum=1)
    return le, check_int(n_log, "n_log", minimum=3)


# --------------------------------------------------------------------------- end-to-end flow
class _EndToEndField:
    """``Y ↦ −Ā_{N,Y}(E'(Y))`` (or ``−A``) on a stack ``(b, m, n)``, with singular values and a bad-row flag."""

    def __init__(self, task: CompletionTask, depth: float, normalized: bool) -> None:
        self.mask = task._observed
        self.values = task.values
        self.shape = task.shape
        self.k = min(task.shape)
        self.depth = depth
        self.normalized = normalized

    def __call__(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bad = ~np.all(np.isfinite(Y), axis=(-2, -1))
        if bad.any():
            Y = np.where(bad[:, None, None], 0.0, Y)
        G = self.mask * (Y - self.values)
        if self.depth == 1:
            s = np.linalg.svd(Y, compute_uv=False)
            return -G, s, bad
        U, s, Vh = np.linalg.svd(Y, full_matrices=True)
        with np.errstate(divide="ignore"):
            ls = np.log(s)
        with np.errstate(over="ignore", invalid="ignore"):
            lam = np.exp(log_multipliers(ls, self.shape, self.k, self.depth, self.normalized))
            H = np.swapaxes(U, -1, -2) @ G @ np.swapaxes(Vh, -1, -2)
            F = -(U @ (lam * H) @ Vh)
        badF = ~np.all(np.isfinite(F), axis=(-2, -1))
        if badF.any():
            F = np.where(badF[:, None, None], 0.0, F)
        return F, s, bad | badF


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
) -> FlowResult:
    """Integrate the end-to-end Riemannian gradient flow ``dX/dt = −Ā_{N,X}(E'(X))`` from ``X0``.

    MATH.md §1.3–§1.4 (flow), §2.1 (multipliers in the SVD basis), §2.3 (``N = ∞``). With
    ``X = U Σ Vᵀ`` (full SVD) the operator acts as ``A_X(G) = U (λ ⊙ UᵀGV) Vᵀ`` where
    ``λ_ij`` are the multipliers of :func:`dlnvolume.spectral.log_multipliers`. The batch is
    integrated together by a Dormand–Prince 5(4) pair with per-run adaptive steps, error measured in
    the Frobenius norm relative to ``‖X‖_F``: on the plateaus of a small initialization the relative
    rate of change is small, so steps grow and a plateau costs few steps.

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
        Per-run error tolerance ``‖err‖_F ≤ rtol·‖X‖_F + atol`` per step.
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
        (``|Δσ_i| ≤ 1e-2·σ_i + 64·eps·σ_1`` per step, so a small σ_i cannot jump through 0) and, for
        square tasks, reject steps that flip ``sign det X0`` while ``σ_min > 256·eps·σ_1``.
        This keeps the invariants of MATH.md §1.5 item 6 (rank, sign det) when a singular value decays
        towards 0 (rank-deficient limits, MATH.md §5.2–5.3); it costs one extra singular-value-only
        SVD per step. ``False``: Frobenius error control only.

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

    out = integrate_batch(
        _EndToEndField(task, N, normalized),
        task.loss,
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
        spectral_control=spectral_control and N != 1,
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
    )


# --------------------------------------------------------------------------- factor initializations
def _widths(task: CompletionTask, N: int, widths: Any) -> list[int]:
    """Layer sizes ``d_0 = n, d_1..d_{N−1}, d_N = m``."""
    m, n = task.shape
    if widths is None:
        hidden = [max(m, n)] * (N - 1)
    else:
        try:
            hidden = list(widths)
        except TypeError:
            raise InvalidArgumentError(f"widths={_short(widths)}; expected a sequence of {N - 1} hidden widths") from None
        if len(hidden) != N - 1:
            raise InvalidArgumentError(
                f"widths={_short(widths)} has {len(hidden)} entries; depth {N} needs {N - 1} hidden widths"
            )
        hidden = [check_int(h, "widths[i]", minimum=1) for h in hidden]
    return [n] + hidden + [m]


def gaussian_factors(
    dims: Sequence[int], init_scale: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Gaussian factors of Arora et al. 2019 (MATH.md §6.2): entries ``N(0, (s^{1/N}/√d_0)²)``.

    ``dims = [d_0 = n, d_1, …, d_N = m]``; returns ``[W_1, …, W_N]``, ``W_p`` of shape
    ``(d_p, d_{p−1})``, drawn in that order from ``rng``. For square tasks with hidden widths ``n``,
    ``‖W_N⋯W_1‖_F ≈ s√n``.
    """
    N = len(dims) - 1
    std = init_scale ** (1.0 / N) / math.sqrt(dims[0])
    return [std * rng.standard_normal((dims[p], dims[p - 1])) for p in range(1, N + 1)]


def _haar(d: int, rng: np.random.Generator) -> np.ndarray:
    Z = rng.standard_normal((d, d))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))


def balanced_factors(X0: np.ndarray, dims: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Exactly balanced factors with product ``X0`` (MATH.md §1.2 recipe).

    ``X0 = Q Σ Rᵀ``; ``W_1 = Q_1 Σ^{1/N} Rᵀ``, ``W_p = Q_p Σ^{1/N} Q_{p−1}ᵀ``, ``W_N = Q Σ^{1/N} Q_{N−1}ᵀ``
    with Haar-random ``Q_p ∈ O(d_p)`` drawn from ``rng`` and ``Σ^{1/N}`` zero-padded to each
    ``d_p × d_{p−1}``; needs hidden widths ``d_p ≥ min(m, n)``. Then ``G_p = 0`` for all ``p``.
    """
    N = len(dims) - 1
    m, n = X0.shape
    k = min(m, n)
    Q, s, Rt = np.linalg.svd(X0, full_matrices=True)
    root = s ** (1.0 / N)
    frames = [Rt.T] + [_haar(dims[p], rng) for p in range(1, N)] + [Q]
    Ws = []
    for p in range(1, N + 1):
        D = np.zeros((dims[p], dims[p - 1]))
        D[np.arange(k), np.arange(k)] = root
        Ws.append(frames[p] @ D @ frames[p - 1].T)
    return Ws


def _init_factors(
    init: str, dims: list[int], init_scale: float, X0: np.ndarray | None, seeds: np.ndarray
) -> list[np.ndarray]:
    """Per-run initial factors, run ``i`` drawn from ``default_rng(seeds[i])``; stacked ``(B, d_p, d_{p−1})``."""
    N = len(dims) - 1
    m, n = dims[-1], dims[0]
    per_run = []
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        if init == "gaussian":
            Ws = gaussian_factors(dims, init_scale, rng)
        elif init == "orthogonal":
            k = min(m, n)
            A = _haar(m, rng)[:, :k] @ _haar(n, rng)[:k, :]
            Ws = balanced_factors(init_scale * A, dims, rng)
        else:  # balanced
            assert X0 is not None
            Ws = balanced_factors(X0[i], dims, rng)
        per_run.append(Ws)
    return [np.stack([Ws[p] for Ws in per_run]) for p in range(N)]


def _product(Ws: Sequence[np.ndarray]) -> np.ndarray:
    X = Ws[0]
    for W in Ws[1:]:
        X = W @ X
    return X


def _gram_differences(Ws: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``G_p = W_{p+1}ᵀW_{p+1} − W_pW_pᵀ``, ``p = 1..N−1`` (MATH.md §1.2)."""
    T = lambda A: np.swapaxes(A, -1, -2)  # noqa: E731
    return [T(Ws[p]) @ Ws[p] - Ws[p - 1] @ T(Ws[p - 1]) for p in range(1, len(Ws))]


# --------------------------------------------------------------------------- factor descent
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
        raise InvalidArgumentError(f"init={_short(init)}; expected one of {', '.join(map(repr, INITS))}")
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
        source = "initial_factors" if initial_factors is not None else f"init_scale={_short(init_scale)}"
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
            prev, tp = last_sig[g], last_t[g][:, None]
            newly = (sig > threshold) & ~np.isfinite(crossing[g])
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.clip((threshold - prev) / (sig - prev), 0.0, 1.0)
            tc = np.where(prev > threshold, tp, tp + frac * (tl - tp))
            cr = crossing[g]
            cr[newly] = tc[newly]
            crossing[g] = cr
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
    )


# --------------------------------------------------------------------------- many seeded runs
def _run_endpoint_batch(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Worker: one batch of seeded runs (module level, picklable)."""
    task: CompletionTask = job["task"]
    depth = job["depth"]
    seeds = job["seeds"]
    kw = dict(job["flow_kwargs"])
    kw.setdefault("n_log", 3)  # trajectories are not returned by endpoints
    kw.setdefault("log_every", 1 << 40)
    init_depth = job["init_depth"]
    dims = _widths(task, init_depth, job["widths"])
    if job["method"] == "end_to_end":
        factors = _init_factors("gaussian", dims, job["init_scale"], None, seeds)
        X0 = _product(factors)
        res = end_to_end(task, depth, X0, **kw)
    else:
        init = kw.pop("init", "gaussian")
        if init == "balanced":
            # same X0 law (product of Gaussian factors), then balanced factors of that product
            per = []
            for sd in seeds:
                rng = np.random.default_rng(sd)
                Xg = _product(gaussian_factors(dims, job["init_scale"], rng))
                per.append(balanced_factors(Xg, dims, rng))
            factors = [np.stack([w[p] for w in per]) for p in range(len(dims) - 1)]
        else:
            factors = _init_factors(init, dims, job["init_scale"], None, seeds)
        res = factor_descent(task, depth, initial_factors=factors, widths=job["widths"], **kw)
    return {
        "index": np.asarray(job["index"], dtype=np.int64),
        "seeds": np.asarray(seeds, dtype=np.uint64),
        "X": res.X,
        "X0": res.X0,
        "status": res.status.astype(str),
        "loss": res.loss,
        "t": res.t,
        "n_steps": res.n_steps,
        "crossing_times": res.trajectory.crossing_times,
        "min_sigma_ratio": res.min_sigma_ratio if res.min_sigma_ratio is not None else np.full(len(seeds), np.nan),
    }


def endpoints(
    task: CompletionTask,
    depth: float,
    n_runs: int,
    init_scale: float,
    *,
    method: str = "end_to_end",
    rng: Any = None,
    executor: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    init_depth: int | None = None,
    widths: Sequence[int] | None = None,
    **flow_kwargs: Any,
) -> Endpoints:
    """Endpoints of ``n_runs`` small-initialization runs, each with its own seed, run in batches.

    Run ``i`` gets ``seeds[i] = spawn_seeds(rng, n_runs)[i]`` and draws its initialization from
    ``np.random.default_rng(seeds[i])`` only, so the endpoints do not depend on ``batch_size``,
    ``workers`` or the executor, and the first ``k`` runs of a larger call equal a call with
    ``n_runs = k``.

    **Initialization law.** Both methods start from Gaussian factors as in :func:`factor_descent`'s
    ``init="gaussian"`` (Arora et al. 2019: entries ``N(0, (s^{1/N'}/√n)²)``, hidden widths ``widths``,
    default ``max(m, n)``), with ``N' = init_depth`` (default: ``depth``; ``1`` when ``depth`` is inf,
    i.e. ``X0`` with i.i.d. ``N(0, s²/n)`` entries). For ``method="end_to_end"`` ``X0`` is the product
    of those factors; for ``method="factor"`` the factors themselves are trained (or, with
    ``init="balanced"`` in ``flow_kwargs``, balanced factors of that same product).

    Parameters
    ----------
    task, depth : as in :func:`end_to_end` (``method="factor"`` needs a finite depth)
    n_runs : int >= 1
    init_scale : float > 0
    method : {"end_to_end", "factor"}
    rng : None, int, SeedSequence or Generator
    executor : concurrent.futures.Executor, optional
        Any executor (e.g. a Dask ``client.get_executor()``); default a local process pool with
        ``workers`` processes (in-process for ``workers=1``).
    batch_size : int, optional
        Runs per batch; default ``ceil(n_runs / workers)`` capped at 2048 and at ``2.5e6 / (m·n)``
        (memory of the Runge–Kutta stages). Smaller batches checkpoint more often but cost more: a
        batch runs as long as its slowest run.
    progress : bool
        tqdm bar over batches.
    checkpoint : path, optional
        Folder of per-batch ``.npz`` files written atomically; a rerun with the same arguments (any
        ``n_runs``) reuses batches whose seeds match and recomputes the rest.
    **flow_kwargs
        Passed to :func:`end_to_end` (e.g. ``normalized``, ``t_max``, ``loss_tol``, ``rtol``,
        ``max_steps``) or :func:`factor_descent` (``init``, ``lr``, ``max_steps``, ``loss_tol``, ...).

    Returns
    -------
    Endpoints
        All runs, in seed order; runs that did not converge are kept with their status.

    Notes
    -----
    Performance: each worker process runs a vectorized batch; with several workers on few cores,
    limit BLAS threads (e.g. ``OPENBLAS_NUM_THREADS=1``), otherwise thread oversubscription can make
    the batched SVDs of large matrices many times slower.
    """
    task = _check_task(task)
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidArgumentError(f"method={_short(method)}; expected one of {', '.join(map(repr, METHODS))}")
    normalized = flow_kwargs.get("normalized", True) if method == "end_to_end" else False
    if method == "end_to_end":
        N = check_depth(depth, normalized=_check_bool(normalized, "normalized"))
    else:
        N = check_depth(depth)
        if math.isinf(N):
            raise InvalidDepthError("depth=inf is not possible with method='factor'; expected a finite integer depth >= 1")
    n_runs = check_int(n_runs, "n_runs", minimum=1)
    init_scale = check_positive(init_scale, "init_scale")
    if init_depth is None:
        init_depth = 1 if math.isinf(N) else N
    init_depth = check_int(init_depth, "init_depth", minimum=1)
    if method == "factor" and init_depth != N:
        raise InvalidArgumentError(f"init_depth={init_depth} must equal depth={N} for method='factor'")
    _widths(task, init_depth, widths)  # validate
    for bad in ("X0", "n_runs", "rng", "initial_factors", "widths"):
        if bad in flow_kwargs:
            raise InvalidArgumentError(f"{bad!r} cannot be passed through flow_kwargs of endpoints")
    flow_fn = end_to_end if method == "end_to_end" else factor_descent
    accepted = [p.name for p in inspect.signature(flow_fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("n_runs", "rng", "X0", "initial_factors",
                                                                              "widths", "init_scale")]
    for key in flow_kwargs:
        if key not in accepted:
            raise InvalidArgumentError(
                f"flow_kwargs key {key!r} is not an option of {flow_fn.__name__} (method={method!r}); "
                f"expected some of {', '.join(accepted)}"
            )
    progress = _check_bool(progress, "progress")
    parallel.check_executor(executor)
    if method == "factor":
        init = flow_kwargs.get("init", "gaussian")
        if not isinstance(init, str) or init not in INITS:
            raise InvalidArgumentError(f"init={_short(init)}; expected one of {', '.join(map(repr, INITS))}")
    if workers is not None:
        workers = check_int(workers, "workers", minimum=1)
    n_workers = parallel.executor_workers(executor, workers)
    if batch_size is None:
        # One batch per worker: a batch costs about as much as its slowest run (the integrator's
        # per-step overhead does not shrink with the active set), so fewer, larger batches are faster
        # (1000 2×2 runs at depth 5: 7.3 s as one batch, 8.3 s as two, 14 s as four). Capped so a
        # batch's Runge–Kutta stages stay below ~200 MB and a checkpoint is written at least every
        # 2048 runs.
        m_, n_ = task.shape
        batch_size = max(1, min(math.ceil(n_runs / n_workers), 2048, 2_500_000 // (m_ * n_)))
    batch_size = check_int(batch_size, "batch_size", minimum=1)

    seeds = parallel.spawn_seeds(rng, n_runs)
    batches = parallel.make_batches(n_runs, batch_size)
    jobs = [
        {
            "task": task,
            "depth": N,
            "seeds": seeds[idx],
            "index": idx,
            "init_scale": init_scale,
            "method": method,
            "init_depth": init_depth,
            "widths": None if widths is None else list(widths),
            "flow_kwargs": flow_kwargs,
        }
        for idx in batches
    ]
    meta = {
        "kind": "flows.endpoints",
        "task": task.digest(),
        "depth": str(N),
        "method": method,
        "init_scale": init_scale,
        "init_depth": init_depth,
        "widths": widths,
        "first_seed": int(seeds[0]),
        "flow_kwargs": sorted((k, repr(v)) for k, v in flow_kwargs.items()),
    }
    kwargs = dict(executor=executor, workers=workers, progress=progress, desc=f"flows N={N}", meta=meta)
    results = parallel.run_batches(_run_endpoint_batch, jobs, checkpoint=checkpoint, **kwargs)
    if checkpoint is not None:
        stale = [
            i
            for i, (r, job) in enumerate(zip(results, jobs))
            if r["seeds"].shape != job["seeds"].shape or not np.array_equal(r["seeds"], job["seeds"])
        ]
        if stale:  # batches written by a run with another batch_size / n_runs: recompute them
            folder = Path(checkpoint)
            for i in stale:
                (folder / f"batch-{i:05d}.npz").unlink(missing_ok=True)
            results = parallel.run_batches(_run_endpoint_batch, jobs, checkpoint=checkpoint, **kwargs)

    cat = lambda key: np.concatenate([r[key] for r in results])  # noqa: E731
    return Endpoints(
        X=cat("X"),
        X0=cat("X0"),
        seeds=seeds,
        status=cat("status").astype(str),
        loss=cat("loss"),
        t=cat("t"),
        depth=N,
        method=method,
        init_scale=init_scale,
        task_name=task.name,
        n_steps=cat("n_steps").astype(np.int64),
        normalized=bool(normalized),
        min_sigma_ratio=cat("min_sigma_ratio"),
        crossing_times=cat("crossing_times"),
        threshold=float(flow_kwargs.get("threshold", 0.5)),
    )
