"""Result types of the flows: :class:`Trajectory`, :class:`FlowResult`, :class:`Endpoints`, :data:`STATUSES`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .. import parallel

__all__ = ["STATUSES", "Trajectory", "FlowResult", "Endpoints", "x0_summary"]

#: Why a run stopped (one value per run). Defined here only; the loop and factor descent use it.
STATUSES = ("converged", "max_time", "max_steps", "nonfinite", "stalled")


def x0_summary(X0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Realized ``‖X0‖_F`` and ``σ_min/σ_max`` of a stack ``(B, m, n)`` (0 for ``X0 = 0``)."""
    s = np.linalg.svd(np.asarray(X0, dtype=np.float64), compute_uv=False)
    top = np.where(s[..., 0] > 0, s[..., 0], 1.0)
    ratio = np.where(s[..., 0] > 0, s[..., -1] / top, 0.0)
    return top * np.sqrt(np.sum((s / top[..., None]) ** 2, axis=-1)) * (s[..., 0] > 0), ratio


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
    integrator : str
        end_to_end: the stepper that ran ("dopri5" or "rosenbrock"); "factor" for factor descent.
    min_sigma_ratio : (B,) array or None
        end_to_end: smallest ``σ_min/σ_1`` over the accepted states. Below ``~1e-13`` float64 cannot
        resolve ``σ_min`` (nor ``sign det``): rank and ``sign det`` are then no longer guaranteed.
    unresolved : (B,) bool array or None
        end_to_end: a singular value went below ``1e-10·σ_1`` in matrix coordinates, where float64 holds
        it only to ``eps·σ_1``, and then grew more than 100-fold or enters the multipliers of ``A_X`` at
        more than 1e-3 (``(σ_i/σ_1)^(2/N)``; always at N = ∞): the endpoint is not determined to 1e-3
        (docs/flows.md §3.4). Never for "svd-2x2" runs.
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
    integrator: str = "dopri5"
    unresolved: np.ndarray | None = None


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
    init_law : str
        How ``X0`` was drawn (:data:`dlnvolume.flows.INIT_LAWS`; files written before the choice existed
        load as "gaussian_factors").
    x0_norm, x0_sigma_ratio : (n_runs,)
        Realized ``‖X0‖_F`` and ``σ_min(X0)/σ_max(X0)`` of every run (computed from ``X0`` when a file
        written before they were recorded is loaded).
    integrator : str
        end_to_end integrator ("bdf"); "factor" for method="factor".
    check_err : (n_runs,)
        The accuracy check (``check_accuracy`` of :func:`dlnvolume.flows.endpoints`): each checked run's
        endpoint change when integrated again at ``rtol/100`` with the same stopping rule (max entry, relative to the
        largest entry; ``inf`` when the tighter run could not get there); NaN for runs not checked.
    accuracy : dict
        ``tol``, ``tighten``, ``check_stride`` and ``rounds``: per round ``rtol``, ``n_checked``,
        ``n_moved``, ``max_err`` (empty when not checked). The last round's runs are the endpoints.
    unresolved : (n_runs,) bool
        :attr:`FlowResult.unresolved` of every run (end_to_end; empty for method="factor" and for files
        written before it existed): part of :attr:`flagged`.
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
    init_law: str = "gaussian_factors"
    x0_norm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    x0_sigma_ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    integrator: str = "dopri5"
    check_err: np.ndarray = field(default_factory=lambda: np.zeros(0))
    accuracy: dict = field(default_factory=dict)
    unresolved: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def n_runs(self) -> int:
        return int(self.X.shape[0])

    @property
    def flagged(self) -> np.ndarray:
        """``(n_runs,)`` bool: runs whose accuracy check moved them by more than the tolerance (docstring of
        :func:`dlnvolume.flows.endpoints`, ``check_accuracy``), and runs :attr:`unresolved` in float64."""
        out = np.zeros(self.n_runs, dtype=bool)
        if self.check_err.shape == (self.n_runs,):
            tol = float(self.accuracy.get("tol", 1e-3))
            with np.errstate(invalid="ignore"):
                out |= np.asarray(self.check_err > tol)
        if self.unresolved.shape == (self.n_runs,):
            out |= self.unresolved
        return out

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
            init_law=np.str_(self.init_law),
            x0_norm=self.x0_norm,
            x0_sigma_ratio=self.x0_sigma_ratio,
            integrator=np.str_(self.integrator),
            check_err=self.check_err,
            accuracy=np.str_(json.dumps(self.accuracy)),
            unresolved=np.asarray(self.unresolved, dtype=bool),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Endpoints":
        """Read a file written by :meth:`save`."""
        d = parallel.load_npz(path)
        depth = float(d["depth"])
        if "x0_norm" in d:
            x0_norm, x0_ratio = d["x0_norm"], d["x0_sigma_ratio"]
        else:  # written before the realized scale was recorded
            x0_norm, x0_ratio = x0_summary(d["X0"])
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
            init_law=str(d.get("init_law", "gaussian_factors")),
            x0_norm=x0_norm,
            x0_sigma_ratio=x0_ratio,
            integrator=str(d.get("integrator", "dopri5")),
            check_err=d.get("check_err", np.zeros(0)),
            accuracy=json.loads(str(d["accuracy"])) if "accuracy" in d else {},
            unresolved=d.get("unresolved", np.zeros(0, dtype=bool)).astype(bool),
        )


