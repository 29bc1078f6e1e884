"""``dlnvolume bench --sections flows-stiff``: the end-to-end flow against scipy's stiff solvers (issue 11).

The same flow, the same ``X0`` and the same stopping rule (``task.mse <= 1e-6``) integrated by
:func:`dlnvolume.flows.end_to_end` (``integrator="auto"``) and by :func:`scipy.integrate.solve_ivp`
with LSODA and BDF (``rtol=1e-6``, scipy's default ``atol``; the operator applied through one SVD per
call, the stop as a terminal event), side by side in one run. Endpoints are compared with a Radau
reference at ``rtol=1e-10, atol=1e-14`` (``rtol=1e-8`` at ``--quick``).

Workloads (issue 11, "What it must show"):

1. the 6×6 rank-2 task ``random_low_rank(6, 6, 2, 12, rng=1)``, ``X0 = 1e-3·N(0,1)/√6``, depths 3, 10,
   100, ∞ (3 and ∞ at ``--quick``): ours vs LSODA and BDF; cost at ∞ and 100 relative to N = 3;
2. 20×20 rank 3, ``|Ω| = 200``, N = ∞: one endpoint (10×10, ``|Ω| = 60`` at ``--quick``);
3. the batched 2×2 CMV run (``diagonal_2x2``, 200 flows, N = 20, init 1e-3; 40 at ``--quick``):
   ``integrator="auto"`` against ``integrator="dopri5"``, corner fractions of both.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

import dlnvolume as dv

from .bench import Row

__all__ = ["bench_flows_stiff", "scipy_flow"]


def scipy_flow(task: Any, depth: float, X0: np.ndarray, method: str, rtol: float, atol: float | None = None,
               normalized: bool = True) -> tuple[np.ndarray, float, int, float]:
    """The flow by ``solve_ivp(method)`` until ``task.mse <= 1e-6``: ``(X_end, seconds, nfev, t_end)``."""
    from scipy.integrate import solve_ivp

    from dlnvolume.spectral import log_multipliers

    m, n = task.shape
    k = min(m, n)
    mask, M = task._observed, task.values
    tol = 1e-6 * task.n_observed / 2

    def f(t: float, y: np.ndarray) -> np.ndarray:
        X = y.reshape(m, n)
        U, s, Vh = np.linalg.svd(X)
        with np.errstate(divide="ignore"):
            lam = np.exp(log_multipliers(np.log(s), (m, n), k, depth, normalized))
        G = mask * (X - M)
        return -(U @ (lam * (U.T @ G @ Vh.T)) @ Vh).ravel()

    def event(t: float, y: np.ndarray) -> float:
        return float(task.loss(y.reshape(m, n))) - tol

    event.terminal = True  # type: ignore[attr-defined]
    kw = {} if atol is None else {"atol": atol}
    t0 = time.perf_counter()
    sol = solve_ivp(f, (0.0, 1e12), X0.ravel(), method=method, rtol=rtol, events=event, **kw)
    return sol.y[:, -1].reshape(m, n), time.perf_counter() - t0, int(sol.nfev), float(sol.t[-1])


def _ours(task: Any, depth: float, X0: np.ndarray, **kw: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = dv.flows.end_to_end(task, depth, X0, max_steps=200_000, **kw)
    return res, time.perf_counter() - t0


def bench_flows_stiff(quick: bool, rng: np.random.Generator) -> list[Row]:
    rows: list[Row] = []
    task = dv.tasks.random_low_rank(6, 6, 2, 12, rng=1)
    X0 = 1e-3 * np.random.default_rng(0).standard_normal((6, 6)) / math.sqrt(6)
    depths = [3, math.inf] if quick else [3, 10, 100, math.inf]
    ref_rtol = 1e-8 if quick else 1e-10
    cost: dict[float, float] = {}
    for N in depths:
        tag = "∞" if math.isinf(N) else str(N)
        Xr, t_ref, nf_ref, T_ref = scipy_flow(task, N, X0, "Radau", ref_rtol, atol=1e-14)
        res, t_ours = _ours(task, N, X0)
        err = float(np.max(np.abs(res.X[0] - Xr)))
        cost[N] = t_ours
        for method in ("LSODA", "BDF"):
            Xs, t_s, nf_s, T_s = scipy_flow(task, N, X0, method, 1e-6)
            err_s = float(np.max(np.abs(Xs - Xr)))
            goal, met = ("faster than LSODA, endpoint to 1e-3", t_ours < t_s and err <= 1e-3) if method == "LSODA" \
                else ("", None)
            rows.append(Row("flows-stiff", f"6×6 N={tag}: {int(res.n_steps[0])} steps ({res.integrator})", t_ours,
                            f"solve_ivp {method} rtol 1e-6 ({nf_s} f-evals)", t_s,
                            f"max|ΔX| vs Radau rtol {ref_rtol:g}: ours {err:.1e}, {method} {err_s:.1e}",
                            goal, met,
                            {"depth": str(N), "steps": int(res.n_steps[0]), "rejected": int(res.n_rejected[0]),
                             "err_ours": err, "err_scipy": err_s, "nfev_scipy": nf_s, "t_end_ours": float(res.t[0]),
                             "t_end_ref": T_ref, "ref_seconds": t_ref}))
    for N in (100, math.inf):
        if N in cost and 3 in cost:
            tag = "∞" if math.isinf(N) else str(N)
            rows.append(Row("flows-stiff", f"6×6 cost N={tag} relative to N=3", cost[N], "ours at N=3", cost[3],
                            f"{cost[N] / cost[3]:.2f}× the N=3 time", "within 3×", cost[N] <= 3 * cost[3]))

    # one endpoint of a larger task at N = inf
    d, r_, n_obs = (10, 2, 60) if quick else (20, 3, 200)
    big = dv.tasks.random_low_rank(d, d, r_, n_obs, rng=2)
    Xb = 1e-3 * np.random.default_rng(1).standard_normal((d, d)) / math.sqrt(d)
    res, t_big = _ours(big, math.inf, Xb)
    rows.append(Row("flows-stiff", f"{d}×{d} rank {r_} |Ω|={n_obs} N=∞: one endpoint, {int(res.n_steps[0])} steps",
                    t_big, "—", None, f"status {res.status[0]}, mse {float(big.mse(res.X[0])):.1e}",
                    "< 10 s", t_big < 10.0, {"steps": int(res.n_steps[0]), "integrator": res.integrator}))

    # the batched 2×2 CMV run
    cmv = dv.tasks.diagonal_2x2()
    n_runs = 40 if quick else 200
    out = {}
    for integ in ("auto", "dopri5"):
        t0 = time.perf_counter()
        ep = dv.flows.endpoints(cmv, 20, n_runs, 1e-3, rng=20231, workers=1, batch_size=n_runs, progress=False,
                                integrator=integ)
        dt = time.perf_counter() - t0
        plus = float(np.mean(ep.X[:, 0, 1] + ep.X[:, 1, 0] > 0))
        out[integ] = (dt, plus, ep)
    (t_a, p_a, ep_a), (t_d, p_d, ep_d) = out["auto"], out["dopri5"]
    se = math.sqrt(max(p_d * (1 - p_d), 1e-12) / n_runs)
    rows.append(Row("flows-stiff", f"2×2 CMV {n_runs} flows N=20 (max {int(ep_a.n_steps.max())} steps)", t_a,
                    f"integrator='dopri5' (max {int(ep_d.n_steps.max())} steps)", t_d,
                    f"corner (+1,+1) fraction {p_a:.3f} vs {p_d:.3f} (±{2 * se:.3f})", "", None,
                    {"frac_auto": p_a, "frac_dopri5": p_d,
                     "converged_auto": int(np.sum(ep_a.status == "converged")),
                     "converged_dopri5": int(np.sum(ep_d.status == "converged"))}))
    return rows
