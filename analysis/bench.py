"""``dlnvolume bench``: speed against the alternatives, measured side by side in one run.

Absolute times on shared machines are noise; ratios from one run are not. Every row prints the
workload, our time, the baseline's time, the ratio and an agreement check. Timings are medians over
repeats. ``--quick`` uses smaller sizes and fewer repeats (< 60 s); the full run stays < 15 min.

Sections (issue "dlnvolume bench"):

1. volume density against the SVD floor (d = 10 … 1000) and the dense mn×mn reference (d ≤ 20);
2. flows on the Arora et al. task: end_to_end against factor descent (numpy, largest stable learning
   rate) and, when installed, a PyTorch CPU factor descent; depth scan of the cost per endpoint;
3. samplers: ESS per second and per target evaluation, rmala against emcee;
4. throughput: batched 2×2 flows against a Python loop, 1 against 2 worker processes;
5. dask: the same batches through a 2-worker Dask ``LocalCluster``; task overhead against batch time.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import dlnvolume as dv

__all__ = ["Row", "run_bench", "dense_log_volume_density"]


@dataclass
class Row:
    section: str
    workload: str
    ours_s: float
    baseline: str
    baseline_s: float | None
    agreement: str
    goal: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Speed-up ``baseline / ours`` (for floor rows: cost ``ours / floor``, see :attr:`is_floor`)."""
        if self.baseline_s is None or self.ours_s <= 0 or self.baseline_s <= 0:
            return None
        return self.ours_s / self.baseline_s if self.is_floor else self.baseline_s / self.ours_s

    @property
    def is_floor(self) -> bool:
        """The baseline is a lower bound (the SVD), so the ratio is our cost relative to it."""
        return self.baseline.startswith("np.linalg.svd")


_THREADS: dict[str, int] = {}  # the thread limit of the running bench (read by the torch baseline)


def _median_time(fn: Callable[[], Any], repeats: int, min_time: float = 0.0, first_counts: bool = False) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call (which is timed and
    counted as one of the repeats when ``first_counts``, for calls too slow to repeat)."""
    times = []
    t0 = time.perf_counter()
    fn()
    if first_counts:
        times.append(time.perf_counter() - t0)
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 50 * repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def dense_log_volume_density(X: np.ndarray, depth: int, normalized: bool = True) -> float:
    """Dense reference: ``−½ log det`` of ``A_{N,X}`` built as an mn×mn matrix (square full rank).

    ``A = Σ_p (XXᵀ)^{(N−p)/N} ⊗ (XᵀX)^{(p−1)/N}`` (row-major vec) with fractional powers from ``eigh``;
    this is what one would write without the SVD-basis formulas (docs/math.md §1.3).
    """
    N = depth
    P = X @ X.T
    Q = X.T @ X
    wp, Vp = np.linalg.eigh(P)
    wq, Vq = np.linalg.eigh(Q)
    wp = np.clip(wp, 0, None)
    wq = np.clip(wq, 0, None)

    def power(w: np.ndarray, V: np.ndarray, a: float) -> np.ndarray:
        return (V * (w**a if a > 0 else np.ones_like(w))) @ V.T

    A = sum(np.kron(power(wp, Vp, (N - p) / N), power(wq, Vq, (p - 1) / N)) for p in range(1, N + 1))
    if normalized:
        A = A / N
    sign, logdet = np.linalg.slogdet(A)
    return -0.5 * logdet if sign > 0 else math.inf


# ------------------------------------------------------------------------------------------- sections
def bench_volume(quick: bool, rng: np.random.Generator) -> list[Row]:
    rows = []
    sizes = [10, 30, 100, 300] if quick else [10, 30, 100, 300, 1000]
    reps = {10: 200, 30: 100, 100: 30, 300: 7, 1000: 3}
    for d in sizes:
        X = rng.standard_normal((d, d))
        r = reps[d] if not quick else max(3, reps[d] // 3)
        t_svd = _median_time(lambda: np.linalg.svd(X, compute_uv=False), r, min_time=0.2)
        t_ours = _median_time(lambda: dv.log_volume_density(X, 3), r, min_time=0.2)
        goal = "≤ 1.5× SVD floor" if d >= 100 else ""
        rows.append(
            Row("volume", f"log_volume_density d={d}, N=3", t_ours, "np.linalg.svd(compute_uv=False)", t_svd,
                "n/a (floor)", goal, (t_ours / t_svd <= 1.5) if d >= 100 else None,
                {"d": d, "ours_over_floor": t_ours / t_svd})
        )
    for d in [5, 10, 20]:
        X = rng.standard_normal((d, d))
        t_ours = _median_time(lambda: dv.log_volume_density(X, 3), 30, min_time=0.1)
        t_dense = _median_time(lambda: dense_log_volume_density(X, 3), 3 if d == 20 else 5)
        ref = dense_log_volume_density(X, 3)
        got = float(dv.log_volume_density(X, 3))
        err = abs(got - ref) / max(1.0, abs(ref))
        goal = "≥ 1000× dense" if d == 20 else ""
        rows.append(
            Row("volume", f"log_volume_density d={d}, N=3", t_ours, "dense mn×mn −½ log det", t_dense,
                f"rel. diff {err:.1e}", goal, (t_dense / t_ours >= 1000) if d == 20 else None, {"d": d})
        )
        if d == 20:  # the same, per matrix of a stack of 1000 (how endpoint statistics call it)
            Xs = rng.standard_normal((1000, d, d))
            t_stack = _median_time(lambda: dv.log_volume_density(Xs, 3), 3 if quick else 7) / 1000
            rows.append(
                Row("volume", f"log_volume_density d={d}, N=3, per matrix of a 1000-stack", t_stack,
                    "dense mn×mn −½ log det", t_dense, f"rel. diff {err:.1e} (single matrix)", goal,
                    t_dense / t_stack >= 1000, {"d_stack": d})
            )
    return rows


def scaling_exponent(rows: list[Row]) -> float | None:
    """Least-squares slope of log time against log d over the SVD-floor rows with d ≥ 100."""
    pts = [(r.extra["d"], r.ours_s) for r in rows if r.baseline.startswith("np.linalg.svd") and r.extra["d"] >= 100]
    if len(pts) < 2:
        return None
    d, t = np.log(np.array(pts)).T
    return float(np.polyfit(d, t, 1)[0])


def _import_optional(name: str) -> Any | None:
    try:
        return __import__(name)
    except Exception:  # pragma: no cover - optional extras
        return None


def _largest_stable_lr(task: dv.CompletionTask, depth: int, factors: list[np.ndarray], loss_tol: float,
                       X_ref: np.ndarray, lrs: list[float]) -> tuple[float | None, list[dict[str, Any]]]:
    """Largest learning rate in ``lrs`` at which factor descent converges to the reference endpoint.

    The smallest rate runs first without a practical step limit and needs ``S`` steps; each larger rate
    ``lr`` then gets ``2·S·lr_min/lr`` steps (twice what a stable run needs, since steps ∝ 1/lr on the
    same path). The ascent stops at the first rate that does not converge (diverges, oscillates or
    leaves the reference endpoint by more than 1e-2): that rate is unstable.
    """
    from dlnvolume import flows

    sweep: list[dict[str, Any]] = []
    best = None
    cap = 200_000
    for i, lr in enumerate(sorted(lrs)):
        t0 = time.perf_counter()
        fd = flows.factor_descent(task, depth, initial_factors=[W.copy() for W in factors], lr=lr, max_steps=cap,
                                  loss_tol=loss_tol)
        sec = time.perf_counter() - t0
        X = np.asarray(fd.X).reshape(X_ref.shape)
        diff = float(np.linalg.norm(X - X_ref) / np.linalg.norm(X_ref))
        status = str(np.asarray(fd.status).reshape(-1)[0])
        steps = int(np.asarray(fd.n_steps).reshape(-1)[0])
        sweep.append({"lr": lr, "status": status, "steps": steps, "seconds": sec, "rel_diff": diff})
        if status != "converged" or diff > 1e-2:
            break
        best = lr
        if i == 0:
            lr0, s0 = lr, steps
        cap = max(10, math.ceil(2 * s0 * lr0 / sorted(lrs)[min(i + 1, len(lrs) - 1)]))
    return best, sweep


def bench_flows(quick: bool, rng: np.random.Generator) -> list[Row]:
    """Section 2. Full: the Arora et al. task (100×100, rank 5, 2000 observations); quick: 20×20, rank 2,
    200 observations (a smoke test of the same code paths, not the issue's measurement)."""
    from dlnvolume import flows

    rows: list[Row] = []
    n, r, obs = (20, 2, 200) if quick else (100, 5, 2000)
    reps = 1 if quick else 3
    task = dv.tasks.random_low_rank(n, n, r, obs, rng=0)
    label = f"{'quick ' if quick else 'Arora '}{n}×{n} r{r} {obs} obs N=3, init 1e-3, mse≤1e-6"
    mse_tol = 1e-6
    loss_tol = 0.5 * mse_tol * task.n_observed  # task.mse ≤ 1e-6  ⇔  task.loss ≤ ½·1e-6·|Ω|
    depth, scale = 3, 1e-3
    factors = _balanced_factors(task, depth, scale)
    X0 = _balanced_start(task, depth, scale)
    e2e = None

    def run_e2e() -> None:
        nonlocal e2e
        e2e = flows.end_to_end(task, depth, X0, normalized=False, loss_tol=loss_tol)

    t_e2e = _median_time(run_e2e, reps, first_counts=True)
    X_e2e = np.asarray(e2e.X).reshape(n, n)
    e2e_steps = int(np.asarray(e2e.n_steps).reshape(-1)[0])
    e2e_info = {"steps": e2e_steps, "rhs_evaluations": 6 * (e2e_steps + int(np.asarray(e2e.n_rejected).reshape(-1)[0])) + 1,
                "status": str(np.asarray(e2e.status).reshape(-1)[0])}
    lrs = [0.004, 0.006, 0.008, 0.01, 0.012, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05]
    lr, sweep = _largest_stable_lr(task, depth, factors, loss_tol, X_e2e, lrs)
    if lr is None:
        rows.append(Row("flows", label, t_e2e, "factor descent (numpy)", None,
                        f"no learning rate in {lrs} converged", "≥ 20×", None, {"sweep": sweep, "e2e": e2e_info}))
        return rows
    fd = None

    def run_fd() -> None:
        nonlocal fd
        fd = flows.factor_descent(task, depth, initial_factors=[W.copy() for W in factors], lr=lr, max_steps=200_000,
                                  loss_tol=loss_tol)

    t_fd = _median_time(run_fd, max(reps, 3), first_counts=quick)
    fd_steps = int(np.asarray(fd.n_steps).reshape(-1)[0])
    X_fd = np.asarray(fd.X).reshape(n, n)
    diff = float(np.linalg.norm(X_fd - X_e2e) / np.linalg.norm(X_fd))
    agree = f"rel. Frobenius diff {diff:.1e}" + ("" if diff <= 1e-3 else " (> 1e-3: endpoints DISAGREE)")
    rows.append(Row("flows", label, t_e2e, f"factor descent numpy, largest stable lr={lr}, {fd_steps} steps", t_fd,
                    agree + f"; e2e {e2e_steps} steps", "≥ 20×", bool((t_fd / t_e2e >= 20) and diff <= 1e-3),
                    {"sweep": sweep, "e2e": e2e_info, "fd_steps": fd_steps, "lr": lr}))
    torch = _import_optional("torch")
    if torch is None:
        rows.append(Row("flows", label, t_e2e, "PyTorch CPU factor descent", None,
                        "skipped: torch not installed (pip install 'dlnvolume[torch]', the CPU build torch==2.13.0)",
                        "≥ 20×", None))
    else:
        out: dict[str, Any] = {"times": []}
        for _ in range(max(reps, 3)):  # the loop times itself (tensor set-up and the thread trial excluded)
            t_run, out["X"], out["steps"] = _torch_factor_descent(torch, task, depth, factors, lr, loss_tol, 200_000)
            out["times"].append(t_run)
        t_torch = float(np.median(out["times"]))
        d_t = float(np.linalg.norm(out["X"] - X_e2e) / np.linalg.norm(out["X"]))
        rows.append(Row("flows", label, t_e2e, f"PyTorch {torch.__version__} CPU GD, lr={lr}, {out['steps']} steps",
                        t_torch, f"rel. Frobenius diff {d_t:.1e}" + ("" if d_t <= 1e-3 else " (> 1e-3: DISAGREE)"),
                        "≥ 20×", bool((t_torch / t_e2e >= 20) and d_t <= 1e-3), {"steps": out["steps"]}))
    # depth scan: cost per endpoint, same (normalized) flow and start for every depth
    cap = 300 if quick else 3000
    base = None
    for N in ([3, 100, math.inf] if quick else [3, 2, 10, 100, math.inf]):  # N=3 first: the base
        t0 = time.perf_counter()
        res = flows.end_to_end(task, N, X0, loss_tol=loss_tol, max_steps=cap)
        t = time.perf_counter() - t0
        steps = int(np.asarray(res.n_steps).reshape(-1)[0])
        status = str(np.asarray(res.status).reshape(-1)[0])
        if N == 3:
            base = t
        per_step = t / max(steps, 1)
        t_flow = float(np.asarray(res.t).reshape(-1)[0])
        rows.append(Row("flows", f"e2e N={N}: 1 endpoint, {steps} steps to t={t_flow:.3g}, {per_step * 1e3:.3g} ms/step", t,
                        "end_to_end N=3", base, f"status {status}" + ("" if status == "converged" else f" (cap {cap} steps)"),
                        "≤ 2× N=3" if N in (100, math.inf) else "",
                        (t <= 2 * base and status == "converged") if (base is not None and N in (100, math.inf)) else None,
                        {"depth": str(N), "steps": steps, "seconds_per_step": per_step, "status": status,
                         "flow_time": t_flow}))
    return rows


def _balanced_factors(task: dv.CompletionTask, depth: int, scale: float) -> list[np.ndarray]:
    """Square balanced factors ``W_p = c·O_p O_{p−1}ᵀ`` (seed 1), product ``scale·O`` with O orthogonal.

    This is Arora et al.'s "orthogonal" initialization: ``‖X0‖_F = scale·√n``.
    """
    n = task.shape[0]
    g = np.random.default_rng(1)
    Qs = [np.linalg.qr(g.standard_normal((n, n)))[0] for _ in range(depth + 1)]
    c = scale ** (1.0 / depth)
    return [c * Qs[p + 1] @ Qs[p].T for p in range(depth)]  # W_1..W_N


def _balanced_start(task: dv.CompletionTask, depth: int, scale: float) -> np.ndarray:
    Ws = _balanced_factors(task, depth, scale)
    X = Ws[0]
    for W in Ws[1:]:
        X = W @ X
    return X


def _torch_factor_descent(torch: Any, task: dv.CompletionTask, depth: int, Ws: list[np.ndarray], lr: float,
                          loss_tol: float, max_steps: int) -> tuple[float, np.ndarray, int]:
    """Full-batch GD on square factors, the way the original experiment code does it (autograd, no batching).

    Uses the bench's thread limit; without one, runs with one thread and with ``os.cpu_count()``
    threads and reports the faster (small matrices are faster single-threaded; on a busy machine
    torch's spinning threads cost up to 40× per matmul).
    """
    best: tuple[float, np.ndarray, int] | None = None
    old = torch.get_num_threads()
    try:
        m, n = task.shape
        limit = _THREADS.get("limit")
        trial = [limit] if limit is not None else (sorted({1, os.cpu_count() or 1}) if m * n > 64 * 64 else [1])
        for threads in trial:
            torch.set_num_threads(threads)
            res = _torch_gd(torch, task, Ws, lr, loss_tol, max_steps)
            if best is None or res[0] < best[0]:
                best = res
    finally:
        torch.set_num_threads(old)
    assert best is not None
    return best


def _torch_gd(torch: Any, task: dv.CompletionTask, Ws: list[np.ndarray], lr: float, loss_tol: float,
              max_steps: int) -> tuple[float, np.ndarray, int]:
    params = [torch.tensor(W, dtype=torch.float64, requires_grad=True) for W in Ws]
    M = torch.tensor(task.values)
    mask = torch.tensor(task.mask)
    opt = torch.optim.SGD(params, lr=lr)
    t0 = time.perf_counter()
    steps = 0
    for steps in range(1, max_steps + 1):
        X = params[0]
        for W in params[1:]:
            X = W @ X
        loss = 0.5 * ((X - M)[mask] ** 2).sum()
        if loss.item() <= loss_tol:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = time.perf_counter() - t0
    return t, X.detach().numpy(), steps


def _conditioned_target(d: int) -> Any:
    """Fully observed d×d Gibbs target, depth 3, β = 10, singular values spread over [1, 3], GaussianPrior(3),
    SingularValueFloor(0.3): a full-rank target on which every method can mix."""
    import samplers

    g = np.random.default_rng(11)
    U = np.linalg.qr(g.standard_normal((d, d)))[0]
    V = np.linalg.qr(g.standard_normal((d, d)))[0]
    M = (U * np.linspace(3.0, 1.0, d)) @ V.T
    task = dv.CompletionTask(M, np.ones((d, d), dtype=bool), name=f"full_{d}x{d}")
    conf = [samplers.GaussianPrior(3.0), samplers.SingularValueFloor(0.3)]
    return samplers.GibbsTarget(task, 3, d, beta=10.0, confinement=conf)


def bench_samplers(quick: bool, rng: np.random.Generator) -> list[Row]:
    from samplers.benchmark import ess_benchmark

    rows: list[Row] = []
    n_draws = 500 if quick else 4000
    for d in ([5] if quick else [5, 10]):
        # emcee in the sampler's own coordinates θ=(u,A,B) is ~1000× slower than rmala at 5×5 (it needs
        # 2·dim walkers on a curved parametrisation); it runs only in the full 5×5 row.
        methods = ["rmala", ("emcee", {"coordinates": "matrix"})] + (["emcee"] if (d == 5 and not quick) else [])
        res = {r.method: r for r in ess_benchmark(_conditioned_target(d), methods, n_draws, n_chains=2, rng=5)}
        ours = res["rmala"]
        for name, base in res.items():
            if name == "rmala":
                continue
            ratio = ours.ess_per_second / base.ess_per_second if base.ess_per_second > 0 else math.inf
            rows.append(Row("samplers", f"{d}×{d} Gibbs N=3 ESS/s log-volume: rmala {ours.ess:.0f} ESS vs {base.ess:.0f}",
                            1.0 / max(ours.ess_per_second, 1e-12), f"{name} (s per effective sample)",
                            1.0 / max(base.ess_per_second, 1e-12),
                            f"ESS/eval rmala {ours.ess_per_evaluation:.2e}, {name} {base.ess_per_evaluation:.2e}; "
                            f"σ₁ ESS/s rmala {ours.ess_sigma1_per_second:.3g}, {name} {base.ess_sigma1_per_second:.3g}",
                            "≥ 10× emcee" if d == 5 else "", bool(ratio >= 10) if d == 5 else None,
                            {"ess_rmala": ours.ess, "ess_base": base.ess, "ess_per_eval_rmala": ours.ess_per_evaluation,
                             "ess_per_eval_base": base.ess_per_evaluation, "ess_sigma1_rmala": ours.ess_sigma1,
                             "ess_sigma1_base": base.ess_sigma1,
                             "sigma1_ratio": ours.ess_sigma1_per_second / max(base.ess_sigma1_per_second, 1e-300)}))
    return rows


def _ess(x: np.ndarray) -> float:
    """Bulk ESS over (chain, draw) through the package's one ArviZ wrapper."""
    from samplers.diagnostics import ess

    return float(ess(np.asarray(x)))


def bench_throughput(quick: bool, rng: np.random.Generator) -> list[Row]:
    from dlnvolume import flows

    rows: list[Row] = []
    task = dv.tasks.diagonal_2x2()
    n_runs = 100 if quick else 1000
    t0 = time.perf_counter()
    ep = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, workers=1, batch_size=n_runs, progress=False)
    t_batched = time.perf_counter() - t0
    n_loop = 10 if quick else 50
    X0 = ep.X0[:n_loop]
    t0 = time.perf_counter()
    loop_X = [np.asarray(flows.end_to_end(task, 5, X0[i]).X).reshape(2, 2) for i in range(n_loop)]
    t_loop = (time.perf_counter() - t0) * n_runs / n_loop
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(loop_X, ep.X[:n_loop]))
    rows.append(Row("throughput", f"{n_runs} endpoints 2×2 depth 5 ({n_runs / t_batched:.0f}/s)", t_batched,
                    f"Python loop of single flows (extrapolated from {n_loop})", t_loop, f"max |ΔX| {diff:.1e}",
                    "≥ 20×", t_loop / t_batched >= 20))
    # 1 against 2 worker processes on the same two batches (2 workers: process start-up included)
    half = math.ceil(n_runs / 2)
    t0 = time.perf_counter()
    ep1 = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, workers=1, batch_size=half, progress=False)
    t1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    ep2 = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, workers=2, batch_size=half, progress=False)
    t2 = time.perf_counter() - t0
    same = bool(np.array_equal(ep2.X, ep.X) and np.array_equal(ep1.X, ep.X))
    rows.append(Row("throughput", f"{n_runs} endpoints in 2 batches, 2 worker processes", t2, "1 worker, same batches", t1,
                    "bit-identical to 1 batch" if same else "DIFFERENT endpoints", "≥ 1.6×", (t1 / t2 >= 1.6) and same))
    return rows


def _noop(x: int) -> int:
    return x


def bench_dask(quick: bool, rng: np.random.Generator) -> list[Row]:
    """Dask task overhead: the same endpoints through a 2-worker ``LocalCluster`` and a local process pool.

    Overhead per task = median round trip of a no-op task submitted through the same executor; it is
    held against the compute time of one batch (goal < 5 %). Cluster start-up is reported separately
    (it is paid once per ``dlnvolume run --dask local``, never per task)."""
    from dlnvolume import flows

    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        return [Row("dask", "Dask LocalCluster overhead", 0.0, "local process pool", None,
                    "skipped: dask.distributed not installed (pip install 'dlnvolume[dask]')", "< 5 %", None)]
    task = dv.tasks.diagonal_2x2()
    n_runs = 100 if quick else 1000
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    t_start = time.perf_counter() - t0
    try:
        ex = client.get_executor()
        n_batches = 2
        bs = math.ceil(n_runs / n_batches)
        flows.endpoints(task, 5, 4, 1e-3, rng=1, executor=ex, progress=False)  # warm the workers' imports
        t0 = time.perf_counter()
        ep_d = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, executor=ex, batch_size=bs, progress=False)
        t_dask = time.perf_counter() - t0
        t0 = time.perf_counter()
        ep_p = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, workers=2, batch_size=bs, progress=False)
        t_pool = time.perf_counter() - t0
        lat = []
        for i in range(30):
            t1 = time.perf_counter()
            ex.submit(_noop, i).result()
            lat.append(time.perf_counter() - t1)
        latency = float(np.median(lat))
    finally:
        client.close()
        cluster.close()
    same = bool(np.array_equal(ep_d.X, ep_p.X))
    per_batch = t_dask / (n_batches / 2)  # two workers run the batches in parallel
    frac = latency / per_batch
    return [
        Row("dask", f"{n_runs} endpoints 2×2 N=5, {n_batches} batches, LocalCluster(2)", t_dask,
            "local process pool, 2 workers (start-up included)", t_pool,
            "bit-identical" if same else "DIFFERENT endpoints", "", None,
            {"cluster_start_s": t_start}),
        Row("dask", f"Dask task round trip vs one batch ({per_batch:.2f} s): {100 * frac:.2g} %", latency,
            "one batch of flows", per_batch, f"cluster start-up {t_start:.1f} s (once per run)",
            "overhead < 5 %", bool(frac < 0.05) and same, {"overhead_fraction": frac}),
    ]


SECTIONS: dict[str, Callable[[bool, np.random.Generator], list[Row]]] = {
    "volume": bench_volume,
    "flows": bench_flows,
    "samplers": bench_samplers,
    "throughput": bench_throughput,
    "dask": bench_dask,
    "references": lambda quick, rng: __import__("analysis.bench_references", fromlist=["x"]).bench_references(quick, rng),
    "flows-stiff": lambda quick, rng: __import__("analysis.bench_stiff", fromlist=["_"]).bench_flows_stiff(quick, rng),
}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: v for k, v in d.items() if k in ("internal_api", "version", "architecture", "num_threads")}
                        for d in threadpool_info()]
    except Exception:  # pragma: no cover - optional
        pass
    return info


def _fmt(t: float | None) -> str:
    if t is None:
        return "—"
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def format_table(rows: list[Row]) -> str:
    head = f"{'workload':58s} {'ours':>10s} {'baseline':>10s} {'ratio':>8s}  goal/met  agreement / baseline"
    lines = [head, "-" * len(head), "ratio = baseline/ours (speed-up); 'fl' = ours/SVD floor (cost, lower is better)"]
    for r in rows:
        ratio = "—" if r.ratio is None else (f"{r.ratio:.3g}×fl" if r.is_floor else f"{r.ratio:.3g}×")
        met = "" if r.met is None else ("yes" if r.met else "NO")
        lines.append(f"{r.workload[:58]:58s} {_fmt(r.ours_s):>10s} {_fmt(r.baseline_s):>10s} {ratio:>8s}  "
                     f"{(r.goal + ' ' + met).strip():s}  | {r.agreement}; vs {r.baseline}")
    return "\n".join(lines)


def run_bench(out: str | os.PathLike = "bench-out", quick: bool = False, sections: list[str] | None = None,
              seed: int = 0, echo: Callable[[str], None] = print, threads: int | None = 1) -> dict[str, Any]:
    """Run the benchmark sections, print the table, write ``bench.json`` and ``bench.png`` to ``out``.

    ``threads`` limits the BLAS (and PyTorch) threads of this process for the whole run (default 1;
    ``None`` leaves the library defaults). One thread makes the ratios reproducible on a shared
    machine: measured here, a multithreaded OpenBLAS SVD of a 100×100 matrix took 144 ms instead of
    7 ms while another process used the second core, which turns every ratio into noise.
    """
    if threads is None:
        return _run_bench(out, quick, sections, seed, echo, threads)
    _THREADS["limit"] = threads
    from threadpoolctl import threadpool_limits

    uses_torch = sections is None or any(x.startswith("flows") for x in sections)  # "flows", "flows-stiff", ...
    torch = _import_optional("torch") if uses_torch else None
    old = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            return _run_bench(out, quick, sections, seed, echo, threads)
    finally:
        if torch is not None:
            torch.set_num_threads(old)
        _THREADS.pop("limit", None)


def _run_bench(out: str | os.PathLike, quick: bool, sections: list[str] | None, seed: int,
               echo: Callable[[str], None], threads: int | None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    errors: dict[str, str] = {}
    for name in sections or list(SECTIONS):
        t0 = time.perf_counter()
        try:
            new = SECTIONS[name](quick, rng)
        except Exception as exc:  # a section that cannot run is reported, the others still run
            errors[name] = f"{type(exc).__name__}: {exc}"
            echo(f"[{name}] could not run: {errors[name]}")
            continue
        if quick:  # quick sizes are a smoke test, not the workloads: goals are judged on the full run
            for r in new:
                if r.goal:
                    r.extra["met_at_quick_size"] = r.met
                    r.met = None
                    r.goal += " (full run)"
        rows.extend(new)
        echo(f"[{name}] {time.perf_counter() - t0:.1f} s")
        echo(format_table(new))
    exponent = scaling_exponent(rows)
    if exponent is not None:
        echo(f"volume density time ∝ d^{exponent:.2f} (fit over d ≥ 100)")
    result = {"rows": [dict(asdict(r), ratio=r.ratio) for r in rows], "errors": errors, "machine": machine(),
              "quick": quick, "volume_scaling_exponent": exponent, "blas_threads": threads}
    tmp = out / "bench.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, out / "bench.json")
    _plot(rows, out / "bench.png")
    echo(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return result


def _plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r.extra["d"], r.ours_s, r.baseline_s) for r in rows if r.section == "volume" and "d" in r.extra
           and r.baseline.startswith("np.linalg.svd")]
    dense = [(r.extra["d"], r.ours_s, r.baseline_s) for r in rows if r.section == "volume" and "d" in r.extra
             and r.baseline.startswith("dense")]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if pts:
        d, ours, svd = np.array(pts).T
        ax.loglog(d, ours, "o-", label="log_volume_density")
        ax.loglog(d, svd, "s--", label="SVD (compute_uv=False)")
    if dense:
        d, _, dn = np.array(dense).T
        ax.loglog(d, dn, "^:", label="dense mn×mn reference")
    if not (pts or dense):
        ax.text(0.5, 0.5, "volume section not run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("d (d×d matrix)")
    ax.set_ylabel("median time [s]")
    ax.set_title("volume density: scaling")
    if pts or dense:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
