"""``dlnvolume bench``: speed against the alternatives, measured side by side in one run.

Absolute times on shared machines are noise; ratios from one run are not. Every row prints the
workload, our time, the baseline's time, the ratio and an agreement check. Timings are medians over
repeats. ``--quick`` uses smaller sizes and fewer repeats (< 60 s); the full run stays < 15 min.

Sections (issue "dlnvolume bench"):

1. volume density against the SVD floor (d = 10 … 1000) and the dense mn×mn reference (d ≤ 20);
2. flows on the Arora et al. task: end_to_end against factor descent (numpy, largest stable learning
   rate) and, when installed, a PyTorch CPU factor descent; depth scan of the cost per endpoint;
3. samplers: ESS per second and per target evaluation, rmala against emcee;
4. throughput: batched 2×2 flows against a Python loop, 1 against 2 worker processes.
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


def _median_time(fn: Callable[[], Any], repeats: int, min_time: float = 0.0) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 50 * repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def dense_log_volume_density(X: np.ndarray, depth: int, normalized: bool = True) -> float:
    """Dense reference: ``−½ log det`` of ``A_{N,X}`` built as an mn×mn matrix (square full rank).

    ``A = Σ_p (XXᵀ)^{(N−p)/N} ⊗ (XᵀX)^{(p−1)/N}`` (row-major vec) with fractional powers from ``eigh``;
    this is what one would write without the SVD-basis formulas (MATH.md §1.3).
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


def bench_flows(quick: bool, rng: np.random.Generator) -> list[Row]:
    from dlnvolume import flows

    rows: list[Row] = []
    n, obs = (40, 500) if quick else (100, 2000)
    task = dv.tasks.random_low_rank(n, n, 5, obs, rng=0)
    mse_tol = 1e-6
    loss_tol = 0.5 * mse_tol * task.n_observed  # task.mse ≤ 1e-6  ⇔  task.loss ≤ ½·1e-6·|Ω|
    depth = 3
    scale = 1e-3
    # end_to_end from a balanced start with the same product
    t0 = time.perf_counter()
    e2e = flows.end_to_end(task, depth, _balanced_start(task, depth, scale), normalized=False, loss_tol=loss_tol)
    t_e2e = time.perf_counter() - t0
    X_e2e = np.asarray(e2e.X).reshape(n, n)
    # factor descent from the same balanced factors: sweep learning rates from large to small and keep
    # the largest that converges to the same endpoint (an oscillating lr can run to max_steps without
    # diverging, so max_steps is bounded and agreement is checked)
    best = None
    lrs = [0.05, 0.03, 0.02, 0.015, 0.012, 0.008] if not quick else [0.05, 0.03, 0.02, 0.012]
    sweep = []
    for lr in lrs:
        t0 = time.perf_counter()
        fd = flows.factor_descent(task, depth, initial_factors=_balanced_factors(task, depth, scale),
                                  lr=lr, max_steps=20_000 if not quick else 5_000, loss_tol=loss_tol)
        t_fd = time.perf_counter() - t0
        X_fd = np.asarray(fd.X).reshape(n, n)
        diff = float(np.linalg.norm(X_fd - X_e2e) / np.linalg.norm(X_fd))
        status = str(np.asarray(fd.status).reshape(-1)[0])
        sweep.append({"lr": lr, "status": status, "seconds": t_fd, "rel_diff": diff})
        if status == "converged" and diff <= 1e-2:
            best = (lr, t_fd, X_fd)
            break
    if best is None:
        rows.append(Row("flows", f"Arora {n}×{n} r5 N=3 to mse≤1e-6", t_e2e, "factor descent (numpy)", None,
                        "no learning rate in the sweep converged", "≥ 20×", None, {"sweep": sweep}))
    else:
        lr, t_fd, X_fd = best
        diff = np.linalg.norm(X_fd - X_e2e) / np.linalg.norm(X_fd)
        rows.append(Row("flows", f"Arora {n}×{n} r5 N=3 to mse≤1e-6", t_e2e, f"factor descent numpy, lr={lr}", t_fd,
                        f"rel. Frobenius diff {diff:.1e}" + ("" if diff <= 1e-3 else " (> 1e-3!)"), "≥ 20×",
                        bool((t_fd / t_e2e >= 20) and diff <= 1e-3), {"sweep": sweep}))
    torch = _import_optional("torch")
    if torch is None:
        rows.append(Row("flows", f"Arora {n}×{n} r5 N=3 to mse≤1e-6", t_e2e, "PyTorch CPU factor descent", None,
                        "skipped: torch not installed (pip install 'dlnvolume[torch]')", "≥ 20×", None))
    elif best is not None:
        lr = best[0]
        t_torch, X_t, steps = _torch_factor_descent(torch, task, depth, _balanced_factors(task, depth, scale), lr, loss_tol,
                                                    20_000 if not quick else 5_000)
        diff = np.linalg.norm(X_t - X_e2e) / np.linalg.norm(X_t)
        rows.append(Row("flows", f"Arora {n}×{n} r5 N=3 to mse≤1e-6", t_e2e, f"PyTorch CPU GD, lr={lr}, {steps} steps",
                        t_torch, f"rel. Frobenius diff {diff:.1e}", "≥ 20×", bool((t_torch / t_e2e >= 20) and diff <= 1e-3)))
    # depth scan: cost per endpoint
    base = None
    for N in ([2, 3, 10, 100, math.inf] if not quick else [3, 100, math.inf]):
        t0 = time.perf_counter()
        res = flows.end_to_end(task, N, _balanced_start(task, 3, scale), loss_tol=loss_tol)
        t = time.perf_counter() - t0
        steps = int(np.asarray(res.n_steps).reshape(-1)[0])
        if N == 3:
            base = t
        rows.append(Row("flows", f"end_to_end depth {N}: cost per endpoint ({steps} steps)", t, "end_to_end depth 3",
                        base, f"status {np.asarray(res.status).reshape(-1)[0]}",
                        "≤ 2× depth 3" if N in (100, math.inf) else "",
                        (t <= 2 * base) if (base is not None and N in (100, math.inf)) else None))
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
    """Full-batch GD on square factors, the way the original experiment code does it (autograd, no batching)."""
    torch.set_num_threads(os.cpu_count() or 1)
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
    n_draws = 1000 if quick else 4000
    methods = ["rmala", "emcee", ("emcee", {"coordinates": "matrix"})]
    for d in ([5] if quick else [5, 10]):
        res = {r.method: r for r in ess_benchmark(_conditioned_target(d), methods, n_draws, n_chains=2, rng=5)}
        ours = res["rmala"]
        for name, base in res.items():
            if name == "rmala":
                continue
            ratio = ours.ess_per_second / base.ess_per_second if base.ess_per_second > 0 else math.inf
            rows.append(Row("samplers", f"{d}×{d} Gibbs N=3 ESS/s log-volume: rmala {ours.ess:.0f} ESS vs {base.ess:.0f}",
                            1.0 / max(ours.ess_per_second, 1e-12), f"{name} (s per effective sample)",
                            1.0 / max(base.ess_per_second, 1e-12),
                            f"ESS/eval rmala {ours.ess_per_evaluation:.2e}, {name} {base.ess_per_evaluation:.2e}",
                            "≥ 10× emcee" if d == 5 else "", bool(ratio >= 10) if d == 5 else None,
                            {"ess_rmala": ours.ess, "ess_base": base.ess, "ess_per_eval_rmala": ours.ess_per_evaluation,
                             "ess_per_eval_base": base.ess_per_evaluation}))
    return rows


def _ess(x: np.ndarray) -> float:
    """Bulk ESS over (chain, draw) through the samplers' estimator (arviz stays in analysis.diagnostics)."""
    from samplers.diagnostics import ess

    return float(ess(np.asarray(x)))


def bench_throughput(quick: bool, rng: np.random.Generator) -> list[Row]:
    from dlnvolume import flows

    rows: list[Row] = []
    task = dv.tasks.diagonal_2x2()
    n_runs = 200 if quick else 1000
    t0 = time.perf_counter()
    ep = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, workers=1, progress=False)
    t_batched = time.perf_counter() - t0
    n_loop = 20 if quick else 50
    X0 = ep.X0[:n_loop]
    t0 = time.perf_counter()
    loop_X = [np.asarray(flows.end_to_end(task, 5, X0[i]).X).reshape(2, 2) for i in range(n_loop)]
    t_loop = (time.perf_counter() - t0) * n_runs / n_loop
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(loop_X, ep.X[:n_loop]))
    rows.append(Row("throughput", f"{n_runs} endpoints 2×2 depth 5 ({n_runs / t_batched:.0f}/s)", t_batched,
                    f"Python loop of single flows (extrapolated from {n_loop})", t_loop, f"max |ΔX| {diff:.1e}",
                    "≥ 20×", t_loop / t_batched >= 20))
    t0 = time.perf_counter()
    ep2 = flows.endpoints(task, 5, n_runs, 1e-3, rng=7, workers=2, batch_size=max(1, n_runs // 4), progress=False)
    t2 = time.perf_counter() - t0
    same = bool(np.array_equal(ep2.X, ep.X))
    rows.append(Row("throughput", f"{n_runs} endpoints, 2 workers", t2, "1 worker", t_batched,
                    "bit-identical" if same else "DIFFERENT endpoints", "≥ 1.6×", (t_batched / t2 >= 1.6) and same))
    return rows


SECTIONS: dict[str, Callable[[bool, np.random.Generator], list[Row]]] = {
    "volume": bench_volume,
    "flows": bench_flows,
    "samplers": bench_samplers,
    "throughput": bench_throughput,
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
              seed: int = 0, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark sections, print the table, write ``bench.json`` and ``bench.png`` to ``out``."""
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
        rows.extend(new)
        echo(f"[{name}] {time.perf_counter() - t0:.1f} s")
        echo(format_table(new))
    exponent = scaling_exponent(rows)
    if exponent is not None:
        echo(f"volume density time ∝ d^{exponent:.2f} (fit over d ≥ 100)")
    result = {"rows": [dict(asdict(r), ratio=r.ratio) for r in rows], "errors": errors, "machine": machine(),
              "quick": quick, "volume_scaling_exponent": exponent}
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
    dense = [(r.extra["d"], r.ours_s, r.baseline_s) for r in rows if r.section == "volume" and r.baseline.startswith("dense")]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if pts:
        d, ours, svd = np.array(pts).T
        ax.loglog(d, ours, "o-", label="log_volume_density")
        ax.loglog(d, svd, "s--", label="SVD (compute_uv=False)")
    if dense:
        d, _, dn = np.array(dense).T
        ax.loglog(d, dn, "^:", label="dense mn×mn reference")
    ax.set_xlabel("d (d×d matrix)")
    ax.set_ylabel("median time [s]")
    ax.set_title("volume density: scaling")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
