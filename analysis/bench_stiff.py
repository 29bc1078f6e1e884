"""``dlnvolume bench --sections flows-stiff``: the end-to-end flow against scipy's stiff solvers (issue 11).

The same flow, the same ``X0`` and the same stopping rule (``task.mse <= 1e-6``) integrated by
:func:`dlnvolume.flows.end_to_end` (``integrator="auto"``) and by :func:`scipy.integrate.solve_ivp`
with LSODA and BDF (the operator applied through one SVD per call, the stop as a terminal event), side
by side in one run. Endpoints are compared with a Radau reference at ``rtol=1e-10, atol=1e-14``
(``rtol=1e-8`` at ``--quick``) at each run's own stopping time. The 6×6 times are the minimum of
:data:`REPEAT` runs (one at ``--quick``), for ours and for scipy alike. LSODA runs at the issue's setting
(``rtol=1e-6``, scipy's default ``atol=1e-6``, whose endpoints are off by 5e-3–1e-1 on this task) and at
the loosest tolerance that brings its endpoint within 1e-3 (the goal row).

Workloads (issue 11, "What it must show"):

1. the 6×6 rank-2 task ``random_low_rank(6, 6, 2, 12, rng=1)``, ``X0 = 1e-3·N(0,1)/√6``, depths 3, 10,
   100, ∞ (3 and ∞ at ``--quick``): ours vs LSODA and BDF; cost at ∞ and 100 relative to N = 3;
2. 20×20 rank 3, ``|Ω| = 200``, N = ∞: one endpoint (10×10, ``|Ω| = 60`` at ``--quick``);
3. the batched 2×2 CMV run (``diagonal_2x2``, 200 flows, N = 20, init 1e-3; 40 at ``--quick``):
   ``integrator="auto"`` against ``integrator="dopri5"`` (minimum of :data:`REPEAT` runs each), corner
   fractions of both;
4. on the 6×6 task (where "auto" is ``"dopri-bdf"``, :mod:`dlnvolume.flows.dopri_bdf`) also
   ``integrator="bdf"`` (:mod:`dlnvolume.flows.bdf`, rtol :data:`BDF_RTOL`) and ``integrator="switching"``
   (:mod:`dlnvolume.flows.switching`, the default rtol; "auto" before) against "auto" and against LSODA
   at equal accuracy (:data:`ALTERNATIVES`);
5. on the 6×6 task, LSODA at its equal-accuracy tolerance given ``jac=`` dlnvolume's batched
   finite-difference Jacobian (not through :func:`~dlnvolume.flows.end_to_end`): what LSODA's own core
   gains from the one structure it lacks (docs/flows.md §3.5).
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
               normalized: bool = True, dense_until: float | None = None,
               batched_jac: bool = False) -> tuple[np.ndarray, float, int, float, Any]:
    """The flow by ``solve_ivp(method)`` until ``task.mse <= 1e-6`` (a terminal event; with ``dense_until``
    instead up to that time with dense output): ``(X_end, seconds, nfev, t_end, sol)``. With
    ``batched_jac`` the solver gets ``jac=`` the Jacobian of :func:`dlnvolume.flows.scipy_ivp` (forward
    differences, the ``m·n`` perturbed matrices in one batched field call) instead of making its own ``m·n``
    separate calls; the right-hand side stays this function's own (a researcher's ten lines)."""
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
    kw: dict[str, Any] = {} if atol is None else {"atol": atol}
    if batched_jac:
        kw["jac"] = dv.flows.scipy_ivp(task, depth, normalized=normalized)[1]
    if dense_until is None:
        kw["events"] = event
    else:
        kw["dense_output"] = True
    t0 = time.perf_counter()
    sol = solve_ivp(f, (0.0, 1e12 if dense_until is None else dense_until), X0.ravel(), method=method, rtol=rtol, **kw)
    return sol.y[:, -1].reshape(m, n), time.perf_counter() - t0, int(sol.nfev), float(sol.t[-1]), sol


def _ours(task: Any, depth: float, X0: np.ndarray, **kw: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    res = dv.flows.end_to_end(task, depth, X0, max_steps=200_000, **kw)
    return res, time.perf_counter() - t0


#: the 6×6 runs are timed this many times, the minimum reported (single timings on a shared 2-core
#: machine varied by up to 1.7× between identical runs)
REPEAT = 3


def _best(fn: Any, repeat: int) -> Any:
    """``fn()`` ``repeat`` times; the first result with the minimum time (``fn`` returns ``(..., seconds)``
    as its second item for :func:`_ours`, or the tuple of :func:`scipy_flow`)."""
    outs = [fn() for _ in range(repeat)]
    return min(outs, key=lambda o: o[1])


#: LSODA tolerances tried, loosest first, for the accuracy-matched comparison
LSODA_LADDER = ((1e-6, 1e-9), (1e-7, 1e-12), (1e-8, 1e-14), (1e-9, 1e-15))
#: endpoint accuracy of the comparison (issue 11): max-entry error at the run's own stopping time
ENDPOINT_TOL = 1e-3
#: ``integrator="bdf"`` is run at this tolerance: the loosest of 3e-5, 1e-5, 3e-6, 1e-6 whose 6×6 endpoints
#: were within ENDPOINT_TOL at every depth (3e-5: 1.0e-3 and 1.1e-3 at N = ∞ and 100; docs/flows.md §3.3)
BDF_RTOL = 1e-5
#: the other integrators timed on the 6×6 task, with their tolerances ("auto" is "dopri-bdf" there, also
#: at rtol 1e-5, whose endpoints were within ENDPOINT_TOL at every depth (4e-5…7e-4); "switching", the
#: default before, at the default rtol)
ALTERNATIVES = (("auto", 1e-5), ("bdf", BDF_RTOL), ("switching", 1e-6))


def bench_flows_stiff(quick: bool, rng: np.random.Generator) -> list[Row]:
    """Rows of the section. Every endpoint error is measured against a Radau reference (rtol 1e-10,
    atol 1e-14; 1e-8 at ``--quick``) *at the run's own stopping time* (dense output): the stopping rule
    ``mse <= 1e-6`` is met at different times by different integrators, and near the end ``X`` moves by
    ~1e-3 between them, which is not an integration error. LSODA is run at the issue's setting (rtol 1e-6,
    scipy's default atol 1e-6) and at the loosest tolerance of :data:`LSODA_LADDER` whose endpoint is
    within :data:`ENDPOINT_TOL` of the reference (the goal compares equal accuracy)."""
    rows: list[Row] = []
    task = dv.tasks.random_low_rank(6, 6, 2, 12, rng=1)
    X0 = 1e-3 * np.random.default_rng(0).standard_normal((6, 6)) / math.sqrt(6)
    depths = [3, math.inf] if quick else [3, 10, 100, math.inf]
    ref_rtol = 1e-8 if quick else 1e-10
    cost: dict[float, float] = {}
    cost_alt: dict[tuple[str, float], dict[float, float]] = {}
    for N in depths:
        tag = "∞" if math.isinf(N) else str(N)
        rep = 1 if quick else REPEAT
        res, t_ours = _best(lambda: _ours(task, N, X0), rep)
        runs = {meth: _best(lambda meth=meth: scipy_flow(task, N, X0, meth, 1e-6), rep)
                for meth in ("LSODA", "BDF")}
        ladder = [(rt, at, _best(lambda rt=rt, at=at: scipy_flow(task, N, X0, "LSODA", rt, atol=at), rep))
                  for rt, at in LSODA_LADDER]
        alt = {name: _best(lambda name=name, rt=rt: _ours(task, N, X0, integrator=name, rtol=rt), rep)
               for name, rt in ALTERNATIVES}
        T_max = 1.2 * max([float(res.t[0])] + [float(r.t[0]) for r, _ in alt.values()] + [r[3] for r in runs.values()]
                          + [r[2][3] for r in ladder])
        *_, t_ref, _, _, ref = scipy_flow(task, N, X0, "Radau", ref_rtol, atol=1e-14, dense_until=T_max)

        def err(X: np.ndarray, t: float) -> float:
            return float(np.max(np.abs(X - ref.sol(t).reshape(X.shape))))

        e_ours = err(res.X[0], float(res.t[0]))
        cost[N] = t_ours
        steps = f"{int(res.n_steps[0])} steps ({res.integrator}), max|ΔX| {e_ours:.1e}"
        for method, (Xs, t_s, nf_s, T_s, _) in runs.items():
            e_s = err(Xs, T_s)
            rows.append(Row("flows-stiff", f"6×6 N={tag}: {steps}", t_ours,
                            f"solve_ivp {method} rtol 1e-6, default atol ({nf_s} f-evals)", t_s,
                            f"max|ΔX| at the stop vs Radau rtol {ref_rtol:g}: ours {e_ours:.1e}, {method} {e_s:.1e}",
                            "", None,
                            {"depth": str(N), "steps": int(res.n_steps[0]), "rejected": int(res.n_rejected[0]),
                             "err_ours": e_ours, "err_scipy": e_s, "nfev_scipy": nf_s, "t_end_ours": float(res.t[0]),
                             "t_end_scipy": T_s, "ref_seconds": t_ref}))
        ok = [(rt, at, r) for rt, at, r in ladder if err(r[0], r[3]) <= ENDPOINT_TOL]
        if ok:
            rt, at, (Xs, t_s, nf_s, T_s, _) = ok[0]
            base, e_s = f"LSODA at {ENDPOINT_TOL:g} accuracy: rtol {rt:g}, atol {at:g} ({nf_s} f-evals)", err(Xs, T_s)
            # what LSODA's own core gains from the batched Jacobian (the per-step budget of docs/flows.md §3.5)
            Xj, t_j, nf_j, T_j, sol_j = _best(lambda rt=rt, at=at: scipy_flow(task, N, X0, "LSODA", rt, atol=at,
                                                                           batched_jac=True), rep)
            rows.append(Row("flows-stiff", f"6×6 N={tag}: LSODA rtol {rt:g} with jac= the batched FD Jacobian "
                            f"({nf_j} f-evals, {int(sol_j.njev)} Jacobians)", t_j, base, t_s,
                            f"max|ΔX| at the stop: {err(Xj, T_j):.1e}; not through end_to_end (no loop, no "
                            "spectral control)", "", None,
                            {"depth": str(N), "nfev": nf_j, "njev": int(sol_j.njev), "err": err(Xj, T_j),
                             "steps": len(sol_j.t) - 1, "steps_lsoda": len(ok[0][2][4].t) - 1}))
        else:
            base = f"LSODA: no tolerance down to rtol {LSODA_LADDER[-1][0]:g} reaches {ENDPOINT_TOL:g}"
            t_s, e_s = None, math.nan
        rows.append(Row("flows-stiff", f"6×6 N={tag}: {steps}", t_ours, base, t_s,
                        f"max|ΔX| at the stop: ours {e_ours:.1e}, LSODA {e_s:.1e}",
                        f"faster than LSODA at equal accuracy (≤ {ENDPOINT_TOL:g})",
                        t_s is not None and t_ours < t_s and e_ours <= ENDPOINT_TOL,
                        {"depth": str(N), "err_ours": e_ours, "err_scipy": e_s,
                         "ladder": [(rt_, at_, r[1], err(r[0], r[3])) for rt_, at_, r in ladder]}))
        for (name, rt), (res_a, t_a) in zip(ALTERNATIVES, alt.values()):
            e_a = err(res_a.X[0], float(res_a.t[0]))
            cost_alt.setdefault((name, rt), {})[N] = t_a
            label = f"6×6 N={tag}: integrator='{name}' rtol {rt:g}, {int(res_a.n_steps[0])} steps, max|ΔX| {e_a:.1e}"
            rows.append(Row("flows-stiff", label, t_a, f"integrator='auto' ({int(res.n_steps[0])} steps)", t_ours,
                            f"max|ΔX| at the stop: {name} {e_a:.1e}, auto {e_ours:.1e}",
                            f"faster than auto at ≤ {ENDPOINT_TOL:g}", t_a < t_ours and e_a <= ENDPOINT_TOL,
                            {"depth": str(N), "integrator": name, "rtol": rt, "steps": int(res_a.n_steps[0]),
                             "rejected": int(res_a.n_rejected[0]), "err": e_a, "err_auto": e_ours}))
            rows.append(Row("flows-stiff", label, t_a, base, t_s, f"max|ΔX| at the stop: {name} {e_a:.1e}, LSODA {e_s:.1e}",
                            f"faster than LSODA at equal accuracy (≤ {ENDPOINT_TOL:g})",
                            t_s is not None and t_a < t_s and e_a <= ENDPOINT_TOL,
                            {"depth": str(N), "integrator": name, "err": e_a, "err_scipy": e_s}))
    for (name, rt), c in [(("auto", 1e-6), cost)] + list(cost_alt.items()):
        for N in (100, math.inf):
            if N in c and 3 in c:
                tag = "∞" if math.isinf(N) else str(N)
                rows.append(Row("flows-stiff", f"6×6 cost N={tag} relative to N=3, integrator='{name}' rtol {rt:g}",
                                c[N], f"'{name}' at N=3", c[3], f"{c[N] / c[3]:.2f}× the N=3 time", "within 3×",
                                c[N] <= 3 * c[3]))

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

    def cmv_run(integ: str) -> tuple[Any, float]:
        t0 = time.perf_counter()
        ep = dv.flows.endpoints(cmv, 20, n_runs, 1e-3, rng=20231, workers=1, batch_size=n_runs, progress=False,
                                integrator=integ)
        return ep, time.perf_counter() - t0

    for integ in ("auto", "dopri5"):  # the minimum of REPEAT (a single wall time was off by 1.4× once)
        ep, dt = _best(lambda integ=integ: cmv_run(integ), 1 if quick else REPEAT)
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
